//! Kinds of material, pools, and which parts of each party's share are seeded or explicit.
//!
//! A *pool* is kind x domain x sharing (x owner for input masks). Each party's share of an
//! item is a *record* of a fixed number of elements in a fixed order (a triple is a, b, c).
//! With seed compression, each element of a record is either *seeded* (drawn from the party's
//! own chunk seed, in record order) or *explicit* (stored), and [`record_layout`] says which.

pub mod batch;
pub mod shares;

pub use batch::{BatchHeader, BatchId, FormatError, Seed, CHUNK_BYTES, CHUNK_ITEMS};

/// Bytes of records one party's share of a batch of matrix triples aims at.
pub const BATCH_BYTES: u64 = 256 << 20;
pub use shares::{ShareHeader, ShareRange, ShareReader, ShareWriter};

use crate::math::Domain;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What is correlated.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Beaver triple (a, b, ab).
    Triple,
    /// (a, a^2).
    Square,
    /// b in {0, 1}.
    Bit,
    /// (a, 1/a) with a nonzero; prime fields only.
    Inverse,
    /// r shared among all, known in clear to one owner party.
    InputMask,
    /// Shamir [r]_t and [r]_2t with the same r; prime fields only, n >= 2t + 1.
    Double,
    /// (r, θ_r) over Z_2^64: r shared additively, and θ_r, the number of times its shares
    /// wrap around 2^64 when added as signed 64-bit integers (CrypTen's `wrap_rng`: the sum of
    /// the shares over the integers is r + θ_r 2^64, r read as signed), shared additively too.
    Wrap,
    /// (a, b, c = a AND b) on 64-bit words, each XOR-shared (comparisons, ReLU).
    BinaryTriple,
    /// A random bit b shared twice: additively in the domain (z64 or a prime field) and
    /// XOR-wise in a word (64 bits over z64; over a prime field, one bit fewer than p has, at
    /// most 64) (MP-SPDZ's daBits, CrypTen's `B2A_rng`).
    Dabit,
    /// (A, B, C = A·B) for matrices of a fixed shape (m x k times k x n), each element shared
    /// additively; the shape is part of the pool (`matrix-triple-z64-128x256x64`). A record
    /// is A row-major, then B, then C.
    MatrixTriple,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::Triple,
        Kind::Square,
        Kind::Bit,
        Kind::Inverse,
        Kind::InputMask,
        Kind::Double,
        Kind::Wrap,
        Kind::BinaryTriple,
        Kind::Dabit,
        Kind::MatrixTriple,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Triple => "triple",
            Kind::Square => "square",
            Kind::Bit => "bit",
            Kind::Inverse => "inverse",
            Kind::InputMask => "input-mask",
            Kind::Double => "double",
            Kind::Wrap => "wrap",
            Kind::BinaryTriple => "binary-triple",
            Kind::Dabit => "dabit",
            Kind::MatrixTriple => "matrix-triple",
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            Kind::Triple => 1,
            Kind::Square => 2,
            Kind::Bit => 3,
            Kind::Inverse => 4,
            Kind::InputMask => 5,
            Kind::Double => 6,
            Kind::Wrap => 7,
            Kind::BinaryTriple => 8,
            Kind::Dabit => 9,
            Kind::MatrixTriple => 10,
        }
    }

    pub(crate) fn from_code(c: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.code() == c)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kind {
    type Err = PoolError;
    fn from_str(s: &str) -> Result<Self, PoolError> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| PoolError::Parse(format!("unknown kind {s:?}")))
    }
}

