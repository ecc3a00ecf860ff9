//! Container logs end to end: a container's lines, read from Docker's json-file log by the agent,
//! stored by the collector and read back through the Loki API, each exactly once and tagged, also
//! when the whole `lookout up` process is killed with SIGKILL while the container writes.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

/// Lines with their stream labels, oldest first.
fn loki_lines(base: &str, query: &str) -> Vec<(Value, String)> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let form = [
        ("query", query.to_string()),
        ("start", (now - 600_000_000_000).to_string()),
        ("end", (now + 1_000_000_000).to_string()),
        ("limit", "5000".to_string()),
        ("direction", "forward".to_string()),
    ];
    let resp = reqwest::blocking::Client::new()
        .post(format!("{base}/loki/api/v1/query_range"))
        .form(&form)
        .send()
        .expect("collector reachable");
    let body: Value = resp.json().unwrap();
    assert_eq!(body["status"], "success", "{body}");
    assert_eq!(body["data"]["resultType"], "streams");
    let mut out = Vec::new();
    for st in body["data"]["result"].as_array().unwrap() {
        for v in st["values"].as_array().unwrap() {
            let ns: i64 = v[0].as_str().unwrap().parse().unwrap();
            out.push((ns, st["stream"].clone(), v[1].as_str().unwrap().to_string()));
        }
    }
    // In time order across streams (a flagged line is in a stream of its own); stable, so each
    // stream keeps its order.
    out.sort_by_key(|(ns, _, _)| *ns);
    out.into_iter().map(|(_, s, t)| (s, t)).collect()
}

