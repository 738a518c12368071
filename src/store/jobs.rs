//! Generation jobs, kept at the leader: what to make, who is making which piece, how far it
//! got. The rules that move a job live with the node (`node/jobs.rs`); this file keeps the
//! records durable.

use super::*;
pub use crate::wire::{Job, JobOrigin, JobState, Lease};

/// Most revoked batch ids a job remembers (the oldest are forgotten; by then the staging
/// deadline has removed their batches everywhere).
const MAX_REVOKED: usize = 4096;

impl Store {
    /// Creates a queued job, durably.
    ///
    /// # Errors
    /// Sled errors.
    pub fn create_job(
        &self,
        pool: PoolSpec,
        count: u64,
        generator: &str,
        origin: JobOrigin,
    ) -> Result<Job> {
        let job = Job {
            id: self.db.generate_id()? + 1,
            pool,
            count,
            generator: generator.to_string(),
            state: JobState::Queued,
            made: 0,
            leases: Vec::new(),
            revoked: Vec::new(),
            created_at: now_unix(),
            started_at: None,
            finished_at: None,
            error: None,
            origin,
        };
        self.put_job(&job)?;
        Ok(job)
    }

    /// Writes a job's new state, durably.
    ///
    /// # Errors
    /// Sled errors.
    pub fn put_job(&self, job: &Job) -> Result<()> {
        self.put_job_noting(job, &[])
    }

    /// Writes a job's new state and, in the same transaction, an audit record of what
    /// happened to each of `pieces` (`job-piece`: its batch was committed for the job;
    /// `job-piece-revoked`: taken back, never to be committed). The audit log is the
    /// evidence of which batches made which job.
    ///
    /// # Errors
    /// Sled errors.
    pub fn put_job_noting(&self, job: &Job, pieces: &[(&str, &Lease)]) -> Result<()> {
        let mut job = job.clone();
        let extra = job.revoked.len().saturating_sub(MAX_REVOKED);
        job.revoked.drain(..extra);
        let mut records = Vec::new();
        for (event, lease) in pieces {
            let record = audit_entry(
                event,
                job.pool,
                None,
                Some(lease.batch),
                vec![ShareRange {
                    batch: lease.batch,
                    first: 0,
                    count: lease.items,
                }],
                Some(&format!("job {} (worker {})", job.id, lease.worker)),
            );
            records.push(record);
        }
        {
            let mut chain = self.chain();
            let chained = Chained::new(&chain.tip, records);
            unwrap_tx((&self.jobs, &self.audit).transaction(|(j, a)| {
                j.insert(&job.id.to_be_bytes(), to_json(&job))?;
                chained.write(a)?;
                Ok(())
            }))?;
            chained.advance(&mut chain);
        }
        self.flush()
    }

    /// # Errors
    /// Sled errors or a corrupt record.
    pub fn job(&self, id: u64) -> Result<Option<Job>> {
        match self.jobs.get(id.to_be_bytes())? {
            Some(v) => from_json("job", &v).map(Some),
            None => Ok(None),
        }
    }

    /// Every job, oldest first.
    ///
    /// # Errors
    /// Sled errors or corrupt records.
    pub fn jobs(&self) -> Result<Vec<Job>> {
        self.jobs
            .iter()
            .values()
            .map(|v| from_json("job", &v?))
            .collect()
    }

    /// Forgets jobs that ended before `before` (unix seconds); their pieces' history stays
    /// in the audit trail. Returns how many.
    ///
    /// # Errors
    /// Sled errors or corrupt records.
    pub fn prune_jobs(&self, before: u64) -> Result<usize> {
        let mut gone = 0;
        for job in self.jobs()? {
            if !job.state.is_live() && job.finished_at.is_some_and(|f| f < before) {
                self.jobs.remove(job.id.to_be_bytes())?;
                gone += 1;
            }
        }
        if gone > 0 {
            self.flush()?;
        }
        Ok(gone)
    }
}
