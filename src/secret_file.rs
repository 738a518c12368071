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
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
}

impl SecretFile {
    /// Starts writing what will replace `target` once committed.
    ///
    /// # Errors
    /// IO errors creating the temporary file (for example a missing directory).
    pub fn create(target: &Path) -> io::Result<SecretFile> {
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
            target: target.to_path_buf(),
            tmp,
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

    /// The path this file will have once committed.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Syncs the content, renames it over the target and syncs the directory.
    ///
    /// # Errors
    /// IO errors; the target is then as it was (or, if only the directory sync failed,
    /// replaced but possibly not durably).
    pub fn commit(mut self) -> io::Result<()> {
        let out = self.out.take().expect("present until commit");
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&self.tmp, &self.target)?;
        let dir = match self.target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()
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
        if self.out.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
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
    use std::os::unix::fs::PermissionsExt;

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
