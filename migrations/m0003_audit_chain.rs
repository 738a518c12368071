//! Schema 3: the audit log becomes a hash chain (see `crate::audit`).
//!
//! - `audit`: record number (u64 BE, 0, 1, 2, ... with no gaps) -> the record's JSON, now with
//!   `seq`, `prev` and `hash`. Before, keys were sled ids (increasing, with gaps) and records
//!   had no links.
//!
//! Existing records are chained in their order, from the party's genesis value, and rewritten
//! under their numbers in one atomic batch. Records of this version's `larder-audit-v1` format
//! stay valid in every later version (fields are only ever added as optional ones).

use crate::audit::{genesis, AuditRecord, Tip};

pub fn up(db: &sled::Db, _batches: &std::path::Path) -> sled::Result<()> {
    let corrupt = |what: &str| sled::Error::Unsupported(format!("audit chain migration: {what}"));
    let audit = db.open_tree("audit")?;
    let Some(identity) = db.get("identity")? else {
        // Not a store yet (created under another name and renamed whole, see `Store::create`).
        return Ok(());
    };
    let identity: serde_json::Value =
        serde_json::from_slice(&identity).map_err(|_| corrupt("identity"))?;
    let consortium = identity["consortium"]
        .as_str()
        .ok_or_else(|| corrupt("identity"))?;
    let party = identity["party"]
        .as_u64()
        .and_then(|p| u8::try_from(p).ok())
        .ok_or_else(|| corrupt("identity"))?;
    let mut tip = Tip {
        next: 0,
        hash: genesis(consortium, party),
    };
    let mut batch = sled::Batch::default();
    let mut rows = Vec::new();
    for entry in audit.iter() {
        let (key, value) = entry?;
        let mut rec: AuditRecord =
            serde_json::from_slice(&value).map_err(|e| corrupt(&e.to_string()))?;
        tip.append(&mut rec);
        batch.remove(key);
        rows.push((
            rec.seq,
            serde_json::to_vec(&rec).expect("records serialize"),
        ));
    }
    for (seq, value) in rows {
        batch.insert(&seq.to_be_bytes(), value);
    }
    audit.apply_batch(batch)
}
