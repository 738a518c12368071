//! Rings and prime fields the material lives in: pure arithmetic, no IO.
//!
//! Every domain implements [`Ring`]. Elements are always held in canonical form (the integer in
//! `[0, m)`), so encoding is the same for every caller; fast multiplication (Mersenne folding,
//! Montgomery) happens inside `mul`. Run-time domains ([`Domain`]) turn into a concrete ring with
//! [`with_ring!`], so hot loops are monomorphised per ring.

mod fp128;
mod fp64;
mod mersenne;
mod prime;
mod zk;

pub use fp128::Fp128;
pub use fp64::Fp64;
pub use mersenne::M61;
pub use prime::is_prime;
pub use zk::{Z128, Z64};

use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use zeroize::Zeroize;

/// 2^61 - 1, a Mersenne prime with a folding reduction.
pub const P61: u128 = (1u128 << 61) - 1;
/// MP-SPDZ's default 128-bit prime, 2^127 + 1802241.
pub const P128: u128 = (1u128 << 127) + 1_802_241;
/// An HE-friendly 60-bit prime, 1 mod 16384, so BFV with N up to 8192 can batch over it.
pub const P60: u128 = 1_152_921_504_606_830_593;

/// A commutative ring with one, the arithmetic every kind of material needs.
///
/// Implementations are small `Copy`-cheap values (a modulus and precomputed constants); all
/// methods take `&self` so run-time moduli work the same as fixed ones.
pub trait Ring: Clone + Send + Sync + 'static {
    /// An element in canonical form.
    type Elem: Copy + Eq + Default + Send + Sync + fmt::Debug + 'static;

    /// The additive identity.
    fn zero(&self) -> Self::Elem {
        Self::Elem::default()
    }
    /// The multiplicative identity.
    fn one(&self) -> Self::Elem;
    fn add(&self, a: Self::Elem, b: Self::Elem) -> Self::Elem;
    fn sub(&self, a: Self::Elem, b: Self::Elem) -> Self::Elem;
    fn neg(&self, a: Self::Elem) -> Self::Elem {
        self.sub(self.zero(), a)
    }
    fn mul(&self, a: Self::Elem, b: Self::Elem) -> Self::Elem;
    /// A uniformly random element (rejection sampling where the modulus is not a power of two).
    fn sample<R: RngCore + ?Sized>(&self, rng: &mut R) -> Self::Elem;
    /// Fills `out` with independent uniformly random elements, deterministically for a given
    /// stream and `out.len()`. For rings and fields below 2^64 these are the elements
    /// [`Ring::sample`] would draw one at a time; larger prime fields sample in rounds (see
    /// `fill_below_u128`), so a stream must always be expanded with the same request.
    fn sample_into<R: RngCore + ?Sized>(&self, rng: &mut R, out: &mut [Self::Elem]) {
        for e in out {
            *e = self.sample(rng);
        }
    }
    /// `x` reduced into the ring.
    fn reduce(&self, x: u128) -> Self::Elem;
    /// The canonical integer of an element.
    fn to_u128(&self, a: Self::Elem) -> u128;
    /// Bytes of one encoded element.
    fn elem_bytes(&self) -> usize;
    /// Little-endian canonical encoding into exactly `elem_bytes()` bytes.
    fn encode(&self, a: Self::Elem, out: &mut [u8]);
    /// Inverse of [`Ring::encode`]; `None` if the bytes are not a canonical element.
    fn decode(&self, bytes: &[u8]) -> Option<Self::Elem>;
    /// The multiplicative inverse, for nonzero elements of a field; `None` otherwise.
    fn inv(&self, a: Self::Elem) -> Option<Self::Elem>;
    /// Whether every nonzero element is invertible.
    fn is_field(&self) -> bool;

    /// `a^e` by square and multiply.
    fn pow(&self, mut a: Self::Elem, mut e: u128) -> Self::Elem {
        let mut acc = self.one();
        while e > 0 {
            if e & 1 == 1 {
                acc = self.mul(acc, a);
            }
            a = self.mul(a, a);
            e >>= 1;
        }
        acc
    }
}

/// Where values live, as named in configuration, pool ids and file headers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Domain {
    /// Z_2^64.
    Z64,
    /// Z_2^128.
    Z128,
    /// The prime field of this odd prime (checked on construction).
    Fp(u128),
}

/// Why a domain name or modulus was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DomainError {
    #[error("unknown domain {0:?}: expected z64, z128, p61, p128, p60 or fp:<odd prime below 2^128 in decimal>")]
    Unknown(String),
    #[error("{0} is not a prime (a prime field's modulus must be an odd prime below 2^128)")]
    NotPrime(u128),
}

