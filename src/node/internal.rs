//! Node-to-node and dealer endpoints under `/v1/internal`: staging and committing batches,
//! the leader's checkouts, replication, confirmation and expiry at the followers.

use super::api::{batch_id, check_count, known_pool, require_dealer, require_leader, require_node};
use super::error::{ApiError, Code};
use super::extract::{read_body, INTERNAL_JSON_LIMIT, STAGE_BODY_TIMEOUT, STAGE_LIMIT};
use super::extract::{FromLeader, JsonBody, NodeAtLeader};
use super::{Caller, NodeState};
use crate::cluster::Party;
use crate::material::BatchHeader;
use crate::material::BatchId;
use crate::store::{Reservation, StoreError};
use crate::wire::schema::{Binary, CheckoutId};
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

#[utoipa::path(
    post,
    path = "/v1/internal/checkouts",
    operation_id = "leaderCheckout",
    summary = "A follower forwards a checkout to the leader",
    security(("nodeToken" = [])),
    request_body = CheckoutRequest,
    responses(
        (status = 200, description = "the confirmed reservation", body = Reservation),
        (status = 400, description = "bad input"),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "not a node"),
        (status = 409, description = "conflict"),
        (status = 413, description = "body too large"),
        (status = 415, description = "not application/json"),
        (status = 421, description = "not the leader"),
        (status = 503, description = "underrun or a party unreachable"),
    )
)]
pub(super) async fn leader_checkout(
    State(st): St,
    _: NodeAtLeader,
    JsonBody(req): JsonBody<CheckoutRequest>,
) -> Result<Json<Reservation>, ApiError> {
    known_pool(&st, req.pool)?;
    check_count(&st, req.count)?;
    Ok(Json(super::api::checkout_here(&st, req).await?))
}

#[utoipa::path(
    put,
    path = "/v1/internal/batches/{batch}",
    operation_id = "stageBatch",
    summary = "Stage this party's share of a batch (dealer)",
    security(("dealerToken" = [])),
    params(("batch" = BatchId, Path, description = "batch id, 32 hex digits")),
    request_body(content = Binary, content_type = "application/octet-stream"),
    responses(
        (status = 201, description = "staged durably", body = BatchStateView),
        (status = 400, description = "invalid batch file"),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "not the dealer"),
        (status = 409, description = "another batch under this id"),
        (status = 413, description = "too large"),
    )
)]
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

#[utoipa::path(
    get,
    path = "/v1/internal/batches/{batch}",
    operation_id = "batchState",
    summary = "A batch's state here (nodes and the dealer)",
    security(("nodeToken" = []), ("dealerToken" = [])),
    params(("batch" = BatchId, Path, description = "batch id")),
    responses(
        (status = 200, description = "state", body = BatchStateView),
        (status = 400, description = "bad batch id"),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "not a node or the dealer"),
        (status = 404, description = "unknown batch"),
    )
)]
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

#[utoipa::path(
    delete,
    path = "/v1/internal/batches/{batch}",
    operation_id = "abortBatch",
    summary = "Abort a staged batch (the dealer anywhere; at the leader a follower node; at a follower the leader)",
    security(("dealerToken" = []), ("nodeToken" = [])),
    params(("batch" = BatchId, Path, description = "batch id")),
    responses(
        (status = 204, description = "aborted"),
        (status = 400, description = "bad batch id"),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "not the dealer, nor (at a follower) the leader"),
        (status = 409, description = "already available"),
    )
)]
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

#[utoipa::path(
    post,
    path = "/v1/internal/batches/{batch}/commit",
    operation_id = "commitBatch",
    summary = "Commit a batch staged everywhere (dealer, at the leader)",
    security(("dealerToken" = [])),
    params(("batch" = BatchId, Path, description = "batch id")),
    responses(
        (status = 200, description = "available", body = BatchStateView),
        (status = 400, description = "bad batch id"),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "not the dealer"),
        (status = 404, description = "unknown batch"),
        (status = 409, description = "not staged everywhere"),
        (status = 421, description = "not the leader"),
        (status = 503, description = "a party unreachable"),
    )
)]
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

#[utoipa::path(
    post,
    path = "/v1/internal/batches/{batch}/activate",
    operation_id = "activateBatch",
    summary = "Make a committed batch available (leader to follower)",
    security(("nodeToken" = [])),
    params(("batch" = BatchId, Path, description = "batch id")),
    responses(
        (status = 204, description = "available"),
        (status = 400, description = "bad batch id"),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "not the leader"),
        (status = 404, description = "unknown batch"),
    )
)]
pub(super) async fn activate(
    State(st): St,
    _: FromLeader,
    Path(batch): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = batch_id(&batch)?;
    st.own.run("activating", move |s| s.activate(&id)).await?;
    crate::failpoint::hit("activate.durable");
    super::metrics::note_generated(&st, id).await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/v1/internal/reservations",
    operation_id = "applyReservations",
    summary = "Hold a group of the leader's reservations durably (leader to follower)",
    security(("nodeToken" = [])),
    request_body = ApplyRequest,
    responses(
        (status = 200, description = "one result per reservation, in order; those without a problem are held durably", body = Vec<ApplyResult>),
        (status = 400, description = "bad input"),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "not the leader"),
        (status = 413, description = "body too large"),
        (status = 415, description = "not application/json"),
    )
)]
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

#[utoipa::path(
    get,
    path = "/v1/internal/reservations/{id}",
    operation_id = "reservationState",
    summary = "A reservation's state here",
    security(("nodeToken" = [])),
    params(("id" = CheckoutId, Path, description = "checkout id")),
    responses(
        (status = 200, description = "the reservation", body = Reservation),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "not a node"),
        (status = 404, description = "unknown checkout"),
    )
)]
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

#[utoipa::path(
    post,
    path = "/v1/internal/confirmations",
    operation_id = "confirmReservations",
    summary = "Every party holds these checkouts (leader to follower)",
    security(("nodeToken" = [])),
    request_body = ConfirmRequest,
    responses(
        (status = 204, description = "recorded (checkouts unknown or released here are skipped)"),
        (status = 400, description = "bad input"),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "not the leader"),
        (status = 413, description = "body too large"),
        (status = 415, description = "not application/json"),
    )
)]
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

#[utoipa::path(
    post,
    path = "/v1/internal/reservations/{id}/expire",
    operation_id = "expireReservation",
    summary = "Release unless downloaded here (leader to follower)",
    security(("nodeToken" = [])),
    params(("id" = CheckoutId, Path, description = "checkout id")),
    responses(
        (status = 200, description = "what this party did", body = ExpireOutcome),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "not the leader"),
    )
)]
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

#[utoipa::path(
    post,
    path = "/v1/internal/reservations/{id}/burn",
    operation_id = "burnReservation",
    summary = "Consume without serving (leader to follower)",
    security(("nodeToken" = [])),
    params(("id" = CheckoutId, Path, description = "checkout id")),
    responses(
        (status = 204, description = "burned"),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "not the leader"),
    )
)]
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
