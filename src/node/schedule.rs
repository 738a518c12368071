//! The scheduler at the leader, and every node's part in it.
//!
//! Every `schedule_interval_ms` the leader reads its stock, its jobs, the forecast and the
//! parties' generation windows, asks the planner ([`crate::schedule::plan`]) what to do, and
//! creates the jobs it plans, logging each decision with its reason. Each node answers for
//! its own windows (`GET /v1/internal/windows`); the leader asks the others at most once a
//! minute, and a party it cannot ask counts as closed. The leader counts what engines check
//! out into each pool's consumption rate, keeps the rates in `forecast.json` beside the store
//! (written at the first look after a checkout, so a restart keeps the forecast), and serves it (`GET /v1/forecast`; a follower asks the
//! leader). An underrun's `Retry-After` comes from here too.

use super::error::ApiError;
use super::extract::FromLeader;
use super::{Caller, NodeState};
use crate::config::ScheduleConfig;
use crate::material::{Maker, PoolSpec};
use crate::schedule::{self, forecast, Action, Clock, Overlap, PoolInput, Rate, Windows};
use crate::store::{now_unix, Job, JobOrigin, JobState};
use crate::wire::{ForecastView, PoolForecast, SiteWindows, Stretch, WindowsView, MAX_JOB_ITEMS};
use axum::extract::State;
use axum::Json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

type St = State<Arc<NodeState>>;

/// How long the leader trusts what a party said about its windows.
const SITES_FRESH: Duration = Duration::from_secs(60);
/// How long the leader waits for a party's windows.
const SITES_WAIT: Duration = Duration::from_secs(5);
/// How many recent checkout ids the forecast remembers, so each counts once.
const COUNTED: usize = 4096;
/// Seconds of history (at most a quarter of `forecast_hours`) before the rate sizes jobs.
const SETTLED: f64 = 3600.0;
/// How long the leader waits before asking a party it could not ask again.
const SITES_RETRY: Duration = Duration::from_secs(15);
/// How often the leader forgets old finished jobs.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// Default nice value of the generation threads.
const NICE: i32 = 10;

/// This node's scheduling state.
pub(crate) struct Scheduler {
    pub(crate) clock: Clock,
    own: Windows,
    nice: i32,
    threads: OnceLock<Option<Arc<rayon::ThreadPool>>>,
    /// Whether every party's window was open at the last look (window jobs lease only then).
    open: AtomicBool,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    rates: BTreeMap<PoolSpec, Rate>,
    /// Items made available per pool (at the leader), weighted as consumption is: what
    /// `larder status` and the metrics show beside it. In memory only.
    made: BTreeMap<PoolSpec, Rate>,
    /// The other parties' windows and when they were asked (`None`: could not be asked).
    sites: BTreeMap<u8, (Option<Windows>, Instant)>,
    decisions: BTreeMap<PoolSpec, String>,
    /// The last decision's gist per pool (a changed gist is logged at info).
    gists: BTreeMap<PoolSpec, String>,
    /// Checkouts counted since the forecast was last written.
    dirty: bool,
    /// The checkout ids counted lately (see `observe`), oldest first.
    counted: std::collections::HashSet<String>,
    counted_order: std::collections::VecDeque<String>,
}

impl Default for Scheduler {
    fn default() -> Self {
        Scheduler {
            clock: Clock::System,
            own: Windows::default(),
            nice: NICE,
            threads: OnceLock::new(),
            open: AtomicBool::new(false),
            inner: Mutex::default(),
        }
    }
}

