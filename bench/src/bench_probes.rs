//! `lookout bench probes` (the prober's cost and schedule drift for many containers, against
//! simulated HTTP endpoints in a child process) and `lookout bench restart` (a real container's
//! first failing probe to its restart, through a real agent and collector).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lookout_agent::discover::{Container, ContainerSet};
use lookout_agent::model::ContainerId;
use lookout_agent::probe::{self, check::Runner, Drift, ProbeEvent, ProberConfig};
use lookout_collector::clock::now_ms;

/// Endpoints the simulated containers are spread over (one port each).
const PORTS: usize = 8;

/// The child process side: serves `GET /healthz` → 200 on `PORTS` loopback ports, prints them.
pub fn serve_targets() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    rt.block_on(async {
        let mut ports = Vec::new();
        for _ in 0..PORTS {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            ports.push(l.local_addr()?.port());
            let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok\n" }));
            tokio::spawn(async move { axum::serve(l, app).await });
        }
        println!("{}", ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" "));
        std::future::pending::<()>().await;
        Ok(())
    })
}

pub fn probes(containers: usize, interval: Duration, duration: Duration, kind: &str) -> anyhow::Result<()> {
    anyhow::ensure!(kind == "http" || kind == "tcp", "--kind is http or tcp");
    use std::io::BufRead;
    let exe = std::env::current_exe()?;
    let mut child =
        std::process::Command::new(exe).arg("probe-targets").stdout(std::process::Stdio::piped()).spawn()?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?).read_line(&mut line)?;
    let ports: Vec<u16> = line.split_whitespace().map(str::parse).collect::<Result<_, _>>()?;
    anyhow::ensure!(ports.len() == PORTS, "the target process said {line:?}");

    let set: ContainerSet = Default::default();
    {
        let mut s = set.write().expect("container set");
        let started = now_ms() as f64 / 1e3 - 3600.0;
        for i in 0..containers {
            let hex = format!("{:064x}", 0xbe9c_0000_u64 + i as u64);
            let id = ContainerId::parse(&hex).ok_or_else(|| anyhow::anyhow!("bad id"))?;
            let labels = HashMap::from([
                if kind == "http" {
                    ("lookout.probe.http".to_string(), format!(":{}/healthz", ports[i % PORTS]))
                } else {
                    ("lookout.probe.tcp".to_string(), format!(":{}", ports[i % PORTS]))
                },
                ("lookout.probe.interval".to_string(), humantime::format_duration(interval).to_string()),
                ("lookout.probe.timeout".to_string(), "2s".to_string()),
            ]);
            let c = Container {
                id: id.clone(),
                name: format!("sim-{i}"),
                image: "sim:1".into(),
                image_id: String::new(),
                labels,
                pid: None,
                log_path: None,
                log_driver: "json-file".into(),
                started_at: Some(started),
                address: Some(std::net::IpAddr::from([127, 0, 0, 1])),
                healthcheck: None,
                finished_at: None,
                upper_dir: None,
                volumes: Vec::new(),
            };
            s.insert(id, Arc::new(c));
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let rt_handle = rt.handle().clone();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let drift: Arc<Drift> = Default::default();
    let (tx, mut rx) = tokio::sync::mpsc::channel(4096);
    let counts: Arc<std::sync::Mutex<(u64, u64)>> = Default::default();
    let runner = Arc::new(Runner::new(None, Default::default(), "/proc".into()));
    let cfg = ProberConfig {
        host: "bench".into(),
        include_labels: vec![],
        rules: vec![],
        health_events: None,
        problems: Default::default(),
    };
    rt.spawn(probe::run(cfg, set, runner, drift.clone(), tx, shutdown.clone()));
    // One thread drives the prober, as in the agent.
    let s2 = shutdown.clone();
    let driver = std::thread::spawn(move || rt.block_on(s2.cancelled()));
    let c2 = counts.clone();
    rt_handle.spawn(async move {
        while let Some(ev) = rx.recv().await {
            if let ProbeEvent::Run(r) = ev {
                let mut c = c2.lock().expect("counts");
                c.0 += 1;
                c.1 += u64::from(!r.success);
            }
        }
    });
    println!(
        "probes: {containers} simulated containers, {kind} probes every {}, warming up one interval",
        humantime::format_duration(interval)
    );
    std::thread::sleep(interval + Duration::from_secs(2));
    *counts.lock().expect("counts") = (0, 0);
    drift.record.store(true, std::sync::atomic::Ordering::Relaxed);
    let cpu0 = crate::process_cpu_seconds();
    let t0 = Instant::now();
    std::thread::sleep(duration);
    let cpu = crate::process_cpu_seconds() - cpu0;
    let wall = t0.elapsed().as_secs_f64();
    drift.record.store(false, std::sync::atomic::Ordering::Relaxed);
    shutdown.cancel();
    let _ = driver.join();
    let rate = containers as f64 / interval.as_secs_f64();
    let floors = [None, Some(Duration::from_millis(100))]
        .map(|tick| bare_loop(&ports, kind, rate, duration.min(Duration::from_secs(20)), tick));
    let _ = child.kill();
    let _ = child.wait();
    let (runs, failed) = *counts.lock().expect("counts");
    let mut d: Vec<Duration> = drift.samples.lock().expect("drift").clone();
    d.sort();
    let q = |p: f64| d.get(((d.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or_default();
    println!(
        "  {runs} probe runs in {wall:.0} s ({:.0}/s), {failed} failed; prober CPU {:.2} s = {:.2}% of one core",
        runs as f64 / wall,
        cpu,
        cpu / wall * 100.0
    );
    println!(
        "  schedule drift (start of a run after its due time): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} runs",
        q(0.5).as_secs_f64() * 1e3,
        q(0.99).as_secs_f64() * 1e3,
        d.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        d.len()
    );
    let [alone, together] = floors;
    let (alone, together) = (alone?, together?);
    println!(
        "  the floor: a bare blocking loop making the same {kind} runs at the same rate on one thread: {:.2}% of one core ({:.0} µs a run) waking for each run, {:.2}% ({:.0} µs) waking every 100 ms for the runs due",
        alone * 100.0,
        alone / rate * 1e6,
        together * 100.0,
        together / rate * 1e6
    );
    Ok(())
}

/// What the machine itself charges for the probes' connections: one plain thread, no runtime, making
/// the same runs (a fresh connection each, an HTTP/1.1 GET read to its end for `http`) at `rate` per
/// second for `duration`, each at its time or, with `tick`, at the next multiple of it. Returns the
/// thread's CPU time (kernel time included) per second of wall.
fn bare_loop(ports: &[u16], kind: &str, rate: f64, duration: Duration, tick: Option<Duration>) -> anyhow::Result<f64> {
    use std::io::{Read, Write};
    let thread_cpu = || {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
    };
    let runs = (rate * duration.as_secs_f64()) as u64;
    let (cpu0, t0) = (thread_cpu(), Instant::now());
    let mut reply = Vec::with_capacity(1024);
    for i in 0..runs {
        let at = i as f64 / rate;
        let at = tick.map_or(at, |t| (at / t.as_secs_f64()).ceil() * t.as_secs_f64());
        if let Some(wait) = (t0 + Duration::from_secs_f64(at)).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let port = ports[i as usize % ports.len()];
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        if kind == "http" {
            write!(s, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")?;
            reply.clear();
            s.read_to_end(&mut reply)?;
            anyhow::ensure!(
                reply.starts_with(b"HTTP/1.1 200"),
                "the target answered {:?}",
                String::from_utf8_lossy(&reply)
            );
        }
    }
    Ok((thread_cpu() - cpu0) / t0.elapsed().as_secs_f64())
}

/// Time from a container's first failing probe run to its restart, through a real agent process and
/// a collector in this process, over `trials` containers.
pub fn restart(trials: usize, interval: Duration, retries: u32) -> anyhow::Result<()> {
    crate::ensure_test_image()?;
    crate::cleanup_bench_containers();
    let rt = tokio::runtime::Runtime::new()?;
    let tmp = tempfile::tempdir()?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let collector = crate::local_collector(&rt, tmp.path().join("collector"), &shutdown)?;
    let cfg = crate::agent_config(tmp.path(), collector.grpc_addr, Duration::from_secs(10))?;
    let mut agent = crate::agent_command(&cfg)?.env("RUST_LOG", "warn").spawn()?;
    let result = (|| -> anyhow::Result<Vec<(f64, f64, f64)>> {
        let mut out = Vec::new();
        for i in 0..trials {
            let name = format!("lookout-bench-restart-{i}");
            let id = run_web(&name, interval, retries)?;
            let healthy_deadline = Instant::now() + Duration::from_secs(60);
            while docker_inspect(&id, "{{.State.Running}}")? != "true" || !probe_ok(&id)? {
                anyhow::ensure!(Instant::now() < healthy_deadline, "{name} did not come up");
                std::thread::sleep(Duration::from_millis(200));
            }
            // Let the probe see it healthy first.
            std::thread::sleep(interval * 2);
            let started = docker_inspect(&id, "{{.State.StartedAt}}")?;
            let (t0, t0_ms) = (Instant::now(), now_ms());
            docker(&["exec", &id, "rm", "/www/healthz"])?;
            let deadline = Instant::now() + Duration::from_secs(120);
            while docker_inspect(&id, "{{.State.StartedAt}}")? == started {
                anyhow::ensure!(Instant::now() < deadline, "{name} was not restarted in 2 minutes");
                std::thread::sleep(Duration::from_millis(50));
            }
            let restarted = t0.elapsed().as_secs_f64();
            let decisions = rt.block_on(async {
                let url = format!("http://{}/api/v1/decisions?kind=restart&container_id={id}", collector.http_addr);
                reqwest::get(url).await?.json::<serde_json::Value>().await
            })?;
            let d = &decisions["data"][0];
            let decided = (d["time_ms"].as_i64().unwrap_or(0) - t0_ms) as f64 / 1e3;
            let done = (d["settled_ms"].as_i64().unwrap_or(0) - t0_ms) as f64 / 1e3;
            println!("  trial {i}: decided after {decided:.2} s, restart carried out after {done:.2} s, Docker started it again after {restarted:.2} s");
            out.push((decided, done, restarted));
            docker(&["rm", "-f", &id])?;
        }
        Ok(out)
    })();
    let _ = agent.kill();
    let _ = agent.wait();
    shutdown.cancel();
    crate::cleanup_bench_containers();
    let out = result?;
    let worst = |f: fn(&(f64, f64, f64)) -> f64| out.iter().map(f).fold(0.0, f64::max);
    println!(
        "restart: interval {} × retries {retries} + 2 s = {:.1} s allowed; worst of {trials}: decided {:.2} s, carried out {:.2} s, running again {:.2} s",
        humantime::format_duration(interval),
        interval.as_secs_f64() * f64::from(retries) + 2.0,
        worst(|t| t.0),
        worst(|t| t.1),
        worst(|t| t.2)
    );
    Ok(())
}

/// An httpd with /healthz that opts in to restarts; its shell exits on SIGTERM so a restart is quick.
fn run_web(name: &str, interval: Duration, retries: u32) -> anyhow::Result<String> {
    let script = "mkdir -p /www && echo ok > /www/healthz && httpd -f -p 80 -h /www & trap 'exit 0' TERM; wait";
    let interval_label = format!("lookout.probe.interval={}", humantime::format_duration(interval));
    let retries_label = format!("lookout.probe.retries={retries}");
    let service_label = format!("lookout.service={name}");
    let out = std::process::Command::new("docker")
        .args(["run", "-d", "--name", name, "--label", "lookout.bench=1", "--label", "lookout.restart=on-unhealthy"])
        .args(["--label", "lookout.probe.http=:80/healthz", "--label", "lookout.probe.timeout=1s"])
        .args(["--label", &interval_label, "--label", &retries_label, "--label", &service_label])
        .args([crate::TEST_IMAGE, "sh", "-c", script])
        .output()?;
    anyhow::ensure!(out.status.success(), "docker run {name}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new("docker").args(args).output()?;
    anyhow::ensure!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn docker_inspect(id: &str, format: &str) -> anyhow::Result<String> {
    docker(&["inspect", "-f", format, id])
}

fn probe_ok(id: &str) -> anyhow::Result<bool> {
    Ok(std::process::Command::new("docker").args(["exec", id, "test", "-f", "/www/healthz"]).status()?.success())
}