impl Domain {
    /// A prime field, after checking that `p` is an odd prime.
    ///
    /// # Errors
    /// [`DomainError::NotPrime`] if `p` is even or composite.
    pub fn prime(p: u128) -> Result<Self, DomainError> {
        if p < 3 || p.is_multiple_of(2) || !is_prime(p) {
            return Err(DomainError::NotPrime(p));
        }
        Ok(Domain::Fp(p))
    }

    /// The prime modulus, for prime fields.
    pub fn modulus(&self) -> Option<u128> {
        match self {
            Domain::Fp(p) => Some(*p),
            _ => None,
        }
    }

    pub fn is_field(&self) -> bool {
        matches!(self, Domain::Fp(_))
    }

    /// Bytes per encoded element.
    pub fn elem_bytes(&self) -> usize {
        match self {
            Domain::Z64 => 8,
            Domain::Z128 => 16,
            Domain::Fp(p) if *p < (1u128 << 64) => 8,
            Domain::Fp(_) => 16,
        }
    }

    /// The concrete ring, with its fast path chosen by modulus.
    pub fn ring(&self) -> AnyRing {
        match *self {
            Domain::Z64 => AnyRing::Z64(Z64),
            Domain::Z128 => AnyRing::Z128(Z128),
            Domain::Fp(P61) => AnyRing::M61(M61),
            Domain::Fp(p) if p < (1u128 << 64) => AnyRing::Fp64(Fp64::new(p as u64)),
            Domain::Fp(p) => AnyRing::Fp128(Fp128::new(p)),
        }
    }

    /// Binary form used in file headers: a tag byte and the modulus (0 for rings), 17 bytes.
    pub fn to_bytes(&self) -> [u8; 17] {
        let mut out = [0u8; 17];
        let (tag, m) = match self {
            Domain::Z64 => (1u8, 0u128),
            Domain::Z128 => (2, 0),
            Domain::Fp(p) => (3, *p),
        };
        out[0] = tag;
        out[1..].copy_from_slice(&m.to_le_bytes());
        out
    }

    /// Inverse of [`Domain::to_bytes`]; a prime is checked again, since the bytes came from disk.
    pub fn from_bytes(b: &[u8; 17]) -> Option<Self> {
        let m = u128::from_le_bytes(b[1..].try_into().ok()?);
        match (b[0], m) {
            (1, 0) => Some(Domain::Z64),
            (2, 0) => Some(Domain::Z128),
            (3, p) => Domain::prime(p).ok(),
            _ => None,
        }
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Domain::Z64 => f.write_str("z64"),
            Domain::Z128 => f.write_str("z128"),
            Domain::Fp(P61) => f.write_str("p61"),
            Domain::Fp(P128) => f.write_str("p128"),
            Domain::Fp(P60) => f.write_str("p60"),
            Domain::Fp(p) => write!(f, "fp:{p}"),
        }
    }
}

impl fmt::Debug for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Domain {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "z64" => Ok(Domain::Z64),
            "z128" => Ok(Domain::Z128),
            "p61" => Ok(Domain::Fp(P61)),
            "p128" => Ok(Domain::Fp(P128)),
            "p60" => Ok(Domain::Fp(P60)),
            _ => {
                let digits = s
                    .strip_prefix("fp:")
                    .ok_or_else(|| DomainError::Unknown(s.to_string()))?;
                let p: u128 = digits
                    .parse()
                    .map_err(|_| DomainError::Unknown(s.to_string()))?;
                Domain::prime(p)
            }
        }
    }
}

