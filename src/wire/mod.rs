//! Request and response bodies of the HTTP API, shared by the node, the Rust client and the
//! CLI, and the problem body and codes of every error answer.

use crate::material::{PoolSpec, ShareRange};
mod records;
pub mod schema;

pub use records::*;
use schema::{CheckoutId, CodeName, GeneratorName};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// `POST /v1/checkouts`: reserve `count` items of `pool` under a client-chosen `id`, the same
/// at every party.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    #[schema(value_type = CheckoutId)]
    pub id: String,
    pub pool: PoolSpec,
    #[schema(minimum = 1)]
    pub count: u64,
}

/// A checkout as one party sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckoutView {
    pub id: String,
    pub pool: PoolSpec,
    pub count: u64,
    /// The items, identical at every party.
    pub ranges: Vec<ShareRange>,
    /// State at the answering party.
    pub state: ReservationState,
    /// Whether every party is known to hold it (shares can be downloaded).
    pub confirmed: bool,
    pub reserved_at: u64,
    /// When an undownloaded reservation goes back to stock (Unix seconds).
    pub expires_at: u64,
    /// The answering party.
    pub party: u8,
}

impl CheckoutView {
    pub fn new(r: &Reservation, party: u8, ttl: u64) -> Self {
        CheckoutView {
            id: r.checkout.clone(),
            pool: r.pool,
            count: r.count,
            ranges: r.ranges.clone(),
            state: r.state,
            confirmed: r.confirmed,
            reserved_at: r.reserved_at,
            expires_at: r.reserved_at + ttl,
            party,
        }
    }
}

/// `GET /v1/stock`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StockView {
    pub party: u8,
    pub pools: BTreeMap<PoolSpec, PoolStock>,
    /// The leader's forecast per pool (absent when the leader could not be asked).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub forecast: BTreeMap<PoolSpec, PoolForecast>,
}

/// `GET /v1/forecast`: consumption, hours of stock left, the scheduler's decisions and the
/// parties' generation windows, as the leader sees them (a follower asks the leader).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ForecastView {
    /// The scheduler's clock (unix seconds; a simulated clock's if the leader runs one).
    pub now: i64,
    pub windows: WindowsView,
    pub pools: BTreeMap<PoolSpec, PoolForecast>,
    /// Generation jobs kept at the leader, by state (`queued`, `running`, `done`, `failed`,
    /// `cancelled`).
    #[serde(default)]
    pub jobs: BTreeMap<String, u64>,
}

/// One pool's forecast.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PoolForecast {
    /// Items available at the leader.
    pub available: u64,
    /// Items that live jobs have still to make.
    pub in_jobs: u64,
    /// Consumption in items per second, exponentially weighted over the consortium's
    /// `forecast_hours`.
    pub per_second: f64,
    /// Generation in items per second (made available at the leader), weighted the same way
    /// over what the leader saw since it started.
    #[serde(default)]
    pub generated_per_second: f64,
    /// Hours the available items last at that rate; absent while nothing is consumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours_left: Option<f64>,
    /// When the pool runs out at that rate (unix seconds, scheduler's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs_out_at: Option<i64>,
    /// The stock policy's levels in items at that rate; absent for a pool without a policy
    /// (left to operators).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refill_below: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<u64>,
    /// The scheduler's last decision about the pool, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
}

/// The parties' generation windows and where they overlap.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WindowsView {
    /// Whether every party's window is open now.
    pub open: bool,
    /// When that next changes (unix seconds), if within a week.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes_at: Option<i64>,
    /// The stretches of the next 24 hours in which every party is open.
    pub overlap: Vec<Stretch>,
    pub sites: Vec<SiteWindows>,
}

/// A stretch of time, unix seconds, `end` excluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Stretch {
    pub start: i64,
    pub end: i64,
}

/// One party's generation windows (its node file's `[schedule] windows`);
/// `GET /v1/internal/windows`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SiteWindows {
    pub party: u8,
    /// The site's time zone (IANA name).
    pub zone: String,
    /// Its windows; none: no restriction.
    pub windows: Vec<String>,
    /// False if the leader could not ask this party (then no window counts as open).
    #[serde(default = "yes")]
    pub known: bool,
}

fn yes() -> bool {
    true
}

/// `GET /v1/health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthView {
    pub consortium: String,
    pub party: u8,
    /// Parties in the consortium.
    pub parties: u8,
    pub name: String,
    pub leader: bool,
    pub version: String,
}

/// `GET /v1/ready`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReadyView {
    pub ready: bool,
    /// The store is open (always, once the node answers at all).
    pub store_open: bool,
    /// The other parties' nodes (their names) that have not answered this node yet.
    pub waiting_for: Vec<String>,
}

