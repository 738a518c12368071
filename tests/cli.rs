//! The `larder` command as an engine's operator uses it against a running consortium: reruns,
//! retries and refusals never destroy shares already handed out, and share files are
//! readable by their owner only.

mod common;

use common::net::spawn_cluster_with;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

const POOL: &str = "triple-z64";

fn larder_checkout(c: &common::net::Cluster, party: usize, id: &str, out: &Path) -> Command {
    let e = &c.prov.engines[party];
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_larder"));
    cmd.args(["checkout", "--pool", POOL, "--count", "1000", "--id", id])
        .arg("--url")
        .arg(&e.url)
        .arg("--ca")
        .arg(&c.prov.ca)
        .arg("--token-file")
        .arg(&e.token_file)
        .arg("--out")
        .arg(out);
    cmd
}

async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_checkout_keeps_the_first_runs_shares() {
    let c = spawn_cluster_with(600, &[POOL.parse().unwrap()]).await;
    c.deal(POOL, 5000).await;
    let out_dir = c.dir.path().join("engine");
    std::fs::create_dir(&out_dir).unwrap();
    let mut files = Vec::new();
    for p in 0..3 {
        let out = out_dir.join(format!("job-42-party{p}.shares"));
        // A file already there with a looser mode: replaced, and owner-only afterwards.
        std::fs::write(&out, b"stale").unwrap();
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).unwrap();
        let first = run(larder_checkout(&c, p, "job-42", &out)).await;
        assert!(
            first.status.success(),
            "{}",
            String::from_utf8_lossy(&first.stderr)
        );
        assert_eq!(mode(&out), 0o600);
        let bytes = std::fs::read(&out).unwrap();
        assert!(bytes.len() > 24_000, "{} bytes", bytes.len());

        // The same command again: the node refuses (consumed), the file stays as it was.
        let again = run(larder_checkout(&c, p, "job-42", &out)).await;
        assert!(!again.status.success());
        let err = String::from_utf8_lossy(&again.stderr);
        assert!(
            err.contains("already-consumed") || err.contains("410"),
            "{err}"
        );
        assert_eq!(
            std::fs::read(&out).unwrap(),
            bytes,
            "party {p}'s shares survive"
        );
        files.push(out);
    }
    // Nothing half-written is left behind, and what was kept reconstructs.
    assert_eq!(
        entries(&out_dir),
        [
            "job-42-party0.shares",
            "job-42-party1.shares",
            "job-42-party2.shares"
        ]
    );
    assert_eq!(larder::consortium::verify(&files).unwrap().items, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_mp_spdz_checkout_keeps_the_first_runs_files() {
    let c = spawn_cluster_with(600, &[POOL.parse().unwrap()]).await;
    c.deal(POOL, 5000).await;
    let pd = c.dir.path().join("Player-Data");
    let mut cmd = larder_checkout(&c, 0, "mpc-1", &pd);
    cmd.args(["--format", "mp-spdz"]);
    let first = run(cmd).await;
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let subdirs = entries(&pd);
    assert_eq!(subdirs.len(), 1, "{subdirs:?}");
    let dir = pd.join(&subdirs[0]);
    let before: Vec<_> = entries(&dir)
        .into_iter()
        .map(|n| {
            let bytes = std::fs::read(dir.join(&n)).unwrap();
            assert_eq!(mode(&dir.join(&n)), 0o600, "{n}");
            (n, bytes)
        })
        .collect();
    assert!(!before.is_empty());
    let mut cmd = larder_checkout(&c, 0, "mpc-1", &pd);
    cmd.args(["--format", "mp-spdz"]);
    assert!(!run(cmd).await.status.success());
    let after: Vec<_> = entries(&dir)
        .into_iter()
        .map(|n| {
            let bytes = std::fs::read(dir.join(&n)).unwrap();
            (n, bytes)
        })
        .collect();
    assert_eq!(before, after, "a refused rerun changes nothing");
}
