//! Handlers of the Prometheus HTTP API, answering in Prometheus's exact JSON shapes.
//! Sample values are strings ("NaN", "+Inf"), times float seconds, errors `{status, errorType, error}`.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value as Json_};

use super::params::Params;
use super::{ApiError, AppState};
use crate::clock::now_ms;
use crate::model::{format_value, LabelSet, Matcher, SeriesData};
use crate::query::promql::{Annotations, Value};

/// The Prometheus version reported to clients; Grafana enables features by it.
pub const PROMETHEUS_COMPAT_VERSION: &str = "3.0.0";

fn success(data: Json_) -> Response {
    Json(json!({"status": "success", "data": data})).into_response()
}

pub async fn query(State(s): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let q = p.required("query")?.to_string();
    let t = p.time_ms("time", now_ms())?;
    s.metrics.queries.inc();
    let (engine, store) = (s.engine.clone(), s.store.clone());
    let (value, notes) = s.queries.run(move |budget| engine.instant_annotated(store.as_ref(), &q, t, budget)).await?;
    let data = match value {
        Value::Scalar { t_ms, v } => json!({"resultType": "scalar", "result": point(t_ms, v)}),
        Value::String { t_ms, s } => json!({"resultType": "string", "result": [secs(t_ms), s]}),
        Value::Vector(v) => {
            return Ok(encode_result("vector", &v, &notes, |out, s| {
                write_labels(out, &s.labels);
                out.push_str(",\"value\":");
                write_point(out, s.t_ms, s.v);
            }))
        }
        Value::Matrix(m) => return Ok(encode_matrix(&m, &notes)),
    };
    let mut body = json!({"status": "success", "data": data});
    for (key, list) in [("warnings", &notes.warnings), ("infos", &notes.infos)] {
        if !list.is_empty() {
            body[key] = json!(list);
        }
    }
    Ok(Json(body).into_response())
}

pub async fn query_range(State(s): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let q = p.required("query")?.to_string();
    let start = p.time_ms("start", i64::MIN)?;
    let end = p.time_ms("end", i64::MIN)?;
    if start == i64::MIN || end == i64::MIN {
        return Err(ApiError::BadData("parameters \"start\" and \"end\" are required".into()));
    }
    if end < start {
        return Err(ApiError::BadData("invalid parameter \"end\": end timestamp must not be before start time".into()));
    }
    let step = p.duration_ms("step")?;
    if step <= 0 {
        return Err(ApiError::BadData(
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
        ));
    }
    s.metrics.queries.inc();
    let (engine, store) = (s.engine.clone(), s.store.clone());
    let (m, notes) =
        s.queries.run(move |budget| engine.range_annotated(store.as_ref(), &q, start, end, step, budget)).await?;
    Ok(encode_matrix(&m, &notes))
}

/// A vector or matrix answer written straight into one buffer: building a `serde_json::Value` per
/// point cost more than evaluating the query (a 1 h dashboard query over 100 containers is 24,000
/// points). Annotations go beside `data` as Prometheus puts them, only when there are some.
fn encode_result<T>(kind: &str, items: &[T], notes: &Annotations, mut item: impl FnMut(&mut String, &T)) -> Response {
    let mut out = String::with_capacity(64 + items.len() * 256);
    out.push_str("{\"status\":\"success\",\"data\":{\"resultType\":\"");
    out.push_str(kind);
    out.push_str("\",\"result\":[");
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"metric\":");
        item(&mut out, x);
        out.push('}');
    }
    out.push_str("]}");
    for (key, list) in [("warnings", &notes.warnings), ("infos", &notes.infos)] {
        if !list.is_empty() {
            out.push_str(",\"");
            out.push_str(key);
            out.push_str("\":");
            out.push_str(&serde_json::to_string(list).unwrap_or_else(|_| "[]".into()));
        }
    }
    out.push('}');
    ([(axum::http::header::CONTENT_TYPE, "application/json")], out).into_response()
}

fn encode_matrix(m: &[SeriesData], notes: &Annotations) -> Response {
    encode_result("matrix", m, notes, |out, s| {
        write_labels(out, &s.labels);
        out.push_str(",\"values\":[");
        for (i, (&t, &v)) in s.samples.ts.iter().zip(&s.samples.values).enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_point(out, t, v);
        }
        out.push(']');
    })
}