#[test]
fn every_line_arrives_once_tagged_across_a_kill_of_lookout() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let script = r#"
        i=0
        while [ $i -lt 3000 ]; do
            printf 'n=%05d hello from the container\n' $i
            if [ $((i % 1000)) = 500 ]; then printf 'n=%05d err ' $i >&2; head -c 20000 /dev/zero | tr '\0' 'E' >&2; echo >&2; fi
            if [ $((i % 100)) = 0 ]; then usleep 200000; fi
            i=$((i+1))
        done
        echo finished >&2
        sleep 100000
    "#;
    let c = TestContainer::run(
        "logs",
        &["--label", "lookout.service=logsvc", "--label", "lookout.version=2.0"],
        &["sh", "-c", script],
    );
    let (http, grpc) = (free_addr(), free_addr());
    let mut lookout = Lookout::up_on(dir.path(), http, grpc, &[]);
    let base = lookout.url();
    let q = format!(r#"{{container="{}"}}"#, c.name);
    // Some lines in, then SIGKILL mid-stream, then start again on the same data.
    eventually(Duration::from_secs(30), "the first lines", || (loki_lines(&base, &q).len() > 200).then_some(()));
    lookout.kill9();
    std::thread::sleep(Duration::from_millis(1500));
    let lookout = Lookout::up_on(dir.path(), http, grpc, &[]);
    let lines = eventually(Duration::from_secs(60), "the container's last line", || {
        let l = loki_lines(&lookout.url(), &q);
        l.iter().any(|(_, t)| t == "finished").then_some(l)
    });

    let numbers: Vec<usize> = lines
        .iter()
        .filter(|(s, t)| s["stream"] == "stdout" && t.starts_with("n="))
        .map(|(_, t)| t[2..7].parse().unwrap())
        .collect();
    let repeated = numbers.windows(2).filter(|w| w[1] <= w[0]).count();
    let missing: Vec<usize> = (0..3000).filter(|n| !numbers.contains(n)).take(10).collect();
    assert!(
        repeated == 0 && missing.is_empty() && numbers.len() == 3000,
        "every stdout line once, in order: {} lines, {repeated} out of order or repeated, missing {missing:?}...",
        numbers.len()
    );
    let long: Vec<&String> =
        lines.iter().filter(|(s, _)| s["stream"] == "stderr").map(|(_, t)| t).filter(|t| t.contains(" err ")).collect();
    assert_eq!(long.len(), 3, "the three long stderr lines");
    assert!(long.iter().all(|t| t.len() == 12 + 20_000), "each long line joined from Docker's 16 KiB pieces");
    let (stream, _) = &lines[0];
    assert_eq!(stream["container"], c.name.as_str());
    assert_eq!(stream["container_id"], c.id.as_str());
    assert_eq!(stream["service"], "logsvc");
    assert_eq!(stream["version"], "2.0");
    assert_eq!(stream["image"], IMAGE);
    assert!(stream["host"].as_str().is_some_and(|h| !h.is_empty()));

    // Grafana's Loki "Save & test", and a metric query a panel would chart.
    let get = |path: &str, q: &[(&str, &str)]| -> Value {
        reqwest::blocking::Client::new()
            .get(format!("{}{path}", lookout.url()))
            .query(q)
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let test = get("/loki/api/v1/query", &[("query", "vector(1)+vector(1)"), ("time", "4000000000")]);
    assert_eq!(test["data"]["result"][0]["value"][1], "2", "{test}");
    let counts = get(
        "/loki/api/v1/query",
        &[("query", &format!(r#"sum by (stream) (count_over_time({{container="{}"}}[10m]))"#, c.name))],
    );
    let count = |stream: &str| -> Option<String> {
        counts["data"]["result"].as_array()?.iter().find(|r| r["metric"]["stream"] == stream)?["value"][1]
            .as_str()
            .map(str::to_string)
    };
    assert_eq!((count("stdout").as_deref(), count("stderr").as_deref()), (Some("3000"), Some("4")), "{counts}");
    let labels = get("/loki/api/v1/labels", &[]);
    assert!(labels["data"].as_array().unwrap().iter().any(|l| l == "service"), "{labels}");

    // A LogQL line filter, and a bad query's error naming the column.
    let errs = loki_lines(&lookout.url(), &format!(r#"{{container="{}", stream="stderr"}} |= "finished""#, c.name));
    assert_eq!(errs.len(), 1);
    let resp = reqwest::blocking::Client::new()
        .get(format!("{}/loki/api/v1/query_range", lookout.url()))
        .query(&[("query", r#"{container="x" |= "y""#)])
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().unwrap();
    assert!(body["error"].as_str().unwrap().contains("col 16"), "{body}");

    // What Grafana's Loki data source calls besides queries: series, index/stats, label values of
    // one selector.
    let sel = format!(r#"{{container="{}"}}"#, c.name);
    let series = get("/loki/api/v1/series", &[("match[]", &sel)]);
    let streams: Vec<&str> =
        series["data"].as_array().unwrap().iter().map(|s| s["stream"].as_str().unwrap_or("")).collect();
    assert_eq!(streams, ["stderr", "stdout"], "{series}");
    let stats = get("/loki/api/v1/index/stats", &[("query", &sel)]);
    assert_eq!(stats["streams"], 2, "{stats}");
    assert_eq!(stats["entries"], 3004, "3000 stdout lines, 3 long ones and `finished`: {stats}");
    assert!(stats["bytes"].as_u64().unwrap() > 3000 * 30 + 60_000, "{stats}");
    let values = get("/loki/api/v1/label/stream/values", &[("query", &sel)]);
    assert_eq!(values["data"], serde_json::json!(["stderr", "stdout"]));

    // The logfmt parser and a numeric label filter over the container's `n=<number>` lines.
    let q = format!(r#"{{container="{}", stream="stdout"}} | logfmt | n >= 2990 | line_format "{{{{.n}}}}""#, c.name);
    let texts: Vec<String> = loki_lines(&lookout.url(), &q).into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts, (2990..3000).map(|i| format!("{i:05}")).collect::<Vec<_>>());
}

/// A live tail over Loki's websocket: the history first, then lines as they are committed.
#[test]
fn a_tail_sends_history_then_new_lines_as_they_arrive() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let tag = format!("tail{}", std::process::id());
    let first = TestContainer::run(
        "tail1",
        &["--label", &format!("lookout.service={tag}")],
        &["sh", "-c", "echo history line; sleep 100000"],
    );
    let lookout = Lookout::up(dir.path(), &[]);
    let sel = format!(r#"{{service="{tag}"}} |= "line""#);
    eventually(Duration::from_secs(30), "the first container's line", || {
        (loki_lines(&lookout.url(), &sel).len() == 1).then_some(())
    });
    let url =
        format!("ws://{}/loki/api/v1/tail?query={}", lookout.url().trim_start_matches("http://"), urlencode(&sel));
    let (mut ws, _) = tungstenite::connect(url).expect("the tail websocket opens");
    let mut next_lines = || -> Vec<(String, String)> {
        let msg = ws.read().expect("a tail message");
        let body: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
        let mut out = Vec::new();
        for st in body["streams"].as_array().unwrap() {
            for v in st["values"].as_array().unwrap() {
                out.push((st["stream"]["container"].as_str().unwrap().to_string(), v[1].as_str().unwrap().to_string()));
            }
        }
        out
    };
    assert_eq!(next_lines(), [(first.name.clone(), "history line".to_string())]);
    let second = TestContainer::run(
        "tail2",
        &["--label", &format!("lookout.service={tag}")],
        &["sh", "-c", "echo skipped; echo live line 1; echo live line 2; sleep 100000"],
    );
    let mut live = Vec::new();
    while live.len() < 2 {
        live.extend(next_lines());
    }
    assert_eq!(
        live,
        [(second.name.clone(), "live line 1".to_string()), (second.name.clone(), "live line 2".to_string())],
        "only new lines that pass the filter, in order"
    );
}

fn urlencode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[test]
fn a_services_stack_traces_arrive_as_one_entry_each_across_a_kill_of_the_agent() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // 300 events: every 7th an ERROR with a stack trace of (n % 5) + 2 frame lines, event 150 a trace
    // of 120 frames (past max_lines = 50), the rest single INFO lines; the last event is a trace
    // that only the max_wait timer can hand out (nothing follows it).
    let script = r#"
        i=0
        while [ $i -lt 300 ]; do
            if [ $i = 150 ]; then
                printf '2026-11-23 12:00:00 ERROR n=%03d long\n' $i
                j=0; while [ $j -lt 120 ]; do printf '\tat deep.Frame%d(F.java:%d)\n' $j $j; j=$((j+1)); done
            elif [ $((i % 7)) = 0 ] || [ $i = 299 ]; then
                printf '2026-11-23 12:00:00 ERROR n=%03d failed\n' $i
                printf 'java.lang.IllegalStateException: n=%03d\n' $i
                j=0; while [ $j -lt $((i % 5 + 2)) ]; do printf '\tat app.Handler.run(Handler.java:%d)\n' $j; j=$((j+1)); done
            else
                printf '2026-11-23 12:00:00 INFO n=%03d ok\n' $i
            fi
            if [ $((i % 10)) = 0 ]; then usleep 100000; fi
            i=$((i+1))
        done
        sleep 100000
    "#;
    let c = TestContainer::run("multiline", &["--label", "lookout.service=javasvc"], &["sh", "-c", script]);
    let (http, grpc) = (free_addr(), free_addr());
    let _collector = Lookout::collector_on(&dir.path().join("c"), http, grpc);
    let rules = "[[logs.multiline]]\nservice = \"javasvc\"\nstart = '^\\d{4}-\\d\\d-\\d\\d '\nmax_lines = 50\nmax_wait = \"1s\"\n";
    let mut agent = spawn_agent(dir.path(), grpc, rules);
    let base = format!("http://{http}");
    let q = format!(r#"{{container="{}"}}"#, c.name);
    eventually(Duration::from_secs(30), "the first entries", || (loki_lines(&base, &q).len() > 40).then_some(()));
    agent.kill().unwrap();
    let _ = agent.wait();
    let mut agent = spawn_agent(dir.path(), grpc, rules);
    let entries = eventually(Duration::from_secs(60), "the last trace, handed out by the timer", || {
        let l = loki_lines(&base, &q);
        l.iter().any(|(_, t)| t.contains("ERROR n=299")).then_some(l)
    });
    let _ = agent.kill();
    let _ = agent.wait();

    let texts: Vec<&str> = entries.iter().map(|(_, t)| t.as_str()).collect();
    // The event number of an entry that starts an event.
    let number = |t: &str| -> Option<usize> {
        let first = t.split('\n').next()?;
        first.starts_with("2026-").then(|| first.find(" n=").and_then(|i| first.get(i + 3..i + 6)?.parse().ok()))?
    };
    let numbers: Vec<usize> = texts.iter().filter_map(|t| number(t)).collect();
    assert_eq!(numbers, (0..300).collect::<Vec<_>>(), "every event once, in order");
    for (i, t) in texts.iter().enumerate().filter(|(_, t)| t.contains(" failed")) {
        let n = number(t).unwrap();
        let lines: Vec<&str> = t.split('\n').collect();
        assert_eq!(lines.len(), 2 + n % 5 + 2, "trace of event {n} whole in entry {i}: {t:?}");
        assert_eq!(lines[1], format!("java.lang.IllegalStateException: n={n:03}"));
    }
    // The overlong trace: cut at 50 lines, nothing lost, nothing appended to its neighbours.
    let at = texts.iter().position(|t| t.contains("ERROR n=150 long")).unwrap();
    let parts: Vec<&str> = texts[at..].iter().take_while(|t| !t.contains("n=151")).copied().collect();
    assert!(parts.iter().all(|p| p.split('\n').count() <= 50), "{parts:?}");
    let frames: usize = parts.iter().map(|p| p.split('\n').filter(|l| l.starts_with("\tat deep.Frame")).count()).sum();
    assert_eq!((parts.len(), frames), (3, 120), "121 lines cut into 50 + 50 + 21");
    assert!(
        texts.iter().all(|t| !t.starts_with('\t') || parts.contains(t)),
        "no frame line stands alone outside the cut trace"
    );
}
