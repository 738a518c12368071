//! What calls to the other parties' nodes look like, for the metrics of whoever makes them (a
//! node, a dealer worker): latency of answered requests, requests that got no answer, and
//! whether the peer answered last time. Labelled by peer (the party's name in the consortium
//! file), a small fixed set.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Latency buckets (seconds): 1 ms to about 16 s.
pub const BUCKETS: [f64; 15] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192, 16.384,
];

/// The `larder_peer_*` families.
#[derive(Clone)]
pub struct PeerMetrics {
    seconds: HistogramVec,
    failures: IntCounterVec,
    up: IntGaugeVec,
}

impl PeerMetrics {
    /// Registers the families in `r`, with a series for each of `peers` (the label each
    /// [`super::RemoteParty`] reports: [`peer_label`]). A peer starts down until it answers.
    ///
    /// # Errors
    /// The families are registered in `r` already.
    pub fn register(r: &Registry, peers: &[String]) -> prometheus::Result<Self> {
        let seconds = HistogramVec::new(
            HistogramOpts::new(
                "larder_peer_request_duration_seconds",
                "Time until another party's node answered a request (any status)",
            )
            .buckets(BUCKETS.to_vec()),
            &["peer"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "larder_peer_request_failures_total",
                "Requests to another party's node that got no answer (unreachable, timed out)",
            ),
            &["peer"],
        )?;
        let up = IntGaugeVec::new(
            Opts::new(
                "larder_peer_up",
                "1 if another party's node answered the latest request or health probe, else 0",
            ),
            &["peer"],
        )?;
        r.register(Box::new(seconds.clone()))?;
        r.register(Box::new(failures.clone()))?;
        r.register(Box::new(up.clone()))?;
        for p in peers {
            seconds.with_label_values(&[p]);
            failures.with_label_values(&[p]);
            up.with_label_values(&[p]).set(0);
        }
        Ok(PeerMetrics {
            seconds,
            failures,
            up,
        })
    }

    pub(crate) fn answered(&self, peer: &str, seconds: f64) {
        self.seconds.with_label_values(&[peer]).observe(seconds);
        self.up.with_label_values(&[peer]).set(1);
    }

    pub(crate) fn unanswered(&self, peer: &str) {
        self.failures.with_label_values(&[peer]).inc();
        self.up.with_label_values(&[peer]).set(0);
    }

    /// Whether `peer` answered last time.
    pub fn is_up(&self, peer: &str) -> bool {
        self.up.with_label_values(&[peer]).get() == 1
    }
}

/// The `peer` label of a party: its name in the consortium file, or its number.
pub fn peer_label(at: &super::PartyName) -> String {
    at.name.clone().unwrap_or_else(|| at.party.to_string())
}
