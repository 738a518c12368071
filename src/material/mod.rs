//! Kinds of material, pools, and which parts of each party's share are seeded or explicit.
//!
//! A *pool* is kind x domain x sharing (x owner for input masks). Each party's share of an
//! item is a *record* of a fixed number of elements in a fixed order (a triple is a, b, c).
//! With seed compression, each element of a record is either *seeded* (drawn from the party's
//! own chunk seed, in record order) or *explicit* (stored), and [`record_layout`] says which.

pub mod batch;
pub mod prss;
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
    /// (X, W, Y = conv2d(X, W)) for a fixed geometry (see [`Conv`]), each element shared
    /// additively: `conv-triple-z64-1x3x32x32-16x3x3-s1x1-p1x1`. A record is X, W, then Y,
    /// each row-major (NCHW, OIHW, NCHW).
    ConvTriple,
}

impl Kind {
    pub const ALL: [Kind; 11] = [
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
        Kind::ConvTriple,
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
            Kind::ConvTriple => "conv-triple",
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
            Kind::ConvTriple => 11,
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
    #[error("{0} pools need a shape (e.g. matrix-triple-z64-128x256x64, conv-triple-z64-1x3x32x32-16x3x3-s1-p1)")]
    NeedsShape(Kind),
    #[error("only matrix-triple and conv-triple pools have a shape, each its own kind")]
    UnexpectedShape,
    #[error("shape {0} out of range: every side from 1 to {MAX_SIDE}, a kernel no larger than the padded input, at most {MAX_RECORD_ELEMENTS} elements per triple")]
    BadShape(String),
    #[error("bad pool id: {0}")]
    Parse(String),
}

/// Longest side of a matrix or convolution triple's tensors (and largest stride or padding).
pub const MAX_SIDE: u16 = u16::MAX;
/// Most elements in one party's record (a matrix triple's A, B and C together): 2^22, 32 MiB
/// over Z_2^64.
pub const MAX_RECORD_ELEMENTS: u64 = 1 << 22;
/// Bytes of a shape in batch and share headers.
pub const SHAPE_BYTES: usize = 48;

/// The geometry of a convolution triple, as torch's `conv2d` (cross-correlation, zero padding,
/// no dilation, one group): X is n x c x h x w, the kernels W are o x c x kh x kw, and
/// Y = conv2d(X, W) is n x o x oh x ow with oh = (h + 2 ph - kh) / sh + 1 (and so for ow).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Conv {
    pub n: u16,
    pub c: u16,
    pub h: u16,
    pub w: u16,
    pub o: u16,
    pub kh: u16,
    pub kw: u16,
    pub sh: u16,
    pub sw: u16,
    pub ph: u16,
    pub pw: u16,
}

impl Conv {
    /// The output's height and width (`None` if the kernel is larger than the padded input).
    pub fn out(&self) -> Option<(u32, u32)> {
        let side = |x: u16, k: u16, s: u16, p: u16| {
            let padded = u64::from(x) + 2 * u64::from(p);
            (s >= 1 && u64::from(k) <= padded)
                .then(|| ((padded - u64::from(k)) / u64::from(s) + 1) as u32)
        };
        Some((
            side(self.h, self.kh, self.sh, self.ph)?,
            side(self.w, self.kw, self.sw, self.pw)?,
        ))
    }

    fn fields(&self) -> [u16; 11] {
        [
            self.n, self.c, self.h, self.w, self.o, self.kh, self.kw, self.sh, self.sw, self.ph,
            self.pw,
        ]
    }
}

/// The shape of a matrix or convolution triple, part of its pool.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Shape {
    /// A is m x k, B is k x n, C = A·B is m x n.
    Matrix { m: u16, k: u16, n: u16 },
    /// X, W and Y = conv2d(X, W), see [`Conv`].
    Conv(Conv),
}

impl Shape {
    /// Elements of the three tensors of a record, in record order.
    pub fn sizes(self) -> [usize; 3] {
        match self {
            Shape::Matrix { m, k, n } => {
                let (m, k, n) = (m as usize, k as usize, n as usize);
                [m * k, k * n, m * n]
            }
            Shape::Conv(g) => {
                let (oh, ow) = g.out().unwrap_or((0, 0));
                let u = |x: u16| x as usize;
                let (oh, ow) = (oh as usize, ow as usize);
                [
                    u(g.n) * u(g.c) * u(g.h) * u(g.w),
                    u(g.o) * u(g.c) * u(g.kh) * u(g.kw),
                    u(g.n) * u(g.o) * oh * ow,
                ]
            }
        }
    }

