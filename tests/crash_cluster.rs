//! The crash harness: a three-node consortium and the dealer as real processes, concurrent
//! engines checking out and downloading, and processes killed with SIGKILL, either at a
//! protocol step (a crash point, `LARDER_CRASH_AT`, see `src/failpoint.rs`) or at a random
//! moment, then restarted. After every round, over everything ever downloaded:
//!
//! - no item was delivered twice at any party;
//! - every checkout downloaded at all parties holds the same items everywhere and reconstructs;
//! - every batch anything was served from is committed (available or exhausted) at every party;
//! - every node restarts on its store (and at the end every store reopens offline);
//! - every generation job (about half the rounds refill by a job made by a dealer worker, which
//!   may be the one killed) ends done, its pieces in the leader's audit log adding up to
//!   exactly its count, no batch counted twice, each committed at every party.
//!
//! The plan of kills comes from a seed, so a failing round can be replayed:
//! `LARDER_CRASH_SEED=<seed> LARDER_CRASH_ROUNDS=<n> cargo test --release --test
//! crash_cluster -- --nocapture`. CI runs a short run; the long one (200 rounds) is the
//! documented command in `docs/testing.md`.

mod common;

use common::procs::{Harness, Target, HE_POOL, LEADER, POOL};

/// Triples PRSS makes with an opening to a king (three parties, a prime field).
const PRSS_POOL: &str = "triple-p61";
use larder::client::{ClientError, EngineClient};
use larder::consortium::verify;
use larder::failpoint::POINTS;
use larder::material::{BatchId, ShareReader};
use larder::node::config::NodeConfig;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn target_of(point: &str, rng: &mut impl Rng) -> Target {
    let follower = |rng: &mut dyn rand::RngCore| Target::Node(1 + (rng.next_u32() % 2) as u8);
    match point.split('.').next().unwrap() {
        "dealer" => Target::Dealer,
        "stage" | "download" => Target::Node(rng.random_range(0..3)),
        "commit" | "checkout" => Target::Node(LEADER),
        "activate" | "apply" | "confirm" => follower(rng),
        "expire" if point == "expire.follower" => follower(rng),
        "expire" => Target::Node(LEADER),
        "job" => Target::Node(LEADER),
        "he" | "prss" => Target::Node(rng.random_range(0..3)),
        other => panic!("unplaced crash point {other}"),
    }
}

/// What one engine at one party got.
#[derive(Default)]
struct Downloads {
    /// (checkout, party) -> the share stream.
    streams: HashMap<(String, u8), Vec<u8>>,
    /// Downloads cut short or refused after consuming (lost material, allowed).
    lost: u64,
}

fn retryable(e: &ClientError) -> bool {
    match e {
        ClientError::Transport { .. } => true,
        // Underrun too: the dealer refills as the round goes on.
        ClientError::Api {
            status, problem, ..
        } => *status == 503 || problem.code == "not-confirmed" || problem.code == "not-leader",
        ClientError::Other(_) => false,
    }
}

/// One checkout: every party's engine asks under the same id, then the engines in
/// `download_at` download. Retries what a crash makes fail until `deadline`.
async fn job(
    engines: Arc<Vec<EngineClient>>,
    id: String,
    count: u64,
    download_at: Vec<u8>,
    out: Arc<Mutex<Downloads>>,
    deadline: Instant,
) {
    let tasks = (0..3u8).map(|p| {
        let (engines, id, out) = (engines.clone(), id.clone(), out.clone());
        let download = download_at.contains(&p);
        async move {
            let e = &engines[p as usize];
            let pool = POOL.parse().unwrap();
            loop {
                match e.checkout(&id, pool, count).await {
                    Ok(_) => break,
                    Err(err) if retryable(&err) && Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    Err(err) => {
                        let code = err.code().unwrap_or("");
                        assert!(
                            // Expired while a crash held it up: the id cannot be served.
                            matches!(
                                code,
                                "underrun"
                                    | "already-consumed"
                                    | "checkout-released"
                                    | "checkout-burned"
                                    | ""
                            ) || retryable(&err),
                            "checkout {id} at party {p}: {err}"
                        );
                        return;
                    }
                }
            }
            if !download {
                return;
            }
            loop {
                match e.download(&id).await {
                    Ok(bytes) => {
                        if ShareReader::new(&bytes[..]).is_ok() && complete(&bytes) {
                            out.lock().unwrap().streams.insert((id.clone(), p), bytes);
                        } else {
                            out.lock().unwrap().lost += 1;
                        }
                        return;
                    }
                    Err(err) if retryable(&err) && Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    Err(err) => {
                        // Consumed by a download a crash cut short, or expired meanwhile:
                        // material lost, never reused.
                        let code = err.code().unwrap_or("").to_string();
                        assert!(
                            matches!(
                                code.as_str(),
                                "already-consumed"
                                    | "checkout-released"
                                    | "checkout-burned"
                                    | "unknown-checkout"
                                    | ""
                            ) || retryable(&err),
                            "download {id} at party {p}: {err}"
                        );
                        out.lock().unwrap().lost += 1;
                        return;
                    }
                }
            }
        }
    });
    futures_util::future::join_all(tasks).await;
}

