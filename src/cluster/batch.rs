//! Batches: staged at every party, committed at the leader, or abandoned.

use super::{Abort, Party, ProtocolError, Refusal, Result};
use crate::generate::{BatchPlan, GenerateError, Generator, PartyBatch, PartyGenerator};
use crate::material::{BatchId, PoolSpec};
use crate::store::{BatchState, StoreError};
use futures_util::future::join_all;
use std::future::Future;

/// The index of the next batch of `pool` for the correction-party rule: how many batches of
/// the pool the leader has ever held.
///
/// # Errors
/// The leader's stock cannot be read.
pub async fn next_batch_index(leader: &impl Party, pool: PoolSpec) -> Result<u64> {
    Ok(leader.stock().await?.get(&pool).map_or(0, |s| s.batches))
}

/// What to deal: `count` items of `pool` in batches of at most `batch_size`, the first of
/// them the pool's batch number `first_index`.
#[derive(Clone, Copy, Debug)]
pub struct DealPlan {
    pub pool: PoolSpec,
    pub parties: u8,
    pub batch_size: u64,
    pub count: u64,
    pub first_index: u64,
}

/// Where generated batches go, one batch (every party's share) at a time.
pub type Batches = tokio::sync::mpsc::Sender<std::result::Result<Vec<PartyBatch>, GenerateError>>;

/// Generates the batches of `plan` one after the other into `out` (a blocking loop: run it on
/// a thread of its own). Stops after a failure, or when `out` is closed.
pub fn generate_batches<G: Generator + ?Sized>(generator: &mut G, plan: DealPlan, out: Batches) {
    feed(plan, out, |index, items| {
        let batch = BatchPlan {
            pool: plan.pool,
            parties: plan.parties,
            batch: generator.next_batch_id(),
            items,
            correction: plan.pool.correction_party(plan.parties, index),
        };
        generator.generate(&batch)
    })
}

/// As [`generate_batches`] for generators without a dealer: for each batch of `plan`, every
/// party's instance of `generators` runs on a thread of its own, joined to the others by an
/// in-memory [`crate::generate::mesh`], and makes its own share.
pub fn generate_with_parties<P: PartyGenerator>(
    generators: &mut [P],
    plan: DealPlan,
    out: Batches,
) {
    feed(plan, out, |_, items| {
        let batch = BatchPlan {
            pool: plan.pool,
            parties: plan.parties,
            batch: BatchId(rand::random()),
            items,
            correction: 0,
        };
        std::thread::scope(|s| {
            let running: Vec<_> = generators
                .iter_mut()
                .zip(crate::generate::mesh(plan.parties))
                .map(|(g, mut end)| {
                    let batch = &batch;
                    s.spawn(move || g.generate_share(batch, &mut end))
                })
                .collect();
            running
                .into_iter()
                .map(|h| h.join().expect("a party's generator panicked"))
                .collect()
        })
    })
}

/// Makes the batches of `plan` one after the other with `make` (given the batch's index for
/// the correction-party rule and its item count) into `out`. Stops after a failure, or when
/// `out` is closed.
fn feed(
    plan: DealPlan,
    out: Batches,
    mut make: impl FnMut(u64, u64) -> std::result::Result<Vec<PartyBatch>, GenerateError>,
) {
    let size = plan.pool.batch_items(plan.batch_size).max(1);
    let mut left = plan.count;
    let mut index = plan.first_index;
    while left > 0 {
        let items = left.min(size);
        let made = make(index, items);
        index += 1;
        left -= items;
        let failed = made.is_err();
        if out.blocking_send(made).is_err() || failed {
            return;
        }
    }
}

/// Stages each generated batch at every party and has it committed ([`deliver`]).
/// Generation of the next batch overlaps the staging of this one when `batches` is fed by
/// [`generate_batches`] on another thread. `progress` gets the items committed so far; the
/// total is returned.
///
/// # Errors
/// Generation, staging or commit errors, naming the party. Batches committed before stay.
pub async fn deal<P, C, Fut>(
    mut batches: tokio::sync::mpsc::Receiver<std::result::Result<Vec<PartyBatch>, GenerateError>>,
    parties: &[P],
    leader: &P,
    commit: C,
    mut progress: impl FnMut(u64),
) -> Result<u64>
where
    P: Party,
    C: Fn(BatchId) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut done = 0u64;
    while let Some(shares) = batches.recv().await {
        let shares = shares?;
        let items = shares.first().map_or(0, |s| s.header.items);
        deliver(parties, leader, shares, &commit).await?;
        done += items;
        progress(done);
    }
    Ok(done)
}

