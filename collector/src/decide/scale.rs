//! Autoscale rules, pure: per service policy, the Kubernetes HPA rule `desired = ceil(current ×
//! value / target)` with a tolerance, stabilization windows, rate limits and min/max replicas,
//! over what the shell observed of the service's containers. lookout never starts or stops
//! containers for scaling itself: decisions go to the log and, through `export`, to a webhook.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::model::decision::{Decision, Kind, Outcome, Subject};

/// `[[autoscale]]` in collector.toml.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AutoscalePolicy {
    pub service: String,
    /// `cpu` (use over the CPU limit), `memory` (working set over the memory limit), or `query`.
    pub metric: MetricKind,
    /// PromQL for `metric = "query"`, giving the per-replica average; `$service` is substituted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The value each replica should sit at (0.5 = half its CPU limit).
    pub target: f64,
    #[serde(default = "defaults::min_replicas")]
    pub min_replicas: u32,
    #[serde(default = "defaults::max_replicas")]
    pub max_replicas: u32,
    /// No change while value / target stays within 1 ± tolerance (per direction if set).
    #[serde(default = "defaults::tolerance")]
    pub tolerance: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance_up: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance_down: Option<f64>,
    /// Scale up to the lowest, and down to the highest, recommendation within these windows.
    #[serde(default, with = "humantime_serde")]
    pub scale_up_stabilization: Duration,
    #[serde(default = "defaults::scale_down_stabilization", with = "humantime_serde")]
    pub scale_down_stabilization: Duration,
    /// Rate policies (HPA's defaults): up by at most the larger of 100% and 4 replicas, down by at
    /// most 100%, per decision.
    #[serde(default = "defaults::up_percent")]
    pub scale_up_max_percent: f64,
    #[serde(default = "defaults::up_replicas")]
    pub scale_up_max_replicas: u32,
    #[serde(default = "defaults::down_percent")]
    pub scale_down_max_percent: f64,
    /// How often the rule is evaluated, and the window CPU rates are taken over.
    #[serde(default = "defaults::interval", with = "humantime_serde")]
    pub interval: Duration,
    #[serde(default = "defaults::rate_window", with = "humantime_serde")]
    pub rate_window: Duration,
    /// Where decisions are POSTed, signed with `secret` (HMAC-SHA256 of the body, hex, in
    /// `X-Lookout-Signature: sha256=...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Decide while a rollout gate on the service is running (by default, hold).
    #[serde(default)]
    pub during_gates: bool,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    Cpu,
    Memory,
    Query,
}

mod defaults {
    use std::time::Duration;
    pub fn min_replicas() -> u32 {
        1
    }
    pub fn max_replicas() -> u32 {
        10
    }
    pub fn tolerance() -> f64 {
        0.1
    }
    pub fn scale_down_stabilization() -> Duration {
        Duration::from_secs(300)
    }
    pub fn up_percent() -> f64 {
        100.0
    }
    pub fn up_replicas() -> u32 {
        4
    }
    pub fn down_percent() -> f64 {
        100.0
    }
    pub fn interval() -> Duration {
        Duration::from_secs(15)
    }
    pub fn rate_window() -> Duration {
        Duration::from_secs(60)
    }
}

impl AutoscalePolicy {
    /// Every problem with its key; `check_query` says what is wrong with a PromQL text, if anything.
    pub fn validate(&self, at: &str, check_query: &dyn Fn(&str) -> Result<(), String>) -> Vec<String> {
        let mut p = Vec::new();
        if !(self.target.is_finite() && self.target > 0.0) {
            p.push(format!("{at}.target: must be above 0"));
        }
        if self.min_replicas < 1 || self.min_replicas > self.max_replicas {
            p.push(format!("{at}.min_replicas: must be at least 1 and at most max_replicas ({})", self.max_replicas));
        }
        for (k, v) in [
            ("tolerance", Some(self.tolerance)),
            ("tolerance_up", self.tolerance_up),
            ("tolerance_down", self.tolerance_down),
        ] {
            if v.is_some_and(|v| !(0.0..1.0).contains(&v)) {
                p.push(format!("{at}.{k}: must be at least 0 and below 1"));
            }
        }
        match (self.metric, &self.query) {
            (MetricKind::Query, None) => p.push(format!("{at}.query: needed for metric = \"query\"")),
            (MetricKind::Query, Some(q)) => {
                if let Err(e) = check_query(&q.replace("$service", "x")) {
                    p.push(format!("{at}.query: {e}"));
                }
            }
            (_, Some(_)) => p.push(format!("{at}.query: only for metric = \"query\"")),
            _ => {}
        }
        if self.interval < Duration::from_secs(1) {
            p.push(format!("{at}.interval: must be at least 1s"));
        }
        if self.secret.is_some() && self.webhook.is_none() {
            p.push(format!("{at}.secret: there is no webhook to sign for"));
        }
        p
    }
}

