//! A real consortium for integration tests: three party nodes on port 0 with TLS, the dealer
//! over HTTPS.

use larder::client::EngineClient;
use larder::consortium::verify;
use larder::generate::Dealer;
use larder::material::{PoolSpec, ShareReader};
use larder::node::launch::{InProcess, Launch};
use larder::node::provision::Plan;

pub struct Cluster {
    pub dir: tempfile::TempDir,
    /// The nodes, in this process; the consortium's files and addresses by `Deref`.
    pub run: InProcess,
}

impl std::ops::Deref for Cluster {
    type Target = Launch;
    fn deref(&self) -> &Launch {
        &self.run.launch
    }
}

/// A test may change the consortium file a restarted node reads (`cluster`).
impl std::ops::DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut Launch {
        &mut self.run.launch
    }
}

pub const POOLS: &[&str] = &[
    "triple-z64",
    "triple-p128",
    "square-p61",
    "bit-z64",
    "inverse-p128",
    "input-mask-p61-o1",
    "double-p128-t1",
];

pub fn pools() -> Vec<PoolSpec> {
    POOLS.iter().map(|p| p.parse().unwrap()).collect()
}

pub async fn spawn_cluster(ttl: u64) -> Cluster {
    spawn_cluster_with(ttl, &pools()).await
}

/// Three TLS nodes on port 0 keeping stock of `pools`.
pub async fn spawn_cluster_with(ttl: u64, pools: &[PoolSpec]) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let plan = Plan {
        batch_size: 5000,
        reservation_ttl_seconds: ttl,
        sweep_interval_ms: 200,
        ..Plan::local("test", 3, pools.to_vec())
    };
    let run = InProcess::start(dir.path(), plan).await.unwrap();
    Cluster { dir, run }
}

impl Cluster {
    pub fn engine(&self, party: u8) -> EngineClient {
        self.run.launch.engine(party).unwrap()
    }

    /// An engine of party `as_party` talking to party `node`'s node.
    pub fn engine_at(&self, as_party: u8, node: u8) -> EngineClient {
        let e = &self.prov.engines[as_party as usize];
        EngineClient::new(
            &self.prov.engines[node as usize].url,
            &self.ca,
            e.token.clone(),
        )
        .unwrap()
    }

    /// `larder checkout` as party `party`'s engine at its own node, writing to `out`; add
    /// `--pool`, `--count`, `--id` and any format flags.
    pub fn checkout_command(&self, party: u8, out: &std::path::Path) -> std::process::Command {
        let e = &self.prov.engines[party as usize];
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_larder"));
        cmd.arg("checkout")
            .arg("--url")
            .arg(&e.url)
            .arg("--ca")
            .arg(&self.prov.ca)
            .arg("--token-file")
            .arg(&e.token_file)
            .arg("--out")
            .arg(out);
        cmd
    }

    /// The consortium as the Python tests read it (`consortium.json` in the cluster's
    /// directory: `ca`, and per party `url` and `token_file`); its path.
    pub fn describe_for_python(&self) -> std::path::PathBuf {
        let description = serde_json::json!({
            "ca": self.prov.ca,
            "parties": self.prov.engines.iter().map(|e| serde_json::json!({
                "url": e.url, "token_file": e.token_file,
            })).collect::<Vec<_>>(),
        });
        let path = self.dir.path().join("consortium.json");
        std::fs::write(&path, description.to_string()).unwrap();
        path
    }

    pub async fn deal(&self, pool: &str, count: u64) {
        let d = self.dealer().unwrap();
        // A fresh reproducible dealer per deal (batch ids come from its stream).
        static NEXT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(1);
        let seed = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        d.deal(
            Dealer::from_seed([seed; 32]),
            pool.parse().unwrap(),
            count,
            |_| {},
        )
        .await
        .unwrap();
    }

    /// Has the nodes make `count` items of `pool` themselves with `generator` (`he`, `prss`):
    /// a job at the leader, as an operator, waited for until it is done.
    pub async fn make_at_nodes(&self, pool: &str, count: u64, generator: &str) {
        let http = larder::tls::client(&self.ca, std::time::Duration::from_secs(30)).unwrap();
        let leader = &self.prov.engines[self.cluster.leader as usize].url;
        let token = self.prov.operator_token.expose().to_string();
        let job: serde_json::Value = http
            .post(format!("{leader}/v1/jobs"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"pool": pool, "count": count, "generator": generator}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = job["id"].as_u64().unwrap_or_else(|| panic!("{job}"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let j: serde_json::Value = http
                .get(format!("{leader}/v1/jobs/{id}"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if j["state"] == "done" {
                return;
            }
            assert!(
                j["state"] != "failed" && std::time::Instant::now() < deadline,
                "{j}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(&mut self, party: usize) {
        assert!(self.run.nodes[party].is_some(), "party {party} is stopped");
        self.run.stop(party).await;
    }

    pub async fn restart(&mut self, party: usize) {
        self.run.restart(party).await.unwrap();
    }

    /// Downloads a checkout at every party and reconstructs it; returns its items.
    pub async fn download_and_verify(&self, id: &str) -> Vec<(String, u64)> {
        let mut files = Vec::new();
        let mut items = Vec::new();
        for p in 0..3u8 {
            let bytes = self.engine(p).download(id).await.unwrap();
            if p == 0 {
                let r = ShareReader::new(&bytes[..]).unwrap();
                for range in &r.header.ranges {
                    items.extend(
                        (range.first..range.first + range.count)
                            .map(|i| (range.batch.to_string(), i)),
                    );
                }
            }
            let path = self.dir.path().join(format!("{id}-{p}.shares"));
            std::fs::write(&path, &bytes).unwrap();
            files.push(path);
        }
        verify(&files).unwrap_or_else(|e| panic!("checkout {id}: {e}"));
        items
    }
}
