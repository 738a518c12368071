//! Secrets never reach logs: a consortium of real processes runs with every log at `trace`
//! (nodes, dealer, engines' `larder checkout`), including refused requests, and the logs are
//! searched for every token and for the shares that were handed out.

mod common;

use common::procs::{Harness, POOL};
use larder::material::ShareReader;
use larder::node::config::NodeConfig;
use std::process::{Command, Stdio};

#[test]
fn trace_logs_hold_no_token_and_no_share() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut h = Harness::new("trace");
    rt.block_on(h.wait_healthy());
    h.start_dealer(5000, None);
    assert!(h.dealer.take().unwrap().wait().unwrap().success());

    let wrong_token = "le_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let wrong_file = h.dir.path().join("wrong.token");
    std::fs::write(&wrong_file, wrong_token).unwrap();
    let checkout = |p: usize, token_file: &std::path::Path, id: &str, out: &str| {
        let e = &h.prov.engines[p];
        Command::new(env!("CARGO_BIN_EXE_larder"))
            .args(["checkout", "--pool", POOL, "--count", "1500", "--id", id])
            .arg("--url")
            .arg(&e.url)
            .arg("--ca")
            .arg(&h.prov.ca)
            .arg("--token-file")
            .arg(token_file)
            .arg("--out")
            .arg(h.dir.path().join(out))
            .env("RUST_LOG", "trace")
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::null())
            .stderr(h.log(&format!("engine-{p}")))
            .status()
            .unwrap()
    };
    let mut streams = Vec::new();
    for p in 0..3 {
        assert!(checkout(
            p,
            &h.prov.engines[p].token_file.clone(),
            "logged",
            &format!("s{p}")
        )
        .success());
        streams.push(std::fs::read(h.dir.path().join(format!("s{p}"))).unwrap());
        // Refused: a wrong token, and another party's token at this node.
        assert!(!checkout(p, &wrong_file, "refused", "x").success());
        let other = &h.prov.engines[(p + 1) % 3].token_file.clone();
        assert!(!checkout(p, other, "refused", "x").success());
    }
    for p in 0..3 {
        h.sigkill(common::procs::Target::Node(p));
    }

    let mut logs = String::new();
    for entry in std::fs::read_dir(h.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "log") {
            logs.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        }
    }
    assert!(
        logs.len() > 20_000 && logs.contains("TRACE"),
        "trace logging is on ({} bytes of logs)",
        logs.len()
    );

    eprintln!("{} bytes of trace logs searched", logs.len());
    let mut secrets: Vec<(String, String)> = vec![
        (
            "dealer token".into(),
            h.prov.dealer_token.expose().to_string(),
        ),
        ("wrong token".into(), wrong_token.to_string()),
    ];
    for e in &h.prov.engines {
        secrets.push((format!("{} token", e.name), e.token.expose().to_string()));
    }
    for (p, node) in h.prov.nodes.iter().enumerate() {
        let cfg = NodeConfig::load(node).unwrap();
        secrets.push((
            format!("node {p} token"),
            cfg.node_token.expose().to_string(),
        ));
    }
    for (what, secret) in &secrets {
        assert!(!logs.contains(secret.as_str()), "the {what} is in the logs");
        // Not even its random part on its own.
        let tail = &secret[secret.len() - 32..];
        assert!(!logs.contains(tail), "part of the {what} is in the logs");
    }

    // Shares: each element as decimal, as hex, and its bytes as a Debug list.
    let mut checked = 0;
    for (p, bytes) in streams.iter().enumerate() {
        let mut r = ShareReader::new(&bytes[..]).unwrap();
        let records = r.next_records(200).unwrap().unwrap();
        for e in records.chunks_exact(8) {
            let v = u64::from_le_bytes(e.try_into().unwrap());
            if v < 1 << 40 {
                continue; // too short to be told from other numbers
            }
            let forms = [
                v.to_string(),
                format!("{v:016x}"),
                format!("{:?}", &e[..6]).trim_end_matches(']').to_string(),
            ];
            for f in &forms {
                assert!(
                    !logs.contains(f.as_str()),
                    "party {p}'s share {f} is in the logs"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 1500, "checked {checked} share values");
}

/// At the default level (info) an operator can tell from the nodes' logs why stock moved:
/// reservations expired back to stock, reservations burned, and a party out of reach.
#[test]
fn info_logs_say_why_stock_moved() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut h = Harness::new("info");
    rt.block_on(h.wait_healthy());
    h.start_dealer(5000, None);
    assert!(h.dealer.take().unwrap().wait().unwrap().success());
    let engines = h.engines();
    let pool = POOL.parse().unwrap();
    rt.block_on(async {
        engines[0].checkout("left-alone", pool, 10).await.unwrap();
        engines[0].checkout("half-taken", pool, 10).await.unwrap();
        engines[2].download("half-taken").await.unwrap();
    });
    let logs = h.dir.path().to_path_buf();
    let read =
        |name: &str| std::fs::read_to_string(logs.join(format!("{name}.log"))).unwrap_or_default();
    // The harness's TTL is 2 s and its sweep 200 ms.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let leader = read("node-0");
        if leader.contains("left-alone") && leader.contains("half-taken") {
            assert!(leader.contains("expired undownloaded"), "{leader}");
            assert!(leader.contains("burned"), "{leader}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no expiry logged:\n{leader}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let follower = read("node-1");
    assert!(
        follower.contains("half-taken") && follower.contains("burned at the leader's request"),
        "{follower}"
    );
    // A follower out of reach: the leader says which party when a checkout fails on it.
    h.sigkill(common::procs::Target::Node(2));
    let failed = rt.block_on(engines[0].checkout("unreachable", pool, 10));
    assert_eq!(failed.unwrap_err().code(), Some("party-unavailable"));
    let leader = read("node-0");
    assert!(
        leader.contains("party unreachable") && leader.contains("party=2"),
        "{leader}"
    );
}
