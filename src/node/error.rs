//! API errors as `application/problem+json` (RFC 9457) with a stable machine-readable code.

use crate::store::{ReservationState, StoreError};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// The body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// `urn:larder:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What was wrong, in words.
    pub detail: String,
    /// Stable machine-readable code.
    pub code: String,
    /// For `underrun`: how many items the pool has available.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub available: Option<u64>,
}

/// An error a handler returns.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: std::borrow::Cow<'static, str>,
    pub detail: String,
    pub available: Option<u64>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: impl Into<std::borrow::Cow<'static, str>>,
        detail: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            code: code.into(),
            detail: detail.into(),
            available: None,
            retry_after: None,
        }
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "a valid bearer token is required",
        )
    }
    pub fn forbidden(
        code: impl Into<std::borrow::Cow<'static, str>>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, detail)
    }
    pub fn unavailable(detail: impl Into<String>) -> Self {
        ApiError {
            retry_after: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "party-unavailable", detail)
        }
    }
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        use StatusCode as S;
        let detail = e.to_string();
        match e {
            StoreError::Underrun { available, .. } => ApiError {
                available: Some(available),
                retry_after: Some(60),
                ..ApiError::new(S::SERVICE_UNAVAILABLE, "underrun", detail)
            },
            StoreError::Conflict(_) => ApiError::new(S::CONFLICT, "checkout-conflict", detail),
            StoreError::Gone { state, .. } | StoreError::NotReserved { state, .. } => {
                ApiError::new(S::GONE, gone_code(state), detail)
            }
            StoreError::UnknownCheckout(_) => {
                ApiError::new(S::NOT_FOUND, "unknown-checkout", detail)
            }
            StoreError::Unconfirmed(_) => ApiError {
                retry_after: Some(1),
                ..ApiError::new(S::CONFLICT, "not-confirmed", detail)
            },
            StoreError::BadCheckoutId | StoreError::ZeroCount => ApiError::bad_request(detail),
            StoreError::RangeUnavailable { .. } => {
                ApiError::new(S::CONFLICT, "range-unavailable", detail)
            }
            StoreError::UnknownBatch(_) => ApiError::new(S::NOT_FOUND, "unknown-batch", detail),
            StoreError::BatchMismatch(_) => ApiError::new(S::CONFLICT, "batch-mismatch", detail),
            StoreError::IllegalTransition { .. } => {
                ApiError::new(S::CONFLICT, "illegal-transition", detail)
            }
            StoreError::Format(_) => ApiError::new(S::BAD_REQUEST, "bad-batch", detail),
            StoreError::WrongParty { .. } => ApiError::new(S::BAD_REQUEST, "wrong-party", detail),
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::internal("the store failed; see the node's log")
            }
        }
    }
}

/// The code of a `410` for a checkout that can no longer be served here, by its state.
pub fn gone_code(state: ReservationState) -> &'static str {
    match state {
        ReservationState::Consumed => "already-consumed",
        ReservationState::Released => "checkout-released",
        ReservationState::Burned => "checkout-burned",
        ReservationState::Reserved => "not-reserved",
    }
}

impl From<Problem> for ApiError {
    /// A problem another node answered, passed on unchanged.
    fn from(p: Problem) -> Self {
        ApiError {
            status: StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_GATEWAY),
            code: p.code.into(),
            detail: p.detail,
            available: p.available,
            retry_after: None,
        }
    }
}

impl ApiError {
    /// The problem+json body of this error.
    pub fn problem(&self) -> Problem {
        Problem {
            kind: format!("urn:larder:problem:{}", self.code),
            title: self
                .status
                .canonical_reason()
                .unwrap_or("error")
                .to_string(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.to_string(),
            available: self.available,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.problem();
        let mut resp = (self.status, serde_json::to_vec(&body).unwrap_or_default()).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}
