//! `larder bench`: figures a user can measure on their own hardware, like redis-benchmark or
//! fio. Every figure is measured on real stores on disk; nothing is estimated.

use anyhow::bail;
use larder::consortium::{ConsortiumConfig, LocalConsortium};
use larder::generate::Dealer;
use larder::material::PoolSpec;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `larder bench <what>`, each with its own flags.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Generation into durable stores (the default).
    Dealer {
        /// Items per figure.
        #[arg(long, default_value_t = 10_000_000)]
        items: u64,
        #[arg(long, default_value_t = 3)]
        parties: u8,
        #[arg(long, default_value_t = 1 << 20)]
        batch_size: u64,
        /// Pools to measure (default: triple-z64 and triple-p128).
        #[arg(long = "pool")]
        pools: Vec<PoolSpec>,
        #[command(flatten)]
        out: Output,
    },
    /// Download throughput, round trips and node memory of a TLS consortium.
    Checkout {
        /// Items of the download checkout.
        #[arg(long, default_value_t = 10_000_000)]
        items: u64,
        /// Items of a large download whose node memory is reported (0 skips it).
        #[arg(long, default_value_t = 100_000_000)]
        big_items: u64,
        /// 1000-item checkouts in the latency figure.
        #[arg(long, default_value_t = 2000)]
        jobs: u64,
        /// Engines running at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[command(flatten)]
        out: Output,
    },
    /// The HE generator at party nodes (TLS, durable): items/s, bytes sent, node memory.
    He {
        /// Triples (or squares) to make.
        #[arg(long, default_value_t = 1_000_000)]
        items: u64,
        #[arg(long, default_value_t = 2)]
        parties: u8,
        #[arg(long, default_value_t = 1 << 18)]
        batch_size: u64,
        #[arg(long, default_value = "triple-p60")]
        pool: PoolSpec,
        #[command(flatten)]
        out: Output,
    },
    /// The PRSS generator at party nodes (TLS, durable): made and served items/s, bytes sent
    /// and stored, against a dealer's material in the same sitting.
    Prss {
        /// Items to make and serve.
        #[arg(long, default_value_t = 10_000_000)]
        items: u64,
        #[arg(long, default_value_t = 3)]
        parties: u8,
        #[arg(long, default_value_t = 1 << 20)]
        batch_size: u64,
        #[arg(long, default_value = "triple-z64")]
        pool: PoolSpec,
        /// Also measure a dealer's material of the pool in the same nodes.
        #[arg(long)]
        compare_dealer: bool,
        #[command(flatten)]
        out: Output,
    },
    /// Sustained generation and checkouts at every party.
    Soak {
        /// Engines running at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// How long to run.
        #[arg(long, default_value_t = 600)]
        seconds: u64,
        /// Seconds per reported interval.
        #[arg(long, default_value_t = 30)]
        interval: u64,
        #[command(flatten)]
        out: Output,
    },
}

