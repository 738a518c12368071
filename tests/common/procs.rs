//! A consortium of real processes: three `larder serve` nodes on free loopback ports and
//! `larder dealer` runs, each logging to a file in the consortium's directory.

use larder::client::EngineClient;
use larder::material::BatchId;
use larder::node::config::NodeConfig;
use larder::node::launch::{Launch, Processes};
use larder::node::provision::Plan;
use larder::store::{BatchState, Store};
use std::collections::{BTreeMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const POOL: &str = "triple-z64";
pub const LEADER: u8 = 0;
/// Input masks, which the nodes can make themselves (no dealer).
pub const MASKS: &str = "input-mask-p128-o1";
/// Triples the consortium accepts from the HE generator only (it refuses a dealer's).
pub const HE_POOL: &str = "triple-p60";

/// A process of the consortium.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Node(u8),
    Dealer,
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    /// The nodes' processes; the consortium's files and addresses by `Deref`.
    pub nodes: Processes,
    pub dealer: Option<Child>,
    pub http: reqwest::Client,
    pub dealer_token: String,
    pub log_filter: String,
    /// A command each node's `larder serve` runs under, such as a tracer (empty: none).
    pub wrap: Vec<Vec<String>>,
}

impl std::ops::Deref for Harness {
    type Target = Launch;
    fn deref(&self) -> &Launch {
        &self.nodes.launch
    }
}

impl Harness {
    /// Three `larder serve` processes on free loopback ports; `log_filter` is their RUST_LOG.
    pub fn new(log_filter: &str) -> Harness {
        Self::with_staging_deadline(log_filter, None)
    }

    /// As [`Harness::new`], with the consortium's staging deadline (which is also how long a
    /// dealer worker has to commit a piece of a job) set to `seconds`.
    pub fn with_staging_deadline(log_filter: &str, seconds: Option<u64>) -> Harness {
        Self::with_plan(log_filter, |p| {
            if let Some(s) = seconds {
                p.staging_deadline_seconds = s;
            }
        })
    }

    /// As [`Harness::new`], with the consortium's plan changed by `edit` first.
    pub fn with_plan(log_filter: &str, edit: impl FnOnce(&mut Plan)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let defaults = Plan::local(
            "crash",
            3,
            vec![
                POOL.parse().unwrap(),
                MASKS.parse().unwrap(),
                HE_POOL.parse().unwrap(),
            ],
        );
        let mut plan = Plan {
            leader: LEADER,
            batch_size: 2000,
            reservation_ttl_seconds: 2,
            sweep_interval_ms: 200,
            pool_generators: [(HE_POOL.parse().unwrap(), vec![larder::material::Maker::He])]
                .into_iter()
                .collect(),
            ..defaults
        };
        edit(&mut plan);
        let exe = std::path::Path::new(env!("CARGO_BIN_EXE_larder"));
        let nodes = Processes::provision(dir.path(), plan, exe).unwrap();
        let http = larder::tls::client(&nodes.launch.ca, Duration::from_secs(10)).unwrap();
        let dealer_token = nodes.launch.prov.dealer_token.expose().to_string();
        let mut h = Harness {
            dir,
            nodes,
            dealer: None,
            http,
            dealer_token,
            log_filter: log_filter.to_string(),
            wrap: vec![Vec::new(); 3],
        };
        for p in 0..3 {
            h.start_node(p, None);
        }
        h
    }

