//! The HTTP API: the router, the engine endpoints under `/v1` and what every handler shares
//! (node-to-node and dealer endpoints under `/v1/internal` are in `internal.rs`). Control plane JSON, shares as a streamed `application/octet-stream`.

use super::error::{ApiError, Code};
use super::extract::{Engine, JsonBody};
use super::internal;
use super::jobs;
use super::{Caller, NodeState};
use crate::cluster;
use crate::material::BatchId;
use crate::store::{Reservation, ReservationState, StoreError};
use crate::wire::schema::{Binary, CheckoutId};
use crate::wire::{CheckoutRequest, CheckoutView, HealthView, ReadyView, StockView};
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use std::io::{self, Write};
use std::sync::Arc;

type St = State<Arc<NodeState>>;

/// The router, without a socket (tests can call it with `oneshot`).
pub fn router(state: Arc<NodeState>) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/ready", get(ready))
        .route("/openapi.json", get(openapi))
        .route("/v1/stock", get(stock))
        .route("/v1/checkouts", post(create_checkout))
        .route("/v1/checkouts/{id}", get(get_checkout))
        .route("/v1/checkouts/{id}/shares", get(download))
        .route(
            "/v1/internal/batches/{batch}",
            put(internal::stage)
                .get(internal::batch_state)
                .delete(internal::abort_batch),
        )
        .route(
            "/v1/internal/batches/{batch}/commit",
            post(internal::commit),
        )
        .route(
            "/v1/internal/batches/{batch}/activate",
            post(internal::activate),
        )
        .route("/v1/internal/checkouts", post(internal::leader_checkout))
        .route("/v1/internal/reservations", post(internal::apply))
        .route(
            "/v1/internal/reservations/{id}",
            get(internal::reservation_state),
        )
        .route("/v1/internal/confirmations", post(internal::confirm))
        .route(
            "/v1/internal/reservations/{id}/expire",
            post(internal::expire),
        )
        .route("/v1/internal/reservations/{id}/burn", post(internal::burn))
        .route("/v1/audit", get(super::audit::read))
        .route("/v1/forecast", get(super::schedule::get_forecast))
        .route("/v1/internal/windows", get(super::schedule::windows))
        .route("/v1/jobs", post(jobs::create).get(jobs::list))
        .route("/v1/jobs/{id}", get(jobs::get).delete(jobs::cancel))
        .route("/v1/internal/jobs/next", post(jobs::next_piece))
        .route("/v1/internal/pieces", post(jobs::make_piece))
        .route("/v1/prss", get(super::prss::status))
        .route("/v1/prss/epochs", post(super::prss::rotate))
        .route("/v1/prss/epochs/{epoch}", delete(super::prss::retire))
        .route(
            "/v1/internal/prss/epochs/{epoch}",
            post(super::prss::internal_setup),
        )
        .route(
            "/v1/internal/prss/epochs/{epoch}/retire",
            post(super::prss::internal_retire),
        )
        .route(
            "/v1/internal/prss/epochs/{epoch}/current",
            post(super::prss::internal_current),
        )
        .route(
            "/v1/internal/messages/{session}/{seq}",
            put(super::channel::receive),
        )
        .route(
            "/v1/internal/messages/{session}",
            delete(super::channel::abort),
        )
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, Code::NotFound, "no such endpoint")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                Code::MethodNotAllowed,
                "this endpoint does not take that method",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::audit::witness,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::metrics::observe,
        ))
        .with_state(state)
}

pub(crate) fn require_node(caller: &Caller, from: Option<u8>) -> Result<(), ApiError> {
    match (caller, from) {
        (Caller::Node(_), None) => Ok(()),
        (Caller::Node(p), Some(want)) if *p == want => Ok(()),
        _ => Err(ApiError::forbidden(
            Code::NodesOnly,
            "this endpoint is for the consortium's nodes",
        )),
    }
}

pub(crate) fn require_dealer(caller: &Caller, what: &str) -> Result<(), ApiError> {
    if *caller == Caller::Dealer {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            Code::DealerOnly,
            format!("only the dealer {what}"),
        ))
    }
}

