//! Pushes in from clients nobody here wrote: python-logging-loki's handler and OpenTelemetry's
//! Python SDK with its OTLP/HTTP exporters, plus Loki's API edge cases (JSON, protobuf, gzip,
//! the out-of-order window), each stored or refused as Loki would, and read back by LogQL and PromQL.

mod support;

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use lookout_collector::ingest::loki_push;
use lookout_collector::model::logs::LogLine;
use lookout_collector::model::LabelSet;
use serde_json::Value;
use support::*;

/// The test clients' Python, with the packages of tests/support/requirements.txt (scripts/test
/// makes it).
fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let py = root.join("target/test-python/bin/python");
    assert!(
        py.exists(),
        "{} is missing: the push tests run real clients from PyPI; make it with \
         `python3 -m venv target/test-python && target/test-python/bin/pip install -r tests/support/requirements.txt` \
         (scripts/test does)",
        py.display()
    );
    py
}

fn run_client(script: &str, args: &[&str]) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(python()).arg(root.join("tests/support").join(script)).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{script} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
}

/// A LogQL log query over the last hour: each stream's labels and lines, oldest first.
fn logs(base: &str, query: &str) -> Vec<(Value, Vec<String>)> {
    let now = now_ns();
    let v: Value = reqwest::blocking::Client::new()
        .get(format!("{base}/loki/api/v1/query_range"))
        .query(&[
            ("query", query.to_string()),
            ("start", (now - 3 * 3600 * 1_000_000_000).to_string()),
            ("end", (now + 60_000_000_000).to_string()),
            ("limit", "5000".to_string()),
            ("direction", "forward".to_string()),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["status"], "success", "{query}: {v}");
    let mut out: Vec<(Value, Vec<String>)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let lines = s["values"].as_array().unwrap().iter().map(|p| p[1].as_str().unwrap().to_string()).collect();
            (s["stream"].clone(), lines)
        })
        .collect();
    out.sort_by_key(|s| s.0.to_string());
    out
}

fn push(base: &str, content_type: &str, encoding: Option<&str>, body: Vec<u8>) -> (u16, String) {
    let mut req =
        reqwest::blocking::Client::new().post(format!("{base}/loki/api/v1/push")).header("content-type", content_type);
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    let r = req.body(body).send().unwrap();
    (r.status().as_u16(), r.text().unwrap_or_default())
}

