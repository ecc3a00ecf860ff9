//! `lookout bench stop` (how long a collector takes to stop with agents streaming to it) and
//! `lookout bench hostile` (how `1+1` fares for one client while another sends hostile queries).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{agent_command, agent_config};

/// Starts a `lookout collector` process and `agents` agent processes (hosts `bench-0` …) with a
/// busybox container writing log lines, waits until every agent streams, then sends SIGTERM and
/// times the exit; `rounds` times on the same data dir, so every round after the first starts from
/// what the last one left (checkpointed head, agents' positions).
pub fn stop(agents: usize, rounds: usize, stream_for: Duration) -> anyhow::Result<()> {
    crate::ensure_test_image()?;
    crate::cleanup_bench_containers();
    let dir = tempfile::tempdir()?;
    let me = crate::sibling("lookout")?;
    let writer = Command::new("docker")
        .args(["run", "-d", "--label", "lookout.bench=1", crate::TEST_IMAGE, "sh", "-c"])
        .arg("i=0; while true; do echo \"line $i of a steady writer\"; i=$((i+1)); usleep 2000; done")
        .output()?;
    anyhow::ensure!(writer.status.success(), "docker run: {}", String::from_utf8_lossy(&writer.stderr));
    let grpc = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let http = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let cfg = dir.path().join("collector.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\nhttp_listen = \"{http}\"\ngrpc_listen = \"{grpc}\"\n",
            dir.path().join("db").display()
        ),
    )?;
    let mut children = Vec::new();
    for i in 0..agents {
        let adir = dir.path().join(format!("agent-{i}"));
        std::fs::create_dir_all(&adir)?;
        let acfg = agent_config(&adir, grpc, Duration::from_secs(1))?;
        let mut text = std::fs::read_to_string(&acfg)?;
        text.insert_str(0, &format!("host = \"bench-{i}\"\n"));
        std::fs::write(&acfg, text)?;
        children.push(agent_command(&acfg)?.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?);
    }
    let mut times = Vec::new();
    for round in 0..rounds {
        let mut collector = Command::new(&me)
            .args(["collector", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join(format!("collector-{round}.log")))?)
            .spawn()?;
        let connected = wait_for_agents(&http.to_string(), agents, Duration::from_secs(60));
        std::thread::sleep(stream_for);
        let started = Instant::now();
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(collector.id() as i32).expect("a child has a pid"),
            rustix::process::Signal::TERM,
        )?;
        let status = loop {
            if let Some(s) = collector.try_wait()? {
                break s;
            }
            if started.elapsed() > Duration::from_secs(60) {
                collector.kill()?;
                anyhow::bail!("the collector had not stopped 60 s after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let took = started.elapsed();
        println!(
            "round {}: {connected} agents streaming for {stream_for:?}; SIGTERM -> exit {:?} in {:.0} ms",
            round + 1,
            status.code(),
            took.as_secs_f64() * 1000.0
        );
        times.push(took);
    }
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    crate::cleanup_bench_containers();
    times.sort();
    println!(
        "stop with {agents} agents: best {:.0} ms, median {:.0} ms, worst {:.0} ms",
        times[0].as_secs_f64() * 1000.0,
        times[times.len() / 2].as_secs_f64() * 1000.0,
        times[times.len() - 1].as_secs_f64() * 1000.0
    );
    Ok(())
}

/// How many agents the collector counts as connected, once `want` are or `within` has passed.
fn wait_for_agents(http: &str, want: usize, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    let mut seen = 0;
    while Instant::now() < deadline {
        if let Ok(body) = reqwest::blocking::get(format!("http://{http}/metrics")).and_then(|r| r.text()) {
            seen = body
                .lines()
                .find(|l| l.starts_with("lookout_collector_connected_agents "))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .unwrap_or(0.0) as usize;
            if seen >= want {
                return seen;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    seen
}

/// One client sends deep, long and huge queries without pause on `clients` connections; another
/// asks `1+1` every 10 ms; prints the latency of `1+1` (p50, p99, max) and how the hostile ones
/// were answered.
pub fn hostile(seconds: u64, clients: usize) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let dir = tempfile::tempdir()?;
    let running = crate::local_collector(&rt, dir.path().join("db"), &shutdown)?;
    let base = format!("http://{}", running.http_addr);
    let until = Instant::now() + Duration::from_secs(seconds);
    let hostile: Vec<String> = vec![
        format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000)),
        format!("{}up{}", "sum(".repeat(500), ")".repeat(500)),
        vec!["1"; 500].join("+"),
        vec!["up"; 20_000].join(" or "),
        format!("up{{job=\"{}\"}}", "x".repeat(120 << 10)),
        format!("{}count_over_time({{job=\"x\"}}[1m]){}", "sum(".repeat(400), ")".repeat(400)),
    ];
    let statuses = std::sync::Mutex::new(std::collections::BTreeMap::<u16, u64>::new());
    let latencies = std::thread::scope(|scope| {
        for c in 0..clients {
            let (base, hostile, statuses) = (&base, &hostile, &statuses);
            scope.spawn(move || {
                let client = reqwest::blocking::Client::new();
                let mut i = c;
                while Instant::now() < until {
                    let q = &hostile[i % hostile.len()];
                    let path = if i % 2 == 0 { "/api/v1/query" } else { "/loki/api/v1/query_range" };
                    if let Ok(r) = client.post(format!("{base}{path}")).form(&[("query", q.as_str())]).send() {
                        *statuses.lock().expect("lock").entry(r.status().as_u16()).or_default() += 1;
                    }
                    i += 1;
                }
            });
        }
        let client = reqwest::blocking::Client::new();
        let mut lat = Vec::new();
        while Instant::now() < until {
            let t = Instant::now();
            let ok = client
                .post(format!("{base}/api/v1/query"))
                .form(&[("query", "1+1"), ("time", "4")])
                .send()
                .is_ok_and(|r| r.status().is_success());
            if ok {
                lat.push(t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        lat
    });
    shutdown.cancel();
    let _ = rt.block_on(running.done);
    let mut lat = latencies;
    anyhow::ensure!(!lat.is_empty(), "1+1 never answered");
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1000.0;
    println!(
        "1+1 beside {clients} hostile clients for {seconds} s: {} answers, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lat.len(),
        pct(0.5),
        pct(0.99),
        lat[lat.len() - 1].as_secs_f64() * 1000.0
    );
    println!("hostile requests by status: {:?}", statuses.lock().expect("lock"));
    Ok(())
}
