//! What handlers take from a request, checked once here instead of in every handler: who is
//! calling ([`Caller`], from the bearer token) and JSON bodies within their limits
//! ([`JsonBody`]: declared `application/json`, at most `LIMIT` bytes, received within the
//! body deadlines).

use super::api::{
    engine, is_json, read_body, require_leader, require_node, JSON_BODY_TIMEOUT, JSON_LIMIT,
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

/// Another node of the consortium, calling this node while it leads (else `403`, or `421` at
/// a follower).
pub struct NodeAtLeader;

impl FromRequestParts<Arc<NodeState>> for NodeAtLeader {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        st: &Arc<NodeState>,
    ) -> Result<Self, Self::Rejection> {
        require_node(&Caller::from_request_parts(parts, st).await?, None)?;
        require_leader(st, "this node is not the leader")?;
        Ok(NodeAtLeader)
    }
}

/// The leader's node, calling a follower (else `403`).
pub struct FromLeader;

impl FromRequestParts<Arc<NodeState>> for FromLeader {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        st: &Arc<NodeState>,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, st).await?;
        require_node(&caller, Some(st.cluster.leader))?;
        Ok(FromLeader)
    }
}

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
