//! `larder demo`: a complete consortium on this machine. Party nodes (three by default) on loopback with
//! TLS, the dealer fills every default pool over HTTPS, a sample checkout is downloaded at
//! every party and reconstructed, and the nodes serve engines until Ctrl-C.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use larder::consortium::{default_pools, verify};
use larder::generate::Dealer;
use larder::node::launch::InProcess;
use larder::node::provision::Plan;
use std::path::{Path, PathBuf};

/// Marks a directory as made by `larder demo`, so a later demo may replace it.
const MARKER: &str = ".larder-demo";

/// The pools of the kinds CrypTen burns beside triples, which the demo fills too.
const CRYPTEN_POOLS: [&str; 4] = ["square-z64", "wrap-z64", "binary-triple-z64", "dabit-z64"];

/// Matrix triples for `clients/python/examples/crypten_mlp.py --private-model` with 1000
/// patients (its two layers), and how many of each the demo deals.
const CRYPTEN_MATRIX_POOLS: [&str; 2] = [
    "matrix-triple-z64-1000x16x32",
    "matrix-triple-z64-1000x32x1",
];
const CRYPTEN_MATRIX_ITEMS: u64 = 20;

/// Items CrypTen burns per elementwise comparison or ReLU, per pool, measured with
/// `clients/python/examples/crypten_mlp.py` (1000 patients, 33 comparisons each, burned 858 000
/// binary triples, 47 000 wraps, 33 000 daBits, 37 000 triples and 10 000 squares), rounded up
/// for the blocks `larder_client.crypten` checks out ahead.
const CRYPTEN_PER_ELEMENT: [(&str, f64); 5] = [
    ("binary-triple-z64", 27.0),
    ("wrap-z64", 1.5),
    ("dabit-z64", 1.1),
    ("triple-z64", 1.2),
    ("square-z64", 0.4),
];

/// Items of `pool` for a CrypTen run of `elements` elementwise comparisons.
fn crypten_stock(pool: &str, elements: u64) -> u64 {
    if CRYPTEN_MATRIX_POOLS.contains(&pool) {
        return if elements > 0 {
            CRYPTEN_MATRIX_ITEMS
        } else {
            0
        };
    }
    CRYPTEN_PER_ELEMENT
        .iter()
        .find(|(p, _)| *p == pool)
        .map_or(0, |(_, per)| (elements as f64 * per).ceil() as u64)
}

