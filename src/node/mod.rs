//! A party node: the party's store behind an HTTPS API, and its part in the consortium
//! protocol (see DESIGN.md's data flow and `docs/protocol.md`).
//!
//! # Layout
//! - [`config`]: the consortium and node files.
//! - [`error`]: problem+json errors.
//! - [`api`]: the axum router and the engine handlers; `internal`: node-to-node and dealer
//!   handlers; `extract`: who is calling, and JSON bodies within limits; `jobs`: generation
//!   jobs at the leader (operators create them, dealer workers take their pieces).
//! - `sweep`: the periodic sweep (expiry, stale staged batches, erasure); the protocol it
//!   runs is [`crate::cluster`]'s.
//! - [`listener`]: the HTTPS serving loop, its connection limits and deadlines.
//! - this module: shared state, authentication, and startup of a node's tasks.

pub mod api;
mod channel;
/// The configuration files (kept at the crate's top, [`crate::config`]; here for old paths).
pub use crate::config;
mod audit;
pub mod error;
mod extract;
mod internal;
mod jobs;
pub mod launch;
pub mod listener;
pub mod metrics;
pub mod openapi;
pub mod provision;
mod prss;
mod schedule;
mod sweep;

pub use schedule::lower_priority;

use crate::auth::Token;
use crate::cluster::combine::Combiner;
use crate::cluster::{LocalParty, RemoteParty, Retry};
use crate::material::PoolSpec;
use crate::store::Store;
use config::{ConsortiumConfig, NodeConfig};
use error::{ApiError, Code};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

/// Who is calling, after authentication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// An online engine of this node's party, with the pools it is granted.
    Engine { name: String, pools: Vec<PoolSpec> },
    /// Another party's node.
    Node(u8),
    /// The dealer (and its workers).
    Dealer,
    /// An operator of the consortium: creates and lists generation jobs.
    Operator,
    /// An auditor of the consortium: reads the audit trail, nothing else.
    Auditor,
}

/// A credential hash and whom it belongs to; `None` for an engine of another party.
struct Credential {
    hash: [u8; 32],
    who: Result<Caller, String>,
}

/// Everything a handler needs.
pub struct NodeState {
    pub store: Arc<Store>,
    pub cluster: ConsortiumConfig,
    pub me: u8,
    /// This node's token, presented to the other nodes.
    pub token: Token,
    /// HTTPS client trusting only the consortium CA.
    pub http: reqwest::Client,
    credentials: Vec<Credential>,
    /// This party's store, as the protocol reaches it.
    pub(crate) own: LocalParty,
    /// Every other party's node, in party order.
    pub(crate) others: Vec<RemoteParty>,
    /// Small downloads consumed a group at a time, one flush per group (engine name per
    /// checkout); the answer is the share stream.
    pub(crate) consumes: Group<(String, String), Result<axum::body::Bytes, ApiError>>,
    /// At a follower: bumped whenever the leader's confirmations arrive, so downloads waiting
    /// for one look again.
    pub(crate) confirmations: tokio::sync::watch::Sender<u64>,
    /// At the leader: serialises changes to generation jobs (see `jobs`).
    pub(crate) jobs: tokio::sync::Mutex<()>,
    /// Wakes the leader's runner of the nodes' own jobs when one is created.
    pub(crate) job_created: tokio::sync::Notify,
    /// What the metrics listener serves.
    pub(crate) metrics: metrics::Metrics,
    /// Messages from other nodes for this node's generators (see `channel`).
    pub(crate) mailbox: channel::Mailbox,
    /// The audit trail's archive files (the node file's `[archive]`).
    pub archive: crate::store::ArchivePolicy,
    /// Parties seen to come back with a shorter audit chain (see `audit::witness`); until this
    /// node restarts, a fenced leader's requests are refused.
    pub(crate) fenced: std::sync::Mutex<std::collections::BTreeSet<u8>>,
    /// The scheduler: windows, forecast, generation threads (see `schedule`).
    pub(crate) schedule: schedule::Scheduler,
    /// Parties whose nodes have answered this node since it started (see `ready`).
    pub(crate) answered: std::sync::Mutex<std::collections::BTreeSet<u8>>,
    /// PRSS epochs as this node knows them (see `prss`); also serialises their changes with
    /// the staging of PRSS shares.
    pub(crate) prss: tokio::sync::Mutex<prss::Epochs>,
    /// At the leader: one key setup or retirement at a time.
    pub(crate) prss_admin: tokio::sync::Mutex<()>,
    /// The current PRSS epoch (0: none), for leases to read without the lock.
    pub(crate) prss_current: std::sync::atomic::AtomicU32,
}