/// Why a pool is not valid for a consortium, or a pool id did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PoolError {
    #[error("{kind} needs a prime field, not {domain}")]
    NeedsField { kind: Kind, domain: Domain },
    #[error("{kind} is made over z64 (64-bit words) only, not {domain}")]
    NeedsZ64 { kind: Kind, domain: Domain },
    #[error("dabit is made over z64 or a prime field, not {0}")]
    DabitDomain(Domain),
    #[error("double sharings need a threshold t >= 1 with parties >= 2t + 1 (t = {t}, parties = {parties})")]
    BadThreshold { t: u8, parties: u8 },
    #[error("{0} material is additively shared; a threshold applies only to double")]
    UnexpectedThreshold(Kind),
    #[error("input-mask needs an owner party below {parties} (suffix -o<party>), got {}", owner.map_or_else(|| "none".to_string(), |o| format!("party {o}")))]
    BadOwner { owner: Option<u8>, parties: u8 },
    #[error("only input-mask pools have an owner")]
    UnexpectedOwner,
    #[error("a consortium has 2 to 64 parties, got {0}")]
    BadPartyCount(u8),
    #[error("the field must have more elements than parties for Shamir sharing (p = {p}, parties = {parties})")]
    FieldTooSmall { p: u128, parties: u8 },
    #[error("{0} pools need a shape (suffix -<m>x<k>x<n>, e.g. matrix-triple-z64-128x256x64)")]
    NeedsShape(Kind),
    #[error("only matrix-triple pools have a shape")]
    UnexpectedShape,
    #[error("matrix shape {0} out of range: every side from 1 to {MAX_SIDE}, at most {MAX_RECORD_ELEMENTS} elements per triple")]
    BadShape(Shape),
    #[error("bad pool id: {0}")]
    Parse(String),
}

/// Longest side of a matrix triple.
pub const MAX_SIDE: u32 = 1 << 16;
/// Most elements in one party's record (a matrix triple's A, B and C together): 2^22, 32 MiB
/// over Z_2^64.
pub const MAX_RECORD_ELEMENTS: u64 = 1 << 22;

/// The shape of a matrix triple: A is m x k, B is k x n, C = A·B is m x n.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Shape {
    pub m: u32,
    pub k: u32,
    pub n: u32,
}

impl Shape {
    /// Elements of A, B and C.
    pub fn sizes(self) -> [usize; 3] {
        let (m, k, n) = (self.m as usize, self.k as usize, self.n as usize);
        [m * k, k * n, m * n]
    }

    /// Elements of one record (A, B and C).
    pub fn elements(self) -> u64 {
        let (m, k, n) = (u64::from(self.m), u64::from(self.k), u64::from(self.n));
        m * k + k * n + m * n
    }

    fn valid(self) -> bool {
        [self.m, self.k, self.n]
            .iter()
            .all(|&s| (1..=MAX_SIDE).contains(&s))
            && self.elements() <= MAX_RECORD_ELEMENTS
    }

    /// The 12 bytes stored in batch and share headers: m, k, n as little-endian u32.
    pub fn to_bytes(self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[0..4].copy_from_slice(&self.m.to_le_bytes());
        b[4..8].copy_from_slice(&self.k.to_le_bytes());
        b[8..12].copy_from_slice(&self.n.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; 12]) -> Shape {
        let word = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        Shape {
            m: word(0),
            k: word(4),
            n: word(8),
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.m, self.k, self.n)
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Shape {
    type Err = PoolError;
    fn from_str(s: &str) -> Result<Self, PoolError> {
        let bad = || PoolError::Parse(format!("{s:?} is not a shape <m>x<k>x<n>"));
        let sides: Vec<u32> = s
            .split('x')
            .map(|p| {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                p.parse().map_err(|_| bad())
            })
            .collect::<Result<_, _>>()?;
        match sides[..] {
            [m, k, n] => Ok(Shape { m, k, n }),
            _ => Err(bad()),
        }
    }
}

/// A pool: the unit of stock, scheduling and checkout.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PoolSpec {
    pub kind: Kind,
    pub domain: Domain,
    /// Shamir threshold t (double sharings only); `None` means additive sharing.
    pub threshold: Option<u8>,
    /// The party that knows input masks in clear (input-mask only).
    pub owner: Option<u8>,
    /// The matrices' shape (matrix-triple only).
    pub shape: Option<Shape>,
}

/// Most parties a consortium may have (records and headers store party numbers in a byte).
pub const MAX_PARTIES: u8 = 64;

impl PoolSpec {
    pub fn new(kind: Kind, domain: Domain) -> Self {
        PoolSpec {
            kind,
            domain,
            threshold: None,
            owner: None,
            shape: None,
        }
    }

