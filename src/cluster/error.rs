//! What a protocol step can fail with, by party.

use crate::generate::GenerateError;
use crate::material::BatchId;
use crate::store::{ReservationState, StoreError};
use crate::wire::{Code, Problem};

/// A party, named for errors: `party 2`, or `party 2 (hospital-b)` when it has a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartyName {
    pub party: u8,
    pub name: Option<String>,
}

impl std::fmt::Display for PartyName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(n) => write!(f, "party {} ({n})", self.party),
            None => write!(f, "party {}", self.party),
        }
    }
}

/// Why a party refused a step.
#[derive(Debug)]
pub enum Refusal {
    /// Its store, on this machine, refused.
    Store(Box<StoreError>),
    /// Its node answered with a problem.
    Problem(Box<Problem>),
}

impl Refusal {
    pub fn code(&self) -> Code {
        match self {
            Refusal::Store(e) => store_problem(e).1,
            Refusal::Problem(p) => p.code(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Store(e) => e.fmt(f),
            Refusal::Problem(p) => write!(f, "{} ({})", p.detail, p.code),
        }
    }
}

/// What went wrong in a protocol step.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("{at}: {step}: {refusal}")]
    Refused {
        at: PartyName,
        step: &'static str,
        refusal: Refusal,
    },
    /// The party could not be reached, or did not answer as a node does.
    #[error("{at}: {step}: {detail}")]
    Unavailable {
        at: PartyName,
        step: &'static str,
        detail: String,
        /// The HTTP status it answered with, if it answered.
        status: Option<u16>,
    },
    #[error("{at} does not hold batch {batch}")]
    NotStaged { at: PartyName, batch: BatchId },
    #[error("generation failed: {0}")]
    Generate(#[from] GenerateError),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, ProtocolError>;

impl ProtocolError {
    /// The problem code this error is answered with.
    pub fn code(&self) -> Code {
        match self {
            ProtocolError::Refused { refusal, .. } => refusal.code(),
            ProtocolError::Unavailable { .. } => Code::PartyUnavailable,
            ProtocolError::NotStaged { .. } => Code::NotStaged,
            ProtocolError::Generate(_) | ProtocolError::Internal(_) => Code::Internal,
        }
    }

    /// Whether trying again later may succeed: the party could not be reached, or said it is
    /// unavailable (a party it depends on is down, or it is overloaded).
    pub fn is_transient(&self) -> bool {
        match self {
            ProtocolError::Unavailable { status, .. } => {
                status.is_none_or(|s| matches!(s, 502..=504 | 408 | 429))
            }
            ProtocolError::Refused {
                refusal: Refusal::Problem(p),
                ..
            } => matches!(p.status, 502..=504 | 408 | 429),
            _ => false,
        }
    }

    /// A copy, for each caller of a group that failed as one. A store's own error cannot be
    /// copied and becomes its text.
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            ProtocolError::Refused {
                at,
                step,
                refusal: Refusal::Problem(p),
            } => ProtocolError::Refused {
                at: at.clone(),
                step,
                refusal: Refusal::Problem(p.clone()),
            },
            ProtocolError::Unavailable {
                at,
                step,
                detail,
                status,
            } => ProtocolError::Unavailable {
                at: at.clone(),
                step,
                detail: detail.clone(),
                status: *status,
            },
            ProtocolError::NotStaged { at, batch } => ProtocolError::NotStaged {
                at: at.clone(),
                batch: *batch,
            },
            other => ProtocolError::Internal(other.to_string()),
        }
    }

    /// A refusal by the store of party `at`.
    pub(crate) fn store<'a>(
        at: &'a PartyName,
        step: &'static str,
    ) -> impl Fn(StoreError) -> Self + 'a {
        move |e| ProtocolError::Refused {
            at: at.clone(),
            step,
            refusal: Refusal::Store(Box::new(e)),
        }
    }
}

/// The HTTP status and problem code a store error is answered with, and classified by.
pub fn store_problem(e: &StoreError) -> (u16, Code) {
    match e {
        StoreError::Underrun { .. } => (503, Code::Underrun),
        StoreError::Conflict(_) => (409, Code::CheckoutConflict),
        StoreError::Gone { state, .. } | StoreError::NotReserved { state, .. } => {
            (410, gone_code(*state))
        }
        StoreError::UnknownCheckout(_) => (404, Code::UnknownCheckout),
        StoreError::Unconfirmed(_) => (409, Code::NotConfirmed),
        StoreError::BadCheckoutId | StoreError::ZeroCount => (400, Code::BadRequest),
        StoreError::RangeUnavailable { .. } => (409, Code::RangeUnavailable),
        StoreError::UnknownBatch(_) => (404, Code::UnknownBatch),
        StoreError::BatchMismatch(_) => (409, Code::BatchMismatch),
        StoreError::IllegalTransition { .. } => (409, Code::IllegalTransition),
        StoreError::Format(_) => (400, Code::BadBatch),
        StoreError::WrongParty { .. } => (400, Code::WrongParty),
        StoreError::GeneratorRefused { .. } => (403, Code::GeneratorRefused),
        e if e.is_disk_full() => (507, Code::InsufficientStorage),
        _ => (500, Code::Internal),
    }
}

/// The code of a checkout that can no longer be served at a party, by its state there.
pub fn gone_code(state: ReservationState) -> Code {
    match state {
        ReservationState::Consumed => Code::AlreadyConsumed,
        ReservationState::Released => Code::CheckoutReleased,
        ReservationState::Burned => Code::CheckoutBurned,
        ReservationState::Reserved => Code::NotReserved,
    }
}