#[test]
fn a_python_loki_handler_pushes_lines_that_logql_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let lookout = Lookout::collector(dir.path());
    run_client("loki_handler.py", &[&lookout.url(), "40"]);
    let got = eventually(Duration::from_secs(10), "the handler's lines", || {
        Some(logs(&lookout.url(), r#"{application="billing"}"#)).filter(|s| !s.is_empty())
    });
    assert_eq!(got.len(), 1, "{got:?}");
    let (labels, lines) = &got[0];
    assert_eq!(labels["service"], "billing");
    assert_eq!(labels["severity"], "warning", "the handler's own level label is kept: {labels}");
    let want: Vec<String> = (0..40).map(|i| format!("invoice {i} overdue")).collect();
    assert_eq!(lines, &want);
    let metrics = reqwest::blocking::get(format!("{}/metrics", lookout.url())).unwrap().text().unwrap();
    assert!(
        metrics.contains("lookout_collector_push_requests_total{api=\"loki\"} 40"),
        "one request a record: {metrics}"
    );
}

#[test]
fn loki_push_edge_cases_are_stored_or_refused_as_loki_does() {
    let dir = tempfile::tempdir().unwrap();
    let lookout = Lookout::collector(dir.path());
    let base = lookout.url();
    let now = now_ns();
    let json = |streams: Value| serde_json::to_vec(&serde_json::json!({ "streams": streams })).unwrap();

    // Nanosecond string timestamps, structured metadata, an empty stream: 204, every line kept.
    let body = json(serde_json::json!([
        {"stream": {"app": "edge", "case": "plain"}, "values": [[(now - 3).to_string(), "first"], [(now - 2).to_string(), "second", {"trace_id": "0af7651916cd43dd"}]]},
        {"stream": {"app": "edge", "case": "empty"}, "values": []}
    ]));
    assert_eq!(push(&base, "application/json", None, body), (204, String::new()));
    let got = logs(&base, r#"{app="edge"}"#);
    assert_eq!(got.len(), 1, "the empty stream stores nothing: {got:?}");
    assert_eq!(got[0].1, ["first", "second"]);

    // A 1 MiB line beside a valid one: 400 with Loki's message; the valid line is stored.
    let long = "x".repeat(1 << 20);
    let body = json(
        serde_json::json!([{"stream": {"app": "edge", "case": "long"}, "values": [[now.to_string(), long], [now.to_string(), "short"]]}]),
    );
    let (status, text) = push(&base, "application/json", None, body);
    assert_eq!(status, 400);
    assert!(text.contains("max entry size '262144' bytes exceeded"), "{text}");
    assert_eq!(logs(&base, r#"{case="long"}"#)[0].1, ["short"]);

    // Invalid UTF-8 is stored with replacement characters, as Loki's decoder leaves it.
    let mut body =
        format!(r#"{{"streams":[{{"stream":{{"app":"edge","case":"utf8"}},"values":[["{now}","bad "#).into_bytes();
    body.extend_from_slice(b"\xc3\x28 bytes\"]]}]}");
    assert_eq!(push(&base, "application/json", None, body).0, 204);
    assert_eq!(logs(&base, r#"{case="utf8"}"#)[0].1, ["bad \u{fffd}( bytes"]);

    // gzip-encoded JSON, and protobuf from our own small client, snappy as Loki wants it.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&json(
        serde_json::json!([{"stream": {"app": "edge", "case": "gzip"}, "values": [[now.to_string(), "zipped"]]}]),
    ))
    .unwrap();
    assert_eq!(push(&base, "application/json", Some("gzip"), gz.finish().unwrap()).0, 204);
    assert_eq!(logs(&base, r#"{case="gzip"}"#)[0].1, ["zipped"]);
    let labels = LabelSet::from_pairs([("app", "edge"), ("case", "proto")]);
    let lines: Vec<LogLine> = (0..1000).map(|i| LogLine { time_ns: now - 1000 + i, line: format!("p{i}") }).collect();
    assert_eq!(push(&base, "application/x-protobuf", None, loki_push::encode(&[(&labels, &lines)], false)).0, 204);
    assert_eq!(logs(&base, r#"{case="proto"}"#)[0].1.len(), 1000);

    // Out of order within a stream: 30 minutes behind its newest is taken (Loki 3's window is an
    // hour), two hours behind is refused with Loki's message.
    let ooo = |ago_ns: i64, line: &str| {
        json(
            serde_json::json!([{"stream": {"app": "edge", "case": "proto"}, "values": [[(now - ago_ns).to_string(), line]]}]),
        )
    };
    assert_eq!(push(&base, "application/json", None, ooo(30 * 60 * 1_000_000_000, "late")).0, 204);
    let (status, text) = push(&base, "application/json", None, ooo(2 * 3600 * 1_000_000_000, "too late"));
    assert_eq!(status, 400);
    assert!(text.starts_with("entry too far behind"), "{text}");
    let lines = &logs(&base, r#"{case="proto"}"#)[0].1;
    assert_eq!(
        (lines.len(), lines[0].as_str()),
        (1001, "late"),
        "the late line sorts first; the too late one is not stored"
    );

    // Bodies Loki refuses outright.
    assert_eq!(push(&base, "application/json", None, b"{".to_vec()).0, 400);
    assert_eq!(push(&base, "application/x-protobuf", None, b"not snappy".to_vec()).0, 400);
    assert_eq!(push(&base, "text/plain", None, b"x".to_vec()).0, 415);
    let (status, text) = push(
        &base,
        "application/json",
        None,
        json(serde_json::json!([{"stream": {}, "values": [[now.to_string(), "x"]]}])),
    );
    assert_eq!((status, text.trim()), (400, "error at least one label pair is required per stream"));
}

#[test]
fn the_opentelemetry_python_sdk_exports_metrics_and_logs_that_promql_and_logql_read() {
    let dir = tempfile::tempdir().unwrap();
    let lookout = Lookout::collector(dir.path());
    let base = lookout.url();
    run_client("otlp_client.py", &[&base]);

    let one = |q: &str| {
        let r = instant(&base, q);
        assert_eq!(r.len(), 1, "{q}: {r:?}");
        value(&r[0])
    };
    // A counter with _total and the resource as job, instance, service and version.
    assert_eq!(
        one(r#"orders_total{job="shop", instance="shop-1", service="shop", version="1.4.2", payment="card"}"#),
        5.0
    );
    // A gauge with its unit's name.
    assert_eq!(one("room_temperature_celsius"), 21.5);
    // An explicit-bucket histogram: cumulative buckets, sum and count, usable by histogram_quantile.
    assert_eq!(one(r#"rpc_duration_milliseconds_bucket{le="5"}"#), 1.0);
    assert_eq!(one(r#"rpc_duration_milliseconds_bucket{le="10"}"#), 2.0);
    assert_eq!(one(r#"rpc_duration_milliseconds_bucket{le="+Inf"}"#), 3.0);
    assert_eq!(one("rpc_duration_milliseconds_sum"), 22.0);
    assert_eq!(one("rpc_duration_milliseconds_count"), 3.0);
    let median = one("histogram_quantile(0.5, rpc_duration_milliseconds_bucket)");
    assert!((5.0..=10.0).contains(&median), "{median}");

    // Log records: one stream per service, version and level.
    let got = logs(&base, r#"{service="shop"}"#);
    let by_level: Vec<(String, Vec<String>)> =
        got.iter().map(|(l, lines)| (l["level"].as_str().unwrap_or("").to_string(), lines.clone())).collect();
    assert_eq!(
        by_level,
        vec![
            ("error".to_string(), vec!["payment declined for order 17".to_string()]),
            ("info".to_string(), vec!["order 18 placed".to_string()]),
            ("warn".to_string(), vec!["stock low".to_string()]),
        ]
    );
    assert!(got.iter().all(|(l, _)| l["version"] == "1.4.2"), "{got:?}");
    // What gates read: the error rate of a version, by LogQL.
    let errors = api(
        &base,
        "/loki/api/v1/query",
        &[("query", r#"sum(count_over_time({service="shop", version="1.4.2", level="error"}[10m]))"#)],
    );
    assert_eq!(errors["result"][0]["value"][1], "1", "{errors}");
}