    /// A matrix-triple pool of `shape` over `domain`.
    pub fn matrix(domain: Domain, shape: Shape) -> Self {
        PoolSpec {
            shape: Some(shape),
            ..PoolSpec::new(Kind::MatrixTriple, domain)
        }
    }

    /// Items per batch of this pool, for a consortium's `batch_size`: fewer for matrix
    /// triples, so one party's share of a batch stays near [`BATCH_BYTES`] (at least one item).
    pub fn batch_items(&self, batch_size: u64) -> u64 {
        match self.shape {
            Some(shape) => {
                let bytes = shape.elements() * self.domain.elem_bytes() as u64;
                batch_size.min(BATCH_BYTES / bytes).max(1)
            }
            None => batch_size,
        }
    }

    /// Items per chunk in this pool's batch files: [`CHUNK_ITEMS`], or fewer for matrix
    /// triples, so a chunk's records stay near 4 MiB (at least one item).
    pub fn chunk_items(&self) -> u32 {
        match self.shape {
            Some(shape) => {
                let bytes = shape.elements() * self.domain.elem_bytes() as u64;
                (CHUNK_BYTES / bytes).clamp(1, u64::from(CHUNK_ITEMS)) as u32
            }
            None => CHUNK_ITEMS,
        }
    }

    /// Checks the pool makes sense for `parties` parties.
    ///
    /// # Errors
    /// The [`PoolError`] naming what is wrong.
    pub fn validate(&self, parties: u8) -> Result<(), PoolError> {
        if !(2..=MAX_PARTIES).contains(&parties) {
            return Err(PoolError::BadPartyCount(parties));
        }
        let needs_field = matches!(self.kind, Kind::Inverse | Kind::Double);
        if needs_field && !self.domain.is_field() {
            return Err(PoolError::NeedsField {
                kind: self.kind,
                domain: self.domain,
            });
        }
        let z64_only = matches!(self.kind, Kind::Wrap | Kind::BinaryTriple);
        if z64_only && self.domain != Domain::Z64 {
            return Err(PoolError::NeedsZ64 {
                kind: self.kind,
                domain: self.domain,
            });
        }
        if self.kind == Kind::Dabit && self.domain == Domain::Z128 {
            return Err(PoolError::DabitDomain(self.domain));
        }
        match (self.kind, self.shape) {
            (Kind::MatrixTriple, Some(shape)) if !shape.valid() => {
                return Err(PoolError::BadShape(shape))
            }
            (Kind::MatrixTriple, None) => return Err(PoolError::NeedsShape(self.kind)),
            (Kind::MatrixTriple, Some(_)) | (_, None) => {}
            (_, Some(_)) => return Err(PoolError::UnexpectedShape),
        }
        match (self.kind, self.threshold) {
            (Kind::Double, Some(t)) if t >= 1 && parties as u32 > 2 * t as u32 => {
                let p = self.domain.modulus().unwrap_or(0);
                if p <= parties as u128 {
                    return Err(PoolError::FieldTooSmall { p, parties });
                }
            }
            (Kind::Double, t) => {
                return Err(PoolError::BadThreshold {
                    t: t.unwrap_or(0),
                    parties,
                })
            }
            (k, Some(_)) => return Err(PoolError::UnexpectedThreshold(k)),
            _ => {}
        }
        match (self.kind, self.owner) {
            (Kind::InputMask, Some(o)) if o < parties => Ok(()),
            (Kind::InputMask, owner) => Err(PoolError::BadOwner { owner, parties }),
            (_, Some(_)) => Err(PoolError::UnexpectedOwner),
            _ => Ok(()),
        }
    }

