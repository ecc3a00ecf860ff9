//! Forwarding out: remote-write to Debian's VictoriaMetrics and Prometheus 2.42, and Loki push to a
//! second collector, each through a receiver outage and a restart of the forwarding collector:
//! every sample and line arrives once, with its values, times, order and labels.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lookout_collector::ingest::{loki_push, remote_write};
use lookout_collector::model::logs::LogLine;
use lookout_collector::model::{LabelSet, Samples};
use serde_json::Value;
use support::*;

/// A receiver process that can be stopped and started again on the same port and data.
struct Receiver {
    bin: &'static str,
    args: Vec<String>,
    addr: std::net::SocketAddr,
    ready: &'static str,
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    fn victoria_metrics() -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let addr = free_addr();
        let args = vec![
            format!("-httpListenAddr={addr}"),
            format!("-storageDataPath={}", dir.path().join("data").display()),
            "-retentionPeriod=100y".into(),
        ];
        Receiver::start("/usr/bin/victoria-metrics", "victoria-metrics", args, addr, "/health", dir)
    }

    fn prometheus() -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(&cfg, "global:\n  scrape_interval: 15s\n").unwrap();
        let addr = free_addr();
        let args = vec![
            format!("--config.file={}", cfg.display()),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            format!("--web.listen-address={addr}"),
            "--web.enable-remote-write-receiver".into(),
        ];
        Receiver::start("/usr/bin/prometheus", "prometheus", args, addr, "/-/ready", dir)
    }

    fn start(
        bin: &'static str,
        package: &str,
        args: Vec<String>,
        addr: std::net::SocketAddr,
        ready: &'static str,
        dir: tempfile::TempDir,
    ) -> Receiver {
        assert!(
            Path::new(bin).exists(),
            "{bin} is missing: the forwarding tests send to the real one (apt-get install -y --no-install-recommends {package})"
        );
        let log = dir.path().join("receiver.log");
        let mut r = Receiver { bin, args, addr, ready, child: None, log, _dir: dir };
        r.up();
        r
    }

    fn up(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child =
            Command::new(self.bin).args(&self.args).stdout(Stdio::null()).stderr(log).spawn().expect("receiver starts");
        self.child = Some(child);
        let url = format!("http://{}{}", self.addr, self.ready);
        eventually(Duration::from_secs(60), "the receiver to be ready", || {
            reqwest::blocking::get(&url).ok().filter(|r| r.status().is_success())
        });
    }

    /// SIGTERM, as systemd stops it; both flush what they hold.
    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

const SERIES: usize = 20;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Pushes sample `k` of every series to the collector: value k * (series + 1), a second apart.
fn push_samples(base: &str, t0: i64, ks: std::ops::Range<usize>) {
    for k in ks {
        let series: Vec<(LabelSet, Samples)> = (0..SERIES)
            .map(|i| {
                let labels =
                    LabelSet::from_pairs([("__name__", "fwd_requests_total"), ("handler", &format!("/h{i:02}"))]);
                (labels, Samples { ts: vec![t0 + k as i64 * 1000], values: vec![(k * (i + 1)) as f64] })
            })
            .collect();
        let (status, text) = remote_write(base, remote_write::encode(&series));
        assert_eq!(status, 204, "the collector takes the push: {text}");
    }
}

/// Every series' samples as (handler, [(t, v)]) from a Prometheus-style range selector query.
fn samples_by_query(base: &str) -> BTreeMap<String, Vec<(i64, String)>> {
    let at = (now_ms() / 1000).to_string();
    let data = api(base, "/api/v1/query", &[("query", "fwd_requests_total[2h]"), ("time", &at)]);
    let mut out = BTreeMap::new();
    for s in data["result"].as_array().unwrap() {
        let handler = s["metric"]["handler"].as_str().unwrap().to_string();
        let values = s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| ((p[0].as_f64().unwrap() * 1000.0).round() as i64, p[1].as_str().unwrap().to_string()))
            .collect();
        out.insert(handler, values);
    }
    out
}

