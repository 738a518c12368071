//! Changes to the metadata planned in memory, then written by one sled transaction.
//!
//! sled 0.34 rolls its log buffer before and after every transaction: measured on the
//! checkout path, each transaction cost about two log writes with `sync_file_range`, each
//! handed to one of sled's IO threads. A group of checkouts (allocations at the leader,
//! reservations applied at a follower, downloads consumed at any node) is therefore planned
//! here, item by item, and committed as one transaction.
//!
//! Planning runs under the store's lock, which serialises every writer of this metadata, so
//! what the view read stays true until it commits. An item that fails leaves no trace: its
//! changes are planned on a copy and kept only if it succeeds.

use super::{
    open_key, to_json, unwrap_tx, AuditRecord, BatchMeta, Chained, Reservation, ReservationState,
    Result, Store, StoreError,
};
use crate::material::{BatchId, ShareRange};
use sled::Transactional;
use std::collections::BTreeMap;

#[derive(Clone, Default)]
struct Changes {
    batches: BTreeMap<BatchId, BatchMeta>,
    /// `None` removes the key.
    stock: BTreeMap<Vec<u8>, Option<BatchId>>,
    reservations: BTreeMap<String, Reservation>,
    /// `true` inserts the key, `false` removes it.
    open: BTreeMap<Vec<u8>, bool>,
    /// Keys of reservations that reached a final state (the `closed` index).
    closed: Vec<Vec<u8>>,
    audit: Vec<AuditRecord>,
    /// Ranges consumed by this group, registered as streaming once it commits.
    streaming: Vec<ShareRange>,
}

/// The store's metadata as it will be once the planned changes commit.
pub(super) struct View<'s> {
    store: &'s Store,
    changes: Changes,
}

impl<'s> View<'s> {
    /// A view of `store`; the caller holds the store's lock until it commits.
    pub(super) fn new(store: &'s Store) -> Self {
        View {
            store,
            changes: Changes::default(),
        }
    }

    /// Plans one item: its changes are kept if `f` succeeds and dropped if it fails.
    pub(super) fn item<T>(&mut self, f: impl FnOnce(&mut View<'s>) -> Result<T>) -> Result<T> {
        let before = self.changes.clone();
        let r = f(self);
        if r.is_err() {
            self.changes = before;
        }
        r
    }

    pub(super) fn meta(&self, id: &BatchId) -> Result<Option<BatchMeta>> {
        match self.changes.batches.get(id) {
            Some(m) => Ok(Some(m.clone())),
            None => self.store.batch_meta(id),
        }
    }

    /// Adds the metadata of every batch `ranges` touch to `metas` (those not there yet).
    pub(super) fn load_metas(
        &self,
        metas: &mut BTreeMap<BatchId, BatchMeta>,
        ranges: &[ShareRange],
    ) -> Result<()> {
        for r in ranges {
            if let std::collections::btree_map::Entry::Vacant(slot) = metas.entry(r.batch) {
                slot.insert(
                    self.meta(&r.batch)?
                        .ok_or(StoreError::UnknownBatch(r.batch))?,
                );
            }
        }
        Ok(())
    }

    pub(super) fn put_meta(&mut self, meta: BatchMeta) {
        self.changes.batches.insert(meta.id, meta);
    }

    pub(super) fn reservation(&self, id: &str) -> Result<Option<Reservation>> {
        match self.changes.reservations.get(id) {
            Some(r) => Ok(Some(r.clone())),
            None => self.store.reservation(id),
        }
    }

    /// Checkout ids of the reservations this group has planned so far.
    pub(super) fn planned_reservations(&self) -> impl Iterator<Item = String> + '_ {
        self.changes.reservations.keys().cloned()
    }

    pub(super) fn put_reservation(&mut self, res: Reservation) {
        if res.state != ReservationState::Reserved {
            self.changes.closed.push(open_key(&res));
        }
        self.changes.reservations.insert(res.checkout.clone(), res);
    }

    pub(super) fn stock_insert(&mut self, key: Vec<u8>, id: BatchId) {
        self.changes.stock.insert(key, Some(id));
    }

    pub(super) fn stock_remove(&mut self, key: Vec<u8>) {
        self.changes.stock.insert(key, None);
    }

