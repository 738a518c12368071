//! Erasure of consumed material: chunk seeds and values overwritten, used-up batch files deleted.

use super::*;

impl Store {
    /// Erases every consumed chunk no stream still needs, in every batch. A node runs this
    /// from its periodic sweep, so erasure costs no fsync on the download path.
    ///
    /// # Errors
    /// IO or sled errors.
    pub fn erase_due(&self) -> Result<()> {
        for meta in self.all_batches()? {
            if meta.state != BatchState::Exhausted && !meta.consumed.is_empty() {
                self.erase_consumed(&meta.id)?;
            }
        }
        Ok(())
    }

    /// Overwrites the data of a consumed reservation's fully consumed chunks.
    ///
    /// # Errors
    /// IO or sled errors.
    pub fn erase_reservation(&self, res: &Reservation) -> Result<()> {
        self.end_stream(res);
        let mut ids: Vec<BatchId> = res.ranges.iter().map(|r| r.batch).collect();
        ids.dedup();
        for id in ids {
            self.erase_consumed(&id)?;
        }
        Ok(())
    }

    /// Erases every fully consumed, not yet erased chunk of a batch (seed and values
    /// overwritten with zeros, then synced), and deletes the file once every item is consumed.
    pub(super) fn erase_consumed(&self, id: &BatchId) -> Result<()> {
        // Erasures run one at a time (so only one deletes a file), but their file IO happens
        // outside the metadata lock, so checkouts are not held up by it.
        let _one = self.erase_lock.lock().unwrap_or_else(|p| p.into_inner());
        let (due, all, pool) = {
            let _g = self.locked();
            let streaming = self
                .streaming
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let Some(meta) = self.batch_meta(id)? else {
                return Ok(());
            };
            if meta.state == BatchState::Exhausted {
                return Ok(());
            }
            let ci = meta.chunk_items as u64;
            let busy = |start: u64, end: u64| {
                streaming
                    .iter()
                    .any(|r| r.batch == *id && r.first < end && start < r.first + r.count)
            };
            let due: Vec<u64> = (0..meta.items.div_ceil(ci))
                .filter(|&c| !meta.erased_chunks.contains(c, c + 1))
                .filter(|&c| {
                    let (start, end) = (c * ci, ((c + 1) * ci).min(meta.items));
                    meta.consumed.contains(start, end) && !busy(start, end)
                })
                .collect();
            // Once every item is consumed no new stream can start on this batch.
            let all = meta.consumed.contains(0, meta.items) && !busy(0, meta.items);
            (due, all, meta.pool)
        };
        if due.is_empty() {
            return Ok(());
        }
        let path = self.batch_path(id);
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        let bh = super::read_batch_header(&file, &path)?;
        // Overwritten (and synced) before any unlink, so the bytes do not linger in freed
        // blocks of a long-lived file system.
        for &c in &due {
            let zeros = vec![0u8; bh.chunk_bytes(c)];
            file.write_all_at(&zeros, bh.chunk_offset(c))
                .map_err(io_err("erase", &path))?;
        }
        file.sync_data().map_err(io_err("sync", &path))?;
        drop(file);
        {
            let _g = self.locked();
            let Some(mut meta) = self.batch_meta(id)? else {
                return Ok(());
            };
            for &c in &due {
                meta.erased_chunks.insert(c, c + 1);
            }
            if all {
                meta.state = BatchState::Exhausted;
                meta.erased_chunks =
                    RangeSet::interval(0, meta.items.div_ceil(meta.chunk_items as u64));
            }
            let audit = audit_entry("exhaust", pool, None, Some(*id), vec![], None);
            let mut chain = self.chain();
            let chained = Chained::new(&chain.tip, if all { vec![audit] } else { vec![] });
            unwrap_tx((&self.batches, &self.audit).transaction(|(b, a)| {
                b.insert(&id.0, to_json(&meta))?;
                chained.write(a)?;
                Ok(())
            }))?;
            chained.advance(&mut chain);
        }
        self.flush()?;
        if all {
            fs::remove_file(&path).map_err(io_err("remove", &path))?;
            self.sync_dir()?;
        }
        Ok(())
    }
}