impl TryFrom<String> for Domain {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Domain> for String {
    fn from(d: Domain) -> String {
        d.to_string()
    }
}

/// A domain's concrete ring; match on it with [`with_ring!`].
#[derive(Clone, Debug)]
pub enum AnyRing {
    Z64(Z64),
    Z128(Z128),
    M61(M61),
    Fp64(Fp64),
    Fp128(Fp128),
}

/// Runs `$body` with `$r` bound to the concrete ring of an [`AnyRing`], monomorphising the body
/// once per ring.
#[macro_export]
macro_rules! with_ring {
    ($any:expr, $r:ident => $body:expr) => {
        match $any {
            $crate::math::AnyRing::Z64(ref $r) => $body,
            $crate::math::AnyRing::Z128(ref $r) => $body,
            $crate::math::AnyRing::M61(ref $r) => $body,
            $crate::math::AnyRing::Fp64(ref $r) => $body,
            $crate::math::AnyRing::Fp128(ref $r) => $body,
        }
    };
}

/// Samples `bits`-bit integers until one is below `m` (uniform on `[0, m)`).
#[inline]
pub(crate) fn sample_below_u64<R: RngCore + ?Sized>(rng: &mut R, m: u64) -> u64 {
    let shift = m.leading_zeros();
    loop {
        let x = rng.next_u64() >> shift;
        if x < m {
            return x;
        }
    }
}

/// Uniform on `[0, m)` for `m >= 2^64`, by rejection: a low then a high word form a candidate
/// of `m`'s bit length, accepted if below `m`.
#[inline]
pub(crate) fn sample_below_u128<R: RngCore + ?Sized>(rng: &mut R, m: u128) -> u128 {
    let shift = m.leading_zeros();
    loop {
        let lo = rng.next_u64() as u128;
        let hi = rng.next_u64() as u128;
        let x = ((hi << 64) | lo) >> shift;
        if x < m {
            return x;
        }
    }
}

/// Candidates read per round of bulk sampling.
const ROUND: usize = 128;

/// [`sample_below_u64`] for every slot of `out`, reading the stream in bulk and compacting
/// accepted candidates without branches. Each round reads at most as many candidates as slots
/// remain, so no candidate past the last accepted one is consumed: the result and the stream
/// position equal those of the one-at-a-time sampler.
pub(crate) fn fill_below_u64<R: RngCore + ?Sized>(rng: &mut R, m: u64, out: &mut [u64]) {
    let shift = m.leading_zeros();
    let mut bytes = [0u8; ROUND * 8];
    let mut k = 0;
    while k < out.len() {
        let round = (out.len() - k).min(ROUND);
        let bytes = &mut bytes[..round * 8];
        rng.fill_bytes(bytes);
        for c in bytes.chunks_exact(8) {
            let x = u64::from_le_bytes(c.try_into().expect("8 bytes")) >> shift;
            out[k] = x;
            k += (x < m) as usize;
        }
    }
}

/// Uniform elements of `[0, m)` for `m >= 2^64`, by exact rejection with the high word
/// first, in rounds: each round reads `R = min(slots left, 128)` high words, then one low word
/// for each high word not above `m`'s (in order); a candidate is accepted if it is below `m`.
/// A high word above `m`'s rejects without spending a low word, so MP-SPDZ's 128-bit prime
/// costs 3 words per element instead of 4; both passes are branch-free.
///
/// Unlike [`fill_below_u64`], the result depends on `out.len()` (the round sizes do): a
/// stream must always be expanded with the same request, as batch chunks are (one call for all
/// of a chunk's seeded elements).
pub(crate) fn fill_below_u128<R: RngCore + ?Sized>(rng: &mut R, m: u128, out: &mut [u128]) {
    let shift = (m >> 64).leading_zeros();
    let (m_hi, m_lo) = ((m >> 64) as u64, m as u64);
    let mut bytes = [0u8; ROUND * 8];
    let mut his = [0u64; ROUND];
    let mut los = [0u64; ROUND];
    let mut k = 0;
    while k < out.len() {
        let round = (out.len() - k).min(ROUND);
        rng.fill_bytes(&mut bytes[..round * 8]);
        let mut t = 0;
        for c in bytes[..round * 8].chunks_exact(8) {
            let hi = u64::from_le_bytes(c.try_into().expect("8 bytes")) >> shift;
            his[t] = hi;
            t += (hi <= m_hi) as usize;
        }
        rng.fill_bytes(&mut bytes[..t * 8]);
        for (lo, c) in los[..t].iter_mut().zip(bytes[..t * 8].chunks_exact(8)) {
            *lo = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        }
        for (&hi, &lo) in his[..t].iter().zip(&los[..t]) {
            out[k] = ((hi as u128) << 64) | lo as u128;
            k += (hi < m_hi || lo < m_lo) as usize;
        }
    }
    bytes.zeroize();
    his.zeroize();
    los.zeroize();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_domains_round_trip_through_their_names() {
        for name in ["z64", "z128", "p61", "p128", "p60"] {
            let d: Domain = name.parse().unwrap();
            assert_eq!(d.to_string(), name);
            assert_eq!(Domain::from_bytes(&d.to_bytes()), Some(d));
        }
        let custom: Domain = "fp:1000003".parse().unwrap();
        assert_eq!(custom.to_string(), "fp:1000003");
    }

    #[test]
    fn presets_are_the_documented_primes() {
        assert_eq!(P128, 170141183460469231731687303715885907969);
        assert_eq!(P60 % 16384, 1);
        for p in [P61, P128, P60] {
            assert!(is_prime(p));
        }
    }

    #[test]
    fn composite_and_even_moduli_are_refused_with_the_number() {
        assert_eq!(
            "fp:1000001".parse::<Domain>(),
            Err(DomainError::NotPrime(1000001))
        );
        assert_eq!(Domain::prime(2), Err(DomainError::NotPrime(2)));
        assert!(matches!(
            "q7".parse::<Domain>(),
            Err(DomainError::Unknown(_))
        ));
        let mut bytes = Domain::Fp(P61).to_bytes();
        bytes[1] ^= 2; // 2^61 - 3 is not prime... but check via the function either way
        assert_eq!(Domain::from_bytes(&bytes).is_some(), is_prime(P61 ^ 2));
    }
}

/// Square roots in the prime field of `p` by Tonelli and Shanks, with what depends only on
/// the field (the odd part of p - 1 and a non-residue's power) found once.
#[derive(Clone, Copy, Debug)]
pub struct Sqrt<'a, R: Ring> {
    ring: &'a R,
    p: u128,
    /// p - 1 = q 2^s with q odd.
    q: u128,
    s: u32,
    /// A quadratic non-residue to the power q.
    z_q: R::Elem,
}

