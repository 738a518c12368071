//! Every kind in every domain it supports, dealt into real stores, taken from every party and
//! reconstructed across parties.

mod common;

use common::{consortium, deal, pool};
use larder::consortium::verify;
use larder::material::PoolSpec;
use std::path::PathBuf;

/// Deals 2600 items in batches of 1000 (so correction parties rotate and checkouts span
/// batches and chunks), takes 2100 from an offset and reconstructs them.
fn round_trip(parties: u8, id: &str) {
    let spec: PoolSpec = pool(id);
    let dir = tempfile::tempdir().unwrap();
    let c = consortium(dir.path(), parties, 1000, &[spec]);
    deal(&c, spec, 2600, 9);
    c.take(spec, 300, "warm-up", &dir.path().join("w")).unwrap();
    let files = c.take(spec, 2100, "main", &dir.path().join("out")).unwrap();
    let report = verify(&files).unwrap_or_else(|e| panic!("{id} with {parties} parties: {e}"));
    assert_eq!(report.items, 2100);
    assert_eq!(report.pool, spec);
}

macro_rules! kinds {
    ($($name:ident => ($parties:expr, $id:expr)),* $(,)?) => {$(
        #[test]
        fn $name() { round_trip($parties, $id); }
    )*};
}

kinds! {
    triple_z64 => (3, "triple-z64"),
    triple_z128 => (3, "triple-z128"),
    triple_p61 => (3, "triple-p61"),
    triple_p128 => (3, "triple-p128"),
    triple_p60 => (2, "triple-p60"),
    triple_small_prime => (4, "triple-fp:1000003"),
    square_z64 => (3, "square-z64"),
    square_p128 => (2, "square-p128"),
    bit_z64 => (3, "bit-z64"),
    bit_z128 => (2, "bit-z128"),
    bit_p61 => (3, "bit-p61"),
    inverse_p61 => (3, "inverse-p61"),
    inverse_p128 => (2, "inverse-p128"),
    inverse_small_prime => (3, "inverse-fp:1000003"),
    input_mask_z64_owner_0 => (3, "input-mask-z64-o0"),
    input_mask_p128_owner_2 => (3, "input-mask-p128-o2"),
    input_mask_z128_two_parties => (2, "input-mask-z128-o1"),
    double_p128_t1 => (3, "double-p128-t1"),
    double_p61_t2_five_parties => (5, "double-p61-t2"),
    double_small_prime_t1_four_parties => (4, "double-fp:1000003-t1"),
    double_p60_t1 => (3, "double-p60-t1"),
    wrap_z64_two_parties => (2, "wrap-z64"),
    wrap_z64 => (3, "wrap-z64"),
    wrap_z64_five_parties => (5, "wrap-z64"),
    binary_triple_z64_two_parties => (2, "binary-triple-z64"),
    binary_triple_z64 => (3, "binary-triple-z64"),
    binary_triple_z64_five_parties => (5, "binary-triple-z64"),
    dabit_z64_two_parties => (2, "dabit-z64"),
    dabit_z64 => (3, "dabit-z64"),
    dabit_z64_five_parties => (5, "dabit-z64"),
    dabit_p128_two_parties => (2, "dabit-p128"),
    dabit_p61 => (3, "dabit-p61"),
    dabit_p128_five_parties => (5, "dabit-p128"),
    dabit_small_prime => (3, "dabit-fp:1000003"),
    matrix_triple_z64_two_parties => (2, "matrix-triple-z64-3x4x2"),
    matrix_triple_z64 => (3, "matrix-triple-z64-3x4x2"),
    matrix_triple_z64_five_parties => (5, "matrix-triple-z64-2x5x3"),
    matrix_triple_z128 => (3, "matrix-triple-z128-2x2x2"),
    matrix_triple_p128_two_parties => (2, "matrix-triple-p128-3x1x4"),
    matrix_triple_p61 => (3, "matrix-triple-p61-4x3x2"),
    matrix_triple_p61_five_parties => (5, "matrix-triple-p61-1x6x1"),
    matrix_triple_small_prime => (3, "matrix-triple-fp:1000003-2x3x2"),
    conv_triple_z64_two_parties => (2, "conv-triple-z64-1x2x4x4-2x3x3-s1-p1"),
    conv_triple_z64 => (3, "conv-triple-z64-2x1x5x4-3x2x3-s2x1-p0x1"),
    conv_triple_z64_five_parties => (5, "conv-triple-z64-1x1x3x3-1x3x3"),
    conv_triple_p128 => (3, "conv-triple-p128-1x2x3x3-2x2x2-s1-p1"),
    conv_triple_p61_five_parties => (5, "conv-triple-p61-1x1x4x4-2x3x3-s2-p1"),
}

