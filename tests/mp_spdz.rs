//! MP-SPDZ export, read back by an independent reader written here from the format document
//! (`docs/engines/mp-spdz.md`), never through the exporter's code: headers byte by byte, limbs,
//! Montgomery form undone with big integers, and every item reconstructed across parties.

mod common;

use common::{consortium, deal, pool};
use num_bigint::BigUint;
use num_traits::{One, Zero};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// What a file should hold, in the document's words.
#[derive(Clone, Copy, Debug)]
enum Field {
    Prime {
        p: u128,
        montgomery: bool,
    },
    Z64,
    /// MP-SPDZ's bit type (`SemiSecret`): 64-bit words of XOR shares.
    Bits,
}

impl Field {
    fn modulus(self) -> BigUint {
        match self {
            Field::Prime { p, .. } => BigUint::from(p),
            Field::Z64 | Field::Bits => BigUint::one() << 64,
        }
    }
    fn bits(self) -> u64 {
        match self {
            Field::Prime { p, .. } => BigUint::from(p).bits(),
            Field::Z64 | Field::Bits => 64,
        }
    }
    /// `<n>-<Dp|DR>-<bits>`.
    fn dir(self, parties: u8) -> String {
        format!("{parties}-{}-{}", self.short(), self.bits())
    }
    fn short(self) -> &'static str {
        match self {
            Field::Prime { .. } => "Dp",
            Field::Z64 => "DR",
            Field::Bits => "DB",
        }
    }
    /// The header as the document spells it: u64 LE length, then `gfp`, sign byte 0, u32 LE
    /// byte length of p, p big-endian, i32 LE Montgomery flag; or `Z2^64` and i32 LE 64.
    fn documented_header(self) -> Vec<u8> {
        let mut body = Vec::new();
        match self {
            Field::Prime { p, montgomery } => {
                let be = BigUint::from(p).to_bytes_be();
                body.extend_from_slice(b"gfp");
                body.push(0);
                body.extend_from_slice(&(be.len() as u32).to_le_bytes());
                body.extend_from_slice(&be);
                body.extend_from_slice(&(montgomery as i32).to_le_bytes());
            }
            Field::Z64 => {
                body.extend_from_slice(b"Z2^64");
                body.extend_from_slice(&64i32.to_le_bytes());
            }
            // `SemiSecret`'s type string, then sizeof(long) stored as a size_t.
            Field::Bits => {
                body.extend_from_slice(b"binary secret");
                body.extend_from_slice(&8u64.to_le_bytes());
            }
        }
        let mut h = (body.len() as u64).to_le_bytes().to_vec();
        h.extend(body);
        h
    }
}

/// Parses one exported file: checks the header byte for byte and returns every element as a
/// canonical integer.
fn read_file(bytes: &[u8], field: Field) -> Vec<BigUint> {
    let header = field.documented_header();
    assert!(bytes.len() >= header.len(), "file shorter than its header");
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!(len + 8, header.len(), "header length");
    assert_eq!(&bytes[..header.len()], &header[..], "header bytes");
    let limbs = field.bits().div_ceil(64) as usize;
    let body = &bytes[header.len()..];
    assert_eq!(body.len() % (limbs * 8), 0, "whole elements");
    let m = field.modulus();
    body.chunks(limbs * 8)
        .map(|e| {
            // Little-endian 64-bit limbs, least significant first: little-endian bytes overall.
            let v = BigUint::from_bytes_le(e);
            match field {
                Field::Prime { montgomery, .. } => {
                    assert!(v < m, "element not fully reduced");
                    if montgomery {
                        let r = BigUint::one() << (64 * limbs);
                        let r_inv = r.modpow(&(&m - 2u32), &m);
                        v * r_inv % &m
                    } else {
                        v
                    }
                }
                Field::Z64 | Field::Bits => v,
            }
        })
        .collect()
}

/// Sums each element across parties.
fn open(shares: &[Vec<BigUint>], m: &BigUint) -> Vec<BigUint> {
    let mut sum = vec![BigUint::zero(); shares[0].len()];
    for s in shares {
        assert_eq!(
            s.len(),
            sum.len(),
            "parties hold the same number of elements"
        );
        for (acc, x) in sum.iter_mut().zip(s) {
            *acc = (&*acc + x) % m;
        }
    }
    sum
}

