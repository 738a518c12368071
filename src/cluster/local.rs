//! A party whose store is on this machine: the CLI's local mode, and a node's own store.

use super::combine::Combiner;
use super::{Abort, Leader, Party, PartyName, ProtocolError, Result};
use crate::generate::PartyBatch;
use crate::material::{BatchId, PoolSpec};
use crate::store::{BatchState, PoolStock, Reservation, ReservationState, Store, StoreError};
use crate::wire::{CheckoutRequest, ExpireOutcome};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Largest group of checkouts allocated or confirmed with one flush.
const GROUP: usize = 64;

type Group<I, O> = Arc<Combiner<Arc<Inner>, I, O>>;

struct Inner {
    store: Arc<Store>,
    at: PartyName,
}

/// A party store on this machine. Its calls run on tokio's blocking threads; allocations and
/// confirmations made concurrently share one flush.
#[derive(Clone)]
pub struct LocalParty {
    inner: Arc<Inner>,
    allocations: Group<CheckoutRequest, Result<Reservation>>,
    confirms: Group<String, Result<Reservation>>,
}

impl std::fmt::Debug for LocalParty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalParty")
            .field("at", &self.inner.at)
            .finish_non_exhaustive()
    }
}

impl LocalParty {
    pub fn new(store: Arc<Store>) -> Self {
        let at = PartyName {
            party: store.identity().party,
            name: None,
        };
        LocalParty {
            inner: Arc::new(Inner { store, at }),
            allocations: Combiner::new(GROUP, |inner: &Arc<Inner>, group: Vec<CheckoutRequest>| {
                let plan: Vec<_> = group.into_iter().map(|r| (r.id, r.pool, r.count)).collect();
                in_group(inner.clone(), "allocating", plan.len(), move |s| {
                    s.allocate_many(&plan)
                })
            }),
            confirms: Combiner::new(GROUP, |inner: &Arc<Inner>, ids: Vec<String>| {
                in_group(inner.clone(), "confirming", ids.len(), move |s| {
                    ids.iter().map(|id| s.confirm(id)).collect()
                })
            }),
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.inner.store
    }

    /// Runs a store call on a blocking thread (off the async workers); its error names this
    /// party and `step`.
    pub async fn run<T: Send + 'static>(
        &self,
        step: &'static str,
        f: impl FnOnce(&Arc<Store>) -> std::result::Result<T, StoreError> + Send + 'static,
    ) -> Result<T> {
        run(self.inner.clone(), step, f).await
    }

    /// As [`LocalParty::run`] for a store call over a group of `n` items: one result per item
    /// (the same failure for all if the call itself failed).
    pub async fn run_group<T: Send + 'static>(
        &self,
        step: &'static str,
        n: usize,
        f: impl FnOnce(&Arc<Store>) -> Vec<std::result::Result<T, StoreError>> + Send + 'static,
    ) -> Vec<Result<T>> {
        in_group(self.inner.clone(), step, n, f).await
    }
}

async fn run<T: Send + 'static>(
    inner: Arc<Inner>,
    step: &'static str,
    f: impl FnOnce(&Arc<Store>) -> std::result::Result<T, StoreError> + Send + 'static,
) -> Result<T> {
    let task = inner.clone();
    match tokio::task::spawn_blocking(move || f(&task.store)).await {
        Ok(r) => r.map_err(ProtocolError::store(&inner.at, step)),
        Err(e) => Err(ProtocolError::Internal(format!(
            "{}: {step}: the store task failed: {e}",
            inner.at
        ))),
    }
}

