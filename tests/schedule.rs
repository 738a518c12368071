//! The scheduler's pure parts under a driven clock: windows (midnight, daylight saving,
//! overlap of sites in different zones, cron), the planner's rules, the forecast, and the
//! Retry-After an underrun gets.

use chrono::{DateTime, Duration, Utc};
use larder::material::PoolSpec;
use larder::schedule::{
    forecast, plan, retry_after, Action, Level, Overlap, PoolInput, Rate, StockPolicy, Windows,
};
use larder::wire::JobOrigin;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn windows(list: &[&str]) -> Windows {
    Windows(list.iter().map(|w| w.parse().unwrap()).collect())
}

fn site(list: &[&str]) -> Overlap {
    Overlap {
        parties: vec![(0, windows(list))],
    }
}

fn policy(target: u64, refill: u64, floor: u64) -> StockPolicy {
    StockPolicy {
        target: Level::Items(target),
        refill_below: Level::Items(refill),
        floor: Level::Items(floor),
        generator: None,
        max_workers: None,
    }
}

fn pool() -> PoolSpec {
    "triple-z64".parse().unwrap()
}

/// One planning step for one pool at `now`.
fn step(
    overlap: &Overlap,
    now: DateTime<Utc>,
    policy: &StockPolicy,
    available: u64,
    in_flight: (u64, u64),
    per_second: f64,
) -> (Action, String) {
    let state = overlap.state(now);
    let input = PoolInput {
        pool: pool(),
        policy,
        available,
        in_flight_now: in_flight.0,
        in_flight_all: in_flight.1,
        per_second,
    };
    let d = plan(
        now,
        &state,
        chrono_tz::Tz::Europe__London,
        &[input],
        u64::MAX,
    )
    .pop()
    .unwrap();
    (d.action, d.reason)
}

#[test]
fn below_refill_outside_a_window_waits_until_the_window_opens() {
    let night = site(&["01:00-06:00 Europe/London"]);
    let p = policy(1_000_000, 500_000, 100_000);
    let mut now = utc("2026-01-14T20:00:00Z");
    // Every driven minute until the window: nothing planned.
    while now < utc("2026-01-15T01:00:00Z") {
        let (a, why) = step(&night, now, &p, 200_000, (0, 0), 0.0);
        assert_eq!(a, Action::Hold, "{now}: {why}");
        assert!(why.contains("waits for the window"), "{why}");
        now += Duration::minutes(7);
    }
    let (a, why) = step(
        &night,
        utc("2026-01-15T01:00:00Z"),
        &p,
        200_000,
        (0, 0),
        0.0,
    );
    assert_eq!(
        a,
        Action::Plan {
            count: 800_000,
            origin: JobOrigin::Window
        },
        "{why}"
    );
    assert!(why.contains("window open until 06:00"), "{why}");
    assert!(why.contains("at 20% of target"), "{why}");
}

#[test]
fn below_the_floor_outside_a_window_generates_at_once() {
    let night = site(&["01:00-06:00 Europe/London"]);
    let p = policy(1_000_000, 500_000, 100_000);
    let (a, why) = step(&night, utc("2026-01-14T14:00:00Z"), &p, 50_000, (0, 0), 0.0);
    // Nothing is being consumed: the floor again above the floor.
    assert_eq!(
        a,
        Action::Plan {
            count: 150_000,
            origin: JobOrigin::Floor
        },
        "{why}"
    );
    assert!(why.contains("emergency refill"), "{why}");
    // Consumed at 10 items/s, eleven hours to the window need 396000 more than the floor.
    let (a, _) = step(
        &night,
        utc("2026-01-14T14:00:00Z"),
        &p,
        50_000,
        (0, 0),
        10.0,
    );
    assert_eq!(
        a,
        Action::Plan {
            count: 100_000 + 396_000 - 50_000,
            origin: JobOrigin::Floor
        }
    );
    // At most the refill threshold, however long until the window.
    let at = utc("2026-01-14T14:00:00Z");
    let (a, _) = step(&night, at, &p, 50_000, (0, 0), 100.0);
    assert_eq!(
        a,
        Action::Plan {
            count: 450_000,
            origin: JobOrigin::Floor
        }
    );
    // A waiting window job does not count outside the window; a running floor job does.
    let (a, _) = step(
        &night,
        utc("2026-01-14T14:00:00Z"),
        &p,
        50_000,
        (0, 900_000),
        0.0,
    );
    assert!(matches!(a, Action::Plan { .. }));
    let (a, _) = step(
        &night,
        utc("2026-01-14T14:00:00Z"),
        &p,
        50_000,
        (150_000, 150_000),
        0.0,
    );
    assert_eq!(a, Action::Hold);
}

