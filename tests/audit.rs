//! The audit trail as evidence: one party's hash chain across archive files, restarts, rotation
//! and retention; a store from before the chain; and a real three-node consortium whose trails,
//! read with the auditor's credential, verify and agree, while edited, dropped, reordered,
//! cut-off or wholly rewritten records are caught (the rewrite only through the heads the
//! other nodes witnessed: the negative control shows it passing without them).

mod common;

use common::net::Cluster;
use larder::audit::{genesis, verify, AuditRecord, Export, Tip};
use larder::generate::{BatchPlan, Dealer, Generator};
use larder::material::PoolSpec;
use larder::node::launch::InProcess;
use larder::node::provision::Plan;
use larder::store::{ArchivePolicy, Store, StoreIdentity};
use std::path::Path;
use std::time::Duration;

fn pool() -> PoolSpec {
    "triple-z64".parse().unwrap()
}

fn identity() -> StoreIdentity {
    StoreIdentity {
        consortium: "audit".into(),
        parties: 2,
        party: 0,
    }
}

/// A store of party 0 of 2 with one available batch of `items`.
fn store_with_stock(dir: &Path, items: u64) -> Store {
    let s = Store::create(dir, identity()).unwrap();
    let mut d = Dealer::from_seed([3; 32]);
    let plan = BatchPlan {
        pool: pool(),
        parties: 2,
        batch: d.next_batch_id(),
        items,
        correction: 0,
    };
    let files = d.generate(&plan).unwrap();
    s.stage(&files[0].bytes).unwrap();
    s.activate(&plan.batch).unwrap();
    s
}

fn take(s: &Store, id: &str, n: u64) {
    s.allocate(id, pool(), n).unwrap();
    s.confirm(id).unwrap();
    s.consume(id, "engine-0").unwrap();
}

fn export(s: &Store) -> Export {
    let mut buf = Vec::new();
    s.export_audit(0, u64::MAX, &mut buf).unwrap();
    Export::parse(std::str::from_utf8(&buf).unwrap()).unwrap()
}

fn archive_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("audit"))
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn the_trail_is_one_chain_across_archive_files_restarts_and_a_torn_append() {
    let dir = tempfile::tempdir().unwrap();
    let small = ArchivePolicy {
        file_bytes: 2000,
        retention: None,
    };
    {
        let s = store_with_stock(dir.path(), 10_000);
        for i in 0..10 {
            take(&s, &format!("a{i}"), 10);
        }
        assert!(s.archive(&small).unwrap() >= 22);
        assert!(
            s.audit_log().unwrap().is_empty(),
            "archived records leave sled"
        );
        for i in 0..10 {
            take(&s, &format!("b{i}"), 10);
            s.archive(&small).unwrap();
        }
        // Some records stay in sled: the export joins both.
        take(&s, "c", 10);
        let e = export(&s);
        assert_eq!(e.records.len(), 2 + 2 * 21);
        assert!(verify(&[e]).ok());
    }
    assert!(
        archive_files(dir.path()).len() > 2,
        "files rotate at the size limit"
    );
    // A power cut in the middle of an append leaves a partial last line.
    let newest = archive_files(dir.path()).pop().unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&newest)
        .unwrap();
    std::io::Write::write_all(&mut f, br#"{"seq":99999,"at":1,"ev"#).unwrap();
    drop(f);
    let s = Store::open(dir.path()).unwrap();
    take(&s, "d", 10);
    s.archive(&small).unwrap();
    let e = export(&s);
    let report = verify(std::slice::from_ref(&e));
    assert!(report.ok(), "{:?}", report.problems);
    let events: Vec<&str> = e.records.iter().map(|r| r.event.as_str()).collect();
    assert_eq!(events[..4], ["stage", "activate", "reserve", "consume"]);
    assert_eq!(e.records.last().unwrap().checkout.as_deref(), Some("d"));
    assert_eq!(e.header.next, e.records.len() as u64);
}

