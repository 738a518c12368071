//! Group commit: concurrent changes share one flush (and one `fdatasync`).

use super::*;

/// Group-commit state for [`Store::flush`].
#[derive(Default)]
pub(super) struct GroupCommit {
    state: Mutex<CommitState>,
    /// Told of every flush (see [`Store::observe_flushes`]).
    observer: std::sync::OnceLock<FlushObserver>,
    done: std::sync::Condvar,
    /// A flush failed inside sled: it writes nothing more until the store is reopened.
    broken: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
pub(super) struct CommitState {
    /// Flushes started so far.
    started: u64,
    /// The latest flush that completed successfully (flushes complete in order).
    finished: u64,
    running: bool,
    /// Callers so far, and when the latest flush started: the callers in between are the
    /// ones that flush serves (its group).
    callers: u64,
    callers_at_last_start: u64,
}

/// Told of each group-commit flush: how many callers it served, and how long it took (sled's
/// flush and the `fdatasync` after it).
pub type FlushObserver = Box<dyn Fn(u64, std::time::Duration) + Send + Sync>;

/// The single result of a group of one.
pub(super) fn one<T>(mut results: Vec<Result<T>>) -> Result<T> {
    results.pop().expect("one result per item")
}

/// A group whose commit or flush failed: nothing in it is acknowledged.
pub(super) fn fail_all<T>(
    results: Vec<Result<T>>,
    op: &'static str,
    dir: &Path,
    e: &StoreError,
) -> Vec<Result<T>> {
    let why = e.to_string();
    // A full disk stays recognisable as one (507, not 500).
    let source = || {
        if e.is_disk_full() {
            io::Error::from_raw_os_error(libc::ENOSPC)
        } else {
            io::Error::other(why.clone())
        }
    };
    results
        .into_iter()
        .map(|r| {
            r.and_then(|_| {
                Err(StoreError::Io {
                    op,
                    path: dir.to_path_buf(),
                    source: source(),
                })
            })
        })
        .collect()
}

impl Store {
    /// Has `observer` told of every flush from now on (the node's metrics); set once, later
    /// calls are ignored.
    pub fn observe_flushes(&self, observer: FlushObserver) {
        let _ = self.commit.observer.set(observer);
    }

    /// Records that the store can write nothing more (see [`Store::is_broken`]).
    fn mark_broken(&self) {
        self.commit
            .broken
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether sled has stopped writing after an IO error (a full disk, a failing device):
    /// nothing can be recorded until the store is opened again. A node stops then, so that a
    /// restart recovers from what is durable (see `node::sweep`).
    pub fn is_broken(&self) -> bool {
        if self.commit.broken.load(std::sync::atomic::Ordering::SeqCst) {
            return true;
        }
        // sled reports the error that stopped it on the next flush, whichever call met it
        // first; with nothing to write, a flush costs next to nothing. Called directly, not
        // through the group commit, so that the probe never queues behind a flush that is
        // stuck on a full disk. Followed by the fdatasync, as every flush is: what sled
        // writes out here (a confirmation, which is not flushed on its own) must not sit
        // range-synced and unsynced (the strace check in tests/durability.rs failed once
        // under load with the fdatasync missing here).
        if self.flush_synced().is_err() {
            self.mark_broken();
            return true;
        }
        false
    }

    /// sled's flush, then the `fdatasync` of its files that makes it power-cut safe: every
    /// flush of the store goes through here.
    fn flush_synced(&self) -> Result<()> {
        self.db.flush()?;
        self.meta
            .sync()
            .map_err(io_err("sync", &self.dir.join("meta")))
    }

    /// Makes every change made before the call durable. Concurrent callers share fsyncs
    /// (group commit): while one flush runs, later callers wait and one of them runs the next
    /// flush for all of them.
    pub(super) fn flush(&self) -> Result<()> {
        let mut g = self.commit.state.lock().unwrap_or_else(|p| p.into_inner());
        // A flush that starts from now on covers this caller's changes.
        let target = g.started + 1;
        g.callers += 1;
        loop {
            if g.finished >= target {
                return Ok(());
            }
            if !g.running {
                g.running = true;
                g.started += 1;
                let mine = g.started;
                // Everyone who came since the last flush started is served by this one.
                let group = g.callers - g.callers_at_last_start;
                g.callers_at_last_start = g.callers;
                drop(g);
                let tip = self.tip_now();
                let began = std::time::Instant::now();
                let r = self.flush_synced();
                if let Some(observe) = self.commit.observer.get() {
                    observe(group, began.elapsed());
                }
                if r.is_err() {
                    // sled stops writing after an IO error (its log is poisoned until the
                    // store is opened again); a failed fdatasync leaves the pages' fate
                    // unknown, and the next one may report success.
                    self.mark_broken();
                } else {
                    self.tip_durable(tip);
                }
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

    /// Plans and commits a group of changes under the store's lock, in one transaction. If
    /// the transaction fails, nothing in the group succeeded.
    pub(super) fn plan_group<T>(
        &self,
        plan: impl FnOnce(&mut View<'_>) -> Vec<Result<T>>,
    ) -> Vec<Result<T>> {
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
    pub(super) fn flush_all<T>(&self, results: Vec<Result<T>>) -> Vec<Result<T>> {
        if !results.iter().any(Result::is_ok) {
            return results;
        }
        match self.flush() {
            Ok(()) => results,
            Err(e) => fail_all(results, "flush metadata", &self.dir, &e),
        }
    }
}