impl std::fmt::Debug for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeState")
            .field("me", &self.me)
            .field("consortium", &self.cluster.name)
            .finish()
    }
}

fn decode_hash(h: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    // A malformed hash matches nothing (all-zero is no SHA-256 output anyone can produce).
    let _ = hex::decode_to_slice(h, &mut out);
    out
}

impl NodeState {
    /// # Errors
    /// An unreadable CA certificate.
    pub fn new(
        store: Arc<Store>,
        cluster: ConsortiumConfig,
        me: u8,
        token: Token,
    ) -> anyhow::Result<Self> {
        let ca = std::fs::read_to_string(cluster.ca_certificate()?)?;
        let http = crate::tls::client(&ca, std::time::Duration::from_secs(120))?;
        let mut credentials = Vec::new();
        for e in &cluster.engines {
            let who = if e.party == me {
                Ok(Caller::Engine {
                    name: e.name.clone(),
                    pools: e.pools.clone(),
                })
            } else {
                Err(format!(
                    "engine {:?} belongs to party {}, not to this node's party {me}",
                    e.name, e.party
                ))
            };
            credentials.push(Credential {
                hash: decode_hash(&e.token_sha256),
                who,
            });
        }
        for p in cluster.nodes() {
            if p.id != me {
                credentials.push(Credential {
                    hash: decode_hash(&p.node_token_sha256),
                    who: Ok(Caller::Node(p.id)),
                });
            }
        }
        if let Some(h) = &cluster.dealer_token_sha256 {
            credentials.push(Credential {
                hash: decode_hash(h),
                who: Ok(Caller::Dealer),
            });
        }
        if let Some(h) = &cluster.operator_token_sha256 {
            credentials.push(Credential {
                hash: decode_hash(h),
                who: Ok(Caller::Operator),
            });
        }
        if let Some(h) = &cluster.auditor_token_sha256 {
            credentials.push(Credential {
                hash: decode_hash(h),
                who: Ok(Caller::Auditor),
            });
        }
        let others: Vec<RemoteParty> = cluster
            .nodes()
            .iter()
            .filter(|p| p.id != me)
            .map(|p| {
                RemoteParty::of(p, token.clone(), http.clone(), Retry::Once)
                    .witnessing(store.clone())
            })
            .collect();
        let labels: Vec<String> = others.iter().map(|p| p.label().to_string()).collect();
        let metrics = metrics::Metrics::new(
            &cluster.pools,
            (me, cluster.parties()),
            &cluster.stock,
            &labels,
        );
        let others = others
            .into_iter()
            .map(|p| p.observed(metrics.peers.clone()))
            .collect();
        let epochs = prss::Epochs::load(store.dir())?;
        store.set_retired_epochs(epochs.retired.iter().copied());
        Ok(NodeState {
            prss_current: std::sync::atomic::AtomicU32::new(epochs.current.unwrap_or(0)),
            prss: tokio::sync::Mutex::new(epochs),
            prss_admin: tokio::sync::Mutex::new(()),
            own: LocalParty::new(store.clone()),
            others,
            store,
            cluster,
            me,
            token,
            http,
            credentials,
            consumes: Combiner::new(GROUP, |st: &St, group| {
                api::consume_group(st.clone(), group)
            }),
            confirmations: tokio::sync::watch::Sender::new(0),
            jobs: tokio::sync::Mutex::new(()),
            job_created: tokio::sync::Notify::new(),
            metrics,
            mailbox: channel::Mailbox::default(),
            archive: Default::default(),
            fenced: Default::default(),
            schedule: Default::default(),
            answered: Default::default(),
        })
    }