fn write_labels(out: &mut String, l: &LabelSet) {
    out.push('{');
    for (i, (k, v)) in l.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_string(out, k);
        out.push(':');
        write_json_string(out, v);
    }
    out.push('}');
}

fn write_json_string(out: &mut String, s: &str) {
    // serde_json's escaping, without an intermediate Value.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

/// `[<seconds>,"<value>"]`, seconds printed as `secs` prints them.
fn write_point(out: &mut String, t_ms: i64, v: f64) {
    use std::fmt::Write;
    out.push('[');
    if t_ms % 1000 == 0 {
        let _ = write!(out, "{}", t_ms / 1000);
    } else {
        let _ = write!(out, "{}", t_ms as f64 / 1000.0);
    }
    out.push_str(",\"");
    crate::model::write_value(out, v);
    out.push_str("\"]");
}

/// Parses every `match[]` selector into its matchers, on a query thread: the parser recurses.
async fn selectors(s: &AppState, p: &Params) -> Result<Vec<Vec<Matcher>>, ApiError> {
    let texts: Vec<String> = p.all("match[]").into_iter().map(str::to_string).collect();
    if texts.is_empty() {
        return Ok(Vec::new());
    }
    let engine = s.engine.clone();
    let parsed = s
        .queries
        .run(move |_| Ok(texts.iter().map(|t| parse_selector(&engine, t)).collect::<Result<Vec<_>, ApiError>>()))
        .await?;
    parsed
}

fn parse_selector(engine: &crate::query::promql::Engine, text: &str) -> Result<Vec<Matcher>, ApiError> {
    use promql_parser::parser::Expr;
    let expr = engine.parse_within("match[]", text).map_err(|e| match e {
        crate::query::QueryError::Parse(m) => ApiError::BadData(format!("invalid parameter \"match[]\": {m}")),
        other => other.into(),
    })?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(ApiError::BadData(format!("invalid parameter \"match[]\": {text:?} is not a series selector")));
    };
    let mut out = Vec::new();
    if let Some(name) = &vs.name {
        out.push(Matcher::equal(crate::model::METRIC_NAME, name));
    }
    for m in vs.matchers.matchers.iter() {
        let op = m.op.to_string();
        out.push(
            Matcher::new(&m.name, &op, &m.value)
                .map_err(|e| ApiError::BadData(format!("invalid regex in match[]: {e}")))?,
        );
    }
    Ok(out)
}

async fn matching_series(s: &AppState, p: &Params) -> Result<Option<Vec<LabelSet>>, ApiError> {
    let sels = selectors(s, p).await?;
    if sels.is_empty() {
        return Ok(None);
    }
    let mut all: Vec<LabelSet> = sels.iter().flat_map(|m| s.store.series(m)).collect();
    all.sort();
    all.dedup();
    Ok(Some(all))
}

pub async fn series(State(s): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let found =
        matching_series(&s, &p).await?.ok_or_else(|| ApiError::BadData("no match[] parameter provided".into()))?;
    Ok(success(Json_::Array(found.iter().map(label_map).collect())))
}

pub async fn labels(State(s): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let names = match matching_series(&s, &p).await? {
        None => s.store.label_names(),
        Some(found) => {
            let mut names: Vec<String> = found.iter().flat_map(|l| l.iter().map(|(k, _)| k.to_string())).collect();
            names.sort();
            names.dedup();
            names
        }
    };
    Ok(success(json!(names)))
}

pub async fn label_values(
    State(s): State<AppState>,
    Path(name): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    let values = match matching_series(&s, &p).await? {
        None => s.store.label_values(&name),
        Some(found) => {
            let mut vals: Vec<String> = found.iter().filter_map(|l| l.get(&name).map(str::to_string)).collect();
            vals.sort();
            vals.dedup();
            vals
        }
    };
    Ok(success(json!(values)))
}

