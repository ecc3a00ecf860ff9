//! The collector's own metrics (`lookout_collector_*`), registered on a registry passed in.
//! Counting only: nothing here decides or stores anything.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::store::AppendOutcome;

#[derive(Clone, Default)]
pub struct CollectorMetrics {
    pub batches: Counter,
    pub duplicate_batches: Counter,
    pub samples: Counter,
    pub log_lines: Counter,
    pub out_of_order_samples: Counter,
    pub invalid_series: Counter,
    pub new_series: Counter,
    pub connected_agents: Gauge,
    pub queries: Counter,
    /// Queries refused or stopped by a `[query]` limit, by reason, and every query's duration.
    pub query: crate::query::runner::QueryMetrics,
    /// Batches the store could not commit (full disk, read-only file system, I/O error).
    pub commit_errors: Counter,
    /// When a commit failure was last logged, and the count then (`commit_failed`).
    commit_error_logged_ms: std::sync::Arc<std::sync::atomic::AtomicI64>,
    commit_errors_logged: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub remote_write_requests: Counter,
    pub remote_write_rejected: Counter,
    /// Pushes received (Loki's API, OTLP), by `api`, and their lines or samples refused, by `api`.
    pub push_requests: prometheus_client::metrics::family::Family<Vec<(String, String)>, Counter>,
    pub push_refused: prometheus_client::metrics::family::Family<Vec<(String, String)>, Counter>,
    /// Agent streams and batches refused, by reason (`token`, `scope`, `host`).
    pub ingest_refused: prometheus_client::metrics::family::Family<Vec<(String, String)>, Counter>,
    /// HTTP requests refused, by reason (`no_credentials`, `token`, `scope`).
    pub http_refused: prometheus_client::metrics::family::Family<Vec<(String, String)>, Counter>,
    /// Decisions by kind and outcome (`lookout_decisions_total`).
    pub decisions: prometheus_client::metrics::family::Family<Vec<(String, String)>, Counter>,
}

impl CollectorMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = CollectorMetrics::default();
        registry.register(
            "lookout_decisions",
            "Decisions taken (restart, restart_held, restart_waiting, restart_given_up) by outcome",
            m.decisions.clone(),
        );
        let r = registry.sub_registry_with_prefix("lookout_collector");
        r.register("batches", "Batches committed from agents", m.batches.clone());
        r.register(
            "duplicate_batches",
            "Batches skipped because their seq was already committed",
            m.duplicate_batches.clone(),
        );
        r.register("samples", "Samples committed", m.samples.clone());
        r.register("log_lines", "Log lines committed", m.log_lines.clone());
        r.register(
            "out_of_order_samples",
            "Samples dropped because their series already had one as new or newer",
            m.out_of_order_samples.clone(),
        );
        r.register(
            "invalid_series",
            "Series skipped because their labels or sample arrays were invalid",
            m.invalid_series.clone(),
        );
        r.register("new_series", "Series created", m.new_series.clone());
        r.register("connected_agents", "Agents with an open ingest stream", m.connected_agents.clone());
        r.register("queries", "PromQL queries answered", m.queries.clone());
        r.register(
            "queries_refused",
            "Queries refused or stopped by a [query] limit (depth, query_bytes, range, samples, timeout, queue_full, cancelled)",
            m.query.refused.clone(),
        );
        r.register("query_duration_seconds", "Time from a query's arrival to its answer", m.query.duration.clone());
        r.register("commit_errors", "Batches the store could not commit", m.commit_errors.clone());
        r.register("remote_write_requests", "Remote-write requests received", m.remote_write_requests.clone());
        r.register(
            "remote_write_rejected",
            "Remote-write requests answered with an error (bad body, out-of-order samples)",
            m.remote_write_rejected.clone(),
        );
        r.register(
            "push_requests",
            "Pushes received by api: loki (/loki/api/v1/push), otlp_metrics (/v1/metrics), otlp_logs (/v1/logs)",
            m.push_requests.clone(),
        );
        r.register(
            "push_refused",
            "Lines or points of pushes refused, by api (bad labels, too long, too old, too far behind their stream, not mapped)",
            m.push_refused.clone(),
        );
        r.register(
            "ingest_refused",
            "Agent streams and batches refused: an unknown token (token), one without the agent scope (scope), a host the token does not speak for (host)",
            m.ingest_refused.clone(),
        );
        r.register(
            "http_refused",
            "HTTP requests refused: no credentials, an unknown token, or a token without the scope the endpoint needs",
            m.http_refused.clone(),
        );
        m
    }

    /// Counts an agent stream or batch refused.
    pub fn ingest_refused(&self, reason: &str) {
        self.ingest_refused.get_or_create(&vec![("reason".into(), reason.into())]).inc();
    }

    /// Counts a push on `api` and what of it was refused.
    pub fn pushed(&self, api: &str, refused: u64) {
        let label = vec![("api".into(), api.into())];
        self.push_requests.get_or_create(&label).inc();
        if refused > 0 {
            self.push_refused.get_or_create(&label).inc_by(refused);
        }
    }

    /// Counts an HTTP request refused.
    pub fn http_refused(&self, reason: &str) {
        self.http_refused.get_or_create(&vec![("reason".into(), reason.into())]).inc();
    }

    /// Counts a batch the store could not commit and logs it at most once a minute, with how many
    /// failed since the last line: with every agent retrying, one line per failure would flood the
    /// journal exactly when the disk is full.
    pub fn commit_failed(&self, what: &str, error: &dyn std::fmt::Display, free_bytes: Option<u64>) {
        self.commit_errors.inc();
        let now = crate::clock::now_ms();
        let last = self.commit_error_logged_ms.load(std::sync::atomic::Ordering::Relaxed);
        if now - last >= 60_000
            && self
                .commit_error_logged_ms
                .compare_exchange(last, now, std::sync::atomic::Ordering::Relaxed, std::sync::atomic::Ordering::Relaxed)
                .is_ok()
        {
            let since = self.commit_errors.get()
                - self.commit_errors_logged.swap(self.commit_errors.get(), std::sync::atomic::Ordering::Relaxed);
            let free = free_bytes.map_or("unknown".to_string(), |b| format!("{:.1} MiB", b as f64 / 1048576.0));
            tracing::error!(
                %error,
                failures = since,
                free_on_data_fs = %free,
                "cannot commit {what}: nothing is acknowledged until a commit succeeds; senders keep their data and retry. \
                 Free space (a commit needs the batch and as much again for SQLite's log; checkpoints need a few MiB), \
                 or lower retention, retention_size_mib or [logs] max_mib (logged once a minute)"
            );
        }
    }

    pub fn record_batch(&self, o: &AppendOutcome) {
        if o.duplicate {
            self.duplicate_batches.inc();
            return;
        }
        self.batches.inc();
        self.samples.inc_by(o.samples);
        self.log_lines.inc_by(o.log_lines);
        self.out_of_order_samples.inc_by(o.out_of_order + o.same_timestamp);
        self.new_series.inc_by(o.new_series);
    }
}
