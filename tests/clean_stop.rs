//! Daemons an operator can run: a collector with three agents streaming stops on SIGTERM, exits 0
//! and starts again on its database with every numbered line stored once per host; `lookout up`
//! does the same on SIGINT; logs through a pipe carry no colour escapes, and `--log-format json`
//! writes one JSON object per line.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
}

/// A container that writes `n` numbered lines at about `per_s` a second, then `finished`.
fn numbered_writer(n: usize, per_s: u64) -> TestContainer {
    let pause_us = 1_000_000 / per_s * 10;
    let script = format!(
        "i=0; while [ $i -lt {n} ]; do printf 'n=%06d steady\\n' $i; i=$((i+1)); \
         if [ $((i % 10)) = 0 ]; then usleep {pause_us}; fi; done; echo finished; sleep 3600"
    );
    TestContainer::run("stop", &["--label", "lookout.service=stopper"], &["sh", "-c", &script])
}

fn signal(pid: u32, sig: &str) {
    assert!(Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().unwrap().success());
}

/// Waits for the process to exit after a signal; its exit status and how long it took.
fn wait_exit(l: &mut Lookout, within: Duration) -> (std::process::ExitStatus, Duration) {
    let started = Instant::now();
    loop {
        if let Some(status) = l.child.try_wait().unwrap() {
            return (status, started.elapsed());
        }
        assert!(started.elapsed() < within, "still running {within:?} after the signal; its log:\n{}", l.log());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The numbers of the container's lines stored for `host`, in time order.
fn numbers(base: &str, container: &str, host: &str, from: i64, to: i64) -> (Vec<usize>, bool) {
    let re = regex::Regex::new(r"^n=(\d{6}) steady$").unwrap();
    let (mut out, mut finished) = (Vec::new(), false);
    let mut start = from;
    while start < to {
        let end = (start + 2_000_000_000).min(to);
        let body: Value = reqwest::blocking::Client::new()
            .post(format!("{base}/loki/api/v1/query_range"))
            .form(&[
                ("query", format!(r#"{{container="{container}", host="{host}"}}"#)),
                ("start", start.to_string()),
                ("end", end.to_string()),
                ("limit", "5000".into()),
                ("direction", "forward".into()),
            ])
            .send()
            .unwrap()
            .json()
            .unwrap();
        let mut lines: Vec<(i64, String)> = Vec::new();
        for st in body["data"]["result"].as_array().unwrap() {
            for v in st["values"].as_array().unwrap() {
                lines.push((v[0].as_str().unwrap().parse().unwrap(), v[1].as_str().unwrap().to_string()));
            }
        }
        assert!(lines.len() < 5000, "a read window was full");
        lines.sort_by_key(|l| l.0);
        for (_, text) in lines {
            if text == "finished" {
                finished = true;
            } else {
                let m = re.captures(&text).unwrap_or_else(|| panic!("a line the container did not write: {text}"));
                out.push(m[1].parse().unwrap());
            }
        }
        start = end;
    }
    (out, finished)
}

fn assert_each_once(numbers: &[usize], n: usize, what: &str) {
    let mut seen = vec![0u32; n];
    for &i in numbers {
        seen[i] += 1;
    }
    let missing: Vec<usize> = (0..n).filter(|&i| seen[i] == 0).collect();
    let repeated: Vec<usize> = (0..n).filter(|&i| seen[i] > 1).collect();
    assert!(
        missing.is_empty() && repeated.is_empty(),
        "{what}: every number once: missing {} (first {:?}), repeated {} (first {:?})",
        missing.len(),
        &missing[..missing.len().min(10)],
        repeated.len(),
        &repeated[..repeated.len().min(10)]
    );
}

fn count_for(base: &str, container: &str, host: &str) -> usize {
    let q = format!(r#"sum(count_over_time({{container="{container}", host="{host}"}}[1h]))"#);
    let body = api(base, "/loki/api/v1/query", &[("query", &q)]);
    body["result"][0]["value"][1].as_str().and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[test]
fn a_collector_with_three_agents_stops_on_sigterm_and_every_line_is_stored_once() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (http, grpc) = (free_addr(), free_addr());
    let mut collector = Lookout::collector_on(&dir.path().join("c"), http, grpc);
    let from = now_ns() - 1_000_000_000;
    let n = 6000;
    let c = numbered_writer(n, 300);
    let hosts = ["h1", "h2", "h3"];
    let mut agents: Vec<_> = hosts
        .iter()
        .map(|h| {
            let adir = dir.path().join(h);
            std::fs::create_dir_all(&adir).unwrap();
            spawn_agent(&adir, grpc, &format!("host = \"{h}\"\n"))
        })
        .collect();
    let base = collector.url();
    eventually(Duration::from_secs(60), "every agent streaming lines", || {
        hosts.iter().all(|h| count_for(&base, &c.name, h) >= 1500).then_some(())
    });
    signal(collector.child.id(), "TERM");
    let (status, took) = wait_exit(&mut collector, Duration::from_secs(20));
    eprintln!("collector with 3 agents streaming: SIGTERM -> exit in {:.0} ms", took.as_secs_f64() * 1000.0);
    assert!(status.success(), "exit status {status:?}; log:\n{}", collector.log());
    let log = collector.log();
    assert!(log.contains("agent told the collector is stopping"), "agents were told: {log}");
    assert!(log.contains("collector stopped cleanly"), "{log}");

    // The database opens again (the start waits until the API answers) and the agents come back.
    let collector = Lookout::collector_on(&dir.path().join("c"), http, grpc);
    let base = collector.url();
    eventually(Duration::from_secs(120), "every host's last line", || {
        hosts.iter().all(|h| numbers(&base, &c.name, h, from, now_ns() + 1_000_000_000).1).then_some(())
    });
    for h in hosts {
        let (nums, _) = numbers(&base, &c.name, h, from, now_ns() + 1_000_000_000);
        assert_each_once(&nums, n, h);
    }
    for a in &mut agents {
        let _ = a.kill();
        let _ = a.wait();
    }
    let agent_log = std::fs::read_to_string(dir.path().join("h1").join("agent.log")).unwrap_or_default();
    assert!(agent_log.contains("the collector is stopping; reconnecting with backoff"), "{agent_log}");
}

#[test]
fn lookout_up_interrupted_under_load_starts_again_with_every_line_once() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (http, grpc) = (free_addr(), free_addr());
    let mut up = Lookout::up_on(&data, http, grpc, &[]);
    let from = now_ns() - 1_000_000_000;
    let n = 4000;
    let c = numbered_writer(n, 300);
    let host = hostname();
    let base = up.url();
    eventually(Duration::from_secs(60), "lines streaming", || (count_for(&base, &c.name, &host) >= 1000).then_some(()));
    signal(up.child.id(), "INT");
    let (status, took) = wait_exit(&mut up, Duration::from_secs(20));
    eprintln!("lookout up under load: SIGINT -> exit in {:.0} ms", took.as_secs_f64() * 1000.0);
    assert!(status.success(), "exit status {status:?}; log:\n{}", up.log());
    let up = Lookout::up_on(&data, http, grpc, &[]);
    let base = up.url();
    eventually(Duration::from_secs(120), "the last line", || {
        numbers(&base, &c.name, &host, from, now_ns() + 1_000_000_000).1.then_some(())
    });
    let (nums, _) = numbers(&base, &c.name, &host, from, now_ns() + 1_000_000_000);
    assert_each_once(&nums, n, "lookout up");
}

fn hostname() -> String {
    let out = Command::new("hostname").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn logs_through_a_pipe_have_no_escapes_and_json_lines_parse() {
    let dir = tempfile::tempdir().unwrap();
    for format in ["text", "json"] {
        let (http, grpc) = (free_addr(), free_addr());
        let cfg = dir.path().join(format!("collector-{format}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "data_dir = \"{}\"\nhttp_listen = \"{http}\"\ngrpc_listen = \"{grpc}\"\n",
                dir.path().join(format).display()
            ),
        )
        .unwrap();
        let child = Command::new(lookout_bin())
            .args(["collector", "--log-format", format, "--config", cfg.to_str().unwrap()])
            .env_remove("NO_COLOR")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        eventually(Duration::from_secs(30), "the collector answering", || {
            reqwest::blocking::get(format!("http://{http}/readyz")).ok().filter(|r| r.status().is_success())
        });
        signal(child.id(), "TERM");
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!text.contains('\u{1b}'), "{format}: no escape sequences through a pipe:\n{text}");
        assert!(text.lines().count() >= 3, "{format}: start, listening, stop:\n{text}");
        if format == "json" {
            for line in text.lines() {
                let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
                assert!(v["level"].is_string() && v["target"].is_string(), "{line}");
                assert!(v["fields"]["message"].is_string(), "{line}");
                assert!(v["timestamp"].is_string(), "{line}");
            }
            assert!(text.contains("\"http\":"), "fields are fields: {text}");
        } else {
            assert!(text.contains(" INFO "), "{text}");
        }
    }
}