pub(crate) fn batch_id(s: &str) -> Result<BatchId, ApiError> {
    s.parse().map_err(|e: String| ApiError::bad_request(e))
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    summary = "This document",
    security(()),
    responses((status = 200, description = "OpenAPI document", content_type = "application/json")),
)]
pub(super) async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::openapi::document_text(),
    )
}

#[utoipa::path(
    get,
    path = "/v1/health",
    operation_id = "health",
    summary = "Who this node is",
    security(()),
    responses(
        (status = 200, description = "this node", body = HealthView),
    )
)]
pub(super) async fn health(State(st): St) -> Json<HealthView> {
    Json(HealthView {
        consortium: st.cluster.name.clone(),
        party: st.me,
        parties: st.cluster.parties(),
        name: st.cluster.nodes()[st.me as usize].name.clone(),
        leader: st.is_leader(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

/// Whether this node is ready to serve: its store is open and every other party's node has
/// answered it since it started. A node that is not ready still answers (a checkout may
/// fail for want of a peer); orchestrators hold traffic back until it is.
#[utoipa::path(
    get,
    path = "/v1/ready",
    operation_id = "ready",
    summary = "Whether this node is ready: store open, every peer known",
    security(()),
    responses(
        (status = 200, description = "ready", body = ReadyView),
        (status = 503, description = "not ready yet (`not-ready`): the detail names the peers it waits for"),
    )
)]
pub(super) async fn ready(State(st): St) -> Result<Json<ReadyView>, ApiError> {
    let waiting: Vec<String> = st
        .peers_waiting()
        .into_iter()
        .map(|p| p.label().to_string())
        .collect();
    if !waiting.is_empty() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            Code::NotReady,
            format!("waiting for the nodes of {} to answer", waiting.join(", ")),
        ));
    }
    Ok(Json(ReadyView {
        ready: true,
        store_open: true,
        waiting_for: waiting,
    }))
}

#[utoipa::path(
    get,
    path = "/v1/stock",
    operation_id = "stock",
    summary = "Stock per pool at this party",
    security(("engineToken" = []), ("nodeToken" = []), ("dealerToken" = []), ("operatorToken" = [])),
    responses(
        (status = 200, description = "stock", body = StockView),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "wrong party, pool not granted, or wrong role"),
    )
)]
pub(super) async fn stock(State(st): St, caller: Caller) -> Result<Json<StockView>, ApiError> {
    not_auditor(&caller)?;
    let pools = st.own.run("reading stock", |s| s.stock()).await?;
    // The leader's forecast beside this party's stock (here, from the stock just read), if
    // the leader answers.
    let forecast = if st.leader().is_none() {
        match st.own.run("reading jobs", |s| s.jobs()).await {
            Ok(jobs) => super::schedule::forecast_from(&st, &pools, &jobs).await,
            Err(e) => Err(e.into()),
        }
    } else {
        super::schedule::forecast(&st).await
    };
    let forecast = match forecast {
        Ok(f) => f.pools,
        Err(e) => {
            tracing::debug!(error = %e.detail, "stock without the forecast");
            Default::default()
        }
    };
    Ok(Json(StockView {
        party: st.me,
        pools,
        forecast,
    }))
}

/// Refuses an auditor's credential (it reads the audit trail and nothing else).
pub(crate) fn not_auditor(caller: &Caller) -> Result<(), ApiError> {
    if *caller == Caller::Auditor {
        return Err(ApiError::forbidden(
            Code::AuditTrailOnly,
            "an auditor's credential reads the audit trail (GET /v1/audit) and nothing else",
        ));
    }
    Ok(())
}

pub(crate) fn engine(caller: Caller) -> Result<(String, Vec<crate::material::PoolSpec>), ApiError> {
    match caller {
        Caller::Engine { name, pools } => Ok((name, pools)),
        _ => Err(ApiError::forbidden(
            Code::EnginesOnly,
            "this endpoint is for online engines",
        )),
    }
}

