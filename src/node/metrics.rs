//! The node's metrics: `GET /metrics` in Prometheus' text format, on a listener of its own
//! (plain HTTP, loopback unless configured otherwise: `[metrics] listen` in the node file).
//!
//! Naming follows Prometheus practice: the `larder_` prefix, base units (`_seconds`,
//! `_bytes`), `_total` on counters, and labels from small fixed sets (pool, state, generator,
//! code; never a batch or checkout id). Every series is created when the node starts, so none
//! goes missing from a scrape. Stock, jobs, the forecast and the disk are read at scrape time;
//! requests are counted as they are answered (the `observe` middleware around the API).

use super::NodeState;
use crate::cluster::PeerMetrics;
use crate::material::{Maker, PoolSpec};
use crate::schedule::StockPolicy;
use crate::wire::{Code, Job, JobState};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// Stock states reported per pool.
const STATES: [&str; 4] = ["available", "staged", "reserved", "consumed"];
/// A stock policy's levels, as `level` labels.
const LEVELS: [&str; 3] = ["target", "refill_below", "floor"];
/// Problems that are refused attempts to use material twice.
pub const REUSE: [Code; 4] = [
    Code::AlreadyConsumed,
    Code::CheckoutConflict,
    Code::CheckoutBurned,
    Code::CheckoutReleased,
];
use crate::cluster::LATENCY_BUCKETS as BUCKETS;
/// Job duration buckets (seconds): 1 s to about 18 hours.
const JOB_BUCKETS: [f64; 12] = [
    1.0, 4.0, 15.0, 60.0, 240.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 65536.0,
];
/// Flush group sizes (callers served by one flush).
const GROUP_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// This node's metric families.
pub struct Metrics {
    registry: Registry,
    ready: IntGauge,
    stock: IntGaugeVec,
    levels: IntGaugeVec,
    jobs: IntGaugeVec,
    job_seconds: HistogramVec,
    seconds_left: GaugeVec,
    per_second: GaugeVec,
    made_per_second: GaugeVec,
    store_bytes: IntGauge,
    disk_free: IntGauge,
    disk_size: IntGauge,
    flush_seconds: Histogram,
    flush_group: Histogram,
    /// Calls to the other nodes (`larder_peer_*`).
    pub(crate) peers: Arc<PeerMetrics>,
    pub(crate) checkouts: IntCounterVec,
    pub(crate) checkout_seconds: HistogramVec,
    pub(crate) consumed: IntCounterVec,
    pub(crate) download_bytes: IntCounterVec,
    pub(crate) download_seconds: HistogramVec,
    pub(crate) generated: IntCounterVec,
    problems: IntCounterVec,
    reuse: IntCounterVec,
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

fn float_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels).expect("static metric");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn histogram_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()),
        labels,
    )
    .expect("static metric");
    r.register(Box::new(h.clone())).expect("registered once");
    h
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
        .expect("static metric");
    r.register(Box::new(h.clone())).expect("registered once");
    h
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("static metric");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

