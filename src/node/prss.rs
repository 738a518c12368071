//! PRSS key epochs at the nodes: setting up an epoch's replicated keys at every party over the
//! message channel, retiring an epoch (its keys destroyed and every unserved item made under
//! them burned at every party), and the status operators see.
//!
//! The leader decides: its `prss/epochs.json` names the current epoch (the one new PRSS pieces
//! carry) and the retired ones. It names an epoch current only once every node has stored its
//! keys, so an interrupted setup leaves nothing in use (the next setup starts over). Every node
//! keeps the retired epochs in its own copy and refuses to make or stage material of one; the
//! state changes and the check before staging hold one lock, so no batch of a retired epoch
//! lands after its retirement burned the rest.

use super::channel::NodeChannel;
use super::error::ApiError;
use super::extract::{FromLeader, JsonBody, Operator};
use super::NodeState;
use crate::cluster::Party;
use crate::generate::prss::{setup_keys, KeyFile};
use crate::material::Maker;
use crate::sharing::prss::{key_sets, sets_of, threshold, PartyKeys};
use crate::wire::{KeySetup, PrssEpoch, PrssStatus, RetireReport, RetiredEpoch};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

type St = State<Arc<NodeState>>;

/// The epochs as this node knows them (`prss/epochs.json` beside its store).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Epochs {
    /// At the leader: the epoch new pieces use.
    #[serde(default)]
    pub current: Option<u32>,
    #[serde(default)]
    pub retired: Vec<u32>,
    /// At the leader: the highest epoch a setup was started for (a failed setup may have left
    /// its keys at some nodes, so its number is never used again).
    #[serde(default)]
    pub attempted: Option<u32>,
}

impl Epochs {
    fn path(store: &std::path::Path) -> std::path::PathBuf {
        KeyFile::dir(store).join("epochs.json")
    }

    /// This node's record (none yet: no epoch).
    ///
    /// # Errors
    /// An unreadable or corrupt file.
    pub fn load(store: &std::path::Path) -> anyhow::Result<Epochs> {
        let path = Self::path(store);
        match std::fs::read(&path) {
            Ok(b) => {
                serde_json::from_slice(&b).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Epochs::default()),
            Err(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
        }
    }

    fn save(&self, store: &std::path::Path) -> Result<(), ApiError> {
        let io = |e: std::io::Error| ApiError::internal(format!("writing the PRSS epochs: {e}"));
        std::fs::create_dir_all(KeyFile::dir(store)).map_err(io)?;
        let body = serde_json::to_vec_pretty(self).expect("epochs serialize");
        crate::secret_file::SecretFile::write(&Self::path(store), |w| {
            std::io::Write::write_all(w, &body)
        })
        .map_err(io)?;
        crate::store::durable_sync_dir(&KeyFile::dir(store)).map_err(io)
    }

    /// The highest epoch this node knows of (set up, attempted, retired or held).
    fn highest(&self, held: &[u32]) -> u32 {
        self.current
            .into_iter()
            .chain(self.attempted)
            .chain(self.retired.iter().copied())
            .chain(held.iter().copied())
            .max()
            .unwrap_or(0)
    }

    /// The next epoch number: above every one used, attempted or retired.
    fn next(&self, held: &[u32]) -> Result<u32, ApiError> {
        self.highest(held)
            .checked_add(1)
            .ok_or_else(|| ApiError::bad_request("every PRSS epoch number is used"))
    }

    pub fn is_retired(&self, epoch: u32) -> bool {
        self.retired.contains(&epoch)
    }
}

/// Replaces the node's record of the epochs, durably, then in memory (and the current epoch
/// leases read without the lock).
fn put_epochs(st: &NodeState, held: &mut Epochs, next: Epochs) -> Result<(), ApiError> {
    next.save(st.store.dir())?;
    st.prss_current.store(
        next.current.unwrap_or(0),
        std::sync::atomic::Ordering::SeqCst,
    );
    *held = next;
    Ok(())
}

/// Destroys this node's keys of every epoch but `keep`: superseded ones (their batches carry
/// their own chunk keys, so nothing needs them, and erasing a consumed chunk then truly forgets
/// it) and those of setups that failed.
async fn forget_all_but(st: &NodeState, keep: u32) -> Result<(), ApiError> {
    let dir = store_dir(st);
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        for e in KeyFile::epochs(&dir)? {
            if e != keep {
                KeyFile::destroy(&dir, e)?;
            }
        }
        Ok(())
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::internal(format!("destroying superseded PRSS keys: {e}")))
}

