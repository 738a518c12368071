//! Generation windows: the hours in a site's own time zone in which it lends its machines to
//! generation, and where the windows of every party overlap.
//!
//! A window is either a daily range, `01:00-06:00 Europe/London` (it may cross midnight,
//! `22:00-02:00`), or a cron expression whose matching minutes are the window,
//! `cron * 1-5 * * Mon-Fri Europe/London` (open 01:00 to 05:59 on weekdays). Both are read
//! on the site's wall clock, so a daylight-saving change moves them with the site: on the
//! night the clocks go forward `01:00-06:00 Europe/London` is four real hours long, on the
//! night they go back six. A zone is an IANA name (chrono-tz); none means UTC. Cron
//! expressions are parsed by croner.

use chrono::{DateTime, Duration, DurationRound, NaiveTime, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One generation window of one site.
#[derive(Clone, Debug)]
pub struct Window {
    text: String,
    kind: Kind,
    zone: Tz,
}

#[derive(Clone, Debug)]
enum Kind {
    Daily { start: NaiveTime, end: NaiveTime },
    Cron(Box<croner::Cron>),
}

impl PartialEq for Window {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}
impl Eq for Window {}

impl FromStr for Window {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut words: Vec<&str> = text.split(' ').collect();
        let zone = match words.last().map(|w| w.parse::<Tz>()) {
            Some(Ok(z)) if words.len() > 1 => {
                words.pop();
                z
            }
            _ => Tz::UTC,
        };
        let kind = match words.as_slice() {
            ["cron", fields @ ..] => {
                if fields.len() != 5 {
                    return Err(format!(
                        "window {s:?}: a cron window has five fields (minute hour day month weekday), \
                         then an optional time zone"
                    ));
                }
                let cron = croner::Cron::from_str(&fields.join(" "))
                    .map_err(|e| format!("window {s:?}: {e}"))?;
                Kind::Cron(Box::new(cron))
            }
            [range] => {
                let (a, b) = range.split_once('-').ok_or_else(|| {
                    format!("window {s:?}: expected HH:MM-HH:MM [zone] or cron <5 fields> [zone]")
                })?;
                let time = |t: &str| {
                    NaiveTime::parse_from_str(t, "%H:%M")
                        .map_err(|e| format!("window {s:?}: {t:?} is not HH:MM ({e})"))
                };
                let (start, end) = (time(a)?, time(b)?);
                if start == end {
                    return Err(format!(
                        "window {s:?} is empty; for a site with no restriction, give no windows"
                    ));
                }
                Kind::Daily { start, end }
            }
            _ => {
                return Err(format!(
                    "window {s:?}: expected HH:MM-HH:MM [zone] or cron <5 fields> [zone] \
                     (is the zone an IANA name such as Europe/London?)"
                ))
            }
        };
        Ok(Window { text, kind, zone })
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Window {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Window {
    /// The site's time zone.
    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// Whether the window is open at `t`.
    pub fn open_at(&self, t: DateTime<Utc>) -> bool {
        let local = t.with_timezone(&self.zone);
        match &self.kind {
            Kind::Daily { start, end } => {
                let now = local.time().with_nanosecond(0).unwrap_or(local.time());
                if start < end {
                    *start <= now && now < *end
                } else {
                    now >= *start || now < *end
                }
            }
            Kind::Cron(c) => {
                let minute = local.duration_trunc(Duration::minutes(1)).unwrap_or(local);
                c.is_time_matching(&minute).unwrap_or(false)
            }
        }
    }
}

/// One site's windows: open when any of them is. A site with none is always open.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Windows(pub Vec<Window>);

impl Windows {
    pub fn open_at(&self, t: DateTime<Utc>) -> bool {
        self.0.is_empty() || self.0.iter().any(|w| w.open_at(t))
    }

    /// Whether the site restricts generation at all.
    pub fn always(&self) -> bool {
        self.0.is_empty()
    }

    /// The site's time zone (its first window's; UTC for a site with none).
    pub fn zone(&self) -> Tz {
        self.0.first().map_or(Tz::UTC, Window::zone)
    }
}

/// How far ahead window changes are looked for (a weekly cron window changes within a week).
pub const HORIZON: Duration = Duration::days(8);

/// The consortium's windows: generation that needs every party runs only where all of them
/// are open at once.
#[derive(Clone, Debug, Default)]
pub struct Overlap {
    /// Each party's windows, by party id.
    pub parties: Vec<(u8, Windows)>,
}

/// Where the overlap stands at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowState {
    pub open: bool,
    /// When it next closes (if open) or opens (if closed); `None`: not within [`HORIZON`]
    /// (always open, or never).
    pub changes_at: Option<DateTime<Utc>>,
    /// If open: when it opens again after that close; if closed: when it closes after that
    /// opening. `None` when not within [`HORIZON`].
    pub then_at: Option<DateTime<Utc>>,
}

impl WindowState {
    /// When the overlap opens next (now, if open).
    pub fn next_open(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.open {
            Some(now)
        } else {
            self.changes_at
        }
    }
}

impl Overlap {
    pub fn open_at(&self, t: DateTime<Utc>) -> bool {
        self.parties.iter().all(|(_, w)| w.open_at(t))
    }

    fn always(&self) -> bool {
        self.parties.iter().all(|(_, w)| w.always())
    }

    /// The first minute boundary after `t` (up to `t + HORIZON`) where openness differs from
    /// its value at `t`. Windows change only on minute boundaries (every zone's offset is a
    /// whole number of minutes), so a scan by minutes finds every change.
    pub fn next_change(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.always() {
            return None;
        }
        let now = self.open_at(t);
        let mut m = t.duration_trunc(Duration::minutes(1)).unwrap_or(t) + Duration::minutes(1);
        let end = t + HORIZON;
        while m <= end {
            if self.open_at(m) != now {
                return Some(m);
            }
            m += Duration::minutes(1);
        }
        None
    }

    /// Where the overlap stands at `t`.
    pub fn state(&self, t: DateTime<Utc>) -> WindowState {
        let open = self.open_at(t);
        let changes_at = self.next_change(t);
        let then_at = changes_at.and_then(|c| self.next_change(c));
        WindowState {
            open,
            changes_at,
            then_at,
        }
    }

    /// The stretches, from `t` to `t + within`, in which every party is open.
    pub fn open_stretches(
        &self,
        t: DateTime<Utc>,
        within: Duration,
    ) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let end = t + within;
        let mut out = Vec::new();
        let mut at = t;
        let mut open = self.open_at(t);
        while at < end {
            let next = self.next_change(at).map_or(end, |c| c.min(end));
            if open {
                out.push((at, next));
            }
            at = next;
            open = !open;
        }
        out
    }
}