#[test]
fn inside_a_window_it_fills_to_the_target_and_stops() {
    let night = site(&["01:00-06:00 Europe/London"]);
    let p = policy(1_000_000, 500_000, 100_000);
    let mut now = utc("2026-01-15T01:00:00Z");
    let (mut available, mut in_flight, mut planned) = (300_000u64, 0u64, 0u64);
    // Every driven minute: plan what the planner says; jobs make 20000 items a minute.
    while now < utc("2026-01-15T06:00:00Z") {
        if let (Action::Plan { count, .. }, _) =
            step(&night, now, &p, available, (in_flight, in_flight), 0.0)
        {
            in_flight += count;
            planned += 1;
        }
        let made = in_flight.min(20_000);
        in_flight -= made;
        available += made;
        now += Duration::minutes(1);
    }
    assert_eq!(planned, 1, "one job, never planned twice");
    assert_eq!(available, 1_000_000, "filled to the target and no further");
}

#[test]
fn jobs_in_flight_count_toward_stock() {
    let night = site(&["01:00-06:00 Europe/London"]);
    let p = policy(1_000_000, 500_000, 100_000);
    let at = utc("2026-01-15T02:00:00Z");
    let (a, _) = step(&night, at, &p, 100_000, (450_000, 450_000), 0.0);
    assert_eq!(a, Action::Hold, "550000 counted, above the threshold");
    let (a, _) = step(&night, at, &p, 100_000, (300_000, 300_000), 0.0);
    assert_eq!(
        a,
        Action::Plan {
            count: 600_000,
            origin: JobOrigin::Window
        },
        "only the rest up to the target"
    );
}

#[test]
fn a_night_job_lasts_until_the_next_window() {
    // Consumed at 100 items/s; at 01:00 the next window opens in 24 h: 8.64e6 items, more
    // than the target (and less than four).
    let night = site(&["01:00-06:00 Europe/London"]);
    let p = policy(3_000_000, 500_000, 0);
    let (a, _) = step(&night, utc("2026-01-15T01:00:00Z"), &p, 0, (0, 0), 100.0);
    assert_eq!(
        a,
        Action::Plan {
            count: 8_640_000,
            origin: JobOrigin::Window
        }
    );
}

#[test]
fn hours_levels_follow_the_forecast() {
    let night = site(&["01:00-06:00 Europe/London"]);
    let p = StockPolicy {
        target: Level::Hours(48.0),
        refill_below: Level::Hours(30.0),
        floor: Level::Hours(2.0),
        generator: None,
        max_workers: None,
    };
    let l = p.levels(10.0);
    assert_eq!(
        (l.target, l.refill_below, l.floor),
        (1_728_000, 1_080_000, 72_000)
    );
    let (a, why) = step(
        &night,
        utc("2026-01-15T12:00:00Z"),
        &p,
        70_000,
        (0, 0),
        10.0,
    );
    assert!(
        matches!(
            a,
            Action::Plan {
                origin: JobOrigin::Floor,
                ..
            }
        ),
        "{why}"
    );
    let toml: StockPolicy =
        toml::from_str("target = \"48h\"\nrefill_below = 2e6\nfloor = 0").unwrap();
    assert_eq!(toml.target, Level::Hours(48.0));
    assert_eq!(toml.refill_below, Level::Items(2_000_000));
    assert!(toml::from_str::<StockPolicy>("target = \"lots\"\nrefill_below = 1").is_err());
}

