//! The consortium protocol between nodes: checkout allocation and replication at the leader,
//! batch commit, lazy confirmation at followers, expiry and clean-up of abandoned batches.
//!
//! Safety rests on three rules (see `docs/protocol.md`):
//! 1. The leader persists a reservation before replicating it, and confirms it only once every
//!    follower has stored it durably; shares of an unconfirmed reservation are never served.
//! 2. A follower serves shares only for a reservation the leader has confirmed (it asks the
//!    leader if it has not heard), and marks them consumed before the first byte leaves.
//! 3. Expiry releases a reservation to stock only if no party downloaded it; otherwise the
//!    leader burns it, so its items are never allocated again.

use super::api::{blocking, blocking_group};
use super::error::{ApiError, Code, Problem};
use super::NodeState;
use crate::material::BatchId;
use crate::store::{now_unix, BatchState, Reservation, ReservationState, Store, StoreError};
use crate::wire::{
    ApplyRequest, ApplyResult, BatchStateView, CheckoutRequest, ConfirmRequest, ExpireOutcome,
};
use futures_util::future::join_all;
use reqwest::Method;
use std::sync::Arc;

/// Calls another node as this node; a problem answer becomes an [`ApiError`] naming the party.
async fn call<T: serde::de::DeserializeOwned>(
    st: &NodeState,
    party: u8,
    method: Method,
    path: &str,
    body: Option<&impl serde::Serialize>,
) -> Result<Option<T>, ApiError> {
    let url = format!(
        "{}{}",
        st.cluster.parties[party as usize].url.trim_end_matches('/'),
        path
    );
    let send = || {
        let mut req = st
            .http
            .request(method.clone(), &url)
            .bearer_auth(st.token.expose());
        if let Some(b) = body {
            req = req.json(b);
        }
        req.send()
    };
    // Every call between nodes is idempotent, so a call that failed on its way (typically on a
    // pooled connection to a node that has restarted since) is sent once more, on a fresh
    // connection. A timeout is not retried: the party is slow or down.
    let sent = match send().await {
        Err(e) if !e.is_timeout() && !e.is_connect() => {
            tracing::debug!(party, error = %e, "call failed on its way; sending it again");
            send().await
        }
        other => other,
    };
    let resp = sent.map_err(|e| {
        tracing::warn!(party, error = %e, "party unreachable");
        ApiError::unavailable(format!("party {party} is unreachable: {e}"))
    })?;
    let status = resp.status();
    if status.is_success() {
        if status == reqwest::StatusCode::NO_CONTENT {
            return Ok(None);
        }
        return resp
            .json::<T>()
            .await
            .map(Some)
            .map_err(|e| ApiError::unavailable(format!("party {party} answered badly: {e}")));
    }
    let text = resp.text().await.unwrap_or_default();
    Err(match serde_json::from_str::<Problem>(&text) {
        Ok(mut p) => {
            p.detail = format!("party {party}: {}", p.detail);
            ApiError::from(p)
        }
        Err(_) => ApiError::unavailable(format!("party {party} answered {status}")),
    })
}

fn followers(st: &NodeState) -> impl Iterator<Item = u8> + '_ {
    (0..st.cluster.parties()).filter(|&p| p != st.cluster.leader)
}

/// The leader's side of a checkout: allocate (or find) the reservation, make sure every
/// follower holds it, confirm it. Idempotent: a retry after a failure replicates again.
///
/// Concurrent checkouts share the work: allocations are made durable a group per flush, and
/// each follower receives the reservations of a group in one request (see [`super::combine`]).
///
/// # Errors
/// Store errors (underrun, conflict, ...); 503 if a follower cannot be reached, in which case
/// the reservation stays unconfirmed (and unservable) until a retry succeeds or it expires.
pub async fn checkout_at_leader(
    st: &Arc<NodeState>,
    req: CheckoutRequest,
) -> Result<Reservation, ApiError> {
    let res = st
        .allocations
        .submit(st.clone(), req)
        .await
        .ok_or_else(|| ApiError::internal("allocation failed"))??;
    if res.state != ReservationState::Reserved || res.confirmed {
        return Ok(res);
    }
    crate::failpoint::hit("checkout.allocated");
    let results =
        join_all(followers(st).map(|p| st.replicas[p as usize].submit(st.clone(), res.clone())))
            .await;
    for r in results {
        r.ok_or_else(|| ApiError::internal("replication failed"))??;
    }
    crate::failpoint::hit("checkout.replicated");
    let res = st
        .confirms
        .submit(st.clone(), res.checkout.clone())
        .await
        .ok_or_else(|| ApiError::internal("confirmation failed"))??;
    crate::failpoint::hit("checkout.confirmed");
    Ok(res)
}

