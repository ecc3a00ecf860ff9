//! A real collector under hostile and careless requests: every parser the HTTP API reaches gets
//! deeply nested, long and oversized input, each answered with its 400 or 413 while the process
//! keeps answering `1+1`; and a query past its timeout is answered 503 and stops using CPU.

mod support;

use std::time::{Duration, Instant};

use lookout_collector::ingest::remote_write;
use lookout_collector::model::{LabelSet, Samples};
use support::{free_addr, Lookout};

/// The default `[query] max_depth`.
const MAX_DEPTH: usize = 512;
/// A depth every shape below is accepted at (a subquery is two levels of the parsed expression for
/// each bracket).
const ACCEPTED: usize = 200;

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

/// POSTs a form; the status and the body as JSON (`Null` when it is not JSON).
fn post(base: &str, path: &str, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let resp = client().post(format!("{base}{path}")).form(form).send().expect("the collector answers");
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(serde_json::Value::Null))
}

fn get(base: &str, path: &str, query: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let resp = client().get(format!("{base}{path}")).query(query).send().expect("the collector answers");
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(serde_json::Value::Null))
}

fn one_plus_one(base: &str) {
    let (status, body) = post(base, "/api/v1/query", &[("query", "1+1"), ("time", "4")]);
    assert_eq!(status, 200, "1+1 still answers: {body}");
    assert_eq!(body["data"]["result"][1], "2", "{body}");
}

/// `n` levels of `open` around `inner`, closed by `close`.
fn nest(open: &str, inner: &str, close: &str, n: usize) -> String {
    format!("{}{inner}{}", open.repeat(n), close.repeat(n))
}

fn chain(term: &str, op: &str, n: usize) -> String {
    vec![term; n].join(op)
}

/// Queries of each shape at depth `n`, for PromQL.
fn promql_shapes(n: usize) -> Vec<(&'static str, String)> {
    vec![
        ("parentheses", nest("(", "1", ")", n)),
        ("nested calls", nest("abs(", "up", ")", n)),
        ("nested aggregations", nest("sum(", "up", ")", n)),
        ("a chain of +", chain("1", "+", n)),
        ("a chain of or", chain("up", " or ", n)),
        ("nested subqueries", nest("max_over_time(", "up", "[5m:])", n)),
    ]
}

