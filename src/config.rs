//! Configuration of a networked consortium: `consortium.toml`, identical at every party, and
//! one `node.toml` per party node, with `LARDER__<KEY>` environment overrides.

use crate::auth::Token;
use crate::material::PoolSpec;
use anyhow::{anyhow, bail, Context, Result};
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The consortium file: the same bytes at every party.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub name: String,
    /// The party whose node allocates checkouts and decides which batches are available.
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
    /// The consortium CA certificate (PEM), relative to this file.
    pub ca_certificate: PathBuf,
    pub parties: Vec<PartyEntry>,
    pub pools: Vec<PoolSpec>,
    pub engines: Vec<EngineEntry>,
    /// SHA-256 of the dealer's token.
    pub dealer_token_sha256: String,
    /// The operators' token (creates and lists generation jobs at the leader); none in
    /// consortiums provisioned before jobs existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_token_sha256: Option<String>,
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
}

/// One party of the consortium.
#[derive(Clone, Debug, Serialize, Deserialize)]
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
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineEntry {
    pub name: String,
    pub party: u8,
    pub token_sha256: String,
    pub pools: Vec<PoolSpec>,
}

impl ClusterConfig {
    /// Reads and checks a consortium file; relative paths are resolved against its directory.
    ///
    /// # Errors
    /// Unreadable or invalid files, with the reason.
    pub fn load(path: &Path) -> Result<ClusterConfig> {
        let mut cfg: ClusterConfig =
            layered(path, Env::prefixed("LARDER__CONSORTIUM__").split("__"))?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.ca_certificate = base.join(&cfg.ca_certificate);
        for p in &mut cfg.parties {
            p.certificate = base.join(&p.certificate);
        }
        cfg.validate()
            .with_context(|| format!("checking {}", path.display()))?;
        Ok(cfg)
    }

    /// # Errors
    /// The first inconsistency found.
    pub fn validate(&self) -> Result<()> {
        let n = self.parties.len();
        if !(2..=crate::material::MAX_PARTIES as usize).contains(&n) {
            bail!(
                "a consortium has 2 to {} parties, found {n}",
                crate::material::MAX_PARTIES
            );
        }
        for (i, p) in self.parties.iter().enumerate() {
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
        if self.batch_size == 0 || self.batch_size > 1 << 26 {
            bail!("batch_size must be between 1 and 2^26");
        }
        for pool in &self.pools {
            pool.validate(n as u8)
                .map_err(|e| anyhow!("pool {pool}: {e}"))?;
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

    pub fn parties(&self) -> u8 {
        self.parties.len() as u8
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
    /// The metrics listener (none unless configured).
    #[serde(default, skip_serializing_if = "MetricsConfig::is_off")]
    pub metrics: MetricsConfig,
}

/// `[metrics]` in a node file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where to serve `GET /metrics` (plain HTTP; keep it on loopback or a private network),
    /// such as `127.0.0.1:9464`. None: no metrics listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
}

impl MetricsConfig {
    fn is_off(&self) -> bool {
        self.listen.is_none()
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
        // `LARDER__CONSORTIUM__*` belongs to the consortium file (see `ClusterConfig::load`).
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
