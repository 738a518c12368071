//! Generation jobs and dealer workers, as real processes: three workers pulling one job commit
//! every batch once and the job's count exactly; a worker killed mid-piece and a leader killed
//! between a commit and its count lose and double nothing; only operators manage jobs.
//!
//! The evidence is the leader's audit log, read offline at the end: one `job-piece` record per
//! batch committed for a job, and every such batch committed (available or used up) at every
//! party.

mod common;

use common::procs::{Harness, Target, HE_POOL, LEADER, MASKS, POOL};
use reqwest::Method;
use serde_json::{json, Value};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

async fn job(h: &Harness, id: u64) -> Value {
    let (status, job) = h
        .operator(Method::GET, &format!("/v1/jobs/{id}"), None)
        .await;
    assert_eq!(status, 200, "{job}");
    job
}

/// Waits until job `id` is over, or fails after `secs`.
async fn wait_done(h: &Harness, id: u64, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let j = job(h, id).await;
        if j["state"] != "queued" && j["state"] != "running" {
            return j;
        }
        assert!(Instant::now() < deadline, "job {id} is not over: {j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_pulling_one_job_commit_every_batch_once_and_the_count_exactly() {
    let mut h = Harness::with_staging_deadline("info", Some(20));
    h.wait_healthy().await;
    // 25 full batches of 2000 and one of 1.
    let count = 50_001;
    let id = h.create_job(count).await;
    let workers: Vec<_> = (0..3)
        .map(|w| {
            let mut c = h.worker_command(&format!("w{w}"));
            c.stdout(Stdio::piped())
                .stderr(h.log(&format!("worker-{w}")));
            c.spawn().unwrap()
        })
        .collect();
    let mut total = 0u64;
    for w in workers {
        let out = tokio::task::spawn_blocking(move || w.wait_with_output().unwrap())
            .await
            .unwrap();
        assert!(out.status.success(), "a worker failed: {:?}", out.status);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        // "worker w0: 18000 items committed"
        let n: u64 = text
            .split_whitespace()
            .nth(2)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no summary: {text:?}"));
        total += n;
    }
    assert_eq!(total, count, "the workers' own counts add up to the job");
    let j = wait_done(&h, id, 30).await;
    assert_eq!(j["state"], "done", "{j}");
    assert_eq!(j["made"], count, "{j}");
    assert_eq!(j["leases"], json!([]), "{j}");
    // Every party holds exactly the job's items, and they reconstruct.
    let engines = h.engines();
    for e in &engines {
        let s = e.stock().await.unwrap();
        assert_eq!(s.pools[&POOL.parse().unwrap()].available, count, "{s:?}");
    }
    let pool = POOL.parse().unwrap();
    let mut files = Vec::new();
    for (p, e) in engines.iter().enumerate() {
        e.checkout("all-of-the-job", pool, count).await.unwrap();
        let f = h.dir.path().join(format!("job-{p}.shares"));
        std::fs::write(&f, e.download("all-of-the-job").await.unwrap()).unwrap();
        files.push(f);
    }
    assert_eq!(larder::consortium::verify(&files).unwrap().items, count);
    let (made, revoked) = h.job_evidence();
    assert_eq!(made.get(&id), Some(&count), "the audit log's pieces add up");
    assert!(revoked.is_empty(), "no piece was taken back: {revoked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_piece_loses_nothing_and_its_piece_is_made_again() {
    let mut h = Harness::with_staging_deadline("info", Some(3));
    h.wait_healthy().await;
    let count = 10_000;
    let id = h.create_job(count).await;
    // Killed once its first share is staged at a second party.
    h.start_worker("doomed", Some("dealer.staged:2"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = h.ended(Target::Dealer) {
            break s;
        }
        assert!(Instant::now() < deadline, "the worker was not killed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.signal(), Some(9), "{status}");
    let j = job(&h, id).await;
    assert_eq!(j["leases"].as_array().unwrap().len(), 1, "{j}");
    let lost = j["leases"][0]["batch"].as_str().unwrap().to_string();
    // Another worker makes the rest, then the lost piece once the leader takes it back.
    h.start_worker("survivor", None);
    let j = wait_done(&h, id, 60).await;
    assert_eq!(j["state"], "done", "{j}");
    assert_eq!(j["made"], count, "{j}");
    assert!(
        j["revoked"].as_array().unwrap().iter().any(|b| b == &lost),
        "{j}"
    );
    // The dead worker's batch is never committed, whoever asks.
    let (status, body) = h
        .as_dealer(
            Method::POST,
            LEADER,
            &format!("/v1/internal/batches/{lost}/commit"),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(body["code"], "piece-revoked", "{body}");
    // Its staged copies are swept everywhere (staging deadline 3 s, sweeps every 200 ms).
    let engines = h.engines();
    let deadline = Instant::now() + Duration::from_secs(20);
    for e in &engines {
        loop {
            let s = e.stock().await.unwrap().pools[&POOL.parse().unwrap()].clone();
            assert_eq!(s.available, count, "{s:?}");
            if s.staged == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "staged copies left: {s:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (made, revoked) = h.job_evidence();
    assert_eq!(made.get(&id), Some(&count));
    assert!(revoked.contains(&lost.parse().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_between_a_commit_and_its_count_counts_the_piece_once() {
    let mut h = Harness::with_staging_deadline("info", Some(20));
    h.wait_healthy().await;
    // The leader dies right after activating the job's second batch, before counting it.
    h.sigkill(Target::Node(LEADER));
    h.start_node(LEADER, Some("job.committed:2"));
    h.wait_healthy().await;
    let count = 6_000;
    let id = h.create_job(count).await;
    h.start_worker("steady", None);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = h.ended(Target::Node(LEADER)) {
            assert_eq!(s.signal(), Some(9), "{s}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the leader did not reach its crash point"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.start_node(LEADER, None);
    h.wait_healthy().await;
    let j = wait_done(&h, id, 60).await;
    assert_eq!(j["state"], "done", "{j}");
    assert_eq!(j["made"], count, "{j}");
    for e in h.engines() {
        let s = e.stock().await.unwrap();
        assert_eq!(s.pools[&POOL.parse().unwrap()].available, count, "{s:?}");
    }
    let (made, _) = h.job_evidence();
    assert_eq!(made.get(&id), Some(&count));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_operators_manage_jobs_and_bad_requests_change_nothing() {
    let h = Harness::new("info");
    h.wait_healthy().await;
    let leader = &h.prov.engines[LEADER as usize].url;
    let follower = &h.prov.engines[1].url;
    let call = |url: String, token: String, method: Method, body: Option<Value>| {
        let http = h.http.clone();
        async move {
            let mut r = http.request(method, url).bearer_auth(token);
            if let Some(b) = body {
                r = r.json(&b);
            }
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let good = json!({"pool": POOL, "count": 10});
    let engine = h.prov.engines[0].token.expose().to_string();
    let operator = h.prov.operator_token.expose().to_string();
    let piece = json!({"worker": "me"});
    let refused = [
        // (node, caller, method, path, body, status, code)
        (
            leader,
            &engine,
            Method::POST,
            "/v1/jobs",
            Some(good.clone()),
            403,
            "operators-only",
        ),
        (
            leader,
            &h.dealer_token,
            Method::GET,
            "/v1/jobs",
            None,
            403,
            "operators-only",
        ),
        (
            follower,
            &operator,
            Method::GET,
            "/v1/jobs",
            None,
            421,
            "not-leader",
        ),
        // An operator cannot take pieces: that is the dealer's.
        (
            leader,
            &operator,
            Method::POST,
            "/v1/internal/jobs/next",
            Some(piece.clone()),
            403,
            "dealer-only",
        ),
        (
            follower,
            &h.dealer_token,
            Method::POST,
            "/v1/internal/jobs/next",
            Some(piece),
            421,
            "not-leader",
        ),
    ];
    for (node, who, method, path, body, status, code) in refused {
        let (s, b) = call(format!("{node}{path}"), who.clone(), method, body).await;
        assert_eq!((s, b["code"].as_str()), (status, Some(code)), "{path}: {b}");
    }
    for bad in [
        json!({"pool": POOL, "count": 0}),
        json!({"pool": "triple-p128", "count": 10}),
        json!({"pool": POOL, "count": 10, "generator": "oracle"}),
        json!({"pool": POOL, "count": 10, "extra": 1}),
    ] {
        let (s, b) = call(
            format!("{leader}/v1/jobs"),
            operator.clone(),
            Method::POST,
            Some(bad.clone()),
        )
        .await;
        assert!(s == 400 || s == 404, "{bad}: {s} {b}");
    }
    let (s, b) = h.operator(Method::GET, "/v1/jobs", None).await;
    assert_eq!((s, b), (200, json!([])), "bad requests made no job");
    let (s, b) = h.operator(Method::GET, "/v1/jobs/77", None).await;
    assert_eq!((s, b["code"].as_str()), (404, Some("unknown-job")), "{b}");
    // Cancelled before any worker came: nothing made, and it stays cancelled.
    let id = h.create_job(10).await;
    let (s, b) = h
        .operator(Method::DELETE, &format!("/v1/jobs/{id}"), None)
        .await;
    assert_eq!((s, &b["state"]), (200, &json!("cancelled")), "{b}");
    let (s, b) = h
        .operator(Method::DELETE, &format!("/v1/jobs/{id}"), None)
        .await;
    assert_eq!((s, b["code"].as_str()), (409, Some("job-over")), "{b}");
    // A worker finds nothing to do and stops.
    let out = tokio::task::spawn_blocking({
        let mut c = h.worker_command("idle");
        move || c.output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 items committed"));
    // `larder jobs list` shows the job to the operator.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_larder"))
        .args(["jobs", "--consortium"])
        .arg(&h.prov.consortium)
        .arg("--token-file")
        .arg(&h.prov.operator_token_file)
        .arg("list")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("cancelled") && text.contains(POOL), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_the_nodes_make_themselves_needs_no_dealer_and_reconstructs() {
    let mut h = Harness::new("info");
    h.wait_healthy().await;
    // The dealer's own generator only: refused for the parties' generator.
    let (status, body) = h
        .operator(
            Method::POST,
            "/v1/jobs",
            Some(json!({"pool": POOL, "count": 10, "generator": "parties"})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("bad-request")),
        "{body}"
    );
    // 5001 input masks in batches of 2000, made by the three nodes with no worker and no
    // dealer: each party's own shares, summed at the owner (party 1).
    let count = 5001;
    let (status, job) = h
        .operator(
            Method::POST,
            "/v1/jobs",
            Some(json!({"pool": MASKS, "count": count, "generator": "parties"})),
        )
        .await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_u64().unwrap();
    let j = wait_done(&h, id, 60).await;
    assert_eq!(
        (&j["state"], &j["made"]),
        (&json!("done"), &json!(count)),
        "{j}"
    );
    // Every node made its share on its generation threads, niced (the default 10).
    for p in 0..3 {
        let niced = generation_thread_nices(h.nodes.pid(p).unwrap());
        assert!(!niced.is_empty(), "party {p} has no generation threads");
        assert!(niced.iter().all(|n| *n == 10), "party {p}: {niced:?}");
    }
    let engines = h.engines();
    let pool = MASKS.parse().unwrap();
    let mut files = Vec::new();
    for (p, e) in engines.iter().enumerate() {
        let s = e.stock().await.unwrap();
        assert_eq!(s.pools[&pool].available, count, "party {p}: {s:?}");
    }
    for (p, e) in engines.iter().enumerate() {
        e.checkout("masks", pool, count).await.unwrap();
        let f = h.dir.path().join(format!("masks-{p}.shares"));
        std::fs::write(&f, e.download("masks").await.unwrap()).unwrap();
        files.push(f);
    }
    assert_eq!(larder::consortium::verify(&files).unwrap().items, count);
    let (made, revoked) = h.job_evidence();
    assert_eq!(made.get(&id), Some(&count));
    assert!(revoked.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_he_job_needs_no_dealer_survives_a_killed_party_and_its_pool_refuses_a_dealer() {
    let mut h = Harness::new("info");
    h.wait_healthy().await;
    let pool: larder::material::PoolSpec = HE_POOL.parse().unwrap();
    // The consortium made the pool HE-only: a dealer's job is refused at creation...
    let (status, body) = h
        .operator(
            Method::POST,
            "/v1/jobs",
            Some(json!({"pool": HE_POOL, "count": 10, "generator": "dealer"})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("generator-refused")),
        "{body}"
    );
    // ... and a one-shot dealer's batch at staging, at every party, leaving nothing.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_larder"))
        .args(["dealer", "--consortium"])
        .arg(&h.prov.consortium)
        .arg("--token-file")
        .arg(&h.prov.dealer_token_file)
        .args(["--pool", HE_POOL, "--count", "100"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("generator-refused") || err.contains("he only"),
        "{err}"
    );
    let engines = h.engines();
    for e in &engines {
        let s = e.stock().await.unwrap();
        let st = s.pools.get(&pool).cloned().unwrap_or_default();
        assert_eq!((st.available, st.staged), (0, 0), "{s:?}");
    }

    // 9000 HE triples in batches of 2000, made by the three nodes; party 2 is killed once the
    // job is under way and comes back: its piece is given up everywhere and made again.
    let count = 30_000;
    let id = h.create_job_of(HE_POOL, "he", count).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let made = loop {
        let made = job(&h, id).await["made"].as_u64().unwrap();
        if made > 0 {
            break made;
        }
        assert!(Instant::now() < deadline, "the HE job made nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        made < count,
        "the job must still be running when party 2 is killed"
    );
    h.sigkill(Target::Node(2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.start_node(2, None);
    h.wait_healthy().await;
    let j = wait_done(&h, id, 120).await;
    assert_eq!(
        (&j["state"], &j["made"]),
        (&json!("done"), &json!(count)),
        "{j}"
    );
    let mut files = Vec::new();
    for (p, e) in engines.iter().enumerate() {
        let s = e.stock().await.unwrap();
        assert_eq!(s.pools[&pool].available, count, "party {p}: {s:?}");
        assert_eq!(
            s.pools[&pool].by_generator.get("he"),
            Some(&count),
            "party {p}: the stock says who made it"
        );
    }
    for (p, e) in engines.iter().enumerate() {
        e.checkout("he", pool, count).await.unwrap();
        let f = h.dir.path().join(format!("he-{p}.shares"));
        std::fs::write(&f, e.download("he").await.unwrap()).unwrap();
        files.push(f);
    }
    // Reconstructs every triple: c = a b in the field of p60.
    assert_eq!(larder::consortium::verify(&files).unwrap().items, count);
    // Exactly the count committed, each batch at every party (checked in job_evidence).
    let (made, _) = h.job_evidence();
    assert_eq!(made.get(&id), Some(&count));
    // The kill cut a piece short: the leader gave it up and made it again.
    let log = std::fs::read_to_string(h.dir.path().join("node-0.log")).unwrap();
    assert!(log.contains("piece failed; taken back"), "no piece failed");
}

/// The nice values of a process's generation threads (`larder-generate-N`).
fn generation_thread_nices(pid: u32) -> Vec<i64> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("larder-generat") {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap();
        // Fields after the command's closing parenthesis start at field 3; nice is field 19.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        out.push(rest.split(' ').nth(16).unwrap().parse().unwrap());
    }
    out
}