    /// The stock index under `prefix`, in key order, with the planned changes applied. Read
    /// lazily from sled (an allocation stops at the first batches that cover it), so it
    /// borrows the store, not the view: the caller may plan changes while it walks.
    pub(super) fn stock_scan(
        &self,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<(Vec<u8>, BatchId)>> + 's {
        let planned: Vec<(Vec<u8>, Option<BatchId>)> = self
            .changes
            .stock
            .range(prefix.to_vec()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, change)| (key.clone(), *change))
            .collect();
        let mut planned = planned.into_iter().peekable();
        let mut stored = self
            .store
            .stock
            .scan_prefix(prefix)
            .map(|entry| -> Result<(Vec<u8>, BatchId)> {
                let (key, id) = entry?;
                let id = id
                    .as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("stock index".into()))?;
                Ok((key.to_vec(), BatchId(id)))
            })
            .peekable();
        // A merge of two key-ordered sequences; on equal keys the planned change wins.
        std::iter::from_fn(move || loop {
            use std::cmp::Ordering;
            let order = match (stored.peek(), planned.peek()) {
                (None, None) => return None,
                (Some(Err(_)), _) | (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(Ok((sk, _))), Some((pk, _))) => sk.cmp(pk),
            };
            match order {
                Ordering::Less => return stored.next(),
                Ordering::Equal => {
                    stored.next();
                }
                Ordering::Greater => {}
            }
            if let Some((key, Some(id))) = planned.next() {
                return Some(Ok((key, id)));
            }
            // A planned removal: skip it.
        })
    }

    pub(super) fn open_insert(&mut self, res: &Reservation) {
        self.changes.open.insert(open_key(res), true);
    }

    pub(super) fn audit(&mut self, rec: AuditRecord) {
        self.changes.audit.push(rec);
    }

    /// Ranges whose shares are about to be streamed: their chunks must not be erased until
    /// the stream ends ([`Store::end_stream`]).
    pub(super) fn streaming(&mut self, ranges: Vec<ShareRange>) {
        self.changes.streaming.extend(ranges);
    }

    /// Writes every planned change in one transaction (not flushed).
    pub(super) fn commit(self) -> Result<()> {
        let s = self.store;
        let c = self.changes;
        if c.batches.is_empty()
            && c.stock.is_empty()
            && c.reservations.is_empty()
            && c.open.is_empty()
            && c.audit.is_empty()
        {
            return Ok(());
        }
        // Other parties' heads seen since the last group ride along.
        let mut chain = s.chain();
        let mut audit = c.audit;
        audit.extend(Store::due_witnesses(&mut chain));
        let chained = Chained::new(&chain.tip, audit);
        let batches: Vec<(BatchId, Vec<u8>)> =
            c.batches.values().map(|m| (m.id, to_json(m))).collect();
        let reservations: Vec<(&String, Vec<u8>)> = c
            .reservations
            .iter()
            .map(|(k, r)| (k, to_json(r)))
            .collect();
        unwrap_tx(
            (
                &s.batches,
                &s.stock,
                &s.reservations,
                &s.audit,
                &s.open,
                &s.closed,
            )
                .transaction(|(b, st, r, a, o, cl)| {
                    for (id, v) in &batches {
                        b.insert(&id.0, v.as_slice())?;
                    }
                    for (key, change) in &c.stock {
                        match change {
                            Some(id) => st.insert(key.as_slice(), &id.0)?,
                            None => st.remove(key.as_slice())?,
                        };
                    }
                    for (id, v) in &reservations {
                        r.insert(id.as_bytes(), v.as_slice())?;
                    }
                    chained.write(a)?;
                    for key in &c.closed {
                        cl.insert(key.as_slice(), &[])?;
                    }
                    for (key, insert) in &c.open {
                        if *insert {
                            o.insert(key.as_slice(), &[])?;
                        } else {
                            o.remove(key.as_slice())?;
                        }
                    }
                    Ok(())
                }),
        )?;
        chained.advance(&mut chain);
        drop(chain);
        // Still under the store's lock, right after the consumed state committed, so no
        // erasure can slip in between.
        s.streaming
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(c.streaming);
        Ok(())
    }
}
