//! The migration runner: brings a store's schema up to this build's, or refuses a newer one.

#[path = "../../migrations/mod.rs"]
mod steps;

pub use steps::{Migration, MIGRATIONS};

const VERSION_KEY: &[u8] = b"schema_version";

/// The schema version this build writes.
pub fn latest() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Why a store's schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("this store has schema version {found}, newer than this Larder build supports ({supported}); use a newer larder")]
    Newer { found: u32, supported: u32 },
    #[error("schema migration {version} ({name}) failed: {source}")]
    Step {
        version: u32,
        name: &'static str,
        source: sled::Error,
    },
    #[error("schema version record is corrupt")]
    Corrupt,
    #[error(transparent)]
    Sled(#[from] sled::Error),
}

/// The stored schema version (0 for a store that has none yet).
///
/// # Errors
/// [`SchemaError::Corrupt`] if the record is not 4 bytes.
pub fn version(db: &sled::Db) -> Result<u32, SchemaError> {
    match db.get(VERSION_KEY)? {
        None => Ok(0),
        Some(v) => Ok(u32::from_be_bytes(
            v.as_ref().try_into().map_err(|_| SchemaError::Corrupt)?,
        )),
    }
}

/// Runs, in order, every step of `steps` above the store's version; each step's version is
/// recorded durably once it has run. Returns the final version.
///
/// # Errors
/// [`SchemaError::Newer`] if the store is ahead of `steps`; a failing step's error.
pub fn migrate(
    db: &sled::Db,
    batches: &std::path::Path,
    steps: &[Migration],
) -> Result<u32, SchemaError> {
    let supported = steps.last().map_or(0, |m| m.version);
    let mut current = version(db)?;
    if current > supported {
        return Err(SchemaError::Newer {
            found: current,
            supported,
        });
    }
    let start = current;
    for step in steps.iter().filter(|m| m.version > start) {
        (step.up)(db, batches).map_err(|source| SchemaError::Step {
            version: step.version,
            name: step.name,
            source,
        })?;
        db.insert(VERSION_KEY, &step.version.to_be_bytes())?;
        db.flush()?;
        current = step.version;
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(db: &sled::Db, key: &str) -> sled::Result<()> {
        let n = db.len();
        db.insert(key, &(n as u32).to_be_bytes())?;
        Ok(())
    }
    fn a(db: &sled::Db, _: &std::path::Path) -> sled::Result<()> {
        mark(db, "a")
    }
    fn b(db: &sled::Db, _: &std::path::Path) -> sled::Result<()> {
        mark(db, "b")
    }
    fn fail(_: &sled::Db, _: &std::path::Path) -> sled::Result<()> {
        Err(sled::Error::Unsupported("test step".into()))
    }

    const TWO: &[Migration] = &[
        Migration {
            version: 1,
            name: "a",
            up: a,
        },
        Migration {
            version: 2,
            name: "b",
            up: b,
        },
    ];

    fn temp_db() -> (tempfile::TempDir, sled::Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        (dir, db)
    }

    #[test]
    fn a_fresh_store_runs_every_step_in_order() {
        let (_d, db) = temp_db();
        assert_eq!(migrate(&db, std::path::Path::new("."), TWO).unwrap(), 2);
        assert!(db.get("a").unwrap().is_some() && db.get("b").unwrap().is_some());
        assert_eq!(version(&db).unwrap(), 2);
    }

    #[test]
    fn an_older_store_runs_only_the_missing_steps() {
        let (_d, db) = temp_db();
        migrate(&db, std::path::Path::new("."), &TWO[..1]).unwrap();
        db.remove("a").unwrap();
        assert_eq!(migrate(&db, std::path::Path::new("."), TWO).unwrap(), 2);
        assert!(db.get("a").unwrap().is_none(), "step 1 must not run twice");
        assert!(db.get("b").unwrap().is_some());
    }

    #[test]
    fn a_newer_store_is_refused_with_both_versions() {
        let (_d, db) = temp_db();
        migrate(&db, std::path::Path::new("."), TWO).unwrap();
        let err = migrate(&db, std::path::Path::new("."), &TWO[..1]).unwrap_err();
        assert!(matches!(
            err,
            SchemaError::Newer {
                found: 2,
                supported: 1
            }
        ));
        assert!(err.to_string().contains("newer than this Larder build"));
    }

    #[test]
    fn a_failed_step_leaves_the_version_at_the_last_good_step() {
        let (_d, db) = temp_db();
        let steps = [
            TWO[0].clone_step(),
            Migration {
                version: 2,
                name: "boom",
                up: fail,
            },
        ];
        assert!(matches!(
            migrate(&db, std::path::Path::new("."), &steps),
            Err(SchemaError::Step { version: 2, .. })
        ));
        assert_eq!(version(&db).unwrap(), 1);
    }

    impl Migration {
        fn clone_step(&self) -> Migration {
            Migration {
                version: self.version,
                name: self.name,
                up: self.up,
            }
        }
    }
}
