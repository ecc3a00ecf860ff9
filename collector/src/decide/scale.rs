//! Autoscale decisions: per service policy, the Kubernetes HPA rule `desired = ceil(current × value /
//! target)` with a tolerance, stabilization windows, rate limits and min/max replicas, over the
//! containers agents report. Decisions go to the decision log and to a signed webhook; lookout
//! never starts or stops containers for scaling itself.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::health::HealthBoard;
use crate::model::Matcher;
use crate::query::{Engine, Value};
use crate::store::decisions::Decision;
use crate::store::Store;

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
    /// Every problem with its key (`autoscale[0].target: ...`).
    pub fn validate(&self, at: &str) -> Vec<String> {
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
                if let Err(e) = crate::query::check_promql(&q.replace("$service", "x")) {
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

/// What one service's scaling has been.
#[derive(Default)]
struct Memory {
    next_ms: i64,
    history: VecDeque<(i64, u32)>,
    /// The replica count and desired count of the last decision sent, and when: while the count is
    /// unchanged, another decision the same way waits 5 minutes (a ±1 wobble of the ceiling is
    /// not news to the deploy system that has not acted yet).
    last_sent: Option<(u32, u32, i64)>,
    held_noted: bool,
}

pub struct Autoscaler {
    policies: Vec<AutoscalePolicy>,
    store: Arc<Store>,
    engine: Arc<Engine>,
    board: Arc<HealthBoard>,
    gates: Arc<crate::gate::Gates>,
    memory: Mutex<HashMap<String, Memory>>,
    http: reqwest::Client,
    decisions_total:
        prometheus_client::metrics::family::Family<Vec<(String, String)>, prometheus_client::metrics::counter::Counter>,
}

impl Autoscaler {
    pub fn new(
        policies: Vec<AutoscalePolicy>,
        store: Arc<Store>,
        engine: Arc<Engine>,
        board: Arc<HealthBoard>,
        gates: Arc<crate::gate::Gates>,
        decisions_total: prometheus_client::metrics::family::Family<
            Vec<(String, String)>,
            prometheus_client::metrics::counter::Counter,
        >,
    ) -> Autoscaler {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
        Autoscaler { policies, store, engine, board, gates, memory: Mutex::default(), http, decisions_total }
    }

    /// Reads a service's replicas and their metric at `now_ms` from the store and the health board.
    /// `health` is the board's view (None in a replay, where every container counts).
    pub fn read(&self, p: &AutoscalePolicy, now_ms: i64, live_health: bool) -> Result<Reading, String> {
        let seen_since = now_ms - (2 * p.interval.as_millis() as i64).max(30_000);
        let m = |name: &str| [Matcher::equal("__name__", name), Matcher::equal("service", &p.service)];
        let select = |name: &str, from: i64| self.store.select(&m(name), from, now_ms).map_err(|e| e.to_string());
        let last = |name: &str| -> Result<HashMap<String, f64>, String> {
            Ok(select(name, seen_since)?
                .into_iter()
                .filter_map(|s| Some((s.labels.get("container_id")?.to_string(), *s.samples.values.last()?)))
                .collect())
        };
        let seen: Vec<(String, String)> = select("container_last_seen", seen_since)?
            .into_iter()
            .filter_map(|s| {
                Some((s.labels.get("container_id")?.to_string(), s.labels.get("container").unwrap_or("").to_string()))
            })
            .collect();
        let health: HashMap<String, String> = if live_health {
            self.board.list(None, Some(&p.service), None).into_iter().map(|h| (h.container_id, h.state)).collect()
        } else {
            HashMap::new()
        };
        let per_container: HashMap<String, f64> = match p.metric {
            MetricKind::Cpu => {
                let (quota, period) = (last("container_spec_cpu_quota")?, last("container_spec_cpu_period")?);
                let window = p.rate_window.as_millis() as i64;
                let mut out = HashMap::new();
                for s in select("container_cpu_usage_seconds_total", now_ms - window)? {
                    let Some(id) = s.labels.get("container_id") else { continue };
                    let (ts, vs) = (&s.samples.ts, &s.samples.values);
                    let cores = match (quota.get(id), period.get(id)) {
                        (Some(q), Some(pd)) if *q > 0.0 && *pd > 0.0 => q / pd,
                        _ => continue,
                    };
                    if ts.len() >= 2 && ts[ts.len() - 1] > ts[0] && vs[vs.len() - 1] >= vs[0] {
                        let rate = (vs[vs.len() - 1] - vs[0]) / ((ts[ts.len() - 1] - ts[0]) as f64 / 1e3);
                        out.insert(id.to_string(), rate / cores);
                    }
                }
                out
            }
            MetricKind::Memory => {
                let limit = last("container_spec_memory_limit_bytes")?;
                last("container_memory_working_set_bytes")?
                    .into_iter()
                    .filter_map(|(id, ws)| limit.get(&id).filter(|l| **l > 0.0 && **l < 1e18).map(|l| (id, ws / l)))
                    .collect()
            }
            MetricKind::Query => HashMap::new(),
        };
        let (mut counted, mut left_out) = (Vec::new(), Vec::new());
        for (id, name) in &seen {
            let label = if name.is_empty() { id.clone() } else { name.clone() };
            match health.get(id).map(String::as_str) {
                Some(state @ ("starting" | "unhealthy")) => left_out.push((label, state.to_string())),
                _ if p.metric == MetricKind::Query => {}
                _ => match per_container.get(id) {
                    Some(v) => counted.push((label, *v)),
                    None => left_out.push((
                        label,
                        format!(
                            "no {} limit or no readings",
                            if p.metric == MetricKind::Cpu { "CPU" } else { "memory" }
                        ),
                    )),
                },
            }
        }
        let current = seen.len() as u32;
        let value = if p.metric == MetricKind::Query {
            let q = p.query.as_deref().unwrap_or("").replace("$service", &p.service);
            let (engine, store) = (&self.engine, &*self.store);
            let found = crate::query::runner::on_query_stack(|| engine.instant(store, &q, now_ms));
            let v = match found.map_err(|e| e.to_string())? {
                Value::Scalar { v, .. } => Some(v),
                Value::Vector(s) if !s.is_empty() => Some(s.iter().map(|x| x.v).sum::<f64>() / s.len() as f64),
                _ => None,
            };
            counted.push(("query".into(), v.unwrap_or(f64::NAN)));
            v.unwrap_or(f64::NAN)
        } else if counted.is_empty() {
            f64::NAN
        } else {
            counted.iter().map(|(_, v)| v).sum::<f64>() / counted.len() as f64
        };
        let ratio = value / p.target;
        let tol_up = p.tolerance_up.unwrap_or(p.tolerance);
        let tol_down = p.tolerance_down.unwrap_or(p.tolerance);
        let recommendation = if !ratio.is_finite() || current == 0 || (ratio >= 1.0 - tol_down && ratio <= 1.0 + tol_up)
        {
            current
        } else {
            (current as f64 * ratio).ceil() as u32
        };
        Ok(Reading { current, counted, left_out, value, target: p.target, ratio, recommendation })
    }

    /// Evaluates every policy that is due (blocking: reads the store); returns decisions to deliver.
    pub fn tick(&self, now_ms: i64) -> Vec<(AutoscalePolicy, Decision)> {
        let mut out = Vec::new();
        for p in &self.policies {
            let mut memory = self.memory.lock().expect("autoscale lock poisoned");
            let mem = memory.entry(p.service.clone()).or_default();
            if mem.next_ms > now_ms {
                continue;
            }
            mem.next_ms = now_ms + p.interval.as_millis() as i64;
            drop(memory);
            let reading = match self.read(p, now_ms, true) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(service = %p.service, error = %e, "autoscale reading failed");
                    continue;
                }
            };
            let mut memory = self.memory.lock().expect("autoscale lock poisoned");
            let mem = memory.entry(p.service.clone()).or_default();
            let keep = p.scale_up_stabilization.max(p.scale_down_stabilization).as_millis() as i64;
            while mem.history.front().is_some_and(|(t, _)| now_ms - t > keep) {
                mem.history.pop_front();
            }
            if reading.current == 0 || !reading.value.is_finite() {
                continue;
            }
            let history: Vec<(i64, u32)> = mem.history.iter().copied().collect();
            let step = decide(p, &reading, &history, now_ms);
            mem.history.push_back((now_ms, reading.recommendation));
            if step.desired == reading.current {
                mem.held_noted = false;
                continue;
            }
            let held = !p.during_gates && self.gates.running_for(&p.service);
            if held && mem.held_noted {
                continue;
            }
            let same_way = |(cur, d, t): (u32, u32, i64)| {
                cur == reading.current && (d > cur) == (step.desired > cur) && now_ms - t < 300_000
            };
            if !held && mem.last_sent.is_some_and(same_way) {
                continue;
            }
            let (kind, outcome) = if held {
                ("scale_held", "recorded")
            } else {
                ("scale", if p.webhook.is_some() { "pending" } else { "recorded" })
            };
            let reason = if held {
                format!(
                    "would scale {} from {} to {}, but a rollout gate on it is running",
                    p.service, reading.current, step.desired
                )
            } else {
                format!("scale {} from {} to {}: {}", p.service, reading.current, step.desired, step.explanation)
            };
            let mut d = Decision {
                id: 0,
                time_ms: now_ms,
                kind: kind.into(),
                service: p.service.clone(),
                host: String::new(),
                container: String::new(),
                container_id: String::new(),
                reason,
                rule: serde_json::to_value(p).unwrap_or_default(),
                inputs: json!({"reading": reading, "history": history, "desired": step.desired, "explanation": step.explanation}),
                outcome: outcome.into(),
                detail: String::new(),
                settled_ms: None,
            };
            if held {
                mem.held_noted = true;
            } else {
                mem.last_sent = Some((reading.current, step.desired, now_ms));
            }
            drop(memory);
            self.decisions_total
                .get_or_create(&vec![("kind".into(), kind.into()), ("outcome".into(), outcome.into())])
                .inc();
            tracing::info!(service = %p.service, reason = %d.reason, "autoscale decision");
            self.store.mark_decision(&d);
            match self.store.record_decision(&d) {
                Ok(id) => d.id = id,
                Err(e) => tracing::error!(error = %e, "an autoscale decision could not be recorded"),
            }
            if !held && p.webhook.is_some() {
                out.push((p.clone(), d));
            }
        }
        out
    }

    /// POSTs a decision to the policy's webhook, retrying with backoff (1 s, 2 s, 4 s), and settles it.
    async fn deliver(&self, p: AutoscalePolicy, d: Decision) {
        let Some(url) = p.webhook.clone() else { return };
        let body = json!({
            "decision_id": d.id, "service": d.service, "time_ms": d.time_ms,
            "current_replicas": d.inputs["reading"]["current"], "desired_replicas": d.inputs["desired"],
            "metric": p.metric, "value": d.inputs["reading"]["value"], "target": p.target, "reason": d.reason,
        })
        .to_string();
        let signature = p.secret.as_deref().map(|s| sign(s, body.as_bytes()));
        let mut last_error = String::new();
        for attempt in 0..4u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_secs(1 << (attempt - 1))).await;
            }
            let mut req = self.http.post(&url).header("content-type", "application/json").body(body.clone());
            if let Some(sig) = &signature {
                req = req.header("x-lookout-signature", format!("sha256={sig}"));
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => {
                    return self.settle(
                        d.id,
                        "delivered",
                        &format!("{url} answered {} on attempt {}", r.status(), attempt + 1),
                    );
                }
                Ok(r) => last_error = format!("{url} answered {}", r.status()),
                Err(e) => last_error = format!("{url}: {e}"),
            }
        }
        tracing::warn!(decision = d.id, error = %last_error, "autoscale webhook not delivered after 4 attempts");
        self.settle(d.id, "not_delivered", &format!("4 attempts; last: {last_error}"));
    }

    fn settle(&self, id: i64, outcome: &str, detail: &str) {
        self.decisions_total
            .get_or_create(&vec![("kind".into(), "scale".into()), ("outcome".into(), outcome.into())])
            .inc();
        if let Err(e) = self.store.settle_decision(id, outcome, detail, crate::now_ms()) {
            tracing::error!(error = %e, "an autoscale outcome could not be recorded");
        }
    }

    /// Recomputes a recorded scale decision from the stored metrics at its time, with the
    /// recommendation history it had (health at the time is not stored, so the containers it left
    /// out for health are left out again by name).
    pub fn replay(&self, d: &Decision) -> Result<serde_json::Value, String> {
        let p: AutoscalePolicy = serde_json::from_value(d.rule.clone())
            .map_err(|e| format!("the decision's rule is not an autoscale policy: {e}"))?;
        let recorded: Reading = serde_json::from_value(d.inputs["reading"].clone())
            .map_err(|e| format!("the decision's reading does not parse: {e}"))?;
        let history: Vec<(i64, u32)> = serde_json::from_value(d.inputs["history"].clone()).unwrap_or_default();
        let mut now = self.read(&p, d.time_ms, false)?;
        let unhealthy: Vec<&String> = recorded
            .left_out
            .iter()
            .filter(|(_, why)| why == "starting" || why == "unhealthy")
            .map(|(n, _)| n)
            .collect();
        if !unhealthy.is_empty() {
            now.counted.retain(|(n, _)| !unhealthy.contains(&n));
            now.left_out = recorded.left_out.clone();
            now.value = now.counted.iter().map(|(_, v)| v).sum::<f64>() / now.counted.len().max(1) as f64;
            now.ratio = now.value / p.target;
            let (tu, td) = (p.tolerance_up.unwrap_or(p.tolerance), p.tolerance_down.unwrap_or(p.tolerance));
            now.recommendation = if now.ratio >= 1.0 - td && now.ratio <= 1.0 + tu {
                now.current
            } else {
                (now.current as f64 * now.ratio).ceil() as u32
            };
        }
        let step = decide(&p, &now, &history, d.time_ms);
        let recorded_desired = d.inputs["desired"].as_u64().unwrap_or(u64::MAX) as u32;
        let same = step.desired == recorded_desired
            && now.current == recorded.current
            && (now.value - recorded.value).abs() <= 1e-9 * recorded.value.abs().max(1.0);
        Ok(json!({
            "decision": d.id, "kind": d.kind, "same": same,
            "recorded": {"desired": recorded_desired, "reading": recorded},
            "replayed": {"desired": step.desired, "reading": now, "explanation": step.explanation},
        }))
    }

    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        if self.policies.is_empty() {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let me = self.clone();
            match tokio::task::spawn_blocking(move || me.tick(crate::now_ms() - crate::SETTLE_MS)).await {
                Ok(out) => {
                    for (p, d) in out {
                        let me = self.clone();
                        tokio::spawn(async move { me.deliver(p, d).await });
                    }
                }
                Err(e) => tracing::error!(error = %e, "autoscale evaluation failed"),
            }
        }
    }
}

/// HMAC-SHA256 of `body` with `secret`, in hex.
pub fn sign(secret: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
