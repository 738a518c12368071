//! Batch files on disk: durable writes, the store directory's mode, crash recovery.

use super::*;

/// Writes `bytes` as the whole content of `path` and syncs it (data and size) to disk.
///
/// Bulk batch data goes around the page cache (`O_DIRECT`, through an aligned bounce buffer):
/// measured here, buffered writes of 8 MiB batch files followed by `fdatasync` ran at about
/// 240 MB/s with most of the time spent copying in the kernel, direct writes at about 650 MB/s
/// (and the disk streams ~1.8 GB/s). File systems without `O_DIRECT` fall back to buffered IO.
pub(super) fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
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
pub(super) fn restrict(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err("restrict", dir))
}

impl Store {
    pub(super) fn batch_path(&self, id: &BatchId) -> PathBuf {
        self.data.join(format!("{id}.lb"))
    }

    pub(super) fn sync_dir(&self) -> Result<()> {
        File::open(&self.data)
            .and_then(|d| d.sync_all())
            .map_err(io_err("sync", &self.data))
    }

    /// Removes files no metadata points to and finishes interrupted erasures.
    pub(super) fn recover(&self) -> Result<()> {
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
}
