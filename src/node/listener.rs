//! The node's HTTPS serving loop, bounded so that no client can take the node down.
//!
//! An outside test held a follower with idle sockets: no connection ever timed out, the node
//! ran out of file descriptors, spun on `accept` failing with "too many open files", and
//! every checkout in the consortium failed. Here:
//! - at most [`Limits::max_connections`] connections are open at once (below the descriptor
//!   limit, so the store can always open its files), and at most
//!   [`Limits::max_per_address`] from one client address; past the first, the node stops
//!   accepting until one closes; past the second, the new connection is closed at once;
//! - the TLS handshake, the request head (also the wait for the next request on a kept-alive
//!   connection) and request bodies have deadlines ([`HANDSHAKE_TIMEOUT`],
//!   [`HEADER_TIMEOUT`], [`super::api`]'s body deadlines);
//! - request heads are capped at [`MAX_HEAD_BYTES`] (a larger head gets `431`);
//! - a failing `accept` backs off (up to a second) and is logged, at most once per interval.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// How long a client has to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client has to send a request's head, counted from the connection's start or from
/// the end of the previous response: also the idle timeout of kept-alive connections.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest request head (request line and headers) read. hyper's floor is 8 KiB.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// File descriptors kept free of connections: the store's files, sled, logs, calls to other
/// nodes.
const RESERVED_FDS: u64 = 64;
/// Most connections, whatever the descriptor limit allows.
const MAX_CONNECTIONS: usize = 4096;
/// Most connections from one client address (engines and nodes behind one address share it).
const MAX_PER_ADDRESS: usize = 512;

/// Connection limits of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_per_address: usize,
}

impl Limits {
    /// The limits for this process: `configured` values where given, else the defaults,
    /// never more than the descriptor limit leaves room for.
    pub fn for_process(max_connections: Option<usize>, max_per_address: Option<usize>) -> Limits {
        let fds = descriptor_limit();
        let room = fds.saturating_sub(RESERVED_FDS).max(16) as usize;
        let max_connections = max_connections.unwrap_or(MAX_CONNECTIONS).min(room).max(1);
        Limits {
            max_connections,
            max_per_address: max_per_address
                .unwrap_or(MAX_PER_ADDRESS)
                .clamp(1, max_connections),
        }
    }
}

/// The soft descriptor limit, raised to the hard limit first (as servers commonly do; the soft
/// default of 1024 is a relic of `select`).
fn descriptor_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Err(_) => 1024,
    }
}

/// Counts open connections, overall and per client address.
pub struct Gate {
    limits: Limits,
    total: Arc<tokio::sync::Semaphore>,
    per_address: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; dropping it frees its place.
pub struct Admitted {
    _total: tokio::sync::OwnedSemaphorePermit,
    gate: Arc<Gate>,
    addr: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut map = self
            .gate
            .per_address
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.addr);
            }
        }
    }
}

