//! Health probes: per running container, the probes its labels (or the agent config) ask for, each
//! on its own schedule with Docker HEALTHCHECK semantics; every run goes to shipping.
//! `spec` parses settings, `health` keeps the state machine, `check` runs a probe, `errors` counts log error rates.

pub mod check;
pub mod errors;
pub mod health;
pub mod http;
pub mod spec;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::config::ProbeRule;
use crate::discover::{identity, Container, ContainerSet};
use check::{Runner, Target};
use health::{Health, State};
use spec::{Check, Probe};

/// One probe run, as shipped.
#[derive(Clone, Debug)]
pub struct ProbeRun {
    pub labels: Vec<(String, String)>,
    pub time_ms: i64,
    pub kind: &'static str,
    pub success: bool,
    pub duration: Duration,
    pub output: String,
    pub state: State,
    /// The state before this run when it changed.
    pub previous: Option<State>,
    pub failing_streak: u32,
    pub interval: Duration,
    /// The container's `lookout.restart` label: whether the collector may restart it.
    pub restart: String,
}

/// Something the prober has to say: a run, or a container's probe settings that do not parse.
#[derive(Clone, Debug)]
pub enum ProbeEvent {
    Run(ProbeRun),
    ConfigProblem { container: Arc<Container>, message: String, time_ms: i64 },
}

/// Per container, how many of its probe settings do not parse: the sampler reports it as the series
/// `lookout_probe_config_problems` every interval, so an alert can see it.
pub type ConfigProblems = Arc<std::sync::RwLock<HashMap<crate::model::ContainerId, usize>>>;

#[derive(Clone)]
pub struct ProberConfig {
    pub host: String,
    pub include_labels: Vec<String>,
    pub rules: Vec<ProbeRule>,
    /// `health_status` events from discovery: a `docker` probe of that container runs at once.
    pub health_events: Option<tokio::sync::broadcast::Sender<crate::model::ContainerId>>,
    pub problems: ConfigProblems,
}

/// How late probe runs start against their schedule, for `lookout bench probes` and self-metrics.
#[derive(Default)]
pub struct Drift {
    pub samples: std::sync::Mutex<Vec<Duration>>,
    pub record: std::sync::atomic::AtomicBool,
}

/// A container's probe settings: its own labels if it has any `lookout.probe.*`, else the first
/// matching config rule's.
pub fn settings_for(c: &Container, rules: &[ProbeRule]) -> BTreeMap<String, String> {
    let own = spec::from_labels(&c.labels);
    if !own.is_empty() {
        return own;
    }
    let service = identity::service_of(c);
    rules.iter().find(|r| r.matches(&service, &c.image)).map(|r| r.settings()).unwrap_or_default()
}

/// Runs until `shutdown`: follows the container set (looked at every second) and keeps one task
/// per probe of each running container.
pub async fn run(
    cfg: ProberConfig,
    containers: ContainerSet,
    runner: Arc<Runner>,
    drift: Arc<Drift>,
    send: tokio::sync::mpsc::Sender<ProbeEvent>,
    shutdown: CancellationToken,
) {
    let mut tasks: HashMap<String, CancellationToken> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => break,
        }
        let current: Vec<Arc<Container>> =
            containers.read().expect("container set poisoned").values().cloned().collect();
        // Keyed by start time too: a restarted container is probed afresh, starting again as Docker does.
        let key = |c: &Container| format!("{}@{}", c.id.as_str(), c.started_at.unwrap_or_default());
        let keys: std::collections::HashSet<String> = current.iter().map(|c| key(c)).collect();
        for c in &current {
            let id = key(c);
            if tasks.contains_key(&id) {
                continue;
            }
            let plan = spec::plan(&settings_for(c, &cfg.rules), c.healthcheck);
            if !plan.problems.is_empty() {
                cfg.problems.write().expect("config problems poisoned").insert(c.id.clone(), plan.problems.len());
            }
            for problem in &plan.problems {
                tracing::warn!(container = %c.name, problem = %problem, "probe setting ignored");
                let ev =
                    ProbeEvent::ConfigProblem { container: c.clone(), message: problem.clone(), time_ms: now_ms() };
                let _ = send.send(ev).await;
            }
            let token = shutdown.child_token();
            let labels = identity::identity_labels(&cfg.host, c, &cfg.include_labels);
            for probe in plan.probes {
                if let Check::LogErrorRate { pattern, window, .. } = &probe.check {
                    runner.rates.watch(c.id.as_str(), pattern.clone(), *window);
                }
                let events = match (&probe.check, &cfg.health_events) {
                    (Check::Docker, Some(tx)) => Some(tx.subscribe()),
                    _ => None,
                };
                let task = Task {
                    events,
                    probe,
                    container: c.clone(),
                    labels: labels.clone(),
                    runner: runner.clone(),
                    drift: drift.clone(),
                    send: send.clone(),
                };
                tokio::spawn(task.run(token.clone()));
            }
            tasks.insert(id, token);
        }
        let ids: std::collections::HashSet<&str> = current.iter().map(|c| c.id.as_str()).collect();
        cfg.problems.write().expect("config problems poisoned").retain(|id, _| ids.contains(id.as_str()));
        tasks.retain(|key, token| {
            let running = keys.contains(key);
            if !running {
                token.cancel();
                let id = key.split('@').next().unwrap_or(key);
                if !ids.contains(id) {
                    runner.rates.forget(id);
                }
            }
            running
        });
    }
    for token in tasks.values() {
        token.cancel();
    }
}

