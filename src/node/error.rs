//! API errors as `application/problem+json` (RFC 9457) with a stable machine-readable code.

use crate::store::{ReservationState, StoreError};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

pub use crate::wire::{Code, Problem};

/// An error a handler returns.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: Code,
    pub detail: String,
    pub available: Option<u64>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: Code, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            detail: detail.into(),
            available: None,
            retry_after: None,
        }
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Code::BadRequest, detail)
    }
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            Code::Unauthenticated,
            "a valid bearer token is required",
        )
    }
    pub fn forbidden(code: Code, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, detail)
    }
    pub fn unavailable(detail: impl Into<String>) -> Self {
        ApiError {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Code::PartyUnavailable,
                detail,
            )
        }
    }
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, Code::Internal, detail)
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
                ..ApiError::new(S::SERVICE_UNAVAILABLE, Code::Underrun, detail)
            },
            StoreError::Conflict(_) => ApiError::new(S::CONFLICT, Code::CheckoutConflict, detail),
            StoreError::Gone { state, .. } | StoreError::NotReserved { state, .. } => {
                ApiError::new(S::GONE, gone_code(state), detail)
            }
            StoreError::UnknownCheckout(_) => {
                ApiError::new(S::NOT_FOUND, Code::UnknownCheckout, detail)
            }
            StoreError::Unconfirmed(_) => ApiError {
                retry_after: Some(1),
                ..ApiError::new(S::CONFLICT, Code::NotConfirmed, detail)
            },
            StoreError::BadCheckoutId | StoreError::ZeroCount => ApiError::bad_request(detail),
            StoreError::RangeUnavailable { .. } => {
                ApiError::new(S::CONFLICT, Code::RangeUnavailable, detail)
            }
            StoreError::UnknownBatch(_) => ApiError::new(S::NOT_FOUND, Code::UnknownBatch, detail),
            StoreError::BatchMismatch(_) => ApiError::new(S::CONFLICT, Code::BatchMismatch, detail),
            StoreError::IllegalTransition { .. } => {
                ApiError::new(S::CONFLICT, Code::IllegalTransition, detail)
            }
            StoreError::Format(_) => ApiError::new(S::BAD_REQUEST, Code::BadBatch, detail),
            StoreError::WrongParty { .. } => {
                ApiError::new(S::BAD_REQUEST, Code::WrongParty, detail)
            }
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::internal("the store failed; see the node's log")
            }
        }
    }
}

/// The code of a `410` for a checkout that can no longer be served here, by its state.
pub fn gone_code(state: ReservationState) -> Code {
    match state {
        ReservationState::Consumed => Code::AlreadyConsumed,
        ReservationState::Released => Code::CheckoutReleased,
        ReservationState::Burned => Code::CheckoutBurned,
        ReservationState::Reserved => Code::NotReserved,
    }
}

impl From<Problem> for ApiError {
    /// A problem another node answered, passed on unchanged.
    fn from(p: Problem) -> Self {
        ApiError {
            status: StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_GATEWAY),
            code: p.code(),
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
            code: self.code.as_str().to_string(),
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
