//! Restart decisions: looks at the health board every second and restarts unhealthy containers
//! through their host's agent, within backoff, budget, `max_unavailable` and the shared-dependency rule;
//! every decision, and every restart held back, goes to the decision log with its evidence.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::{RestartConfig, RestartPolicy};
use crate::health::{ContainerHealth, HealthBoard};
use crate::store::decisions::Decision;
use crate::store::Store;

/// A restart waiting to go down an agent's stream, or for its answer.
#[derive(Clone, Debug)]
pub struct Command {
    pub id: String,
    pub host: String,
    pub container_id: String,
    pub reason: String,
    decision_id: i64,
    deadline_ms: i64,
    sent: bool,
}

/// What one container's restarts have been.
#[derive(Default, Debug)]
struct Memory {
    /// When it was restarted (or would have been, in a dry run), within the policy's window.
    restarts: VecDeque<i64>,
    /// Restarts in a row without `reset_after` of health between them.
    streak: u32,
    last_restart_ms: i64,
    /// A restart is out, or done with no probe run seen since: it does not count as failing anew.
    awaiting_since: Option<i64>,
    in_flight: bool,
    healthy_since: Option<i64>,
    /// The (kind, unhealthy-since) of the last note recorded, so a held or given-up episode is logged once.
    noted: Option<(&'static str, i64)>,
}

/// Decided once per tick for one container.
enum Verdict {
    Wait,
    Note { kind: &'static str, reason: String },
    Restart { reason: String },
}

pub struct Restarter {
    cfg: RestartConfig,
    store: Arc<Store>,
    board: Arc<HealthBoard>,
    memory: Mutex<HashMap<String, Memory>>,
    commands: Mutex<Vec<Command>>,
    /// Woken when commands are queued, so the agent streams send them at once.
    pub queued: tokio::sync::Notify,
    /// Woken by ingest when a container's health changed, so the decision does not wait for the tick.
    pub changed: tokio::sync::Notify,
    decisions_total:
        prometheus_client::metrics::family::Family<Vec<(String, String)>, prometheus_client::metrics::counter::Counter>,
    /// The time of the last tick: answers that arrive between ticks are dated by it.
    clock: std::sync::atomic::AtomicI64,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

impl Restarter {
    pub fn new(
        cfg: RestartConfig,
        store: Arc<Store>,
        board: Arc<HealthBoard>,
        decisions_total: prometheus_client::metrics::family::Family<
            Vec<(String, String)>,
            prometheus_client::metrics::counter::Counter,
        >,
    ) -> Restarter {
        let memory = Mutex::new(Self::remember(&cfg, &store, now_ms()));
        Restarter {
            cfg,
            store,
            board,
            memory,
            commands: Default::default(),
            queued: Default::default(),
            changed: Default::default(),
            decisions_total,
            clock: Default::default(),
        }
    }

    /// The restarts the decision log holds within the longest window, so that budgets and backoff
    /// hold across a restart of the collector. A restart that was still waiting for its answer when
    /// the collector stopped is settled as not carried out (and still counted: it may have happened).
    fn remember(cfg: &RestartConfig, store: &Store, now: i64) -> HashMap<String, Memory> {
        let longest = cfg.policies.iter().chain([&cfg.default]).map(|p| p.window).max().unwrap_or_default();
        let filter = crate::store::decisions::DecisionFilter {
            since_ms: Some(now - ms(longest)),
            kind: Some("restart".into()),
            limit: 100_000,
            ..Default::default()
        };
        let mut memory: HashMap<String, Memory> = HashMap::new();
        let decisions = match store.decisions(&filter) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "cannot read past restarts: budgets start over");
                return memory;
            }
        };
        for d in decisions {
            if d.outcome == "pending" {
                let why = "the collector stopped before the agent answered";
                if let Err(e) = store.settle_decision(d.id, "not_carried_out", why, now) {
                    tracing::warn!(error = %e, "cannot settle a restart left pending");
                }
            } else if !matches!(d.outcome.as_str(), "ok" | "dry_run") {
                continue;
            }
            let m = memory.entry(d.container_id).or_default();
            m.restarts.push_back(d.time_ms);
            m.streak += 1;
            m.last_restart_ms = m.last_restart_ms.max(d.time_ms);
        }
        memory
    }

