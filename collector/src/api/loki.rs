//! Loki's HTTP API over the log store, in Loki's JSON shapes: `query` and `query_range` for log and
//! metric queries, `labels`, `label/<name>/values`. `start` inclusive, `end` exclusive.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::params::{parse_time_ms, Params};
use super::{ApiError, AppState};
use crate::logql;
use crate::logql_metric;
use crate::model::{format_value, LabelSet};
use crate::store::logs::LogStreamOut;
use std::collections::HashMap;

/// `limit` when none is given.
const DEFAULT_LIMIT: usize = 1000;
/// The largest `limit` answered, as Loki's `max_entries_limit_per_query` default.
const MAX_LIMIT: usize = 5000;
/// The widest range one query may scan, as Loki's `max_query_length` default.
const MAX_RANGE_NS: i64 = 30 * 24 * 3600 * 1_000_000_000 + 3600 * 1_000_000_000;

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// As Loki reads times: an integer of up to 10 digits is seconds, a longer one nanoseconds; a
/// decimal is seconds; otherwise RFC 3339.
fn time_ns(p: &Params, key: &str, default: i64) -> Result<i64, ApiError> {
    let Some(v) = p.get(key).filter(|v| !v.is_empty()) else { return Ok(default) };
    if let Ok(n) = v.parse::<i64>() {
        return Ok(if v.trim_start_matches('-').len() <= 10 { n.saturating_mul(1_000_000_000) } else { n });
    }
    parse_time_ms(v)
        .map(|ms| ms.saturating_mul(1_000_000))
        .ok_or_else(|| ApiError::BadData(format!("invalid parameter {key:?}: cannot parse {v:?} as a time")))
}

/// Instant queries: a metric query evaluated at `time`, or a log query over the hour before it.
pub async fn query(State(s): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let text = p.required("query")?.to_string();
    let t = time_ns(&p, "time", now_ns())?;
    if logql_metric::is_metric(&text) {
        return metric(&s, &text, &[t], true).await;
    }
    logs(s, p, text, t - 3600 * 1_000_000_000, t + 1).await
}

pub async fn query_range(State(s): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let text = p.required("query")?.to_string();
    let end = time_ns(&p, "end", now_ns())?;
    let start = time_ns(&p, "start", end - 3600 * 1_000_000_000)?;
    if logql_metric::is_metric(&text) {
        if end < start {
            return Err(ApiError::BadData("end timestamp must not be before start time".into()));
        }
        // Loki's default step: the range over 250 points, at least a second.
        let step = match p.get("step").filter(|v| !v.is_empty()) {
            Some(v) => super::params::parse_duration_ms(v)
                .filter(|&ms| ms > 0)
                .map(|ms| ms * 1_000_000)
                .ok_or_else(|| ApiError::BadData(format!("invalid parameter \"step\": {v:?}")))?,
            None => ((end - start) / 250 / 1_000_000_000).max(1) * 1_000_000_000,
        };
        if (end - start) / step > 11_000 {
            return Err(ApiError::BadData(
                "exceeded maximum resolution of 11,000 points per timeseries. Try increasing the value of the step parameter".into(),
            ));
        }
        let times: Vec<i64> = (0..=(end - start) / step).map(|i| start + i * step).collect();
        return metric(&s, &text, &times, false).await;
    }
    logs(s, p, text, start, end).await
}