/// Types and help of the metrics lookout's agents produce, as `/api/v1/metadata` lists them.
const METADATA: &[(&str, &str, &str)] = &[
    ("container_cpu_usage_seconds_total", "counter", "Cumulative CPU time consumed in seconds."),
    ("container_cpu_user_seconds_total", "counter", "Cumulative user CPU time consumed in seconds."),
    ("container_cpu_system_seconds_total", "counter", "Cumulative system CPU time consumed in seconds."),
    ("container_cpu_cfs_periods_total", "counter", "Number of elapsed enforcement period intervals."),
    ("container_cpu_cfs_throttled_periods_total", "counter", "Number of throttled period intervals."),
    ("container_cpu_cfs_throttled_seconds_total", "counter", "Total time duration the container has been throttled."),
    (
        "container_memory_usage_bytes",
        "gauge",
        "Current memory usage in bytes, including all memory regardless of when it was accessed.",
    ),
    ("container_memory_working_set_bytes", "gauge", "Current working set in bytes."),
    ("container_memory_rss", "gauge", "Size of RSS in bytes."),
    ("container_memory_cache", "gauge", "Number of bytes of page cache memory."),
    ("container_spec_memory_limit_bytes", "gauge", "Memory limit for the container."),
    ("container_spec_cpu_quota", "gauge", "CPU quota of the container."),
    ("container_spec_cpu_period", "gauge", "CPU period of the container."),
    ("container_oom_events_total", "counter", "Count of out of memory events observed for the container."),
    ("container_fs_reads_bytes_total", "counter", "Cumulative count of bytes read."),
    ("container_fs_writes_bytes_total", "counter", "Cumulative count of bytes written."),
    ("container_network_receive_bytes_total", "counter", "Cumulative count of bytes received."),
    ("container_network_transmit_bytes_total", "counter", "Cumulative count of bytes transmitted."),
    ("container_processes", "gauge", "Number of processes running inside the container."),
    ("container_last_seen", "gauge", "Last time a container was seen by the exporter."),
    ("container_start_time_seconds", "gauge", "Start time of the container since unix epoch in seconds."),
    ("node_cpu_seconds_total", "counter", "Seconds the CPUs spent in each mode."),
    ("node_memory_MemTotal_bytes", "gauge", "Memory information field MemTotal_bytes."),
    ("node_memory_MemAvailable_bytes", "gauge", "Memory information field MemAvailable_bytes."),
    ("node_load1", "gauge", "1m load average."),
    ("node_load5", "gauge", "5m load average."),
    ("node_load15", "gauge", "15m load average."),
    ("node_boot_time_seconds", "gauge", "Node boot time, in unixtime."),
    ("node_context_switches_total", "counter", "Total number of context switches."),
    ("node_intr_total", "counter", "Total number of interrupts serviced."),
    ("node_forks_total", "counter", "Total number of forks."),
    ("node_procs_running", "gauge", "Number of processes in runnable state."),
    ("node_procs_blocked", "gauge", "Number of processes blocked waiting for I/O to complete."),
    ("node_time_seconds", "gauge", "System time in seconds since epoch (1970)."),
    ("node_uname_info", "gauge", "Labeled system information as provided by the uname system call."),
];

pub async fn metadata(State(s): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let known = s.store.label_values(crate::model::METRIC_NAME);
    let wanted = p.get("metric").filter(|m| !m.is_empty());
    let mut data = Map::new();
    for (name, kind, help) in METADATA {
        if known.iter().any(|k| k == name) && wanted.is_none_or(|w| w == *name) {
            data.insert(name.to_string(), json!([{"type": kind, "help": help, "unit": ""}]));
        }
    }
    Ok(success(Json_::Object(data)))
}

pub async fn buildinfo() -> Response {
    success(json!({
        "version": PROMETHEUS_COMPAT_VERSION,
        "revision": concat!("lookout-", env!("CARGO_PKG_VERSION")),
        "branch": "main",
        "buildUser": "lookout",
        "buildDate": "",
        "goVersion": "none (lookout is written in Rust)",
    }))
}

pub async fn rules() -> Response {
    success(json!({"groups": []}))
}

pub async fn exemplars() -> Response {
    success(json!([]))
}

fn secs(t_ms: i64) -> Json_ {
    // Whole seconds print as integers (`4`), others with their millisecond fraction, as Prometheus does.
    if t_ms % 1000 == 0 {
        json!(t_ms / 1000)
    } else {
        json!(t_ms as f64 / 1000.0)
    }
}

fn point(t_ms: i64, v: f64) -> Json_ {
    json!([secs(t_ms), format_value(v)])
}

fn label_map(l: &LabelSet) -> Json_ {
    Json_::Object(l.iter().map(|(k, v)| (k.to_string(), Json_::String(v.to_string()))).collect())
}

#[cfg(test)]
mod tests {
    use crate::model::format_value;

    #[test]
    fn values_print_like_go_format_float() {
        assert_eq!(format_value(2.0), "2");
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(1e21), "1000000000000000000000");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(-0.5), "-0.5");
    }
}
