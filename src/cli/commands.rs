//! The commands that drive the library: dealing on party stores, a node, the dealer over
//! HTTPS, an engine's checkout, status; and what they share (runtime, logging, tokens).

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use larder::auth::Token;
use larder::client::EngineClient;
use larder::cluster::DealerClient;
use larder::consortium::{write_stock_table, LocalConsortium};
use larder::generate::{Dealer, HeTriples, OwnMasks};
use larder::interop::mp_spdz;
use larder::material::{Maker, PoolSpec};
use larder::node::config::{ConsortiumConfig, NodeConfig};
use std::path::Path;

/// `larder deal`: with the trusted dealer, or with every party's own generator (the parties'
/// input masks, or the HE generator), each party on a thread of its own.
pub(crate) fn deal(
    c: &LocalConsortium,
    pool: PoolSpec,
    count: u64,
    generator: Maker,
) -> Result<()> {
    let bar = ProgressBar::new(count).with_style(
        ProgressStyle::with_template(
            "{msg} [{bar:40}] {human_pos}/{human_len} ({per_sec}, eta {eta})",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    bar.set_message(format!("dealing {pool}"));
    if !larder::generate::can_make(generator, &pool, c.config.parties()) {
        anyhow::bail!("the {generator} generator cannot make {pool}");
    }
    let n = c.config.parties();
    let r = match generator {
        Maker::Parties => {
            let mut own: Vec<OwnMasks> = (0..n).map(|_| OwnMasks::from_os_rng()).collect();
            c.make(&mut own, pool, count, |done| bar.set_position(done))?
        }
        Maker::He => {
            let mut own: Vec<HeTriples> = (0..n).map(|_| HeTriples::from_os_rng()).collect();
            c.make(&mut own, pool, count, |done| bar.set_position(done))?
        }
        Maker::Prss => {
            // Keys for this command alone: set up over the in-process mesh, used for every
            // batch it makes, and dropped (zeroized) when it ends; the batches keep only their
            // derived chunk keys.
            let mut own = larder::generate::prss::ephemeral(n)?;
            c.make(&mut own, pool, count, |done| bar.set_position(done))?
        }
        Maker::Dealer => {
            let mut dealer = Dealer::from_os_rng();
            c.deal(&mut dealer, pool, count, |done| bar.set_position(done))?
        }
    };
    bar.finish();
    println!("dealt {} items of {pool} in {} batches", r.items, r.batches);
    Ok(())
}

/// A node runs for months with many short-lived blocking threads (store calls): glibc gives
/// each thread that allocates its own malloc arena (up to eight per core) and keeps freed
/// memory in each, so resident memory climbed for the first minutes of a soak and stayed up
/// (`larder bench soak`, 90 s: 318 MiB at the leader with glibc's default, 129 MiB with two
/// arenas, about the same throughput). Two arenas; `MALLOC_ARENA_MAX` still overrides.
///
/// glibc also keeps what is freed inside its arenas: with two arenas, the leader's memory
/// still crept up for the whole first hour of a soak (12% over its last 45 minutes) although
/// what the node holds is bounded. Every 10 s a thread hands free memory back to the system.
pub(crate) fn few_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            // SAFETY: called before the runtime starts any thread; mallopt only sets a
            // tunable.
            unsafe {
                libc::mallopt(libc::M_ARENA_MAX, 2);
            }
        }
        std::thread::spawn(|| loop {
            std::thread::sleep(std::time::Duration::from_secs(10));
            // SAFETY: malloc_trim only releases free memory; any thread may call it.
            unsafe {
                libc::malloc_trim(0);
            }
        });
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

pub(crate) fn init_logging(default: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        // Colours only on a terminal: log files and journals get plain text.
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        // One object per line: time, level, target, the message and its fields flattened.
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// A nodes' consortium file with an HTTPS client that trusts only its CA, for the commands
/// that call nodes with a role's token (`larder jobs`, `larder audit export`).
pub(crate) fn consortium_client(
    consortium: &Path,
) -> Result<(larder::config::ConsortiumConfig, reqwest::Client)> {
    let cluster = larder::config::ConsortiumConfig::load_nodes(consortium)?;
    let ca_path = cluster.ca_certificate()?;
    let ca = std::fs::read_to_string(ca_path)
        .with_context(|| format!("reading {}", ca_path.display()))?;
    let http = larder::tls::client(&ca, std::time::Duration::from_secs(60))?;
    Ok((cluster, http))
}

/// Sends `req` with `token`; the answer's body, or its problem as the error.
pub(crate) async fn send_as(
    req: reqwest::RequestBuilder,
    token: &Token,
    whom: &str,
) -> Result<String> {
    let resp = req
        .bearer_auth(token.expose())
        .send()
        .await
        .with_context(|| format!("reaching {whom}"))?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        match serde_json::from_str::<larder::wire::Problem>(&text) {
            Ok(p) => anyhow::bail!("{status} {}: {}", p.code, p.detail),
            Err(_) => anyhow::bail!("{status}: {text}"),
        }
    }
    Ok(text)
}

pub(crate) fn read_token(path: &Path) -> Result<Token> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the token file {}", path.display()))?;
    Ok(Token::new(text.trim()))
}

