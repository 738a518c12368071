//! Generation jobs at the leader: operators create and list them (`/v1/jobs`), dealer workers
//! pull their pieces (`/v1/internal/jobs/next`) and have the leader commit each piece's batch.
//!
//! # Exactly once
//! A job is cut into pieces of at most one batch. Handing out a piece records a lease (batch
//! id, items, deadline) in the job, durably, before the worker hears of it. The piece's items
//! count as made only when the leader commits that very batch, and the commit and the job's
//! progress change under one lock. A lease that outlives its deadline is taken back: the
//! leader aborts its own copy of the batch (the decision, see `cluster::settle_staged`) and
//! remembers the batch as revoked, so a late worker's commit is refused and the items are
//! handed out again under a new batch id. If the leader committed the batch after all (its
//! answer or the progress record was lost), the items count as made. The sweep also finds
//! leases whose batch is already available (a commit cut short by a crash) and counts them.
//! So every item of a job is committed exactly once, in exactly one batch, whatever workers
//! or the leader crash; a restart resumes the job.

use super::channel::NodeChannel;
use super::error::{ApiError, Code};
use super::extract::{DealerAtLeader, FromLeader, JsonBody, Operator};
use super::NodeState;
use crate::cluster::{self, Abort, Party};
use crate::generate::{he, prss, BatchPlan, HeTriples, OwnMasks, PartyGenerator, PrssGenerator};
use crate::material::{BatchId, Maker, PoolSpec};
use crate::store::{now_unix, BatchState, Job, JobOrigin, JobState, Lease};
use crate::wire::schema::JobId;
use crate::wire::MAX_JOB_ITEMS;
use crate::wire::{BatchStateView, JobRequest, NextPiece, Piece, PieceRequest};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use std::sync::Arc;

type St = State<Arc<NodeState>>;

/// Jobs made by dealer workers.
const DEALER: &str = "dealer";
/// Jobs made by the nodes themselves, with no dealer ([`OwnMasks`]).
const PARTIES: &str = "parties";
/// The generators the nodes run themselves (each node makes its own share).
const AT_THE_NODES: [&str; 3] = [PARTIES, he::NAME, prss::NAME];

fn unknown_job(id: u64) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        Code::UnknownJob,
        format!("no job {id}"),
    )
}

fn job_id(s: &str) -> Result<u64, ApiError> {
    s.parse()
        .map_err(|_| ApiError::bad_request(format!("{s:?} is not a job id (a number)")))
}

#[utoipa::path(
    post,
    path = "/v1/jobs",
    operation_id = "createJob",
    summary = "Queue a generation job (operators, at the leader)",
    security(("operatorToken" = [])),
    request_body = JobRequest,
    responses(
        (status = 201, description = "queued durably", body = Job),
        (status = 400, description = "bad input: count, unknown generator"),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "not an operator"),
        (status = 404, description = "unknown pool"),
        (status = 413, description = "body too large"),
        (status = 415, description = "not application/json"),
        (status = 421, description = "not the leader"),
    )
)]
pub(super) async fn create(
    State(st): St,
    _: Operator,
    JsonBody(req): JsonBody<JobRequest>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    super::api::known_pool(&st, req.pool)?;
    let maker: Maker = req.generator.parse().map_err(ApiError::bad_request)?;
    if !crate::generate::can_make(maker, &req.pool, st.cluster.parties()) {
        let why = match maker {
            Maker::Prss => {
                crate::material::prss::refusal(&req.pool, st.cluster.parties()).unwrap_or_default()
            }
            _ => String::new(),
        };
        return Err(ApiError::bad_request(format!(
            "the {maker} generator cannot make {}; the dealer can. {why}",
            req.pool
        )));
    }
    if !st.cluster.allows(&req.pool, maker) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            Code::GeneratorRefused,
            format!(
                "the consortium restricts pool {} to other generators than {maker} \
                 (pool_generators in its configuration)",
                req.pool
            ),
        ));
    }
    if req.count == 0 || req.count > MAX_JOB_ITEMS {
        return Err(ApiError::bad_request(format!(
            "count must be between 1 and {MAX_JOB_ITEMS}"
        )));
    }
    let job = st
        .own
        .run("creating a job", move |s| {
            s.create_job(req.pool, req.count, &req.generator, JobOrigin::Operator)
        })
        .await?;
    tracing::info!(job = job.id, pool = %job.pool, count = job.count, generator = %job.generator, "job created");
    st.job_created.notify_one();
    Ok((StatusCode::CREATED, Json(job)))
}

