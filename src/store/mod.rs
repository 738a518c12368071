//! One party's store: sled for metadata, plain files for bulk batch data.
//!
//! # Durability
//! Every method that changes state returns only after the change is on disk (batch files are
//! written to a temporary name, `fdatasync`ed, renamed and the directory synced before their
//! metadata is committed; metadata changes are sled transactions followed by a flush and an
//! `fdatasync` of sled's log, see `durable.rs`). A crash or power cut at any point leaves either
//! the old or the new state; on open, files no metadata points to are removed and interrupted
//! erasures are finished.
//!
//! # Lifecycle
//! A batch is `staged` (durable here, not yet usable), then `available` once the leader has
//! seen every party stage it. Items are `reserved` in ranges under a checkout id, then
//! `consumed` when this party's shares are handed out (or burned), after which their chunk
//! seeds and values are overwritten and the audit log keeps who took which ranges and when.
//! Reservations not downloaded may be `released` back to stock.
//!
//! # Layout
//! This file holds the [`Store`] itself (its fields, `create` and `open`); each concept has a
//! file of its own, adding methods to `Store`:
//! - `records.rs`: the records kept in sled ([`BatchMeta`], [`Reservation`], ...);
//!   `error.rs`: [`StoreError`].
//! - `kv.rs`: sled helpers (opening, JSON records, index keys, transactions); `commit.rs`: group
//!   commit; `durable.rs`: `fdatasync` of sled's files; `files.rs`: batch files and recovery.
//! - `batches.rs`: stage, activate, abort; `reservations.rs`: allocate, apply, confirm, consume,
//!   release, burn; `view.rs`: a group of such changes planned in memory, written at once.
//! - `shares.rs`: share streams out of batch files; `erase.rs`: erasure of consumed material;
//!   `stock.rs`: stock, size; `audit.rs`: the audit trail (its chain, archive files and
//!   export); `ranges.rs`: item range sets; `schema.rs`:
//!   migrations (the numbered steps live in `migrations/`); `jobs.rs`: generation jobs (kept
//!   at the leader).

mod audit;
mod batches;
mod commit;
mod durable;
pub(crate) use durable::sync_dir as durable_sync_dir;
mod erase;
mod error;
mod files;
mod jobs;
mod kv;
mod ranges;
mod records;
mod reservations;
pub mod schema;
mod shares;
mod stock;
mod view;

pub use audit::ArchivePolicy;
use audit::{ArchiveState, ChainState, Chained};
pub use commit::FlushObserver;
use commit::*;
use durable::MetaFiles;
pub use error::ShareBytes;
pub use error::StoreError;
use error::{io_err, Result};
use files::*;
pub use jobs::{Job, JobOrigin, JobState, Lease};
pub use kv::now_unix;
use kv::*;
pub use ranges::RangeSet;
pub use records::*;
use reservations::*;
use view::View;

use crate::material::batch::{header_len, HEADER_BYTES, MAX_HEADER_BYTES};
use crate::material::shares::MAX_CHECKOUT_ID;
use crate::material::{
    BatchHeader, BatchId, FormatError, Maker, PoolSpec, ShareHeader, ShareRange, ShareWriter,
};
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// One party's store.
/// Room claimed by a staging being written (see `Store::claim_space`).
struct SpaceClaim<'a> {
    store: &'a Store,
    bytes: u64,
}