    /// Elements in one party's record of one item.
    pub fn record_len(&self, party: u8) -> usize {
        match self.kind {
            Kind::Triple | Kind::BinaryTriple => 3,
            Kind::Square | Kind::Inverse | Kind::Double | Kind::Wrap | Kind::Dabit => 2,
            Kind::Bit => 1,
            Kind::InputMask if self.owner == Some(party) => 2,
            Kind::InputMask => 1,
            Kind::MatrixTriple => self.shape.map_or(3, |s| s.elements() as usize),
        }
    }

    /// The correction party of the `index`-th batch of this pool: rotates so storage spreads
    /// evenly, and skips an input mask's owner (whose record is wholly seeded).
    ///
    /// The one rule, whoever deals (`larder deal` on party stores, `larder dealer` over
    /// HTTPS): `index` is the number of batches of the pool the leader holds (its stock's
    /// `batches`) when a deal starts, plus one for each batch dealt before this one in the
    /// deal. Two dealers at once may pick the same party for a batch each; that only evens
    /// out more slowly.
    pub fn correction_party(&self, parties: u8, index: u64) -> u8 {
        match (self.kind, self.owner) {
            (Kind::InputMask, Some(o)) => {
                let k = (index % (parties as u64 - 1)) as u8;
                if k >= o {
                    k + 1
                } else {
                    k
                }
            }
            _ => (index % parties as u64) as u8,
        }
    }
}

/// Who made a batch, which decides how each party's record is laid out (see
/// [`record_layout`] and [`party_layout`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Maker {
    /// A dealer made every party's share in one place; one correction party stores what
    /// cannot be random.
    Dealer,
    /// Each party made its own share with the others (the parties' own input masks): its
    /// random components come from its own seeds, and every component computed jointly is
    /// explicit at every party.
    Parties,
    /// The HE generator (BFV, no dealer; `generate::he`), laid out as [`Maker::Parties`].
    He,
}

impl Maker {
    /// The code in a batch header (byte 61).
    pub fn code(self) -> u8 {
        match self {
            Maker::Dealer => 0,
            Maker::Parties => 1,
            Maker::He => 2,
        }
    }

    pub fn from_code(c: u8) -> Option<Maker> {
        match c {
            0 => Some(Maker::Dealer),
            1 => Some(Maker::Parties),
            2 => Some(Maker::He),
            _ => None,
        }
    }

    /// Every maker, in code order.
    pub const ALL: [Maker; 3] = [Maker::Dealer, Maker::Parties, Maker::He];

    /// The name used in configuration, jobs, stock and audit records: the generator's name.
    pub fn name(self) -> &'static str {
        match self {
            Maker::Dealer => "dealer",
            Maker::Parties => "parties",
            Maker::He => "he",
        }
    }

    /// The trust model, in a few words, for operators and auditors.
    pub fn trust(self) -> &'static str {
        match self {
            Maker::Dealer => "trusted dealer (sees every share)",
            Maker::Parties | Maker::He => "no dealer (the parties' own nodes, semi-honest)",
        }
    }
}

impl std::fmt::Display for Maker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Maker {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Maker::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown generator {s:?}: expected dealer, parties or he"))
    }
}

/// The sources of each element of `party`'s record in a batch its parties made themselves
/// ([`Maker::Parties`]): shares of fresh random values are the party's own (seeded); values
/// that depend on the other parties' shares are explicit.
pub fn party_layout(spec: &PoolSpec, party: u8) -> Vec<Source> {
    use Source::*;
    match spec.kind {
        Kind::Triple => vec![Seeded, Seeded, Explicit],
        Kind::Square | Kind::Inverse => vec![Seeded, Explicit],
        Kind::Bit => vec![Explicit],
        Kind::InputMask if spec.owner == Some(party) => vec![Seeded, Explicit],
        Kind::InputMask => vec![Seeded],
        Kind::Double => vec![Explicit, Explicit],
        // Made by the dealer only (see `generate::can_make`): every element explicit.
        Kind::Wrap | Kind::Dabit => vec![Explicit, Explicit],
        Kind::BinaryTriple => vec![Explicit, Explicit, Explicit],
        Kind::MatrixTriple => vec![Explicit; spec.record_len(party)],
    }
}