#[test]
fn retention_removes_old_archive_files_and_the_export_starts_after_them() {
    let dir = tempfile::tempdir().unwrap();
    let s = store_with_stock(dir.path(), 10_000);
    let small = ArchivePolicy {
        file_bytes: 1000,
        retention: None,
    };
    for i in 0..12 {
        take(&s, &format!("a{i}"), 10);
        s.archive(&small).unwrap();
    }
    let files = archive_files(dir.path());
    assert!(files.len() >= 4);
    // Every file but the newest two is a year old.
    let year_ago = std::time::SystemTime::now() - Duration::from_secs(365 * 86_400);
    for f in &files[..files.len() - 2] {
        std::fs::File::options()
            .write(true)
            .open(f)
            .unwrap()
            .set_modified(year_ago)
            .unwrap();
    }
    let keep_30_days = ArchivePolicy {
        file_bytes: 1000,
        retention: Some(Duration::from_secs(30 * 86_400)),
    };
    s.archive(&keep_30_days).unwrap();
    assert_eq!(archive_files(dir.path()), files[files.len() - 2..]);
    let e = export(&s);
    assert!(e.header.first > 0, "the oldest records are gone");
    assert_eq!(e.records[0].seq, e.header.first);
    let report = verify(&[e]);
    assert!(report.ok(), "{:?}", report.problems);
}

