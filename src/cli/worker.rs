//! `larder dealer --worker`: a long-lived dealer that pulls pieces of generation jobs from the
//! leader, and `larder jobs`: operators create, list and cancel jobs.

use anyhow::{Context, Result};
use larder::cluster::{DealerClient, PeerMetrics};
use larder::generate::Dealer;
use larder::material::PoolSpec;
use larder::node::config::ConsortiumConfig;
use larder::wire::{Code, Job, JobRequest};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long a worker with nothing to do waits before asking again.
const IDLE_POLL: Duration = Duration::from_secs(2);

/// A dealer worker for `larder demo`, until the demo stops it; its failure is logged.
pub(crate) async fn work_quietly(consortium: std::path::PathBuf, token_file: std::path::PathBuf) {
    let options = Options {
        name: Some("demo-worker".into()),
        until_idle: false,
        metrics_listen: None,
    };
    if let Err(e) = work(&consortium, &token_file, options).await {
        tracing::warn!(error = %e, "the demo's dealer worker stopped");
    }
}

/// How a worker runs.
pub(crate) struct Options {
    /// Its name in the jobs' records (default: `worker-<pid>`).
    pub name: Option<String>,
    /// Stop once the leader has no live job left.
    pub until_idle: bool,
    /// Where to serve its metrics.
    pub metrics_listen: Option<SocketAddr>,
}

/// A worker's metric families (`larder_worker_*`, and `larder_peer_*` for its calls to the
/// nodes).
struct WorkerMetrics {
    registry: Registry,
    busy: IntGauge,
    pieces: IntCounterVec,
    items: IntCounterVec,
    seconds: HistogramVec,
    peers: Arc<PeerMetrics>,
}

/// How a piece ended, as the `outcome` label.
const OUTCOMES: [&str; 3] = ["committed", "revoked", "failed"];

impl WorkerMetrics {
    fn new(name: &str, pools: &[PoolSpec], peers: &[String]) -> prometheus::Result<Self> {
        let r = Registry::new();
        let info = IntGaugeVec::new(
            Opts::new(
                "larder_worker_info",
                "This worker's build and name; always 1",
            ),
            &["version", "worker"],
        )?;
        r.register(Box::new(info.clone()))?;
        info.with_label_values(&[env!("CARGO_PKG_VERSION"), name])
            .set(1);
        let busy = IntGauge::new("larder_worker_busy", "1 while making a piece, else 0")?;
        r.register(Box::new(busy.clone()))?;
        let pieces = IntCounterVec::new(
            Opts::new(
                "larder_worker_pieces_total",
                "Pieces of generation jobs this worker made, by how they ended (committed; revoked: taken back as too late; failed)",
            ),
            &["outcome"],
        )?;
        r.register(Box::new(pieces.clone()))?;
        let items = IntCounterVec::new(
            Opts::new(
                "larder_worker_items_generated_total",
                "Items of committed pieces this worker made",
            ),
            &["pool"],
        )?;
        r.register(Box::new(items.clone()))?;
        let seconds = HistogramVec::new(
            HistogramOpts::new(
                "larder_worker_piece_duration_seconds",
                "Time to make a piece: generate, stage at every party, commit at the leader",
            )
            .buckets(larder::cluster::LATENCY_BUCKETS.to_vec()),
            &["pool"],
        )?;
        r.register(Box::new(seconds.clone()))?;
        for o in OUTCOMES {
            pieces.with_label_values(&[o]);
        }
        for p in pools {
            items.with_label_values(&[&p.to_string()]);
            seconds.with_label_values(&[&p.to_string()]);
        }
        let peers = Arc::new(PeerMetrics::register(&r, peers)?);
        Ok(WorkerMetrics {
            registry: r,
            busy,
            pieces,
            items,
            seconds,
            peers,
        })
    }

    fn text(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "metrics not encoded");
        }
        out
    }
}

