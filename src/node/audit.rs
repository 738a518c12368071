//! The audit trail over the API: `GET /v1/audit` for the consortium's auditors, and the chain
//! heads the nodes witness of each other on every call between them (see [`crate::audit`]).

use super::error::{ApiError, Code};
use super::{Caller, NodeState};
use crate::audit::{Head, HEAD_HEADER};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderValue};
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
    Query(q): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    if caller != Caller::Auditor {
        return Err(ApiError::forbidden(
            Code::AuditorsOnly,
            "the audit trail is read with the consortium's auditor credential",
        ));
    }
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
        .and_then(Head::from_header);
    let Some(head) = seen else {
        return next.run(req).await;
    };
    let from_node =
        matches!(st.authenticate(req.headers()), Ok(Caller::Node(p)) if p == head.party);
    let mut resp = next.run(req).await;
    if from_node {
        st.store.witness(head);
        if let Ok(v) = HeaderValue::from_str(&st.store.audit_head().to_header()) {
            resp.headers_mut().insert(HEAD_HEADER, v);
        }
    }
    resp
}