#[utoipa::path(
    get,
    path = "/v1/jobs",
    operation_id = "listJobs",
    summary = "Every generation job, oldest first (operators, at the leader)",
    security(("operatorToken" = [])),
    responses(
        (status = 200, description = "the jobs", body = Vec<Job>),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "not an operator"),
        (status = 421, description = "not the leader"),
    )
)]
pub(super) async fn list(State(st): St, _: Operator) -> Result<Json<Vec<Job>>, ApiError> {
    Ok(Json(st.own.run("reading jobs", |s| s.jobs()).await?))
}

#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    operation_id = "getJob",
    summary = "One generation job",
    security(("operatorToken" = [])),
    params(("id" = JobId, Path, description = "job id")),
    responses(
        (status = 200, description = "the job", body = Job),
        (status = 400, description = "not a job id"),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "not an operator"),
        (status = 404, description = "unknown job"),
        (status = 421, description = "not the leader"),
    )
)]
pub(super) async fn get(
    State(st): St,
    _: Operator,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let id = job_id(&id)?;
    st.own
        .run("reading a job", move |s| s.job(id))
        .await?
        .map(Json)
        .ok_or_else(|| unknown_job(id))
}

/// Stops a job: no more pieces; leases are taken back (their batches count if the leader
/// committed them already).
#[utoipa::path(
    delete,
    path = "/v1/jobs/{id}",
    operation_id = "cancelJob",
    summary = "Cancel a job: no more pieces; what it committed stays",
    security(("operatorToken" = [])),
    params(("id" = JobId, Path, description = "job id")),
    responses(
        (status = 200, description = "the cancelled job", body = Job),
        (status = 400, description = "not a job id"),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "not an operator"),
        (status = 404, description = "unknown job"),
        (status = 409, description = "the job is over (`job-over`)"),
        (status = 421, description = "not the leader"),
    )
)]
pub(super) async fn cancel(
    State(st): St,
    _: Operator,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let id = job_id(&id)?;
    let _g = st.jobs.lock().await;
    let mut job = st
        .own
        .run("reading a job", move |s| s.job(id))
        .await?
        .ok_or_else(|| unknown_job(id))?;
    if !job.state.is_live() {
        return Err(over(&job));
    }
    let mut notes = Vec::new();
    for lease in std::mem::take(&mut job.leases) {
        take_back(&st, &mut job, lease, &mut notes).await?;
    }
    if job.state.is_live() {
        finish(&mut job, JobState::Cancelled, None);
    }
    save(&st, &job, notes).await?;
    tracing::info!(job = job.id, made = job.made, "job cancelled");
    Ok(Json(job))
}

fn over(job: &Job) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        Code::JobOver,
        format!("job {} is {:?}", job.id, job.state).to_lowercase(),
    )
}

fn finish(job: &mut Job, state: JobState, error: Option<String>) {
    job.state = state;
    job.error = error;
    job.finished_at = Some(now_unix());
}

/// Saves a job. Every change that ends a job saves it, and a job that has ended is never
/// saved again (nothing changes it: its leases are gone), so its duration is counted here.
async fn save(st: &NodeState, job: &Job, notes: Notes) -> Result<(), ApiError> {
    let saved = job.clone();
    st.own
        .run("saving a job", move |s| {
            let notes: Vec<(&str, &Lease)> = notes.iter().map(|(e, l)| (*e, l)).collect();
            s.put_job_noting(&saved, &notes)
        })
        .await?;
    if !job.state.is_live() {
        st.metrics.job_over(job);
    }
    Ok(())
}

