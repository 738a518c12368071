//! Schema 1: the trees of a party store.
//!
//! - `batches`: batch id (16 bytes) -> batch metadata (JSON): state, free / consumed item
//!   ranges, erased chunks.
//! - `stock`: pool id, 0x00, activation sequence (u64 BE) -> batch id: available batches with
//!   free items, in activation order.
//! - `reservations`: checkout id (UTF-8) -> reservation (JSON).
//! - `audit`: sequence (u64 BE) -> audit record (JSON).
//! - default tree: `identity` (JSON) and `schema_version` (u32 BE).

pub fn up(db: &sled::Db, _batches: &std::path::Path) -> sled::Result<()> {
    for tree in ["batches", "stock", "reservations", "audit"] {
        db.open_tree(tree)?;
    }
    Ok(())
}