/// The arithmetic of one evaluation, kept as the decision's inputs.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Reading {
    /// Containers of the service seen in the last two intervals.
    pub current: u32,
    /// Those that count: not starting, not unhealthy, with a limit for `cpu`/`memory`.
    pub counted: Vec<(String, f64)>,
    /// Left out, and why.
    pub left_out: Vec<(String, String)>,
    pub value: f64,
    pub target: f64,
    pub ratio: f64,
    /// `ceil(current × value / target)`, or `current` inside the tolerance.
    pub recommendation: u32,
}

/// How a recommendation becomes a decision: stabilization, rate limits, bounds.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Step {
    pub desired: u32,
    pub explanation: String,
}

/// HPA's rule on one reading; `history` holds earlier (time, recommendation) pairs.
pub fn decide(p: &AutoscalePolicy, r: &Reading, history: &[(i64, u32)], now_ms: i64) -> Step {
    let current = r.current;
    let in_window =
        |w: Duration| history.iter().filter(move |(t, _)| now_ms - t <= w.as_millis() as i64).map(|(_, v)| *v);
    let up_floor = in_window(p.scale_up_stabilization).chain([r.recommendation]).min().unwrap_or(r.recommendation);
    let down_ceiling =
        in_window(p.scale_down_stabilization).chain([r.recommendation]).max().unwrap_or(r.recommendation);
    let mut why = vec![format!(
        "ceil({current} × {:.3} / {}) = {}",
        r.value,
        p.target,
        if r.recommendation == current {
            format!("{current} (ratio {:.3} within tolerance)", r.ratio)
        } else {
            r.recommendation.to_string()
        }
    )];
    let mut desired = if current < up_floor {
        if up_floor != r.recommendation {
            why.push(format!(
                "lowest recommendation in the last {} is {up_floor}",
                humantime::format_duration(p.scale_up_stabilization)
            ));
        }
        up_floor
    } else if current > down_ceiling {
        if down_ceiling != r.recommendation {
            why.push(format!(
                "highest recommendation in the last {} is {down_ceiling}",
                humantime::format_duration(p.scale_down_stabilization)
            ));
        }
        down_ceiling
    } else {
        if r.recommendation != current {
            why.push(format!("held at {current} by the stabilization windows"));
        }
        current
    };
    let up_limit = ((current as f64 * (1.0 + p.scale_up_max_percent / 100.0)).floor() as u32)
        .max(current + p.scale_up_max_replicas);
    let down_limit = (current as f64 * (1.0 - p.scale_down_max_percent / 100.0)).ceil().max(0.0) as u32;
    if desired > up_limit {
        why.push(format!("limited to {up_limit} by the scale-up rate"));
        desired = up_limit;
    }
    if desired < down_limit {
        why.push(format!("limited to {down_limit} by the scale-down rate"));
        desired = down_limit;
    }
    let bounded = desired.clamp(p.min_replicas, p.max_replicas);
    if bounded != desired {
        why.push(format!("bounded to {bounded} by min {} / max {}", p.min_replicas, p.max_replicas));
    }
    Step { desired: bounded, explanation: why.join("; ") }
}

/// What the shell observed of a service at one time.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Containers seen in the last two intervals: (id, name).
    pub seen: Vec<(String, String)>,
    /// Health by container id (empty in a replay, where every container counts).
    pub health: HashMap<String, String>,
    /// Per container id, its use of its limit (`cpu`, `memory`); containers without one are absent.
    pub per_container: HashMap<String, f64>,
    /// For `metric = "query"`: the query's value (a scalar, or the mean of a vector).
    pub query_value: Option<f64>,
}

/// The reading the rule works on: who counts, the mean value, the recommendation.
pub fn reading(p: &AutoscalePolicy, o: &Observed) -> Reading {
    let (mut counted, mut left_out) = (Vec::new(), Vec::new());
    for (id, name) in &o.seen {
        let label = if name.is_empty() { id.clone() } else { name.clone() };
        match o.health.get(id).map(String::as_str) {
            Some(state @ ("starting" | "unhealthy")) => left_out.push((label, state.to_string())),
            _ if p.metric == MetricKind::Query => {}
            _ => match o.per_container.get(id) {
                Some(v) => counted.push((label, *v)),
                None => left_out.push((
                    label,
                    format!("no {} limit or no readings", if p.metric == MetricKind::Cpu { "CPU" } else { "memory" }),
                )),
            },
        }
    }
    let current = o.seen.len() as u32;
    let value = if p.metric == MetricKind::Query {
        counted.push(("query".into(), o.query_value.unwrap_or(f64::NAN)));
        o.query_value.unwrap_or(f64::NAN)
    } else {
        mean(&counted)
    };
    let mut r = Reading { current, counted, left_out, value, target: p.target, ratio: 0.0, recommendation: 0 };
    recommend(p, &mut r);
    r
}