pub(crate) async fn serve(node: &Path) -> Result<()> {
    let cfg = NodeConfig::load(node)?;
    // Handlers first: a SIGTERM during start-up still drains the node.
    let stop = larder::node::shutdown_signal();
    let running = larder::node::start(&cfg).await?;
    tracing::info!(party = cfg.party, addr = %running.addr, "node serving");
    stop.await;
    tracing::info!("shutting down");
    running.stop().await;
    Ok(())
}

pub(crate) async fn dealer(
    consortium: &Path,
    token_file: &Path,
    pool: PoolSpec,
    count: u64,
) -> Result<()> {
    let cluster = ConsortiumConfig::load_nodes(consortium)?;
    let batch_size = cluster.batch_size;
    let d = DealerClient::new(cluster, read_token(token_file)?)?;
    let bar = crate::cli::demo::progress_bar(count, format!("dealing {pool}"));
    let start = std::time::Instant::now();
    let dealt = d
        .deal(Dealer::from_os_rng(), pool, count, |done| {
            bar.set_position(done)
        })
        .await?;
    bar.finish();
    // Always, terminal or not: scripts and logs see what was committed.
    println!(
        "dealt {dealt} items of {pool} in {} batches, committed at every party ({:.1} s)",
        dealt.div_ceil(pool.batch_items(batch_size).max(1)),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

pub(crate) async fn checkout_mp_spdz(
    client: &EngineClient,
    plan: &mp_spdz::CheckoutPlan,
) -> Result<()> {
    if plan.pipes {
        eprintln!(
            "waiting for the engine to open its pipes under {} (Ctrl-C to stop)",
            plan.player_data.display()
        );
    }
    crate::cli::mp_spdz::checkout(client, plan, report_export).await?;
    Ok(())
}

pub(crate) fn report_export(done: &mp_spdz::Exported) {
    if done.unread > 0 {
        println!(
            "{} (the engine stopped reading after at most {} items)",
            done.path.display(),
            done.items
        );
        eprintln!(
            "note: the engine closed its pipe before the end: it needed fewer items than were \
             checked out. The other {} items were downloaded and are burned (never served \
             again); check out fewer next time (`larder plan` sizes checkouts from the \
             compiler's report)",
            done.unread
        );
        return;
    }
    println!("{} ({} items)", done.path.display(), done.items);
    let usable = done.items / mp_spdz::READ_BLOCK * mp_spdz::READ_BLOCK;
    if usable != done.items {
        eprintln!(
            "note: MP-SPDZ reads {} items at a time, so a program can use {usable} of these",
            mp_spdz::READ_BLOCK
        );
    }
}

pub(crate) async fn checkout(
    client: &EngineClient,
    pool: PoolSpec,
    count: u64,
    id: &str,
    out: &Path,
) -> Result<()> {
    use std::io::Write;
    let view = client.checkout(id, pool, count).await?;
    eprintln!(
        "checkout {:?}: {} items of {} in {} range(s)",
        view.id,
        view.count,
        view.pool,
        view.ranges.len()
    );
    // Written under a temporary name and renamed once complete: a rerun that the node
    // refuses (`410 already-consumed`) leaves the first run's shares as they were.
    let mut file = larder::secret_file::SecretFile::create(out)
        .with_context(|| format!("creating a file next to {}", out.display()))?;
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "downloading [{bar:30}] {binary_bytes} ({binary_bytes_per_sec})",
        )
        .expect("static template"),
    );
    let n = client
        .download_with(id, |piece| {
            bar.inc(piece.len() as u64);
            file.write_all(piece)
        })
        .await?;
    bar.finish();
    file.commit()
        .with_context(|| format!("writing {}", out.display()))?;
    println!("{} ({} bytes)", out.display(), n);
    Ok(())
}

pub(crate) async fn status(
    consortium: &Path,
    token_file: Option<&Path>,
    party: Option<u8>,
) -> Result<()> {
    use std::io::Write;
    let cluster = ConsortiumConfig::load_nodes(consortium)?;
    let ca = std::fs::read_to_string(cluster.ca_certificate()?)?;
    let token = token_file
        .map(read_token)
        .transpose()?
        .unwrap_or_else(|| Token::new(""));
    let mut out = std::io::stdout().lock();
    for p in cluster.nodes() {
        let client = EngineClient::new(&p.url, &ca, token.clone())?;
        let state = match client.health().await {
            Ok(h) => format!("up{}", if h.leader { ", leader" } else { "" }),
            Err(e) => format!("DOWN ({e})"),
        };
        writeln!(out, "party {} {:<10} {:<28} {state}", p.id, p.name, p.url)?;
    }
    drop(out);
    if token_file.is_some() {
        let mine = party.or_else(|| {
            let hash = token.hash();
            cluster
                .engines
                .iter()
                .find(|e| e.token_sha256 == hash)
                .map(|e| e.party)
        });
        let p = mine.context("the token belongs to no engine of this consortium; pass --party")?;
        let node = cluster.nodes().get(p as usize).with_context(|| {
            format!(
                "party {p} is not in this consortium (parties 0 to {})",
                cluster.parties() - 1
            )
        })?;
        let client = EngineClient::new(&node.url, &ca, token)?;
        let stock = client.stock().await.map_err(|e| {
            let hint = if e.status() == Some(403) && party.is_some() {
                "\n(an engine's token reads its own party's stock only; other parties' stock \
                 needs the dealer's token)"
            } else {
                ""
            };
            anyhow::anyhow!("stock at party {p}: {e}{hint}")
        })?;
        write_stock_table(std::io::stdout().lock(), &[(p, &stock.pools)])?;
        match client.forecast().await {
            Ok(f) => {
                for line in forecast_lines(&f) {
                    println!("{line}");
                }
            }
            Err(e) => println!("forecast: not available ({e})"),
        }
    }
    Ok(())
}

