//! The operators' monitoring files: the Prometheus scrape configuration, the alert rules and
//! their unit tests pass promtool; the Grafana dashboard is well formed; and every metric name
//! a panel or an alert uses is one the nodes or the dealer workers export.

mod common;

use common::monitoring::{alerts, all_panels, dashboard, metric_names, read, root};
use std::collections::HashSet;
use std::process::Command;

/// Every metric family the party nodes and the dealer workers export.
const FAMILIES: &[&str] = &[
    // Party nodes (job larder-node).
    "larder_build_info",
    "larder_ready",
    "larder_stock_items",
    "larder_stock_level_items",
    "larder_jobs",
    "larder_job_duration_seconds",
    "larder_forecast_seconds_left",
    "larder_forecast_consumption_items_per_second",
    "larder_forecast_generation_items_per_second",
    "larder_store_bytes",
    "larder_disk_free_bytes",
    "larder_disk_size_bytes",
    "larder_checkouts_total",
    "larder_checkout_duration_seconds",
    "larder_items_consumed_total",
    "larder_download_bytes_total",
    "larder_download_duration_seconds",
    "larder_items_generated_total",
    "larder_problems_total",
    "larder_refused_reuse_total",
    "larder_peer_up",
    "larder_peer_request_duration_seconds",
    "larder_peer_request_failures_total",
    "larder_store_flush_duration_seconds",
    "larder_store_flush_group_size",
    // Dealer workers (job larder-worker), which also export the larder_peer_* families.
    "larder_worker_info",
    "larder_worker_busy",
    "larder_worker_pieces_total",
    "larder_worker_items_generated_total",
    "larder_worker_piece_duration_seconds",
];

/// The families of [`FAMILIES`] that are histograms: only these have `_bucket`, `_sum` and
/// `_count` series.
const HISTOGRAMS: &[&str] = &[
    "larder_job_duration_seconds",
    "larder_checkout_duration_seconds",
    "larder_download_duration_seconds",
    "larder_peer_request_duration_seconds",
    "larder_store_flush_duration_seconds",
    "larder_store_flush_group_size",
    "larder_worker_piece_duration_seconds",
];

const DATASOURCE_UID: &str = "larder-prometheus";