/// Confirms a group of replicated checkouts here, then tells the followers (one request
/// each, not awaited): they learn it now, or from the leader when their engine downloads
/// first.
pub(crate) async fn confirm_group(
    st: Arc<NodeState>,
    ids: Vec<String>,
) -> Vec<Result<Reservation, ApiError>> {
    let store = st.store.clone();
    let lookup = ids.clone();
    let results = blocking_group(ids.len(), move || {
        lookup.iter().map(|id| store.confirm(id)).collect()
    })
    .await;
    let confirmed: Vec<String> = ids
        .into_iter()
        .zip(&results)
        .filter(|(_, r)| r.is_ok())
        .map(|(id, _)| id)
        .collect();
    if !confirmed.is_empty() {
        for p in followers(&st) {
            tokio::spawn(notify_at(st.clone(), p, confirmed.clone()));
        }
    }
    results
}

/// Allocates a group of checkouts with one flush.
pub(crate) async fn allocate_group(
    st: Arc<NodeState>,
    reqs: Vec<CheckoutRequest>,
) -> Vec<Result<Reservation, ApiError>> {
    let store = st.store.clone();
    let plan: Vec<_> = reqs.into_iter().map(|r| (r.id, r.pool, r.count)).collect();
    blocking_group(plan.len(), move || store.allocate_many(&plan)).await
}

/// Sends a group of reservations to follower `p`: one request, one flush there.
pub(crate) async fn apply_at(
    st: Arc<NodeState>,
    p: u8,
    group: Vec<Reservation>,
) -> Vec<Result<(), ApiError>> {
    let n = group.len();
    let ids: Vec<String> = group.iter().map(|r| r.checkout.clone()).collect();
    let body = ApplyRequest {
        reservations: group,
    };
    let answer = call::<Vec<ApplyResult>>(
        &st,
        p,
        Method::POST,
        "/v1/internal/reservations",
        Some(&body),
    )
    .await;
    match answer {
        Ok(Some(results)) if results.len() == n => results
            .into_iter()
            .zip(&ids)
            .map(|(r, id)| match r.problem {
                _ if r.checkout != *id => Err(ApiError::unavailable(format!(
                    "party {p} answered for the wrong checkout"
                ))),
                None => Ok(()),
                Some(mut problem) => {
                    problem.detail = format!("party {p}: {}", problem.detail);
                    Err(ApiError::from(problem))
                }
            })
            .collect(),
        Ok(_) => vec![
            Err(ApiError::unavailable(format!(
                "party {p} answered a group of {n} reservations badly"
            )));
            n
        ],
        Err(e) => vec![Err(e); n],
    }
}

/// Tells follower `p` that a group of checkouts is held everywhere (best effort).
async fn notify_at(st: Arc<NodeState>, p: u8, checkouts: Vec<String>) {
    let body = ConfirmRequest { checkouts };
    if let Err(e) = call::<serde_json::Value>(
        &st,
        p,
        Method::POST,
        "/v1/internal/confirmations",
        Some(&body),
    )
    .await
    {
        tracing::debug!(party = p, error = %e.detail, "confirmations not delivered; the follower will ask");
    }
}

/// A follower passes an engine's checkout to the leader.
///
/// # Errors
/// The leader's answer, or 503 if it cannot be reached.
pub async fn forward_checkout(
    st: &NodeState,
    req: &CheckoutRequest,
) -> Result<Reservation, ApiError> {
    call::<Reservation>(
        st,
        st.cluster.leader,
        Method::POST,
        "/v1/internal/checkouts",
        Some(req),
    )
    .await?
    .ok_or_else(|| ApiError::internal("the leader answered without a reservation"))
}

/// How long a download at a follower waits for the leader's confirmation to arrive before it
/// asks the leader itself. The leader sends confirmations as it answers the engine, so they
/// usually arrive first or within a millisecond.
const CONFIRMATION_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// A follower makes sure a reservation is confirmed before serving it: it waits briefly for
/// the leader's confirmation, then asks the leader, and records it if so.
///
/// # Errors
/// 409 `not-confirmed` if the leader has not confirmed it (or released it).
pub async fn learn_confirmation(st: &NodeState, id: &str) -> Result<(), ApiError> {
    if st.is_leader() {
        return Err(StoreError::Unconfirmed(id.to_string()).into());
    }
    let deadline = tokio::time::Instant::now() + CONFIRMATION_WAIT;
    let mut arrivals = st.confirmations.subscribe();
    loop {
        // A read of recent metadata, as the download's own: no need to leave this thread.
        let known = st.store.reservation(id)?;
        if known.is_some_and(|r| r.confirmed || r.state != ReservationState::Reserved) {
            return Ok(());
        }
        match tokio::time::timeout_at(deadline, arrivals.changed()).await {
            Ok(Ok(())) => continue,
            _ => break,
        }
    }
    let path = format!("/v1/internal/reservations/{}", urlencode(id));
    let at_leader = call::<Reservation>(st, st.cluster.leader, Method::GET, &path, None::<&()>)
        .await?
        .ok_or_else(|| ApiError::internal("the leader answered without a reservation"))?;
    if !at_leader.confirmed || at_leader.state == ReservationState::Released {
        return Err(StoreError::Unconfirmed(id.to_string()).into());
    }
    let store = st.store.clone();
    let id = id.to_string();
    blocking(move || store.confirm(&id)).await?;
    Ok(())
}

