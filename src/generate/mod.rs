//! Generators: what makes batches. The store accepts any valid batch file, so a generator is
//! one implementation of [`Generator`], never a special case in the store.

mod dealer;

pub use dealer::Dealer;

use crate::material::{BatchHeader, BatchId, PoolError, PoolSpec};
use zeroize::Zeroizing;

/// What to make: one batch of one pool for a consortium.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchPlan {
    pub pool: PoolSpec,
    pub parties: u8,
    pub batch: BatchId,
    pub items: u64,
    /// The party that stores the explicit corrections (see [`PoolSpec::correction_party`]).
    pub correction: u8,
}

/// One party's share of a batch: its complete batch file, ready to stage at that party only.
pub struct PartyBatch {
    pub header: BatchHeader,
    /// The whole file (header and chunks); secret, zeroized on drop.
    pub bytes: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for PartyBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartyBatch")
            .field("header", &self.header)
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .finish()
    }
}

/// Why a batch could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("invalid pool: {0}")]
    Pool(#[from] PoolError),
    #[error("invalid plan: {0}")]
    Plan(String),
}

/// The generator seam.
///
/// The dealer makes every party's share in one place. A generator without a dealer (the HE
/// generator) runs at each party and produces only that party's [`PartyBatch`]; both end in
/// the same per-party batch files, staged the same way.
pub trait Generator {
    /// A short name for logs and metrics (`dealer`, `he`).
    fn name(&self) -> &'static str;
    /// A fresh batch id.
    fn next_batch_id(&mut self) -> BatchId;
    /// Makes one batch: the i-th element is party i's share.
    ///
    /// # Errors
    /// [`GenerateError`] if the plan is invalid.
    fn generate(&mut self, plan: &BatchPlan) -> Result<Vec<PartyBatch>, GenerateError>;
}
