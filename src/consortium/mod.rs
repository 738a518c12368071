//! A consortium whose party stores all sit on this machine: init, deal, take, verify.
//!
//! Party 0..n-1 each have a store under `<root>/party-<i>`; the leader's store is the authority
//! on which batches are available. Deal, take and the reconciliation on open run the same
//! protocol as the networked nodes ([`crate::cluster`]), with every party a [`LocalParty`].
//!
//! # Crash safety
//! A deal stages each batch at every party (durably), then activates it at the leader (the
//! commit point), then at the followers. On open, every batch still staged somewhere is settled
//! by the leader's copy ([`cluster::settle_staged`]): aborted everywhere if the leader never
//! committed it, activated if it did. Each store is locked by its process (sled's file lock),
//! so no deal can be running while another process reconciles.

mod verify;

pub use verify::{verify, VerifyReport};

use crate::cluster::{self, DealPlan, LocalParty, ProtocolError};
use crate::generate::{Generator, PartyGenerator};
use crate::material::PoolSpec;
use crate::secret_file::SecretFile;
use crate::store::{BatchState, PoolStock, Store, StoreError, StoreIdentity};
use crate::wire::CheckoutRequest;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `<root>/consortium.toml`: the consortium file, in the one shape every mode reads
/// (`parties = N` here; a consortium of nodes lists them and opens here too).
pub use crate::config::ConsortiumConfig;

/// The pools a new consortium starts with.
pub fn default_pools(parties: u8) -> Vec<PoolSpec> {
    let mut pools: Vec<PoolSpec> = [
        "triple-z64",
        "triple-p128",
        "square-p128",
        "bit-z64",
        "inverse-p61",
        "input-mask-p128-o0",
    ]
    .iter()
    .map(|s| s.parse().expect("built-in pool ids parse"))
    .collect();
    if parties >= 3 {
        pools.push("double-p128-t1".parse().expect("built-in pool id parses"));
    }
    pools
}

/// What went wrong at consortium level.
#[derive(Debug, thiserror::Error)]
pub enum ConsortiumError {
    #[error("party {party}: {source}")]
    Store { party: u8, source: StoreError },
    #[error("consortium config: {0}")]
    Config(String),
    #[error("{0}")]
    Io(String),
    #[error("pool {0} is not configured for this consortium")]
    UnknownPool(PoolSpec),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("verification failed: {0}")]
    Verify(String),
}

type Result<T> = std::result::Result<T, ConsortiumError>;

/// The party stores of a consortium on this machine.
pub struct LocalConsortium {
    root: PathBuf,
    pub config: ConsortiumConfig,
    parties: Vec<LocalParty>,
    /// Runs the protocol's steps; the store calls run on its blocking threads.
    runtime: tokio::runtime::Runtime,
}

fn party_err(party: u8) -> impl Fn(StoreError) -> ConsortiumError {
    move |source| ConsortiumError::Store { party, source }
}

/// Report of one deal.
#[derive(Clone, Debug)]
pub struct DealReport {
    pub items: u64,
    pub batches: u64,
}

impl LocalConsortium {
    /// Creates `root/consortium.toml` and an empty store per party.
    ///
    /// # Errors
    /// Invalid config, or a store that already exists.
    pub fn init(root: &Path, config: ConsortiumConfig) -> Result<Self> {
        config
            .validate()
            .map_err(|e| ConsortiumError::Config(format!("{e:#}")))?;
        fs::create_dir_all(root)
            .map_err(|e| ConsortiumError::Io(format!("create {}: {e}", root.display())))?;
        let cfg_path = root.join("consortium.toml");
        if cfg_path.exists() {
            return Err(ConsortiumError::Config(format!(
                "{} already exists",
                cfg_path.display()
            )));
        }
        let text =
            toml::to_string_pretty(&config).map_err(|e| ConsortiumError::Config(e.to_string()))?;
        fs::write(&cfg_path, text)
            .map_err(|e| ConsortiumError::Io(format!("write {}: {e}", cfg_path.display())))?;
        for party in 0..config.parties() {
            let identity = StoreIdentity {
                consortium: config.name.clone(),
                parties: config.parties(),
                party,
            };
            Store::create(&root.join(format!("party-{party}")), identity)
                .map_err(party_err(party))?;
        }
        Self::open(root)
    }

