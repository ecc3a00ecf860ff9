//! `bench export`: remote-write out to a real VictoriaMetrics (throughput from a filled export
//! log, the exporter's and the receiver's CPU, then the lag under a steady ingest), and Loki push
//! in (protobuf batches of 1,000 lines into a collector process: lines per collector CPU-second).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lookout_collector::export::{self, ExportConfig, TargetConfig};
use lookout_collector::ingest::loki_push;
use lookout_collector::model::logs::LogLine;
use lookout_collector::model::{LabelSet, Samples};
use lookout_collector::store::export::ExportKind;
use lookout_collector::store::{Store, StoreOptions};
use tokio_util::sync::CancellationToken;

use crate::{pid_cpu_seconds, process_cpu_seconds};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_ready(url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if reqwest::blocking::get(url).is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!("{url} did not answer within 60 s")
}

/// One tick of `series` series: what agents' batches put into the store.
fn tick(series: usize, t: i64, k: usize) -> Vec<(LabelSet, Samples)> {
    (0..series)
        .map(|i| {
            let labels = LabelSet::from_pairs([
                ("__name__", "container_cpu_usage_seconds_total"),
                ("container", &format!("c{:05}", i / 10)),
                ("cpu", &format!("cpu{}", i % 10)),
                ("host", &format!("host{:03}", i / 500)),
                ("image", "registry.example.org/shop/web:1.4.2"),
                ("service", "web"),
                ("version", "1.4.2"),
            ]);
            (labels, Samples { ts: vec![t], values: vec![(k * 7 + i) as f64 * 0.01] })
        })
        .collect()
}

