//! A party reached over HTTPS at its node (`/v1/internal/...`), as another node or the dealer.

use super::combine::Combiner;
use super::{Abort, Party, PartyName, ProtocolError, Refusal, Result};
use crate::auth::Token;
use crate::generate::PartyBatch;
use crate::material::{BatchId, PoolSpec};
use crate::store::{BatchState, PoolStock, Reservation};
use crate::wire::{
    path_segment, ApplyRequest, ApplyResult, BatchStateView, CheckoutRequest, Code, ConfirmRequest,
    ExpireOutcome, NextPiece, Piece, PieceRequest, Problem, StockView,
};
use bytes::Bytes;
use reqwest::{Method, StatusCode};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Largest group of reservations (or confirmations) sent to a node in one request.
const GROUP: usize = 64;

/// How a failed call is tried again. Every call is idempotent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Once, on a fresh connection, if it failed on its way (typically a pooled connection to
    /// a node that has restarted since); a timeout is not retried: the party is slow or down.
    /// For calls between nodes, whose caller is waiting.
    Once,
    /// Whatever may pass ([`ProtocolError::is_transient`]) until this long after the first
    /// try, waiting 0.2 s between tries and doubling up to 5 s. For the dealer.
    Until(Duration),
}

struct Inner {
    at: PartyName,
    base: String,
    token: Token,
    http: reqwest::Client,
    retry: Retry,
    /// A node's own store: its chain head goes with every call, the callee's is noted.
    witness: Option<Arc<crate::store::Store>>,
    /// Where calls are counted, under `label` (see [`super::PeerMetrics`]).
    observe: Option<Arc<super::PeerMetrics>>,
    label: String,
}

/// Another party's node.
#[derive(Clone)]
pub struct RemoteParty {
    inner: Arc<Inner>,
    holds: Arc<Combiner<Arc<Inner>, Reservation, Result<()>>>,
    notices: Arc<Combiner<Arc<Inner>, String, ()>>,
}

impl std::fmt::Debug for RemoteParty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteParty")
            .field("at", &self.inner.at)
            .field("base", &self.inner.base)
            .finish_non_exhaustive()
    }
}

/// A request body.
enum Body {
    Json(Bytes),
    Octets(Bytes),
}

impl RemoteParty {
    /// The node of party `at` at `base`, called with `token` over `http`.
    pub fn new(
        at: PartyName,
        base: &str,
        token: Token,
        http: reqwest::Client,
        retry: Retry,
    ) -> Self {
        let label = super::peer_label(&at);
        RemoteParty {
            inner: Arc::new(Inner {
                at,
                label,
                observe: None,
                base: base.trim_end_matches('/').to_string(),
                token,
                http,
                retry,
                witness: None,
            }),
            holds: Combiner::new(GROUP, |inner: &Arc<Inner>, group| {
                hold_group(inner.clone(), group)
            }),
            notices: Combiner::new(GROUP, |inner: &Arc<Inner>, ids| {
                notify_group(inner.clone(), ids)
            }),
        }
    }