    /// Opens every party's store and reconciles interrupted deals (see the module docs).
    ///
    /// # Errors
    /// A missing or invalid config, or a store that cannot be opened.
    pub fn open(root: &Path) -> Result<Self> {
        let cfg_path = root.join("consortium.toml");
        let config = ConsortiumConfig::load(&cfg_path)
            .map_err(|e| ConsortiumError::Config(format!("{e:#}")))?;
        let stores = (0..config.parties())
            .map(|p| {
                let store = Store::open(&root.join(format!("party-{p}"))).map_err(party_err(p))?;
                let id = store.identity();
                if id.party != p || id.parties != config.parties() || id.consortium != config.name {
                    return Err(ConsortiumError::Config(format!(
                        "store party-{p} belongs to party {} of {} in consortium {:?}",
                        id.party, id.parties, id.consortium
                    )));
                }
                store.set_allowed_generators(config.allowed_makers());
                Ok(store)
            })
            .collect::<Result<Vec<_>>>()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ConsortiumError::Io(format!("starting the runtime: {e}")))?;
        let c = LocalConsortium {
            root: root.to_path_buf(),
            config,
            parties: stores
                .into_iter()
                .map(|s| LocalParty::new(Arc::new(s)))
                .collect(),
            runtime,
        };
        c.reconcile()?;
        Ok(c)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn store(&self, party: u8) -> &Store {
        self.parties[party as usize].store()
    }

    fn leader(&self) -> &LocalParty {
        &self.parties[self.config.leader as usize]
    }

    fn followers(&self) -> Vec<LocalParty> {
        let leader = self.config.leader as usize;
        let mut f = self.parties.clone();
        f.remove(leader);
        f
    }

    /// Settles every batch still staged somewhere (see the module docs): the followers' first,
    /// then the leader's own.
    fn reconcile(&self) -> Result<()> {
        let leader = self.config.leader as usize;
        let order = (0..self.parties.len())
            .filter(|&p| p != leader)
            .chain([leader]);
        for p in order {
            let here = &self.parties[p];
            let staged: Vec<_> = here
                .store()
                .all_batches()
                .map_err(party_err(p as u8))?
                .into_iter()
                .filter(|m| m.state == BatchState::Staged)
                .map(|m| m.id)
                .collect();
            for id in staged {
                self.runtime
                    .block_on(cluster::settle_staged(self.leader(), here, id))?;
            }
        }
        Ok(())
    }

    fn check_pool(&self, pool: PoolSpec) -> Result<()> {
        if self.config.pools.contains(&pool) {
            Ok(())
        } else {
            Err(ConsortiumError::UnknownPool(pool))
        }
    }

    /// Generates `count` items of `pool` with `generator`, batch by batch: generation of the
    /// next batch overlaps the durable staging of the previous one. `progress` is called with
    /// the items committed so far.
    ///
    /// # Errors
    /// An unknown pool, generation or store errors. Batches committed before the error stay.
    pub fn deal<G: Generator + Send>(
        &self,
        generator: &mut G,
        pool: PoolSpec,
        count: u64,
        progress: impl FnMut(u64),
    ) -> Result<DealReport> {
        self.run_deal(pool, count, progress, move |plan, tx| {
            cluster::generate_batches(generator, plan, tx)
        })
    }

    /// As [`LocalConsortium::deal`] with a generator without a dealer: `generators` holds one
    /// instance per party, each making only its own party's share (on a thread of its own,
    /// talking to the others in memory).
    ///
    /// # Errors
    /// An unknown pool or one the generators cannot make, generation or store errors.
    pub fn make<P: PartyGenerator + Send>(
        &self,
        generators: &mut [P],
        pool: PoolSpec,
        count: u64,
        progress: impl FnMut(u64),
    ) -> Result<DealReport> {
        if generators.len() != self.parties.len() {
            return Err(ConsortiumError::Config(format!(
                "{} generators for {} parties",
                generators.len(),
                self.parties.len()
            )));
        }
        if let Some(g) = generators.iter().find(|g| !g.supports(&pool)) {
            return Err(ConsortiumError::Config(format!(
                "the {} generator cannot make {pool}",
                g.name()
            )));
        }
        self.run_deal(pool, count, progress, move |plan, tx| {
            cluster::generate_with_parties(generators, plan, tx)
        })
    }