/// Where the temporary stores go and how figures are printed.
#[derive(Debug, clap::Args)]
pub struct Output {
    /// Directory for the temporary stores (on the disk you want to measure).
    #[arg(long, default_value = "larder-bench")]
    dir: PathBuf,
    /// One JSON object per figure instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs `larder bench`; no subcommand is the dealer figures with their defaults.
///
/// # Errors
/// The benchmark's failures; a soak that saw errors.
pub fn run(what: Option<BenchCommand>) -> anyhow::Result<()> {
    let what = what.unwrap_or(BenchCommand::Dealer {
        items: 10_000_000,
        parties: 3,
        batch_size: 1 << 20,
        pools: Vec::new(),
        out: Output {
            dir: "larder-bench".into(),
            json: false,
        },
    });
    match what {
        BenchCommand::Dealer {
            items,
            parties,
            batch_size,
            pools,
            out,
        } => {
            let pools = if pools.is_empty() {
                vec!["triple-z64".parse()?, "triple-p128".parse()?]
            } else {
                pools
            };
            std::fs::create_dir_all(&out.dir)?;
            let mut figures = Vec::new();
            for pool in pools {
                let f = dealer(&out.dir, pool, parties, items, batch_size)?;
                if out.json {
                    println!("{}", serde_json::to_string(&f)?);
                }
                figures.push(f);
            }
            let _ = std::fs::remove_dir(&out.dir);
            if !out.json {
                print!("{}", table(&figures));
            }
        }
        BenchCommand::Checkout {
            items,
            big_items,
            jobs,
            concurrency,
            out,
        } => {
            let b = CheckoutBench {
                dir: out.dir.clone(),
                download_items: items,
                big_items,
                jobs,
                concurrency,
            };
            let figures = super::commands::runtime()?.block_on(checkout(&b))?;
            let _ = std::fs::remove_dir(&out.dir);
            if out.json {
                for f in &figures {
                    println!("{}", serde_json::to_string(f)?);
                }
            } else {
                print!("{}", checkout_table(&figures));
            }
        }
        BenchCommand::He {
            items,
            parties,
            batch_size,
            pool,
            out,
        } => {
            let b = super::bench_he::HeBench {
                dir: out.dir.clone(),
                pool,
                parties,
                items,
                batch_size,
            };
            let f = super::commands::runtime()?.block_on(super::bench_he::he(&b))?;
            let _ = std::fs::remove_dir(&out.dir);
            if out.json {
                println!("{}", serde_json::to_string(&f)?);
            } else {
                println!("{}", super::bench_he::line(&f));
            }
        }
        BenchCommand::Prss {
            items,
            parties,
            batch_size,
            pool,
            compare_dealer,
            out,
        } => {
            let b = super::bench_prss::PrssBench {
                dir: out.dir.clone(),
                pool,
                parties,
                items,
                batch_size,
                compare_dealer,
            };
            let figures = super::commands::runtime()?.block_on(super::bench_prss::prss(&b))?;
            let _ = std::fs::remove_dir(&out.dir);
            if out.json {
                for f in &figures {
                    println!("{}", serde_json::to_string(f)?);
                }
            } else {
                print!("{}", super::bench_prss::table(&figures));
            }
        }
        BenchCommand::Soak {
            concurrency,
            seconds,
            interval,
            out,
        } => {
            use super::soak;
            let b = soak::SoakBench {
                dir: out.dir.clone(),
                seconds,
                interval,
                concurrency,
                items: 1000,
                verify_every: 50,
            };
            let json = out.json;
            if !json {
                println!(
                    "soak: {seconds} s, {concurrency} engines, 1000-triple checkouts at all 3 parties (TLS), {} cores",
                    std::thread::available_parallelism().map_or(1, |n| n.get())
                );
                println!("{}", soak::header());
            }
            let report = |f: &soak::SoakFigure| {
                if json {
                    println!("{}", serde_json::to_string(f).expect("figures serialize"));
                } else {
                    println!("{}", soak::line(f));
                }
            };
            let summary = super::commands::runtime()?.block_on(soak::soak(&b, report))?;
            let _ = std::fs::remove_dir(&out.dir);
            if json {
                println!("{}", serde_json::to_string(&summary)?);
            } else {
                println!("{}\n{}", "-".repeat(88), soak::line(&summary));
                println!("(last line: the whole run; node RSS is each node's peak)");
            }
            if summary.errors > 0 {
                bail!("the soak saw {} errors", summary.errors);
            }
        }
    }
    Ok(())
}

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
    vm_hwm("/proc/self/status")
}

/// VmHWM from a `/proc/<pid>/status` file, in bytes (0 where unavailable).
fn vm_hwm(status_path: &str) -> u64 {
    let status = std::fs::read_to_string(status_path).unwrap_or_default();
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
    let config = ConsortiumConfig::local("bench", parties, 0, batch_size, vec![pool]);
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

/// One measured figure of the checkout benches; printed as one JSON line with `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct CheckoutFigure {
    /// `checkout-download` or `checkout-latency`.
    pub bench: &'static str,
    pub kind: String,
    pub domain: String,
    pub parties: u8,
    /// Items per checkout.
    pub items: u64,
    pub seconds: f64,
    pub items_per_second: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_second: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_seconds: Option<f64>,
    /// Concurrent engines (latency bench).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// Checkouts measured (latency bench).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jobs: Option<u64>,
    /// Peak resident memory of the serving node's process during the figure.
    pub node_peak_rss_bytes: u64,
    pub tls: bool,
    pub cores: usize,
    pub version: &'static str,
}