    pub fn is_leader(&self) -> bool {
        self.me == self.cluster.leader
    }

    /// The other parties' nodes: the followers, at the leader.
    pub(crate) fn followers(&self) -> &[RemoteParty] {
        &self.others
    }

    /// The other parties' nodes that have not answered this node yet: none once it is ready
    /// (its store is open, since the state exists, and every peer is known to be there).
    pub(crate) fn peers_waiting(&self) -> Vec<&RemoteParty> {
        let answered = self.answered.lock().unwrap_or_else(|p| p.into_inner());
        self.others
            .iter()
            .filter(|p| !answered.contains(&p.party()))
            .collect()
    }

    /// The leader's node, at a follower (`None` at the leader).
    pub(crate) fn leader(&self) -> Option<&RemoteParty> {
        self.others
            .iter()
            .find(|p| crate::cluster::Party::at(*p).party == self.cluster.leader)
    }

    /// Identifies the caller from `Authorization: Bearer <token>`.
    ///
    /// # Errors
    /// 401 without a known token; 403 for another party's engine.
    pub fn authenticate(&self, headers: &axum::http::HeaderMap) -> Result<Caller, ApiError> {
        let token = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer)
            .ok_or_else(ApiError::unauthorized)?;
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Compare against every credential, in constant time each, without stopping early.
        let mut found = None;
        for c in &self.credentials {
            if bool::from(c.hash.ct_eq(&hash)) {
                found = Some(&c.who);
            }
        }
        match found {
            Some(Ok(who)) => Ok(who.clone()),
            Some(Err(why)) => Err(ApiError::forbidden(Code::WrongParty, why.clone())),
            None => Err(ApiError::unauthorized()),
        }
    }
}

/// The credentials of an `Authorization: Bearer <token>` value; the scheme is compared without
/// regard to case (RFC 9110, 11.1).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

/// The context the combiners' handlers get.
type St = Arc<NodeState>;

/// A combiner of this node's.
type Group<I, O> = Arc<Combiner<St, I, O>>;

/// Most downloads consumed in one group.
const GROUP: usize = 64;

/// Resolves on Ctrl-C (SIGINT) or SIGTERM. The handlers are installed when this is called,
/// not when the future is first polled: call it before starting what it stops, so that a
/// signal arriving during start-up is not met by the default action (the process killed
/// before it drains; seen as a rare `signal: 15` in tests/limits.rs).
///
/// # Panics
/// Outside a tokio runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    async move {
        tokio::select! {
            _ = recv(term.as_mut()) => {}
            _ = recv(int.as_mut()) => {}
        }
    }
}

/// The next signal of `s`; never, without a handler.
async fn recv(s: Option<&mut tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// A running node: its address, its state, and the tasks it runs.
pub struct RunningNode {
    pub addr: SocketAddr,
    /// The metrics listener's address, if the node has one.
    pub metrics_addr: Option<SocketAddr>,
    pub state: Arc<NodeState>,
    cancel: tokio_util::sync::CancellationToken,
    tasks: tokio_util::task::TaskTracker,
}

/// How long [`RunningNode::stop`] waits for the node's tasks.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl RunningNode {
    /// Stops every task of the node: the API stops accepting and lets requests in flight
    /// finish (up to 5 s), background tasks stop between rounds. Returns when all have ended,
    /// or after [`STOP_WAIT`].
    pub async fn stop(self) {
        self.cancel.cancel();
        self.tasks.close();
        if tokio::time::timeout(STOP_WAIT, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                wait_s = STOP_WAIT.as_secs(),
                "node tasks still running; stopping anyway"
            );
        }
    }
}

