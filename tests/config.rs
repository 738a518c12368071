//! One configuration, layered: the node and consortium files, then `LARDER__` environment
//! overrides with nested keys (`LARDER__METRICS__LISTEN`, `LARDER__CONSORTIUM__...`); a bad
//! override is a clear error naming the key. And the node's optional metrics listener, started
//! with the node and drained with it, serving every pool's stock series from the start.
//!
//! One test in this binary: it sets process environment variables.

use larder::node::config::{ConsortiumConfig, NodeConfig};
use larder::node::provision::{provision, Plan};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A plain-HTTP GET of `path` at `addr`: the whole answer, or `None` if nothing listens.
fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn environment_overrides_nested_keys_and_the_metrics_listener_serves_with_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let plan = Plan {
        addrs: (0..3).map(|_| free_addr()).collect(),
        batch_size: 1000,
        ..Plan::local(
            "cfg",
            3,
            vec!["triple-z64".parse().unwrap(), "bit-z64".parse().unwrap()],
        )
    };
    let prov = provision(dir.path(), &plan).unwrap();
    let node_file = &prov.nodes[0];

    // Files alone.
    let node = NodeConfig::load(node_file).unwrap();
    assert_eq!(node.metrics.listen, None);
    assert_eq!(node.max_connections, None);
    let cluster = ConsortiumConfig::load(&prov.consortium).unwrap();
    assert_eq!(cluster.reservation_ttl_seconds, 600);

    // Overrides: top-level and nested node keys, and the consortium's under CONSORTIUM__.
    let metrics = free_addr();
    std::env::set_var("LARDER__MAX_CONNECTIONS", "12");
    std::env::set_var("LARDER__METRICS__LISTEN", metrics.to_string());
    std::env::set_var("LARDER__CONSORTIUM__RESERVATION_TTL_SECONDS", "77");
    let node = NodeConfig::load(node_file).unwrap();
    assert_eq!(node.max_connections, Some(12));
    assert_eq!(node.metrics.listen, Some(metrics));
    let cluster = ConsortiumConfig::load(&prov.consortium).unwrap();
    assert_eq!(cluster.reservation_ttl_seconds, 77);
    // Relative paths still resolve against the file's directory.
    assert!(node.tls_certificate.exists(), "{:?}", node.tls_certificate);

    // A bad override names the key and the file; nothing starts.
    std::env::set_var("LARDER__MAX_CONNECTIONS", "lots");
    let e = NodeConfig::load(node_file).unwrap_err().to_string();
    assert!(
        e.to_lowercase().contains("max_connections") && e.contains("node.toml"),
        "{e}"
    );
    std::env::set_var("LARDER__CONSORTIUM__BATCH_SIZE", "-3");
    let e = ConsortiumConfig::load(&prov.consortium)
        .unwrap_err()
        .to_string();
    assert!(e.to_lowercase().contains("batch_size"), "{e}");
    std::env::set_var("LARDER__METRICS__COLOUR", "blue");
    std::env::set_var("LARDER__MAX_CONNECTIONS", "12");
    let e = NodeConfig::load(node_file).unwrap_err().to_string();
    assert!(
        e.to_lowercase().contains("colour"),
        "an unknown key is refused: {e}"
    );
    for k in [
        "LARDER__MAX_CONNECTIONS",
        "LARDER__METRICS__LISTEN",
        "LARDER__METRICS__COLOUR",
        "LARDER__CONSORTIUM__RESERVATION_TTL_SECONDS",
        "LARDER__CONSORTIUM__BATCH_SIZE",
    ] {
        std::env::remove_var(k);
    }

    // A real node with its metrics listener set from the environment.
    let mut child = Command::new(env!("CARGO_BIN_EXE_larder"))
        .args(["serve", "--node"])
        .arg(node_file)
        .env("LARDER__METRICS__LISTEN", metrics.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let page = loop {
        if let Some(p) = get(metrics, "/metrics") {
            break p;
        }
        assert!(Instant::now() < deadline, "no metrics listener");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("text/plain; version=0.0.4"), "{page}");
    for pool in ["triple-z64", "bit-z64"] {
        for state in ["available", "staged", "reserved", "consumed"] {
            let series = format!("larder_stock_items{{pool=\"{pool}\",state=\"{state}\"}} 0");
            assert!(page.contains(&series), "missing {series}:\n{page}");
        }
    }
    assert!(page.contains("larder_build_info{party=\"0\""), "{page}");
    // SIGTERM drains the node: the metrics listener goes with it.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(
        get(metrics, "/metrics").is_none(),
        "still serving after stop"
    );
}
