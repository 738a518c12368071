//! Configuration: the consortium file, `consortium.toml`, identical at every party (one shape
//! for every mode), and one `node.toml` per party node, with `LARDER__<KEY>` environment
//! overrides.
//!
//! A consortium whose party stores all sit on this machine (the CLI's local mode: `larder init`,
//! `deal`, `take`) names how many parties it has, `parties = 3`; a consortium of party nodes
//! lists them (`[[parties]]` with url, certificate and node token hash) and adds the network
//! settings (CA, engines, the dealer's and operators' token hashes). Both are the same type,
//! read the same way; the local mode opens either, a node only the second.

use crate::auth::Token;
use crate::material::{Maker, PoolSpec};
use crate::schedule::{clock::SimulatedClock, StockPolicy, Windows};
use anyhow::{anyhow, bail, Context, Result};
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The consortium file: the same bytes at every party.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsortiumConfig {
    /// A name for the consortium, recorded in every store.
    pub name: String,
    /// The party whose node (or store) allocates checkouts and decides which batches are
    /// available.
    pub leader: u8,
    /// Items per batch when dealing.
    pub batch_size: u64,
    /// A reservation nobody downloaded goes back to stock after this long; one that some
    /// party downloaded is burned.
    #[serde(default = "defaults::ttl")]
    pub reservation_ttl_seconds: u64,
    /// A batch staged but never committed is removed after this long.
    #[serde(default = "defaults::staging_deadline")]
    pub staging_deadline_seconds: u64,
    /// How often each node looks for expired reservations and abandoned batches.
    #[serde(default = "defaults::sweep")]
    pub sweep_interval_ms: u64,
    /// Largest checkout an engine may ask for.
    #[serde(default = "defaults::max_checkout")]
    pub max_checkout_items: u64,
    /// The consortium CA certificate (PEM), relative to this file (party nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<PathBuf>,
    pub parties: Parties,
    /// The pools this consortium keeps stock of.
    pub pools: Vec<PoolSpec>,
    /// The online engines allowed to check out (party nodes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub engines: Vec<EngineEntry>,
    /// SHA-256 of the dealer's token (also its workers'); none in a consortium without a
    /// dealer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dealer_token_sha256: Option<String>,
    /// The operators' token (creates and lists generation jobs at the leader); none in
    /// consortiums provisioned before jobs existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_token_sha256: Option<String>,
    /// The auditors' token: reads any node's audit trail (`GET /v1/audit`) and nothing else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auditor_token_sha256: Option<String>,
    /// A reservation in its final state (downloaded, released, burned) leaves the store's hot
    /// metadata this long after it was made (its history stays in the audit trail); after
    /// that, its checkout id is no longer known there. At least twice the reservation TTL.
    #[serde(default = "defaults::archive_after")]
    pub archive_after_seconds: u64,
    /// Pools restricted to some generators, by pool: `"triple-p60" = ["he"]` makes a pool
    /// HE-only (a consortium that refuses a dealer), and every party then refuses a dealer's
    /// batch of it at staging. Pools not named accept every generator that can make them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pool_generators: BTreeMap<PoolSpec, Vec<Maker>>,
    /// The assumptions a pool's material may rest on, by pool: `"triple-z64" =
    /// ["dishonest-majority", "honest-majority"]` accepts material made with no dealer,
    /// `["dishonest-majority"]` only material that stays secure however many parties but one
    /// collude (it refuses PRSS's honest-majority material). Every party refuses other
    /// batches of the pool at staging. Pools not named accept every assumption.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pool_assumptions: BTreeMap<PoolSpec, Vec<crate::material::Assumption>>,
    /// Stock policies by pool (`[stock."triple-z64"]`): the leader's scheduler keeps these
    /// pools stocked by itself (see `schedule`). Pools not named are left to operators.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stock: BTreeMap<PoolSpec, StockPolicy>,
    /// How often the leader's scheduler looks at stock (milliseconds).
    #[serde(default = "defaults::schedule_interval")]
    pub schedule_interval_ms: u64,
    /// The forecast's time constant: consumption older than this counts for less (hours).
    #[serde(default = "defaults::forecast_hours")]
    pub forecast_hours: f64,
    /// Finished jobs are forgotten this many days after they ended.
    #[serde(default = "defaults::job_history_days")]
    pub job_history_days: u64,
}

/// The parties: how many (their stores all on this machine), or their nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Parties {
    Count(u8),
    Nodes(Vec<PartyEntry>),
}

mod defaults {
    pub fn ttl() -> u64 {
        600
    }
    pub fn staging_deadline() -> u64 {
        600
    }
    pub fn sweep() -> u64 {
        1000
    }
    pub fn max_checkout() -> u64 {
        1 << 30
    }
    pub fn archive_after() -> u64 {
        86_400
    }
    pub fn schedule_interval() -> u64 {
        2000
    }
    pub fn forecast_hours() -> f64 {
        24.0
    }
    pub fn job_history_days() -> u64 {
        30
    }
}

