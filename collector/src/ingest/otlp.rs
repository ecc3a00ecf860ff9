//! OpenTelemetry's OTLP over HTTP in: export requests (protobuf) become series and log streams,
//! mapped as Prometheus's OTLP receiver maps metrics and as lookout's gates need them.
//!
//! Metrics: names get their unit and `_total` suffixes (`UnderscoreEscapingWithSuffixes`), sums
//! become counters, non-monotonic sums and gauges gauges, explicit-bucket histograms `_bucket`
//! (cumulative, `le`), `_sum` and `_count`, summaries `quantile` series; resource `service.name`
//! and `service.namespace` give `job`, `service.instance.id` `instance`, and `service.name` and
//! `service.version` lookout's `service` and `version`. Not mapped, and counted as refused:
//! exponential histograms, delta temporality. Exemplars and histogram min/max are dropped.
//! Logs: one stream per service, version and level; the line is the body.

use lookout_proto::otlp::{
    any_value, metric, number_data_point, AnyValue, ExportLogsServiceRequest, ExportMetricsServiceRequest, KeyValue,
    Metric,
};
use prost::Message;

use super::body::{decode_content, media_type, BodyError};
use crate::model::logs::{LogLine, LogStreamIn};
use crate::model::{LabelSet, Samples, METRIC_NAME, STALE_NAN_BITS};
use crate::store::SeriesGroup;

/// Largest request body accepted as it arrives.
pub const MAX_BODY_BYTES: usize = 32 << 20;

const CUMULATIVE: i32 = 2;
const DELTA: i32 = 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OtlpError {
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("unsupported Content-Type {0:?}: lookout takes OTLP as application/x-protobuf")]
    ContentType(String),
    #[error("body is not an OTLP {what} export request (protobuf): {detail}")]
    Protobuf { what: &'static str, detail: String },
}

/// Decoded metrics: one group per resource and scope (labels shared by their points), and what
/// could not be mapped.
#[derive(Debug, Default)]
pub struct Metrics {
    pub groups: Vec<SeriesGroup>,
    pub points: u64,
    pub refused: u64,
    pub first_problem: Option<String>,
}

/// Decoded log records as streams, and what could not be taken.
#[derive(Debug, Default)]
pub struct Logs {
    pub streams: Vec<LogStreamIn>,
    pub records: u64,
    pub refused: u64,
    pub first_problem: Option<String>,
}

fn body<'a>(
    body: &'a [u8],
    content_type: Option<&str>,
    content_encoding: Option<&str>,
) -> Result<std::borrow::Cow<'a, [u8]>, OtlpError> {
    match media_type(content_type).as_deref() {
        None | Some("application/x-protobuf") | Some("application/protobuf") => {}
        Some(other) => return Err(OtlpError::ContentType(other.to_string())),
    }
    Ok(decode_content(body, content_encoding)?)
}

pub fn decode_metrics(
    raw: &[u8],
    content_type: Option<&str>,
    content_encoding: Option<&str>,
) -> Result<Metrics, OtlpError> {
    let raw = body(raw, content_type, content_encoding)?;
    let req = ExportMetricsServiceRequest::decode(raw.as_ref())
        .map_err(|e| OtlpError::Protobuf { what: "metrics", detail: e.to_string() })?;
    let mut out = Metrics::default();
    for rm in req.resource_metrics {
        let common = resource_labels(rm.resource.as_ref().map_or(&[][..], |r| &r.attributes), true);
        for sm in rm.scope_metrics {
            let mut group = SeriesGroup { common: common.clone(), series: Vec::new() };
            for m in sm.metrics {
                out.metric(m, &mut group);
            }
            if !group.series.is_empty() {
                out.groups.push(group);
            }
        }
    }
    Ok(out)
}

impl Metrics {
    fn refuse(&mut self, n: u64, problem: impl FnOnce() -> String) {
        self.refused += n;
        if self.first_problem.is_none() {
            self.first_problem = Some(problem());
        }
    }

