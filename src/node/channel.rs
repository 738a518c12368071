//! The node-to-node message channel that generators without a dealer talk over: a node `PUT`s
//! a message to another at `/v1/internal/messages/{session}/{seq}`; the receiving node keeps
//! it in its mailbox until its generator asks for it. [`NodeChannel`] is a
//! [`crate::generate::Channel`] over it, for a generator running on a blocking thread.
//!
//! A session is one batch (its id); each direction numbers its messages from 0, so they are
//! taken in the order they were sent, and a message resent after a lost answer is the same
//! message. Messages are authenticated as any node-to-node call (the sender's node token) and
//! bounded in size and in total; unclaimed ones are dropped after [`MESSAGE_TTL`].

use super::error::{ApiError, Code};
use super::extract::{read_body, STAGE_BODY_TIMEOUT, STAGE_LIMIT};
use super::{Caller, NodeState};
use crate::cluster::Party;
use crate::generate::{Channel, GenerateError};
use crate::wire::schema::Binary;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// How long an unclaimed message is kept, and how long a generator waits for one.
pub const MESSAGE_TTL: Duration = Duration::from_secs(600);

/// How long a generator waits for another party's next message (a party that failed makes
/// the others give up after this).
pub const RECV_WAIT: Duration = Duration::from_secs(120);

/// Most bytes of unclaimed messages a node keeps at once.
pub const MAILBOX_BYTES: usize = 2 << 30;

type Key = (String, u8, u64);

/// Messages from other nodes, waiting for this node's generators.
#[derive(Default)]
pub struct Mailbox {
    held: Mutex<HashMap<Key, (Instant, Bytes)>>,
    /// Sessions given up (a party failed): their generators stop waiting at once.
    aborted: Mutex<HashMap<String, Instant>>,
    arrived: tokio::sync::Notify,
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mailbox(..)")
    }
}

impl Mailbox {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<Key, (Instant, Bytes)>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps a message; `false` if the mailbox is full (after dropping expired ones). A
    /// message of an aborted session is dropped (and counts as kept).
    pub fn put(&self, session: &str, from: u8, seq: u64, message: Bytes) -> bool {
        let mut held = self.held();
        // Under the mailbox's lock, so an abort cannot slip between the check and the insert.
        if self.aborted().contains_key(session) {
            return true;
        }
        held.retain(|_, (at, _)| at.elapsed() < MESSAGE_TTL);
        let used: usize = held.values().map(|(_, m)| m.len()).sum();
        if used + message.len() > MAILBOX_BYTES {
            return false;
        }
        held.insert((session.to_string(), from, seq), (Instant::now(), message));
        drop(held);
        self.arrived.notify_waiters();
        true
    }

