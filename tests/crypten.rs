//! CrypTen 0.4.1 on Larder: three CrypTen ranks, one per party, run a private inference
//! (`clients/python/examples/crypten_mlp.py`) with every triple, square, binary triple, wrap and
//! daBit taken from their own party's node through `larder_client.crypten`, CrypTen's trusted
//! first party never asked; the result is compared with plaintext, and a run with one party's
//! triples corrupted shows the comparison catches it. The provider's wait on an underrun is
//! tested against a pool that fills while it waits.
//!
//! CrypTen and torch (about 2.5 GB with torch's CUDA wheels) are installed once into a virtual
//! environment outside the clone (`$LARDER_CACHE_DIR`, else `~/.cache/larder`), named after the
//! hash of `clients/python/crypten-requirements.txt`, so later runs reuse it.

mod common;

use common::net::Cluster;
use larder::material::PoolSpec;
use larder::node::launch::InProcess;
use larder::node::provision::Plan;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn cache_dir() -> PathBuf {
    std::env::var_os("LARDER_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/larder")
        })
}

fn imports_crypten(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import crypten, torch, numpy"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn pip(python: &Path, args: &[&str]) {
    let out = Command::new(python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(args)
        .output()
        .expect("pip runs");
    assert!(
        out.status.success(),
        "pip install {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Python that imports CrypTen 0.4.1 and torch 2.0.1, installed on first use (once per test
/// process; test processes install side by side and rename into place).
fn crypten_python() -> PathBuf {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON.get_or_init(install_crypten).clone()
}

fn install_crypten() -> PathBuf {
    let requirements = repo().join("clients/python/crypten-requirements.txt");
    let pinned = std::fs::read(&requirements).unwrap();
    let venv = cache_dir().join(format!("crypten-venv-{:08x}", crc32fast::hash(&pinned)));
    let python = venv.join("bin/python3");
    if imports_crypten(&python) {
        return python;
    }
    // Built beside its final place and renamed in, so two tests never see half a venv.
    std::fs::create_dir_all(cache_dir()).unwrap();
    let building = cache_dir().join(format!("building-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&building)
        .status()
        .expect("python3 must be installed to test the CrypTen provider");
    assert!(made.success(), "python3 -m venv failed");
    let py = building.join("bin/python3");
    pip(&py, &["-r", requirements.to_str().unwrap()]);
    // CrypTen's metadata asks for the deprecated `sklearn` package, which no longer installs;
    // everything it really needs is in the requirements.
    pip(&py, &["--no-deps", "crypten==0.4.1"]);
    assert!(
        imports_crypten(&py),
        "crypten does not import after install"
    );
    if std::fs::rename(&building, &venv).is_err() {
        // Another test installed it first.
        let _ = std::fs::remove_dir_all(&building);
    }
    // A venv's scripts name their own path; the interpreter itself works from anywhere.
    assert!(
        imports_crypten(&python),
        "crypten venv at {}",
        venv.display()
    );
    python
}

fn python_src() -> String {
    repo().join("clients/python/src").display().to_string()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Three TLS nodes keeping the pools CrypTen burns, in large batches.
async fn consortium(pools: &[&str]) -> Cluster {
    let pools: Vec<PoolSpec> = pools.iter().map(|p| p.parse().unwrap()).collect();
    let dir = tempfile::tempdir().unwrap();
    let plan = Plan {
        batch_size: 1 << 16,
        ..Plan::local("crypten", 3, pools)
    };
    let run = InProcess::start(dir.path(), plan).await.unwrap();
    Cluster { dir, run }
}

/// Runs the example's three ranks; rank 0's report.
/// `flag` is one of the example's test flags (`--corrupt`, `--private-model`).
fn run_model(
    python: &Path,
    c: &Cluster,
    provider: &str,
    patients: u32,
    flag: Option<&str>,
) -> Value {
    let consortium = c.describe_for_python();
    let tag = flag.unwrap_or("plain").trim_start_matches('-');
    let rendezvous = c.dir.path().join(format!("rdv-{provider}-{tag}"));
    let report = c.dir.path().join(format!("report-{provider}-{tag}.json"));
    let ranks: Vec<_> = (0..3)
        .map(|rank| {
            let mut cmd = Command::new(python);
            cmd.arg(repo().join("clients/python/examples/crypten_mlp.py"))
                .args(["--rank", &rank.to_string(), "--provider", provider])
                .args(["--patients", &patients.to_string()])
                .arg("--consortium")
                .arg(&consortium)
                .arg("--rendezvous")
                .arg(format!("file://{}", rendezvous.display()))
                .arg("--out")
                .arg(&report)
                .env("PYTHONPATH", python_src())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            if let Some(flag) = flag {
                cmd.arg(flag);
            }
            cmd.spawn().expect("python runs")
        })
        .collect();
    let outputs: Vec<Output> = ranks
        .into_iter()
        .map(|r| r.wait_with_output().unwrap())
        .collect();
    for (rank, out) in outputs.iter().enumerate() {
        assert!(
            out.status.success(),
            "rank {rank} ({provider}) failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap()
}

const CRYPTEN_POOLS: [&str; 5] = [
    "triple-z64",
    "square-z64",
    "binary-triple-z64",
    "wrap-z64",
    "dabit-z64",
];

/// The matrix triples of the example's two layers for 200 patients, with private weights.
const MATRIX_POOLS: [&str; 2] = ["matrix-triple-z64-200x16x32", "matrix-triple-z64-200x32x1"];

#[test]
fn a_crypten_model_runs_on_larder_material_alone_and_matches_plaintext() {
    let python = crypten_python();
    let rt = runtime();
    let all: Vec<&str> = CRYPTEN_POOLS.iter().chain(&MATRIX_POOLS).copied().collect();
    let c = rt.block_on(consortium(&all));
    // Three runs of 200 patients (33 comparisons each) burn about 250 000 binary triples each
    // with the provider's growing blocks.
    for (pool, count) in [
        ("triple-z64", 100_000),
        ("square-z64", 60_000),
        ("binary-triple-z64", 1_000_000),
        ("wrap-z64", 100_000),
        ("dabit-z64", 100_000),
        (MATRIX_POOLS[0], 3),
        (MATRIX_POOLS[1], 3),
    ] {
        rt.block_on(c.deal(pool, count));
    }
    let patients = 200;
    let report = run_model(&python, &c, "larder", patients, None);
    eprintln!("larder: {report}");
    assert_eq!(report["patients"], patients);
    let err = report["max_abs_error"].as_f64().unwrap();
    assert!(err < 0.01, "private scores differ from plaintext by {err}");
    assert_eq!(
        report["same_decisions"], patients,
        "every decision matches plaintext"
    );
    assert_eq!(
        report["fallbacks"],
        serde_json::json!({}),
        "CrypTen's dealer was never asked"
    );
    // Every kind was taken from Larder, and every party consumed what rank 0 checked out.
    let items = report["larder_items"].as_object().unwrap();
    let stock = rt.block_on(async {
        let mut all = Vec::new();
        for p in 0..3 {
            all.push(c.engine(p).stock().await.unwrap());
        }
        all
    });
    for pool in CRYPTEN_POOLS {
        let used = items[pool]["used"].as_u64().unwrap();
        let out = items[pool]["checked_out"].as_u64().unwrap();
        assert!(used > 0 && used <= out, "{pool}: used {used} of {out}");
        let spec: PoolSpec = pool.parse().unwrap();
        for (p, s) in stock.iter().enumerate() {
            let s = &s.pools[&spec];
            assert_eq!(
                s.consumed, out,
                "{pool}: party {p} consumed exactly what was checked out"
            );
        }
    }

    // Negative control: rank 0's c shares off by 2^40 (2^24 in fixed point) and the check fails.
    let bad = run_model(&python, &c, "larder", patients, Some("--corrupt"));
    eprintln!("corrupted: {bad}");
    let bad_err = bad["max_abs_error"].as_f64().unwrap();
    assert!(
        bad_err > 0.01,
        "a corrupted triple share went unnoticed (error {bad_err})"
    );

    // CrypTen's own trusted first party, for the wall-time comparison in the report.
    // The model's owner encrypts the weights: both layers multiply two private matrices, each
    // with one matrix triple of its shape.
    let private = run_model(&python, &c, "larder", patients, Some("--private-model"));
    eprintln!("private model: {private}");
    let err = private["max_abs_error"].as_f64().unwrap();
    assert!(
        err < 0.01,
        "private model: scores differ from plaintext by {err}"
    );
    assert_eq!(private["same_decisions"], patients);
    assert_eq!(private["fallbacks"], serde_json::json!({}));
    for pool in MATRIX_POOLS {
        assert_eq!(
            private["larder_items"][pool]["used"], 1,
            "{pool}: {private}"
        );
    }

    let tfp = run_model(&python, &c, "tfp", patients, None);
    eprintln!("tfp: {tfp}");
    assert_eq!(tfp["same_decisions"], patients);
    eprintln!(
        "wall time for {patients} patients: larder {} s, CrypTen's trusted first party {} s",
        report["seconds"], tfp["seconds"]
    );
    rt.block_on(async move { drop(c) });
}

/// A provider for party 0 asking `pool` for `items`, waiting up to `max_wait` seconds.
fn provider_asks(
    python: &Path,
    c: &Cluster,
    pool_kind: &str,
    items: u32,
    max_wait: u32,
) -> std::process::Child {
    let e = &c.prov.engines[0];
    let script = format!(
        r#"
import json, sys
import larder_client, larder_client.crypten as lc
node = larder_client.Client({url:?}, ca_file={ca:?}, token_file={token:?}, keep_alive=True)
p = lc.LarderProvider(node, "underrun-{pool_kind}", block={items}, max_wait={max_wait})
r, x = p.{method}(({items},))
print(json.dumps({{"waited": p.waited, "shape": list(r.share.shape), "usage": p.usage()}}))
"#,
        url = e.url,
        ca = c.prov.ca.display().to_string(),
        token = e.token_file.display().to_string(),
        method = if pool_kind == "wrap" {
            "wrap_rng"
        } else {
            "B2A_rng"
        },
    );
    Command::new(python)
        .args(["-c", &script])
        .env("PYTHONPATH", python_src())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn the_provider_waits_for_stock_on_an_underrun_then_gives_up_clearly() {
    let python = crypten_python();
    let rt = runtime();
    let c = rt.block_on(consortium(&["wrap-z64", "dabit-z64"]));

    // The pool is empty: the provider says it waits; once stock arrives it goes on.
    let mut waiting = provider_asks(&python, &c, "wrap", 3000, 120);
    let mut stderr = BufReader::new(waiting.stderr.take().unwrap());
    let mut said = String::new();
    loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "the provider exited without waiting:\n{said}"
        );
        said.push_str(&line);
        if line.contains("wrap-z64 is short") {
            break;
        }
    }
    rt.block_on(c.deal("wrap-z64", 5000));
    let out = waiting.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the provider failed after the pool filled"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["waited"].as_f64().unwrap() > 0.0, "{report}");
    assert_eq!(report["shape"], serde_json::json!([3000]));

    // A pool that stays empty: a clear error naming the pool and what is missing.
    let out = provider_asks(&python, &c, "dabit", 3000, 2)
        .wait_with_output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("LarderProviderError")
            && text.contains("dabit-z64")
            && text.contains("stayed short for 2 s: 0 items available, 3000 needed"),
        "unclear underrun error:\n{text}"
    );
    rt.block_on(async move { drop(c) });
}

/// Convolution triples as CrypTen receives them: one provider per party (as each rank has),
/// the shares of X, W and Y summed across the three, and Y checked against torch's own int64
/// conv2d (wrapping modulo 2^64) of X and W, for two geometries. A share off by one shows.
#[test]
fn convolution_triples_from_the_provider_match_torchs_conv2d() {
    let python = crypten_python();
    let rt = runtime();
    let pools = [
        "conv-triple-z64-2x3x6x6-4x3x3-s1x1-p1x1",
        "conv-triple-z64-1x2x7x7-3x3x3-s2x2-p0x0",
    ];
    let c = rt.block_on(consortium(&pools));
    for pool in pools {
        rt.block_on(c.deal(pool, 4));
    }
    let parties: Vec<Value> = c
        .prov
        .engines
        .iter()
        .map(|e| serde_json::json!([e.url, e.token_file]))
        .collect();
    let script = format!(
        r#"
import json, torch
import larder_client, larder_client.crypten as lc
ca, parties = {ca:?}, json.loads({parties:?})
providers = [lc.LarderProvider(larder_client.Client(u, ca_file=ca, token_file=t, keep_alive=True), "conv-run")
             for u, t in parties]
report = []
for (x, w, stride, padding) in [((2, 3, 6, 6), (4, 3, 3, 3), 1, 1), ((1, 2, 7, 7), (3, 2, 3, 3), 2, 0)]:
    for _ in range(2):
        triples = [p.generate_additive_triple(x, w, "conv2d", stride=stride, padding=padding) for p in providers]
        X, W, Y = (sum(t[i].share for t in triples) for i in range(3))
        want = torch.conv2d(X, W, stride=stride, padding=padding)
        bad = Y.clone(); bad.view(-1)[5] += 1
        report.append({{"shape": list(Y.shape), "equal": bool(torch.equal(want, Y)),
                        "control_caught": not torch.equal(want, bad),
                        "x_varies": int(X.unique().numel())}})
print(json.dumps({{"checks": report, "fallbacks": [p.fallbacks for p in providers],
                   "usage": providers[0].usage()}}))
"#,
        ca = c.prov.ca.display().to_string(),
        parties = serde_json::to_string(&parties).unwrap(),
    );
    let out = Command::new(&python)
        .args(["-c", &script])
        .env("PYTHONPATH", python_src())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("{report}");
    let checks = report["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 4);
    for check in checks {
        assert_eq!(check["equal"], true, "{report}");
        assert_eq!(check["control_caught"], true, "{report}");
        assert!(check["x_varies"].as_u64().unwrap() > 10, "{report}");
    }
    assert_eq!(checks[0]["shape"], serde_json::json!([2, 4, 6, 6]));
    assert_eq!(checks[2]["shape"], serde_json::json!([1, 3, 3, 3]));
    assert_eq!(report["fallbacks"], serde_json::json!([{}, {}, {}]));
    for pool in pools {
        assert_eq!(report["usage"][pool]["used"], 2, "{report}");
    }
    rt.block_on(async move { drop(c) });
}
