//! The machine's floor for the checkout round trip: how many trivial TLS requests per second
//! 32 concurrent engines get from a running consortium (`GET /v1/health`, no store, no shares).
//! A round trip is at least four engine requests (one checkout, three downloads), so a quarter
//! of this rate bounds the round trips per second before any real work is done.
//!
//! ```text
//! larder demo --dir /tmp/floor &   # wait for "serving"
//! cargo run --release --example tls_floor -- /tmp/floor
//! ```
use larder::auth::Token;
use larder::client::EngineClient;
use std::time::Instant;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or_else(|| anyhow::anyhow!("usage: tls_floor <demo dir>"))?,
    );
    let ca = std::fs::read_to_string(dir.join("ca.pem"))?;
    let mut engines = Vec::new();
    for p in 0..3 {
        let url = std::fs::read_to_string(dir.join(format!("engines/engine-{p}.url")))?;
        let token = std::fs::read_to_string(dir.join(format!("engines/engine-{p}.token")))?;
        engines.push(EngineClient::new(
            url.trim(),
            &ca,
            Token::new(token.trim()),
        )?);
    }
    const ENGINES: usize = 32;
    const PER_ENGINE: usize = 400;
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..ENGINES {
        let e = engines[t % 3].clone();
        tasks.spawn(async move {
            for _ in 0..PER_ENGINE {
                e.health().await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let rate = (ENGINES * PER_ENGINE) as f64 / start.elapsed().as_secs_f64();
    println!(
        "{rate:.0} TLS requests/s from {ENGINES} engines; at 4 requests per round trip: {:.0} round trips/s",
        rate / 4.0
    );
    Ok(())
}
