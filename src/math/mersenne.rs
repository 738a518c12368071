//! The field of the Mersenne prime 2^61 - 1, reduced by folding instead of division.

use super::{Ring, P61};
use rand::RngCore;

const P: u64 = P61 as u64;

/// GF(2^61 - 1).
#[derive(Clone, Copy, Debug, Default)]
pub struct M61;

impl M61 {
    /// Reduces any x < 2^122 + 2^61 (a product of two elements, or a small sum) into [0, p).
    #[inline]
    fn fold(x: u128) -> u64 {
        // x = hi * 2^61 + lo, and 2^61 = 1 (mod p).
        let once = (x & P as u128) + (x >> 61);
        let twice = ((once & P as u128) + (once >> 61)) as u64;
        if twice >= P {
            twice - P
        } else {
            twice
        }
    }
}

impl Ring for M61 {
    type Elem = u64;
    fn one(&self) -> u64 {
        1
    }
    #[inline]
    fn add(&self, a: u64, b: u64) -> u64 {
        let s = a + b; // both < 2^61: no overflow
        if s >= P {
            s - P
        } else {
            s
        }
    }
    #[inline]
    fn sub(&self, a: u64, b: u64) -> u64 {
        if a >= b {
            a - b
        } else {
            a + P - b
        }
    }
    #[inline]
    fn mul(&self, a: u64, b: u64) -> u64 {
        Self::fold(a as u128 * b as u128)
    }
    #[inline]
    fn sample<R: RngCore + ?Sized>(&self, rng: &mut R) -> u64 {
        super::sample_below_u64(rng, P)
    }
    fn sample_into<R: RngCore + ?Sized>(&self, rng: &mut R, out: &mut [u64]) {
        super::fill_below_u64(rng, P, out);
    }
    fn reduce(&self, x: u128) -> u64 {
        (x % P as u128) as u64
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
        (x < P).then_some(x)
    }
    fn inv(&self, a: u64) -> Option<u64> {
        (a != 0).then(|| self.pow(a, P61 - 2))
    }
    fn is_field(&self) -> bool {
        true
    }
}