fn store_dir(st: &NodeState) -> std::path::PathBuf {
    st.store.dir().to_path_buf()
}

/// This node's keys of `epoch`, for a piece.
///
/// # Errors
/// A retired epoch, keys this node does not hold, or a corrupt key file.
pub(super) async fn keys_of(st: &NodeState, epoch: u32) -> Result<Arc<PartyKeys>, ApiError> {
    if st.prss.lock().await.is_retired(epoch) {
        return Err(ApiError::bad_request(format!(
            "PRSS epoch {epoch} is retired here; its keys are gone"
        )));
    }
    let (dir, n, me) = (store_dir(st), st.cluster.parties(), st.me);
    // A piece of this epoch means every party stored its keys: older ones are superseded
    // (here already if the leader's word that it is current was lost).
    let older: Vec<u32> = KeyFile::epochs(&dir)
        .map_err(|e| ApiError::internal(e.to_string()))?
        .into_iter()
        .filter(|&e| e < epoch)
        .collect();
    for e in older {
        KeyFile::destroy(&dir, e)
            .map_err(|e| ApiError::internal(format!("destroying superseded PRSS keys: {e}")))?;
    }
    let keys = tokio::task::spawn_blocking(move || KeyFile::load(&dir, epoch, n, me))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(format!("reading PRSS keys: {e}")))?;
    keys.map(Arc::new).ok_or_else(|| {
        ApiError::unavailable(format!("this node holds no PRSS keys of epoch {epoch}"))
    })
}

/// Stages a PRSS share, unless its epoch was retired meanwhile (under the epochs' lock, so a
/// retirement cannot slip between the check and the staging).
///
/// # Errors
/// A retired epoch; the store's errors.
pub(super) async fn stage_unless_retired(
    st: &NodeState,
    epoch: u32,
    share: crate::generate::PartyBatch,
) -> Result<(), ApiError> {
    let epochs = st.prss.lock().await;
    if epochs.is_retired(epoch) {
        return Err(ApiError::bad_request(format!(
            "PRSS epoch {epoch} was retired while this share was made; it is not staged"
        )));
    }
    st.own.stage(share).await?;
    drop(epochs);
    Ok(())
}

/// At the leader: the epoch new PRSS pieces use, setting the first one up if there is none.
///
/// # Errors
/// A key setup that failed somewhere.
pub(super) async fn current_or_setup(st: &Arc<NodeState>) -> Result<u32, ApiError> {
    if let Some(e) = st.prss.lock().await.current {
        return Ok(e);
    }
    tracing::info!("no PRSS keys yet: setting up the first epoch at every party");
    Ok(rotate_everywhere(st).await?.epoch)
}

