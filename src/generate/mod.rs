//! Generators: what makes batches. The store accepts any valid batch file, so a generator is
//! one implementation of [`Generator`], never a special case in the store.

mod dealer;
pub mod he;
mod masks;
mod mesh;
pub mod prss;

pub use dealer::Dealer;
pub use he::HeTriples;
pub use masks::OwnMasks;
pub use mesh::{mesh, MeshEnd};
pub use prss::PrssGenerator;

use crate::material::{BatchHeader, BatchId, PoolError, PoolSpec};
use zeroize::Zeroizing;

/// Whether the generator `maker` names can make material of `pool` at all for `parties`
/// parties (the dealer makes every kind; the parties' own generator input masks; the HE
/// generator triples, squares, inverses and bits in HE-friendly prime fields; PRSS what
/// `material::prss::refusal` allows).
pub fn can_make(maker: crate::material::Maker, pool: &PoolSpec, parties: u8) -> bool {
    use crate::material::{Kind, Maker};
    match maker {
        Maker::Dealer => true,
        Maker::Parties => pool.kind == Kind::InputMask,
        Maker::He => he::supports(pool),
        Maker::Prss => crate::material::prss::refusal(pool, parties).is_none(),
    }
}

/// This party's batch header for `plan` and a fresh seed per chunk from `rng`: how every
/// [`PartyGenerator`] starts its share.
///
/// # Errors
/// [`GenerateError::Plan`] for no items, or a party outside the consortium.
pub fn party_share_start(
    plan: &BatchPlan,
    me: u8,
    maker: crate::material::Maker,
    rng: &mut impl rand::RngCore,
) -> Result<(BatchHeader, Vec<crate::material::Seed>), GenerateError> {
    use crate::material::{Seed, CHUNK_ITEMS};
    if plan.items == 0 || me >= plan.parties {
        return Err(GenerateError::Plan(
            "items must be positive and this party a member".into(),
        ));
    }
    let header = BatchHeader {
        pool: plan.pool,
        parties: plan.parties,
        party: me,
        correction: 0,
        batch: plan.batch,
        items: plan.items,
        chunk_items: CHUNK_ITEMS,
        maker,
        epoch: None,
    };
    let seeds = (0..header.chunks())
        .map(|_| {
            let mut s = Seed([0; crate::material::batch::SEED_BYTES]);
            rng.fill_bytes(&mut s.0);
            s
        })
        .collect();
    Ok((header, seeds))
}

/// What to make: one batch of one pool for a consortium.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchPlan {
    pub pool: PoolSpec,
    pub parties: u8,
    pub batch: BatchId,
    pub items: u64,
    /// The party that stores the explicit corrections (see [`PoolSpec::correction_party`]).
    pub correction: u8,
}

/// One party's share of a batch: its complete batch file, ready to stage at that party only.
pub struct PartyBatch {
    pub header: BatchHeader,
    /// The whole file (header and chunks); secret, zeroized on drop.
    pub bytes: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for PartyBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartyBatch")
            .field("header", &self.header)
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .finish()
    }
}

/// Why a batch could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("invalid pool: {0}")]
    Pool(#[from] PoolError),
    #[error("invalid plan: {0}")]
    Plan(String),
    /// A message to or from another party was lost, or made no sense.
    #[error("exchange with party {party}: {what}")]
    Channel { party: u8, what: String },
}

/// The generator seam.
///
/// The dealer makes every party's share in one place. A generator without a dealer (the HE
/// generator) runs at each party and produces only that party's [`PartyBatch`]; both end in
/// the same per-party batch files, staged the same way.
pub trait Generator {
    /// A short name for logs and metrics (`dealer`, `he`).
    fn name(&self) -> &'static str;
    /// A fresh batch id.
    fn next_batch_id(&mut self) -> BatchId;
    /// Makes one batch: the i-th element is party i's share.
    ///
    /// # Errors
    /// [`GenerateError`] if the plan is invalid.
    fn generate(&mut self, plan: &BatchPlan) -> Result<Vec<PartyBatch>, GenerateError>;
}

/// How the parties running a [`PartyGenerator`] reach each other: ordered, reliable,
/// authenticated messages between each pair of parties (threads on one machine, or the
/// nodes' channel over HTTPS). Blocking: generators run on threads of their own.
pub trait Channel: Send {
    /// This party.
    fn me(&self) -> u8;

    /// Sends `message` to party `to`.
    ///
    /// # Errors
    /// [`GenerateError::Channel`] if `to` cannot be reached.
    fn send(&mut self, to: u8, message: Zeroizing<Vec<u8>>) -> Result<(), GenerateError>;

    /// The next message from party `from`, in the order it sent them.
    ///
    /// # Errors
    /// [`GenerateError::Channel`] if `from` stopped or did not send in time.
    fn recv(&mut self, from: u8) -> Result<Zeroizing<Vec<u8>>, GenerateError>;

    /// Waits until every message sent has been delivered (a channel may deliver in the
    /// background while the generator computes).
    ///
    /// # Errors
    /// [`GenerateError::Channel`] for a message that could not be delivered.
    fn flush(&mut self) -> Result<(), GenerateError> {
        Ok(())
    }
}

/// The seam for generators without a dealer: one instance runs at every party, makes only that
/// party's share of a batch, and talks to the other parties' instances over a [`Channel`].
/// Its batches are laid out by `material::party_layout` ([`crate::material::Maker::Parties`]):
/// a party's random components come from its own seeds; what is computed jointly is explicit.
/// Once every party has staged its share, the leader commits the batch as any other.
pub trait PartyGenerator: Send {
    /// A short name for logs, jobs and metrics.
    fn name(&self) -> &'static str;

    /// Whether it can make `pool`.
    fn supports(&self, pool: &PoolSpec) -> bool;

    /// Makes this party's share of the batch `plan` describes (its `correction` is unused),
    /// exchanging messages with the other parties through `channel`.
    ///
    /// # Errors
    /// An invalid plan, or a failed exchange.
    fn generate_share(
        &mut self,
        plan: &BatchPlan,
        channel: &mut dyn Channel,
    ) -> Result<PartyBatch, GenerateError>;

    /// Bytes of messages it has sent to the other parties so far.
    fn bytes_sent(&self) -> u64 {
        0
    }
}

/// Bytes each party sends per item, from one batch of `items` items of `pool` made in-process
/// over a [`mesh`] by `generators` (one per party, in party order; the first is the king or
/// correction party).
///
/// # Errors
/// A generator's failure.
pub fn bytes_sent_per_item(
    generators: Vec<Box<dyn PartyGenerator>>,
    pool: PoolSpec,
    items: u64,
) -> Result<Vec<f64>, GenerateError> {
    let plan = &BatchPlan {
        pool,
        parties: generators.len() as u8,
        batch: BatchId(rand::random()),
        items,
        correction: 0,
    };
    let sent: Vec<u64> = std::thread::scope(|s| {
        let running: Vec<_> = mesh(plan.parties)
            .into_iter()
            .zip(generators)
            .map(|(mut end, mut g)| {
                s.spawn(move || g.generate_share(plan, &mut end).map(|_| g.bytes_sent()))
            })
            .collect();
        running
            .into_iter()
            .map(|h| h.join().expect("a party's generator panicked"))
            .collect::<Result<_, _>>()
    })?;
    Ok(sent.iter().map(|&b| b as f64 / plan.items as f64).collect())
}