/// VictoriaMetrics's raw samples (duplicates included) through its export API.
fn samples_in_victoria_metrics(base: &str) -> BTreeMap<String, Vec<(i64, String)>> {
    let _ = reqwest::blocking::get(format!("{base}/internal/force_flush"));
    let text = reqwest::blocking::Client::new()
        .get(format!("{base}/api/v1/export"))
        .query(&[("match[]", "fwd_requests_total")])
        .send()
        .unwrap()
        .text()
        .unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["metric"]["site"], "edge-1", "external labels reach the receiver: {v}");
        let handler = v["metric"]["handler"].as_str().unwrap().to_string();
        let points: Vec<(i64, String)> = v["timestamps"]
            .as_array()
            .unwrap()
            .iter()
            .zip(v["values"].as_array().unwrap())
            .map(|(t, x)| (t.as_i64().unwrap(), x.as_f64().unwrap().to_string()))
            .collect();
        out.insert(handler, points);
    }
    out
}

fn export_status(base: &str) -> Vec<Value> {
    let v: Value = reqwest::blocking::get(format!("{base}/api/v1/status/export")).unwrap().json().unwrap();
    v["data"]["targets"].as_array().cloned().unwrap_or_default()
}

/// Waits until every target has no lag.
fn wait_caught_up(base: &str, within: Duration) {
    eventually(within, "every export target to catch up", || {
        let targets = export_status(base);
        targets.iter().all(|t| t["lag_bytes"] == 0 && t["position"].as_i64() > Some(0)).then_some(())
    });
}

#[test]
fn remote_write_out_delivers_every_sample_once_through_a_receiver_outage_and_a_restart() {
    let mut vm = Receiver::victoria_metrics();
    let mut prom = Receiver::prometheus();
    let dir = tempfile::tempdir().unwrap();
    let (http, grpc) = (free_addr(), free_addr());
    let config = format!(
        r#"
[[export.remote_write]]
name = "vm"
url = "{}/api/v1/write"
external_labels = {{ site = "edge-1" }}
queue = {{ max_per_send = 500, max_shards = 4 }}

[[export.remote_write]]
name = "prometheus"
url = "{}/api/v1/write"
match = ['{{__name__=~"fwd_.*"}}']
"#,
        vm.url(),
        prom.url()
    );
    let mut lookout = Lookout::collector_with(dir.path(), http, grpc, &config);
    let base = lookout.url();
    let t0 = now_ms() - 15 * 60_000;

    push_samples(&base, t0, 0..30);
    wait_caught_up(&base, Duration::from_secs(30));

    // Both receivers away for two minutes while the collector keeps taking samples.
    vm.down();
    prom.down();
    let outage = Instant::now();
    let mut k = 30;
    while outage.elapsed() < Duration::from_secs(120) {
        push_samples(&base, t0, k..k + 1);
        k += 1;
        std::thread::sleep(Duration::from_secs(1));
    }
    let during = export_status(&base);
    for t in &during {
        assert!(t["lag_seconds"].as_f64().unwrap() > 60.0, "the lag shows the outage: {t}");
        assert!(t["retries"].as_u64().unwrap() > 0, "the target retried: {t}");
        assert!(t["last_error"].is_string(), "the failure is shown: {t}");
    }
    let metrics = reqwest::blocking::get(format!("{base}/metrics")).unwrap().text().unwrap();
    assert!(metrics.contains("lookout_collector_export_lag_seconds{target=\"vm\"}"), "{metrics}");

    // The receivers come back; the collector restarts while it is catching up.
    vm.up();
    prom.up();
    push_samples(&base, t0, k..k + 10);
    k += 10;
    lookout.stop();
    lookout = Lookout::collector_with(dir.path(), http, grpc, &config);
    push_samples(&base, t0, k..k + 20);
    k += 20;
    wait_caught_up(&base, Duration::from_secs(60));
    let status = std::process::Command::new(lookout_bin())
        .args(["status", "--collector", &base])
        .output()
        .expect("lookout status runs");
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(shown.contains("remote_write") && shown.contains("vm") && shown.contains("lag"), "{shown}");

    let stored = samples_by_query(&base);
    assert_eq!(stored.len(), SERIES);
    assert!(stored.values().all(|v| v.len() == k), "lookout holds every sample it was sent");
    let in_vm = samples_in_victoria_metrics(&vm.url());
    let in_prom = samples_by_query(&prom.url());
    // VictoriaMetrics prints values its own way ("30" for 30.0): compare as numbers.
    let numeric = |m: &BTreeMap<String, Vec<(i64, String)>>| -> BTreeMap<String, Vec<(i64, f64)>> {
        m.iter().map(|(k, v)| (k.clone(), v.iter().map(|(t, x)| (*t, x.parse().unwrap())).collect())).collect()
    };
    assert_eq!(numeric(&in_vm), numeric(&stored), "VictoriaMetrics has every sample once, with its value and time");
    assert_eq!(in_prom, stored, "Prometheus has every sample, with its value and time");
    drop(lookout);
}

