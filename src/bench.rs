//! `larder bench`: figures a user can measure on their own hardware, like redis-benchmark or
//! fio. Every figure is measured on real stores on disk; nothing is estimated.

use crate::consortium::{ConsortiumConfig, LocalConsortium};
use crate::generate::Dealer;
use crate::material::PoolSpec;
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// One measured figure; printed as one JSON line with `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    pub bench: &'static str,
    pub kind: String,
    pub domain: String,
    pub parties: u8,
    pub items: u64,
    pub seconds: f64,
    pub items_per_second: f64,
    /// Bytes on disk per item at each party (metadata and batch files).
    pub bytes_stored_per_item_by_party: Vec<f64>,
    /// Sum over all parties.
    pub bytes_stored_per_item: f64,
    pub element_bytes: usize,
    pub peak_rss_bytes: u64,
    pub durable: bool,
    pub threads: usize,
    pub cores: usize,
    pub version: &'static str,
}

/// Resets the kernel's peak-RSS counter for this process (Linux), so each figure's peak is its
/// own. Returns false where that is not possible.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Peak resident memory of this process since start or the last reset (VmHWM), in bytes.
pub fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Deals `items` of `pool` into fresh stores for `parties` parties under `dir` (removed
/// afterwards) and measures throughput, bytes stored and peak memory.
///
/// # Errors
/// Any store or generation error, as text.
pub fn dealer(
    dir: &Path,
    pool: PoolSpec,
    parties: u8,
    items: u64,
    batch_size: u64,
) -> anyhow::Result<Figure> {
    let root = dir.join(format!("dealer-{pool}"));
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    let config = ConsortiumConfig {
        name: "bench".into(),
        parties,
        leader: 0,
        batch_size,
        pools: vec![pool],
    };
    let figure = {
        let c = LocalConsortium::init(&root, config)?;
        let mut dealer = Dealer::from_os_rng();
        reset_peak_rss();
        let start = Instant::now();
        c.deal(&mut dealer, pool, items, |_| {})?;
        let seconds = start.elapsed().as_secs_f64();
        let peak = peak_rss_bytes();
        let by_party: Vec<f64> = (0..parties)
            .map(|p| c.store(p).disk_bytes() as f64 / items as f64)
            .collect();
        Figure {
            bench: "dealer",
            kind: pool.kind.to_string(),
            domain: pool.domain.to_string(),
            parties,
            items,
            seconds,
            items_per_second: items as f64 / seconds,
            bytes_stored_per_item: by_party.iter().sum(),
            bytes_stored_per_item_by_party: by_party,
            element_bytes: pool.domain.elem_bytes(),
            peak_rss_bytes: peak,
            durable: true,
            threads: rayon::current_num_threads(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            version: env!("CARGO_PKG_VERSION"),
        }
    };
    std::fs::remove_dir_all(&root)?;
    Ok(figure)
}

/// A readable table of figures.
pub fn table(figures: &[Figure]) -> String {
    let mut s = format!(
        "{:<8} {:<8} {:<6} {:>8} {:>12} {:>9} {:>14} {:>22} {:>10}\n",
        "bench",
        "kind",
        "domain",
        "parties",
        "items",
        "seconds",
        "items/s",
        "bytes/item (all, elem)",
        "peak RSS"
    );
    for f in figures {
        s += &format!(
            "{:<8} {:<8} {:<6} {:>8} {:>12} {:>9.3} {:>13.2}M {:>15.3} ({:>2}) {:>7.1}MiB\n",
            f.bench,
            f.kind,
            f.domain,
            f.parties,
            f.items,
            f.seconds,
            f.items_per_second / 1e6,
            f.bytes_stored_per_item,
            f.element_bytes,
            f.peak_rss_bytes as f64 / (1 << 20) as f64
        );
    }
    if let Some(f) = figures.first() {
        s += &format!("larder {} on {} cores, {} rayon threads; stores synced to disk before each batch is counted\n", f.version, f.cores, f.threads);
    }
    s
}
