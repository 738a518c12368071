//! Pseudo-random secret sharing (PRSS), the local core of the dealer-free honest-majority
//! generator: what each party computes from its replicated keys alone, with no message per
//! item. The generator (`generate::prss`) sets the keys up and runs it as jobs; PRSS batch
//! files (`material::prss`) store per-chunk keys derived from them and expand on download.
//!
//! # The construction and why it is secure
//! Cramer, Damgård and Ishai, "Share conversion, pseudorandom secret-sharing and applications to
//! secure computation" (TCC 2005), sections 3 and 4.
//!
//! - **Keys.** For `n` parties and threshold `t` (no `t + 1` collude; `n >= 2t + 1`), there is
//!   one PRF key `k_A` for every set `A` of `n - t` parties, held by exactly the members of `A`.
//!   For any coalition `T` of `t` parties, the set `A = {all} \ T` has `n - t` members, none
//!   in `T`, so `k_A` is unknown to `T`. (n = 3, t = 1: three keys, each held by two parties; n = 5,
//!   t = 2: ten keys, each held by three.)
//! - **Random Shamir sharings.** `f_A` is the degree-`t` polynomial with `f_A(0) = 1` and
//!   `f_A(x_j) = 0` for the `t` parties `j` outside `A` (points `x_j = j + 1`). Party `i`'s
//!   share of the value for label `c` is `s_i = Σ_{A ∋ i} PRF(k_A, c) · f_A(x_i)`: the
//!   evaluation at `x_i` of `F(x) = Σ_A PRF(k_A, c) · f_A(x)` (terms of sets without `i` vanish
//!   at `x_i`), a degree-`t` polynomial with secret `F(0) = Σ_A PRF(k_A, c)`. A coalition `T`
//!   of `t` parties misses `PRF(k_{A*}, c)` for `A* = all \ T`; that term is pseudo-random and
//!   `f_{A*}` vanishes at every point of `T`, so the coalition's shares do not depend on it
//!   while the secret is shifted by it: the secret is pseudo-random given their view.
//! - **Zero sharings of degree 2t (PRZS).** `z_i = Σ_{A ∋ i} Σ_{l=1..t} PRF(k_A, c, l) ·
//!   x_i^l · f_A(x_i)`: the evaluation of `Σ_A Σ_l PRF(k_A, c, l) x^l f_A(x)`, of degree at
//!   most `2t` and zero at 0. Added to a degree-`t` sharing of `r`, it gives a degree-`2t`
//!   sharing of the same `r` whose higher coefficients are pseudo-random: the double sharing
//!   `([r]_t, [r]_2t)` of DN07, with no message.
//! - **Three-party additive Z_2^64 triples** (replicated secret sharing, as in Araki et al.,
//!   CCS 2016, with CDI's replicated keys): with `n = 3, t = 1`, `a = Σ_A a_A` over the three
//!   pairs, `a_A = PRF(k_A, c, "a")`, and so for `b`. Party `i` holds the components of the
//!   pairs `{i, i+1}` and `{i-1, i}` (indices mod 3) and takes the first as its additive share:
//!   `a_i = a_{i,i+1}`. Every product `a_A b_B` is known to a party in `A ∩ B` (two pairs of
//!   three parties always meet), and each is counted once: `c_i = a_i b_i + a_i b_{i-1} +
//!   a_{i-1} b_i` (the local product of Araki et al.), plus its share of a pseudo-random
//!   additive zero sharing (`PRF(k_{i,i+1}) - PRF(k_{i-1,i})`). One party alone misses one
//!   component of each of `a` and `b`, so `a` and `b` are pseudo-random to it; its share of `c`
//!   is masked by the zero sharing, which it cannot tell from random either. Squares are the
//!   same with `b = a`.
//!
//! The PRF is ChaCha12 keyed by SHA-256 of a domain tag, the key and a fixed-length label (a
//! prefix construction over fixed-length inputs, so no length extension applies).

use crate::math::Ring;
use crate::sharing::{lagrange_coefficients, SharingError};
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Bytes of a PRSS key.
pub const KEY_BYTES: usize = 32;