impl<'a, R: Ring> Sqrt<'a, R> {
    /// For the field `ring` of the odd prime `p`.
    ///
    /// # Panics
    /// If `p` is not an odd prime (no non-residue is found).
    pub fn new(ring: &'a R, p: u128) -> Self {
        let s = (p - 1).trailing_zeros();
        let q = (p - 1) >> s;
        let minus_one = ring.neg(ring.one());
        let non_residue = (2u128..p)
            .map(|z| ring.reduce(z))
            .find(|&z| ring.pow(z, (p - 1) / 2) == minus_one)
            .expect("half of F_p* are non-residues");
        Sqrt {
            ring,
            p,
            q,
            s,
            z_q: ring.pow(non_residue, q),
        }
    }

    /// The square root of `x` whose canonical value is at most `(p - 1) / 2` (so every party
    /// picks the same one), if `x` is a square (0 for 0).
    pub fn root(&self, x: R::Elem) -> Option<R::Elem> {
        let f = self.ring;
        if x == f.zero() {
            return Some(x);
        }
        let (mut m, mut c) = (self.s, self.z_q);
        let mut t = f.pow(x, self.q);
        let mut r = f.pow(x, self.q.div_ceil(2));
        while t != f.one() {
            // The least i with t^(2^i) = 1; none below m: not a square.
            let mut i = 0;
            let mut t2 = t;
            while t2 != f.one() {
                t2 = f.mul(t2, t2);
                i += 1;
                if i >= m {
                    return None;
                }
            }
            let mut b = c;
            for _ in 0..m - i - 1 {
                b = f.mul(b, b);
            }
            m = i;
            c = f.mul(b, b);
            t = f.mul(t, c);
            r = f.mul(r, b);
        }
        debug_assert!(f.mul(r, r) == x);
        Some(if f.to_u128(r) > (self.p - 1) / 2 {
            f.neg(r)
        } else {
            r
        })
    }
}

#[cfg(test)]
mod sqrt_tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn square_roots_are_found_canonical_and_refused_for_non_squares() {
        // 2^61 - 1 is 3 mod 4; p128 = 2^127 + 1802241 is 1 mod 4 (Tonelli-Shanks proper).
        let p128 = (1u128 << 127) + 1_802_241;
        let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(5);
        for (domain, p) in [
            (Domain::Fp((1 << 61) - 1), (1u128 << 61) - 1),
            (Domain::Fp(p128), p128),
        ] {
            crate::with_ring!(domain.ring(), r => {
                let roots = Sqrt::new(r, p);
                let sqrt = |x| roots.root(x);
                let mut non_squares = 0;
                for _ in 0..200 {
                    let x = r.sample(&mut rng);
                    let a = r.mul(x, x);
                    let root = sqrt(a).unwrap();
                    assert_eq!(r.mul(root, root), a);
                    assert!(r.to_u128(root) <= (p - 1) / 2, "the smaller root");
                    let y = r.sample(&mut rng);
                    if sqrt(y).is_none() {
                        non_squares += 1;
                        assert_ne!(r.pow(y, (p - 1) / 2), r.one());
                    }
                }
                assert!(non_squares > 50, "about half of all elements are not squares");
                // Zero's root is zero, which has no inverse: a bit's opened r^2 = 0 fails.
                assert!(sqrt(r.zero()).and_then(|z| r.inv(z)).is_none());
            });
        }
    }
}
