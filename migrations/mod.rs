//! Numbered store schema migrations. Each step upgrades a store from the previous version;
//! `store::schema` runs the ones a store has not had yet, in order, on open.
//!
//! To change the schema: add `mNNNN_name.rs` with
//! `pub fn up(db: &sled::Db, batches: &Path) -> sled::Result<()>` (`batches`: the store's batch
//! file directory),
//! append it to [`MIGRATIONS`], and add a test that opens a store written by the old version.

mod m0001_initial;
mod m0002_open_reservations;
mod m0003_audit_chain;
mod m0004_closed_reservations;
mod m0005_batch_generators;

/// One schema step: after `up` runs, the store is at `version`.
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub up: fn(&sled::Db, &std::path::Path) -> sled::Result<()>,
}

/// Every migration, in order; the last one's version is the schema this build writes.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        up: m0001_initial::up,
    },
    Migration {
        version: 2,
        name: "open reservations index",
        up: m0002_open_reservations::up,
    },
    Migration {
        version: 3,
        name: "audit hash chain",
        up: m0003_audit_chain::up,
    },
    Migration {
        version: 4,
        name: "closed reservations index",
        up: m0004_closed_reservations::up,
    },
    Migration {
        version: 5,
        name: "batch generators",
        up: m0005_batch_generators::up,
    },
];