/// Notes for the audit log: what happened to which piece (see `Store::put_job_noting`).
type Notes = Vec<(&'static str, Lease)>;

/// A lease's items were committed: they count as made.
fn made(job: &mut Job, lease: Lease, notes: &mut Notes) {
    job.made += lease.items;
    notes.push(("job-piece", lease));
    if job.made >= job.count && job.leases.is_empty() && job.state.is_live() {
        finish(job, JobState::Done, None);
        tracing::info!(job = job.id, made = job.made, "job done");
    }
}

/// Takes a lease back (already removed from `job.leases`): the leader's copy of its batch
/// decides whether it was committed.
async fn take_back(
    st: &NodeState,
    job: &mut Job,
    lease: Lease,
    notes: &mut Notes,
) -> Result<(), ApiError> {
    match st.own.abort(lease.batch).await? {
        Abort::Committed => made(job, lease, notes),
        Abort::Aborted => {
            job.revoked.push(lease.batch);
            tracing::info!(job = job.id, batch = %lease.batch, worker = %lease.worker,
                "piece taken back: its worker did not commit it in time; handed out again");
            notes.push(("job-piece-revoked", lease));
        }
    }
    Ok(())
}

/// The next piece of the oldest dealer job with items left, leased to the asking worker.
#[utoipa::path(
    post,
    path = "/v1/internal/jobs/next",
    operation_id = "nextPiece",
    summary = "A dealer worker takes the next piece of a job (at the leader)",
    security(("dealerToken" = [])),
    request_body = PieceRequest,
    responses(
        (status = 200, description = "a piece leased to this worker, or none for now", body = NextPiece),
        (status = 400, description = "bad input"),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "not the dealer"),
        (status = 413, description = "body too large"),
        (status = 415, description = "not application/json"),
        (status = 421, description = "not the leader"),
    )
)]
pub(super) async fn next_piece(
    State(st): St,
    _: DealerAtLeader,
    JsonBody(req): JsonBody<PieceRequest>,
) -> Result<Json<NextPiece>, ApiError> {
    let (piece, live_jobs) = lease(&st, &[DEALER], req.worker).await?;
    Ok(Json(NextPiece { piece, live_jobs }))
}

/// Leases the next piece of the oldest live job of one of `generators` with items left (for
/// the generators the nodes run, one piece per job at a time); also returns how many jobs of
/// them are live.
async fn lease(
    st: &NodeState,
    generators: &[&str],
    worker: String,
) -> Result<(Option<Piece>, u64), ApiError> {
    let ours = |j: &Job| generators.contains(&j.generator.as_str());
    let _g = st.jobs.lock().await;
    let jobs = st.own.run("reading jobs", |s| s.jobs()).await?;
    let live_jobs = jobs.iter().filter(|j| j.state.is_live() && ours(j)).count() as u64;
    // Window jobs wait while the parties' windows are closed; a pool's pieces out at once
    // stay within its policy's max_workers; floor refills go first.
    let window_open = st.schedule.window_open();
    // PRSS pieces wait for the first key setup (see `run_party_jobs`).
    let prss_epoch = match st.prss_current.load(std::sync::atomic::Ordering::SeqCst) {
        0 => None,
        e => Some(e),
    };
    let out_for = |pool: PoolSpec| -> usize {
        jobs.iter()
            .filter(|j| j.pool == pool)
            .map(|j| j.leases.len())
            .sum()
    };
    let mut ready = jobs.iter().filter(|j| {
        j.state.is_live()
            && ours(j)
            && j.unissued() > 0
            && (j.generator == DEALER || j.leases.is_empty())
            && (j.origin != JobOrigin::Window || window_open)
            && (j.generator != prss::NAME || prss_epoch.is_some())
            && st
                .cluster
                .stock
                .get(&j.pool)
                .and_then(|p| p.max_workers)
                .is_none_or(|cap| out_for(j.pool) < cap as usize)
    });
    let first = ready.clone().find(|j| j.origin == JobOrigin::Floor);
    let Some(mut job) = first.or_else(|| ready.next()).cloned() else {
        return Ok((None, live_jobs));
    };
    // The correction-party rule: batches the leader holds, plus those out being made.
    let pool = job.pool;
    let out: u64 = jobs
        .iter()
        .filter(|j| j.pool == pool)
        .map(|j| j.leases.len() as u64)
        .sum();
    let index = cluster::next_batch_index(&st.own, pool).await? + out;
    let epoch = prss_epoch.filter(|_| job.generator == prss::NAME);
    let lease = Lease {
        batch: BatchId(rand::random()),
        items: job.unissued().min(pool.batch_items(st.cluster.batch_size)),
        correction: pool.correction_party(st.cluster.parties(), index),
        worker,
        until: now_unix() + st.cluster.staging_deadline_seconds,
    };
    let piece = Piece {
        job: job.id,
        pool,
        batch: lease.batch,
        items: lease.items,
        correction: lease.correction,
        until: lease.until,
        generator: job.generator.clone(),
        epoch,
    };
    job.leases.push(lease);
    job.state = JobState::Running;
    job.started_at.get_or_insert_with(now_unix);
    save(st, &job, Vec::new()).await?;
    crate::failpoint::hit("job.leased");
    Ok((Some(piece), live_jobs))
}

