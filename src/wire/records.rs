//! The records the API shows and the nodes exchange, which the store also keeps as they are:
//! batch and reservation states, reservations, stock, generation jobs. They are the contract;
//! the store depends on them, never the other way.

use crate::material::{BatchId, PoolSpec, ShareRange};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A batch's state at this party.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BatchState {
    Staged,
    Available,
    /// Every item consumed; data deleted; metadata kept as a tombstone.
    Exhausted,
}

impl std::fmt::Display for BatchState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BatchState::Staged => "staged",
            BatchState::Available => "available",
            BatchState::Exhausted => "exhausted",
        })
    }
}

/// A reservation's state at this party.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReservationState {
    Reserved,
    Consumed,
    /// Expired before anyone downloaded: items went back to stock.
    Released,
    /// Expired after another party downloaded: items consumed without handing them out here.
    Burned,
}

impl ReservationState {
    /// The state's name, as the API spells it.
    pub fn name(self) -> &'static str {
        match self {
            ReservationState::Reserved => "reserved",
            ReservationState::Consumed => "consumed",
            ReservationState::Released => "released",
            ReservationState::Burned => "burned",
        }
    }

    /// What happened to a checkout in this state, for an engine that still wants it.
    pub fn fate(self) -> &'static str {
        match self {
            ReservationState::Reserved => "is reserved",
            ReservationState::Consumed => {
                "was already downloaded at this party; shares are handed out once"
            }
            ReservationState::Released => {
                "expired before any party downloaded it and its items went back to stock; \
                 check out again under a new id"
            }
            ReservationState::Burned => {
                "was burned: it expired after another party downloaded it, so this party's \
                 items were destroyed unused; check out again under a new id"
            }
        }
    }
}

impl std::fmt::Display for ReservationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Items of one pool held under a checkout id; identical at every party.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Reservation {
    pub checkout: String,
    pub pool: PoolSpec,
    pub count: u64,
    pub ranges: Vec<ShareRange>,
    pub state: ReservationState,
    pub reserved_at: u64,
    pub consumer: Option<String>,
    pub consumed_at: Option<u64>,
    /// Set once the leader knows every party holds the reservation; only then may shares be
    /// handed out. A follower learns it from the leader.
    #[serde(default)]
    pub confirmed: bool,
    /// At the leader: expiry has brought every party to a final state for it.
    #[serde(default)]
    pub settled: bool,
}

impl Reservation {
    /// Whether `other` describes the same reservation (ignoring local state).
    pub fn same_allocation(&self, other: &Reservation) -> bool {
        self.checkout == other.checkout
            && self.pool == other.pool
            && self.count == other.count
            && self.ranges == other.ranges
    }
}

/// Stock of one pool at this party.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PoolStock {
    pub available: u64,
    pub staged: u64,
    pub reserved: u64,
    pub consumed: u64,
    pub batches: u64,
    /// Available items by the generator that made them (`dealer`, `parties`, `he`;
    /// `unrecorded` for batches staged before generators were recorded): the trust model
    /// behind the stock.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub by_generator: std::collections::BTreeMap<String, u64>,
    /// Available items by the assumption they were made under (`trusted-dealer`,
    /// `dishonest-majority`, `honest-majority`; `unrecorded` as above).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub by_assumption: std::collections::BTreeMap<String, u64>,
}

/// Where a job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Created; no piece handed out yet.
    Queued,
    /// Pieces handed out; not every item committed yet.
    Running,
    /// Every item committed.
    Done,
    /// Stopped by an error (`error` says which); committed items stay.
    Failed,
    /// Stopped by an operator; committed items stay.
    Cancelled,
}

impl JobState {
    /// Every state, in the order a job goes through them.
    pub const ALL: [JobState; 5] = [
        JobState::Queued,
        JobState::Running,
        JobState::Done,
        JobState::Failed,
        JobState::Cancelled,
    ];

    /// The state's name, as in JSON.
    pub fn name(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Whether the job can still make items.
    pub fn is_live(self) -> bool {
        matches!(self, JobState::Queued | JobState::Running)
    }
}

/// One batch of a job handed to a worker: it generates the batch under this id, stages it at
/// every party and has the leader commit it before `until`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Lease {
    pub batch: BatchId,
    pub items: u64,
    /// The batch's correction party.
    pub correction: u8,
    /// The worker's name, for operators.
    pub worker: String,
    /// Unix seconds after which the leader takes the piece back.
    pub until: u64,
}

/// A generation job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    pub id: u64,
    pub pool: PoolSpec,
    /// Items to make.
    pub count: u64,
    /// Which generator makes them (`dealer`).
    pub generator: String,
    pub state: JobState,
    /// Items committed: available at the leader, staged at every party.
    pub made: u64,
    /// Pieces handed out and not yet committed or taken back.
    pub leases: Vec<Lease>,
    /// Batches of pieces taken back (their worker was too slow or gone): never committed for
    /// this job, whoever asks.
    #[serde(default)]
    pub revoked: Vec<BatchId>,
    pub created_at: u64,
    #[serde(default)]
    pub started_at: Option<u64>,
    #[serde(default)]
    pub finished_at: Option<u64>,
    #[serde(default)]
    pub error: Option<String>,
    /// Who asked for it: an operator, or the scheduler (for a window, or below a floor).
    #[serde(default)]
    pub origin: JobOrigin,
}

/// Who asked for a job, and so when it may make pieces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobOrigin {
    /// An operator (`POST /v1/jobs`): runs at once.
    #[default]
    Operator,
    /// The scheduler, to refill a pool in a generation window: runs only while the parties'
    /// windows are open.
    Window,
    /// The scheduler, for a pool below its emergency floor: runs at once.
    Floor,
}

impl JobOrigin {
    pub fn name(self) -> &'static str {
        match self {
            JobOrigin::Operator => "operator",
            JobOrigin::Window => "window",
            JobOrigin::Floor => "floor",
        }
    }
}

impl Job {
    /// Items neither committed nor handed out.
    pub fn unissued(&self) -> u64 {
        let leased: u64 = self.leases.iter().map(|l| l.items).sum();
        self.count.saturating_sub(self.made + leased)
    }
}
