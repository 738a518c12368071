//! Crash points for the crash harness (`tests/crash_cluster.rs`).
//!
//! Start a process with `LARDER_CRASH_AT=<point>:<n>` and it kills itself with SIGKILL the
//! n-th time it reaches `<point>`: no unwinding, no flush, no destructor, exactly as if the
//! operator's machine lost power there. Without the variable a point costs one atomic load.
//! The points sit between the protocol's durable steps (see [`POINTS`]), so every "persisted
//! here but not yet told to the others" state can be reproduced from a seed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Every crash point, in protocol order, with where it sits.
pub const POINTS: &[(&str, &str)] = &[
    (
        "dealer.staged",
        "dealer: one party's share staged, before the next party's",
    ),
    (
        "dealer.before-commit",
        "dealer: every party staged, before asking the leader to commit",
    ),
    (
        "stage.durable",
        "node: a staged batch durable, before answering the dealer",
    ),
    (
        "commit.checked",
        "leader: every follower holds the batch, before activating it",
    ),
    (
        "commit.activated",
        "leader: batch available here, before telling the followers",
    ),
    (
        "activate.durable",
        "follower: batch available here, before answering the leader",
    ),
    (
        "checkout.allocated",
        "leader: reservation persisted, before replicating it",
    ),
    (
        "apply.durable",
        "follower: reservation held, before answering the leader",
    ),
    (
        "checkout.replicated",
        "leader: every follower holds it, before confirming",
    ),
    (
        "checkout.confirmed",
        "leader: confirmed, before answering the engine",
    ),
    (
        "confirm.durable",
        "follower: confirmation recorded, before answering the leader",
    ),
    (
        "download.consumed",
        "node: items consumed durably, before the first byte is sent",
    ),
    ("download.streaming", "node: part of the share stream sent"),
    (
        "expire.decided",
        "leader: downloaded-or-not decided, before telling the followers",
    ),
    (
        "expire.follower",
        "follower: released or burned here, before answering the leader",
    ),
    (
        "expire.settling",
        "leader: every follower done, before settling here",
    ),
    (
        "job.leased",
        "leader: a job's piece leased durably, before answering the worker",
    ),
    (
        "job.committed",
        "leader: a piece's batch committed, before the job counts it",
    ),
    (
        "he.exchanged",
        "node: every HE message of a batch exchanged, before its share is written",
    ),
    (
        "he.staged",
        "node: its HE share staged durably, before answering the leader",
    ),
    (
        "prss.opened",
        "node: a PRSS batch's opening to the king exchanged, before its share is written",
    ),
    (
        "prss.staged",
        "node: its PRSS share staged durably, before answering the leader",
    ),
    (
        "prss.keys-stored",
        "node: its keys of a new PRSS epoch stored durably, before answering the leader",
    ),
];

static PLAN: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

fn plan() -> &'static Option<(String, u64)> {
    PLAN.get_or_init(|| {
        let v = std::env::var("LARDER_CRASH_AT").ok()?;
        let (point, n) = v.rsplit_once(':')?;
        let n: u64 = n.parse().ok().filter(|&n| n > 0)?;
        if !POINTS.iter().any(|(p, _)| *p == point) {
            eprintln!("LARDER_CRASH_AT names no crash point: {point:?}");
            std::process::exit(2);
        }
        Some((point.to_string(), n))
    })
}

/// Marks that this process reached `point`; dies here if the plan says so.
#[inline]
pub fn hit(point: &'static str) {
    debug_assert!(POINTS.iter().any(|(p, _)| *p == point), "{point}");
    if let Some((p, n)) = plan() {
        if p == point && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n {
            eprintln!("crash point {point} reached: SIGKILL");
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGKILL);
            // SIGKILL cannot be caught; should the call fail, die anyway without unwinding.
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::POINTS;

    fn sources(dir: &std::path::Path, out: &mut String) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("failpoint.rs") {
                out.push_str(&std::fs::read_to_string(&p).unwrap());
            }
        }
    }

    #[test]
    fn every_listed_point_is_placed_and_every_placed_point_is_listed() {
        let mut code = String::new();
        sources(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut code,
        );
        for (p, _) in POINTS {
            assert!(
                code.contains(&format!("failpoint::hit(\"{p}\")")),
                "{p} is listed but not placed"
            );
        }
        for placed in code.split("failpoint::hit(\"").skip(1) {
            let name = placed.split('"').next().unwrap();
            assert!(
                POINTS.iter().any(|(p, _)| *p == name),
                "{name} is not listed"
            );
        }
    }
}
