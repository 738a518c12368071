//! A dealer process killed with SIGKILL at random moments leaves every store openable, with no
//! half batch visible: every batch available at the leader is complete and intact at every
//! party, nothing stays staged, and what is available reconstructs.

use larder::consortium::{verify, LocalConsortium};
use larder::material::{BatchHeader, PoolSpec};
use larder::store::BatchState;
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn larder(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_larder"));
    c.args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env("LARDER_THREADS", "2");
    c
}

/// Checks the invariants after a crash; returns the number of available batches.
fn check_invariants(root: &Path) -> usize {
    let c = LocalConsortium::open(root).expect("every store reopens after SIGKILL");
    let parties = c.config.parties();
    let available = |p: u8| -> BTreeSet<_> {
        c.store(p)
            .all_batches()
            .unwrap()
            .into_iter()
            .inspect(|m| {
                assert_ne!(
                    m.state,
                    BatchState::Staged,
                    "party {p}: a staged batch survived reconciliation"
                )
            })
            .filter(|m| m.state == BatchState::Available)
            .map(|m| m.id)
            .collect()
    };
    let leader = available(0);
    for p in 0..parties {
        assert_eq!(
            available(p),
            leader,
            "party {p} disagrees with the leader on available batches"
        );
        for id in &leader {
            let bytes = std::fs::read(c.store(p).dir().join("batches").join(format!("{id}.lb")))
                .expect("batch file present");
            let h = BatchHeader::verify_file(&bytes)
                .unwrap_or_else(|e| panic!("party {p} batch {id}: {e}"));
            assert_eq!((h.party, h.batch), (p, *id));
        }
    }
    let stock = c.stock().unwrap();
    assert!(
        stock.iter().all(|s| *s == stock[0]),
        "stock differs between parties"
    );
    leader.len()
}

#[test]
fn a_dealer_killed_mid_run_leaves_every_store_openable_with_no_half_batch_visible() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("c");
    let root_s = root.to_str().unwrap();
    let pools = ["triple-z64", "double-p128-t1"];
    let ok = larder(&[
        "init",
        "--dir",
        root_s,
        "--parties",
        "3",
        "--batch-size",
        "20000",
        "--pool",
        pools[0],
        "--pool",
        pools[1],
    ])
    .status()
    .unwrap();
    assert!(ok.success());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5eed);
    let mut seen = Vec::new();
    for round in 0..12 {
        let pool = pools[round % 2];
        let mut child = larder(&[
            "deal", "--dir", root_s, "--pool", pool, "--count", "50000000",
        ])
        .spawn()
        .unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(20..400)));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: the dealer finished before it was killed"
        );
        seen.push(check_invariants(&root));
    }
    assert!(
        seen.windows(2).any(|w| w[1] > w[0]),
        "some rounds committed batches: {seen:?}"
    );

    // What survived is usable: take from every pool at every party and reconstruct.
    let c = LocalConsortium::open(&root).unwrap();
    for id in pools {
        let pool: PoolSpec = id.parse().unwrap();
        let available = c.stock().unwrap()[0].get(&pool).map_or(0, |s| s.available);
        if available == 0 {
            continue;
        }
        let files = c
            .take(
                pool,
                available.min(100_000),
                &format!("after-{id}"),
                &dir.path().join(id),
            )
            .unwrap();
        assert_eq!(verify(&files).unwrap().items, available.min(100_000));
    }
}
