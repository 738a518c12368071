//! The forecast: each pool's consumption rate, exponentially weighted over a recent window,
//! and from it the hours of stock left and when the pool runs out.
//!
//! The rate is an exponentially weighted average of items per second: with time constant
//! `tau`, `S` (items checked out, each weighted by `exp(-age/tau)`) over `W` (the same weight
//! integrated over the time observed, `tau (1 - exp(-T/tau))`). For a steady rate `r` this is
//! `r` whatever `T`; over less than `tau` of history it is the plain average of what was seen
//! (no bias toward zero at start); older consumption fades with `tau`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One pool's consumption, as the leader saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// Weighted items.
    sum: f64,
    /// Weighted seconds observed.
    weight: f64,
    /// When `sum` and `weight` were last brought up to date (unix seconds, fractional).
    at: f64,
}

fn secs(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

impl Rate {
    /// Starts observing at `now`.
    pub fn new(now: DateTime<Utc>) -> Self {
        Rate {
            sum: 0.0,
            weight: 0.0,
            at: secs(now),
        }
    }

    /// Ages the record to `now` (time passing with nothing consumed lowers the rate).
    pub fn advance(&mut self, now: DateTime<Utc>, tau_seconds: f64) {
        let t = secs(now);
        let dt = t - self.at;
        if dt <= 0.0 || tau_seconds <= 0.0 {
            return;
        }
        let d = (-dt / tau_seconds).exp();
        self.sum *= d;
        self.weight = self.weight * d + tau_seconds * (1.0 - d);
        self.at = t;
    }

    /// `items` were checked out at `now`.
    pub fn observe(&mut self, now: DateTime<Utc>, items: u64, tau_seconds: f64) {
        self.advance(now, tau_seconds);
        self.sum += items as f64;
    }

    /// Items per second; 0 before any time has been observed.
    pub fn per_second(&self) -> f64 {
        if self.weight > 0.0 {
            self.sum / self.weight
        } else {
            0.0
        }
    }

    /// Items per second once at least `min_seconds` have been observed (0 before: a rate
    /// from a few minutes of history would size jobs wildly).
    pub fn settled_per_second(&self, min_seconds: f64) -> f64 {
        if self.weight >= min_seconds {
            self.per_second()
        } else {
            0.0
        }
    }

    /// Seconds observed, weighted (how much history the rate rests on, up to `tau`).
    pub fn observed_seconds(&self) -> f64 {
        self.weight
    }
}

/// Hours `stock` items last at `per_second`; `None` when nothing is being consumed.
pub fn hours_left(stock: u64, per_second: f64) -> Option<f64> {
    (per_second > 0.0).then(|| stock as f64 / per_second / 3600.0)
}

/// When `stock` items run out at `per_second`, from `now`.
pub fn runs_out_at(now: DateTime<Utc>, stock: u64, per_second: f64) -> Option<DateTime<Utc>> {
    let h = hours_left(stock, per_second)?;
    let ms = (h * 3_600_000.0).min(1e15) as i64;
    now.checked_add_signed(chrono::Duration::milliseconds(ms))
}