/// One party of the consortium.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartyEntry {
    pub id: u8,
    pub name: String,
    /// Base URL of the party's node, `https://host:port`.
    pub url: String,
    /// The node's TLS certificate (PEM), relative to the consortium file.
    pub certificate: PathBuf,
    /// SHA-256 of the token this node presents to the others.
    pub node_token_sha256: String,
}

/// An online engine: which party's node it may use and which pools.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineEntry {
    pub name: String,
    pub party: u8,
    pub token_sha256: String,
    pub pools: Vec<PoolSpec>,
}

impl ConsortiumConfig {
    /// A consortium whose `parties` party stores all sit on this machine, with the default
    /// timings.
    pub fn local(
        name: &str,
        parties: u8,
        leader: u8,
        batch_size: u64,
        pools: Vec<PoolSpec>,
    ) -> Self {
        ConsortiumConfig {
            name: name.into(),
            leader,
            batch_size,
            reservation_ttl_seconds: defaults::ttl(),
            staging_deadline_seconds: defaults::staging_deadline(),
            sweep_interval_ms: defaults::sweep(),
            max_checkout_items: defaults::max_checkout(),
            ca_certificate: None,
            parties: Parties::Count(parties),
            pools,
            engines: Vec::new(),
            dealer_token_sha256: None,
            operator_token_sha256: None,
            auditor_token_sha256: None,
            archive_after_seconds: defaults::archive_after(),
            pool_generators: BTreeMap::new(),
            pool_assumptions: BTreeMap::new(),
            stock: BTreeMap::new(),
            schedule_interval_ms: defaults::schedule_interval(),
            forecast_hours: defaults::forecast_hours(),
            job_history_days: defaults::job_history_days(),
        }
    }

    /// Reads and checks a consortium file of either shape, with `LARDER__CONSORTIUM__<KEY>`
    /// overrides; relative paths are resolved against its directory.
    ///
    /// # Errors
    /// Unreadable or invalid files, with the reason.
    pub fn load(path: &Path) -> Result<ConsortiumConfig> {
        let mut cfg: ConsortiumConfig =
            layered(path, Env::prefixed("LARDER__CONSORTIUM__").split("__"))?;
        let base = path.parent().unwrap_or(Path::new("."));
        if let Some(ca) = &mut cfg.ca_certificate {
            *ca = base.join(&*ca);
        }
        if let Parties::Nodes(nodes) = &mut cfg.parties {
            for p in nodes {
                p.certificate = base.join(&p.certificate);
            }
        }
        cfg.validate()
            .with_context(|| format!("checking {}", path.display()))?;
        Ok(cfg)
    }

    /// Reads a consortium file of party nodes (see [`Self::load`]).
    ///
    /// # Errors
    /// As [`Self::load`], and a file that does not list the parties' nodes and the CA.
    pub fn load_nodes(path: &Path) -> Result<ConsortiumConfig> {
        let cfg = Self::load(path)?;
        cfg.require_nodes()
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        Ok(cfg)
    }

    /// Checks that the parties are nodes, as every networked use needs.
    ///
    /// # Errors
    /// Parties only counted, or no CA certificate.
    pub fn require_nodes(&self) -> Result<()> {
        if self.nodes().is_empty() || self.ca_certificate.is_none() {
            bail!(
                "the consortium's parties are not nodes: list them as [[parties]] \
                 (id, name, url, certificate, node_token_sha256) and give ca_certificate"
            );
        }
        Ok(())
    }