    /// Runs the decision loop every second until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.changed.notified() => {}
                _ = shutdown.cancelled() => return,
            }
            let me = self.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || me.tick(now_ms())).await {
                tracing::error!(error = %e, "restart decisions failed");
            }
        }
    }

    /// The policy for a container, where it comes from, and whether it is carried out (else recorded only).
    fn policy_for(&self, c: &ContainerHealth) -> (&RestartPolicy, &'static str, bool) {
        if let Some(p) = self.cfg.policies.iter().find(|p| p.service.as_deref() == Some(c.service.as_str())) {
            return (p, "service policy", !(p.dry_run || self.cfg.dry_run));
        }
        if c.restart == "on-unhealthy" {
            return (
                &self.cfg.default,
                "label lookout.restart=on-unhealthy",
                !(self.cfg.default.dry_run || self.cfg.dry_run),
            );
        }
        (&self.cfg.default, "not opted in (dry run)", false)
    }

    /// One look at the board: decides for every unhealthy container, settles overdue commands.
    pub fn tick(&self, now: i64) {
        self.clock.store(now, std::sync::atomic::Ordering::Relaxed);
        self.expire_commands(now);
        let mut memory = self.memory.lock().expect("restart memory poisoned");
        let remembered: std::collections::HashSet<String> = memory.keys().cloned().collect();
        let board = self.board.needing_decisions(&remembered);
        let mut by_service: HashMap<&str, Vec<&ContainerHealth>> = HashMap::new();
        for c in &board {
            by_service.entry(c.service.as_str()).or_default().push(c);
        }
        let seen: std::collections::HashSet<&str> = board.iter().map(|c| c.container_id.as_str()).collect();
        memory.retain(|id, m| seen.contains(id.as_str()) || m.in_flight || !m.restarts.is_empty());
        for c in &board {
            let (policy, source, enforce) = self.policy_for(c);
            let last_run = c.probes.iter().map(|p| p.last_run_ms).max().unwrap_or(0);
            {
                let m = memory.entry(c.container_id.clone()).or_default();
                m.restarts.retain(|t| now - t < ms(policy.window));
                if m.awaiting_since.is_some_and(|t| !m.in_flight && last_run > t) {
                    m.awaiting_since = None;
                }
                if c.state == "healthy" {
                    let since = *m.healthy_since.get_or_insert(now);
                    if now - since >= ms(policy.reset_after) {
                        m.streak = 0;
                    }
                } else {
                    m.healthy_since = None;
                }
            }
            if c.state != "unhealthy" {
                continue;
            }
            let service = &by_service[c.service.as_str()];
            let verdict = self.judge(c, service, &memory, policy, now);
            let m = memory.get_mut(&c.container_id).expect("entered above");
            match verdict {
                Verdict::Wait => {}
                Verdict::Note { kind, reason } => {
                    if m.noted != Some((kind, c.since_ms)) {
                        m.noted = Some((kind, c.since_ms));
                        let history = (m.restarts.iter().copied().collect(), m.streak);
                        self.record(c, kind, &reason, policy, source, enforce, service, history, now, "recorded");
                    }
                }
                Verdict::Restart { reason } => {
                    m.restarts.push_back(now);
                    m.streak += 1;
                    m.last_restart_ms = now;
                    m.noted = None;
                    let outcome = if enforce { "pending" } else { "dry_run" };
                    let history = (m.restarts.iter().copied().collect(), m.streak);
                    let Some(id) =
                        self.record(c, "restart", &reason, policy, source, enforce, service, history, now, outcome)
                    else {
                        continue;
                    };
                    if enforce {
                        m.in_flight = true;
                        m.awaiting_since = Some(now);
                        self.commands.lock().expect("commands poisoned").push(Command {
                            id: format!("restart-{id}"),
                            host: c.host.clone(),
                            container_id: c.container_id.clone(),
                            reason,
                            decision_id: id,
                            deadline_ms: now + ms(self.cfg.command_deadline),
                            sent: false,
                        });
                        self.queued.notify_waiters();
                    }
                }
            }
        }
    }

    fn judge(
        &self,
        c: &ContainerHealth,
        service: &[&ContainerHealth],
        memory: &HashMap<String, Memory>,
        policy: &RestartPolicy,
        now: i64,
    ) -> Verdict {
        let m = &memory[&c.container_id];
        if m.in_flight || m.awaiting_since.is_some() {
            return Verdict::Wait;
        }
        // Decide on fresh evidence only: an agent that stopped reporting leaves a stale state behind.
        let interval_ms = (c.probes.iter().map(|p| p.interval_seconds).fold(0.0, f64::max) * 1000.0) as i64;
        let last_run = c.probes.iter().map(|p| p.last_run_ms).max().unwrap_or(0);
        if now - last_run > (3 * interval_ms).max(10_000) {
            return Verdict::Wait;
        }
        if now - c.since_ms < ms(policy.unhealthy_for) {
            return Verdict::Wait;
        }
        if m.restarts.len() >= policy.max_restarts as usize {
            return Verdict::Note {
                kind: "restart_given_up",
                reason: format!(
                    "restarted {} times in the last {}: the budget is spent; giving up until the window frees a restart",
                    m.restarts.len(),
                    humantime::format_duration(policy.window)
                ),
            };
        }
        if m.streak > 0 && now < m.last_restart_ms + ms(policy.backoff_after(m.streak)) {
            return Verdict::Wait;
        }
        // The shared-dependency rule: more than half of the service failing together points at
        // something they share, which restarting them would not fix (and could make worse).
        let interval = c.probes.iter().map(|p| p.interval_seconds).fold(0.0, f64::max);
        let window = (2.0 * interval * 1000.0) as i64 + 1000;
        let failing = service
            .iter()
            .filter(|o| {
                let unhealthy_together = o.state == "unhealthy" && (o.since_ms - c.since_ms).abs() <= window;
                let failing_now = o.state != "unhealthy" && o.probes.iter().any(|p| p.failing_streak > 0);
                let restarting = memory.get(&o.container_id).is_some_and(|m| m.in_flight || m.awaiting_since.is_some());
                (unhealthy_together || failing_now) && !restarting
            })
            .count();
        if service.len() >= 2 && failing * 2 > service.len() {
            return Verdict::Note {
                kind: "restart_held",
                reason: format!(
                    "{failing} of {} containers of service {} turned unhealthy or are failing within one interval ({}): a shared dependency is the likelier cause; not restarting them",
                    service.len(),
                    c.service,
                    humantime::format_duration(Duration::from_millis(window as u64))
                ),
            };
        }
        let restarting = service
            .iter()
            .filter(|o| memory.get(&o.container_id).is_some_and(|m| m.in_flight || m.awaiting_since.is_some()))
            .count();
        let allowed = policy.max_unavailable_of(service.len()).unwrap_or(1);
        if restarting >= allowed {
            return Verdict::Note {
                kind: "restart_waiting",
                reason: format!(
                    "{restarting} of {} containers of service {} are restarting (max_unavailable {}): waiting",
                    service.len(),
                    c.service,
                    policy.max_unavailable
                ),
            };
        }
        let failing_probes: Vec<String> = c
            .probes
            .iter()
            .filter(|p| p.state == "unhealthy")
            .map(|p| format!("{} failed {} times in a row: {}", p.probe, p.failing_streak, p.last_output))
            .collect();
        Verdict::Restart {
            reason: format!(
                "unhealthy for {}: {}",
                humantime::format_duration(Duration::from_secs(((now - c.since_ms).max(0) / 1000) as u64)),
                failing_probes.join("; ")
            ),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        c: &ContainerHealth,
        kind: &str,
        reason: &str,
        policy: &RestartPolicy,
        source: &str,
        enforce: bool,
        service: &[&ContainerHealth],
        (history, streak): (Vec<i64>, u32),
        now: i64,
        outcome: &str,
    ) -> Option<i64> {
        let inputs = json!({
            "container": c,
            "service_containers": service.iter().map(|o| json!({
                "container": o.container, "container_id": o.container_id, "state": o.state, "since_ms": o.since_ms,
            })).collect::<Vec<_>>(),
            "restarts_in_window_ms": history,
            "restarts_in_a_row": streak,
        });
        let rule =
            json!({ "source": source, "enforced": enforce, "policy": policy, "dry_run_everywhere": self.cfg.dry_run });
        let d = Decision {
            id: 0,
            time_ms: now,
            kind: kind.into(),
            service: c.service.clone(),
            host: c.host.clone(),
            container: c.container.clone(),
            container_id: c.container_id.clone(),
            reason: reason.into(),
            rule,
            inputs,
            outcome: outcome.into(),
            detail: String::new(),
            settled_ms: (outcome != "pending").then_some(now),
        };
        tracing::info!(kind, container = %c.container, service = %c.service, outcome, %reason, "decision");
        if outcome != "pending" {
            self.count(kind, outcome);
        }
        self.store.mark_decision(&d);
        match self.store.record_decision(&d) {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::error!(error = %e, "cannot record a decision; not acting on it");
                None
            }
        }
    }

    fn count(&self, kind: &str, outcome: &str) {
        self.decisions_total
            .get_or_create(&vec![("kind".into(), kind.into()), ("outcome".into(), outcome.into())])
            .inc();
    }

    /// Commands for the agent of `host` not yet sent; they are marked sent.
    pub fn take_for(&self, host: &str) -> Vec<Command> {
        let mut cmds = self.commands.lock().expect("commands poisoned");
        cmds.iter_mut()
            .filter(|c| c.host == host && !c.sent)
            .map(|c| {
                c.sent = true;
                c.clone()
            })
            .collect()
    }

    /// A command could not be written to the stream: it goes back to wait for the agent.
    pub fn unsent(&self, id: &str) {
        if let Some(c) = self.commands.lock().expect("commands poisoned").iter_mut().find(|c| c.id == id) {
            c.sent = false;
        }
    }

    /// An agent's answer to a command.
    pub fn result(&self, id: &str, ok: bool, message: &str) {
        let cmd = {
            let mut cmds = self.commands.lock().expect("commands poisoned");
            let Some(i) = cmds.iter().position(|c| c.id == id) else {
                tracing::warn!(command = id, "an answer to a command that is not waiting (past its deadline?)");
                return;
            };
            cmds.remove(i)
        };
        let now = self.clock.load(std::sync::atomic::Ordering::Relaxed);
        if let Some(m) = self.memory.lock().expect("restart memory poisoned").get_mut(&cmd.container_id) {
            m.in_flight = false;
            m.awaiting_since = ok.then_some(now);
        }
        let now = now_ms().max(now);
        let outcome = if ok { "ok" } else { "failed" };
        self.count("restart", outcome);
        if let Err(e) = self.store.settle_decision(cmd.decision_id, outcome, message, now) {
            tracing::error!(error = %e, "cannot record a restart's outcome");
        }
    }

    fn expire_commands(&self, now: i64) {
        let expired: Vec<Command> = {
            let mut cmds = self.commands.lock().expect("commands poisoned");
            let (gone, keep): (Vec<Command>, Vec<Command>) = cmds.drain(..).partition(|c| now >= c.deadline_ms);
            *cmds = keep;
            gone
        };
        for c in expired {
            if let Some(m) = self.memory.lock().expect("restart memory poisoned").get_mut(&c.container_id) {
                m.in_flight = false;
                m.awaiting_since = None;
            }
            let detail = if c.sent {
                format!(
                    "sent to the agent on {}, which did not answer within {}",
                    c.host,
                    humantime::format_duration(self.cfg.command_deadline)
                )
            } else {
                format!(
                    "the agent on {} was away for {}",
                    c.host,
                    humantime::format_duration(self.cfg.command_deadline)
                )
            };
            self.count("restart", "not_carried_out");
            if let Err(e) = self.store.settle_decision(c.decision_id, "not_carried_out", &detail, now) {
                tracing::error!(error = %e, "cannot record a restart's outcome");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{ProbeReport, Run};
    use crate::store::decisions::DecisionFilter;

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Arc<Store>,
        board: Arc<HealthBoard>,
        r: Restarter,
    }

    fn fixture(toml_restart: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), Default::default()).unwrap());
        let board: Arc<HealthBoard> = Default::default();
        let cfg: crate::config::CollectorConfig = toml::from_str(toml_restart).unwrap();
        let r = Restarter::new(cfg.restart, store.clone(), board.clone(), Default::default());
        Fixture { _dir: dir, store, board, r }
    }

    /// A probe run of container `id` of `service` at `t` (ms).
    fn run(id: &str, service: &str, state: &str, streak: u32, t: i64) -> ProbeReport {
        let labels = [("container_id", id), ("container", id), ("service", service), ("host", "h1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ProbeReport {
            labels,
            probe: "http".into(),
            run: Run {
                time_ms: t,
                success: streak == 0,
                duration_seconds: 0.01,
                output: "HTTP 503".into(),
                state: state.into(),
            },
            previous_state: None,
            failing_streak: streak,
            interval_seconds: 1.0,
            restart: "on-unhealthy".into(),
        }
    }

    fn kinds(store: &Store) -> Vec<(String, String)> {
        store.decisions(&DecisionFilter::default()).unwrap().into_iter().map(|d| (d.kind, d.outcome)).collect()
    }

    #[test]
    fn an_opted_in_container_is_restarted_once_and_the_answer_settles_the_decision() {
        let f = fixture("");
        f.board.apply(vec![run("a", "web", "healthy", 0, 0), run("b", "web", "healthy", 0, 0)]);
        f.board.apply(vec![run("a", "web", "unhealthy", 3, 1000)]);
        f.r.tick(1500);
        f.r.tick(2500);
        let cmds = f.r.take_for("h1");
        assert_eq!(cmds.len(), 1, "one restart, not one per tick");
        assert!(cmds[0].reason.contains("http failed 3 times in a row: HTTP 503"), "{}", cmds[0].reason);
        assert!(f.r.take_for("h1").is_empty(), "sent once");
        f.r.result(&cmds[0].id, true, "restarted a");
        let d = f.store.decisions(&DecisionFilter::default()).unwrap();
        assert_eq!((d[0].kind.as_str(), d[0].outcome.as_str(), d[0].detail.as_str()), ("restart", "ok", "restarted a"));
        assert_eq!(d[0].rule["source"], "label lookout.restart=on-unhealthy");
        assert_eq!(d[0].inputs["container"]["probes"][0]["failing_streak"], 3);
    }

    #[test]
    fn backoff_doubles_and_the_budget_ends_in_giving_up_once() {
        let f = fixture("[restart.default]\nbackoff = \"10s\"\nmax_restarts = 3\n");
        f.board.apply(vec![run("a", "web", "healthy", 0, 0)]);
        let mut t = 1000;
        let mut restarts = Vec::new();
        // The container fails again right after every restart.
        while t < 200_000 {
            f.board.apply(vec![run("a", "web", "unhealthy", 3, t)]);
            f.r.tick(t);
            for c in f.r.take_for("h1") {
                restarts.push(t);
                f.r.result(&c.id, true, "ok");
            }
            t += 1000;
        }
        assert_eq!(restarts.len(), 3, "{restarts:?}");
        assert!(restarts[1] - restarts[0] >= 10_000 && restarts[2] - restarts[1] >= 20_000, "{restarts:?}");
        let k = kinds(&f.store);
        assert_eq!(k.iter().filter(|(k, _)| k == "restart_given_up").count(), 1, "{k:?}");
    }

    #[test]
    fn most_of_a_service_failing_together_is_held_not_restarted() {
        let f = fixture("");
        let ids = ["a", "b", "c", "d"];
        f.board.apply(ids.iter().map(|id| run(id, "dep", "healthy", 0, 0)).collect());
        // a turns unhealthy first; b and c are failing but not yet unhealthy; d is fine.
        f.board.apply(vec![
            run("a", "dep", "unhealthy", 2, 2000),
            run("b", "dep", "healthy", 1, 2100),
            run("c", "dep", "healthy", 1, 2200),
        ]);
        f.r.tick(2300);
        f.board.apply(vec![run("b", "dep", "unhealthy", 2, 3100), run("c", "dep", "unhealthy", 2, 3200)]);
        f.r.tick(3300);
        f.r.tick(4300);
        assert!(f.r.take_for("h1").is_empty());
        let k = kinds(&f.store);
        assert_eq!(k, vec![("restart_held".to_string(), "recorded".to_string()); 3], "held once each");
        let d = f.store.decisions(&DecisionFilter::default()).unwrap();
        assert!(d[0].reason.contains("3 of 4 containers of service dep"), "{}", d[0].reason);
    }

    #[test]
    fn max_unavailable_lets_one_restart_at_a_time_and_a_dry_run_acts_on_nothing() {
        let f = fixture("");
        let ids = ["a", "b", "c", "d", "e"];
        f.board.apply(ids.iter().map(|id| run(id, "web", "healthy", 0, 0)).collect());
        f.board.apply(vec![run("a", "web", "unhealthy", 3, 1000)]);
        f.r.tick(1000);
        f.board.apply(vec![run("b", "web", "unhealthy", 3, 60_000)]);
        f.r.tick(60_000);
        assert_eq!(f.r.take_for("h1").len(), 1, "b waits while a restarts");
        assert!(kinds(&f.store).contains(&("restart_waiting".to_string(), "recorded".to_string())));

        let g = fixture("[restart]\ndry_run = true\n");
        g.board.apply(vec![run("a", "web", "healthy", 0, 0)]);
        g.board.apply(vec![run("a", "web", "unhealthy", 3, 1000)]);
        g.r.tick(1000);
        assert!(g.r.take_for("h1").is_empty());
        assert_eq!(kinds(&g.store), [("restart".to_string(), "dry_run".to_string())]);
    }

    #[test]
    fn budgets_hold_across_a_restart_of_the_collector() {
        let f = fixture("[restart.default]\nmax_restarts = 1\n");
        let now = now_ms();
        f.board.apply(vec![run("a", "web", "healthy", 0, now - 2000)]);
        f.board.apply(vec![run("a", "web", "unhealthy", 3, now - 1000)]);
        f.r.tick(now - 1000);
        let cmds = f.r.take_for("h1");
        f.r.result(&cmds[0].id, true, "restarted a");
        // Another restart decided and sent, then the collector stops before the answer.
        f.store
            .record_decision(&Decision {
                id: 0,
                time_ms: now - 500,
                kind: "restart".into(),
                service: "web".into(),
                host: "h1".into(),
                container: "b".into(),
                container_id: "b".into(),
                reason: String::new(),
                rule: json!({}),
                inputs: json!({}),
                outcome: "pending".into(),
                detail: String::new(),
                settled_ms: None,
            })
            .unwrap();

        let cfg: crate::config::CollectorConfig = toml::from_str("[restart.default]\nmax_restarts = 1\n").unwrap();
        let again = Restarter::new(cfg.restart, f.store.clone(), f.board.clone(), Default::default());
        f.board.apply(vec![run("a", "web", "unhealthy", 4, now)]);
        again.tick(now);
        assert!(again.take_for("h1").is_empty(), "the budget spent before the restart still counts");
        let d = f.store.decisions(&DecisionFilter::default()).unwrap();
        assert_eq!(d.last().unwrap().kind, "restart_given_up");
        let left = d.iter().find(|d| d.container_id == "b").unwrap();
        assert_eq!(
            (left.outcome.as_str(), left.detail.as_str()),
            ("not_carried_out", "the collector stopped before the agent answered")
        );
    }

    #[test]
    fn a_command_for_an_agent_that_stays_away_is_recorded_as_not_carried_out() {
        let f = fixture("[restart]\ncommand_deadline = \"30s\"\n");
        f.board.apply(vec![run("a", "web", "healthy", 0, 0)]);
        f.board.apply(vec![run("a", "web", "unhealthy", 3, 1000)]);
        f.r.tick(1000);
        f.r.tick(31_000);
        let d = f.store.decisions(&DecisionFilter::default()).unwrap();
        assert_eq!(d[0].outcome, "not_carried_out");
        assert!(d[0].detail.contains("the agent on h1 was away for 30s"), "{}", d[0].detail);
        assert!(f.r.take_for("h1").is_empty(), "not sent after its deadline, and no new restart on stale evidence");
    }
}