async fn metric(s: &AppState, text: &str, times: &[i64], instant: bool) -> Result<Response, ApiError> {
    let expr = logql_metric::parse(text).map_err(|e| ApiError::BadData(e.to_string()))?;
    let (first, last) = (times[0], times[times.len() - 1]);
    let store = s.store.clone();
    let times = times.to_vec();
    let value = tokio::task::spawn_blocking(move || -> Result<logql_metric::Value, ApiError> {
        let mut sels = Vec::new();
        expr.selectors(&mut sels);
        let mut fetched = Vec::with_capacity(sels.len());
        for (q, range) in sels {
            if last - first + range > MAX_RANGE_NS {
                return Err(ApiError::BadData("the query time range exceeds the limit".into()));
            }
            // Windows are (t − range, t]; the store reads [start, end).
            let found = store
                .select_logs(&q.matchers, first - range + 1, last + 1)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            fetched.push(found);
        }
        Ok(expr.eval(&times, &mut fetched.iter()))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("query task: {e}")))??;
    let secs = |t: i64| t as f64 / 1e9;
    let data = match value {
        logql_metric::Value::Scalar(v) => json!({"resultType": "scalar", "result": [secs(last), format_value(v)]}),
        logql_metric::Value::Series(series) => {
            let result: Vec<serde_json::Value> = series
                .into_iter()
                .map(|(labels, pts)| {
                    let metric: serde_json::Map<String, serde_json::Value> =
                        labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
                    if instant {
                        let (t, v) = pts.into_iter().next_back().unwrap_or((last, f64::NAN));
                        json!({"metric": metric, "value": [secs(t), format_value(v)]})
                    } else {
                        let values: Vec<serde_json::Value> =
                            pts.into_iter().map(|(t, v)| json!([secs(t), format_value(v)])).collect();
                        json!({"metric": metric, "values": values})
                    }
                })
                .collect();
            json!({"resultType": if instant { "vector" } else { "matrix" }, "result": result})
        }
    };
    let mut data = data;
    data["stats"] = json!({});
    Ok(Json(json!({"status": "success", "data": data})).into_response())
}

async fn logs(s: AppState, p: Params, text: String, start: i64, end: i64) -> Result<Response, ApiError> {
    let q = logql::parse(&text).map_err(|e| ApiError::BadData(e.to_string()))?;
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
        Ok(streams_json(&q, &found, forward, limit))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("query task: {e}")))??;
    Ok(Json(json!({"status": "success", "data": {"resultType": "streams", "result": streams, "stats": {}}}))
        .into_response())
}

/// Every line the pipeline keeps, then the `limit` newest (backward) or oldest (forward), grouped by
/// the labels they end with (parsers may split one stored stream into several).
fn streams_json(q: &logql::LogQuery, found: &[LogStreamOut], forward: bool, limit: usize) -> Vec<serde_json::Value> {
    let mut kept: Vec<(i64, usize, String)> = Vec::new();
    let mut label_sets: Vec<LabelSet> = Vec::new();
    let mut index: HashMap<LabelSet, usize> = HashMap::new();
    for st in found {
        let plain = q.filters_only().then(|| {
            label_sets.push(st.labels.clone());
            label_sets.len() - 1
        });
        for l in &st.lines {
            if let Some(si) = plain {
                if q.keeps(&l.line) {
                    kept.push((l.time_ns, si, l.line.clone()));
                }
                continue;
            }
            let Some(p) = q.process(&st.labels, &l.line) else { continue };
            let si = match index.get(p.labels.as_ref()) {
                Some(&i) => i,
                None => {
                    label_sets.push(p.labels.clone().into_owned());
                    index.insert(p.labels.into_owned(), label_sets.len() - 1);
                    label_sets.len() - 1
                }
            };
            kept.push((l.time_ns, si, p.line.into_owned()));
        }
    }
    if forward {
        kept.sort_by_key(|k| (k.0, k.1));
    } else {
        kept.sort_by_key(|k| std::cmp::Reverse((k.0, k.1)));
    }
    kept.truncate(limit);
    let mut per: Vec<Vec<(i64, String)>> = vec![Vec::new(); label_sets.len()];
    for (t, si, line) in kept {
        per[si].push((t, line));
    }
    label_sets
        .into_iter()
        .zip(per)
        .filter(|(_, v)| !v.is_empty())
        .map(|(labels, v)| {
            let labels: serde_json::Map<String, serde_json::Value> =
                labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
            let values: Vec<serde_json::Value> = v.into_iter().map(|(t, l)| json!([t.to_string(), l])).collect();
            json!({"stream": labels, "values": values})
        })
        .collect()
}

pub async fn labels(State(s): State<AppState>) -> Response {
    Json(json!({"status": "success", "data": s.store.log_label_names()})).into_response()
}

pub async fn label_values(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    Json(json!({"status": "success", "data": s.store.log_label_values(&name)})).into_response()
}