    /// Elements of one record.
    pub fn elements(self) -> u64 {
        self.sizes().iter().map(|&s| s as u64).sum()
    }

    /// The kind this shape belongs to.
    pub fn kind(self) -> Kind {
        match self {
            Shape::Matrix { .. } => Kind::MatrixTriple,
            Shape::Conv(_) => Kind::ConvTriple,
        }
    }

    fn valid(self) -> bool {
        let sides_ok = match self {
            Shape::Matrix { m, k, n } => [m, k, n].iter().all(|&s| (1..=MAX_SIDE).contains(&s)),
            Shape::Conv(g) => {
                let f = g.fields();
                f[..9].iter().all(|&s| (1..=MAX_SIDE).contains(&s))
                    && f[9..].iter().all(|&p| p < MAX_SIDE)
                    && g.out().is_some()
            }
        };
        // Computed in u64 only once every side is bounded.
        sides_ok && self.elements() <= MAX_RECORD_ELEMENTS
    }

    /// The [`SHAPE_BYTES`] stored in batch and share headers: a tag (1 matrix, 2 convolution),
    /// three zero bytes, then the sides as little-endian u32 (m, k, n; or n, c, h, w, o, kh,
    /// kw, sh, sw, ph, pw), zero-filled.
    pub fn to_bytes(self) -> [u8; SHAPE_BYTES] {
        let mut b = [0u8; SHAPE_BYTES];
        let fields: Vec<u16> = match self {
            Shape::Matrix { m, k, n } => {
                b[0] = 1;
                vec![m, k, n]
            }
            Shape::Conv(g) => {
                b[0] = 2;
                g.fields().to_vec()
            }
        };
        for (i, f) in fields.iter().enumerate() {
            b[4 + 4 * i..8 + 4 * i].copy_from_slice(&u32::from(*f).to_le_bytes());
        }
        b
    }