    /// Calls from a node: each carries `store`'s audit chain head, and each answer's head (the
    /// callee's) is recorded in `store` (see [`crate::audit`]). Set before the first call.
    #[must_use]
    pub fn witnessing(mut self, store: Arc<crate::store::Store>) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("witnessing is set before the party is shared")
            .witness = Some(store);
        self
    }

    /// Calls are counted in `metrics`. Set before the first call.
    #[must_use]
    pub fn observed(mut self, metrics: Arc<super::PeerMetrics>) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("observation is set before the party is shared")
            .observe = Some(metrics);
        self
    }

    /// This party's `peer` label in the metrics.
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// Asks the node who it is (`GET /v1/health`), giving up after `within`: the nodes'
    /// probe of each other, which keeps `larder_peer_up` current and readiness honest.
    ///
    /// # Errors
    /// No answer within `within`, or a bad one.
    pub async fn health(&self, within: Duration) -> Result<crate::wire::HealthView> {
        let url = format!("{}/v1/health", self.inner.base);
        match self
            .inner
            .try_once("probing health", &Method::GET, &url, None, Some(within))
            .await
        {
            Ok(Some(h)) => Ok(h),
            Ok(None) => Err(self.inner.bad_answer("probing health", "an empty answer")),
            Err((e, _)) => Err(e),
        }
    }

    /// The node of a party of the consortium file, named as it names it.
    pub fn of(
        party: &crate::config::PartyEntry,
        token: Token,
        http: reqwest::Client,
        retry: Retry,
    ) -> Self {
        let at = PartyName {
            party: party.id,
            name: Some(party.name.clone()),
        };
        Self::new(at, &party.url, token, http, retry)
    }

    /// This party's id.
    pub fn party(&self) -> u8 {
        self.inner.at.party
    }

    /// The leader asks a party for its generation windows.
    ///
    /// # Errors
    /// The party's refusal, or it cannot be reached.
    pub async fn windows(&self) -> Result<crate::wire::SiteWindows> {
        self.inner
            .answer(
                "asking for windows",
                Method::GET,
                "/v1/internal/windows",
                None,
            )
            .await
    }

    /// A follower asks the leader for its forecast.
    ///
    /// # Errors
    /// The leader's refusal, or it cannot be reached.
    pub async fn forecast(&self) -> Result<crate::wire::ForecastView> {
        self.inner
            .answer("asking for the forecast", Method::GET, "/v1/forecast", None)
            .await
    }

    /// Asks the leader's node to commit a batch staged at every party.
    ///
    /// # Errors
    /// `not-staged` if some party does not hold it; the leader's other refusals.
    pub async fn commit(&self, id: BatchId) -> Result<()> {
        let path = format!("/v1/internal/batches/{id}/commit");
        self.inner
            .call::<BatchStateView>("committing", Method::POST, &path, None)
            .await
            .map(|_| ())
    }

    /// A dealer worker asks the leader's node for the next piece of a generation job.
    ///
    /// # Errors
    /// The leader's refusal (wrong credential, not the leader), or it cannot be reached.
    pub async fn next_piece(&self, req: &PieceRequest) -> Result<NextPiece> {
        let body = json(req)?;
        self.inner
            .answer(
                "asking for work",
                Method::POST,
                "/v1/internal/jobs/next",
                Some(body),
            )
            .await
    }

    /// Sends message `seq` of `session` to this node's mailbox (generators without a dealer).
    ///
    /// # Errors
    /// The node's refusal, or it cannot be reached.
    pub async fn send_message(&self, session: &str, seq: u64, message: Bytes) -> Result<()> {
        let path = format!("/v1/internal/messages/{}/{seq}", path_segment(session));
        self.inner
            .call::<serde_json::Value>(
                "sending a message",
                Method::PUT,
                &path,
                Some(Body::Octets(message)),
            )
            .await
            .map(|_| ())
    }

    /// The leader gives up a batch in the making at this node (see `node::channel`).
    ///
    /// # Errors
    /// The node cannot be reached.
    pub async fn abort_session(&self, session: &str) -> Result<()> {
        let path = format!("/v1/internal/messages/{}", path_segment(session));
        self.inner
            .call::<serde_json::Value>("giving up a batch", Method::DELETE, &path, None)
            .await
            .map(|_| ())
    }

    /// The leader asks this node to make its share of a piece of a job run by the parties'
    /// own generators, and stage it.
    ///
    /// # Errors
    /// The node's refusal (its generator failed), or it cannot be reached.
    pub async fn make_piece(&self, piece: &Piece) -> Result<()> {
        let body = json(piece)?;
        self.inner
            .call::<BatchStateView>(
                "making its share",
                Method::POST,
                "/v1/internal/pieces",
                Some(body),
            )
            .await
            .map(|_| ())
    }

    /// The leader has this node set up its keys of a PRSS epoch with the others, over the
    /// message channel's `session`.
    ///
    /// # Errors
    /// The node's refusal (the setup failed), or it cannot be reached.
    pub async fn prss_setup(&self, epoch: u32, session: &str) -> Result<()> {
        let body = json(&crate::wire::KeySetup {
            session: session.to_string(),
        })?;
        self.inner
            .call::<serde_json::Value>(
                "setting up PRSS keys",
                Method::POST,
                &format!("/v1/internal/prss/epochs/{epoch}"),
                Some(body),
            )
            .await
            .map(|_| ())
    }

    /// The leader tells this node a PRSS epoch is current everywhere (it then destroys its
    /// keys of every other epoch).
    ///
    /// # Errors
    /// The node cannot be reached, or refused.
    pub async fn prss_current(&self, epoch: u32) -> Result<()> {
        self.inner
            .call::<serde_json::Value>(
                "making a PRSS epoch current",
                Method::POST,
                &format!("/v1/internal/prss/epochs/{epoch}/current"),
                None,
            )
            .await
            .map(|_| ())
    }

    /// The leader retires a PRSS epoch at this node.
    ///
    /// # Errors
    /// The node cannot be reached, or failed.
    pub async fn prss_retire(&self, epoch: u32) -> Result<crate::wire::RetireReport> {
        self.inner
            .answer(
                "retiring a PRSS epoch",
                Method::POST,
                &format!("/v1/internal/prss/epochs/{epoch}/retire"),
                None,
            )
            .await
    }

    /// A follower passes an engine's checkout to the leader's node, which runs the protocol.
    ///
    /// # Errors
    /// The leader's answer.
    pub async fn forward_checkout(&self, req: &CheckoutRequest) -> Result<Reservation> {
        let body = json(req)?;
        self.inner
            .answer(
                "checking out",
                Method::POST,
                "/v1/internal/checkouts",
                Some(body),
            )
            .await
    }
}