/// Serves `metrics` at `GET /metrics` on `at` until `stop`.
async fn serve_metrics(
    at: SocketAddr,
    metrics: Arc<WorkerMetrics>,
    stop: tokio_util::sync::CancellationToken,
) -> Result<()> {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(at)
        .await
        .with_context(|| format!("cannot serve metrics on {at}"))?;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let m = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        TextEncoder::new().format_type().to_string(),
                    )],
                    m.text(),
                )
            }
        }),
    );
    tracing::info!(addr = %listener.local_addr()?, "worker metrics serving /metrics");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    });
    Ok(())
}

/// Runs a dealer worker until SIGTERM or Ctrl-C (finishing the piece in hand), or, with
/// `until_idle`, until the leader has no live job left.
pub(crate) async fn work(consortium: &Path, token_file: &Path, options: Options) -> Result<()> {
    let Options {
        name,
        until_idle,
        metrics_listen,
    } = options;
    let cluster = ConsortiumConfig::load_nodes(consortium)?;
    let pools = cluster.pools.clone();
    let client = DealerClient::new(cluster, super::commands::read_token(token_file)?)?;
    let name = name.unwrap_or_else(|| format!("worker-{}", std::process::id()));
    let metrics = Arc::new(
        WorkerMetrics::new(&name, &pools, &client.peer_labels()).context("the worker's metrics")?,
    );
    let client = client.observed(&metrics.peers);
    let stop = tokio_util::sync::CancellationToken::new();
    let signal = stop.clone();
    let signalled = larder::node::shutdown_signal();
    tokio::spawn(async move {
        signalled.await;
        signal.cancel();
    });
    if let Some(at) = metrics_listen {
        serve_metrics(at, metrics.clone(), stop.clone()).await?;
    }
    let mut generator = Dealer::from_os_rng();
    let mut made = 0u64;
    tracing::info!(worker = %name, "dealer worker started");
    while !stop.is_cancelled() {
        let next = tokio::select! {
            _ = stop.cancelled() => break,
            n = client.next_piece(&name) => n,
        };
        let piece = match next {
            Ok(n) => match n.piece {
                Some(p) => p,
                None if until_idle && n.live_jobs == 0 => break,
                None => {
                    idle(&stop, IDLE_POLL).await;
                    continue;
                }
            },
            // Wrong credentials or not the leader: no use asking again.
            Err(e) if !e.is_transient() => return Err(e).context("asking the leader for work"),
            Err(e) => {
                tracing::warn!(error = %e, "the leader is unavailable; asking again");
                idle(&stop, IDLE_POLL).await;
                continue;
            }
        };
        metrics.busy.set(1);
        let began = std::time::Instant::now();
        let (g, done) = client.make_piece(generator, &piece).await;
        metrics.busy.set(0);
        generator = g;
        let outcome = match &done {
            Ok(()) => "committed",
            Err(e) if e.code() == Code::PieceRevoked => "revoked",
            Err(_) => "failed",
        };
        metrics.pieces.with_label_values(&[outcome]).inc();
        match done {
            Ok(()) => {
                let pool = piece.pool.to_string();
                metrics
                    .seconds
                    .with_label_values(&[&pool])
                    .observe(began.elapsed().as_secs_f64());
                metrics
                    .items
                    .with_label_values(&[&pool])
                    .inc_by(piece.items);
                made += piece.items;
                tracing::info!(job = piece.job, batch = %piece.batch, items = piece.items, "piece committed");
            }
            Err(e) if e.code() == Code::PieceRevoked => {
                tracing::warn!(job = piece.job, batch = %piece.batch,
                    "the leader took this piece back (too late); asking for another");
            }
            // The leader takes the piece back at its deadline and hands it out again.
            Err(e) => {
                tracing::warn!(job = piece.job, batch = %piece.batch, error = %e,
                    "piece failed; the leader hands it out again after its deadline");
                idle(&stop, IDLE_POLL).await;
            }
        }
    }
    println!("worker {name}: {made} items committed");
    Ok(())
}

