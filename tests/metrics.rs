//! Every node's `/metrics` after real work (a dealer job, checkouts and downloads at every
//! party, a refused second download): `promtool check metrics` passes on each, every series is
//! there from start-up, and the counts match what was done.

mod common;

use common::procs::{Harness, POOL};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;

fn scrape(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let body = out.split_once("\r\n\r\n")?.1.to_string();
    Some(body)
}

/// The value of the series `name{labels}` (labels exactly as printed).
fn value(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {series}:\n{page}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_nodes_metrics_pass_promtool_and_count_what_was_done() {
    common::monitoring::ensure_prometheus();
    let mut h = Harness::new("info");
    // Each node again, with its metrics listener.
    let at = h.restart_with_metrics();
    h.wait_healthy().await;
    let count = 5000;
    let id = h.create_job(count).await;
    let worker = h
        .worker_command("m")
        .stdout(Stdio::null())
        .stderr(h.log("dealer"))
        .spawn()
        .unwrap();
    let out = tokio::task::spawn_blocking(move || worker.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success());
    let jobs = h.wait_jobs_over(30).await;
    assert_eq!(jobs[0]["state"], "done", "job {id}: {jobs}");
    let pool = POOL.parse().unwrap();
    let engines = h.engines();
    for e in &engines {
        e.checkout("m-1", pool, 1200).await.unwrap();
        e.download("m-1").await.unwrap();
    }
    // A second download at party 0 is refused (410 already-consumed).
    assert!(engines[0].download("m-1").await.is_err());
    for (p, addr) in at.iter().enumerate() {
        let page = scrape(*addr).expect("a metrics listener");
        common::monitoring::promtool_check_metrics(&page);
        let pool = format!("pool=\"{POOL}\"");
        assert_eq!(
            value(&page, &format!("larder_items_consumed_total{{{pool}}}")),
            1200.0,
            "party {p}"
        );
        assert_eq!(
            value(
                &page,
                &format!("larder_items_generated_total{{generator=\"dealer\",{pool}}}")
            ),
            count as f64,
            "party {p}"
        );
        assert_eq!(
            value(&page, &format!("larder_checkouts_total{{{pool}}}")),
            1.0
        );
        assert_eq!(
            value(
                &page,
                &format!("larder_stock_items{{{pool},state=\"available\"}}")
            ),
            (count - 1200) as f64
        );
        assert!(value(&page, "larder_disk_free_bytes") > 0.0);
        assert!(value(&page, "larder_store_bytes") > 0.0);
        assert!(value(&page, &format!("larder_download_bytes_total{{{pool}}}")) > 0.0);
        let reused = value(
            &page,
            "larder_refused_reuse_total{code=\"already-consumed\"}",
        );
        assert_eq!(reused, if p == 0 { 1.0 } else { 0.0 }, "party {p}");
        // Series created at start-up, whatever happened.
        assert!(
            page.contains("larder_problems_total{code=\"underrun\"} 0"),
            "{page}"
        );
        assert!(
            page.contains("larder_forecast_seconds_left{pool=\"triple-p60\"} inf"),
            "{page}"
        );
        if p == 0 {
            assert_eq!(value(&page, "larder_jobs{state=\"done\"}"), 1.0);
            assert_eq!(
                value(
                    &page,
                    "larder_job_duration_seconds_count{generator=\"dealer\",state=\"done\"}"
                ),
                1.0
            );
        }
        // Every other node has answered (the probes), so the node is ready.
        assert_eq!(value(&page, "larder_ready"), 1.0, "party {p}");
        let peers: Vec<&str> = page
            .lines()
            .filter(|l| l.starts_with("larder_peer_up{"))
            .collect();
        assert_eq!(peers.len(), 2, "party {p}: {peers:?}");
        assert!(peers.iter().all(|l| l.ends_with(" 1")), "{peers:?}");
        // Every change was made durable by some flush, each serving one or more callers.
        let flushes = value(&page, "larder_store_flush_duration_seconds_count");
        assert!(flushes > 0.0, "party {p}");
        assert!(value(&page, "larder_store_flush_group_size_sum") >= flushes);
        assert!(value(&page, "larder_disk_size_bytes") >= value(&page, "larder_disk_free_bytes"));
    }
}
