//! Request and response bodies of the HTTP API, shared by the node, the Rust client and the
//! CLI.

use crate::material::{PoolSpec, ShareRange};
use crate::store::{PoolStock, Reservation, ReservationState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `POST /v1/checkouts`: reserve `count` items of `pool` under a client-chosen `id`, the same
/// at every party.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    pub id: String,
    pub pool: PoolSpec,
    pub count: u64,
}

/// A checkout as one party sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutView {
    pub id: String,
    pub pool: PoolSpec,
    pub count: u64,
    /// The items, identical at every party.
    pub ranges: Vec<ShareRange>,
    /// State at the answering party.
    pub state: ReservationState,
    /// Whether every party is known to hold it (shares can be downloaded).
    pub confirmed: bool,
    pub reserved_at: u64,
    /// When an undownloaded reservation goes back to stock (Unix seconds).
    pub expires_at: u64,
    /// The answering party.
    pub party: u8,
}

impl CheckoutView {
    pub fn new(r: &Reservation, party: u8, ttl: u64) -> Self {
        CheckoutView {
            id: r.checkout.clone(),
            pool: r.pool,
            count: r.count,
            ranges: r.ranges.clone(),
            state: r.state,
            confirmed: r.confirmed,
            reserved_at: r.reserved_at,
            expires_at: r.reserved_at + ttl,
            party,
        }
    }
}

/// `GET /v1/stock`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockView {
    pub party: u8,
    pub pools: BTreeMap<PoolSpec, PoolStock>,
}

/// `GET /v1/health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthView {
    pub consortium: String,
    pub party: u8,
    /// Parties in the consortium.
    pub parties: u8,
    pub name: String,
    pub leader: bool,
    pub version: String,
}

/// `GET /v1/internal/batches/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchStateView {
    pub batch: crate::material::BatchId,
    pub state: crate::store::BatchState,
}

/// `POST /v1/internal/reservations`: the leader's reservations for a follower to hold, many
/// checkouts at a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    pub reservations: Vec<Reservation>,
}

/// The answer to an [`ApplyRequest`]: one entry per reservation, in order; `problem` is
/// `None` when it is held durably.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyResult {
    pub checkout: String,
    #[serde(default)]
    pub problem: Option<crate::node::error::Problem>,
}

/// `POST /v1/internal/confirmations`: checkouts every party holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    pub checkouts: Vec<String>,
}

/// `POST /v1/internal/reservations/{id}/expire`: what the party did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpireOutcome {
    /// Not downloaded here: items back to this party's stock.
    Released,
    /// Downloaded here already.
    Consumed,
    /// Burned here (not downloaded, but downloaded elsewhere).
    Burned,
    /// This party never held it.
    Unknown,
}