/// What the checkout bench measures.
#[derive(Clone, Debug)]
pub struct CheckoutBench {
    pub dir: std::path::PathBuf,
    /// Items of the download-throughput checkout (triples over Z_2^64).
    pub download_items: u64,
    /// Items of a second, large download whose node memory is reported (0 to skip).
    pub big_items: u64,
    /// Checkouts in the latency figure, and engines running them at once.
    pub jobs: u64,
    pub concurrency: usize,
}

pub(crate) fn proc_peak_rss(pid: u32) -> u64 {
    vm_hwm(&format!("/proc/{pid}/status"))
}

/// Three party nodes running as separate `larder serve` processes on loopback with TLS,
/// keeping stock of one pool, with clients for their engines and the dealer; the processes
/// are killed when this is dropped.
pub(crate) struct LocalNodes {
    nodes: larder::node::launch::Processes,
    pub engines: Vec<larder::client::EngineClient>,
    pub dealer: larder::cluster::DealerClient,
}

impl LocalNodes {
    /// Provisions a three-party consortium under `root` (replacing it) and starts its nodes.
    pub async fn start(
        root: &std::path::Path,
        pool: PoolSpec,
        batch_size: u64,
        ttl: u64,
    ) -> anyhow::Result<LocalNodes> {
        Self::start_with(root, 3, pool, batch_size, ttl, |_| {}).await
    }

    /// As [`LocalNodes::start`] with `parties` parties and the plan adjusted by `adjust`.
    pub async fn start_with(
        root: &std::path::Path,
        parties: u8,
        pool: PoolSpec,
        batch_size: u64,
        ttl: u64,
        adjust: impl FnOnce(&mut larder::node::provision::Plan),
    ) -> anyhow::Result<LocalNodes> {
        use larder::node::launch::Processes;
        use larder::node::provision::Plan;
        if root.exists() {
            std::fs::remove_dir_all(root)?;
        }
        std::fs::create_dir_all(root)?;
        let mut plan = Plan {
            batch_size,
            reservation_ttl_seconds: ttl,
            archive_after_seconds: 2 * ttl,
            ..Plan::local("bench", parties, vec![pool])
        };
        adjust(&mut plan);
        let mut nodes = Processes::provision(root, plan, &std::env::current_exe()?)?;
        nodes
            .start_all(|_, c| {
                c.env("RUST_LOG", "warn")
                    .stdout(std::process::Stdio::null());
            })
            .await?;
        let engines = nodes.launch.engines()?;
        let dealer = nodes.launch.dealer()?;
        Ok(LocalNodes {
            nodes,
            engines,
            dealer,
        })
    }

    /// The consortium's files and addresses.
    pub fn launch(&self) -> &larder::node::launch::Launch {
        &self.nodes.launch
    }

    /// The process id of party `p`'s node.
    pub fn pid(&self, p: usize) -> u32 {
        self.nodes.pid(p).expect("the nodes run until dropped")
    }
}

