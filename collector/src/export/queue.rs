//! One target's queue: reads the export log from the target's saved position, has its encoder
//! turn the rows into requests split into shards (each series or stream in one shard, so each
//! keeps its order), sends the shards in parallel, and saves the position once all are through.
//! Also trims what every target has sent, and keeps the lag and counters current.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use super::http::{Client, Sent};
use super::{QueueConfig, Statuses, TargetStatus};
use crate::store::export::{ExportKind, ExportRow};
use crate::store::Store;

/// One request ready to send: its body and what it carries.
pub struct Outgoing {
    pub body: Vec<u8>,
    /// Samples or lines in it.
    pub items: u64,
    /// The first series or stream in it, for the log when a receiver refuses it.
    pub first: String,
}

/// Turns export-log rows into requests, shard by shard.
pub trait Encoder: Send {
    /// Requests for `rows`, as at most `shards` lists: the lists go out in parallel, the requests
    /// of one list one after another. Also returns how many items the target's selector left out.
    fn encode(&mut self, store: &Store, rows: &[ExportRow], shards: usize) -> (Vec<Vec<Outgoing>>, u64);
}

/// `lookout_collector_export_*`.
#[derive(Clone, Default)]
pub struct ExportMetrics {
    /// Samples by target and outcome: `sent`, `refused` (a 4xx). What a target's selector leaves
    /// out is not counted.
    pub samples: Family<Vec<(String, String)>, Counter>,
    pub lines: Family<Vec<(String, String)>, Counter>,
    pub retries: Family<Vec<(String, String)>, Counter>,
    pub lag_seconds: Family<Vec<(String, String)>, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub lag_bytes: Family<Vec<(String, String)>, Gauge>,
}

impl ExportMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = ExportMetrics::default();
        let r = registry.sub_registry_with_prefix("lookout_collector_export");
        r.register(
            "samples",
            "Samples forwarded by remote-write, by target and outcome (sent, refused)",
            m.samples.clone(),
        );
        r.register("lines", "Log lines forwarded by Loki push, by target and outcome (sent, refused)", m.lines.clone());
        r.register(
            "retries",
            "Requests sent again after a 5xx, a 429 or a network error, by target",
            m.retries.clone(),
        );
        r.register("lag_seconds", "Age of the oldest committed batch a target has not received", m.lag_seconds.clone());
        r.register("lag_bytes", "Bytes of the export log a target has not received", m.lag_bytes.clone());
        m
    }
}

/// The positions of every target, so that the export log is trimmed to what all have sent.
#[derive(Default)]
pub struct Positions {
    by_kind: std::sync::Mutex<HashMap<(bool, String), i64>>,
}

impl Positions {
    fn set(&self, kind: ExportKind, target: &str, position: i64) {
        self.by_kind
            .lock()
            .expect("positions lock poisoned")
            .insert((kind == ExportKind::Samples, target.into()), position);
    }

    fn min(&self, kind: ExportKind) -> Option<i64> {
        let p = self.by_kind.lock().expect("positions lock poisoned");
        p.iter().filter(|((k, _), _)| *k == (kind == ExportKind::Samples)).map(|(_, v)| *v).min()
    }
}

pub struct Queue<E: Encoder> {
    pub name: String,
    pub kind: ExportKind,
    pub client: Client,
    pub config: QueueConfig,
    pub encoder: E,
    pub store: Arc<Store>,
    pub metrics: ExportMetrics,
    pub statuses: Statuses,
    pub positions: Arc<Positions>,
    /// The export log's bound per kind, in bytes (0: none).
    pub max_bytes: u64,
}

/// How long an idle queue waits before it looks at the export log again.
const IDLE_POLL: Duration = Duration::from_millis(100);

