//! The gate shell: a pipeline asks whether version V of service S is healthy enough to go on; each
//! gate reads its checks' data every analysis interval until its window ends or it fails, has
//! `decide::gate` judge it, and records every verdict it reaches with the evidence, for replay.

mod read;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::Recorder;
use crate::decide::gate::checks::{self, Evidence, Outcome, Verdict};
use crate::decide::gate::spec::{GateRequest, GatesConfig, Plan};
use crate::model::decision::{self, Decision, Kind, Subject};
use crate::model::Matcher;
use crate::query::promql::Engine;
use crate::store::Store;

/// A gate as the API shows it and the store keeps it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Gate {
    pub id: String,
    pub request: GateRequest,
    pub plan: Plan,
    pub started_ms: i64,
    /// `running` until the window ends or the gate fails, then `done`.
    pub running: bool,
    pub verdict: Verdict,
    pub reason: String,
    pub checks: Vec<Evidence>,
    pub evaluated_ms: Option<i64>,
    pub next_ms: i64,
    /// Each verdict the gate reached, with the decision that records it.
    pub history: Vec<Change>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Change {
    pub at_ms: i64,
    pub verdict: Verdict,
    pub reason: String,
    pub decision_id: i64,
}

impl Gate {
    pub fn window_end_ms(&self) -> i64 {
        self.started_ms + self.plan.window_ms
    }

    pub fn deadline_ms(&self) -> i64 {
        self.started_ms + self.plan.deadline_ms
    }

    /// The answer in the shape the API promises.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "id": self.id,
            "service": self.plan.service,
            "version": self.plan.version,
            "baseline_version": self.plan.baseline,
            "baseline_reason": self.plan.baseline_reason,
            "stage": self.plan.stage,
            "status": if self.running { "running" } else { "done" },
            "verdict": self.verdict,
            "reason": self.reason,
            "checks": self.checks,
            "started": rfc3339(self.started_ms),
            "window_end": rfc3339(self.window_end_ms()),
            "deadline": rfc3339(self.deadline_ms()),
            "evaluated": self.evaluated_ms.map(rfc3339),
            "interval_seconds": self.plan.interval_ms as f64 / 1e3,
            "history": self.history.iter().map(|c| json!({
                "time": rfc3339(c.at_ms), "verdict": c.verdict, "reason": c.reason, "decision_id": c.decision_id,
            })).collect::<Vec<_>>(),
        })
    }
}

fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Why a gate could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// 400: the request is wrong; the message names the field.
    #[error("{0}")]
    Bad(String),
    /// 404: the service or version is not known; the message says what is.
    #[error("{0}")]
    Unknown(String),
    #[error("{0}")]
    Store(String),
}

pub struct Gates {
    cfg: GatesConfig,
    store: Arc<Store>,
    engine: Arc<Engine>,
    gates: Mutex<BTreeMap<String, Gate>>,
    next_id: AtomicU64,
    recorder: Recorder,
    /// Woken when a gate is started, so that the loop picks it up.
    pub started: tokio::sync::Notify,
}

