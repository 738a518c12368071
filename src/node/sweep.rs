//! The node's periodic sweep: erasure of consumed chunks everywhere, expiry at the leader,
//! stale staged batches everywhere. The protocol steps are [`crate::cluster`]'s.

use super::error::ApiError;
use super::NodeState;
use crate::cluster::{self, Expired, Settled};
use crate::material::BatchId;
use crate::store::{now_unix, BatchState, Reservation, ReservationState};
use std::sync::Arc;

/// Runs sweeps until `cancel` fires; a sweep cut short by it is safe (every step is idempotent
/// and the next start sweeps again).
pub async fn sweep_forever(st: Arc<NodeState>, cancel: tokio_util::sync::CancellationToken) {
    let every = std::time::Duration::from_millis(st.cluster.sweep_interval_ms.max(50));
    let mut archived = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let store = st.store.clone();
        if tokio::task::spawn_blocking(move || store.is_broken())
            .await
            .unwrap_or(false)
        {
            stop_broken();
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = sweep_once(&st) => {
                if let Err(e) = r {
                    tracing::debug!(error = %e.detail, "sweep incomplete; retried next time");
                }
            }
        }
        if archived.elapsed() >= every * ARCHIVE_EVERY_SWEEPS {
            archived = std::time::Instant::now();
            if let Err(e) = archive_once(&st).await {
                tracing::warn!(error = %e.detail, "archiving failed; retried next time");
            }
        }
    }
}

/// How often (in sweeps) the hot metadata is moved to the archive.
const ARCHIVE_EVERY_SWEEPS: u32 = 10;

/// Moves old final reservations out of the hot metadata and the durable audit records into
/// the archive files (see `store::audit`).
///
/// # Errors
/// The store's.
pub async fn archive_once(st: &Arc<NodeState>) -> Result<(), ApiError> {
    let policy = st.archive.clone();
    let before = now_unix().saturating_sub(st.cluster.archive_after_seconds);
    let settled_only = st.is_leader();
    let (reservations, records) = st
        .own
        .run("archiving", move |s| {
            const PASS: usize = 10_000;
            let mut reservations = 0;
            loop {
                let n = s.archive_reservations(before, settled_only, PASS)?;
                reservations += n;
                if n < PASS as u64 {
                    break;
                }
            }
            Ok((reservations, s.archive(&policy)?))
        })
        .await?;
    tracing::debug!(reservations, records, "archived");
    Ok(())
}

/// Reservations the leader's sweep expires at once.
const EXPIRE_AT_ONCE: usize = 32;

/// Exit status of a node whose store stopped writing (EX_TEMPFAIL: try again later).
pub const BROKEN_STORE_EXIT: i32 = 75;

/// The store cannot record anything more (sled stops writing after an IO error such as a full
/// disk): this node stops at once, as if it had crashed, so that its supervisor restarts it on
/// what is durable. Nothing unrecorded was acknowledged, and while the disk stays full the
/// restart fails with the reason.
fn stop_broken() -> ! {
    tracing::error!(
        "the store stopped writing (disk full or failing): stopping this node; restart it once \
         space is freed, it resumes from what is durable"
    );
    std::process::exit(BROKEN_STORE_EXIT);
}

/// One sweep.
///
/// # Errors
/// The first failure; the rest is retried next sweep.
pub async fn sweep_once(st: &Arc<NodeState>) -> Result<(), ApiError> {
    let now = now_unix();
    st.own.run("erasing", |s| s.erase_due()).await?;
    if st.is_leader() {
        super::jobs::sweep(st).await?;
        let cutoff = now.saturating_sub(st.cluster.reservation_ttl_seconds);
        let due: Vec<Reservation> = st
            .own
            .run("reading reservations", move |s| {
                s.open_reservations_until(cutoff)
            })
            .await?
            .into_iter()
            .filter(|r| {
                matches!(
                    r.state,
                    ReservationState::Reserved | ReservationState::Consumed
                )
            })
            .collect();
        let archived_before = now.saturating_sub(st.cluster.archive_after_seconds);
        // Many at once: every reservation passes through here once its TTL is over, so the
        // sweep must keep up with the checkout rate (one at a time, the round trips to the
        // followers capped it below a busy node's rate, and the open set grew without end).
        // One reservation that cannot be expired yet does not hold up the others.
        use futures_util::StreamExt;
        futures_util::stream::iter(&due)
            .for_each_concurrent(EXPIRE_AT_ONCE, |r| async move {
            match cluster::expire(&st.own, st.followers(), r, archived_before).await {
                // Why stock moved, for the operator (checkout ids are engines' names).
                Ok(Expired::Burned) => tracing::info!(checkout = %r.checkout, pool = %r.pool,
                    items = r.count,
                    "reservation expired after a download somewhere: burned at every party that had not downloaded it"),
                Ok(Expired::Released) => tracing::info!(checkout = %r.checkout, pool = %r.pool,
                    items = r.count,
                    "reservation expired undownloaded: its items went back to stock at every party"),
                Err(e) => {
                    tracing::debug!(checkout = %r.checkout, error = %e, "expiry postponed");
                }
            }
            })
            .await;
    }
    let deadline = st.cluster.staging_deadline_seconds;
    let stale: Vec<BatchId> = st
        .own
        .run("reading batches", |s| s.all_batches())
        .await?
        .into_iter()
        .filter(|m| m.state == BatchState::Staged && m.staged_at + deadline <= now)
        .map(|m| m.id)
        .collect();
    for id in stale {
        // The leader's copy decides (see `cluster::settle_staged`).
        let settled = match st.leader() {
            Some(leader) => cluster::settle_staged(leader, &st.own, id).await,
            None => cluster::settle_staged(&st.own, &st.own, id).await,
        };
        match settled {
            Ok(Settled::Activated) => tracing::info!(batch = %id,
                "staged batch found committed at the leader: available here now"),
            Ok(Settled::Aborted) => tracing::info!(batch = %id, deadline_s = deadline,
                "staged batch never committed within the staging deadline: removed"),
            Err(e) => tracing::debug!(batch = %id, error = %e, "stale batch kept for now"),
        }
    }
    Ok(())
}
