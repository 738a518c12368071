//! The store's records: who it belongs to, batches, reservations, audit entries, stock.

use super::*;

/// Who this store belongs to; fixed when the store is created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreIdentity {
    pub consortium: String,
    pub parties: u8,
    pub party: u8,
}

/// A batch's state at this party.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

/// Metadata of one batch at this party.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchMeta {
    pub id: BatchId,
    pub pool: PoolSpec,
    pub items: u64,
    pub state: BatchState,
    /// Items neither reserved nor consumed.
    pub free: RangeSet,
    /// Items handed out or burned.
    pub consumed: RangeSet,
    /// Chunks whose seed and values have been overwritten.
    pub erased_chunks: RangeSet,
    pub chunk_items: u32,
    /// Order of activation, for first-in first-out allocation.
    pub stock_seq: u64,
    pub staged_at: u64,
}

/// A reservation's state at this party.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

/// One line of the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub at: u64,
    pub event: String,
    pub pool: PoolSpec,
    pub checkout: Option<String>,
    pub batch: Option<BatchId>,
    pub ranges: Vec<ShareRange>,
    pub by: Option<String>,
}

/// Stock of one pool at this party.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStock {
    pub available: u64,
    pub staged: u64,
    pub reserved: u64,
    pub consumed: u64,
    pub batches: u64,
}
