//! The dealer's side of the protocol over HTTPS: [`DealerClient`] stages each party's share at
//! that party's node only and asks the leader to commit once all have it; as a dealer worker
//! it takes pieces of the leader's generation jobs.

use super::{DealPlan, ProtocolError, RemoteParty, Retry};
use crate::auth::Token;
use crate::config::ConsortiumConfig;
use crate::generate::{BatchPlan, Generator};
use crate::material::PoolSpec;
use crate::wire::{NextPiece, Piece, PieceRequest};
use std::time::Duration;

/// The dealer's client: stages at every node, commits at the leader (the protocol is
/// [`super::deal`]'s).
pub struct DealerClient {
    cluster: ConsortiumConfig,
    parties: Vec<RemoteParty>,
}

impl DealerClient {
    /// # Errors
    /// An unreadable CA certificate.
    pub fn new(cluster: ConsortiumConfig, token: Token) -> Result<Self, ProtocolError> {
        let ca = cluster
            .ca_certificate()
            .and_then(|p| Ok(std::fs::read_to_string(p)?))
            .map_err(|e| ProtocolError::Internal(format!("reading the CA certificate: {e}")))?;
        let http = crate::tls::client(&ca, Duration::from_secs(600))
            .map_err(|e| ProtocolError::Internal(e.to_string()))?;
        // An unreachable party is retried for half the staging deadline (the nodes drop
        // batches staged longer than the whole deadline).
        let retry = Retry::Until(Duration::from_secs(cluster.staging_deadline_seconds / 2));
        let parties = cluster
            .nodes()
            .iter()
            .map(|p| RemoteParty::of(p, token.clone(), http.clone(), retry))
            .collect();
        Ok(DealerClient { cluster, parties })
    }

    /// Calls to the nodes are counted in `metrics` (see [`super::PeerMetrics`]).
    #[must_use]
    pub fn observed(mut self, metrics: &std::sync::Arc<super::PeerMetrics>) -> Self {
        self.parties = self
            .parties
            .into_iter()
            .map(|p| p.observed(metrics.clone()))
            .collect();
        self
    }

    /// The nodes' `peer` labels, in party order.
    pub fn peer_labels(&self) -> Vec<String> {
        self.parties.iter().map(|p| p.label().to_string()).collect()
    }

    /// Deals `count` items of `pool` batch by batch; `progress` gets the items committed.
    /// Generation of the next batch overlaps the staging of this one.
    ///
    /// # Errors
    /// Generation, transport or API errors, naming the party. A batch that fails half-way is
    /// aborted at the parties that staged it (and would be cleaned up by their sweeps
    /// otherwise).
    pub async fn deal<G: Generator + Send + 'static>(
        &self,
        mut generator: G,
        pool: PoolSpec,
        count: u64,
        progress: impl FnMut(u64),
    ) -> Result<u64, ProtocolError> {
        let leader = self.leader();
        let plan = DealPlan {
            pool,
            parties: self.cluster.parties(),
            batch_size: self.cluster.batch_size,
            count,
            first_index: super::next_batch_index(leader, pool).await?,
        };
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let making =
            tokio::task::spawn_blocking(move || super::generate_batches(&mut generator, plan, tx));
        let dealt = super::deal(rx, &self.parties, leader, |id| leader.commit(id), progress).await;
        // Generation stops at the next batch once the receiver is gone.
        let _ = making.await;
        dealt
    }

    fn leader(&self) -> &RemoteParty {
        &self.parties[self.cluster.leader as usize]
    }

    /// As a dealer worker: asks the leader for the next piece of a generation job.
    ///
    /// # Errors
    /// The leader's refusal, or it cannot be reached (after retries).
    pub async fn next_piece(&self, worker: &str) -> Result<NextPiece, ProtocolError> {
        let req = PieceRequest {
            worker: worker.to_string(),
        };
        self.leader().next_piece(&req).await
    }

    /// As a dealer worker: makes one piece (its batch, under the id the leader chose), stages
    /// it at every party and has the leader commit it. Returns the generator for the next.
    ///
    /// # Errors
    /// Generation, staging or commit errors (`piece-revoked` if the leader took the piece
    /// back meanwhile).
    pub async fn make_piece<G: Generator + Send + 'static>(
        &self,
        mut generator: G,
        piece: &Piece,
    ) -> (G, Result<(), ProtocolError>) {
        let plan = BatchPlan {
            pool: piece.pool,
            parties: self.cluster.parties(),
            batch: piece.batch,
            items: piece.items,
            correction: piece.correction,
        };
        let (generator, shares) = tokio::task::spawn_blocking(move || {
            let out = generator.generate(&plan);
            (generator, out)
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        let leader = self.leader();
        let delivered = match shares {
            Ok(shares) => {
                super::deliver(&self.parties, leader, shares, &|id| leader.commit(id)).await
            }
            Err(e) => Err(e.into()),
        };
        (generator, delivered)
    }
}
