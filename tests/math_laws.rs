//! Ring and field laws, written once and applied to every domain, with arithmetic checked
//! against a naive big-integer reference (num-bigint).

use larder::math::{Domain, Ring};
use larder::with_ring;
use num_bigint::BigUint;
use num_traits::{One, Zero};
use proptest::prelude::*;

fn modulus(d: Domain) -> BigUint {
    match d {
        Domain::Z64 => BigUint::one() << 64,
        Domain::Z128 => BigUint::one() << 128,
        Domain::Fp(p) => BigUint::from(p),
    }
}

fn big(x: u128) -> BigUint {
    BigUint::from(x)
}

/// Every law for one domain, over arbitrary 128-bit inputs reduced into it.
fn check_laws(d: Domain, a: u128, b: u128, c: u128) -> Result<(), TestCaseError> {
    let m = modulus(d);
    with_ring!(d.ring(), r => {
        let (x, y, z) = (r.reduce(a), r.reduce(b), r.reduce(c));
        let v = |e| big(r.to_u128(e));
        // Reduction and arithmetic against the reference.
        prop_assert_eq!(v(x), big(a) % &m);
        prop_assert_eq!(v(r.add(x, y)), (v(x) + v(y)) % &m);
        prop_assert_eq!(v(r.sub(x, y)), (v(x) + &m - v(y)) % &m);
        prop_assert_eq!(v(r.mul(x, y)), (v(x) * v(y)) % &m);
        prop_assert_eq!(v(r.neg(x)), (&m - v(x)) % &m);
        // Laws.
        prop_assert_eq!(r.add(x, y), r.add(y, x));
        prop_assert_eq!(r.mul(x, y), r.mul(y, x));
        prop_assert_eq!(r.add(r.add(x, y), z), r.add(x, r.add(y, z)));
        prop_assert_eq!(r.mul(r.mul(x, y), z), r.mul(x, r.mul(y, z)));
        prop_assert_eq!(r.mul(x, r.add(y, z)), r.add(r.mul(x, y), r.mul(x, z)));
        prop_assert_eq!(r.add(x, r.zero()), x);
        prop_assert_eq!(r.mul(x, r.one()), x);
        prop_assert_eq!(r.add(x, r.neg(x)), r.zero());
        prop_assert_eq!(r.sub(r.add(x, y), y), x);
        // Encoding.
        let mut buf = vec![0u8; r.elem_bytes()];
        r.encode(x, &mut buf);
        prop_assert_eq!(r.decode(&buf), Some(x));
        prop_assert_eq!(buf.len(), d.elem_bytes());
        // Inverses in fields.
        if r.is_field() {
            match r.inv(x) {
                Some(i) => prop_assert_eq!(r.mul(x, i), r.one()),
                None => prop_assert_eq!(x, r.zero()),
            }
            prop_assert_eq!(r.inv(r.zero()), None);
        }
        Ok(())
    })
}

/// Sampled elements are in range and decode.
fn check_sample(d: Domain, seed: u64) -> Result<(), TestCaseError> {
    use rand::{RngCore, SeedableRng};
    let m = modulus(d);
    let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(seed);
    with_ring!(d.ring(), r => {
        for _ in 0..64 {
            let e = r.sample(&mut rng);
            prop_assert!(big(r.to_u128(e)) < m);
        }
        // Bulk sampling is deterministic and in range; below 2^64 it draws exactly what
        // one-at-a-time sampling draws and leaves the stream at the same place.
        let n = (seed % 700) as usize;
        let mut many = vec![r.zero(); n];
        r.sample_into(&mut rng.clone(), &mut many);
        let mut again = vec![r.zero(); n];
        r.sample_into(&mut rng.clone(), &mut again);
        prop_assert_eq!(&many, &again);
        prop_assert!(many.iter().all(|&e| big(r.to_u128(e)) < m));
        if d.elem_bytes() == 8 || d == Domain::Z128 {
            let mut one = rng.clone();
            let mut bulk = rng.clone();
            let singles: Vec<_> = (0..n).map(|_| r.sample(&mut one)).collect();
            r.sample_into(&mut bulk, &mut many);
            prop_assert_eq!(singles, many);
            prop_assert_eq!(one.next_u64(), bulk.next_u64());
        }
        Ok(())
    })
}