/// Convolution pool ids are canonical (stride and padding spelled out) and their tensors have
/// torch's sizes: 1x3x32x32 images, 16 kernels of 3x3x3, stride 1, padding 1 give 1x16x32x32.
#[test]
fn conv_triple_pools_name_their_geometry() {
    let p = pool("conv-triple-z64-1x3x32x32-16x3x3-s1-p1");
    assert_eq!(p.to_string(), "conv-triple-z64-1x3x32x32-16x3x3-s1x1-p1x1");
    assert_eq!(pool(&p.to_string()), p);
    assert_eq!(
        p.shape.unwrap().sizes(),
        [3 * 32 * 32, 16 * 3 * 3 * 3, 16 * 32 * 32]
    );
    let q = pool("conv-triple-z64-2x1x7x5-3x3x2-s2x1");
    assert_eq!(q.to_string(), "conv-triple-z64-2x1x7x5-3x3x2-s2x1-p0x0");
    // (7 - 3) / 2 + 1 = 3 rows, (5 - 2) / 1 + 1 = 4 columns.
    assert_eq!(q.shape.unwrap().sizes()[2], 2 * 3 * 3 * 4);
    assert_eq!(q.validate(2), Ok(()));
}

/// A wrong output share of a convolution triple is caught, naming the element.
#[test]
fn verify_catches_a_wrong_convolution_output() {
    let spec = pool("conv-triple-z64-1x2x4x4-2x3x3-s1-p1");
    let dir = tempfile::tempdir().unwrap();
    let c = consortium(dir.path(), 3, 1000, &[spec]);
    deal(&c, spec, 100, 6);
    let files = c.take(spec, 100, "x", &dir.path().join("o")).unwrap();
    assert_eq!(verify(&files).unwrap().items, 100);
    let [sx, sw, _] = spec.shape.unwrap().sizes();
    let record = spec.record_len(0) * 8;
    // Item 4's Y[9].
    flip_with_valid_checksum(&files[0], 4 * record + (sx + sw + 9) * 8);
    let err = verify(&files).unwrap_err().to_string();
    assert!(err.contains("item 4") && err.contains("Y[9]"), "{err}");
}

/// Matrix triples large enough that a chunk holds fewer than 1024 items and a checkout spans
/// several chunks and batches, opened with this test's own arithmetic over Z_2^64 (A·B
/// computed here, row by column); a wrong C share (its checksum repaired) is caught by verify.
#[test]
fn matrix_triples_open_to_a_product_and_a_wrong_share_is_caught() {
    let spec = pool("matrix-triple-z64-16x40x24");
    assert!(spec.chunk_items() < 1024, "{}", spec.chunk_items());
    let (m, k, n) = (16, 40, 24);
    for parties in [2u8, 3, 5] {
        let dir = tempfile::tempdir().unwrap();
        let c = consortium(dir.path(), parties, 300, &[spec]);
        deal(&c, spec, 700, 30 + parties);
        c.take(spec, 50, "warm-up", &dir.path().join("w")).unwrap();
        let files = c.take(spec, 600, "main", &dir.path().join("o")).unwrap();
        let w = words(&files);
        assert_eq!(w[0].len(), 600);
        for j in 0..600 {
            let open = |x: usize| (0..w.len()).fold(0u64, |acc, p| acc.wrapping_add(w[p][j][x]));
            let a: Vec<u64> = (0..m * k).map(open).collect();
            let b: Vec<u64> = (0..k * n).map(|x| open(m * k + x)).collect();
            for row in 0..m {
                for col in 0..n {
                    let dot = (0..k).fold(0u64, |acc, l| {
                        acc.wrapping_add(a[row * k + l].wrapping_mul(b[l * n + col]))
                    });
                    assert_eq!(
                        dot,
                        open(m * k + k * n + row * n + col),
                        "item {j} [{row}][{col}]"
                    );
                }
            }
            assert!(a.iter().any(|&x| x != a[0]), "A is not constant");
        }
        assert_eq!(verify(&files).unwrap().items, 600);
        if parties == 3 {
            // Item 7's C[2][5], one party's share.
            let record = (m * k + k * n + m * n) * 8;
            flip_with_valid_checksum(&files[1], 7 * record + (m * k + k * n + 2 * n + 5) * 8);
            let err = verify(&files).unwrap_err().to_string();
            assert!(err.contains("item 7") && err.contains("C[2][5]"), "{err}");
        }
    }
}