#[test]
fn a_window_crossing_midnight() {
    let w = site(&["22:00-02:00 Europe/Berlin"]);
    // Berlin is UTC+1 in January.
    for (t, open) in [
        ("2026-01-14T20:59:00Z", false),
        ("2026-01-14T21:00:00Z", true),
        ("2026-01-14T23:30:00Z", true),
        ("2026-01-15T00:59:00Z", true),
        ("2026-01-15T01:00:00Z", false),
        ("2026-01-15T12:00:00Z", false),
    ] {
        assert_eq!(w.open_at(utc(t)), open, "{t}");
    }
    let s = w.state(utc("2026-01-14T23:30:00Z"));
    assert!(s.open);
    assert_eq!(s.changes_at, Some(utc("2026-01-15T01:00:00Z")));
    assert_eq!(s.then_at, Some(utc("2026-01-15T21:00:00Z")));
}

#[test]
fn daylight_saving_changes_move_the_window_with_the_site() {
    let night = site(&["01:00-06:00 Europe/London"]);
    let hours = |day: &str| {
        let from = utc(&format!("{day}T00:00:00Z")) - Duration::hours(2);
        night
            .open_stretches(from, Duration::hours(12))
            .iter()
            .map(|(a, b)| (*b - *a).num_minutes())
            .sum::<i64>()
    };
    // Clocks go forward at 01:00 GMT on 29 March 2026: the window is 02:00 to 06:00 BST.
    assert_eq!(hours("2026-03-29"), 4 * 60);
    // And back at 02:00 BST on 25 October 2026: 01:00 BST to 06:00 GMT, six hours.
    assert_eq!(hours("2026-10-25"), 6 * 60);
    assert_eq!(hours("2026-07-01"), 5 * 60);
    // The summer window opens at 00:00 UTC (01:00 BST).
    assert!(night.open_at(utc("2026-07-01T00:00:00Z")));
    assert!(!night.open_at(utc("2026-07-01T05:00:00Z")));
}

#[test]
fn sites_in_different_zones_generate_where_their_windows_overlap() {
    let both = Overlap {
        parties: vec![
            (0, windows(&["01:00-06:00 Europe/London"])),
            (1, windows(&["22:00-03:00 America/New_York"])),
            (2, Windows::default()),
        ],
    };
    let from = utc("2026-01-14T12:00:00Z");
    assert_eq!(
        both.open_stretches(from, Duration::hours(24)),
        vec![(utc("2026-01-15T03:00:00Z"), utc("2026-01-15T06:00:00Z"))]
    );
    let apart = Overlap {
        parties: vec![
            (0, windows(&["01:00-03:00 Europe/London"])),
            (1, windows(&["01:00-03:00 Asia/Tokyo"])),
        ],
    };
    assert!(apart.open_stretches(from, Duration::days(3)).is_empty());
    let s = apart.state(from);
    assert!(!s.open && s.changes_at.is_none(), "no overlap ahead");
}

#[test]
fn cron_windows_and_bad_windows() {
    let weekdays = site(&["cron * 1-4 * * Mon-Fri Europe/London"]);
    assert!(weekdays.open_at(utc("2026-01-12T02:30:00Z")), "a Monday");
    assert!(weekdays.open_at(utc("2026-01-12T04:59:00Z")));
    assert!(!weekdays.open_at(utc("2026-01-12T05:00:00Z")));
    assert!(!weekdays.open_at(utc("2026-01-17T02:30:00Z")), "a Saturday");
    for bad in [
        "01:00-06:00 Europe/Lndon",
        "1am-6am",
        "01:00-01:00",
        "cron * 1-4 * *",
        "cron * 25 * * *",
    ] {
        let e = bad.parse::<larder::schedule::Window>().unwrap_err();
        assert!(e.contains("window"), "{bad}: {e}");
    }
}

