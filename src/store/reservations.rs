//! Reservations: allocate at the leader, apply at followers, confirm, then consume, release or burn; each a sled transaction, many at a time where callers group them.

use super::*;

/// The audit record of a reservation's event.
pub(super) fn reservation_audit(event: &str, res: &Reservation, by: Option<&str>) -> AuditRecord {
    audit_entry(
        event,
        res.pool,
        Some(&res.checkout),
        None,
        res.ranges.clone(),
        by,
    )
}

pub(super) fn audit_entry(
    event: &str,
    pool: PoolSpec,
    checkout: Option<&str>,
    batch: Option<BatchId>,
    ranges: Vec<ShareRange>,
    by: Option<&str>,
) -> AuditRecord {
    let mut r = AuditRecord::new(event, now_unix());
    r.pool = Some(pool);
    r.checkout = checkout.map(str::to_string);
    r.batch = batch;
    r.ranges = ranges;
    r.by = by.map(str::to_string);
    r
}

impl Store {
    pub(super) fn check_request(checkout: &str, count: u64) -> Result<()> {
        if checkout.is_empty()
            || checkout.chars().count() > MAX_CHECKOUT_ID
            || checkout.chars().any(|c| c.is_control())
        {
            return Err(StoreError::BadCheckoutId);
        }
        if count == 0 {
            return Err(StoreError::ZeroCount);
        }
        Ok(())
    }

    /// The leader's allocation: reserves `count` items of `pool` under `checkout`, first in
    /// first out, splitting batches as needed. The same request again returns the same
    /// reservation.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] for a used id with other parameters; [`StoreError::Underrun`]
    /// (with the available count) if stock is short.
    pub fn allocate(&self, checkout: &str, pool: PoolSpec, count: u64) -> Result<Reservation> {
        one(self.allocate_many(&[(checkout.to_string(), pool, count)]))
    }

    /// [`Store::allocate`] for many requests, written by one transaction and made durable by
    /// one flush (the leader groups concurrent checkouts this way). One result per request,
    /// in order; a later request sees the allocations of earlier ones, so the same id twice
    /// gets the same reservation.
    pub fn allocate_many(&self, requests: &[(String, PoolSpec, u64)]) -> Vec<Result<Reservation>> {
        let retired = self.retired_epochs();
        let results = self.plan_group(|view| {
            requests
                .iter()
                .map(|(id, pool, count)| {
                    view.item(|v| Self::plan_allocate(v, id, *pool, *count, &retired))
                })
                .collect()
        });
        self.flush_all(results)
    }

    pub(super) fn plan_allocate(
        view: &mut View<'_>,
        checkout: &str,
        pool: PoolSpec,
        count: u64,
        retired: &std::collections::BTreeSet<u32>,
    ) -> Result<Reservation> {
        Self::check_request(checkout, count)?;
        if let Some(existing) = view.reservation(checkout)? {
            if existing.pool == pool && existing.count == count {
                // Possibly written by a call not flushed yet: the caller flushes.
                return Ok(existing);
            }
            return Err(StoreError::Conflict(checkout.to_string()));
        }
        let mut need = count;
        let mut ranges = Vec::new();
        for entry in view.stock_scan(&stock_prefix(&pool)) {
            if need == 0 {
                break;
            }
            let (key, id) = entry?;
            let mut meta = view.meta(&id)?.ok_or(StoreError::UnknownBatch(id))?;
            // Items of a retired PRSS epoch that came back (a reservation released while the
            // epoch was being retired) are never handed out; retiring again burns them.
            if meta.epoch.is_some_and(|e| retired.contains(&e)) {
                view.stock_remove(key);
                continue;
            }
            for (first, end) in meta.free.take_front(need) {
                need -= end - first;
                ranges.push(ShareRange {
                    batch: id,
                    first,
                    count: end - first,
                });
            }
            if meta.free.is_empty() {
                view.stock_remove(key);
            }
            view.put_meta(meta);
        }
        if need > 0 {
            return Err(StoreError::Underrun {
                pool,
                requested: count,
                available: count - need,
            });
        }
        let res = Reservation {
            checkout: checkout.to_string(),
            pool,
            count,
            ranges,
            state: ReservationState::Reserved,
            reserved_at: now_unix(),
            consumer: None,
            consumed_at: None,
            confirmed: false,
            settled: false,
        };
        view.audit(reservation_audit("reserve", &res, None));
        view.open_insert(&res);
        view.put_reservation(res.clone());
        Ok(res)
    }

