//! The HE generator: triples and squares made by the parties with BFV reconstruct across 2, 3
//! and 4 parties; unsafe parameters are refused; the flooding noise is there and of the size
//! docs/he.md says; and the attacks on the replier's shares that the fresh encryption of -r
//! and the flooding stop do work without them (the negative controls).

mod common;

use common::{consortium, pool};
use fhe::bfv::{Ciphertext, Encoding, Plaintext};
use fhe_math::rq::traits::TryConvertFrom;
use fhe_math::rq::{Poly, Representation};
use fhe_math::zq::Modulus;
use fhe_traits::FheEncoder;
use larder::consortium::verify;
use larder::generate::he::{self, HeContext, HeKeys, HeParams, HeTriples, ParamsError, Protection};
use larder::generate::PartyGenerator;
use larder::math::P60;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

const T: u64 = P60 as u64;

/// Everything production does except the size-only switch down, so residues stay exact.
const FULL_TOP: Protection = Protection {
    fresh_mask: true,
    flood: true,
    switch_down: false,
};

#[test]
fn he_triples_and_squares_reconstruct_across_2_3_and_4_parties() {
    // 2 parties over several message groups (4 blocks of 8192 each) and a partial last block;
    // 3 and 4 parties over more than one batch.
    for (parties, id, items, batch) in [
        (2u8, "triple-p60", 40_000u64, 40_000u64),
        (2, "square-p60", 9_000, 9_000),
        (3, "triple-p60", 12_000, 10_000),
        (3, "square-p60", 5_000, 5_000),
        (4, "triple-p60", 9_000, 9_000),
        (4, "square-p60", 3_000, 3_000),
        // Derived with one opening each: inverses from triples, bits from squares.
        (2, "inverse-p60", 9_000, 9_000),
        (3, "inverse-p60", 5_000, 5_000),
        (2, "bit-p60", 9_000, 9_000),
        (3, "bit-p60", 5_000, 5_000),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let p = pool(id);
        let c = consortium(dir.path(), parties, batch, &[p]);
        let mut gens: Vec<HeTriples> = (0..parties).map(|_| HeTriples::from_os_rng()).collect();
        let report = c.make(&mut gens, p, items, |_| {}).unwrap();
        assert_eq!(report.items, items, "{parties} parties, {id}");
        let files = c.take(p, items, "he", &dir.path().join("out")).unwrap();
        // Reconstructs every item and checks c = a b (or a^2) in the field.
        assert_eq!(
            verify(&files).unwrap().items,
            items,
            "{parties} parties, {id}"
        );
        let sent: u64 = gens.iter().map(|g| g.bytes_sent()).sum();
        assert!(sent > 0);
    }
}

#[test]
fn the_default_parameters_pass_and_say_their_budget() {
    let ctx = HeTriples::context_for(T).unwrap();
    let b = ctx.budget();
    assert!(b.log_q <= b.max_log_q as f64, "{b:?}");
    assert_eq!(b.flood_bits, b.hidden_bits + he::FLOOD_MARGIN_BITS);
    assert!(b.top_room_bits > 1.0 && b.reply_room_bits > 1.0, "{b:?}");
    assert!(he::supports(&pool("triple-p60")) && he::supports(&pool("square-p60")));
    assert!(!he::supports(&pool("triple-z64")) && !he::supports(&pool("triple-p128")));
    assert!(he::supports(&pool("bit-p60")) && he::supports(&pool("inverse-p60")));
    assert!(!he::supports(&pool("input-mask-p60-o0")) && !he::supports(&pool("double-p60-t1")));
}

