//! Stock per pool and the store's size on disk.

use super::*;

impl Store {
    /// Stock per pool.
    ///
    /// # Errors
    /// Sled errors or corrupt metadata.
    pub fn stock(&self) -> Result<BTreeMap<PoolSpec, PoolStock>> {
        let mut out: BTreeMap<PoolSpec, PoolStock> = BTreeMap::new();
        for meta in self.all_batches()? {
            let s = out.entry(meta.pool).or_default();
            match meta.state {
                BatchState::Staged => s.staged += meta.free.len(),
                BatchState::Available => {
                    s.available += meta.free.len();
                    let by = meta.maker.map_or("unrecorded", Maker::name);
                    *s.by_generator.entry(by.to_string()).or_default() += meta.free.len();
                    let under = meta.maker.map_or("unrecorded", |m| m.assumption().name());
                    *s.by_assumption.entry(under.to_string()).or_default() += meta.free.len();
                }
                BatchState::Exhausted => {}
            }
            if meta.state != BatchState::Exhausted {
                s.batches += 1;
            }
            s.consumed += meta.consumed.len();
            s.reserved += meta.items - meta.free.len() - meta.consumed.len();
        }
        Ok(out)
    }

    /// Bytes this store occupies on disk (metadata and batch files).
    pub fn disk_bytes(&self) -> u64 {
        fn walk(p: &Path) -> u64 {
            fs::read_dir(p).map_or(0, |rd| {
                rd.flatten()
                    .map(|e| match e.metadata() {
                        Ok(m) if m.is_dir() => walk(&e.path()),
                        Ok(m) => m.len(),
                        Err(_) => 0,
                    })
                    .sum()
            })
        }
        walk(&self.dir)
    }
}
