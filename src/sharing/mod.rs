//! Secret sharing: additive among n parties, and Shamir (t, n) with shares at x = 1..n.

pub mod prss;

use crate::math::Ring;
use rand::RngCore;

/// Why shares could not be made or opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SharingError {
    #[error("degree-{degree} Shamir sharing needs {need} shares to open, got {got}")]
    TooFewShares {
        degree: usize,
        need: usize,
        got: usize,
    },
    #[error("Shamir sharing needs a prime field larger than the number of parties")]
    NotAField,
    #[error("share points must be distinct and nonzero; x = {0} repeats or is zero")]
    BadPoint(u64),
    #[error("the shares do not lie on one polynomial of degree {0}")]
    Inconsistent(usize),
}

/// Splits `secret` into `n` random additive shares.
pub fn additive_share<R: Ring, G: RngCore + ?Sized>(
    ring: &R,
    secret: R::Elem,
    n: usize,
    rng: &mut G,
) -> Vec<R::Elem> {
    let mut shares: Vec<R::Elem> = (1..n).map(|_| ring.sample(rng)).collect();
    let sum = shares.iter().fold(ring.zero(), |acc, &s| ring.add(acc, s));
    shares.push(ring.sub(secret, sum));
    shares
}

/// The sum of additive shares.
pub fn additive_open<R: Ring>(ring: &R, shares: &[R::Elem]) -> R::Elem {
    shares.iter().fold(ring.zero(), |acc, &s| ring.add(acc, s))
}

/// Shares `secret` with a random polynomial of degree `degree`, evaluated at x = 1..n.
///
/// # Errors
/// [`SharingError::NotAField`] over a ring or a field with at most `n` elements.
pub fn shamir_share<R: Ring, G: RngCore + ?Sized>(
    ring: &R,
    secret: R::Elem,
    degree: usize,
    n: usize,
    rng: &mut G,
) -> Result<Vec<R::Elem>, SharingError> {
    check_field(ring, n)?;
    let coeffs: Vec<R::Elem> = std::iter::once(secret)
        .chain((0..degree).map(|_| ring.sample(rng)))
        .collect();
    Ok((1..=n as u64)
        .map(|x| {
            let x = ring.reduce(x as u128);
            coeffs
                .iter()
                .rev()
                .fold(ring.zero(), |acc, &c| ring.add(ring.mul(acc, x), c))
        })
        .collect())
}

fn check_field<R: Ring>(ring: &R, n: usize) -> Result<(), SharingError> {
    // x = 1..n must be distinct nonzero field elements.
    if !ring.is_field() || ring.to_u128(ring.reduce(n as u128)) != n as u128 {
        return Err(SharingError::NotAField);
    }
    Ok(())
}

/// Lagrange coefficients: `f(at) = sum_j coeffs[j] * f(xs[j])` for any polynomial of degree
/// below `xs.len()`.
///
/// # Errors
/// [`SharingError::BadPoint`] if the points repeat; [`SharingError::NotAField`] over a ring.
pub fn lagrange_coefficients<R: Ring>(
    ring: &R,
    xs: &[u64],
    at: u64,
) -> Result<Vec<R::Elem>, SharingError> {
    if !ring.is_field() {
        return Err(SharingError::NotAField);
    }
    let fx: Vec<R::Elem> = xs.iter().map(|&x| ring.reduce(x as u128)).collect();
    let at = ring.reduce(at as u128);
    (0..xs.len())
        .map(|j| {
            let mut num = ring.one();
            let mut den = ring.one();
            for m in 0..xs.len() {
                if m != j {
                    num = ring.mul(num, ring.sub(at, fx[m]));
                    den = ring.mul(den, ring.sub(fx[j], fx[m]));
                }
            }
            let den_inv = ring.inv(den).ok_or(SharingError::BadPoint(xs[j]))?;
            Ok(ring.mul(num, den_inv))
        })
        .collect()
}

