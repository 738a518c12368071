//! Makes sled's files durable against power loss, not only against a process crash.
//!
//! sled 0.34.7 ends a flush with `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)` on its log
//! (`pagecache/iobuf.rs`): the pages reach the device, but the file's size and the device's
//! volatile cache do not, so a power cut can erase everything acknowledged since the last
//! `fsync` (with the periodic flusher off, that was the last clean shutdown). It also writes
//! large values as files under `blobs/` with no sync at all, and renames snapshots without
//! syncing their directory. [`MetaFiles::sync`] runs after every sled flush: `fdatasync` of the
//! log, and, when the set of files changed, `fdatasync` of the new files and `fsync` of their
//! directories.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// sled's directory and its log file, held open for syncing.
pub(super) struct MetaFiles {
    dir: PathBuf,
    log: File,
    /// Files of `dir` and `dir/blobs` known durable, with the size they had when synced
    /// (relative paths; the log itself is synced every time and listed with size 0).
    synced: Mutex<BTreeMap<PathBuf, u64>>,
}

impl MetaFiles {
    /// Opens sled's directory `dir` (after sled has opened it) and makes everything in it
    /// durable once, whatever an earlier process left unsynced.
    pub(super) fn open(dir: &Path) -> io::Result<MetaFiles> {
        let files = MetaFiles {
            dir: dir.to_path_buf(),
            log: File::open(dir.join("db"))?,
            synced: Mutex::new(BTreeMap::new()),
        };
        files.sync_files()?;
        Ok(files)
    }

    /// Makes what sled has flushed durable: the log's data and size, files that are new or
    /// have grown since (sled writes large values as files of their own), and the directory
    /// entries that name them.
    pub(super) fn sync(&self) -> io::Result<()> {
        // The power-cut harness's negative control (tests/power_cut.rs) runs without it; a
        // store still starts from a durable state, synced when it is opened.
        if cfg!(feature = "unsafe-skip-log-sync") {
            return Ok(());
        }
        self.sync_files()
    }

    fn sync_files(&self) -> io::Result<()> {
        let now = self.entries()?;
        let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        if *synced != now {
            for (name, len) in &now {
                if synced.get(name) == Some(len) || name.as_os_str() == LOG {
                    continue;
                }
                match File::open(self.dir.join(name)) {
                    Ok(f) => f.sync_data()?,
                    // Removed by sled meanwhile (an old blob or snapshot): nothing to keep.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            sync_dir(&self.dir.join("blobs"))?;
            sync_dir(&self.dir)?;
            *synced = now;
        }
        drop(synced);
        self.log.sync_data()
    }

    /// The files in sled's directory and its `blobs` folder, with their sizes.
    fn entries(&self) -> io::Result<BTreeMap<PathBuf, u64>> {
        let mut files = BTreeMap::new();
        for sub in [None, Some("blobs")] {
            let dir = sub.map_or_else(|| self.dir.clone(), |s| self.dir.join(s));
            let list = match fs::read_dir(&dir) {
                Ok(l) => l,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in list {
                let entry = entry?;
                let name = sub
                    .map_or_else(PathBuf::new, PathBuf::from)
                    .join(entry.file_name());
                let len = match entry.metadata() {
                    Ok(m) if m.is_dir() || name.as_os_str() == LOG => 0,
                    Ok(m) => m.len(),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                files.insert(name, len);
            }
        }
        Ok(files)
    }
}

/// sled's log file in its directory.
const LOG: &str = "db";

/// `fsync`s a directory so that the entries created, renamed or removed in it are durable. A
/// directory that does not exist has nothing to sync.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir) {
        Ok(d) => d.sync_all(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
