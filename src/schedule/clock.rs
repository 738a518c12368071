//! The scheduler's clock: the system's, or a simulated one that starts at a given instant and
//! runs `speed` times faster than real time (rehearsing a policy over a day in minutes, and
//! the tests' driven clock). Only scheduling reads it: windows, the forecast and job sizes;
//! reservations, deadlines and the audit trail keep real time.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A simulated clock's settings (the node file's `[schedule.clock]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatedClock {
    /// The simulated instant the clock reads at `since` (RFC 3339).
    pub start: DateTime<Utc>,
    /// Simulated seconds per real second.
    pub speed: f64,
    /// The real instant at which the clock read `start` (default: when the node started).
    /// With it, every node of a consortium, and a node restarted, reads the same time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug)]
pub enum Clock {
    System,
    Simulated {
        start: DateTime<Utc>,
        speed: f64,
        since: DateTime<Utc>,
    },
}

impl Clock {
    /// A simulated clock.
    ///
    /// # Errors
    /// A speed that is not a positive number.
    pub fn simulated(s: &SimulatedClock) -> Result<Clock, String> {
        if !(s.speed.is_finite() && s.speed > 0.0 && s.speed <= 1e6) {
            return Err(format!(
                "clock speed {} must be a positive number, at most 1e6",
                s.speed
            ));
        }
        Ok(Clock::Simulated {
            start: s.start,
            speed: s.speed,
            since: s.since.unwrap_or_else(Utc::now),
        })
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Simulated {
                start,
                speed,
                since,
            } => {
                let real = (Utc::now() - *since).num_microseconds().unwrap_or(i64::MAX) as f64;
                *start + chrono::Duration::milliseconds((real / 1000.0 * speed) as i64)
            }
        }
    }

    /// Simulated seconds per real second (1 for the system clock).
    pub fn speed(&self) -> f64 {
        match self {
            Clock::System => 1.0,
            Clock::Simulated { speed, .. } => *speed,
        }
    }

    /// The real time a span of this clock's time takes.
    pub fn real(&self, d: chrono::Duration) -> std::time::Duration {
        let s = d.num_milliseconds().max(0) as f64 / 1000.0 / self.speed();
        std::time::Duration::from_secs_f64(s.min(1e9))
    }
}
