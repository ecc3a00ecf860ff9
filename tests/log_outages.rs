//! The logs promise under failure: a container writes numbered lines (16 KiB+ lines, invalid UTF-8,
//! empty and JSON-looking lines) under Docker's own rotation while the agent is killed with SIGKILL
//! twice and the collector once, or while the collector is away for a minute; afterwards every
//! number is stored exactly once, in order, with the container's tags. A third test stops and starts
//! a container while its last lines are read but not yet acknowledged; a fourth has containers stop
//! while the agent is away, and while it waits for its collector.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use support::*;

/// An agent process, killed however the test ends: a panicking test must not leave one behind.
struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
}

/// Every line of `query` in `[from, to)`, oldest first, read in windows small enough for Loki's
/// 5000-line limit (`start` inclusive and `end` exclusive, so windows neither overlap nor leave gaps).
fn all_lines(base: &str, query: &str, from: i64, to: i64) -> Vec<(Value, String)> {
    let mut out = Vec::new();
    let window = 2_000_000_000;
    let mut start = from;
    while start < to {
        let end = (start + window).min(to);
        let body: Value = reqwest::blocking::Client::new()
            .post(format!("{base}/loki/api/v1/query_range"))
            .form(&[
                ("query", query.to_string()),
                ("start", start.to_string()),
                ("end", end.to_string()),
                ("limit", "5000".into()),
                ("direction", "forward".into()),
            ])
            .send()
            .expect("collector reachable")
            .json()
            .unwrap();
        assert_eq!(body["status"], "success", "{body}");
        let mut lines: Vec<(i64, Value, String)> = Vec::new();
        for st in body["data"]["result"].as_array().unwrap() {
            for v in st["values"].as_array().unwrap() {
                lines.push((
                    v[0].as_str().unwrap().parse().unwrap(),
                    st["stream"].clone(),
                    v[1].as_str().unwrap().into(),
                ));
            }
        }
        assert!(lines.len() < 5000, "a window of the test's reads was full: make windows smaller");
        // Streams come one after another; the lines of all of them in time order (a stable sort keeps
        // the store's order for equal times).
        lines.sort_by_key(|l| l.0);
        out.extend(lines.into_iter().map(|(_, s, t)| (s, t)));
        start = end;
    }
    out
}

/// The script of a container that writes `n` numbered lines in bursts of `burst` with `pause_us`
/// between bursts, then `finished`. Line i is `n=<i, 6 digits> ...`; every 500th is 20,000 bytes
/// long (Docker cuts it into 16 KiB pieces), every 97th has invalid UTF-8, every 89th looks like
/// JSON, and every 200th is followed by an empty line.
fn writer_script(n: usize, burst: usize, pause_us: u64) -> String {
    format!(
        r#"
        i=0
        while [ $i -lt {n} ]; do
            if [ $((i % 500)) = 250 ]; then
                printf 'n=%06d long ' $i; head -c 20000 /dev/zero | tr '\0' L; echo
            elif [ $((i % 97)) = 13 ]; then
                printf 'n=%06d bad \377\376 bytes\n' $i
            elif [ $((i % 89)) = 7 ]; then
                printf '{{"msg":"n=%06d","level":"info","nested":{{"a":1}}}}\n' $i
            else
                printf 'n=%06d the quick brown fox jumps over the lazy dog %s\n' $i "$HOSTNAME"
            fi
            if [ $((i % 200)) = 100 ]; then echo; fi
            if [ $((i % {burst})) = 0 ]; then usleep {pause_us}; fi
            i=$((i+1))
        done
        echo finished
        sleep 100000
    "#
    )
}

