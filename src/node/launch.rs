//! Starting a whole consortium on this machine, the one way every tool and test does it:
//! provision its files in one directory (see [`super::provision`]), then run its party nodes
//! either inside this process ([`InProcess`]: `larder demo`, the integration tests) or as
//! `larder serve` processes ([`Processes`]: `larder bench checkout`, `larder bench soak`, the
//! crash and durability harnesses). A real deployment provisions and starts its nodes by hand
//! (README); nothing here runs in a node.

use super::config::{ConsortiumConfig, NodeConfig};
use super::provision::{provision, Plan, Provisioned};
use super::RunningNode;
use crate::client::EngineClient;
use crate::cluster::DealerClient;
use anyhow::{ensure, Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// A provisioned consortium: its files, its consortium file as the nodes read it, the CA, and
/// where its nodes listen.
#[derive(Clone, Debug)]
pub struct Launch {
    pub prov: Provisioned,
    pub cluster: ConsortiumConfig,
    /// The CA certificate (PEM).
    pub ca: String,
    pub addrs: Vec<SocketAddr>,
}

impl Launch {
    /// Provisions `plan` under `dir` for nodes listening at `addrs` (the plan's own addresses
    /// are replaced).
    ///
    /// # Errors
    /// Files that cannot be written or read back.
    fn provision(dir: &Path, mut plan: Plan, addrs: Vec<SocketAddr>) -> Result<Launch> {
        plan.addrs = addrs.clone();
        let prov = provision(dir, &plan)?;
        let cluster = ConsortiumConfig::load_nodes(&prov.consortium)?;
        let ca = std::fs::read_to_string(&prov.ca)
            .with_context(|| format!("reading {}", prov.ca.display()))?;
        Ok(Launch {
            prov,
            cluster,
            ca,
            addrs,
        })
    }

    /// Party `party`'s engine at its own node.
    ///
    /// # Errors
    /// A bad CA certificate.
    pub fn engine(&self, party: u8) -> Result<EngineClient> {
        let e = &self.prov.engines[party as usize];
        Ok(EngineClient::new(&e.url, &self.ca, e.token.clone())?)
    }

    /// Every party's engine, in party order.
    ///
    /// # Errors
    /// A bad CA certificate.
    pub fn engines(&self) -> Result<Vec<EngineClient>> {
        (0..self.addrs.len() as u8)
            .map(|p| self.engine(p))
            .collect()
    }

    /// The consortium's dealer, over HTTPS.
    ///
    /// # Errors
    /// A bad CA certificate.
    pub fn dealer(&self) -> Result<DealerClient> {
        Ok(DealerClient::new(
            self.cluster.clone(),
            self.prov.dealer_token.clone(),
        )?)
    }

    /// Waits until every node answers its health check.
    ///
    /// # Errors
    /// A node that does not answer within `within`.
    pub async fn wait_healthy(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        for (p, e) in self.engines()?.iter().enumerate() {
            while e.health().await.is_err() {
                ensure!(
                    Instant::now() < deadline,
                    "party {p}'s node did not answer within {within:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }
}

/// A consortium whose nodes run inside this process, on listeners bound to port 0 before the
/// files are written (no port can be taken in between).
pub struct InProcess {
    pub launch: Launch,
    /// Party `p`'s node, `None` while stopped.
    pub nodes: Vec<Option<RunningNode>>,
}

impl InProcess {
    /// Provisions `plan` under `dir` (one node per address in `plan.addrs`, which are replaced
    /// by free loopback ports) and starts every node.
    ///
    /// # Errors
    /// Anything that stops a node from starting.
    pub async fn start(dir: &Path, plan: Plan) -> Result<InProcess> {
        let mut listeners = Vec::new();
        for _ in 0..plan.addrs.len() {
            listeners.push(TcpListener::bind("127.0.0.1:0").await?);
        }
        let addrs = listeners
            .iter()
            .map(|l| l.local_addr())
            .collect::<std::io::Result<Vec<_>>>()?;
        let launch = Launch::provision(dir, plan, addrs)?;
        let mut nodes = Vec::new();
        for (path, l) in launch.prov.nodes.iter().zip(listeners) {
            let node = NodeConfig::load(path)?;
            nodes.push(Some(
                super::start_with(&node, launch.cluster.clone(), l).await?,
            ));
        }
        Ok(InProcess { launch, nodes })
    }

    /// Stops party `p`'s node (drained, as on SIGTERM).
    pub async fn stop(&mut self, p: usize) {
        if let Some(n) = self.nodes[p].take() {
            n.stop().await;
        }
    }

    /// Starts party `p`'s node again at its address.
    ///
    /// # Errors
    /// The address is taken, or the node does not start.
    pub async fn restart(&mut self, p: usize) -> Result<()> {
        let node = NodeConfig::load(&self.launch.prov.nodes[p])?;
        let l = TcpListener::bind(self.launch.addrs[p]).await?;
        self.nodes[p] = Some(super::start_with(&node, self.launch.cluster.clone(), l).await?);
        Ok(())
    }

    /// Stops every node.
    pub async fn stop_all(mut self) {
        for p in 0..self.nodes.len() {
            self.stop(p).await;
        }
    }
}

/// A consortium whose nodes run as `larder serve` processes on free loopback ports. Nodes
/// still running are killed (SIGKILL) when this is dropped.
pub struct Processes {
    pub launch: Launch,
    /// The `larder` executable.
    pub exe: PathBuf,
    /// Party `p`'s node process, `None` while not running.
    pub children: Vec<Option<Child>>,
}

impl Processes {
    /// Provisions `plan` under `dir` (one node per address in `plan.addrs`, which are replaced
    /// by free loopback ports, reserved and released again for the nodes to bind) and starts
    /// nothing: see [`Self::serve_command`] and [`Self::start_all`].
    ///
    /// # Errors
    /// No free port, or files that cannot be written.
    pub fn provision(dir: &Path, plan: Plan, exe: &Path) -> Result<Processes> {
        // Every port held until all are picked: a port released at once could be handed out
        // again for the next node (seen: two nodes given one port, an engine's token then
        // reaching another party's node).
        let held = (0..plan.addrs.len())
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
            .collect::<std::io::Result<Vec<_>>>()?;
        let addrs = held
            .iter()
            .map(std::net::TcpListener::local_addr)
            .collect::<std::io::Result<Vec<_>>>()?;
        drop(held);
        let n = addrs.len();
        Ok(Processes {
            launch: Launch::provision(dir, plan, addrs)?,
            exe: exe.to_path_buf(),
            children: (0..n).map(|_| None).collect(),
        })
    }

    /// `larder serve --node <party p's file>`, to add environment and output to and spawn
    /// (under a wrapper such as a tracer, `wrapper` names it and its arguments first).
    pub fn serve_command(&self, p: u8, wrapper: &[String]) -> Command {
        let mut c = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&self.exe);
                c
            }
            None => Command::new(&self.exe),
        };
        c.args(["serve", "--node"])
            .arg(&self.launch.prov.nodes[p as usize]);
        c
    }

    /// Starts every node with `configure` applied to its command, and waits until all answer.
    ///
    /// # Errors
    /// A node that cannot be spawned or does not answer within 20 s.
    pub async fn start_all(&mut self, configure: impl Fn(u8, &mut Command)) -> Result<()> {
        for p in 0..self.children.len() as u8 {
            let mut c = self.serve_command(p, &[]);
            configure(p, &mut c);
            self.children[p as usize] = Some(c.spawn().context("starting a node")?);
        }
        self.launch.wait_healthy(Duration::from_secs(20)).await
    }

    /// The process id of party `p`'s node, if it runs.
    pub fn pid(&self, p: usize) -> Option<u32> {
        self.children[p].as_ref().map(Child::id)
    }

    /// Kills party `p`'s node with SIGKILL, and what it runs if it runs under a wrapper;
    /// whether it was still running.
    pub fn sigkill(&mut self, p: usize) -> bool {
        self.children[p].take().is_some_and(sigkill)
    }
}

/// Kills `c` and its direct children with SIGKILL and reaps it; whether it was still running.
pub fn sigkill(mut c: Child) -> bool {
    let running = matches!(c.try_wait(), Ok(None));
    let children = format!("/proc/{0}/task/{0}/children", c.id());
    for pid in std::fs::read_to_string(children)
        .unwrap_or_default()
        .split_whitespace()
    {
        if let Ok(pid) = pid.parse() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let _ = c.kill();
    let _ = c.wait();
    running
}

impl Drop for Processes {
    fn drop(&mut self) {
        for p in 0..self.children.len() {
            self.sigkill(p);
        }
    }
}
