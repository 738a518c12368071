//! The planner: stock, policies, the forecast, the windows and the clock in; the jobs to
//! create, each with its reason, out. Pure, so it is tested with a driven clock; the runner at
//! the leader (`node::schedule`) only applies what it decides.
//!
//! # Rules
//! - Stock counts the items of jobs already queued or running (nothing is planned twice).
//! - Inside a window, a pool below its refill threshold gets a job that brings it to its
//!   target, or to enough to last at the forecast rate until the next window opens, whichever
//!   is more: one night's window fills the pool for the next day. Such a job makes pieces
//!   only while the windows are open; outside them it waits.
//! - Outside a window, only a pool below its floor generates (an emergency refill, which runs
//!   at once): back to the floor plus what lasts at the forecast rate until the window opens
//!   (at least the floor again), at most its refill threshold. Waiting window jobs do not
//!   count then, since they cannot run.

use super::policy::StockPolicy;
use super::window::WindowState;
use crate::material::PoolSpec;
use crate::wire::JobOrigin;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// One pool as the planner sees it.
#[derive(Clone, Debug)]
pub struct PoolInput<'a> {
    pub pool: PoolSpec,
    pub policy: &'a StockPolicy,
    /// Items available at the leader.
    pub available: u64,
    /// Items live jobs have still to make, of jobs that may run now (an operator's, a
    /// floor refill; window jobs while the window is open).
    pub in_flight_now: u64,
    /// Items every live job has still to make.
    pub in_flight_all: u64,
    /// Forecast consumption, items per second.
    pub per_second: f64,
}

/// What to do about one pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create a job of `count` items.
    Plan { count: u64, origin: JobOrigin },
    /// Nothing now.
    Hold,
}

/// One decision, with its reason in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub pool: PoolSpec,
    pub action: Action,
    pub reason: String,
}

/// A count of items as people read it: 950, 4.2e9.
pub fn items(n: u64) -> String {
    if n < 1_000_000 {
        n.to_string()
    } else {
        format!("{:.1e}", n as f64)
    }
}

fn clock(t: DateTime<Utc>, zone: Tz) -> String {
    t.with_timezone(&zone).format("%H:%M").to_string()
}

fn secs_until(now: DateTime<Utc>, t: Option<DateTime<Utc>>) -> Option<f64> {
    t.map(|t| (t - now).num_milliseconds().max(0) as f64 / 1000.0)
}

/// Decides, for each pool, whether to plan a job now. `zone` is where the reasons' clock
/// times are read; `max_job_items` caps one job.
pub fn plan(
    now: DateTime<Utc>,
    window: &WindowState,
    zone: Tz,
    pools: &[PoolInput<'_>],
    max_job_items: u64,
) -> Vec<Decision> {
    pools
        .iter()
        .map(|p| decide(now, window, zone, p, max_job_items))
        .collect()
}

fn decide(
    now: DateTime<Utc>,
    window: &WindowState,
    zone: Tz,
    p: &PoolInput<'_>,
    max_job_items: u64,
) -> Decision {
    let levels = p.policy.levels(p.per_second);
    let have = if window.open {
        p.available.saturating_add(p.in_flight_all)
    } else {
        p.available.saturating_add(p.in_flight_now)
    };
    let pct = if levels.target == 0 {
        100.0
    } else {
        have as f64 * 100.0 / levels.target as f64
    };
    let making = if p.in_flight_all > 0 {
        format!(" incl. {} being made", items(p.in_flight_all))
    } else {
        String::new()
    };
    let standing = format!(
        "pool {} at {pct:.0}% of target ({} of {}{making})",
        p.pool,
        items(have),
        items(levels.target)
    );
    let last = |until: Option<DateTime<Utc>>| {
        secs_until(now, until).map_or(0, |s| (s * p.per_second).ceil() as u64)
    };
    let (count, origin, why) = if window.open {
        if have >= levels.refill_below {
            return hold(p, format!("{standing}: above its refill threshold"));
        }
        // Enough to last until the window after this one opens, and at least the target; at
        // most four targets (a forecast on little history can be far off).
        let want = levels
            .target
            .max(levels.floor.saturating_add(last(window.then_at)))
            .min(levels.target.saturating_mul(4).max(levels.target));
        // Below the floor even counting what runs now: a floor refill, which goes first.
        let origin = if p.available.saturating_add(p.in_flight_now) < levels.floor {
            JobOrigin::Floor
        } else {
            JobOrigin::Window
        };
        let until = window
            .changes_at
            .map_or("with no close in sight".to_string(), |c| {
                format!("window open until {}", clock(c, zone))
            });
        (want.saturating_sub(have), origin, until)
    } else {
        let opens = window.changes_at;
        let when = opens.map_or("no window ahead".to_string(), |o| {
            format!("window closed until {}", clock(o, zone))
        });
        if have >= levels.floor {
            let what = if have < levels.refill_below {
                "below its refill threshold, waits for the window"
            } else {
                "above its refill threshold"
            };
            return hold(p, format!("{standing}: {what}; {when}"));
        }
        // Back above the floor by what lasts until the window opens (at least the floor
        // again, so a cold start is not refilled item by item), at most the refill threshold:
        // the window does the rest.
        let want = levels
            .floor
            .saturating_add(last(opens).max(levels.floor))
            .min(levels.refill_below.max(levels.floor));
        (
            want.saturating_sub(have),
            JobOrigin::Floor,
            format!(
                "below its floor of {}, {when}: emergency refill",
                items(levels.floor)
            ),
        )
    };
    let count = count.min(max_job_items);
    if count == 0 {
        return hold(p, format!("{standing}: nothing to plan"));
    }
    Decision {
        pool: p.pool,
        action: Action::Plan { count, origin },
        reason: format!("{standing}, {why}, planned {} items", items(count)),
    }
}

fn hold(p: &PoolInput<'_>, reason: String) -> Decision {
    Decision {
        pool: p.pool,
        action: Action::Hold,
        reason,
    }
}

/// The `Retry-After` (real seconds) for an engine `short` items short: from the running job's
/// pace (`made` items in `elapsed` real seconds) if there is one, else from when the windows
/// open (`opens_in`, real time) if that is when the next job will run, else a few seconds (a
/// job is being planned now).
pub fn retry_after(
    short: u64,
    job: Option<(u64, u64)>,
    opens_in: Option<std::time::Duration>,
) -> u64 {
    const SOON: u64 = 5;
    match (job, opens_in) {
        (Some((made, elapsed)), _) if made > 0 => {
            let secs = (short as f64 * elapsed.max(1) as f64 / made as f64).ceil();
            (secs as u64).clamp(1, 3600)
        }
        (Some(_), _) => SOON,
        (None, Some(d)) => d.as_secs().clamp(1, 86_400),
        (None, None) => SOON,
    }
}