/// This node's generator for a piece of a job the nodes make themselves (for PRSS, with its
/// keys of the piece's epoch).
///
/// # Errors
/// A generator that is not the nodes'; PRSS without an epoch, or one whose keys are gone.
async fn party_generator(
    st: &NodeState,
    piece: &Piece,
) -> Result<Box<dyn PartyGenerator>, ApiError> {
    match piece.generator.as_str() {
        PARTIES => Ok(Box::new(OwnMasks::from_os_rng())),
        he::NAME => Ok(Box::new(HeTriples::from_os_rng())),
        prss::NAME => {
            let epoch = piece
                .epoch
                .ok_or_else(|| ApiError::bad_request("a PRSS piece names its key epoch"))?;
            let keys = super::prss::keys_of(st, epoch).await?;
            Ok(Box::new(PrssGenerator::new(keys, epoch)))
        }
        name => Err(ApiError::bad_request(format!(
            "no generator {name:?} at this node"
        ))),
    }
}

/// Makes this node's share of a piece of a job of the parties' own generators, talking to the
/// other nodes over the message channel, and stages it here.
///
/// # Errors
/// An unknown generator, or its failure (a party that stopped, a message that never came).
pub(super) async fn make_own_share(st: &Arc<NodeState>, piece: Piece) -> Result<(), ApiError> {
    let mut g = party_generator(st, &piece).await?;
    let plan = BatchPlan {
        pool: piece.pool,
        parties: st.cluster.parties(),
        batch: piece.batch,
        items: piece.items,
        correction: piece.correction,
    };
    let mut channel = NodeChannel::new(
        st.clone(),
        piece.batch.to_string(),
        tokio::runtime::Handle::current(),
    );
    // On the node's generation threads (lower CPU priority, `[schedule] generation_nice`).
    let threads = st.schedule.generation_threads();
    let share = tokio::task::spawn_blocking(move || match threads {
        Some(pool) => pool.install(|| g.generate_share(&plan, &mut channel)),
        None => g.generate_share(&plan, &mut channel),
    })
    .await
    .map_err(|e| ApiError::internal(format!("the generator failed: {e}")))?
    .map_err(|e| ApiError::unavailable(format!("generating this party's share: {e}")))?;
    match (piece.generator.as_str(), piece.epoch) {
        (prss::NAME, Some(epoch)) => {
            super::prss::stage_unless_retired(st, epoch, share).await?;
            crate::failpoint::hit("prss.staged");
        }
        (he::NAME, _) => {
            st.own.stage(share).await?;
            crate::failpoint::hit("he.staged");
        }
        _ => st.own.stage(share).await?,
    }
    Ok(())
}

