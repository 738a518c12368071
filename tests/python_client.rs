//! The Python client (`clients/python`) against a real consortium: three TLS nodes on port 0
//! and the dealer. The Python tests check out, download as numpy arrays and reconstruct across
//! the three parties. They need `python3`; numpy comes from the system if it has it, else it is
//! installed into a virtual environment under cargo's target directory (once).

mod common;

use common::net::spawn_cluster_with;
use std::path::PathBuf;
use std::process::Command;

/// A Python that can import numpy: a virtual environment under the target directory that sees
/// the system's packages, with numpy installed into it only if the system lacks it.
fn python_with_numpy() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("python-client-venv");
    let python = venv.join("bin/python3");
    if !python.exists() {
        let made = Command::new("python3")
            .args(["-m", "venv", "--system-site-packages"])
            .arg(&venv)
            .status()
            .expect("python3 must be installed to test the Python client");
        assert!(made.success(), "python3 -m venv failed");
    }
    let has_numpy = |py: &PathBuf| {
        Command::new(py)
            .args(["-c", "import numpy"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has_numpy(&python) {
        let installed = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "numpy>=1.22"])
            .status()
            .unwrap();
        assert!(
            installed.success() && has_numpy(&python),
            "installing numpy failed"
        );
    }
    python
}

#[test]
fn the_python_client_checks_out_and_reconstructs_across_three_parties() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pools: Vec<_> = [
        "triple-z64",
        "triple-p128",
        "square-p61",
        "bit-z64",
        "input-mask-p61-o1",
        "wrap-z64",
        "binary-triple-z64",
        "dabit-z64",
        "dabit-p128",
        "matrix-triple-z64-3x4x5",
        "matrix-triple-p128-2x3x2",
    ]
    .iter()
    .map(|p| p.parse().unwrap())
    .collect();
    let c = rt.block_on(spawn_cluster_with(600, &pools));
    // Triples over p128 and squares over p61 made by the nodes with PRSS (no dealer): the
    // client reads them as any other.
    rt.block_on(c.make_at_nodes("triple-p128", 5_000, "prss"));
    rt.block_on(c.make_at_nodes("square-p61", 10_000, "prss"));
    for (pool, count) in [
        ("triple-z64", 40_000),
        ("bit-z64", 5_000),
        ("input-mask-p61-o1", 5_000),
        ("wrap-z64", 3_000),
        ("binary-triple-z64", 3_000),
        ("dabit-z64", 3_000),
        ("dabit-p128", 3_000),
        ("matrix-triple-z64-3x4x5", 2_000),
        ("matrix-triple-p128-2x3x2", 1_000),
    ] {
        rt.block_on(c.deal(pool, count));
    }
    let path = c.describe_for_python();
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(python_with_numpy())
        .args(["-m", "unittest", "discover", "-v", "-s"])
        .arg(format!("{root}/clients/python/tests"))
        .env("PYTHONPATH", format!("{root}/clients/python/src"))
        .env("LARDER_TEST_CONSORTIUM", &path)
        .output()
        .expect("python3 must be installed (with numpy) to test the Python client");
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "Python tests failed:\n{report}");
    assert!(
        report.contains("\nOK") && !report.contains("skipped"),
        "every Python test ran and passed:\n{report}"
    );
    let ran: usize = report
        .lines()
        .find_map(|l| l.strip_prefix("Ran ")?.split(' ').next()?.parse().ok())
        .expect("unittest reports how many tests ran");
    assert!(ran >= 19, "only {ran} Python tests ran:\n{report}");
    rt.block_on(async move { drop(c) });
}
