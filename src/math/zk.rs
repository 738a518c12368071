//! The rings Z_2^64 and Z_2^128: wrapping machine arithmetic.

use super::Ring;
use rand::RngCore;

/// Z_2^64.
#[derive(Clone, Copy, Debug, Default)]
pub struct Z64;

/// Z_2^128.
#[derive(Clone, Copy, Debug, Default)]
pub struct Z128;

impl Ring for Z64 {
    type Elem = u64;
    fn one(&self) -> u64 {
        1
    }
    #[inline]
    fn add(&self, a: u64, b: u64) -> u64 {
        a.wrapping_add(b)
    }
    #[inline]
    fn sub(&self, a: u64, b: u64) -> u64 {
        a.wrapping_sub(b)
    }
    #[inline]
    fn mul(&self, a: u64, b: u64) -> u64 {
        a.wrapping_mul(b)
    }
    #[inline]
    fn sample<R: RngCore + ?Sized>(&self, rng: &mut R) -> u64 {
        rng.next_u64()
    }
    fn sample_into<R: RngCore + ?Sized>(&self, rng: &mut R, out: &mut [u64]) {
        let mut bytes = [0u8; 1024];
        for slots in out.chunks_mut(128) {
            let bytes = &mut bytes[..slots.len() * 8];
            rng.fill_bytes(bytes);
            for (e, c) in slots.iter_mut().zip(bytes.chunks_exact(8)) {
                *e = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            }
        }
    }
    fn reduce(&self, x: u128) -> u64 {
        x as u64
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
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }
    fn inv(&self, _a: u64) -> Option<u64> {
        None
    }
    fn is_field(&self) -> bool {
        false
    }
}

impl Ring for Z128 {
    type Elem = u128;
    fn one(&self) -> u128 {
        1
    }
    #[inline]
    fn add(&self, a: u128, b: u128) -> u128 {
        a.wrapping_add(b)
    }
    #[inline]
    fn sub(&self, a: u128, b: u128) -> u128 {
        a.wrapping_sub(b)
    }
    #[inline]
    fn mul(&self, a: u128, b: u128) -> u128 {
        a.wrapping_mul(b)
    }
    #[inline]
    fn sample<R: RngCore + ?Sized>(&self, rng: &mut R) -> u128 {
        let lo = rng.next_u64() as u128;
        let hi = rng.next_u64() as u128;
        (hi << 64) | lo
    }
    fn sample_into<R: RngCore + ?Sized>(&self, rng: &mut R, out: &mut [u128]) {
        let mut bytes = [0u8; 2048];
        for slots in out.chunks_mut(128) {
            let bytes = &mut bytes[..slots.len() * 16];
            rng.fill_bytes(bytes);
            for (e, c) in slots.iter_mut().zip(bytes.chunks_exact(16)) {
                *e = u128::from_le_bytes(c.try_into().expect("16 bytes"));
            }
        }
    }
    fn reduce(&self, x: u128) -> u128 {
        x
    }
    fn to_u128(&self, a: u128) -> u128 {
        a
    }
    fn elem_bytes(&self) -> usize {
        16
    }
    #[inline]
    fn encode(&self, a: u128, out: &mut [u8]) {
        out.copy_from_slice(&a.to_le_bytes());
    }
    #[inline]
    fn decode(&self, b: &[u8]) -> Option<u128> {
        Some(u128::from_le_bytes(b.try_into().ok()?))
    }
    fn inv(&self, _a: u128) -> Option<u128> {
        None
    }
    fn is_field(&self) -> bool {
        false
    }
}
