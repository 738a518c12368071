//! Creates everything a consortium on this machine needs: a CA, node certificates, tokens
//! (stored hashed in the consortium file, in clear only in owner-readable files), the
//! consortium file and one node file per party.

use super::config::{ConsortiumConfig, EngineEntry, NodeConfig, Parties, PartyEntry};
use crate::auth::Token;
use crate::material::PoolSpec;
use crate::tls::Ca;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// What to create.
#[derive(Clone, Debug)]
pub struct Plan {
    pub name: String,
    pub leader: u8,
    /// Where each party's node will listen; its URL is `https://<addr>`.
    pub addrs: Vec<SocketAddr>,
    pub pools: Vec<PoolSpec>,
    pub batch_size: u64,
    pub reservation_ttl_seconds: u64,
    pub sweep_interval_ms: u64,
    /// A batch staged but never committed is removed after this long (and a dealer worker's
    /// piece of a job taken back).
    pub staging_deadline_seconds: u64,
    /// A settled reservation leaves the hot metadata after this long.
    pub archive_after_seconds: u64,
    /// Pools restricted to some generators (see `ConsortiumConfig::pool_generators`).
    pub pool_generators: std::collections::BTreeMap<PoolSpec, Vec<crate::material::Maker>>,
    /// Pools restricted to some assumptions (see `ConsortiumConfig::pool_assumptions`).
    pub pool_assumptions: std::collections::BTreeMap<PoolSpec, Vec<crate::material::Assumption>>,
    /// Stock policies (see `ConsortiumConfig::stock`) and how often the scheduler looks.
    pub stock: std::collections::BTreeMap<PoolSpec, crate::schedule::StockPolicy>,
    pub schedule_interval_ms: u64,
    /// Each party's `[schedule]` (windows, clock), by party; missing ones are the default.
    pub schedules: Vec<crate::config::ScheduleConfig>,
    /// Where the other parties reach each party, as `host:port`, by party (the URL is
    /// `https://host:port` and the certificate names the host); missing ones are the listen
    /// address.
    pub public: Vec<String>,
    /// Each node's `[metrics] listen`; `None`: no metrics listener.
    pub metrics: Option<SocketAddr>,
    /// Each node's store, relative to its node file (default `store`).
    pub data_dir: Option<PathBuf>,
}

impl Plan {
    /// `parties` nodes on loopback (ports to be chosen: see [`super::launch`]), leader 0,
    /// batches of 2^16 items, the consortium file's default timings.
    pub fn local(name: &str, parties: u8, pools: Vec<PoolSpec>) -> Plan {
        let defaults = ConsortiumConfig::local(name, parties, 0, 1 << 16, pools);
        Plan {
            name: name.into(),
            leader: 0,
            addrs: vec![SocketAddr::from(([127, 0, 0, 1], 0)); parties as usize],
            pools: defaults.pools,
            batch_size: defaults.batch_size,
            reservation_ttl_seconds: defaults.reservation_ttl_seconds,
            sweep_interval_ms: defaults.sweep_interval_ms,
            staging_deadline_seconds: defaults.staging_deadline_seconds,
            archive_after_seconds: defaults.archive_after_seconds,
            pool_generators: defaults.pool_generators,
            pool_assumptions: defaults.pool_assumptions,
            stock: defaults.stock,
            schedule_interval_ms: defaults.schedule_interval_ms,
            schedules: Vec::new(),
            public: Vec::new(),
            metrics: None,
            data_dir: None,
        }
    }

    /// Parties on their own hosts: party `i` is reached at `public[i]` (`host:port`) and its
    /// node listens on `listen` (every interface, default, at that port), leader 0.
    ///
    /// # Errors
    /// An address that is not `host:port`, or fewer than two parties.
    pub fn networked(
        name: &str,
        public: Vec<String>,
        listen: Option<SocketAddr>,
        pools: Vec<PoolSpec>,
    ) -> Result<Plan> {
        anyhow::ensure!(
            (2..=u8::MAX as usize).contains(&public.len()),
            "a consortium needs 2 to 255 parties; {} given",
            public.len()
        );
        let mut addrs = Vec::new();
        for p in &public {
            let (host, port) = split_host_port(p)?;
            anyhow::ensure!(!host.is_empty(), "{p:?}: no host");
            addrs.push(listen.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], port))));
        }
        Ok(Plan {
            addrs,
            public,
            ..Plan::local(name, 2, pools)
        })
    }
}

/// `host:port` (an IPv6 host in brackets).
fn split_host_port(at: &str) -> Result<(&str, u16)> {
    let (host, port) = at
        .rsplit_once(':')
        .with_context(|| format!("{at:?} is not host:port"))?;
    let port = port
        .parse()
        .with_context(|| format!("{at:?}: {port:?} is not a port"))?;
    Ok((host.trim_start_matches('[').trim_end_matches(']'), port))
}

/// An engine's credentials, as handed to its operator.
#[derive(Clone, Debug)]
pub struct EngineCredentials {
    pub name: String,
    pub party: u8,
    pub url: String,
    pub token: Token,
    pub token_file: PathBuf,
}

/// The files created.
#[derive(Clone, Debug)]
pub struct Provisioned {
    pub consortium: PathBuf,
    pub ca: PathBuf,
    pub nodes: Vec<PathBuf>,
    pub engines: Vec<EngineCredentials>,
    pub dealer_token: Token,
    pub dealer_token_file: PathBuf,
    pub operator_token: Token,
    pub operator_token_file: PathBuf,
    /// Reads the audit trails (`auditor.token`).
    pub auditor_token: Token,
    pub auditor_token_file: PathBuf,
}