/// Checks every opened item against its kind's relation; returns the number of items.
fn check_relation(kind: &str, opened: &[BigUint], m: &BigUint) -> usize {
    let rec = match kind {
        "triple" => 3,
        "square" | "inverse" => 2,
        "bit" => 1,
        _ => unreachable!(),
    };
    assert_eq!(opened.len() % rec, 0);
    let items: Vec<&[BigUint]> = opened.chunks(rec).collect();
    for (i, it) in items.iter().enumerate() {
        match kind {
            "triple" => assert_eq!(&it[0] * &it[1] % m, it[2], "item {i}: c = ab"),
            "square" => assert_eq!(&it[0] * &it[0] % m, it[1], "item {i}: s = a^2"),
            "inverse" => assert!((&it[0] * &it[1] % m).is_one(), "item {i}: a * 1/a = 1"),
            "bit" => assert!(it[0] <= BigUint::one(), "item {i}: a bit"),
            _ => unreachable!(),
        }
    }
    // Not a constant: the first elements of the items take many values.
    let distinct: std::collections::HashSet<_> = items.iter().map(|it| &it[0]).collect();
    let want = if kind == "bit" { 2 } else { items.len() / 2 };
    assert!(distinct.len() >= want, "{kind}: too few distinct values");
    items.len()
}

fn larder() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_larder"));
    c.env("RUST_BACKTRACE", "0");
    c
}

/// `larder export --input <stream> --out <player_data>`.
fn export(stream: &std::path::Path, player_data: &std::path::Path) -> Command {
    let mut c = larder();
    c.arg("export")
        .arg("--input")
        .arg(stream)
        .arg("--out")
        .arg(player_data);
    c
}

fn run_ok(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `larder export` on every party's stream into `player_data` (Montgomery form unless
/// `field` says canonical).
fn export_each(streams: &[PathBuf], player_data: &std::path::Path, field: Field) {
    let montgomery = matches!(
        field,
        Field::Prime {
            montgomery: true,
            ..
        }
    );
    for stream in streams {
        let mut cmd = export(stream, player_data);
        if !montgomery {
            cmd.arg("--canonical");
        }
        run_ok(&mut cmd);
    }
}

/// Deals and takes `items` of `pool_id` at every party, exports each party's stream with the
/// `larder export` command, and reads the files back independently.
fn export_round_trip(parties: u8, pool_id: &str, field: Field, items: u64) {
    export_round_trip_by(parties, pool_id, field, items, false)
}

/// [`export_round_trip`] with the material made by the dealer or, with `prss`, by the
/// parties' PRSS generator (additive shares the same way: the export does not care who made
/// them).
fn export_round_trip_by(parties: u8, pool_id: &str, field: Field, items: u64, prss: bool) {
    let spec = pool(pool_id);
    let dir = tempfile::tempdir().unwrap();
    let c = consortium(dir.path(), parties, 1000, &[spec]);
    if prss {
        let mut own = larder::generate::prss::ephemeral(parties).unwrap();
        c.make(&mut own, spec, items + 500, |_| {}).unwrap();
    } else {
        deal(&c, spec, items + 500, 3);
    }
    c.take(spec, 400, "warm-up", &dir.path().join("w")).unwrap();
    let streams = c.take(spec, items, "job", &dir.path().join("out")).unwrap();
    let player_data = dir.path().join("Player-Data");
    export_each(&streams, &player_data, field);
    let mut shares = Vec::new();
    for p in 0..streams.len() {
        let type_name = match spec.kind.name() {
            "triple" => "Triples",
            "square" => "Squares",
            "bit" => "Bits",
            "inverse" => "Inverses",
            k => panic!("{k}"),
        };
        let path = player_data
            .join(field.dir(parties))
            .join(format!("{type_name}-{}-P{p}", field.short()));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "shares are readable by their owner only");
        shares.push(read_file(&std::fs::read(&path).unwrap(), field));
    }
    if let Field::Prime { p, montgomery } = field {
        let params =
            std::fs::read_to_string(player_data.join(field.dir(parties)).join("Params-Data"))
                .unwrap();
        assert_eq!(params, format!("{p}\n{}\n", montgomery as u8));
    }
    let m = field.modulus();
    let opened = open(&shares, &m);
    assert_eq!(
        check_relation(spec.kind.name(), &opened, &m),
        items as usize,
        "{pool_id}"
    );
}

