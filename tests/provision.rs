//! A consortium as an operator deploys one: `larder provision` for host names (here
//! `localhost`, so the certificates must name it), nodes started from `LARDER_NODE` with JSON
//! logs, readiness that waits for the peers, metrics served over TLS when asked, and a rerun
//! of `provision` that refuses to replace the consortium's keys and tokens.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn larder(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_larder"));
    c.args(args);
    c
}

fn provision(dir: &Path, ports: &[u16]) -> Output {
    let mut c = larder(&["provision", "--name", "prov", "--metrics-listen", "none"]);
    c.arg("--dir").arg(dir);
    for p in ports {
        c.args(["--party", &format!("localhost:{p}")]);
    }
    c.args(["--pool", "triple-z64"]).output().unwrap()
}

/// `GET path` on a plain-HTTP listener: (status, body).
fn get(at: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(at).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    Some((status, out.split_once("\r\n\r\n")?.1.to_string()))
}

fn start(dir: &Path, p: u8, metrics: SocketAddr, tls: bool, log: &Path) -> Node {
    let mut c = larder(&["serve"]);
    c.env("LARDER_NODE", dir.join(format!("party-{p}/node.toml")))
        .env("LARDER_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("LARDER__METRICS__LISTEN", metrics.to_string())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    if tls {
        c.env("LARDER__METRICS__TLS", "true");
    }
    Node(c.spawn().unwrap())
}

fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_provisioned_consortium_serves_by_host_name_and_is_ready_once_its_peers_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("consortium");
    let ports: Vec<u16> = (0..3).map(|_| common::free_addr().port()).collect();
    let made = provision(&dir, &ports);
    assert!(made.status.success(), "{made:?}");
    let consortium = std::fs::read_to_string(dir.join("consortium.toml")).unwrap();
    for p in &ports {
        assert!(
            consortium.contains(&format!("https://localhost:{p}")),
            "{consortium}"
        );
    }
    // A rerun refuses and changes nothing: the keys and tokens stay the consortium's.
    let ca = std::fs::read(dir.join("ca.pem")).unwrap();
    let key = std::fs::read(dir.join("party-0/key.pem")).unwrap();
    let again = provision(&dir, &ports);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already holds a consortium"),
        "{again:?}"
    );
    assert_eq!(std::fs::read(dir.join("ca.pem")).unwrap(), ca);
    assert_eq!(std::fs::read(dir.join("party-0/key.pem")).unwrap(), key);

    // Party 0 alone: serving, but not ready while its peers are away.
    let metrics: Vec<SocketAddr> = (0..3).map(|_| common::free_addr()).collect();
    let logs: Vec<PathBuf> = (0..3)
        .map(|p| tmp.path().join(format!("node-{p}.log")))
        .collect();
    let _n0 = start(&dir, 0, metrics[0], false, &logs[0]);
    wait_for("party 0's health", Duration::from_secs(20), || {
        get(metrics[0], "/v1/health").is_some_and(|(s, _)| s == 200)
    });
    let (status, body) = get(metrics[0], "/v1/ready").unwrap();
    assert_eq!(status, 503, "{body}");
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["code"], "not-ready");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("site-b") && detail.contains("site-c"),
        "{body}"
    );
    let page = get(metrics[0], "/metrics").unwrap().1;
    assert!(page.contains("\nlarder_ready 0\n"), "{page}");

    // The peers come up (party 1 serving its metrics over TLS): party 0 becomes ready.
    let _n1 = start(&dir, 1, metrics[1], true, &logs[1]);
    let _n2 = start(&dir, 2, metrics[2], false, &logs[2]);
    wait_for("party 0 ready", Duration::from_secs(30), || {
        get(metrics[0], "/v1/ready").is_some_and(|(s, _)| s == 200)
    });
    let page = get(metrics[0], "/metrics").unwrap().1;
    assert!(page.contains("\nlarder_ready 1\n"), "{page}");

    // Metrics over TLS with the node's certificate: plain HTTP gets no page there.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ca_pem = String::from_utf8(ca).unwrap();
    let http = larder::tls::client(&ca_pem, Duration::from_secs(10)).unwrap();
    let tls_page = rt.block_on(async {
        let url = format!("https://localhost:{}/metrics", metrics[1].port());
        http.get(url).send().await?.text().await
    });
    let tls_page = tls_page.expect("metrics over TLS, verified against the consortium CA");
    assert!(tls_page.contains("larder_stock_items"), "{tls_page}");
    assert!(get(metrics[1], "/metrics").is_none_or(|(s, _)| s != 200));

    // The dealer reaches every node by host name (the certificates name localhost).
    let dealt = larder(&["dealer", "--pool", "triple-z64", "--count", "3000"])
        .arg("--consortium")
        .arg(dir.join("consortium.toml"))
        .arg("--token-file")
        .arg(dir.join("dealer.token"))
        .output()
        .unwrap();
    assert!(dealt.status.success(), "{dealt:?}");

    // Every log line is one JSON object with a level and a message.
    drop((_n0, _n1, _n2));
    let text = std::fs::read_to_string(&logs[0]).unwrap();
    assert!(text.lines().count() >= 2, "{text}");
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
    }
    assert!(text.contains("metrics listener serving"), "{text}");
}