/// The leader commits a batch the dealer has staged everywhere: it checks every follower
/// holds it, makes it available here (the commit point), then tells the followers.
///
/// # Errors
/// 409 if some party does not hold the batch; 503 if a party cannot be reached.
pub async fn commit_batch(st: &Arc<NodeState>, id: BatchId) -> Result<(), ApiError> {
    let store = st.store.clone();
    let meta = blocking(move || store.batch_meta(&id))
        .await?
        .ok_or(ApiError::from(StoreError::UnknownBatch(id)))?;
    if meta.state == BatchState::Exhausted {
        return Err(StoreError::IllegalTransition {
            batch: id,
            from: meta.state,
            to: "available",
        }
        .into());
    }
    let path = format!("/v1/internal/batches/{id}");
    let states = join_all(followers(st).map(|p| {
        let path = path.clone();
        async move {
            (
                p,
                call::<BatchStateView>(st, p, Method::GET, &path, None::<&()>).await,
            )
        }
    }))
    .await;
    for (p, s) in states {
        match s {
            Ok(Some(v)) if v.state != BatchState::Exhausted => {}
            Ok(_) => return Err(not_staged(p, id)),
            Err(e) if e.code == Code::UnknownBatch => return Err(not_staged(p, id)),
            Err(e) => return Err(e),
        }
    }
    crate::failpoint::hit("commit.checked");
    let store = st.store.clone();
    blocking(move || store.activate(&id)).await?;
    crate::failpoint::hit("commit.activated");
    let activate = format!("{path}/activate");
    join_all(followers(st).map(|p| {
        let activate = activate.clone();
        async move {
            if let Err(e) = call::<serde_json::Value>(st, p, Method::POST, &activate, None::<&()>).await {
                tracing::info!(party = p, batch = %id, error = %e.detail, "activation not delivered; the follower activates on first use");
            }
        }
    }))
    .await;
    Ok(())
}

fn not_staged(p: u8, id: BatchId) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::CONFLICT,
        Code::NotStaged,
        format!("party {p} does not hold batch {id}"),
    )
}

/// A party's side of expiry: release the reservation unless it was downloaded here.
///
/// # Errors
/// Store failures other than the expected states.
pub fn expire_locally(store: &Store, id: &str) -> Result<ExpireOutcome, StoreError> {
    match store.release(id) {
        Ok(_) => Ok(ExpireOutcome::Released),
        Err(StoreError::NotReserved {
            state: ReservationState::Consumed,
            ..
        }) => Ok(ExpireOutcome::Consumed),
        Err(StoreError::NotReserved {
            state: ReservationState::Burned,
            ..
        }) => Ok(ExpireOutcome::Burned),
        Err(StoreError::NotReserved {
            state: ReservationState::Released,
            ..
        }) => Ok(ExpireOutcome::Released),
        Err(StoreError::UnknownCheckout(_)) => Ok(ExpireOutcome::Unknown),
        Err(e) => Err(e),
    }
}

