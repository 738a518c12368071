//! What handlers take from a request, checked once here instead of in every handler: who is
//! calling ([`Caller`], from the bearer token) and JSON bodies within their limits
//! ([`JsonBody`]: declared `application/json`, at most `LIMIT` bytes, received within the
//! body deadlines), and the body limits and deadlines themselves ([`read_body`]).

use super::api::{engine, require_dealer, require_leader, require_node};
use super::error::{ApiError, Code};
use super::{Caller, NodeState};
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use std::sync::Arc;

impl FromRequestParts<Arc<NodeState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        st: &Arc<NodeState>,
    ) -> Result<Self, Self::Rejection> {
        st.authenticate(&parts.headers)
    }
}

/// An online engine of this node's party, with the pools it is granted (else `403`).
pub struct Engine {
    pub name: String,
    pub pools: Vec<crate::material::PoolSpec>,
}

impl FromRequestParts<Arc<NodeState>> for Engine {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        st: &Arc<NodeState>,
    ) -> Result<Self, Self::Rejection> {
        let (name, pools) = engine(Caller::from_request_parts(parts, st).await?)?;
        Ok(Engine { name, pools })
    }
}

/// Extractors that admit only callers in one role: each checks the caller (`401`/`403`) and,
/// where the role needs it, that this node leads (`421` at a follower).
macro_rules! role {
    ($(#[$doc:meta])* $name:ident, |$caller:ident, $st:ident| $check:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl FromRequestParts<Arc<NodeState>> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                $st: &Arc<NodeState>,
            ) -> Result<Self, Self::Rejection> {
                let $caller = Caller::from_request_parts(parts, $st).await?;
                $check;
                Ok($name)
            }
        }
    };
}

role!(
    /// Another node of the consortium, calling this node while it leads.
    NodeAtLeader,
    |caller, st| {
        require_node(&caller, None)?;
        require_leader(st, "this node is not the leader")?;
    }
);

role!(
    /// The leader's node, calling a follower.
    FromLeader,
    |caller, st| require_node(&caller, Some(st.cluster.leader))?
);

role!(
    /// An operator of the consortium, calling the leader (generation jobs).
    Operator,
    |caller, st| {
        if caller != Caller::Operator {
            return Err(ApiError::forbidden(
                Code::OperatorsOnly,
                "generation jobs and PRSS keys are for the consortium's operators",
            ));
        }
        require_leader(st, "jobs are kept at the leader")?;
    }
);

role!(
    /// The dealer (one of its workers), calling the leader for pieces of jobs.
    DealerAtLeader,
    |caller, st| {
        require_dealer(&caller, "takes pieces of jobs")?;
        require_leader(st, "jobs are kept at the leader")?;
    }
);

/// A JSON body of type `T`, at most `LIMIT` bytes. Extracted last, after the caller is known
/// to be allowed: a refused caller's body is never read.
pub struct JsonBody<T, const LIMIT: usize = JSON_LIMIT>(pub T);

impl<T, S, const LIMIT: usize> FromRequest<S> for JsonBody<T, LIMIT>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        if !is_json(&parts.headers) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Code::UnsupportedMediaType,
                "the body must be application/json",
            ));
        }
        let bytes = read_body(body, LIMIT, JSON_BODY_TIMEOUT).await?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// Largest JSON body accepted.
pub const JSON_LIMIT: usize = 64 * 1024;
/// Largest batch file accepted for staging.
pub const STAGE_LIMIT: usize = 1 << 30;

/// Longest pause between two pieces of a request body.
pub const BODY_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
/// Longest time to receive a whole JSON body.
pub const JSON_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Longest time to receive a whole batch file (1 GiB at a little over 1 MB/s).
pub const STAGE_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(900);

/// Reads a whole body of at most `limit` bytes within `deadline`, with no pause longer than
/// [`BODY_IDLE_TIMEOUT`]: a body that never ends cannot hold a connection forever.
pub(crate) async fn read_body(
    body: Body,
    limit: usize,
    deadline: std::time::Duration,
) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let timeout =
        |what: String| ApiError::new(StatusCode::REQUEST_TIMEOUT, Code::RequestTimeout, what);
    let end = tokio::time::Instant::now() + deadline;
    let mut body = http_body_util::Limited::new(body, limit);
    let mut out = bytes::BytesMut::new();
    loop {
        let wait = end
            .saturating_duration_since(tokio::time::Instant::now())
            .min(BODY_IDLE_TIMEOUT);
        let frame = match tokio::time::timeout(wait, body.frame()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(out.freeze()),
            Err(_) if tokio::time::Instant::now() >= end => {
                return Err(timeout(format!(
                    "the body did not arrive within {} s",
                    deadline.as_secs()
                )))
            }
            Err(_) => {
                return Err(timeout(format!(
                    "the body stalled for {} s",
                    BODY_IDLE_TIMEOUT.as_secs()
                )))
            }
        };
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    out.extend_from_slice(&data);
                }
            }
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Code::BodyTooLarge,
                    format!("the body exceeds {limit} bytes"),
                ))
            }
            Err(e) => {
                return Err(ApiError::bad_request(format!(
                    "could not read the body: {e}"
                )))
            }
        }
    }
}

/// Largest node-to-node JSON body (a group of reservations, or of confirmations).
pub const INTERNAL_JSON_LIMIT: usize = 4 << 20;

/// Whether the body is declared `application/json`: the media type compared without regard
/// to case (RFC 9110), parameters such as `charset` allowed, nothing else (`application/jsonx`
/// is not JSON).
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}
