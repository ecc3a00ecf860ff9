//! Restart rules, pure: for each unhealthy container on the board, restart it or not within its
//! policy (opt-in, backoff, budget, shared dependency, `max_unavailable`, fresh evidence), from the
//! board, the rules' memory of past restarts and `now`. The shell in `run::restart` records and acts.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use crate::health::ContainerHealth;
use crate::model::decision::{Decision, Kind, Outcome, Subject};

/// `[restart]`: restarts of unhealthy containers. A container opts in with the label
/// `lookout.restart=on-unhealthy`, or its service through a `[[restart.policies]]` entry; for every
/// other container the collector records what it would have done (`dry_run`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartConfig {
    /// Record decisions without carrying any out, for every container.
    #[serde(default)]
    pub dry_run: bool,
    /// A restart for an agent that is away waits this long, then is recorded as not carried out.
    #[serde(default = "defaults::command_deadline", with = "humantime_serde")]
    pub command_deadline: Duration,
    /// The policy for containers that opt in by label, and for dry runs.
    #[serde(default)]
    pub default: RestartPolicy,
    /// Per service; these containers are restarted without the label.
    #[serde(default)]
    pub policies: Vec<RestartPolicy>,
}

impl Default for RestartConfig {
    fn default() -> Self {
        toml::from_str("").expect("the empty restart section is valid")
    }
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RestartPolicy {
    /// The service this policy is for (in `[[restart.policies]]`).
    #[serde(default)]
    pub service: Option<String>,
    /// Record what would be done for this service, without doing it.
    #[serde(default)]
    pub dry_run: bool,
    /// Restart once the container has been unhealthy this long.
    #[serde(default, with = "humantime_serde")]
    pub unhealthy_for: Duration,
    /// The wait after the first restart before another; doubles with each restart up to `backoff_max`.
    #[serde(default = "defaults::backoff", with = "humantime_serde")]
    pub backoff: Duration,
    #[serde(default = "defaults::backoff_max", with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Healthy this long after a restart, the backoff starts over.
    #[serde(default = "defaults::reset_after", with = "humantime_serde")]
    pub reset_after: Duration,
    /// At most this many restarts of one container per `window`; then lookout gives up and says so.
    #[serde(default = "defaults::max_restarts")]
    pub max_restarts: u32,
    #[serde(default = "defaults::restart_window", with = "humantime_serde")]
    pub window: Duration,
    /// At most this many of a service's containers restarting at once: a count (`1`) or a share (`25%`).
    #[serde(default = "defaults::max_unavailable")]
    pub max_unavailable: String,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        toml::from_str("").expect("the empty policy is valid")
    }
}

impl RestartPolicy {
    /// How many of `total` containers may be restarting at once (at least 1).
    pub fn max_unavailable_of(&self, total: usize) -> Result<usize, String> {
        let v = self.max_unavailable.trim();
        let n = match v.strip_suffix('%') {
            Some(p) => {
                let p: f64 = p.trim().parse().map_err(|_| format!("{v:?} is not a percentage"))?;
                if !(0.0..=100.0).contains(&p) {
                    return Err(format!("{v:?} is not between 0% and 100%"));
                }
                (total as f64 * p / 100.0).floor() as usize
            }
            None => v.parse::<usize>().map_err(|_| format!("{v:?} is neither a count (1) nor a share (25%)"))?,
        };
        Ok(n.max(1))
    }

    /// The wait after the `n`th restart in a row (n ≥ 1): `backoff` doubling up to `backoff_max`.
    pub fn backoff_after(&self, n: u32) -> Duration {
        let doubled = self.backoff.saturating_mul(1u32 << n.saturating_sub(1).min(20));
        doubled.min(self.backoff_max)
    }
}

impl RestartConfig {
    /// The policy for a container, where it comes from, and whether it is carried out (else recorded only).
    pub fn policy_for(&self, c: &ContainerHealth) -> (&RestartPolicy, &'static str, bool) {
        if let Some(p) = self.policies.iter().find(|p| p.service.as_deref() == Some(c.service.as_str())) {
            return (p, "service policy", !(p.dry_run || self.dry_run));
        }
        if c.restart == "on-unhealthy" {
            return (&self.default, "label lookout.restart=on-unhealthy", !(self.default.dry_run || self.dry_run));
        }
        (&self.default, "not opted in (dry run)", false)
    }

    /// The longest window any policy counts restarts over.
    pub fn longest_window(&self) -> Duration {
        self.policies.iter().chain([&self.default]).map(|p| p.window).max().unwrap_or_default()
    }
}

mod defaults {
    use std::time::Duration;
    pub fn command_deadline() -> Duration {
        Duration::from_secs(60)
    }
    pub fn backoff() -> Duration {
        Duration::from_secs(10)
    }
    pub fn backoff_max() -> Duration {
        Duration::from_secs(300)
    }
    pub fn reset_after() -> Duration {
        Duration::from_secs(600)
    }
    pub fn max_restarts() -> u32 {
        5
    }
    pub fn restart_window() -> Duration {
        Duration::from_secs(1800)
    }
    pub fn max_unavailable() -> String {
        "1".into()
    }
}

/// What one container's restarts have been.
#[derive(Default, Debug)]
pub struct Memory {
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
    noted: Option<(Kind, i64)>,
}

