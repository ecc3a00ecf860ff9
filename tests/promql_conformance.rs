//! PromQL checked against real Prometheus: the same generated series go by remote-write into
//! Debian's Prometheus 2.42 and into the collector, and a catalogue of queries must answer the same.
//!
//! Samples sit 3–4 s past each 15 s mark and every evaluation time, range boundary and `@` time is
//! 7 s past one, so no sample lies on a window's edge: Prometheus 2 closes windows on the left,
//! Prometheus 3 (and lookout) opens them, and that documented difference never decides an answer here.

mod support;

use std::collections::BTreeMap;

use lookout_collector::ingest::remote_write;
use lookout_collector::model::{LabelSet, Samples};
use serde_json::Value;
use support::*;

const STEP_MS: i64 = 15_000;
const POINTS: i64 = 160; // 40 minutes
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// Queries whose answers differ for a documented reason (docs/promql-compatibility.md).
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[
    ("conf_temperature atan2 conf_temperature", "atan2 drops the metric name since Prometheus 2.46"),
    ("increase(conf_fresh_total[2m])", "the zero-point limit of rate extrapolation, changed in Prometheus 2.51"),
    ("rate(conf_fresh_total[5m])", "the zero-point limit of rate extrapolation, changed in Prometheus 2.51"),
    ("rate(conf_fresh_total[5m] offset 30m)", "the zero-point limit of rate extrapolation, changed in Prometheus 2.51"),
];

/// xorshift: the same series on every run, without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Data {
    series: Vec<(LabelSet, Samples)>,
}

impl Data {
    fn add(&mut self, labels: &[(&str, &str)], points: impl IntoIterator<Item = (i64, f64)>) {
        let mut s = Samples::default();
        for (t, v) in points {
            s.ts.push(t);
            s.values.push(v);
        }
        self.series.push((LabelSet::from_pairs(labels.iter().copied()), s));
    }
}

/// Sample i of series k: 3 s plus a few ms past the i-th 15 s mark after `t0`.
fn at(t0: i64, i: i64, k: usize) -> i64 {
    t0 + i * STEP_MS + 3_001 + (k as i64 * 37) % 900
}