impl Metrics {
    /// The families of a node of `party` keeping `pools` (with stock `policies`), which
    /// calls the nodes labelled `peers`.
    ///
    /// # Panics
    /// Never: the families' names and labels are static and valid.
    pub fn new(
        pools: &[PoolSpec],
        (party, parties): (u8, u8),
        policies: &BTreeMap<PoolSpec, StockPolicy>,
        peers: &[String],
    ) -> Self {
        let r = Registry::new();
        let build = gauge_vec(
            &r,
            "larder_build_info",
            "This node's build and party; always 1",
            &["version", "party"],
        );
        build
            .with_label_values(&[env!("CARGO_PKG_VERSION"), &party.to_string()])
            .set(1);
        let m = Metrics {
            ready: gauge(
                &r,
                "larder_ready",
                "1 once this node's store is open and every other party's node has answered",
            ),
            levels: gauge_vec(
                &r,
                "larder_stock_level_items",
                "A pool's stock policy in items at the forecast rate: target, refill_below, floor (the leader's; 0 elsewhere)",
                &["pool", "level"],
            ),
            job_seconds: {
                let h = HistogramVec::new(
                    HistogramOpts::new(
                        "larder_job_duration_seconds",
                        "Generation jobs from their first piece to their end, by generator and how they ended (at the leader)",
                    )
                    .buckets(JOB_BUCKETS.to_vec()),
                    &["generator", "state"],
                )
                .expect("static metric");
                r.register(Box::new(h.clone())).expect("registered once");
                h
            },
            disk_size: gauge(
                &r,
                "larder_disk_size_bytes",
                "Bytes in all on the file system of this party's store",
            ),
            flush_seconds: histogram(
                &r,
                "larder_store_flush_duration_seconds",
                "Group-commit flushes of this party's store: sled's flush and the fdatasync after it",
                &BUCKETS,
            ),
            flush_group: histogram(
                &r,
                "larder_store_flush_group_size",
                "Changes made durable by one group-commit flush (callers that shared it)",
                &GROUP_BUCKETS,
            ),
            peers: Arc::new(PeerMetrics::register(&r, peers).expect("static metric")),
            stock: gauge_vec(
                &r,
                "larder_stock_items",
                "Items of each pool at this party, by state",
                &["pool", "state"],
            ),
            jobs: gauge_vec(
                &r,
                "larder_jobs",
                "Generation jobs kept at this node (the leader), by state",
                &["state"],
            ),
            seconds_left: float_vec(
                &r,
                "larder_forecast_seconds_left",
                "Seconds the available items last at the forecast rate (the leader's; +Inf while nothing is consumed)",
                &["pool"],
            ),
            per_second: float_vec(
                &r,
                "larder_forecast_consumption_items_per_second",
                "Forecast consumption, exponentially weighted (the leader's)",
                &["pool"],
            ),
            made_per_second: float_vec(
                &r,
                "larder_forecast_generation_items_per_second",
                "Generation, weighted as the forecast's consumption is (the leader's; 0 elsewhere)",
                &["pool"],
            ),
            store_bytes: gauge(&r, "larder_store_bytes", "Bytes this party's store occupies on disk"),
            disk_free: gauge(
                &r,
                "larder_disk_free_bytes",
                "Bytes free on the file system of this party's store",
            ),
            checkouts: counter_vec(
                &r,
                "larder_checkouts_total",
                "Checkouts this node answered for its engines",
                &["pool"],
            ),
            checkout_seconds: histogram_vec(
                &r,
                "larder_checkout_duration_seconds",
                "Time to answer an engine's checkout (reserved at every party)",
                &["pool"],
            ),
            consumed: counter_vec(
                &r,
                "larder_items_consumed_total",
                "Items this party's engines downloaded (consumed here)",
                &["pool"],
            ),
            download_bytes: counter_vec(
                &r,
                "larder_download_bytes_total",
                "Bytes of share streams served to this party's engines",
                &["pool"],
            ),
            download_seconds: histogram_vec(
                &r,
                "larder_download_duration_seconds",
                "Time from a download's request until its shares are consumed durably and start to flow",
                &["pool"],
            ),
            generated: counter_vec(
                &r,
                "larder_items_generated_total",
                "Items made available at this party, by the generator that made them",
                &["pool", "generator"],
            ),
            problems: counter_vec(
                &r,
                "larder_problems_total",
                "Error answers of this node's API, by problem code",
                &["code"],
            ),
            reuse: counter_vec(
                &r,
                "larder_refused_reuse_total",
                "Refused attempts to use material twice (second downloads, reused checkout ids), by code",
                &["code"],
            ),
            registry: r,
        };
        for pool in pools {
            let p = pool.to_string();
            for state in STATES {
                m.stock.with_label_values(&[&p, state]).set(0);
            }
            m.seconds_left.with_label_values(&[&p]).set(f64::INFINITY);
            m.per_second.with_label_values(&[&p]).set(0.0);
            m.made_per_second.with_label_values(&[&p]).set(0.0);
            m.checkouts.with_label_values(&[&p]);
            m.checkout_seconds.with_label_values(&[&p]);
            m.consumed.with_label_values(&[&p]);
            m.download_bytes.with_label_values(&[&p]);
            m.download_seconds.with_label_values(&[&p]);
            for g in Maker::ALL {
                if crate::generate::can_make(g, pool, parties) {
                    m.generated.with_label_values(&[&p, g.name()]);
                }
            }
        }
        for s in JobState::ALL {
            m.jobs.with_label_values(&[s.name()]).set(0);
        }
        for pool in policies.keys().filter(|p| pools.contains(p)) {
            for level in LEVELS {
                m.levels.with_label_values(&[&pool.to_string(), level]);
            }
        }
        for g in Maker::ALL {
            for s in JobState::ALL.iter().filter(|s| !s.is_live()) {
                m.job_seconds.with_label_values(&[g.name(), s.name()]);
            }
        }
        for c in Code::ALL {
            m.problems.with_label_values(&[c.as_str()]);
        }
        for c in REUSE {
            m.reuse.with_label_values(&[c.as_str()]);
        }
        m
    }

    /// What the store tells of each flush: the callers it served and how long it took. It
    /// holds the histograms only (never the node's state, which holds the store).
    pub(crate) fn flush_observer(&self) -> crate::store::FlushObserver {
        let (group, seconds) = (self.flush_group.clone(), self.flush_seconds.clone());
        Box::new(move |callers, took| {
            group.observe(callers as f64);
            seconds.observe(took.as_secs_f64());
        })
    }