fn promtool(args: &[&str]) {
    common::monitoring::ensure_prometheus();
    let out = Command::new("promtool")
        .args(args)
        .current_dir(root())
        .output()
        .expect("promtool (Debian package prometheus; .ci/run installs it)");
    assert!(
        out.status.success(),
        "promtool {}: {}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether `name` is a series name of one of [`FAMILIES`].
fn known(name: &str) -> bool {
    if FAMILIES.contains(&name) {
        return true;
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        name.strip_suffix(suffix)
            .is_some_and(|base| HISTOGRAMS.contains(&base))
    })
}

/// The `larder_*` names in `expr` that no family of [`FAMILIES`] has.
fn unknown_names(expr: &str) -> Vec<String> {
    metric_names(expr)
        .into_iter()
        .filter(|n| !known(n))
        .collect()
}

#[test]
fn prometheus_config_passes_promtool() {
    promtool(&["check", "config", "deploy/prometheus/prometheus.yml"]);
}

#[test]
fn alert_rules_pass_promtool() {
    promtool(&["check", "rules", "deploy/prometheus/rules/larder.rules.yml"]);
}

#[test]
fn alert_rule_unit_tests_pass() {
    promtool(&[
        "test",
        "rules",
        "deploy/prometheus/rules/larder.rules.test.yml",
    ]);
}

#[test]
fn every_alert_is_unit_tested_and_annotated() {
    let rules = alerts(&read("deploy/prometheus/rules/larder.rules.yml"));
    let tests = read("deploy/prometheus/rules/larder.rules.test.yml");
    assert!(rules.len() >= 9, "only {} alerts", rules.len());
    let mut names = HashSet::new();
    for a in &rules {
        assert!(names.insert(a.name.as_str()), "alert {} twice", a.name);
        assert!(!a.expr.is_empty(), "alert {} has no expr", a.name);
        for needed in ["severity:", "summary:", "description:", "$labels"] {
            assert!(a.text.contains(needed), "alert {} lacks {needed}", a.name);
        }
        // One case where it fires and one where it does not, at least.
        let cases = tests
            .lines()
            .filter(|l| l.trim() == format!("alertname: {}", a.name))
            .count();
        assert!(cases >= 2, "alert {} has {cases} unit test cases", a.name);
    }
    for required in [
        "LarderStockBelowFloor",
        "LarderStockRunningOut",
        "LarderNodeDown",
        "LarderPeerUnreachable",
        "LarderDiskNearlyFull",
        "LarderJobFailing",
        "LarderReuseRefused",
        "LarderUnderruns",
        "LarderNotReady",
    ] {
        assert!(names.contains(required), "no alert {required}");
    }
}

#[test]
fn alert_exprs_use_only_exported_metrics() {
    let rules = alerts(&read("deploy/prometheus/rules/larder.rules.yml"));
    for a in &rules {
        let names = metric_names(&a.expr);
        assert!(
            !names.is_empty() || a.expr.contains("up{"),
            "alert {} names no metric: {}",
            a.name,
            a.expr
        );
        let unknown = unknown_names(&a.expr);
        assert!(
            unknown.is_empty(),
            "alert {}: unknown metrics {unknown:?} in {}",
            a.name,
            a.expr
        );
        assert!(
            [" < ", " > ", " == ", " != ", " <= ", " >= "]
                .iter()
                .map(|op| a.expr.matches(op).count())
                .sum::<usize>()
                == 1,
            "alert {}: not `<signal> <comparison> <threshold>` with one comparison: {}",
            a.name,
            a.expr
        );
    }
}

#[test]
fn dashboard_is_well_formed() {
    let d = dashboard();
    assert_eq!(d["uid"], "larder");
    assert_eq!(d["title"], "Larder");
    assert_eq!(d["schemaVersion"], 39);
    assert_eq!(d["refresh"], "30s");
    assert_eq!(d["time"]["from"], "now-6h");
    let variables = d["templating"]["list"].as_array().map_or(0, Vec::len);
    assert_eq!(variables, 0, "the dashboard has template variables");

    let panels = all_panels(&d);
    let mut ids = HashSet::new();
    let mut queries = 0;
    for p in &panels {
        let title = p["title"].as_str().unwrap_or("?");
        let id = p["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("panel {title}: no id"));
        assert!(ids.insert(id), "panel id {id} twice ({title})");
        for k in ["h", "w", "x", "y"] {
            assert!(p["gridPos"][k].is_u64(), "panel {title}: gridPos.{k}");
        }
        if p["type"] == "row" {
            continue;
        }
        let kind = p["type"].as_str().unwrap_or("");
        assert!(
            ["timeseries", "stat", "bargauge"].contains(&kind),
            "panel {title}: type {kind}"
        );
        assert_eq!(
            p["datasource"]["uid"], DATASOURCE_UID,
            "panel {title}: datasource"
        );
        let targets = p["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("panel {title}: no targets"));
        let mut with_expr = 0;
        let mut ref_ids = HashSet::new();
        for t in targets {
            assert_eq!(
                t["datasource"]["uid"], DATASOURCE_UID,
                "panel {title}: target datasource"
            );
            let ref_id = t["refId"].as_str().unwrap_or("");
            assert!(
                !ref_id.is_empty() && ref_ids.insert(ref_id),
                "panel {title}: refId {ref_id:?}"
            );
            assert!(t["legendFormat"].is_string(), "panel {title}: legendFormat");
            let expr = t["expr"].as_str().unwrap_or("").trim();
            if expr.is_empty() {
                continue;
            }
            with_expr += 1;
            queries += 1;
            assert!(
                !expr.replace("$__rate_interval", "").contains('$'),
                "panel {title}: a template variable other than $__rate_interval in {expr}"
            );
            let unknown = unknown_names(expr);
            assert!(
                unknown.is_empty(),
                "panel {title}: unknown metrics {unknown:?} in {expr}"
            );
        }
        assert!(with_expr > 0, "panel {title}: no query");
    }
    assert!(queries >= 20, "only {queries} queries");
}

#[test]
fn dashboard_shows_every_family() {
    let d = dashboard();
    let mut used = HashSet::new();
    for p in all_panels(&d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            for name in metric_names(t["expr"].as_str().unwrap_or("")) {
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|b| HISTOGRAMS.contains(b)))
                    .unwrap_or(&name)
                    .to_string();
                used.insert(base);
            }
        }
    }
    let missing: Vec<_> = FAMILIES.iter().filter(|f| !used.contains(**f)).collect();
    assert!(missing.is_empty(), "no panel shows {missing:?}");
}

#[test]
fn name_checker_rejects_made_up_names() {
    // The negative control: the checks above would pass vacuously if the checker let
    // anything through.
    assert_eq!(
        unknown_names(r#"min by (pool) (larder_stock_itemz{state="available"}) < 10"#),
        ["larder_stock_itemz"]
    );
    // Histogram suffixes only on histograms.
    assert_eq!(unknown_names("larder_jobs_count"), ["larder_jobs_count"]);
    assert_eq!(
        unknown_names("rate(larder_checkouts_total_bucket[5m])"),
        ["larder_checkouts_total_bucket"]
    );
    assert!(unknown_names(
        "histogram_quantile(0.9, sum by (le) (rate(larder_checkout_duration_seconds_bucket[1m])))"
    )
    .is_empty());
    assert!(unknown_names(r#"up{job="larder-node"} == 0"#).is_empty());
    assert_eq!(
        metric_names("larder_disk_free_bytes / larder_disk_size_bytes < 0.1"),
        ["larder_disk_free_bytes", "larder_disk_size_bytes"]
    );
    // A made-up name in an alert is caught too.
    let yaml =
        "groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: larder_redy == 0\n";
    let parsed = alerts(yaml);
    assert_eq!(parsed.len(), 1);
    assert_eq!(parsed[0].expr, "larder_redy == 0");
    assert_eq!(unknown_names(&parsed[0].expr), ["larder_redy"]);
}
