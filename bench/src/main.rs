//! `lookout-bench` (also reached as `lookout bench`): measurements anyone can rerun on their
//! machine, printing the figures docs/performance.md records. Real store files, real containers,
//! real processes; no timed asserts. Not shipped in the packages.

mod bench_daemons;
mod bench_dashboards;
mod bench_export;
mod bench_fleet;
mod bench_gates;
mod bench_logs;
mod bench_panels;
mod bench_probes;
mod bench_promqltest;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use lookout_collector::model::{LabelSet, Samples};
use lookout_collector::store::{Store, StoreOptions};

#[derive(Parser)]
#[command(name = "lookout-bench", version, about = "Measure lookout on this machine (figures for docs/performance.md)")]
struct Cli {
    #[command(subcommand)]
    what: Bench,
}

fn main() -> std::process::ExitCode {
    // A bench prints its figures; the collector's info lines would drown them.
    lookout_daemon::logging::init("warn", Default::default());
    run(Cli::parse().what)
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

/// A program of the workspace built beside this one (`cargo build --release --workspace` builds them all).
pub(crate) fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name(name);
    anyhow::ensure!(path.exists(), "{} is not built; build it with: cargo build --release --workspace", path.display());
    Ok(path)
}

#[derive(Subcommand)]
pub enum Bench {
    /// What one collector process carries: N simulated hosts, each on its own gRPC stream sending
    /// an agent's batch of M containers every interval (and log lines), while a dashboard queries:
    /// the collector's CPU, memory per series, disk per sample, commit and query latency; then the
    /// same series written to a real Prometheus for its memory per series.
    Fleet {
        #[arg(long, default_value_t = 500)]
        hosts: usize,
        #[arg(long, default_value_t = 50)]
        containers: usize,
        #[arg(long, default_value = "3m", value_parser = |s: &str| humantime::parse_duration(s))]
        duration: Duration,
        #[arg(long, default_value = "10s", value_parser = |s: &str| humantime::parse_duration(s))]
        interval: Duration,
        /// Log lines per second per host.
        #[arg(long, default_value_t = 10)]
        lines: usize,
        /// The Prometheus binary to compare with, or `none`.
        #[arg(long, default_value = "/usr/bin/prometheus")]
        prometheus: String,
    },
    /// A collector with agents streaming to it is sent SIGTERM: the time until it has exited.
    Stop {
        #[arg(long, default_value_t = 10)]
        agents: usize,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// How long the agents stream before each SIGTERM.
        #[arg(long, default_value = "5s", value_parser = |s: &str| humantime::parse_duration(s))]
        stream_for: Duration,
    },
    /// What checking a token costs the collector per request: SHA-256 of the presented token and a
    /// constant-time comparison with every entry of a tokens file of N entries.
    Auth {
        #[arg(long, default_value_t = 100)]
        entries: usize,
        #[arg(long, default_value_t = 200_000)]
        checks: usize,
    },
    /// Replay of an agent's disk spool: batches written as an outage leaves them, then sent by the
    /// agent's shipping code to a real collector until every one is acknowledged.
    Spool {
        #[arg(long, default_value_t = 50)]
        containers: usize,
        #[arg(long, default_value_t = 360)]
        batches: usize,
    },
    /// `1+1` latency for one client while others send deep, long and huge queries without pause.
    Hostile {
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        #[arg(long, default_value_t = 2)]
        clients: usize,
    },
    /// Collector ingest: durable samples per second into the SQLite store, and bytes per sample on disk,
    /// for realistic container series sampled every 10 s.
    Ingest {
        /// Containers to simulate (22 series each).
        #[arg(long, default_value_t = 500)]
        containers: usize,
        /// Samples per series (8640 = one day at 10 s).
        #[arg(long, default_value_t = 2880)]
        samples: usize,
        /// Samples per series in one batch (an agent that was away sends many at once).
        #[arg(long, default_value_t = 30)]
        per_batch: usize,
        /// Where to put the database (a temporary directory when absent).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// End-to-end ingest: batches shaped like an agent's, over gRPC with gzip, into a collector on
    /// loopback, timed until the last ack (so the figure includes decoding and durable commits).
    Grpc {
        #[arg(long, default_value_t = 500)]
        containers: usize,
        /// Ticks to send (one batch per tick, one sample per series).
        #[arg(long, default_value_t = 360)]
        ticks: usize,
        /// Rounds of plaintext then mutual TLS.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Query latency on the store: a dashboard's range query over N containers' stored series.
    Query {
        #[arg(long, default_value_t = 100)]
        containers: usize,
        /// Hours of 10 s samples to store first.
        #[arg(long, default_value_t = 2)]
        hours: usize,
        /// How many times to run each query (the best and the median are printed).
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
    /// Grafana's load over HTTP: a dashboard query, the whole container dashboard and label values,
    /// on lookout and on a real Prometheus fed the same series by remote-write in the same run.
    Dashboards {
        #[arg(long, default_value_t = 100)]
        containers: usize,
        /// Hours of 10 s samples to write first.
        #[arg(long, default_value_t = 2)]
        hours: usize,
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Series added before the label-value look-ups.
        #[arg(long, default_value_t = 10_000)]
        label_series: usize,
        /// The Prometheus binary to compare with, or `none`.
        #[arg(long, default_value = "/usr/bin/prometheus")]
        prometheus: String,
    },
    /// Grafana dashboards' panel queries with data on lookout and on a Prometheus beside it (scraping
    /// node_exporter or cAdvisor on the same host): variables resolved through each one's API.
    Panels {
        /// Dashboard JSON files (Grafana's export format).
        #[arg(required = true)]
        dashboards: Vec<PathBuf>,
        /// lookout's collector HTTP API.
        #[arg(long, default_value = "http://127.0.0.1:9470")]
        lookout: String,
        /// The Prometheus to compare with.
        #[arg(long)]
        prometheus: Option<String>,
        /// The time range every panel shows.
        #[arg(long, default_value = "30m", value_parser = humantime_duration)]
        range: Duration,
        /// List the queries with no data on lookout that have data on the peer.
        #[arg(long)]
        verbose: bool,
    },
    /// PromQL test files in Prometheus's `promqltest` format (Prometheus's own, or the engine's under
    /// collector/testdata/promql): each evaluation's answer from lookout's engine against the file's.
    Promqltest {
        /// `.test` files, or directories of them.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// List every evaluation that disagrees, with its line and why.
        #[arg(long)]
        verbose: bool,
        /// Run as a Prometheus server does by default, without delayed name removal (Prometheus's
        /// own test engine, which these files are written for, has it on).
        #[arg(long)]
        names_dropped_at_once: bool,
    },
    /// The agent's log reading path on one core: tail, parse and join a json-file log of 100-byte
    /// lines, beside reading the file and a serde_json parse of every line.
    Logread {
        #[arg(long, default_value_t = 2_000_000)]
        lines: usize,
    },
    /// The collector's log path: durable ingest of agent-shaped batches, compression, and a needle
    /// search over everything stored, through the Loki HTTP API.
    Logstore {
        /// GiB of log text to store.
        #[arg(long, default_value_t = 1.0)]
        gib: f64,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// The agent's log path end to end with a real container and agent process: json-file to
    /// committed at a collector, its CPU and memory, and the delay at a steady write rate.
    Logship {
        #[arg(long, default_value_t = 1_000_000)]
        lines: usize,
        /// Lines per second for the delay measurement.
        #[arg(long, default_value_t = 10_000)]
        rate: usize,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
    /// Prober cost: CPU and schedule drift of probing N containers (HTTP endpoints simulated by a
    /// child process), measured after one interval of warm-up.
    Probes {
        #[arg(long, default_value_t = 1000)]
        containers: usize,
        #[arg(long, default_value = "10s", value_parser = humantime_duration)]
        interval: Duration,
        #[arg(long, default_value = "60s", value_parser = humantime_duration)]
        duration: Duration,
        /// `http` (GET /healthz) or `tcp` (connect).
        #[arg(long, default_value = "http")]
        kind: String,
    },
    /// The simulated endpoints of `bench probes` (started by it).
    #[command(hide = true)]
    ProbeTargets,
    /// Generated rollouts (half regressions: error rate ×2 and ×5, latency +30%, a memory leak, a
    /// crash loop; half clean; all with noise) judged by real gates over a real store in simulated
    /// time: the confusion table and the time to a verdict.
    Gates {
        #[arg(long, default_value_t = 40)]
        rollouts: usize,
        /// The analysis interval, in seconds.
        #[arg(long, default_value_t = 60)]
        interval: u64,
        /// The window, in analysis intervals.
        #[arg(long, default_value_t = 5)]
        window: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Failing probe to restart: real containers, a real agent process, a collector in this process.
    Restart {
        #[arg(long, default_value_t = 5)]
        trials: usize,
        #[arg(long, default_value = "2s", value_parser = humantime_duration)]
        interval: Duration,
        #[arg(long, default_value_t = 3)]
        retries: u32,
    },
    /// Forwarding and pushes: remote-write out to a real VictoriaMetrics from a filled export log
    /// (samples/s, the exporter's and VictoriaMetrics's CPU), the export lag under a steady ingest,
    /// and Loki push in (protobuf, 1,000 lines a request) to a collector process.
    Export {
        #[arg(long, default_value_t = 50_000)]
        series: usize,
        #[arg(long, default_value_t = 60)]
        ticks: usize,
        /// Samples per second of the steady phase.
        #[arg(long, default_value_t = 100_000)]
        steady_rate: usize,
        #[arg(long, default_value_t = 60)]
        steady_seconds: u64,
        #[arg(long, default_value_t = 20)]
        loki_seconds: u64,
    },
    /// Agent cost: CPU and memory of a real agent process watching N real containers.
    Agent {
        #[arg(long, default_value_t = 100)]
        containers: usize,
        /// How long to measure after the warm-up.
        #[arg(long, default_value = "120s", value_parser = humantime_duration)]
        duration: Duration,
        #[arg(long, default_value = "10s", value_parser = humantime_duration)]
        interval: Duration,
    },
}

pub fn run(what: Bench) -> std::process::ExitCode {
    let result = match what {
        Bench::Stop { agents, rounds, stream_for } => crate::bench_daemons::stop(agents, rounds, stream_for),
        Bench::Hostile { seconds, clients } => crate::bench_daemons::hostile(seconds, clients),
        Bench::Auth { entries, checks } => auth(entries, checks),
        Bench::Fleet { hosts, containers, duration, interval, lines, prometheus } => {
            crate::bench_fleet::run(crate::bench_fleet::Fleet {
                hosts,
                containers,
                duration,
                interval,
                lines_per_second: lines,
                prometheus,
            })
        }
        Bench::Spool { containers, batches } => spool(containers, batches),
        Bench::Ingest { containers, samples, per_batch, dir } => ingest(containers, samples, per_batch, dir),
        Bench::Agent { containers, duration, interval } => agent(containers, duration, interval),
        Bench::Export { series, ticks, steady_rate, steady_seconds, loki_seconds } => {
            crate::bench_export::run(series, ticks, steady_rate, steady_seconds, loki_seconds)
        }
        Bench::Query { containers, hours, runs } => query(containers, hours, runs),
        Bench::Grpc { containers, ticks, rounds } => grpc(containers, ticks, rounds),
        Bench::Panels { dashboards, lookout, prometheus, range, verbose } => {
            crate::bench_panels::run(&dashboards, &lookout, prometheus.as_deref(), range.as_secs(), verbose)
        }
        Bench::Promqltest { paths, verbose, names_dropped_at_once } => {
            crate::bench_promqltest::run(&paths, verbose, !names_dropped_at_once)
        }
        Bench::Logread { lines } => crate::bench_logs::run(lines),
        Bench::Logstore { gib, runs } => crate::bench_logs::store(gib, runs),
        Bench::Logship { lines, rate, seconds } => crate::bench_logs::ship(lines, rate, seconds),
        Bench::Probes { containers, interval, duration, kind } => {
            crate::bench_probes::probes(containers, interval, duration, &kind)
        }
        Bench::ProbeTargets => crate::bench_probes::serve_targets(),
        Bench::Gates { rollouts, interval, window, seed } => crate::bench_gates::run(rollouts, interval, window, seed),
        Bench::Restart { trials, interval, retries } => crate::bench_probes::restart(trials, interval, retries),
        Bench::Dashboards { containers, hours, runs, label_series, prometheus } => {
            crate::bench_dashboards::run(containers, hours, runs, label_series, &prometheus)
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn auth(entries: usize, checks: usize) -> anyhow::Result<()> {
    use lookout_collector::auth::{hash_hex, new_token, Tokens};
    let tokens: Vec<String> = (0..entries.max(1)).map(|_| new_token()).collect();
    let file: String = tokens.iter().enumerate().map(|(i, t)| format!("client-{i} read {}\n", hash_hex(t))).collect();
    let parsed = Tokens::parse(&file).map_err(|(l, m)| anyhow::anyhow!("line {l}: {m}"))?;
    let last = tokens.last().expect("at least one").clone();
    let stranger = new_token();
    println!("auth: a tokens file of {} entries, {checks} checks each", parsed.len());
    for (what, token) in [("a known token (the last entry)", &last), ("an unknown token", &stranger)] {
        let cpu = process_cpu_seconds();
        let t = Instant::now();
        let mut hits = 0usize;
        for _ in 0..checks {
            hits += usize::from(std::hint::black_box(&parsed).check(std::hint::black_box(token)).is_some());
        }
        let (wall, cpu) = (t.elapsed().as_secs_f64(), process_cpu_seconds() - cpu);
        println!(
            "  {what}: {:.2} µs per check ({:.2} µs of CPU), {hits} found",
            wall * 1e6 / checks as f64,
            cpu * 1e6 / checks as f64
        );
    }
    Ok(())
}

/// `ticks` batches of `containers` simulated containers' series at 10 s, for host `bench`, as an
/// agent's batcher would have them sealed.
fn sim_batches(containers: usize, ticks: usize) -> Vec<lookout_proto::v1::Batch> {
    use lookout_proto::v1::{Batch, Label, SeriesGroup, SeriesSamples};
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let mut sims: Vec<SimContainer> = (0..containers).map(|i| SimContainer::new(i, &mut rng)).collect();
    let t0: i64 = 1_700_000_000_000;
    (0..ticks)
        .map(|k| {
            let ts = t0 + k as i64 * 10_000;
            let groups = sims
                .iter_mut()
                .map(|sim| {
                    let values = sim.step(ts, &mut rng);
                    let common = sim.labels[0].iter().filter(|(n, _)| *n != "__name__");
                    // One stream speaks for one host, as an agent's does (a stream bound to its
                    // host by its certificate may carry no other).
                    let host = |n: &str, v: &str| if n == "host" { "bench".to_string() } else { v.to_string() };
                    SeriesGroup {
                        labels: common.map(|(n, v)| Label { name: n.into(), value: host(n, v) }).collect(),
                        series: SERIES
                            .iter()
                            .zip(values)
                            .map(|(name, v)| SeriesSamples {
                                labels: vec![Label { name: "__name__".into(), value: (*name).into() }],
                                timestamps_ms: vec![ts],
                                values: vec![v],
                            })
                            .collect(),
                    }
                })
                .collect();
            Batch { seq: k as u64 + 1, groups, ..Default::default() }
        })
        .collect()
}

/// An agent's spool of `batches` ticks of `containers` containers, written as a collector outage
/// leaves it, then replayed by the agent's shipping code to a real collector on loopback.
fn spool(containers: usize, batches: usize) -> anyhow::Result<()> {
    use lookout_agent::ship;
    let rt = tokio::runtime::Runtime::new()?;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("spool");
    let metrics = lookout_agent::telemetry::AgentMetrics::register(&mut Default::default());
    let made = sim_batches(containers, batches);
    let samples: usize = made.iter().flat_map(|b| &b.groups).map(|g| g.series.len()).sum();
    let t = Instant::now();
    {
        // A memory bound of one byte: every batch waits on disk only, as after a long outage.
        let q = ship::Queue::with_spool(1, &dir, 8 << 30, metrics.clone())?;
        for b in made {
            q.push(b, 1 << 10, None);
        }
    }
    let written = t.elapsed().as_secs_f64();
    let bytes: u64 = std::fs::read_dir(&dir)?.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum();
    println!(
        "spool: {batches} batches, {samples} samples ({containers} containers), {:.1} MiB on disk ({:.1} bytes/sample), written in {written:.2} s",
        bytes as f64 / (1 << 20) as f64,
        bytes as f64 / samples as f64
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let cfg = lookout_collector::CollectorConfig {
        data_dir: tmp.path().join("collector"),
        http_listen: "127.0.0.1:0".parse()?,
        grpc_listen: "127.0.0.1:0".parse()?,
        ..Default::default()
    };
    let collector = rt.block_on(lookout_collector::start(cfg, shutdown.clone()))?;
    let ship_cfg = ship::ShipConfig {
        agent_id: "bench-agent".into(),
        host: "bench".into(),
        collectors: vec![format!("http://{}", collector.grpc_addr)],
        token: None,
        tls: None,
        include_labels: Vec::new(),
        max_queue_bytes: 64 << 20,
        spool: Some((dir, 8 << 30)),
        docker: None,
    };
    let (cpu, t) = (process_cpu_seconds(), Instant::now());
    let _guard = rt.enter();
    let (_tx, queue) = ship::spawn(ship_cfg, None, metrics, shutdown.clone())?;
    while !queue.is_empty() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let (wall, cpu) = (t.elapsed().as_secs_f64(), process_cpu_seconds() - cpu);
    println!(
        "  replayed to a collector on loopback and acknowledged: {wall:.2} s, {:.0} samples/s, {:.0} batches/s ({cpu:.2} s of CPU for agent and collector together)",
        samples as f64 / wall,
        batches as f64 / wall
    );
    shutdown.cancel();
    rt.block_on(collector.done)??;
    Ok(())
}

/// A small deterministic generator, so every run measures the same data.
pub(crate) struct XorShift(pub(crate) u64);

impl XorShift {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One simulated container's series: the metrics the agent produces, with plausible behaviour.
pub(crate) struct SimContainer {
    pub(crate) labels: Vec<LabelSet>,
    cpu_ns: u64,
    user_ticks: u64,
    sys_ticks: u64,
    cpu_rate: f64,
    mem_pages: i64,
    rx: u64,
    tx: u64,
    reads: u64,
    writes: u64,
    psi_us: [u64; 6],
}

pub(crate) const SERIES: [&str; 22] = [
    "container_cpu_usage_seconds_total",
    "container_cpu_user_seconds_total",
    "container_cpu_system_seconds_total",
    "container_cpu_cfs_periods_total",
    "container_cpu_cfs_throttled_periods_total",
    "container_memory_usage_bytes",
    "container_memory_working_set_bytes",
    "container_memory_rss",
    "container_memory_cache",
    "container_spec_memory_limit_bytes",
    "container_oom_events_total",
    "container_fs_reads_bytes_total",
    "container_fs_writes_bytes_total",
    "container_network_receive_bytes_total",
    "container_network_transmit_bytes_total",
    "container_processes",
    "container_last_seen",
    "container_start_time_seconds",
    "container_pressure_cpu_waiting_seconds_total",
    "container_pressure_cpu_stalled_seconds_total",
    "container_pressure_memory_waiting_seconds_total",
    "container_pressure_io_waiting_seconds_total",
];

impl SimContainer {
    pub(crate) fn new(i: usize, rng: &mut XorShift) -> Self {
        let labels = SERIES
            .iter()
            .map(|name| {
                LabelSet::from_pairs([
                    ("__name__", name.to_string()),
                    ("host", format!("host-{}", i / 50)),
                    ("container", format!("app-{i}")),
                    ("container_id", format!("{:064x}", i as u128 * 0x9e3779b97f4a7c15)),
                    ("image", format!("shop/app{}:1.{}", i % 20, i % 7)),
                    ("service", format!("app{}", i % 20)),
                    ("version", format!("1.{}", i % 7)),
                ])
            })
            .collect();
        SimContainer {
            labels,
            cpu_ns: rng.next() % 1_000_000_000_000,
            user_ticks: rng.next() % 100_000,
            sys_ticks: rng.next() % 10_000,
            cpu_rate: 0.002 + rng.unit() * rng.unit() * 0.8,
            mem_pages: 5_000 + (rng.next() % 100_000) as i64,
            rx: rng.next() % 1_000_000_000,
            tx: rng.next() % 1_000_000_000,
            reads: rng.next() % 100_000_000,
            writes: rng.next() % 100_000_000,
            psi_us: [0; 6],
        }
    }

    /// Advances 10 s and returns the 22 values in `SERIES` order.
    pub(crate) fn step(&mut self, ts_ms: i64, rng: &mut XorShift) -> [f64; 22] {
        let busy = self.cpu_rate * (0.7 + 0.6 * rng.unit());
        let ns = (busy * 10e9) as u64;
        self.cpu_ns += ns;
        self.user_ticks += ns * 9 / 10 / 10_000_000;
        self.sys_ticks += ns / 10 / 10_000_000;
        if rng.unit() < 0.3 {
            self.mem_pages = (self.mem_pages + (rng.next() % 200) as i64 - 100).max(1000);
        }
        self.rx += (rng.unit() * 20_000.0 * self.cpu_rate * 50.0) as u64;
        self.tx += (rng.unit() * 10_000.0 * self.cpu_rate * 50.0) as u64;
        if rng.unit() < 0.05 {
            self.reads += 4096 * (rng.next() % 64);
        }
        if rng.unit() < 0.2 {
            self.writes += 4096 * (rng.next() % 16);
        }
        for (i, p) in self.psi_us.iter_mut().enumerate() {
            if i < 2 || rng.unit() < 0.1 {
                *p += (rng.unit() * busy * 2000.0) as u64;
            }
        }
        let usage = self.mem_pages * 4096;
        [
            self.cpu_ns as f64 / 1e9,
            self.user_ticks as f64 / 100.0,
            self.sys_ticks as f64 / 100.0,
            0.0,
            0.0,
            usage as f64,
            (usage - (self.mem_pages / 5) * 4096) as f64,
            (usage * 7 / 10 / 4096 * 4096) as f64,
            (usage * 3 / 10 / 4096 * 4096) as f64,
            536_870_912.0,
            0.0,
            self.reads as f64,
            self.writes as f64,
            self.rx as f64,
            self.tx as f64,
            4.0,
            ts_ms as f64 / 1000.0,
            1_700_000_000.0,
            self.psi_us[0] as f64 / 1e6,
            self.psi_us[1] as f64 / 1e6,
            self.psi_us[2] as f64 / 1e6,
            self.psi_us[3] as f64 / 1e6,
        ]
    }
}

fn ingest(containers: usize, samples: usize, per_batch: usize, dir: Option<PathBuf>) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = dir.unwrap_or_else(|| tmp.path().to_path_buf());
    let store = Store::open(&dir, StoreOptions::default())?;
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let mut sims: Vec<SimContainer> = (0..containers).map(|i| SimContainer::new(i, &mut rng)).collect();
    let series = containers * SERIES.len();
    let total = series * samples;
    println!("ingest: {containers} containers x {} series = {series} series, {samples} samples each at 10 s, {per_batch} per series per batch", SERIES.len());

    // Generate first, so the figure is the store's alone.
    let t0: i64 = 1_700_000_000_000;
    let mut batches = Vec::new();
    let mut start = 0;
    while start < samples {
        let n = per_batch.min(samples - start);
        let mut batch: Vec<(LabelSet, Samples)> = Vec::with_capacity(series);
        let mut cols: Vec<Samples> = vec![Samples::default(); series];
        for k in 0..n {
            let ts = t0 + (start + k) as i64 * 10_000;
            for (ci, sim) in sims.iter_mut().enumerate() {
                for (si, v) in sim.step(ts, &mut rng).into_iter().enumerate() {
                    let col = &mut cols[ci * SERIES.len() + si];
                    col.ts.push(ts);
                    col.values.push(v);
                }
            }
        }
        for (i, col) in cols.into_iter().enumerate() {
            batch.push((sims[i / SERIES.len()].labels[i % SERIES.len()].clone(), col));
        }
        batches.push(batch);
        start += n;
    }

    let cpu0 = process_cpu_seconds();
    let wall = Instant::now();
    for (seq, batch) in batches.into_iter().enumerate() {
        store.append("bench", "bench", seq as u64 + 1, 0, batch)?;
    }
    let elapsed = wall.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds() - cpu0;
    store.checkpoint()?;
    let usage = store.disk_usage()?;
    drop(store);
    let bytes = dir_bytes(&dir);
    let per = |b: u64| b as f64 / total as f64;
    println!("  committed {total} samples in {elapsed:.2} s wall, {cpu:.2} s CPU (synchronous=FULL, one transaction per batch)");
    println!(
        "  ingest rate: {:.0} samples/s wall, {:.0} samples/s per CPU-second",
        total as f64 / elapsed,
        total as f64 / cpu
    );
    println!(
        "  chunk payloads: {} bytes in {} chunks = {:.3} bytes/sample",
        usage.chunk_bytes,
        usage.chunks,
        per(usage.chunk_bytes)
    );
    println!(
        "  database pages in use (series, chunks and their keys, head snapshot): {} bytes = {:.3} bytes/sample",
        usage.used_bytes,
        per(usage.used_bytes)
    );
    println!(
        "  free pages kept for the head log to reuse: {} bytes (bounded by the checkpoint size, not by the data)",
        usage.free_bytes
    );
    println!("  files on disk: {bytes} bytes = {:.3} bytes/sample", per(bytes));
    Ok(())
}

fn query(containers: usize, hours: usize, runs: usize) -> anyhow::Result<()> {
    use lookout_collector::query::promql::Engine;
    let tmp = tempfile::tempdir()?;
    let store = Store::open(tmp.path(), StoreOptions::default())?;
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let mut sims: Vec<SimContainer> = (0..containers).map(|i| SimContainer::new(i, &mut rng)).collect();
    let steps = hours * 360;
    let t0: i64 = 1_700_000_000_000;
    for k in 0..steps {
        let ts = t0 + k as i64 * 10_000;
        let mut batch = Vec::with_capacity(containers * SERIES.len());
        for sim in sims.iter_mut() {
            for (si, v) in sim.step(ts, &mut rng).into_iter().enumerate() {
                batch.push((sim.labels[si].clone(), Samples { ts: vec![ts], values: vec![v] }));
            }
        }
        store.append("bench", "bench", k as u64 + 1, 0, batch)?;
    }
    let end = t0 + (steps as i64 - 1) * 10_000;
    let start = end - 3_600_000;
    println!(
        "query: {containers} containers x {} series, {hours} h of 10 s samples stored ({} sealed chunks on disk, the rest in the head)",
        SERIES.len(),
        store.disk_usage()?.chunks
    );
    let engine = Engine::default();
    let cases = [
        ("sum by (container) (rate(container_cpu_usage_seconds_total[1m]))", true),
        ("container_memory_working_set_bytes", true),
        ("topk(5, rate(container_network_receive_bytes_total[5m]))", true),
        ("sum(container_memory_usage_bytes)", false),
    ];
    for (q, range) in cases {
        let case = if range { format!("{q}, 1 h at 15 s") } else { format!("{q}, instant") };
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            if range {
                engine.range(&store, q, start, end, 15_000)?;
            } else {
                engine.instant(&store, q, end)?;
            }
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        println!("  {case}: best {:.2} ms, median {:.2} ms", times[0], times[times.len() / 2]);
    }
    let t = Instant::now();
    for _ in 0..runs {
        std::hint::black_box(store.label_values("container"));
    }
    println!("  label values of `container`: {:.3} ms", t.elapsed().as_secs_f64() * 1000.0 / runs as f64);
    Ok(())
}

/// End-to-end ingest over gRPC, plain and then over mutual TLS (certificates made for the run), so
/// that the two figures come from one run on the same data.
fn grpc(containers: usize, ticks: usize, rounds: usize) -> anyhow::Result<()> {
    println!(
        "grpc ingest: {ticks} batches of {containers} containers x {} series, gzip, one sample per series",
        SERIES.len()
    );
    // Alternated, so that the machine's drift falls on both alike; medians compared.
    let (mut plain, mut tls) = (Vec::new(), Vec::new());
    for _ in 0..rounds.max(1) {
        plain.push(grpc_once(containers, ticks, None)?);
        tls.push(grpc_once(containers, ticks, Some(Certs::new()?))?);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (p, t) = (median(&mut plain), median(&mut tls));
    println!(
        "  medians of {} rounds: plaintext {p:.0}, mutual TLS {t:.0} samples per CPU-second: TLS costs {:+.1}% CPU per acked sample (client and collector in this process)",
        plain.len(),
        (p / t - 1.0) * 100.0
    );
    Ok(())
}

/// A CA, the collector's certificate for localhost and an agent's, as PEM files in a temporary dir.
struct Certs {
    dir: tempfile::TempDir,
    ca_pem: String,
    agent: (String, String),
}

impl Certs {
    fn new() -> anyhow::Result<Certs> {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, "bench CA");
        let ca = CertifiedIssuer::self_signed(p, KeyPair::generate()?)?;
        let leaf = |name: &str| -> anyhow::Result<(String, String)> {
            let key = KeyPair::generate()?;
            Ok((CertificateParams::new(vec![name.to_string()])?.signed_by(&key, &ca)?.pem(), key.serialize_pem()))
        };
        let dir = tempfile::tempdir()?;
        let server = leaf("localhost")?;
        std::fs::write(dir.path().join("c.pem"), &server.0)?;
        std::fs::write(dir.path().join("k.pem"), &server.1)?;
        std::fs::write(dir.path().join("ca.pem"), ca.as_ref().pem())?;
        Ok(Certs { ca_pem: ca.as_ref().pem(), agent: leaf("bench")?, dir })
    }

    fn collector(&self) -> lookout_collector::tls::TlsConfig {
        let f = |n: &str| self.dir.path().join(n);
        lookout_collector::tls::TlsConfig { cert: f("c.pem"), key: f("k.pem"), client_ca: Some(f("ca.pem")) }
    }
}

/// Samples acked per CPU-second.
fn grpc_once(containers: usize, ticks: usize, tls: Option<Certs>) -> anyhow::Result<f64> {
    use lookout_proto::v1::{agent_message::Msg, collector_message, ingest_client::IngestClient, AgentMessage, Hello};
    let rt = tokio::runtime::Runtime::new()?;
    let tmp = tempfile::tempdir()?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut cfg = lookout_collector::CollectorConfig {
        data_dir: tmp.path().to_path_buf(),
        http_listen: "127.0.0.1:0".parse()?,
        grpc_listen: "127.0.0.1:0".parse()?,
        ..Default::default()
    };
    cfg.ingest.tls = tls.as_ref().map(Certs::collector);
    let collector = rt.block_on(lookout_collector::start(cfg, shutdown.clone()))?;
    let batches = sim_batches(containers, ticks);
    let samples = ticks * containers * SERIES.len();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint =
        tonic::transport::Endpoint::from_shared(format!("{scheme}://localhost:{}", collector.grpc_addr.port()))?;
    if let Some(c) = &tls {
        endpoint = endpoint.tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&c.ca_pem))
                .identity(tonic::transport::Identity::from_pem(&c.agent.0, &c.agent.1)),
        )?;
    }
    let (elapsed, cpu) = rt.block_on(async move {
        let mut client = IngestClient::new(endpoint.connect().await?)
            .send_compressed(tonic::codec::CompressionEncoding::Gzip)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let hello =
            Hello { agent_id: "bench".into(), host: "bench".into(), version: String::new(), resume_from_seq: 0 };
        tx.send(AgentMessage { msg: Some(Msg::Hello(hello)) }).await?;
        let mut inbound = client.stream(tokio_stream::wrappers::ReceiverStream::new(rx)).await?.into_inner();
        inbound.message().await?; // Welcome
        let (cpu0, start) = (process_cpu_seconds(), Instant::now());
        let last = ticks as u64;
        tokio::spawn(async move {
            for b in batches {
                if tx.send(AgentMessage { msg: Some(Msg::Batch(b)) }).await.is_err() {
                    break;
                }
            }
            // Keep the stream open until the acks are in.
            tx.closed().await;
        });
        while let Some(m) = inbound.message().await? {
            if let Some(collector_message::Msg::Ack(a)) = m.msg {
                if a.seq == last {
                    break;
                }
            }
        }
        anyhow::Ok((start.elapsed().as_secs_f64(), process_cpu_seconds() - cpu0))
    })?;
    shutdown.cancel();
    println!(
        "  {}: {samples} samples acked in {elapsed:.2} s: {:.0} samples/s wall, {:.0} samples/s per CPU-second (client and collector in this process)",
        if tls.is_some() { "mutual TLS" } else { "plaintext " },
        samples as f64 / elapsed,
        samples as f64 / cpu
    );
    Ok(samples as f64 / cpu)
}

/// A collector in this process on loopback ports chosen by the system, its data in `data_dir`.
pub(crate) fn local_collector(
    rt: &tokio::runtime::Runtime,
    data_dir: PathBuf,
    shutdown: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<lookout_collector::Running> {
    let cfg = lookout_collector::CollectorConfig {
        data_dir,
        http_listen: "127.0.0.1:0".parse()?,
        grpc_listen: "127.0.0.1:0".parse()?,
        ..Default::default()
    };
    rt.block_on(lookout_collector::start(cfg, shutdown.clone()))
}

pub(crate) fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map(|rd| rd.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0)
}

pub(crate) fn process_cpu_seconds() -> f64 {
    pid_cpu_seconds(std::process::id()).unwrap_or(0.0)
}

/// utime + stime of a process, from /proc/<pid>/stat.
pub(crate) fn pid_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let hz = rustix::param::clock_ticks_per_second() as f64;
    Some((utime + stime) / hz)
}

/// A `VmRSS`/`VmHWM` line of /proc/<pid>/status, in bytes.
pub(crate) fn pid_status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|k| k * 1024)
}

const BENCH_PREFIX: &str = "lookout-bench-";

fn agent(containers: usize, duration: Duration, interval: Duration) -> anyhow::Result<()> {
    ensure_test_image()?;
    cleanup_bench_containers();
    println!("agent: starting {containers} busybox containers");
    for i in 0..containers {
        let name = format!("{BENCH_PREFIX}{i}");
        let st = Command::new("docker")
            .args([
                "run",
                "-d",
                "--name",
                &name,
                "--label",
                "lookout.bench=1",
                "--memory",
                "32m",
                TEST_IMAGE,
                "sleep",
                "100000",
            ])
            .stdout(std::process::Stdio::null())
            .status()?;
        anyhow::ensure!(st.success(), "docker run {name} failed");
    }
    let result = measure_agent(containers, duration, interval);
    cleanup_bench_containers();
    result
}

fn measure_agent(containers: usize, duration: Duration, interval: Duration) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let tmp = tempfile::tempdir()?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let collector = local_collector(&rt, tmp.path().join("collector"), &shutdown)?;
    let cfg = agent_config(tmp.path(), collector.grpc_addr, interval)?;
    let mut cmd = agent_command(&cfg)?;
    let exe = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd.env("RUST_LOG", "warn").spawn()?;
    let pid = child.id();
    // Warm-up: discovery and the first ticks, which open every file once.
    std::thread::sleep(interval * 2 + Duration::from_secs(2));
    let cpu0 = pid_cpu_seconds(pid).unwrap_or(0.0);
    let t0 = Instant::now();
    let mut rss_max = 0;
    while t0.elapsed() < duration {
        std::thread::sleep(Duration::from_secs(1));
        rss_max = rss_max.max(pid_status_kib(pid, "VmRSS:").unwrap_or(0));
    }
    let cpu = pid_cpu_seconds(pid).unwrap_or(0.0) - cpu0;
    let wall = t0.elapsed().as_secs_f64();
    let hwm = pid_status_kib(pid, "VmHWM:").unwrap_or(0);
    let anon = pid_status_kib(pid, "RssAnon:").unwrap_or(0);
    let file = pid_status_kib(pid, "RssFile:").unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();
    let series = collector.store.series_count();
    shutdown.cancel();
    println!(
        "  agent ({exe}) watching {containers} containers at {} for {wall:.0} s:",
        humantime::format_duration(interval)
    );
    println!("  CPU: {:.3}% of one core ({cpu:.2} s CPU)", 100.0 * cpu / wall);
    println!("  RSS: {:.1} MB at most while measured, peak {:.1} MB (VmHWM)", rss_max as f64 / 1e6, hwm as f64 / 1e6);
    println!(
        "  RSS at the end: {:.1} MB anonymous (heap, stacks) + {:.1} MB file-backed (the executable's pages)",
        anon as f64 / 1e6,
        file as f64 / 1e6
    );
    println!("  series at the collector: {series}");
    Ok(())
}

/// The agent as it is deployed: `lookout-agent` beside this executable (`cargo build --release
/// --workspace` builds it), else this executable's `lookout agent`, which carries the collector's code
/// too and so maps more pages.
/// Writes `dir/agent.toml` for an agent of `dir/agent` sending to `collector` every `interval`.
pub(crate) fn agent_config(dir: &Path, collector: std::net::SocketAddr, interval: Duration) -> anyhow::Result<PathBuf> {
    let cfg = dir.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "collectors = [\"http://{collector}\"]\ninterval = \"{}\"\nstate_dir = \"{}\"\nmetrics_listen = \"127.0.0.1:0\"\n",
            humantime::format_duration(interval),
            dir.join("agent").display()
        ),
    )?;
    Ok(cfg)
}

pub(crate) fn agent_command(config: &Path) -> anyhow::Result<Command> {
    let dedicated = std::env::current_exe()?.with_file_name("lookout-agent");
    let mut cmd = if dedicated.exists() {
        Command::new(dedicated)
    } else {
        let mut c = Command::new(sibling("lookout")?);
        c.arg("agent");
        c
    };
    cmd.arg("--config").arg(config);
    Ok(cmd)
}

pub const TEST_IMAGE: &str = "lookout-test-busybox:latest";

/// Builds the busybox test image from Debian's busybox-static with `docker import` when it is missing.
pub fn ensure_test_image() -> anyhow::Result<()> {
    let present = Command::new("docker").args(["image", "inspect", TEST_IMAGE]).output()?.status.success();
    if present {
        return Ok(());
    }
    let status =
        Command::new("sh").arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/build-test-image")).status()?;
    anyhow::ensure!(
        status.success(),
        "scripts/build-test-image failed (is busybox-static installed? apt-get install busybox-static)"
    );
    Ok(())
}

pub(crate) fn cleanup_bench_containers() {
    let out = Command::new("docker").args(["ps", "-aq", "--filter", "label=lookout.bench=1"]).output();
    if let Ok(out) = out {
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout).split_whitespace().map(String::from).collect();
        if !ids.is_empty() {
            let _ = Command::new("docker").arg("rm").arg("-f").args(&ids).stdout(std::process::Stdio::null()).status();
        }
    }
}
