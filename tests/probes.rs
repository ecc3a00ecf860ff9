//! Health probes end to end: real containers probed by `lookout up`'s agent (HTTP against busybox
//! `httpd`, Docker's own HEALTHCHECK, log error rates), seen through `/api/v1/health` and PromQL.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::*;

fn health(base: &str, container: &str) -> Option<Value> {
    let body: Value =
        reqwest::blocking::get(format!("{base}/api/v1/health?container={container}")).ok()?.json().ok()?;
    assert_eq!(body["status"], "success", "{body}");
    body["data"].as_array()?.first().cloned()
}

fn probe<'a>(c: &'a Value, kind: &str) -> Option<&'a Value> {
    c["probes"].as_array()?.iter().find(|p| p["probe"] == kind)
}

fn exec(c: &TestContainer, cmd: &str) {
    let out = Command::new("docker").args(["exec", &c.id, "sh", "-c", cmd]).output().unwrap();
    assert!(out.status.success(), "docker exec {cmd}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A container logging `level=ERROR` on one line in `every`, 50 lines a second.
fn logger(prefix: &str, every: u32) -> TestContainer {
    let script = format!(
        "i=0; while true; do if [ $((i % {every})) = 0 ]; then echo \"level=ERROR request $i failed\"; \
         else echo \"level=info request $i ok\"; fi; i=$((i+1)); usleep 20000; done"
    );
    let labels = ["lookout.probe.error_rate=0.05", "lookout.probe.interval=1s", "lookout.probe.error_window=10s"];
    let args: Vec<&str> = labels.iter().flat_map(|l| ["--label", *l]).collect();
    TestContainer::run(prefix, &args, &["sh", "-c", &script])
}

#[test]
fn probes_turn_containers_unhealthy_and_healthy_as_users_see_them() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let web = TestContainer::run(
        "probe-web",
        &[
            "--label",
            "lookout.probe.http=:80/healthz",
            "--label",
            "lookout.probe.interval=1s",
            "--label",
            "lookout.probe.timeout=1s",
            "--label",
            "lookout.probe.retries=2",
        ],
        &["sh", "-c", "mkdir -p /www && echo ok > /www/healthz && exec httpd -f -p 80 -h /www"],
    );
    let own = TestContainer::run(
        "probe-docker",
        &["--health-cmd", "test -f /tmp/ok", "--health-interval", "1s", "--health-retries", "1"],
        &["sh", "-c", "touch /tmp/ok; exec sleep 100000"],
    );
    let noisy = logger("probe-noisy", 5);
    let calm = logger("probe-calm", 100);
    let bad = TestContainer::run(
        "probe-bad",
        &["--label", "lookout.probe.tcp=:80", "--label", "lookout.probe.interval=often"],
        &["sleep", "100000"],
    );
    let lookout = Lookout::up(dir.path(), &[]);
    let base = lookout.url();

    // HTTP: healthy, then the health file goes: unhealthy after `retries` failures, then back.
    eventually(Duration::from_secs(20), "web healthy", || {
        health(&base, &web.name).filter(|c| c["state"] == "healthy").map(|_| ())
    });
    exec(&web, "rm /www/healthz");
    let c = eventually(Duration::from_secs(20), "web unhealthy", || {
        health(&base, &web.name).filter(|c| c["state"] == "unhealthy")
    });
    let p = probe(&c, "http").unwrap();
    assert!(p["failing_streak"].as_u64().unwrap() >= 2, "{c}");
    assert!(p["last_output"].as_str().unwrap().contains("HTTP 404"), "{c}");
    assert_eq!(
        (c["service"].as_str(), c["container_id"].as_str()),
        (Some(IMAGE.split(':').next().unwrap()), Some(web.id.as_str()))
    );
    let q = format!(r#"lookout_container_health{{container="{}",state="unhealthy"}}"#, web.name);
    eventually(Duration::from_secs(10), "the health series", || {
        instant(&base, &q).first().filter(|s| value(s) == 1.0).map(|_| ())
    });
    let success = instant(&base, &format!(r#"lookout_probe_success{{container="{}",probe="http"}}"#, web.name));
    assert_eq!(success.iter().map(value).collect::<Vec<_>>(), [0.0]);
    exec(&web, "echo ok > /www/healthz");
    eventually(Duration::from_secs(20), "web healthy again", || {
        health(&base, &web.name).filter(|c| c["state"] == "healthy").map(|_| ())
    });

    // Docker's own HEALTHCHECK, read as Docker reports it.
    eventually(Duration::from_secs(20), "own healthcheck healthy", || {
        health(&base, &own.name).filter(|c| probe(c, "docker").is_some_and(|p| p["state"] == "healthy")).map(|_| ())
    });
    exec(&own, "rm /tmp/ok");
    let c = eventually(Duration::from_secs(30), "own healthcheck unhealthy", || {
        health(&base, &own.name).filter(|c| c["state"] == "unhealthy")
    });
    assert!(probe(&c, "docker").unwrap()["last_output"].as_str().unwrap().contains("exit code 1"), "{c}");

    // Log error rate: 20% error lines fail a 5% threshold, 1% do not.
    let c = eventually(Duration::from_secs(30), "the noisy container unhealthy", || {
        health(&base, &noisy.name).filter(|c| c["state"] == "unhealthy")
    });
    let out = probe(&c, "log_error_rate").unwrap()["last_output"].as_str().unwrap().to_string();
    assert!(out.contains("threshold 5.0%"), "{out}");
    let c = eventually(Duration::from_secs(30), "eight judged runs of the calm container", || {
        health(&base, &calm.name).filter(|c| {
            probe(c, "log_error_rate").and_then(|p| p["recent"].as_array()).is_some_and(|r| {
                r.iter().filter(|run| !run["output"].as_str().unwrap_or("").contains("not judged")).count() >= 8
            })
        })
    });
    let p = probe(&c, "log_error_rate").unwrap();
    assert_eq!(c["state"], "healthy", "{c}");
    assert!(p["recent"].as_array().unwrap().iter().all(|r| r["success"] == true), "{c}");

    // A label that does not parse is reported on its container, and the probe is not run on a guess.
    let c = eventually(Duration::from_secs(20), "the bad label reported", || {
        health(&base, &bad.name).filter(|c| c["config_problems"].as_array().is_some_and(|p| !p.is_empty()))
    });
    let problems = c["config_problems"].to_string();
    assert!(problems.contains(r#"lookout.probe.interval=\"often\": not a duration"#), "{problems}");
    assert!(c["probes"].as_array().unwrap().is_empty(), "{c}");
    // ...and as a series an alert can watch.
    let q = format!(r#"lookout_probe_config_problems{{container="{}"}}"#, bad.name);
    eventually(Duration::from_secs(10), "the config problem series", || {
        instant(&base, &q).first().filter(|s| value(s) == 1.0).map(|_| ())
    });
}

#[test]
fn exec_probes_run_inside_the_container_bounded_by_timeout_and_output_cap() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let timing = [
        "--label",
        "lookout.probe.interval=1s",
        "--label",
        "lookout.probe.timeout=1s",
        "--label",
        "lookout.probe.retries=1",
    ];
    let run = |prefix: &str, exec: &str| {
        let label = format!("lookout.probe.exec={exec}");
        let mut args: Vec<&str> = timing.to_vec();
        args.extend(["--label", &label]);
        TestContainer::run(prefix, &args, &["sh", "-c", "echo fine > /tmp/ok; exec sleep 100000"])
    };
    let ok = run("exec-ok", "cat /tmp/ok");
    let hangs = run("exec-hangs", "sleep 30");
    let loud = run("exec-loud", "head -c 10000 /dev/zero | tr '\\0' x; exit 3");
    let lookout = Lookout::up(dir.path(), &[]);
    let base = lookout.url();
    let c = eventually(Duration::from_secs(20), "exec healthy", || {
        health(&base, &ok.name).filter(|c| c["state"] == "healthy")
    });
    assert_eq!(probe(&c, "exec").unwrap()["last_output"], "fine");
    let c = eventually(Duration::from_secs(20), "a hanging exec unhealthy", || {
        health(&base, &hangs.name).filter(|c| c["state"] == "unhealthy")
    });
    assert_eq!(probe(&c, "exec").unwrap()["last_output"], "timed out after 1s", "{c}");
    // Each run that overran was ended with what it started: over several runs, at most the one in
    // progress is left (Docker itself would leave one `sleep 30` per run).
    std::thread::sleep(Duration::from_secs(4));
    let ps = Command::new("docker").args(["exec", &hangs.id, "ps"]).output().unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    let left = ps.lines().filter(|l| l.contains("sleep 30")).count();
    assert!(left <= 1, "{left} timed-out probe commands still running:\n{ps}");
    let c = eventually(Duration::from_secs(20), "a failing exec unhealthy", || {
        health(&base, &loud.name).filter(|c| c["state"] == "unhealthy")
    });
    let out = probe(&c, "exec").unwrap()["last_output"].as_str().unwrap().to_string();
    assert!(out.starts_with("exit code 3: xxx") && out.len() <= 4096, "{} bytes: {}", out.len(), &out[..40]);
}