#[test]
fn the_forecast_matches_a_known_consumption_pattern() {
    let tau = 24.0 * 3600.0;
    let start = utc("2026-01-15T00:00:00Z");
    let mut r = Rate::new(start);
    // 600 items a minute for ten hours: 10 items/s, read back exactly from the start.
    for m in 1..=600 {
        r.observe(start + Duration::minutes(m), 600, tau);
    }
    let at = start + Duration::minutes(600);
    assert!((r.per_second() - 10.0).abs() < 0.05, "{}", r.per_second());
    let left = forecast::hours_left(360_000, r.per_second()).unwrap();
    assert!((left - 10.0).abs() < 0.1, "{left}");
    let out = forecast::runs_out_at(at, 360_000, r.per_second()).unwrap();
    assert!((out - (at + Duration::hours(10))).num_minutes().abs() <= 6);
    // Then a day with nothing consumed: the rate falls to about e^-1 of the day's average.
    r.advance(at + Duration::hours(24), tau);
    let e = |x: f64| (-x).exp();
    let expect = 10.0 * e(1.0) * (1.0 - e(10.0 / 24.0)) / (1.0 - e(34.0 / 24.0));
    assert!(
        (r.per_second() - expect).abs() / expect < 0.02,
        "{} vs {expect}",
        r.per_second()
    );
    assert_eq!(forecast::hours_left(5, 0.0), None);
}

#[test]
fn retry_after_comes_from_the_running_job() {
    // 4000 items short; the running job has made 10000 in 50 s: 200/s, 20 s.
    assert_eq!(retry_after(4000, Some((10_000, 50)), None), 20);
    // No progress yet, or no job but one is coming: a few seconds.
    assert_eq!(retry_after(4000, Some((0, 3)), None), 5);
    // No job, the window opens in two hours (real time): then.
    assert_eq!(
        retry_after(4000, None, Some(std::time::Duration::from_secs(7200))),
        7200
    );
    // A fast job still waits at least a second; a slow one at most an hour.
    assert_eq!(retry_after(1, Some((1_000_000, 1)), None), 1);
    assert_eq!(retry_after(1_000_000_000, Some((1, 100)), None), 3600);
}

/// Three days minute by minute: the planner's jobs run at `capacity` items a minute (window
/// jobs only inside the window), engines consume a working-day pattern at 80% of what the
/// window can make in a day. Prints stock per hour and the jobs planned; no engine underruns,
/// and nothing generates outside the window but floor refills.
#[test]
fn a_simulated_day_at_80_percent_of_capacity_never_underruns() {
    let night = site(&["01:00-06:00 Europe/London"]);
    let capacity = 10_000u64; // items a minute while generating
    let window_minutes = 300u64;
    let daily = capacity * window_minutes * 8 / 10;
    // 09:00-18:00 working hours, heavier around midday, a little at night.
    let weight = |m: u64| -> u64 {
        let h = m / 60;
        match h {
            9..=11 | 14..=17 => 4,
            12 | 13 => 6,
            18..=22 => 1,
            _ => 0,
        }
    };
    let total: u64 = (0..1440).map(weight).sum();
    let consume_at = |m: u64| daily * weight(m) / total;
    let p = policy(2_600_000, 2_500_000, 200_000);
    let start = utc("2026-01-14T00:00:00Z");
    let tau = 24.0 * 3600.0;
    let mut rate = Rate::new(start);
    let (mut available, mut underruns) = (0u64, 0u64);
    let mut jobs: Vec<(JobOrigin, u64)> = Vec::new();
    let mut made_outside = 0u64;
    let mut planned = Vec::new();
    let mut table = vec!["day hour  stock      made   consumed".to_string()];
    let (mut made_h, mut used_h) = (0u64, 0u64);
    for t in 0..3 * 1440u64 {
        let now = start + Duration::minutes(t as i64);
        let state = night.state(now);
        let all: u64 = jobs.iter().map(|j| j.1).sum();
        let runnable: u64 = jobs
            .iter()
            .filter(|j| j.0 != JobOrigin::Window || state.open)
            .map(|j| j.1)
            .sum();
        let input = PoolInput {
            pool: pool(),
            policy: &p,
            available,
            in_flight_now: runnable,
            in_flight_all: all,
            per_second: rate.per_second(),
        };
        let d = plan(
            now,
            &state,
            chrono_tz::Tz::Europe__London,
            &[input],
            u64::MAX,
        )
        .pop()
        .unwrap();
        if let Action::Plan { count, origin } = d.action {
            planned.push(format!("{} {}", now.format("%d %H:%M"), d.reason));
            jobs.push((origin, count));
        }
        // Generation: floor refills first, window jobs only in the window.
        jobs.sort_by_key(|j| j.0 != JobOrigin::Floor);
        let mut budget = capacity;
        for j in jobs.iter_mut() {
            if j.0 == JobOrigin::Window && !state.open {
                continue;
            }
            let m = j.1.min(budget);
            j.1 -= m;
            budget -= m;
            available += m;
            made_h += m;
            if !state.open {
                made_outside += m;
                assert_eq!(
                    j.0,
                    JobOrigin::Floor,
                    "only floor refills outside the window"
                );
            }
        }
        jobs.retain(|j| j.1 > 0);
        let want = consume_at(t % 1440);
        if want > available {
            underruns += 1;
        }
        let used = want.min(available);
        available -= used;
        used_h += used;
        rate.observe(now + Duration::seconds(59), used, tau);
        if t % 60 == 59 {
            table.push(format!(
                "{:>3} {:>4} {:>7} {:>9} {:>10}",
                t / 1440 + 1,
                (t % 1440) / 60,
                available,
                made_h,
                used_h
            ));
            (made_h, used_h) = (0, 0);
        }
    }
    println!("{}", table.join("\n"));
    println!("jobs planned:\n{}", planned.join("\n"));
    println!("made outside the window (floor refills only): {made_outside}");
    assert_eq!(underruns, 0, "an engine found the pool empty");
    assert!(
        planned.iter().filter(|r| r.contains("window open")).count() >= 2,
        "refilled in the nights: {planned:?}"
    );
}

