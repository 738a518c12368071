//! The `larder` command: create party stores, deal, show stock, take, verify, bench, demo.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use larder::bench;
use larder::consortium::{
    default_pools, verify, write_stock_table, ConsortiumConfig, LocalConsortium,
};
use larder::generate::Dealer;
use larder::material::PoolSpec;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "larder",
    version,
    about = "Offline-phase preprocessing for secure multi-party computation"
)]
struct Cli {
    /// Worker threads for generation (default: one per core).
    #[arg(long, global = true, env = "LARDER_THREADS")]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a consortium on this machine: consortium.toml and one store per party.
    Init {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 3)]
        parties: u8,
        #[arg(long, default_value_t = 0)]
        leader: u8,
        #[arg(long, default_value = "local")]
        name: String,
        #[arg(long, default_value_t = 1 << 20)]
        batch_size: u64,
        /// Pools to keep (repeatable), e.g. triple-z64, double-p128-t1, input-mask-p61-o0.
        /// Default: a set covering every kind.
        #[arg(long = "pool")]
        pools: Vec<PoolSpec>,
    },
    /// Run the trusted dealer: generate items of a pool into every party's store.
    Deal {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        pool: PoolSpec,
        #[arg(long)]
        count: u64,
    },
    /// Show stock per pool at every party.
    Stock {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Take items from every party's store at once (the same items at each), writing one
    /// share file per party. Each item is handed out at most once.
    Take {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        pool: PoolSpec,
        #[arg(long)]
        count: u64,
        /// Checkout id, chosen by the caller; reusing it with other parameters is refused.
        #[arg(long)]
        id: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Reconstruct a set of per-party share files and check every item. This COMBINES SHARES
    /// of all parties: for tests and demos only.
    Verify { files: Vec<PathBuf> },
    /// Measure dealer throughput, bytes stored and peak memory on this machine.
    Bench {
        /// Items per figure.
        #[arg(long, default_value_t = 10_000_000)]
        items: u64,
        #[arg(long, default_value_t = 3)]
        parties: u8,
        #[arg(long, default_value_t = 1 << 20)]
        batch_size: u64,
        /// Pools to measure (default: triple-z64 and triple-p128).
        #[arg(long = "pool")]
        pools: Vec<PoolSpec>,
        /// Directory for the temporary stores (on the disk you want to measure).
        #[arg(long, default_value = "larder-bench")]
        dir: PathBuf,
        /// One JSON object per figure instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a complete consortium on this machine: three party stores, the dealer fills every
    /// default pool, then each pool is checked out and verified.
    Demo {
        /// Where to keep the consortium (default: a fresh directory under ./larder-demo).
        #[arg(long, default_value = "larder-demo")]
        dir: PathBuf,
        #[arg(long, default_value_t = 100_000)]
        items: u64,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(t) = cli.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global()
            .context("setting up worker threads")?;
    }
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
                ConsortiumConfig {
                    name,
                    parties,
                    leader,
                    batch_size,
                    pools,
                },
            )?;
            println!(
                "created consortium {:?} with {} parties in {}",
                c.config.name,
                parties,
                dir.display()
            );
        }
        Command::Deal { dir, pool, count } => {
            let c = LocalConsortium::open(&dir)?;
            deal(&c, pool, count)?;
        }
        Command::Stock { dir } => {
            let c = LocalConsortium::open(&dir)?;
            write_stock_table(std::io::stdout().lock(), &c.stock()?)?;
        }
        Command::Take {
            dir,
            pool,
            count,
            id,
            out,
        } => {
            let c = LocalConsortium::open(&dir)?;
            for p in c.take(pool, count, &id, &out)? {
                println!("{}", p.display());
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
        Command::Bench {
            items,
            parties,
            batch_size,
            pools,
            dir,
            json,
        } => {
            let pools = if pools.is_empty() {
                vec!["triple-z64".parse()?, "triple-p128".parse()?]
            } else {
                pools
            };
            std::fs::create_dir_all(&dir)?;
            let mut figures = Vec::new();
            for pool in pools {
                let f = bench::dealer(&dir, pool, parties, items, batch_size)?;
                if json {
                    println!("{}", serde_json::to_string(&f)?);
                }
                figures.push(f);
            }
            let _ = std::fs::remove_dir(&dir);
            if !json {
                print!("{}", bench::table(&figures));
            }
        }
        Command::Demo { dir, items } => demo(&dir, items)?,
    }
    Ok(())
}

fn deal(c: &LocalConsortium, pool: PoolSpec, count: u64) -> Result<()> {
    let bar = ProgressBar::new(count).with_style(
        ProgressStyle::with_template(
            "{msg} [{bar:40}] {human_pos}/{human_len} ({per_sec}, eta {eta})",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    bar.set_message(format!("dealing {pool}"));
    let mut dealer = Dealer::from_os_rng();
    let r = c.deal(&mut dealer, pool, count, |done| bar.set_position(done))?;
    bar.finish();
    println!("dealt {} items of {pool} in {} batches", r.items, r.batches);
    Ok(())
}

/// The consortium name `demo` uses, so a later demo knows it may replace the directory.
const DEMO_NAME: &str = "larder-demo";

fn demo(dir: &Path, items: u64) -> Result<()> {
    let cfg = dir.join("consortium.toml");
    if cfg.exists() {
        // A previous demo's consortium is replaced; anything else is left alone.
        let text = std::fs::read_to_string(&cfg)?;
        let old: ConsortiumConfig =
            toml::from_str(&text).with_context(|| format!("reading {}", cfg.display()))?;
        if old.name != DEMO_NAME {
            bail!(
                "{} holds consortium {:?}, not a demo; pass another --dir",
                dir.display(),
                old.name
            );
        }
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("removing the previous demo in {}", dir.display()))?;
    }
    let parties = 3;
    let pools = default_pools(parties);
    let c = LocalConsortium::init(
        dir,
        ConsortiumConfig {
            name: DEMO_NAME.into(),
            parties,
            leader: 0,
            batch_size: 1 << 16,
            pools: pools.clone(),
        },
    )?;
    println!(
        "consortium of {parties} parties in {} (one store per party)",
        dir.display()
    );
    for &pool in &pools {
        deal(&c, pool, items)?;
    }
    write_stock_table(std::io::stdout().lock(), &c.stock()?)?;
    for &pool in &pools {
        let id = format!("demo-{pool}");
        let out = dir.join("checkouts").join(&id);
        let files = c.take(pool, items / 2, &id, &out)?;
        let r = verify(&files)?;
        println!(
            "checkout {id}: {} items at each party, reconstructed and checked ({})",
            r.items,
            out.display()
        );
    }
    write_stock_table(std::io::stdout().lock(), &c.stock()?)?;
    println!(
        "done; try: larder take --dir {} --pool triple-z64 --count 1000 --id mine --out shares",
        dir.display()
    );
    Ok(())
}
