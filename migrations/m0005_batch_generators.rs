//! Schema 5: every batch records the generator that made it.
//!
//! - `batches`: batch metadata (JSON) gains `maker` (`dealer`, `parties` or `he`), copied from
//!   the maker byte of the batch file's header at staging.
//!
//! Existing batches get it from their file's header where the file is still there; a batch
//! whose file is gone (exhausted and erased) keeps none and counts as `unrecorded`. Read as
//! plain JSON, so this step does not depend on later versions of the metadata type.

use crate::material::BatchHeader;
use std::io::Read;

pub fn up(db: &sled::Db, batches: &std::path::Path) -> sled::Result<()> {
    let tree = db.open_tree("batches")?;
    for entry in tree.iter() {
        let (id, value) = entry?;
        let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&value) else {
            continue;
        };
        if v.get("maker").is_some() || id.len() != 16 {
            continue;
        }
        let path = batches.join(format!("{}.lb", hex::encode(&id)));
        let mut head = [0u8; crate::material::batch::HEADER_BYTES];
        let read = std::fs::File::open(&path).and_then(|mut f| f.read_exact(&mut head));
        let Some(maker) = read
            .ok()
            .and_then(|()| BatchHeader::decode(&head).ok())
            .map(|h| h.maker)
        else {
            continue;
        };
        if let Some(m) = v.as_object_mut() {
            m.insert("maker".into(), maker.name().into());
            tree.insert(&id, serde_json::to_vec(&v).expect("JSON serializes"))?;
        }
    }
    Ok(())
}
