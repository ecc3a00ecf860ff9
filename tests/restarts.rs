//! Restart decisions end to end: real busybox `httpd` containers fail their probes, the collector
//! decides, the agent restarts them through Docker, and the decision log shows why.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::*;

fn get(base: &str, path: &str) -> Value {
    let body: Value = reqwest::blocking::get(format!("{base}{path}")).unwrap().json().unwrap();
    assert_eq!(body["status"], "success", "{body}");
    body["data"].clone()
}

fn decisions(base: &str, container_id: &str) -> Vec<Value> {
    get(base, &format!("/api/v1/decisions?container_id={container_id}")).as_array().cloned().unwrap_or_default()
}

fn state(base: &str, name: &str) -> Option<String> {
    get(base, &format!("/api/v1/health?container={name}"))[0]["state"].as_str().map(str::to_string)
}

fn started_at(c: &TestContainer) -> String {
    let out = Command::new("docker").args(["inspect", "-f", "{{.State.StartedAt}}", &c.id]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn exec(c: &TestContainer, cmd: &str) {
    let out = Command::new("docker").args(["exec", &c.id, "sh", "-c", cmd]).output().unwrap();
    assert!(out.status.success(), "docker exec {cmd}: {}", String::from_utf8_lossy(&out.stderr));
}

/// An httpd serving /healthz (created at every start unless `broken`), probed every second.
fn web(prefix: &str, labels: &[&str], broken: bool) -> TestContainer {
    let mut args: Vec<&str> = vec!["--stop-timeout", "1"];
    let probe = ["lookout.probe.http=:80/healthz", "lookout.probe.interval=1s", "lookout.probe.timeout=1s"];
    for l in probe.iter().chain(labels) {
        args.extend(["--label", l]);
    }
    let script = if broken {
        "mkdir -p /www && exec httpd -f -p 80 -h /www"
    } else {
        "mkdir -p /www && echo ok > /www/healthz && exec httpd -f -p 80 -h /www"
    };
    TestContainer::run(prefix, &args, &["sh", "-c", script])
}

#[test]
fn an_unhealthy_container_is_restarted_and_healthy_again_with_its_evidence_and_others_only_dry_run() {
    let _serial = serial();
    let s = CollectorAndAgent::start("");
    // Services of one container each (two of a service failing together would be held: see below).
    let opted = web(
        "restart-opted",
        &["lookout.service=solo-a", "lookout.restart=on-unhealthy", "lookout.probe.retries=2"],
        false,
    );
    let other = web("restart-dry", &["lookout.service=solo-b", "lookout.probe.retries=2"], false);
    for c in [&opted, &other] {
        eventually(Duration::from_secs(30), "healthy", || {
            (state(&s.base, &c.name).as_deref() == Some("healthy")).then_some(())
        });
    }
    let (opted_start, other_start) = (started_at(&opted), started_at(&other));
    exec(&opted, "rm /www/healthz");
    exec(&other, "rm /www/healthz");

    let d = eventually(Duration::from_secs(30), "the restart carried out", || {
        decisions(&s.base, &opted.id).into_iter().find(|d| d["kind"] == "restart" && d["outcome"] == "ok")
    });
    assert!(d["reason"].as_str().unwrap().contains("http failed 2 times in a row"), "{d}");
    assert!(d["reason"].as_str().unwrap().contains("HTTP 404"), "{d}");
    assert_eq!(d["rule"]["source"], "label lookout.restart=on-unhealthy");
    assert_eq!(d["rule"]["policy"]["max_restarts"], 5);
    let runs = &d["inputs"]["container"]["probes"][0]["recent"];
    assert!(runs.as_array().unwrap().iter().any(|r| r["success"] == false), "the failing runs are the evidence: {d}");
    assert_ne!(started_at(&opted), opted_start, "Docker restarted it");
    eventually(Duration::from_secs(30), "healthy after the restart", || {
        (state(&s.base, &opted.name).as_deref() == Some("healthy")).then_some(())
    });

    // Not opted in: what lookout would have done is recorded, and nothing is done.
    let d = eventually(Duration::from_secs(30), "the dry run", || {
        decisions(&s.base, &other.id).into_iter().find(|d| d["kind"] == "restart")
    });
    assert_eq!(
        (d["outcome"].as_str(), d["rule"]["source"].as_str()),
        (Some("dry_run"), Some("not opted in (dry run)"))
    );
    assert_eq!(started_at(&other), other_start);
    assert_eq!(state(&s.base, &other.name).as_deref(), Some("unhealthy"));

    // The annotation query of the service dashboard finds the decision.
    let marks = instant(&s.base, r#"count_over_time(lookout_decision{service="solo-a",kind="restart"}[10m])"#);
    assert_eq!(marks.iter().map(value).collect::<Vec<_>>(), [1.0]);
    let metrics = reqwest::blocking::get(format!("{}/metrics", s.base)).unwrap().text().unwrap();
    assert!(metrics.contains(r#"lookout_decisions_total{kind="restart",outcome="ok"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"lookout_decisions_total{kind="restart",outcome="dry_run"}"#), "{metrics}");
}

#[test]
fn a_container_that_keeps_failing_is_restarted_with_growing_delays_then_given_up() {
    let _serial = serial();
    let s = CollectorAndAgent::start(
        "[[restart.policies]]\nservice = \"crashy\"\nbackoff = \"3s\"\nmax_restarts = 3\nwindow = \"10m\"\n",
    );
    let c = web("restart-crashy", &["lookout.service=crashy", "lookout.probe.retries=1"], true);
    let all = eventually(Duration::from_secs(90), "three restarts, then giving up", || {
        let d = decisions(&s.base, &c.id);
        d.iter().any(|d| d["kind"] == "restart_given_up").then_some(d)
    });
    let restarts: Vec<i64> = all
        .iter()
        .filter(|d| d["kind"] == "restart")
        .inspect(|d| assert_eq!(d["outcome"], "ok", "{d}"))
        .map(|d| d["time_ms"].as_i64().unwrap())
        .collect();
    assert_eq!(restarts.len(), 3, "{all:?}");
    assert!(restarts[1] - restarts[0] >= 3_000, "the second waits the backoff: {restarts:?}");
    assert!(restarts[2] - restarts[1] >= 6_000, "the third twice as long: {restarts:?}");
    let given_up: Vec<&Value> = all.iter().filter(|d| d["kind"] == "restart_given_up").collect();
    assert_eq!(given_up.len(), 1);
    assert!(given_up[0]["reason"].as_str().unwrap().contains("restarted 3 times in the last 10m"), "{}", given_up[0]);
    // Given up means left alone.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(decisions(&s.base, &c.id).iter().filter(|d| d["kind"] == "restart").count(), 3);
}

#[test]
fn three_of_four_containers_of_a_service_failing_together_are_not_restarted() {
    let _serial = serial();
    let s = CollectorAndAgent::start("");
    let labels = ["lookout.service=shared", "lookout.restart=on-unhealthy", "lookout.probe.retries=3"];
    let cs: Vec<TestContainer> = (0..4).map(|i| web(&format!("restart-dep{i}"), &labels, false)).collect();
    for c in &cs {
        eventually(Duration::from_secs(30), "healthy", || {
            (state(&s.base, &c.name).as_deref() == Some("healthy")).then_some(())
        });
    }
    // The shared dependency fails: three lose their health file at once.
    for c in &cs[..3] {
        exec(c, "rm /www/healthz");
    }
    for c in &cs[..3] {
        let d = eventually(Duration::from_secs(30), "held", || {
            decisions(&s.base, &c.id).into_iter().find(|d| d["kind"] == "restart_held")
        });
        assert!(d["reason"].as_str().unwrap().contains("of 4 containers of service shared"), "{d}");
    }
    std::thread::sleep(Duration::from_secs(5));
    for c in &cs {
        let restarts = decisions(&s.base, &c.id).into_iter().filter(|d| d["kind"] == "restart").count();
        assert_eq!(restarts, 0, "{} was restarted", c.name);
    }
    // The dependency comes back: they recover on their own.
    for c in &cs[..3] {
        exec(c, "echo ok > /www/healthz");
    }
    for c in &cs {
        eventually(Duration::from_secs(30), "healthy again", || {
            (state(&s.base, &c.name).as_deref() == Some("healthy")).then_some(())
        });
    }
}
