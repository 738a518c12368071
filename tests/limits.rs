//! No client can take a node down: a consortium of real processes, one follower started with a
//! small descriptor limit (`ulimit -n 256`) and attacked with 300 idle TCP connections, a
//! slowloris TLS client (a header line a second), a body that never ends, and an oversized
//! header. The other parties keep answering throughout; the attacked follower closes the
//! attackers' connections by itself (while the attacker still holds its ends), does not spin,
//! says in its log why it stopped accepting, and serves checkouts again that reconstruct.
//!
//! Negative control, run once by hand: with the connection cap lifted above the descriptor
//! limit and no handshake deadline, the flood takes the follower's last descriptors, its store
//! fails ("500 internal: party 1: the store failed") and the test fails at the first checkout.

mod common;

use common::procs::{Harness, Target, POOL};
use larder::consortium::verify;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ATTACKED: u8 = 1;

fn addr_of(h: &Harness, p: u8) -> SocketAddr {
    let url = &h.prov.engines[p as usize].url;
    url.trim_start_matches("https://")
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

/// CPU seconds a process has used so far (user + system), from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// The pid of `parent`'s first child (`sh` execs `larder`, so the wrapper's pid is the node's).
fn node_pid(h: &Harness, p: u8) -> u32 {
    h.nodes.children[p as usize].as_ref().unwrap().id()
}

async fn tls_connect(h: &Harness, p: u8) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let cfg = larder::tls::client_config(&h.ca).unwrap();
    let tcp = tokio::net::TcpStream::connect(addr_of(h, p)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .unwrap()
}

/// Sends `head`, then `drip` once a second, until the node closes the connection or answers;
/// returns what it answered and how long it took.
async fn drip(
    mut tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    head: String,
    drip: &'static [u8],
    give_up: Duration,
) -> (String, Duration) {
    let start = Instant::now();
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    loop {
        if start.elapsed() > give_up {
            return ("still open".into(), start.elapsed());
        }
        match tokio::time::timeout(Duration::from_secs(1), tls.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return ("closed".into(), start.elapsed()),
            Ok(Ok(n)) => {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                return (text, start.elapsed());
            }
            Err(_) => {
                if tls.write_all(drip).await.is_err() {
                    return ("closed".into(), start.elapsed());
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_under_connection_attack_recovers_by_itself_and_the_others_keep_serving() {
    let mut h = Harness::new("info");
    // The follower under attack runs with a small descriptor limit.
    h.sigkill(Target::Node(ATTACKED));
    h.wrap[ATTACKED as usize] = vec![
        "sh".into(),
        "-c".into(),
        "ulimit -n 256 && exec \"$0\" \"$@\"".into(),
    ];
    h.start_node(ATTACKED, None);
    h.wait_healthy().await;
    h.start_dealer(20_000, None);
    assert!(h.dealer.take().unwrap().wait().unwrap().success());
    let engines = h.engines();
    let pool = POOL.parse().unwrap();

    // Slow clients on every endpoint type, started first so their deadlines run during the
    // flood: a head sent a line a second, and (authenticated, at the leader) a chunked body
    // that never ends.
    let slowloris = tokio::spawn(drip(
        tls_connect(&h, 0).await,
        "GET /v1/health HTTP/1.1\r\nHost: localhost\r\n".into(),
        b"X-Slow: 1\r\n",
        Duration::from_secs(60),
    ));
    let token = h.prov.engines[0].token.expose().to_string();
    let endless = tokio::spawn(drip(
        tls_connect(&h, 0).await,
        format!(
            "POST /v1/checkouts HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{{\r\n"
        ),
        b"1\r\n \r\n",
        Duration::from_secs(60),
    ));
    // A client that completes the TLS handshake and then says nothing.
    let silent = tokio::spawn(drip(
        tls_connect(&h, 0).await,
        String::new(),
        b"",
        Duration::from_secs(60),
    ));
    // A 200 KB header is refused outright.
    let mut big = tls_connect(&h, 0).await;
    let huge = format!(
        "GET /v1/health HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(200_000)
    );
    let _ = big.write_all(huge.as_bytes()).await;
    let mut answer = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(10), big.read(&mut answer))
        .await
        .expect("the node answers an oversized head at once")
        .unwrap_or(0);
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");

    // The flood: 300 idle TCP connections to the follower, held open for the whole test.
    let target = addr_of(&h, ATTACKED);
    let flood: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(target).unwrap())
        .collect();
    let cpu_before = cpu_seconds(node_pid(&h, ATTACKED));
    let flood_start = Instant::now();

    // The other parties keep answering, and a checkout at the leader either succeeds or fails
    // cleanly and promptly (503) while the follower is saturated.
    for p in [0u8, 2] {
        let e = &engines[p as usize];
        let stock = tokio::time::timeout(Duration::from_secs(5), e.stock()).await;
        assert!(
            matches!(stock, Ok(Ok(_))),
            "party {p} stopped answering: {stock:?}"
        );
    }
    let during = tokio::time::timeout(
        Duration::from_secs(30),
        engines[0].checkout("during-flood", pool, 100),
    )
    .await
    .expect("a checkout at the leader does not hang on a saturated follower");
    if let Err(e) = &during {
        assert_eq!(e.code(), Some("party-unavailable"), "{e}");
    }

    // Recovery, with the attacker still holding its 300 sockets: a whole checkout, downloaded
    // at every party, reconstructs.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut round = 0;
    let files = loop {
        assert!(
            Instant::now() < deadline,
            "the attacked follower serves again within 90 s"
        );
        round += 1;
        let id = format!("after-flood-{round}");
        let mut files = Vec::new();
        let mut ok = true;
        for (p, e) in engines.iter().enumerate() {
            let got = async {
                e.checkout(&id, pool, 500).await?;
                e.download(&id).await
            };
            match tokio::time::timeout(Duration::from_secs(20), got).await {
                Ok(Ok(bytes)) => {
                    let path = h.dir.path().join(format!("{id}-{p}.shares"));
                    std::fs::write(&path, bytes).unwrap();
                    files.push(path);
                }
                _ => {
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            break files;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(verify(&files).unwrap().items, 500);
    let recovered_after = flood_start.elapsed();

    // It waited rather than spun: well under a core's worth of CPU while saturated.
    let cpu = cpu_seconds(node_pid(&h, ATTACKED)) - cpu_before;
    assert!(
        cpu < 0.5 * recovered_after.as_secs_f64(),
        "the follower used {cpu:.1} CPU-seconds in {recovered_after:?}"
    );
    h.assert_nodes_alive(None);

    // The slow clients were cut off by the node's deadlines, not by giving up.
    let (slow, slow_took) = slowloris.await.unwrap();
    assert!(
        slow == "closed" || slow.starts_with("HTTP/1.1 408"),
        "slowloris: {slow:?} after {slow_took:?}"
    );
    let (silent, silent_took) = silent.await.unwrap();
    assert_eq!(silent, "closed", "silent client, after {silent_took:?}");
    let (endless, endless_took) = endless.await.unwrap();
    assert!(
        endless.starts_with("HTTP/1.1 408") && endless.contains("request-timeout"),
        "endless body: {endless:?} after {endless_took:?}"
    );

    // The operator can tell why the follower stopped accepting.
    let log = std::fs::read_to_string(h.dir.path().join(format!("node-{ATTACKED}.log"))).unwrap();
    assert!(
        log.contains("connection limit reached"),
        "the attacked node's log:\n{log}"
    );
    drop(flood);
    let _ = std::io::stderr().flush();
    eprintln!("recovered {recovered_after:?} after the flood began, after {round} rounds");
}

/// SIGTERM stops every task of a node (API, sweeper) and the process exits, even with a
/// client that holds a connection and says nothing; the node then starts again on its store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_node_with_idle_clients_and_it_starts_again() {
    let mut h = Harness::new("info");
    h.wait_healthy().await;
    let _silent = tls_connect(&h, 1).await;
    let _raw = TcpStream::connect(addr_of(&h, 1)).unwrap();
    let pid = node_pid(&h, 1);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut node = h.nodes.children[1].take().unwrap();
    let status = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = node.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() > deadline {
                let _ = node.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    let status = status.expect("the node exits after SIGTERM");
    assert!(status.success(), "{status}");
    let log = std::fs::read_to_string(h.dir.path().join("node-1.log")).unwrap();
    assert!(log.contains("shutting down"), "{log}");
    h.start_node(1, None);
    h.wait_healthy().await;
}
