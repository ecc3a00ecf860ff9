//! The autoscale shell: for every due `[[autoscale]]` policy, reads the service's replicas and
//! their use of their limits (or the policy's PromQL value) from the store as of `now - SETTLE_MS`
//! and health from the board, asks `decide::scale`, records, and hands pending decisions to the
//! webhook in `export`; replays a recorded decision over the stored data.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::gate::Gates;
use super::Recorder;
use crate::decide::scale::{self, AutoscalePolicy, Memory, MetricKind, Observed, Reading};
use crate::export::webhook::Webhook;
use crate::health::HealthBoard;
use crate::model::decision::{Decision, Kind, Outcome};
use crate::model::Matcher;
use crate::query::promql::{Engine, Value};

pub struct Autoscaler {
    policies: Vec<AutoscalePolicy>,
    engine: Arc<Engine>,
    board: Arc<HealthBoard>,
    gates: Arc<Gates>,
    memory: Mutex<HashMap<String, Memory>>,
    recorder: Recorder,
    webhook: Webhook,
}

impl Autoscaler {
    pub fn new(
        policies: Vec<AutoscalePolicy>,
        engine: Arc<Engine>,
        board: Arc<HealthBoard>,
        gates: Arc<Gates>,
        recorder: Recorder,
    ) -> Autoscaler {
        Autoscaler { policies, engine, board, gates, memory: Mutex::default(), recorder, webhook: Webhook::default() }
    }

    /// Reads a service's replicas and their metric at `now_ms` from the store and (with
    /// `live_health`; not in a replay) the health board, into the rule's reading.
    pub fn read(&self, p: &AutoscalePolicy, now_ms: i64, live_health: bool) -> Result<Reading, String> {
        let store = self.recorder.store();
        let seen_since = now_ms - (2 * p.interval.as_millis() as i64).max(30_000);
        let m = |name: &str| [Matcher::equal("__name__", name), Matcher::equal("service", &p.service)];
        let select = |name: &str, from: i64| store.select(&m(name), from, now_ms).map_err(|e| e.to_string());
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
        let mut o = Observed { seen, health, ..Default::default() };
        match p.metric {
            MetricKind::Cpu => {
                let (quota, period) = (last("container_spec_cpu_quota")?, last("container_spec_cpu_period")?);
                let window = p.rate_window.as_millis() as i64;
                for s in select("container_cpu_usage_seconds_total", now_ms - window)? {
                    let Some(id) = s.labels.get("container_id") else { continue };
                    let (ts, vs) = (&s.samples.ts, &s.samples.values);
                    let cores = match (quota.get(id), period.get(id)) {
                        (Some(q), Some(pd)) if *q > 0.0 && *pd > 0.0 => q / pd,
                        _ => continue,
                    };
                    if ts.len() >= 2 && ts[ts.len() - 1] > ts[0] && vs[vs.len() - 1] >= vs[0] {
                        let rate = (vs[vs.len() - 1] - vs[0]) / ((ts[ts.len() - 1] - ts[0]) as f64 / 1e3);
                        o.per_container.insert(id.to_string(), rate / cores);
                    }
                }
            }
            MetricKind::Memory => {
                let limit = last("container_spec_memory_limit_bytes")?;
                o.per_container = last("container_memory_working_set_bytes")?
                    .into_iter()
                    .filter_map(|(id, ws)| limit.get(&id).filter(|l| **l > 0.0 && **l < 1e18).map(|l| (id, ws / l)))
                    .collect();
            }
            MetricKind::Query => {
                let q = p.query.as_deref().unwrap_or("").replace("$service", &p.service);
                let (engine, store) = (&self.engine, &**store);
                let found = crate::query::runner::on_query_stack(|| engine.instant(store, &q, now_ms));
                o.query_value = match found.map_err(|e| e.to_string())? {
                    Value::Scalar { v, .. } => Some(v),
                    Value::Vector(s) if !s.is_empty() => Some(s.iter().map(|x| x.v).sum::<f64>() / s.len() as f64),
                    _ => None,
                };
            }
        }
        Ok(scale::reading(p, &o))
    }

    /// Evaluates every policy that is due (blocking: reads the store); returns decisions to deliver.
    pub fn tick(&self, now_ms: i64) -> Vec<(AutoscalePolicy, Decision)> {
        let mut out = Vec::new();
        for p in &self.policies {
            if !self
                .memory
                .lock()
                .expect("autoscale lock poisoned")
                .entry(p.service.clone())
                .or_default()
                .due(p, now_ms)
            {
                continue;
            }
            let reading = match self.read(p, now_ms, true) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(service = %p.service, error = %e, "autoscale reading failed");
                    continue;
                }
            };
            let gate_running = self.gates.running_for(&p.service);
            let decided = {
                let mut memory = self.memory.lock().expect("autoscale lock poisoned");
                scale::look(p, &reading, gate_running, memory.entry(p.service.clone()).or_default(), now_ms)
            };
            let Some(mut d) = decided else { continue };
            if let Some(id) = self.recorder.record(&d) {
                d.id = id;
            }
            if d.kind == Kind::Scale && p.webhook.is_some() {
                out.push((p.clone(), d));
            }
        }
        out
    }

    /// POSTs a decision to the policy's webhook and settles it by how that went.
    pub async fn deliver(&self, p: AutoscalePolicy, d: Decision) {
        let Some(url) = p.webhook.as_deref() else { return };
        let body = json!({
            "decision_id": d.id, "service": d.service, "time_ms": d.time_ms,
            "current_replicas": d.inputs["reading"]["current"], "desired_replicas": d.inputs["desired"],
            "metric": p.metric, "value": d.inputs["reading"]["value"], "target": p.target, "reason": d.reason,
        })
        .to_string();
        let now = crate::clock::now_ms;
        match self.webhook.post(url, p.secret.as_deref(), body).await {
            Ok(detail) => self.recorder.settle(d.id, Kind::Scale, Outcome::Delivered, &detail, now()),
            Err(detail) => {
                tracing::warn!(decision = d.id, error = %detail, "autoscale webhook not delivered after 4 attempts");
                self.recorder.settle(d.id, Kind::Scale, Outcome::NotDelivered, &detail, now());
            }
        }
    }

    /// Recomputes a recorded scale decision from the stored metrics at its time, with the
    /// recommendation history it had.
    pub fn replay(&self, d: &Decision) -> Result<serde_json::Value, String> {
        let p: AutoscalePolicy = serde_json::from_value(d.rule.clone())
            .map_err(|e| format!("the decision's rule is not an autoscale policy: {e}"))?;
        let recorded: Reading = serde_json::from_value(d.inputs["reading"].clone())
            .map_err(|e| format!("the decision's reading does not parse: {e}"))?;
        let history: Vec<(i64, u32)> = serde_json::from_value(d.inputs["history"].clone()).unwrap_or_default();
        let now = scale::as_recorded(&p, self.read(&p, d.time_ms, false)?, &recorded);
        let step = scale::decide(&p, &now, &history, d.time_ms);
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
        let me = self.clone();
        let deliver = move |out: Vec<(AutoscalePolicy, Decision)>| {
            for (p, d) in out {
                let me = me.clone();
                tokio::spawn(async move { me.deliver(p, d).await });
            }
        };
        let lag = crate::clock::SETTLE_MS;
        super::every_second("autoscale evaluation", self, shutdown, None, lag, Self::tick, deliver).await
    }
}

#[cfg(test)]
mod tests;
