//! `larder demo`: a complete consortium on this machine. Three party nodes on loopback with
//! TLS, the dealer fills every default pool over HTTPS, a sample checkout is downloaded at
//! every party and reconstructed, and the nodes serve engines until Ctrl-C.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use larder::client::EngineClient;
use larder::cluster::DealerClient;
use larder::consortium::{default_pools, verify};
use larder::generate::Dealer;
use larder::node::config::{ConsortiumConfig, NodeConfig};
use larder::node::provision::{provision, Plan};
use std::path::{Path, PathBuf};
use tokio::net::TcpListener;

/// Marks a directory as made by `larder demo`, so a later demo may replace it.
const MARKER: &str = ".larder-demo";

/// How the demo runs.
#[derive(Clone, Debug)]
pub struct Options {
    pub dir: PathBuf,
    /// Items dealt into each default pool.
    pub items: u64,
    /// Stop after the sample checkout instead of serving until Ctrl-C.
    pub once: bool,
}

/// A progress bar for `total` items.
pub fn progress_bar(total: u64, msg: String) -> ProgressBar {
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(
            "{msg:<28} [{bar:30}] {human_pos}/{human_len} ({per_sec}, eta {eta})",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    bar.set_message(msg);
    bar
}

fn prepare(dir: &Path) -> Result<()> {
    if dir.exists() {
        if !dir.join(MARKER).exists() {
            bail!(
                "{} exists and was not made by larder demo; pass another --dir",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("removing the previous demo in {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join(MARKER),
        "made by larder demo; replaced by the next one\n",
    )?;
    Ok(())
}

/// Runs the demo.
///
/// # Errors
/// Anything that stops the consortium from starting or the sample checkout from verifying.
pub async fn run(opts: Options) -> Result<()> {
    let dir = &opts.dir;
    prepare(dir)?;
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await?);
    }
    let addrs = listeners
        .iter()
        .map(|l| l.local_addr())
        .collect::<std::io::Result<Vec<_>>>()?;
    let pools = default_pools(3);
    let plan = Plan {
        name: "larder-demo".into(),
        leader: 0,
        addrs,
        pools: pools.clone(),
        batch_size: 1 << 16,
        reservation_ttl_seconds: 600,
        sweep_interval_ms: 1000,
    };
    let prov = provision(dir, &plan)?;
    let cluster = ConsortiumConfig::load_nodes(&prov.consortium)?;
    let mut nodes = Vec::new();
    for (path, l) in prov.nodes.iter().zip(listeners) {
        let node = NodeConfig::load(path)?;
        nodes.push(larder::node::start_with(&node, cluster.clone(), l).await?);
    }
    println!(
        "Larder demo: consortium {:?}, 3 party nodes with TLS, leader party 0, files in {}",
        cluster.name,
        dir.display()
    );

    let dealer = DealerClient::new(cluster.clone(), prov.dealer_token.clone())?;
    for &pool in &pools {
        let bar = progress_bar(opts.items, format!("dealing {pool}"));
        dealer
            .deal(Dealer::from_os_rng(), pool, opts.items, |done| {
                bar.set_position(done)
            })
            .await?;
        bar.finish();
    }

    // A sample checkout: every party's engine asks for the same id and downloads its shares.
    let ca = std::fs::read_to_string(&prov.ca)?;
    let pool = pools[0];
    let sample = 1000.min(opts.items);
    let mut files = Vec::new();
    for e in &prov.engines {
        let client = EngineClient::new(&e.url, &ca, e.token.clone())?;
        client.checkout("demo-sample", pool, sample).await?;
        let path = dir.join(format!("demo-sample-party{}.shares", e.party));
        let shares = client.download("demo-sample").await?;
        larder::secret_file::SecretFile::write(&path, |f| std::io::Write::write_all(f, &shares))?;
        files.push(path);
    }
    let report = verify(&files)?;
    println!("sample checkout \"demo-sample\": {} {pool} items downloaded at each party; reconstructed across parties: c = a*b holds for all", report.items);

    print_instructions(dir, &prov, pool);
    if !opts.once {
        println!("\nServing until Ctrl-C.");
        larder::node::shutdown_signal().await;
    }
    for n in nodes {
        n.stop().await;
    }
    Ok(())
}

fn print_instructions(
    dir: &Path,
    prov: &larder::node::provision::Provisioned,
    pool: larder::material::PoolSpec,
) {
    let ca = prov.ca.display();
    println!("\nWhat an engine needs (one per party; each uses its own party's node and token):");
    for e in &prov.engines {
        println!(
            "  party {}  {}  token file {}",
            e.party,
            e.url,
            e.token_file.display()
        );
    }
    println!(
        "  CA certificate: {ca}    consortium file: {}",
        prov.consortium.display()
    );
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "larder".into());
    println!("\nCheck out 1000 items at every party (each engine at its own node with its own token, all under the same id; the shares match):");
    for e in &prov.engines {
        println!(
            "  {exe} checkout --url {} --ca {ca} --token-file {} --pool {pool} --count 1000 --id my-job --out my-job-party{}.shares",
            e.url,
            e.token_file.display(),
            e.party
        );
    }
    let engines = prov
        .engines
        .first()
        .and_then(|e| e.token_file.parent())
        .map_or_else(|| "engines".to_string(), |d| d.display().to_string());
    println!("or with curl, for every party p:");
    println!(
        "  for p in {}; do\n    url=$(cat {engines}/engine-$p.url); auth=\"Authorization: Bearer $(cat {engines}/engine-$p.token)\"\n    curl -sf --cacert {ca} -H \"$auth\" -H 'content-type: application/json' -d '{{\"id\":\"my-job\",\"pool\":\"{pool}\",\"count\":1000}}' $url/v1/checkouts >/dev/null\n    curl -sf --cacert {ca} -H \"$auth\" $url/v1/checkouts/my-job/shares -o my-job-party$p.shares\n  done",
        (0..prov.engines.len()).map(|p| p.to_string()).collect::<Vec<_>>().join(" ")
    );
    println!(
        "Then: {exe} verify my-job-party*.shares   (combines every party's shares: for demos only)"
    );
    let _ = dir;
}
