//! One party's store: sled for metadata, plain files for bulk batch data.
//!
//! # Durability
//! Every method that changes state returns only after the change is on disk (batch files are
//! written to a temporary name, `fdatasync`ed, renamed and the directory synced before their
//! metadata is committed; metadata changes are sled transactions followed by a flush). A crash
//! at any point leaves either the old or the new state; on open, files no metadata points to
//! are removed and interrupted erasures are finished.
//!
//! # Lifecycle
//! A batch is `staged` (durable here, not yet usable), then `available` once the leader has
//! seen every party stage it. Items are `reserved` in ranges under a checkout id, then
//! `consumed` when this party's shares are handed out (or burned), after which their chunk
//! seeds and values are overwritten and the audit log keeps who took which ranges and when.
//! Reservations not downloaded may be `released` back to stock.

mod durable;
mod ranges;
pub mod schema;
mod view;

use durable::MetaFiles;
pub use ranges::RangeSet;
use view::View;

use crate::material::batch::{expand_chunk, HEADER_BYTES};
use crate::material::shares::MAX_CHECKOUT_ID;
use crate::material::{
    BatchHeader, BatchId, FormatError, PoolSpec, ShareHeader, ShareRange, ShareWriter,
};
use crate::with_ring;
use rayon::prelude::*;
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
    #[error("items {first}..{end} of batch {batch} are not free here")]
    RangeUnavailable {
        batch: BatchId,
        first: u64,
        end: u64,
    },
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A whole share stream in memory (zeroed when dropped).
pub type ShareBytes = zeroize::Zeroizing<Vec<u8>>;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("metadata serializes")
}

fn from_json<T: for<'de> Deserialize<'de>>(what: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn stock_key(pool: &PoolSpec, seq: u64) -> Vec<u8> {
    let mut k = pool.to_string().into_bytes();
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn stock_prefix(pool: &PoolSpec) -> Vec<u8> {
    let mut k = pool.to_string().into_bytes();
    k.push(0);
    k
}

/// A failure inside a transaction closure, carried out through sled's abort.
type TxResult<T> = std::result::Result<T, ConflictableTransactionError<StoreError>>;

fn abort<T>(e: StoreError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

fn tx_get<T: for<'de> Deserialize<'de>>(
    t: &TransactionalTree,
    key: &[u8],
    what: &str,
) -> TxResult<Option<T>> {
    match t.get(key)? {
        None => Ok(None),
        Some(v) => from_json(what, &v).map(Some).or_else(abort),
    }
}

fn unwrap_tx<T>(r: std::result::Result<T, TransactionError<StoreError>>) -> Result<T> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Sled(e),
    })
}

/// Writes `bytes` as the whole content of `path` and syncs it (data and size) to disk.
///
/// Bulk batch data goes around the page cache (`O_DIRECT`, through an aligned bounce buffer):
/// measured here, buffered writes of 8 MiB batch files followed by `fdatasync` ran at about
/// 240 MB/s with most of the time spent copying in the kernel, direct writes at about 650 MB/s
/// (and the disk streams ~1.8 GB/s). File systems without `O_DIRECT` fall back to buffered IO.
fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    const ALIGN: usize = 4096;
    const BLOCK: usize = 1 << 20;
    let direct = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path);
    let file = match direct {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            let mut f = File::create(path)?;
            f.write_all(bytes)?;
            return f.sync_data();
        }
        Err(e) => return Err(e),
    };
    let mut raw = zeroize::Zeroizing::new(vec![
        0u8;
        BLOCK.min(bytes.len().next_multiple_of(ALIGN))
            + ALIGN
    ]);
    let off = raw.as_ptr().align_offset(ALIGN);
    let usable = (raw.len() - off) / ALIGN * ALIGN;
    let buf = &mut raw[off..off + usable];
    let mut pos = 0;
    while pos < bytes.len() {
        let n = (bytes.len() - pos).min(buf.len());
        buf[..n].copy_from_slice(&bytes[pos..pos + n]);
        let padded = n.next_multiple_of(ALIGN);
        buf[n..padded].fill(0);
        file.write_all_at(&buf[..padded], pos as u64)?;
        pos += n;
    }
    file.set_len(bytes.len() as u64)?;
    file.sync_data()
}

/// Makes a store directory its owner's only: it holds this party's shares.
fn restrict(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err("restrict", dir))
}

/// The `open` index key of a reservation: reservation time, then checkout id.
fn open_key(res: &Reservation) -> Vec<u8> {
    let mut key = res.reserved_at.to_be_bytes().to_vec();
    key.extend_from_slice(res.checkout.as_bytes());
    key
}

/// sled's page cache. Its default (1 GiB) let a busy node's memory grow for the whole first
/// gigabyte of metadata; the hot set (stock index, batches with free items, live reservations)
/// is far smaller.
const SLED_CACHE_BYTES: u64 = 32 << 20;