impl<E: Encoder + 'static> Queue<E> {
    /// Runs until `stop`; a round in flight when it comes is given up unsaved (sent again next
    /// start: a receiver takes a sample it has as a duplicate).
    pub async fn run(mut self, stop: CancellationToken) {
        let label = vec![("target".to_string(), self.name.clone())];
        let kind_name = if self.kind == ExportKind::Samples { "remote_write" } else { "loki" };
        let slot = {
            let mut s = self.statuses.lock().expect("status lock poisoned");
            s.push(TargetStatus {
                name: self.name.clone(),
                kind: kind_name,
                url: self.client.url.clone(),
                ..Default::default()
            });
            s.len() - 1
        };
        let mut position = loop {
            match self.store_call(|st, k, n| st.export_position(k, n)).await {
                Ok(p) => break p,
                Err(e) => {
                    tracing::warn!(target_name = %self.name, error = %e, "export: cannot read the saved position; trying again in 5 s");
                    tokio::select! { _ = tokio::time::sleep(Duration::from_secs(5)) => {}, _ = stop.cancelled() => return }
                }
            }
        };
        self.positions.set(self.kind, &self.name, position);
        // The lag is looked at every second on its own task, so that it grows while a round waits
        // for a receiver that is away.
        let delivered = Arc::new(std::sync::atomic::AtomicI64::new(position));
        tokio::spawn(lag_task(
            self.store.clone(),
            self.kind,
            delivered.clone(),
            self.metrics.clone(),
            label.clone(),
            self.statuses.clone(),
            slot,
            stop.clone(),
        ));
        let mut refused_logged = false;
        let mut last_trim = tokio::time::Instant::now();
        // Read about as much as one round sends: every shard one full request (16 bytes a sample,
        // 100 a line in the export log, roughly).
        let per_item = if self.kind == ExportKind::Samples { 16 } else { 100 };
        let read_bytes = (self.config.max_per_send * self.config.max_shards * per_item).max(64 << 10);
        loop {
            if stop.is_cancelled() {
                return;
            }
            if last_trim.elapsed() >= Duration::from_secs(5) {
                self.trim().await;
                last_trim = tokio::time::Instant::now();
            }
            let store = self.store.clone();
            let kind = self.kind;
            let rows = match tokio::task::spawn_blocking(move || store.read_export(kind, position, read_bytes)).await {
                Ok(Ok(rows)) => rows,
                Ok(Err(e)) => {
                    tracing::warn!(target_name = %self.name, error = %e, "export: cannot read the export log; trying again in 5 s");
                    tokio::select! { _ = tokio::time::sleep(Duration::from_secs(5)) => {}, _ = stop.cancelled() => return }
                    continue;
                }
                Err(_) => return,
            };
            let Some(last) = rows.last().map(|r| r.id) else {
                tokio::select! { _ = tokio::time::sleep(IDLE_POLL) => {}, _ = stop.cancelled() => return }
                continue;
            };
            if rows[0].id > position + 1 {
                tracing::warn!(
                    target_name = %self.name,
                    batches = rows[0].id - position - 1,
                    "export: batches this target had not received were dropped from the export log (over [export] max_mib); they are lost for it"
                );
            }
            let (shards, _) = self.encoder.encode(&self.store, &rows, self.config.max_shards);
            drop(rows);
            let outcomes = futures::future::join_all(shards.into_iter().map(|shard| {
                let client = self.client.clone();
                let stop = stop.clone();
                let metrics = self.metrics.clone();
                let label = label.clone();
                let statuses = self.statuses.clone();
                let backoff = (self.config.min_backoff, self.config.max_backoff);
                async move {
                    let mut results = Vec::with_capacity(shard.len());
                    for req in shard {
                        let (items, first) = (req.items, req.first);
                        let sent = client
                            .send(req.body, backoff, &stop, |why| {
                                metrics.retries.get_or_create(&label).inc();
                                let mut s = statuses.lock().expect("status lock poisoned");
                                s[slot].retries += 1;
                                s[slot].last_error = Some(why.to_string());
                            })
                            .await;
                        match sent {
                            None => return None,
                            Some(s) => results.push((s, items, first)),
                        }
                    }
                    Some(results)
                }
            }))
            .await;
            if outcomes.iter().any(Option::is_none) {
                return; // stopping
            }
            let (mut sent, mut refused) = (0u64, 0u64);
            for (outcome, items, first) in outcomes.into_iter().flatten().flatten() {
                match outcome {
                    Sent::Delivered => sent += items,
                    Sent::Refused(answer) => {
                        refused += items;
                        if !refused_logged {
                            refused_logged = true;
                            tracing::warn!(target_name = %self.name, first_series = %first, answer = %answer, items,
                                "export: the receiver refused a request for good (4xx); its data is dropped and counted as refused (said once)");
                        } else {
                            tracing::debug!(target_name = %self.name, first_series = %first, answer = %answer, "export: request refused");
                        }
                    }
                }
            }
            let counter = if self.kind == ExportKind::Samples { &self.metrics.samples } else { &self.metrics.lines };
            let with = |outcome: &str| {
                let mut l = label.clone();
                l.push(("outcome".to_string(), outcome.to_string()));
                l
            };
            counter.get_or_create(&with("sent")).inc_by(sent);
            if refused > 0 {
                counter.get_or_create(&with("refused")).inc_by(refused);
            }
            {
                let mut s = self.statuses.lock().expect("status lock poisoned");
                s[slot].sent += sent;
                s[slot].refused += refused;
                s[slot].position = last;
                s[slot].last_error = None;
            }
            position = last;
            delivered.store(position, std::sync::atomic::Ordering::Relaxed);
            self.positions.set(self.kind, &self.name, position);
            if let Err(e) = self.store_call(move |st, k, n| st.save_export_position(k, n, last)).await {
                tracing::warn!(target_name = %self.name, error = %e, "export: cannot save the position; a restart sends this round again");
            }
        }
    }

    async fn store_call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store, ExportKind, &str) -> Result<T, crate::store::StoreError> + Send + 'static,
    ) -> Result<T, crate::store::StoreError> {
        let (store, kind, name) = (self.store.clone(), self.kind, self.name.clone());
        tokio::task::spawn_blocking(move || f(&store, kind, &name)).await.expect("export store call panicked")
    }

    /// Deletes what every target of this kind has sent, and beyond the bound the oldest rest.
    async fn trim(&self) {
        let Some(upto) = self.positions.min(self.kind) else { return };
        let max_bytes = self.max_bytes;
        match self.store_call(move |st, k, _| st.trim_export(k, upto, max_bytes)).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(batches = n, max_bytes,
                "export: the export log is over its bound ([export] max_mib); its oldest batches, not yet sent to every target, were dropped"),
            Err(e) => tracing::warn!(target_name = %self.name, error = %e, "export: trimming the export log failed"),
        }
    }
}

/// Every second until `stop`: what the target has not received after `delivered`, as metrics and status.
#[allow(clippy::too_many_arguments)]
async fn lag_task(
    store: Arc<Store>,
    kind: ExportKind,
    delivered: Arc<std::sync::atomic::AtomicI64>,
    metrics: ExportMetrics,
    label: Vec<(String, String)>,
    statuses: Statuses,
    slot: usize,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let position = delivered.load(std::sync::atomic::Ordering::Relaxed);
        let st = store.clone();
        let Ok(Ok(lag)) = tokio::task::spawn_blocking(move || st.export_lag(kind, position)).await else { continue };
        let seconds = lag.oldest_ms.map_or(0.0, |t| ((crate::clock::now_ms() - t).max(0) as f64) / 1000.0);
        metrics.lag_seconds.get_or_create(&label).set(seconds);
        metrics.lag_bytes.get_or_create(&label).set(lag.bytes as i64);
        let mut s = statuses.lock().expect("status lock poisoned");
        s[slot].lag_seconds = seconds;
        s[slot].lag_bytes = lag.bytes;
        s[slot].position = position;
    }
}