/// Where one element of a party's record comes from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Source {
    /// Drawn from the party's chunk seed.
    Seeded,
    /// Stored in the batch file.
    Explicit,
}

/// For double sharings: whether `party`'s share of the degree-`degree` polynomial is seeded.
/// The `degree` parties after the correction party (cyclically) get seeded shares.
pub fn double_share_is_seeded(parties: u8, correction: u8, party: u8, degree: u8) -> bool {
    let offset = (party as u16 + parties as u16 - correction as u16) % parties as u16;
    offset >= 1 && offset <= degree as u16
}

/// The sources of each element of `party`'s record in a batch with correction party
/// `correction`.
pub fn record_layout(spec: &PoolSpec, parties: u8, party: u8, correction: u8) -> Vec<Source> {
    use Source::*;
    let fix = |explicit: bool| if explicit { Explicit } else { Seeded };
    let k = party == correction;
    match spec.kind {
        Kind::Triple => vec![Seeded, Seeded, fix(k)],
        Kind::Square => vec![Seeded, fix(k)],
        Kind::Bit => vec![fix(k)],
        Kind::Inverse => vec![fix(k), fix(k)],
        Kind::InputMask if spec.owner == Some(party) => vec![Seeded, Seeded],
        Kind::InputMask => vec![fix(k)],
        Kind::Wrap => vec![Seeded, fix(k)],
        Kind::BinaryTriple => vec![Seeded, Seeded, fix(k)],
        // Over a prime field the XOR share is a word below the field's size, which a seeded
        // element is not: every party's is explicit.
        Kind::Dabit if spec.domain.is_field() => vec![fix(k), Explicit],
        Kind::Dabit => vec![fix(k), fix(k)],
        Kind::MatrixTriple => {
            let [a, b, c] = spec.shape.map_or([1, 1, 1], |s| s.sizes());
            let mut l = vec![Seeded; a + b];
            l.extend(std::iter::repeat_n(fix(k), c));
            l
        }
        Kind::Double => {
            let t = spec.threshold.unwrap_or(1);
            vec![
                fix(!double_share_is_seeded(parties, correction, party, t)),
                fix(!double_share_is_seeded(parties, correction, party, 2 * t)),
            ]
        }
    }
}