impl Gates {
    /// Loads the gates the store kept; running ones carry on where they were.
    pub fn new(cfg: GatesConfig, engine: Arc<Engine>, recorder: Recorder) -> Gates {
        let store = recorder.store().clone();
        let mut gates = BTreeMap::new();
        match store.gates() {
            Ok(list) => {
                for body in list {
                    match serde_json::from_str::<Gate>(&body) {
                        Ok(g) => {
                            gates.insert(g.id.clone(), g);
                        }
                        Err(e) => tracing::warn!(error = %e, "a saved gate does not parse; left out"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "saved gates could not be read"),
        }
        let next =
            gates.keys().filter_map(|k| k.strip_prefix("g").and_then(|n| n.parse::<u64>().ok())).max().unwrap_or(0);
        Gates {
            cfg,
            store,
            engine,
            gates: Mutex::new(gates),
            next_id: AtomicU64::new(next + 1),
            recorder,
            started: tokio::sync::Notify::new(),
        }
    }

    /// Starts a gate at `now_ms` (blocking: it reads the store to know the versions).
    pub fn start(&self, req: GateRequest, now_ms: i64) -> Result<Gate, StartError> {
        // A request that cannot be planned is refused as such (400) before the service is looked up.
        self.cfg.plan(&req, None, String::new(), &check_query).map_err(StartError::Bad)?;
        let versions = self.versions(&req.service, now_ms)?;
        if versions.is_empty() {
            let services = self.store.label_values("service");
            return Err(StartError::Unknown(format!(
                "service {:?} has no containers lookout has seen; services: {}",
                req.service,
                list(&services)
            )));
        }
        let known = |v: &str| versions.iter().any(|(name, _)| name == v);
        let names: Vec<String> = versions.iter().map(|(v, n)| format!("{v} ({n} containers)")).collect();
        if !known(&req.version) {
            return Err(StartError::Unknown(format!(
                "version {:?} of service {:?} has not been seen; versions: {}",
                req.version,
                req.service,
                list(&names)
            )));
        }
        let (baseline, why) = match &req.baseline_version {
            Some(b) if !known(b) => {
                return Err(StartError::Unknown(format!(
                    "baseline_version {b:?} of service {:?} has not been seen; versions: {}",
                    req.service,
                    list(&names)
                )))
            }
            Some(b) if *b == req.version => {
                return Err(StartError::Bad("baseline_version: must differ from version".into()))
            }
            Some(b) => (Some(b.clone()), "named in the request".to_string()),
            None => match versions.iter().filter(|(v, _)| *v != req.version).max_by_key(|(_, n)| *n) {
                Some((v, n)) => (Some(v.clone()), format!("the other running version with the most containers ({n})")),
                None => (None, "no other version is running: checks compare against absolute limits".to_string()),
            },
        };
        let plan = self.cfg.plan(&req, baseline, why, &check_query).map_err(StartError::Bad)?;
        let id = format!("g{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let gate = Gate {
            id: id.clone(),
            request: req,
            started_ms: now_ms,
            running: true,
            verdict: Verdict::Wait,
            reason: "not evaluated yet: the first look comes after one interval".into(),
            checks: Vec::new(),
            evaluated_ms: None,
            next_ms: now_ms + plan.interval_ms,
            history: Vec::new(),
            plan,
        };
        self.save(&gate, now_ms);
        self.gates.lock().expect("gates lock poisoned").insert(id, gate.clone());
        self.started.notify_one();
        Ok(gate)
    }

    /// Versions of a service seen in the last 10 minutes, with how many containers each.
    fn versions(&self, service: &str, now_ms: i64) -> Result<Vec<(String, usize)>, StartError> {
        let series = recent_containers(&self.store, service, now_ms).map_err(StartError::Store)?;
        let mut by: BTreeMap<String, usize> = BTreeMap::new();
        for s in series {
            *by.entry(s.labels.get("version").unwrap_or("").to_string()).or_default() += 1;
        }
        Ok(by.into_iter().collect())
    }

    pub fn get(&self, id: &str) -> Option<Gate> {
        self.gates.lock().expect("gates lock poisoned").get(id).cloned()
    }

    /// Every gate of a release, oldest first.
    pub fn of_release(&self, service: &str, version: &str) -> Vec<Gate> {
        let gates = self.gates.lock().expect("gates lock poisoned");
        let mut v: Vec<Gate> =
            gates.values().filter(|g| g.plan.service == service && g.plan.version == version).cloned().collect();
        v.sort_by_key(|g| g.started_ms);
        v
    }

    /// Gates of a service, newest first.
    pub fn of_service(&self, service: &str) -> Vec<Gate> {
        let gates = self.gates.lock().expect("gates lock poisoned");
        let mut v: Vec<Gate> = gates.values().filter(|g| g.plan.service == service).cloned().collect();
        v.sort_by_key(|g| std::cmp::Reverse(g.started_ms));
        v
    }

    pub fn running_for(&self, service: &str) -> bool {
        self.gates.lock().expect("gates lock poisoned").values().any(|g| g.running && g.plan.service == service)
    }

    /// Evaluates every running gate that is due at `now_ms` (blocking: reads the store).
    pub fn tick(&self, now_ms: i64) {
        let due: Vec<Gate> = self
            .gates
            .lock()
            .expect("gates lock poisoned")
            .values()
            .filter(|g| g.running && g.next_ms <= now_ms)
            .cloned()
            .collect();
        for mut g in due {
            self.evaluate(&mut g, now_ms);
            self.save(&g, now_ms);
            self.gates.lock().expect("gates lock poisoned").insert(g.id.clone(), g);
        }
    }

    /// One look at a gate: its checks over what has come in since it started, and what follows.
    fn evaluate(&self, g: &mut Gate, now_ms: i64) {
        let window_end = g.window_end_ms();
        let final_look = now_ms >= g.deadline_ms();
        // Data up to the window's end; a gate still waiting past it keeps reading to its deadline.
        let end_ms = if now_ms > window_end && g.verdict == Verdict::Wait { now_ms } else { now_ms.min(window_end) };
        let outcome = self.evaluate_between(&g.plan, g.started_ms, end_ms, final_look);
        let was = g.verdict;
        g.verdict = outcome.verdict;
        g.reason = outcome.reason.clone();
        g.checks = outcome.checks.clone();
        g.evaluated_ms = Some(now_ms);
        g.next_ms = now_ms + g.plan.interval_ms;
        let done = match outcome.verdict {
            Verdict::Fail => true,
            Verdict::Pass => now_ms >= window_end,
            _ => final_look,
        };
        if outcome.verdict != was || (done && outcome.verdict == Verdict::Pass) {
            let id = self.record(g, &outcome, end_ms, final_look, now_ms, done);
            g.history.push(Change { at_ms: now_ms, verdict: outcome.verdict, reason: outcome.reason, decision_id: id });
        }
        if done {
            g.running = false;
        }
    }

    fn evaluate_between(&self, plan: &Plan, start_ms: i64, end_ms: i64, final_look: bool) -> Outcome {
        let readings = read::readings(&self.store, &self.engine, plan, start_ms, end_ms);
        checks::evaluate(plan, start_ms, readings, final_look)
    }

    fn record(&self, g: &Gate, outcome: &Outcome, end_ms: i64, final_look: bool, now_ms: i64, done: bool) -> i64 {
        let outcome_name = match outcome.verdict {
            Verdict::Pass => decision::Outcome::Pass,
            Verdict::Fail => decision::Outcome::Fail,
            Verdict::Wait | Verdict::Skip => decision::Outcome::Wait,
        };
        let release = Subject::Release { version: g.plan.version.clone(), gate: g.id.clone() };
        let mut d = Decision::new(now_ms, Kind::Gate, &g.plan.service, release, outcome.reason.clone(), outcome_name);
        d.rule = serde_json::to_value(&g.plan).unwrap_or_default();
        d.inputs = json!({
            "gate": g.id, "start_ms": g.started_ms, "end_ms": end_ms, "final_look": final_look,
            "window_done": done, "checks": outcome.checks,
        });
        d.detail = format!(
            "{} {} against {}",
            g.plan.service,
            g.plan.version,
            g.plan.baseline.as_deref().unwrap_or("absolute limits")
        );
        self.recorder.record(&d).unwrap_or(0)
    }

    fn save(&self, g: &Gate, now_ms: i64) {
        let body = match serde_json::to_string(g) {
            Ok(b) => b,
            Err(e) => return tracing::error!(error = %e, "a gate could not be serialized"),
        };
        if let Err(e) = self.store.save_gate(&g.id, &g.plan.service, &g.plan.version, &body, now_ms) {
            tracing::error!(error = %e, gate = %g.id, "a gate could not be saved");
        }
    }

    /// Recomputes a recorded gate verdict from the stored data: same plan, same times.
    pub fn replay(&self, d: &Decision) -> Result<serde_json::Value, String> {
        let plan: Plan = serde_json::from_value(d.rule.clone())
            .map_err(|e| format!("the decision's rule is not a gate plan: {e}"))?;
        let num = |k: &str| d.inputs[k].as_i64().ok_or_else(|| format!("the decision's inputs have no {k}"));
        let (start, end) = (num("start_ms")?, num("end_ms")?);
        let final_look = d.inputs["final_look"].as_bool().unwrap_or(false);
        let recorded: Vec<Evidence> = serde_json::from_value(d.inputs["checks"].clone())
            .map_err(|e| format!("the decision's checks do not parse: {e}"))?;
        let now = self.evaluate_between(&plan, start, end, final_look);
        let mut differences = Vec::new();
        for (a, b) in recorded.iter().zip(&now.checks) {
            if a.verdict != b.verdict
                || !close(a.canary, b.canary)
                || !close(a.baseline, b.baseline)
                || a.samples != b.samples
            {
                differences.push(json!({"check": a.name, "recorded": a, "replayed": b}));
            }
        }
        let verdict_name = serde_json::to_value(now.verdict).unwrap_or_default();
        let same = differences.is_empty() && verdict_name.as_str() == Some(d.outcome.as_str());
        Ok(json!({
            "decision": d.id, "kind": d.kind, "same": same,
            "recorded": {"verdict": d.outcome, "reason": d.reason, "checks": recorded},
            "replayed": {"verdict": now.verdict, "reason": now.reason, "checks": now.checks},
            "differences": differences,
        }))
    }

    /// Evaluates due gates every second (and at once when one starts) until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let lag = crate::clock::SETTLE_MS;
        super::every_second("gate evaluation", self, shutdown, Some(|g: &Self| &g.started), lag, Self::tick, |_| {})
            .await
    }
}

/// The `container_last_seen` series of a service's containers seen in the last 10 minutes: what
/// gates and `lookout status` know of its versions.
pub fn recent_containers(store: &Store, service: &str, now_ms: i64) -> Result<Vec<crate::model::SeriesData>, String> {
    let m = [Matcher::equal("__name__", "container_last_seen"), Matcher::equal("service", service)];
    store.select(&m, now_ms - 600_000, now_ms).map_err(|e| e.to_string())
}

/// The engine's check of a PromQL text, for the rules' validation.
pub fn check_query(text: &str) -> Result<(), String> {
    crate::query::promql::check_promql(text).map_err(|e| e.to_string())
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()) || (x.is_nan() && y.is_nan()),
        (None, None) => true,
        _ => false,
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests;