/// The leader expires one reservation. First it asks every follower whether it was downloaded
/// there; if any was, the reservation is burned everywhere. Otherwise every follower releases
/// it (unless downloaded in the meantime, in which case the rest burn it), then the leader.
async fn expire_one(st: &Arc<NodeState>, res: &Reservation) -> Result<(), ApiError> {
    let base = format!("/v1/internal/reservations/{}", urlencode(&res.checkout));
    let states = join_all(followers(st).map(|p| {
        let base = base.clone();
        async move {
            match call::<Reservation>(st, p, Method::GET, &base, None::<&()>).await {
                Ok(r) => Ok(r.map(|r| r.state)),
                Err(e) if e.code == Code::UnknownCheckout => Ok(None),
                Err(e) => Err(e),
            }
        }
    }))
    .await;
    // Downloaded at the leader itself: burn at the followers that did not download.
    let mut downloaded = res.state == ReservationState::Consumed;
    for s in states {
        // An unreachable follower: try again next sweep; nothing has changed yet.
        downloaded |= matches!(
            s?,
            Some(ReservationState::Consumed | ReservationState::Burned)
        );
    }
    crate::failpoint::hit("expire.decided");
    if !downloaded {
        let expire = format!("{base}/expire");
        let outcomes = join_all(followers(st).map(|p| {
            let expire = expire.clone();
            async move { call::<ExpireOutcome>(st, p, Method::POST, &expire, None::<&()>).await }
        }))
        .await;
        for o in outcomes {
            downloaded |= matches!(o?, Some(ExpireOutcome::Consumed | ExpireOutcome::Burned));
        }
    }
    if downloaded {
        let burn = format!("{base}/burn");
        for p in followers(st) {
            call::<serde_json::Value>(st, p, Method::POST, &burn, None::<&()>).await?;
        }
    }
    crate::failpoint::hit("expire.settling");
    let store = st.store.clone();
    let id = res.checkout.clone();
    blocking(move || {
        if downloaded {
            match store.burn(&id) {
                Ok(_) | Err(StoreError::NotReserved { .. }) => {}
                Err(e) => return Err(e),
            }
        } else {
            expire_locally(&store, &id)?;
        }
        store.settle(&id)
    })
    .await?;
    // Why stock moved, for the operator (checkout ids are engines' names, not secrets).
    if downloaded {
        tracing::info!(checkout = %res.checkout, pool = %res.pool, items = res.count,
            "reservation expired after a download somewhere: burned at every party that had not downloaded it");
    } else {
        tracing::info!(checkout = %res.checkout, pool = %res.pool, items = res.count,
            "reservation expired undownloaded: its items went back to stock at every party");
    }
    Ok(())
}

/// Periodic work: expiry at the leader, abandoned staged batches everywhere.
/// Runs until `cancel` fires; a sweep cut short by it is safe (every step is idempotent and
/// the next start sweeps again).
pub async fn sweep_forever(st: Arc<NodeState>, cancel: tokio_util::sync::CancellationToken) {
    let every = std::time::Duration::from_millis(st.cluster.sweep_interval_ms.max(50));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = sweep_once(&st) => {
                if let Err(e) = r {
                    tracing::debug!(error = %e.detail, "sweep incomplete; retried next time");
                }
            }
        }
    }
}

/// One sweep (also called by tests).
///
/// # Errors
/// The first failure; the rest is retried next sweep.
pub async fn sweep_once(st: &Arc<NodeState>) -> Result<(), ApiError> {
    let now = now_unix();
    let store = st.store.clone();
    blocking(move || store.erase_due()).await?;
    if st.is_leader() {
        let store = st.store.clone();
        let cutoff = now.saturating_sub(st.cluster.reservation_ttl_seconds);
        let due: Vec<Reservation> = blocking(move || store.open_reservations_until(cutoff))
            .await?
            .into_iter()
            .filter(|r| {
                matches!(
                    r.state,
                    ReservationState::Reserved | ReservationState::Consumed
                )
            })
            .collect();
        for r in &due {
            // One reservation that cannot be expired yet must not hold up the others.
            if let Err(e) = expire_one(st, r).await {
                tracing::debug!(checkout = %r.checkout, error = %e.detail, "expiry postponed");
            }
        }
    }
    let store = st.store.clone();
    let stale: Vec<BatchId> = blocking(move || store.all_batches())
        .await?
        .into_iter()
        .filter(|m| {
            m.state == BatchState::Staged
                && m.staged_at + st.cluster.staging_deadline_seconds <= now
        })
        .map(|m| m.id)
        .collect();
    for id in stale {
        if let Err(e) = drop_stale_batch(st, id).await {
            tracing::debug!(batch = %id, error = %e.detail, "stale batch kept for now");
        }
    }
    Ok(())
}

/// A batch staged here long ago and never made available. The leader decides: a follower asks
/// the leader to abort its copy first (refused if the leader has made it available, in which
/// case the follower activates its own), so a follower never drops a batch the leader may
/// still commit.
async fn drop_stale_batch(st: &Arc<NodeState>, id: BatchId) -> Result<(), ApiError> {
    let committed = if st.is_leader() {
        false
    } else {
        let path = format!("/v1/internal/batches/{id}");
        match call::<serde_json::Value>(st, st.cluster.leader, Method::DELETE, &path, None::<&()>)
            .await
        {
            Ok(_) => false,
            Err(e) if e.code == Code::IllegalTransition => true,
            Err(e) => return Err(e),
        }
    };
    let store = st.store.clone();
    blocking(move || {
        if committed {
            store.activate(&id)
        } else {
            store.abort(&id)
        }
    })
    .await?;
    if committed {
        tracing::info!(batch = %id, "staged batch found committed at the leader: available here now");
    } else {
        tracing::info!(batch = %id, deadline_s = st.cluster.staging_deadline_seconds,
            "staged batch never committed within the staging deadline: removed");
    }
    Ok(())
}

/// Percent-encodes a checkout id for a URL path segment.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