async fn idle(stop: &tokio_util::sync::CancellationToken, d: Duration) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}

/// What `larder jobs` does.
pub(crate) enum JobsAction {
    Create {
        pool: PoolSpec,
        count: u64,
        generator: larder::material::Maker,
    },
    List,
    Watch {
        every: Duration,
    },
    Cancel {
        id: u64,
    },
}

/// `larder jobs`: talks to the leader's node with the operators' token.
/// An HTTPS client trusting the consortium's CA, the operators' token and the leader's URL.
fn leader_as_operator(
    consortium: &Path,
    token_file: &Path,
) -> Result<(reqwest::Client, larder::auth::Token, String)> {
    let (cluster, http) = super::commands::consortium_client(consortium)?;
    let token = super::commands::read_token(token_file)?;
    let base = cluster.nodes()[cluster.leader as usize]
        .url
        .trim_end_matches('/')
        .to_string();
    Ok((http, token, base))
}

pub(crate) async fn jobs(consortium: &Path, token_file: &Path, action: JobsAction) -> Result<()> {
    let (http, token, base) = leader_as_operator(consortium, token_file)?;
    let req = match &action {
        JobsAction::Create {
            pool,
            count,
            generator,
        } => http.post(format!("{base}/v1/jobs")).json(&JobRequest {
            pool: *pool,
            count: *count,
            generator: generator.name().into(),
        }),
        JobsAction::List => http.get(format!("{base}/v1/jobs")),
        JobsAction::Watch { every } => {
            use std::io::Write;
            loop {
                let req = http.get(format!("{base}/v1/jobs"));
                let text =
                    super::commands::send_as(req, &token, &format!("the leader at {base}")).await?;
                let jobs: Vec<Job> = serde_json::from_str(&text)?;
                // Clear the screen, then the table: a terminal shows the latest look only.
                print!("\x1b[2J\x1b[H");
                println!(
                    "jobs at {base} (every {:.1} s; Ctrl-C stops)",
                    every.as_secs_f64()
                );
                print_jobs(&jobs);
                std::io::stdout().flush()?;
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                    _ = tokio::time::sleep(*every) => {}
                }
            }
        }
        JobsAction::Cancel { id } => http.delete(format!("{base}/v1/jobs/{id}")),
    };
    let text = super::commands::send_as(req, &token, &format!("the leader at {base}")).await?;
    match action {
        JobsAction::List => {
            let jobs: Vec<Job> = serde_json::from_str(&text)?;
            print_jobs(&jobs);
        }
        _ => print_jobs(&[serde_json::from_str::<Job>(&text)?]),
    }
    Ok(())
}

/// What `larder prss` does.
#[derive(Clone, Copy, Debug)]
pub(crate) enum PrssAction {
    Status,
    Rotate,
    Retire { epoch: u32 },
}

