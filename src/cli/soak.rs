//! `larder bench soak`: a consortium under sustained load for a bounded time. Three party
//! nodes run as processes with TLS; a dealer refills stock whenever it runs low; engines at
//! every party check out and download concurrently, and a sample of checkouts is reconstructed
//! across the parties. Each interval reports round trips, items, latency, each node's
//! resident memory and errors, so a leak or a slowdown shows as a trend.

use crate::cli::bench::LocalNodes;
use larder::generate::Dealer;
use larder::material::{PoolSpec, ShareReader};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the soak runs.
#[derive(Clone, Debug)]
pub struct SoakBench {
    pub dir: std::path::PathBuf,
    pub seconds: u64,
    /// Seconds per reported interval.
    pub interval: u64,
    /// Engines checking out at once (each drives all three parties).
    pub concurrency: usize,
    /// Items per checkout.
    pub items: u64,
    /// Reconstruct every n-th checkout across the parties.
    pub verify_every: u64,
}

/// One interval's figures (`bench: "soak"`; the last line has `summary: true`).
#[derive(Clone, Debug, Serialize)]
pub struct SoakFigure {
    pub bench: &'static str,
    pub summary: bool,
    pub at_seconds: f64,
    pub seconds: f64,
    pub round_trips: u64,
    pub items_per_second: f64,
    pub p50_seconds: f64,
    pub p99_seconds: f64,
    /// Resident memory of each node process at the end of the interval (peak, for the summary).
    pub node_rss_bytes: Vec<u64>,
    pub errors: u64,
    /// Checkouts that waited for the dealer (stock ran out; not an error).
    pub underruns: u64,
    pub reconstructed: u64,
    pub dealt_items: u64,
    pub concurrency: usize,
    pub cores: usize,
    pub version: &'static str,
}

#[derive(Default)]
struct Window {
    latencies: Vec<f64>,
    round_trips: u64,
    errors: u64,
    underruns: u64,
    reconstructed: u64,
}