const P128: u128 = (1 << 127) + 1_802_241;
const P63: u128 = (1 << 63) + 327_681;
const P61: u128 = (1 << 61) - 1;

fn prime(p: u128, montgomery: bool) -> Field {
    Field::Prime { p, montgomery }
}

macro_rules! exports {
    ($($name:ident => ($parties:expr, $pool:expr, $field:expr)),* $(,)?) => {$(
        #[test]
        fn $name() { export_round_trip($parties, $pool, $field, 1212); }
    )*};
}

exports! {
    triples_p128_montgomery_3_parties => (3, "triple-p128", prime(P128, true)),
    triples_p128_canonical_2_parties => (2, "triple-p128", prime(P128, false)),
    triples_64_bit_prime_montgomery_2_parties => (2, "triple-fp:9223372036855103489", prime(P63, true)),
    triples_64_bit_prime_canonical_3_parties => (3, "triple-fp:9223372036855103489", prime(P63, false)),
    triples_p61_montgomery_3_parties => (3, "triple-p61", prime(P61, true)),
    triples_z64_2_parties => (2, "triple-z64", Field::Z64),
    triples_z64_3_parties => (3, "triple-z64", Field::Z64),
    squares_p128_montgomery => (3, "square-p128", prime(P128, true)),
    squares_z64 => (2, "square-z64", Field::Z64),
    bits_p61_canonical => (3, "bit-p61", prime(P61, false)),
    bits_z64 => (3, "bit-z64", Field::Z64),
    inverses_p128_montgomery => (2, "inverse-p128", prime(P128, true)),
    inverses_64_bit_prime_montgomery => (3, "inverse-fp:9223372036855103489", prime(P63, true)),
}

#[test]
fn prss_material_exports_as_any_other() {
    export_round_trip_by(3, "triple-z64", Field::Z64, 1212, true);
    export_round_trip_by(5, "triple-p128", prime(P128, true), 1212, true);
    export_round_trip_by(3, "square-p61", prime(P61, false), 1212, true);
    export_round_trip_by(5, "bit-p128", prime(P128, true), 1212, true);
}

/// Binary triples and daBits over Z_2^64, exported with `larder export` and read back from
/// where MP-SPDZ's semi2k-party.x reads them with -F: `Triples-DB` of the bit type (64 bit
/// triples per word, XOR-shared) and `daBits-DR` (the arithmetic share, then the word whose
/// XOR over the parties is the same bit).
fn export_binary_kinds(parties: u8) {
    let dir = tempfile::tempdir().unwrap();
    let specs = [pool("binary-triple-z64"), pool("dabit-z64")];
    let c = consortium(dir.path(), parties, 1000, &specs);
    let player_data = dir.path().join("Player-Data");
    for (i, spec) in specs.iter().enumerate() {
        deal(&c, *spec, 1515, 30 + i as u8);
        let streams = c
            .take(
                *spec,
                1515,
                &format!("mp-{i}"),
                &dir.path().join(format!("o{i}")),
            )
            .unwrap();
        for s in &streams {
            run_ok(&mut export(s, &player_data));
        }
    }
    let read = |field: Field, name: &str| -> Vec<Vec<u64>> {
        (0..parties)
            .map(|p| {
                let path = player_data
                    .join(field.dir(parties))
                    .join(format!("{name}-{}-P{p}", field.short()));
                read_file(&std::fs::read(&path).unwrap(), field)
                    .iter()
                    .map(|v| v.to_u64_digits().first().copied().unwrap_or(0))
                    .collect()
            })
            .collect()
    };
    let xor = |w: &[Vec<u64>], i: usize| w.iter().fold(0u64, |acc, p| acc ^ p[i]);
    let bt = read(Field::Bits, "Triples");
    assert_eq!(bt[0].len(), 3 * 1515);
    let mut distinct = std::collections::HashSet::new();
    for j in 0..1515 {
        let (a, b, c) = (xor(&bt, 3 * j), xor(&bt, 3 * j + 1), xor(&bt, 3 * j + 2));
        assert_eq!(a & b, c, "binary triple {j}");
        distinct.insert(a);
    }
    assert!(distinct.len() > 1500, "words are random");
    let db = read(Field::Z64, "daBits");
    assert_eq!(db[0].len(), 2 * 1515);
    let mut ones = 0;
    for j in 0..1515 {
        let arith = db.iter().fold(0u64, |acc, p| acc.wrapping_add(p[2 * j]));
        assert!(arith <= 1 && arith == xor(&db, 2 * j + 1), "daBit {j}");
        ones += arith;
    }
    assert!((300..1215).contains(&ones), "{ones} ones: the bits vary");
}