    /// A follower's side of allocation: holds exactly the leader's ranges. A batch staged here
    /// becomes available (the leader only allocates batches every party has staged). Applying
    /// the same reservation again is a no-op.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] if the id holds a different reservation;
    /// [`StoreError::RangeUnavailable`] if an item is not free here.
    pub fn apply(&self, reservation: &Reservation) -> Result<()> {
        one(self.apply_many(std::slice::from_ref(reservation)))
    }

    /// [`Store::apply`] for many reservations, written by one transaction and made durable by
    /// one flush. One result per reservation, in order.
    pub fn apply_many(&self, reservations: &[Reservation]) -> Vec<Result<()>> {
        let results = self.plan_group(|view| {
            reservations
                .iter()
                .map(|r| view.item(|v| self.plan_apply(v, r)))
                .collect()
        });
        self.flush_all(results)
    }

    pub(super) fn plan_apply(&self, view: &mut View<'_>, reservation: &Reservation) -> Result<()> {
        Self::check_request(&reservation.checkout, reservation.count)?;
        let total = reservation.ranges.iter().try_fold(0u64, |acc, r| {
            if r.count == 0 {
                None
            } else {
                acc.checked_add(r.count)
                    .filter(|_| r.first.checked_add(r.count).is_some())
            }
        });
        if total != Some(reservation.count) {
            return Err(StoreError::Corrupt(
                "reservation ranges do not add up to its count".into(),
            ));
        }
        if let Some(existing) = view.reservation(&reservation.checkout)? {
            if !existing.same_allocation(reservation) {
                return Err(StoreError::Conflict(reservation.checkout.clone()));
            }
            // Released here (expiry): the leader must not count this party as holding it.
            if existing.state == ReservationState::Released {
                return Err(StoreError::NotReserved {
                    checkout: existing.checkout,
                    state: existing.state,
                    to: "held again",
                });
            }
            // Possibly written by a call not flushed yet: the caller flushes.
            return Ok(());
        }
        let mut metas = BTreeMap::new();
        view.load_metas(&mut metas, &reservation.ranges)?;
        // Items the leader hands out again can be held here only by a reservation the
        // leader dropped before confirming it (it confirms only once every party holds a
        // reservation, and never reallocates a confirmed one's items while it is live):
        // such stale reservations are released first, in the same transaction.
        let busy = reservation.ranges.iter().any(|r| {
            !metas[&r.batch]
                .free
                .contains(r.first, r.first.saturating_add(r.count))
        });
        if busy {
            // Those in sled and those planned earlier in this group.
            let mut ids: std::collections::BTreeSet<String> = self
                .reservations
                .iter()
                .keys()
                .map(|k| k.map(|k| String::from_utf8_lossy(&k).into_owned()))
                .collect::<sled::Result<_>>()?;
            ids.extend(view.planned_reservations());
            for id in ids {
                let Some(mut old) = view.reservation(&id)? else {
                    continue;
                };
                let overlaps = old.ranges.iter().any(|o| {
                    reservation.ranges.iter().any(|r| {
                        o.batch == r.batch
                            && o.first < r.first + r.count
                            && r.first < o.first + o.count
                    })
                });
                if !(overlaps && old.state == ReservationState::Reserved && !old.confirmed) {
                    continue;
                }
                view.load_metas(&mut metas, &old.ranges)?;
                for o in &old.ranges {
                    metas
                        .get_mut(&o.batch)
                        .expect("loaded above")
                        .free
                        .insert(o.first, o.first + o.count);
                }
                old.state = ReservationState::Released;
                view.audit(reservation_audit("release", &old, None));
                view.put_reservation(old);
            }
        }
        for r in &reservation.ranges {
            let meta = metas.get_mut(&r.batch).expect("loaded above");
            let end = r.first.checked_add(r.count).ok_or(StoreError::ZeroCount)?;
            if meta.state == BatchState::Exhausted || !meta.free.remove(r.first, end) {
                return Err(StoreError::RangeUnavailable {
                    batch: r.batch,
                    first: r.first,
                    end,
                });
            }
        }
        for mut meta in metas.into_values() {
            let activated = meta.state == BatchState::Staged;
            if activated {
                meta.state = BatchState::Available;
                meta.stock_seq = self.db.generate_id()?;
            }
            let key = stock_key(&meta.pool, meta.stock_seq);
            if meta.free.is_empty() {
                view.stock_remove(key);
            } else if meta.state == BatchState::Available {
                // Also when a stale reservation's release gave items back (idempotent).
                view.stock_insert(key, meta.id);
            }
            view.put_meta(meta);
        }
        let mut res = reservation.clone();
        res.state = ReservationState::Reserved;
        res.consumer = None;
        res.consumed_at = None;
        res.confirmed = false;
        view.audit(reservation_audit("reserve", &res, None));
        view.put_reservation(res);
        Ok(())
    }