/// Non-canonical encodings (at or above the modulus) are refused.
fn check_non_canonical_refused(d: Domain) {
    let Domain::Fp(p) = d else { return };
    with_ring!(d.ring(), r => {
        let eb = r.elem_bytes();
        let max = if eb == 8 { u64::MAX as u128 } else { u128::MAX };
        for x in [p, p.saturating_add(1).min(max), max] {
            assert_eq!(r.decode(&x.to_le_bytes()[..eb]), None, "{d} must refuse {x}");
        }
    });
}

macro_rules! laws {
    ($($name:ident => $domain:expr),* $(,)?) => {$(
        mod $name {
            use super::*;
            fn domain() -> Domain { $domain.parse().unwrap() }
            proptest! {
                #![proptest_config(ProptestConfig::with_cases(512))]
                #[test]
                fn arithmetic_matches_bigint_and_obeys_the_laws(a: u128, b: u128, c: u128) {
                    check_laws(domain(), a, b, c)?;
                }
                #[test]
                fn edge_values_obey_the_laws(a in edge(), b in edge(), c in edge()) {
                    check_laws(domain(), a, b, c)?;
                }
                #[test]
                fn samples_are_in_range(seed: u64) {
                    check_sample(domain(), seed)?;
                }
            }
            #[test]
            fn non_canonical_encodings_are_refused() {
                check_non_canonical_refused(domain());
            }
        }
    )*};
}

/// Values near the moduli and powers of two, where carries and reductions go wrong.
fn edge() -> impl Strategy<Value = u128> {
    let specials = [
        0u128,
        1,
        2,
        u64::MAX as u128,
        1u128 << 64,
        u128::MAX,
        u128::MAX - 1,
        (1u128 << 61) - 2,
        (1u128 << 61) - 1,
        1u128 << 127,
        larder::math::P128 - 1,
        larder::math::P128,
        larder::math::P60 - 1,
        18446744073709551557 - 1,
    ];
    prop_oneof![proptest::sample::select(specials.to_vec()), any::<u128>()]
}

laws! {
    z64 => "z64",
    z128 => "z128",
    p61 => "p61",
    p128 => "p128",
    p60 => "p60",
    small_prime => "fp:1000003",
    prime_just_below_2_64 => "fp:18446744073709551557",
    mersenne_89 => "fp:618970019642690137449562111",
    mersenne_127 => "fp:170141183460469231731687303715884105727",
    largest_prime_below_2_128 => "fp:340282366920938463463374607431768211297",
}

#[test]
fn bigint_reference_agrees_on_a_known_answer() {
    // (2^127 + 1802240)^2 mod p = (-1)^2 = 1 in MP-SPDZ's 128-bit field.
    let p = larder::math::P128;
    let d = Domain::Fp(p);
    with_ring!(d.ring(), r => assert_eq!(r.to_u128(r.mul(r.reduce(p - 1), r.reduce(p - 1))), 1));
    assert!((modulus(d) - BigUint::one()).pow(2u32) % modulus(d) == BigUint::one());
    assert!(!modulus(Domain::Z64).is_zero());
}

/// Bucket counts of the top 4 bits of many bulk-sampled elements of a field of `bits` bits
/// are uniform (chi-square, 15 degrees of freedom; 60 is far in the tail).
fn top_bits_are_uniform(d: Domain, bits: u32) {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(99);
    let mut counts = [0u64; 16];
    let n = 160_000;
    with_ring!(d.ring(), r => {
        let mut out = vec![r.zero(); n];
        r.sample_into(&mut rng, &mut out);
        for e in out {
            counts[(r.to_u128(e) >> (bits - 4)) as usize] += 1;
        }
    });
    let expect = n as f64 / 16.0;
    let chi2: f64 = counts
        .iter()
        .map(|&c| (c as f64 - expect).powi(2) / expect)
        .sum();
    assert!(chi2 < 60.0, "{d}: chi2 {chi2}, counts {counts:?}");
}

#[test]
fn bulk_sampling_of_large_prime_fields_is_unbiased() {
    // 2^89 - 1: the high word has 25 bits and is almost never equal to the modulus's.
    top_bits_are_uniform("fp:618970019642690137449562111".parse().unwrap(), 89);
    // 2^127 + 1802241 sits just above a power of two: elements below 2^127 are uniform over
    // its lower half, so its top 4 bits of 127 are uniform too.
    top_bits_are_uniform("p128".parse().unwrap(), 127);
}