    fn metric(&mut self, m: Metric, group: &mut SeriesGroup) {
        let Some(data) = m.data else { return };
        let mut push = |name: String, mut labels: Vec<(String, String)>, t_ns: u64, v: f64| {
            labels.push((METRIC_NAME.to_string(), name));
            labels.sort();
            let ts = (t_ns / 1_000_000) as i64;
            group.series.push((labels, Samples { ts: vec![ts], values: vec![v] }));
        };
        let mut points = 0;
        match data {
            metric::Data::Gauge(g) => {
                let name = prom_name(&m.name, &m.unit, Kind::Gauge);
                for p in g.data_points {
                    points += 1;
                    push(name.clone(), attributes(&p.attributes), p.time_unix_nano, number(&p));
                }
            }
            metric::Data::Sum(s) => {
                if s.aggregation_temporality != CUMULATIVE && s.is_monotonic {
                    return self.refuse(s.data_points.len() as u64, || delta(&m.name, s.aggregation_temporality));
                }
                let kind = if s.is_monotonic { Kind::Counter } else { Kind::Gauge };
                let name = prom_name(&m.name, &m.unit, kind);
                for p in s.data_points {
                    points += 1;
                    push(name.clone(), attributes(&p.attributes), p.time_unix_nano, number(&p));
                }
            }
            metric::Data::Histogram(h) => {
                if h.aggregation_temporality != CUMULATIVE {
                    return self.refuse(h.data_points.len() as u64, || delta(&m.name, h.aggregation_temporality));
                }
                let base = prom_name(&m.name, &m.unit, Kind::Histogram);
                for p in h.data_points {
                    points += 1;
                    let labels = attributes(&p.attributes);
                    let stale = p.flags & 1 == 1;
                    let value = |v: f64| if stale { f64::from_bits(STALE_NAN_BITS) } else { v };
                    let t = p.time_unix_nano;
                    if let Some(sum) = p.sum {
                        push(format!("{base}_sum"), labels.clone(), t, value(sum));
                    }
                    push(format!("{base}_count"), labels.clone(), t, value(p.count as f64));
                    let mut cumulative = 0u64;
                    for (i, bound) in p.explicit_bounds.iter().enumerate() {
                        cumulative += p.bucket_counts.get(i).copied().unwrap_or(0);
                        let mut l = labels.clone();
                        l.push(("le".to_string(), crate::model::format_value(*bound)));
                        push(format!("{base}_bucket"), l, t, value(cumulative as f64));
                    }
                    let mut l = labels;
                    l.push(("le".to_string(), "+Inf".to_string()));
                    push(format!("{base}_bucket"), l, t, value(p.count as f64));
                }
            }
            metric::Data::Summary(s) => {
                let base = prom_name(&m.name, &m.unit, Kind::Summary);
                for p in s.data_points {
                    points += 1;
                    let labels = attributes(&p.attributes);
                    let t = p.time_unix_nano;
                    push(format!("{base}_sum"), labels.clone(), t, p.sum);
                    push(format!("{base}_count"), labels.clone(), t, p.count as f64);
                    for q in p.quantile_values {
                        let mut l = labels.clone();
                        l.push(("quantile".to_string(), crate::model::format_value(q.quantile)));
                        push(base.clone(), l, t, q.value);
                    }
                }
            }
            metric::Data::ExponentialHistogram(h) => {
                return self.refuse(h.data_points.len() as u64, || {
                    format!("metric {:?} is an exponential histogram, which lookout does not store", m.name)
                });
            }
        }
        self.points += points;
    }
}

/// The export answer for metrics: empty, or a partial success counting what was refused and why.
pub fn metrics_response(refused: u64, problem: Option<String>) -> Vec<u8> {
    let partial_success = problem.map(|error_message| lookout_proto::otlp::ExportMetricsPartialSuccess {
        rejected_data_points: refused as i64,
        error_message,
    });
    lookout_proto::otlp::ExportMetricsServiceResponse { partial_success }.encode_to_vec()
}

/// The export answer for logs, as `metrics_response`.
pub fn logs_response(refused: u64, problem: Option<String>) -> Vec<u8> {
    let partial_success = problem.map(|error_message| lookout_proto::otlp::ExportLogsPartialSuccess {
        rejected_log_records: refused as i64,
        error_message,
    });
    lookout_proto::otlp::ExportLogsServiceResponse { partial_success }.encode_to_vec()
}