impl Drop for SpaceClaim<'_> {
    fn drop(&mut self) {
        self.store
            .staging_bytes
            .fetch_sub(self.bytes, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Bytes a staging leaves free by default (see [`Store::set_min_free`]).
pub const DEFAULT_MIN_FREE: u64 = 256 << 20;

pub struct Store {
    dir: PathBuf,
    data: PathBuf,
    db: sled::Db,
    batches: sled::Tree,
    stock: sled::Tree,
    reservations: sled::Tree,
    /// Reservations allocated here and not yet settled, by reservation time (migration 2).
    open: sled::Tree,
    /// Reservations in a final state, by reservation time (migration 4): what leaves the hot
    /// metadata once it is old enough (`Store::archive_reservations`).
    closed: sled::Tree,
    audit: sled::Tree,
    /// Generation jobs (at the leader).
    jobs: sled::Tree,
    identity: StoreIdentity,
    /// Serialises read-modify-write of metadata (allocation scans the stock index, which sled
    /// transactions cannot do). Held only for in-memory work; flushes happen outside it, so
    /// concurrent callers share one fsync.
    lock: Mutex<()>,
    /// Item ranges consumed here whose shares are still being streamed out: their chunks are
    /// not erased until the stream ends ([`Store::erase_reservation`]). In memory only: after
    /// a restart nothing is streaming.
    streaming: Mutex<Vec<ShareRange>>,
    /// Serialises erasures among themselves (see `erase_consumed`).
    erase_lock: Mutex<()>,
    /// Serialises the commit step of staging (see [`Store::stage`]).
    stage_lock: Mutex<()>,
    commit: GroupCommit,
    /// sled's files, synced after every flush (sled alone is not power-cut safe).
    meta: MetaFiles,
    /// Bytes a staging must leave free on the store's file system (see [`Store::set_min_free`]).
    min_free: std::sync::atomic::AtomicU64,
    /// Bytes of batch files being written now.
    staging_bytes: std::sync::atomic::AtomicU64,
    /// Pools restricted to some generators (see [`Store::set_allowed_generators`]).
    allowed: Mutex<BTreeMap<PoolSpec, Vec<Maker>>>,
    /// Retired PRSS epochs: their batches' items are never allocated again (see
    /// [`Store::retire_epoch`]).
    retired_epochs: Mutex<std::collections::BTreeSet<u32>>,
    /// The audit chain's tip (see `audit.rs`).
    chain: Mutex<ChainState>,
    /// Serialises archive passes and exports.
    archive_lock: Mutex<ArchiveState>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("identity", &self.identity)
            .finish()
    }
}

impl Store {
    /// Creates a new, empty store in `dir` (which must not hold one yet).
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`], IO or sled errors.
    pub fn create(dir: &Path, identity: StoreIdentity) -> Result<Store> {
        let meta = dir.join("meta");
        if meta.exists() {
            return Err(StoreError::AlreadyExists(dir.to_path_buf()));
        }
        fs::create_dir_all(dir.join("batches")).map_err(io_err("create", dir))?;
        restrict(dir)?;
        // Built under another name and renamed whole: a process killed while creating leaves
        // no `meta` without an identity (which would read as "not a store" forever after),
        // only a `meta.new` that the next attempt starts over.
        let fresh = dir.join("meta.new");
        if fresh.exists() {
            fs::remove_dir_all(&fresh).map_err(io_err("remove", &fresh))?;
        }
        {
            let db = open_db(&fresh)?;
            db.insert("identity", to_json(&identity))?;
            db.flush()?;
            MetaFiles::open(&fresh).map_err(io_err("sync", &fresh))?;
        }
        fs::rename(&fresh, &meta).map_err(io_err("rename", &fresh))?;
        // The new directories' own entries (a bare relative name's parent is the working
        // directory).
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        for d in [dir, parent] {
            durable::sync_dir(d).map_err(io_err("sync", d))?;
        }
        Store::from_db(dir, open_db(&meta)?)
    }

    /// Opens an existing store, upgrading its schema and recovering from any crash.
    ///
    /// # Errors
    /// [`StoreError::NotAStore`], [`schema::SchemaError::Newer`] for a store from a newer
    /// Larder, IO or sled errors (including another process holding the store open).
    pub fn open(dir: &Path) -> Result<Store> {
        let meta = dir.join("meta");
        if !meta.exists() {
            return Err(StoreError::NotAStore(dir.to_path_buf()));
        }
        // Stores made before directories were restricted get restricted now.
        restrict(dir)?;
        Store::from_db(dir, open_db(&meta)?)
    }

    /// Sets the bytes a staging must leave free on the store's file system: a batch that would
    /// leave less is refused ([`StoreError::DiskFull`]) before anything is written, so the
    /// metadata of checkouts and downloads always has room.
    pub fn set_min_free(&self, bytes: u64) {
        self.min_free
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// Restricts pools to the generators the consortium accepts for them: staging a batch of
    /// such a pool made by any other generator is refused ([`StoreError::GeneratorRefused`]).
    /// Pools not named accept every generator.
    /// The PRSS epochs retired (the node's record, loaded at start): their items are never
    /// allocated.
    pub fn set_retired_epochs(&self, epochs: impl IntoIterator<Item = u32>) {
        self.retired_epochs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(epochs);
    }

    pub(super) fn retired_epochs(&self) -> std::collections::BTreeSet<u32> {
        self.retired_epochs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_allowed_generators(&self, allowed: BTreeMap<PoolSpec, Vec<Maker>>) {
        *self.allowed.lock().unwrap_or_else(|p| p.into_inner()) = allowed;
    }

    /// Bytes free for this process on the file system holding `dir` (or its nearest existing
    /// ancestor).
    ///
    /// # Errors
    /// `statvfs` failing.
    pub fn free_bytes(dir: &Path) -> io::Result<u64> {
        Self::disk_space(dir).map(|(free, _)| free)
    }

    /// Bytes free (for unprivileged writers) and bytes in all on the file system holding
    /// `dir` (or its nearest existing ancestor).
    ///
    /// # Errors
    /// `statvfs` failed.
    pub fn disk_space(dir: &Path) -> io::Result<(u64, u64)> {
        let mut at = dir;
        while !at.exists() {
            match at.parent() {
                Some(p) if !p.as_os_str().is_empty() => at = p,
                _ => {
                    at = Path::new(".");
                    break;
                }
            }
        }
        let st = nix::sys::statvfs::statvfs(at).map_err(io::Error::from)?;
        let unit = st.fragment_size() as u64;
        Ok((
            st.blocks_available() as u64 * unit,
            st.blocks() as u64 * unit,
        ))
    }

    /// Claims room for `needed` more bytes of batch data, or refuses if that would leave less
    /// than the reserve free, counting the stagings still being written (which `statvfs` does
    /// not see yet). The claim ends when the returned guard is dropped.
    fn claim_space(&self, needed: u64) -> Result<SpaceClaim<'_>> {
        use std::sync::atomic::Ordering;
        let reserve = self.min_free.load(Ordering::Relaxed);
        let pending = self.staging_bytes.fetch_add(needed, Ordering::SeqCst);
        let claim = SpaceClaim {
            store: self,
            bytes: needed,
        };
        let available = Store::free_bytes(&self.data).map_err(io_err("statvfs", &self.data))?;
        if available < needed.saturating_add(pending).saturating_add(reserve) {
            return Err(StoreError::DiskFull {
                path: self.data.clone(),
                needed,
                reserve,
                available: available.saturating_sub(pending),
            });
        }
        Ok(claim)
    }

    fn from_db(dir: &Path, db: sled::Db) -> Result<Store> {
        schema::migrate(&db, &dir.join("batches"), schema::MIGRATIONS)?;
        let meta_dir = dir.join("meta");
        db.flush()?;
        let meta = MetaFiles::open(&meta_dir).map_err(io_err("sync", &meta_dir))?;
        let identity: StoreIdentity = match db.get("identity")? {
            Some(v) => from_json("identity", &v)?,
            None => return Err(StoreError::NotAStore(dir.to_path_buf())),
        };
        let (chain, archive) = Store::open_chain(dir, &db, &identity)?;
        let store = Store {
            dir: dir.to_path_buf(),
            data: dir.join("batches"),
            batches: db.open_tree("batches")?,
            stock: db.open_tree("stock")?,
            reservations: db.open_tree("reservations")?,
            open: db.open_tree("open")?,
            closed: db.open_tree("closed")?,
            audit: db.open_tree("audit")?,
            jobs: db.open_tree("jobs")?,
            db,
            identity,
            lock: Mutex::new(()),
            streaming: Mutex::new(Vec::new()),
            erase_lock: Mutex::new(()),
            stage_lock: Mutex::new(()),
            commit: GroupCommit::default(),
            meta,
            min_free: std::sync::atomic::AtomicU64::new(DEFAULT_MIN_FREE),
            staging_bytes: std::sync::atomic::AtomicU64::new(0),
            allowed: Mutex::new(BTreeMap::new()),
            retired_epochs: Mutex::new(Default::default()),
            chain: Mutex::new(chain),
            archive_lock: Mutex::new(archive),
        };
        fs::create_dir_all(&store.data).map_err(io_err("create", &store.data))?;
        store.recover()?;
        Ok(store)
    }

    pub fn identity(&self) -> &StoreIdentity {
        &self.identity
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Reads and checks the header at the start of a batch file: its 66 bytes, and for a version 3
/// header (a matrix or convolution shape) the rest of its 118.
pub(crate) fn read_batch_header(file: &File, path: &Path) -> Result<BatchHeader> {
    use std::os::unix::fs::FileExt;
    let mut hbuf = [0u8; MAX_HEADER_BYTES];
    file.read_exact_at(&mut hbuf[..HEADER_BYTES], 0)
        .map_err(io_err("read", path))?;
    let len = header_len(u16::from_le_bytes([hbuf[8], hbuf[9]]));
    if len > HEADER_BYTES {
        file.read_exact_at(&mut hbuf[HEADER_BYTES..len], HEADER_BYTES as u64)
            .map_err(io_err("read", path))?;
    }
    Ok(BatchHeader::decode(&hbuf[..len])?)
}