#[utoipa::path(
    post,
    path = "/v1/checkouts",
    operation_id = "createCheckout",
    summary = "Reserve items under a checkout id (the same at every party)",
    security(("engineToken" = [])),
    request_body = CheckoutRequest,
    responses(
        (status = 200, description = "the reservation, identical at every party", body = CheckoutView),
        (status = 400, description = "bad input"),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "wrong party or pool not granted"),
        (status = 404, description = "unknown pool"),
        (status = 409, description = "the id is used with other parameters"),
        (status = 410, description = "this checkout can no longer be served at this party: `already-consumed` (downloaded here), `checkout-released` (expired before any download; items back in stock) or `checkout-burned` (expired after another party downloaded it); use a new id"),
        (status = 413, description = "body too large"),
        (status = 415, description = "not application/json"),
        (status = 503, description = "underrun (with `available` and Retry-After) or a party unreachable"),
    )
)]
pub(super) async fn create_checkout(
    State(st): St,
    Engine { pools, .. }: Engine,
    JsonBody(req): JsonBody<CheckoutRequest>,
) -> Result<Json<CheckoutView>, ApiError> {
    known_pool(&st, req.pool)?;
    if !pools.contains(&req.pool) {
        return Err(ApiError::forbidden(
            Code::PoolNotGranted,
            format!("this engine is not granted pool {}", req.pool),
        ));
    }
    check_count(&st, req.count)?;
    let started = std::time::Instant::now();
    let pool = req.pool;
    let res = match st.leader() {
        None => checkout_here(&st, req).await?,
        Some(leader) => leader.forward_checkout(&req).await?,
    };
    let p = pool.to_string();
    st.metrics.checkouts.with_label_values(&[&p]).inc();
    st.metrics
        .checkout_seconds
        .with_label_values(&[&p])
        .observe(super::metrics::since(started));
    // A checkout this engine can no longer download here is a 410, not a 200 whose state the
    // engine would have to read.
    let here = if st.is_leader() {
        Some(res.state)
    } else {
        st.store.reservation(&res.checkout)?.map(|r| r.state)
    };
    let state = servable(res.state, here);
    if state != ReservationState::Reserved {
        return Err(StoreError::Gone {
            checkout: res.checkout,
            state,
        }
        .into());
    }
    Ok(Json(CheckoutView::new(
        &res,
        st.me,
        st.cluster.reservation_ttl_seconds,
    )))
}

/// The leader's side of a checkout: the protocol, the forecast's count of what is checked
/// out, and an underrun's `Retry-After` from the forecast.
pub(crate) async fn checkout_here(
    st: &Arc<NodeState>,
    req: crate::wire::CheckoutRequest,
) -> Result<crate::store::Reservation, ApiError> {
    let (pool, count) = (req.pool, req.count);
    match cluster::checkout(&st.own, st.followers(), req).await {
        Ok((res, new)) => {
            if new {
                st.schedule.observe(
                    pool,
                    &res.checkout,
                    count,
                    st.cluster.forecast_hours * 3600.0,
                );
            }
            Ok(res)
        }
        Err(e) => {
            let mut e = ApiError::from(e);
            if e.code == Code::Underrun {
                let short = count.saturating_sub(e.available.unwrap_or(0));
                e.retry_after = Some(super::schedule::retry_after(st, pool, short).await);
            }
            Err(e)
        }
    }
}

/// What an engine at this party can still do with a checkout, from the leader's state and
/// this party's: `Reserved` if it may download here. The leader decides releases and burns;
/// a download here is this party's own.
fn servable(leader: ReservationState, here: Option<ReservationState>) -> ReservationState {
    use ReservationState as R;
    match (leader, here) {
        (_, Some(R::Consumed)) => R::Consumed,
        (R::Released, _) | (_, Some(R::Released)) => R::Released,
        (R::Burned, _) | (_, Some(R::Burned)) => R::Burned,
        // Downloaded at the leader only: this party's engine may still download.
        _ => R::Reserved,
    }
}

pub(crate) fn known_pool(st: &NodeState, pool: crate::material::PoolSpec) -> Result<(), ApiError> {
    if st.cluster.pools.contains(&pool) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            Code::UnknownPool,
            format!("pool {pool} is not kept by this consortium"),
        ))
    }
}

pub(crate) fn require_leader(st: &NodeState, why: &str) -> Result<(), ApiError> {
    if st.is_leader() {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            Code::NotLeader,
            why.to_string(),
        ))
    }
}

