//! Stock policy per pool (the consortium file's `[stock."<pool>"]`): the target stock (high
//! watermark), the refill threshold (low watermark), the emergency floor, the generator, and
//! how many pieces may be made at once.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A stock level: items, or hours of stock at the forecast rate (`"36h"`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Level {
    Items(u64),
    Hours(f64),
}

impl Default for Level {
    fn default() -> Self {
        Level::Items(0)
    }
}

impl Level {
    /// Items at `per_second` (an hours level is 0 while nothing is consumed).
    pub fn items(&self, per_second: f64) -> u64 {
        match *self {
            Level::Items(n) => n,
            Level::Hours(h) => (h * 3600.0 * per_second).ceil().min(u64::MAX as f64) as u64,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Level::Items(n) => write!(f, "{n}"),
            Level::Hours(h) => write!(f, "{h}h"),
        }
    }
}

impl std::str::FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(h) = s.strip_suffix('h') {
            let h: f64 = h
                .trim()
                .parse()
                .map_err(|_| format!("{s:?}: hours are a number followed by h, such as \"36h\""))?;
            if !(h.is_finite() && h >= 0.0) {
                return Err(format!("{s:?}: hours must be zero or more"));
            }
            return Ok(Level::Hours(h));
        }
        let n: f64 = s
            .parse()
            .map_err(|_| format!("{s:?}: a level is a count of items (2e9) or hours (\"36h\")"))?;
        items(n)
    }
}

fn items(n: f64) -> Result<Level, String> {
    if !(n.is_finite() && n >= 0.0 && n.fract() == 0.0 && n < 1.9e19) {
        return Err(format!("{n}: a count of items is a whole number >= 0"));
    }
    Ok(Level::Items(n as u64))
}

impl Serialize for Level {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Level::Items(n) => s.serialize_u64(*n),
            Level::Hours(_) => s.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Float(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(Level::Items(n)),
            Raw::Float(f) => items(f).map_err(serde::de::Error::custom),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// How the scheduler keeps one pool stocked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockPolicy {
    /// The stock a refill brings the pool to (high watermark).
    pub target: Level,
    /// Below this, a refill is planned in the next window (low watermark).
    pub refill_below: Level,
    /// Below this, a refill is planned at once, window or not (emergency floor).
    #[serde(default)]
    pub floor: Level,
    /// The generator the scheduler's jobs use (`dealer`, `he`, `parties`); default: the
    /// dealer if the consortium has one and the pool accepts it, else the first the pool
    /// accepts that can make it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<String>,
    /// Most pieces of this pool's jobs being made at once (dealer workers busy with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_workers: Option<u32>,
}

/// A policy's levels in items at a rate, ordered floor <= refill <= target (a lower level
/// given in other units raises the higher ones, never the reverse: a floor in items holds
/// while hours levels are still 0 for want of consumption).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Levels {
    pub target: u64,
    pub refill_below: u64,
    pub floor: u64,
}

impl StockPolicy {
    pub fn levels(&self, per_second: f64) -> Levels {
        let floor = self.floor.items(per_second);
        let refill_below = self.refill_below.items(per_second).max(floor);
        let target = self.target.items(per_second).max(refill_below);
        Levels {
            target,
            refill_below,
            floor,
        }
    }

    /// # Errors
    /// Levels in the same unit out of order.
    pub fn validate(&self) -> Result<(), String> {
        let ordered = |a: &Level, b: &Level| match (a, b) {
            (Level::Items(x), Level::Items(y)) => x <= y,
            (Level::Hours(x), Level::Hours(y)) => x <= y,
            _ => true,
        };
        if !ordered(&self.refill_below, &self.target) {
            return Err(format!(
                "refill_below ({}) is above target ({})",
                self.refill_below, self.target
            ));
        }
        if !ordered(&self.floor, &self.refill_below) {
            return Err(format!(
                "floor ({}) is above refill_below ({})",
                self.floor, self.refill_below
            ));
        }
        // With nothing consumed yet, hours are 0 items: an empty pool must still be refilled
        // for its first engine to consume anything.
        let some_items = [&self.target, &self.refill_below, &self.floor]
            .iter()
            .any(|l| matches!(l, Level::Items(n) if *n > 0));
        if !some_items {
            return Err(
                "every level is in hours, which are 0 items until something is consumed, and \
                 nothing can be consumed from an empty pool: give one level (the floor, say) \
                 in items"
                    .into(),
            );
        }
        if self.max_workers == Some(0) {
            return Err("max_workers 0 would never make anything".into());
        }
        Ok(())
    }
}
