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

use super::error::{ApiError, Code};
use super::extract::{DealerAtLeader, JsonBody, Operator};
use super::NodeState;
use crate::cluster::{self, Abort, Party};
use crate::material::BatchId;
use crate::store::{now_unix, BatchState, Job, JobState, Lease};
use crate::wire::{JobRequest, NextPiece, Piece, PieceRequest};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use std::sync::Arc;

type St = State<Arc<NodeState>>;

/// Generators whose jobs this build runs.
const GENERATORS: &[&str] = &["dealer"];

/// Most items one job may ask for.
pub const MAX_JOB_ITEMS: u64 = 1 << 50;

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

pub(super) async fn create(
    State(st): St,
    _: Operator,
    JsonBody(req): JsonBody<JobRequest>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    super::api::known_pool(&st, req.pool)?;
    if !GENERATORS.contains(&req.generator.as_str()) {
        return Err(ApiError::bad_request(format!(
            "unknown generator {:?}; this node runs {}",
            req.generator,
            GENERATORS.join(", ")
        )));
    }
    if req.count == 0 || req.count > MAX_JOB_ITEMS {
        return Err(ApiError::bad_request(format!(
            "count must be between 1 and {MAX_JOB_ITEMS}"
        )));
    }
    let job = st
        .own
        .run("creating a job", move |s| {
            s.create_job(req.pool, req.count, &req.generator)
        })
        .await?;
    tracing::info!(job = job.id, pool = %job.pool, count = job.count, generator = %job.generator, "job created");
    Ok((StatusCode::CREATED, Json(job)))
}

pub(super) async fn list(State(st): St, _: Operator) -> Result<Json<Vec<Job>>, ApiError> {
    Ok(Json(st.own.run("reading jobs", |s| s.jobs()).await?))
}

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

async fn save(st: &NodeState, job: &Job, notes: Notes) -> Result<(), ApiError> {
    let job = job.clone();
    st.own
        .run("saving a job", move |s| {
            let notes: Vec<(&str, &Lease)> = notes.iter().map(|(e, l)| (*e, l)).collect();
            s.put_job_noting(&job, &notes)
        })
        .await?;
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

/// The next piece of the oldest job with items left, leased to the asking worker.
pub(super) async fn next_piece(
    State(st): St,
    _: DealerAtLeader,
    JsonBody(req): JsonBody<PieceRequest>,
) -> Result<Json<NextPiece>, ApiError> {
    let _g = st.jobs.lock().await;
    let jobs = st.own.run("reading jobs", |s| s.jobs()).await?;
    let live_jobs = jobs.iter().filter(|j| j.state.is_live()).count() as u64;
    let Some(mut job) = jobs
        .iter()
        .find(|j| j.state.is_live() && j.unissued() > 0)
        .cloned()
    else {
        return Ok(Json(NextPiece {
            piece: None,
            live_jobs,
        }));
    };
    // The correction-party rule: batches the leader holds, plus those out being made.
    let pool = job.pool;
    let out: u64 = jobs
        .iter()
        .filter(|j| j.pool == pool)
        .map(|j| j.leases.len() as u64)
        .sum();
    let index = cluster::next_batch_index(&st.own, pool).await? + out;
    let lease = Lease {
        batch: BatchId(rand::random()),
        items: job.unissued().min(st.cluster.batch_size),
        correction: pool.correction_party(st.cluster.parties(), index),
        worker: req.worker,
        until: now_unix() + st.cluster.staging_deadline_seconds,
    };
    let piece = Piece {
        job: job.id,
        pool,
        batch: lease.batch,
        items: lease.items,
        correction: lease.correction,
        until: lease.until,
    };
    job.leases.push(lease);
    job.state = JobState::Running;
    job.started_at.get_or_insert_with(now_unix);
    save(&st, &job, Vec::new()).await?;
    crate::failpoint::hit("job.leased");
    Ok(Json(NextPiece {
        piece: Some(piece),
        live_jobs,
    }))
}

/// Commits a batch staged everywhere; if it is a job's piece, counts it toward the job in the
/// same step. A revoked piece's batch is refused.
///
/// # Errors
/// `piece-revoked`; the protocol's errors.
pub(super) async fn commit(st: &Arc<NodeState>, id: BatchId) -> Result<(), ApiError> {
    let _g = st.jobs.lock().await;
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
    let owner = jobs
        .into_iter()
        .find(|j| j.leases.iter().any(|l| l.batch == id));
    cluster::commit_batch(&st.own, st.followers(), id).await?;
    if let Some(mut job) = owner {
        crate::failpoint::hit("job.committed");
        let at = job
            .leases
            .iter()
            .position(|l| l.batch == id)
            .expect("found above");
        let lease = job.leases.remove(at);
        let mut notes = Vec::new();
        made(&mut job, lease, &mut notes);
        save(st, &job, notes).await?;
    }
    Ok(())
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
