//! The dealer (`larder dealer`) against a consortium of real processes: a party that is down
//! for a while delays a deal instead of failing it; a party that stays down fails it with an
//! error naming the party; and a one-line summary is printed whether or not stdout is a
//! terminal.

mod common;

use common::procs::{Harness, Target, POOL};
use std::process::{Command, Output};
use std::time::Duration;

fn dealer(h: &Harness, count: u64) -> Command {
    let mut c = h.dealer_command(count);
    c.env("RUST_BACKTRACE", "0");
    c
}

async fn run(mut c: Command) -> Output {
    tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap()
}

/// Sets the consortium's staging deadline (the dealer reads it when it starts).
fn set_staging_deadline(h: &Harness, seconds: u64) {
    common::procs::set_staging_deadline(&h.prov.consortium, seconds);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_party_down_for_a_while_delays_a_deal_and_one_down_for_good_is_named() {
    let mut h = Harness::new("info");
    h.wait_healthy().await;

    // Down for about a second while the dealer stages: it waits, then completes.
    h.sigkill(Target::Node(2));
    let deal = tokio::spawn(run(dealer(&h, 5000)));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    h.start_node(2, None);
    let out = deal.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // Not a terminal here, and still a summary.
    assert!(
        stdout.contains("dealt 5000 items of triple-z64 in 3 batches"),
        "{stdout}"
    );
    assert!(
        stderr.contains("trying again"),
        "the retries are logged: {stderr}"
    );
    let stock = h.engines()[2].stock().await.unwrap();
    assert_eq!(stock.pools[&POOL.parse().unwrap()].available, 5000);

    // Down for good: the dealer gives up within the staging deadline and says which party.
    set_staging_deadline(&h, 4);
    h.sigkill(Target::Node(2));
    let out = run(dealer(&h, 1000)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let name = &h.prov.engines[2].url;
    assert!(
        stderr.contains("party 2 (")
            && stderr.contains("staging")
            && stderr.contains(name.trim_end_matches('/')),
        "the error names the party: {stderr}"
    );
    // Nothing of that batch became available anywhere.
    for p in 0..2 {
        let stock = h.engines()[p].stock().await.unwrap();
        assert_eq!(
            stock.pools[&POOL.parse().unwrap()].available,
            5000,
            "party {p}"
        );
    }
}

/// The correction-party rule is the same over HTTPS as on party stores (tests/dealer.rs):
/// the leader's count of the pool's batches, then one more per batch. Six deals of one batch
/// each give each of three parties two batches of explicit values (with the earlier rule, a
/// random start per deal, that came out so one time in eight).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correction_parties_rotate_across_batches_dealt_over_https() {
    let c = common::net::spawn_cluster_with(600, &[POOL.parse().unwrap()]).await;
    for _ in 0..6 {
        c.deal(POOL, 5000).await; // one batch; the rotation continues from the leader's count
    }
    let explicit_files: Vec<usize> = (0..3)
        .map(|p| {
            let dir = c.run.nodes[p]
                .as_ref()
                .unwrap()
                .state
                .store
                .dir()
                .join("batches");
            std::fs::read_dir(dir)
                .unwrap()
                .filter(|e| e.as_ref().unwrap().metadata().unwrap().len() > 5000 * 8)
                .count()
        })
        .collect();
    assert_eq!(explicit_files, vec![2, 2, 2]);
}