#[test]
fn a_store_from_before_the_chain_is_chained_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let before: Vec<String> = {
        let s = store_with_stock(dir.path(), 1000);
        take(&s, "old", 10);
        s.allocate("released", pool(), 5).unwrap();
        s.release("released").unwrap();
        s.audit_log()
            .unwrap()
            .into_iter()
            .map(|r| r.event)
            .collect()
    };
    // Rewrite it as schema 2 left it: records under sparse sled ids, with no links, and no
    // index of final reservations.
    {
        let db = sled::open(dir.path().join("meta")).unwrap();
        let audit = db.open_tree("audit").unwrap();
        let old: Vec<serde_json::Value> = audit
            .iter()
            .values()
            .map(|v| serde_json::from_slice(&v.unwrap()).unwrap())
            .collect();
        audit.clear().unwrap();
        for (i, mut v) in old.into_iter().enumerate() {
            let m = v.as_object_mut().unwrap();
            for k in ["seq", "prev", "hash"] {
                m.remove(k);
            }
            m.entry("by").or_insert(serde_json::Value::Null);
            m.entry("batch").or_insert(serde_json::Value::Null);
            let key = (1_000_000 + 7 * i as u64).to_be_bytes();
            audit.insert(key, serde_json::to_vec(&v).unwrap()).unwrap();
        }
        db.drop_tree("closed").unwrap();
        db.insert("schema_version", &2u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(larder::store::schema::latest(), 5);
    let e = export(&s);
    let report = verify(std::slice::from_ref(&e));
    assert!(report.ok(), "{:?}", report.problems);
    let after: Vec<String> = e.records.iter().map(|r| r.event.clone()).collect();
    assert_eq!(after, before);
    assert_eq!(e.records[0].prev, genesis("audit", 0));
    // The final reservations were indexed: they can leave the hot metadata.
    assert_eq!(s.archive_reservations(u64::MAX, false, 100).unwrap(), 2);
    assert!(s.reservation("old").unwrap().is_none());
}

/// Chains `e`'s records again from its start, as whoever holds a disk could.
fn rechain(e: &mut Export) {
    let mut tip = Tip {
        next: e.header.first,
        hash: e.records[0].prev.clone(),
    };
    for r in &mut e.records {
        tip.append(r);
    }
    e.header.next = tip.next;
    e.header.head = tip.hash;
}

fn find(e: &Export, event: &str, checkout: &str) -> usize {
    e.records
        .iter()
        .position(|r| r.event == event && r.checkout.as_deref() == Some(checkout))
        .unwrap_or_else(|| panic!("party {} has no {event} of {checkout}", e.header.party))
}

fn first_problem(exports: &[Export]) -> String {
    let report = verify(exports);
    assert!(!report.ok(), "tampering went unnoticed");
    report.problems[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_parties_trails_verify_agree_and_give_away_any_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let plan = Plan {
        batch_size: 5000,
        reservation_ttl_seconds: 2,
        archive_after_seconds: 4,
        sweep_interval_ms: 200,
        ..Plan::local("audit", 3, vec![pool()])
    };
    let run = InProcess::start(dir.path(), plan).await.unwrap();
    let c = Cluster { dir, run };
    c.deal("triple-z64", 20_000).await;
    for i in 0..4 {
        let id = format!("run-{i}");
        c.engine(0).checkout(&id, pool(), 1000).await.unwrap();
        c.download_and_verify(&id).await;
        // The nodes record each other's heads at most once a second.
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    // Downloaded at one party only: burned at the others on expiry; never downloaded:
    // released.
    c.engine(0).checkout("half", pool(), 500).await.unwrap();
    c.engine(0).download("half").await.unwrap();
    c.engine(0).checkout("idle", pool(), 500).await.unwrap();

    // Once expired, settled and past archive_after, the reservations leave every party's hot
    // metadata: their checkout ids are no longer known there.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    for p in 0..3u8 {
        loop {
            match c.engine(p).get_checkout("run-0").await {
                Err(e) if e.is(larder::wire::Code::UnknownCheckout) => break,
                _ if std::time::Instant::now() > deadline => {
                    panic!("party {p} still holds run-0 in its hot metadata")
                }
                _ => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        }
    }
    // Let the last records reach the archive files too.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The auditor's credential reads the trail and nothing else.
    let http = larder::tls::client(&c.ca, Duration::from_secs(30)).unwrap();
    let auditor = c.prov.auditor_token.expose().to_string();
    let base = c.prov.engines[1].url.clone();
    for (method, path) in [
        ("GET", "/v1/stock"),
        ("POST", "/v1/checkouts"),
        ("GET", "/v1/jobs"),
        ("GET", "/v1/checkouts/run-1"),
        ("GET", "/v1/internal/reservations/run-1"),
    ] {
        let resp = http
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .bearer_auth(&auditor)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "the auditor at {method} {path}");
    }
    let as_engine = http
        .get(format!("{base}/v1/audit"))
        .bearer_auth(c.prov.engines[1].token.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(as_engine.status(), 403);
    let problem: larder::wire::Problem = as_engine.json().await.unwrap();
    assert_eq!(problem.code, "auditors-only");
    let anonymous = http.get(format!("{base}/v1/audit")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);

    // `larder audit export` through each node, in pages, and `larder audit verify`.
    let out = c.dir.path().join("exports");
    std::fs::create_dir_all(&out).unwrap();
    let files: Vec<_> = (0..3)
        .map(|p| out.join(format!("party-{p}.jsonl")))
        .collect();
    for (p, f) in files.iter().enumerate() {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_larder"))
            .args(["audit", "export", "--party", &p.to_string(), "--consortium"])
            .arg(&c.prov.consortium)
            .arg("--token-file")
            .arg(&c.prov.auditor_token_file)
            .arg("--out")
            .arg(f)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_larder"))
        .args(["audit", "verify"])
        .args(&files)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{text}");
    assert!(text.contains("OK: every chain is intact and the parties agree"));
    println!("{text}");

    let exports: Vec<Export> = files
        .iter()
        .map(|f| Export::parse(&std::fs::read_to_string(f).unwrap()).unwrap())
        .collect();
    let report = verify(&exports);
    assert!(report.ok(), "{:?}", report.problems);
    assert!(
        report.witnessed >= 4,
        "heads witnessed: {}",
        report.witnessed
    );
    assert_eq!(report.items_spent, 3 * 4000 + 3 * 500);
    for (p, e) in exports.iter().enumerate() {
        let final_of = |id: &str| {
            e.records
                .iter()
                .rev()
                .find(|r| r.checkout.as_deref() == Some(id))
                .map(|r| r.event.clone())
        };
        assert_eq!(final_of("run-2").as_deref(), Some("consume"));
        let half = if p == 0 { "consume" } else { "burn" };
        assert_eq!(final_of("half").as_deref(), Some(half), "party {p}");
        assert_eq!(final_of("idle").as_deref(), Some("release"), "party {p}");
        let store = c.dir.path().join(format!("party-{p}/store"));
        assert!(
            !archive_files(&store).is_empty(),
            "party {p} archived its records"
        );
    }

    // An edited record.
    let mut e = exports.clone();
    let i = find(&e[2], "consume", "run-1");
    e[2].records[i].ranges[0].count -= 1;
    let seq = e[2].records[i].seq;
    assert!(first_problem(&e).contains(&format!(
        "party 2: record {seq} (consume run-1) was altered"
    )));
    // A dropped record.
    let mut e = exports.clone();
    let i = find(&e[1], "consume", "run-1");
    e[1].records.remove(i);
    assert!(first_problem(&e).contains("party 1: record"));
    // Two records swapped.
    let mut e = exports.clone();
    let i = find(&e[0], "reserve", "run-2");
    e[0].records.swap(i, i + 1);
    assert!(first_problem(&e).contains("party 0: record"));
    // A chain cut off before heads the others saw.
    let mut e = exports.clone();
    e[1].records.truncate(3);
    rechain(&mut e[1]);
    assert!(first_problem(&e).contains("party 1: its chain ends at record 3"));
    // Party 1's whole chain rewritten, consistently, to say another engine downloaded run-1:
    // every link holds, and only the heads party 0 witnessed give it away.
    let forge = |e: &mut Export| {
        let i = find(e, "consume", "run-1");
        e.records[i].by = Some("someone-else".into());
        rechain(e);
    };
    let mut e = exports.clone();
    forge(&mut e[1]);
    let problem = first_problem(&e);
    assert!(
        problem.contains("party 1: record") && problem.contains("the chain was rewritten"),
        "{problem}"
    );
    // The negative control: the same rewrite with no witnessed heads anywhere passes.
    let mut e = exports.clone();
    for x in &mut e {
        x.records.retain(|r: &AuditRecord| r.witness.is_none());
        rechain(x);
    }
    forge(&mut e[1]);
    let report = verify(&e);
    assert!(
        report.ok() && report.witnessed == 0,
        "{:?}",
        report.problems
    );

    // `larder audit verify` names the first disagreement and fails.
    let mut e = exports.clone();
    forge(&mut e[1]);
    let forged = out.join("party-1-forged.jsonl");
    let mut text = serde_json::to_string(&e[1].header).unwrap() + "\n";
    for r in &e[1].records {
        text += &(serde_json::to_string(r).unwrap() + "\n");
    }
    std::fs::write(&forged, text).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_larder"))
        .args(["audit", "verify"])
        .arg(&files[0])
        .arg(&forged)
        .arg(&files[2])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    println!("{text}");
    assert!(!o.status.success());
    assert!(
        text.contains("first disagreement: party 1: record"),
        "{text}"
    );
    c.run.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_back_with_less_than_it_reported_is_refused_by_the_followers() {
    let mut c = common::net::spawn_cluster_with(600, &[pool()]).await;
    c.deal("triple-z64", 20_000).await;
    c.engine(0).checkout("before", pool(), 1000).await.unwrap();
    c.download_and_verify("before").await;
    // A backup of the leader's store, taken while it is stopped.
    let store = c.dir.path().join("party-0/store");
    let backup = c.dir.path().join("party-0-backup");
    c.stop(0).await;
    let cp = |from: &Path, to: &Path| {
        let ok = std::process::Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(to)
            .status()
            .unwrap();
        assert!(ok.success());
    };
    cp(&store, &backup);
    c.restart(0).await;
    for id in ["after-1", "after-2"] {
        c.engine(0).checkout(id, pool(), 1000).await.unwrap();
        c.download_and_verify(id).await;
    }
    // The leader comes back from the backup: it has forgotten two checkouts it reported.
    c.stop(0).await;
    std::fs::remove_dir_all(&store).unwrap();
    cp(&backup, &store);
    c.restart(0).await;
    let err = c
        .engine(0)
        .checkout("after-restore", pool(), 1000)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("party-rolled-back") || err.contains("lost records"),
        "{err}"
    );
    // The followers were left as they were: the forgotten items stay consumed there.
    for p in 1..3u8 {
        let stock = c.engine(p).stock().await.unwrap();
        assert_eq!(stock.pools[&pool()].consumed, 3000, "party {p}");
        assert!(matches!(
            c.engine(p).get_checkout("after-restore").await,
            Err(e) if e.is(larder::wire::Code::UnknownCheckout)
        ));
    }
}
