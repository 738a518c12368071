//! `larder bench prss`: the PRSS generator as it runs in production: `parties` party nodes as
//! separate `larder serve` processes on loopback with TLS, one generation job the nodes make
//! themselves (keys set up over their channel, every share staged durably, every batch
//! committed by the leader), then every party checking out and downloading every item at once.
//!
//! PRSS batches hold keys, and their material is computed when it is downloaded (as a dealer's
//! seeded elements are), so both halves are reported: `prss` (made: job created to done) and
//! `prss-serve` (served: every party's download of every item, expanded from its keys). With
//! `--compare-dealer` the same consortium also measures a dealer's material of the pool, made
//! (`dealer-nodes`: dealt over HTTPS into the same nodes, durable) and served (`dealer-serve`),
//! in the same sitting.

use super::bench::{proc_peak_rss, LocalNodes};
use larder::generate::{prss, PartyGenerator};
use larder::material::{Maker, PoolSpec};
use larder::node::config::NodeConfig;
use larder::wire::JobRequest;
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What `larder bench prss` measures.
#[derive(Clone, Debug)]
pub struct PrssBench {
    pub dir: PathBuf,
    pub pool: PoolSpec,
    pub parties: u8,
    pub items: u64,
    pub batch_size: u64,
    pub compare_dealer: bool,
}

/// One figure; one JSON line with `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct PrssFigure {
    /// `prss`, `prss-serve`, `dealer-nodes` or `dealer-serve`.
    pub bench: &'static str,
    pub kind: String,
    pub domain: String,
    pub parties: u8,
    pub items: u64,
    pub batch_size: u64,
    pub seconds: f64,
    pub items_per_second: f64,
    /// Bytes of generator messages each party sends per item (one batch made in-process with
    /// the same code; HTTP and TLS framing not counted). Made figures only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_sent_per_item_by_party: Option<Vec<f64>>,
    /// Bytes of batch files per item, averaged over the parties. Made figures only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_stored_per_item: Option<f64>,
    /// Peak resident memory of the nodes' processes (the largest).
    pub peak_rss_bytes: u64,
    pub durable: bool,
    pub tls: bool,
    pub cores: usize,
    pub version: &'static str,
}

/// Bytes each party sends per item, from one batch of `items` made in-process.
fn bytes_per_item(pool: PoolSpec, parties: u8, items: u64) -> anyhow::Result<Vec<f64>> {
    let generators = prss::ephemeral(parties)?
        .into_iter()
        .map(|g| Box::new(g) as Box<dyn PartyGenerator>)
        .collect();
    Ok(larder::generate::bytes_sent_per_item(
        generators, pool, items,
    )?)
}

/// Bytes of every party's batch files.
fn stored_bytes(nodes: &LocalNodes) -> anyhow::Result<u64> {
    let mut total = 0;
    for n in &nodes.launch().prov.nodes {
        let dir = NodeConfig::load(n)?.data_dir.join("batches");
        for e in std::fs::read_dir(&dir)? {
            total += e?.metadata()?.len();
        }
    }
    Ok(total)
}

