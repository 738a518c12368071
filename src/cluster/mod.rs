//! The consortium protocol, written once: batch commit (stage, commit, abandon), checkout
//! (allocate, hold, confirm), expiry and the settling of staged batches.
//!
//! # Who runs it, and over what
//! A coordinator runs each step against the parties through [`Party`] (and the leader through
//! [`Leader`]): the leader's node for checkouts, commits and expiry; the dealer for staging;
//! every party for its own stale staged batches; the CLI's local mode for all of them. A party
//! is reached one of two ways, and the protocol does not know which:
//! - [`LocalParty`]: a party store on this machine (`larder init/deal/take`, and a node's own
//!   store);
//! - [`RemoteParty`]: another party's node over HTTPS.
//!
//! Both group concurrent requests ([`combine`]): allocations and confirmations share one flush,
//! and the reservations a follower must hold travel to it a group per request.
//!
//! # Rules (`docs/protocol.md` has the failure cases)
//! 1. **Commit**: a batch is staged durably at every party, then made available at the
//!    leader (the commit point), then at the followers. Anything staged but not available at
//!    the leader is undecided; the leader's copy decides it ([`settle_staged`]).
//! 2. **Checkout**: the leader persists a reservation before any follower hears of it, and
//!    confirms it only once every follower holds it durably; an unconfirmed reservation is
//!    never served.
//! 3. **Expiry** releases a reservation to stock only if no party downloaded it; otherwise
//!    every party burns it, so its items are never allocated again.
//! 4. **The correction party** of a batch (the party that stores the explicit values, see
//!    `PoolSpec::correction_party`) rotates with the number of batches of the pool the leader
//!    has ever held ([`next_batch_index`]), the same rule whoever deals and however.
//!
//! Nothing here branches on an error's text: a party's refusal carries a typed [`crate::wire::Code`].

mod batch;
mod checkout;
pub mod combine;
mod dealer;
mod error;
mod local;
mod observe;
mod remote;

pub use batch::{
    commit_batch, deal, deliver, generate_batches, generate_with_parties, next_batch_index,
    settle_staged, Batches, DealPlan, Settled,
};
pub use checkout::{checkout, confirmed_at_leader, expire, Expired};
pub use dealer::DealerClient;
pub use error::{gone_code, store_problem, PartyName, ProtocolError, Refusal, Result};
pub use local::LocalParty;
pub use observe::{peer_label, PeerMetrics, BUCKETS as LATENCY_BUCKETS};
pub use remote::{RemoteParty, Retry};

use crate::generate::PartyBatch;
use crate::material::{BatchId, PoolSpec};
use crate::store::{BatchState, PoolStock, Reservation};
use crate::wire::{CheckoutRequest, ExpireOutcome};
use std::collections::BTreeMap;
use std::future::Future;

/// What asking a party to abort a staged batch found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abort {
    /// Dropped there (or never held).
    Aborted,
    /// Already available (or used up) there: committed, it can no longer be aborted.
    Committed,
}

/// One party, as the coordinator of a protocol step sees it. Every call is idempotent.
pub trait Party: Send + Sync {
    /// Which party this is, for errors and logs.
    fn at(&self) -> &PartyName;

    /// Stores this party's share of a batch durably, as staged.
    fn stage(&self, share: PartyBatch) -> impl Future<Output = Result<()>> + Send;

    /// The state of a batch here; `None` if this party does not hold it.
    fn batch_state(&self, id: BatchId) -> impl Future<Output = Result<Option<BatchState>>> + Send;

    /// Makes a staged batch available here (a no-op if it is).
    fn activate(&self, id: BatchId) -> impl Future<Output = Result<()>> + Send;

    /// Drops a staged batch here, unless it is available already.
    fn abort(&self, id: BatchId) -> impl Future<Output = Result<Abort>> + Send;

    /// Stock per pool here.
    fn stock(&self) -> impl Future<Output = Result<BTreeMap<PoolSpec, PoolStock>>> + Send;

    /// Holds the leader's reservation durably (unconfirmed).
    fn hold(&self, reservation: Reservation) -> impl Future<Output = Result<()>> + Send;

    /// Records that every party holds these checkouts. Delivery to another node is best effort
    /// and may finish after this returns: a follower also asks the leader before serving.
    fn confirmed(&self, checkouts: Vec<String>) -> impl Future<Output = Result<()>> + Send;

    /// A reservation as this party holds it; `None` if it never heard of it.
    fn reservation(&self, id: String) -> impl Future<Output = Result<Option<Reservation>>> + Send;

    /// Releases a reservation to stock here unless it was downloaded here.
    fn expire(&self, id: String) -> impl Future<Output = Result<ExpireOutcome>> + Send;

    /// Destroys a reservation's items unused here (downloaded elsewhere). `true` if it did;
    /// `false` if it was not reserved here (downloaded, released, burned or unknown).
    fn burn(&self, id: String) -> impl Future<Output = Result<bool>> + Send;
}

/// The leader's own steps: only its store allocates, confirms and settles.
pub trait Leader: Party {
    /// Allocates (or finds, for the same id and parameters) a checkout's reservation, durably.
    fn allocate(&self, req: CheckoutRequest) -> impl Future<Output = Result<Reservation>> + Send;

    /// Marks a reservation that every party holds as confirmed, durably.
    fn confirm(&self, id: String) -> impl Future<Output = Result<Reservation>> + Send;

    /// Closes an expired reservation's bookkeeping once every party has settled it.
    fn settle(&self, id: String) -> impl Future<Output = Result<()>> + Send;
}