/// Matrix-triple pool ids carry their shape, round-trip, and bad shapes are refused with the
/// reason; a batch of large matrices holds fewer items than the consortium's batch size.
#[test]
fn matrix_triple_pools_carry_a_validated_shape() {
    let p = pool("matrix-triple-z64-128x256x64");
    assert_eq!(p.to_string(), "matrix-triple-z64-128x256x64");
    assert_eq!(p.record_len(0), 128 * 256 + 256 * 64 + 128 * 64);
    assert_eq!(p.validate(3), Ok(()));
    // 57 344 elements of 8 bytes: 9 per 4 MiB chunk, 585 per 256 MiB batch.
    assert_eq!(p.chunk_items(), 9);
    assert_eq!(p.batch_items(1 << 20), 585);
    assert_eq!(p.batch_items(100), 100);
    assert_eq!(pool("triple-z64").batch_items(1 << 20), 1 << 20);
    for (id, why) in [
        ("matrix-triple-z64", "need a shape"),
        ("matrix-triple-z64-0x4x4", "out of range"),
        ("matrix-triple-z64-4096x4096x4096", "out of range"),
        (
            "triple-z64-2x2x2",
            "only matrix-triple and conv-triple pools have a shape",
        ),
        (
            "conv-triple-z64-1x1x2x2-1x3x3",
            "kernel no larger than the padded input",
        ),
        ("conv-triple-z64-1x1x4x4-1x3x3-s0", "out of range"),
    ] {
        let err = id
            .parse::<PoolSpec>()
            .and_then(|p| p.validate(3))
            .unwrap_err()
            .to_string();
        assert!(err.contains(why), "{id}: {err}");
    }
    for bad in [
        "matrix-triple-z64-2x2",
        "matrix-triple-z64-2x2x2x2",
        "matrix-triple-z64-2xx2",
        "matrix-triple-z64-2x2x2-3x3x3",
    ] {
        assert!(bad.parse::<PoolSpec>().is_err(), "{bad}");
    }
}

/// Pools the kinds do not support are refused with the reason, before anything is made.
#[test]
fn the_new_kinds_refuse_domains_they_are_not_made_in() {
    for (id, why) in [
        ("wrap-p128", "z64"),
        ("binary-triple-p61", "z64"),
        ("dabit-z128", "z64 or a prime field"),
    ] {
        let err = pool(id).validate(3).unwrap_err().to_string();
        assert!(err.contains(why), "{id}: {err}");
    }
}