/// What a PRF output is for, within one label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// The random value of a degree-t sharing.
    Random,
    /// Coefficient `l` (1..=t) of a degree-2t zero sharing.
    Zero(u8),
    /// A replicated component of `a`, `b`, or an additive zero share (three-party triples).
    TripleA,
    TripleB,
    TripleZero,
}

impl Purpose {
    fn tag(self) -> [u8; 2] {
        match self {
            Purpose::Random => [1, 0],
            Purpose::Zero(l) => [2, l],
            Purpose::TripleA => [3, 0],
            Purpose::TripleB => [4, 0],
            Purpose::TripleZero => [5, 0],
        }
    }
}

/// Why PRSS cannot run with the given parameters.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PrssError {
    #[error("PRSS needs 2 <= n <= 16 parties and 1 <= t with n >= 2t + 1 (n = {n}, t = {t})")]
    BadThreshold { n: u8, t: u8 },
    #[error("party {me} is not one of {n}")]
    NotAParty { me: u8, n: u8 },
    #[error("party {me} must hold exactly the keys of the sets it belongs to")]
    WrongKeys { me: u8 },
    #[error("additive Z_2^64 triples without traffic are for three parties, not {0}")]
    NotThreeParties(u8),
    #[error("the key area holds {found} bytes; party {me} of {n} at t = {t} needs {want}")]
    KeyArea {
        n: u8,
        t: u8,
        me: u8,
        want: usize,
        found: usize,
    },
    #[error("PRSS does not make {0}")]
    Unsupported(String),
    #[error(transparent)]
    Sharing(#[from] SharingError),
}

/// Most parties PRSS runs for: the keys grow as `C(n, t)` (126 sets for nine parties, 70 held
/// by each), so larger consortia use the HE generator or a dealer.
pub const MAX_PARTIES: u8 = 9;

/// The threshold PRSS uses for `n` parties: the most colluding parties an honest majority
/// allows, `floor((n - 1) / 2)`.
pub fn threshold(n: u8) -> u8 {
    n.saturating_sub(1) / 2
}

/// The sets of `n - t` parties, as bit masks, in increasing order: the key index space.
pub fn key_sets(n: u8, t: u8) -> Vec<u32> {
    let size = (n - t) as u32;
    (0u32..1 << n).filter(|m| m.count_ones() == size).collect()
}

/// The key sets party `me` belongs to, in increasing order: the keys it holds.
pub fn sets_of(n: u8, t: u8, me: u8) -> Vec<u32> {
    key_sets(n, t)
        .into_iter()
        .filter(|s| s & (1 << me) != 0)
        .collect()
}

/// The lowest member of a key set: the party that draws its key at setup.
pub fn lowest(set: u32) -> u8 {
    set.trailing_zeros() as u8
}

/// A fixed 32-byte label for one component within a chunk (its keys already bind the batch
/// and chunk).
pub const fn label(tag: u8) -> [u8; 32] {
    [tag; 32]
}

/// One party's replicated keys: the key of every set it belongs to. Zeroized on drop; never
/// printed.
pub struct PartyKeys {
    n: u8,
    t: u8,
    me: u8,
    keys: Vec<(u32, Zeroizing<[u8; KEY_BYTES]>)>,
}

impl std::fmt::Debug for PartyKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PartyKeys(party {} of {}, t = {}, {} keys)",
            self.me,
            self.n,
            self.t,
            self.keys.len()
        )
    }
}

impl PartyKeys {
    /// Party `me`'s keys: `keys` must hold exactly the sets of [`key_sets`] that contain `me`.
    ///
    /// # Errors
    /// [`PrssError`] for bad parameters or a wrong key list.
    pub fn new(n: u8, t: u8, me: u8, keys: Vec<(u32, [u8; KEY_BYTES])>) -> Result<Self, PrssError> {
        Self::check(n, t, me)?;
        let mut keys: Vec<(u32, Zeroizing<[u8; KEY_BYTES]>)> = keys
            .into_iter()
            .map(|(s, k)| (s, Zeroizing::new(k)))
            .collect();
        keys.sort_unstable_by_key(|(s, _)| *s);
        let got: Vec<u32> = keys.iter().map(|(s, _)| *s).collect();
        if got != sets_of(n, t, me) {
            return Err(PrssError::WrongKeys { me });
        }
        Ok(PartyKeys { n, t, me, keys })
    }

