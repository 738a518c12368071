//! Primality testing for configured moduli: Miller-Rabin over 128-bit integers.

use super::{Fp128, Ring};
use rand::{Rng, SeedableRng};

/// Whether `n` is prime.
///
/// Miller-Rabin with the first 13 prime bases (deterministic below 3.3 * 10^24) and, above that,
/// 64 more bases drawn from the OS RNG, so an adversarially chosen composite passes with
/// probability at most 4^-64.
pub fn is_prime(n: u128) -> bool {
    const SMALL: [u128; 13] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41];
    if n < 2 {
        return false;
    }
    for p in SMALL {
        if n == p {
            return true;
        }
        if n.is_multiple_of(p) {
            return false;
        }
    }
    let f = Fp128::new(n);
    let (mut d, mut s) = (n - 1, 0u32);
    while d % 2 == 0 {
        d /= 2;
        s += 1;
    }
    let witness = |a: u128| -> bool {
        // true if a proves n composite
        let mut x = f.pow(a % n, d);
        if x == 1 || x == n - 1 {
            return false;
        }
        for _ in 1..s {
            x = f.mul(x, x);
            if x == n - 1 {
                return false;
            }
        }
        true
    };
    if SMALL.iter().any(|&a| witness(a)) {
        return false;
    }
    if n < 3_317_044_064_679_887_385_961_981 {
        return true;
    }
    let mut rng = rand_chacha::ChaCha20Rng::from_os_rng();
    (0..64).all(|_| !witness(rng.random_range(2..n - 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_numbers_match_trial_division() {
        let naive = |n: u128| {
            n >= 2
                && (2..n)
                    .take_while(|d| d * d <= n)
                    .all(|d| !n.is_multiple_of(d))
        };
        for n in 0..5000u128 {
            assert_eq!(is_prime(n), naive(n), "{n}");
        }
    }

    #[test]
    fn known_large_primes_and_composites() {
        assert!(is_prime((1u128 << 127) - 1));
        assert!(is_prime(super::super::P128));
        assert!(!is_prime(((1u128 << 61) - 1) * ((1u128 << 61) - 1)));
        // 3215031751 = 151 * 751 * 28351 is a strong pseudoprime to bases 2, 3, 5 and 7.
        assert!(!is_prime(3_215_031_751));
        // Product of two 64-bit primes.
        assert!(!is_prime(
            18446744073709551557u128 * 18446744073709551533u128
        ));
    }
}