fn vm_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Runs the soak; `report` gets each interval's figure as it closes, then the summary.
///
/// # Errors
/// Anything that stops the consortium from starting.
pub async fn soak(b: &SoakBench, report: impl Fn(&SoakFigure)) -> anyhow::Result<SoakFigure> {
    let pool: PoolSpec = "triple-z64".parse()?;
    let root = b.dir.join("soak");
    // Reservations expire, settle and leave the hot metadata within the first minutes, so
    // memory is measured with every part of a reservation's life running.
    let nodes = Arc::new(LocalNodes::start(&root, pool, 1 << 18, 30).await?);
    let pids: Vec<u32> = (0..3).map(|p| nodes.pid(p)).collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let window = Arc::new(Mutex::new(Window::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let dealt = Arc::new(AtomicU64::new(0));
    let low = (b.concurrency as u64 * b.items * 200).max(1 << 20);

    // The dealer: refill whenever the leader's stock runs low.
    nodes
        .dealer
        .deal(Dealer::from_os_rng(), pool, 2 * low, |_| {})
        .await?;
    dealt.fetch_add(2 * low, Ordering::Relaxed);
    let dealer = {
        let (nodes, stop, dealt, window) =
            (nodes.clone(), stop.clone(), dealt.clone(), window.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let available = match nodes.engines[0].stock().await {
                    Ok(s) => s.pools.get(&pool).map_or(0, |p| p.available),
                    Err(_) => {
                        window.lock().unwrap().errors += 1;
                        0
                    }
                };
                if available < low {
                    match nodes
                        .dealer
                        .deal(Dealer::from_os_rng(), pool, low, |_| {})
                        .await
                    {
                        Ok(_) => {
                            dealt.fetch_add(low, Ordering::Relaxed);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "soak: dealing failed");
                            window.lock().unwrap().errors += 1;
                        }
                    }
                } else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        })
    };

    // The engines.
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..b.concurrency {
        let (nodes, stop, window, next) =
            (nodes.clone(), stop.clone(), window.clone(), next.clone());
        let (items, verify_every, dir) = (b.items, b.verify_every.max(1), root.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let id = format!("soak-{k}");
                let t0 = Instant::now();
                let asks = futures_util::future::join_all(
                    nodes.engines.iter().map(|e| e.checkout(&id, pool, items)),
                )
                .await;
                if let Some(Err(e)) = asks.iter().find(|a| a.is_err()) {
                    let underrun = e.is(larder::wire::Code::Underrun);
                    if underrun {
                        window.lock().unwrap().underruns += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    } else {
                        tracing::warn!(checkout = %id, error = %e, "soak: checkout failed");
                        window.lock().unwrap().errors += 1;
                    }
                    continue;
                }
                let downloads =
                    futures_util::future::join_all(nodes.engines.iter().map(|e| e.download(&id)))
                        .await;
                let elapsed = t0.elapsed().as_secs_f64();
                let mut ok = true;
                let mut streams = Vec::new();
                for d in downloads {
                    match d {
                        Ok(bytes) if whole(&bytes) => streams.push(bytes),
                        Ok(_) => ok = false,
                        Err(e) => {
                            tracing::warn!(checkout = %id, error = %e, "soak: download failed");
                            ok = false;
                        }
                    }
                }
                let mut reconstructed = false;
                if ok && k % verify_every == 0 {
                    let files: Vec<_> = streams
                        .iter()
                        .enumerate()
                        .map(|(p, s)| {
                            let f = dir.join(format!("{id}-{p}.shares"));
                            std::fs::write(&f, s).map(|_| f)
                        })
                        .collect::<Result<_, _>>()
                        .unwrap_or_default();
                    ok = larder::consortium::verify(&files).is_ok();
                    reconstructed = ok;
                    for f in files {
                        let _ = std::fs::remove_file(f);
                    }
                }
                let mut w = window.lock().unwrap();
                if ok {
                    w.round_trips += 1;
                    w.latencies.push(elapsed);
                    w.reconstructed += u64::from(reconstructed);
                } else {
                    w.errors += 1;
                }
            }
        }));
    }

    // The reporter.
    let start = Instant::now();
    let mut all_latencies = Vec::new();
    let mut total = Window::default();
    let mut peak_rss = vec![0u64; 3];
    let mut last = start;
    let deadline = start + Duration::from_secs(b.seconds);
    while Instant::now() < deadline {
        let until = (last + Duration::from_secs(b.interval.max(1))).min(deadline);
        tokio::time::sleep_until(until.into()).await;
        let now = Instant::now();
        let mut w = std::mem::take(&mut *window.lock().unwrap());
        w.latencies.sort_by(f64::total_cmp);
        let rss: Vec<u64> = pids.iter().map(|&p| vm_rss(p)).collect();
        for (peak, r) in peak_rss.iter_mut().zip(&rss) {
            *peak = (*peak).max(*r);
        }
        let seconds = (now - last).as_secs_f64();
        let f = SoakFigure {
            bench: "soak",
            summary: false,
            at_seconds: (now - start).as_secs_f64(),
            seconds,
            round_trips: w.round_trips,
            items_per_second: (w.round_trips * b.items) as f64 / seconds,
            p50_seconds: quantile(&w.latencies, 0.5),
            p99_seconds: quantile(&w.latencies, 0.99),
            node_rss_bytes: rss,
            errors: w.errors,
            underruns: w.underruns,
            reconstructed: w.reconstructed,
            dealt_items: dealt.load(Ordering::Relaxed),
            concurrency: b.concurrency,
            cores,
            version: env!("CARGO_PKG_VERSION"),
        };
        report(&f);
        all_latencies.extend(w.latencies);
        total.round_trips += w.round_trips;
        total.errors += w.errors;
        total.underruns += w.underruns;
        total.reconstructed += w.reconstructed;
        last = now;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let _ = dealer.await;
    // Work that finished after the last interval closed.
    let tail = std::mem::take(&mut *window.lock().unwrap());
    total.errors += tail.errors;
    all_latencies.sort_by(f64::total_cmp);
    let seconds = start.elapsed().as_secs_f64();
    let summary = SoakFigure {
        bench: "soak",
        summary: true,
        at_seconds: seconds,
        seconds,
        round_trips: total.round_trips,
        items_per_second: (total.round_trips * b.items) as f64 / seconds,
        p50_seconds: quantile(&all_latencies, 0.5),
        p99_seconds: quantile(&all_latencies, 0.99),
        node_rss_bytes: peak_rss,
        errors: total.errors,
        underruns: total.underruns,
        reconstructed: total.reconstructed,
        dealt_items: dealt.load(Ordering::Relaxed),
        concurrency: b.concurrency,
        cores,
        version: env!("CARGO_PKG_VERSION"),
    };
    drop(Arc::try_unwrap(nodes).ok());
    let _ = std::fs::remove_dir_all(&root);
    Ok(summary)
}

/// Whether a share stream is complete and intact.
fn whole(bytes: &[u8]) -> bool {
    let Ok(mut r) = ShareReader::new(bytes) else {
        return false;
    };
    loop {
        match r.next_records(1 << 16) {
            Ok(Some(_)) => {}
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

/// A table line per interval, as the soak runs.
pub fn line(f: &SoakFigure) -> String {
    let mib = |b: &u64| format!("{:.0}", *b as f64 / (1 << 20) as f64);
    format!(
        "{:>7.0} {:>9} {:>12.0} {:>8.2} {:>8.2} {:>16} {:>7} {:>9} {:>6}",
        f.at_seconds,
        f.round_trips,
        f.items_per_second,
        f.p50_seconds * 1e3,
        f.p99_seconds * 1e3,
        f.node_rss_bytes
            .iter()
            .map(mib)
            .collect::<Vec<_>>()
            .join("/"),
        f.errors,
        f.underruns,
        f.reconstructed
    )
}

/// The table's header.
pub fn header() -> String {
    format!(
        "{:>7} {:>9} {:>12} {:>8} {:>8} {:>16} {:>7} {:>9} {:>6}",
        "t (s)",
        "checkouts",
        "items/s",
        "p50 ms",
        "p99 ms",
        "node RSS MiB",
        "errors",
        "underruns",
        "verified"
    )
}
