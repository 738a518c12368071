//! The audit trail at one party: records chained as they are written (see [`crate::audit`]),
//! kept in sled only until the archive pass moves them into append-only files, and exported
//! from both.
//!
//! # Writing
//! Every record is written in the same sled transaction as the change it records, by one writer
//! at a time: the caller locks the chain ([`Store::chain`]), chains its records after the tip
//! ([`Chained::new`]), writes them in its transaction ([`Chained::write`]) and, once that
//! commits, moves the tip on ([`Chained::advance`]). A transaction that aborts leaves the tip
//! where it was.
//!
//! # The archive
//! `audit/<first record, 20 digits>.jsonl` files, each a run of consecutive records, one JSON
//! line each. [`Store::archive`] appends the durable records still in sled to the newest file,
//! `fdatasync`s it and only then removes them from sled; a new file starts when the newest
//! passes the size limit or was started on an earlier day (UTC). A crash between the two leaves
//! records in both, and the next pass removes them from sled without writing them again; a
//! power cut in the middle of an append leaves a partial last line, cut off on open. Files
//! whose newest record is older than the retention are deleted (never the newest file).

use super::*;
use crate::audit::{genesis, Beacon, ExportHeader, Head, Tip, FORMAT};
use std::io::{BufRead, BufReader, Read};
use std::time::{Duration, Instant};

/// The chain's state in memory.
pub(super) struct ChainState {
    /// Where the next record goes.
    pub(super) tip: Tip,
    /// The tip as of the last completed flush: what other parties are told.
    durable: Tip,
    /// Other parties' heads seen since they were last recorded, and when each was last
    /// recorded.
    seen: BTreeMap<u8, Head>,
    recorded: BTreeMap<u8, (Instant, Head)>,
    /// What this node knows of each other party's runs (see [`Store::witness`]).
    peers: BTreeMap<u8, Peer>,
    /// This run: when it opened the store, and the records it had then.
    boot: (u64, u64),
}

/// Another party as this node has seen it.
#[derive(Clone, Copy, Debug)]
struct Peer {
    /// Its latest run seen (0: only known from this store's trail).
    boot: u64,
    /// The most records any of its runs reported durable.
    longest: u64,
}

/// Notes a witnessed head from this store's own trail.
fn note_witnessed(peers: &mut BTreeMap<u8, Peer>, r: &AuditRecord) {
    if let Some(w) = &r.witness {
        let p = peers.entry(w.party).or_insert(Peer {
            boot: 0,
            longest: 0,
        });
        p.longest = p.longest.max(w.next);
    }
}

/// Where the archive stands (under `archive_lock`).
pub(super) struct ArchiveState {
    /// The first record not archived yet.
    next: u64,
    /// The newest file: its first record, size, and the day (Unix days) it was started.
    newest: Option<(u64, u64, u64)>,
}

/// How long records stay in sled and the archive (node configuration).
#[derive(Clone, Debug)]
pub struct ArchivePolicy {
    /// An archive file is closed once it holds this many bytes.
    pub file_bytes: u64,
    /// Archive files whose newest record is older are deleted; `None` keeps them all.
    pub retention: Option<Duration>,
}

impl Default for ArchivePolicy {
    fn default() -> Self {
        ArchivePolicy {
            file_bytes: 64 << 20,
            retention: None,
        }
    }
}

/// Records chained after a tip, ready to be written in a transaction.
pub(super) struct Chained {
    rows: Vec<([u8; 8], Vec<u8>)>,
    tip: Tip,
}

impl Chained {
    /// Chains `records` after `tip` (which stays where it is until [`Chained::advance`]).
    pub(super) fn new(tip: &Tip, records: Vec<AuditRecord>) -> Chained {
        let mut tip = tip.clone();
        let rows = records
            .into_iter()
            .map(|mut r| {
                tip.append(&mut r);
                (r.seq.to_be_bytes(), to_json(&r))
            })
            .collect();
        Chained { rows, tip }
    }

    pub(super) fn write(
        &self,
        a: &TransactionalTree,
    ) -> std::result::Result<(), sled::transaction::UnabortableTransactionError> {
        for (k, v) in &self.rows {
            a.insert(k, v.as_slice())?;
        }
        Ok(())
    }

    /// The transaction committed: the tip moves on.
    pub(super) fn advance(self, chain: &mut ChainState) {
        chain.tip = self.tip;
    }
}

