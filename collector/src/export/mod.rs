//! Outbound delivery to systems outside lookout: the autoscale webhook (`webhook`), and the
//! forwarding of every committed sample and log line to the engines a site already runs:
//! Prometheus remote-write (`remote_write`) and Loki push (`loki`), each target read from the
//! store's export log at its own durable position by `queue`, over `http`'s client.

pub mod http;
pub mod loki;
pub mod queue;
pub mod remote_write;
pub mod webhook;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::Matcher;

/// `[export]` in collector.toml.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// `[[export.remote_write]]`: Prometheus, VictoriaMetrics, Mimir, Thanos receive.
    #[serde(default)]
    pub remote_write: Vec<TargetConfig>,
    /// `[[export.loki]]`: Loki's push API.
    #[serde(default)]
    pub loki: Vec<TargetConfig>,
    /// The export log's bound on disk, per kind (samples, logs), in MiB: past it the oldest batches
    /// are dropped even if a target has not sent them (a receiver away for too long). 0: no bound.
    #[serde(default = "default_max_mib")]
    pub max_mib: u64,
}

fn default_max_mib() -> u64 {
    2048
}

/// One target: where to send, how to authenticate, what to send, and how hard to push.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Names the target in metrics, logs and its saved position; by default the URL.
    #[serde(default)]
    pub name: Option<String>,
    pub url: String,
    /// A file holding the bearer token (`Authorization: Bearer ...`).
    #[serde(default)]
    pub bearer_token_file: Option<std::path::PathBuf>,
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// Extra request headers (`X-Scope-OrgID` for Mimir's and Loki's tenants).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub tls: Option<http::ClientTls>,
    /// What to forward: series selectors for remote-write (any matches), a stream selector for Loki.
    /// All when empty.
    #[serde(default, rename = "match")]
    pub selectors: Vec<String>,
    /// Labels added to everything sent (a site's name, as Prometheus's `external_labels`); a label
    /// the data has already keeps its own value.
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    /// Loki only: `protobuf` (snappy, the default) or `json`.
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub queue: QueueConfig,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    pub password_file: std::path::PathBuf,
}

/// How a target's queue sends, after Prometheus's `queue_config`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Samples (remote-write) or lines (Loki) in one request.
    pub max_per_send: usize,
    /// Requests in flight at once; series (streams) are split among them by hash, so each keeps its order.
    pub max_shards: usize,
    #[serde(with = "humantime_serde")]
    pub min_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_per_send: 2000,
            max_shards: 8,
            min_backoff: Duration::from_millis(30),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl TargetConfig {
    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.url.clone())
    }
}

impl ExportConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (kind, targets) in [("remote_write", &self.remote_write), ("loki", &self.loki)] {
            for (i, t) in targets.iter().enumerate() {
                let key = format!("export.{kind}[{i}]");
                match reqwest::Url::parse(&t.url) {
                    Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                    Ok(u) => problems.push(format!("{key}.url: scheme {:?}: use http or https", u.scheme())),
                    Err(e) => problems.push(format!("{key}.url: {:?}: {e}", t.url)),
                }
                if targets[..i].iter().any(|o| o.name() == t.name()) {
                    problems.push(format!("{key}.name: {:?} names another target already", t.name()));
                }
                if t.bearer_token_file.is_some() && t.basic_auth.is_some() {
                    problems.push(format!("{key}: bearer_token_file and basic_auth exclude each other"));
                }
                for (j, s) in t.selectors.iter().enumerate() {
                    let parsed = if kind == "loki" { stream_selector(s) } else { series_selector(s) };
                    if let Err(e) = parsed {
                        problems.push(format!("{key}.match[{j}]: {e}"));
                    }
                }
                for name in t.external_labels.keys() {
                    if !crate::ingest::valid_label_name(name) {
                        problems.push(format!("{key}.external_labels: {name:?} is not a valid label name"));
                    }
                }
                match (kind, t.format.as_deref()) {
                    (_, None) | ("loki", Some("protobuf")) | ("loki", Some("json")) => {}
                    ("loki", Some(f)) => problems.push(format!("{key}.format: {f:?}: use protobuf or json")),
                    (_, Some(_)) => problems.push(format!("{key}.format: remote-write is protobuf only")),
                }
                if t.queue.max_per_send == 0 || t.queue.max_shards == 0 {
                    problems.push(format!("{key}.queue: max_per_send and max_shards must be at least 1"));
                }
                if t.queue.min_backoff.is_zero() || t.queue.max_backoff < t.queue.min_backoff {
                    problems.push(format!("{key}.queue: min_backoff must be above 0 and at most max_backoff"));
                }
            }
        }
        problems
    }
}