/// Opens a degree-`degree` Shamir sharing from `(x, share)` points: interpolates through the
/// first `degree + 1` and checks every further point lies on the same polynomial.
///
/// # Errors
/// [`SharingError::TooFewShares`] with fewer than `degree + 1` points;
/// [`SharingError::Inconsistent`] if extra points disagree; [`SharingError::BadPoint`] for
/// repeated or zero x.
pub fn shamir_open<R: Ring>(
    ring: &R,
    points: &[(u64, R::Elem)],
    degree: usize,
) -> Result<R::Elem, SharingError> {
    let need = degree + 1;
    if points.len() < need {
        return Err(SharingError::TooFewShares {
            degree,
            need,
            got: points.len(),
        });
    }
    if let Some(&(x, _)) = points.iter().find(|p| p.0 == 0) {
        return Err(SharingError::BadPoint(x));
    }
    let (base, rest) = points.split_at(need);
    let xs: Vec<u64> = base.iter().map(|p| p.0).collect();
    let eval = |at: u64| -> Result<R::Elem, SharingError> {
        let c = lagrange_coefficients(ring, &xs, at)?;
        Ok(c.iter().zip(base).fold(ring.zero(), |acc, (&c, &(_, y))| {
            ring.add(acc, ring.mul(c, y))
        }))
    };
    for &(x, y) in rest {
        if eval(x)? != y {
            return Err(SharingError::Inconsistent(degree));
        }
    }
    eval(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::{Domain, Fp128, M61, Z64};
    use rand::SeedableRng;
    use rand_chacha::ChaCha12Rng;

    #[test]
    fn additive_shares_open_to_the_secret() {
        let mut rng = ChaCha12Rng::seed_from_u64(1);
        let shares = additive_share(&Z64, 42, 5, &mut rng);
        assert_eq!(shares.len(), 5);
        assert_eq!(additive_open(&Z64, &shares), 42);
    }

    #[test]
    fn shamir_opens_from_any_t_plus_one_shares() {
        let f = Fp128::new(crate::math::P128);
        let mut rng = ChaCha12Rng::seed_from_u64(2);
        let (t, n) = (2, 5);
        let shares = shamir_share(&f, 1234, t, n, &mut rng).unwrap();
        for a in 0..n {
            for b in a + 1..n {
                for c in b + 1..n {
                    let pts: Vec<_> = [a, b, c]
                        .iter()
                        .map(|&i| (i as u64 + 1, shares[i]))
                        .collect();
                    assert_eq!(shamir_open(&f, &pts, t).unwrap(), 1234);
                }
            }
        }
    }

    #[test]
    fn shamir_with_too_few_shares_is_a_clear_error() {
        let mut rng = ChaCha12Rng::seed_from_u64(3);
        let shares = shamir_share(&M61, 7, 2, 5, &mut rng).unwrap();
        let err = shamir_open(&M61, &[(1, shares[0]), (2, shares[1])], 2).unwrap_err();
        assert_eq!(
            err,
            SharingError::TooFewShares {
                degree: 2,
                need: 3,
                got: 2
            }
        );
        assert!(err.to_string().contains("needs 3 shares"));
    }

    #[test]
    fn shamir_detects_a_share_off_the_polynomial() {
        let mut rng = ChaCha12Rng::seed_from_u64(4);
        let mut shares = shamir_share(&M61, 7, 1, 3, &mut rng).unwrap();
        shares[2] = M61.add(shares[2], 1);
        let pts: Vec<_> = shares
            .iter()
            .enumerate()
            .map(|(i, &s)| (i as u64 + 1, s))
            .collect();
        assert_eq!(
            shamir_open(&M61, &pts, 1),
            Err(SharingError::Inconsistent(1))
        );
    }

    #[test]
    fn shamir_is_refused_over_rings_and_tiny_fields() {
        let mut rng = ChaCha12Rng::seed_from_u64(5);
        assert_eq!(
            shamir_share(&Z64, 1, 1, 3, &mut rng),
            Err(SharingError::NotAField)
        );
        let f3 = match "fp:3".parse::<Domain>().unwrap().ring() {
            crate::math::AnyRing::Fp64(f) => f,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            shamir_share(&f3, 1, 1, 3, &mut rng),
            Err(SharingError::NotAField)
        );
    }
}
