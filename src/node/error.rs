//! API errors as `application/problem+json` (RFC 9457) with a stable machine-readable code.

use crate::cluster::ProtocolError;
use crate::store::StoreError;
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
        let (status, code) = crate::cluster::store_problem(&e);
        let detail = e.to_string();
        match e {
            StoreError::Underrun { available, .. } => ApiError {
                available: Some(available),
                retry_after: Some(60),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, detail)
            },
            StoreError::Unconfirmed(_) => ApiError {
                retry_after: Some(1),
                ..ApiError::new(StatusCode::CONFLICT, code, detail)
            },
            _ if code == Code::InsufficientStorage => {
                tracing::error!(error = %e, "disk full: this party cannot store more until space is freed");
                ApiError::new(StatusCode::INSUFFICIENT_STORAGE, code, detail)
            }
            _ if code == Code::Internal => {
                tracing::error!(error = %e, "store failure");
                ApiError::internal("the store failed; see the node's log")
            }
            _ => ApiError::new(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                code,
                detail,
            ),
        }
    }
}

impl From<ProtocolError> for ApiError {
    /// This node's own store's refusals keep their words; another party's name it.
    fn from(e: ProtocolError) -> Self {
        use crate::cluster::Refusal;
        match e {
            ProtocolError::Refused {
                refusal: Refusal::Store(e),
                ..
            } => ApiError::from(*e),
            ProtocolError::Refused {
                at,
                refusal: Refusal::Problem(mut p),
                ..
            } => {
                p.detail = format!("{at}: {}", p.detail);
                ApiError::from(*p)
            }
            // Logged where it happened (`cluster::RemoteParty`).
            ProtocolError::Unavailable { .. } => ApiError::unavailable(e.to_string()),
            ProtocolError::NotStaged { .. } => {
                ApiError::new(StatusCode::CONFLICT, Code::NotStaged, e.to_string())
            }
            ProtocolError::Generate(_) | ProtocolError::Internal(_) => {
                tracing::error!(error = %e, "protocol failure");
                ApiError::internal(e.to_string())
            }
        }
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
            retry_after: p.retry_after_seconds,
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
            retry_after_seconds: self.retry_after,
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
        // For the metrics (`metrics::observe`).
        resp.extensions_mut().insert(self.code);
        resp
    }
}
