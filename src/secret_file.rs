//! Files of secret shares, written whole or not at all.
//!
//! Shares a node hands out are consumed on the node: if a command truncated the file an
//! earlier run wrote and then failed (a rerun gets `410 already-consumed`), the only copy would
//! be gone. So a [`SecretFile`] writes under a fresh temporary name next to its target,
//! readable by its owner only (0600), and [`SecretFile::commit`] syncs it, renames it over the
//! target (which therefore ends up 0600 too) and syncs the directory. Dropped without a commit
//! (an error, a panic), it removes the temporary file and leaves the target as it was.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A share file being written; see the module documentation.
pub struct SecretFile {
    target: PathBuf,
    /// The temporary file, or `None` when writing straight into a target that cannot be
    /// replaced (a named pipe, a terminal, `/dev/stdout`).
    tmp: Option<PathBuf>,
    out: Option<BufWriter<File>>,
}

impl SecretFile {
    /// Starts writing what will replace `target` once committed. A target that is not a
    /// regular file (a named pipe, `/dev/stdout`) is written in place; a symbolic link keeps
    /// pointing where it did, at the replaced file.
    ///
    /// # Errors
    /// IO errors creating the temporary file (for example a missing directory).
    pub fn create(target: &Path) -> io::Result<SecretFile> {
        if let Ok(m) = fs::metadata(target) {
            if !m.is_file() && !m.is_dir() {
                let file = OpenOptions::new().write(true).open(target)?;
                return Ok(SecretFile {
                    target: target.to_path_buf(),
                    tmp: None,
                    out: Some(BufWriter::with_capacity(1 << 20, file)),
                });
            }
        }
        let target = match fs::symlink_metadata(target) {
            Ok(m) if m.file_type().is_symlink() => {
                fs::canonicalize(target).unwrap_or_else(|_| target.to_path_buf())
            }
            _ => target.to_path_buf(),
        };
        let name = target
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
        let tmp = target.with_file_name(format!(
            ".{}.{:016x}.tmp",
            name.to_string_lossy(),
            rand::random::<u64>()
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        Ok(SecretFile {
            target,
            tmp: Some(tmp),
            out: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// Writes `target` whole from `fill`, or leaves it untouched if `fill` or the commit fails.
    ///
    /// # Errors
    /// `fill`'s error, or IO errors.
    pub fn write<T, E: From<io::Error>>(
        target: &Path,
        fill: impl FnOnce(&mut BufWriter<File>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut f = SecretFile::create(target)?;
        let r = fill(f.writer())?;
        f.commit()?;
        Ok(r)
    }

    /// Where to write the content.
    pub fn writer(&mut self) -> &mut BufWriter<File> {
        self.out.as_mut().expect("present until commit")
    }

    /// Syncs the content, renames it over the target and syncs the directory.
    ///
    /// # Errors
    /// IO errors. If the content could not be written whole, the target is as it was; if it
    /// was written but not put in place, the error names the temporary file that holds it
    /// (shares a node has handed out are not thrown away).
    pub fn commit(mut self) -> io::Result<()> {
        let out = self.out.take().expect("present until commit");
        let Some(tmp) = self.tmp.take() else {
            // Written in place: nothing to rename, and pipes cannot be synced.
            return out.into_inner().map(drop).map_err(|e| e.into_error());
        };
        let file = match out.into_inner() {
            Ok(f) => f,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e.into_error());
            }
        };
        let placed = (|| {
            file.sync_all()?;
            fs::rename(&tmp, &self.target)?;
            let dir = match self.target.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            File::open(dir)?.sync_all()
        })();
        placed.map_err(|e| {
            let kept = if tmp.exists() {
                format!("; the complete content is kept in {}", tmp.display())
            } else {
                String::new()
            };
            io::Error::new(e.kind(), format!("{e}{kept}"))
        })
    }
}

impl Write for SecretFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer().flush()
    }
}

impl Drop for SecretFile {
    fn drop(&mut self) {
        if let (Some(_), Some(tmp)) = (self.out.take(), &self.tmp) {
            let _ = fs::remove_file(tmp);
        }
    }
}

impl std::fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretFile")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_failed_write_leaves_the_existing_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("job.shares");
        fs::write(&target, b"the only copy").unwrap();
        let r: io::Result<()> = SecretFile::write(&target, |w| {
            w.write_all(b"half")?;
            Err(io::Error::other("410 already-consumed"))
        });
        assert!(r.is_err());
        assert_eq!(fs::read(&target).unwrap(), b"the only copy");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temporary left"
        );
    }

    #[test]
    fn a_link_keeps_pointing_at_the_replaced_file_and_a_pipe_is_written_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.shares");
        fs::write(&real, b"old").unwrap();
        let link = dir.path().join("link.shares");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        SecretFile::write(&link, |w| w.write_all(b"via link")).unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&real).unwrap(), b"via link");

        let pipe = dir.path().join("pipe");
        nix::unistd::mkfifo(&pipe, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let reader = {
            let pipe = pipe.clone();
            std::thread::spawn(move || fs::read(pipe).unwrap())
        };
        SecretFile::write(&pipe, |w| w.write_all(b"through the pipe")).unwrap();
        assert_eq!(reader.join().unwrap(), b"through the pipe");
        assert!(fs::metadata(&pipe).unwrap().file_type().is_fifo());
    }

    #[test]
    fn a_commit_replaces_the_file_and_restricts_it() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("job.shares");
        fs::write(&target, b"old").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
        SecretFile::write(&target, |w| w.write_all(b"new shares")).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new shares");
        assert_eq!(mode(&target), 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