#[test]
fn a_floor_in_items_holds_while_hours_levels_are_still_zero() {
    let p: StockPolicy =
        toml::from_str("target = 4e9\nrefill_below = \"24h\"\nfloor = 5e8").unwrap();
    p.validate().unwrap();
    // Nothing consumed yet: the refill threshold is raised to the floor, never the floor cut.
    let l = p.levels(0.0);
    assert_eq!(
        (l.target, l.refill_below, l.floor),
        (4_000_000_000, 500_000_000, 500_000_000)
    );
    let night = site(&["01:00-06:00 Europe/London"]);
    let (a, why) = step(&night, utc("2026-01-14T14:00:00Z"), &p, 0, (0, 0), 0.0);
    assert!(
        matches!(
            a,
            Action::Plan {
                origin: JobOrigin::Floor,
                ..
            }
        ),
        "{why}"
    );
    // Every level in hours could never start an empty pool: refused.
    let all_hours: StockPolicy =
        toml::from_str("target = \"48h\"\nrefill_below = \"24h\"\nfloor = \"2h\"").unwrap();
    assert!(all_hours.validate().unwrap_err().contains("in items"));
}

#[test]
fn a_young_forecast_does_not_size_jobs_and_a_job_is_at_most_four_targets() {
    let start = utc("2026-01-15T00:00:00Z");
    let mut r = Rate::new(start);
    r.observe(start + Duration::seconds(5), 1_000_000, 86_400.0);
    assert!(
        r.per_second() > 100_000.0,
        "five seconds of history: a wild rate"
    );
    assert_eq!(r.settled_per_second(3600.0), 0.0);
    // Even a settled but huge rate plans at most four targets in a window.
    let night = site(&["01:00-06:00 Europe/London"]);
    let p = policy(1_000_000, 500_000, 0);
    let (a, _) = step(&night, utc("2026-01-15T01:00:00Z"), &p, 0, (0, 0), 1e6);
    assert_eq!(
        a,
        Action::Plan {
            count: 4_000_000,
            origin: JobOrigin::Window
        }
    );
}
