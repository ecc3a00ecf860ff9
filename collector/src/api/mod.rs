//! The collector's HTTP API: Prometheus-compatible query and remote-write routes, /metrics, health.
//! Calls `query` for answers, `ingest` to decode and the store's public API; never sees SQL or protobuf.

mod loki;
mod params;
mod prom;
mod remote;

use std::sync::{Arc, Mutex};

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use prometheus_client::registry::Registry;

use crate::query::{Engine, QueryError};
use crate::store::Store;
use crate::telemetry::CollectorMetrics;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub engine: Arc<Engine>,
    pub registry: Arc<Mutex<Registry>>,
    pub metrics: CollectorMetrics,
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
        .route("/loki/api/v1/query", get(loki::query).post(loki::query))
        .route("/loki/api/v1/query_range", get(loki::query_range).post(loki::query_range))
        .route("/loki/api/v1/labels", get(loki::labels).post(loki::labels))
        .route("/loki/api/v1/label/{name}/values", get(loki::label_values).post(loki::label_values))
        .route("/loki/api/v1/series", get(loki::series).post(loki::series))
        .route("/loki/api/v1/index/stats", get(loki::index_stats).post(loki::index_stats))
        .route("/loki/api/v1/tail", get(loki::tail))
        .route("/metrics", get(self_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ready\n" }))
        .with_state(state)
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
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Parse(m) | QueryError::BadData(m) => ApiError::BadData(m),
            QueryError::Unsupported(m) | QueryError::Execution(m) => ApiError::Execution(m),
            QueryError::Storage(m) => ApiError::Internal(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, msg) = match self {
            ApiError::BadData(m) => (StatusCode::BAD_REQUEST, "bad_data", m),
            ApiError::Execution(m) => (StatusCode::UNPROCESSABLE_ENTITY, "execution", m),
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