const WITNESS_EVERY: Duration = Duration::from_secs(1);

fn archive_dir(dir: &Path) -> PathBuf {
    dir.join("audit")
}

fn file_name(first: u64) -> String {
    format!("{first:020}.jsonl")
}

/// The archive's files, oldest first: (first record, path).
fn archive_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let adir = archive_dir(dir);
    let mut out = Vec::new();
    let rd = match fs::read_dir(&adir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err("list", &adir)(e)),
    };
    for entry in rd {
        let path = entry.map_err(io_err("list", &adir))?.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".jsonl"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(first) = first {
            out.push((first, path));
        }
    }
    out.sort();
    Ok(out)
}

/// The record number an audit key holds.
fn seq_of(key: &[u8]) -> Result<u64> {
    key.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt("audit record key".into()))
}

fn day(unix: u64) -> u64 {
    unix / 86_400
}

impl Store {
    /// Reads where the chain and the archive stand; cuts off a partial last line an
    /// interrupted append left in the newest archive file.
    pub(super) fn open_chain(
        dir: &Path,
        db: &sled::Db,
        identity: &StoreIdentity,
    ) -> Result<(ChainState, ArchiveState)> {
        let audit = db.open_tree("audit")?;
        let mut tip = Tip {
            next: 0,
            hash: genesis(&identity.consortium, identity.party),
        };
        let mut archive = ArchiveState {
            next: 0,
            newest: None,
        };
        let mut peers = BTreeMap::new();
        if let Some((first, path)) = archive_files(dir)?.pop() {
            let mut f = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_err("open", &path))?;
            let mut text = Vec::new();
            f.read_to_end(&mut text).map_err(io_err("read", &path))?;
            let keep = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            if keep < text.len() {
                f.set_len(keep as u64).map_err(io_err("truncate", &path))?;
                f.sync_all().map_err(io_err("sync", &path))?;
            }
            let mut started = now_unix();
            let mut last = None;
            for (i, line) in text[..keep].split(|&b| b == b'\n').enumerate() {
                if line.is_empty() {
                    continue;
                }
                let r: AuditRecord = from_json("archived audit record", line)?;
                if i == 0 {
                    started = r.at;
                }
                note_witnessed(&mut peers, &r);
                last = Some(r);
            }
            if let Some(r) = last {
                tip = Tip {
                    next: r.seq + 1,
                    hash: r.hash,
                };
            }
            archive.next = tip.next.max(first);
            archive.newest = Some((first, keep as u64, day(started)));
        }
        // The records not archived yet (a few seconds' worth).
        for entry in audit.iter().values() {
            let r: AuditRecord = from_json("audit record", &entry?)?;
            note_witnessed(&mut peers, &r);
            if r.seq + 1 > tip.next {
                tip = Tip {
                    next: r.seq + 1,
                    hash: r.hash,
                };
            }
        }
        if archive.newest.is_none() {
            // Nothing archived yet: the archive starts at the oldest record still in sled.
            archive.next = match audit.first()? {
                Some((k, _)) => seq_of(&k)?,
                None => tip.next,
            };
        }
        let opened = tip.next;
        let chain = ChainState {
            durable: tip.clone(),
            tip,
            seen: BTreeMap::new(),
            recorded: BTreeMap::new(),
            peers,
            boot: (
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64),
                opened,
            ),
        };
        Ok((chain, archive))
    }

    /// Locks the chain for appending (see the module doc). Taken after the store's lock, never
    /// before it.
    pub(super) fn chain(&self) -> std::sync::MutexGuard<'_, ChainState> {
        self.chain.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called when a flush starts: the tip it will make durable.
    pub(super) fn tip_now(&self) -> Tip {
        self.chain().tip.clone()
    }

    /// Called when that flush completed.
    pub(super) fn tip_durable(&self, tip: Tip) {
        let mut chain = self.chain();
        if tip.next > chain.durable.next {
            chain.durable = tip;
        }
    }

    /// This party's chain head as of the last flush.
    pub fn audit_head(&self) -> Head {
        self.beacon().head
    }

    /// What this node tells the other parties on every call (see [`Beacon`]).
    pub fn beacon(&self) -> Beacon {
        let chain = self.chain();
        Beacon {
            head: Head {
                party: self.identity.party,
                next: chain.durable.next,
                hash: chain.durable.hash.clone(),
            },
            boot: chain.boot.0,
            opened: chain.boot.1,
        }
    }

    /// Notes another party's beacon, seen on a call between nodes: its head is recorded with
    /// this store's next group of changes (at most once a second per party). Returns the most
    /// records that party had reported durable if this beacon is from a later run of it that
    /// started with fewer: it lost records (a store restored from a backup, or written without
    /// syncing), so it may have forgotten what it reserved or handed out. Beacons of one run
    /// may arrive out of order (calls overlap) and those of an earlier run late: neither is
    /// taken for a loss. The flag says whether this run of this node saw the earlier run
    /// itself (not only in its trail, from before it restarted).
    pub fn witness(&self, beacon: Beacon) -> Option<(u64, bool)> {
        let head = beacon.head;
        if head.party == self.identity.party || head.party >= self.identity.parties {
            return None;
        }
        let mut chain = self.chain();
        let peer = chain.peers.entry(head.party).or_insert(Peer {
            boot: beacon.boot,
            longest: 0,
        });
        let mut lost = None;
        if beacon.boot > peer.boot {
            if beacon.opened < peer.longest {
                lost = Some((peer.longest, peer.boot != 0));
            }
            *peer = Peer {
                boot: beacon.boot,
                longest: head.next,
            };
        } else if beacon.boot == peer.boot {
            peer.longest = peer.longest.max(head.next);
        }
        let known = chain
            .recorded
            .get(&head.party)
            .is_some_and(|(_, h)| h.next >= head.next);
        if !known {
            chain.seen.insert(head.party, head);
        }
        lost
    }

    /// `witness` records due now (taken from the chain state).
    pub(super) fn due_witnesses(chain: &mut ChainState) -> Vec<AuditRecord> {
        let now = Instant::now();
        let due: Vec<u8> = chain
            .seen
            .keys()
            .copied()
            .filter(|p| {
                chain
                    .recorded
                    .get(p)
                    .is_none_or(|(at, _)| now.duration_since(*at) >= WITNESS_EVERY)
            })
            .collect();
        due.into_iter()
            .filter_map(|p| chain.seen.remove(&p))
            .map(|head| {
                chain.recorded.insert(head.party, (now, head.clone()));
                let mut r = AuditRecord::new("witness", now_unix());
                r.witness = Some(head);
                r
            })
            .collect()
    }

    /// Whether the store's file system has more than the reserve free (see
    /// [`Store::set_min_free`]). Upkeep (the archive pass) writes before it frees anything,
    /// so it waits while the disk is inside the reserve: the reserve is for checkouts and
    /// downloads, which then meet a full disk themselves and say so (507), rather than the
    /// node stopping because upkeep met it first.
    pub(super) fn room_for_upkeep(&self) -> Result<bool> {
        let free = Store::free_bytes(&self.dir).map_err(io_err("statvfs", &self.dir))?;
        Ok(free >= self.min_free.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Moves the durable records still in sled into the archive files, then deletes archive
    /// files past the retention. Returns how many records moved.
    ///
    /// # Errors
    /// IO errors (nothing is removed from sled unless its archive copy is durable).
    pub fn archive(&self, policy: &ArchivePolicy) -> Result<u64> {
        if !self.room_for_upkeep()? {
            return Ok(0);
        }
        let mut st = self.archive_lock.lock().unwrap_or_else(|p| p.into_inner());
        let upto = self.chain().durable.next;
        let adir = archive_dir(&self.dir);
        let mut moved = 0u64;
        // In batches, so that a long backlog never sits in memory whole.
        loop {
            let mut lines = Vec::new();
            let mut stale = Vec::new();
            let mut first_at = None;
            for entry in self.audit.iter() {
                let (k, v) = entry?;
                let seq = seq_of(&k)?;
                if seq >= upto || lines.len() >= 10_000 {
                    break;
                }
                if seq < st.next {
                    stale.push(k);
                    continue;
                }
                if first_at.is_none() {
                    let r: AuditRecord = from_json("audit record", &v)?;
                    first_at = Some(r.at);
                }
                lines.push((seq, k, v));
            }
            if lines.is_empty() && stale.is_empty() {
                break;
            }
            if let (Some(&(first, _, _)), Some(at)) = (lines.first(), first_at) {
                let rotate = match st.newest {
                    None => true,
                    Some((_, size, started)) => size >= policy.file_bytes || day(at) > started,
                };
                if rotate {
                    fs::create_dir_all(&adir).map_err(io_err("create", &adir))?;
                    st.newest = Some((first, 0, day(at)));
                }
                let (name, size, started) = st.newest.expect("set above");
                let path = adir.join(file_name(name));
                let mut f = fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(io_err("open", &path))?;
                let mut buf = Vec::new();
                for (_, _, v) in &lines {
                    buf.extend_from_slice(v);
                    buf.push(b'\n');
                }
                f.write_all(&buf)
                    .and_then(|()| f.sync_data())
                    .map_err(io_err("write", &path))?;
                if rotate {
                    durable::sync_dir(&adir).map_err(io_err("sync", &adir))?;
                    durable::sync_dir(&self.dir).map_err(io_err("sync", &self.dir))?;
                }
                st.newest = Some((name, size + buf.len() as u64, started));
                st.next = lines.last().expect("not empty").0 + 1;
                moved += lines.len() as u64;
            }
            let mut batch = sled::Batch::default();
            for k in stale
                .into_iter()
                .chain(lines.into_iter().map(|(_, k, _)| k))
            {
                batch.remove(k);
            }
            self.audit.apply_batch(batch)?;
            self.flush()?;
        }
        if let Some(keep) = policy.retention {
            let files = archive_files(&self.dir)?;
            let cutoff = SystemTime::now() - keep;
            for (_, path) in files.iter().take(files.len().saturating_sub(1)) {
                let old = fs::metadata(path)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t < cutoff);
                if old {
                    fs::remove_file(path).map_err(io_err("remove", path))?;
                }
            }
        }
        Ok(moved)
    }

    /// Writes this party's trail from record `from` on as JSON lines: a header
    /// ([`ExportHeader`]), then every durable record, archived or not, in order, at most
    /// `limit` of them. Returns the number of records written.
    ///
    /// # Errors
    /// IO errors, corrupt records.
    pub fn export_audit(&self, from: u64, limit: u64, out: &mut dyn Write) -> Result<u64> {
        // Records do not move between the archive and sled meanwhile.
        let _a = self.archive_lock.lock().unwrap_or_else(|p| p.into_inner());
        let head = self.audit_head();
        let files = archive_files(&self.dir)?;
        let oldest = match files.first() {
            Some((first, _)) => *first,
            None => match self.audit.first()? {
                Some((k, _)) => seq_of(&k)?,
                None => head.next,
            },
        };
        let start = from.max(oldest);
        let end = head.next.min(start.saturating_add(limit));
        let header = ExportHeader {
            format: FORMAT.into(),
            consortium: self.identity.consortium.clone(),
            parties: self.identity.parties,
            party: self.identity.party,
            first: start,
            next: head.next,
            head: head.hash,
        };
        let werr = |e| io_err("write", Path::new("audit export"))(e);
        out.write_all(&to_json(&header)).map_err(werr)?;
        out.write_all(b"\n").map_err(werr)?;
        let mut seq = start;
        for (i, (first, path)) in files.iter().enumerate() {
            let next_first = files.get(i + 1).map_or(u64::MAX, |(f, _)| *f);
            if next_first <= seq || seq >= end {
                continue;
            }
            let f = File::open(path).map_err(io_err("open", path))?;
            for (at, line) in (*first..).zip(BufReader::new(f).split(b'\n')) {
                if at >= end {
                    break;
                }
                let line = line.map_err(io_err("read", path))?;
                if at >= seq {
                    out.write_all(&line).map_err(werr)?;
                    out.write_all(b"\n").map_err(werr)?;
                    seq += 1;
                }
            }
        }
        for entry in self.audit.range(seq.to_be_bytes()..end.to_be_bytes()) {
            let (_, v) = entry?;
            out.write_all(&v).map_err(werr)?;
            out.write_all(b"\n").map_err(werr)?;
            seq += 1;
        }
        Ok(seq - start)
    }

    /// The audit log still in sled (not archived yet), oldest first.
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

    /// The whole trail, archived and not, oldest first.
    ///
    /// # Errors
    /// IO errors, corrupt records.
    pub fn audit_trail(&self) -> Result<Vec<AuditRecord>> {
        let mut buf = Vec::new();
        self.export_audit(0, u64::MAX, &mut buf)?;
        buf.split(|&b| b == b'\n')
            .skip(1)
            .filter(|l| !l.is_empty())
            .map(|l| from_json("audit", l))
            .collect()
    }
}
