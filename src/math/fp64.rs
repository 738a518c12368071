//! Prime fields with an odd modulus below 2^64, multiplied in Montgomery form (R = 2^64).

use super::Ring;
use rand::RngCore;

/// GF(p) for an odd prime p < 2^64. Elements are canonical; `mul` converts internally.
#[derive(Clone, Copy, Debug)]
pub struct Fp64 {
    p: u64,
    /// -p^{-1} mod 2^64, for Montgomery reduction.
    pinv_neg: u64,
    /// R^2 mod p, which turns a Montgomery product back into a canonical one.
    r2: u64,
}

impl Fp64 {
    /// Constants for an odd modulus `p` (primality is checked by [`super::Domain::prime`]).
    ///
    /// # Panics
    /// If `p` is even.
    pub fn new(p: u64) -> Self {
        assert!(p % 2 == 1, "Montgomery arithmetic needs an odd modulus");
        let mut inv: u64 = 1;
        for _ in 0..6 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(p.wrapping_mul(inv)));
        }
        let r1 = ((u128::from(u64::MAX) % p as u128) + 1) % p as u128; // 2^64 mod p
        let r2 = (r1 * r1 % p as u128) as u64;
        Fp64 {
            p,
            pinv_neg: inv.wrapping_neg(),
            r2,
        }
    }

    pub fn modulus(&self) -> u64 {
        self.p
    }

    /// t * R^{-1} mod p for t < p * 2^64.
    #[inline]
    fn redc(&self, t: u128) -> u64 {
        let m = (t as u64).wrapping_mul(self.pinv_neg);
        let (sum, carry) = t.overflowing_add(m as u128 * self.p as u128);
        let u = (sum >> 64) | ((carry as u128) << 64);
        let p = self.p as u128;
        (if u >= p { u - p } else { u }) as u64
    }
}

impl Ring for Fp64 {
    type Elem = u64;
    fn one(&self) -> u64 {
        1
    }
    #[inline]
    fn add(&self, a: u64, b: u64) -> u64 {
        let (s, c) = a.overflowing_add(b);
        if c || s >= self.p {
            s.wrapping_sub(self.p)
        } else {
            s
        }
    }
    #[inline]
    fn sub(&self, a: u64, b: u64) -> u64 {
        if a >= b {
            a - b
        } else {
            a.wrapping_sub(b).wrapping_add(self.p)
        }
    }
    #[inline]
    fn mul(&self, a: u64, b: u64) -> u64 {
        let m = self.redc(a as u128 * b as u128); // a b R^-1
        self.redc(m as u128 * self.r2 as u128) // a b
    }
    #[inline]
    fn sample<R: RngCore + ?Sized>(&self, rng: &mut R) -> u64 {
        super::sample_below_u64(rng, self.p)
    }
    fn sample_into<R: RngCore + ?Sized>(&self, rng: &mut R, out: &mut [u64]) {
        super::fill_below_u64(rng, self.p, out);
    }
    fn reduce(&self, x: u128) -> u64 {
        (x % self.p as u128) as u64
    }
    fn to_u128(&self, a: u64) -> u128 {
        a as u128
    }
    fn elem_bytes(&self) -> usize {
        8
    }
    #[inline]
    fn encode(&self, a: u64, out: &mut [u8]) {
        out.copy_from_slice(&a.to_le_bytes());
    }
    #[inline]
    fn decode(&self, b: &[u8]) -> Option<u64> {
        let x = u64::from_le_bytes(b.try_into().ok()?);
        (x < self.p).then_some(x)
    }
    fn inv(&self, a: u64) -> Option<u64> {
        (a != 0).then(|| self.pow(a, self.p as u128 - 2))
    }
    fn is_field(&self) -> bool {
        true
    }
}
