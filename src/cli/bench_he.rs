//! `larder bench he`: the HE generator as it runs in production: `parties` party nodes as
//! separate `larder serve` processes on loopback with TLS, an HE-only pool, one generation job
//! made by the nodes themselves (no dealer), every share staged durably and every batch
//! committed by the leader. Measured from the job's creation until it is done.

use super::bench::LocalNodes;
use larder::generate::he::HeTriples;
use larder::generate::PartyGenerator;
use larder::material::{Maker, PoolSpec};
use larder::wire::JobRequest;
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What `larder bench he` measures.
#[derive(Clone, Debug)]
pub struct HeBench {
    pub dir: PathBuf,
    pub pool: PoolSpec,
    pub parties: u8,
    pub items: u64,
    pub batch_size: u64,
}

/// One figure; one JSON line with `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct HeFigure {
    pub bench: &'static str,
    pub kind: String,
    pub domain: String,
    pub parties: u8,
    pub items: u64,
    pub batch_size: u64,
    /// From the job's creation to its last batch committed at every party.
    pub seconds: f64,
    pub items_per_second: f64,
    /// Bytes of generator messages each party sends per item (one batch of `batch_size`
    /// made in-process with the same code; HTTP and TLS framing not counted).
    pub bytes_sent_per_item_by_party: Vec<f64>,
    pub bytes_sent_per_item_max: f64,
    /// Peak resident memory of each node's process.
    pub peak_rss_bytes_by_party: Vec<u64>,
    pub peak_rss_bytes: u64,
    pub ring_degree: usize,
    pub log_q: f64,
    pub flood_bits: u32,
    pub durable: bool,
    pub tls: bool,
    pub cores: usize,
    pub version: &'static str,
}

/// Bytes each party sends per item, from one batch of `items` made in-process.
fn bytes_per_item(pool: PoolSpec, parties: u8, items: u64) -> anyhow::Result<Vec<f64>> {
    let generators = (0..parties)
        .map(|_| Box::new(HeTriples::from_os_rng()) as Box<dyn PartyGenerator>)
        .collect();
    Ok(larder::generate::bytes_sent_per_item(
        generators, pool, items,
    )?)
}

/// Runs the bench.
///
/// # Errors
/// A consortium that does not start, a job that fails or does not finish within an hour.
pub async fn he(b: &HeBench) -> anyhow::Result<HeFigure> {
    let p = match b.pool.domain.modulus() {
        Some(p) if p < 1 << 62 => p as u64,
        _ => anyhow::bail!(
            "the HE generator works in prime fields below 2^62, not {}",
            b.pool
        ),
    };
    let ctx = HeTriples::context_for(p)?;
    if !larder::generate::he::supports(&b.pool) {
        anyhow::bail!("the HE generator cannot make {}", b.pool);
    }
    let root = b.dir.join("he");
    let nodes = LocalNodes::start_with(&root, b.parties, b.pool, b.batch_size, 3600, |plan| {
        plan.pool_generators = [(b.pool, vec![Maker::He])].into_iter().collect();
    })
    .await?;
    let t0 = Instant::now();
    let req = JobRequest {
        pool: b.pool,
        count: b.items,
        generator: Maker::He.name().into(),
    };
    super::worker::run_job(nodes.launch(), &req, Duration::from_millis(20), |_| {}).await?;
    let seconds = t0.elapsed().as_secs_f64();
    let peak: Vec<u64> = (0..b.parties as usize)
        .map(|i| super::bench::proc_peak_rss(nodes.pid(i)))
        .collect();
    // A sample reconstructs across the parties (the tests check all of it).
    let mut files = Vec::new();
    for (i, e) in nodes.engines.iter().enumerate() {
        e.checkout("bench-sample", b.pool, 1000).await?;
        let f = root.join(format!("sample-{i}.shares"));
        std::fs::write(&f, e.download("bench-sample").await?)?;
        files.push(f);
    }
    larder::consortium::verify(&files)?;
    drop(nodes);
    let _ = std::fs::remove_dir_all(&root);
    let sent = bytes_per_item(b.pool, b.parties, b.batch_size.min(b.items))?;
    let budget = ctx.budget();
    Ok(HeFigure {
        bench: "he",
        kind: b.pool.kind.name().into(),
        domain: b.pool.domain.to_string(),
        parties: b.parties,
        items: b.items,
        batch_size: b.batch_size,
        seconds,
        items_per_second: b.items as f64 / seconds,
        bytes_sent_per_item_max: sent.iter().copied().fold(0.0, f64::max),
        bytes_sent_per_item_by_party: sent,
        peak_rss_bytes: peak.iter().copied().max().unwrap_or(0),
        peak_rss_bytes_by_party: peak,
        ring_degree: ctx.slots(),
        log_q: budget.log_q,
        flood_bits: budget.flood_bits,
        durable: true,
        tls: true,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// The figure as a line of a table.
pub fn line(f: &HeFigure) -> String {
    format!(
        "he {} {} parties: {} items in {:.2} s = {:.0} items/s; sent per item per party: {} (max {:.1} B); node peak RSS {:.0} MiB",
        f.kind,
        f.parties,
        f.items,
        f.seconds,
        f.items_per_second,
        f.bytes_sent_per_item_by_party
            .iter()
            .map(|b| format!("{b:.1} B"))
            .collect::<Vec<_>>()
            .join(", "),
        f.bytes_sent_per_item_max,
        f.peak_rss_bytes as f64 / (1 << 20) as f64
    )
}
