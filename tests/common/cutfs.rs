//! A file system that keeps only what was made durable, for power-cut tests.
//!
//! Mounted with FUSE in the test process (the `fuser` crate, no libfuse), it holds every file
//! in memory twice: as the programs see it now, and as a disk would after a power cut. A
//! file's data and size become durable only through `fsync`/`fdatasync` of that file; a name
//! created, renamed or removed in a directory only through `fsync` of that directory (POSIX's
//! letter: what ext4 usually does anyway, such as committing a rename with a later file's
//! fsync, is not promised and not assumed). `sync_file_range` never reaches a FUSE file
//! system, so it makes nothing durable here: exactly the gap a real power cut opens. Every
//! open is direct I/O (no page cache), and entries and attributes are never cached, so after
//! [`CutFs::cut`] the programs that start next see only what survived.
//!
//! [`CutFs::cut`] is the power cut: every file's data goes back to its last synced state and
//! every directory to its last synced entries; what is no longer reachable is gone.

use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
    TimeOrNow, WriteFlags,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ROOT: u64 = 1;
const NO_CACHE: Duration = Duration::ZERO;

#[derive(Default)]
struct Inode {
    dir: bool,
    mode: u32,
    /// Contents as programs see them now.
    data: Vec<u8>,
    /// Contents after a power cut.
    durable: Vec<u8>,
    /// Byte ranges written since the last sync (start, end).
    dirty: Vec<(usize, usize)>,
    /// Names as programs see them now.
    entries: BTreeMap<OsString, u64>,
    /// Names after a power cut.
    durable_entries: BTreeMap<OsString, u64>,
}

impl Inode {
    fn sync_data(&mut self) {
        self.durable.resize(self.data.len(), 0);
        for (a, b) in self.dirty.drain(..) {
            let b = b.min(self.data.len());
            if a < b {
                self.durable[a..b].copy_from_slice(&self.data[a..b]);
            }
        }
    }
}

#[derive(Default)]
struct State {
    inodes: HashMap<u64, Inode>,
    next: u64,
    /// Bytes of file data programs may hold at once (0: no limit): writes beyond get ENOSPC.
    capacity: u64,
    cuts: u64,
}

impl State {
    fn new() -> State {
        let mut s = State {
            next: ROOT + 1,
            ..State::default()
        };
        s.inodes.insert(
            ROOT,
            Inode {
                dir: true,
                mode: 0o755,
                ..Inode::default()
            },
        );
        s
    }

    fn used(&self) -> u64 {
        self.inodes.values().map(|i| i.data.len() as u64).sum()
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let i = self.inodes.get(&ino)?;
        let size = if i.dir { 0 } else { i.data.len() as u64 };
        Some(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind: if i.dir {
                FileType::Directory
            } else {
                FileType::RegularFile
            },
            perm: i.mode as u16,
            nlink: if i.dir { 2 } else { 1 },
            uid: 0,
            gid: 0,
            rdev: 0,
            flags: 0,
            blksize: 4096,
        })
    }

    fn make(&mut self, parent: u64, name: &OsStr, dir: bool, mode: u32) -> Result<u64, Errno> {
        let p = self.inodes.get(&parent).ok_or(Errno::ENOENT)?;
        if !p.dir {
            return Err(Errno::ENOTDIR);
        }
        if p.entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next;
        self.next += 1;
        self.inodes.insert(
            ino,
            Inode {
                dir,
                mode: mode & 0o7777,
                ..Inode::default()
            },
        );
        self.inodes
            .get_mut(&parent)
            .expect("checked")
            .entries
            .insert(name.to_os_string(), ino);
        Ok(ino)
    }

    /// The power cut.
    fn cut(&mut self) {
        for i in self.inodes.values_mut() {
            i.data = i.durable.clone();
            i.dirty.clear();
            i.entries = i.durable_entries.clone();
        }
        let mut reachable = HashSet::from([ROOT]);
        let mut stack = vec![ROOT];
        while let Some(ino) = stack.pop() {
            for &child in self.inodes[&ino].entries.values() {
                if self.inodes.contains_key(&child) && reachable.insert(child) {
                    stack.push(child);
                }
            }
        }
        self.inodes.retain(|ino, _| reachable.contains(ino));
        self.cuts += 1;
    }
}

/// A handle on a mounted cut file system: the mount lasts as long as it does.
pub struct CutFs {
    state: Arc<Mutex<State>>,
    session: Option<BackgroundSession>,
}

impl CutFs {
    /// Mounts an empty cut file system at `at` (an existing empty directory); `capacity` bytes
    /// of file data at most (0: no limit).
    pub fn mount(at: &Path, capacity: u64) -> std::io::Result<CutFs> {
        let mut state = State::new();
        state.capacity = capacity;
        let state = Arc::new(Mutex::new(state));
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("larder-cutfs".into()),
            MountOption::DefaultPermissions,
        ];
        config.n_threads = Some(4);
        let session = fuser::spawn_mount(Fs(state.clone()), at, &config)?;
        Ok(CutFs {
            state,
            session: Some(session),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The power cut: everything not made durable is gone. Stop the programs using the file
    /// system first (a killed process's writes are in already; there is no page cache).
    pub fn cut(&self) {
        self.lock().cut();
    }

    /// Bytes of file data held now.
    pub fn used(&self) -> u64 {
        self.lock().used()
    }

    /// Changes the capacity (0: no limit), as freeing or filling a disk would.
    pub fn set_capacity(&self, bytes: u64) {
        self.lock().capacity = bytes;
    }
}

impl Drop for CutFs {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            let _ = s.umount_and_join();
        }
    }
}