/// A PromQL series selector (`up`, `{job=~"node|cadvisor"}`) as matchers.
pub fn series_selector(text: &str) -> Result<Vec<Matcher>, String> {
    use promql_parser::parser::Expr;
    let expr = promql_parser::parser::parse(text).map_err(|e| format!("{text:?}: {e}"))?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(format!("{text:?} is not a series selector"));
    };
    let mut out = Vec::new();
    if let Some(name) = &vs.name {
        out.push(Matcher::equal(crate::model::METRIC_NAME, name));
    }
    for m in vs.matchers.matchers.iter() {
        out.push(Matcher::new(&m.name, &m.op.to_string(), &m.value).map_err(|e| format!("{text:?}: {e}"))?);
    }
    Ok(out)
}

/// A LogQL stream selector (`{service="shop"}`) as matchers.
pub fn stream_selector(text: &str) -> Result<Vec<Matcher>, String> {
    let q = crate::query::logql::parse(text).map_err(|e| format!("{text:?}: {e}"))?;
    if !q.stages.is_empty() {
        return Err(format!("{text:?}: a stream selector only, without line filters or parsers"));
    }
    Ok(q.matchers)
}

/// What `/api/v1/status/export` and `lookout status` show of one target.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TargetStatus {
    pub name: String,
    pub kind: &'static str,
    pub url: String,
    /// The last export-log row delivered.
    pub position: i64,
    pub lag_seconds: f64,
    pub lag_bytes: u64,
    pub sent: u64,
    pub refused: u64,
    pub retries: u64,
    pub last_error: Option<String>,
}

/// Every target's status, shared by the queues (writing) and the API (reading).
pub type Statuses = Arc<Mutex<Vec<TargetStatus>>>;

/// The store options the configured targets need: an export log only for kinds with targets.
pub fn store_needs(cfg: &ExportConfig) -> (bool, bool) {
    (!cfg.remote_write.is_empty(), !cfg.loki.is_empty())
}

/// Starts one queue per target; they run until `stop`. A target's unreadable file (token,
/// password, certificate) fails the start, naming it.
pub fn start(
    cfg: &ExportConfig,
    store: Arc<crate::store::Store>,
    metrics: queue::ExportMetrics,
    statuses: Statuses,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    use crate::store::export::ExportKind;
    let positions: Arc<queue::Positions> = Default::default();
    let max_bytes = cfg.max_mib << 20;
    let mut tasks = Vec::new();
    let shared = Shared { store, metrics, statuses, positions, max_bytes, stop };
    for t in &cfg.remote_write {
        let client = http::Client::new(t, remote_write::CONTENT_TYPE, &remote_write::HEADERS)?;
        let encoder = remote_write::RemoteWriteEncoder::new(t).map_err(anyhow::Error::msg)?;
        tracing::info!(target_name = %t.name(), url = %t.url, "forwarding samples by remote-write");
        tasks.push(shared.spawn(t, ExportKind::Samples, client, encoder));
    }
    for t in &cfg.loki {
        let encoder = loki::LokiEncoder::new(t).map_err(anyhow::Error::msg)?;
        let client = http::Client::new(t, encoder.content_type(), &[])?;
        tracing::info!(target_name = %t.name(), url = %t.url, "forwarding log lines by Loki push");
        tasks.push(shared.spawn(t, ExportKind::Logs, client, encoder));
    }
    Ok(tasks)
}

/// What every target's queue shares.
struct Shared {
    store: Arc<crate::store::Store>,
    metrics: queue::ExportMetrics,
    statuses: Statuses,
    positions: Arc<queue::Positions>,
    max_bytes: u64,
    stop: tokio_util::sync::CancellationToken,
}

impl Shared {
    fn spawn<E: queue::Encoder + Sync + 'static>(
        &self,
        t: &TargetConfig,
        kind: crate::store::export::ExportKind,
        client: http::Client,
        encoder: E,
    ) -> tokio::task::JoinHandle<()> {
        let q = queue::Queue {
            name: t.name(),
            kind,
            client,
            config: t.queue.clone(),
            encoder,
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            statuses: self.statuses.clone(),
            positions: self.positions.clone(),
            max_bytes: self.max_bytes,
        };
        tokio::spawn(q.run(self.stop.clone()))
    }
}
