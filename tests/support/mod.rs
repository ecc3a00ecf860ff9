//! The end-to-end harness: the busybox test image, containers that clean up after themselves, lookout
//! processes on free ports, and a small query client. Shared by every file under tests/.
#![allow(dead_code)] // each test file uses a different part of the harness

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const IMAGE: &str = "lookout-test-busybox:latest";

static SERIAL: Mutex<()> = Mutex::new(());

/// Container tests measure CPU and memory; they run one at a time so they do not disturb each other.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Makes sure Docker answers and the busybox image exists, building it when missing.
pub fn ensure_image() {
    let ping = Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output();
    match ping {
        Ok(o) if o.status.success() => {}
        _ => panic!("Docker is not reachable: these tests need a running Docker Engine (apt-get install docker.io && systemctl start docker)"),
    }
    let present =
        Command::new("docker").args(["image", "inspect", IMAGE]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    if present.map(|s| s.success()).unwrap_or(false) {
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-test-image");
    let out = Command::new("sh").arg(script).output().expect("sh runs");
    assert!(
        out.status.success(),
        "building {IMAGE} failed: {}\ninstall busybox with: apt-get install -y busybox-static",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running test container, removed on drop (also when the test panics).
pub struct TestContainer {
    pub name: String,
    pub id: String,
}

impl TestContainer {
    /// `docker run -d` with a unique name under `prefix`, the label `lookout.test=1`, `args` before the
    /// image and `cmd` after it.
    pub fn run(prefix: &str, args: &[&str], cmd: &[&str]) -> TestContainer {
        ensure_image();
        let name = format!("lookout-test-{prefix}-{}-{}", std::process::id(), rand_suffix());
        let out = Command::new("docker")
            .args(["run", "-d", "--name", &name, "--label", "lookout.test=1"])
            .args(args)
            .arg(IMAGE)
            .args(cmd)
            .output()
            .expect("docker runs");
        assert!(out.status.success(), "docker run {name}: {}", String::from_utf8_lossy(&out.stderr));
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        TestContainer { name, id }
    }

    pub fn pid(&self) -> u32 {
        let out = Command::new("docker")
            .args(["inspect", "-f", "{{.State.Pid}}", &self.id])
            .output()
            .expect("docker inspect");
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("a pid")
    }
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn rand_suffix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{nanos:08x}")
}

pub fn free_addr() -> SocketAddr {
    // Not port 0's pick: that comes from the range the kernel also gives outgoing connections
    // (32768-60999), so one of them could take the port before the process under test binds it.
    // These come from below it, each once per test process.
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let start = std::process::id().wrapping_mul(7919) % SPAN;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < SPAN, "no free port left below 32000");
        let port = (LOW + (start + n) % SPAN) as u16;
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            return l.local_addr().unwrap();
        }
    }
}

/// A `lookout` process; killed on drop.
pub struct Lookout {
    pub child: Child,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    /// The agent's own /metrics (for `up`).
    pub agent_metrics: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub stderr_file: PathBuf,
}

pub fn lookout_bin() -> &'static str {
    env!("CARGO_BIN_EXE_lookout")
}

impl Lookout {
    /// `lookout up` with a 1 s interval on free ports, waiting until its API answers.
    pub fn up(data_dir: &Path, extra: &[&str]) -> Lookout {
        Self::up_on(data_dir, free_addr(), free_addr(), extra)
    }