/// daBits over the 128-bit prime, exported where semi-party.x reads them: `daBits-Dp-P<p>`
/// with the gfp header, each record the arithmetic share (16 bytes, Montgomery form) and then
/// the binary share as one 64-bit word.
#[test]
fn prime_field_dabits_export_where_semi_reads_them() {
    let parties = 3u8;
    let dir = tempfile::tempdir().unwrap();
    let spec = pool("dabit-p128");
    let c = consortium(dir.path(), parties, 1000, &[spec]);
    deal(&c, spec, 1212, 41);
    let streams = c.take(spec, 1212, "db", &dir.path().join("o")).unwrap();
    let player_data = dir.path().join("Player-Data");
    for s in &streams {
        run_ok(&mut export(s, &player_data));
    }
    let field = prime(P128, true);
    let header = field.documented_header();
    let m = field.modulus();
    let r_inv = (BigUint::one() << 128u32).modpow(&(&m - 2u32), &m);
    let records: Vec<Vec<(BigUint, u64)>> = (0..parties)
        .map(|p| {
            let bytes = std::fs::read(
                player_data
                    .join(field.dir(parties))
                    .join(format!("daBits-Dp-P{p}")),
            )
            .unwrap();
            assert_eq!(&bytes[..header.len()], &header[..], "header bytes");
            let body = &bytes[header.len()..];
            assert_eq!(
                body.len(),
                1212 * 24,
                "16-byte share and 8-byte word per daBit"
            );
            body.chunks(24)
                .map(|r| {
                    let arith = BigUint::from_bytes_le(&r[..16]) * &r_inv % &m;
                    (arith, u64::from_le_bytes(r[16..].try_into().unwrap()))
                })
                .collect()
        })
        .collect();
    let mut ones = 0;
    for j in 0..1212 {
        let arith = records
            .iter()
            .fold(BigUint::zero(), |acc, p| (acc + &p[j].0) % &m);
        let word = records.iter().fold(0u64, |acc, p| acc ^ p[j].1);
        assert!(arith <= BigUint::one(), "daBit {j}: {arith}");
        assert_eq!(
            BigUint::from(word),
            arith,
            "daBit {j}: both sharings, one bit"
        );
        ones += word;
    }
    assert!((300..912).contains(&ones), "{ones} ones: the bits vary");
}

#[test]
fn binary_triples_and_dabits_export_where_semi2k_reads_them_2_parties() {
    export_binary_kinds(2);
}

#[test]
fn binary_triples_and_dabits_export_where_semi2k_reads_them_3_parties() {
    export_binary_kinds(3);
}

#[test]
fn the_64_bit_prime_of_the_format_document_is_the_one_tested() {
    assert_eq!(P63, 9_223_372_036_855_103_489);
}

/// Opens a named pipe for reading once a writer has created it, and reads it to the end.
fn read_pipe_when_ready(path: PathBuf) -> std::thread::JoinHandle<Vec<u8>> {
    read_pipe(path, None)
}