fn generate(t0: i64) -> Data {
    let mut d = Data { series: Vec::new() };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut k = 0;

    // Counters with resets.
    for inst in ["i0", "i1", "i2"] {
        for code in ["200", "500"] {
            k += 1;
            let mut v = rng.below(1000) as f64;
            let pts: Vec<(i64, f64)> = (0..POINTS)
                .map(|i| {
                    let reset = (inst == "i1" && i == 50) || (inst == "i2" && code == "500" && i == 100);
                    v = if reset {
                        rng.below(3) as f64
                    } else {
                        v + rng.below(if code == "200" { 10 } else { 3 }) as f64
                    };
                    (at(t0, i, k), v)
                })
                .collect();
            d.add(&[("__name__", "conf_requests_total"), ("job", "api"), ("instance", inst), ("code", code)], pts);
        }
    }

    // A counter born just before its first sample: rate's extrapolation stops at its zero point.
    k += 1;
    let pts: Vec<(i64, f64)> = (0..POINTS).map(|i| (at(t0, i, k), 2.0 + 3.0 * i as f64)).collect();
    d.add(&[("__name__", "conf_fresh_total"), ("job", "api")], pts);

    // Gauges, negative and fractional.
    for (r, room) in ["a", "b", "c"].into_iter().enumerate() {
        k += 1;
        let pts: Vec<(i64, f64)> = (0..POINTS)
            .map(|i| (at(t0, i, k), 10.0 * ((i as f64) / 9.0 + r as f64).sin() + rng.unit() - 0.5))
            .collect();
        d.add(&[("__name__", "conf_temperature"), ("room", room), ("job", "sensors")], pts);
    }

    // A classic histogram per instance, with _sum and _count.
    let bounds = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"];
    for inst in ["i0", "i1"] {
        let mut counts = [0f64; 7];
        let (mut sum, mut count) = (0f64, 0f64);
        let mut rows: Vec<[f64; 9]> = Vec::new();
        for i in 0..POINTS {
            // Observations from before the first sample, so that no bucket starts near zero.
            let n = if i == 0 { 2000 } else { rng.below(20) };
            for _ in 0..n {
                let x = rng.unit() * rng.unit() * if inst == "i1" { 3.0 } else { 1.0 };
                for (b, bound) in bounds.iter().enumerate() {
                    if x <= bound.parse::<f64>().unwrap() {
                        counts[b] += 1.0;
                    }
                }
                sum += x;
                count += 1.0;
            }
            let mut row = [0f64; 9];
            row[..7].copy_from_slice(&counts);
            row[7] = sum;
            row[8] = count;
            rows.push(row);
        }
        for (b, le) in bounds.iter().enumerate() {
            k += 1;
            let pts: Vec<(i64, f64)> = rows.iter().enumerate().map(|(i, r)| (at(t0, i as i64, k), r[b])).collect();
            d.add(&[("__name__", "conf_latency_seconds_bucket"), ("job", "api"), ("instance", inst), ("le", le)], pts);
        }
        for (j, name) in [(7, "conf_latency_seconds_sum"), (8, "conf_latency_seconds_count")] {
            k += 1;
            let pts: Vec<(i64, f64)> = rows.iter().enumerate().map(|(i, r)| (at(t0, i as i64, k), r[j])).collect();
            d.add(&[("__name__", name), ("job", "api"), ("instance", inst)], pts);
        }
    }

    // A gap longer than the 5 minute lookback.
    k += 1;
    let pts: Vec<(i64, f64)> =
        (0..POINTS).filter(|i| !(60..100).contains(i)).map(|i| (at(t0, i, k), (i % 7) as f64)).collect();
    d.add(&[("__name__", "conf_gappy"), ("kind", "gap")], pts);

    // Stale markers: one series ends with one, another comes back after it.
    for kind in ["ends", "resumes"] {
        k += 1;
        let pts: Vec<(i64, f64)> = (0..POINTS)
            .filter(|&i| i <= 80 || (kind == "resumes" && i >= 120))
            .map(|i| (at(t0, i, k), if i == 80 { f64::from_bits(STALE_NAN) } else { (i % 11) as f64 * 1.5 }))
            .collect();
        d.add(&[("__name__", "conf_stale"), ("kind", kind)], pts);
    }

    // Ordinary NaN and infinities as values.
    for kind in ["nan", "inf"] {
        k += 1;
        let pts: Vec<(i64, f64)> = (0..POINTS)
            .map(|i| {
                let v = match (kind, i % 40) {
                    ("nan", 30) => f64::NAN,
                    ("inf", 20) => f64::INFINITY,
                    ("inf", 35) => f64::NEG_INFINITY,
                    _ => (i % 13) as f64,
                };
                (at(t0, i, k), v)
            })
            .collect();
        d.add(&[("__name__", "conf_special"), ("kind", kind)], pts);
    }

    // Info and up series for joins.
    for (n, inst) in ["i0", "i1", "i2"].into_iter().enumerate() {
        k += 1;
        let version = if n == 2 { "1.3" } else { "1.2" };
        let pts: Vec<(i64, f64)> = (0..POINTS).map(|i| (at(t0, i, k), 1.0)).collect();
        d.add(&[("__name__", "conf_build_info"), ("job", "api"), ("instance", inst), ("version", version)], pts);
        k += 1;
        let pts: Vec<(i64, f64)> =
            (0..POINTS).map(|i| (at(t0, i, k), if n == 1 && (70..90).contains(&i) { 0.0 } else { 1.0 })).collect();
        d.add(&[("__name__", "conf_up"), ("job", "api"), ("instance", inst)], pts);
    }
    d
}

