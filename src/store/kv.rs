//! sled helpers: opening the database, JSON records, index keys, transactions.

use super::*;

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(super) fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("metadata serializes")
}

pub(super) fn from_json<T: for<'de> Deserialize<'de>>(what: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub(super) fn stock_key(pool: &PoolSpec, seq: u64) -> Vec<u8> {
    let mut k = pool.to_string().into_bytes();
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub(super) fn stock_prefix(pool: &PoolSpec) -> Vec<u8> {
    let mut k = pool.to_string().into_bytes();
    k.push(0);
    k
}

/// A failure inside a transaction closure, carried out through sled's abort.
pub(super) type TxResult<T> = std::result::Result<T, ConflictableTransactionError<StoreError>>;

pub(super) fn abort<T>(e: StoreError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

pub(super) fn tx_get<T: for<'de> Deserialize<'de>>(
    t: &TransactionalTree,
    key: &[u8],
    what: &str,
) -> TxResult<Option<T>> {
    match t.get(key)? {
        None => Ok(None),
        Some(v) => from_json(what, &v).map(Some).or_else(abort),
    }
}

pub(super) fn unwrap_tx<T>(r: std::result::Result<T, TransactionError<StoreError>>) -> Result<T> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Sled(e),
    })
}

/// The `open` index key of a reservation: reservation time, then checkout id.
pub(super) fn open_key(res: &Reservation) -> Vec<u8> {
    let mut key = res.reserved_at.to_be_bytes().to_vec();
    key.extend_from_slice(res.checkout.as_bytes());
    key
}

/// sled's page cache. Its default (1 GiB) let a busy node's memory grow for the whole first
/// gigabyte of metadata; the hot set (stock index, batches with free items, live reservations)
/// is far smaller.
pub(super) const SLED_CACHE_BYTES: u64 = 32 << 20;

/// Opens sled with no background flusher (every change is flushed explicitly before it is
/// acknowledged) and a bounded cache. sled releases its file lock a moment after a `Db` is dropped, so a lock
/// conflict is retried briefly before it is reported as another process using the store.
pub(super) fn open_db(path: &Path) -> Result<sled::Db> {
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