/// Starts a node's tasks, in one place, under one cancellation token: the HTTPS API on an
/// already bound listener within `limits` (see [`listener`]), the metrics listener if there is
/// one (plain HTTP, [`metrics`]), and the periodic sweeps (expiry at the leader, job leases,
/// abandoned batches and erasure everywhere), and the scheduler at the leader.
pub fn spawn(
    listener: TcpListener,
    metrics_listener: Option<MetricsListener>,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<NodeState>,
    limits: listener::Limits,
) -> std::io::Result<RunningNode> {
    let addr = listener.local_addr()?;
    let cancel = tokio_util::sync::CancellationToken::new();
    let tasks = tokio_util::task::TaskTracker::new();
    let app = api::router(state.clone());
    tasks.spawn(listener::serve(
        listener,
        tls.clone(),
        app,
        limits,
        cancel.clone(),
    ));
    let metrics_addr = match metrics_listener {
        Some(MetricsListener {
            listener: l,
            tls: with_tls,
        }) => {
            let at = l.local_addr()?;
            let stop = cancel.clone();
            let app = metrics::router(state.clone());
            if with_tls {
                // The node's own certificate; scrapers trust the consortium CA.
                tasks.spawn(listener::serve(l, tls, app, METRICS_LIMITS, stop));
            } else {
                tasks.spawn(async move {
                    let served = axum::serve(l, app)
                        .with_graceful_shutdown(stop.cancelled_owned())
                        .await;
                    if let Err(e) = served {
                        tracing::error!(error = %e, "the metrics listener stopped");
                    }
                });
            }
            tracing::info!(addr = %at, tls = with_tls, "metrics listener serving /metrics");
            Some(at)
        }
        None => None,
    };
    tasks.spawn(probe_peers(state.clone(), cancel.clone()));
    tasks.spawn(sweep::sweep_forever(state.clone(), cancel.clone()));
    tasks.spawn(jobs::run_party_jobs(state.clone(), cancel.clone()));
    tasks.spawn(schedule::run(state.clone(), cancel.clone()));
    Ok(RunningNode {
        addr,
        metrics_addr,
        state,
        cancel,
        tasks,
    })
}

/// The metrics listener, bound; `tls`: served with the node's certificate.
pub struct MetricsListener {
    pub listener: TcpListener,
    pub tls: bool,
}

/// Connections the metrics listener takes (a few scrapers and probes).
const METRICS_LIMITS: listener::Limits = listener::Limits {
    max_connections: 64,
    max_per_address: 32,
};