fn json(v: &impl serde::Serialize) -> Result<Body> {
    serde_json::to_vec(v)
        .map(|b| Body::Json(b.into()))
        .map_err(|e| ProtocolError::Internal(format!("encoding a request: {e}")))
}

/// Sends a group of reservations in one request: one flush at the follower.
async fn hold_group(inner: Arc<Inner>, group: Vec<Reservation>) -> Vec<Result<()>> {
    let n = group.len();
    let ids: Vec<String> = group.iter().map(|r| r.checkout.clone()).collect();
    let step = "holding a reservation";
    let answer = match json(&ApplyRequest {
        reservations: group,
    }) {
        Ok(body) => {
            inner
                .call::<Vec<ApplyResult>>(
                    step,
                    Method::POST,
                    "/v1/internal/reservations",
                    Some(body),
                )
                .await
        }
        Err(e) => Err(e),
    };
    match answer {
        Ok(Some(results)) if results.len() == n => results
            .into_iter()
            .zip(&ids)
            .map(|(r, id)| match r.problem {
                _ if r.checkout != *id => {
                    Err(inner.bad_answer(step, "an answer for the wrong checkout"))
                }
                None => Ok(()),
                Some(problem) => Err(ProtocolError::Refused {
                    at: inner.at.clone(),
                    step,
                    refusal: Refusal::Problem(Box::new(problem)),
                }),
            })
            .collect(),
        Ok(_) => (0..n)
            .map(|_| Err(inner.bad_answer(step, &format!("a bad answer to a group of {n}"))))
            .collect(),
        // One failure for the whole group; each caller gets its own copy.
        Err(e) => (0..n).map(|_| Err(e.duplicate())).collect(),
    }
}