/// Every party checks out `items` under `id` and downloads them, all at once; the seconds
/// until the last download ends.
async fn serve_everywhere(
    nodes: &LocalNodes,
    id: &str,
    pool: PoolSpec,
    items: u64,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut all = tokio::task::JoinSet::new();
    for e in nodes.engines.clone() {
        let id = id.to_string();
        all.spawn(async move {
            e.checkout(&id, pool, items).await?;
            e.download_with(&id, |_| Ok(())).await?;
            anyhow::Ok(())
        });
    }
    while let Some(r) = all.join_next().await {
        r??;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// A sample of `pool` reconstructs across the parties.
async fn check_sample(
    nodes: &LocalNodes,
    root: &std::path::Path,
    id: &str,
    pool: PoolSpec,
) -> anyhow::Result<()> {
    let mut files = Vec::new();
    for (i, e) in nodes.engines.iter().enumerate() {
        e.checkout(id, pool, 1000).await?;
        let f = root.join(format!("{id}-{i}.shares"));
        std::fs::write(&f, e.download(id).await?)?;
        files.push(f);
    }
    larder::consortium::verify(&files)?;
    Ok(())
}

/// Runs the bench.
///
/// # Errors
/// A pool PRSS cannot make, a consortium that does not start, a job that fails.
pub async fn prss(b: &PrssBench) -> anyhow::Result<Vec<PrssFigure>> {
    if let Some(why) = larder::material::prss::refusal(&b.pool, b.parties) {
        anyhow::bail!("{why}");
    }
    let root = b.dir.join("prss");
    let sample = 1000;
    let nodes =
        LocalNodes::start_with(&root, b.parties, b.pool, b.batch_size, 3600, |_| {}).await?;
    let pids: Vec<u32> = (0..b.parties as usize).map(|i| nodes.pid(i)).collect();
    let peak = || pids.iter().map(|&p| proc_peak_rss(p)).max().unwrap_or(0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let figure = |bench, items: u64, seconds: f64| PrssFigure {
        bench,
        kind: b.pool.kind.name().into(),
        domain: b.pool.domain.to_string(),
        parties: b.parties,
        items,
        batch_size: b.batch_size,
        seconds,
        items_per_second: items as f64 / seconds,
        bytes_sent_per_item_by_party: None,
        bytes_stored_per_item: None,
        peak_rss_bytes: 0,
        durable: true,
        tls: true,
        cores,
        version: env!("CARGO_PKG_VERSION"),
    };
    let mut figures = Vec::new();

    let t0 = Instant::now();
    let req = JobRequest {
        pool: b.pool,
        count: b.items + sample,
        generator: Maker::Prss.name().into(),
    };
    super::worker::run_job(nodes.launch(), &req, Duration::from_millis(20), |_| {}).await?;
    let made = t0.elapsed().as_secs_f64();
    let stored = stored_bytes(&nodes)? as f64 / (b.items + sample) as f64 / b.parties as f64;
    figures.push(PrssFigure {
        bytes_sent_per_item_by_party: Some(bytes_per_item(
            b.pool,
            b.parties,
            b.batch_size.min(b.items),
        )?),
        bytes_stored_per_item: Some(stored),
        peak_rss_bytes: peak(),
        ..figure("prss", b.items + sample, made)
    });
    check_sample(&nodes, &root, "prss-sample", b.pool).await?;
    let served = serve_everywhere(&nodes, "prss-all", b.pool, b.items).await?;
    figures.push(PrssFigure {
        peak_rss_bytes: peak(),
        ..figure("prss-serve", b.items, served)
    });

    if b.compare_dealer {
        let t0 = Instant::now();
        nodes
            .dealer
            .deal(
                larder::generate::Dealer::from_os_rng(),
                b.pool,
                b.items + sample,
                |_| {},
            )
            .await?;
        let made = t0.elapsed().as_secs_f64();
        let stored = stored_bytes(&nodes)? as f64 / (b.items + sample) as f64 / b.parties as f64;
        figures.push(PrssFigure {
            bytes_stored_per_item: Some(stored),
            peak_rss_bytes: peak(),
            ..figure("dealer-nodes", b.items + sample, made)
        });
        check_sample(&nodes, &root, "dealer-sample", b.pool).await?;
        let served = serve_everywhere(&nodes, "dealer-all", b.pool, b.items).await?;
        figures.push(PrssFigure {
            peak_rss_bytes: peak(),
            ..figure("dealer-serve", b.items, served)
        });
    }
    drop(nodes);
    let _ = std::fs::remove_dir_all(&root);
    Ok(figures)
}

/// The figures as a table.
pub fn table(figures: &[PrssFigure]) -> String {
    let mut out = format!(
        "{:<13} {:<8} {:<7} {:>7} {:>12} {:>9} {:>14} {:>12} {:>22}  node RSS\n",
        "bench",
        "kind",
        "domain",
        "parties",
        "items",
        "seconds",
        "items/s",
        "stored B/it",
        "sent B/it by party"
    );
    for f in figures {
        out += &format!(
            "{:<13} {:<8} {:<7} {:>7} {:>12} {:>9.2} {:>14.0} {:>12} {:>22}  {:.0} MiB\n",
            f.bench,
            f.kind,
            f.domain,
            f.parties,
            f.items,
            f.seconds,
            f.items_per_second,
            f.bytes_stored_per_item
                .map_or("-".into(), |b| format!("{b:.3}")),
            f.bytes_sent_per_item_by_party
                .as_ref()
                .map_or("-".into(), |v| v
                    .iter()
                    .map(|b| format!("{b:.1}"))
                    .collect::<Vec<_>>()
                    .join("/")),
            f.peak_rss_bytes as f64 / (1 << 20) as f64
        );
    }
    out
}