#[test]
fn unsafe_parameters_are_refused() {
    let base = HeParams::for_prime(T);
    // t above a ciphertext modulus: decryption would be garbage.
    let small_moduli = HeParams {
        moduli_bits: vec![62, 62, 55],
        ..base.clone()
    };
    assert!(matches!(
        HeContext::new(&small_moduli),
        Err(ParamsError::ModulusBelowPlaintext { .. })
    ));
    // Below 128-bit security: log q = 248 > 218 at N = 8192.
    let insecure = HeParams {
        moduli_bits: vec![62, 62, 62, 62],
        ..base.clone()
    };
    let e = HeContext::new(&insecure).unwrap_err();
    assert!(matches!(e, ParamsError::Insecure { max: 218, .. }), "{e}");
    // Secure but no room for flooding: log q = 124.
    let tight = HeParams {
        moduli_bits: vec![62, 62],
        reply_moduli: 1,
        ..base.clone()
    };
    assert!(matches!(
        HeContext::new(&tight),
        Err(ParamsError::NoRoom { .. })
    ));
    // A prime that does not batch (2^61 - 1 is not 1 mod 16384), and a composite.
    let e = HeContext::new(&HeParams::for_prime((1 << 61) - 1)).unwrap_err();
    assert!(matches!(e, ParamsError::NoBatching { .. }), "{e}");
    let e = HeContext::new(&HeParams::for_prime(T + 2)).unwrap_err();
    assert!(matches!(e, ParamsError::NotPrime(_)), "{e}");
    // The generator refuses a pool whose prime cannot carry HE material.
    assert!(!he::supports(&pool("triple-p61")));
    // A prime above about 2/3 of the first modulus: fhe 0.1.1 would decrypt to garbage.
    let e = HeContext::new(&HeParams::for_prime(ABOVE_TWO_THIRDS)).unwrap_err();
    assert!(matches!(e, ParamsError::PlaintextTooLarge { .. }), "{e}");
    assert!(!he::supports(&pool(&format!(
        "triple-fp:{ABOVE_TWO_THIRDS}"
    ))));
}

/// The largest prime 1 mod 16384 with t + (t-1)/2 below the default first modulus
/// (0x3fffffffffff0001), and the smallest above it.
const BELOW_TWO_THIRDS: u64 = 3_074_457_345_618_067_457;
const ABOVE_TWO_THIRDS: u64 = 3_074_457_345_618_804_737;
/// The largest prime 1 mod 16384 below every default modulus: it passed every check before the
/// two-thirds rule (the flood fits too), yet most of its decryptions are wrong.
const BELOW_EVERY_MODULUS: u64 = 4_611_686_018_426_257_409;

#[test]
fn the_largest_accepted_prime_reconstructs_and_a_refused_one_really_decrypts_wrong() {
    // Accepted: triples in this 61.4-bit field reconstruct.
    let id = format!("triple-fp:{BELOW_TWO_THIRDS}");
    assert!(he::supports(&pool(&id)));
    let dir = tempfile::tempdir().unwrap();
    let p = pool(&id);
    let c = consortium(dir.path(), 2, 10_000, &[p]);
    let mut gens: Vec<HeTriples> = (0..2).map(|_| HeTriples::from_os_rng()).collect();
    c.make(&mut gens, p, 10_000, |_| {}).unwrap();
    let files = c.take(p, 10_000, "big", &dir.path().join("out")).unwrap();
    assert_eq!(verify(&files).unwrap().items, 10_000);

    // Negative control for the check: fhe itself, with a refused prime and the same moduli,
    // decrypts a fresh encryption of random values wrongly (below the bound it is right). Just
    // above the bound only a coefficient in a sliver of [0, t) decrypts wrong (about one
    // ciphertext in 300), so the control uses the largest prime the other checks let through.
    use fhe::bfv::{BfvParametersBuilder, SecretKey};
    use fhe_traits::{FheDecoder, FheDecrypter, FheEncrypter};
    let roundtrip = |t: u64| {
        let par = BfvParametersBuilder::new()
            .set_degree(8192)
            .set_plaintext_modulus(t)
            .set_moduli_sizes(&[62, 62, 62])
            .build_arc()
            .unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let sk = SecretKey::random(&par, &mut rng);
        let values: Vec<u64> = (0..8192).map(|_| rng.random_range(0..t)).collect();
        let pt = Plaintext::try_encode(&values, Encoding::simd(), &par).unwrap();
        let ct: Ciphertext = sk.try_encrypt(&pt, &mut rng).unwrap();
        let back = Vec::<u64>::try_decode(&sk.try_decrypt(&ct).unwrap(), Encoding::simd()).unwrap();
        back == values
    };
    assert!(roundtrip(BELOW_TWO_THIRDS));
    let e = HeContext::new(&HeParams::for_prime(BELOW_EVERY_MODULUS)).unwrap_err();
    assert!(matches!(e, ParamsError::PlaintextTooLarge { .. }), "{e}");
    assert!(
        !roundtrip(BELOW_EVERY_MODULUS),
        "fhe decrypts this prime correctly after all"
    );
}

fn random(n: usize, rng: &mut ChaCha20Rng) -> Vec<u64> {
    (0..n).map(|_| rng.random_range(0..T)).collect()
}

/// One block from party i's side: its keys and encryptions of a_i and b_i.
struct Encryptor {
    ctx: HeContext,
    keys: HeKeys,
    ct_a: Ciphertext,
    ct_b: Ciphertext,
}