/// Opens sled with no background flusher (every change is flushed explicitly before it is
/// acknowledged) and a bounded cache. sled releases its file lock a moment after a `Db` is dropped, so a lock
/// conflict is retried briefly before it is reported as another process using the store.
fn open_db(path: &Path) -> Result<sled::Db> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        match sled::Config::new()
            .path(path)
            .flush_every_ms(None)
            .cache_capacity(SLED_CACHE_BYTES)
            .open()
        {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if std::time::Instant::now() > deadline {
                    return Err(StoreError::InUse(
                        path.parent().unwrap_or(path).to_path_buf(),
                    ));
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Group-commit state for [`Store::flush`].
#[derive(Default)]
struct GroupCommit {
    state: Mutex<CommitState>,
    done: std::sync::Condvar,
}

#[derive(Default)]
struct CommitState {
    /// Flushes started so far.
    started: u64,
    /// The latest flush that completed successfully (flushes complete in order).
    finished: u64,
    running: bool,
}

/// One party's store.
pub struct Store {
    dir: PathBuf,
    data: PathBuf,
    db: sled::Db,
    batches: sled::Tree,
    stock: sled::Tree,
    reservations: sled::Tree,
    /// Reservations allocated here and not yet settled, by reservation time (migration 2).
    open: sled::Tree,
    audit: sled::Tree,
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

    fn from_db(dir: &Path, db: sled::Db) -> Result<Store> {
        schema::migrate(&db, schema::MIGRATIONS)?;
        let meta_dir = dir.join("meta");
        db.flush()?;
        let meta = MetaFiles::open(&meta_dir).map_err(io_err("sync", &meta_dir))?;
        let identity: StoreIdentity = match db.get("identity")? {
            Some(v) => from_json("identity", &v)?,
            None => return Err(StoreError::NotAStore(dir.to_path_buf())),
        };
        let store = Store {
            dir: dir.to_path_buf(),
            data: dir.join("batches"),
            batches: db.open_tree("batches")?,
            stock: db.open_tree("stock")?,
            reservations: db.open_tree("reservations")?,
            open: db.open_tree("open")?,
            audit: db.open_tree("audit")?,
            db,
            identity,
            lock: Mutex::new(()),
            streaming: Mutex::new(Vec::new()),
            erase_lock: Mutex::new(()),
            stage_lock: Mutex::new(()),
            commit: GroupCommit::default(),
            meta,
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

    fn batch_path(&self, id: &BatchId) -> PathBuf {
        self.data.join(format!("{id}.lb"))
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes every change made before the call durable. Concurrent callers share fsyncs
    /// (group commit): while one flush runs, later callers wait and one of them runs the next
    /// flush for all of them.
    fn flush(&self) -> Result<()> {
        let mut g = self.commit.state.lock().unwrap_or_else(|p| p.into_inner());
        // A flush that starts from now on covers this caller's changes.
        let target = g.started + 1;
        loop {
            if g.finished >= target {
                return Ok(());
            }
            if !g.running {
                g.running = true;
                g.started += 1;
                let mine = g.started;
                drop(g);
                let r = self.db.flush().map_err(StoreError::from).and_then(|_| {
                    self.meta
                        .sync()
                        .map_err(io_err("sync", &self.dir.join("meta")))
                });
                g = self.commit.state.lock().unwrap_or_else(|p| p.into_inner());
                g.running = false;
                if r.is_ok() {
                    g.finished = mine;
                }
                self.commit.done.notify_all();
                r?;
                continue;
            }
            g = self.commit.done.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn sync_dir(&self) -> Result<()> {
        File::open(&self.data)
            .and_then(|d| d.sync_all())
            .map_err(io_err("sync", &self.data))
    }

    /// Removes files no metadata points to and finishes interrupted erasures.
    fn recover(&self) -> Result<()> {
        let entries = fs::read_dir(&self.data).map_err(io_err("list", &self.data))?;
        for entry in entries {
            let path = entry.map_err(io_err("list", &self.data))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let known = name
                .strip_suffix(".lb")
                .and_then(|id| id.parse::<BatchId>().ok())
                .map(|id| self.batch_meta(&id))
                .transpose()?
                .flatten()
                .is_some_and(|m| m.state != BatchState::Exhausted);
            if !known {
                fs::remove_file(&path).map_err(io_err("remove", &path))?;
            }
        }
        self.sync_dir()?;
        for meta in self.all_batches()? {
            self.erase_consumed(&meta.id)?;
        }
        Ok(())
    }

    /// Metadata of one batch.
    ///
    /// # Errors
    /// Sled errors or corrupt metadata.
    pub fn batch_meta(&self, id: &BatchId) -> Result<Option<BatchMeta>> {
        self.batches
            .get(id.0)?
            .map(|v| from_json("batch", &v))
            .transpose()
    }

    /// Every batch's metadata.
    ///
    /// # Errors
    /// Sled errors or corrupt metadata.
    pub fn all_batches(&self) -> Result<Vec<BatchMeta>> {
        self.batches
            .iter()
            .values()
            .map(|v| from_json("batch", &v?))
            .collect()
    }

    /// Stores this party's share of a batch durably, as `staged`. Staging the same batch again
    /// is a no-op.
    ///
    /// # Errors
    /// [`FormatError`] if the file is invalid; [`StoreError::WrongParty`] if it is another
    /// party's share; [`StoreError::BatchMismatch`] for a different batch under a known id.
    pub fn stage(&self, bytes: &[u8]) -> Result<BatchHeader> {
        let header = BatchHeader::verify_file(bytes)?;
        let me = &self.identity;
        if header.party != me.party || header.parties != me.parties {
            return Err(StoreError::WrongParty {
                got: header.party,
                got_parties: header.parties,
                want: me.party,
                want_parties: me.parties,
            });
        }
        let known = |s: &Store| -> Result<Option<BatchHeader>> {
            match s.batch_meta(&header.batch)? {
                Some(meta) if meta.pool == header.pool && meta.items == header.items => {
                    Ok(Some(header.clone()))
                }
                Some(_) => Err(StoreError::BatchMismatch(header.batch)),
                None => Ok(None),
            }
        };
        if let Some(h) = known(self)? {
            return Ok(h);
        }
        let path = self.batch_path(&header.batch);
        // A temporary name of its own, so two stagings of one batch never write one file.
        let tmp = path.with_extension(format!("{:016x}.tmp", rand::random::<u64>()));
        write_durably(&tmp, bytes).map_err(io_err("write", &tmp))?;
        // From the check to the commit, one staging at a time: a late rename must never
        // replace a file that is already committed (or already erased).
        let _one = self.stage_lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = known(self)? {
            let _ = fs::remove_file(&tmp);
            return Ok(h);
        }
        fs::rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
        self.sync_dir()?;
        let meta = BatchMeta {
            id: header.batch,
            pool: header.pool,
            items: header.items,
            state: BatchState::Staged,
            free: RangeSet::interval(0, header.items),
            consumed: RangeSet::new(),
            erased_chunks: RangeSet::new(),
            chunk_items: header.chunk_items,
            stock_seq: 0,
            staged_at: now_unix(),
        };
        let audit = audit_entry("stage", header.pool, None, Some(header.batch), vec![], None);
        {
            let _g = self.locked();
            let seq = self.db.generate_id()?;
            unwrap_tx((&self.batches, &self.audit).transaction(|(b, a)| {
                if b.get(header.batch.0)?.is_some() {
                    return abort(StoreError::BatchMismatch(header.batch));
                }
                b.insert(&header.batch.0, to_json(&meta))?;
                a.insert(&seq.to_be_bytes(), to_json(&audit))?;
                Ok(())
            }))?;
        }
        self.flush()?;
        Ok(header)
    }
}

/// The single result of a group of one.
fn one<T>(mut results: Vec<Result<T>>) -> Result<T> {
    results.pop().expect("one result per item")
}

/// A group whose commit or flush failed: nothing in it is acknowledged.
fn fail_all<T>(
    results: Vec<Result<T>>,
    op: &'static str,
    dir: &Path,
    e: &StoreError,
) -> Vec<Result<T>> {
    let why = e.to_string();
    results
        .into_iter()
        .map(|r| {
            r.and_then(|_| {
                Err(StoreError::Io {
                    op,
                    path: dir.to_path_buf(),
                    source: io::Error::other(why.clone()),
                })
            })
        })
        .collect()
}

/// The audit record of a reservation's event.
fn reservation_audit(event: &str, res: &Reservation, by: Option<&str>) -> AuditRecord {
    audit_entry(
        event,
        res.pool,
        Some(&res.checkout),
        None,
        res.ranges.clone(),
        by,
    )
}

fn audit_entry(
    event: &str,
    pool: PoolSpec,
    checkout: Option<&str>,
    batch: Option<BatchId>,
    ranges: Vec<ShareRange>,
    by: Option<&str>,
) -> AuditRecord {
    AuditRecord {
        at: now_unix(),
        event: event.to_string(),
        pool,
        checkout: checkout.map(str::to_string),
        batch,
        ranges,
        by: by.map(str::to_string),
    }
}

impl Store {
    /// Makes a staged batch available for allocation (the leader does this once every party
    /// has staged it). Activating an available batch again is a no-op.
    ///
    /// # Errors
    /// [`StoreError::UnknownBatch`]; [`StoreError::IllegalTransition`] for an exhausted batch.
    pub fn activate(&self, id: &BatchId) -> Result<()> {
        {
            let _g = self.locked();
            let seq = self.db.generate_id()?;
            let aseq = self.db.generate_id()?;
            unwrap_tx(
                (&self.batches, &self.stock, &self.audit).transaction(|(b, s, a)| {
                    let Some(mut meta) = tx_get::<BatchMeta>(b, &id.0, "batch")? else {
                        return abort(StoreError::UnknownBatch(*id));
                    };
                    match meta.state {
                        BatchState::Available => return Ok(()),
                        BatchState::Exhausted => {
                            return abort(StoreError::IllegalTransition {
                                batch: *id,
                                from: meta.state,
                                to: "available",
                            })
                        }
                        BatchState::Staged => {}
                    }
                    meta.state = BatchState::Available;
                    meta.stock_seq = seq;
                    if !meta.free.is_empty() {
                        s.insert(stock_key(&meta.pool, seq), &id.0)?;
                    }
                    b.insert(&id.0, to_json(&meta))?;
                    a.insert(
                        &aseq.to_be_bytes(),
                        to_json(&audit_entry(
                            "activate",
                            meta.pool,
                            None,
                            Some(*id),
                            vec![],
                            None,
                        )),
                    )?;
                    Ok(())
                }),
            )?;
        }
        self.flush()
    }

    /// Drops a staged batch that will never complete: metadata and data. Aborting an unknown
    /// batch is a no-op.
    ///
    /// # Errors
    /// [`StoreError::IllegalTransition`] if the batch is already available or exhausted.
    pub fn abort(&self, id: &BatchId) -> Result<()> {
        {
            let _g = self.locked();
            let aseq = self.db.generate_id()?;
            unwrap_tx((&self.batches, &self.audit).transaction(|(b, a)| {
                let Some(meta) = tx_get::<BatchMeta>(b, &id.0, "batch")? else {
                    return Ok(());
                };
                if meta.state != BatchState::Staged {
                    return abort(StoreError::IllegalTransition {
                        batch: *id,
                        from: meta.state,
                        to: "aborted",
                    });
                }
                b.remove(&id.0)?;
                a.insert(
                    &aseq.to_be_bytes(),
                    to_json(&audit_entry(
                        "abort",
                        meta.pool,
                        None,
                        Some(*id),
                        vec![],
                        None,
                    )),
                )?;
                Ok(())
            }))?;
        }
        self.flush()?;
        let path = self.batch_path(id);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove", &path)(e)),
        }
        self.sync_dir()
    }

    fn check_request(checkout: &str, count: u64) -> Result<()> {
        if checkout.is_empty()
            || checkout.chars().count() > MAX_CHECKOUT_ID
            || checkout.chars().any(|c| c.is_control())
        {
            return Err(StoreError::BadCheckoutId);
        }
        if count == 0 {
            return Err(StoreError::ZeroCount);
        }
        Ok(())
    }

    /// The leader's allocation: reserves `count` items of `pool` under `checkout`, first in
    /// first out, splitting batches as needed. The same request again returns the same
    /// reservation.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] for a used id with other parameters; [`StoreError::Underrun`]
    /// (with the available count) if stock is short.
    pub fn allocate(&self, checkout: &str, pool: PoolSpec, count: u64) -> Result<Reservation> {
        one(self.allocate_many(&[(checkout.to_string(), pool, count)]))
    }

    /// [`Store::allocate`] for many requests, written by one transaction and made durable by
    /// one flush (the leader groups concurrent checkouts this way). One result per request,
    /// in order; a later request sees the allocations of earlier ones, so the same id twice
    /// gets the same reservation.
    pub fn allocate_many(&self, requests: &[(String, PoolSpec, u64)]) -> Vec<Result<Reservation>> {
        let results = self.plan_group(|view| {
            requests
                .iter()
                .map(|(id, pool, count)| view.item(|v| Self::plan_allocate(v, id, *pool, *count)))
                .collect()
        });
        self.flush_all(results)
    }

    /// Plans and commits a group of changes under the store's lock, in one transaction. If
    /// the transaction fails, nothing in the group succeeded.
    fn plan_group<T>(&self, plan: impl FnOnce(&mut View<'_>) -> Vec<Result<T>>) -> Vec<Result<T>> {
        let _g = self.locked();
        let mut view = View::new(self);
        let results = plan(&mut view);
        match view.commit() {
            Ok(()) => results,
            Err(e) => fail_all(results, "commit metadata", &self.dir, &e),
        }
    }

    /// Flushes once for a group of unflushed changes; if the flush fails, none of them is
    /// acknowledged.
    fn flush_all<T>(&self, results: Vec<Result<T>>) -> Vec<Result<T>> {
        if !results.iter().any(Result::is_ok) {
            return results;
        }
        match self.flush() {
            Ok(()) => results,
            Err(e) => fail_all(results, "flush metadata", &self.dir, &e),
        }
    }

    fn plan_allocate(
        view: &mut View<'_>,
        checkout: &str,
        pool: PoolSpec,
        count: u64,
    ) -> Result<Reservation> {
        Self::check_request(checkout, count)?;
        if let Some(existing) = view.reservation(checkout)? {
            if existing.pool == pool && existing.count == count {
                // Possibly written by a call not flushed yet: the caller flushes.
                return Ok(existing);
            }
            return Err(StoreError::Conflict(checkout.to_string()));
        }
        let mut need = count;
        let mut ranges = Vec::new();
        for entry in view.stock_scan(&stock_prefix(&pool)) {
            if need == 0 {
                break;
            }
            let (key, id) = entry?;
            let mut meta = view.meta(&id)?.ok_or(StoreError::UnknownBatch(id))?;
            for (first, end) in meta.free.take_front(need) {
                need -= end - first;
                ranges.push(ShareRange {
                    batch: id,
                    first,
                    count: end - first,
                });
            }
            if meta.free.is_empty() {
                view.stock_remove(key);
            }
            view.put_meta(meta);
        }
        if need > 0 {
            return Err(StoreError::Underrun {
                pool,
                requested: count,
                available: count - need,
            });
        }
        let res = Reservation {
            checkout: checkout.to_string(),
            pool,
            count,
            ranges,
            state: ReservationState::Reserved,
            reserved_at: now_unix(),
            consumer: None,
            consumed_at: None,
            confirmed: false,
            settled: false,
        };
        view.audit(reservation_audit("reserve", &res, None));
        view.open_insert(&res);
        view.put_reservation(res.clone());
        Ok(res)
    }

    /// A follower's side of allocation: holds exactly the leader's ranges. A batch staged here
    /// becomes available (the leader only allocates batches every party has staged). Applying
    /// the same reservation again is a no-op.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] if the id holds a different reservation;
    /// [`StoreError::RangeUnavailable`] if an item is not free here.
    pub fn apply(&self, reservation: &Reservation) -> Result<()> {
        one(self.apply_many(std::slice::from_ref(reservation)))
    }

    /// [`Store::apply`] for many reservations, written by one transaction and made durable by
    /// one flush. One result per reservation, in order.
    pub fn apply_many(&self, reservations: &[Reservation]) -> Vec<Result<()>> {
        let results = self.plan_group(|view| {
            reservations
                .iter()
                .map(|r| view.item(|v| self.plan_apply(v, r)))
                .collect()
        });
        self.flush_all(results)
    }

    fn plan_apply(&self, view: &mut View<'_>, reservation: &Reservation) -> Result<()> {
        Self::check_request(&reservation.checkout, reservation.count)?;
        let total = reservation.ranges.iter().try_fold(0u64, |acc, r| {
            if r.count == 0 {
                None
            } else {
                acc.checked_add(r.count)
                    .filter(|_| r.first.checked_add(r.count).is_some())
            }
        });
        if total != Some(reservation.count) {
            return Err(StoreError::Corrupt(
                "reservation ranges do not add up to its count".into(),
            ));
        }
        if let Some(existing) = view.reservation(&reservation.checkout)? {
            if !existing.same_allocation(reservation) {
                return Err(StoreError::Conflict(reservation.checkout.clone()));
            }
            // Released here (expiry): the leader must not count this party as holding it.
            if existing.state == ReservationState::Released {
                return Err(StoreError::NotReserved {
                    checkout: existing.checkout,
                    state: existing.state,
                    to: "held again",
                });
            }
            // Possibly written by a call not flushed yet: the caller flushes.
            return Ok(());
        }
        let mut metas = BTreeMap::new();
        view.load_metas(&mut metas, &reservation.ranges)?;
        // Items the leader hands out again can be held here only by a reservation the
        // leader dropped before confirming it (it confirms only once every party holds a
        // reservation, and never reallocates a confirmed one's items while it is live):
        // such stale reservations are released first, in the same transaction.
        let busy = reservation.ranges.iter().any(|r| {
            !metas[&r.batch]
                .free
                .contains(r.first, r.first.saturating_add(r.count))
        });
        if busy {
            // Those in sled and those planned earlier in this group.
            let mut ids: std::collections::BTreeSet<String> = self
                .reservations
                .iter()
                .keys()
                .map(|k| k.map(|k| String::from_utf8_lossy(&k).into_owned()))
                .collect::<sled::Result<_>>()?;
            ids.extend(view.planned_reservations());
            for id in ids {
                let Some(mut old) = view.reservation(&id)? else {
                    continue;
                };
                let overlaps = old.ranges.iter().any(|o| {
                    reservation.ranges.iter().any(|r| {
                        o.batch == r.batch
                            && o.first < r.first + r.count
                            && r.first < o.first + o.count
                    })
                });
                if !(overlaps && old.state == ReservationState::Reserved && !old.confirmed) {
                    continue;
                }
                view.load_metas(&mut metas, &old.ranges)?;
                for o in &old.ranges {
                    metas
                        .get_mut(&o.batch)
                        .expect("loaded above")
                        .free
                        .insert(o.first, o.first + o.count);
                }
                old.state = ReservationState::Released;
                view.audit(reservation_audit("release", &old, None));
                view.put_reservation(old);
            }
        }
        for r in &reservation.ranges {
            let meta = metas.get_mut(&r.batch).expect("loaded above");
            let end = r.first.checked_add(r.count).ok_or(StoreError::ZeroCount)?;
            if meta.state == BatchState::Exhausted || !meta.free.remove(r.first, end) {
                return Err(StoreError::RangeUnavailable {
                    batch: r.batch,
                    first: r.first,
                    end,
                });
            }
        }
        for mut meta in metas.into_values() {
            let activated = meta.state == BatchState::Staged;
            if activated {
                meta.state = BatchState::Available;
                meta.stock_seq = self.db.generate_id()?;
            }
            let key = stock_key(&meta.pool, meta.stock_seq);
            if meta.free.is_empty() {
                view.stock_remove(key);
            } else if meta.state == BatchState::Available {
                // Also when a stale reservation's release gave items back (idempotent).
                view.stock_insert(key, meta.id);
            }
            view.put_meta(meta);
        }
        let mut res = reservation.clone();
        res.state = ReservationState::Reserved;
        res.consumer = None;
        res.consumed_at = None;
        res.confirmed = false;
        view.audit(reservation_audit("reserve", &res, None));
        view.put_reservation(res);
        Ok(())
    }

    /// Marks a reservation confirmed: every party holds it, so its shares may be handed out.
    /// Confirming again, or a reservation already consumed or burned, is a no-op.
    ///
    /// Not flushed on its own: the flag only caches a fact that stays true (every party holds
    /// the reservation durably; holdings are released only by the leader's expiry, which asks
    /// every party first). If a crash loses it, the node asks the leader again, and the leader
    /// re-establishes it by replicating again (idempotent). The next flush of anything (the
    /// download's consume, for one) makes it durable too.
    ///
    /// # Errors
    /// [`StoreError::UnknownCheckout`]; [`StoreError::NotReserved`] if it was released.
    pub fn confirm(&self, checkout: &str) -> Result<Reservation> {
        let res = {
            let _g = self.locked();
            let mut res = self
                .reservation(checkout)?
                .ok_or_else(|| StoreError::UnknownCheckout(checkout.to_string()))?;
            match res.state {
                ReservationState::Released => {
                    return Err(StoreError::NotReserved {
                        checkout: checkout.to_string(),
                        state: res.state,
                        to: "confirmed",
                    })
                }
                ReservationState::Reserved if !res.confirmed => {
                    res.confirmed = true;
                    self.reservations
                        .insert(checkout.as_bytes(), to_json(&res))?;
                }
                _ => return Ok(res),
            }
            res
        };
        Ok(res)
    }

    /// Records at the leader that expiry has finished with a reservation at every party.
    ///
    /// # Errors
    /// [`StoreError::UnknownCheckout`], sled errors.
    pub fn settle(&self, checkout: &str) -> Result<()> {
        {
            let _g = self.locked();
            let mut res = self
                .reservation(checkout)?
                .ok_or_else(|| StoreError::UnknownCheckout(checkout.to_string()))?;
            res.settled = true;
            self.reservations
                .insert(checkout.as_bytes(), to_json(&res))?;
            self.open.remove(open_key(&res))?;
        }
        self.flush()
    }

    /// Reservations allocated here, not settled, reserved at or before `cutoff` (Unix
    /// seconds): what the leader's expiry sweep must look at. Reads only the index of open
    /// reservations, however many were ever made.
    ///
    /// # Errors
    /// Sled errors or corrupt metadata.
    pub fn open_reservations_until(&self, cutoff: u64) -> Result<Vec<Reservation>> {
        let end = cutoff.saturating_add(1).to_be_bytes();
        let mut out = Vec::new();
        for key in self.open.range(..&end[..]).keys() {
            let key = key?;
            let id = key
                .get(8..)
                .and_then(|id| std::str::from_utf8(id).ok())
                .ok_or_else(|| StoreError::Corrupt("open reservations index".into()))?;
            match self.reservation(id)? {
                Some(r) if !r.settled => out.push(r),
                // Settled or gone: the index entry is stale.
                _ => {
                    self.open.remove(&key)?;
                }
            }
        }
        Ok(out)
    }

    /// Every reservation, in checkout id order.
    ///
    /// # Errors
    /// Sled errors or corrupt metadata.
    pub fn reservations(&self) -> Result<Vec<Reservation>> {
        self.reservations
            .iter()
            .values()
            .map(|v| from_json("reservation", &v?))
            .collect()
    }

    /// A reservation by checkout id.
    ///
    /// # Errors
    /// Sled errors or corrupt metadata.
    pub fn reservation(&self, checkout: &str) -> Result<Option<Reservation>> {
        self.reservations
            .get(checkout)?
            .map(|v| from_json("reservation", &v))
            .transpose()
    }

    /// Moves a reservation out of `reserved` (to consumed, released or burned) and updates
    /// its batches, atomically and durably.
    fn finish_reservation(
        &self,
        checkout: &str,
        to: ReservationState,
        by: Option<&str>,
    ) -> Result<Reservation> {
        one(self.finish_many(&[(checkout.to_string(), by.map(str::to_string))], to))
    }

    /// Moves many reservations out of `reserved` to `to` in one transaction and one flush.
    /// Consumed ones are registered as streaming (their chunks are not erased) until
    /// [`Store::end_stream`]; if nothing is acknowledged, they are unregistered again.
    fn finish_many(
        &self,
        items: &[(String, Option<String>)],
        to: ReservationState,
    ) -> Vec<Result<Reservation>> {
        let results = self.plan_group(|view| {
            items
                .iter()
                .map(|(id, by)| view.item(|v| Self::plan_finish(v, id, to, by.as_deref())))
                .collect()
        });
        let consumed: Vec<Reservation> = if to == ReservationState::Consumed {
            results
                .iter()
                .filter_map(|r| r.as_ref().ok().cloned())
                .collect()
        } else {
            Vec::new()
        };
        let flushed = self.flush_all(results);
        if flushed.iter().filter(|r| r.is_ok()).count() < consumed.len() {
            // Nothing was acknowledged, so no stream starts: let the chunks be erased.
            for res in &consumed {
                self.end_stream(res);
            }
        }
        flushed
    }

    fn plan_finish(
        view: &mut View<'_>,
        checkout: &str,
        to: ReservationState,
        by: Option<&str>,
    ) -> Result<Reservation> {
        let mut res = view
            .reservation(checkout)?
            .ok_or_else(|| StoreError::UnknownCheckout(checkout.to_string()))?;
        if to == ReservationState::Consumed
            && res.state == ReservationState::Reserved
            && !res.confirmed
        {
            return Err(StoreError::Unconfirmed(checkout.to_string()));
        }
        if res.state != ReservationState::Reserved {
            return Err(
                if to == ReservationState::Consumed && res.state != ReservationState::Released {
                    StoreError::Gone {
                        checkout: checkout.to_string(),
                        state: res.state,
                    }
                } else {
                    StoreError::NotReserved {
                        checkout: checkout.to_string(),
                        state: res.state,
                        to: match to {
                            ReservationState::Released => "released",
                            ReservationState::Burned => "burned",
                            _ => "consumed",
                        },
                    }
                },
            );
        }
        let mut metas = BTreeMap::new();
        view.load_metas(&mut metas, &res.ranges)?;
        for r in &res.ranges {
            let meta = metas.get_mut(&r.batch).expect("loaded above");
            if to == ReservationState::Released {
                meta.free.insert(r.first, r.first + r.count);
            } else {
                meta.consumed.insert(r.first, r.first + r.count);
            }
        }
        for meta in metas.into_values() {
            if to == ReservationState::Released
                && meta.state == BatchState::Available
                && !meta.free.is_empty()
            {
                view.stock_insert(stock_key(&meta.pool, meta.stock_seq), meta.id);
            }
            view.put_meta(meta);
        }
        res.state = to;
        if to == ReservationState::Consumed {
            res.consumer = by.map(str::to_string);
            res.consumed_at = Some(now_unix());
        }
        let event = match to {
            ReservationState::Consumed => "consume",
            ReservationState::Released => "release",
            _ => "burn",
        };
        view.audit(reservation_audit(event, &res, by));
        view.put_reservation(res.clone());
        if to == ReservationState::Consumed {
            // Registered while the store's lock is held, before the consumed state commits,
            // so no erasure can slip in between (a failed commit unregisters it).
            view.streaming(res.ranges.clone());
        }
        Ok(res)
    }

    /// Marks a reservation's items consumed here, for `consumer`, durably and before any share
    /// is read: a crash afterwards loses the material rather than risking handing it out twice.
    ///
    /// # Errors
    /// [`StoreError::Gone`] if it was already consumed or burned here.
    pub fn consume(&self, checkout: &str, consumer: &str) -> Result<Reservation> {
        self.finish_reservation(checkout, ReservationState::Consumed, Some(consumer))
    }

    /// [`Store::consume`] for many downloads, written by one transaction and made durable by
    /// one flush. Damaged data is refused before anything is consumed: a share stream of at
    /// most `inline_bytes` is made first, in memory (which checks every chunk), and returned
    /// with the reservation once it is consumed; a larger one has its chunks checked
    /// ([`Store::check_ranges`]) and is left to [`Store::write_shares`] (its ranges stay
    /// registered as streaming until [`Store::end_stream`]). One result per
    /// `(checkout, consumer)`, in order.
    pub fn consume_many(
        &self,
        downloads: &[(String, String)],
        inline_bytes: u64,
    ) -> Vec<Result<(Reservation, Option<ShareBytes>)>> {
        // Outside the store's lock: reading chunks takes a while. A damaged reservation fails
        // alone.
        let mut checked = Vec::new();
        let mut items = Vec::new();
        for (id, by) in downloads {
            let check = match self.reservation(id) {
                // Checked even if not confirmed yet: a confirmation may land before the lock.
                Ok(Some(res)) if res.state == ReservationState::Reserved => {
                    let len = self.share_stream_len(&res);
                    if len <= inline_bytes {
                        // Sized up front: growing would leave unzeroized copies behind.
                        let mut body = zeroize::Zeroizing::new(Vec::with_capacity(len as usize));
                        let made = self.stream_shares(&res, &mut *body).map(drop);
                        made.map(|()| Some(body))
                    } else {
                        self.check_ranges(&res).map(|()| None)
                    }
                }
                Ok(_) => Ok(None),
                Err(e) => Err(e),
            };
            if check.is_ok() {
                items.push((id.clone(), Some(by.clone())));
            }
            checked.push(check);
        }
        let mut finished = self
            .finish_many(&items, ReservationState::Consumed)
            .into_iter();
        checked
            .into_iter()
            .map(|c| {
                let body = c?;
                let res = finished.next().expect("one result per item")?;
                if body.is_some() {
                    // Made already: no stream to wait for.
                    self.end_stream(&res);
                }
                Ok((res, body))
            })
            .collect()
    }

    /// Returns a reservation nobody downloaded to stock.
    ///
    /// # Errors
    /// [`StoreError::NotReserved`] if it is no longer reserved.
    pub fn release(&self, checkout: &str) -> Result<Reservation> {
        self.finish_reservation(checkout, ReservationState::Released, None)
    }

    /// Consumes a reservation without handing it out (another party already downloaded).
    ///
    /// # Errors
    /// [`StoreError::NotReserved`] if it is no longer reserved.
    pub fn burn(&self, checkout: &str) -> Result<Reservation> {
        let res = self.finish_reservation(checkout, ReservationState::Burned, None)?;
        self.erase_reservation(&res)?;
        Ok(res)
    }

    /// Streams this party's shares of a consumed reservation to `out` as a share stream.
    ///
    /// # Errors
    /// [`StoreError::NotReserved`] unless the reservation is consumed here; IO and format
    /// errors from the batch files (a damaged chunk is an error, never wrong data).
    pub fn write_shares<W: Write>(&self, res: &Reservation, out: W) -> Result<W> {
        if res.state != ReservationState::Consumed {
            return Err(StoreError::NotReserved {
                checkout: res.checkout.clone(),
                state: res.state,
                to: "downloaded",
            });
        }
        self.stream_shares(res, out)
    }

    /// This party's share stream of a reservation, as [`Store::write_shares`] writes it.
    fn share_header(&self, res: &Reservation) -> ShareHeader {
        ShareHeader {
            pool: res.pool,
            parties: self.identity.parties,
            party: self.identity.party,
            checkout: res.checkout.clone(),
            ranges: res.ranges.clone(),
        }
    }

    /// Bytes of a reservation's share stream.
    pub fn share_stream_len(&self, res: &Reservation) -> u64 {
        let h = self.share_header(res);
        h.encode().len() as u64 + h.items() * h.record_bytes() as u64 + 4
    }

    /// Writes the share stream whatever the reservation's state (callers decide when).
    fn stream_shares<W: Write>(&self, res: &Reservation, out: W) -> Result<W> {
        let header = self.share_header(res);
        let wio = |e: io::Error| StoreError::Io {
            op: "write shares",
            path: PathBuf::from("<output>"),
            source: e,
        };
        let mut w = ShareWriter::new(out, &header).map_err(wio)?;
        // Chunks are read a group at a time (one read) and expanded in parallel, then written
        // in order; memory stays at a group's worth whatever the checkout's size.
        const GROUP: u64 = 64;
        let mut files = Vec::with_capacity(res.ranges.len());
        for r in &res.ranges {
            let path = self.batch_path(&r.batch);
            let file = File::open(&path).map_err(io_err("open", &path))?;
            let bh = self.read_header(&file, &path, r, res.pool)?;
            files.push((path, file, bh));
        }
        // Sized once for the largest group this checkout reads, so it never reallocates (and
        // leaves no unzeroized copy behind), and no larger: it is zeroed when dropped.
        let max_group = res
            .ranges
            .iter()
            .zip(&files)
            .map(|(r, (_, _, bh))| {
                let ci = bh.chunk_items as u64;
                let chunks = (r.first + r.count - 1) / ci - r.first / ci + 1;
                (chunks.min(GROUP) * (bh.chunk_offset(1) - bh.chunk_offset(0))) as usize
            })
            .max()
            .unwrap_or(0);
        let mut raw = zeroize::Zeroizing::new(Vec::with_capacity(max_group));
        for (r, (path, file, bh)) in res.ranges.iter().zip(&files) {
            let layout = bh.layout();
            let ci = bh.chunk_items as u64;
            let ring = bh.pool.domain.ring();
            let end = r.first + r.count;
            let (first_chunk, last_chunk) = (r.first / ci, (end - 1) / ci);
            let mut group = first_chunk;
            while group <= last_chunk {
                let g_end = (group + GROUP).min(last_chunk + 1);
                let off = bh.chunk_offset(group);
                let len =
                    (bh.chunk_offset(g_end - 1) + bh.chunk_bytes(g_end - 1) as u64 - off) as usize;
                raw.resize(len, 0);
                file.read_exact_at(&mut raw, off)
                    .map_err(io_err("read", path))?;
                let expand = |c: u64| -> Result<zeroize::Zeroizing<Vec<u8>>> {
                    let at = (bh.chunk_offset(c) - off) as usize;
                    let (seed, explicit) = bh.decode_chunk(c, &raw[at..at + bh.chunk_bytes(c)])?;
                    let start = c * ci;
                    let skip = r.first.max(start) - start;
                    let stop = end.min(start + bh.chunk_len(c)) - start;
                    let mut out = zeroize::Zeroizing::new(Vec::new());
                    with_ring!(ring, rg => expand_chunk(rg, &layout, &seed, explicit, bh.chunk_len(c) as usize, skip as usize..stop as usize, &mut out))?;
                    Ok(out)
                };
                // A few chunks expand faster here than handed to the thread pool and back
                // (small checkouts are latency-bound; large ones are throughput-bound).
                let expanded: Vec<Result<zeroize::Zeroizing<Vec<u8>>>> = if g_end - group < 4 {
                    (group..g_end).map(expand).collect()
                } else {
                    (group..g_end).into_par_iter().map(expand).collect()
                };
                for records in expanded {
                    w.write_records(&records?).map_err(wio)?;
                }
                group = g_end;
            }
        }
        w.finish().map_err(wio)
    }

    /// Checks the header and every chunk checksum behind a reservation's ranges.
    ///
    /// # Errors
    /// The first IO or [`FormatError`] found.
    pub fn check_ranges(&self, res: &Reservation) -> Result<()> {
        let mut chunk = zeroize::Zeroizing::new(Vec::new());
        for r in &res.ranges {
            let path = self.batch_path(&r.batch);
            let file = File::open(&path).map_err(io_err("open", &path))?;
            let bh = self.read_header(&file, &path, r, res.pool)?;
            let ci = bh.chunk_items as u64;
            for c in r.first / ci..(r.first + r.count).div_ceil(ci) {
                chunk.resize(bh.chunk_bytes(c), 0);
                file.read_exact_at(&mut chunk, bh.chunk_offset(c))
                    .map_err(io_err("read", &path))?;
                bh.decode_chunk(c, &chunk)?;
            }
        }
        Ok(())
    }

    /// Reads and checks a batch file's header against the range and pool expected of it.
    fn read_header(
        &self,
        file: &File,
        path: &Path,
        r: &ShareRange,
        pool: PoolSpec,
    ) -> Result<BatchHeader> {
        let mut hbuf = [0u8; HEADER_BYTES];
        file.read_exact_at(&mut hbuf, 0)
            .map_err(io_err("read", path))?;
        let bh = BatchHeader::decode(&hbuf)?;
        let me = &self.identity;
        if bh.batch != r.batch
            || bh.pool != pool
            || bh.party != me.party
            || bh.parties != me.parties
            || r.first + r.count > bh.items
        {
            return Err(StoreError::Corrupt(format!(
                "batch file {} does not match its metadata",
                path.display()
            )));
        }
        Ok(bh)
    }

    /// Consume, stream and erase in one call: the whole of a download at this party.
    ///
    /// # Errors
    /// As [`Store::consume`] and [`Store::write_shares`].
    pub fn take<W: Write>(&self, checkout: &str, consumer: &str, out: W) -> Result<W> {
        if let Some(res) = self.reservation(checkout)? {
            // A damaged file is found before the items are marked consumed, so it costs an
            // error, not the material.
            if res.state == ReservationState::Reserved {
                self.check_ranges(&res)?;
            }
        }
        let res = self.consume(checkout, consumer)?;
        let out = self.write_shares(&res, out);
        // Erase whether or not the stream succeeded: the items are consumed either way.
        self.erase_reservation(&res)?;
        out
    }

    /// Records that a consumed reservation's shares have been streamed out (or the stream
    /// failed), so its chunks may be erased; [`Store::erase_due`] or
    /// [`Store::erase_reservation`] then erases them.
    pub fn end_stream(&self, res: &Reservation) {
        let mut streaming = self.streaming.lock().unwrap_or_else(|p| p.into_inner());
        for r in &res.ranges {
            if let Some(i) = streaming.iter().position(|s| s == r) {
                streaming.swap_remove(i);
            }
        }
    }

    /// Erases every consumed chunk no stream still needs, in every batch. A node runs this
    /// from its periodic sweep, so erasure costs no fsync on the download path.
    ///
    /// # Errors
    /// IO or sled errors.
    pub fn erase_due(&self) -> Result<()> {
        for meta in self.all_batches()? {
            if meta.state != BatchState::Exhausted && !meta.consumed.is_empty() {
                self.erase_consumed(&meta.id)?;
            }
        }
        Ok(())
    }

    /// Overwrites the data of a consumed reservation's fully consumed chunks.
    ///
    /// # Errors
    /// IO or sled errors.
    pub fn erase_reservation(&self, res: &Reservation) -> Result<()> {
        self.end_stream(res);
        let mut ids: Vec<BatchId> = res.ranges.iter().map(|r| r.batch).collect();
        ids.dedup();
        for id in ids {
            self.erase_consumed(&id)?;
        }
        Ok(())
    }

    /// Erases every fully consumed, not yet erased chunk of a batch (seed and values
    /// overwritten with zeros, then synced), and deletes the file once every item is consumed.
    fn erase_consumed(&self, id: &BatchId) -> Result<()> {
        // Erasures run one at a time (so only one deletes a file), but their file IO happens
        // outside the metadata lock, so checkouts are not held up by it.
        let _one = self.erase_lock.lock().unwrap_or_else(|p| p.into_inner());
        let (due, all, pool) = {
            let _g = self.locked();
            let streaming = self
                .streaming
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let Some(meta) = self.batch_meta(id)? else {
                return Ok(());
            };
            if meta.state == BatchState::Exhausted {
                return Ok(());
            }
            let ci = meta.chunk_items as u64;
            let busy = |start: u64, end: u64| {
                streaming
                    .iter()
                    .any(|r| r.batch == *id && r.first < end && start < r.first + r.count)
            };
            let due: Vec<u64> = (0..meta.items.div_ceil(ci))
                .filter(|&c| !meta.erased_chunks.contains(c, c + 1))
                .filter(|&c| {
                    let (start, end) = (c * ci, ((c + 1) * ci).min(meta.items));
                    meta.consumed.contains(start, end) && !busy(start, end)
                })
                .collect();
            // Once every item is consumed no new stream can start on this batch.
            let all = meta.consumed.contains(0, meta.items) && !busy(0, meta.items);
            (due, all, meta.pool)
        };
        if due.is_empty() {
            return Ok(());
        }
        let path = self.batch_path(id);
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        let mut hbuf = [0u8; HEADER_BYTES];
        file.read_exact_at(&mut hbuf, 0)
            .map_err(io_err("read", &path))?;
        let bh = BatchHeader::decode(&hbuf)?;
        // Overwritten (and synced) before any unlink, so the bytes do not linger in freed
        // blocks of a long-lived file system.
        for &c in &due {
            let zeros = vec![0u8; bh.chunk_bytes(c)];
            file.write_all_at(&zeros, bh.chunk_offset(c))
                .map_err(io_err("erase", &path))?;
        }
        file.sync_data().map_err(io_err("sync", &path))?;
        drop(file);
        {
            let _g = self.locked();
            let Some(mut meta) = self.batch_meta(id)? else {
                return Ok(());
            };
            for &c in &due {
                meta.erased_chunks.insert(c, c + 1);
            }
            if all {
                meta.state = BatchState::Exhausted;
                meta.erased_chunks =
                    RangeSet::interval(0, meta.items.div_ceil(meta.chunk_items as u64));
            }
            let aseq = self.db.generate_id()?;
            let audit = audit_entry("exhaust", pool, None, Some(*id), vec![], None);
            unwrap_tx((&self.batches, &self.audit).transaction(|(b, a)| {
                b.insert(&id.0, to_json(&meta))?;
                if all {
                    a.insert(&aseq.to_be_bytes(), to_json(&audit))?;
                }
                Ok(())
            }))?;
        }
        self.flush()?;
        if all {
            fs::remove_file(&path).map_err(io_err("remove", &path))?;
            self.sync_dir()?;
        }
        Ok(())
    }

    /// Stock per pool.
    ///
    /// # Errors
    /// Sled errors or corrupt metadata.
    pub fn stock(&self) -> Result<BTreeMap<PoolSpec, PoolStock>> {
        let mut out: BTreeMap<PoolSpec, PoolStock> = BTreeMap::new();
        for meta in self.all_batches()? {
            let s = out.entry(meta.pool).or_default();
            match meta.state {
                BatchState::Staged => s.staged += meta.free.len(),
                BatchState::Available => s.available += meta.free.len(),
                BatchState::Exhausted => {}
            }
            if meta.state != BatchState::Exhausted {
                s.batches += 1;
            }
            s.consumed += meta.consumed.len();
            s.reserved += meta.items - meta.free.len() - meta.consumed.len();
        }
        Ok(out)
    }

    /// The audit log, oldest first.
    ///
    /// # Errors
    /// Sled errors or corrupt records.
    pub fn audit_log(&self) -> Result<Vec<AuditRecord>> {
        self.audit
            .iter()
            .values()
            .map(|v| from_json("audit", &v?))
            .collect()
    }

    /// Bytes this store occupies on disk (metadata and batch files).
    pub fn disk_bytes(&self) -> u64 {
        fn walk(p: &Path) -> u64 {
            fs::read_dir(p).map_or(0, |rd| {
                rd.flatten()
                    .map(|e| match e.metadata() {
                        Ok(m) if m.is_dir() => walk(&e.path()),
                        Ok(m) => m.len(),
                        Err(_) => 0,
                    })
                    .sum()
            })
        }
        walk(&self.dir)
    }
}