    /// Stages and commits what `generate` makes (on a thread of its own, one batch ahead).
    fn run_deal(
        &self,
        pool: PoolSpec,
        count: u64,
        progress: impl FnMut(u64),
        generate: impl FnOnce(DealPlan, cluster::Batches) + Send,
    ) -> Result<DealReport> {
        self.check_pool(pool)?;
        let leader = self.leader();
        let followers = self.followers();
        let plan = DealPlan {
            pool,
            parties: self.config.parties(),
            batch_size: self.config.batch_size,
            count,
            first_index: self
                .runtime
                .block_on(cluster::next_batch_index(leader, pool))?,
        };
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let items = std::thread::scope(|s| {
            s.spawn(move || generate(plan, tx));
            self.runtime.block_on(cluster::deal(
                rx,
                &self.parties,
                leader,
                |id| cluster::commit_batch(leader, &followers, id),
                progress,
            ))
        })?;
        Ok(DealReport {
            items,
            batches: items.div_ceil(pool.batch_items(self.config.batch_size)),
        })
    }

    /// Takes `count` items of `pool` from every party at once under `checkout`: the leader
    /// allocates, every follower holds the same ranges, and each party's shares are written
    /// once to `<out_dir>/party-<i>.shares`.
    ///
    /// # Errors
    /// An unknown pool, underrun, a reused checkout id, IO errors.
    pub fn take(
        &self,
        pool: PoolSpec,
        count: u64,
        checkout: &str,
        out_dir: &Path,
    ) -> Result<Vec<PathBuf>> {
        self.check_pool(pool)?;
        let req = CheckoutRequest {
            id: checkout.to_string(),
            pool,
            count,
        };
        self.runtime
            .block_on(cluster::checkout(self.leader(), &self.followers(), req))?;
        fs::create_dir_all(out_dir)
            .map_err(|e| ConsortiumError::Io(format!("create {}: {e}", out_dir.display())))?;
        let mut paths = Vec::new();
        for (p, party) in self.parties.iter().enumerate() {
            let path = out_dir.join(format!("party-{p}.shares"));
            let ioe =
                |e: std::io::Error| ConsortiumError::Io(format!("write {}: {e}", path.display()));
            // Written under a fresh name and renamed once complete: a retried take never
            // truncates shares an earlier run already handed out.
            let mut file = SecretFile::create(&path).map_err(ioe)?;
            party
                .store()
                .take(checkout, "cli", file.writer())
                .map_err(party_err(p as u8))?;
            file.commit().map_err(ioe)?;
            paths.push(path);
        }
        Ok(paths)
    }

    /// Stock per pool at every party.
    ///
    /// # Errors
    /// Store errors.
    pub fn stock(&self) -> Result<Vec<BTreeMap<PoolSpec, PoolStock>>> {
        self.parties
            .iter()
            .enumerate()
            .map(|(p, s)| s.store().stock().map_err(party_err(p as u8)))
            .collect()
    }
}

/// Prints stock per pool and party as a table; `stock` holds (party, its stock) pairs.
pub fn write_stock_table<W: Write>(
    mut w: W,
    stock: &[(u8, &BTreeMap<PoolSpec, PoolStock>)],
) -> std::io::Result<()> {
    writeln!(
        w,
        "{:<24} {:>6} {:>14} {:>12} {:>12} {:>14}  made by",
        "pool", "party", "available", "staged", "reserved", "consumed"
    )?;
    for (p, s) in stock {
        for (pool, st) in *s {
            // Who made the available items: the trust model behind them.
            let made_by = st
                .by_generator
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(g, n)| match g.parse::<crate::material::Maker>() {
                    Ok(m) => format!("{g} {n} ({})", m.assumption()),
                    Err(_) => format!("{g} {n}"),
                })
                .collect::<Vec<_>>()
                .join(", ");
            writeln!(
                w,
                "{:<24} {:>6} {:>14} {:>12} {:>12} {:>14}  {}",
                pool.to_string(),
                p,
                st.available,
                st.staged,
                st.reserved,
                st.consumed,
                made_by
            )?;
        }
    }
    Ok(())
}