#[test]
fn loki_push_out_delivers_every_line_once_in_order_through_an_outage_and_a_restart() {
    let receiver_dir = tempfile::tempdir().unwrap();
    let (rh, rg) = (free_addr(), free_addr());
    let mut receiver = Lookout::collector_with(receiver_dir.path(), rh, rg, "");
    let dir = tempfile::tempdir().unwrap();
    let (http, grpc) = (free_addr(), free_addr());
    let config = format!(
        r#"
[[export.loki]]
name = "central"
url = "{}/loki/api/v1/push"
match = ['{{app=~"web|api"}}']
external_labels = {{ site = "edge-1" }}
queue = {{ max_per_send = 100, max_shards = 2 }}
"#,
        receiver.url()
    );
    let mut lookout = Lookout::collector_with(dir.path(), http, grpc, &config);
    let base = lookout.url();
    let t0 = (now_ms() - 10 * 60_000) * 1_000_000;
    let apps = ["web", "api", "batch"];
    let push = |base: &str, range: std::ops::Range<i64>| {
        for app in apps {
            let labels = LabelSet::from_pairs([("app", app), ("env", "prod")]);
            let lines: Vec<LogLine> = range
                .clone()
                .map(|i| LogLine { time_ns: t0 + i * 1_000_000, line: format!("{app} line {i}") })
                .collect();
            let body = loki_push::encode(&[(&labels, &lines)], false);
            let r = reqwest::blocking::Client::new()
                .post(format!("{base}/loki/api/v1/push"))
                .header("content-type", "application/x-protobuf")
                .body(body)
                .send()
                .unwrap();
            assert_eq!(r.status(), 204, "{}", r.text().unwrap_or_default());
        }
    };
    push(&base, 0..500);
    wait_caught_up(&base, Duration::from_secs(30));
    receiver.stop();
    for round in 0..10 {
        push(&base, 500 + round * 50..550 + round * 50);
        std::thread::sleep(Duration::from_secs(1));
    }
    receiver = Lookout::collector_with(receiver_dir.path(), rh, rg, "");
    push(&base, 1000..1100);
    lookout.stop();
    lookout = Lookout::collector_with(dir.path(), http, grpc, &config);
    push(&base, 1100..1200);
    wait_caught_up(&base, Duration::from_secs(60));

    for app in apps {
        let got: Value = reqwest::blocking::Client::new()
            .get(format!("{}/loki/api/v1/query_range", receiver.url()))
            .query(&[
                ("query", format!(r#"{{app="{app}"}}"#)),
                ("start", (t0 - 1).to_string()),
                ("end", (t0 + 2_000 * 1_000_000).to_string()),
                ("limit", "5000".to_string()),
                ("direction", "forward".to_string()),
            ])
            .send()
            .unwrap()
            .json()
            .unwrap();
        let streams = got["data"]["result"].as_array().unwrap();
        if app == "batch" {
            assert!(streams.is_empty(), "the stream selector leaves batch out: {got}");
            continue;
        }
        assert_eq!(streams.len(), 1, "{got}");
        assert_eq!(streams[0]["stream"], serde_json::json!({"app": app, "env": "prod", "site": "edge-1"}));
        let lines: Vec<&str> =
            streams[0]["values"].as_array().unwrap().iter().map(|v| v[1].as_str().unwrap()).collect();
        let want: Vec<String> = (0..1200).map(|i| format!("{app} line {i}")).collect();
        assert_eq!(lines, want, "{app}: every line once, in order");
    }
    let metrics = reqwest::blocking::get(format!("{base}/metrics")).unwrap().text().unwrap();
    assert!(metrics.contains("lookout_collector_export_lines_total{target=\"central\",outcome=\"sent\"}"), "{metrics}");
    drop(lookout);
}
