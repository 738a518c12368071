//! What a store operation can fail with.

use super::*;

/// What went wrong in a store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("store metadata: {0}")]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Schema(#[from] schema::SchemaError),
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
    #[error("no Larder store at {0} (create one with `larder init`)")]
    NotAStore(PathBuf),
    #[error("the store at {0} is in use by another process")]
    InUse(PathBuf),
    #[error("a Larder store already exists at {0}")]
    AlreadyExists(PathBuf),
    #[error("this batch belongs to party {got} of {got_parties}, but the store is party {want} of {want_parties}")]
    WrongParty {
        got: u8,
        got_parties: u8,
        want: u8,
        want_parties: u8,
    },
    #[error("pool {pool} accepts batches made by {} only, not by the {maker} generator ({})", allowed.iter().map(|m| m.name()).collect::<Vec<_>>().join(" or "), maker.assumption())]
    GeneratorRefused {
        pool: PoolSpec,
        maker: Maker,
        allowed: Vec<Maker>,
    },
    #[error("unknown batch {0}")]
    UnknownBatch(BatchId),
    #[error("batch {0} is already here with a different header")]
    BatchMismatch(BatchId),
    #[error("batch {batch} cannot go from {from} to {to}")]
    IllegalTransition {
        batch: BatchId,
        from: BatchState,
        to: &'static str,
    },
    #[error(
        "checkout id must be 1 to {MAX_CHECKOUT_ID} characters, none of them a control character"
    )]
    BadCheckoutId,
    #[error("count must be at least 1")]
    ZeroCount,
    #[error("checkout {0:?} already exists with different parameters")]
    Conflict(String),
    #[error("pool {pool} has {available} items available, {requested} requested")]
    Underrun {
        pool: PoolSpec,
        requested: u64,
        available: u64,
    },
    #[error(
        "checkout {0:?} is not confirmed by the leader yet: not every party is known to hold it"
    )]
    Unconfirmed(String),
    #[error("unknown checkout {0:?}")]
    UnknownCheckout(String),
    #[error("checkout {checkout:?} {}", state.fate())]
    Gone {
        checkout: String,
        state: ReservationState,
    },
    #[error("checkout {checkout:?} cannot be {to}: it is {state} here")]
    NotReserved {
        checkout: String,
        state: ReservationState,
        to: &'static str,
    },
    #[error("disk full at {path}: a batch of {needed} bytes would leave less than the {reserve} bytes kept free ({available} available); free space or add disk")]
    DiskFull {
        path: PathBuf,
        needed: u64,
        reserve: u64,
        available: u64,
    },
    #[error("items {first}..{end} of batch {batch} are not free here")]
    RangeUnavailable {
        batch: BatchId,
        first: u64,
        end: u64,
    },
}

pub(super) type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A whole share stream in memory (zeroed when dropped).
pub type ShareBytes = zeroize::Zeroizing<Vec<u8>>;

pub(super) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

impl StoreError {
    /// Whether the store's disk is full: a staging refused for space, or a write that failed
    /// with ENOSPC or EDQUOT (in a batch file or in sled's log).
    pub fn is_disk_full(&self) -> bool {
        // sled hands out copies of its IO error that keep the kind but not the OS code.
        let full = |e: &io::Error| {
            matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
                || matches!(
                    e.kind(),
                    io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
                )
        };
        match self {
            StoreError::DiskFull { .. } => true,
            StoreError::Io { source, .. } => full(source),
            StoreError::Sled(sled::Error::Io(e)) => full(e),
            _ => false,
        }
    }
}