/// Runs three party nodes as separate `larder serve` processes on loopback with TLS, deals
/// triples, and measures download throughput from one node, checkout round trips under
/// concurrent engines, and the node's memory while it streams a large checkout.
///
/// # Errors
/// Anything that stops the consortium from running.
pub async fn checkout(b: &CheckoutBench) -> anyhow::Result<Vec<CheckoutFigure>> {
    let root = b.dir.join("checkout");
    let pool: PoolSpec = "triple-z64".parse()?;
    let nodes = LocalNodes::start(&root, pool, 1 << 20, 3600).await?;
    let (engines, dealer) = (&nodes.engines, &nodes.dealer);
    let per_task = b.jobs / b.concurrency.max(1) as u64;
    let stock = b.download_items + per_task * b.concurrency as u64 * 1000 + b.big_items;
    dealer
        .deal(Dealer::from_os_rng(), pool, stock, |_| {})
        .await?;
    let node0 = nodes.pid(0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut figures = Vec::new();

    let download = |id: String, items: u64| {
        let e = engines[0].clone();
        async move {
            e.checkout(&id, pool, items).await?;
            let _ = std::fs::write(format!("/proc/{node0}/clear_refs"), "5");
            let start = Instant::now();
            let bytes = e.download_with(&id, |_| Ok(())).await?;
            anyhow::Ok((start.elapsed().as_secs_f64(), bytes))
        }
    };
    let figure = |bench, items: u64, seconds: f64| CheckoutFigure {
        bench,
        kind: pool.kind.to_string(),
        domain: pool.domain.to_string(),
        parties: 3,
        items,
        seconds,
        items_per_second: items as f64 / seconds,
        bytes_per_second: None,
        p50_seconds: None,
        p99_seconds: None,
        concurrency: None,
        jobs: None,
        node_peak_rss_bytes: proc_peak_rss(node0),
        tls: true,
        cores,
        version: env!("CARGO_PKG_VERSION"),
    };
    if b.download_items > 0 {
        let (seconds, bytes) = download("bench-download".into(), b.download_items).await?;
        figures.push(CheckoutFigure {
            bytes_per_second: Some(bytes as f64 / seconds),
            ..figure("checkout-download", b.download_items, seconds)
        });
    }
    if b.big_items > 0 {
        let (seconds, bytes) = download("bench-big".into(), b.big_items).await?;
        figures.push(CheckoutFigure {
            bytes_per_second: Some(bytes as f64 / seconds),
            ..figure("checkout-download", b.big_items, seconds)
        });
    }
    if per_task > 0 {
        let _ = std::fs::write(format!("/proc/{node0}/clear_refs"), "5");
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..b.concurrency {
            let engines = engines.clone();
            tasks.spawn(async move {
                let mut lat = Vec::new();
                for k in 0..per_task {
                    let id = format!("lat-{t}-{k}");
                    let t0 = Instant::now();
                    engines[t % 3].checkout(&id, pool, 1000).await?;
                    let downloads = futures_util::future::join_all(
                        engines.iter().map(|e| e.download_with(&id, |_| Ok(()))),
                    )
                    .await;
                    for d in downloads {
                        d?;
                    }
                    lat.push(t0.elapsed().as_secs_f64());
                }
                anyhow::Ok(lat)
            });
        }
        let mut all = Vec::new();
        while let Some(r) = tasks.join_next().await {
            all.extend(r??);
        }
        let seconds = start.elapsed().as_secs_f64();
        all.sort_by(f64::total_cmp);
        let q = |f: f64| all[((all.len() as f64 * f).ceil() as usize).clamp(1, all.len()) - 1];
        let jobs = all.len() as u64;
        figures.push(CheckoutFigure {
            items_per_second: (jobs * 1000) as f64 / seconds,
            p50_seconds: Some(q(0.50)),
            p99_seconds: Some(q(0.99)),
            concurrency: Some(b.concurrency),
            jobs: Some(jobs),
            ..figure("checkout-latency", 1000, seconds)
        });
    }
    drop(nodes);
    std::fs::remove_dir_all(&root)?;
    Ok(figures)
}

/// A readable table of checkout figures.
pub fn checkout_table(figures: &[CheckoutFigure]) -> String {
    let mut s = format!(
        "{:<18} {:>12} {:>9} {:>12} {:>10} {:>10} {:>10} {:>12}\n",
        "bench", "items", "seconds", "items/s", "MB/s", "p50 ms", "p99 ms", "node RSS"
    );
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2}", v * 1e3));
    for f in figures {
        s += &format!(
            "{:<18} {:>12} {:>9.3} {:>11.2}M {:>10} {:>10} {:>10} {:>9.1}MiB\n",
            f.bench,
            f.items,
            f.seconds,
            f.items_per_second / 1e6,
            f.bytes_per_second
                .map_or("-".to_string(), |b| format!("{:.0}", b / 1e6)),
            ms(f.p50_seconds),
            ms(f.p99_seconds),
            f.node_peak_rss_bytes as f64 / (1 << 20) as f64
        );
    }
    if let Some(f) = figures.first() {
        s += &format!("larder {} on {} cores; three nodes as separate processes on loopback, TLS; triples over {}\n", f.version, f.cores, f.domain);
    }
    s
}
