//! `lookout bench fleet`: one `lookout collector` process and hundreds of simulated hosts, each on
//! its own gRPC stream, sending an agent's batches on an agent's schedule, while a dashboard queries.
//! Measures what one collector carries: CPU, memory per series, disk per sample, commit latency.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lookout_proto::v1::{
    agent_message::Msg, collector_message, ingest_client::IngestClient, AgentMessage, Batch, Hello, Label, LogLine,
    LogStream,
};

use crate::{pid_cpu_seconds, pid_status_kib, sim_batches, SERIES};

pub struct Fleet {
    pub hosts: usize,
    pub containers: usize,
    pub duration: Duration,
    pub interval: Duration,
    pub lines_per_second: usize,
    pub prometheus: String,
}

/// Latencies in ms, kept for percentiles.
#[derive(Default)]
struct Latencies(Vec<f64>);

impl Latencies {
    fn pct(&mut self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0.sort_by(f64::total_cmp);
        self.0[((self.0.len() - 1) as f64 * p).round() as usize]
    }
}

pub fn run(f: Fleet) -> anyhow::Result<()> {
    let ticks = (f.duration.as_secs_f64() / f.interval.as_secs_f64()).ceil().max(3.0) as usize;
    let series = f.hosts * f.containers * SERIES.len();
    let lines_per_tick = (f.lines_per_second as f64 * f.interval.as_secs_f64()).round() as usize;
    println!(
        "fleet: {} hosts x {} containers x {} series = {series} series, one batch per host every {:?} ({} samples/s), {} log lines/s per host, {ticks} ticks",
        f.hosts,
        f.containers,
        SERIES.len(),
        f.interval,
        series as f64 / f.interval.as_secs_f64(),
        f.lines_per_second,
    );
    let dir = tempfile::tempdir()?;
    let me = crate::sibling("lookout")?;
    let grpc = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let http = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let db = dir.path().join("db");
    let cfg = dir.path().join("collector.toml");
    std::fs::write(
        &cfg,
        format!("data_dir = \"{}\"\nhttp_listen = \"{http}\"\ngrpc_listen = \"{grpc}\"\n", db.display()),
    )?;
    let mut collector = Command::new(&me)
        .args(["collector", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("collector.log"))?)
        .spawn()?;
    let pid = collector.id();
    let result = drive(&f, ticks, lines_per_tick, grpc, http, pid, &db);
    let _ = collector.kill();
    let _ = collector.wait();
    let lookout = result.map_err(|e| anyhow::anyhow!("{e:#} (the collector's log: {})", dir.path().display()))?;
    if f.prometheus != "none" {
        prometheus_beside(&f, lookout)?;
    }
    Ok(())
}

/// What the lookout run measured, for the peer's figures beside it.
#[derive(Clone, Copy)]
struct Measured {
    rss_per_series: f64,
}