/// Sets up a new epoch at every node and makes it current.
async fn rotate_everywhere(st: &Arc<NodeState>) -> Result<PrssEpoch, ApiError> {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    let _one = st.prss_admin.lock().await;
    let dir = store_dir(st);
    let held = KeyFile::epochs(&dir).map_err(|e| ApiError::internal(e.to_string()))?;
    let epoch = {
        let mut epochs = st.prss.lock().await;
        let epoch = epochs.next(&held)?;
        let mut next = epochs.clone();
        next.attempted = Some(epoch);
        put_epochs(st, &mut epochs, next)?;
        epoch
    };
    let session = format!("prss-epoch-{epoch}-{:016x}", rand::random::<u64>());
    let mut all: FuturesUnordered<futures_util::future::BoxFuture<'_, Result<(), ApiError>>> =
        FuturesUnordered::new();
    all.push(Box::pin(setup_here(st.clone(), epoch, session.clone())));
    for f in st.followers() {
        let session = session.clone();
        all.push(Box::pin(async move {
            f.prss_setup(epoch, &session).await.map_err(ApiError::from)
        }));
    }
    let mut first = None;
    while let Some(r) = all.next().await {
        if let Err(e) = r {
            if first.is_none() {
                st.mailbox.abort(&session);
                for f in st.followers() {
                    let _ = f.abort_session(&session).await;
                }
                first = Some(e);
            }
        }
    }
    drop(all);
    if let Some(e) = first {
        return Err(ApiError::unavailable(format!(
            "PRSS key setup for epoch {epoch} failed, nothing changed: {}",
            e.detail
        )));
    }
    {
        let mut epochs = st.prss.lock().await;
        let mut next = epochs.clone();
        next.current = Some(epoch);
        put_epochs(st, &mut epochs, next)?;
    }
    let by = format!("prss epoch {epoch} current");
    st.own
        .run("auditing", move |s| s.record_event("prss-epoch", &by))
        .await?;
    // Superseded keys go everywhere now (a party not reached forgets its own at its next
    // piece of the new epoch).
    forget_all_but(st, epoch).await?;
    for f in st.followers() {
        if let Err(e) = f.prss_current(epoch).await {
            tracing::warn!(error = %e, "a party keeps superseded PRSS keys until its next PRSS piece");
        }
    }
    let n = st.cluster.parties();
    tracing::info!(
        epoch,
        "PRSS keys set up at every party; new PRSS batches use them"
    );
    Ok(PrssEpoch {
        epoch,
        parties: n,
        threshold: threshold(n),
        key_sets: key_sets(n, threshold(n)).len() as u64,
    })
}

/// This node's part of a key setup: the exchange, then its keys stored durably.
async fn setup_here(st: Arc<NodeState>, epoch: u32, session: String) -> Result<(), ApiError> {
    if st.prss.lock().await.is_retired(epoch) {
        return Err(ApiError::bad_request(format!(
            "PRSS epoch {epoch} is retired here; epochs are never reused"
        )));
    }
    if KeyFile::path(&store_dir(&st), epoch).exists() {
        return Err(ApiError::bad_request(format!(
            "this node already holds keys of PRSS epoch {epoch}; epochs are never reused"
        )));
    }
    let n = st.cluster.parties();
    if crate::sharing::prss::PartyKeys::area_bytes(n, threshold(n), st.me).is_err() {
        return Err(ApiError::bad_request(format!(
            "PRSS runs for 3 to {} parties, not {n}",
            crate::sharing::prss::MAX_PARTIES
        )));
    }
    let mut channel = NodeChannel::new(st.clone(), session, tokio::runtime::Handle::current());
    let dir = store_dir(&st);
    tokio::task::spawn_blocking(move || -> Result<(), ApiError> {
        let keys = setup_keys(n, epoch, &mut channel, &mut rand::rng())
            .map_err(|e| ApiError::unavailable(format!("PRSS key setup: {e}")))?;
        KeyFile::save(&dir, epoch, &keys)
            .map_err(|e| ApiError::internal(format!("storing PRSS keys: {e}")))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    let by = format!("prss epoch {epoch} keys stored");
    st.own
        .run("auditing", move |s| s.record_event("prss-keys", &by))
        .await?;
    crate::failpoint::hit("prss.keys-stored");
    Ok(())
}

/// This node's part of retiring an epoch: recorded as retired first (nothing more of it is
/// made or staged here), keys destroyed, then its unserved items burned.
async fn retire_here(st: &Arc<NodeState>, epoch: u32) -> Result<RetireReport, ApiError> {
    let dir = store_dir(st);
    let mut epochs = st.prss.lock().await;
    if !epochs.is_retired(epoch) {
        let mut next = epochs.clone();
        next.retired.push(epoch);
        next.retired.sort_unstable();
        if next.current == Some(epoch) {
            next.current = None;
        }
        put_epochs(st, &mut epochs, next)?;
    }
    KeyFile::destroy(&dir, epoch)
        .map_err(|e| ApiError::internal(format!("destroying PRSS keys: {e}")))?;
    let report = st
        .own
        .run("burning a retired epoch's items", move |s| {
            s.retire_epoch(epoch)
        })
        .await?;
    drop(epochs);
    let by = format!("prss epoch {epoch} retired: {} items burned", report.items);
    st.own
        .run("auditing", move |s| s.record_event("prss-retire", &by))
        .await?;
    tracing::warn!(
        epoch,
        items = report.items,
        "PRSS epoch retired: keys destroyed, unserved items burned"
    );
    Ok(report)
}

/// An epoch in a path.
fn epoch_number(s: &str) -> Result<u32, ApiError> {
    s.parse()
        .map_err(|_| ApiError::bad_request(format!("{s:?} is not an epoch number")))
}

#[utoipa::path(
    get,
    path = "/v1/prss",
    operation_id = "prssStatus",
    summary = "The PRSS generator's keys and epochs (operators, at the leader)",
    security(("operatorToken" = [])),
    responses(
        (status = 200, description = "as this node knows them", body = PrssStatus),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "not an operator"),
        (status = 421, description = "not the leader"),
    )
)]
pub(super) async fn status(State(st): St, _: Operator) -> Result<Json<PrssStatus>, ApiError> {
    let n = st.cluster.parties();
    let t = threshold(n);
    let epochs = st.prss.lock().await.clone();
    let key_epochs =
        KeyFile::epochs(&store_dir(&st)).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(PrssStatus {
        parties: n,
        threshold: t,
        keys_per_party: if n >= 3 {
            sets_of(n, t, st.me).len() as u64
        } else {
            0
        },
        current_epoch: epochs.current,
        retired_epochs: epochs.retired,
        key_epochs,
        assumption: Maker::Prss.assumption(),
    }))
}

