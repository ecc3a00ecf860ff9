//! Loki's HTTP API over the log store, in Loki's JSON shapes: `query` and `query_range` for log and
//! metric queries, `labels`, `label/<name>/values`, `series`, `index/stats`, `tail`. `start`
//! inclusive, `end` exclusive. HTTP only: queries are run by `query::logql::eval`.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::params::{parse_time_ms, Params};
use super::{ApiError, AppState};
use std::collections::HashMap;

use crate::clock::now_ns;
use crate::model::logs::LogStreamOut;
use crate::model::{format_value, LabelSet};
use crate::query::logql::{self, eval, metric, LogQueryable};
use crate::query::QueryError;

/// `limit` when none is given.
const DEFAULT_LIMIT: usize = 1000;

/// The widest range one log query may scan (`[query] max_query_length`), in nanoseconds.
fn max_range_ns(s: &AppState) -> i64 {
    i64::try_from(s.queries.limits().max_query_length.as_nanos()).unwrap_or(i64::MAX)
}

/// A `limit` parameter within `[query] max_entries_limit_per_query`.
fn entries_limit(s: &AppState, p: &Params, default: usize) -> Result<usize, ApiError> {
    let limit = match p.get("limit") {
        None | Some("") => default,
        Some(v) => v.parse().map_err(|_| ApiError::BadData(format!("invalid parameter \"limit\": {v:?}")))?,
    };
    let max = s.queries.limits().max_entries_limit_per_query;
    if limit > max {
        return Err(ApiError::BadData(format!(
            "max entries limit per query exceeded, limit > max_entries_limit ({limit} > {max})"
        )));
    }
    Ok(limit)
}

/// Parses log selectors on a query thread (a selector's text is as hostile as any query's).
async fn parse_selectors(s: &AppState, texts: &[&str]) -> Result<Vec<logql::LogQuery>, ApiError> {
    let texts: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
    let limits = s.queries.limits().clone();
    Ok(s.queries.run(move |_| texts.iter().map(|t| logql::parse_within(&limits, "query", t)).collect()).await?)
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
    if metric::is_metric(&text) {
        return metric(&s, &text, &[t], true).await;
    }
    logs(s, p, text, t - 3600 * 1_000_000_000, t + 1).await
}

pub async fn query_range(State(s): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let text = p.required("query")?.to_string();
    let end = time_ns(&p, "end", now_ns())?;
    let start = time_ns(&p, "start", end - 3600 * 1_000_000_000)?;
    if metric::is_metric(&text) {
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
        let max_points = s.queries.limits().max_points_per_series;
        if (end - start) / step > max_points {
            return Err(ApiError::BadData(format!(
                "exceeded maximum resolution of {max_points} points per timeseries. Try increasing the value of the step parameter"
            )));
        }
        let times: Vec<i64> = (0..=(end - start) / step).map(|i| start + i * step).collect();
        return metric(&s, &text, &times, false).await;
    }
    logs(s, p, text, start, end).await
}