fn drive(
    f: &Fleet,
    ticks: usize,
    lines_per_tick: usize,
    grpc: std::net::SocketAddr,
    http: std::net::SocketAddr,
    pid: u32,
    db: &Path,
) -> anyhow::Result<Measured> {
    let rt = tokio::runtime::Runtime::new()?;
    let base = format!("http://{http}");
    rt.block_on(wait_ready(&base))?;
    let templates = Arc::new(sim_batches(f.containers, ticks));
    let commits = Arc::new(Mutex::new(Latencies::default()));
    let first_commits = Arc::new(Mutex::new(Latencies::default()));
    let start_at = Instant::now() + Duration::from_secs(2);
    let t0_ms = lookout_collector::clock::now_ms() + 2000;
    // Measured from the second tick on: the first creates every series.
    let steady_from = start_at + f.interval;
    let mut tasks = Vec::new();
    for h in 0..f.hosts {
        let (templates, commits, first_commits) = (templates.clone(), commits.clone(), first_commits.clone());
        // Agents' ticks fall anywhere in the interval, as a fleet's do.
        let offset = f.interval.mul_f64(h as f64 / f.hosts as f64);
        let interval = f.interval;
        tasks.push(rt.spawn(async move {
            host_stream(
                h,
                grpc,
                templates,
                (start_at + offset, interval, t0_ms),
                lines_per_tick,
                (commits, first_commits),
            )
            .await
        }));
    }
    // A dashboard during ingest: one host's containers' CPU over the last 5 minutes, and its logs.
    let queries = rt.spawn(dashboard(base.clone(), f.hosts, start_at + f.interval * ticks as u32 + f.interval));
    let cpu_at = |at: Instant| {
        rt.block_on(async move { tokio::time::sleep_until(at.into()).await });
        (Instant::now(), pid_cpu_seconds(pid).unwrap_or(0.0))
    };
    let (w0, c0) = cpu_at(steady_from);
    let mut sent = 0u64;
    for t in tasks {
        sent += rt.block_on(t)??;
    }
    let (w1, c1) = (Instant::now(), pid_cpu_seconds(pid).unwrap_or(0.0));
    let (mut promql, mut logql) = rt.block_on(queries)??;
    let rss = pid_status_kib(pid, "VmRSS").unwrap_or(0) as f64;
    let hwm = pid_status_kib(pid, "VmHWM").unwrap_or(0) as f64;
    let series = (f.hosts * f.containers * SERIES.len()) as f64;
    let samples = series * ticks as f64;
    let lines = (f.hosts * lines_per_tick * ticks) as f64;
    let disk = tree_bytes(db) as f64;
    let cores = (c1 - c0) / (w1 - w0).as_secs_f64();
    println!("  batches acked: {sent} of {}", f.hosts * ticks);
    println!(
        "  collector CPU (steady, after the first tick): {:.1}% of one core ({:.0} samples/s, {:.0} lines/s arriving)",
        cores * 100.0,
        series / f.interval.as_secs_f64(),
        (f.hosts * lines_per_tick) as f64 / f.interval.as_secs_f64()
    );
    println!(
        "  collector memory: RSS {:.0} MiB (peak {:.0} MiB) for {series:.0} series: {:.0} bytes per series",
        rss / 1048576.0,
        hwm / 1048576.0,
        rss / series
    );
    println!(
        "  disk: {:.1} MiB for {samples:.0} samples and {lines:.0} lines ({:.2} bytes per sample if the lines were free)",
        disk / 1048576.0,
        disk / samples
    );
    let (mut c, mut first) = (commits.lock().unwrap(), first_commits.lock().unwrap());
    println!(
        "  batch send -> ack (commit latency): first tick (new series) p50 {:.0} / p99 {:.0} ms; after: p50 {:.0} / p99 {:.0} / max {:.0} ms",
        first.pct(0.5),
        first.pct(0.99),
        c.pct(0.5),
        c.pct(0.99),
        c.pct(1.0)
    );
    println!(
        "  dashboard during ingest: PromQL range query p50 {:.0} / p99 {:.0} ms ({} queries); LogQL p50 {:.0} / p99 {:.0} ms ({})",
        promql.pct(0.5),
        promql.pct(0.99),
        promql.0.len(),
        logql.pct(0.5),
        logql.pct(0.99),
        logql.0.len()
    );
    Ok(Measured { rss_per_series: rss / series })
}

async fn wait_ready(base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if reqwest::get(format!("{base}/readyz")).await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the collector was not ready in 30 s")
}

type Shared = Arc<Mutex<Latencies>>;

/// One simulated host: its own connection and stream, a batch per tick; returns the batches acked.
async fn host_stream(
    h: usize,
    grpc: std::net::SocketAddr,
    templates: Arc<Vec<Batch>>,
    (first, interval, t0_ms): (Instant, Duration, i64),
    lines_per_tick: usize,
    (commits, first_commits): (Shared, Shared),
) -> anyhow::Result<u64> {
    let host = format!("host-{h:04}");
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))?.tcp_nodelay(true).connect().await?;
    let mut client = IngestClient::new(channel)
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let hello =
        Hello { agent_id: format!("fleet-{host}"), host: host.clone(), version: String::new(), resume_from_seq: 0 };
    tx.send(AgentMessage { msg: Some(Msg::Hello(hello)) }).await?;
    let mut inbound = client.stream(tokio_stream::wrappers::ReceiverStream::new(rx)).await?.into_inner();
    inbound.message().await?; // Welcome
    let sent_at: Arc<Mutex<HashMap<u64, Instant>>> = Default::default();
    let last = templates.len() as u64;
    let sender = {
        let (sent_at, host) = (sent_at.clone(), host.clone());
        tokio::spawn(async move {
            let template_t0 =
                templates[0].groups.first().and_then(|g| g.series.first()).map_or(0, |s| s.timestamps_ms[0]);
            for (k, template) in templates.iter().enumerate() {
                tokio::time::sleep_until((first + interval * k as u32).into()).await;
                let mut b = template.clone();
                let shift = t0_ms + (interval.as_millis() as i64) * k as i64 - (template_t0 + k as i64 * 10_000);
                for g in &mut b.groups {
                    for l in &mut g.labels {
                        if l.name == "host" {
                            l.value.clone_from(&host);
                        }
                    }
                    for s in &mut g.series {
                        for t in &mut s.timestamps_ms {
                            *t += shift;
                        }
                    }
                }
                if lines_per_tick > 0 {
                    let now_ns = lookout_collector::clock::now_ms() * 1_000_000;
                    let label = |n: &str, v: &str| Label { name: n.into(), value: v.into() };
                    b.log_streams.push(LogStream {
                        labels: vec![label("host", &host), label("container", "web-0"), label("stream", "stdout")],
                        lines: (0..lines_per_tick)
                            .map(|i| LogLine {
                                time_ns: now_ns + i as i64,
                                text: format!("GET /api/items/{i} 200 {} ms tick {k}", i % 97),
                                flags: 0,
                            })
                            .collect(),
                    });
                }
                sent_at.lock().unwrap().insert(b.seq, Instant::now());
                if tx.send(AgentMessage { msg: Some(Msg::Batch(b)) }).await.is_err() {
                    break;
                }
            }
            tx.closed().await;
        })
    };
    let mut acked = 0u64;
    while let Some(m) = inbound.message().await? {
        if let Some(collector_message::Msg::Ack(a)) = m.msg {
            if let Some(at) = sent_at.lock().unwrap().remove(&a.seq) {
                let ms = at.elapsed().as_secs_f64() * 1000.0;
                let into = if a.seq == 1 { &first_commits } else { &commits };
                into.lock().unwrap().0.push(ms);
            }
            acked += 1;
            if a.seq == last {
                break;
            }
        }
    }
    sender.abort();
    Ok(acked)
}

