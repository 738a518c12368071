//! The audit trail over the API: `GET /v1/audit` for the consortium's auditors, and the chain
//! heads the nodes witness of each other on every call between them (see [`crate::audit`]).

use super::error::{ApiError, Code};
use super::{Caller, NodeState};
use crate::audit::{Beacon, HEAD_HEADER};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;
use utoipa::IntoParams;

/// Most records one `GET /v1/audit` returns.
pub const MAX_AUDIT_PAGE: u64 = 100_000;

/// Which records to read.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// The first record's number (default 0; records removed by retention are skipped).
    #[serde(default)]
    pub from: u64,
    /// At most this many records (default and maximum 100000).
    #[serde(default)]
    pub limit: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/v1/audit",
    operation_id = "readAuditTrail",
    summary = "This party's audit trail as JSON lines: a header, then the chained records",
    security(("auditorToken" = [])),
    params(AuditQuery),
    responses(
        (status = 200, description = "the header line (`format`, `consortium`, `party`, `first`, `next`, `head`), then one record per line", content_type = "application/x-ndjson", body = String),
        (status = 400, description = "bad input"),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "not an auditor"),
    )
)]
pub(super) async fn read(
    State(st): State<Arc<NodeState>>,
    caller: Caller,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    if caller != Caller::Auditor {
        return Err(ApiError::forbidden(
            Code::AuditorsOnly,
            "the audit trail is read with the consortium's auditor credential",
        ));
    }
    // A malformed query is a problem like any other bad input, not axum's plain text.
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(MAX_AUDIT_PAGE);
    if limit == 0 || limit > MAX_AUDIT_PAGE {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_AUDIT_PAGE}"
        )));
    }
    let from = q.from;
    let body = st
        .own
        .run("reading the audit trail", move |s| {
            let mut out = Vec::new();
            s.export_audit(from, limit, &mut out).map(|_| out)
        })
        .await?;
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// Around every node-to-node call: notes the calling node's chain head (if it sent one) and
/// answers with this node's. Only an authenticated node's head counts, and only as its own.
pub(super) async fn witness(
    State(st): State<Arc<NodeState>>,
    req: Request,
    next: Next,
) -> Response {
    let seen = req
        .headers()
        .get(HEAD_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(Beacon::from_header);
    let Some(beacon) = seen else {
        return next.run(req).await;
    };
    let from_node =
        matches!(st.authenticate(req.headers()), Ok(Caller::Node(p)) if p == beacon.head.party);
    if !from_node {
        return next.run(req).await;
    }
    let party = beacon.head.party;
    if let Some((reported, live)) = st.store.witness(beacon.clone()) {
        crate::audit::rolled_back(party, reported, &beacon);
        // Seen by this run: fenced until it restarts. A restart is how an operator accepts
        // what happened (a loss seen only in the trail is reported, not fenced).
        if live {
            st.fenced
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(party);
        }
    }
    // A leader that forgot what it allocated could allocate it again: a follower that saw it
    // lose records refuses it, whatever the items (see SECURITY.md).
    let fenced = party == st.cluster.leader
        && st
            .fenced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&party);
    let mut resp = if fenced {
        ApiError::new(
            StatusCode::CONFLICT,
            Code::PartyRolledBack,
            format!(
                "party {party} restarted with fewer audit records than it had reported \
                 durable: it lost state, so this node refuses its requests until it is \
                 restarted itself (an operator's decision, after comparing the trails with \
                 `larder audit verify`)"
            ),
        )
        .into_response()
    } else {
        next.run(req).await
    };
    if let Ok(v) = HeaderValue::from_str(&st.store.beacon().to_header()) {
        resp.headers_mut().insert(HEAD_HEADER, v);
    }
    resp
}