pub(crate) fn check_count(st: &NodeState, count: u64) -> Result<(), ApiError> {
    if count == 0 || count > st.cluster.max_checkout_items {
        return Err(ApiError::bad_request(format!(
            "count must be between 1 and {}",
            st.cluster.max_checkout_items
        )));
    }
    Ok(())
}

#[utoipa::path(
    get,
    path = "/v1/checkouts/{id}",
    operation_id = "getCheckout",
    summary = "A checkout as this party sees it",
    security(("engineToken" = [])),
    params(("id" = CheckoutId, Path, description = "checkout id")),
    responses(
        (status = 200, description = "the reservation", body = CheckoutView),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "wrong party or pool not granted"),
        (status = 404, description = "unknown checkout"),
    )
)]
pub(super) async fn get_checkout(
    State(st): St,
    Engine { pools, .. }: Engine,
    Path(id): Path<String>,
) -> Result<Json<CheckoutView>, ApiError> {
    let lookup = id.clone();
    let res = st
        .own
        .run("reading a reservation", move |s| s.reservation(&lookup))
        .await?
        .ok_or_else(|| ApiError::from(StoreError::UnknownCheckout(id)))?;
    if !pools.contains(&res.pool) {
        return Err(ApiError::forbidden(
            Code::PoolNotGranted,
            format!("this engine is not granted pool {}", res.pool),
        ));
    }
    Ok(Json(CheckoutView::new(
        &res,
        st.me,
        st.cluster.reservation_ttl_seconds,
    )))
}

/// A `Write` that hands 256 KiB pieces to the response body; fails once the client is gone.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, io::Error>>,
    buf: Vec<u8>,
    /// The runtime, to wait on the channel with a deadline from the blocking thread.
    runtime: tokio::runtime::Handle,
}

/// Longest a download may stall because its client stopped reading: then the stream is cut
/// (the items stay consumed, as for any broken download) and its connection and chunks freed.
pub const DOWNLOAD_STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

const PIECE: usize = 256 * 1024;

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= PIECE {
            self.flush()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let piece = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE)));
            use tokio::sync::mpsc::error::SendTimeoutError;
            match self
                .runtime
                .block_on(self.tx.send_timeout(Ok(piece), DOWNLOAD_STALL_TIMEOUT))
            {
                Ok(()) => {}
                Err(SendTimeoutError::Closed(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the client went away",
                    ))
                }
                Err(SendTimeoutError::Timeout(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client stopped reading",
                    ))
                }
            }
            crate::failpoint::hit("download.streaming");
        }
        Ok(())
    }
}

/// Share streams up to this size are made in the same store call that consumes them, a group
/// of downloads at a time; larger ones are consumed on their own (their chunk checks take a
/// while) and streamed piece by piece.
const INLINE_BODY: u64 = PIECE as u64;

/// Consumes a group of small downloads with one flush and returns their share streams, made
/// alongside.
pub(crate) async fn consume_group(
    st: Arc<NodeState>,
    downloads: Vec<(String, String)>,
) -> Vec<Result<Bytes, ApiError>> {
    let unregister = st.store.clone();
    st.own
        .run_group("consuming", downloads.len(), move |store| {
            store.consume_many(&downloads, INLINE_BODY)
        })
        .await
        .into_iter()
        .map(|r| match r? {
            // Handed to the HTTP stack from here on (not zeroized there).
            (_, Some(body)) => Ok(Bytes::from(body.to_vec())),
            (res, None) => {
                unregister.end_stream(&res);
                Err(ApiError::internal("a small share stream was not made"))
            }
        })
        .collect()
}

/// A consumed reservation whose shares are being streamed: its chunks are not erased until
/// this is dropped, whatever ends the stream (done, failed, or the request cancelled).
struct Streaming {
    store: Arc<crate::store::Store>,
    res: Reservation,
}

impl Drop for Streaming {
    fn drop(&mut self) {
        // The chunks are overwritten by the node's sweep (`Store::erase_due`), many
        // downloads at a time, so a download costs no erase and no fsync of its own.
        self.store.end_stream(&self.res);
    }
}

