//! `larder plan` on what MP-SPDZ's compiler really printed (tests/data/mp-spdz): the counts per
//! pool, the checkout per run, the stock policy for N runs a day, and the refusals.

use std::process::Command;

fn plan(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_larder"))
        .arg("plan")
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn data(name: &str) -> String {
    format!("{}/tests/data/mp-spdz/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The number on the line of `pool` in "one run needs".
fn need(out: &str, pool: &str) -> Option<u64> {
    out.lines()
        .take_while(|l| !l.starts_with("check out"))
        .find(|l| l.split_whitespace().next() == Some(pool))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

#[test]
fn a_ring_program_needs_its_triples_bits_and_input_masks() {
    let (ok, out, err) = plan(&[
        "--mp-spdz",
        &data("tutorial-R64.txt"),
        "--domain",
        "z64",
        "--runs-per-day",
        "100",
    ]);
    assert!(ok, "{err}");
    assert_eq!(need(&out, "triple-z64"), Some(3402), "{out}");
    assert_eq!(need(&out, "bit-z64"), Some(3297));
    assert_eq!(need(&out, "input-mask-z64-o0"), Some(4));
    assert_eq!(need(&out, "input-mask-z64-o1"), Some(4));
    assert!(out.contains("matrix multiplications (3x2 * 2x2) (1): not Larder material"));
    assert!(out.contains("larder checkout --pool triple-z64 --count 3402"));
    // 100 runs a day: a day and a quarter, refill below a day, floor of two runs; the policy
    // parses as the consortium file's.
    let toml_part = &out[out.find("[stock.").unwrap()..];
    let stock: std::collections::BTreeMap<
        String,
        std::collections::BTreeMap<String, larder::schedule::StockPolicy>,
    > = toml::from_str(toml_part).unwrap();
    let p = &stock["stock"]["triple-z64"];
    assert_eq!(p.levels(0.0).target, 425_250);
    assert_eq!(p.levels(0.0).refill_below, 340_200);
    assert_eq!(p.levels(0.0).floor, 6_804);
}

#[test]
fn the_default_prime_field_program_and_its_unknown_counts() {
    let (ok, out, err) = plan(&["--mp-spdz", &data("tutorial-F.txt"), "--domain", "p128"]);
    assert!(ok, "{err}");
    assert_eq!(need(&out, "triple-p128"), Some(2526), "{out}");
    assert_eq!(need(&out, "bit-p128"), Some(5461));
    // A run-time loop bound: refused until the user says how many.
    let (ok, _, err) = plan(&["--mp-spdz", &data("probe-F.txt"), "--domain", "p128"]);
    assert!(!ok);
    assert!(err.contains("could not count integer triples"), "{err}");
    assert!(err.contains("--unknown-as"), "{err}");
    let (ok, out, err) = plan(&[
        "--mp-spdz",
        &data("probe-F.txt"),
        "--domain",
        "p128",
        "--unknown-as",
        "1000",
    ]);
    assert!(ok, "{err}");
    assert_eq!(need(&out, "triple-p128"), Some(1000), "{out}");
    assert_eq!(need(&out, "square-p128"), Some(1));
    assert_eq!(need(&out, "inverse-p128"), Some(1));
    assert_eq!(need(&out, "bit-p128"), Some(105));
    assert!(
        out.contains("gf2n triples (1): not Larder material"),
        "{out}"
    );
    // Inverses exist in prime fields only.
    let (ok, _, err) = plan(&[
        "--mp-spdz",
        &data("probe-F.txt"),
        "--domain",
        "z64",
        "--unknown-as",
        "5",
    ]);
    assert!(!ok);
    assert!(
        err.contains("inverses, which exist only in prime fields"),
        "{err}"
    );
}

#[test]
fn text_that_is_no_compiler_report_is_refused() {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), "Compiling file Programs/Source/x.mpc\nhello\n").unwrap();
    let (ok, _, err) = plan(&["--mp-spdz", f.path().to_str().unwrap(), "--domain", "z64"]);
    assert!(!ok);
    assert!(err.contains("no requirements found"), "{err}");
}