/// Tells a follower a group of checkouts is held everywhere (best effort).
async fn notify_group(inner: Arc<Inner>, checkouts: Vec<String>) -> Vec<()> {
    let n = checkouts.len();
    let body = json(&ConfirmRequest { checkouts });
    let sent = match body {
        Ok(b) => {
            inner
                .call::<serde_json::Value>(
                    "confirming",
                    Method::POST,
                    "/v1/internal/confirmations",
                    Some(b),
                )
                .await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = sent {
        tracing::debug!(error = %e, "confirmations not delivered; the follower will ask");
    }
    vec![(); n]
}

impl Inner {
    fn bad_answer(&self, step: &'static str, what: &str) -> ProtocolError {
        ProtocolError::Unavailable {
            at: self.at.clone(),
            step,
            detail: format!("answered badly: {what}"),
            status: None,
        }
    }

    /// One try: `Err((error, resend))`, where `resend` says a fresh connection may help.
    async fn try_once<T: serde::de::DeserializeOwned>(
        &self,
        step: &'static str,
        method: &Method,
        url: &str,
        body: Option<&Body>,
        timeout: Option<Duration>,
    ) -> std::result::Result<Option<T>, (ProtocolError, bool)> {
        let mut req = self
            .http
            .request(method.clone(), url)
            .bearer_auth(self.token.expose());
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        req = match body {
            Some(Body::Json(b)) => req
                .header("content-type", "application/json")
                .body(b.clone()),
            Some(Body::Octets(b)) => req
                .header("content-type", "application/octet-stream")
                .body(b.clone()),
            None => req,
        };
        if let Some(store) = &self.witness {
            req = req.header(crate::audit::HEAD_HEADER, store.beacon().to_header());
        }
        let started = std::time::Instant::now();
        let sent = req.send().await;
        if let Some(m) = &self.observe {
            match &sent {
                Ok(_) => m.answered(&self.label, started.elapsed().as_secs_f64()),
                Err(_) => m.unanswered(&self.label),
            }
        }
        let resp = sent.map_err(|e| {
            let resend = !e.is_timeout() && !e.is_connect();
            let err = ProtocolError::Unavailable {
                at: self.at.clone(),
                step,
                detail: format!("cannot reach {url}: {e}"),
                status: None,
            };
            (err, resend)
        })?;
        let status = resp.status();
        if let Some(store) = &self.witness {
            let head = resp
                .headers()
                .get(crate::audit::HEAD_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(crate::audit::Beacon::from_header);
            // Only the callee's own head counts (TLS named the callee).
            if let Some(b) = head.filter(|b| b.head.party == self.at.party) {
                if let Some((reported, _)) = store.witness(b.clone()) {
                    crate::audit::rolled_back(b.head.party, reported, &b);
                }
            }
        }
        if status.is_success() {
            if status == StatusCode::NO_CONTENT {
                return Ok(None);
            }
            return resp
                .json::<T>()
                .await
                .map(Some)
                .map_err(|e| (self.bad_answer(step, &e.to_string()), false));
        }
        let text = resp.text().await.unwrap_or_default();
        Err((
            match serde_json::from_str::<Problem>(&text) {
                Ok(p) => ProtocolError::Refused {
                    at: self.at.clone(),
                    step,
                    refusal: Refusal::Problem(Box::new(p)),
                },
                Err(_) => ProtocolError::Unavailable {
                    at: self.at.clone(),
                    step,
                    detail: format!("{url} answered {status}"),
                    status: Some(status.as_u16()),
                },
            },
            false,
        ))
    }

    /// Calls `path` at this party with the retry policy; `None` for an empty answer.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        step: &'static str,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<Option<T>> {
        let url = format!("{}{path}", self.base);
        let until = match self.retry {
            Retry::Until(d) => Some(tokio::time::Instant::now() + d),
            Retry::Once => None,
        };
        let mut wait = Duration::from_millis(200);
        let mut resent = false;
        loop {
            let (e, resend) = match self
                .try_once(step, &method, &url, body.as_ref(), None)
                .await
            {
                Ok(v) => return Ok(v),
                Err(failed) => failed,
            };
            match until {
                None if resend && !resent => {
                    tracing::debug!(party = %self.at, error = %e, "call failed on its way; sending it again");
                    resent = true;
                }
                Some(until) if e.is_transient() && tokio::time::Instant::now() + wait < until => {
                    tracing::warn!(party = %self.at, step, error = %e,
                        retry_in_ms = wait.as_millis() as u64, "party unavailable; trying again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                _ => {
                    if matches!(e, ProtocolError::Unavailable { status: None, .. }) {
                        tracing::warn!(party = self.at.party, name = ?self.at.name, step,
                            error = %e, "party unreachable");
                    }
                    return Err(e);
                }
            }
        }
    }

    /// A call that must answer with a body.
    async fn answer<T: serde::de::DeserializeOwned>(
        &self,
        step: &'static str,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<T> {
        self.call::<T>(step, method, path, body)
            .await?
            .ok_or_else(|| self.bad_answer(step, "an empty answer"))
    }

    /// A call whose refusal with `absent` means the party does not hold the thing asked for.
    async fn lookup<T: serde::de::DeserializeOwned>(
        &self,
        step: &'static str,
        path: &str,
        absent: Code,
    ) -> Result<Option<T>> {
        match self.call::<T>(step, Method::GET, path, None).await {
            Err(e) if e.code() == absent => Ok(None),
            Ok(None) => Err(self.bad_answer(step, "an empty answer")),
            other => other,
        }
    }
}

impl Party for RemoteParty {
    fn at(&self) -> &PartyName {
        &self.inner.at
    }

    async fn stage(&self, share: PartyBatch) -> Result<()> {
        let id = share.header.batch;
        // The share leaves memory zeroized: the body borrows the generator's buffer.
        let body = Body::Octets(Bytes::from_owner(SecretBytes(share.bytes)));
        let path = format!("/v1/internal/batches/{id}");
        self.inner
            .call::<BatchStateView>("staging", Method::PUT, &path, Some(body))
            .await
            .map(|_| ())
    }

    async fn batch_state(&self, id: BatchId) -> Result<Option<BatchState>> {
        let path = format!("/v1/internal/batches/{id}");
        let view: Option<BatchStateView> = self
            .inner
            .lookup("reading a batch", &path, Code::UnknownBatch)
            .await?;
        Ok(view.map(|v| v.state))
    }

    async fn activate(&self, id: BatchId) -> Result<()> {
        let path = format!("/v1/internal/batches/{id}/activate");
        self.inner
            .call::<serde_json::Value>("activating", Method::POST, &path, None)
            .await
            .map(|_| ())
    }

    async fn abort(&self, id: BatchId) -> Result<Abort> {
        let path = format!("/v1/internal/batches/{id}");
        match self
            .inner
            .call::<serde_json::Value>("aborting", Method::DELETE, &path, None)
            .await
        {
            Ok(_) => Ok(Abort::Aborted),
            Err(e) if e.code() == Code::IllegalTransition => Ok(Abort::Committed),
            Err(e) => Err(e),
        }
    }

    async fn stock(&self) -> Result<BTreeMap<PoolSpec, PoolStock>> {
        let view: StockView = self
            .inner
            .answer("reading stock", Method::GET, "/v1/stock", None)
            .await?;
        Ok(view.pools)
    }

    async fn hold(&self, reservation: Reservation) -> Result<()> {
        self.holds
            .submit(self.inner.clone(), reservation)
            .await
            .unwrap_or_else(|| Err(ProtocolError::Internal("replication failed".into())))
    }

    async fn confirmed(&self, checkouts: Vec<String>) -> Result<()> {
        // Not awaited: the follower learns now, or from the leader when its engine downloads.
        for id in checkouts {
            let (notices, inner) = (self.notices.clone(), self.inner.clone());
            tokio::spawn(async move { notices.submit(inner, id).await });
        }
        Ok(())
    }

    async fn reservation(&self, id: String) -> Result<Option<Reservation>> {
        let path = format!("/v1/internal/reservations/{}", path_segment(&id));
        self.inner
            .lookup("reading a reservation", &path, Code::UnknownCheckout)
            .await
    }

    async fn expire(&self, id: String) -> Result<ExpireOutcome> {
        let path = format!("/v1/internal/reservations/{}/expire", path_segment(&id));
        self.inner
            .answer("expiring", Method::POST, &path, None)
            .await
    }

    async fn burn(&self, id: String) -> Result<bool> {
        let path = format!("/v1/internal/reservations/{}/burn", path_segment(&id));
        self.inner
            .call::<serde_json::Value>("burning", Method::POST, &path, None)
            .await
            .map(|_| true)
    }
}

/// A share's bytes as a request body, zeroized once the last copy of the body is gone.
struct SecretBytes(zeroize::Zeroizing<Vec<u8>>);

impl AsRef<[u8]> for SecretBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}
