//! Node-to-node and dealer endpoints under `/v1/internal`: staging and committing batches,
//! the leader's checkouts, replication, confirmation and expiry at the followers.

use super::api::{
    batch_id, check_count, known_pool, read_body, require_dealer, require_leader, require_node,
    INTERNAL_JSON_LIMIT, STAGE_BODY_TIMEOUT, STAGE_LIMIT,
};
use super::error::{ApiError, Code};
use super::extract::{FromLeader, JsonBody, NodeAtLeader};
use super::{Caller, NodeState};
use crate::cluster::{self, Party};
use crate::material::BatchHeader;
use crate::store::{Reservation, StoreError};
use crate::wire::{
    ApplyRequest, ApplyResult, BatchStateView, CheckoutRequest, ConfirmRequest, ExpireOutcome,
};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use std::sync::Arc;

type St = State<Arc<NodeState>>;

pub(super) async fn leader_checkout(
    State(st): St,
    _: NodeAtLeader,
    JsonBody(req): JsonBody<CheckoutRequest>,
) -> Result<Json<Reservation>, ApiError> {
    known_pool(&st, req.pool)?;
    check_count(&st, req.count)?;
    Ok(Json(cluster::checkout(&st.own, st.followers(), req).await?))
}

pub(super) async fn stage(
    State(st): St,
    caller: Caller,
    Path(batch): Path<String>,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    require_dealer(&caller, "stages batches")?;
    let id = batch_id(&batch)?;
    let bytes = zeroize::Zeroizing::new(
        read_body(body, STAGE_LIMIT, STAGE_BODY_TIMEOUT)
            .await?
            .to_vec(),
    );
    let header = BatchHeader::decode(&bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, Code::BadBatch, e.to_string()))?;
    if header.batch != id {
        return Err(ApiError::bad_request(format!(
            "the body is batch {}, not {id}",
            header.batch
        )));
    }
    st.own.run("staging", move |s| s.stage(&bytes)).await?;
    crate::failpoint::hit("stage.durable");
    Ok((
        StatusCode::CREATED,
        Json(BatchStateView {
            batch: id,
            state: crate::store::BatchState::Staged,
        }),
    ))
}

pub(super) async fn batch_state(
    State(st): St,
    caller: Caller,
    Path(batch): Path<String>,
) -> Result<Json<BatchStateView>, ApiError> {
    match caller {
        Caller::Node(_) | Caller::Dealer => {}
        _ => {
            return Err(ApiError::forbidden(
                Code::NodesOnly,
                "this endpoint is for the consortium's nodes",
            ))
        }
    }
    let id = batch_id(&batch)?;
    let meta = st
        .own
        .run("reading a batch", move |s| s.batch_meta(&id))
        .await?
        .ok_or(ApiError::from(StoreError::UnknownBatch(id)))?;
    Ok(Json(BatchStateView {
        batch: id,
        state: meta.state,
    }))
}

pub(super) async fn abort_batch(
    State(st): St,
    caller: Caller,
    Path(batch): Path<String>,
) -> Result<StatusCode, ApiError> {
    // The dealer may abort anywhere; at the leader, a follower may ask it to abort (the
    // leader's copy is the one that decides); at a follower, only the leader may.
    match caller {
        Caller::Dealer => {}
        c if st.is_leader() => require_node(&c, None)?,
        c => require_node(&c, Some(st.cluster.leader))?,
    }
    let id = batch_id(&batch)?;
    st.own.run("aborting", move |s| s.abort(&id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn commit(
    State(st): St,
    caller: Caller,
    Path(batch): Path<String>,
) -> Result<Json<BatchStateView>, ApiError> {
    require_dealer(&caller, "commits batches")?;
    require_leader(&st, "batches are committed at the leader")?;
    let id = batch_id(&batch)?;
    // Run to the end even if the dealer hangs up: a commit and the job's count of it are
    // one step (see `jobs`).
    let run = st.clone();
    tokio::spawn(async move { super::jobs::commit(&run, id).await })
        .await
        .map_err(|e| ApiError::internal(format!("the commit task failed: {e}")))??;
    Ok(Json(BatchStateView {
        batch: id,
        state: crate::store::BatchState::Available,
    }))
}

pub(super) async fn activate(
    State(st): St,
    _: FromLeader,
    Path(batch): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = batch_id(&batch)?;
    st.own.run("activating", move |s| s.activate(&id)).await?;
    crate::failpoint::hit("activate.durable");
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn apply(
    State(st): St,
    _: FromLeader,
    JsonBody(req): JsonBody<ApplyRequest, INTERNAL_JSON_LIMIT>,
) -> Result<Json<Vec<ApplyResult>>, ApiError> {
    let (ids, results) = st
        .own
        .run("holding reservations", move |s| {
            let results = s.apply_many(&req.reservations);
            let ids: Vec<String> = req.reservations.into_iter().map(|r| r.checkout).collect();
            Ok((ids, results))
        })
        .await?;
    crate::failpoint::hit("apply.durable");
    Ok(Json(
        ids.into_iter()
            .zip(results)
            .map(|(checkout, r)| ApplyResult {
                checkout,
                problem: r.err().map(|e| ApiError::from(e).problem()),
            })
            .collect(),
    ))
}

pub(super) async fn reservation_state(
    State(st): St,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Reservation>, ApiError> {
    require_node(&caller, None)?;
    let lookup = id.clone();
    Ok(Json(
        st.own
            .run("reading a reservation", move |s| s.reservation(&lookup))
            .await?
            .ok_or(ApiError::from(StoreError::UnknownCheckout(id)))?,
    ))
}

pub(super) async fn confirm(
    State(st): St,
    _: FromLeader,
    JsonBody(req): JsonBody<ConfirmRequest, INTERNAL_JSON_LIMIT>,
) -> Result<StatusCode, ApiError> {
    st.own.confirmed(req.checkouts).await?;
    st.confirmations.send_modify(|n| *n = n.wrapping_add(1));
    crate::failpoint::hit("confirm.durable");
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn expire(
    State(st): St,
    _: FromLeader,
    Path(id): Path<String>,
) -> Result<Json<ExpireOutcome>, ApiError> {
    let outcome = st.own.expire(id.clone()).await?;
    crate::failpoint::hit("expire.follower");
    if outcome == ExpireOutcome::Released {
        tracing::info!(checkout = %id, "reservation expired at the leader's request: items back to stock here");
    }
    Ok(Json(outcome))
}

pub(super) async fn burn(
    State(st): St,
    _: FromLeader,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let burned = st.own.burn(id.clone()).await?;
    if burned {
        tracing::info!(checkout = %id, "reservation burned at the leader's request: downloaded elsewhere, destroyed unused here");
    }
    crate::failpoint::hit("expire.follower");
    Ok(StatusCode::NO_CONTENT)
}