fn logql_metric_shapes(n: usize) -> Vec<(&'static str, String)> {
    vec![
        ("nested aggregations", nest("sum(", r#"count_over_time({job="x"}[1m])"#, ")", n)),
        ("a chain of +", chain("vector(1)", "+", n)),
        ("parentheses", nest("(", "vector(1)", ")", n)),
    ]
}

fn logql_log_shapes(n: usize) -> Vec<(&'static str, String)> {
    vec![
        ("a chain of and", format!(r#"{{job="x"}} | {}"#, chain(r#"a="1""#, " and ", n))),
        ("nested label filters", format!(r#"{{job="x"}} | {}"#, nest("(", r#"a="1""#, ")", n))),
        ("line filters", format!(r#"{{job="x"}}{}"#, r#" |= "a""#.repeat(n))),
    ]
}

/// Whether a refusal names the depth limit.
fn names_depth(body: &serde_json::Value) -> bool {
    body["error"].as_str().is_some_and(|e| e.contains("max_depth"))
}

#[test]
fn every_parser_the_api_reaches_refuses_deep_and_huge_input_and_the_collector_keeps_answering() {
    let _serial = support::serial();
    let dir = tempfile::tempdir().unwrap();
    let collector = Lookout::collector_with(&dir.path().join("c"), free_addr(), free_addr(), "");
    let base = collector.url();
    let (start, end) = ("1000", "4600");

    // PromQL in every endpoint that takes an expression; below the limit an answer, past it a 400
    // that names the limit, far past it the same.
    for n in [10, ACCEPTED, MAX_DEPTH + 1, 100_000] {
        for (shape, q) in promql_shapes(n) {
            let what = format!("PromQL {shape} at depth {n}");
            let (si, bi) = post(&base, "/api/v1/query", &[("query", &q), ("time", end)]);
            let (sr, br) =
                post(&base, "/api/v1/query_range", &[("query", &q), ("start", start), ("end", end), ("step", "60")]);
            for (status, body, endpoint) in [(si, &bi, "query"), (sr, &br, "query_range")] {
                if n <= ACCEPTED {
                    assert!(status == 200 || status == 422, "{what} on {endpoint}: answered {status} {body}");
                } else {
                    // Far past the limit the form body itself may be over its 1 MiB: 413.
                    assert!(status == 400 || n == 100_000 && status == 413, "{what} on {endpoint}: {status} {body}");
                    assert_eq!(body["errorType"], "bad_data", "{what} on {endpoint}: {body}");
                    assert!(names_depth(body) || n == 100_000, "{what} on {endpoint} names max_depth: {body}");
                }
            }
            for path in ["/api/v1/series", "/api/v1/labels", "/api/v1/label/job/values"] {
                // Label values is GET alone; a URL holds no 100,000-level query.
                let (status, body) = if path.ends_with("values") {
                    if q.len() > 8000 {
                        continue;
                    }
                    get(&base, path, &[("match[]", &q)])
                } else {
                    post(&base, path, &[("match[]", &q)])
                };
                assert!(status == 400 || n == 100_000 && status == 413, "{what} as match[] on {path}: {status} {body}");
                if n > MAX_DEPTH {
                    assert!(names_depth(&body) || n == 100_000, "{what} as match[] on {path}: {body}");
                }
            }
        }
        one_plus_one(&base);
    }

    // LogQL: metric queries, log queries, and selectors where Loki takes them.
    for n in [10, ACCEPTED, MAX_DEPTH + 1, 100_000] {
        for (shape, q) in logql_metric_shapes(n).into_iter().chain(logql_log_shapes(n)) {
            let what = format!("LogQL {shape} at depth {n}");
            let (status, body) =
                post(&base, "/loki/api/v1/query_range", &[("query", &q), ("start", start), ("end", end)]);
            let too_deep = n > MAX_DEPTH && shape != "line filters" || n == 100_000;
            if too_deep {
                assert!(status == 400 || n == 100_000 && status == 413, "{what}: {status} {body}");
                assert_eq!(body["errorType"], "bad_data", "{what}: {body}");
            } else {
                assert_eq!(status, 200, "{what}: {body}");
            }
            if q.starts_with('{') {
                for path in ["/loki/api/v1/series", "/loki/api/v1/index/stats"] {
                    let key = if path.ends_with("series") { "match[]" } else { "query" };
                    let (status, body) = post(&base, path, &[(key, &q)]);
                    let expected = if too_deep { [400, 413] } else { [200, 200] };
                    assert!(expected.contains(&status), "{what} on {path}: {status} {body}");
                }
            }
        }
        one_plus_one(&base);
    }

    // Long flat text: past `max_query_bytes` (128 KiB) it is refused before any parser sees it.
    let long = format!(r#"up{{job="{}"}}"#, "x".repeat(200 << 10));
    let (status, body) = post(&base, "/api/v1/query", &[("query", &long)]);
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap_or("").contains("max_query_bytes"), "{body}");
    let (status, body) = post(
        &base,
        "/loki/api/v1/query_range",
        &[("query", &format!(r#"{{job="x"}} |= "{}""#, "y".repeat(200 << 10)))],
    );
    assert_eq!(status, 400, "{body}");

    // A form body over its limit is a 413, a remote-write body over 32 MiB too, and a body that is
    // not snappy, or whose snappy header promises gigabytes, a 400.
    let big = "a".repeat(2 << 20);
    let resp = client().post(format!("{base}/api/v1/query")).form(&[("query", big.as_str())]).send().unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    let (status, _) = support::remote_write(&base, vec![0u8; 33 << 20]);
    assert_eq!(status, 413);
    let (status, text) = support::remote_write(&base, b"not snappy at all".to_vec());
    assert_eq!(status, 400, "{text}");
    let (status, text) = support::remote_write(&base, vec![0xff, 0xff, 0xff, 0xff, 0x0f, 0x00]);
    assert_eq!(status, 400, "{text}");

    // Gate requests: JSON nested far deeper than serde allows, and a check whose PromQL is too deep.
    let deep_json = nest("[", "1", "]", 100_000);
    let resp = client()
        .post(format!("{base}/api/v1/gates"))
        .body(deep_json)
        .header("content-type", "application/json")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let gate = serde_json::json!({
        "service": "web", "version": "v2",
        "checks": [{"name": "deep", "query": nest("abs(", "up", ")", 2 * MAX_DEPTH), "max": 1.0}],
    });
    let resp = client().post(format!("{base}/api/v1/gates")).json(&gate).send().unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().unwrap_or_default();
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("max_depth"), "{text}");

    one_plus_one(&base);
    let metrics = client().get(format!("{base}/metrics")).send().unwrap().text().unwrap();
    let refused: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("lookout_collector_queries_refused_total{reason=\"depth\"}"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(refused >= 10.0, "refusals are counted by reason:\n{metrics}");
}

/// CPU time the process has used, in seconds (utime + stime from /proc).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command's closing parenthesis; utime and stime are the 14th and 15th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[test]
fn a_query_past_its_timeout_is_answered_503_and_stops_using_cpu() {
    let _serial = support::serial();
    let dir = tempfile::tempdir().unwrap();
    let collector =
        Lookout::collector_with(&dir.path().join("c"), free_addr(), free_addr(), "[query]\ntimeout = \"2s\"\n");
    let base = collector.url();
    // 40 series of an hour at 1 s: a quantile over each hour-long window at every second sorts
    // 3,600 samples 144,000 times, far more than 2 s of work.
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64 / 1000 * 1000;
    let first = now - 3_600_000;
    for chunk in 0..4 {
        let series: Vec<(LabelSet, Samples)> = (0..10)
            .map(|i| {
                let labels = LabelSet::from_pairs([
                    ("__name__".to_string(), "load".to_string()),
                    ("i".to_string(), (chunk * 10 + i).to_string()),
                ]);
                let ts: Vec<i64> = (0..3600).map(|k| first + k * 1000).collect();
                let values = ts.iter().map(|t| ((t / 1000) % 97) as f64).collect();
                (labels, Samples { ts, values })
            })
            .collect();
        let (status, text) = support::remote_write(&base, remote_write::encode(&series));
        assert_eq!(status, 204, "{text}");
    }
    let q = "quantile_over_time(0.5, load[1h])";
    let range = [
        ("query", q),
        ("start", &(first / 1000 + 3600).to_string()),
        ("end", &(now / 1000 + 3600).to_string()),
        ("step", "1"),
    ];
    let asked = Instant::now();
    let (status, body) = get(&base, "/api/v1/query_range", &range);
    let answered = asked.elapsed();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["errorType"], "timeout", "{body}");
    assert!(answered < Duration::from_secs(3), "answered {answered:?} after a 2 s timeout");

    // The evaluation stops too: after a moment to reach its next check, the process is idle.
    std::thread::sleep(Duration::from_millis(500));
    let pid = collector.child.id();
    let before = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_seconds(pid) - before;
    assert!(used < 0.3, "the collector used {used:.2} s of CPU in the 2 s after the timeout");
    one_plus_one(&base);
}