    /// Reads [`Self::to_bytes`]; `None` for an unknown tag, nonzero padding or a side above
    /// [`MAX_SIDE`].
    pub fn from_bytes(b: &[u8; SHAPE_BYTES]) -> Option<Shape> {
        let wide =
            |i: usize| u32::from_le_bytes(b[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes"));
        let used = match b[0] {
            1 => 3,
            2 => 11,
            _ => return None,
        };
        if b[1..4] != [0, 0, 0]
            || b[4 + 4 * used..].iter().any(|&x| x != 0)
            || (0..used).any(|i| wide(i) > u32::from(MAX_SIDE))
        {
            return None;
        }
        let word = |i: usize| wide(i) as u16;
        Some(match b[0] {
            1 => Shape::Matrix {
                m: word(0),
                k: word(1),
                n: word(2),
            },
            _ => Shape::Conv(Conv {
                n: word(0),
                c: word(1),
                h: word(2),
                w: word(3),
                o: word(4),
                kh: word(5),
                kw: word(6),
                sh: word(7),
                sw: word(8),
                ph: word(9),
                pw: word(10),
            }),
        })
    }

    /// Parses the shape parts of a pool id: `<m>x<k>x<n>` for a matrix triple; for a
    /// convolution `<n>x<c>x<h>x<w>`, `<o>x<kh>x<kw>` and optional `s<stride>` and
    /// `p<padding>` (one number, or height x width; stride 1 and padding 0 if left out).
    fn parse(
        kind: Kind,
        dims: &[&str],
        stride: Option<&str>,
        pad: Option<&str>,
    ) -> Result<Shape, PoolError> {
        let nums = |s: &str| -> Result<Vec<u16>, PoolError> {
            s.split('x')
                .map(|p| {
                    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(PoolError::Parse(format!(
                            "{s:?} is not a list of sides like 3x4x5"
                        )));
                    }
                    p.parse()
                        .map_err(|_| PoolError::Parse(format!("{p:?} is too large a side")))
                })
                .collect()
        };
        let pair = |s: Option<&str>, default: u16| -> Result<(u16, u16), PoolError> {
            match s.map(nums).transpose()?.as_deref() {
                None => Ok((default, default)),
                Some([x]) => Ok((*x, *x)),
                Some([y, x]) => Ok((*y, *x)),
                Some(_) => Err(PoolError::Parse(
                    "a stride or padding is one number or two (HxW)".into(),
                )),
            }
        };
        match (kind, dims) {
            (Kind::ConvTriple, [input, kernel]) => match (&nums(input)?[..], &nums(kernel)?[..]) {
                ([n, c, h, w], [o, kh, kw]) => {
                    let (sh, sw) = pair(stride, 1)?;
                    let (ph, pw) = pair(pad, 0)?;
                    Ok(Shape::Conv(Conv {
                        n: *n,
                        c: *c,
                        h: *h,
                        w: *w,
                        o: *o,
                        kh: *kh,
                        kw: *kw,
                        sh,
                        sw,
                        ph,
                        pw,
                    }))
                }
                _ => Err(PoolError::Parse(
                    "a convolution is <n>x<c>x<h>x<w>-<o>x<kh>x<kw>[-s<stride>][-p<padding>]"
                        .into(),
                )),
            },
            (_, [dims]) if stride.is_none() && pad.is_none() => match nums(dims)?[..] {
                [m, k, n] => Ok(Shape::Matrix { m, k, n }),
                _ => Err(PoolError::Parse(format!(
                    "{dims:?} is not a matrix shape <m>x<k>x<n>"
                ))),
            },
            _ => Err(PoolError::Parse(format!(
                "{} takes no such shape",
                kind.name()
            ))),
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Matrix { m, k, n } => write!(f, "{m}x{k}x{n}"),
            Shape::Conv(g) => write!(
                f,
                "{}x{}x{}x{}-{}x{}x{}-s{}x{}-p{}x{}",
                g.n, g.c, g.h, g.w, g.o, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw
            ),
        }
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
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

    /// A matrix- or conv-triple pool of `shape` over `domain`.
    pub fn shaped(domain: Domain, shape: Shape) -> Self {
        PoolSpec {
            shape: Some(shape),
            ..PoolSpec::new(shape.kind(), domain)
        }
    }

    /// Items per batch of this pool, for a consortium's `batch_size`: fewer for matrix
    /// triples, so one party's share of a batch stays near [`BATCH_BYTES`] (at least one item).
    pub fn batch_items(&self, batch_size: u64) -> u64 {
        match self.shaped_record_bytes() {
            Some(bytes) => batch_size.min(BATCH_BYTES / bytes).max(1),
            None => batch_size,
        }
    }

    /// Bytes of one record of a matrix or convolution triple (`None` for other pools).
    fn shaped_record_bytes(&self) -> Option<u64> {
        self.shape
            .map(|shape| shape.elements() * self.domain.elem_bytes() as u64)
    }

    /// Items per chunk in this pool's batch files: [`CHUNK_ITEMS`], or fewer for matrix
    /// triples, so a chunk's records stay near 4 MiB (at least one item).
    pub fn chunk_items(&self) -> u32 {
        match self.shaped_record_bytes() {
            Some(bytes) => (CHUNK_BYTES / bytes).clamp(1, u64::from(CHUNK_ITEMS)) as u32,
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
            (Kind::MatrixTriple | Kind::ConvTriple, None) => {
                return Err(PoolError::NeedsShape(self.kind))
            }
            (kind, Some(shape)) if shape.kind() != kind => return Err(PoolError::UnexpectedShape),
            (_, Some(shape)) if !shape.valid() => {
                return Err(PoolError::BadShape(shape.to_string()))
            }
            _ => {}
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
            Kind::MatrixTriple | Kind::ConvTriple => {
                self.shape.map_or(3, |s| s.elements() as usize)
            }
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
    /// Pseudo-random secret sharing from replicated keys (no dealer; secure only while no
    /// `t + 1` parties collude): chunks hold derived keys, see [`prss`].
    Prss,
}

impl Maker {
    /// The code in a batch header (byte 61).
    pub fn code(self) -> u8 {
        match self {
            Maker::Dealer => 0,
            Maker::Parties => 1,
            Maker::He => 2,
            Maker::Prss => 3,
        }
    }

    pub fn from_code(c: u8) -> Option<Maker> {
        match c {
            0 => Some(Maker::Dealer),
            1 => Some(Maker::Parties),
            2 => Some(Maker::He),
            3 => Some(Maker::Prss),
            _ => None,
        }
    }

    /// Every maker, in code order.
    pub const ALL: [Maker; 4] = [Maker::Dealer, Maker::Parties, Maker::He, Maker::Prss];

    /// The name used in configuration, jobs, stock and audit records: the generator's name.
    pub fn name(self) -> &'static str {
        match self {
            Maker::Dealer => "dealer",
            Maker::Parties => "parties",
            Maker::He => "he",
            Maker::Prss => "prss",
        }
    }

    /// The assumption its material is secure under.
    pub fn assumption(self) -> Assumption {
        match self {
            Maker::Dealer => Assumption::TrustedDealer,
            Maker::Parties | Maker::He => Assumption::DishonestMajority,
            Maker::Prss => Assumption::HonestMajority,
        }
    }

    /// The trust model, in a few words, for operators and auditors.
    pub fn trust(self) -> &'static str {
        match self {
            Maker::Dealer => "trusted dealer (sees every share)",
            Maker::Parties | Maker::He => "no dealer (the parties' own nodes, semi-honest)",
            Maker::Prss => {
                "no dealer (the parties' own nodes, semi-honest, honest majority: no t + 1 collude)"
            }
        }
    }
}

/// What must hold, beyond semi-honest parties and an authenticated transport, for material to
/// be secure: recorded with every batch (by its generator), shown by pools, the API and the
/// audit trail, and restricted per pool by the consortium (`pool_assumptions`).
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Debug,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Assumption {
    /// A dealer who sees every share colludes with no party (the parties themselves may be
    /// any number short of all).
    TrustedDealer,
    /// At least one party is honest: up to `n - 1` may collude (the HE generator, the
    /// parties' own input masks).
    DishonestMajority,
    /// No `t + 1` parties collude, `t = floor((n - 1) / 2)` (PRSS): an engine secure against
    /// more (MP-SPDZ's `semi-party.x`, for one) is then only as secure as this.
    HonestMajority,
}

impl Assumption {
    pub const ALL: [Assumption; 3] = [
        Assumption::TrustedDealer,
        Assumption::DishonestMajority,
        Assumption::HonestMajority,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Assumption::TrustedDealer => "trusted-dealer",
            Assumption::DishonestMajority => "dishonest-majority",
            Assumption::HonestMajority => "honest-majority",
        }
    }
}

impl std::fmt::Display for Assumption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Assumption {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Assumption::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown assumption {s:?}: expected trusted-dealer, dishonest-majority or \
                     honest-majority"
                )
            })
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
            .ok_or_else(|| format!("unknown generator {s:?}: expected dealer, parties, he or prss"))
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
        Kind::MatrixTriple | Kind::ConvTriple => vec![Explicit; spec.record_len(party)],
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
        Kind::MatrixTriple | Kind::ConvTriple => {
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
                "{s:?} (expected kind-domain[-tT][-oO][-shape], e.g. triple-z64)"
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
        let (mut dims, mut stride, mut pad) = (Vec::new(), None, None);
        for part in parts {
            let num = |p: &str| p[1..].parse::<u8>().map_err(|_| bad());
            match part.as_bytes().first() {
                Some(b't') if spec.threshold.is_none() => spec.threshold = Some(num(part)?),
                Some(b'o') if spec.owner.is_none() => spec.owner = Some(num(part)?),
                Some(b'0'..=b'9') if dims.len() < 2 && stride.is_none() && pad.is_none() => {
                    dims.push(part)
                }
                Some(b's') if kind == Kind::ConvTriple && stride.is_none() && pad.is_none() => {
                    stride = Some(&part[1..])
                }
                Some(b'p') if kind == Kind::ConvTriple && pad.is_none() => pad = Some(&part[1..]),
                _ => return Err(bad()),
            }
        }
        if !dims.is_empty() {
            spec.shape = Some(Shape::parse(kind, &dims, stride, pad)?);
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