/// Opens a named pipe once it exists and reads it to its end, or only its first `want`
/// bytes before closing it (an engine that needs fewer items than were checked out).
fn read_pipe(path: PathBuf, want: Option<usize>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        use std::io::Read;
        use std::os::unix::fs::FileTypeExt;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Ok(m) = std::fs::metadata(&path) {
                assert!(m.file_type().is_fifo(), "{} is not a pipe", path.display());
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no pipe at {}",
                path.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        match want {
            None => std::fs::read(&path).unwrap(),
            Some(n) => {
                let mut buf = vec![0u8; n];
                std::fs::File::open(&path)
                    .unwrap()
                    .read_exact(&mut buf)
                    .unwrap();
                buf
            }
        }
    })
}

#[test]
fn a_pipe_delivers_the_same_bytes_as_a_file() {
    let spec = pool("triple-p128");
    let dir = tempfile::tempdir().unwrap();
    let c = consortium(dir.path(), 2, 1000, &[spec]);
    deal(&c, spec, 3000, 5);
    let streams = c.take(spec, 2525, "job", &dir.path().join("out")).unwrap();
    let (files, pipes) = (dir.path().join("files"), dir.path().join("pipes"));
    run_ok(
        larder()
            .args(["export", "--thread", "0", "--input"])
            .arg(&streams[1])
            .arg("--out")
            .arg(&files),
    );
    let pipe_path = pipes.join("2-Dp-128").join("Triples-Dp-P1-T0");
    let reader = read_pipe_when_ready(pipe_path.clone());
    run_ok(
        larder()
            .args(["export", "--thread", "0", "--pipe", "--input"])
            .arg(&streams[1])
            .arg("--out")
            .arg(&pipes),
    );
    let piped = reader.join().unwrap();
    let filed = std::fs::read(files.join("2-Dp-128").join("Triples-Dp-P1-T0")).unwrap();
    assert_eq!(piped.len(), filed.len());
    assert!(piped == filed, "pipe and file differ");
    assert_eq!(
        read_file(&piped, prime(P128, true)).len(),
        2525 * 3,
        "every element of every item"
    );
}

#[test]
fn what_mp_spdz_cannot_read_is_refused_and_nothing_is_written() {
    for pool_id in [
        "input-mask-p61-o1",
        "double-p128-t1",
        "triple-z128",
        "conv-triple-z64-1x1x3x3-1x2x2",
    ] {
        let spec = pool(pool_id);
        let dir = tempfile::tempdir().unwrap();
        let c = consortium(dir.path(), 3, 1000, &[spec]);
        deal(&c, spec, 500, 1);
        let streams = c.take(spec, 200, "job", &dir.path().join("out")).unwrap();
        let pd = dir.path().join("Player-Data");
        let out = export(&streams[0], &pd).output().unwrap();
        assert!(!out.status.success(), "{pool_id} was exported");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("MP-SPDZ cannot read") && err.contains(pool_id),
            "{pool_id}: {err}"
        );
        assert!(!pd.exists(), "{pool_id}: nothing is written");
    }
}