/// Writes a secret file readable by its owner only.
fn write_secret(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// Creates the consortium under `dir`: `consortium.toml`, `ca.pem`, `dealer.token`,
/// `operator.token`, `auditor.token`,
/// `engines/<name>.token` and `engines/<name>.url` (its node), and `party-<i>/{node.toml,cert.pem,key.pem}` (stores go in
/// `party-<i>/store`). One engine per party, granted every pool.
///
/// # Errors
/// IO or certificate failures.
pub fn provision(dir: &Path, plan: &Plan) -> Result<Provisioned> {
    std::fs::create_dir_all(dir.join("engines"))?;
    let ca = Ca::generate(&plan.name)?;
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca.cert_pem())?;
    let dealer_token = Token::generate("ld");
    let dealer_token_file = dir.join("dealer.token");
    write_secret(&dealer_token_file, dealer_token.expose())?;
    let operator_token = Token::generate("lo");
    let operator_token_file = dir.join("operator.token");
    write_secret(&operator_token_file, operator_token.expose())?;
    let auditor_token = Token::generate("la");
    let auditor_token_file = dir.join("auditor.token");
    write_secret(&auditor_token_file, auditor_token.expose())?;
    let mut parties = Vec::new();
    let mut nodes = Vec::new();
    let mut engines = Vec::new();
    let mut engine_entries = Vec::new();
    for (i, addr) in plan.addrs.iter().enumerate() {
        let party = i as u8;
        let pdir = dir.join(format!("party-{i}"));
        std::fs::create_dir_all(&pdir)?;
        let (host, url) = match plan.public.get(i) {
            Some(at) => (split_host_port(at)?.0.to_string(), format!("https://{at}")),
            None => (addr.ip().to_string(), format!("https://{addr}")),
        };
        let issued = ca.issue(&format!("larder party {i}"), &[&host, "localhost"])?;
        std::fs::write(pdir.join("cert.pem"), &issued.cert_pem)?;
        write_secret(&pdir.join("key.pem"), &issued.key_pem)?;
        let node_token = Token::generate("ln");
        parties.push(PartyEntry {
            id: party,
            name: format!("site-{}", (b'a' + party) as char),
            url: url.clone(),
            certificate: PathBuf::from(format!("party-{i}/cert.pem")),
            node_token_sha256: node_token.hash(),
        });
        let node = NodeConfig {
            party,
            consortium: PathBuf::from("../consortium.toml"),
            data_dir: plan
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("store")),
            listen: *addr,
            tls_certificate: PathBuf::from("cert.pem"),
            tls_key: PathBuf::from("key.pem"),
            node_token,
            max_connections: None,
            max_connections_per_address: None,
            min_free_bytes: None,
            metrics: crate::config::MetricsConfig {
                listen: plan.metrics,
                tls: false,
            },
            archive: Default::default(),
            schedule: plan.schedules.get(i).cloned().unwrap_or_default(),
        };
        let node_path = pdir.join("node.toml");
        write_secret(&node_path, &toml::to_string_pretty(&node)?)?;
        nodes.push(node_path);
        let name = format!("engine-{i}");
        let token = Token::generate("le");
        let token_file = dir.join("engines").join(format!("{name}.token"));
        write_secret(&token_file, token.expose())?;
        // The node's URL beside the token, so scripts need not parse the demo's output.
        std::fs::write(
            dir.join("engines").join(format!("{name}.url")),
            format!("{url}\n"),
        )?;
        engine_entries.push(EngineEntry {
            name: name.clone(),
            party,
            token_sha256: token.hash(),
            pools: plan.pools.clone(),
        });
        engines.push(EngineCredentials {
            name,
            party,
            url,
            token,
            token_file,
        });
    }
    let cluster = ConsortiumConfig {
        name: plan.name.clone(),
        leader: plan.leader,
        batch_size: plan.batch_size,
        reservation_ttl_seconds: plan.reservation_ttl_seconds,
        staging_deadline_seconds: plan.staging_deadline_seconds,
        sweep_interval_ms: plan.sweep_interval_ms,
        max_checkout_items: 1 << 30,
        ca_certificate: Some(PathBuf::from("ca.pem")),
        parties: Parties::Nodes(parties),
        pools: plan.pools.clone(),
        engines: engine_entries,
        dealer_token_sha256: Some(dealer_token.hash()),
        operator_token_sha256: Some(operator_token.hash()),
        auditor_token_sha256: Some(auditor_token.hash()),
        archive_after_seconds: plan.archive_after_seconds,
        pool_generators: plan.pool_generators.clone(),
        pool_assumptions: plan.pool_assumptions.clone(),
        stock: plan.stock.clone(),
        schedule_interval_ms: plan.schedule_interval_ms,
        forecast_hours: defaults_of_config().forecast_hours,
        job_history_days: defaults_of_config().job_history_days,
    };
    cluster.validate()?;
    let consortium = dir.join("consortium.toml");
    std::fs::write(&consortium, toml::to_string_pretty(&cluster)?)?;
    Ok(Provisioned {
        consortium,
        ca: ca_path,
        nodes,
        engines,
        dealer_token,
        dealer_token_file,
        operator_token,
        operator_token_file,
        auditor_token,
        auditor_token_file,
    })
}

/// A consortium file's defaults, for the settings a plan does not choose.
fn defaults_of_config() -> ConsortiumConfig {
    ConsortiumConfig::local("defaults", 2, 0, 1, Vec::new())
}