    pub fn up_on(data_dir: &Path, http: SocketAddr, grpc: SocketAddr, extra: &[&str]) -> Lookout {
        let agent_metrics = free_addr();
        let mut args: Vec<String> = vec![
            "up".into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--http".into(),
            http.to_string(),
            "--grpc".into(),
            grpc.to_string(),
            "--agent-metrics".into(),
            agent_metrics.to_string(),
            "--interval".into(),
            "1s".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut l = Self::spawn(&args, data_dir, http, grpc);
        l.agent_metrics = Some(agent_metrics);
        l
    }

    /// `lookout collector --config FILE` alone.
    pub fn collector(data_dir: &Path) -> Lookout {
        let (http, grpc) = (free_addr(), free_addr());
        Self::collector_on(data_dir, http, grpc)
    }

    pub fn collector_on(data_dir: &Path, http: SocketAddr, grpc: SocketAddr) -> Lookout {
        Self::collector_with(data_dir, http, grpc, "")
    }

    /// A collector whose config file ends with `extra` (TOML).
    pub fn collector_with(data_dir: &Path, http: SocketAddr, grpc: SocketAddr, extra: &str) -> Lookout {
        std::fs::create_dir_all(data_dir).unwrap();
        let cfg = data_dir.join("collector.toml");
        std::fs::write(
            &cfg,
            format!(
                "data_dir = \"{}\"\nhttp_listen = \"{http}\"\ngrpc_listen = \"{grpc}\"\n{extra}",
                data_dir.join("db").display()
            ),
        )
        .unwrap();
        Self::spawn(&["collector".into(), "--config".into(), cfg.display().to_string()], data_dir, http, grpc)
    }

    fn spawn(args: &[String], data_dir: &Path, http: SocketAddr, grpc: SocketAddr) -> Lookout {
        std::fs::create_dir_all(data_dir).unwrap();
        let stderr_file = data_dir.join(format!("lookout-{}.log", rand_suffix()));
        let child = Command::new(lookout_bin())
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_file).unwrap())
            .spawn()
            .expect("lookout starts");
        let l = Lookout { child, http, grpc, agent_metrics: None, data_dir: data_dir.to_path_buf(), stderr_file };
        l.wait_ready();
        l
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if reqwest::blocking::get(format!("http://{}/readyz", self.http)).is_ok_and(|r| r.status().is_success()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("lookout did not become ready in 30 s; its log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.stderr_file) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// SIGKILL: what a crash or the OOM killer does.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait: a clean stop.
    pub fn stop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
    }
}

impl Drop for Lookout {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A `lookout collector` (with `collector_toml` appended to its config) and a `lookout agent`
/// shipping to it, as separate processes; both stopped on drop.
pub struct CollectorAndAgent {
    _dir: tempfile::TempDir,
    _collector: Lookout,
    agent: Child,
    /// The collector's HTTP API.
    pub base: String,
}

impl CollectorAndAgent {
    pub fn start(collector_toml: &str) -> CollectorAndAgent {
        let dir = tempfile::tempdir().unwrap();
        let (http, grpc) = (free_addr(), free_addr());
        let collector = Lookout::collector_with(&dir.path().join("c"), http, grpc, collector_toml);
        let agent = spawn_agent(dir.path(), grpc, "");
        CollectorAndAgent { _dir: dir, _collector: collector, agent, base: format!("http://{http}") }
    }
}

impl Drop for CollectorAndAgent {
    fn drop(&mut self) {
        let _ = self.agent.kill();
        let _ = self.agent.wait();
    }
}

/// `lookout agent` with the given config lines added to a 1 s interval and a private state dir;
/// its stderr goes to `dir/agent.log`.
pub fn spawn_agent(dir: &Path, collector_grpc: SocketAddr, extra: &str) -> Child {
    spawn_agent_to(dir, &format!("http://{collector_grpc}"), extra)
}

/// `spawn_agent` for a collector at `url` (`https://...` for one that speaks TLS).
pub fn spawn_agent_to(dir: &Path, url: &str, extra: &str) -> Child {
    let cfg = dir.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "collectors = [\"{url}\"]\ninterval = \"1s\"\nstate_dir = \"{}\"\nmetrics_listen = \"{}\"\n{extra}",
            dir.join("agent").display(),
            free_addr()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("agent.log")).unwrap();
    Command::new(lookout_bin()).args(["agent", "--config", cfg.to_str().unwrap()]).stderr(log).spawn().unwrap()
}

/// A Prometheus API call by form POST, as Grafana makes it; returns the `data` field, panicking with
/// the error body otherwise.
pub fn api(base: &str, path: &str, form: &[(&str, &str)]) -> Value {
    let resp =
        reqwest::blocking::Client::new().post(format!("{base}{path}")).form(form).send().expect("collector reachable");
    let status = resp.status();
    let body: Value = resp.json().expect("JSON body");
    assert!(status.is_success() && body["status"] == "success", "{path} {form:?} -> {status}: {body}");
    body["data"].clone()
}

pub fn instant(base: &str, query: &str) -> Vec<Value> {
    api(base, "/api/v1/query", &[("query", query)])["result"].as_array().cloned().unwrap_or_default()
}

pub fn value(sample: &Value) -> f64 {
    sample["value"][1].as_str().expect("a value string").parse().expect("a number")
}

/// Polls `f` until it returns Some or the time is up.
pub fn eventually<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Debian's `prometheus` (2.42) on a free port with an empty config and the remote-write receiver:
/// the reference the conformance tests compare the collector with. Killed on drop.
pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    pub fn start() -> Prometheus {
        let bin = "/usr/bin/prometheus";
        assert!(
            Path::new(bin).exists(),
            "{bin} is missing: these tests compare with real Prometheus (apt-get install -y --no-install-recommends prometheus)"
        );
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(&cfg, "global:\n  scrape_interval: 15s\n").unwrap();
        let addr = free_addr();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        let p = Prometheus { child, addr, _dir: dir };
        eventually(Duration::from_secs(30), "prometheus to be ready", || {
            reqwest::blocking::get(format!("http://{addr}/-/ready")).ok().filter(|r| r.status().is_success())
        });
        p
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POSTs a remote-write body; returns the status and the response text.
pub fn remote_write(base: &str, body: Vec<u8>) -> (u16, String) {
    let resp = reqwest::blocking::Client::new()
        .post(format!("{base}/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .expect("remote-write receiver reachable");
    (resp.status().as_u16(), resp.text().unwrap_or_default())
}