    /// Marks a reservation confirmed: every party holds it, so its shares may be handed out.
    /// Confirming again, or a reservation already consumed or burned, is a no-op.
    ///
    /// Not flushed on its own: the flag only caches a fact that stays true (every party holds
    /// the reservation durably; holdings are released only by the leader's expiry, which asks
    /// every party first). If a crash loses it, the node asks the leader again, and the leader
    /// re-establishes it by replicating again (idempotent). The next flush of anything (the
    /// download's consume, for one) makes it durable too.
    ///
    /// # Errors
    /// [`StoreError::UnknownCheckout`]; [`StoreError::NotReserved`] if it was released.
    pub fn confirm(&self, checkout: &str) -> Result<Reservation> {
        let res = {
            let _g = self.locked();
            let mut res = self
                .reservation(checkout)?
                .ok_or_else(|| StoreError::UnknownCheckout(checkout.to_string()))?;
            match res.state {
                ReservationState::Released => {
                    return Err(StoreError::NotReserved {
                        checkout: checkout.to_string(),
                        state: res.state,
                        to: "confirmed",
                    })
                }
                ReservationState::Reserved if !res.confirmed => {
                    res.confirmed = true;
                    self.reservations
                        .insert(checkout.as_bytes(), to_json(&res))?;
                }
                _ => return Ok(res),
            }
            res
        };
        Ok(res)
    }

    /// Records at the leader that expiry has finished with a reservation at every party.
    ///
    /// # Errors
    /// [`StoreError::UnknownCheckout`], sled errors.
    pub fn settle(&self, checkout: &str) -> Result<()> {
        {
            let _g = self.locked();
            let mut res = self
                .reservation(checkout)?
                .ok_or_else(|| StoreError::UnknownCheckout(checkout.to_string()))?;
            res.settled = true;
            self.reservations
                .insert(checkout.as_bytes(), to_json(&res))?;
            self.open.remove(open_key(&res))?;
        }
        self.flush()
    }

    /// Reservations allocated here, not settled, reserved at or before `cutoff` (Unix
    /// seconds): what the leader's expiry sweep must look at. Reads only the index of open
    /// reservations, however many were ever made.
    ///
    /// # Errors
    /// Sled errors or corrupt metadata.
    pub fn open_reservations_until(&self, cutoff: u64) -> Result<Vec<Reservation>> {
        let end = cutoff.saturating_add(1).to_be_bytes();
        let mut out = Vec::new();
        for key in self.open.range(..&end[..]).keys() {
            let key = key?;
            let id = key
                .get(8..)
                .and_then(|id| std::str::from_utf8(id).ok())
                .ok_or_else(|| StoreError::Corrupt("open reservations index".into()))?;
            match self.reservation(id)? {
                Some(r) if !r.settled => out.push(r),
                // Settled or gone: the index entry is stale.
                _ => {
                    self.open.remove(&key)?;
                }
            }
        }
        Ok(out)
    }