/// Grafana's load during ingest: a range query and a log query once a second until `until`.
async fn dashboard(base: String, hosts: usize, until: Instant) -> anyhow::Result<(Latencies, Latencies)> {
    let client = reqwest::Client::new();
    let (mut promql, mut logql) = (Latencies::default(), Latencies::default());
    let mut k = 0usize;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        k += 1;
        let host = format!("host-{:04}", (k * 7919) % hosts);
        let now = lookout_collector::clock::now_ms() / 1000;
        let q = format!("sum by (container) (rate(container_cpu_usage_seconds_total{{host=\"{host}\"}}[1m]))");
        let form =
            [("query", q), ("start", (now - 300).to_string()), ("end", now.to_string()), ("step", "15".to_string())];
        let t = Instant::now();
        let r = client.post(format!("{base}/api/v1/query_range")).form(&form).send().await?;
        anyhow::ensure!(r.status().is_success(), "query_range: {} {}", r.status(), r.text().await?);
        r.bytes().await?;
        promql.0.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let logs = [
            ("query", format!("{{host=\"{host}\"}} |= \"tick\"")),
            ("start", ((now - 300) * 1_000_000_000).to_string()),
            ("end", (now * 1_000_000_000).to_string()),
            ("limit", "100".to_string()),
        ];
        let r = client.get(format!("{base}/loki/api/v1/query_range")).query(&logs).send().await?;
        anyhow::ensure!(r.status().is_success(), "loki query_range: {} {}", r.status(), r.text().await?);
        r.bytes().await?;
        logql.0.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok((promql, logql))
}

/// The same series count written to a real Prometheus by remote-write: its memory per series.
fn prometheus_beside(f: &Fleet, lookout: Measured) -> anyhow::Result<()> {
    use lookout_collector::ingest::remote_write;
    use lookout_collector::model::{LabelSet, Samples};
    let dir = tempfile::tempdir()?;
    let prom = crate::bench_dashboards::PromProcess::start(&f.prometheus, dir.path())?;
    let pid = prom.child.id();
    let rt = tokio::runtime::Runtime::new()?;
    let client = reqwest::Client::new();
    let templates = sim_batches(f.containers, 3);
    let now = lookout_collector::clock::now_ms() / 1000 * 1000;
    for (k, template) in templates.iter().enumerate() {
        let ts = now - (templates.len() - 1 - k) as i64 * 10_000;
        // Sent a few hosts at a time, in bodies of a size Prometheus's own senders use.
        for hosts in (0..f.hosts).collect::<Vec<_>>().chunks(10) {
            let mut per_series: Vec<(LabelSet, Samples)> = Vec::new();
            for h in hosts {
                let host = format!("host-{h:04}");
                for g in &template.groups {
                    for s in &g.series {
                        let mut pairs: Vec<(String, String)> = g
                            .labels
                            .iter()
                            .chain(&s.labels)
                            .map(|l| (l.name.clone(), if l.name == "host" { host.clone() } else { l.value.clone() }))
                            .collect();
                        pairs.sort();
                        let labels = LabelSet::from_pairs(pairs);
                        per_series.push((labels, Samples { ts: vec![ts], values: s.values.clone() }));
                    }
                }
            }
            let target = [("prometheus", prom.url.clone())];
            crate::bench_dashboards::write_all(&rt, &client, &target, remote_write::encode(&per_series))?;
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let series = (f.hosts * f.containers * SERIES.len()) as f64;
    let rss = pid_status_kib(pid, "VmRSS").unwrap_or(0) as f64;
    println!(
        "  Prometheus ({}), same series by remote-write, 3 samples each: RSS {:.0} MiB, {:.0} bytes per series (lookout: {:.0})",
        f.prometheus,
        rss / 1048576.0,
        rss / series,
        lookout.rss_per_series
    );
    Ok(())
}

/// Bytes of the files under `dir`, all levels.
fn tree_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    rd.filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_bytes(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}
