//! What handlers take from a request, checked once here instead of in every handler: who is
//! calling ([`Caller`], from the bearer token) and JSON bodies within their limits
//! ([`JsonBody`]: declared `application/json`, at most `LIMIT` bytes, received within the
//! body deadlines).

use super::api::{
    engine, is_json, read_body, require_dealer, require_leader, require_node, JSON_BODY_TIMEOUT,
    JSON_LIMIT,
};
use super::error::{ApiError, Code};
use super::{Caller, NodeState};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
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
                "generation jobs are for the consortium's operators",
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