/// `POST /v1/internal/pieces`: the leader has this node make and stage its share of a piece.
#[utoipa::path(
    post,
    path = "/v1/internal/pieces",
    operation_id = "makePiece",
    summary = "Make and stage this party's share of a piece of a job the parties make themselves (leader to every node)",
    security(("nodeToken" = [])),
    request_body = Piece,
    responses(
        (status = 201, description = "this party's share staged durably", body = BatchStateView),
        (status = 400, description = "bad input: pool, items or generator"),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "not the leader"),
        (status = 404, description = "unknown pool"),
        (status = 409, description = "another batch under this id"),
        (status = 413, description = "body too large"),
        (status = 415, description = "not application/json"),
        (status = 503, description = "the generator failed: a party stopped or a message did not come"),
    )
)]
pub(super) async fn make_piece(
    State(st): St,
    _: FromLeader,
    JsonBody(piece): JsonBody<Piece>,
) -> Result<(StatusCode, Json<BatchStateView>), ApiError> {
    super::api::known_pool(&st, piece.pool)?;
    let most = piece.pool.batch_items(st.cluster.batch_size);
    if piece.items == 0 || piece.items > most {
        return Err(ApiError::bad_request(format!(
            "a piece of {} holds 1 to {most} items",
            piece.pool
        )));
    }
    let batch = piece.batch;
    make_own_share(&st, piece).await?;
    Ok((
        StatusCode::CREATED,
        Json(BatchStateView {
            batch,
            state: BatchState::Staged,
        }),
    ))
}

/// At the leader, until `cancel`: runs the jobs of the parties' own generators, a piece at a
/// time: every node (this one included) makes and stages its share, then the leader commits.
/// A piece that fails anywhere is taken back at once (and its staged shares swept).
pub(super) async fn run_party_jobs(
    st: Arc<NodeState>,
    cancel: tokio_util::sync::CancellationToken,
) {
    if !st.is_leader() {
        return;
    }
    let every = std::time::Duration::from_millis(st.cluster.sweep_interval_ms.max(50));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
            _ = st.job_created.notified() => {}
        }
        if let Err(e) = first_prss_epoch(&st).await {
            tracing::warn!(error = %e.detail, "PRSS jobs wait for a key setup; tried again later");
        }
        loop {
            let piece = match lease(&st, &AT_THE_NODES, "nodes".into()).await {
                Ok((Some(p), _)) => p,
                Ok((None, _)) => break,
                Err(e) => {
                    tracing::debug!(error = %e.detail, "no piece leased; tried again later");
                    break;
                }
            };
            let made = tokio::select! {
                _ = cancel.cancelled() => return,
                r = make_everywhere(&st, &piece) => r,
            };
            let done = match made {
                Ok(()) => commit(&st, piece.batch).await,
                Err(e) => Err(e),
            };
            if let Err(e) = done {
                tracing::warn!(job = piece.job, batch = %piece.batch, error = %e.detail,
                    "piece failed; taken back, made again later");
                if let Err(e) = abandon(&st, &piece).await {
                    tracing::debug!(error = %e.detail, "piece kept until its deadline");
                }
                break;
            }
        }
    }
}

/// Sets up the first PRSS epoch if a live PRSS job is waiting for one.
async fn first_prss_epoch(st: &Arc<NodeState>) -> Result<(), ApiError> {
    if st.prss.lock().await.current.is_some() {
        return Ok(());
    }
    let jobs = st.own.run("reading jobs", |s| s.jobs()).await?;
    if jobs
        .iter()
        .any(|j| j.state.is_live() && j.generator == prss::NAME)
    {
        super::prss::current_or_setup(st).await?;
    }
    Ok(())
}

/// Every node makes its share of `piece` at once (they talk to each other meanwhile). The
/// first failure anywhere gives the batch up at every node, so no generator waits on a party
/// that is gone.
async fn make_everywhere(st: &Arc<NodeState>, piece: &Piece) -> Result<(), ApiError> {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    let mut all: FuturesUnordered<_> = FuturesUnordered::new();
    all.push(Box::pin(make_own_share(st, piece.clone())) as futures_util::future::BoxFuture<'_, _>);
    for f in st.followers() {
        all.push(Box::pin(async move {
            f.make_piece(piece).await.map_err(ApiError::from)
        }));
    }
    let mut first: Option<ApiError> = None;
    while let Some(r) = all.next().await {
        if let Err(e) = r {
            if first.is_none() {
                let session = piece.batch.to_string();
                st.mailbox.abort(&session);
                let gone = st.followers().iter().map(|f| f.abort_session(&session));
                for r in futures_util::future::join_all(gone).await {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "giving up a batch at a node");
                    }
                }
                first = Some(e);
            }
        }
    }
    first.map_or(Ok(()), Err)
}