fn mean(counted: &[(String, f64)]) -> f64 {
    if counted.is_empty() {
        f64::NAN
    } else {
        counted.iter().map(|(_, v)| v).sum::<f64>() / counted.len() as f64
    }
}

/// Sets the ratio and the recommendation from the value: `current` inside the tolerance.
fn recommend(p: &AutoscalePolicy, r: &mut Reading) {
    r.ratio = r.value / p.target;
    let tol_up = p.tolerance_up.unwrap_or(p.tolerance);
    let tol_down = p.tolerance_down.unwrap_or(p.tolerance);
    r.recommendation =
        if !r.ratio.is_finite() || r.current == 0 || (r.ratio >= 1.0 - tol_down && r.ratio <= 1.0 + tol_up) {
            r.current
        } else {
            (r.current as f64 * r.ratio).ceil() as u32
        };
}

/// A replay's reading: health at the time is not stored, so the containers the recorded reading
/// left out for health are left out again by name.
pub fn as_recorded(p: &AutoscalePolicy, mut now: Reading, recorded: &Reading) -> Reading {
    let unhealthy: Vec<&String> =
        recorded.left_out.iter().filter(|(_, why)| why == "starting" || why == "unhealthy").map(|(n, _)| n).collect();
    if !unhealthy.is_empty() {
        now.counted.retain(|(n, _)| !unhealthy.contains(&n));
        now.left_out = recorded.left_out.clone();
        now.value = now.counted.iter().map(|(_, v)| v).sum::<f64>() / now.counted.len().max(1) as f64;
        recommend(p, &mut now);
    }
    now
}

/// What one service's scaling has been.
#[derive(Default, Debug)]
pub struct Memory {
    next_ms: i64,
    history: VecDeque<(i64, u32)>,
    /// The replica count and desired count of the last decision sent, and when: while the count is
    /// unchanged, another decision the same way waits 5 minutes (a ±1 wobble of the ceiling is
    /// not news to the deploy system that has not acted yet).
    last_sent: Option<(u32, u32, i64)>,
    held_noted: bool,
}

impl Memory {
    /// Whether the policy is due at `now`; if it is, the next look is one interval later.
    pub fn due(&mut self, p: &AutoscalePolicy, now_ms: i64) -> bool {
        if self.next_ms > now_ms {
            return false;
        }
        self.next_ms = now_ms + p.interval.as_millis() as i64;
        true
    }
}

/// One evaluation of a policy on its reading: the decision to record, if there is news. `gate_running`
/// holds it (unless the policy decides during gates); a `scale` decision with a webhook is pending
/// until delivered.
pub fn look(p: &AutoscalePolicy, r: &Reading, gate_running: bool, mem: &mut Memory, now_ms: i64) -> Option<Decision> {
    let keep = p.scale_up_stabilization.max(p.scale_down_stabilization).as_millis() as i64;
    while mem.history.front().is_some_and(|(t, _)| now_ms - t > keep) {
        mem.history.pop_front();
    }
    if r.current == 0 || !r.value.is_finite() {
        return None;
    }
    let history: Vec<(i64, u32)> = mem.history.iter().copied().collect();
    let step = decide(p, r, &history, now_ms);
    mem.history.push_back((now_ms, r.recommendation));
    if step.desired == r.current {
        mem.held_noted = false;
        return None;
    }
    let held = !p.during_gates && gate_running;
    if held && mem.held_noted {
        return None;
    }
    let same_way =
        |(cur, d, t): (u32, u32, i64)| cur == r.current && (d > cur) == (step.desired > cur) && now_ms - t < 300_000;
    if !held && mem.last_sent.is_some_and(same_way) {
        return None;
    }
    let (kind, outcome, reason) = if held {
        let why = format!(
            "would scale {} from {} to {}, but a rollout gate on it is running",
            p.service, r.current, step.desired
        );
        (Kind::ScaleHeld, Outcome::Recorded, why)
    } else {
        let why = format!("scale {} from {} to {}: {}", p.service, r.current, step.desired, step.explanation);
        (Kind::Scale, if p.webhook.is_some() { Outcome::Pending } else { Outcome::Recorded }, why)
    };
    if held {
        mem.held_noted = true;
    } else {
        mem.last_sent = Some((r.current, step.desired, now_ms));
    }
    let mut d = Decision::new(now_ms, kind, &p.service, Subject::Service, reason, outcome);
    d.rule = serde_json::to_value(p).unwrap_or_default();
    d.inputs = json!({"reading": r, "history": history, "desired": step.desired, "explanation": step.explanation});
    Some(d)
}

#[cfg(test)]
mod tests;