struct Fs(Arc<Mutex<State>>);

impl Fs {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes what `keep` says of inode `ino` durable.
    fn sync(&self, ino: INodeNo, reply: ReplyEmpty, keep: impl FnOnce(&mut Inode)) {
        match self.lock().inodes.get_mut(&u64::from(ino)) {
            Some(i) => {
                keep(i);
                reply.ok();
            }
            None => reply.error(Errno::ENOENT),
        }
    }
}

impl Filesystem for Fs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let s = self.lock();
        let found = s
            .inodes
            .get(&u64::from(parent))
            .and_then(|p| p.entries.get(name))
            .and_then(|&ino| s.attr(ino));
        match found {
            Some(attr) => reply.entry(&NO_CACHE, &attr, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.lock().attr(ino.into()) {
            Some(attr) => reply.attr(&NO_CACHE, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut s = self.lock();
        let ino = u64::from(ino);
        let (capacity, used) = (s.capacity, s.used());
        let Some(i) = s.inodes.get_mut(&ino) else {
            return reply.error(Errno::ENOENT);
        };
        if let Some(m) = mode {
            i.mode = m & 0o7777;
        }
        if let Some(len) = size {
            let len = len as usize;
            let old = i.data.len();
            if len > old && capacity > 0 && used + (len - old) as u64 > capacity {
                return reply.error(Errno::ENOSPC);
            }
            i.data.resize(len, 0);
            i.dirty.push((old.min(len), old.max(len)));
        }
        let attr = s.attr(ino).expect("exists");
        reply.attr(&NO_CACHE, &attr);
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let mut s = self.lock();
        match s.make(parent.into(), name, true, mode) {
            Ok(ino) => reply.entry(&NO_CACHE, &s.attr(ino).expect("made"), Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut s = self.lock();
        match s.make(parent.into(), name, false, mode) {
            Ok(ino) => reply.created(
                &NO_CACHE,
                &s.attr(ino).expect("made"),
                Generation(0),
                FileHandle(0),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.lock().inodes.contains_key(&u64::from(ino)) {
            reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO);
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let s = self.lock();
        let Some(i) = s.inodes.get(&u64::from(ino)) else {
            return reply.error(Errno::ENOENT);
        };
        let start = (offset as usize).min(i.data.len());
        let end = (start + size as usize).min(i.data.len());
        reply.data(&i.data[start..end]);
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut s = self.lock();
        let (capacity, used) = (s.capacity, s.used());
        let Some(i) = s.inodes.get_mut(&u64::from(ino)) else {
            return reply.error(Errno::ENOENT);
        };
        let start = offset as usize;
        let end = start + data.len();
        let grow = end.saturating_sub(i.data.len()) as u64;
        if capacity > 0 && grow > 0 && used + grow > capacity {
            return reply.error(Errno::ENOSPC);
        }
        if end > i.data.len() {
            i.data.resize(end, 0);
        }
        i.data[start..end].copy_from_slice(data);
        i.dirty.push((start, end));
        reply.written(data.len() as u32);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.sync(ino, reply, Inode::sync_data);
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.sync(ino, reply, |i| i.durable_entries = i.entries.clone());
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut s = self.lock();
        let Some(p) = s.inodes.get_mut(&u64::from(parent)) else {
            return reply.error(Errno::ENOENT);
        };
        match p.entries.remove(name) {
            Some(_) => reply.ok(),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut s = self.lock();
        let Some(&ino) = s
            .inodes
            .get(&u64::from(parent))
            .and_then(|p| p.entries.get(name))
        else {
            return reply.error(Errno::ENOENT);
        };
        if !s.inodes[&ino].entries.is_empty() {
            return reply.error(Errno::ENOTEMPTY);
        }
        s.inodes
            .get_mut(&u64::from(parent))
            .expect("checked")
            .entries
            .remove(name);
        reply.ok();
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut s = self.lock();
        let Some(ino) = s
            .inodes
            .get_mut(&u64::from(parent))
            .and_then(|p| p.entries.remove(name))
        else {
            return reply.error(Errno::ENOENT);
        };
        match s.inodes.get_mut(&u64::from(newparent)) {
            Some(np) => {
                np.entries.insert(newname.to_os_string(), ino);
                reply.ok();
            }
            None => {
                // Put it back: the target directory is gone.
                s.inodes
                    .get_mut(&u64::from(parent))
                    .expect("checked")
                    .entries
                    .insert(name.to_os_string(), ino);
                reply.error(Errno::ENOENT);
            }
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let s = self.lock();
        let Some(d) = s.inodes.get(&u64::from(ino)) else {
            return reply.error(Errno::ENOENT);
        };
        let mut all = vec![
            (u64::from(ino), FileType::Directory, OsString::from(".")),
            (ROOT, FileType::Directory, OsString::from("..")),
        ];
        for (name, &child) in &d.entries {
            let kind = if s.inodes.get(&child).is_some_and(|c| c.dir) {
                FileType::Directory
            } else {
                FileType::RegularFile
            };
            all.push((child, kind, name.clone()));
        }
        for (n, (child, kind, name)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), (n + 1) as u64, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.lock();
        let bsize = 4096u64;
        let total = if s.capacity > 0 {
            s.capacity / bsize
        } else {
            1 << 30
        };
        let free = total.saturating_sub(s.used().div_ceil(bsize));
        reply.statfs(
            total,
            free,
            free,
            1 << 20,
            1 << 20,
            bsize as u32,
            255,
            bsize as u32,
        );
    }
}