/// `larder prss`: the PRSS keys at the leader, as an operator.
pub(crate) async fn prss(consortium: &Path, token_file: &Path, action: PrssAction) -> Result<()> {
    use larder::wire::{PrssEpoch, PrssStatus, RetiredEpoch};
    let (http, token, base) = leader_as_operator(consortium, token_file)?;
    let req = match action {
        PrssAction::Status => http.get(format!("{base}/v1/prss")),
        PrssAction::Rotate => http.post(format!("{base}/v1/prss/epochs")),
        PrssAction::Retire { epoch } => http.delete(format!("{base}/v1/prss/epochs/{epoch}")),
    };
    let text = super::commands::send_as(req, &token, &format!("the leader at {base}")).await?;
    match action {
        PrssAction::Status => {
            let s: PrssStatus = serde_json::from_str(&text)?;
            let list = |v: &[u32]| {
                if v.is_empty() {
                    "none".to_string()
                } else {
                    v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
                }
            };
            println!(
                "PRSS for {} parties: secure while no {} collude ({}); {} keys per party",
                s.parties,
                s.threshold + 1,
                s.assumption,
                s.keys_per_party
            );
            println!(
                "current epoch: {}",
                s.current_epoch
                    .map_or("none yet (the first PRSS job sets it up)".into(), |e| e
                        .to_string())
            );
            println!("retired epochs: {}", list(&s.retired_epochs));
            println!("keys held at the leader: epochs {}", list(&s.key_epochs));
        }
        PrssAction::Rotate => {
            let e: PrssEpoch = serde_json::from_str(&text)?;
            println!(
                "epoch {} set up: {} keys among {} parties (t = {}); new PRSS batches use it",
                e.epoch, e.key_sets, e.parties, e.threshold
            );
        }
        PrssAction::Retire { .. } => {
            let r: RetiredEpoch = serde_json::from_str(&text)?;
            println!("epoch {} retired: keys destroyed at every party", r.epoch);
            for (p, b) in r.by_party.iter().enumerate() {
                println!(
                    "  party {p}: {} items burned ({} batches, {} reservations not downloaded)",
                    b.items, b.batches, b.reservations
                );
            }
        }
    }
    Ok(())
}

fn print_jobs(jobs: &[Job]) {
    println!(
        "{:>8} {:<18} {:<9} {:<8} {:<10} {:>12} {:<27} {:>6}  error",
        "id", "pool", "generator", "origin", "state", "count", "progress", "pieces"
    );
    for j in jobs {
        println!(
            "{:>8} {:<18} {:<9} {:<8} {:<10} {:>12} {:<27} {:>6}  {}",
            j.id,
            j.pool.to_string(),
            j.generator,
            j.origin.name(),
            format!("{:?}", j.state).to_lowercase(),
            j.count,
            progress_bar(j.made, j.count),
            j.leases.len(),
            j.error.as_deref().unwrap_or("")
        );
    }
}

/// `[#########-----------]  45%`: made of count, 20 cells.
fn progress_bar(made: u64, count: u64) -> String {
    let frac = if count == 0 {
        1.0
    } else {
        (made as f64 / count as f64).min(1.0)
    };
    let full = (frac * 20.0).round() as usize;
    format!(
        "[{}{}] {:>3.0}%",
        "#".repeat(full),
        "-".repeat(20 - full),
        frac * 100.0
    )
}

/// As an operator of the consortium `launch` made: creates the job `req` at the leader and
/// waits until it is done, calling `progress` at each look (every `every`).
///
/// # Errors
/// A refused job, one that failed or was cancelled, or one not done within an hour.
pub(crate) async fn run_job(
    launch: &larder::node::launch::Launch,
    req: &JobRequest,
    every: Duration,
    mut progress: impl FnMut(&Job),
) -> Result<Job> {
    use larder::wire::JobState;
    let http = larder::tls::client(&launch.ca, Duration::from_secs(30))?;
    let leader = &launch.cluster.nodes()[launch.cluster.leader as usize].url;
    let token = launch.prov.operator_token.expose().to_string();
    let started = std::time::Instant::now();
    let r = http
        .post(format!("{leader}/v1/jobs"))
        .bearer_auth(&token)
        .json(req)
        .send()
        .await?;
    anyhow::ensure!(
        r.status().is_success(),
        "creating the job: {}",
        r.text().await?
    );
    let job: Job = r.json().await?;
    loop {
        let j: Job = http
            .get(format!("{leader}/v1/jobs/{}", job.id))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        progress(&j);
        match j.state {
            JobState::Done => return Ok(j),
            JobState::Failed | JobState::Cancelled => {
                anyhow::bail!("job {} ended {:?}: {:?}", j.id, j.state, j.error)
            }
            _ if started.elapsed() > Duration::from_secs(3600) => {
                anyhow::bail!("job {} took over an hour", j.id)
            }
            _ => tokio::time::sleep(every).await,
        }
    }
}
