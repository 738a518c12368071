//! The `larder` command: create party stores, deal, show stock, take, verify, bench, demo.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
mod cli;

use cli::commands::*;

use cli::bench;
use larder::client::EngineClient;
use larder::consortium::{
    default_pools, verify, write_stock_table, ConsortiumConfig, LocalConsortium,
};
use larder::interop::mp_spdz;
use larder::material::PoolSpec;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "larder",
    version,
    about = "Offline-phase preprocessing for secure multi-party computation"
)]
struct Cli {
    /// How logs are written to stderr: `text` for people, `json` for collectors (one JSON
    /// object per line).
    #[arg(
        long,
        value_enum,
        env = "LARDER_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    log_format: cli::commands::LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// Threads for the commands that generate material.
#[derive(Clone, Copy, Debug, clap::Args)]
struct Threads {
    /// Worker threads for generation (default: one per core).
    #[arg(long, env = "LARDER_THREADS", global = true)]
    threads: Option<usize>,
}

#[derive(Subcommand)]
enum Command {
    /// Create a consortium on this machine: consortium.toml and one store per party.
    Init {
        /// Where to create it (must not hold a consortium yet).
        #[arg(long)]
        dir: PathBuf,
        /// Number of parties.
        #[arg(long, default_value_t = 3)]
        parties: u8,
        /// The party that decides which batches are available and allocates checkouts.
        #[arg(long, default_value_t = 0)]
        leader: u8,
        /// The consortium's name, recorded in every store.
        #[arg(long, default_value = "local")]
        name: String,
        /// Items per batch.
        #[arg(long, default_value_t = 1 << 20)]
        batch_size: u64,
        /// Pools to keep (repeatable), e.g. triple-z64, double-p128-t1, input-mask-p61-o0.
        /// Default: a set covering every kind.
        #[arg(long = "pool")]
        pools: Vec<PoolSpec>,
    },
    /// Generate items of a pool into every party's store (the trusted dealer by default).
    Deal {
        /// The consortium's directory (made by `larder init`).
        #[arg(long)]
        dir: PathBuf,
        /// Pool to fill, such as triple-z64.
        #[arg(long)]
        pool: PoolSpec,
        /// Items to generate.
        #[arg(long)]
        count: u64,
        /// Who makes the material: the trusted dealer, or the parties themselves with no
        /// dealer: `parties` (input masks: each party draws its own share, the mask's owner
        /// adds them up) or `he` (triples and squares in p60 by homomorphic encryption).
        #[arg(long, value_enum, default_value = "dealer")]
        generator: GeneratorChoice,
        #[command(flatten)]
        threads: Threads,
    },
    /// Show stock per pool at every party.
    Stock {
        /// The consortium's directory (made by `larder init`).
        #[arg(long)]
        dir: PathBuf,
    },
    /// Take items from every party's store at once (the same items at each), writing one
    /// share file per party. Each item is handed out at most once.
    Take {
        /// The consortium's directory (made by `larder init`).
        #[arg(long)]
        dir: PathBuf,
        /// Pool to take from, such as triple-z64.
        #[arg(long)]
        pool: PoolSpec,
        /// Items to take.
        #[arg(long)]
        count: u64,
        /// Checkout id, chosen by the caller; reusing it with other parameters is refused.
        #[arg(long)]
        id: String,
        /// Directory for the share files (party-<p>.shares), or with `--format mp-spdz`
        /// MP-SPDZ's `Player-Data` directory.
        #[arg(long)]
        out: PathBuf,
        /// `shares` (Larder's share streams) or `mp-spdz` (every party's preprocessing files,
        /// as `larder checkout --format mp-spdz` writes one party's).
        #[arg(long, value_enum, default_value = "shares")]
        format: TakeFormat,
        /// With --format mp-spdz, prime fields: canonical elements instead of Montgomery form.
        #[arg(long)]
        canonical: bool,
    },
    /// Reconstruct a set of per-party share files and check every item. This COMBINES SHARES
    /// of all parties: for tests and demos only.
    Verify {
        /// One share file per party, of the same checkout.
        files: Vec<PathBuf>,
    },
    /// Measure this machine: `dealer` (generation into durable stores), `checkout`
    /// (download throughput, round-trip latency and node memory of a TLS consortium) or
    /// `soak` (sustained generation and checkouts at every party, reported per interval).
    Bench {
        /// Which figures (default: dealer).
        #[command(subcommand)]
        what: Option<bench::BenchCommand>,
        #[command(flatten)]
        threads: Threads,
    },
    /// Run a complete consortium on this machine: party nodes (three unless --parties says
    /// otherwise) with TLS on loopback, the dealer fills every default pool, a sample checkout
    /// is verified, then it serves engines until Ctrl-C.
    Demo {
        /// Where to keep the consortium's files (replaced if an earlier demo made it).
        #[arg(long, default_value = "larder-demo")]
        dir: PathBuf,
        /// Items dealt into each default pool.
        #[arg(long, default_value_t = 200_000)]
        items: u64,
        /// Exit after the sample checkout instead of serving.
        #[arg(long)]
        once: bool,
        /// Parties in the consortium (2 to 5), each with its node and engine.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=5))]
        parties: u8,
        /// Stock for a CrypTen run of this many elementwise comparisons or ReLUs (the
        /// binary triples, wraps, daBits, squares and triples they burn; 0 for none).
        #[arg(long, default_value_t = 1_000_000)]
        crypten_elements: u64,
        #[command(flatten)]
        threads: Threads,
    },
    /// Print the node API's OpenAPI document (the repo keeps it as openapi.json).
    Openapi,
    /// Run one party's node from its node file.
    Serve {
        /// The node's file (node.toml: party, listen address, store, TLS files, token).
        #[arg(long, env = "LARDER_NODE")]
        node: PathBuf,
    },
    /// Run the dealer against a running consortium: stage each party's share at its node,
    /// commit at the leader.
    Dealer {
        /// The consortium file (consortium.toml), the same at every party.
        #[arg(long)]
        consortium: PathBuf,
        /// The file holding the dealer's token.
        #[arg(long)]
        token_file: PathBuf,
        /// Pool to fill, such as triple-z64.
        #[arg(long, required_unless_present = "worker")]
        pool: Option<PoolSpec>,
        /// Items to generate.
        #[arg(long, required_unless_present = "worker")]
        count: Option<u64>,
        /// Run as a long-lived worker: take pieces of the leader's generation jobs (see
        /// `larder jobs`) until stopped. Start as many as the dealing needs.
        #[arg(long, conflicts_with_all = ["pool", "count"])]
        worker: bool,
        /// The worker's name in the jobs' records (default: worker-<pid>).
        #[arg(long, requires = "worker")]
        name: Option<String>,
        /// With --worker: stop once the leader has no job left to make.
        #[arg(long, requires = "worker")]
        until_idle: bool,
        /// With --worker: serve the worker's metrics (`GET /metrics`, plain HTTP) here, such
        /// as 127.0.0.1:9465.
        #[arg(long, requires = "worker", env = "LARDER_METRICS_LISTEN")]
        metrics_listen: Option<std::net::SocketAddr>,
        /// Generate at this nice value (lower CPU priority, so the machine's other work comes
        /// first; 0 keeps it). Cap the threads with --threads.
        #[arg(long, default_value_t = 10)]
        nice: i32,
        #[command(flatten)]
        threads: Threads,
    },
    /// As an auditor: export a party's audit trail, verify exports against each other.
    Audit {
        #[command(subcommand)]
        action: AuditCommand,
    },
    /// As an operator: create, list or cancel generation jobs at the leader.
    Jobs {
        /// The consortium file (consortium.toml).
        #[arg(long)]
        consortium: PathBuf,
        /// The file holding the operators' token (operator.token).
        #[arg(long)]
        token_file: PathBuf,
        /// What to do (default: list).
        #[command(subcommand)]
        action: Option<JobsCommand>,
    },
    /// As an operator: the PRSS generator's keys: status, a fresh epoch, or retiring one.
    Prss {
        /// The consortium file (consortium.toml).
        #[arg(long)]
        consortium: PathBuf,
        /// The file holding the operators' token (operator.token).
        #[arg(long)]
        token_file: PathBuf,
        /// What to do (default: status).
        #[command(subcommand)]
        action: Option<PrssCommand>,
    },
    /// As an engine: check out items at your party's node and download your shares.
    Checkout {
        /// Your party's node, https://host:port.
        #[arg(long)]
        url: String,
        /// The consortium CA certificate (PEM).
        #[arg(long)]
        ca: PathBuf,
        /// The file holding this engine's token.
        #[arg(long)]
        token_file: PathBuf,
        /// Pool to check out from, such as triple-z64.
        #[arg(long)]
        pool: PoolSpec,
        /// Items to check out.
        #[arg(long)]
        count: u64,
        /// Checkout id: the same at every party's engine.
        #[arg(long)]
        id: String,
        /// Where to write: the share stream's file (`larder` format), or MP-SPDZ's
        /// `Player-Data` directory (`mp-spdz`).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        export: ExportArgs,
    },
    /// Convert a downloaded share stream into an engine's files (MP-SPDZ).
    Export {
        /// A share stream written by `larder checkout` or `larder take`.
        #[arg(long)]
        input: PathBuf,
        /// MP-SPDZ's `Player-Data` directory.
        #[arg(long)]
        out: PathBuf,
        /// Write the per-thread file of this thread (`-f` mode) instead of the one file.
        #[arg(long)]
        thread: Option<u32>,
        /// Write into a named pipe (created if missing) once the engine opens it; needs
        /// --thread.
        #[arg(long, requires = "thread")]
        pipe: bool,
        /// Prime fields: canonical elements instead of Montgomery form.
        #[arg(long)]
        canonical: bool,
    },
    /// Size checkouts and stock targets from what an engine needs: reads MP-SPDZ's compiler
    /// report (the output of `./compile.py`, ending in "Program requires at most:").
    Plan {
        /// The compiler's output, or - for stdin.
        #[arg(long = "mp-spdz")]
        report: PathBuf,
        /// The program's integer domain: z64 (compiled with -R 64), or its prime field
        /// (p128, p61, fp:<prime>, as the engine runs with -P or its default).
        #[arg(long)]
        domain: larder::math::Domain,
        /// Runs a day: also print the stock policy for the consortium file.
        #[arg(long)]
        runs_per_day: Option<f64>,
        /// Items to assume for a requirement the compiler could not count (`inf`).
        #[arg(long)]
        unknown_as: Option<u64>,
        /// The consortium file, to check that the pools are kept.
        #[arg(long)]
        consortium: Option<PathBuf>,
    },
    /// Create a networked consortium's files for parties on their own hosts: a CA, each
    /// node's certificate (for its host), key, token and node file, the consortium file, and
    /// the dealer's, operators', auditors' and engines' tokens. Hand each site its own
    /// party-<i> directory (its key and node token are its alone) with the consortium file,
    /// ca.pem and the parties' certificates (see deploy/README.md).
    Provision {
        /// Where to write them (must not hold a consortium yet).
        #[arg(long)]
        dir: PathBuf,
        /// The consortium's name, recorded in every store.
        #[arg(long, default_value = "larder")]
        name: String,
        /// Each party's node as the others reach it, `host:port`, in party order (party 0
        /// leads); repeat for every party.
        #[arg(long = "party", required = true)]
        parties: Vec<String>,
        /// Where each node listens (default: every interface, at its party's port).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Where each node serves its metrics (plain HTTP; `none` for no listener).
        #[arg(long, default_value = "0.0.0.0:9464")]
        metrics_listen: String,
        /// Each node's store, relative to its node file unless absolute.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Pools to keep (repeatable). Default: a set covering every kind.
        #[arg(long = "pool")]
        pools: Vec<PoolSpec>,
        /// Items per batch.
        #[arg(long, default_value_t = 1 << 16)]
        batch_size: u64,
    },
    /// Which parties are up, who leads, and stock at your node.
    Status {
        /// The consortium file (consortium.toml).
        #[arg(long)]
        consortium: PathBuf,
        /// An engine token file, to show stock at that engine's node.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Which party's node to ask for stock (default: the engine's own). Other parties'
        /// stock needs the dealer's token.
        #[arg(long)]
        party: Option<u8>,
    },
}

fn main() -> Result<()> {
    match run() {
        // Output cut short by its reader (`larder status | head`): not an error.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            Ok(())
        }
        r => r,
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let threads = match &cli.command {
        Command::Deal { threads, .. }
        | Command::Bench { threads, .. }
        | Command::Demo { threads, .. }
        | Command::Dealer { threads, .. } => threads.threads,
        _ => std::env::var("LARDER_THREADS")
            .ok()
            .and_then(|t| t.parse().ok()),
    };
    let nice = match &cli.command {
        Command::Dealer { nice, .. } if *nice != 0 => Some(*nice),
        _ => None,
    };
    if threads.is_some() || nice.is_some() {
        let mut b = rayon::ThreadPoolBuilder::new();
        if let Some(t) = threads {
            b = b.num_threads(t);
        }
        if let Some(n) = nice {
            larder::node::lower_priority(n);
            b = b.start_handler(move |_| larder::node::lower_priority(n));
        }
        b.build_global().context("setting up worker threads")?;
    }
    // Logs go to stderr; RUST_LOG (for example `larder=debug`) sets the level. Nodes log at
    // info by default, every other command at warn.
    let level = match cli.command {
        Command::Serve { .. } | Command::Dealer { worker: true, .. } => "info",
        _ => "warn",
    };
    init_logging(level, cli.log_format);
    match cli.command {
        Command::Init {
            dir,
            parties,
            leader,
            name,
            batch_size,
            pools,
        } => {
            let pools = if pools.is_empty() {
                default_pools(parties)
            } else {
                pools
            };
            let c = LocalConsortium::init(
                &dir,
                ConsortiumConfig::local(&name, parties, leader, batch_size, pools),
            )?;
            println!(
                "created consortium {:?} with {} parties in {}",
                c.config.name,
                parties,
                dir.display()
            );
        }
        Command::Deal {
            dir,
            pool,
            count,
            generator,
            ..
        } => {
            let c = LocalConsortium::open(&dir)?;
            deal(&c, pool, count, generator.maker())?;
        }
        Command::Stock { dir } => {
            let c = LocalConsortium::open(&dir)?;
            let stock = c.stock()?;
            let rows: Vec<_> = stock
                .iter()
                .enumerate()
                .map(|(p, s)| (p as u8, s))
                .collect();
            write_stock_table(std::io::stdout().lock(), &rows)?;
        }
        Command::Take {
            dir,
            pool,
            count,
            id,
            out,
            format,
            canonical,
        } => {
            let c = LocalConsortium::open(&dir)?;
            match format {
                TakeFormat::Shares => {
                    for p in c.take(pool, count, &id, &out)? {
                        println!("{}", p.display());
                    }
                }
                TakeFormat::MpSpdz => take_mp_spdz(&c, pool, count, &id, &out, !canonical)?,
            }
        }
        Command::Verify { files } => {
            eprintln!(
                "note: verify combines every party's shares; use it only for tests and demos"
            );
            let r = verify(&files)?;
            println!(
                "ok: {} items of {} (checkout {:?}) reconstruct correctly",
                r.items, r.pool, r.checkout
            );
        }
        Command::Bench { what, .. } => bench::run(what)?,
        Command::Demo {
            dir,
            items,
            once,
            parties,
            crypten_elements,
            ..
        } => runtime()?.block_on(cli::demo::run(cli::demo::Options {
            dir,
            items,
            once,
            parties,
            crypten_elements,
        }))?,
        Command::Openapi => print!("{}", larder::node::openapi::document_text()),
        Command::Provision {
            dir,
            name,
            parties,
            listen,
            metrics_listen,
            data_dir,
            pools,
            batch_size,
        } => provision(
            &dir,
            &name,
            parties,
            listen,
            &metrics_listen,
            data_dir,
            pools,
            batch_size,
        )?,
        Command::Serve { node } => {
            few_malloc_arenas();
            runtime()?.block_on(serve(&node))?
        }
        Command::Dealer {
            consortium,
            token_file,
            worker: true,
            name,
            until_idle,
            metrics_listen,
            ..
        } => runtime()?.block_on(cli::worker::work(
            &consortium,
            &token_file,
            cli::worker::Options {
                name,
                until_idle,
                metrics_listen,
            },
        ))?,
        Command::Dealer {
            consortium,
            token_file,
            pool: Some(pool),
            count: Some(count),
            ..
        } => runtime()?.block_on(dealer(&consortium, &token_file, pool, count))?,
        Command::Dealer { .. } => unreachable!("clap requires --pool and --count without --worker"),
        Command::Audit { action } => match action {
            AuditCommand::Export {
                consortium,
                token_file,
                party,
                store,
                out,
            } => {
                let source = match (&store, &consortium, &token_file, party) {
                    (Some(dir), ..) => cli::audit::Source::Store(dir),
                    (None, Some(c), Some(t), Some(p)) => cli::audit::Source::Node {
                        consortium: c,
                        token_file: t,
                        party: p,
                    },
                    _ => bail!("give --store, or --consortium with --token-file and --party"),
                };
                runtime()?.block_on(cli::audit::export(source, &out))?
            }
            AuditCommand::Verify { files } => cli::audit::verify_files(&files)?,
        },
        Command::Plan {
            report,
            domain,
            runs_per_day,
            unknown_as,
            consortium,
        } => cli::plan::run(&cli::plan::PlanArgs {
            report: &report,
            domain,
            runs_per_day,
            unknown_as,
            consortium: consortium.as_deref(),
        })?,
        Command::Jobs {
            consortium,
            token_file,
            action,
        } => {
            use cli::worker::JobsAction;
            let action = match action.unwrap_or(JobsCommand::List) {
                JobsCommand::Create {
                    pool,
                    count,
                    generator,
                } => JobsAction::Create {
                    pool,
                    count,
                    generator: generator.maker(),
                },
                JobsCommand::List => JobsAction::List,
                JobsCommand::Watch { interval } => JobsAction::Watch {
                    every: std::time::Duration::from_secs_f64(interval.max(0.1)),
                },
                JobsCommand::Cancel { id } => JobsAction::Cancel { id },
            };
            runtime()?.block_on(cli::worker::jobs(&consortium, &token_file, action))?
        }
        Command::Prss {
            consortium,
            token_file,
            action,
        } => {
            use cli::worker::PrssAction;
            let action = match action.unwrap_or(PrssCommand::Status) {
                PrssCommand::Status => PrssAction::Status,
                PrssCommand::Rotate => PrssAction::Rotate,
                PrssCommand::Retire { epoch } => PrssAction::Retire { epoch },
            };
            runtime()?.block_on(cli::worker::prss(&consortium, &token_file, action))?
        }
        Command::Checkout {
            url,
            ca,
            token_file,
            pool,
            count,
            id,
            out,
            export,
        } => {
            let ca = std::fs::read_to_string(&ca)
                .with_context(|| format!("reading {}", ca.display()))?;
            let client = EngineClient::new(&url, &ca, read_token(&token_file)?)?;
            if export.format == Format::Larder {
                if export.engine_threads.is_some() || export.pipes || export.canonical {
                    bail!("--engine-threads, --pipes and --canonical apply to --format mp-spdz");
                }
                runtime()?.block_on(checkout(&client, pool, count, &id, &out))?
            } else {
                let plan = mp_spdz::CheckoutPlan {
                    id,
                    pool,
                    count,
                    player_data: out,
                    threads: export.engine_threads,
                    pipes: export.pipes,
                    montgomery: !export.canonical,
                };
                runtime()?.block_on(checkout_mp_spdz(&client, &plan))?
            }
        }
        Command::Export {
            input,
            out,
            thread,
            pipe,
            canonical,
        } => {
            let file = std::fs::File::open(&input)
                .with_context(|| format!("opening {}", input.display()))?;
            let shares = larder::material::ShareReader::new(std::io::BufReader::new(file))
                .with_context(|| format!("reading {}", input.display()))?;
            let done = if pipe {
                mp_spdz::export_pipe(shares, &out, thread.expect("clap requires it"), !canonical)?
            } else {
                mp_spdz::export_file(shares, &out, thread, !canonical)?
            };
            report_export(&done);
        }
        Command::Status {
            consortium,
            token_file,
            party,
        } => runtime()?.block_on(status(&consortium, token_file.as_deref(), party))?,
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// Larder's share stream (header, records, checksum), one file.
    #[default]
    Larder,
    /// MP-SPDZ preprocessing files for semi, hemi (prime fields) and semi2k (Z_2^64).
    MpSpdz,
}

#[derive(Clone, Debug, clap::Args)]
struct ExportArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// mp-spdz: per-thread files for MP-SPDZ's `-f` mode; thread t checks out `<id>.T<t>`.
    #[arg(long)]
    engine_threads: Option<u32>,
    /// mp-spdz: named pipes instead of files; each thread's items are checked out when the
    /// engine opens its pipe.
    #[arg(long)]
    pipes: bool,
    /// mp-spdz, prime fields: canonical elements instead of Montgomery form.
    #[arg(long)]
    canonical: bool,
}

#[derive(Debug, clap::Subcommand)]
enum AuditCommand {
    /// Write one party's audit trail as JSON lines (a header, then the chained records): from
    /// its node with the auditors' token, or from its store while the node is stopped.
    Export {
        /// The consortium file (with --token-file and --party: read from the party's node).
        #[arg(long, requires_all = ["token_file", "party"], conflicts_with = "store")]
        consortium: Option<PathBuf>,
        /// The file holding the auditors' token (auditor.token).
        #[arg(long)]
        token_file: Option<PathBuf>,
        #[arg(long)]
        party: Option<u8>,
        /// A party's store directory (its node stopped).
        #[arg(long, required_unless_present = "consortium")]
        store: Option<PathBuf>,
        /// Where to write (`-`: standard output).
        #[arg(long, default_value = "-")]
        out: PathBuf,
    },
    /// Check exports: each party's chain, and with every party's, that they agree and that
    /// each chain holds the heads the others witnessed. Names the first disagreement.
    Verify {
        /// One export per party.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, clap::Subcommand)]
enum PrssCommand {
    /// Parties, threshold, the current epoch, retired epochs, the keys this node holds.
    Status,
    /// Set up fresh keys at every party; new PRSS batches use them, older ones stay served.
    Rotate,
    /// Retire an epoch (its keys may have leaked): destroy its keys and burn every item made
    /// under them that was not handed out, at every party.
    Retire {
        #[arg(long)]
        epoch: u32,
    },
}

#[derive(Debug, clap::Subcommand)]
enum JobsCommand {
    /// Queue a job: make COUNT items of POOL with dealer workers, or by the nodes themselves.
    Create {
        #[arg(long)]
        pool: PoolSpec,
        #[arg(long)]
        count: u64,
        /// `dealer` (dealer workers), or the nodes with no dealer: `parties` (input masks),
        /// `he` (triples and squares by homomorphic encryption).
        #[arg(long, value_enum, default_value = "dealer")]
        generator: GeneratorChoice,
    },
    /// Every job: state, progress, who asked for it (the default).
    List,
    /// The jobs, redrawn until Ctrl-C.
    Watch {
        /// Seconds between looks.
        #[arg(long, default_value_t = 2.0)]
        interval: f64,
    },
    /// Stop a job; what it committed stays.
    Cancel { id: u64 },
}

/// `larder deal --generator`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum GeneratorChoice {
    /// The trusted dealer (every pool).
    Dealer,
    /// The parties themselves, no dealer (input masks).
    Parties,
    /// The parties themselves with homomorphic encryption, no dealer (triples, squares).
    He,
    /// The parties themselves with pseudo-random secret sharing, no dealer, honest majority
    /// (triples, squares, double sharings; keys for this command only).
    Prss,
}

impl GeneratorChoice {
    fn maker(self) -> larder::material::Maker {
        use larder::material::Maker;
        match self {
            GeneratorChoice::Dealer => Maker::Dealer,
            GeneratorChoice::Parties => Maker::Parties,
            GeneratorChoice::He => Maker::He,
            GeneratorChoice::Prss => Maker::Prss,
        }
    }
}

/// `larder provision`: a networked consortium's files, never over an existing one.
#[allow(clippy::too_many_arguments)]
fn provision(
    dir: &Path,
    name: &str,
    parties: Vec<String>,
    listen: Option<std::net::SocketAddr>,
    metrics_listen: &str,
    data_dir: Option<PathBuf>,
    pools: Vec<PoolSpec>,
    batch_size: u64,
) -> Result<()> {
    use larder::node::provision::{provision, Plan};
    anyhow::ensure!(
        !dir.join("consortium.toml").exists(),
        "{} already holds a consortium (consortium.toml); choose another directory, or move \
         it away first: its tokens, keys and certificates would be replaced",
        dir.display()
    );
    let pools = if pools.is_empty() {
        default_pools(parties.len().min(255) as u8)
    } else {
        pools
    };
    let metrics = match metrics_listen {
        "none" => None,
        at => Some(
            at.parse()
                .with_context(|| format!("--metrics-listen {at:?}: not an address"))?,
        ),
    };
    let plan = Plan {
        batch_size,
        metrics,
        data_dir,
        ..Plan::networked(name, parties, listen, pools)?
    };
    let made = provision(dir, &plan)?;
    println!(
        "consortium {name:?}: {} parties, leader party 0, files in {}",
        made.nodes.len(),
        dir.display()
    );
    for (i, node) in made.nodes.iter().enumerate() {
        println!(
            "  party {i}: {} (give its site party-{i}/ with consortium.toml, ca.pem and the \
             parties' cert.pem files)",
            node.display()
        );
    }
    println!(
        "  dealer token: {}\n  operator token: {}\n  auditor token: {}",
        made.dealer_token_file.display(),
        made.operator_token_file.display(),
        made.auditor_token_file.display()
    );
    Ok(())
}

/// What `larder take` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum TakeFormat {
    Shares,
    MpSpdz,
}

/// `larder take --format mp-spdz`: takes the items at every party and writes each party's
/// MP-SPDZ files under `player_data`. What MP-SPDZ cannot read is refused before anything is
/// taken; if writing fails after the take, the share streams stay (the items are consumed)
/// and the error says where, for `larder export`.
fn take_mp_spdz(
    c: &LocalConsortium,
    pool: PoolSpec,
    count: u64,
    id: &str,
    player_data: &Path,
    montgomery: bool,
) -> Result<()> {
    mp_spdz::Layout::new(pool, c.config.parties(), 0, montgomery)?;
    let staging = player_data.join(format!(".larder-take-{}", larder::wire::path_segment(id)));
    let files = c.take(pool, count, id, &staging)?;
    for f in &files {
        let keep = || {
            format!(
                "writing MP-SPDZ files from {}; the items are taken: convert the share streams \
                 in {} with `larder export`",
                f.display(),
                staging.display()
            )
        };
        let file = std::fs::File::open(f).with_context(keep)?;
        let shares =
            larder::material::ShareReader::new(std::io::BufReader::new(file)).with_context(keep)?;
        let done =
            mp_spdz::export_file(shares, player_data, None, montgomery).with_context(keep)?;
        report_export(&done);
    }
    for f in &files {
        std::fs::remove_file(f).with_context(|| format!("removing {}", f.display()))?;
    }
    std::fs::remove_dir(&staging).with_context(|| format!("removing {}", staging.display()))?;
    Ok(())
}
