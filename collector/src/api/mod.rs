//! The collector's HTTP API: Prometheus-compatible query and remote-write routes, /metrics, health.
//! Calls `query` for answers, `ingest` to decode and the store's public API; never sees SQL or protobuf.

pub mod auth;
mod gates;
mod loki;
mod params;
mod prom;
mod push;
mod remote;

use std::sync::{Arc, Mutex};

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use prometheus_client::registry::Registry;

use crate::query::promql::Engine;
use crate::query::QueryError;
use crate::store::Store;
use crate::telemetry::CollectorMetrics;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub health: Arc<crate::health::HealthBoard>,
    pub gates: Arc<crate::run::gate::Gates>,
    pub autoscaler: Arc<crate::run::scale::Autoscaler>,
    pub engine: Arc<Engine>,
    /// Where every PromQL and LogQL request runs: concurrency, queue, deadline, stack.
    pub queries: Arc<crate::query::runner::QueryRunner>,
    /// Cancelled when the collector stops: live tails then close with a close frame.
    pub shutdown: tokio_util::sync::CancellationToken,
    pub registry: Arc<Mutex<Registry>>,
    pub metrics: CollectorMetrics,
    /// Who may call what (`api::auth`); without a tokens file every endpoint is open.
    pub tokens: Arc<crate::auth::TokenFile>,
    /// The export targets' positions, lag and counts (`/api/v1/status/export`).
    pub exports: crate::export::Statuses,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/query", get(prom::query).post(prom::query))
        .route("/api/v1/query_range", get(prom::query_range).post(prom::query_range))
        .route("/api/v1/series", get(prom::series).post(prom::series))
        .route("/api/v1/labels", get(prom::labels).post(prom::labels))
        .route("/api/v1/label/{name}/values", get(prom::label_values))
        .route("/api/v1/metadata", get(prom::metadata))
        .route("/api/v1/status/buildinfo", get(prom::buildinfo))
        .route("/api/v1/rules", get(prom::rules))
        .route("/api/v1/query_exemplars", get(prom::exemplars).post(prom::exemplars))
        .route(
            "/api/v1/write",
            post(remote::write).layer(DefaultBodyLimit::max(crate::ingest::remote_write::MAX_BODY_BYTES)),
        )
        .route(
            "/loki/api/v1/push",
            post(push::loki).layer(DefaultBodyLimit::max(crate::ingest::loki_push::MAX_BODY_BYTES)),
        )
        // OTLP/HTTP at an SDK's default paths, and where Loki (`/otlp`) and Prometheus
        // (`/api/v1/otlp`) serve it, so an endpoint copied from either works.
        .route("/v1/metrics", otlp_metrics())
        .route("/otlp/v1/metrics", otlp_metrics())
        .route("/api/v1/otlp/v1/metrics", otlp_metrics())
        .route("/v1/logs", otlp_logs())
        .route("/otlp/v1/logs", otlp_logs())
        .route("/loki/api/v1/query", get(loki::query).post(loki::query))
        .route("/loki/api/v1/query_range", get(loki::query_range).post(loki::query_range))
        .route("/loki/api/v1/labels", get(loki::labels).post(loki::labels))
        .route("/loki/api/v1/label/{name}/values", get(loki::label_values).post(loki::label_values))
        .route("/loki/api/v1/series", get(loki::series).post(loki::series))
        .route("/loki/api/v1/index/stats", get(loki::index_stats).post(loki::index_stats))
        .route("/loki/api/v1/tail", get(loki::tail))
        .route("/api/v1/status/export", get(export_status))
        .route("/api/v1/health", get(health))
        .route("/api/v1/decisions", get(decisions))
        .route("/api/v1/decisions/{id}/replay", get(gates::replay))
        .route("/api/v1/gates", post(gates::start))
        .route("/api/v1/gates/{id}", get(gates::get))
        .route("/api/v1/releases/{service}/{version}", get(gates::release))
        .route("/api/v1/services/{service}", get(gates::service))
        .route("/metrics", get(self_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ready\n" }))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require))
        .with_state(state)
}

/// Every export target: position, lag, counts, last error.
async fn export_status(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    let targets = state.exports.lock().expect("status lock poisoned").clone();
    axum::Json(serde_json::json!({ "status": "success", "data": { "targets": targets } })).into_response()
}

fn otlp_metrics() -> axum::routing::MethodRouter<AppState> {
    post(push::otlp_metrics).layer(DefaultBodyLimit::max(crate::ingest::otlp::MAX_BODY_BYTES))
}

fn otlp_logs() -> axum::routing::MethodRouter<AppState> {
    post(push::otlp_logs).layer(DefaultBodyLimit::max(crate::ingest::otlp::MAX_BODY_BYTES))
}

async fn self_metrics(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    let mut body = String::new();
    let registry = state.registry.lock().expect("registry lock poisoned");
    match prometheus_client::encoding::text::encode(&mut body, &registry) {
        Ok(()) => {
            ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
                .into_response()
        }
        Err(e) => ApiError::Internal(format!("encoding metrics: {e}")).into_response(),
    }
}

/// An API failure in Prometheus's error shape. Internal details are logged, not sent.
#[derive(Debug)]
pub enum ApiError {
    BadData(String),
    Execution(String),
    Internal(String),
    /// 503 `timeout`: the query ran past `[query] timeout`.
    Timeout(String),
    /// 503 `unavailable`: too many queries wait already, or the collector is stopping.
    Unavailable(String),
    /// 499 `canceled`, as Prometheus answers a query whose client went away (nobody reads it).
    Canceled(String),
    /// 413: a body over its limit.
    TooLarge(String),
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        use crate::query::Interrupted;
        let msg = e.to_string();
        match e {
            QueryError::Parse(m) | QueryError::BadData(m) => ApiError::BadData(m),
            QueryError::Limit { message, .. } => ApiError::BadData(message),
            QueryError::Unsupported(m) | QueryError::Execution(m) => ApiError::Execution(m),
            QueryError::Storage(m) => ApiError::Internal(m),
            QueryError::Interrupted(Interrupted::Timeout) => ApiError::Timeout(msg),
            QueryError::Interrupted(Interrupted::Cancelled) => ApiError::Canceled(msg),
            QueryError::Interrupted(Interrupted::TooManySamples) => ApiError::Execution(msg),
            QueryError::Busy(m) => ApiError::Unavailable(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, msg) = match self {
            ApiError::BadData(m) => (StatusCode::BAD_REQUEST, "bad_data", m),
            ApiError::Execution(m) => (StatusCode::UNPROCESSABLE_ENTITY, "execution", m),
            ApiError::Timeout(m) => (StatusCode::SERVICE_UNAVAILABLE, "timeout", m),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
            ApiError::Canceled(m) => (StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST), "canceled", m),
            ApiError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, "bad_data", m),
            ApiError::Internal(m) => {
                tracing::error!(error = %m, "internal error answering an API call");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the collector's log".to_string())
            }
        };
        let body = serde_json::json!({"status": "error", "errorType": kind, "error": msg});
        (status, axum::Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests;

#[derive(serde::Deserialize)]
struct HealthQuery {
    host: Option<String>,
    service: Option<String>,
    container: Option<String>,
}

/// `GET /api/v1/health[?host=&service=&container=]`: per container its state (the worst of its
/// probes), since when, each probe's state, failing streak, last output and recent runs.
async fn health(
    axum::extract::State(s): axum::extract::State<AppState>,
    axum::extract::Query(q): axum::extract::Query<HealthQuery>,
) -> axum::Json<serde_json::Value> {
    let list = s.health.list(q.host.as_deref(), q.service.as_deref(), q.container.as_deref());
    axum::Json(serde_json::json!({ "status": "success", "data": list }))
}

#[derive(serde::Deserialize)]
struct DecisionsQuery {
    since: Option<String>,
    kind: Option<String>,
    service: Option<String>,
    container_id: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/decisions[?since=&kind=&service=&container_id=&limit=]`: decisions oldest first,
/// each with its reason, rule, inputs and outcome. `since` is a time as the Prometheus API takes it.
async fn decisions(
    axum::extract::State(s): axum::extract::State<AppState>,
    axum::extract::Query(q): axum::extract::Query<DecisionsQuery>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let bad = |msg: String| {
        (
            axum::http::StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"status": "error", "errorType": "bad_data", "error": msg})),
        )
            .into_response()
    };
    let since_ms = match q.since.as_deref().map(|v| (v, params::parse_time_ms(v))) {
        None => None,
        Some((_, Some(t))) => Some(t),
        Some((v, None)) => return bad(format!("since: cannot parse {v:?} as a time (Unix seconds or RFC 3339)")),
    };
    let filter = crate::store::decisions::DecisionFilter {
        since_ms,
        kind: q.kind,
        service: q.service,
        container_id: q.container_id,
        limit: q.limit.unwrap_or(1000).min(10_000),
    };
    let store = s.store.clone();
    match tokio::task::spawn_blocking(move || store.decisions(&filter)).await {
        Ok(Ok(list)) => axum::Json(serde_json::json!({ "status": "success", "data": list })).into_response(),
        Ok(Err(e)) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