fn encryptor(rng: &mut ChaCha20Rng) -> Encryptor {
    let ctx = HeTriples::context_for(T).unwrap();
    let keys = HeKeys::generate(&ctx, rng);
    let n = ctx.slots();
    let ct_a = he::encrypt(&ctx, &keys, &random(n, rng), rng).unwrap();
    let ct_b = he::encrypt(&ctx, &keys, &random(n, rng), rng).unwrap();
    Encryptor {
        ctx,
        keys,
        ct_a,
        ct_b,
    }
}

fn noise_bits(e: &Encryptor, ct: &Ciphertext) -> usize {
    // Variable time: fine in a test, never in the generator.
    unsafe { e.keys.secret().measure_noise(ct) }.unwrap()
}

/// The replier's answer to a triple block with shares (a_j, b_j).
fn answer(
    e: &Encryptor,
    a_j: &[u64],
    b_j: &[u64],
    p: Protection,
    rng: &mut ChaCha20Rng,
) -> Ciphertext {
    let mut mask = vec![0u64; a_j.len()];
    he::reply(
        &e.ctx,
        e.keys.public(),
        &[(&e.ct_a, b_j), (&e.ct_b, a_j)],
        &mut mask,
        p,
        rng,
    )
    .unwrap()
}

/// What party i can compute from a guess (a, b) of j's shares: the reply minus its own
/// ciphertexts times the guess, at the reply's level.
fn residue(e: &Encryptor, reply: &Ciphertext, a: &[u64], b: &[u64]) -> Ciphertext {
    let level = e.ctx.bfv().level_of_context(reply[0].ctx()).unwrap();
    let pt = |v: &[u64]| Plaintext::try_encode(v, Encoding::simd(), e.ctx.bfv()).unwrap();
    let mut guess = &(&e.ct_a * &pt(b)) + &(&e.ct_b * &pt(a));
    guess.switch_to_level(level).unwrap();
    reply - &guess
}

#[test]
fn flooding_noise_is_present_and_of_the_intended_size() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let e = encryptor(&mut rng);
    let n = e.ctx.slots();
    let (a_j, b_j) = (random(n, &mut rng), random(n, &mut rng));
    let b = e.ctx.budget().clone();
    let top = Protection {
        switch_down: false,
        ..Protection::FULL
    };
    let bare = Protection {
        flood: false,
        ..top
    };
    // At the top level the noise is the flood's: uniform on [-2^f, 2^f), so its largest
    // coefficient over 8192 has f bits (or f + 1 at the very edge) with overwhelming
    // probability; without flooding it stays below the bound it hides.
    let flooded = noise_bits(&e, &answer(&e, &a_j, &b_j, top, &mut rng));
    assert!(
        (b.flood_bits as usize..=b.flood_bits as usize + 1).contains(&flooded),
        "flooded noise {flooded} bits, flood {} bits",
        b.flood_bits
    );
    let unflooded = noise_bits(&e, &answer(&e, &a_j, &b_j, bare, &mut rng));
    assert!(
        unflooded <= b.hidden_bits as usize,
        "{unflooded} > {}",
        b.hidden_bits
    );
    assert!(unflooded + 30 < flooded);
    // Switched down by q/q' (62 bits), the flood still dominates and decryption has room.
    let reply = answer(&e, &a_j, &b_j, Protection::FULL, &mut rng);
    let switched = noise_bits(&e, &reply) as f64;
    let expected = b.flood_bits as f64 - (b.log_q - b.log_q_reply);
    assert!(
        (switched - expected).abs() <= 2.0,
        "{switched} vs {expected}"
    );
}

/// Party i's attack on j's shares of a square: without the fresh encryption, the reply's
/// second polynomial is c1_a * p exactly, so i divides by its own c1_a (slot by slot in NTT
/// form) and reads j's plaintext polynomial off.
fn recover_square_share(e: &Encryptor, reply: &Ciphertext) -> Vec<u64> {
    let ctx0 = e.ctx.bfv().context_at_level(0).unwrap();
    let mut flat = Vec::new();
    for (k, &q) in e.ctx.bfv().moduli().iter().enumerate() {
        let m = Modulus::new(q).unwrap();
        let c1 = reply[1].coefficients();
        let ca = e.ct_a[1].coefficients();
        for s in 0..e.ctx.slots() {
            let inv = m.inv(ca[[k, s]]).unwrap();
            flat.push(m.mul(c1[[k, s]], inv));
        }
    }
    let mut p = Poly::try_convert_from(flat, ctx0, false, Representation::Ntt).unwrap();
    p.change_representation(Representation::PowerBasis);
    p.coefficients().row(0).to_vec()
}

