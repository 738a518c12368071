//! Helpers shared by the integration tests.
#![allow(dead_code)]

use larder::consortium::{ConsortiumConfig, LocalConsortium};
use larder::generate::Dealer;
use larder::material::PoolSpec;
use std::path::Path;

/// A fresh consortium under `dir` with the given pools.
pub fn consortium(dir: &Path, parties: u8, batch_size: u64, pools: &[PoolSpec]) -> LocalConsortium {
    LocalConsortium::init(
        &dir.join("c"),
        ConsortiumConfig::local("test", parties, 0, batch_size, pools.to_vec()),
    )
    .unwrap()
}

/// Deals `count` items of `pool` with a fixed-seed dealer.
pub fn deal(c: &LocalConsortium, pool: PoolSpec, count: u64, seed: u8) {
    let mut dealer = Dealer::from_seed([seed; 32]);
    c.deal(&mut dealer, pool, count, |_| {}).unwrap();
}

pub fn pool(id: &str) -> PoolSpec {
    id.parse().unwrap()
}
pub mod monitoring;
pub mod net;
pub mod procs;

/// A loopback address free a moment ago (for a listener a child process binds).
pub fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}