/// `GET /v1/internal/batches/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchStateView {
    pub batch: crate::material::BatchId,
    pub state: BatchState,
}

/// `POST /v1/internal/reservations`: the leader's reservations for a follower to hold, many
/// checkouts at a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    pub reservations: Vec<Reservation>,
}

/// The answer to an [`ApplyRequest`]: one entry per reservation, in order; `problem` is
/// `None` when it is held durably.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApplyResult {
    pub checkout: String,
    #[serde(default)]
    pub problem: Option<Problem>,
}

/// `POST /v1/internal/confirmations`: checkouts every party holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    #[schema(value_type = Vec<CheckoutId>)]
    pub checkouts: Vec<String>,
}

/// `POST /v1/internal/reservations/{id}/expire`: what the party did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExpireOutcome {
    /// Not downloaded here: items back to this party's stock.
    Released,
    /// Downloaded here already.
    Consumed,
    /// Burned here (not downloaded, but downloaded elsewhere).
    Burned,
    /// This party never held it.
    Unknown,
}

/// Most items one job may ask for.
pub const MAX_JOB_ITEMS: u64 = 1 << 50;
// The schema of `JobRequest::count` spells it as a literal (utoipa takes no constants there).
const _: () = assert!(MAX_JOB_ITEMS == 1_125_899_906_842_624);

/// `POST /v1/jobs`: make `count` items of `pool` with `generator`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    pub pool: PoolSpec,
    /// Items to make; at most 2^50.
    #[schema(minimum = 1, maximum = 1125899906842624_u64)]
    pub count: u64,
    /// `dealer` (the default): made by dealer workers (`larder dealer --worker`); `parties`:
    /// made by the nodes themselves with no dealer (input masks).
    #[serde(default = "default_generator")]
    #[schema(value_type = GeneratorName)]
    pub generator: String,
}

fn default_generator() -> String {
    "dealer".into()
}

/// `POST /v1/internal/jobs/next`: a dealer worker asks the leader for a piece of work.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PieceRequest {
    /// The worker's name, shown to operators in the job's leases.
    pub worker: String,
}

/// One batch of a job for a worker to make: generate it under `batch`, stage it at every
/// party, and have the leader commit it before `until` (Unix seconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Piece {
    pub job: u64,
    pub pool: PoolSpec,
    pub batch: crate::material::BatchId,
    pub items: u64,
    pub correction: u8,
    pub until: u64,
    /// Which generator makes it (`dealer`, or `parties`: every node makes its own share).
    #[serde(default = "default_generator")]
    #[schema(value_type = GeneratorName)]
    pub generator: String,
    /// The PRSS key epoch the piece is made under (`prss` pieces only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u32>,
}

/// The answer to a [`PieceRequest`]: a piece, or none for now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NextPiece {
    pub piece: Option<Piece>,
    /// Jobs for dealer workers that are not over yet: with no piece and no such job, a worker
    /// that runs until idle stops.
    pub live_jobs: u64,
}

/// The body of every error answer (`application/problem+json`, RFC 9457).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// `urn:larder:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What was wrong, in words.
    pub detail: String,
    /// Stable machine-readable code (see [`Code`]); kept as the node spelled it.
    #[schema(value_type = CodeName)]
    pub code: String,
    /// For `underrun`: how many items the pool has available.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub available: Option<u64>,
    /// Seconds to wait before trying again (as the `Retry-After` header); for `underrun`
    /// from the forecast of the job refilling the pool.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub retry_after_seconds: Option<u64>,
}

impl Problem {
    /// The problem's code; [`Code::Unknown`] for one this build does not know.
    pub fn code(&self) -> Code {
        Code::parse(&self.code)
    }
}

macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident => $text:literal,)*) => {
        /// Every problem code a node answers with. Code that reacts to a problem matches on
        /// these, never on the text.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Code {
            $($(#[$doc])* $variant,)*
            /// A code this build does not know (from a newer node).
            Unknown,
        }

        impl Code {
            /// Every code a node answers with.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The code as the API spells it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $text,)*
                    Code::Unknown => "unknown",
                }
            }

            /// The code spelled `text`; [`Code::Unknown`] if none.
            pub fn parse(text: &str) -> Code {
                match text {
                    $($text => Code::$variant,)*
                    _ => Code::Unknown,
                }
            }
        }
    };
}

