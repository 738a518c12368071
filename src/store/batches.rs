//! The batch lifecycle: staged, then available (activate) or aborted.

use super::*;

impl Store {
    /// Metadata of one batch.
    ///
    /// # Errors
    /// Sled errors or corrupt metadata.
    pub fn batch_meta(&self, id: &BatchId) -> Result<Option<BatchMeta>> {
        self.batches
            .get(id.0)?
            .map(|v| from_json("batch", &v))
            .transpose()
    }

    /// Every batch's metadata.
    ///
    /// # Errors
    /// Sled errors or corrupt metadata.
    pub fn all_batches(&self) -> Result<Vec<BatchMeta>> {
        self.batches
            .iter()
            .values()
            .map(|v| from_json("batch", &v?))
            .collect()
    }

    /// Stores this party's share of a batch durably, as `staged`. Staging the same batch again
    /// is a no-op.
    ///
    /// # Errors
    /// [`FormatError`] if the file is invalid; [`StoreError::WrongParty`] if it is another
    /// party's share; [`StoreError::BatchMismatch`] for a different batch under a known id.
    pub fn stage(&self, bytes: &[u8]) -> Result<BatchHeader> {
        let header = BatchHeader::verify_file(bytes)?;
        let me = &self.identity;
        if header.party != me.party || header.parties != me.parties {
            return Err(StoreError::WrongParty {
                got: header.party,
                got_parties: header.parties,
                want: me.party,
                want_parties: me.parties,
            });
        }
        if let Some(allowed) = self
            .allowed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&header.pool)
            .filter(|a| !a.contains(&header.maker))
        {
            return Err(StoreError::GeneratorRefused {
                pool: header.pool,
                maker: header.maker,
                allowed: allowed.clone(),
            });
        }
        let known = |s: &Store| -> Result<Option<BatchHeader>> {
            match s.batch_meta(&header.batch)? {
                Some(meta) if meta.pool == header.pool && meta.items == header.items => {
                    Ok(Some(header.clone()))
                }
                Some(_) => Err(StoreError::BatchMismatch(header.batch)),
                None => Ok(None),
            }
        };
        if let Some(h) = known(self)? {
            return Ok(h);
        }
        let _room = self.claim_space(bytes.len() as u64)?;
        let path = self.batch_path(&header.batch);
        // A temporary name of its own, so two stagings of one batch never write one file.
        let tmp = path.with_extension(format!("{:016x}.tmp", rand::random::<u64>()));
        if let Err(e) = write_durably(&tmp, bytes) {
            // A full disk must not keep the part written.
            let _ = fs::remove_file(&tmp);
            return Err(io_err("write", &tmp)(e));
        }
        // From the check to the commit, one staging at a time: a late rename must never
        // replace a file that is already committed (or already erased).
        let _one = self.stage_lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = known(self)? {
            let _ = fs::remove_file(&tmp);
            return Ok(h);
        }
        fs::rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
        self.sync_dir()?;
        let meta = BatchMeta {
            id: header.batch,
            pool: header.pool,
            items: header.items,
            state: BatchState::Staged,
            free: RangeSet::interval(0, header.items),
            consumed: RangeSet::new(),
            erased_chunks: RangeSet::new(),
            chunk_items: header.chunk_items,
            stock_seq: 0,
            staged_at: now_unix(),
            maker: Some(header.maker),
            epoch: header.epoch,
        };
        let mut audit = audit_entry("stage", header.pool, None, Some(header.batch), vec![], None);
        audit.generator = Some(header.maker);
        audit.assumption = Some(header.maker.assumption());
        {
            let _g = self.locked();
            let mut chain = self.chain();
            let chained = Chained::new(&chain.tip, vec![audit]);
            unwrap_tx((&self.batches, &self.audit).transaction(|(b, a)| {
                if b.get(header.batch.0)?.is_some() {
                    return abort(StoreError::BatchMismatch(header.batch));
                }
                b.insert(&header.batch.0, to_json(&meta))?;
                chained.write(a)?;
                Ok(())
            }))?;
            chained.advance(&mut chain);
        }
        self.flush()?;
        Ok(header)
    }

    /// Makes a staged batch available for allocation (the leader does this once every party
    /// has staged it). Activating an available batch again is a no-op.
    ///
    /// # Errors
    /// [`StoreError::UnknownBatch`]; [`StoreError::IllegalTransition`] for an exhausted batch.
    pub fn activate(&self, id: &BatchId) -> Result<()> {
        {
            let _g = self.locked();
            let seq = self.db.generate_id()?;
            let Some(pool) = self.batch_meta(id)?.map(|m| m.pool) else {
                return Err(StoreError::UnknownBatch(*id));
            };
            let mut chain = self.chain();
            let chained = Chained::new(
                &chain.tip,
                vec![audit_entry("activate", pool, None, Some(*id), vec![], None)],
            );
            let audited = unwrap_tx((&self.batches, &self.stock, &self.audit).transaction(
                |(b, s, a)| {
                    let Some(mut meta) = tx_get::<BatchMeta>(b, &id.0, "batch")? else {
                        return abort(StoreError::UnknownBatch(*id));
                    };
                    match meta.state {
                        BatchState::Available => return Ok(false),
                        BatchState::Exhausted => {
                            return abort(StoreError::IllegalTransition {
                                batch: *id,
                                from: meta.state,
                                to: "available",
                            })
                        }
                        BatchState::Staged => {}
                    }
                    meta.state = BatchState::Available;
                    meta.stock_seq = seq;
                    if !meta.free.is_empty() {
                        s.insert(stock_key(&meta.pool, seq), &id.0)?;
                    }
                    b.insert(&id.0, to_json(&meta))?;
                    chained.write(a)?;
                    Ok(true)
                },
            ))?;
            if audited {
                chained.advance(&mut chain);
            }
        }
        self.flush()
    }

    /// Drops a staged batch that will never complete: metadata and data. Aborting an unknown
    /// batch is a no-op.
    ///
    /// # Errors
    /// [`StoreError::IllegalTransition`] if the batch is already available or exhausted.
    pub fn abort(&self, id: &BatchId) -> Result<()> {
        {
            let _g = self.locked();
            let Some(pool) = self.batch_meta(id)?.map(|m| m.pool) else {
                return Ok(());
            };
            let mut chain = self.chain();
            let chained = Chained::new(
                &chain.tip,
                vec![audit_entry("abort", pool, None, Some(*id), vec![], None)],
            );
            let audited = unwrap_tx((&self.batches, &self.audit).transaction(|(b, a)| {
                let Some(meta) = tx_get::<BatchMeta>(b, &id.0, "batch")? else {
                    return Ok(false);
                };
                if meta.state != BatchState::Staged {
                    return abort(StoreError::IllegalTransition {
                        batch: *id,
                        from: meta.state,
                        to: "aborted",
                    });
                }
                b.remove(&id.0)?;
                chained.write(a)?;
                Ok(true)
            }))?;
            if audited {
                chained.advance(&mut chain);
            }
        }
        self.flush()?;
        let path = self.batch_path(id);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove", &path)(e)),
        }
        self.sync_dir()
    }

    /// Retires a PRSS key epoch here (its keys are suspected leaked): every item of its
    /// batches that was not handed out is burned. Reservations not downloaded yet are burned
    /// (a later download is refused), free items are consumed with a `retire` audit record
    /// each batch, and their chunks are erased. Retiring again finds nothing left.
    ///
    /// # Errors
    /// Sled or IO errors; what was burned before stays burned.
    pub fn retire_epoch(&self, epoch: u32) -> Result<RetireReport> {
        // First: nothing of the epoch is allocated from here on.
        self.set_retired_epochs([epoch]);
        let mut report = RetireReport::default();
        let of_epoch = |m: &BatchMeta| m.epoch == Some(epoch) && m.state != BatchState::Exhausted;
        let ids: std::collections::BTreeSet<BatchId> = self
            .all_batches()?
            .iter()
            .filter(|m| of_epoch(m))
            .map(|m| m.id)
            .collect();
        for res in self.reservations()? {
            if res.state == ReservationState::Reserved
                && res.ranges.iter().any(|r| ids.contains(&r.batch))
            {
                match self.burn(&res.checkout) {
                    Ok(r) => {
                        report.reservations += 1;
                        report.items += r.count;
                    }
                    // Downloaded or released meanwhile: nothing to burn.
                    Err(StoreError::NotReserved { .. } | StoreError::Gone { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        for id in &ids {
            let burned = {
                let _g = self.locked();
                let Some(mut meta) = self.batch_meta(id)? else {
                    continue;
                };
                if !of_epoch(&meta) || meta.free.is_empty() {
                    continue;
                }
                let ranges: Vec<ShareRange> = meta
                    .free
                    .intervals()
                    .iter()
                    .map(|&(first, end)| ShareRange {
                        batch: *id,
                        first,
                        count: end - first,
                    })
                    .collect();
                for r in &ranges {
                    meta.consumed.insert(r.first, r.first + r.count);
                }
                let count: u64 = ranges.iter().map(|r| r.count).sum();
                meta.free = RangeSet::new();
                let by = format!("prss epoch {epoch} retired");
                let mut chain = self.chain();
                let chained = Chained::new(
                    &chain.tip,
                    vec![audit_entry(
                        "retire",
                        meta.pool,
                        None,
                        Some(*id),
                        ranges,
                        Some(&by),
                    )],
                );
                let key = stock_key(&meta.pool, meta.stock_seq);
                unwrap_tx(
                    (&self.batches, &self.stock, &self.audit).transaction(|(b, s, a)| {
                        s.remove(key.clone())?;
                        b.insert(&id.0, to_json(&meta))?;
                        chained.write(a)?;
                        Ok(())
                    }),
                )?;
                chained.advance(&mut chain);
                count
            };
            self.flush()?;
            report.batches += 1;
            report.items += burned;
            self.erase_consumed(id)?;
        }
        Ok(report)
    }

    /// Appends one audit record of `event` by `by` (no pool, batch or items), durably: key
    /// setup and retirement of PRSS epochs.
    ///
    /// # Errors
    /// Sled errors.
    pub fn record_event(&self, event: &str, by: &str) -> Result<()> {
        {
            let _g = self.locked();
            let mut r = AuditRecord::new(event, now_unix());
            r.by = Some(by.to_string());
            let mut chain = self.chain();
            let chained = Chained::new(&chain.tip, vec![r]);
            unwrap_tx(self.audit.transaction(|a| {
                chained.write(a)?;
                Ok(())
            }))?;
            chained.advance(&mut chain);
        }
        self.flush()
    }
}