/// Takes a piece back now (it failed somewhere).
async fn abandon(st: &NodeState, piece: &Piece) -> Result<(), ApiError> {
    let _g = st.jobs.lock().await;
    let id = piece.job;
    let Some(mut job) = st.own.run("reading a job", move |s| s.job(id)).await? else {
        return Ok(());
    };
    let Some(at) = job.leases.iter().position(|l| l.batch == piece.batch) else {
        return Ok(());
    };
    let lease = job.leases.remove(at);
    let mut notes = Vec::new();
    take_back(st, &mut job, lease, &mut notes).await?;
    save(st, &job, notes).await
}

/// Commits a batch staged everywhere; if it is a job's piece, counts it toward the job in the
/// same step. A revoked piece's batch is refused.
///
/// # Errors
/// `piece-revoked`; the protocol's errors.
pub(super) async fn commit(st: &Arc<NodeState>, id: BatchId) -> Result<(), ApiError> {
    let guard = st.jobs.lock().await;
    let jobs = st.own.run("reading jobs", |s| s.jobs()).await?;
    if let Some(job) = jobs.iter().find(|j| j.revoked.contains(&id)) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            Code::PieceRevoked,
            format!(
                "batch {id} was a piece of job {} taken back from its worker; it is never committed",
                job.id
            ),
        ));
    }
    let Some(mut job) = jobs
        .into_iter()
        .find(|j| j.leases.iter().any(|l| l.batch == id))
    else {
        // No job's piece (a one-shot dealer's batch): it cannot become one (pieces get fresh
        // ids), so it commits without holding up the jobs.
        drop(guard);
        cluster::commit_batch(&st.own, st.followers(), id).await?;
        super::metrics::note_generated(st, id).await;
        return Ok(());
    };
    cluster::commit_batch(&st.own, st.followers(), id).await?;
    super::metrics::note_generated(st, id).await;
    crate::failpoint::hit("job.committed");
    let at = job
        .leases
        .iter()
        .position(|l| l.batch == id)
        .expect("found above");
    let lease = job.leases.remove(at);
    let mut notes = Vec::new();
    made(&mut job, lease, &mut notes);
    save(st, &job, notes).await
}

/// The leader's periodic look at its jobs: leases whose batch is committed count as made,
/// leases past their deadline are taken back, and live jobs of pools no longer kept fail.
///
/// # Errors
/// The first store failure; the rest is retried next sweep.
pub(super) async fn sweep(st: &Arc<NodeState>) -> Result<(), ApiError> {
    let _g = st.jobs.lock().await;
    let now = now_unix();
    for mut job in st.own.run("reading jobs", |s| s.jobs()).await? {
        if !job.state.is_live() {
            continue;
        }
        let mut changed = false;
        let mut notes = Vec::new();
        for lease in std::mem::take(&mut job.leases) {
            let state = st.own.batch_state(lease.batch).await?;
            if matches!(state, Some(BatchState::Available | BatchState::Exhausted)) {
                made(&mut job, lease, &mut notes);
                changed = true;
            } else if lease.until <= now {
                take_back(st, &mut job, lease, &mut notes).await?;
                changed = true;
            } else {
                job.leases.push(lease);
            }
        }
        if !st.cluster.pools.contains(&job.pool) {
            for lease in std::mem::take(&mut job.leases) {
                take_back(st, &mut job, lease, &mut notes).await?;
            }
            let why = format!("pool {} is no longer kept by this consortium", job.pool);
            tracing::warn!(job = job.id, "{why}: job failed");
            finish(&mut job, JobState::Failed, Some(why));
            changed = true;
        }
        if changed {
            save(st, &job, notes).await?;
        }
    }
    Ok(())
}