/// How the demo runs.
#[derive(Clone, Debug)]
pub struct Options {
    pub dir: PathBuf,
    /// Items dealt into each default pool.
    pub items: u64,
    /// Stop after the sample checkout instead of serving until Ctrl-C.
    pub once: bool,
    /// Parties (2 to 5).
    pub parties: u8,
    /// CrypTen stock for this many elementwise comparisons (see [`CRYPTEN_PER_ELEMENT`]).
    pub crypten_elements: u64,
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

/// Deals `items` of `pool` with a fresh dealer, showing a progress bar labelled `msg`.
async fn deal_showing(
    dealer: &larder::cluster::DealerClient,
    pool: larder::material::PoolSpec,
    items: u64,
    msg: String,
) -> Result<()> {
    let bar = progress_bar(items, msg);
    dealer
        .deal(Dealer::from_os_rng(), pool, items, |done| {
            bar.set_position(done)
        })
        .await?;
    bar.finish();
    Ok(())
}

/// Has the nodes make `items` of `pool` with `generator` (a job, as an operator would create
/// with `larder jobs create --generator he|prss`), showing its progress.
async fn make_at_nodes(
    launch: &larder::node::launch::Launch,
    pool: larder::material::PoolSpec,
    items: u64,
    generator: larder::material::Maker,
    how: &str,
) -> Result<()> {
    let req = larder::wire::JobRequest {
        pool,
        count: items,
        generator: generator.name().into(),
    };
    let bar = progress_bar(items, format!("the nodes make {pool} ({generator})"));
    super::worker::run_job(launch, &req, std::time::Duration::from_millis(100), |j| {
        bar.set_position(j.made)
    })
    .await?;
    bar.finish();
    println!("{pool}: {items} items made by the nodes themselves {how}");
    Ok(())
}

/// Runs the demo.
///
/// # Errors
/// Anything that stops the consortium from starting or the sample checkout from verifying.
pub async fn run(opts: Options) -> Result<()> {
    let dir = &opts.dir;
    prepare(dir)?;
    let mut pools = default_pools(opts.parties);
    // What CrypTen burns beside triples: wraps (3-party truncation), binary triples
    // (comparisons, ReLU) and daBits (binary to arithmetic).
    let crypten: Vec<larder::material::PoolSpec> = CRYPTEN_POOLS
        .iter()
        .chain(&CRYPTEN_MATRIX_POOLS)
        .map(|p| p.parse())
        .collect::<Result<_, _>>()?;
    pools.extend(crypten.iter().copied());
    // One pool the consortium accepts from the HE generator only: made by the nodes
    // themselves, no dealer (a dealer's batch of it would be refused at staging).
    let he_pool: larder::material::PoolSpec = "triple-p60".parse()?;
    let mut all = pools.clone();
    all.push(he_pool);
    // One pool that takes dealer-free material only (a dishonest or an honest majority),
    // made by PRSS: keys set up once between the nodes, then triples with one opening each.
    let prss_pool: Option<larder::material::PoolSpec> = (opts.parties >= 3)
        .then(|| "triple-p61".parse())
        .transpose()?;
    all.extend(prss_pool);
    // The leader's scheduler keeps the first pool stocked by itself (any time: the demo's
    // sites declare no windows), with a dealer worker of the demo's making the jobs.
    let kept = pools[0];
    let policy = larder::schedule::StockPolicy {
        target: larder::schedule::Level::Items(2 * opts.items),
        refill_below: larder::schedule::Level::Items(opts.items),
        floor: larder::schedule::Level::Items(opts.items / 4),
        generator: None,
        max_workers: None,
    };
    let plan = Plan {
        pool_generators: [(he_pool, vec![larder::material::Maker::He])]
            .into_iter()
            .collect(),
        pool_assumptions: prss_pool
            .map(|p| {
                use larder::material::Assumption::{DishonestMajority, HonestMajority};
                (p, vec![DishonestMajority, HonestMajority])
            })
            .into_iter()
            .collect(),
        stock: [(kept, policy.clone())].into_iter().collect(),
        // Each node's metrics on a free loopback port.
        metrics: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        ..Plan::local("larder-demo", opts.parties, all)
    };
    let consortium = InProcess::start(dir, plan).await?;
    let metrics: Vec<std::net::SocketAddr> = consortium
        .nodes
        .iter()
        .filter_map(|n| n.as_ref().and_then(|n| n.metrics_addr))
        .collect();
    let prometheus = write_prometheus(dir, &metrics)?;
    let (prov, cluster) = (&consortium.launch.prov, &consortium.launch.cluster);
    println!(
        "Larder demo: consortium {:?}, {} party nodes with TLS, leader party 0, files in {}",
        cluster.name,
        opts.parties,
        dir.display()
    );

    // The scheduler fills the kept pool by itself (the leader planned a job at its first
    // look); the demo's dealer worker makes it.
    let worker = tokio::spawn(super::worker::work_quietly(
        prov.consortium.clone(),
        prov.dealer_token_file.clone(),
    ));
    let dealer = consortium.launch.dealer()?;
    for &pool in pools.iter().filter(|p| **p != kept) {
        let id = pool.to_string();
        let items = if CRYPTEN_MATRIX_POOLS.contains(&id.as_str()) {
            crypten_stock(&id, opts.crypten_elements).max(1)
        } else {
            opts.items.max(crypten_stock(&id, opts.crypten_elements))
        };
        deal_showing(&dealer, pool, items, format!("dealing {pool}")).await?;
    }

    make_at_nodes(
        &consortium.launch,
        he_pool,
        opts.items,
        larder::material::Maker::He,
        "with homomorphic encryption (no dealer; the pool refuses a dealer's batches)",
    )
    .await?;
    if let Some(pool) = prss_pool {
        make_at_nodes(
            &consortium.launch,
            pool,
            opts.items,
            larder::material::Maker::Prss,
            "with pseudo-random secret sharing (no dealer; secure while no two parties \
             collude; the pool takes dealer-free material only)",
        )
        .await?;
        println!(
            "PRSS keys: `larder prss --consortium {} --token-file {} [status|rotate|retire --epoch N]`",
            consortium.launch.prov.consortium.display(),
            consortium.launch.prov.operator_token_file.display()
        );
    }
    let levels = policy.levels(0.0);
    let leader = consortium.launch.engine(cluster.leader)?;
    let bar = progress_bar(levels.target, format!("the scheduler fills {kept}"));
    let started = std::time::Instant::now();
    loop {
        let have = leader
            .stock()
            .await?
            .pools
            .get(&kept)
            .map_or(0, |s| s.available);
        bar.set_position(have);
        if have >= levels.target {
            break;
        }
        if started.elapsed() > std::time::Duration::from_secs(600) {
            bail!("the scheduler did not fill {kept} within ten minutes (see the nodes' log)");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    bar.finish();
    println!(
        "{kept}: kept stocked by the leader's scheduler (refilled to {} when below {}; at once \
         below {}), a dealer worker making its jobs: see `larder jobs watch`",
        levels.target, levels.refill_below, levels.floor
    );
    // CrypTen's share of triples, on top of what the scheduler keeps.
    let extra = crypten_stock(&kept.to_string(), opts.crypten_elements);
    if extra > 0 {
        deal_showing(&dealer, kept, extra, format!("dealing {kept} for CrypTen")).await?;
    }
    print_crypten(dir, prov, opts.crypten_elements);

    // A sample checkout: every party's engine asks for the same id and downloads its shares.
    let pool = pools[0];
    let sample = 1000.min(opts.items);
    let mut files = Vec::new();
    for e in &prov.engines {
        let client = consortium.launch.engine(e.party)?;
        client.checkout("demo-sample", pool, sample).await?;
        let path = dir.join(format!("demo-sample-party{}.shares", e.party));
        let shares = client.download("demo-sample").await?;
        larder::secret_file::SecretFile::write(&path, |f| std::io::Write::write_all(f, &shares))?;
        files.push(path);
    }
    let report = verify(&files)?;
    println!("sample checkout \"demo-sample\": {} {pool} items downloaded at each party; reconstructed across parties: c = a*b holds for all", report.items);

    print_instructions(prov, pool);
    println!(
        "\nMetrics (Prometheus text format; stock, rates, hours left, jobs, latencies, errors):"
    );
    for (p, at) in metrics.iter().enumerate() {
        println!("  party {p}  http://{at}/metrics");
    }
    println!(
        "To watch them with the alert rules: prometheus --config.file={}\n         (then http://localhost:9090; the Grafana dashboard is grafana/dashboards/larder.json, \
         and deploy/README.md brings Prometheus and Grafana up with Docker Compose)",
        prometheus.display()
    );
    if !opts.once {
        println!("\nServing until Ctrl-C.");
        larder::node::shutdown_signal().await;
    }
    worker.abort();
    consortium.stop_all().await;
    Ok(())
}

fn print_crypten(dir: &Path, prov: &larder::node::provision::Provisioned, elements: u64) {
    let ranks = prov.engines.len();
    let stock: Vec<String> = CRYPTEN_PER_ELEMENT
        .iter()
        .map(|(pool, _)| format!("{pool} {}", crypten_stock(pool, elements)))
        .collect();
    println!(
        "CrypTen's pools: stock for {elements} elementwise comparisons or ReLUs ({}); more with \
         `larder jobs --consortium {} --token-file {} create --pool <pool> --count <n>` (a dealer \
         worker is running)",
        stock.join(", "),
        prov.consortium.display(),
        prov.operator_token_file.display()
    );
    println!(
        "Matrix triples for the example's private model with 1000 patients: {CRYPTEN_MATRIX_ITEMS} \
         each of {}",
        CRYPTEN_MATRIX_POOLS.join(", ")
    );
    println!(
        "CrypTen ({ranks} ranks, rank p at party p's node): after crypten.init(), \
         larder_client.crypten.install(demo={:?}); see docs/engines/crypten.md",
        dir.display().to_string()
    );
}

fn print_instructions(
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
    println!(
        "\nThe scheduler refills {pool} as engines use it; watch its jobs, and the forecast:\n  \
         {exe} jobs --consortium {} --token-file {} watch\n  \
         {exe} status --consortium {} --token-file {}",
        prov.consortium.display(),
        prov.operator_token_file.display(),
        prov.consortium.display(),
        prov.engines[0].token_file.display()
    );
}

/// The repository's Prometheus configuration and alert rules, with targets for the demo's
/// nodes, under `dir/prometheus`; the configuration's path.
fn write_prometheus(
    dir: &std::path::Path,
    metrics: &[std::net::SocketAddr],
) -> Result<std::path::PathBuf> {
    let at = dir.join("prometheus");
    std::fs::create_dir_all(at.join("rules"))?;
    std::fs::create_dir_all(at.join("targets"))?;
    std::fs::write(
        at.join("prometheus.yml"),
        include_str!("../../deploy/prometheus/prometheus.yml"),
    )?;
    std::fs::write(
        at.join("rules/larder.rules.yml"),
        include_str!("../../deploy/prometheus/rules/larder.rules.yml"),
    )?;
    let targets: Vec<serde_json::Value> = metrics
        .iter()
        .enumerate()
        .map(|(p, a)| {
            serde_json::json!({"targets": [a.to_string()], "labels": {"party": p.to_string()}})
        })
        .collect();
    std::fs::write(
        at.join("targets/nodes.json"),
        serde_json::to_string_pretty(&targets)?,
    )?;
    Ok(at.join("prometheus.yml"))
}
