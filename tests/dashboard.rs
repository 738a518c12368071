//! The dashboard and the alert rules against a real Prometheus: a three-node consortium with
//! metrics listeners and a dealer worker, scraped by `prometheus` (Debian package; `.ci/run`
//! installs it) started on loopback with the repository's scrape configuration and rules.
//! After real generation (the scheduler's floor refill, made by the worker), checkouts,
//! downloads, a refused second download and an underrun, every panel's queries and every
//! alert's expression are evaluated through Prometheus' HTTP API: none may fail, every panel
//! query must return data, and so must every series selector an alert is built from (an
//! alert's own expression is empty while it does not fire, as it should be).
//!
//! The only change to the repository's configuration is timing: scrapes and target refreshes
//! every second instead of every 15 s and minute, so a test run does not wait minutes.

mod common;

use common::monitoring::{alerts, all_panels, dashboard, metric_names, read};
use common::procs::{Harness, POOL};
use larder::schedule::{Level, StockPolicy};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills a process when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The range `$__rate_interval` stands for: Grafana makes it at least four scrape intervals.
const RATE_INTERVAL: &str = "30s";

/// The repository's Prometheus directory, copied to `to` with second-scale timings, and the
/// targets files for `nodes` (by party) and `workers`.
fn prometheus_dir(to: &Path, nodes: &[SocketAddr], workers: &[SocketAddr]) {
    let mut config = read("deploy/prometheus/prometheus.yml");
    for (from, into) in [
        ("scrape_interval: 15s", "scrape_interval: 1s"),
        ("evaluation_interval: 15s", "evaluation_interval: 1s"),
        ("scrape_timeout: 10s", "scrape_timeout: 1s"),
        ("refresh_interval: 1m", "refresh_interval: 1s"),
    ] {
        assert!(
            config.contains(from),
            "prometheus.yml no longer has {from:?}: update this test's timings"
        );
        config = config.replace(from, into);
    }
    std::fs::create_dir_all(to.join("rules")).unwrap();
    std::fs::create_dir_all(to.join("targets")).unwrap();
    std::fs::write(to.join("prometheus.yml"), config).unwrap();
    std::fs::write(
        to.join("rules/larder.rules.yml"),
        read("deploy/prometheus/rules/larder.rules.yml"),
    )
    .unwrap();
    let nodes: Vec<Value> = nodes
        .iter()
        .enumerate()
        .map(|(p, a)| serde_json::json!({"targets": [a.to_string()], "labels": {"party": p.to_string()}}))
        .collect();
    let workers: Vec<Value> = workers
        .iter()
        .map(|a| serde_json::json!({"targets": [a.to_string()]}))
        .collect();
    std::fs::write(
        to.join("targets/nodes.json"),
        serde_json::to_string(&nodes).unwrap(),
    )
    .unwrap();
    std::fs::write(
        to.join("targets/workers.json"),
        serde_json::to_string(&workers).unwrap(),
    )
    .unwrap();
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(to.join("prometheus.yml"))
        .output()
        .expect("promtool (Debian package prometheus)");
    assert!(
        out.status.success(),
        "promtool check config: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Evaluates `query` now: the number of series (or 1 for a scalar), or Prometheus' error.
async fn evaluate(http: &reqwest::Client, at: SocketAddr, query: &str) -> Result<usize, String> {
    let resp = http
        .get(format!("http://{at}/api/v1/query"))
        .query(&[("query", query)])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let body: Value = resp.json().await.map_err(|e| e.to_string())?;
    if body["status"] != "success" {
        return Err(format!("{}: {}", body["errorType"], body["error"]));
    }
    match body["data"]["resultType"].as_str() {
        Some("scalar") | Some("string") => Ok(1),
        _ => Ok(body["data"]["result"].as_array().map_or(0, Vec::len)),
    }
}

/// The series selectors of an expression: each metric name with the label matchers that
/// follow it, such as `larder_jobs{state="failed"}` or `up{job="larder-node"}`.
fn selectors(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut names = metric_names(expr);
    if expr.contains("up{") {
        names.push("up".into());
    }
    for name in names {
        let mut from = 0;
        while let Some(off) = expr[from..].find(&name) {
            let start = from + off;
            let end = start + name.len();
            let boundary_before = !expr[..start]
                .ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':');
            let rest = &expr[end..];
            let boundary_after = !rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
            if boundary_before && boundary_after {
                let sel = match rest.strip_prefix('{').and_then(|r| r.find('}')) {
                    Some(close) => format!("{name}{}", &rest[..=close + 1]),
                    None => name.clone(),
                };
                if !out.contains(&sel) {
                    out.push(sel);
                }
            }
            from = end;
        }
    }
    out
}

/// Waits until Prometheus scrapes `targets` targets successfully.
async fn wait_scraped(http: &reqwest::Client, at: SocketAddr, targets: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if evaluate(http, at, "up == 1").await == Ok(targets) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not scrape {targets} targets within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_and_alert_evaluates_with_data_in_a_real_prometheus() {
    common::monitoring::ensure_prometheus();
    // A stock policy for the pool, so the levels exist and the scheduler refills at once.
    let mut h = Harness::with_plan("info", |p| {
        p.stock = [(
            POOL.parse().unwrap(),
            StockPolicy {
                target: Level::Items(12_000),
                refill_below: Level::Items(8_000),
                floor: Level::Items(4_000),
                generator: None,
                max_workers: None,
            },
        )]
        .into_iter()
        .collect();
        p.schedule_interval_ms = 500;
    });
    let nodes = h.restart_with_metrics();
    h.wait_healthy().await;
    let worker_at = common::free_addr();
    let worker = h.worker_command("w1");
    // Long-lived, as in production: no --until-idle.
    let args: Vec<String> = worker
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .filter(|a| a != "--until-idle")
        .collect();
    let mut w = Command::new(env!("CARGO_BIN_EXE_larder"));
    w.args(&args)
        .args(["--metrics-listen", &worker_at.to_string()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(h.log("worker"));
    let _worker = Killed(w.spawn().unwrap());

    let prom_dir = h.dir.path().join("prometheus");
    prometheus_dir(&prom_dir, &nodes, &[worker_at]);
    let prom_at = common::free_addr();
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                prom_dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                prom_dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={prom_at}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(h.log("prometheus"))
            .spawn()
            .expect("prometheus (Debian package prometheus; .ci/run installs it)"),
    );
    let http = reqwest::Client::new();
    wait_scraped(&http, prom_at, 4).await;
    // The worker's own page passes promtool as the nodes' do (tests/metrics.rs).
    let page = http
        .get(format!("http://{worker_at}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("larder_worker_pieces_total"), "{page}");
    common::monitoring::promtool_check_metrics(&page);

    // The scheduler's floor refill, made by the worker.
    let jobs = h.wait_jobs_over(120).await;
    assert!(
        jobs.as_array()
            .unwrap()
            .iter()
            .any(|j| j["state"] == "done"),
        "{jobs}"
    );
    let pool = POOL.parse().unwrap();
    let engines = h.engines();
    for round in 0..4 {
        for e in &engines {
            let id = format!("d-{round}");
            e.checkout(&id, pool, 700).await.unwrap();
            e.download(&id).await.unwrap();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // A second download (refused reuse) and an underrun.
    assert!(engines[0].download("d-0").await.is_err());
    assert!(engines[1].checkout("huge", pool, 1 << 29).await.is_err());
    // Let the scrapes see it all, and the rate windows hold it.
    tokio::time::sleep(Duration::from_secs(8)).await;

    let mut failures = Vec::new();
    let mut report = Vec::new();
    for panel in all_panels(&dashboard()) {
        let title = panel["title"].as_str().unwrap_or("?");
        for t in panel["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", RATE_INTERVAL);
            match evaluate(&http, prom_at, &expr).await {
                Ok(0) => failures.push(format!("panel {title:?}: no data for {expr}")),
                Ok(n) => report.push(format!("panel {title:?} [{}]: {n} series", t["refId"])),
                Err(e) => failures.push(format!("panel {title:?}: {expr}: {e}")),
            }
        }
    }
    let rules = alerts(&read("deploy/prometheus/rules/larder.rules.yml"));
    assert!(!rules.is_empty());
    for a in &rules {
        match evaluate(&http, prom_at, &a.expr).await {
            Ok(n) => report.push(format!("alert {}: evaluates, {n} firing series", a.name)),
            Err(e) => failures.push(format!("alert {}: {}: {e}", a.name, a.expr)),
        }
        let sels = selectors(&a.expr);
        assert!(
            !sels.is_empty(),
            "alert {}: no selector in {}",
            a.name,
            a.expr
        );
        for s in sels {
            match evaluate(&http, prom_at, &s).await {
                Ok(0) => failures.push(format!("alert {}: no data for {s}", a.name)),
                Ok(n) => report.push(format!("alert {} selector {s}: {n} series", a.name)),
                Err(e) => failures.push(format!("alert {}: {s}: {e}", a.name)),
            }
        }
    }
    // Negative control: a misspelled metric has no data, and the check above would say so.
    assert_eq!(
        evaluate(&http, prom_at, "larder_stock_itemz").await,
        Ok(0),
        "a metric nobody exports must return no data"
    );
    println!("{}", report.join("\n"));
    assert!(
        failures.is_empty(),
        "{} of the dashboard's and alerts' queries failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn selectors_keep_their_label_matchers() {
    assert_eq!(
        selectors(
            "min by (pool) (larder_stock_items{state=\"available\"}) < max by (pool) (larder_stock_level_items{level=\"floor\"})"
        ),
        vec![
            "larder_stock_items{state=\"available\"}",
            "larder_stock_level_items{level=\"floor\"}"
        ]
    );
    assert_eq!(
        selectors("up{job=\"larder-node\"} == 0"),
        vec!["up{job=\"larder-node\"}"]
    );
    assert_eq!(
        selectors("increase(larder_job_duration_seconds_count{state=\"failed\"}[30m]) > 0"),
        vec!["larder_job_duration_seconds_count{state=\"failed\"}"]
    );
}