impl fmt::Display for PoolSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.kind, self.domain)?;
        if let Some(t) = self.threshold {
            write!(f, "-t{t}")?;
        }
        if let Some(o) = self.owner {
            write!(f, "-o{o}")?;
        }
        if let Some(shape) = self.shape {
            write!(f, "-{shape}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PoolSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for PoolSpec {
    type Err = PoolError;
    /// Parses a pool id such as `triple-z64`, `double-p128-t1`, `input-mask-p61-o2` or
    /// `matrix-triple-z64-128x256x64`.
    fn from_str(s: &str) -> Result<Self, PoolError> {
        let bad = || {
            PoolError::Parse(format!(
                "{s:?} (expected kind-domain[-tT][-oO][-MxKxN], e.g. triple-z64)"
            ))
        };
        // The longest kind name that prefixes the id (matrix-triple, not triple).
        let kind = Kind::ALL
            .into_iter()
            .filter(|k| s.starts_with(k.name()) && s[k.name().len()..].starts_with('-'))
            .max_by_key(|k| k.name().len())
            .ok_or_else(bad)?;
        let mut parts = s[kind.name().len() + 1..].split('-');
        let domain: Domain = parts
            .next()
            .ok_or_else(bad)?
            .parse()
            .map_err(|e| PoolError::Parse(format!("{s:?}: {e}")))?;
        let mut spec = PoolSpec::new(kind, domain);
        for part in parts {
            let num = |p: &str| p[1..].parse::<u8>().map_err(|_| bad());
            match part.as_bytes().first() {
                Some(b't') if spec.threshold.is_none() => spec.threshold = Some(num(part)?),
                Some(b'o') if spec.owner.is_none() => spec.owner = Some(num(part)?),
                Some(b'0'..=b'9') if spec.shape.is_none() => spec.shape = Some(part.parse()?),
                _ => return Err(bad()),
            }
        }
        Ok(spec)
    }
}

impl TryFrom<String> for PoolSpec {
    type Error = PoolError;
    fn try_from(s: String) -> Result<Self, PoolError> {
        s.parse()
    }
}

impl From<PoolSpec> for String {
    fn from(p: PoolSpec) -> String {
        p.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::{P128, P61};

    #[test]
    fn pool_ids_round_trip() {
        for id in [
            "triple-z64",
            "double-p128-t1",
            "input-mask-p61-o2",
            "inverse-fp:1000003",
            "bit-z128",
        ] {
            let p: PoolSpec = id.parse().unwrap();
            assert_eq!(p.to_string(), id);
        }
        assert!("triplez64".parse::<PoolSpec>().is_err());
        assert!("triple-z64-x1".parse::<PoolSpec>().is_err());
        assert!("triple-z64-t1-t2".parse::<PoolSpec>().is_err());
    }

    #[test]
    fn invalid_pools_are_refused_with_the_reason() {
        let inv = PoolSpec::new(Kind::Inverse, Domain::Z64);
        assert!(matches!(inv.validate(3), Err(PoolError::NeedsField { .. })));
        let mut d = PoolSpec::new(Kind::Double, Domain::Fp(P128));
        assert!(matches!(d.validate(3), Err(PoolError::BadThreshold { .. })));
        d.threshold = Some(2);
        assert_eq!(
            d.validate(4),
            Err(PoolError::BadThreshold { t: 2, parties: 4 })
        );
        assert_eq!(d.validate(5), Ok(()));
        let small = PoolSpec {
            threshold: Some(1),
            ..PoolSpec::new(Kind::Double, Domain::prime(3).unwrap())
        };
        assert!(matches!(
            small.validate(3),
            Err(PoolError::FieldTooSmall { .. })
        ));
        let mut m = PoolSpec::new(Kind::InputMask, Domain::Fp(P61));
        assert!(matches!(m.validate(3), Err(PoolError::BadOwner { .. })));
        m.owner = Some(3);
        assert!(matches!(m.validate(3), Err(PoolError::BadOwner { .. })));
        m.owner = Some(2);
        assert_eq!(m.validate(3), Ok(()));
        let t = PoolSpec {
            owner: Some(0),
            ..PoolSpec::new(Kind::Triple, Domain::Z64)
        };
        assert_eq!(t.validate(3), Err(PoolError::UnexpectedOwner));
        assert_eq!(
            PoolSpec::new(Kind::Triple, Domain::Z64).validate(1),
            Err(PoolError::BadPartyCount(1))
        );
    }

    #[test]
    fn correction_party_rotates_and_skips_the_mask_owner() {
        let t = PoolSpec::new(Kind::Triple, Domain::Z64);
        let seq: Vec<u8> = (0..6).map(|i| t.correction_party(3, i)).collect();
        assert_eq!(seq, [0, 1, 2, 0, 1, 2]);
        let m = PoolSpec {
            owner: Some(1),
            ..PoolSpec::new(Kind::InputMask, Domain::Z64)
        };
        let seq: Vec<u8> = (0..4).map(|i| m.correction_party(3, i)).collect();
        assert_eq!(seq, [0, 2, 0, 2]);
    }

    #[test]
    fn exactly_one_party_stores_each_correction() {
        // For every additive kind, exactly the correction party has explicit elements.
        for kind in [Kind::Triple, Kind::Square, Kind::Bit, Kind::Inverse] {
            let spec = PoolSpec::new(kind, Domain::Fp(P61));
            for k in 0..3 {
                for party in 0..3 {
                    let has = record_layout(&spec, 3, party, k).contains(&Source::Explicit);
                    assert_eq!(has, party == k, "{kind} k={k} party={party}");
                }
            }
        }
    }
}