/// Matrix triples go where semi, semi2k and hemi read them for private matrix products
/// (Protocols/MatrixFile.h): `<n>-<Dp|DR>-<bits>/Matrix-<m>x<k>x<n>-P<p>`, the type's header,
/// then per triple A, B and C row-major, each element as in a Triples file. Read back here and
/// opened to A·B = C; per-thread files (which MP-SPDZ would not read) are refused.
fn export_matrices(parties: u8, pool_id: &str, field: Field, shape: (usize, usize, usize)) {
    let spec = pool(pool_id);
    let (m, k, n) = shape;
    let dir = tempfile::tempdir().unwrap();
    let c = consortium(dir.path(), parties, 1000, &[spec]);
    deal(&c, spec, 60, 4);
    let streams = c.take(spec, 50, "mat", &dir.path().join("out")).unwrap();
    let player_data = dir.path().join("Player-Data");
    export_each(&streams, &player_data, field);
    let mut shares = Vec::new();
    for p in 0..streams.len() {
        let path = player_data
            .join(field.dir(parties))
            .join(format!("Matrix-{m}x{k}x{n}-P{p}"));
        shares.push(read_file(&std::fs::read(&path).unwrap(), field));
    }
    let modulus = field.modulus();
    let opened = open(&shares, &modulus);
    let rec = m * k + k * n + m * n;
    assert_eq!(opened.len(), 50 * rec);
    for (t, it) in opened.chunks(rec).enumerate() {
        let (a, b, cc) = (
            &it[..m * k],
            &it[m * k..m * k + k * n],
            &it[m * k + k * n..],
        );
        for i in 0..m {
            for j in 0..n {
                let dot = (0..k).fold(BigUint::zero(), |acc, l| {
                    (acc + &a[i * k + l] * &b[l * n + j]) % &modulus
                });
                assert_eq!(dot, cc[i * n + j], "triple {t}: C[{i}][{j}]");
            }
        }
    }
    let distinct: std::collections::HashSet<_> = opened.chunks(rec).map(|it| &it[0]).collect();
    assert!(distinct.len() > 40, "A varies");
    // -f mode would want Matrix files per thread, which MP-SPDZ never opens.
    let out = export(&streams[0], &dir.path().join("PD2"))
        .args(["--thread", "0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("one file per party"),
        "{err}"
    );
}

#[test]
fn matrix_triples_export_where_semi_and_semi2k_read_them() {
    export_matrices(3, "matrix-triple-z64-3x4x2", Field::Z64, (3, 4, 2));
    export_matrices(2, "matrix-triple-p128-2x3x5", prime(P128, true), (2, 3, 5));
    export_matrices(3, "matrix-triple-p61-4x1x3", prime(P61, false), (4, 1, 3));
}

#[test]
fn a_corrupt_stream_leaves_no_file_behind() {
    let spec = pool("triple-z64");
    let dir = tempfile::tempdir().unwrap();
    let c = consortium(dir.path(), 2, 1000, &[spec]);
    deal(&c, spec, 3000, 2);
    let streams = c.take(spec, 2000, "job", &dir.path().join("out")).unwrap();
    let mut bytes = std::fs::read(&streams[0]).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 1; // a record byte: only the trailer's checksum can tell
    std::fs::write(&streams[0], &bytes).unwrap();
    let pd = dir.path().join("Player-Data");
    let out = export(&streams[0], &pd).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("checksum"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left: Vec<_> = std::fs::read_dir(pd.join("2-DR-64")).unwrap().collect();
    assert!(left.is_empty(), "no file, complete or temporary: {left:?}");
}

/// Engines of all three parties check out over the network into per-thread named pipes, the
/// way MP-SPDZ's `-f` mode reads them; the test reads the pipes and reconstructs.
#[test]
fn checkouts_stream_into_per_thread_pipes_and_reconstruct() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pools = vec![pool("triple-p128")];
    let c = rt.block_on(common::net::spawn_cluster_with(600, &pools));
    rt.block_on(c.deal("triple-p128", 6000));
    let pd = c.dir.path().join("Player-Data");
    let field = prime(P128, true);
    let mut engines = Vec::new();
    let mut readers = Vec::new();
    for p in 0..3u8 {
        engines.push(
            c.checkout_command(p, &pd)
                .args(["--format", "mp-spdz", "--engine-threads", "2", "--pipes"])
                .args([
                    "--pool",
                    "triple-p128",
                    "--count",
                    "4040",
                    "--id",
                    "mpc-run",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        for t in 0..2 {
            readers.push(read_pipe_when_ready(
                pd.join(field.dir(3)).join(format!("Triples-Dp-P{p}-T{t}")),
            ));
        }
    }
    let bytes: Vec<_> = readers.into_iter().map(|r| r.join()).collect();
    for e in engines {
        let out = e.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bytes: Vec<Vec<u8>> = bytes.into_iter().map(|b| b.unwrap()).collect();
    let m = field.modulus();
    let mut total = 0;
    for t in 0..2 {
        let shares: Vec<Vec<BigUint>> = (0..3)
            .map(|p| read_file(&bytes[p * 2 + t], field))
            .collect();
        total += check_relation("triple", &open(&shares, &m), &m);
    }
    assert_eq!(total, 4040, "both threads' items");
    rt.block_on(async move { drop(c) });
}

/// The `sh` blocks of the MP-SPDZ guide that run `larder`, as bash scripts: the lines that
/// run MP-SPDZ itself (`./compile.py`, `./semi-party.x`, `cd MP-SPDZ`) and starting the demo
/// (`cargo run ... demo`, which the test's consortium stands in for) are left out.
fn guide_scripts() -> Vec<String> {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/engines/mp-spdz.md"),
    )
    .unwrap();
    let mut scripts = Vec::new();
    let mut block: Option<Vec<&str>> = None;
    for line in doc.lines() {
        let t = line.trim();
        match (&mut block, t) {
            (None, "```sh") => block = Some(Vec::new()),
            (Some(b), "```") => {
                let text = b.join("\n");
                if text.contains("larder ") && !text.contains("cargo run") {
                    scripts.push(text);
                }
                block = None;
            }
            (Some(b), t) if !t.starts_with("./") && !t.starts_with("cd ") => b.push(t),
            _ => {}
        }
    }
    scripts
}

/// Every `larder` command of `docs/engines/mp-spdz.md`, run as printed (by bash, `larder` on
/// the PATH) against a real three-node consortium standing in for `larder-demo`, and the
/// local mode's: the files they write reconstruct, the gf2n directories MP-SPDZ checks for
/// exist, and an engine that closes its pipe early gets a note, not a failure.
#[test]
fn every_larder_command_of_the_mp_spdz_guide_works_as_written() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let c = rt.block_on(common::net::spawn_cluster_with(600, &[pool("triple-p128")]));
    rt.block_on(c.deal("triple-p128", 25_000));
    let work = tempfile::tempdir().unwrap();
    let bin = work.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_larder"), bin.join("larder")).unwrap();
    std::os::unix::fs::symlink(c.dir.path(), work.path().join("larder-demo")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let scripts = guide_scripts();
    assert!(scripts.len() >= 3, "{scripts:#?}");
    let pd = work.path().join("MP-SPDZ/Player-Data");
    let field = prime(P128, true);
    let mut notes = String::new();
    for script in &scripts {
        let bash = Command::new("bash")
            .args(["-euo", "pipefail", "-c"])
            .arg(format!("{script}\nfor j in $(jobs -p); do wait $j; done"))
            .current_dir(work.path())
            .env("PATH", &path)
            // As the guide's step 3 sets it, for the later blocks too.
            .env("D", "larder-demo")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if script.contains("--pipes") {
            // The engine's thread: it opens the pipe and needs only 1010 triples.
            let fifo = pd.join(field.dir(3)).join("Triples-Dp-P0-T0");
            let want = field.documented_header().len() + 1010 * 48;
            assert_eq!(read_pipe(fifo, Some(want)).join().unwrap().len(), want);
        }
        let out = bash.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{script}\n{stderr}");
        notes.push_str(&stderr);
    }
    assert!(notes.contains("are burned"), "{notes}");
    // The checkout of every party (step 3), read back independently.
    let m = field.modulus();
    let dir = pd.join(field.dir(3));
    let shares: Vec<Vec<BigUint>> = (0..3)
        .map(|p| {
            read_file(
                &std::fs::read(dir.join(format!("Triples-Dp-P{p}"))).unwrap(),
                field,
            )
        })
        .collect();
    assert_eq!(check_relation("triple", &open(&shares, &m), &m), 10100);
    // The local mode's two parties over Z_2^64.
    let z = Field::Z64;
    let dir = pd.join(z.dir(2));
    let shares: Vec<Vec<BigUint>> = (0..2)
        .map(|p| {
            read_file(
                &std::fs::read(dir.join(format!("Triples-DR-P{p}"))).unwrap(),
                z,
            )
        })
        .collect();
    assert_eq!(
        check_relation("triple", &open(&shares, &z.modulus()), &z.modulus()),
        10100
    );
    // What the VMs check for before reading a triple.
    for n in [2, 3] {
        for bits in [128, 40] {
            assert!(pd.join(format!("{n}-D2-{bits}")).is_dir(), "{n}-D2-{bits}");
        }
    }
    rt.block_on(async move { drop(c) });
}