/// The leader's forecast in plain words: per pool, the stock and how long it lasts, the
/// scheduler's last decision; then the windows, and where they overlap in each site's time.
pub(crate) fn forecast_lines(f: &larder::wire::ForecastView) -> Vec<String> {
    use chrono::{DateTime, Utc};
    use chrono_tz::Tz;
    use larder::schedule::plan::items;
    let at = |t: i64| DateTime::<Utc>::from_timestamp(t, 0).unwrap_or_default();
    let zone_of = |name: &str| name.parse::<Tz>().unwrap_or(Tz::UTC);
    let leader_zone = f
        .windows
        .sites
        .first()
        .map_or(Tz::UTC, |s| zone_of(&s.zone));
    let hm = |t: i64, z: Tz| at(t).with_timezone(&z).format("%H:%M").to_string();
    let mut out = vec![String::new(), "forecast (at the leader):".to_string()];
    let window = match (f.windows.open, f.windows.changes_at) {
        (true, Some(c)) => format!("refill window open until {}", hm(c, leader_zone)),
        (true, None) => "refill window always open".to_string(),
        (false, Some(c)) => format!("next refill window {}", hm(c, leader_zone)),
        (false, None) => "no refill window in the next week (only floor refills)".to_string(),
    };
    for (pool, p) in &f.pools {
        let lasts = match p.hours_left {
            Some(h) => format!(
                "about {} at the recent rate ({}/s)",
                if h < 1.0 {
                    format!("{:.0} minutes", h * 60.0)
                } else if h < 10.0 {
                    format!("{h:.1} hours")
                } else {
                    format!("{h:.0} hours")
                },
                if p.per_second >= 1.0 {
                    items(p.per_second.round() as u64)
                } else {
                    format!("{:.2}", p.per_second)
                }
            ),
            None => "nothing consumed lately".to_string(),
        };
        let rate = |r: f64| {
            if r >= 1.0 {
                items(r.round() as u64)
            } else {
                format!("{r:.2}")
            }
        };
        let making = match (p.in_jobs, p.generated_per_second > 0.0) {
            (0, false) => String::new(),
            (0, true) => format!("; made at {}/s", rate(p.generated_per_second)),
            (n, _) => format!(
                "; {} being made, at {}/s",
                items(n),
                rate(p.generated_per_second)
            ),
        };
        let policy = match (p.target, p.refill_below, p.floor) {
            (Some(t), Some(r), Some(fl)) => format!(
                "; target {}, refill below {}, floor {}; {window}",
                items(t),
                items(r),
                items(fl)
            ),
            _ => "; no stock policy (operators refill it)".to_string(),
        };
        out.push(format!(
            "  {pool}: {} items, {lasts}{making}{policy}",
            items(p.available)
        ));
        if let Some(d) = &p.decision {
            out.push(format!("      last decision: {d}"));
        }
    }
    if !f.jobs.is_empty() {
        let jobs: Vec<String> = f.jobs.iter().map(|(s, n)| format!("{n} {s}")).collect();
        out.push(format!("jobs: {}", jobs.join(", ")));
    }
    out.push("windows:".to_string());
    for s in &f.windows.sites {
        let w = if !s.known {
            "unknown (party not reachable; counted as closed)".to_string()
        } else if s.windows.is_empty() {
            "any time".to_string()
        } else {
            s.windows.join(", ")
        };
        out.push(format!("  party {} ({}): {w}", s.party, s.zone));
    }
    let always = f
        .windows
        .sites
        .iter()
        .all(|s| s.known && s.windows.is_empty());
    if always {
        out.push("  overlap: always (no site restricts generation)".to_string());
    } else if f.windows.overlap.is_empty() {
        out.push("  overlap in the next 24 hours: none".to_string());
    }
    for st in f.windows.overlap.iter().filter(|_| !always) {
        let local: Vec<String> = f
            .windows
            .sites
            .iter()
            .map(|s| {
                let z = zone_of(&s.zone);
                format!(
                    "party {} {}-{} {}",
                    s.party,
                    hm(st.start, z),
                    hm(st.end, z),
                    s.zone
                )
            })
            .collect();
        out.push(format!("  overlap: {}", local.join(" = ")));
    }
    out
}