    fn check(n: u8, t: u8, me: u8) -> Result<(), PrssError> {
        if !(2..=MAX_PARTIES).contains(&n) || t == 0 || n < 2 * t + 1 {
            return Err(PrssError::BadThreshold { n, t });
        }
        if me >= n {
            return Err(PrssError::NotAParty { me, n });
        }
        Ok(())
    }

    pub fn parties(&self) -> u8 {
        self.n
    }

    pub fn threshold(&self) -> u8 {
        self.t
    }

    pub fn me(&self) -> u8 {
        self.me
    }

    /// The keys, by set, in increasing set order.
    pub fn keys(&self) -> impl Iterator<Item = (u32, &[u8; KEY_BYTES])> {
        self.keys.iter().map(|(s, k)| (*s, &**k))
    }

    /// Bytes of [`Self::to_bytes`] for party `me` of `n` at threshold `t`.
    ///
    /// # Errors
    /// [`PrssError`] for bad parameters.
    pub fn area_bytes(n: u8, t: u8, me: u8) -> Result<usize, PrssError> {
        Self::check(n, t, me)?;
        Ok(sets_of(n, t, me).len() * KEY_BYTES)
    }

    /// The keys alone, in increasing set order (a PRSS chunk's key area); secret.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(self.keys.len() * KEY_BYTES));
        for (_, k) in &self.keys {
            out.extend_from_slice(&**k);
        }
        out
    }

    /// Reads [`Self::to_bytes`] for party `me` of `n` at threshold `t`.
    ///
    /// # Errors
    /// [`PrssError`] for bad parameters or the wrong number of bytes.
    pub fn from_bytes(n: u8, t: u8, me: u8, bytes: &[u8]) -> Result<Self, PrssError> {
        let want = Self::area_bytes(n, t, me)?;
        if bytes.len() != want {
            return Err(PrssError::KeyArea {
                n,
                t,
                me,
                want,
                found: bytes.len(),
            });
        }
        let keys = sets_of(n, t, me)
            .into_iter()
            .zip(bytes.chunks_exact(KEY_BYTES))
            .map(|(s, k)| (s, Zeroizing::new(k.try_into().expect("32 bytes"))))
            .collect();
        Ok(PartyKeys { n, t, me, keys })
    }

    /// The keys of one chunk of one batch, derived from these (epoch) keys: each set's key is
    /// SHA-256 of a domain tag, the set, its epoch key, the batch id and the chunk number. A
    /// PRSS batch file stores these per chunk, so erasing a chunk forgets its material while
    /// the epoch keys never reach a batch file; every member of a set derives the same key.
    pub fn derive(&self, batch: &[u8; 16], chunk: u64) -> PartyKeys {
        let keys = self
            .keys
            .iter()
            .map(|(set, key)| {
                let mut h = Sha256::new();
                h.update(b"larder prss chunk v1\0");
                h.update(set.to_le_bytes());
                h.update(**key);
                h.update(batch);
                h.update(chunk.to_le_bytes());
                (*set, Zeroizing::new(h.finalize().into()))
            })
            .collect();
        PartyKeys { keys, ..*self }
    }

    /// This party's Lagrange coefficient at 0 over all `n` points: `Σ_i λ_i s_i` opens any
    /// sharing of degree below `n`, so `λ_me s_me` turns a Shamir share into an additive one.
    ///
    /// # Errors
    /// [`PrssError::Sharing`] over a ring.
    pub fn additive_weight<R: Ring>(&self, ring: &R) -> Result<R::Elem, PrssError> {
        let xs: Vec<u64> = (1..=self.n as u64).collect();
        Ok(lagrange_coefficients(ring, &xs, 0)?[self.me as usize])
    }

    /// The pseudo-random stream of key `k` for `label` and `purpose`.
    fn stream(key: &[u8; KEY_BYTES], label: &[u8; 32], purpose: Purpose) -> ChaCha12Rng {
        let mut h = Sha256::new();
        h.update(b"larder prss v1\0");
        h.update(key);
        h.update(label);
        h.update(purpose.tag());
        let seed: [u8; 32] = h.finalize().into();
        let seed = Zeroizing::new(seed);
        ChaCha12Rng::from_seed(*seed)
    }

    /// `f_A(x_me)`: 1 at 0, 0 at the parties outside `set`, degree t.
    fn f_at_me<R: Ring>(&self, ring: &R, set: u32) -> Result<R::Elem, PrssError> {
        let mut xs = vec![0u64];
        xs.extend(
            (0..self.n)
                .filter(|j| set & (1 << j) == 0)
                .map(|j| j as u64 + 1),
        );
        Ok(lagrange_coefficients(ring, &xs, self.me as u64 + 1)?[0])
    }

    /// This party's degree-t shares of `out.len()` pseudo-random values for `label`
    /// (a prime field).
    ///
    /// # Errors
    /// [`PrssError::Sharing`] over a ring.
    pub fn random_shares<R: Ring>(
        &self,
        ring: &R,
        label: &[u8; 32],
        out: &mut [R::Elem],
    ) -> Result<(), PrssError> {
        self.weighted_streams(ring, label, out, |f| vec![(Purpose::Random, f)])
    }

    /// This party's shares of `out.len()` pseudo-random degree-2t sharings of zero (PRZS).
    ///
    /// # Errors
    /// [`PrssError::Sharing`] over a ring.
    pub fn zero_shares_2t<R: Ring>(
        &self,
        ring: &R,
        label: &[u8; 32],
        out: &mut [R::Elem],
    ) -> Result<(), PrssError> {
        let x = ring.reduce(self.me as u128 + 1);
        self.weighted_streams(ring, label, out, |f| {
            let mut xl = ring.one();
            (1..=self.t)
                .map(|l| {
                    xl = ring.mul(xl, x);
                    (Purpose::Zero(l), ring.mul(xl, f))
                })
                .collect()
        })
    }

    /// Sets `out` to the sum, over this party's key sets `A` and the `(purpose, weight)` pairs
    /// `terms(f_A(x_me))` gives, of `weight · PRF(k_A, label, purpose)`, element by element.
    fn weighted_streams<R: Ring>(
        &self,
        ring: &R,
        label: &[u8; 32],
        out: &mut [R::Elem],
        terms: impl Fn(R::Elem) -> Vec<(Purpose, R::Elem)>,
    ) -> Result<(), PrssError> {
        out.iter_mut().for_each(|x| *x = ring.zero());
        let mut draw = vec![ring.zero(); out.len()];
        for (set, key) in &self.keys {
            for (purpose, w) in terms(self.f_at_me(ring, *set)?) {
                ring.sample_into(&mut Self::stream(key, label, purpose), &mut draw);
                for (o, &d) in out.iter_mut().zip(&draw) {
                    *o = ring.add(*o, ring.mul(d, w));
                }
            }
        }
        draw.iter_mut().for_each(|x| *x = R::Elem::default());
        Ok(())
    }

    /// This party's shares of `r_t.len()` double sharings `([r]_t, [r]_2t)` for `label`.
    ///
    /// # Errors
    /// [`PrssError::Sharing`] over a ring.
    pub fn double_shares<R: Ring>(
        &self,
        ring: &R,
        label: &[u8; 32],
        r_t: &mut [R::Elem],
        r_2t: &mut [R::Elem],
    ) -> Result<(), PrssError> {
        self.random_shares(ring, label, r_t)?;
        self.zero_shares_2t(ring, label, r_2t)?;
        for (z, &r) in r_2t.iter_mut().zip(r_t.iter()) {
            *z = ring.add(*z, r);
        }
        Ok(())
    }

    /// Three parties: this party's additive shares `(a, b, c)` of `a.len()` Beaver triples over
    /// Z_2^64 (wrapping u64 arithmetic) for `label`, with no message.
    ///
    /// # Errors
    /// [`PrssError::NotThreeParties`] unless n = 3 (and t = 1).
    pub fn z64_triples(
        &self,
        label: &[u8; 32],
        a: &mut [u64],
        b: &mut [u64],
        c: &mut [u64],
    ) -> Result<(), PrssError> {
        self.z64_products(label, a, Some(b), c)
    }

    /// Three parties: this party's additive shares `(a, a^2)` of `a.len()` squares over
    /// Z_2^64, with no message.
    ///
    /// # Errors
    /// [`PrssError::NotThreeParties`] unless n = 3.
    pub fn z64_squares(
        &self,
        label: &[u8; 32],
        a: &mut [u64],
        c: &mut [u64],
    ) -> Result<(), PrssError> {
        self.z64_products(label, a, None, c)
    }

    /// Triples (`b` given) or squares (`b = a`): see the module documentation.
    fn z64_products(
        &self,
        label: &[u8; 32],
        a: &mut [u64],
        b: Option<&mut [u64]>,
        c: &mut [u64],
    ) -> Result<(), PrssError> {
        if self.n != 3 {
            return Err(PrssError::NotThreeParties(self.n));
        }
        let me = self.me;
        // This party's two pairs: its own {me, me+1} and the previous one {me-1, me}.
        let pair = |i: u8| (1u32 << i) | (1u32 << ((i + 1) % 3));
        let key = |set: u32| {
            &self
                .keys
                .iter()
                .find(|(s, _)| *s == set)
                .expect("a party of three holds both its pairs' keys")
                .1
        };
        let (own, prev) = (key(pair(me)), key(pair((me + 2) % 3)));
        let fill = |key: &[u8; KEY_BYTES], purpose, out: &mut [u64]| {
            let mut rng = Self::stream(key, label, purpose);
            out.iter_mut()
                .for_each(|x| *x = rand::RngCore::next_u64(&mut rng));
        };
        let items = a.len();
        let mut a_prev = Zeroizing::new(vec![0u64; items]);
        fill(own, Purpose::TripleA, a);
        fill(prev, Purpose::TripleA, &mut a_prev);
        let mut b_prev = Zeroizing::new(vec![0u64; items]);
        let (b, b_prev): (&[u64], &[u64]) = match b {
            Some(b) => {
                fill(own, Purpose::TripleB, b);
                fill(prev, Purpose::TripleB, &mut b_prev);
                (b, &b_prev)
            }
            None => (a, &a_prev),
        };
        // The zero sharing: + the own pair's stream, - the previous pair's.
        let mut z_own = Zeroizing::new(vec![0u64; items]);
        fill(own, Purpose::TripleZero, &mut z_own);
        fill(prev, Purpose::TripleZero, c);
        for j in 0..items {
            let (ai, ap, bi, bp) = (a[j], a_prev[j], b[j], b_prev[j]);
            let cross = ai
                .wrapping_mul(bi)
                .wrapping_add(ai.wrapping_mul(bp))
                .wrapping_add(ap.wrapping_mul(bi));
            c[j] = cross.wrapping_add(z_own[j]).wrapping_sub(c[j]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::{Fp128, Ring, M61};
    use crate::sharing::shamir_open;
    use rand::{RngCore, SeedableRng};

    /// Every party's keys, from a seeded dealer of keys (tests only); `fixed` overrides a
    /// set's key.
    fn all_keys(n: u8, t: u8, seed: u64, fixed: &[(u32, [u8; 32])]) -> Vec<PartyKeys> {
        let mut rng = ChaCha12Rng::seed_from_u64(seed);
        let sets: Vec<(u32, [u8; 32])> = key_sets(n, t)
            .into_iter()
            .map(|s| {
                let mut k = [0u8; 32];
                rng.fill_bytes(&mut k);
                let k = fixed.iter().find(|(f, _)| *f == s).map_or(k, |(_, k)| *k);
                (s, k)
            })
            .collect();
        (0..n)
            .map(|me| {
                let mine = sets
                    .iter()
                    .filter(|(s, _)| s & (1 << me) != 0)
                    .cloned()
                    .collect();
                PartyKeys::new(n, t, me, mine).unwrap()
            })
            .collect()
    }

    const LABEL: [u8; 32] = [7; 32];
    const ITEMS: usize = 64;

    fn points<R: Ring>(shares: &[Vec<R::Elem>], item: usize, who: &[usize]) -> Vec<(u64, R::Elem)> {
        who.iter()
            .map(|&p| (p as u64 + 1, shares[p][item]))
            .collect()
    }

    fn check_doubles<R: Ring>(ring: &R, n: u8) {
        let t = (n - 1) / 2;
        let parties = all_keys(n, t, n as u64, &[]);
        let mut rt = vec![vec![ring.zero(); ITEMS]; n as usize];
        let mut r2t = rt.clone();
        for (p, k) in parties.iter().enumerate() {
            k.double_shares(ring, &LABEL, &mut rt[p], &mut r2t[p])
                .unwrap();
        }
        let all: Vec<usize> = (0..n as usize).collect();
        let mut secrets = std::collections::HashSet::new();
        for j in 0..ITEMS {
            // Every party's degree-t share lies on one degree-t polynomial, and the degree-2t
            // shares on one of degree 2t, with the same secret.
            let r = shamir_open(ring, &points::<R>(&rt, j, &all), t as usize).unwrap();
            let r2 = shamir_open(ring, &points::<R>(&r2t, j, &all), 2 * t as usize).unwrap();
            assert_eq!(r, r2, "item {j}");
            secrets.insert(ring.to_u128(r));
            // The degree-2t sharing is not a degree-t one (its high coefficients are random).
            assert!(shamir_open(ring, &points::<R>(&r2t, j, &all), t as usize).is_err());
        }
        assert_eq!(secrets.len(), ITEMS, "secrets vary");
    }

    #[test]
    fn doubles_open_to_the_same_secret_at_degree_t_and_2t_for_3_5_and_7_parties() {
        for n in [3u8, 5, 7] {
            check_doubles(&Fp128::new((1u128 << 127) + 1_802_241), n);
            check_doubles(&M61, n);
        }
    }

    #[test]
    fn key_sets_are_replicated_as_described() {
        assert_eq!(key_sets(3, 1).len(), 3);
        assert_eq!(key_sets(5, 2).len(), 10);
        // Each key of n = 5, t = 2 is held by three parties; each party holds six.
        let parties = all_keys(5, 2, 1, &[]);
        assert!(parties.iter().all(|p| p.keys.len() == 6));
        assert!(PartyKeys::new(4, 2, 0, vec![]).is_err());
        assert!(
            PartyKeys::new(3, 1, 0, vec![]).is_err(),
            "missing keys are refused"
        );
        assert_eq!(
            format!("{:?}", parties[0]),
            "PartyKeys(party 0 of 5, t = 2, 6 keys)",
            "no key bytes in Debug"
        );
    }

    /// n = 5, t = 2: parties 0 and 1 together lack the key of {2, 3, 4}. Their random shares
    /// and their degree-2t zero shares are the same for two values of it, while every secret
    /// changes; with a third party (t + 1) they hold every key and open the secret.
    #[test]
    fn two_of_five_parties_see_the_same_whatever_the_key_they_lack() {
        let ring = M61;
        let hidden = 0b11100;
        let mut secrets = Vec::new();
        let mut views = Vec::new();
        for other in [[5u8; 32], [6u8; 32]] {
            let parties = all_keys(5, 2, 11, &[(hidden, other)]);
            assert!(parties[..2]
                .iter()
                .all(|p| p.keys.iter().all(|(s, _)| *s != hidden)));
            let mut shares = vec![vec![ring.zero(); ITEMS]; 5];
            let mut zeros = shares.clone();
            for (p, k) in parties.iter().enumerate() {
                k.random_shares(&ring, &LABEL, &mut shares[p]).unwrap();
                k.zero_shares_2t(&ring, &LABEL, &mut zeros[p]).unwrap();
            }
            views.push((shares[..2].to_vec(), zeros[..2].to_vec()));
            secrets.push(
                (0..ITEMS)
                    .map(|j| shamir_open(&ring, &points::<M61>(&shares, j, &[0, 1, 2]), 2).unwrap())
                    .collect::<Vec<_>>(),
            );
            // The zero sharing opens to zero from all five.
            for j in 0..ITEMS {
                let z = shamir_open(&ring, &points::<M61>(&zeros, j, &[0, 1, 2, 3, 4]), 4).unwrap();
                assert_eq!(z, ring.zero(), "item {j}");
            }
        }
        assert_eq!(views[0], views[1], "parties 0 and 1 see the same shares");
        assert!(
            secrets[0].iter().zip(&secrets[1]).all(|(a, b)| a != b),
            "while every secret changed"
        );
    }

    /// n = 3, t = 1: party 0's keys and outputs are the same for two different values of the
    /// key it does not hold, while the secrets differ, so its view does not depend on the
    /// secret; parties 0 and 1 together (t + 1) hold every key and reconstruct it (the
    /// negative control: the assumption is real).
    #[test]
    fn one_partys_view_is_independent_of_the_secret_and_two_parties_reconstruct() {
        let ring = M61;
        let hidden = 0b110; // the pair {1, 2}, not held by party 0
        let mut secrets = Vec::new();
        let mut views = Vec::new();
        for other in [[1u8; 32], [2u8; 32]] {
            let parties = all_keys(3, 1, 9, &[(hidden, other)]);
            let mut shares = vec![vec![ring.zero(); ITEMS]; 3];
            for (p, k) in parties.iter().enumerate() {
                k.random_shares(&ring, &LABEL, &mut shares[p]).unwrap();
            }
            views.push(shares[0].clone());
            secrets.push(
                (0..ITEMS)
                    .map(|j| shamir_open(&ring, &points::<M61>(&shares, j, &[0, 1]), 1).unwrap())
                    .collect::<Vec<_>>(),
            );
        }
        assert_eq!(views[0], views[1], "party 0 sees the same shares");
        assert!(
            secrets[0].iter().zip(&secrets[1]).all(|(a, b)| a != b),
            "while every secret changed"
        );
    }

    #[test]
    fn three_party_z64_triples_reconstruct_with_no_message() {
        let parties = all_keys(3, 1, 4, &[]);
        let mut sh = vec![(vec![0u64; ITEMS], vec![0u64; ITEMS], vec![0u64; ITEMS]); 3];
        for (p, k) in parties.iter().enumerate() {
            let (a, b, c) = &mut sh[p];
            k.z64_triples(&LABEL, a, b, c).unwrap();
        }
        for j in 0..ITEMS {
            let open = |col: usize| {
                sh.iter()
                    .map(|s| [&s.0, &s.1, &s.2][col][j])
                    .fold(0u64, u64::wrapping_add)
            };
            assert_eq!(open(0).wrapping_mul(open(1)), open(2), "item {j}");
        }
        // Negative control: a party's own shares are not a triple.
        assert!((0..ITEMS).any(|j| sh[0].0[j].wrapping_mul(sh[0].1[j]) != sh[0].2[j]));
        // And party 0's shares of a do not change with the key it lacks, while a does.
        let other = all_keys(3, 1, 4, &[(0b110, [9; 32])]);
        let (mut a0, mut b0, mut c0) = (vec![0; ITEMS], vec![0; ITEMS], vec![0; ITEMS]);
        other[0]
            .z64_triples(&LABEL, &mut a0, &mut b0, &mut c0)
            .unwrap();
        assert_eq!(a0, sh[0].0);
        assert_eq!(b0, sh[0].1);
        assert!(PartyKeys::z64_triples(
            &all_keys(5, 2, 1, &[])[0],
            &LABEL,
            &mut a0,
            &mut b0,
            &mut c0
        )
        .is_err());
    }
}