impl Gate {
    pub fn new(limits: Limits) -> Arc<Gate> {
        Arc::new(Gate {
            limits,
            total: Arc::new(tokio::sync::Semaphore::new(limits.max_connections)),
            per_address: Mutex::new(HashMap::new()),
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Waits for room for one more connection.
    pub async fn room(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.total
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// Admits a connection from `addr` holding `permit`, unless that address has its share.
    /// IPv6 addresses count by /64, the block one host usually holds.
    pub fn admit(
        self: &Arc<Self>,
        permit: tokio::sync::OwnedSemaphorePermit,
        addr: IpAddr,
    ) -> Option<Admitted> {
        let addr = match addr {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
            },
            v4 => v4,
        };
        let mut map = self.per_address.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(addr).or_insert(0);
        if *n >= self.limits.max_per_address {
            return None;
        }
        *n += 1;
        Some(Admitted {
            _total: permit,
            gate: self.clone(),
            addr,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.limits.max_connections - self.total.available_permits()
    }
}

/// Accepts connections for as long as it is polled, within `gate`'s limits; yields each
/// admitted TCP stream with its place. Accept errors (such as running out of descriptors)
/// back off and are logged, never spun on.
pub struct Acceptor {
    listener: TcpListener,
    gate: Arc<Gate>,
    backoff: Duration,
    last_log: Option<tokio::time::Instant>,
    refused_since_log: u64,
}

impl Acceptor {
    pub fn new(listener: TcpListener, gate: Arc<Gate>) -> Acceptor {
        Acceptor {
            listener,
            gate,
            backoff: Duration::ZERO,
            last_log: None,
            refused_since_log: 0,
        }
    }

    /// The next admitted connection.
    pub async fn next(&mut self) -> (TcpStream, Admitted) {
        loop {
            if self.gate.total.available_permits() == 0 && self.may_log() {
                tracing::warn!(
                    limit = self.gate.limits().max_connections,
                    "connection limit reached; not accepting until a connection closes or \
                     times out"
                );
            }
            let permit = self.gate.room().await;
            match self.listener.accept().await {
                Ok((tcp, peer)) => {
                    self.backoff = Duration::ZERO;
                    match self.gate.admit(permit, peer.ip()) {
                        Some(place) => return (tcp, place),
                        None => {
                            self.refused_since_log += 1;
                            if self.may_log() {
                                tracing::warn!(
                                    client = %peer.ip(),
                                    limit = self.gate.limits().max_per_address,
                                    refused = self.refused_since_log,
                                    "closing connections from a client address that holds its \
                                     share of connections already"
                                );
                                self.refused_since_log = 0;
                            }
                            drop(tcp);
                        }
                    }
                }
                Err(e) => {
                    drop(permit);
                    self.backoff =
                        (self.backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                    if self.may_log() {
                        tracing::warn!(
                            error = %e,
                            open = self.gate.open(),
                            retry_in_ms = self.backoff.as_millis() as u64,
                            "accepting a connection failed"
                        );
                    }
                    tokio::time::sleep(self.backoff).await;
                }
            }
        }
    }

    /// At most one warning per 10 s.
    fn may_log(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        if self
            .last_log
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(10))
        {
            return false;
        }
        self.last_log = Some(now);
        true
    }
}

/// Serves `app` over TLS on `listener` within `limits` until `cancel` fires; then stops
/// accepting, closes idle connections and gives requests in flight up to 5 s.
pub async fn serve(
    listener: TcpListener,
    tls: std::sync::Arc<rustls::ServerConfig>,
    app: axum::Router,
    limits: Limits,
    cancel: tokio_util::sync::CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut incoming = Acceptor::new(listener, Gate::new(limits));
    // Tracks connections so shutdown can close idle keep-alive ones at once and give
    // requests in flight a moment to finish.
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // HTTP/1.1 only (the nodes' clients speak nothing else): the auto builder would otherwise
    // first wait, with no deadline, for enough bytes to tell HTTP/2's preface apart, and would
    // serve HTTP/2 (compiled in through reqwest) with no head deadline.
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
            .http1_only();
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES);
    let (conn_tx, mut conn_rx) = tokio::sync::mpsc::unbounded_channel();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            (tcp, place) = incoming.next() => {
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let conn_tx = conn_tx.clone();
                // The TLS handshake runs on its own task so a slow client cannot stall
                // accept, and has a deadline so a silent one cannot hold its place.
                tokio::spawn(async move {
                    let shake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
                    if let Ok(Ok(tls)) = shake.await {
                        let _ = conn_tx.send((tls, place));
                    }
                });
            }
            Some((tls, place)) = conn_rx.recv() => {
                let io = hyper_util::rt::TokioIo::new(tls);
                let svc = hyper_util::service::TowerToHyperService::new(app.clone());
                let conn = graceful.watch(builder.serve_connection(io, svc).into_owned());
                tokio::spawn(async move {
                    let _ = conn.await;
                    drop(place);
                });
            }
        }
    }
    drop(incoming);
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after 5 s; stopping anyway");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_stay_below_the_descriptor_limit() {
        let l = Limits::for_process(Some(1_000_000), Some(1_000_000));
        assert!(
            l.max_connections as u64 <= descriptor_limit().saturating_sub(RESERVED_FDS).max(16)
        );
        assert!(l.max_per_address <= l.max_connections);
        assert_eq!(Limits::for_process(Some(3), Some(7)).max_per_address, 3);
    }

    #[tokio::test]
    async fn an_address_gets_its_share_and_places_come_back() {
        let gate = Gate::new(Limits {
            max_connections: 3,
            max_per_address: 2,
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = gate.admit(gate.room().await, a).unwrap();
        let _a2 = gate.admit(gate.room().await, a).unwrap();
        assert!(gate.admit(gate.room().await, a).is_none(), "a's share is 2");
        let _b1 = gate.admit(gate.room().await, b).unwrap();
        assert_eq!(gate.open(), 3);
        // One IPv6 host (a /64) is one address.
        let wide = Gate::new(Limits {
            max_connections: 8,
            max_per_address: 1,
        });
        let _c = wide
            .admit(wide.room().await, "2001:db8::1".parse().unwrap())
            .unwrap();
        assert!(wide
            .admit(wide.room().await, "2001:db8::ffff:2".parse().unwrap())
            .is_none());
        assert!(wide
            .admit(wide.room().await, "2001:db8:0:1::1".parse().unwrap())
            .is_some());
        // Full: the next place comes only when one closes.
        let waiting = tokio::time::timeout(Duration::from_millis(50), gate.room()).await;
        assert!(waiting.is_err());
        drop(a1);
        let _a3 = gate.admit(gate.room().await, a).unwrap();
    }
}