#[utoipa::path(
    post,
    path = "/v1/prss/epochs",
    operation_id = "rotatePrssKeys",
    summary = "Set up fresh PRSS keys at every party; new PRSS batches use them (operators, at the leader)",
    security(("operatorToken" = [])),
    responses(
        (status = 201, description = "every party holds its keys of the new epoch, durably", body = PrssEpoch),
        (status = 400, description = "PRSS does not run for this many parties"),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "not an operator"),
        (status = 421, description = "not the leader"),
        (status = 503, description = "a party did not take part; nothing changed"),
    )
)]
pub(super) async fn rotate(
    State(st): St,
    _: Operator,
) -> Result<(StatusCode, Json<PrssEpoch>), ApiError> {
    Ok((StatusCode::CREATED, Json(rotate_everywhere(&st).await?)))
}

#[utoipa::path(
    delete,
    path = "/v1/prss/epochs/{epoch}",
    operation_id = "retirePrssEpoch",
    summary = "Retire a PRSS epoch (a suspected key leak): its keys are destroyed and every unserved item made under them is burned at every party (operators, at the leader)",
    security(("operatorToken" = [])),
    params(("epoch" = u32, Path, description = "the epoch")),
    responses(
        (status = 200, description = "retired at every party", body = RetiredEpoch),
        (status = 400, description = "not an epoch number"),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "not an operator"),
        (status = 421, description = "not the leader"),
        (status = 503, description = "a party could not be reached: retired where it could be; run again"),
    )
)]
pub(super) async fn retire(
    State(st): St,
    _: Operator,
    Path(epoch): Path<String>,
) -> Result<Json<RetiredEpoch>, ApiError> {
    let epoch = epoch_number(&epoch)?;
    let _one = st.prss_admin.lock().await;
    let held = KeyFile::epochs(&store_dir(&st)).map_err(|e| ApiError::internal(e.to_string()))?;
    if epoch == 0 || epoch > st.prss.lock().await.highest(&held) {
        return Err(ApiError::bad_request(format!(
            "no PRSS epoch {epoch} was ever set up here"
        )));
    }
    // The leader first: from here on no new piece carries the epoch.
    let mut by_party = vec![RetireReport::default(); st.cluster.parties() as usize];
    by_party[st.me as usize] = retire_here(&st, epoch).await?;
    let answers = futures_util::future::join_all(
        st.followers()
            .iter()
            .map(|f| async move { (f.at().party, f.prss_retire(epoch).await) }),
    )
    .await;
    let mut failed = Vec::new();
    for (p, r) in answers {
        match r {
            Ok(report) => by_party[p as usize] = report,
            Err(e) => failed.push(format!("party {p}: {e}")),
        }
    }
    if !failed.is_empty() {
        return Err(ApiError::unavailable(format!(
            "PRSS epoch {epoch} is retired at the leader, but not yet at {}; run the retirement again",
            failed.join("; ")
        )));
    }
    Ok(Json(RetiredEpoch { epoch, by_party }))
}