fn delta(name: &str, temporality: i32) -> String {
    let t = if temporality == DELTA { "delta" } else { "unspecified" };
    format!("metric {name:?} has {t} temporality; lookout stores cumulative metrics only (set the exporter's temporality preference to cumulative)")
}

fn number(p: &lookout_proto::otlp::NumberDataPoint) -> f64 {
    if p.flags & 1 == 1 {
        return f64::from_bits(STALE_NAN_BITS);
    }
    match p.value {
        Some(number_data_point::Value::AsDouble(v)) => v,
        Some(number_data_point::Value::AsInt(v)) => v as f64,
        None => 0.0,
    }
}

pub fn decode_logs(
    raw: &[u8],
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    now_ns: i64,
) -> Result<Logs, OtlpError> {
    let raw = body(raw, content_type, content_encoding)?;
    let req = ExportLogsServiceRequest::decode(raw.as_ref())
        .map_err(|e| OtlpError::Protobuf { what: "logs", detail: e.to_string() })?;
    let mut out = Logs::default();
    for rl in req.resource_logs {
        let common = resource_labels(rl.resource.as_ref().map_or(&[][..], |r| &r.attributes), false);
        for sl in rl.scope_logs {
            for r in sl.log_records {
                let line = r.body.as_ref().map(render).unwrap_or_default();
                if line.len() > super::loki_push::MAX_LINE_BYTES {
                    out.refused += 1;
                    out.first_problem.get_or_insert_with(|| {
                        format!(
                            "log record of {} bytes exceeds the limit of {} bytes",
                            line.len(),
                            super::loki_push::MAX_LINE_BYTES
                        )
                    });
                    continue;
                }
                let time_ns = [r.time_unix_nano, r.observed_time_unix_nano]
                    .into_iter()
                    .find(|&t| t > 0)
                    .map_or(now_ns, |t| t.min(i64::MAX as u64) as i64);
                let mut labels = common.clone();
                if let Some(level) = level(&r.severity_text, r.severity_number) {
                    labels.set("level", level);
                }
                out.records += 1;
                let line = LogLine { time_ns, line };
                match out.streams.iter_mut().find(|s| s.labels == labels) {
                    Some(s) => s.lines.push(line),
                    None => out.streams.push(LogStreamIn { labels, lines: vec![line] }),
                }
            }
        }
    }
    Ok(out)
}

/// A record's level label: its severity text lowercased, or the name of its severity number's
/// range (OTLP's 1–4 trace … 21–24 fatal), or none.
fn level(text: &str, number: i32) -> Option<&'static str> {
    let from_number = match number {
        1..=4 => Some("trace"),
        5..=8 => Some("debug"),
        9..=12 => Some("info"),
        13..=16 => Some("warn"),
        17..=20 => Some("error"),
        21..=24 => Some("fatal"),
        _ => None,
    };
    let from_text = match text.to_ascii_lowercase().as_str() {
        "trace" => Some("trace"),
        "debug" => Some("debug"),
        "info" | "information" | "notice" => Some("info"),
        "warn" | "warning" => Some("warn"),
        "error" | "err" => Some("error"),
        "fatal" | "critical" | "crit" | "emergency" | "alert" => Some("fatal"),
        _ => None,
    };
    from_text.or(from_number)
}

/// The labels a resource gives its series (`job`, `instance` for metrics, as Prometheus's receiver
/// does) and streams: lookout's `service` and `version`.
fn resource_labels(attrs: &[KeyValue], scrape_labels: bool) -> LabelSet {
    let get = |k: &str| attrs.iter().find(|a| a.key == k).and_then(|a| a.value.as_ref()).map(render);
    let mut labels = LabelSet::default();
    let name = get("service.name").filter(|s| !s.is_empty());
    if let Some(n) = &name {
        labels.set("service", n);
    }
    if let Some(v) = get("service.version").filter(|s| !s.is_empty()) {
        labels.set("version", &v);
    }
    if scrape_labels {
        if let Some(n) = &name {
            let job = match get("service.namespace").filter(|s| !s.is_empty()) {
                Some(ns) => format!("{ns}/{n}"),
                None => n.clone(),
            };
            labels.set("job", &job);
        }
        if let Some(i) = get("service.instance.id").filter(|s| !s.is_empty()) {
            labels.set("instance", &i);
        }
    }
    labels
}

