//! `larder plan`: sizes a checkout and a stock target from what an engine says one run
//! needs, starting with MP-SPDZ's compiler report.

use anyhow::{bail, Context, Result};
use larder::interop::requirements::{classify, parse_report, Need};
use larder::material::PoolSpec;
use larder::math::Domain;
use larder::schedule::plan::items;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// What `larder plan` was asked.
pub(crate) struct PlanArgs<'a> {
    /// The compiler's output (`-` for stdin).
    pub report: &'a Path,
    /// The program's `integer` domain: `z64` for `-R 64`, the prime field otherwise.
    pub domain: Domain,
    pub runs_per_day: Option<f64>,
    /// Count for requirements the compiler could not bound.
    pub unknown_as: Option<u64>,
    /// A consortium file, to check that its pools are kept.
    pub consortium: Option<&'a Path>,
}

/// The plan: items per run, by pool.
pub(crate) fn per_run(
    text: &str,
    domain: Domain,
    unknown_as: Option<u64>,
) -> Result<(BTreeMap<PoolSpec, u64>, Vec<String>)> {
    let mut pools: BTreeMap<PoolSpec, u64> = BTreeMap::new();
    let mut notes = Vec::new();
    let mut unknown = Vec::new();
    for r in parse_report(text).map_err(anyhow::Error::msg)? {
        match classify(&r.what) {
            Need::Material { kind, owner } => {
                let count = match (r.count, unknown_as) {
                    (Some(n), _) => n,
                    (None, Some(n)) => {
                        notes.push(format!(
                            "{}: unknown to the compiler, counted as {n} (--unknown-as)",
                            r.what
                        ));
                        n
                    }
                    (None, None) => {
                        unknown.push(r.what.clone());
                        continue;
                    }
                };
                let pool = PoolSpec {
                    kind,
                    domain,
                    threshold: None,
                    owner,
                    shape: None,
                };
                if kind == larder::material::Kind::Inverse && domain.modulus().is_none() {
                    bail!("the program needs inverses, which exist only in prime fields; {domain} is a ring");
                }
                *pools.entry(pool).or_default() += count;
            }
            Need::Online => {}
            Need::NotServed => notes.push(format!(
                "{} ({}): not Larder material; the engine makes it itself",
                r.what,
                r.count.map_or("unknown".to_string(), |n| n.to_string())
            )),
        }
    }
    if !unknown.is_empty() {
        bail!(
            "the compiler could not count {} (a loop whose bound is known only at run time): \
             give --unknown-as N with the most one run can need",
            unknown.join(", ")
        );
    }
    Ok((pools, notes))
}

pub(crate) fn run(args: &PlanArgs<'_>) -> Result<()> {
    let mut text = String::new();
    if args.report == Path::new("-") {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text = std::fs::read_to_string(args.report)
            .with_context(|| format!("reading {}", args.report.display()))?;
    }
    let (pools, notes) = per_run(&text, args.domain, args.unknown_as)?;
    let kept = match args.consortium {
        Some(c) => Some(larder::config::ConsortiumConfig::load(c)?.pools),
        None => None,
    };
    println!("one run needs:");
    for (pool, n) in &pools {
        let missing = match &kept {
            Some(k) if !k.contains(pool) => "   (the consortium does not keep this pool)",
            _ => "",
        };
        println!("  {:<24} {:>14}{missing}", pool.to_string(), n);
    }
    for n in &notes {
        println!("  note: {n}");
    }
    println!("\ncheck out per run (each party's engine, the same id at every party):");
    for (pool, n) in &pools {
        println!("  larder checkout --pool {pool} --count {n} ...");
    }
    if let Some(runs) = args.runs_per_day {
        if !(runs.is_finite() && runs > 0.0) {
            bail!("--runs-per-day must be a positive number");
        }
        println!(
            "\nstock for {runs} runs a day (a night's window fills the next day, with a quarter \
             to spare; refill when less than a day is left; an emergency floor of two runs), \
             for the consortium file:"
        );
        for (pool, n) in &pools {
            let day = (*n as f64 * runs).ceil() as u64;
            println!("\n[stock.\"{pool}\"]");
            let target = day + day.div_ceil(4);
            if target >= 1_000_000 {
                println!("target = {target}   # {}", items(target));
            } else {
                println!("target = {target}");
            }
            println!("refill_below = {day}");
            println!("floor = {}", n.saturating_mul(2).min(day));
        }
    }
    Ok(())
}
