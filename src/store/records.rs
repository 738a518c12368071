//! The store's records: who it belongs to, batch metadata (audit records are
//! [`crate::audit`]'s). The records other
//! parties and clients see too (reservations, batch and reservation states, stock, jobs) are
//! the API's (`wire`), kept here as they are.

use super::*;
pub use crate::audit::AuditRecord;
pub use crate::wire::{BatchState, PoolStock, Reservation, ReservationState, RetireReport};

/// Who this store belongs to; fixed when the store is created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreIdentity {
    pub consortium: String,
    pub parties: u8,
    pub party: u8,
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
    /// The generator that made the batch (from its header; absent for batches staged before
    /// schema 5 whose file was gone by then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maker: Option<Maker>,
    /// The PRSS key epoch the batch was made under (PRSS batches only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u32>,
}