/// Point attributes as labels, their keys made valid label names as Prometheus makes them.
fn attributes(attrs: &[KeyValue]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(attrs.len());
    for a in attrs {
        let value = a.value.as_ref().map(render).unwrap_or_default();
        if value.is_empty() {
            continue;
        }
        let key = label_name(&a.key);
        // Two keys that become one label name are joined with ";", as Prometheus joins them.
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => {
                v.push(';');
                v.push_str(&value);
            }
            None => out.push((key, value)),
        }
    }
    out
}

fn label_name(key: &str) -> String {
    let mut s: String = key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert_str(0, "key_");
    } else if s.starts_with('_') && !s.starts_with("__") {
        s.insert_str(0, "key");
    }
    s
}

/// An attribute or body value as text: strings as they are, numbers and booleans as written, lists
/// and maps as JSON.
fn render(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(other) => json(other).to_string(),
        None => String::new(),
    }
}

fn json(v: &any_value::Value) -> serde_json::Value {
    use any_value::Value as V;
    match v {
        V::StringValue(s) => serde_json::Value::String(s.clone()),
        V::BoolValue(b) => serde_json::Value::Bool(*b),
        V::IntValue(i) => serde_json::Value::from(*i),
        V::DoubleValue(d) => {
            serde_json::Number::from_f64(*d).map_or(serde_json::Value::Null, serde_json::Value::Number)
        }
        V::BytesValue(b) => serde_json::Value::String(b.iter().map(|x| format!("{x:02x}")).collect()),
        V::ArrayValue(a) => serde_json::Value::Array(
            a.values.iter().map(|x| x.value.as_ref().map_or(serde_json::Value::Null, json)).collect(),
        ),
        V::KvlistValue(kv) => serde_json::Value::Object(
            kv.values
                .iter()
                .map(|x| {
                    (
                        x.key.clone(),
                        x.value.as_ref().and_then(|v| v.value.as_ref()).map_or(serde_json::Value::Null, json),
                    )
                })
                .collect(),
        ),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

/// A metric's Prometheus name with its unit and type suffixes, as Prometheus's OTLP receiver builds
/// it by default: the name's words joined by `_`, the unit's name (`By` → `bytes`, `ms` →
/// `milliseconds`, `m/s` → `meters_per_second`, `{things}` → nothing) unless a word already is it,
/// `_ratio` for a gauge of unit `1`, `_total` for a counter.
fn prom_name(name: &str, unit: &str, kind: Kind) -> String {
    let mut words: Vec<String> =
        name.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_string).collect();
    let unit = strip_braces(unit);
    let (main, per) = match unit.split_once('/') {
        Some((m, p)) => (m.trim(), Some(p.trim())),
        None => (unit.trim(), None),
    };
    let main = main_unit(main);
    if !main.is_empty() && !words.iter().any(|w| w == main) {
        words.push(main.to_string());
    }
    if let Some(per) = per.map(per_unit).filter(|p| !p.is_empty()) {
        if !words.iter().any(|w| w == per) {
            words.push("per".to_string());
            words.push(per.to_string());
        }
    }
    if kind == Kind::Counter {
        words.retain(|w| w != "total");
        words.push("total".to_string());
    }
    if unit == "1" && kind == Kind::Gauge && !words.iter().any(|w| w == "ratio") {
        words.push("ratio".to_string());
    }
    let mut out = words.join("_");
    if out.starts_with(|c: char| c.is_ascii_digit()) || out.is_empty() {
        out.insert(0, '_');
    }
    out
}

fn strip_braces(unit: &str) -> String {
    let mut out = String::with_capacity(unit.len());
    let mut depth = 0;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

fn main_unit(u: &str) -> &str {
    match u {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        "1" => "",
        other if other.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => other,
        _ => "",
    }
}

fn per_unit(u: &str) -> &str {
    match u {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        other if other.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => other,
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lookout_proto::otlp::*;
    use proptest::prelude::*;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue { key: k.into(), value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }) }
    }

    #[test]
    fn names_get_prometheus_suffixes() {
        assert_eq!(
            prom_name("http.server.request.duration", "s", Kind::Histogram),
            "http_server_request_duration_seconds"
        );
        assert_eq!(prom_name("orders", "{order}", Kind::Counter), "orders_total");
        assert_eq!(prom_name("orders_total", "1", Kind::Counter), "orders_total");
        assert_eq!(prom_name("queue.size", "By", Kind::Gauge), "queue_size_bytes");
        assert_eq!(prom_name("cpu.utilization", "1", Kind::Gauge), "cpu_utilization_ratio");
        assert_eq!(prom_name("speed", "m/s", Kind::Gauge), "speed_meters_per_second");
        assert_eq!(prom_name("latency_seconds", "s", Kind::Gauge), "latency_seconds");
        assert_eq!(prom_name("2xx", "", Kind::Gauge), "_2xx");
    }

    #[test]
    fn attribute_keys_become_label_names() {
        assert_eq!(label_name("http.route"), "http_route");
        assert_eq!(label_name("0day"), "key_0day");
        assert_eq!(label_name("_x"), "key_x");
        let a = attributes(&[kv("a.b", "1"), kv("a_b", "2"), kv("empty", "")]);
        assert_eq!(a, vec![("a_b".to_string(), "1;2".to_string())]);
    }

    fn request(metrics: Vec<Metric>) -> Vec<u8> {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", "shop"),
                        kv("service.version", "1.4.2"),
                        kv("service.instance.id", "i-1"),
                    ],
                }),
                scope_metrics: vec![ScopeMetrics { scope: None, metrics }],
            }],
        }
        .encode_to_vec()
    }

    fn series(m: &Metrics) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = m
            .groups
            .iter()
            .flat_map(|g| {
                g.series.iter().map(|(own, s)| {
                    let mut l = g.common.clone();
                    own.iter().for_each(|(k, v)| l.set(k, v));
                    (l.to_string(), s.values[0])
                })
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    #[test]
    fn a_cumulative_histogram_becomes_buckets_sum_and_count() {
        let h = Metric {
            name: "rpc.duration".into(),
            unit: "ms".into(),
            description: String::new(),
            data: Some(metric::Data::Histogram(Histogram {
                aggregation_temporality: CUMULATIVE,
                data_points: vec![HistogramDataPoint {
                    attributes: vec![kv("method", "get")],
                    time_unix_nano: 1_700_000_000_123_000_000,
                    count: 6,
                    sum: Some(42.5),
                    bucket_counts: vec![1, 2, 3],
                    explicit_bounds: vec![5.0, 10.0],
                    ..Default::default()
                }],
            })),
        };
        let m = decode_metrics(&request(vec![h]), Some("application/x-protobuf"), None).unwrap();
        let common = r#"instance="i-1", job="shop", method="get", service="shop", version="1.4.2""#;
        let bucket = |le: &str, v: f64| {
            (
                format!(
                    r#"rpc_duration_milliseconds_bucket{{instance="i-1", job="shop", le="{le}", method="get", service="shop", version="1.4.2"}}"#
                ),
                v,
            )
        };
        assert_eq!(
            series(&m),
            vec![
                bucket("+Inf", 6.0),
                bucket("10", 3.0),
                bucket("5", 1.0),
                (format!("rpc_duration_milliseconds_count{{{common}}}"), 6.0),
                (format!("rpc_duration_milliseconds_sum{{{common}}}"), 42.5),
            ]
        );
        let ts = m.groups[0].series[0].1.ts[0];
        assert_eq!(ts, 1_700_000_000_123, "nanoseconds become milliseconds");
    }

    #[test]
    fn sums_gauges_and_what_is_not_mapped() {
        let point = |v: i64| NumberDataPoint {
            value: Some(number_data_point::Value::AsInt(v)),
            time_unix_nano: 1_700_000_000_000_000_000,
            ..Default::default()
        };
        let metric = |name: &str, data| Metric {
            name: name.into(),
            unit: String::new(),
            description: String::new(),
            data: Some(data),
        };
        let m = decode_metrics(
            &request(vec![
                metric(
                    "orders",
                    metric::Data::Sum(Sum {
                        data_points: vec![point(7)],
                        aggregation_temporality: CUMULATIVE,
                        is_monotonic: true,
                    }),
                ),
                metric(
                    "inflight",
                    metric::Data::Sum(Sum {
                        data_points: vec![point(-2)],
                        aggregation_temporality: CUMULATIVE,
                        is_monotonic: false,
                    }),
                ),
                metric("temp", metric::Data::Gauge(Gauge { data_points: vec![point(21)] })),
                metric(
                    "deltas",
                    metric::Data::Sum(Sum {
                        data_points: vec![point(1)],
                        aggregation_temporality: DELTA,
                        is_monotonic: true,
                    }),
                ),
                metric(
                    "expo",
                    metric::Data::ExponentialHistogram(ExponentialHistogram { data_points: vec![Default::default()] }),
                ),
            ]),
            None,
            None,
        )
        .unwrap();
        let names: Vec<(String, f64)> =
            series(&m).into_iter().map(|(l, v)| (l.split('{').next().unwrap().to_string(), v)).collect();
        assert_eq!(names, vec![("inflight".into(), -2.0), ("orders_total".into(), 7.0), ("temp".into(), 21.0)]);
        assert_eq!((m.points, m.refused), (3, 2));
        assert!(m.first_problem.unwrap().contains("delta temporality"));
    }

    #[test]
    fn log_records_become_streams_by_service_version_and_level() {
        let record = |sev: i32, text: &str, body: &str| LogRecord {
            time_unix_nano: 1_700_000_000_000_000_001,
            severity_number: sev,
            severity_text: text.into(),
            body: Some(AnyValue { value: Some(any_value::Value::StringValue(body.into())) }),
            ..Default::default()
        };
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource { attributes: vec![kv("service.name", "shop"), kv("service.version", "2")] }),
                scope_logs: vec![ScopeLogs {
                    scope: None,
                    log_records: vec![
                        record(17, "ERROR", "boom"),
                        record(9, "", "fine"),
                        record(17, "", "again"),
                        record(0, "", "plain"),
                    ],
                }],
            }],
        }
        .encode_to_vec();
        let l = decode_logs(&req, Some("application/x-protobuf"), None, 5).unwrap();
        let got: Vec<(String, Vec<&str>)> = l
            .streams
            .iter()
            .map(|s| (s.labels.to_string(), s.lines.iter().map(|l| l.line.as_str()).collect()))
            .collect();
        assert_eq!(
            got,
            vec![
                (r#"{level="error", service="shop", version="2"}"#.to_string(), vec!["boom", "again"]),
                (r#"{level="info", service="shop", version="2"}"#.to_string(), vec!["fine"]),
                (r#"{service="shop", version="2"}"#.to_string(), vec!["plain"]),
            ]
        );
        assert_eq!(l.streams[0].lines[0].time_ns, 1_700_000_000_000_000_001);
        assert!(matches!(decode_logs(b"{}", Some("application/json"), None, 0), Err(OtlpError::ContentType(_))));
        assert!(matches!(decode_logs(b"\xff\xff", None, None, 0), Err(OtlpError::Protobuf { .. })));
    }

    proptest! {
        #[test]
        fn no_body_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_metrics(&bytes, None, None);
            let _ = decode_logs(&bytes, None, None, 0);
        }

        #[test]
        fn names_are_valid_metric_names(name in "\\PC{0,30}", unit in "\\PC{0,8}") {
            let n = prom_name(&name, &unit, Kind::Counter);
            prop_assert!(super::super::convert::valid_metric_name(&n), "{n:?}");
        }
    }
}
