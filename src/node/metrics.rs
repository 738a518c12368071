//! The node's metrics listener: `GET /metrics` in Prometheus' text format, on a listener of its
//! own (plain HTTP, loopback unless configured otherwise: `metrics_listen` in the node file).
//!
//! Series are created when the node starts, one per configured pool and state, so none goes
//! missing from a scrape; values are read from the store at scrape time.

use super::NodeState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, IntGaugeVec, Opts, Registry, TextEncoder};
use std::sync::Arc;

/// Stock states reported per pool.
const STATES: [&str; 4] = ["available", "staged", "reserved", "consumed"];

/// This node's metric families.
pub struct Metrics {
    registry: Registry,
    stock: IntGaugeVec,
}

impl Metrics {
    /// # Panics
    /// Never: the families' names and labels are static and valid.
    pub fn new(pools: &[crate::material::PoolSpec], party: u8) -> Self {
        let registry = Registry::new();
        let build = IntGaugeVec::new(
            Opts::new("larder_build_info", "This node's build and party; always 1"),
            &["version", "party"],
        )
        .expect("static metric");
        build
            .with_label_values(&[env!("CARGO_PKG_VERSION"), &party.to_string()])
            .set(1);
        let stock = IntGaugeVec::new(
            Opts::new(
                "larder_stock_items",
                "Items of each pool at this party, by state",
            ),
            &["pool", "state"],
        )
        .expect("static metric");
        for pool in pools {
            for state in STATES {
                stock.with_label_values(&[&pool.to_string(), state]).set(0);
            }
        }
        registry.register(Box::new(build)).expect("registered once");
        registry
            .register(Box::new(stock.clone()))
            .expect("registered once");
        Metrics { registry, stock }
    }
}

/// The metrics listener's routes.
pub fn router(st: Arc<NodeState>) -> Router {
    Router::new().route("/metrics", get(scrape)).with_state(st)
}

async fn scrape(State(st): State<Arc<NodeState>>) -> impl IntoResponse {
    match st.own.run("reading stock", |s| s.stock()).await {
        Ok(stock) => {
            for (pool, s) in stock {
                let pool = pool.to_string();
                for (state, v) in STATES
                    .iter()
                    .zip([s.available, s.staged, s.reserved, s.consumed])
                {
                    st.metrics
                        .stock
                        .with_label_values(&[pool.as_str(), state])
                        .set(i64::try_from(v).unwrap_or(i64::MAX));
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: stock not read; serving the last values"),
    }
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