async fn metric(s: &AppState, text: &str, times: &[i64], instant: bool) -> Result<Response, ApiError> {
    let last = times[times.len() - 1];
    let store = s.store.clone();
    let times = times.to_vec();
    let limits = s.queries.limits().clone();
    let text = text.to_string();
    let value = s
        .queries
        .run(move |budget| {
            let expr = logql::parse_metric_within(&limits, &text)?;
            eval::metric_query(&*store, &limits, &expr, &times, budget)
        })
        .await?;
    let secs = |t: i64| t as f64 / 1e9;
    let data = match value {
        metric::Value::Scalar(v) => json!({"resultType": "scalar", "result": [secs(last), format_value(v)]}),
        metric::Value::Series(series) => {
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
    if end < start {
        return Err(ApiError::BadData("end timestamp must not be before or equal to start time".into()));
    }
    let max_range = max_range_ns(&s);
    if end.saturating_sub(start) > max_range {
        s.queries.refused("range");
        return Err(ApiError::BadData(format!(
            "the query time range exceeds the limit (query length: {}h, limit: {}h)",
            end.saturating_sub(start) / 3_600_000_000_000,
            max_range / 3_600_000_000_000
        )));
    }
    let limit = entries_limit(&s, &p, DEFAULT_LIMIT)?;
    let forward = match p.get("direction") {
        None | Some("") | Some("backward") | Some("BACKWARD") => false,
        Some("forward") | Some("FORWARD") => true,
        Some(v) => return Err(ApiError::BadData(format!("invalid parameter \"direction\": {v:?}"))),
    };
    let store = s.store.clone();
    let limits = s.queries.limits().clone();
    let streams = s
        .queries
        .run(move |budget| -> Result<_, QueryError> {
            let q = logql::parse_within(&limits, "query", &text)?;
            Ok(streams_json(eval::log_query(&*store, &q, (start, end), forward, limit, budget)?))
        })
        .await?;
    Ok(Json(json!({"status": "success", "data": {"resultType": "streams", "result": streams, "stats": {}}}))
        .into_response())
}

/// Streams in Loki's JSON shape: `{"stream": labels, "values": [["<ns>", line], ...]}`.
fn streams_json(streams: eval::Streams) -> Vec<serde_json::Value> {
    streams
        .into_iter()
        .map(|(labels, values)| {
            let labels: serde_json::Map<String, serde_json::Value> =
                labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
            let values: Vec<serde_json::Value> = values.into_iter().map(|(t, l)| json!([t.to_string(), l])).collect();
            json!({"stream": labels, "values": values})
        })
        .collect()
}

/// The streams `query`'s selector names that have lines in the request's range (an hour before `end`
/// by default); every stream with lines there when no selector is given.
async fn streams_in_range(s: &AppState, p: &Params, selectors: &[&str]) -> Result<Vec<LabelSet>, ApiError> {
    let end = time_ns(p, "end", now_ns())?;
    let start = time_ns(p, "start", end - 3600 * 1_000_000_000)?;
    let mut out: Vec<LabelSet> = Vec::new();
    let mut sets: Vec<Vec<crate::model::Matcher>> =
        parse_selectors(s, selectors).await?.into_iter().map(|q| q.matchers).collect();
    if sets.is_empty() {
        sets.push(Vec::new());
    }
    for m in sets {
        out.extend(s.store.log_series(&m, start, end).map_err(|e| ApiError::Internal(e.to_string()))?);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

pub async fn labels(State(s): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let query: Vec<&str> = p.get("query").filter(|q| !q.is_empty()).into_iter().collect();
    let mut names: Vec<String> =
        streams_in_range(&s, &p, &query).await?.iter().flat_map(|l| l.iter().map(|(k, _)| k.to_string())).collect();
    names.sort();
    names.dedup();
    Ok(Json(json!({"status": "success", "data": names})).into_response())
}

pub async fn label_values(
    State(s): State<AppState>,
    Path(name): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    let query: Vec<&str> = p.get("query").filter(|q| !q.is_empty()).into_iter().collect();
    let mut values: Vec<String> =
        streams_in_range(&s, &p, &query).await?.iter().filter_map(|l| l.get(&name).map(str::to_string)).collect();
    values.sort();
    values.dedup();
    Ok(Json(json!({"status": "success", "data": values})).into_response())
}

/// `match[]` selectors (several are a union) to the label sets of streams with lines in the range.
pub async fn series(State(s): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let selectors = p.all("match[]");
    let selectors = if selectors.is_empty() { p.all("match") } else { selectors };
    let found = streams_in_range(&s, &p, &selectors).await?;
    let data: Vec<serde_json::Value> = found
        .iter()
        .map(|l| serde_json::Value::Object(l.iter().map(|(k, v)| (k.to_string(), json!(v))).collect()))
        .collect();
    Ok(Json(json!({"status": "success", "data": data})).into_response())
}

/// Grafana's query-size hint: a bare `{streams, chunks, entries, bytes}` object.
pub async fn index_stats(State(s): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let q = parse_selectors(&s, &[p.required("query")?]).await?.pop().expect("one query parsed from one text");
    let end = time_ns(&p, "end", now_ns())?;
    let start = time_ns(&p, "start", end - 3600 * 1_000_000_000)?;
    let stats = s.store.log_stats(&q.matchers, start, end).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(stats).into_response())
}

/// Lines a tail sends at most per message, and how many it starts with by default (Loki's 100).
const TAIL_DEFAULT_LIMIT: usize = 100;

/// `tail` over a websocket: the `limit` newest lines since `start` (an hour ago by default), then
/// every matching line as it is committed, as `{"streams": [...]}` messages. A tail that falls too
/// far behind is sent `dropped_entries` saying so, as Loki does.
pub async fn tail(
    State(s): State<AppState>,
    ws: axum::extract::ws::WebSocketUpgrade,
    p: Params,
) -> Result<Response, ApiError> {
    let text = p.required("query")?.to_string();
    if metric::is_metric(&text) {
        return Err(ApiError::BadData("tail takes a log query, not a metric query".into()));
    }
    let q = parse_selectors(&s, &[text.as_str()]).await?.pop().expect("one query parsed from one text");
    let limit = entries_limit(&s, &p, TAIL_DEFAULT_LIMIT)?;
    let start = time_ns(&p, "start", now_ns() - 3600 * 1_000_000_000)?;
    Ok(ws.on_upgrade(move |socket| tail_socket(s, q, start, limit, socket)))
}

async fn tail_socket(
    s: AppState,
    q: logql::LogQuery,
    start: i64,
    limit: usize,
    mut socket: axum::extract::ws::WebSocket,
) {
    use axum::extract::ws::Message;
    let q = std::sync::Arc::new(q);
    // Subscribe before reading history, so nothing committed in between is missed; lines of a stream
    // at or before the newest one history had for it were in the history.
    let mut feed = s.store.subscribe_logs();
    let store = s.store.clone();
    let q2 = q.clone();
    let history = tokio::task::spawn_blocking(move || {
        let found = store.select_logs(&q2.matchers, start, now_ns() + 1)?;
        let seen: HashMap<LabelSet, i64> =
            found.iter().filter_map(|st| Some((st.labels.clone(), st.lines.last()?.time_ns))).collect();
        // Loki sends history oldest first, as the `limit` newest.
        let mut result = streams_json(eval::pipe(&q2, &found, false, limit));
        for st in &mut result {
            if let Some(v) = st["values"].as_array_mut() {
                v.reverse();
            }
        }
        Ok::<_, QueryError>((result, seen))
    })
    .await;
    let (history, mut seen) = match history {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            let _ = socket.send(Message::Close(Some(close_frame(1011, &e.to_string())))).await;
            return;
        }
        Err(_) => return,
    };
    if !history.is_empty() {
        let msg = json!({"streams": history, "dropped_entries": null}).to_string();
        if socket.send(Message::Text(msg.into())).await.is_err() {
            return;
        }
    }
    loop {
        tokio::select! {
            _ = s.shutdown.cancelled() => {
                let _ = socket.send(Message::Close(Some(close_frame(1001, "the collector is stopping")))).await;
                return;
            }
            batch = feed.recv() => {
                let msg = match batch {
                    Ok(streams) => {
                        let found: Vec<LogStreamOut> = streams
                            .iter()
                            .filter(|st| q.matchers.iter().all(|m| m.matches_labels(&st.labels)))
                            .map(|st| {
                                let after = seen.remove(&st.labels).unwrap_or(i64::MIN);
                                LogStreamOut {
                                    labels: st.labels.clone(),
                                    lines: st.lines.iter().filter(|l| l.time_ns > after).cloned().collect(),
                                }
                            })
                            .collect();
                        let result = streams_json(eval::pipe(&q, &found, true, usize::MAX));
                        if result.is_empty() {
                            continue;
                        }
                        json!({"streams": result, "dropped_entries": null})
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(batches = n, "a log tail fell behind; it is told so");
                        json!({"streams": [], "dropped_entries": [{"labels": {}, "timestamp": now_ns().to_string()}]})
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                if socket.send(Message::Text(msg.to_string().into())).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => {
                // The client closed (or went away); anything else it sends is ignored.
                if matches!(incoming, None | Some(Err(_)) | Some(Ok(Message::Close(_)))) {
                    return;
                }
            }
        }
    }
}

fn close_frame(code: u16, reason: &str) -> axum::extract::ws::CloseFrame {
    axum::extract::ws::CloseFrame { code, reason: reason.chars().take(120).collect::<String>().into() }
}