    pub fn log(&self, name: &str) -> Stdio {
        Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.path().join(format!("{name}.log")))
                .unwrap(),
        )
    }

    pub fn start_node(&mut self, p: u8, crash_at: Option<&str>) {
        let mut c = self.nodes.serve_command(p, &self.wrap[p as usize]);
        c.env("RUST_LOG", &self.log_filter)
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::null())
            .stderr(self.log(&format!("node-{p}")));
        if let Some(at) = crash_at {
            c.env("LARDER_CRASH_AT", at);
        }
        self.nodes.children[p as usize] = Some(c.spawn().unwrap());
    }

    /// Starts every node again (after a SIGKILL) with a metrics listener on a free loopback
    /// port each; their addresses, by party.
    pub fn restart_with_metrics(&mut self) -> Vec<std::net::SocketAddr> {
        let mut at = Vec::new();
        for p in 0..3u8 {
            self.nodes.sigkill(p as usize);
            let addr = super::free_addr();
            let mut c = self.nodes.serve_command(p, &self.wrap[p as usize]);
            c.env("RUST_LOG", &self.log_filter)
                .env("LARDER__METRICS__LISTEN", addr.to_string())
                .stdout(Stdio::null())
                .stderr(self.log(&format!("node-{p}")));
            self.nodes.children[p as usize] = Some(c.spawn().unwrap());
            at.push(addr);
        }
        at
    }

    /// `larder dealer` for `count` items of [`POOL`], as the consortium's dealer.
    pub fn dealer_command(&self, count: u64) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_larder"));
        c.args(["dealer", "--consortium"])
            .arg(&self.prov.consortium)
            .arg("--token-file")
            .arg(&self.prov.dealer_token_file)
            .args(["--pool", POOL, "--count", &count.to_string()]);
        c
    }

    /// `larder dealer --worker --until-idle` named `name`.
    pub fn worker_command(&self, name: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_larder"));
        c.args([
            "dealer",
            "--worker",
            "--until-idle",
            "--name",
            name,
            "--consortium",
        ])
        .arg(&self.prov.consortium)
        .arg("--token-file")
        .arg(&self.prov.dealer_token_file);
        c
    }

    /// Starts a dealer worker as this harness's dealer process (the [`Target::Dealer`]).
    pub fn start_worker(&mut self, name: &str, crash_at: Option<&str>) {
        let c = self.worker_command(name);
        self.spawn_dealer(c, crash_at);
    }

    /// Runs `c` as this harness's dealer process, logging to `dealer.log`.
    fn spawn_dealer(&mut self, mut c: Command, crash_at: Option<&str>) {
        c.env("RUST_LOG", &self.log_filter)
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::null())
            .stderr(self.log("dealer"));
        if let Some(at) = crash_at {
            c.env("LARDER_CRASH_AT", at);
        }
        self.dealer = Some(c.spawn().unwrap());
    }

    /// Calls the leader's `/v1/jobs...` as an operator: (status, JSON body).
    pub async fn operator(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let url = format!("{}{path}", self.prov.engines[LEADER as usize].url);
        let mut req = self
            .http
            .request(method, &url)
            .bearer_auth(self.prov.operator_token.expose());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Creates a job for `count` items of [`POOL`]; returns its id.
    pub async fn create_job(&self, count: u64) -> u64 {
        self.create_job_of(POOL, "dealer", count).await
    }

    /// Creates a job for `count` items of `pool` by `generator`; returns its id.
    pub async fn create_job_of(&self, pool: &str, generator: &str, count: u64) -> u64 {
        let (status, job) = self
            .operator(
                reqwest::Method::POST,
                "/v1/jobs",
                Some(serde_json::json!({"pool": pool, "count": count, "generator": generator})),
            )
            .await;
        assert_eq!(status, 201, "{job}");
        job["id"].as_u64().unwrap()
    }

    /// Waits until no job is queued or running, or fails after `secs`.
    pub async fn wait_jobs_over(&self, secs: u64) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let (status, jobs) = self.operator(reqwest::Method::GET, "/v1/jobs", None).await;
            assert_eq!(status, 200, "{jobs}");
            let live = jobs
                .as_array()
                .unwrap()
                .iter()
                .any(|j| j["state"] == "queued" || j["state"] == "running");
            if !live {
                return jobs;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "jobs not over: {jobs}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the nodes and reads every store offline: the batches the leader's audit log says
    /// were committed for each job (checked to be unique and available at every party), and the
    /// batches it says were revoked.
    pub fn job_evidence(&mut self) -> (BTreeMap<u64, u64>, HashSet<BatchId>) {
        for p in 0..3 {
            self.sigkill(Target::Node(p));
        }
        let stores: Vec<Store> = self
            .prov
            .nodes
            .iter()
            .map(|n| Store::open(&NodeConfig::load(n).unwrap().data_dir).unwrap())
            .collect();
        let mut made: BTreeMap<u64, u64> = BTreeMap::new();
        let mut seen = HashSet::new();
        let mut revoked = HashSet::new();
        for r in stores[LEADER as usize].audit_trail().unwrap() {
            let batch = r.batch.unwrap_or(BatchId([0; 16]));
            let job: u64 = match r.by.as_deref().and_then(|b| b.strip_prefix("job ")) {
                Some(rest) => rest.split(' ').next().unwrap().parse().unwrap(),
                None => continue,
            };
            match r.event.as_str() {
                "job-piece" => {
                    assert!(seen.insert(batch), "batch {batch} counted twice for a job");
                    *made.entry(job).or_default() += r.ranges[0].count;
                    for (p, s) in stores.iter().enumerate() {
                        let meta = s.batch_meta(&batch).unwrap().unwrap_or_else(|| {
                            panic!("batch {batch} of job {job} is missing at party {p}")
                        });
                        // Committed means available at the leader and staged everywhere: a
                        // follower makes it available when the leader first allocates from it
                        // (or its sweep asks), which a node killed right after the commit may
                        // not have done yet.
                        let ok =
                            matches!(meta.state, BatchState::Available | BatchState::Exhausted)
                                || (p != LEADER as usize && meta.state == BatchState::Staged);
                        assert!(ok, "party {p}: {:?}", meta.state);
                        assert_eq!(meta.items, r.ranges[0].count, "party {p}");
                    }
                }
                "job-piece-revoked" => {
                    revoked.insert(batch);
                }
                other => panic!("unexpected job audit event {other}"),
            }
        }
        assert!(seen.is_disjoint(&revoked), "a revoked piece was counted");
        (made, revoked)
    }

    pub fn start_dealer(&mut self, count: u64, crash_at: Option<&str>) {
        let c = self.dealer_command(count);
        self.spawn_dealer(c, crash_at);
    }

    pub fn child(&mut self, t: Target) -> &mut Option<Child> {
        match t {
            Target::Node(p) => &mut self.nodes.children[p as usize],
            Target::Dealer => &mut self.dealer,
        }
    }

    /// How `t` ended, if it has (reaped if so).
    pub fn ended(&mut self, t: Target) -> Option<std::process::ExitStatus> {
        let status = self.child(t).as_mut()?.try_wait().unwrap()?;
        *self.child(t) = None;
        Some(status)
    }

    /// Kills `t` with SIGKILL (and what it runs, if it runs under a wrapper such as a tracer);
    /// whether it was still running.
    pub fn sigkill(&mut self, t: Target) -> bool {
        self.child(t)
            .take()
            .is_some_and(larder::node::launch::sigkill)
    }

    /// Fails the test if a node died of anything but the harness's SIGKILL.
    pub fn assert_nodes_alive(&mut self, except: Option<Target>) {
        for p in 0..3u8 {
            if Some(Target::Node(p)) == except {
                continue;
            }
            if let Some(status) = self.ended(Target::Node(p)) {
                let log = std::fs::read_to_string(self.dir.path().join(format!("node-{p}.log")))
                    .unwrap_or_default();
                let tail: String = log.lines().rev().take(30).collect::<Vec<_>>().join("\n");
                panic!("node {p} died on its own ({status}); its log, newest first:\n{tail}");
            }
        }
    }

    pub fn engines(&self) -> Vec<EngineClient> {
        self.nodes.launch.engines().unwrap()
    }

    pub async fn wait_healthy(&self) {
        self.nodes
            .launch
            .wait_healthy(Duration::from_secs(20))
            .await
            .unwrap();
    }

    /// Calls `path` at party `p`'s node as the dealer: (status, JSON body).
    pub async fn as_dealer(
        &self,
        method: reqwest::Method,
        p: u8,
        path: &str,
    ) -> (u16, serde_json::Value) {
        let url = format!("{}{path}", self.prov.engines[p as usize].url);
        let r = self
            .http
            .request(method, &url)
            .bearer_auth(&self.dealer_token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// A batch's state at a party, as the node reports it to the dealer.
    pub async fn batch_state(&self, p: u8, batch: BatchId) -> String {
        let path = format!("/v1/internal/batches/{batch}");
        let (_, v) = self.as_dealer(reqwest::Method::GET, p, &path).await;
        v.get("state")
            .and_then(|s| s.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| format!("{v}"))
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // Before the directory goes.
        for p in 0..3 {
            self.sigkill(Target::Node(p));
        }
        self.sigkill(Target::Dealer);
    }
}

/// Sets a consortium file's staging deadline (nodes and dealers read it when they start).
pub fn set_staging_deadline(consortium: &std::path::Path, seconds: u64) {
    let text = std::fs::read_to_string(consortium).unwrap();
    let mut table: toml::Table = toml::from_str(&text).unwrap();
    table.insert(
        "staging_deadline_seconds".into(),
        toml::Value::Integer(seconds as i64),
    );
    std::fs::write(consortium, toml::to_string(&table).unwrap()).unwrap();
}
