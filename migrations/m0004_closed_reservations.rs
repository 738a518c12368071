//! Schema 4: an index of the reservations that reached a final state.
//!
//! - `closed`: reserved_at (u64 BE, Unix seconds) then the checkout id -> empty, for every
//!   reservation consumed, released or burned here. The archive pass reads only the keys older
//!   than the consortium's `archive_after_seconds` and removes those reservations from the hot
//!   metadata (their history is in the audit trail).
//!
//! Existing final reservations are indexed from their JSON (read as plain JSON, so this step
//! does not depend on later versions of the reservation type).

pub fn up(db: &sled::Db, _batches: &std::path::Path) -> sled::Result<()> {
    let closed = db.open_tree("closed")?;
    let reservations = db.open_tree("reservations")?;
    for entry in reservations.iter() {
        let (id, value) = entry?;
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&value) else {
            continue;
        };
        if v.get("state")
            .and_then(|s| s.as_str())
            .unwrap_or("reserved")
            == "reserved"
        {
            continue;
        }
        let at = v.get("reserved_at").and_then(|t| t.as_u64()).unwrap_or(0);
        let mut key = at.to_be_bytes().to_vec();
        key.extend_from_slice(&id);
        closed.insert(key, &[])?;
    }
    Ok(())
}