    /// Removes from the hot metadata the reservations that reached a final state (consumed,
    /// released, burned) and were made before `before` (Unix seconds); with `settled_only` (the
    /// leader), only those expiry has settled at every party. Their history stays in the
    /// audit trail (the `reserve` record holds the pool and ranges, the final one the state,
    /// engine and time); their checkout ids are no longer known here. At most `limit` per
    /// call, under the store's lock. Returns how many left.
    ///
    /// Items are never handed out twice however this goes: what a party has consumed is
    /// recorded in its batches' metadata, which stays.
    ///
    /// # Errors
    /// Sled errors or corrupt metadata.
    pub fn archive_reservations(
        &self,
        before: u64,
        settled_only: bool,
        limit: usize,
    ) -> Result<u64> {
        if !self.room_for_upkeep()? {
            return Ok(0);
        }
        let moved = {
            let _g = self.locked();
            let end = before.to_be_bytes();
            let mut gone = sled::Batch::default();
            let mut unindexed = sled::Batch::default();
            let mut moved = 0u64;
            for key in self.closed.range(..&end[..]).keys().take(limit) {
                let key = key?;
                let id = key
                    .get(8..)
                    .and_then(|id| std::str::from_utf8(id).ok())
                    .ok_or_else(|| StoreError::Corrupt("closed reservations index".into()))?;
                match self.reservation(id)? {
                    Some(r) if r.state == ReservationState::Reserved => {}
                    Some(r) if settled_only && !r.settled => continue,
                    Some(_) => {
                        gone.remove(id.as_bytes());
                        moved += 1;
                    }
                    None => {}
                }
                unindexed.remove(key);
            }
            unwrap_tx((&self.reservations, &self.closed).transaction(|(r, c)| {
                r.apply_batch(&gone)?;
                c.apply_batch(&unindexed)?;
                Ok(())
            }))?;
            moved
        };
        self.flush()?;
        Ok(moved)
    }

    /// Every reservation, in checkout id order.
    ///
    /// # Errors
    /// Sled errors or corrupt metadata.
    pub fn reservations(&self) -> Result<Vec<Reservation>> {
        self.reservations
            .iter()
            .values()
            .map(|v| from_json("reservation", &v?))
            .collect()
    }

    /// A reservation by checkout id.
    ///
    /// # Errors
    /// Sled errors or corrupt metadata.
    pub fn reservation(&self, checkout: &str) -> Result<Option<Reservation>> {
        self.reservations
            .get(checkout)?
            .map(|v| from_json("reservation", &v))
            .transpose()
    }

    /// Moves a reservation out of `reserved` (to consumed, released or burned) and updates
    /// its batches, atomically and durably.
    pub(super) fn finish_reservation(
        &self,
        checkout: &str,
        to: ReservationState,
        by: Option<&str>,
    ) -> Result<Reservation> {
        one(self.finish_many(&[(checkout.to_string(), by.map(str::to_string))], to))
    }

    /// Moves many reservations out of `reserved` to `to` in one transaction and one flush.
    /// Consumed ones are registered as streaming (their chunks are not erased) until
    /// [`Store::end_stream`]; if nothing is acknowledged, they are unregistered again.
    pub(super) fn finish_many(
        &self,
        items: &[(String, Option<String>)],
        to: ReservationState,
    ) -> Vec<Result<Reservation>> {
        let results = self.plan_group(|view| {
            items
                .iter()
                .map(|(id, by)| view.item(|v| Self::plan_finish(v, id, to, by.as_deref())))
                .collect()
        });
        let consumed: Vec<Reservation> = if to == ReservationState::Consumed {
            results
                .iter()
                .filter_map(|r| r.as_ref().ok().cloned())
                .collect()
        } else {
            Vec::new()
        };
        let flushed = self.flush_all(results);
        if flushed.iter().filter(|r| r.is_ok()).count() < consumed.len() {
            // Nothing was acknowledged, so no stream starts: let the chunks be erased.
            for res in &consumed {
                self.end_stream(res);
            }
        }
        flushed
    }

    pub(super) fn plan_finish(
        view: &mut View<'_>,
        checkout: &str,
        to: ReservationState,
        by: Option<&str>,
    ) -> Result<Reservation> {
        let mut res = view
            .reservation(checkout)?
            .ok_or_else(|| StoreError::UnknownCheckout(checkout.to_string()))?;
        if to == ReservationState::Consumed
            && res.state == ReservationState::Reserved
            && !res.confirmed
        {
            return Err(StoreError::Unconfirmed(checkout.to_string()));
        }
        if res.state != ReservationState::Reserved {
            return Err(
                if to == ReservationState::Consumed && res.state != ReservationState::Released {
                    StoreError::Gone {
                        checkout: checkout.to_string(),
                        state: res.state,
                    }
                } else {
                    StoreError::NotReserved {
                        checkout: checkout.to_string(),
                        state: res.state,
                        to: match to {
                            ReservationState::Released => "released",
                            ReservationState::Burned => "burned",
                            _ => "consumed",
                        },
                    }
                },
            );
        }
        let mut metas = BTreeMap::new();
        view.load_metas(&mut metas, &res.ranges)?;
        for r in &res.ranges {
            let meta = metas.get_mut(&r.batch).expect("loaded above");
            if to == ReservationState::Released {
                meta.free.insert(r.first, r.first + r.count);
            } else {
                meta.consumed.insert(r.first, r.first + r.count);
            }
        }
        for meta in metas.into_values() {
            if to == ReservationState::Released
                && meta.state == BatchState::Available
                && !meta.free.is_empty()
            {
                view.stock_insert(stock_key(&meta.pool, meta.stock_seq), meta.id);
            }
            view.put_meta(meta);
        }
        res.state = to;
        if to == ReservationState::Consumed {
            res.consumer = by.map(str::to_string);
            res.consumed_at = Some(now_unix());
        }
        let event = match to {
            ReservationState::Consumed => "consume",
            ReservationState::Released => "release",
            _ => "burn",
        };
        view.audit(reservation_audit(event, &res, by));
        view.put_reservation(res.clone());
        if to == ReservationState::Consumed {
            // Registered while the store's lock is held, before the consumed state commits,
            // so no erasure can slip in between (a failed commit unregisters it).
            view.streaming(res.ranges.clone());
        }
        Ok(res)
    }

