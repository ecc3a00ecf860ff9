//! Rollout gates and autoscale end to end: real containers of several versions of a service write
//! request logs, a real agent ships them, the collector's gates judge each version against the
//! baseline, `lookout gate` exits as a pipeline needs, and CPU-bound containers get a scale decision
//! delivered to a signed webhook.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// A container of `service` at `version` writing about 100 request lines a second; every tenth is
/// an error line when `errors`.
fn app(service: &str, version: &str, errors: bool) -> TestContainer {
    let script = format!(
        "i=0; while :; do i=$((i+1)); if [ {} = 1 ] && [ $((i % 10)) -eq 0 ]; then echo \"ERROR request $i failed: upstream timeout\"; \
         else echo \"GET /items/$i 200 12ms\"; fi; if [ $((i % 20)) -eq 0 ]; then usleep 200000; fi; done",
        u8::from(errors)
    );
    let (s, v) = (format!("lookout.service={service}"), format!("lookout.version={version}"));
    TestContainer::run("gate", &["--label", &s, "--label", &v, "--stop-timeout", "1"], &["sh", "-c", &script])
}

fn post(base: &str, path: &str, body: &Value) -> (u16, Value) {
    let r =
        reqwest::blocking::Client::new().post(format!("{base}{path}")).json(body).send().expect("collector reachable");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn get(base: &str, path: &str) -> (u16, Value) {
    let r = reqwest::blocking::get(format!("{base}{path}")).expect("collector reachable");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

/// Starts a gate once the version has been reported (the agent needs a moment to see it).
fn start_gate(base: &str, body: Value) -> Value {
    eventually(Duration::from_secs(30), "the version to be known to the collector", || {
        let (status, g) = post(base, "/api/v1/gates", &body);
        assert!(status == 201 || status == 404, "{status}: {g}");
        (status == 201).then_some(g)
    })
}

fn until_verdict(base: &str, id: &str, within: Duration) -> Value {
    eventually(within, &format!("gate {id} to reach a verdict"), || {
        let (_, g) = get(base, &format!("/api/v1/gates/{id}"));
        (g["verdict"] != "wait").then_some(g)
    })
}

fn lookout(args: &[&str]) -> Child {
    Command::new(lookout_bin())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("lookout runs")
}

fn finish(c: Child) -> (i32, String) {
    let Output { status, stdout, stderr } = c.wait_with_output().unwrap();
    (status.code().unwrap_or(-1), format!("{}{}", String::from_utf8_lossy(&stdout), String::from_utf8_lossy(&stderr)))
}

#[test]
fn gates_fail_errors_and_restarts_pass_a_healthy_canary_and_fail_silence_at_the_deadline() {
    let _serial = serial();
    let s = CollectorAndAgent::start("");
    let svc = format!("shop{}", std::process::id());
    let _v1 = [app(&svc, "v1", false), app(&svc, "v1", false)];
    let _v2 = app(&svc, "v2", true);
    let _v3 = app(&svc, "v3", false);
    let v4 = app(&svc, "v4", false);
    let _v5 = TestContainer::run(
        "gate",
        &["--label", &format!("lookout.service={svc}"), "--label", "lookout.version=v5", "--stop-timeout", "1"],
        &["sh", "-c", "while :; do echo 'GET / 200'; sleep 5; done"],
    );
    let gate = |v: &str, extra: Value| {
        let mut body =
            json!({"service": svc, "version": v, "baseline_version": "v1", "interval": "3s", "window": "30s"});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        start_gate(&s.base, body)
    };

    // v2 logs 10% errors, v4 is restarted once, v5 writes a line every 5 s.
    let g2 = gate("v2", json!({}));
    let g4 = gate("v4", json!({}));
    let g5 = gate("v5", json!({"deadline": "15s"}));
    // Bad requests are refused at once, naming what is wrong or what exists.
    let (status, e) = post(&s.base, "/api/v1/gates", &json!({"service": svc, "version": "v9"}));
    assert_eq!(status, 404, "{e}");
    assert!(e["error"].as_str().unwrap().contains("v1 (2 containers)"), "{e}");
    let (status, e) = post(&s.base, "/api/v1/gates", &json!({"service": "no-such-service", "version": "v1"}));
    assert_eq!(status, 404, "{e}");
    let bad = json!({"service": svc, "version": "v2", "checks": [{"name": "p99", "query": "rate(x[1m]", "max": 1}]});
    let (status, e) = post(&s.base, "/api/v1/gates", &bad);
    assert_eq!(status, 400, "{e}");
    assert!(e["error"].as_str().unwrap().starts_with("checks[0].query: "), "{e}");
    let (status, e) = post(&s.base, "/api/v1/gates", &json!({"service": svc}));
    assert_eq!(status, 400, "{e}");
    assert!(e["error"].as_str().unwrap().starts_with("missing field `version`"), "{e}");

    let out = Command::new("docker").args(["restart", "-t", "1", &v4.id]).output().unwrap();
    assert!(out.status.success());
    // v3, as healthy as v1, through the command a pipeline runs; v2 the same way.
    let url = s.base.clone();
    let cli = |v: &str| {
        lookout(&[
            "gate",
            "--collector",
            &url,
            "--service",
            &svc,
            "--version",
            v,
            "--baseline",
            "v1",
            "--interval",
            "3s",
            "--window",
            "30s",
            "--wait",
            "--timeout",
            "90s",
        ])
    };
    let (pass_cli, fail_cli) = (cli("v3"), cli("v2"));

    let f2 = until_verdict(&s.base, g2["id"].as_str().unwrap(), Duration::from_secs(40));
    assert_eq!(f2["verdict"], "fail", "{f2}");
    let err = f2["checks"].as_array().unwrap().iter().find(|c| c["name"] == "error_rate").unwrap();
    assert_eq!(err["verdict"], "fail", "{f2}");
    assert!((err["canary"].as_f64().unwrap() - 0.1).abs() < 0.02, "about one line in ten: {err}");
    assert!(f2["reason"].as_str().unwrap().starts_with("error_rate: "), "{f2}");

    let f4 = until_verdict(&s.base, g4["id"].as_str().unwrap(), Duration::from_secs(40));
    assert_eq!(f4["verdict"], "fail", "{f4}");
    assert!(f4["reason"].as_str().unwrap().contains("restarts: 1 restarts"), "{f4}");

    // Silence waits first, then fails at its deadline for want of data.
    let (_, early) = get(&s.base, &format!("/api/v1/gates/{}", g5["id"].as_str().unwrap()));
    assert_eq!(early["verdict"], "wait", "{early}");
    let f5 = until_verdict(&s.base, g5["id"].as_str().unwrap(), Duration::from_secs(40));
    assert_eq!(f5["verdict"], "fail", "{f5}");
    assert!(f5["reason"].as_str().unwrap().starts_with("not enough data: error_rate: needs 200 lines"), "{f5}");

    let (code, out) = finish(pass_cli);
    assert_eq!(code, 0, "lookout gate v3 should pass:\n{out}");
    assert!(out.contains("verdict: pass") && out.contains("error_rate") && out.contains("restarts"), "{out}");
    let (code, out) = finish(fail_cli);
    assert_eq!(code, 1, "lookout gate v2 should fail:\n{out}");

    // The release's answer, and its verdict in the decision log, replayed from the stored data.
    let (status, rel) = get(&s.base, &format!("/api/v1/releases/{svc}/v2"));
    assert_eq!((status, rel["verdict"].as_str()), (200, Some("fail")), "{rel}");
    let (_, d) = get(&s.base, &format!("/api/v1/decisions?kind=gate&container_id={}", g2["id"].as_str().unwrap()));
    let decision = d["data"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(decision["outcome"], "fail", "{decision}");
    let (code, out) = finish(lookout(&["replay", "--collector", &s.base, "--decision", &decision["id"].to_string()]));
    assert_eq!(code, 0, "the replay should agree:\n{out}");
    assert!(out.contains("same result"), "{out}");

    // And a pipeline that cannot reach the collector is told so.
    let (code, out) =
        finish(lookout(&["gate", "--collector", "http://127.0.0.1:1", "--service", &svc, "--version", "v3"]));
    assert_eq!(code, 3, "{out}");
}

/// Accepts one HTTP request, answers 200, and hands back its headers and body.
fn webhook() -> (u16, std::sync::mpsc::Receiver<(Vec<String>, String)>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in l.incoming().flatten() {
            let mut r = BufReader::new(stream.try_clone().unwrap());
            let mut headers = Vec::new();
            let mut len = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let line = line.trim_end().to_string();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                headers.push(line);
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let mut w = stream;
            let _ = w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = tx.send((headers, String::from_utf8_lossy(&body).into_owned()));
        }
    });
    (port, rx)
}

#[test]
fn cpu_bound_containers_over_the_target_get_a_signed_scale_up_decision() {
    let _serial = serial();
    let svc = format!("burn{}", std::process::id());
    let (port, hook) = webhook();
    let s = CollectorAndAgent::start(&format!(
        "[[autoscale]]\nservice = \"{svc}\"\nmetric = \"cpu\"\ntarget = 0.5\ninterval = \"2s\"\nrate_window = \"10s\"\n\
         webhook = \"http://127.0.0.1:{port}/scale\"\nsecret = \"s3cret-for-tests\"\n"
    ));
    let label = format!("lookout.service={svc}");
    let _burn: Vec<TestContainer> = (0..2)
        .map(|_| {
            TestContainer::run("burn", &["--cpus", "0.2", "--label", &label], &["sh", "-c", "while :; do :; done"])
        })
        .collect();
    let started = Instant::now();
    let (headers, body) =
        hook.recv_timeout(Duration::from_secs(60)).expect("a scale decision at the webhook within 60 s");
    let sig = headers
        .iter()
        .find_map(|h| h.strip_prefix("x-lookout-signature: ").map(str::to_string))
        .expect("a signature header");
    assert_eq!(
        sig,
        format!("sha256={}", lookout_collector::export::webhook::sign("s3cret-for-tests", body.as_bytes()))
    );
    let b: Value = serde_json::from_str(&body).unwrap();
    // Each container uses all of its 0.2 core, twice the 50% target: 2 replicas become
    // ceil(2 × value / 0.5), 4 or (with the kernel's accounting a hair over the quota) 5.
    let value = b["value"].as_f64().unwrap();
    assert!((value - 1.0).abs() < 0.15, "{b}");
    let desired = (2.0 * value / 0.5).ceil() as u64;
    assert_eq!((b["current_replicas"].as_u64(), b["desired_replicas"].as_u64()), (Some(2), Some(desired)), "{b}");
    assert!(b["reason"].as_str().unwrap().contains(&format!("ceil(2 × {value:.3} / 0.5) = {desired}")), "{b}");
    let id = b["decision_id"].as_i64().unwrap();
    let d = eventually(Duration::from_secs(10), "the delivery to be recorded", || {
        let (_, d) = get(&s.base, &format!("/api/v1/decisions?kind=scale&service={svc}"));
        d["data"].as_array().and_then(|a| a.iter().find(|x| x["id"] == id && x["outcome"] == "delivered").cloned())
    });
    assert_eq!(d["inputs"]["desired"], desired, "{d}");
    // No second decision for the same answer while it is being acted on.
    assert!(hook.recv_timeout(Duration::from_secs(6)).is_err(), "the same decision was sent twice");
    let (_, r) = get(&s.base, &format!("/api/v1/decisions/{id}/replay"));
    assert_eq!(r["same"], true, "{r}");
    eprintln!("scale decision after {:?}", started.elapsed());
}