    /// # Errors
    /// The first inconsistency found.
    pub fn validate(&self) -> Result<()> {
        let n = match &self.parties {
            Parties::Count(n) => *n as usize,
            Parties::Nodes(nodes) => nodes.len(),
        };
        if !(2..=crate::material::MAX_PARTIES as usize).contains(&n) {
            bail!(
                "a consortium has 2 to {} parties, found {n}",
                crate::material::MAX_PARTIES
            );
        }
        for (i, p) in self.nodes().iter().enumerate() {
            if p.id as usize != i {
                bail!(
                    "parties must be listed in id order 0..{n}; entry {i} has id {}",
                    p.id
                );
            }
            if !p.url.starts_with("https://") {
                bail!("party {} url {:?} must be https", p.id, p.url);
            }
        }
        if self.leader as usize >= n {
            bail!("leader {} is not one of the {n} parties", self.leader);
        }
        if self.archive_after_seconds < self.reservation_ttl_seconds.saturating_mul(2) {
            bail!(
                "archive_after_seconds ({}) must be at least twice reservation_ttl_seconds ({}): \
                 a reservation leaves the hot metadata only well after it has expired",
                self.archive_after_seconds,
                self.reservation_ttl_seconds
            );
        }
        if self.batch_size == 0 || self.batch_size > 1 << 26 {
            bail!("batch_size {} must be between 1 and 2^26", self.batch_size);
        }
        for pool in &self.pools {
            pool.validate(n as u8)
                .map_err(|e| anyhow!("pool {pool}: {e}"))?;
        }
        for (pool, makers) in &self.pool_generators {
            if !self.pools.contains(pool) {
                bail!("pool_generators names pool {pool}, which the consortium does not keep");
            }
            if makers.is_empty() {
                bail!("pool_generators allows no generator for pool {pool}: nothing could make it");
            }
            if let Some(m) = makers
                .iter()
                .find(|m| !crate::generate::can_make(**m, pool, self.parties()))
            {
                bail!("pool_generators allows the {m} generator for pool {pool}, which it cannot make");
            }
        }
        for (pool, assumptions) in &self.pool_assumptions {
            if !self.pools.contains(pool) {
                bail!("pool_assumptions names pool {pool}, which the consortium does not keep");
            }
            if !Maker::ALL.iter().any(|m| {
                self.allows(pool, *m) && crate::generate::can_make(*m, pool, self.parties())
            }) {
                bail!(
                    "pool_assumptions leaves pool {pool} no generator that can make it (accepted: {})",
                    assumptions
                        .iter()
                        .map(|a| a.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        for (pool, policy) in &self.stock {
            if !self.pools.contains(pool) {
                bail!("stock names pool {pool}, which the consortium does not keep");
            }
            policy
                .validate()
                .map_err(|e| anyhow!("stock policy of pool {pool}: {e}"))?;
            if let Some(g) = &policy.generator {
                let maker: Maker = g
                    .parse()
                    .map_err(|e| anyhow!("stock policy of pool {pool}: {e}"))?;
                if !crate::generate::can_make(maker, pool, self.parties())
                    || !self.allows(pool, maker)
                {
                    bail!("stock policy of pool {pool}: the {maker} generator cannot make it here");
                }
            }
        }
        if !(self.forecast_hours.is_finite() && self.forecast_hours > 0.0) {
            bail!(
                "forecast_hours ({}) must be a positive number",
                self.forecast_hours
            );
        }
        if self.schedule_interval_ms == 0 {
            bail!("schedule_interval_ms must be at least 1");
        }
        for e in &self.engines {
            if e.party as usize >= n {
                bail!(
                    "engine {:?} names party {}, which does not exist",
                    e.name,
                    e.party
                );
            }
            if let Some(p) = e.pools.iter().find(|p| !self.pools.contains(p)) {
                bail!(
                    "engine {:?} is granted pool {p}, which the consortium does not keep",
                    e.name
                );
            }
        }
        Ok(())
    }

    /// Whether the consortium accepts batches of `pool` made by `maker` (its
    /// `pool_generators` and its `pool_assumptions`).
    pub fn allows(&self, pool: &PoolSpec, maker: Maker) -> bool {
        self.pool_generators
            .get(pool)
            .is_none_or(|m| m.contains(&maker))
            && self
                .pool_assumptions
                .get(pool)
                .is_none_or(|a| a.contains(&maker.assumption()))
    }

    /// The generators each restricted pool accepts (what every party's store enforces).
    pub fn allowed_makers(&self) -> BTreeMap<PoolSpec, Vec<Maker>> {
        self.pool_generators
            .keys()
            .chain(self.pool_assumptions.keys())
            .map(|pool| {
                let makers = Maker::ALL
                    .into_iter()
                    .filter(|m| self.allows(pool, *m))
                    .collect();
                (*pool, makers)
            })
            .collect()
    }

    pub fn parties(&self) -> u8 {
        match &self.parties {
            Parties::Count(n) => *n,
            Parties::Nodes(nodes) => nodes.len() as u8,
        }
    }

    /// The parties' nodes; none when the parties are only counted.
    pub fn nodes(&self) -> &[PartyEntry] {
        match &self.parties {
            Parties::Count(_) => &[],
            Parties::Nodes(nodes) => nodes,
        }
    }

    /// The CA certificate's path.
    ///
    /// # Errors
    /// A consortium file without one (its parties are not nodes).
    pub fn ca_certificate(&self) -> Result<&Path> {
        self.ca_certificate
            .as_deref()
            .ok_or_else(|| anyhow!("the consortium file names no ca_certificate"))
    }
}

/// One node's own file: who it is, where it keeps its store, where it listens, its secrets.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub party: u8,
    /// The consortium file, relative to this file.
    pub consortium: PathBuf,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub tls_certificate: PathBuf,
    pub tls_key: PathBuf,
    /// This node's token for calls to the other nodes (secret).
    pub node_token: Token,
    /// Most connections open at once (default 4096, never more than the descriptor limit
    /// leaves room for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Most connections from one client address (default 512).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections_per_address: Option<usize>,
    /// Bytes of the store's file system a staging must leave free (default 256 MiB): a batch
    /// that would leave less is refused with 507, so checkouts and downloads keep room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_free_bytes: Option<u64>,
    /// The metrics listener (none unless configured).
    #[serde(default, skip_serializing_if = "MetricsConfig::is_off")]
    pub metrics: MetricsConfig,
    /// The audit trail's archive files (see `store::audit`).
    #[serde(default, skip_serializing_if = "ArchiveConfig::is_default")]
    pub archive: ArchiveConfig,
    /// This site's generation windows and how generation runs here.
    #[serde(default, skip_serializing_if = "ScheduleConfig::is_default")]
    pub schedule: ScheduleConfig,
}

/// `[schedule]` in a node file: when this site lends its machines to generation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Windows in the site's time zone, such as `"01:00-06:00 Europe/London"` or
    /// `"cron * 1-5 * * Mon-Fri Europe/London"` (see `schedule::window`). None: any time.
    /// Generation that needs every party runs only where every party's windows overlap.
    #[serde(default, skip_serializing_if = "Windows::always")]
    pub windows: Windows,
    /// The nice value of the threads that make this party's share (HE and the parties' own
    /// generators), so generation yields to other work on the machine (default 10; 0 keeps
    /// the node's priority).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation_nice: Option<i32>,
    /// A simulated clock for the scheduler (rehearsing a policy, tests): it starts at `start`
    /// and runs `speed` times real time. Never in production.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<SimulatedClock>,
}

impl ScheduleConfig {
    fn is_default(&self) -> bool {
        *self == ScheduleConfig::default()
    }
}

/// `[archive]` in a node file: the audit trail's archive files.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    /// A new archive file starts once the newest holds this many bytes (default 64 MiB), or
    /// on a new day (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_bytes: Option<u64>,
    /// Archive files whose newest record is older than this many days are deleted (never the
    /// newest file). Default: kept for ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u64>,
}

impl ArchiveConfig {
    fn is_default(&self) -> bool {
        *self == ArchiveConfig::default()
    }

