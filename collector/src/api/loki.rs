//! Loki's HTTP API over the log store, in Loki's JSON shapes: `query_range` for log queries,
//! `labels`, `label/<name>/values`. Times are integer nanoseconds; `start` inclusive, `end` exclusive.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::params::{parse_time_ms, Params};
use super::{ApiError, AppState};
use crate::logql;

/// `limit` when none is given.
const DEFAULT_LIMIT: usize = 1000;
/// The largest `limit` answered, as Loki's `max_entries_limit_per_query` default.
const MAX_LIMIT: usize = 5000;
/// The widest range one query may scan, as Loki's `max_query_length` default.
const MAX_RANGE_NS: i64 = 30 * 24 * 3600 * 1_000_000_000 + 3600 * 1_000_000_000;

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// Nanoseconds (an integer of 16 digits or more), seconds (possibly fractional) or RFC 3339.
fn time_ns(p: &Params, key: &str, default: i64) -> Result<i64, ApiError> {
    let Some(v) = p.get(key).filter(|v| !v.is_empty()) else { return Ok(default) };
    if v.len() >= 16 && v.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse().map_err(|_| ApiError::BadData(format!("invalid parameter {key:?}: {v:?}")));
    }
    parse_time_ms(v)
        .map(|ms| ms.saturating_mul(1_000_000))
        .ok_or_else(|| ApiError::BadData(format!("invalid parameter {key:?}: cannot parse {v:?} as a time")))
}

pub async fn query_range(State(s): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let q = logql::parse(p.required("query")?).map_err(|e| ApiError::BadData(e.to_string()))?;
    let end = time_ns(&p, "end", now_ns())?;
    let start = time_ns(&p, "start", end - 3600 * 1_000_000_000)?;
    if end < start {
        return Err(ApiError::BadData("end timestamp must not be before or equal to start time".into()));
    }
    if end - start > MAX_RANGE_NS {
        return Err(ApiError::BadData(format!(
            "the query time range exceeds the limit (query length: {}h, limit: {}h)",
            (end - start) / 3_600_000_000_000,
            MAX_RANGE_NS / 3_600_000_000_000
        )));
    }
    let limit = match p.get("limit") {
        None | Some("") => DEFAULT_LIMIT,
        Some(v) => v.parse().map_err(|_| ApiError::BadData(format!("invalid parameter \"limit\": {v:?}")))?,
    };
    if limit > MAX_LIMIT {
        return Err(ApiError::BadData(format!(
            "max entries limit per query exceeded, limit > max_entries_limit ({limit} > {MAX_LIMIT})"
        )));
    }
    let forward = match p.get("direction") {
        None | Some("") | Some("backward") | Some("BACKWARD") => false,
        Some("forward") | Some("FORWARD") => true,
        Some(v) => return Err(ApiError::BadData(format!("invalid parameter \"direction\": {v:?}"))),
    };
    let store = s.store.clone();
    let streams = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let found = store.select_logs(&q.matchers, start, end).map_err(|e| ApiError::Internal(e.to_string()))?;
        // Every kept line with its stream, then the `limit` newest (backward) or oldest (forward).
        let mut kept: Vec<(i64, usize, String)> = Vec::new();
        for (si, st) in found.iter().enumerate() {
            for l in &st.lines {
                if q.keeps(&l.line) {
                    kept.push((l.time_ns, si, l.line.clone()));
                }
            }
        }
        if forward {
            kept.sort_by_key(|k| (k.0, k.1));
        } else {
            kept.sort_by_key(|k| std::cmp::Reverse((k.0, k.1)));
        }
        kept.truncate(limit);
        let mut per: Vec<Vec<(i64, String)>> = vec![Vec::new(); found.len()];
        for (t, si, line) in kept {
            per[si].push((t, line));
        }
        Ok(found
            .into_iter()
            .zip(per)
            .filter(|(_, v)| !v.is_empty())
            .map(|(st, v)| {
                let labels: serde_json::Map<String, serde_json::Value> =
                    st.labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
                let values: Vec<serde_json::Value> = v.into_iter().map(|(t, l)| json!([t.to_string(), l])).collect();
                json!({"stream": labels, "values": values})
            })
            .collect::<Vec<_>>())
    })
    .await
    .map_err(|e| ApiError::Internal(format!("query task: {e}")))??;
    Ok(Json(json!({"status": "success", "data": {"resultType": "streams", "result": streams, "stats": {}}}))
        .into_response())
}

pub async fn labels(State(s): State<AppState>) -> Response {
    Json(json!({"status": "success", "data": s.store.log_label_names()})).into_response()
}

pub async fn label_values(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    Json(json!({"status": "success", "data": s.store.log_label_values(&name)})).into_response()
}