codes! {
    /// Not enough items available (with `available` and `Retry-After`).
    Underrun => "underrun",
    /// The checkout id is used with other parameters.
    CheckoutConflict => "checkout-conflict",
    /// Downloaded at this party already.
    AlreadyConsumed => "already-consumed",
    /// Expired before any party downloaded it; its items went back to stock.
    CheckoutReleased => "checkout-released",
    /// Expired after another party downloaded it; destroyed unused here.
    CheckoutBurned => "checkout-burned",
    NotReserved => "not-reserved",
    UnknownCheckout => "unknown-checkout",
    NotConfirmed => "not-confirmed",
    BadRequest => "bad-request",
    RangeUnavailable => "range-unavailable",
    UnknownBatch => "unknown-batch",
    BatchMismatch => "batch-mismatch",
    IllegalTransition => "illegal-transition",
    BadBatch => "bad-batch",
    WrongParty => "wrong-party",
    /// The consortium restricts this pool to other generators (a dealer's batch of an HE-only
    /// pool, say).
    GeneratorRefused => "generator-refused",
    Unauthenticated => "unauthenticated",
    NodesOnly => "nodes-only",
    DealerOnly => "dealer-only",
    /// Only an operator of the consortium may do this (generation jobs).
    OperatorsOnly => "operators-only",
    /// The calling node's audit chain is shorter than this node saw it before: it lost
    /// records it had reported durable, so its requests are refused until an operator looks.
    PartyRolledBack => "party-rolled-back",
    /// Only the consortium's auditors read the audit trail.
    AuditorsOnly => "auditors-only",
    /// An auditor's credential reads the audit trail and nothing else.
    AuditTrailOnly => "audit-trail-only",
    UnknownJob => "unknown-job",
    /// The job is over (done, failed or cancelled).
    JobOver => "job-over",
    /// A piece of a job that was taken back from its worker: its batch is never committed.
    PieceRevoked => "piece-revoked",
    EnginesOnly => "engines-only",
    PoolNotGranted => "pool-not-granted",
    NotLeader => "not-leader",
    NotStaged => "not-staged",
    UnknownPool => "unknown-pool",
    PartyUnavailable => "party-unavailable",
    /// The node is up but not ready: some peers have not answered it yet (`GET /v1/ready`).
    NotReady => "not-ready",
    Internal => "internal",
    BodyTooLarge => "body-too-large",
    UnsupportedMediaType => "unsupported-media-type",
    /// The party's disk is full (or would be below its reserve): free space there.
    InsufficientStorage => "insufficient-storage",
    RequestTimeout => "request-timeout",
    NotFound => "not-found",
    MethodNotAllowed => "method-not-allowed",
}

/// Percent-encodes a checkout id for a URL path segment.
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Code;

    #[test]
    fn codes_round_trip_and_unknown_ones_are_unknown() {
        for c in [Code::Underrun, Code::CheckoutBurned, Code::MethodNotAllowed] {
            assert_eq!(Code::parse(c.as_str()), c);
        }
        assert_eq!(Code::parse("from-a-newer-node"), Code::Unknown);
    }
}

/// What retiring a PRSS epoch burned at one party (`Store::retire_epoch`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RetireReport {
    /// Batches whose free items were burned.
    pub batches: u64,
    /// Reservations not yet downloaded that were burned.
    pub reservations: u64,
    /// Items burned in all.
    pub items: u64,
}

/// `GET /v1/prss`: the PRSS generator's keys and epochs, as this node knows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PrssStatus {
    pub parties: u8,
    /// The material is secure only while no `threshold + 1` parties collude.
    pub threshold: u8,
    /// Keys each party holds: one per set of `parties - threshold` parties it belongs to.
    pub keys_per_party: u64,
    /// The epoch new PRSS batches are made under (the leader's decision; none before the
    /// first key setup, which the first PRSS job starts).
    pub current_epoch: Option<u32>,
    /// Epochs retired: their keys destroyed and their unserved items burned.
    pub retired_epochs: Vec<u32>,
    /// Epochs this node holds keys for.
    pub key_epochs: Vec<u32>,
    /// The assumption PRSS material is made under.
    pub assumption: crate::material::Assumption,
}

/// `POST /v1/prss/epochs`: a new epoch's keys are set up at every party, and new PRSS batches
/// use them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PrssEpoch {
    pub epoch: u32,
    pub parties: u8,
    pub threshold: u8,
    /// Keys in all (one per set of `parties - threshold` parties).
    pub key_sets: u64,
}

/// The body of `POST /v1/internal/prss/epochs/{epoch}`: set up this epoch's keys with the
/// other nodes, over the message channel's `session`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeySetup {
    pub session: String,
}

/// `DELETE /v1/prss/epochs/{epoch}`: the epoch is retired at every party.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RetiredEpoch {
    pub epoch: u32,
    /// What each party burned, in party order.
    pub by_party: Vec<RetireReport>,
}