    /// The store's policy from this section.
    pub fn policy(&self) -> crate::store::ArchivePolicy {
        let d = crate::store::ArchivePolicy::default();
        crate::store::ArchivePolicy {
            file_bytes: self.file_bytes.unwrap_or(d.file_bytes),
            retention: self
                .retention_days
                .map(|days| std::time::Duration::from_secs(days.saturating_mul(86_400))),
        }
    }
}

/// `[metrics]` in a node file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where to serve `GET /metrics` (plain HTTP; keep it on loopback or a private network),
    /// such as `127.0.0.1:9464`. None: no metrics listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Serve it over TLS with the node's certificate (scrapers then trust the consortium CA),
    /// for a metrics address off the machine. Default: plain HTTP.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
}

impl MetricsConfig {
    fn is_off(&self) -> bool {
        self.listen.is_none() && !self.tls
    }
}

/// A configuration file with environment overrides on top (figment): the file's values, then
/// `env`'s.
fn layered<T: serde::de::DeserializeOwned>(path: &Path, env: Env) -> Result<T> {
    if !path.exists() {
        bail!("reading {}: no such file", path.display());
    }
    Figment::from(Toml::file_exact(path))
        .merge(env)
        .extract()
        .map_err(|e| anyhow!("{}: {e}", path.display()))
}

impl NodeConfig {
    /// Reads a node file, applies `LARDER__<KEY>=value` environment overrides, nested keys
    /// separated by `__` (for example `LARDER__LISTEN=0.0.0.0:7443`,
    /// `LARDER__METRICS__LISTEN=127.0.0.1:9464`), and resolves relative paths against the
    /// file's directory.
    ///
    /// # Errors
    /// Unreadable or invalid files and overrides.
    pub fn load(path: &Path) -> Result<NodeConfig> {
        // `LARDER__CONSORTIUM__*` belongs to the consortium file (see `ConsortiumConfig::load`).
        let env = Env::prefixed("LARDER__")
            .filter(|k| !k.as_str().to_ascii_lowercase().starts_with("consortium__"))
            .split("__");
        let mut cfg: NodeConfig = layered(path, env)?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut cfg.consortium,
            &mut cfg.data_dir,
            &mut cfg.tls_certificate,
            &mut cfg.tls_key,
        ] {
            *p = base.join(&*p);
        }
        Ok(cfg)
    }
}