#[utoipa::path(
    post,
    path = "/v1/internal/prss/epochs/{epoch}",
    operation_id = "setUpPrssKeys",
    summary = "Set up this node's keys of a PRSS epoch with the other nodes (leader to every node)",
    security(("nodeToken" = [])),
    params(("epoch" = u32, Path, description = "the epoch")),
    request_body = KeySetup,
    responses(
        (status = 204, description = "this node's keys stored durably"),
        (status = 400, description = "a retired epoch, or a bad session"),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "not the leader"),
        (status = 413, description = "body too large"),
        (status = 415, description = "not application/json"),
        (status = 503, description = "a party did not take part"),
    )
)]
pub(super) async fn internal_setup(
    State(st): St,
    _: FromLeader,
    Path(epoch): Path<String>,
    JsonBody(req): JsonBody<KeySetup>,
) -> Result<StatusCode, ApiError> {
    let epoch = epoch_number(&epoch)?;
    if req.session.is_empty() || req.session.len() > 64 {
        return Err(ApiError::bad_request("a session is 1 to 64 characters"));
    }
    setup_here(st, epoch, req.session).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/v1/internal/prss/epochs/{epoch}/retire",
    operation_id = "retirePrssEpochHere",
    summary = "Retire a PRSS epoch at this node: keys destroyed, unserved items burned (leader to every node)",
    security(("nodeToken" = [])),
    params(("epoch" = u32, Path, description = "the epoch")),
    responses(
        (status = 200, description = "retired here", body = RetireReport),
        (status = 400, description = "not an epoch number"),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "not the leader"),
    )
)]
pub(super) async fn internal_retire(
    State(st): St,
    _: FromLeader,
    Path(epoch): Path<String>,
) -> Result<Json<RetireReport>, ApiError> {
    let epoch = epoch_number(&epoch)?;
    Ok(Json(retire_here(&st, epoch).await?))
}

#[utoipa::path(
    post,
    path = "/v1/internal/prss/epochs/{epoch}/current",
    operation_id = "prssEpochCurrent",
    summary = "A PRSS epoch is current at every party: this node destroys its keys of every other epoch (leader to every node)",
    security(("nodeToken" = [])),
    params(("epoch" = u32, Path, description = "the epoch")),
    responses(
        (status = 204, description = "recorded, and other epochs' keys destroyed here"),
        (status = 400, description = "not an epoch number, or a retired one"),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "not the leader"),
    )
)]
pub(super) async fn internal_current(
    State(st): St,
    _: FromLeader,
    Path(epoch): Path<String>,
) -> Result<StatusCode, ApiError> {
    let epoch = epoch_number(&epoch)?;
    {
        let mut epochs = st.prss.lock().await;
        if epochs.is_retired(epoch) {
            return Err(ApiError::bad_request(format!(
                "PRSS epoch {epoch} is retired here"
            )));
        }
        let mut next = epochs.clone();
        next.current = Some(epoch);
        put_epochs(&st, &mut epochs, next)?;
    }
    forget_all_but(&st, epoch).await?;
    Ok(StatusCode::NO_CONTENT)
}