    /// Marks a reservation's items consumed here, for `consumer`, durably and before any share
    /// is read: a crash afterwards loses the material rather than risking handing it out twice.
    ///
    /// # Errors
    /// [`StoreError::Gone`] if it was already consumed or burned here.
    pub fn consume(&self, checkout: &str, consumer: &str) -> Result<Reservation> {
        self.finish_reservation(checkout, ReservationState::Consumed, Some(consumer))
    }

    /// [`Store::consume`] for many downloads, written by one transaction and made durable by
    /// one flush. Damaged data is refused before anything is consumed: a share stream of at
    /// most `inline_bytes` is made first, in memory (which checks every chunk), and returned
    /// with the reservation once it is consumed; a larger one has its chunks checked
    /// ([`Store::check_ranges`]) and is left to [`Store::write_shares`] (its ranges stay
    /// registered as streaming until [`Store::end_stream`]). One result per
    /// `(checkout, consumer)`, in order.
    pub fn consume_many(
        &self,
        downloads: &[(String, String)],
        inline_bytes: u64,
    ) -> Vec<Result<(Reservation, Option<ShareBytes>)>> {
        // Outside the store's lock: reading chunks takes a while. A damaged reservation fails
        // alone.
        let mut checked = Vec::new();
        let mut items = Vec::new();
        for (id, by) in downloads {
            let check = match self.reservation(id) {
                // Checked even if not confirmed yet: a confirmation may land before the lock.
                Ok(Some(res)) if res.state == ReservationState::Reserved => {
                    let len = self.share_stream_len(&res);
                    if len <= inline_bytes {
                        // Sized up front: growing would leave unzeroized copies behind.
                        let mut body = zeroize::Zeroizing::new(Vec::with_capacity(len as usize));
                        let made = self.stream_shares(&res, &mut *body).map(drop);
                        made.map(|()| Some(body))
                    } else {
                        self.check_ranges(&res).map(|()| None)
                    }
                }
                Ok(_) => Ok(None),
                Err(e) => Err(e),
            };
            if check.is_ok() {
                items.push((id.clone(), Some(by.clone())));
            }
            checked.push(check);
        }
        let mut finished = self
            .finish_many(&items, ReservationState::Consumed)
            .into_iter();
        checked
            .into_iter()
            .map(|c| {
                let body = c?;
                let res = finished.next().expect("one result per item")?;
                if body.is_some() {
                    // Made already: no stream to wait for.
                    self.end_stream(&res);
                }
                Ok((res, body))
            })
            .collect()
    }

    /// Returns a reservation nobody downloaded to stock.
    ///
    /// # Errors
    /// [`StoreError::NotReserved`] if it is no longer reserved.
    pub fn release(&self, checkout: &str) -> Result<Reservation> {
        self.finish_reservation(checkout, ReservationState::Released, None)
    }

    /// Consumes a reservation without handing it out (another party already downloaded).
    ///
    /// # Errors
    /// [`StoreError::NotReserved`] if it is no longer reserved.
    pub fn burn(&self, checkout: &str) -> Result<Reservation> {
        let res = self.finish_reservation(checkout, ReservationState::Burned, None)?;
        self.erase_reservation(&res)?;
        Ok(res)
    }
}
