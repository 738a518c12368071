//! Schema 2: an index of the reservations expiry still has to look at.
//!
//! - `open`: reserved_at (u64 BE, Unix seconds) then the checkout id -> empty, for every
//!   reservation allocated here and not yet settled. The leader's sweep reads only the keys
//!   whose time is past the TTL, instead of every reservation ever made.
//!
//! Existing unsettled reservations are indexed from their JSON (read as plain JSON, so this
//! step does not depend on later versions of the reservation type).

pub fn up(db: &sled::Db, _batches: &std::path::Path) -> sled::Result<()> {
    let open = db.open_tree("open")?;
    let reservations = db.open_tree("reservations")?;
    for entry in reservations.iter() {
        let (id, value) = entry?;
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&value) else {
            continue;
        };
        if v.get("settled").and_then(|s| s.as_bool()) == Some(true) {
            continue;
        }
        let at = v.get("reserved_at").and_then(|t| t.as_u64()).unwrap_or(0);
        let mut key = at.to_be_bytes().to_vec();
        key.extend_from_slice(&id);
        open.insert(key, &[])?;
    }
    Ok(())
}