/// j's plaintext polynomial for `values`, as i would see it if recovered.
fn plaintext_poly(e: &Encryptor, values: &[u64]) -> Vec<u64> {
    let pt = Plaintext::try_encode(values, Encoding::simd(), e.ctx.bfv()).unwrap();
    let ctx0 = e.ctx.bfv().context_at_level(0).unwrap();
    let p = Poly::try_convert_from(&pt, ctx0, false, None).unwrap();
    p.coefficients().row(0).to_vec()
}

#[test]
fn without_the_fresh_mask_and_flooding_the_encryptor_learns_the_repliers_shares() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let e = encryptor(&mut rng);
    let n = e.ctx.slots();
    let none = Protection {
        fresh_mask: false,
        flood: false,
        switch_down: false,
    };
    let mask_only = Protection {
        flood: false,
        ..none
    };
    let mask_only = Protection {
        fresh_mask: true,
        ..mask_only
    };
    let flood_only = Protection {
        flood: true,
        ..none
    };

    // 1. Squares: full recovery of j's share from the second polynomial.
    let a_j = random(n, &mut rng);
    let twice: Vec<u64> = a_j.iter().map(|&x| (x * 2) % T).collect();
    let sq = |p: Protection, rng: &mut ChaCha20Rng| {
        let mut mask = vec![0u64; n];
        he::reply(
            &e.ctx,
            e.keys.public(),
            &[(&e.ct_a, &twice)],
            &mut mask,
            p,
            rng,
        )
        .unwrap()
    };
    let truth = plaintext_poly(&e, &twice);
    assert_eq!(
        recover_square_share(&e, &sq(none, &mut rng)),
        truth,
        "the attack works"
    );
    assert_eq!(
        recover_square_share(&e, &sq(flood_only, &mut rng)),
        truth,
        "flooding alone does not stop it"
    );
    assert_ne!(
        recover_square_share(&e, &sq(mask_only, &mut rng)),
        truth,
        "the fresh mask stops it"
    );
    assert_ne!(recover_square_share(&e, &sq(FULL_TOP, &mut rng)), truth);

    // 2. Triples: i tells which of two candidate share pairs j holds, from the second
    //    polynomial (without the fresh mask) and from the noise (without flooding).
    let (a_j, b_j) = (random(n, &mut rng), random(n, &mut rng));
    let (a_x, b_x) = (random(n, &mut rng), random(n, &mut rng));
    let c1_vanishes = |reply: &Ciphertext, a: &[u64], b: &[u64]| {
        let r = residue(&e, reply, a, b);
        r[1].coefficients().iter().all(|&x| x == 0)
    };
    let noise =
        |reply: &Ciphertext, a: &[u64], b: &[u64]| noise_bits(&e, &residue(&e, reply, a, b));

    let naked = answer(&e, &a_j, &b_j, none, &mut rng);
    assert!(c1_vanishes(&naked, &a_j, &b_j) && !c1_vanishes(&naked, &a_x, &b_x));
    let (right, wrong) = (noise(&naked, &a_j, &b_j), noise(&naked, &a_x, &b_x));
    assert!(
        right + 40 < wrong,
        "noise attack without protection: {right} vs {wrong}"
    );

    // The fresh mask hides the second polynomial, but not the noise: flooding is needed too.
    let masked = answer(&e, &a_j, &b_j, mask_only, &mut rng);
    assert!(!c1_vanishes(&masked, &a_j, &b_j) && !c1_vanishes(&masked, &a_x, &b_x));
    let (right, wrong) = (noise(&masked, &a_j, &b_j), noise(&masked, &a_x, &b_x));
    assert!(
        right + 40 < wrong,
        "noise attack with the mask alone: {right} vs {wrong}"
    );

    // With both (at the top level, where the attack is cleanest), the residues of the right
    // and the wrong guess are alike: both carry the flood, within a bit of each other.
    let full = answer(&e, &a_j, &b_j, FULL_TOP, &mut rng);
    assert!(!c1_vanishes(&full, &a_j, &b_j) && !c1_vanishes(&full, &a_x, &b_x));
    let (right, wrong) = (noise(&full, &a_j, &b_j), noise(&full, &a_x, &b_x));
    let flood = e.ctx.budget().flood_bits as usize;
    assert!(
        right >= flood && wrong >= flood && right.abs_diff(wrong) <= 1,
        "{right} vs {wrong}"
    );
}