struct Task {
    /// Docker's health events, for a `docker` probe: each one for this container is a run now.
    events: Option<tokio::sync::broadcast::Receiver<crate::model::ContainerId>>,
    probe: Probe,
    container: Arc<Container>,
    labels: Vec<(String, String)>,
    runner: Arc<Runner>,
    drift: Arc<Drift>,
    send: tokio::sync::mpsc::Sender<ProbeEvent>,
}

impl Task {
    async fn run(mut self, stop: CancellationToken) {
        let t = self.probe.timing;
        let started = self
            .container
            .started_at
            .map_or_else(std::time::SystemTime::now, |s| std::time::UNIX_EPOCH + Duration::from_secs_f64(s));
        let since_start = || std::time::SystemTime::now().duration_since(started).unwrap_or_default();
        let mut health = Health::new(t.retries, t.start_period);
        let target = Target { container_id: self.container.id.as_str().to_string(), address: self.container.address };
        let mut labels = self.labels.clone();
        labels.push(("probe".into(), self.probe.check.kind().into()));
        // The first run comes within one interval, spread so that many containers do not probe together.
        let first = if health.in_start_period(since_start()) { t.start_interval } else { t.interval };
        let jitter = rand::rng().random_range(Duration::ZERO..first.max(Duration::from_millis(1)));
        let mut due = on_tick(Instant::now() + jitter);
        loop {
            let on_event = tokio::select! {
                _ = tokio::time::sleep_until(due.into()) => false,
                _ = next_event(&mut self.events, &self.container.id) => true,
                _ = stop.cancelled() => return,
            };
            let began = Instant::now();
            if !on_event && self.drift.record.load(std::sync::atomic::Ordering::Relaxed) {
                self.drift.samples.lock().expect("drift poisoned").push(began - due);
            }
            let time_ms = now_ms();
            let outcome = tokio::select! {
                o = self.runner.run(&self.probe.check, &target, t.timeout) => o,
                _ = stop.cancelled() => return,
            };
            let duration = began.elapsed();
            let previous = match outcome.docker {
                // Docker keeps this probe's state itself; take it as it is.
                Some((state, streak)) => {
                    let before = health.state;
                    health.state = state;
                    health.failing_streak = streak;
                    (before != state).then_some(before)
                }
                None => health.record(outcome.success, since_start()),
            };
            if let Some(before) = previous {
                tracing::info!(
                    container = %self.container.name,
                    probe = self.probe.check.kind(),
                    from = before.as_str(),
                    to = health.state.as_str(),
                    output = %outcome.output,
                    "health changed"
                );
            }
            let run = ProbeRun {
                labels: labels.clone(),
                time_ms,
                kind: self.probe.check.kind(),
                success: outcome.success,
                duration,
                output: outcome.output,
                state: health.state,
                previous,
                failing_streak: health.failing_streak,
                interval: t.interval,
                restart: self.container.labels.get("lookout.restart").cloned().unwrap_or_default(),
            };
            if self.send.send(ProbeEvent::Run(run)).await.is_err() {
                return;
            }
            // As Docker: the next run one interval after this one ended (the start interval while starting).
            let wait = if health.in_start_period(since_start()) { t.start_interval } else { t.interval };
            due = on_tick(Instant::now() + wait);
        }
    }
}

/// Probe runs start on ticks of this length, all those due within one tick together.
const TICK: Duration = Duration::from_millis(100);

/// `at`, rounded up to the next tick. Waking once per tick for the runs due in it, rather than once
/// per run, is what the prober's CPU is mostly about: a lone connection after an idle gap cost
/// about four times what the same connection costs next to others (`lookout bench probes`: the
/// bare loop). A run starts at most one tick after its time; a thousand containers at 10 s still
/// spread over a hundred ticks.
fn on_tick(at: Instant) -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let since = at.saturating_duration_since(epoch).as_nanos();
    let tick = TICK.as_nanos();
    epoch + Duration::from_nanos((since.div_ceil(tick) * tick) as u64)
}

/// Waits for a health event of `id`; never, without events.
async fn next_event(
    events: &mut Option<tokio::sync::broadcast::Receiver<crate::model::ContainerId>>,
    id: &crate::model::ContainerId,
) {
    let Some(rx) = events else { return std::future::pending().await };
    loop {
        match rx.recv().await {
            Ok(got) if got == *id => return,
            // Missed events: look now rather than guess.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => std::future::pending().await,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_start_on_the_next_tick_and_those_due_in_one_tick_start_together() {
        let now = Instant::now();
        for ms in [0, 1, 37, 99, 100, 101, 250, 10_000] {
            let at = now + Duration::from_millis(ms);
            let t = on_tick(at);
            assert!(t >= at && t - at < TICK, "{ms} ms: {:?} after", t - at);
        }
        let a = on_tick(now + Duration::from_millis(1_000));
        let spread: std::collections::BTreeSet<Instant> =
            (1..=100).map(|ms| on_tick(a + Duration::from_millis(ms))).collect();
        assert_eq!(spread.len(), 1, "runs due within one tick wait for the same instant");
        assert_eq!(on_tick(a), a, "a tick is its own");
    }
}