/// Every party's records of a taken checkout as 64-bit words, item by item.
fn words(files: &[PathBuf]) -> Vec<Vec<Vec<u64>>> {
    files
        .iter()
        .map(|f| {
            let mut r =
                larder::material::ShareReader::new(std::fs::File::open(f).unwrap()).unwrap();
            let per = r.header.record_bytes() / 8;
            let mut items = Vec::new();
            while let Some(b) = r.next_records(4096).unwrap() {
                let w: Vec<u64> = b
                    .chunks(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                    .collect();
                items.extend(w.chunks(per).map(<[u64]>::to_vec));
            }
            items
        })
        .collect()
}

/// The kinds CrypTen burns, opened here from the raw records with this test's own arithmetic
/// (not the library's `verify`): θ counts the wrap-arounds of r's shares as signed 64-bit
/// integers, c = a AND b under XOR, and a daBit's two sharings open to the same bit. The
/// values are not degenerate (θ is not always 0; bits and words vary).
#[test]
fn wraps_binary_triples_and_dabits_open_by_their_own_rules() {
    for parties in [2u8, 3, 5] {
        let dir = tempfile::tempdir().unwrap();
        let kinds = ["wrap-z64", "binary-triple-z64", "dabit-z64"].map(pool);
        let c = consortium(dir.path(), parties, 1000, &kinds);
        for (i, spec) in kinds.iter().enumerate() {
            deal(&c, *spec, 2000, 20 + i as u8);
            let files = c
                .take(
                    *spec,
                    2000,
                    &format!("raw-{i}"),
                    &dir.path().join(format!("o{i}")),
                )
                .unwrap();
            let w = words(&files);
            let n = w.len();
            let mut seen = std::collections::BTreeMap::new();
            for j in 0..w[0].len() {
                let w = &w;
                let col = |c: usize| (0..n).map(move |p| w[p][j][c]);
                match spec.kind.name() {
                    "wrap" => {
                        let total: i128 = col(0).map(|x| i128::from(x as i64)).sum();
                        let r = i128::from(col(0).fold(0u64, u64::wrapping_add) as i64);
                        let theta = col(1).fold(0u64, u64::wrapping_add) as i64;
                        assert_eq!(total, r + i128::from(theta) * (1i128 << 64), "item {j}");
                        *seen.entry(theta).or_insert(0) += 1;
                    }
                    "binary-triple" => {
                        let x = |c| col(c).fold(0u64, |a, b| a ^ b);
                        assert_eq!(x(0) & x(1), x(2), "item {j}");
                        *seen.entry((x(2).count_ones() / 8) as i64).or_insert(0) += 1;
                    }
                    "dabit" => {
                        let arith = col(0).fold(0u64, u64::wrapping_add);
                        let xor = col(1).fold(0u64, |a, b| a ^ b);
                        assert!(arith <= 1 && arith == xor, "item {j}: {arith} vs {xor}");
                        *seen.entry(arith as i64).or_insert(0) += 1;
                    }
                    k => unreachable!("{k}"),
                }
            }
            assert!(seen.len() >= 2, "{spec} with {parties} parties: {seen:?}");
            // The library's verify agrees.
            assert_eq!(verify(&files).unwrap().items, 2000);
        }
    }
}

/// A wrong θ share (its checksum repaired) is caught by verify: the negative control of the
/// wrap relation.
#[test]
fn verify_catches_a_wrong_wrap_count() {
    let spec = pool("wrap-z64");
    let dir = tempfile::tempdir().unwrap();
    let c = consortium(dir.path(), 3, 1000, &[spec]);
    deal(&c, spec, 500, 5);
    let files = c.take(spec, 500, "x", &dir.path().join("o")).unwrap();
    assert_eq!(verify(&files).unwrap().items, 500);
    // Item 11's θ share (the second of its 2 words).
    flip_with_valid_checksum(&files[2], 11 * 16 + 8);
    let err = verify(&files).unwrap_err().to_string();
    assert!(err.contains("item 11") && err.contains("wrap"), "{err}");
}

#[test]
fn bits_are_not_constant() {
    let spec = pool("bit-p61");
    let dir = tempfile::tempdir().unwrap();
    let c = consortium(dir.path(), 2, 1000, &[spec]);
    deal(&c, spec, 1000, 3);
    let files = c.take(spec, 1000, "b", &dir.path().join("o")).unwrap();
    let read = |f: &PathBuf| {
        let mut r = larder::material::ShareReader::new(std::fs::File::open(f).unwrap()).unwrap();
        let mut v = Vec::new();
        while let Some(b) = r.next_records(4096).unwrap() {
            v.extend(
                b.chunks(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap())),
            );
        }
        v
    };
    let (a, b) = (read(&files[0]), read(&files[1]));
    let p = (1u64 << 61) - 1;
    let ones = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| (**x as u128 + **y as u128) % p as u128 == 1)
        .count();
    assert!((350..650).contains(&ones), "{ones} ones out of 1000");
}

#[test]
fn verify_catches_a_wrong_share_even_with_a_valid_checksum() {
    let spec = pool("triple-p128");
    let dir = tempfile::tempdir().unwrap();
    let c = consortium(dir.path(), 3, 1000, &[spec]);
    deal(&c, spec, 500, 4);
    let files = c.take(spec, 500, "x", &dir.path().join("o")).unwrap();
    // Item 7's c share (record offset 32 of 48 bytes).
    flip_with_valid_checksum(&files[1], 7 * 48 + 32);
    let err = verify(&files).unwrap_err().to_string();
    assert!(
        err.contains("item 7") && err.contains("c != a * b"),
        "{err}"
    );
}

/// Flips one bit of the share stream `file` at byte `at` of its records and repairs the
/// trailer's checksum, so only the relation between the parties' shares can catch it.
fn flip_with_valid_checksum(file: &std::path::Path, at: usize) {
    let mut bytes = std::fs::read(file).unwrap();
    let header_len = larder::material::ShareHeader::read_from(&mut &bytes[..])
        .unwrap()
        .encode()
        .len();
    bytes[header_len + at] ^= 1;
    let n = bytes.len();
    let crc = crc32(&bytes[header_len..n - 4]);
    bytes[n - 4..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(file, &bytes).unwrap();
}

fn crc32(b: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(b);
    h.finalize()
}

#[test]
fn retrying_a_take_never_truncates_shares_already_handed_out() {
    let spec = pool("triple-z64");
    let dir = tempfile::tempdir().unwrap();
    let c = consortium(dir.path(), 3, 1000, &[spec]);
    deal(&c, spec, 1000, 5);
    let out = dir.path().join("o");
    let files = c.take(spec, 100, "t", &out).unwrap();
    let before: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(
        c.take(spec, 100, "t", &out).is_err(),
        "a second take of the same checkout is refused"
    );
    let after: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert_eq!(before, after);
    assert_eq!(verify(&files).unwrap().items, 100);
}