    fn aborted(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.aborted.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `session` was given up.
    pub fn is_aborted(&self, session: &str) -> bool {
        self.aborted().contains_key(session)
    }

    /// Gives up `session`: its waiting and later `take`s return nothing, and its messages are
    /// dropped.
    pub fn abort(&self, session: &str) {
        // Locks in the order `put` takes them: the mailbox, then the aborted sessions.
        let mut held = self.held();
        {
            let mut aborted = self.aborted();
            aborted.retain(|_, at| at.elapsed() < MESSAGE_TTL);
            aborted.insert(session.to_string(), Instant::now());
        }
        held.retain(|(s, _, _), _| s != session);
        drop(held);
        self.arrived.notify_waiters();
    }

    /// Takes the message `seq` of `session` from `from`, waiting for it until `deadline`
    /// (nothing if the session is aborted meanwhile).
    pub async fn take(
        &self,
        session: &str,
        from: u8,
        seq: u64,
        deadline: Instant,
    ) -> Option<Bytes> {
        let key = (session.to_string(), from, seq);
        loop {
            let arrived = self.arrived.notified();
            if self.aborted().contains_key(session) {
                return None;
            }
            if let Some((_, m)) = self.held().remove(&key) {
                return Some(m);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            if tokio::time::timeout(left, arrived).await.is_err() {
                return self.held().remove(&key).map(|(_, m)| m);
            }
        }
    }
}

/// Messages one channel has in flight at most; a further send waits for the oldest.
const IN_FLIGHT: usize = 8;

type Delivery = tokio::task::JoinHandle<Result<(), GenerateError>>;

/// A generator's channel at this node, for one session (batch): messages to the other nodes
/// over HTTPS, delivered in the background while the generator computes (each carries its
/// number, so the receiver's mailbox orders them), messages from them out of this node's
/// mailbox. Call it from a blocking thread.
pub struct NodeChannel {
    st: Arc<NodeState>,
    session: String,
    runtime: tokio::runtime::Handle,
    sent: Vec<u64>,
    taken: Vec<u64>,
    in_flight: std::collections::VecDeque<Delivery>,
}

impl NodeChannel {
    pub fn new(st: Arc<NodeState>, session: String, runtime: tokio::runtime::Handle) -> Self {
        let n = st.cluster.parties() as usize;
        NodeChannel {
            st,
            session,
            runtime,
            sent: vec![0; n],
            taken: vec![0; n],
            in_flight: std::collections::VecDeque::new(),
        }
    }

    /// Waits for the oldest delivery in flight.
    fn settle_one(&mut self) -> Result<(), GenerateError> {
        let Some(d) = self.in_flight.pop_front() else {
            return Ok(());
        };
        self.runtime
            .block_on(d)
            .map_err(|e| GenerateError::Channel {
                party: self.st.me,
                what: format!("a delivery task failed: {e}"),
            })?
    }

    /// Collects the deliveries already over, reporting the first that failed.
    fn settle_finished(&mut self) -> Result<(), GenerateError> {
        while self.in_flight.front().is_some_and(|d| d.is_finished()) {
            self.settle_one()?;
        }
        Ok(())
    }
}

impl Drop for NodeChannel {
    fn drop(&mut self) {
        // A generator that failed leaves nothing running on its behalf.
        for d in &self.in_flight {
            d.abort();
        }
    }
}

impl Channel for NodeChannel {
    fn me(&self) -> u8 {
        self.st.me
    }

    fn send(&mut self, to: u8, message: Zeroizing<Vec<u8>>) -> Result<(), GenerateError> {
        let fail = |what: String| GenerateError::Channel { party: to, what };
        let peer = self
            .st
            .others
            .iter()
            .find(|p| p.at().party == to)
            .ok_or_else(|| fail("no such party".into()))?
            .clone();
        self.settle_finished()?;
        while self.in_flight.len() >= IN_FLIGHT {
            self.settle_one()?;
        }
        let seq = self.sent[to as usize];
        // The body keeps the secret buffer, zeroized once sent.
        let body = Bytes::from_owner(Secret(message));
        let session = self.session.clone();
        self.in_flight.push_back(self.runtime.spawn(async move {
            peer.send_message(&session, seq, body)
                .await
                .map_err(|e| GenerateError::Channel {
                    party: to,
                    what: e.to_string(),
                })
        }));
        self.sent[to as usize] += 1;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), GenerateError> {
        while !self.in_flight.is_empty() {
            self.settle_one()?;
        }
        Ok(())
    }

    fn recv(&mut self, from: u8) -> Result<Zeroizing<Vec<u8>>, GenerateError> {
        self.settle_finished()?;
        let seq = *self
            .taken
            .get(from as usize)
            .ok_or_else(|| GenerateError::Channel {
                party: from,
                what: "no such party".into(),
            })?;
        let deadline = Instant::now() + RECV_WAIT;
        // Waits in slices, so a message of ours that could not be delivered (which the other
        // party may be waiting for) fails this generator at once rather than after RECV_WAIT.
        let m = loop {
            let slice = (Instant::now() + Duration::from_millis(500)).min(deadline);
            let got = self
                .runtime
                .block_on(self.st.mailbox.take(&self.session, from, seq, slice));
            if let Some(m) = got {
                break m;
            }
            self.settle_finished()?;
            if Instant::now() >= deadline || self.st.mailbox.is_aborted(&self.session) {
                return Err(GenerateError::Channel {
                    party: from,
                    what: format!(
                        "no message within {} s, or the batch was given up",
                        RECV_WAIT.as_secs()
                    ),
                });
            }
        };
        self.taken[from as usize] += 1;
        Ok(Zeroizing::new(m.to_vec()))
    }
}

struct Secret(Zeroizing<Vec<u8>>);

impl AsRef<[u8]> for Secret {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// `PUT /v1/internal/messages/{session}/{seq}`: another node's message for this node's
/// generator.
#[utoipa::path(
    put,
    path = "/v1/internal/messages/{session}/{seq}",
    operation_id = "sendMessage",
    summary = "A message from another node for this node's generator (generators without a dealer)",
    security(("nodeToken" = [])),
    params(("session" = String, Path, description = "the batch the message is about", min_length = 1, max_length = 64), ("seq" = String, Path, description = "the message's number from this sender in this session, from 0", pattern = "^[0-9]{1,19}$")),
    request_body(content = Binary, content_type = "application/octet-stream"),
    responses(
        (status = 204, description = "kept until the generator takes it"),
        (status = 400, description = "bad message number or session"),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "not a node"),
        (status = 413, description = "too large"),
        (status = 503, description = "the mailbox is full"),
    )
)]
pub(super) async fn receive(
    State(st): State<Arc<NodeState>>,
    caller: Caller,
    Path((session, seq)): Path<(String, String)>,
    body: axum::body::Body,
) -> Result<StatusCode, ApiError> {
    let Caller::Node(from) = caller else {
        return Err(ApiError::forbidden(
            Code::NodesOnly,
            "messages come from the consortium's nodes",
        ));
    };
    let seq: u64 = seq
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{seq:?} is not a message number")))?;
    if session.is_empty() || session.len() > 64 {
        return Err(ApiError::bad_request("a session is 1 to 64 characters"));
    }
    let message = read_body(body, STAGE_LIMIT, STAGE_BODY_TIMEOUT).await?;
    if !st.mailbox.put(&session, from, seq, message) {
        return Err(ApiError::unavailable(
            "this node's mailbox is full; try again",
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/internal/messages/{session}`: the leader gives up a batch in the making (a party
/// failed); this node's generator stops waiting for its messages.
#[utoipa::path(
    delete,
    path = "/v1/internal/messages/{session}",
    operation_id = "abortSession",
    summary = "Give up a batch the nodes are making (leader to every node)",
    security(("nodeToken" = [])),
    params(("session" = String, Path, description = "the batch given up", min_length = 1, max_length = 64)),
    responses(
        (status = 204, description = "given up here"),
        (status = 400, description = "bad session"),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "not the leader"),
    )
)]
pub(super) async fn abort(
    State(st): State<Arc<NodeState>>,
    _: super::extract::FromLeader,
    Path(session): Path<String>,
) -> Result<StatusCode, ApiError> {
    if session.is_empty() || session.len() > 64 {
        return Err(ApiError::bad_request("a session is 1 to 64 characters"));
    }
    st.mailbox.abort(&session);
    Ok(StatusCode::NO_CONTENT)
}