/// How often a node asks every other node whether it is there.
const PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Asks every other party's node for its health every [`PROBE_EVERY`] (the first time at
/// once, then again every second until all have answered), so that `larder_peer_up` is
/// current between the protocol's own calls, and readiness knows the peers are there.
async fn probe_peers(st: Arc<NodeState>, cancel: tokio_util::sync::CancellationToken) {
    let within = std::time::Duration::from_secs(5);
    let consortium = st.cluster.name.as_str();
    loop {
        let answers = futures_util::future::join_all(st.others.iter().map(|p| async move {
            match p.health(within).await {
                Ok(h) if h.party == p.party() && h.consortium == consortium => Some(p.party()),
                Ok(h) => {
                    tracing::warn!(peer = p.label(), party = h.party, consortium = %h.consortium,
                        "a peer's address answers as another node");
                    None
                }
                Err(e) => {
                    tracing::debug!(peer = p.label(), error = %e, "peer did not answer its probe");
                    None
                }
            }
        }))
        .await;
        {
            let mut seen = st.answered.lock().unwrap_or_else(|p| p.into_inner());
            seen.extend(answers.into_iter().flatten());
        }
        let ready = st.peers_waiting().is_empty();
        st.metrics.set_ready(ready);
        let wait = if ready {
            PROBE_EVERY
        } else {
            std::time::Duration::from_secs(1)
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Opens the store and starts a node from its configuration files.
///
/// # Errors
/// Unreadable configuration, certificates or store; a listen address in use.
pub async fn start(node: &NodeConfig) -> anyhow::Result<RunningNode> {
    use anyhow::Context;
    let cluster = ConsortiumConfig::load_nodes(&node.consortium)?;
    let listener = TcpListener::bind(node.listen).await.with_context(|| {
        format!(
            "cannot listen on {} (party {}'s address in its node file): is this node, or a \
             `larder demo` serving it, already running?",
            node.listen, node.party
        )
    })?;
    start_with(node, cluster, listener).await
}

/// As [`start`], on a listener bound by the caller (tests and `larder demo` bind port 0).
///
/// # Errors
/// As [`start`].
pub async fn start_with(
    node: &NodeConfig,
    cluster: ConsortiumConfig,
    listener: TcpListener,
) -> anyhow::Result<RunningNode> {
    use anyhow::Context;
    let cert = std::fs::read_to_string(&node.tls_certificate)
        .with_context(|| format!("reading {}", node.tls_certificate.display()))?;
    let key = zeroize::Zeroizing::new(
        std::fs::read_to_string(&node.tls_key)
            .with_context(|| format!("reading {}", node.tls_key.display()))?,
    );
    let tls = crate::tls::server_config(&cert, &key)?;
    let dir = node.data_dir.clone();
    let parties = cluster.parties();
    let identity = crate::store::StoreIdentity {
        consortium: cluster.name.clone(),
        parties,
        party: node.party,
    };
    cluster.require_nodes()?;
    if node.party >= parties {
        anyhow::bail!(
            "this node is party {}, but the consortium has parties 0 to {}",
            node.party,
            parties - 1
        );
    }
    // sled writes when it opens a store (recovery, a snapshot); on a full disk that can leave a
    // snapshot it cannot read back. A node starts only with an eighth of its reserve free (the
    // rest of the reserve is the room checkouts and downloads use while stages are refused, so
    // a node that ran into its reserve still restarts).
    let min_free = node
        .min_free_bytes
        .unwrap_or(crate::store::DEFAULT_MIN_FREE);
    let to_start = min_free / 8;
    let free = Store::free_bytes(&dir)
        .with_context(|| format!("checking free space at {}", dir.display()))?;
    if free < to_start {
        anyhow::bail!(
            "disk full at {}: {free} bytes free, and this node needs {to_start} free to start \
             (an eighth of min_free_bytes); free space, then start it again",
            dir.display()
        );
    }
    let store = tokio::task::spawn_blocking(move || {
        if dir.join("meta").exists() {
            Store::open(&dir)
        } else {
            Store::create(&dir, identity)
        }
    })
    .await??;
    store.set_min_free(min_free);
    store.set_allowed_generators(cluster.allowed_makers());
    let id = store.identity();
    if id.party != node.party || id.parties != parties || id.consortium != cluster.name {
        anyhow::bail!(
            "the store in {} belongs to party {} of {} in consortium {:?}, not to this node",
            node.data_dir.display(),
            id.party,
            id.parties,
            id.consortium
        );
    }
    let mut state = NodeState::new(
        Arc::new(store),
        cluster,
        node.party,
        node.node_token.clone(),
    )?;
    state.archive = node.archive.policy();
    state.schedule = schedule::Scheduler::new(&node.schedule)
        .map_err(|e| anyhow::anyhow!("[schedule] in the node file: {e}"))?;
    let state = Arc::new(state);
    state.store.observe_flushes(state.metrics.flush_observer());
    let limits =
        listener::Limits::for_process(node.max_connections, node.max_connections_per_address);
    let metrics_listener = match node.metrics.listen {
        Some(at) => Some(MetricsListener {
            listener: TcpListener::bind(at).await.with_context(|| {
                format!("cannot serve metrics on {at} (metrics.listen in the node file)")
            })?,
            tls: node.metrics.tls,
        }),
        None => None,
    };
    Ok(spawn(listener, metrics_listener, tls, state, limits)?)
}