/// Whether a share stream is whole (a crash mid-stream ends the body early).
fn complete(bytes: &[u8]) -> bool {
    let mut r = match ShareReader::new(bytes) {
        Ok(r) => r,
        Err(_) => return false,
    };
    loop {
        match r.next_records(1 << 16) {
            Ok(Some(_)) => {}
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

#[derive(Default)]
struct Report {
    rounds: u64,
    kills: BTreeMap<String, u64>,
    planned_not_reached: u64,
    checkouts: u64,
    items_downloaded: u64,
    downloads: u64,
    lost_downloads: u64,
    complete_checkouts: u64,
    duplicates: u64,
    mismatches: u64,
    jobs: u64,
    pieces_revoked: u64,
}

#[test]
fn nothing_is_handed_out_twice_or_mismatched_whatever_is_killed() {
    let rounds = env_u64("LARDER_CRASH_ROUNDS", 30);
    let seed = env_u64("LARDER_CRASH_SEED", 0x1a2de2);
    eprintln!("crash harness: {rounds} rounds, seed {seed}");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Staging deadline 6 s: a killed dealer worker's piece is taken back and made again
    // within the run.
    let mut h = Harness::with_plan("warn", |p| {
        p.staging_deadline_seconds = 6;
        p.pools.push(PRSS_POOL.parse().unwrap());
    });
    rt.block_on(h.wait_healthy());
    // Opening stock.
    h.start_dealer(20_000, None);
    let status = h.dealer.take().unwrap().wait().unwrap();
    assert!(status.success(), "the opening deal failed");
    let engines = Arc::new(h.engines());
    // Every item ever downloaded, per party.
    let mut delivered: Vec<HashSet<(BatchId, u64)>> = vec![HashSet::new(); 3];
    let mut served_batches: HashSet<BatchId> = HashSet::new();
    let mut report = Report::default();
    // Every job created: id -> items asked for.
    let mut jobs_made: BTreeMap<u64, u64> = BTreeMap::new();

    for round in 0..rounds {
        // The plan: a crash point in some process, or a random SIGKILL.
        let planned = rng.random_bool(0.75);
        let (victim, point) = if planned {
            let (point, _) = POINTS[rng.random_range(0..POINTS.len())];
            (target_of(point, &mut rng), Some(point))
        } else {
            let t = match rng.random_range(0..4u8) {
                3 => Target::Dealer,
                p => Target::Node(p),
            };
            (t, None)
        };
        let crash_at = point.map(|p| format!("{p}:{}", rng.random_range(1..=3u32)));
        if let (Target::Node(p), Some(at)) = (victim, &crash_at) {
            // Restart the node with its crash plan (a clean stop: SIGTERM).
            if let Some(c) = h.nodes.children[p as usize].take() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(c.id() as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
                let mut c = c;
                let _ = c.wait();
            }
            h.start_node(p, Some(at));
            rt.block_on(h.wait_healthy());
        }
        let dealer_plan = if victim == Target::Dealer {
            crash_at.as_deref()
        } else {
            None
        };
        // The round's stock comes from the one-shot dealer or from a job made by a dealer
        // worker (always for the jobs' own crash points).
        // The HE generator's points: the nodes make a job of HE triples meanwhile.
        if point.is_some_and(|p| p.starts_with("he.")) {
            let id = rt.block_on(h.create_job_of(HE_POOL, "he", 6000));
            jobs_made.insert(id, 6000u64);
        }
        if point.is_some_and(|p| p.starts_with("job.")) || rng.random_bool(0.5) {
            let id = rt.block_on(h.create_job(6000));
            jobs_made.insert(id, 6000u64);
            h.start_worker(&format!("round-{round}"), dealer_plan);
        } else {
            h.start_dealer(6000, dealer_plan);
        }
        // PRSS's points: the nodes make triples of the engines' pool (no traffic) and of a
        // prime field (an opening to a king) meanwhile, and set up fresh keys.
        if point.is_some_and(|p| p.starts_with("prss.")) {
            // The first job may bring the leader down at once (its point), so the second
            // creation may find no leader: created jobs whose answer was lost are found at the
            // end, when the leader lists every job.
            let leader = &h.prov.engines[LEADER as usize].url;
            for pool in [POOL, PRSS_POOL] {
                let create = h
                    .http
                    .post(format!("{leader}/v1/jobs"))
                    .bearer_auth(h.prov.operator_token.expose())
                    .json(&serde_json::json!({"pool": pool, "count": 3000, "generator": "prss"}));
                let made = rt.block_on(async {
                    create
                        .send()
                        .await
                        .ok()?
                        .json::<serde_json::Value>()
                        .await
                        .ok()
                });
                if let Some(id) = made.and_then(|j| j["id"].as_u64()) {
                    jobs_made.insert(id, 3000u64);
                }
            }
            // Three rotations, so that the n-th key setup (n up to 3) is reached. A party
            // killed during one fails it (the old epoch stays current).
            for _ in 0..3 {
                let rotate = h
                    .http
                    .post(format!("{leader}/v1/prss/epochs"))
                    .bearer_auth(h.prov.operator_token.expose());
                let _ = rt.block_on(async { rotate.send().await });
            }
        }

        // The engines' work for this round.
        let out = Arc::new(Mutex::new(Downloads::default()));
        let deadline = Instant::now() + Duration::from_secs(8);
        let n_jobs = rng.random_range(4..10);
        let mut ids = Vec::new();
        let jobs: Vec<_> = (0..n_jobs)
            .map(|k| {
                let id = format!("r{round}-j{k}");
                ids.push(id.clone());
                let count = rng.random_range(50..900);
                // Most are downloaded everywhere; some only in part or nowhere (expiry).
                let download_at: Vec<u8> = match rng.random_range(0..10) {
                    0 => vec![],
                    1 => vec![rng.random_range(0..3)],
                    _ => vec![0, 1, 2],
                };
                rt.spawn(job(
                    engines.clone(),
                    id,
                    count,
                    download_at,
                    out.clone(),
                    deadline,
                ))
            })
            .collect();
        report.checkouts += n_jobs;

        // Watch the victim; a random kill comes after a random delay.
        // The dealer deals a round's stock in about 100 ms: kill it within that.
        let kill_after = Duration::from_millis(match victim {
            Target::Dealer => rng.random_range(0..120),
            Target::Node(_) => rng.random_range(0..700),
        });
        let started = Instant::now();
        let mut killed = false;
        // Planned points not reached by then (expiry needs the TTL to pass) are given up.
        let give_up = Duration::from_millis(3000);
        let mut settled = false; // the victim was killed, or will not be this round
        loop {
            h.assert_nodes_alive(Some(victim));
            if !settled {
                if let Some(point) = point {
                    if let Some(status) = h.ended(victim) {
                        settled = true;
                        if status.signal() == Some(9) {
                            *report.kills.entry(point.to_string()).or_default() += 1;
                            killed = true;
                        } else {
                            // Only the dealer ends by itself (it dealt everything).
                            assert_eq!(victim, Target::Dealer, "{victim:?} ended with {status}");
                        }
                    }
                } else if started.elapsed() >= kill_after {
                    settled = true;
                    if h.sigkill(victim) {
                        let what = match victim {
                            Target::Node(p) if p == LEADER => "random: leader",
                            Target::Node(_) => "random: follower",
                            Target::Dealer => "random: dealer",
                        };
                        *report.kills.entry(what.to_string()).or_default() += 1;
                        killed = true;
                    }
                }
                if killed {
                    // Down for a moment, then back on the same store.
                    std::thread::sleep(Duration::from_millis(rng.random_range(50..400)));
                    if let Target::Node(p) = victim {
                        h.start_node(p, None);
                    }
                }
            }
            if jobs.iter().all(|j| j.is_finished()) && (settled || started.elapsed() > give_up) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for j in jobs {
            rt.block_on(j).unwrap();
        }
        if !killed {
            // The plan did not fire this round (the point was not reached, or the dealer had
            // finished): restart the victim without a plan.
            report.planned_not_reached += 1;
            if let Target::Node(p) = victim {
                h.sigkill(victim);
                h.start_node(p, None);
            }
        }
        if let Some(mut d) = h.dealer.take() {
            // The dealer has had its chance; stop it (a kill mid-deal is covered anyway).
            let _ = d.kill();
            let _ = d.wait();
        }
        rt.block_on(h.wait_healthy());

        // Invariants over everything downloaded this round.
        let got = std::mem::take(&mut *out.lock().unwrap());
        report.lost_downloads += got.lost;
        for ((id, p), bytes) in &got.streams {
            let r = ShareReader::new(&bytes[..]).unwrap();
            report.downloads += 1;
            for range in &r.header.ranges {
                served_batches.insert(range.batch);
                for i in range.first..range.first + range.count {
                    report.items_downloaded += 1;
                    if !delivered[*p as usize].insert((range.batch, i)) {
                        report.duplicates += 1;
                        eprintln!(
                            "DUPLICATE: party {p} got item {i} of {} again in {id}",
                            range.batch
                        );
                    }
                }
            }
        }
        for id in &ids {
            let parts: Vec<_> = (0..3u8)
                .filter_map(|p| got.streams.get(&(id.clone(), p)))
                .collect();
            let headers: Vec<_> = parts
                .iter()
                .map(|b| ShareReader::new(&b[..]).unwrap().header.ranges)
                .collect();
            if headers.windows(2).any(|w| w[0] != w[1]) {
                report.mismatches += 1;
                eprintln!("MISMATCH: checkout {id}: parties hold different items");
                continue;
            }
            if parts.len() == 3 {
                let files: Vec<PathBuf> = parts
                    .iter()
                    .enumerate()
                    .map(|(p, b)| {
                        let f = h.dir.path().join(format!("{id}-{p}.shares"));
                        std::fs::write(&f, b).unwrap();
                        f
                    })
                    .collect();
                match verify(&files) {
                    Ok(_) => report.complete_checkouts += 1,
                    Err(e) => {
                        report.mismatches += 1;
                        eprintln!("MISMATCH: checkout {id} does not reconstruct: {e}");
                    }
                }
                for f in files {
                    std::fs::remove_file(f).unwrap();
                }
            }
        }
        for &b in &served_batches {
            for p in 0..3u8 {
                let s = rt.block_on(h.batch_state(p, b));
                assert!(
                    s == "available" || s == "exhausted",
                    "round {round}: batch {b} was served but is {s} at party {p}"
                );
            }
        }
        assert_eq!(
            report.duplicates, 0,
            "round {round} (seed {seed}): an item was delivered twice"
        );
        assert_eq!(
            report.mismatches, 0,
            "round {round} (seed {seed}): parties got mismatched material"
        );
        report.rounds += 1;
    }

    // A last worker finishes every job, including pieces whose workers were killed.
    h.start_worker("last", None);
    let deadline = Instant::now() + Duration::from_secs(120);
    while h.ended(Target::Dealer).is_none() {
        assert!(Instant::now() < deadline, "the jobs were not finished");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The nodes finish their own (HE) jobs by themselves.
    let jobs = rt.block_on(h.wait_jobs_over(120));
    for j in jobs.as_array().unwrap() {
        assert_eq!(j["state"], "done", "{j}");
        assert_eq!(j["made"], j["count"], "{j}");
        // A PRSS job whose creation answer a killed leader never sent.
        if j["generator"] == "prss" {
            let (id, count) = (j["id"].as_u64().unwrap(), j["count"].as_u64().unwrap());
            assert_eq!(*jobs_made.entry(id).or_insert(count), count, "{j}");
        }
    }
    // The leader's audit log, read offline: every job's pieces add up to exactly its count,
    // no batch counted twice, each committed at every party (every store reopens).
    // The current PRSS epoch (if any) has its keys at every party, whatever setup was cut
    // short.
    let (_, prss) = rt.block_on(h.operator(reqwest::Method::GET, "/v1/prss", None));
    let (made, revoked) = h.job_evidence();
    if let Some(current) = prss["current_epoch"].as_u64() {
        for n in &h.prov.nodes {
            let dir = NodeConfig::load(n).unwrap().data_dir;
            assert!(
                larder::generate::prss::KeyFile::path(&dir, current as u32).exists(),
                "{}: no keys of the current PRSS epoch {current}",
                dir.display()
            );
        }
    }
    assert_eq!(made, jobs_made, "items committed per job");
    report.jobs = jobs_made.len() as u64;
    report.pieces_revoked = revoked.len() as u64;
    for node in &h.prov.nodes {
        let cfg = NodeConfig::load(node).unwrap();
        larder::store::Store::open(&cfg.data_dir)
            .unwrap_or_else(|e| panic!("{} does not reopen: {e}", cfg.data_dir.display()));
    }
    let killed: u64 = report.kills.values().sum();
    eprintln!(
        "crash harness report (seed {seed}):\n  rounds {}\n  kills {killed} {:?}\n  planned points not reached (killed at round end) {}\n  jobs {} (every one made exactly; pieces taken back from killed workers {})\n  checkouts {}\n  downloads {} ({} items)\n  checkouts downloaded and reconstructed at all parties {}\n  downloads lost to crashes {}\n  duplicates {}\n  mismatches {}",
        report.rounds,
        report.kills,
        report.planned_not_reached,
        report.jobs,
        report.pieces_revoked,
        report.checkouts,
        report.downloads,
        report.items_downloaded,
        report.complete_checkouts,
        report.lost_downloads,
        report.duplicates,
        report.mismatches
    );
    assert!(killed >= rounds / 2, "most rounds killed something");
    assert!(report.complete_checkouts > 0, "some checkouts completed");
}
