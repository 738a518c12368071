//! Prime fields with an odd modulus below 2^128, multiplied in Montgomery form (R = 2^128).

use super::Ring;
use rand::RngCore;

/// GF(p) for an odd p < 2^128. Elements are canonical; `mul` converts internally.
///
/// Also used by the primality test as plain modular arithmetic for any odd modulus.
#[derive(Clone, Copy, Debug)]
pub struct Fp128 {
    p: u128,
    /// -p^{-1} mod 2^128, for Montgomery reduction.
    pinv_neg: u128,
    /// R^2 mod p, which turns a Montgomery product back into a canonical one.
    r2: u128,
}

/// The full 256-bit product of two 128-bit integers, as (low, high).
#[inline]
pub(crate) fn mul_wide(a: u128, b: u128) -> (u128, u128) {
    let (a0, a1) = (a as u64 as u128, a >> 64);
    let (b0, b1) = (b as u64 as u128, b >> 64);
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    // middle = p01 + p10 + (p00 >> 64) can reach 3 * 2^128: track its carry.
    let (mid, c1) = p01.overflowing_add(p10);
    let (mid, c2) = mid.overflowing_add(p00 >> 64);
    let lo = (mid << 64) | (p00 as u64 as u128);
    let hi = p11 + (mid >> 64) + (((c1 as u128) + (c2 as u128)) << 64);
    (lo, hi)
}

impl Fp128 {
    /// Constants for an odd modulus `p`.
    ///
    /// # Panics
    /// If `p` is even.
    pub fn new(p: u128) -> Self {
        assert!(p % 2 == 1, "Montgomery arithmetic needs an odd modulus");
        let mut inv: u128 = 1;
        for _ in 0..7 {
            inv = inv.wrapping_mul(2u128.wrapping_sub(p.wrapping_mul(inv)));
        }
        // 2^128 mod p, then doubled 128 more times: 2^256 mod p.
        let mut r = (u128::MAX % p + 1) % p;
        for _ in 0..128 {
            r = Self::double_mod(r, p);
        }
        Fp128 {
            p,
            pinv_neg: inv.wrapping_neg(),
            r2: r,
        }
    }

    pub fn modulus(&self) -> u128 {
        self.p
    }

    #[inline]
    fn double_mod(x: u128, p: u128) -> u128 {
        let (s, c) = x.overflowing_add(x);
        if c || s >= p {
            s.wrapping_sub(p)
        } else {
            s
        }
    }

    /// (hi * 2^128 + lo) * R^{-1} mod p, for hi < p.
    #[inline]
    fn redc(&self, lo: u128, hi: u128) -> u128 {
        let m = lo.wrapping_mul(self.pinv_neg);
        let (mp_lo, mp_hi) = mul_wide(m, self.p);
        // lo + mp_lo is 0 mod 2^128; it carries exactly when lo != 0.
        let carry_lo = (lo != 0) as u128;
        let _ = mp_lo;
        let (s, c1) = hi.overflowing_add(mp_hi);
        let (s, c2) = s.overflowing_add(carry_lo);
        if c1 || c2 || s >= self.p {
            s.wrapping_sub(self.p)
        } else {
            s
        }
    }

    /// a * b * R^{-1} mod p.
    #[inline]
    fn mont_mul(&self, a: u128, b: u128) -> u128 {
        let (lo, hi) = mul_wide(a, b);
        self.redc(lo, hi)
    }
}

impl Ring for Fp128 {
    type Elem = u128;
    fn one(&self) -> u128 {
        1
    }
    #[inline]
    fn add(&self, a: u128, b: u128) -> u128 {
        let (s, c) = a.overflowing_add(b);
        if c || s >= self.p {
            s.wrapping_sub(self.p)
        } else {
            s
        }
    }
    #[inline]
    fn sub(&self, a: u128, b: u128) -> u128 {
        if a >= b {
            a - b
        } else {
            a.wrapping_sub(b).wrapping_add(self.p)
        }
    }
    #[inline]
    fn mul(&self, a: u128, b: u128) -> u128 {
        self.mont_mul(self.mont_mul(a, b), self.r2)
    }
    #[inline]
    fn sample<R: RngCore + ?Sized>(&self, rng: &mut R) -> u128 {
        if self.p >> 64 == 0 {
            super::sample_below_u64(rng, self.p as u64) as u128
        } else {
            super::sample_below_u128(rng, self.p)
        }
    }
    fn sample_into<R: RngCore + ?Sized>(&self, rng: &mut R, out: &mut [u128]) {
        if self.p >> 64 == 0 {
            for e in out {
                *e = super::sample_below_u64(rng, self.p as u64) as u128;
            }
        } else {
            super::fill_below_u128(rng, self.p, out);
        }
    }
    fn reduce(&self, x: u128) -> u128 {
        x % self.p
    }
    fn to_u128(&self, a: u128) -> u128 {
        a
    }
    fn elem_bytes(&self) -> usize {
        if self.p < (1u128 << 64) {
            8
        } else {
            16
        }
    }
    #[inline]
    fn encode(&self, a: u128, out: &mut [u8]) {
        let n = out.len();
        out.copy_from_slice(&a.to_le_bytes()[..n]);
    }
    #[inline]
    fn decode(&self, b: &[u8]) -> Option<u128> {
        if b.len() != self.elem_bytes() {
            return None;
        }
        let mut buf = [0u8; 16];
        buf[..b.len()].copy_from_slice(b);
        let x = u128::from_le_bytes(buf);
        (x < self.p).then_some(x)
    }
    fn inv(&self, a: u128) -> Option<u128> {
        (a != 0).then(|| self.pow(a, self.p - 2))
    }
    fn is_field(&self) -> bool {
        true
    }
}