/// Checks that lines hold each number below `n` once, in order, with the kinds of line intact.
fn check(lines: &[(Value, String)], n: usize, c: &TestContainer) {
    let re = regex::Regex::new(r"n=(\d{6})").unwrap();
    let mut numbers = Vec::with_capacity(n);
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for (stream, text) in lines {
        assert_eq!(stream["container"], c.name.as_str(), "{stream}");
        assert_eq!(stream["container_id"], c.id.as_str());
        assert_eq!(stream["service"], "chaos");
        assert_eq!(stream["version"], "1.0");
        assert_eq!(stream["stream"], "stdout");
        if text.is_empty() {
            *by_kind.entry("empty").or_default() += 1;
            continue;
        }
        if text == "finished" {
            continue;
        }
        let Some(m) = re.captures(text) else { panic!("a line the container did not write: {text:.200}") };
        let i: usize = m[1].parse().unwrap();
        numbers.push(i);
        if i % 500 == 250 {
            assert_eq!(text.len(), 14 + 20_000, "line {i} joined whole from Docker's pieces");
            *by_kind.entry("long").or_default() += 1;
        } else if i % 97 == 13 {
            assert_eq!(text, &format!("n={i:06} bad \u{fffd}\u{fffd} bytes"));
            assert_eq!(stream["flags"], "replaced", "line {i}: the replacement is flagged");
            *by_kind.entry("invalid utf-8").or_default() += 1;
        } else if i % 89 == 7 {
            assert_eq!(text, &format!(r#"{{"msg":"n={i:06}","level":"info","nested":{{"a":1}}}}"#));
            *by_kind.entry("json").or_default() += 1;
        }
    }
    let out_of_order = numbers.windows(2).filter(|w| w[1] <= w[0]).count();
    let mut seen = vec![0u32; n];
    for &i in &numbers {
        seen[i] += 1;
    }
    let missing: Vec<usize> = (0..n).filter(|&i| seen[i] == 0).collect();
    let repeated: Vec<usize> = (0..n).filter(|&i| seen[i] > 1).collect();
    assert!(
        missing.is_empty() && repeated.is_empty() && out_of_order == 0,
        "every number once and in order: {} lines, missing {} (first {:?}), repeated {} (first {:?}), {out_of_order} out of order",
        numbers.len(),
        missing.len(),
        &missing[..missing.len().min(10)],
        repeated.len(),
        &repeated[..repeated.len().min(10)],
    );
    eprintln!("{} numbered lines, by kind {by_kind:?}", numbers.len());
    assert_eq!(by_kind.get("empty"), Some(&n.div_ceil(200)), "{by_kind:?}");
    assert_eq!(by_kind.get("long"), Some(&(0..n).filter(|i| i % 500 == 250).count()), "{by_kind:?}");
}

fn chaos_container(n: usize, burst: usize, pause_us: u64) -> TestContainer {
    TestContainer::run(
        "chaos",
        &[
            "--log-opt",
            "max-size=100k",
            "--log-opt",
            "max-file=5",
            "--label",
            "lookout.service=chaos",
            "--label",
            "lookout.version=1.0",
        ],
        &["sh", "-c", &writer_script(n, burst, pause_us)],
    )
}

fn count(base: &str, c: &TestContainer) -> usize {
    let body = api(
        base,
        "/loki/api/v1/query",
        &[("query", &format!(r#"sum(count_over_time({{container="{}"}}[1h]))"#, c.name))],
    );
    body["result"][0]["value"][1].as_str().and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn finished(base: &str, c: &TestContainer) -> bool {
    let q = format!(r#"sum(count_over_time({{container="{}"}} |= "finished" [1h]))"#, c.name);
    api(base, "/loki/api/v1/query", &[("query", &q)])["result"].as_array().is_some_and(|r| !r.is_empty())
}

#[test]
fn every_line_once_across_two_agent_kills_and_a_collector_restart_under_rotation() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (http, grpc) = (free_addr(), free_addr());
    let mut collector = Lookout::collector_on(&dir.path().join("c"), http, grpc);
    let from = now_ns() - 1_000_000_000;
    let n = 24_000;
    let c = chaos_container(n, 50, 50_000);
    let mut agent = spawn_agent(dir.path(), grpc, "");
    let base = collector.url();

    for (round, at) in [3_000, 9_000].into_iter().enumerate() {
        eventually(Duration::from_secs(60), &format!("{at} lines before kill {}", round + 1), || {
            (count(&base, &c) >= at).then_some(())
        });
        agent.kill().unwrap();
        agent.wait().unwrap();
        std::thread::sleep(Duration::from_millis(700));
        agent = spawn_agent(dir.path(), grpc, "");
    }
    eventually(Duration::from_secs(60), "15000 lines before the collector's restart", || {
        (count(&base, &c) >= 15_000).then_some(())
    });
    collector.kill9();
    std::thread::sleep(Duration::from_secs(2));
    let collector = Lookout::collector_on(&dir.path().join("c"), http, grpc);
    eventually(Duration::from_secs(120), "the container's last line", || finished(&base, &c).then_some(()));
    let lines = all_lines(&collector.url(), &format!(r#"{{container="{}"}}"#, c.name), from, now_ns() + 1_000_000_000);
    check(&lines, n, &c);
    let _ = agent.kill();
    let agent_log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default();
    assert!(!agent_log.contains("lines in between are lost"), "no checkpoint was rotated away: {agent_log}");
}

#[test]
fn every_line_once_when_the_collector_is_away_for_a_minute_under_load() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (http, grpc) = (free_addr(), free_addr());
    let mut collector = Lookout::collector_on(&dir.path().join("c"), http, grpc);
    let from = now_ns() - 1_000_000_000;
    // About 400 lines/s for 75 s: the minute away writes ~2.6 MB of json-file, five times what
    // Docker keeps (5 × 100 KiB), so the agent must hold lines it has read until they are acked.
    let n = 30_000;
    let c = chaos_container(n, 40, 100_000);
    let mut agent = spawn_agent(dir.path(), grpc, "");
    let base = collector.url();
    eventually(Duration::from_secs(60), "the first 1000 lines", || (count(&base, &c) >= 1000).then_some(()));
    collector.kill9();
    std::thread::sleep(Duration::from_secs(60));
    let collector = Lookout::collector_on(&dir.path().join("c"), http, grpc);
    eventually(Duration::from_secs(120), "the container's last line", || finished(&base, &c).then_some(()));
    let lines = all_lines(&collector.url(), &format!(r#"{{container="{}"}}"#, c.name), from, now_ns() + 1_000_000_000);
    check(&lines, n, &c);
    let _ = agent.kill();
    let _ = agent.wait();
    // The minute away really outlasted what Docker keeps: all five files exist.
    let out = std::process::Command::new("docker").args(["inspect", "-f", "{{.LogPath}}", &c.id]).output().unwrap();
    let log_path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(std::path::Path::new(&format!("{log_path}.4")).exists(), "Docker rotated {log_path} through max-file");
}

/// A container that keeps its counter in its own filesystem, so a stop and a start go on where it
/// left off: `n` numbered lines at about `per_s` a second, then `finished`. A stop ends the loop
/// between lines (the trap only sets a flag), so no number is written twice by the container itself.
fn restartable_writer(n: usize, per_s: u64) -> TestContainer {
    let script = format!(
        r#"
        trap 'stop=1' TERM
        i=$(cat /tmp/i 2>/dev/null || echo 0)
        while [ -z "$stop" ] && [ $i -lt {n} ]; do
            printf 'n=%06d restartable writer\n' $i
            i=$((i+1))
            echo $i > /tmp/i
            usleep {}
        done
        if [ $i -ge {n} ]; then echo finished; fi
        while [ -z "$stop" ]; do sleep 1; done
    "#,
        1_000_000 / per_s
    );
    TestContainer::run(
        "restarted",
        &["--label", "lookout.service=chaos", "--label", "lookout.version=1.0"],
        &["sh", "-c", &script],
    )
}

#[test]
fn every_line_once_when_a_container_is_stopped_and_started_before_its_lines_are_acknowledged() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (http, grpc) = (free_addr(), free_addr());
    let mut collector = Lookout::collector_on(&dir.path().join("c"), http, grpc);
    let from = now_ns() - 1_000_000_000;
    let n = 4_000;
    let c = restartable_writer(n, 200);
    let _agent = Agent(spawn_agent(dir.path(), grpc, ""));
    let base = collector.url();
    let docker = |args: &[&str]| {
        let out = std::process::Command::new("docker").args(args).output().unwrap();
        assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    for round in 1..=2 {
        eventually(Duration::from_secs(60), &format!("{} lines before round {round}", round * 500), || {
            (count(&base, &c) >= round * 500).then_some(())
        });
        // The agent reads on while nothing is acknowledged; then the container stops (the agent
        // reads its log to the end and lets it go) and starts again before the collector is back.
        collector.kill9();
        std::thread::sleep(Duration::from_secs(2));
        docker(&["stop", "-t", "5", &c.id]);
        std::thread::sleep(Duration::from_secs(2));
        docker(&["start", &c.id]);
        std::thread::sleep(Duration::from_secs(2));
        collector = Lookout::collector_on(&dir.path().join("c"), http, grpc);
    }
    eventually(Duration::from_secs(120), "the container's last line", || finished(&base, &c).then_some(()));
    let lines = all_lines(&collector.url(), &format!(r#"{{container="{}"}}"#, c.name), from, now_ns() + 1_000_000_000);
    let numbers: Vec<usize> = lines
        .iter()
        .filter(|(_, t)| t != "finished")
        .map(|(_, t)| {
            t.strip_prefix("n=").and_then(|t| t.get(..6)).and_then(|d| d.parse().ok()).unwrap_or_else(|| panic!("{t}"))
        })
        .collect();
    let repeated = numbers.len() - numbers.iter().collect::<std::collections::BTreeSet<_>>().len();
    assert_eq!(repeated, 0, "{repeated} lines repeated");
    assert_eq!(numbers, (0..n).collect::<Vec<_>>(), "every number once, in order");
}

/// A container that writes `n` numbered lines, 200 a second, and exits.
fn short_lived(prefix: &str, n: usize) -> TestContainer {
    let script =
        format!("i=0; while [ $i -lt {n} ]; do printf 'n=%06d short-lived\\n' $i; i=$((i+1)); usleep 5000; done");
    TestContainer::run(prefix, &["--label", "lookout.service=short"], &["sh", "-c", &script])
}

fn numbers_of(base: &str, c: &TestContainer, from: i64) -> Vec<usize> {
    let lines = all_lines(base, &format!(r#"{{container="{}"}}"#, c.name), from, now_ns() + 1_000_000_000);
    lines
        .iter()
        .map(|(_, t)| t.strip_prefix("n=").and_then(|t| t.get(..6)).and_then(|d| d.parse().ok()).unwrap())
        .collect()
}

fn wait_exited(c: &TestContainer) {
    eventually(Duration::from_secs(30), &format!("{} exits", c.name), || {
        let out = std::process::Command::new("docker").args(["inspect", "-f", "{{.State.Running}}", &c.id]).output();
        out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "false").then_some(())
    });
}

#[test]
fn every_line_of_containers_that_stop_while_the_agent_is_away_or_waiting_for_its_collector() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (http, grpc) = (free_addr(), free_addr());
    let mut collector = Lookout::collector_on(&dir.path().join("c"), http, grpc);
    let base = collector.url();
    let from = now_ns() - 1_000_000_000;
    let mut agent = Agent(spawn_agent(dir.path(), grpc, ""));
    // Half read when the agent dies; it writes its other half and exits while the agent is away.
    let half_read = short_lived("half-read", 1_000);
    eventually(Duration::from_secs(30), "some of its lines", || (count(&base, &half_read) >= 100).then_some(()));
    let _ = agent.0.kill();
    let _ = agent.0.wait();
    // Runs from start to end while the agent is away.
    let unseen = short_lived("unseen", 300);
    wait_exited(&half_read);
    wait_exited(&unseen);
    // The agent comes back while its collector is away: it waits for the collector to say where its
    // lines end, and meanwhile a third container runs and exits.
    collector.kill9();
    agent = Agent(spawn_agent(dir.path(), grpc, ""));
    std::thread::sleep(Duration::from_secs(2));
    let while_waiting = short_lived("while-waiting", 300);
    wait_exited(&while_waiting);
    collector = Lookout::collector_on(&dir.path().join("c"), http, grpc);
    let base = collector.url();
    for (c, n) in [(&half_read, 1_000), (&unseen, 300), (&while_waiting, 300)] {
        eventually(Duration::from_secs(60), &format!("{n} lines of {}", c.name), || {
            (count(&base, c) >= n).then_some(())
        });
        assert_eq!(numbers_of(&base, c, from), (0..n).collect::<Vec<_>>(), "{}: every number once, in order", c.name);
    }
    drop(agent);
}