    /// Sets whether the node is ready (see `larder_ready`).
    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// A job has ended (saved in a final state): its duration from its first piece (or its
    /// creation, if it never started) to its end.
    pub(crate) fn job_over(&self, job: &Job) {
        let Some(end) = job.finished_at else { return };
        let start = job.started_at.unwrap_or(job.created_at);
        self.job_seconds
            .with_label_values(&[&job.generator, job.state.name()])
            .observe(end.saturating_sub(start) as f64);
    }

    /// `items` of `pool` made available here by `maker`.
    pub(crate) fn generated(&self, pool: &PoolSpec, maker: Option<Maker>, items: u64) {
        let g = maker.map_or("unrecorded", Maker::name);
        self.generated
            .with_label_values(&[&pool.to_string(), g])
            .inc_by(items);
    }
}

/// The metrics listener's routes: `/metrics`, and the health and readiness checks (plain
/// HTTP, for probes that do not speak the consortium's TLS).
pub fn router(st: Arc<NodeState>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/v1/health", get(super::api::health))
        .route("/v1/ready", get(super::api::ready))
        .with_state(st)
}

/// Around the API: counts every problem answered, by code, and refused reuse.
pub(super) async fn observe(
    State(st): State<Arc<NodeState>>,
    req: Request,
    next: Next,
) -> Response {
    let resp = next.run(req).await;
    if let Some(code) = resp.extensions().get::<Code>() {
        st.metrics
            .problems
            .with_label_values(&[code.as_str()])
            .inc();
        if REUSE.contains(code) {
            st.metrics.reuse.with_label_values(&[code.as_str()]).inc();
        }
    }
    resp
}

/// Counts batch `id`'s items as made available here (after its activation or commit).
pub(crate) async fn note_generated(st: &NodeState, id: crate::material::BatchId) {
    if let Ok(Some(meta)) = st
        .own
        .run("reading a batch", move |s| s.batch_meta(&id))
        .await
    {
        st.metrics.generated(&meta.pool, meta.maker, meta.items);
        if st.is_leader() {
            st.schedule
                .observe_made(meta.pool, meta.items, super::schedule::tau(st));
        }
    }
}

/// Seconds since `t`, for the histograms.
pub(crate) fn since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

async fn refresh(st: &Arc<NodeState>) {
    let m = &st.metrics;
    let stock = st.own.run("reading stock", |s| s.stock()).await;
    match &stock {
        Ok(stock) => {
            for (pool, s) in stock {
                let pool = pool.to_string();
                for (state, v) in STATES
                    .iter()
                    .zip([s.available, s.staged, s.reserved, s.consumed])
                {
                    m.stock
                        .with_label_values(&[pool.as_str(), state])
                        .set(i64::try_from(v).unwrap_or(i64::MAX));
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: stock not read; serving the last values"),
    }
    let jobs = match (st.is_leader(), &stock) {
        (true, Ok(_)) => st.own.run("reading jobs", |s| s.jobs()).await.ok(),
        _ => None,
    };
    if let (Ok(stock), Some(jobs)) = (&stock, jobs) {
        for s in JobState::ALL {
            let n = jobs.iter().filter(|j| j.state == s).count();
            m.jobs.with_label_values(&[s.name()]).set(n as i64);
        }
        if let Ok(f) = super::schedule::forecast_from(st, stock, &jobs).await {
            for (pool, p) in f.pools {
                let pool = pool.to_string();
                m.seconds_left
                    .with_label_values(&[&pool])
                    .set(p.hours_left.map_or(f64::INFINITY, |h| h * 3600.0));
                m.per_second.with_label_values(&[&pool]).set(p.per_second);
                m.made_per_second
                    .with_label_values(&[&pool])
                    .set(p.generated_per_second);
                for (level, v) in LEVELS.iter().zip([p.target, p.refill_below, p.floor]) {
                    if let Some(v) = v {
                        m.levels
                            .with_label_values(&[pool.as_str(), level])
                            .set(i64::try_from(v).unwrap_or(i64::MAX));
                    }
                }
            }
        }
    }
    let store = st.store.clone();
    if let Ok((bytes, (free, size))) = tokio::task::spawn_blocking(move || {
        (
            store.disk_bytes(),
            crate::store::Store::disk_space(store.dir()).unwrap_or((0, 0)),
        )
    })
    .await
    {
        m.store_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        m.disk_free.set(i64::try_from(free).unwrap_or(i64::MAX));
        m.disk_size.set(i64::try_from(size).unwrap_or(i64::MAX));
    }
}

async fn scrape(State(st): State<Arc<NodeState>>) -> impl IntoResponse {
    refresh(&st).await;
    let mut out = Vec::new();
    match TextEncoder::new().encode(&st.metrics.registry.gather(), &mut out) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                TextEncoder::new().format_type().to_string(),
            )],
            out,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain".to_string())],
            e.to_string().into_bytes(),
        ),
    }
}