pub fn run(
    series: usize,
    ticks: usize,
    steady_rate: usize,
    steady_seconds: u64,
    lines_seconds: u64,
) -> anyhow::Result<()> {
    let vm_bin = "/usr/bin/victoria-metrics";
    anyhow::ensure!(
        Path::new(vm_bin).exists(),
        "{vm_bin} is missing: apt-get install -y --no-install-recommends victoria-metrics"
    );
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let vm = Killed(
        Command::new(vm_bin)
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg(format!("-storageDataPath={}", dir.path().join("vm").display()))
            .arg("-retentionPeriod=100y")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    wait_ready(&format!("http://127.0.0.1:{port}/health"))?;

    let options = StoreOptions { export_samples: true, ..Default::default() };
    let store = Arc::new(Store::open(&dir.path().join("store"), options)?);
    let t0 = lookout_collector::clock::now_ms() - (ticks as i64 + 60) * 10_000;
    print!("remote-write out: filling the store with {series} series x {ticks} ticks ... ");
    let fill = Instant::now();
    for k in 0..ticks {
        store.append("bench", "bench", k as u64 + 1, 0, tick(series, t0 + k as i64 * 10_000, k))?;
    }
    let total = (series * ticks) as f64;
    println!("{:.1} s", fill.elapsed().as_secs_f64());

    let target: TargetConfig =
        toml::from_str(&format!("name = \"vm\"\nurl = \"http://127.0.0.1:{port}/api/v1/write\""))?;
    let cfg = ExportConfig { remote_write: vec![target], ..Default::default() };
    // From the start of the log, not its end as a new target would.
    store.save_export_position(ExportKind::Samples, "vm", 0)?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let statuses: export::Statuses = Default::default();
    let stop = CancellationToken::new();
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = export::queue::ExportMetrics::register(&mut registry);
    let (cpu0, vm0, wall) = (process_cpu_seconds(), pid_cpu_seconds(vm.0.id()).unwrap_or(0.0), Instant::now());
    let tasks = rt.block_on(async { export::start(&cfg, store.clone(), metrics, statuses.clone(), stop.clone()) })?;
    let sent = |s: &export::Statuses| s.lock().expect("status lock poisoned").first().map_or(0, |t| t.sent);
    while sent(&statuses) < series as u64 * ticks as u64 {
        std::thread::sleep(Duration::from_millis(20));
        anyhow::ensure!(wall.elapsed() < Duration::from_secs(600), "the exporter did not finish in 10 minutes");
    }
    let (wall, cpu, vm_cpu) =
        (wall.elapsed().as_secs_f64(), process_cpu_seconds() - cpu0, pid_cpu_seconds(vm.0.id()).unwrap_or(0.0) - vm0);
    println!(
        "  {total:.0} samples forwarded in {wall:.2} s: {:.0} samples/s; exporter {cpu:.2} CPU-s ({:.0} samples per CPU-second); VictoriaMetrics {vm_cpu:.2} CPU-s",
        total / wall,
        total / cpu.max(1e-9),
    );
    let _ = reqwest::blocking::get(format!("http://127.0.0.1:{port}/internal/force_flush"));
    std::thread::sleep(Duration::from_secs(1));
    let count: serde_json::Value =
        reqwest::blocking::Client::new().get(format!("http://127.0.0.1:{port}/api/v1/series/count")).send()?.json()?;
    println!("  VictoriaMetrics holds {} series", count["data"][0]);

    // Steady ingest: agent-sized batches every second; the lag every 250 ms.
    println!("remote-write out under a steady {steady_rate} samples/s for {steady_seconds} s:");
    let ingest_store = store.clone();
    let per_batch = 5_000usize.min(steady_rate.max(1));
    let batches_per_s = steady_rate.div_ceil(per_batch);
    let end = Instant::now() + Duration::from_secs(steady_seconds);
    let ingest = std::thread::spawn(move || -> anyhow::Result<()> {
        let mut seq = ticks as u64 + 1;
        let mut k = ticks;
        while Instant::now() < end {
            let second = Instant::now();
            let t = lookout_collector::clock::now_ms();
            for b in 0..batches_per_s {
                let batch: Vec<(LabelSet, Samples)> = tick(per_batch, t, k)
                    .into_iter()
                    .map(|(mut l, s)| {
                        l.set("batch", &b.to_string());
                        (l, s)
                    })
                    .collect();
                ingest_store.append("steady", "steady", seq, t, batch)?;
                seq += 1;
            }
            k += 1;
            std::thread::sleep(Duration::from_secs(1).saturating_sub(second.elapsed()));
        }
        Ok(())
    });
    let mut lags = Vec::new();
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(250));
        let position = statuses.lock().expect("status lock poisoned")[0].position;
        let lag = store.export_lag(ExportKind::Samples, position)?;
        lags.push(lag.oldest_ms.map_or(0.0, |t| (lookout_collector::clock::now_ms() - t).max(0) as f64 / 1000.0));
    }
    ingest.join().expect("ingest thread")?;
    lags.sort_by(f64::total_cmp);
    let at = |q: f64| lags[((lags.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "  export lag: p50 {:.2} s, p99 {:.2} s, max {:.2} s ({} readings)",
        at(0.5),
        at(0.99),
        at(1.0),
        lags.len()
    );
    stop.cancel();
    rt.block_on(async {
        for t in tasks {
            let _ = t.await;
        }
    });
    drop(vm);

    loki_in(lines_seconds)
}

/// Protobuf pushes of 1,000 lines from two client threads into a collector process.
fn loki_in(seconds: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (http, grpc) = (free_port()?, free_port()?);
    let cfg = dir.path().join("collector.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\nhttp_listen = \"127.0.0.1:{http}\"\ngrpc_listen = \"127.0.0.1:{grpc}\"\n",
            dir.path().join("db").display()
        ),
    )?;
    let collector = Killed(
        Command::new(crate::sibling("lookout-collector")?)
            .args(["--config", cfg.to_str().unwrap_or_default()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let base = format!("http://127.0.0.1:{http}");
    wait_ready(&format!("{base}/readyz"))?;
    let words = ["GET", "/api/v1/orders", "200", "user=42", "took", "ms", "POST", "/login", "302", "cache=miss"];
    // The bodies are made before the clock starts, so the clients spend their CPU on sending.
    let t0 = lookout_collector::clock::now_ms() * 1_000_000 - 60_000_000_000;
    let bodies: Vec<Vec<Vec<u8>>> = (0..2)
        .map(|c| {
            (0..40i64)
                .map(|n| {
                    let labels = LabelSet::from_pairs([
                        ("job", "varlogs"),
                        ("host", &format!("web-{c}-{n}")),
                        ("filename", "/var/log/app.log"),
                    ]);
                    let lines: Vec<LogLine> = (0..1000i64)
                        .map(|i| LogLine {
                            time_ns: t0 + n * 1000 + i,
                            line: format!(
                                "level=info msg=\"{} {} {}\" request_id={:08x} {} {}",
                                words[(i as usize) % 10],
                                words[(i as usize * 3 + 1) % 10],
                                words[(i as usize * 7 + 2) % 10],
                                n * 1000 + i,
                                words[(i as usize * 5 + 3) % 10],
                                i % 97
                            ),
                        })
                        .collect();
                    loki_push::encode(&[(&labels, &lines)], false)
                })
                .collect()
        })
        .collect();
    let cpu0 = pid_cpu_seconds(collector.0.id()).unwrap_or(0.0);
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let clients: Vec<_> = bodies
        .into_iter()
        .map(|bodies| {
            let base = base.clone();
            std::thread::spawn(move || -> anyhow::Result<u64> {
                let client = reqwest::blocking::Client::new();
                let mut sent = 0u64;
                for body in bodies.iter().cycle() {
                    if Instant::now() >= end {
                        break;
                    }
                    let r = client
                        .post(format!("{base}/loki/api/v1/push"))
                        .header("content-type", "application/x-protobuf")
                        .body(body.clone())
                        .send()?;
                    anyhow::ensure!(r.status().as_u16() == 204, "push answered {}", r.status());
                    sent += 1000;
                }
                Ok(sent)
            })
        })
        .collect();
    let mut lines = 0;
    for c in clients {
        lines += c.join().expect("client thread")?;
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = pid_cpu_seconds(collector.0.id()).unwrap_or(0.0) - cpu0;
    println!(
        "Loki push in: {lines} lines in {wall:.1} s from 2 clients ({:.0} lines/s); collector {cpu:.2} CPU-s: {:.0} lines per collector CPU-second",
        lines as f64 / wall,
        lines as f64 / cpu.max(1e-9)
    );
    Ok(())
}