impl Scheduler {
    /// # Errors
    /// A bad simulated clock.
    pub(crate) fn new(cfg: &ScheduleConfig) -> Result<Self, String> {
        let clock = match &cfg.clock {
            Some(c) => Clock::simulated(c)?,
            None => Clock::System,
        };
        Ok(Scheduler {
            clock,
            own: cfg.windows.clone(),
            nice: cfg.generation_nice.unwrap_or(NICE),
            ..Scheduler::default()
        })
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether window jobs may make pieces now.
    pub(crate) fn window_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// The threads this node makes its own shares on: as many as the machine has cores, at
    /// `generation_nice` (none when 0, or if they could not be made).
    pub(crate) fn generation_threads(&self) -> Option<Arc<rayon::ThreadPool>> {
        self.threads
            .get_or_init(|| {
                if self.nice == 0 {
                    return None;
                }
                let nice = self.nice;
                rayon::ThreadPoolBuilder::new()
                    .thread_name(|i| format!("larder-generate-{i}"))
                    .start_handler(move |_| lower_priority(nice))
                    .build()
                    .map_err(|e| tracing::warn!(error = %e, "no generation threads; generating at normal priority"))
                    .ok()
                    .map(Arc::new)
            })
            .clone()
    }

    /// `items` of `pool` were checked out under `checkout` (at the leader). Every party's
    /// engine checks out under the same id, often at once: each id counts once.
    pub(crate) fn observe(&self, pool: PoolSpec, checkout: &str, items: u64, tau_seconds: f64) {
        let now = self.clock.now();
        let mut inner = self.inner();
        if !inner.counted.insert(checkout.to_string()) {
            return;
        }
        inner.counted_order.push_back(checkout.to_string());
        while inner.counted_order.len() > COUNTED {
            if let Some(old) = inner.counted_order.pop_front() {
                inner.counted.remove(&old);
            }
        }
        inner
            .rates
            .entry(pool)
            .or_insert_with(|| Rate::new(now))
            .observe(now, items, tau_seconds);
        inner.dirty = true;
    }

    /// `items` of `pool` were made available (committed at the leader).
    pub(crate) fn observe_made(&self, pool: PoolSpec, items: u64, tau_seconds: f64) {
        let now = self.clock.now();
        self.inner()
            .made
            .entry(pool)
            .or_insert_with(|| Rate::new(now))
            .observe(now, items, tau_seconds);
    }

    /// Each pool's generation rate now (items per second, over what was seen since the node
    /// started, up to the forecast's time constant).
    fn made_rates(&self, pools: &[PoolSpec], tau_seconds: f64) -> BTreeMap<PoolSpec, f64> {
        let now = self.clock.now();
        let mut inner = self.inner();
        pools
            .iter()
            .map(|p| {
                let r = inner.made.entry(*p).or_insert_with(|| Rate::new(now));
                r.advance(now, tau_seconds);
                (*p, r.per_second())
            })
            .collect()
    }

    /// Each pool's rate now (items per second).
    fn rates(&self, pools: &[PoolSpec], tau_seconds: f64) -> BTreeMap<PoolSpec, f64> {
        let now = self.clock.now();
        let mut inner = self.inner();
        pools
            .iter()
            .map(|p| {
                let r = inner.rates.entry(*p).or_insert_with(|| Rate::new(now));
                r.advance(now, tau_seconds);
                (*p, r.settled_per_second(SETTLED.min(tau_seconds / 4.0)))
            })
            .collect()
    }

    /// This party's windows, and the others' as last heard.
    fn overlap(&self, me: u8, parties: u8) -> (Overlap, Vec<SiteWindows>) {
        let inner = self.inner();
        let mut overlap = Overlap::default();
        let mut sites = Vec::new();
        for p in 0..parties {
            let known = if p == me {
                Some(self.own.clone())
            } else {
                inner.sites.get(&p).and_then(|(w, _)| w.clone())
            };
            sites.push(site_view(p, known.as_ref()));
            // A party not heard from counts as closed: a window that never opens.
            let w = known
                .unwrap_or_else(|| Windows(vec!["cron * * 31 2 * UTC".parse().expect("valid")]));
            overlap.parties.push((p, w));
        }
        (overlap, sites)
    }

    /// Loads the forecast saved in `dir` (none yet, or unreadable: start afresh).
    fn load(&self, dir: &std::path::Path) {
        let path = dir.join("forecast.json");
        let Ok(text) = std::fs::read(&path) else {
            return;
        };
        match serde_json::from_slice::<BTreeMap<PoolSpec, Rate>>(&text) {
            Ok(rates) => self.inner().rates = rates,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "forecast unreadable; starting afresh")
            }
        }
    }

    fn save(&self, dir: &std::path::Path) {
        let text = {
            let inner = self.inner();
            if !inner.dirty {
                return;
            }
            serde_json::to_vec(&inner.rates).unwrap_or_default()
        };
        let tmp = dir.join("forecast.json.new");
        let done = std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, dir.join("forecast.json")));
        match done {
            Ok(()) => self.inner().dirty = false,
            Err(e) => tracing::debug!(error = %e, "forecast not saved; tried again later"),
        }
    }
}