/// How long a download at a follower waits for the leader's confirmation to arrive before it
/// asks the leader itself. The leader sends confirmations as it answers the engine, so they
/// usually arrive first or within a millisecond.
const CONFIRMATION_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// A follower makes sure a reservation is confirmed before serving it: it waits briefly for
/// the leader's confirmation, then asks the leader (see [`cluster::confirmed_at_leader`]).
///
/// # Errors
/// 409 `not-confirmed` if the leader has not confirmed it (or released it).
async fn learn_confirmation(st: &NodeState, id: &str) -> Result<(), ApiError> {
    let Some(leader) = st.leader() else {
        return Err(StoreError::Unconfirmed(id.to_string()).into());
    };
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
    Ok(cluster::confirmed_at_leader(leader, &st.own, id).await?)
}

#[utoipa::path(
    get,
    path = "/v1/checkouts/{id}/shares",
    operation_id = "downloadShares",
    summary = "Download this party's shares, once",
    security(("engineToken" = [])),
    params(("id" = CheckoutId, Path, description = "checkout id")),
    responses(
        (status = 200, description = "the share stream (versioned header, records, CRC-32 trailer; see src/material/shares.rs)", body = Binary, content_type = "application/octet-stream"),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "wrong party or pool not granted"),
        (status = 404, description = "unknown checkout"),
        (status = 409, description = "not confirmed yet"),
        (status = 410, description = "`already-consumed` (downloaded here), `checkout-released` or `checkout-burned` (expired)"),
        (status = 507, description = "this party's disk is full (`insufficient-storage`): free space there"),
    )
)]
pub(super) async fn download(
    State(st): St,
    Engine { name, pools }: Engine,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    // A read of recent metadata, served from sled's cache: no need to leave this thread.
    let res = st
        .store
        .reservation(&id)?
        .ok_or_else(|| ApiError::from(StoreError::UnknownCheckout(id.clone())))?;
    if !pools.contains(&res.pool) {
        return Err(ApiError::forbidden(
            Code::PoolNotGranted,
            format!("this engine is not granted pool {}", res.pool),
        ));
    }
    if res.state == ReservationState::Reserved && !res.confirmed {
        learn_confirmation(&st, &id).await?;
    }
    let len = st.store.share_stream_len(&res);
    let started = std::time::Instant::now();
    let (pool, items) = (res.pool.to_string(), res.count);
    let counted = |st: &NodeState| {
        let m = &st.metrics;
        m.consumed.with_label_values(&[&pool]).inc_by(items);
        m.download_bytes.with_label_values(&[&pool]).inc_by(len);
        m.download_seconds
            .with_label_values(&[&pool])
            .observe(super::metrics::since(started));
    };
    let response = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len);
    // Damaged data is found before the items are marked consumed; then consumed (durably)
    // before the first byte leaves.
    if len <= INLINE_BODY {
        let body = st
            .consumes
            .submit(st.clone(), (id, name))
            .await
            .ok_or_else(|| ApiError::internal("consuming failed"))??;
        crate::failpoint::hit("download.consumed");
        counted(&st);
        crate::failpoint::hit("download.streaming");
        return response
            .body(Body::from(body))
            .map_err(|e| ApiError::internal(e.to_string()));
    }
    let streaming = st
        .own
        .run("consuming", move |store| {
            let (res, _) = store
                .consume_many(&[(id, name)], INLINE_BODY)
                .pop()
                .expect("one result per download")?;
            Ok(Streaming {
                store: store.clone(),
                res,
            })
        })
        .await?;
    crate::failpoint::hit("download.consumed");
    counted(&st);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, io::Error>>(16);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let w = ChannelWriter {
            runtime,
            tx: tx.clone(),
            buf: Vec::with_capacity(PIECE),
        };
        let res = &streaming.res;
        if let Err(e) = streaming.store.write_shares(res, w) {
            tracing::warn!(checkout = %res.checkout, error = %e, "share stream aborted; the items stay consumed here");
            let _ = tx.blocking_send(Err(io::Error::other("share stream aborted")));
        }
        drop(tx);
        drop(streaming);
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    response
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::internal(e.to_string()))
}