/// A store call for a group of `n` items: one result per item.
async fn in_group<T: Send + 'static>(
    inner: Arc<Inner>,
    step: &'static str,
    n: usize,
    f: impl FnOnce(&Arc<Store>) -> Vec<std::result::Result<T, StoreError>> + Send + 'static,
) -> Vec<Result<T>> {
    let at = inner.at.clone();
    match run(inner, step, move |s| Ok(f(s))).await {
        Ok(results) => results
            .into_iter()
            .map(|r| r.map_err(ProtocolError::store(&at, step)))
            .collect(),
        Err(e) => {
            let detail = e.to_string();
            (0..n)
                .map(|_| Err(ProtocolError::Internal(detail.clone())))
                .collect()
        }
    }
}

impl Party for LocalParty {
    fn at(&self) -> &PartyName {
        &self.inner.at
    }

    async fn stage(&self, share: PartyBatch) -> Result<()> {
        self.run("staging", move |s| s.stage(&share.bytes).map(|_| ()))
            .await
    }

    async fn batch_state(&self, id: BatchId) -> Result<Option<BatchState>> {
        self.run("reading a batch", move |s| {
            Ok(s.batch_meta(&id)?.map(|m| m.state))
        })
        .await
    }

    async fn activate(&self, id: BatchId) -> Result<()> {
        self.run("activating", move |s| s.activate(&id)).await
    }

    async fn abort(&self, id: BatchId) -> Result<Abort> {
        self.run("aborting", move |s| match s.abort(&id) {
            Ok(()) => Ok(Abort::Aborted),
            Err(StoreError::IllegalTransition { .. }) => Ok(Abort::Committed),
            Err(e) => Err(e),
        })
        .await
    }

    async fn stock(&self) -> Result<BTreeMap<PoolSpec, PoolStock>> {
        self.run("reading stock", |s| s.stock()).await
    }

    async fn hold(&self, reservation: Reservation) -> Result<()> {
        self.run("holding a reservation", move |s| s.apply(&reservation))
            .await
    }

    async fn confirmed(&self, checkouts: Vec<String>) -> Result<()> {
        self.run("recording confirmations", move |s| {
            for id in &checkouts {
                // Unknown here or released: nothing to record (the leader confirms only what
                // every party held; a later download asks the leader anyway).
                match s.confirm(id) {
                    Ok(_)
                    | Err(StoreError::UnknownCheckout(_) | StoreError::NotReserved { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })
        .await
    }

    async fn reservation(&self, id: String) -> Result<Option<Reservation>> {
        self.run("reading a reservation", move |s| s.reservation(&id))
            .await
    }

    async fn expire(&self, id: String) -> Result<ExpireOutcome> {
        self.run("expiring", move |s| match s.release(&id) {
            Ok(_) => Ok(ExpireOutcome::Released),
            Err(StoreError::NotReserved { state, .. }) => Ok(match state {
                ReservationState::Consumed => ExpireOutcome::Consumed,
                ReservationState::Burned => ExpireOutcome::Burned,
                ReservationState::Released | ReservationState::Reserved => ExpireOutcome::Released,
            }),
            Err(StoreError::UnknownCheckout(_)) => Ok(ExpireOutcome::Unknown),
            Err(e) => Err(e),
        })
        .await
    }

    async fn burn(&self, id: String) -> Result<bool> {
        self.run("burning", move |s| match s.burn(&id) {
            Ok(_) => Ok(true),
            Err(StoreError::NotReserved { .. } | StoreError::UnknownCheckout(_)) => Ok(false),
            Err(e) => Err(e),
        })
        .await
    }
}

impl Leader for LocalParty {
    async fn allocate(&self, req: CheckoutRequest) -> Result<Reservation> {
        self.allocations
            .submit(self.inner.clone(), req)
            .await
            .unwrap_or_else(|| Err(ProtocolError::Internal("allocation failed".into())))
    }

    async fn confirm(&self, id: String) -> Result<Reservation> {
        self.confirms
            .submit(self.inner.clone(), id)
            .await
            .unwrap_or_else(|| Err(ProtocolError::Internal("confirmation failed".into())))
    }

    async fn settle(&self, id: String) -> Result<()> {
        self.run("settling", move |s| s.settle(&id)).await
    }
}