/// The rules' memory: per container id, what its restarts have been.
#[derive(Default, Debug)]
pub struct Memories(HashMap<String, Memory>);

impl Memories {
    /// The containers the memory knows: each needs a look even when its service is healthy.
    pub fn ids(&self) -> HashSet<String> {
        self.0.keys().cloned().collect()
    }
}

impl Memories {
    /// The memory the decision log gives: restarts within the longest window (decisions of kind
    /// `restart` that were carried out, dry runs, or still pending when the collector stopped), so
    /// that budgets and backoff hold across a restart of the collector.
    pub fn from_log(past: &[Decision]) -> Memories {
        let mut memory: HashMap<String, Memory> = HashMap::new();
        for d in past {
            if d.kind != Kind::Restart || !matches!(d.outcome, Outcome::Pending | Outcome::Ok | Outcome::DryRun) {
                continue;
            }
            let Some(id) = d.container_id() else { continue };
            let m = memory.entry(id.to_string()).or_default();
            m.restarts.push_back(d.time_ms);
            m.streak += 1;
            m.last_restart_ms = m.last_restart_ms.max(d.time_ms);
        }
        Memories(memory)
    }

    /// The agent answered a restart of `container_id`: done (a probe run must follow before it is
    /// judged again), or failed (judged again at once).
    pub fn answered(&mut self, container_id: &str, ok: bool, now: i64) {
        if let Some(m) = self.0.get_mut(container_id) {
            m.in_flight = false;
            m.awaiting_since = ok.then_some(now);
        }
    }

    /// A restart of `container_id` was never carried out (its deadline passed, or it could not be
    /// recorded): the container is judged again.
    pub fn not_carried_out(&mut self, container_id: &str) {
        if let Some(m) = self.0.get_mut(container_id) {
            m.in_flight = false;
            m.awaiting_since = None;
        }
    }
}

/// A decision the rules reached, and the restart to carry out when it is one that is enforced.
#[derive(Debug)]
pub struct Planned {
    pub decision: Decision,
    pub restart: Option<Restart>,
}

/// A restart to send to the container's agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Restart {
    pub host: String,
    pub container_id: String,
    pub reason: String,
}

/// Decided once per look for one container.
enum Verdict {
    Wait,
    Note { kind: Kind, reason: String },
    Restart { reason: String },
}

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// One look at the board at `now`: what to record and which restarts to send. `board` holds the
/// containers that need a decision (unhealthy ones, and every one the memory knows).
pub fn decide(cfg: &RestartConfig, board: &[ContainerHealth], memory: &mut Memories, now: i64) -> Vec<Planned> {
    let memory = &mut memory.0;
    let mut out = Vec::new();
    let mut by_service: HashMap<&str, Vec<&ContainerHealth>> = HashMap::new();
    for c in board {
        by_service.entry(c.service.as_str()).or_default().push(c);
    }
    let seen: HashSet<&str> = board.iter().map(|c| c.container_id.as_str()).collect();
    memory.retain(|id, m| seen.contains(id.as_str()) || m.in_flight || !m.restarts.is_empty());
    for c in board {
        let (policy, source, enforce) = cfg.policy_for(c);
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
        let verdict = judge(c, service, memory, policy, now);
        let m = memory.get_mut(&c.container_id).expect("entered above");
        let evidence = |kind: Kind, reason: String, outcome: Outcome, m: &Memory| {
            let mut d = Decision::new(
                now,
                kind,
                &c.service,
                Subject::Container {
                    host: c.host.clone(),
                    container: c.container.clone(),
                    container_id: c.container_id.clone(),
                },
                reason,
                outcome,
            );
            d.inputs = json!({
                "container": c,
                "service_containers": service.iter().map(|o| json!({
                    "container": o.container, "container_id": o.container_id, "state": o.state, "since_ms": o.since_ms,
                })).collect::<Vec<_>>(),
                "restarts_in_window_ms": m.restarts,
                "restarts_in_a_row": m.streak,
            });
            d.rule =
                json!({ "source": source, "enforced": enforce, "policy": policy, "dry_run_everywhere": cfg.dry_run });
            d
        };
        match verdict {
            Verdict::Wait => {}
            Verdict::Note { kind, reason } => {
                if m.noted != Some((kind, c.since_ms)) {
                    m.noted = Some((kind, c.since_ms));
                    out.push(Planned { decision: evidence(kind, reason, Outcome::Recorded, m), restart: None });
                }
            }
            Verdict::Restart { reason } => {
                m.restarts.push_back(now);
                m.streak += 1;
                m.last_restart_ms = now;
                m.noted = None;
                let outcome = if enforce { Outcome::Pending } else { Outcome::DryRun };
                let decision = evidence(Kind::Restart, reason.clone(), outcome, m);
                let restart = enforce.then(|| {
                    m.in_flight = true;
                    m.awaiting_since = Some(now);
                    Restart { host: c.host.clone(), container_id: c.container_id.clone(), reason }
                });
                out.push(Planned { decision, restart });
            }
        }
    }
    out
}

fn judge(
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
            kind: Kind::RestartGivenUp,
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
            kind: Kind::RestartHeld,
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
            kind: Kind::RestartWaiting,
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

#[cfg(test)]
mod tests;