fn catalogue() -> Vec<String> {
    let mut q: Vec<String> = Vec::new();
    let mut add = |s: &str| q.push(s.to_string());
    // Selectors, lookback, staleness, gaps.
    for s in [
        "conf_requests_total",
        r#"conf_requests_total{code="500"}"#,
        r#"conf_requests_total{instance=~"i[01]", code!="200"}"#,
        r#"conf_requests_total{instance!~"i1"}"#,
        r#"{__name__=~"conf_(up|build_info)"}"#,
        "conf_gappy",
        "conf_stale",
        "conf_special",
        "conf_temperature",
        "conf_requests_total offset 5m",
        "conf_temperature offset 10m",
        "conf_requests_total offset -2m",
        "conf_up offset 1h",
    ] {
        add(s);
    }
    // Counters.
    for f in ["rate", "irate", "increase", "resets", "changes", "delta", "idelta", "deriv"] {
        for r in ["1m", "5m", "10m"] {
            add(&format!("{f}(conf_requests_total[{r}])"));
        }
    }
    add("rate(conf_requests_total[5m] offset 5m)");
    add("rate(conf_gappy[5m])");
    add("rate(conf_stale[5m])");
    add("changes(conf_stale[10m])");
    add("increase(conf_latency_seconds_count[2m])");
    add("increase(conf_fresh_total[2m])");
    add("rate(conf_fresh_total[5m])");
    add("rate(conf_fresh_total[5m] offset 30m)");
    add("predict_linear(conf_temperature[10m], 600)");
    add("predict_linear(conf_requests_total[5m], 60)");
    add("deriv(conf_temperature[5m])");
    add("delta(conf_temperature[10m])");
    add("idelta(conf_temperature[5m])");
    // *_over_time.
    for f in [
        "avg_over_time",
        "sum_over_time",
        "min_over_time",
        "max_over_time",
        "count_over_time",
        "last_over_time",
        "present_over_time",
        "stddev_over_time",
        "stdvar_over_time",
    ] {
        add(&format!("{f}(conf_temperature[5m])"));
        add(&format!("{f}(conf_gappy[3m])"));
    }
    add("quantile_over_time(0.9, conf_temperature[10m])");
    add("quantile_over_time(0.5, conf_requests_total[5m])");
    add("quantile_over_time(0, conf_temperature[5m])");
    add("absent_over_time(conf_gappy[3m])");
    add(r#"absent_over_time(conf_nothing{job="x"}[5m])"#);
    add("avg_over_time(conf_special[10m])");
    add("max_over_time(conf_special[10m])");
    add("sum_over_time(conf_stale[10m])");
    // Aggregations.
    for a in ["sum", "avg", "min", "max", "count", "group", "stddev", "stdvar"] {
        add(&format!("{a}(conf_requests_total)"));
        add(&format!("{a} by (instance) (rate(conf_requests_total[5m]))"));
        add(&format!("{a} without (code) (conf_requests_total)"));
    }
    add("sum by (code) (rate(conf_requests_total[5m]))");
    add("sum(conf_special)");
    add("avg by (kind) (conf_special)");
    add("topk(2, conf_temperature)");
    add("bottomk(2, conf_temperature)");
    add("topk by (instance) (1, conf_requests_total)");
    add("bottomk(1, rate(conf_requests_total[5m]))");
    add("quantile(0.5, conf_temperature)");
    add("quantile by (instance) (0.9, rate(conf_requests_total[5m]))");
    add("count_values(\"value\", conf_up)");
    add("count_values by (job) (\"v\", conf_gappy)");
    add("count(conf_stale)");
    add("sum(conf_nothing)");
    // Binary operators.
    for op in ["+", "-", "*", "/", "%", "^"] {
        add(&format!("conf_temperature {op} 2"));
        add(&format!(r#"conf_requests_total{{code="500"}} {op} ignoring(code) conf_requests_total{{code="200"}}"#));
    }
    for op in ["==", "!=", ">", "<", ">=", "<="] {
        add(&format!("conf_temperature {op} 0"));
        add(&format!("conf_temperature {op} bool 0"));
        add(&format!(r#"conf_up {op} on(instance) group_left conf_build_info"#));
    }
    add("1 - conf_temperature");
    add("2 ^ 3 ^ 2");
    add("-conf_temperature");
    add("conf_temperature atan2 conf_temperature");
    add("conf_up * on(instance) group_left(version) conf_build_info");
    add("conf_build_info * on(instance) group_right(version) conf_up");
    add("sum by (instance) (rate(conf_requests_total[5m])) / on(instance) group_left(version) conf_build_info");
    add(r#"rate(conf_requests_total{code="500"}[5m]) / ignoring(code) rate(conf_requests_total{code="200"}[5m])"#);
    add("sum by (instance) (rate(conf_requests_total[5m])) and on(instance) conf_up == 1");
    add("conf_requests_total and conf_up");
    add("conf_requests_total and on(instance) conf_up");
    add("conf_temperature or conf_gappy");
    add("conf_up or on(instance) conf_build_info");
    add("conf_requests_total unless on(instance) conf_up == 0");
    add("conf_gappy unless conf_temperature");
    add("conf_special > 5");
    add("conf_special / 0");
    // Functions.
    for f in ["abs", "ceil", "floor", "exp", "sqrt", "ln", "log2", "log10", "sgn", "round", "deg", "rad"] {
        add(&format!("{f}(conf_temperature)"));
    }
    for f in ["sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh"] {
        add(&format!("{f}(conf_temperature / 20)"));
    }
    add("round(conf_temperature, 0.5)");
    add("clamp(conf_temperature, -2, 3)");
    add("clamp_min(conf_temperature, 0)");
    add("clamp_max(conf_temperature, 1)");
    add("clamp(conf_temperature, 5, 1)");
    add(r#"label_replace(conf_up, "host", "$1-x", "instance", "i(.*)")"#);
    add(r#"label_replace(conf_up, "instance", "", "instance", ".*")"#);
    add(r#"label_replace(conf_up, "nomatch", "y", "instance", "zz(.*)")"#);
    add(r#"label_join(conf_build_info, "id", "/", "job", "instance", "version")"#);
    add("histogram_quantile(0.9, rate(conf_latency_seconds_bucket[5m]))");
    add("histogram_quantile(0.5, sum by (le) (rate(conf_latency_seconds_bucket[5m])))");
    add("histogram_quantile(0.99, sum by (le, instance) (rate(conf_latency_seconds_bucket[10m])))");
    add("histogram_quantile(0, conf_latency_seconds_bucket)");
    add("histogram_quantile(1, conf_latency_seconds_bucket)");
    add("histogram_quantile(1.5, conf_latency_seconds_bucket)");
    add("rate(conf_latency_seconds_sum[5m]) / rate(conf_latency_seconds_count[5m])");
    add("absent(conf_nothing)");
    add(r#"absent(conf_nothing{job="a", instance=~"x"})"#);
    add("absent(conf_up)");
    add("sort(conf_temperature)");
    add("sort_desc(conf_temperature)");
    add("sort(rate(conf_requests_total[5m]))");
    add("timestamp(conf_temperature)");
    add("timestamp(conf_stale)");
    add("time()");
    add("vector(1)");
    add("vector(time())");
    add("scalar(conf_up{instance=\"i0\"})");
    add("scalar(conf_up)");
    add("conf_temperature * scalar(conf_up{instance=\"i0\"})");
    add("1 + 1");
    add("pi()");
    // @ and subqueries.
    add("conf_temperature @ end()");
    add("conf_temperature @ start()");
    add("rate(conf_requests_total[5m] @ end())");
    add("max_over_time(conf_temperature[10m:1m])");
    add("max_over_time(rate(conf_requests_total[1m])[10m:30s])");
    add("avg_over_time(rate(conf_requests_total[5m])[30m:5m])");
    add("min_over_time(conf_temperature[5m:1m] offset 5m)");
    add("max_over_time(sum(rate(conf_requests_total[2m]))[15m:1m])");
    add("deriv(sum(conf_requests_total)[10m:1m])");
    // The inner range is not a multiple of the inner step: nested windows would otherwise end exactly
    // on inner evaluation times, where Prometheus 2 (closed) and 3 (open) differ by design.
    add("max_over_time(max_over_time(conf_temperature[5m30s:1m])[20m:5m])");
    q
}

#[derive(Debug, PartialEq)]
enum Answer {
    Error(String),
    Scalar(f64, f64),
    /// Series by their label set (JSON, keys sorted), each with its points; `order` keeps the answer's order.
    Series {
        points: BTreeMap<String, Vec<(f64, f64)>>,
        order: Vec<String>,
    },
}

fn parse_value(v: &Value) -> f64 {
    match v.as_str().expect("value string") {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        s => s.parse().expect("number"),
    }
}

fn point(p: &Value) -> (f64, f64) {
    (p[0].as_f64().expect("time"), parse_value(&p[1]))
}

fn ask(base: &str, path: &str, form: &[(&str, String)]) -> Answer {
    let resp = reqwest::blocking::Client::new().post(format!("{base}{path}")).form(form).send().expect("reachable");
    let status = resp.status().as_u16();
    let body: Value = resp.json().expect("JSON");
    if body["status"] != "success" {
        return Answer::Error(format!("{status} {}", body["errorType"]));
    }
    let data = &body["data"];
    let result = &data["result"];
    match data["resultType"].as_str() {
        Some("scalar") => {
            let (t, v) = point(result);
            Answer::Scalar(t, v)
        }
        Some("vector") | Some("matrix") => {
            let mut points = BTreeMap::new();
            let mut order = Vec::new();
            for s in result.as_array().expect("array") {
                let key = serde_json::to_string(&s["metric"]).unwrap(); // serde_json maps are sorted
                let pts = match s.get("values") {
                    Some(vs) => vs.as_array().unwrap().iter().map(point).collect(),
                    None => vec![point(&s["value"])],
                };
                order.push(key.clone());
                points.insert(key, pts);
            }
            Answer::Series { points, order }
        }
        other => panic!("unexpected resultType {other:?} from {base}"),
    }
}

fn close(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true;
    }
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// Why two answers differ, or None when they agree.
fn difference(ours: &Answer, theirs: &Answer, ordered: bool) -> Option<String> {
    match (ours, theirs) {
        (Answer::Error(a), Answer::Error(b)) => (a != b).then(|| format!("both refuse, differently: {a} vs {b}")),
        (Answer::Scalar(t1, v1), Answer::Scalar(t2, v2)) => {
            (t1 != t2 || !close(*v1, *v2)).then(|| format!("scalar [{t1}, {v1}] vs [{t2}, {v2}]"))
        }
        (Answer::Series { points: a, order: oa }, Answer::Series { points: b, order: ob }) => {
            let only_ours: Vec<&String> = a.keys().filter(|k| !b.contains_key(*k)).collect();
            let only_theirs: Vec<&String> = b.keys().filter(|k| !a.contains_key(*k)).collect();
            if !only_ours.is_empty() || !only_theirs.is_empty() {
                return Some(format!("series only in lookout: {only_ours:?}; only in Prometheus: {only_theirs:?}"));
            }
            for (k, pa) in a {
                let pb = &b[k];
                if pa.len() != pb.len() {
                    return Some(format!("{k}: {} points vs {}", pa.len(), pb.len()));
                }
                for (x, y) in pa.iter().zip(pb) {
                    if x.0 != y.0 || !close(x.1, y.1) {
                        return Some(format!("{k}: point {x:?} vs {y:?}"));
                    }
                }
            }
            (ordered && oa != ob).then(|| format!("order {oa:?} vs {ob:?}"))
        }
        _ => Some(format!("{} vs {}", describe(ours), describe(theirs))),
    }
}

fn describe(a: &Answer) -> String {
    match a {
        Answer::Error(e) => format!("error {e}"),
        Answer::Scalar(t, v) => format!("scalar [{t}, {v}]"),
        Answer::Series { points, .. } => format!("{} series", points.len()),
    }
}

#[test]
fn promql_answers_match_prometheus() {
    let prom = Prometheus::start();
    let dir = tempfile::tempdir().unwrap();
    let lookout = Lookout::collector(dir.path());

    // 45 minutes ago, on a minute: the data ends five minutes before now.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let t0 = now / 60_000 * 60_000 - 45 * 60_000;
    let data = generate(t0);
    let samples: usize = data.series.iter().map(|(_, s)| s.ts.len()).sum();
    for chunk in data.series.chunks(10) {
        let body = remote_write::encode(chunk);
        for (name, base) in [("prometheus", prom.url()), ("lookout", lookout.url())] {
            let (status, text) = remote_write(&base, body.clone());
            assert!((200..300).contains(&status), "{name} refused the write: {status} {text}");
        }
    }
    println!("wrote {} series, {samples} samples to both", data.series.len());

    let secs = |ms: i64| format!("{:.3}", ms as f64 / 1000.0);
    let instants = [t0 + 20 * 60_000 + 7_000, t0 + 40 * 60_000 + 7_000, t0 + 43 * 60_000 + 7_000];
    let ranges =
        [(t0 + 2 * 60_000 + 7_000, t0 + 44 * 60_000 + 7_000, "30"), (t0 + 7_000, t0 + 45 * 60_000 + 7_000, "60")];

    let queries = catalogue();
    assert!(queries.len() >= 150, "the catalogue has {} queries", queries.len());
    let mut failures = Vec::new();
    let mut compared = 0;
    for q in &queries {
        let known = KNOWN_DIFFERENCES.iter().find(|(k, _)| k == q);
        let ordered = q.starts_with("sort");
        let mut calls: Vec<(&str, Vec<(&str, String)>)> = Vec::new();
        for &t in &instants {
            calls.push(("/api/v1/query", vec![("query", q.clone()), ("time", secs(t))]));
        }
        for &(start, end, step) in &ranges {
            calls.push((
                "/api/v1/query_range",
                vec![("query", q.clone()), ("start", secs(start)), ("end", secs(end)), ("step", step.to_string())],
            ));
        }
        let mut differs = false;
        for (path, form) in calls {
            let ours = ask(&lookout.url(), path, &form);
            let theirs = ask(&prom.url(), path, &form);
            compared += 1;
            if let Some(d) = difference(&ours, &theirs, ordered && path == "/api/v1/query") {
                differs = true;
                if known.is_none() {
                    failures.push(format!("{path} {form:?}\n    {d}"));
                }
            }
        }
        if let (false, Some((_, why))) = (differs, known) {
            failures.push(format!("{q}: listed as a known difference ({why}) but now agrees; remove it"));
        }
    }
    println!("{} queries, {compared} comparisons, {} differences", queries.len(), failures.len());
    assert!(failures.is_empty(), "{} differences from Prometheus:\n{}", failures.len(), failures.join("\n"));
}
