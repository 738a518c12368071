//! The PRSS generator at real nodes (three `larder serve` processes, TLS): the first PRSS job
//! sets the keys up by itself; a rotation makes new items under new keys while the old ones
//! stay served; retiring an epoch destroys its keys and burns, at every party, every item made
//! under them that was not handed out (free items and a reservation not yet downloaded),
//! while what the newer epoch made still reconstructs.

mod common;

use common::procs::{Harness, POOL};
use larder::generate::prss::KeyFile;
use larder::node::config::NodeConfig;
use reqwest::Method;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

async fn wait_done(h: &Harness, id: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, j) = h
            .operator(Method::GET, &format!("/v1/jobs/{id}"), None)
            .await;
        assert_eq!(status, 200, "{j}");
        if j["state"] != "queued" && j["state"] != "running" {
            return j;
        }
        assert!(Instant::now() < deadline, "job {id} is not over: {j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn data_dirs(h: &Harness) -> Vec<std::path::PathBuf> {
    h.prov
        .nodes
        .iter()
        .map(|n| NodeConfig::load(n).unwrap().data_dir)
        .collect()
}

async fn status(h: &Harness) -> Value {
    let (code, s) = h.operator(Method::GET, "/v1/prss", None).await;
    assert_eq!(code, 200, "{s}");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prss_keys_are_set_up_rotated_and_retired_at_every_party() {
    let h = Harness::new("info");
    h.wait_healthy().await;
    let pool = POOL.parse().unwrap();
    let s = status(&h).await;
    assert_eq!(
        (&s["parties"], &s["threshold"], &s["keys_per_party"]),
        (&json!(3), &json!(1), &json!(2)),
        "{s}"
    );
    assert_eq!(s["current_epoch"], Value::Null, "{s}");
    assert_eq!(s["assumption"], "honest-majority", "{s}");

    // The first PRSS job sets epoch 1 up by itself: 5000 triples in batches of 2000.
    let id = h.create_job_of(POOL, "prss", 5000).await;
    let j = wait_done(&h, id).await;
    assert_eq!(
        (&j["state"], &j["made"]),
        (&json!("done"), &json!(5000)),
        "{j}"
    );
    assert_eq!(status(&h).await["current_epoch"], 1);
    for (p, d) in data_dirs(&h).iter().enumerate() {
        let mode = std::fs::metadata(KeyFile::path(d, 1))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "party {p}'s keys are its own");
    }

    // Rotation: fresh keys at every party; the next job uses them.
    let (code, e) = h.operator(Method::POST, "/v1/prss/epochs", None).await;
    assert_eq!(
        (code, &e["epoch"], &e["key_sets"]),
        (201, &json!(2), &json!(3)),
        "{e}"
    );
    // Epoch 1's keys are destroyed at every party (its batches carry their own chunk keys).
    for (p, d) in data_dirs(&h).iter().enumerate() {
        assert!(
            !KeyFile::path(d, 1).exists(),
            "party {p} kept superseded keys"
        );
        assert!(
            KeyFile::path(d, 2).exists(),
            "party {p} has no epoch 2 keys"
        );
    }
    let id = h.create_job_of(POOL, "prss", 3000).await;
    wait_done(&h, id).await;

    let engines = h.engines();
    for (p, e) in engines.iter().enumerate() {
        let s = e.stock().await.unwrap();
        assert_eq!(s.pools[&pool].available, 8000, "party {p}");
        assert_eq!(
            s.pools[&pool].by_generator.get("prss"),
            Some(&8000),
            "party {p}"
        );
    }
    // An engine reserves 1000 items (the oldest: epoch 1's) and has not downloaded them.
    engines[0].checkout("held", pool, 1000).await.unwrap();

    // Epoch 1's keys are suspected leaked: retired.
    let (code, r) = h.operator(Method::DELETE, "/v1/prss/epochs/1", None).await;
    assert_eq!(code, 200, "{r}");
    for p in 0..3 {
        let b = &r["by_party"][p];
        assert_eq!(
            (&b["items"], &b["reservations"]),
            (&json!(5000), &json!(1)),
            "party {p} burns every unserved item of epoch 1: {r}"
        );
    }
    for (p, d) in data_dirs(&h).iter().enumerate() {
        assert!(
            !KeyFile::path(d, 1).exists(),
            "party {p} still holds epoch 1's keys"
        );
        assert!(
            KeyFile::path(d, 2).exists(),
            "party {p} lost epoch 2's keys"
        );
    }
    let held = engines[0].download("held").await.unwrap_err();
    assert_eq!(
        (held.status(), held.code()),
        (Some(410), Some("checkout-burned")),
        "a reservation of a retired epoch is never handed out: {held}"
    );
    for (p, e) in engines.iter().enumerate() {
        let s = e.stock().await.unwrap();
        assert_eq!(
            s.pools[&pool].available, 3000,
            "party {p}: only epoch 2's remain"
        );
    }
    // What epoch 2 made is served and reconstructs.
    let mut files = Vec::new();
    for (p, e) in engines.iter().enumerate() {
        e.checkout("epoch-2", pool, 3000).await.unwrap();
        let f = h.dir.path().join(format!("epoch-2-{p}.shares"));
        std::fs::write(&f, e.download("epoch-2").await.unwrap()).unwrap();
        files.push(f);
    }
    assert_eq!(larder::consortium::verify(&files).unwrap().items, 3000);

    // Retiring again finds nothing; retiring the current epoch leaves none current, and the
    // next PRSS job sets up a new one (never a retired number).
    let (code, r) = h.operator(Method::DELETE, "/v1/prss/epochs/1", None).await;
    assert_eq!((code, &r["by_party"][1]["items"]), (200, &json!(0)), "{r}");
    let (code, _) = h.operator(Method::DELETE, "/v1/prss/epochs/2", None).await;
    assert_eq!(code, 200);
    let s = status(&h).await;
    assert_eq!(
        (&s["current_epoch"], &s["retired_epochs"]),
        (&Value::Null, &json!([1, 2])),
        "{s}"
    );
    let id = h.create_job_of(POOL, "prss", 1000).await;
    wait_done(&h, id).await;
    assert_eq!(status(&h).await["current_epoch"], 3);

    // Only operators manage keys; a bad epoch is a clear error.
    for bad in ["one", "0", "99", "4294967295", "4294967296"] {
        let (code, body) = h
            .operator(Method::DELETE, &format!("/v1/prss/epochs/{bad}"), None)
            .await;
        assert_eq!(
            (code, body["code"].as_str()),
            (400, Some("bad-request")),
            "{bad}: {body}"
        );
    }
    let url = format!("{}/v1/prss/epochs", h.prov.engines[0].url);
    let r = h
        .http
        .post(&url)
        .bearer_auth(h.prov.engines[0].token.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

/// A pool that takes dealer-free material only, with a stock policy and no generator named:
/// the leader's scheduler keeps it stocked with PRSS (HE cannot make Z_2^64 triples), and the
/// keys are set up by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_keeps_a_dealer_free_pool_stocked_with_prss() {
    use larder::material::Assumption::{DishonestMajority, HonestMajority};
    use larder::schedule::{Level, StockPolicy};
    let pool: larder::material::PoolSpec = POOL.parse().unwrap();
    let h = Harness::with_plan("info", |p| {
        p.pool_assumptions = [(pool, vec![DishonestMajority, HonestMajority])].into();
        p.stock = [(
            pool,
            StockPolicy {
                target: Level::Items(6000),
                refill_below: Level::Items(3000),
                floor: Level::Items(1000),
                generator: None,
                max_workers: None,
            },
        )]
        .into();
        p.schedule_interval_ms = 200;
    });
    h.wait_healthy().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let engines = h.engines();
    loop {
        let s = engines[0].stock().await.unwrap();
        let have = s.pools.get(&pool).map_or(0, |s| s.available);
        if have >= 6000 {
            assert_eq!(
                s.pools[&pool].by_generator.get("prss"),
                Some(&have),
                "{s:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "not stocked: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status(&h).await["current_epoch"], 1);
}

/// `larder prss` as an operator runs it: status, rotate, retire, and a clear refusal for a
/// token that is not the operators'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prss_command_shows_rotates_and_retires() {
    let h = Harness::new("info");
    h.wait_healthy().await;
    let run = |token: &std::path::Path, args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_larder"))
            .env("RUST_BACKTRACE", "0")
            .arg("prss")
            .arg("--consortium")
            .arg(&h.prov.consortium)
            .arg("--token-file")
            .arg(token)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let operator = h.prov.operator_token_file.clone();
    let (ok, out, err) = run(&operator, &[]);
    assert!(ok, "{err}");
    assert!(
        out.contains("secure while no 2 collude (honest-majority); 2 keys per party"),
        "{out}"
    );
    assert!(out.contains("current epoch: none yet"), "{out}");
    let (ok, out, err) = run(&operator, &["rotate"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("epoch 1 set up: 3 keys among 3 parties (t = 1)"),
        "{out}"
    );
    let (ok, out, err) = run(&operator, &["retire", "--epoch", "1"]);
    assert!(ok, "{err}");
    assert!(out.contains("epoch 1 retired"), "{out}");
    assert_eq!(out.matches("0 items burned").count(), 3, "{out}");
    let (ok, out, _) = run(&operator, &["status"]);
    assert!(ok && out.contains("retired epochs: 1"), "{out}");
    let (ok, _, err) = run(&h.prov.engines[0].token_file, &["rotate"]);
    assert!(!ok && err.contains("operators-only"), "{err}");
}