/// Lowers the calling thread's CPU priority to `nice` (Linux keeps a nice value per thread).
/// Failure leaves it as it was, which is only a politeness lost.
pub fn lower_priority(nice: i32) {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), nice) {
        tracing::debug!(error = %e, nice, "generation thread kept its priority");
    }
}

fn site_view(party: u8, w: Option<&Windows>) -> SiteWindows {
    SiteWindows {
        party,
        zone: w
            .map_or(chrono_tz::Tz::UTC, Windows::zone)
            .name()
            .to_string(),
        windows: w.map_or_else(Vec::new, |w| w.0.iter().map(ToString::to_string).collect()),
        known: w.is_some(),
    }
}

/// Asks the other parties for their windows, those not asked within [`SITES_FRESH`].
async fn refresh_sites(st: &Arc<NodeState>) {
    let stale: Vec<_> = {
        let inner = st.schedule.inner();
        st.followers()
            .iter()
            .filter(|f| {
                inner.sites.get(&f.party()).is_none_or(|(w, at)| {
                    at.elapsed()
                        >= if w.is_some() {
                            SITES_FRESH
                        } else {
                            SITES_RETRY
                        }
                })
            })
            .collect()
    };
    // Every party at once, so one that does not answer delays the look by SITES_WAIT at most.
    let asked = futures_util::future::join_all(
        stale
            .iter()
            .map(|f| tokio::time::timeout(SITES_WAIT, f.windows())),
    )
    .await;
    for (f, asked) in stale.into_iter().zip(asked) {
        let heard = match asked {
            Ok(Ok(site)) => {
                let parsed: Result<Vec<_>, String> =
                    site.windows.iter().map(|w| w.parse()).collect();
                match parsed {
                    Ok(w) => Some(Windows(w)),
                    Err(e) => {
                        tracing::warn!(party = f.party(), error = %e, "a party's windows are unreadable; counted as closed");
                        None
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::debug!(party = f.party(), error = %e, "a party's windows unknown; counted as closed");
                None
            }
            Err(_) => None,
        };
        st.schedule
            .inner()
            .sites
            .insert(f.party(), (heard, Instant::now()));
    }
}

/// At the leader, until `cancel`: the scheduler's loop.
pub(super) async fn run(st: Arc<NodeState>, cancel: tokio_util::sync::CancellationToken) {
    if !st.is_leader() {
        return;
    }
    st.schedule.load(st.store.dir());
    let every = Duration::from_millis(st.cluster.schedule_interval_ms.max(50));
    let mut pruned: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = tick(&st) => {
                if let Err(e) = r {
                    tracing::warn!(error = %e.detail, "scheduling skipped; tried again");
                }
            }
        }
        if pruned.is_none_or(|p| p.elapsed() >= PRUNE_EVERY) {
            pruned = Some(Instant::now());
            if let Err(e) = prune(&st).await {
                tracing::warn!(error = %e.detail, "old jobs not pruned; tried again later");
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

pub(super) fn tau(st: &NodeState) -> f64 {
    st.cluster.forecast_hours * 3600.0
}

/// Items each pool's live jobs have still to make: all of them, and those that may run now.
fn in_jobs(jobs: &[Job], pool: PoolSpec, window_open: bool) -> (u64, u64) {
    let live = jobs.iter().filter(|j| j.pool == pool && j.state.is_live());
    let left = |j: &Job| j.count.saturating_sub(j.made);
    let all = live.clone().map(left).sum();
    let now = live
        .filter(|j| j.origin != JobOrigin::Window || window_open)
        .map(left)
        .sum();
    (now, all)
}

/// The generator the scheduler's jobs of `pool` use.
fn generator_for(st: &NodeState, pool: &PoolSpec) -> Option<String> {
    if let Some(g) = st.cluster.stock.get(pool).and_then(|p| p.generator.clone()) {
        return Some(g);
    }
    let usable = |m: Maker| {
        crate::generate::can_make(m, pool, st.cluster.parties()) && st.cluster.allows(pool, m)
    };
    if st.cluster.dealer_token_sha256.is_some() && usable(Maker::Dealer) {
        return Some(Maker::Dealer.name().into());
    }
    // No dealer: the generator secure against the most colluding parties first.
    [Maker::He, Maker::Prss, Maker::Parties]
        .into_iter()
        .find(|m| usable(*m))
        .map(|m| m.name().to_string())
}

/// The gist of a decision: its words after the pool's standing (which changes every look).
fn gist(reason: &str) -> &str {
    reason.split_once("): ").map_or(reason, |(_, g)| g)
}

/// One look: plan, create the jobs planned, record the decisions.
async fn tick(st: &Arc<NodeState>) -> Result<(), ApiError> {
    if st.cluster.stock.is_empty() {
        // Nothing to plan: no reads of stock and jobs on the leader's every look.
        return Ok(());
    }
    refresh_sites(st).await;
    let now = st.schedule.clock.now();
    let (overlap, _) = st.schedule.overlap(st.me, st.cluster.parties());
    let window = tokio::task::spawn_blocking(move || overlap.state(now))
        .await
        .map_err(|e| ApiError::internal(format!("reading the windows: {e}")))?;
    st.schedule.open.store(window.open, Ordering::Relaxed);
    // Jobs before stock: a piece committed in between is then counted twice (nothing more
    // planned), never missed (a piece planned again).
    let jobs = st.own.run("reading jobs", |s| s.jobs()).await?;
    let stock = st.own.run("reading stock", |s| s.stock()).await?;
    let pools: Vec<PoolSpec> = st.cluster.stock.keys().copied().collect();
    let rates = st.schedule.rates(&pools, tau(st));
    let inputs: Vec<PoolInput<'_>> = st
        .cluster
        .stock
        .iter()
        .map(|(pool, policy)| {
            let (now_, all) = in_jobs(&jobs, *pool, window.open);
            PoolInput {
                pool: *pool,
                policy,
                available: stock.get(pool).map_or(0, |s| s.available),
                in_flight_now: now_,
                in_flight_all: all,
                per_second: rates.get(pool).copied().unwrap_or(0.0),
            }
        })
        .collect();
    let zone = st.schedule.own.zone();
    for d in schedule::plan(now, &window, zone, &inputs, MAX_JOB_ITEMS) {
        let pool = d.pool;
        if let Action::Plan { count, origin } = d.action {
            let Some(generator) = generator_for(st, &pool) else {
                let gist = "no generator can make it".to_string();
                let mut inner = st.schedule.inner();
                if inner.gists.get(&pool) != Some(&gist) {
                    tracing::warn!(pool = %pool, "{}; but no generator the consortium allows can make it", d.reason);
                }
                inner.gists.insert(pool, gist);
                continue;
            };
            let g = generator.clone();
            let job = st
                .own
                .run("creating a job", move |s| {
                    s.create_job(pool, count, &g, origin)
                })
                .await?;
            tracing::info!(job = job.id, pool = %pool, count, origin = origin.name(), generator = %generator, "{}", d.reason);
            st.job_created.notify_one();
        } else {
            let inner = st.schedule.inner();
            let changed = inner.gists.get(&pool).map(String::as_str) != Some(gist(&d.reason));
            if changed {
                tracing::info!(pool = %pool, "{}", d.reason);
            } else {
                tracing::debug!(pool = %pool, "{}", d.reason);
            }
        }
        let mut inner = st.schedule.inner();
        inner.gists.insert(pool, gist(&d.reason).to_string());
        inner.decisions.insert(pool, d.reason);
    }
    st.schedule.save(st.store.dir());
    Ok(())
}

/// Forgets jobs that ended more than `job_history_days` ago.
async fn prune(st: &NodeState) -> Result<(), ApiError> {
    let before = now_unix().saturating_sub(st.cluster.job_history_days.saturating_mul(86_400));
    let jobs = st.own.run("reading jobs", |s| s.jobs()).await?;
    if jobs
        .iter()
        .any(|j| !j.state.is_live() && j.finished_at.is_some_and(|f| f < before))
    {
        let gone = st
            .own
            .run("pruning jobs", move |s| s.prune_jobs(before))
            .await?;
        tracing::info!(
            jobs = gone,
            days = st.cluster.job_history_days,
            "old finished jobs forgotten"
        );
    }
    Ok(())
}

/// The forecast as the leader sees it now.
pub(super) async fn forecast_here(st: &Arc<NodeState>) -> Result<ForecastView, ApiError> {
    let stock = st.own.run("reading stock", |s| s.stock()).await?;
    let jobs = st.own.run("reading jobs", |s| s.jobs()).await?;
    forecast_from(st, &stock, &jobs).await
}

/// The forecast from the leader's `stock` and `jobs`, read by the caller (the stock endpoint
/// and the metrics have them already).
pub(super) async fn forecast_from(
    st: &Arc<NodeState>,
    stock: &BTreeMap<PoolSpec, crate::store::PoolStock>,
    jobs: &[Job],
) -> Result<ForecastView, ApiError> {
    let now = st.schedule.clock.now();
    let (overlap, sites) = st.schedule.overlap(st.me, st.cluster.parties());
    let (window, stretches) = tokio::task::spawn_blocking(move || {
        (
            overlap.state(now),
            overlap.open_stretches(now, chrono::Duration::hours(24)),
        )
    })
    .await
    .map_err(|e| ApiError::internal(format!("reading the windows: {e}")))?;
    let rates = st.schedule.rates(&st.cluster.pools, tau(st));
    let made = st.schedule.made_rates(&st.cluster.pools, tau(st));
    let decisions = st.schedule.inner().decisions.clone();
    let mut pools = BTreeMap::new();
    for pool in &st.cluster.pools {
        let available = stock.get(pool).map_or(0, |s| s.available);
        let per_second = rates.get(pool).copied().unwrap_or(0.0);
        let levels = st.cluster.stock.get(pool).map(|p| p.levels(per_second));
        pools.insert(
            *pool,
            PoolForecast {
                available,
                in_jobs: in_jobs(jobs, *pool, window.open).1,
                per_second,
                generated_per_second: made.get(pool).copied().unwrap_or(0.0),
                hours_left: forecast::hours_left(available, per_second),
                runs_out_at: forecast::runs_out_at(now, available, per_second)
                    .map(|t| t.timestamp()),
                target: levels.map(|l| l.target),
                refill_below: levels.map(|l| l.refill_below),
                floor: levels.map(|l| l.floor),
                decision: decisions.get(pool).cloned(),
            },
        );
    }
    Ok(ForecastView {
        now: now.timestamp(),
        windows: WindowsView {
            open: window.open,
            changes_at: window.changes_at.map(|t| t.timestamp()),
            overlap: stretches
                .into_iter()
                .map(|(a, b)| Stretch {
                    start: a.timestamp(),
                    end: b.timestamp(),
                })
                .collect(),
            sites,
        },
        pools,
        jobs: JobState::ALL
            .iter()
            .map(|s| {
                let n = jobs.iter().filter(|j| j.state == *s).count() as u64;
                (s.name().to_string(), n)
            })
            .collect(),
    })
}

/// The forecast: here at the leader, from the leader at a follower.
pub(super) async fn forecast(st: &Arc<NodeState>) -> Result<ForecastView, ApiError> {
    match st.leader() {
        None => forecast_here(st).await,
        Some(leader) => Ok(leader.forecast().await?),
    }
}

/// The `Retry-After` of an underrun of `pool`, `short` items short (at the leader): from the
/// pace of the job refilling it, else from when the windows open, else a few seconds.
pub(super) async fn retry_after(st: &Arc<NodeState>, pool: PoolSpec, short: u64) -> u64 {
    let jobs = st
        .own
        .run("reading jobs", |s| s.jobs())
        .await
        .unwrap_or_default();
    let open = st.schedule.window_open();
    let now = now_unix();
    let running = jobs
        .iter()
        .filter(|j| j.pool == pool && j.state.is_live())
        .filter(|j| j.origin != JobOrigin::Window || open)
        .map(|j| (j.made, now.saturating_sub(j.started_at.unwrap_or(now))))
        .max_by_key(|(made, _)| *made);
    let Some(policy) = st.cluster.stock.get(&pool) else {
        // No policy: only an operator refills it.
        return running.map_or(60, |r| schedule::retry_after(short, Some(r), None));
    };
    let opens_in = if running.is_none() && !open {
        let rate = st
            .schedule
            .rates(&[pool], tau(st))
            .get(&pool)
            .copied()
            .unwrap_or(0.0);
        let stock = st
            .own
            .run("reading stock", |s| s.stock())
            .await
            .unwrap_or_default();
        let have = stock.get(&pool).map_or(0, |s| s.available);
        // Below the floor, a refill is planned at the next look; else at the window.
        if have < policy.levels(rate).floor {
            None
        } else {
            let clock = st.schedule.clock.clone();
            let (overlap, _) = st.schedule.overlap(st.me, st.cluster.parties());
            let now = clock.now();
            tokio::task::spawn_blocking(move || overlap.next_change(now))
                .await
                .ok()
                .flatten()
                .map(|t| clock.real(t - now))
        }
    } else {
        None
    };
    schedule::retry_after(short, running, opens_in)
}

/// `GET /v1/forecast`.
#[utoipa::path(
    get,
    path = "/v1/forecast",
    operation_id = "forecast",
    summary = "Consumption, hours of stock left, the scheduler's decisions and the windows (from the leader)",
    security(("engineToken" = []), ("nodeToken" = []), ("dealerToken" = []), ("operatorToken" = [])),
    responses(
        (status = 200, description = "the forecast", body = ForecastView),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "an auditor's token"),
        (status = 503, description = "the leader could not be asked"),
    )
)]
pub(super) async fn get_forecast(
    State(st): St,
    caller: Caller,
) -> Result<Json<ForecastView>, ApiError> {
    super::api::not_auditor(&caller)?;
    Ok(Json(forecast(&st).await?))
}

/// `GET /v1/internal/windows`: this party's generation windows (for the leader).
#[utoipa::path(
    get,
    path = "/v1/internal/windows",
    operation_id = "windows",
    summary = "This party's generation windows (node to node)",
    security(("nodeToken" = [])),
    responses(
        (status = 200, description = "the windows", body = SiteWindows),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "not the leader's node"),
    )
)]
pub(super) async fn windows(State(st): St, _: FromLeader) -> Json<SiteWindows> {
    Json(site_view(st.me, Some(&st.schedule.own)))
}