/// Stages one batch at every party (party i gets only share i), then has it committed by
/// `commit` (at the leader).
///
/// A batch that fails half-way is abandoned: the leader's copy decides ([`Abort`]); if the
/// leader made it available after all (a commit whose answer was lost), it counts as
/// delivered.
///
/// # Errors
/// Staging or commit errors, naming the party.
pub async fn deliver<P, C, Fut>(
    parties: &[P],
    leader: &P,
    shares: Vec<PartyBatch>,
    commit: &C,
) -> Result<()>
where
    P: Party,
    C: Fn(BatchId) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    if shares.len() != parties.len() {
        return Err(ProtocolError::Internal(format!(
            "the generator made {} shares for {} parties",
            shares.len(),
            parties.len()
        )));
    }
    let batch = shares[0].header.batch;
    let staged = join_all(parties.iter().zip(shares).map(|(p, share)| async move {
        let r = p.stage(share).await;
        if r.is_ok() {
            crate::failpoint::hit("dealer.staged");
        }
        r
    }))
    .await;
    let failure = match staged.into_iter().find_map(Result::err) {
        Some(e) => e,
        None => {
            crate::failpoint::hit("dealer.before-commit");
            match commit(batch).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            }
        }
    };
    // Unclear or failed: the leader decides. Only once its copy is gone may the followers
    // drop theirs.
    match leader.abort(batch).await? {
        Abort::Committed => Ok(()),
        Abort::Aborted => {
            for p in parties.iter().filter(|p| p.at() != leader.at()) {
                if let Err(e) = p.abort(batch).await {
                    tracing::debug!(error = %e, batch = %batch,
                        "abandoned batch not dropped; the party's sweep drops it");
                }
            }
            Err(failure)
        }
    }
}

/// The leader commits a batch staged everywhere: it checks every follower holds it, makes it
/// available in its own store (the commit point), then tells the followers (best effort: a
/// follower also makes a staged batch available when it first holds a reservation on it).
///
/// # Errors
/// `not-staged` if some party does not hold the batch; the parties' other failures.
pub async fn commit_batch<L: Party, F: Party>(
    leader: &L,
    followers: &[F],
    id: BatchId,
) -> Result<()> {
    let step = "committing";
    let refused = |e: StoreError| ProtocolError::Refused {
        at: leader.at().clone(),
        step,
        refusal: Refusal::Store(Box::new(e)),
    };
    match leader.batch_state(id).await? {
        None => return Err(refused(StoreError::UnknownBatch(id))),
        Some(BatchState::Exhausted) => {
            return Err(refused(StoreError::IllegalTransition {
                batch: id,
                from: BatchState::Exhausted,
                to: "available",
            }))
        }
        Some(_) => {}
    }
    let states = join_all(followers.iter().map(|f| f.batch_state(id))).await;
    for (f, s) in followers.iter().zip(states) {
        match s? {
            Some(BatchState::Staged | BatchState::Available) => {}
            _ => {
                return Err(ProtocolError::NotStaged {
                    at: f.at().clone(),
                    batch: id,
                })
            }
        }
    }
    crate::failpoint::hit("commit.checked");
    leader.activate(id).await?;
    crate::failpoint::hit("commit.activated");
    for (f, r) in followers
        .iter()
        .zip(join_all(followers.iter().map(|f| f.activate(id))).await)
    {
        if let Err(e) = r {
            tracing::info!(party = %f.at(), batch = %id, error = %e,
                "activation not delivered; the follower activates on first use");
        }
    }
    Ok(())
}

/// How [`settle_staged`] settled a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// The leader had not committed it: dropped there and here.
    Aborted,
    /// The leader had committed it: available here now.
    Activated,
}

/// Settles a batch staged at `here` that was never committed (its dealer stopped, or its
/// staging deadline passed): the leader's copy decides. The leader aborts its own copy first
/// (refused if it made the batch available, in which case `here` activates its own), so no
/// party ever drops a batch the leader may still commit.
///
/// # Errors
/// The leader or `here` cannot be reached or fails.
pub async fn settle_staged<L: Party, P: Party>(
    leader: &L,
    here: &P,
    id: BatchId,
) -> Result<Settled> {
    match leader.abort(id).await? {
        Abort::Committed => {
            here.activate(id).await?;
            Ok(Settled::Activated)
        }
        Abort::Aborted => {
            if here.at() != leader.at() {
                here.abort(id).await?;
            }
            Ok(Settled::Aborted)
        }
    }
}
