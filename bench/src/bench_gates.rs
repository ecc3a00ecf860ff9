//! `lookout bench gates`: generated rollouts (half regressions of different kinds and sizes, half
//! clean, all with noise) written into a real store in simulated time and judged by real gates;
//! prints each rollout, the confusion table and the time to a verdict.

use std::sync::Arc;
use std::time::Instant;

use lookout_collector::decide::gate::checks::Verdict;
use lookout_collector::decide::gate::spec::{GateRequest, GatesConfig};
use lookout_collector::model::logs::LogLine;
use lookout_collector::model::logs::LogStreamIn;
use lookout_collector::model::{LabelSet, Samples};
use lookout_collector::query::promql::Engine;
use lookout_collector::run::gate::Gates;
use lookout_collector::store::{LogBatchIn, SeriesGroup, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Scenario {
    Clean,
    Errors2x,
    Errors5x,
    Latency30,
    MemoryLeak,
    CrashLoop,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Clean => "clean",
            Scenario::Errors2x => "error rate ×2",
            Scenario::Errors5x => "error rate ×5",
            Scenario::Latency30 => "latency +30%",
            Scenario::MemoryLeak => "memory leak 5%/min",
            Scenario::CrashLoop => "crash loop",
        }
    }
}

const STEP_MS: i64 = 10_000;

/// A rollout's scenario, first verdict, intervals to it, and final verdict.
type Row = (Scenario, Verdict, i64, Verdict);
const BUCKETS: [f64; 9] = [0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, f64::INFINITY];
const LATENCY_CHECK: &str = r#"histogram_quantile(0.9, sum by (le) (rate(app_request_duration_seconds_bucket{service="$service",version="$version"}[1m])))"#;

/// One container's running state in the simulation.
struct Container {
    name: String,
    version: &'static str,
    cpu_level: f64,
    mem_level: f64,
    cpu: f64,
    buckets: [f64; 9],
    started_s: f64,
    restarts: u32,
}

struct Rollout {
    service: String,
    scenario: Scenario,
    base_error: f64,
    rps: f64,
    /// A burst of error lines in one container (noise), at this step, if any.
    burst: Option<(usize, i64)>,
    containers: Vec<Container>,
}

fn normal(rng: &mut StdRng) -> f64 {
    let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

fn poisson(rng: &mut StdRng, mean: f64) -> u64 {
    if mean < 30.0 {
        let (l, mut k, mut p) = ((-mean).exp(), 0u64, 1.0);
        loop {
            p *= rng.random::<f64>();
            if p <= l {
                return k;
            }
            k += 1;
        }
    }
    (mean + mean.sqrt() * normal(rng)).round().max(0.0) as u64
}

pub fn run(rollouts: usize, interval_s: u64, window_intervals: u64, seed: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(Store::open(dir.path(), Default::default())?);
    let cfg: GatesConfig = toml::from_str(&format!(
        "[[default.checks]]\nname = \"latency_p90\"\nquery = '{LATENCY_CHECK}'\ntolerance = 0.15\n"
    ))?;
    let recorder = lookout_collector::run::Recorder::new(store.clone(), Default::default());
    let gates = Gates::new(cfg, Arc::new(Engine::default()), recorder);
    let mut rng = StdRng::seed_from_u64(seed);
    let kinds =
        [Scenario::Errors2x, Scenario::Errors5x, Scenario::Latency30, Scenario::MemoryLeak, Scenario::CrashLoop];
    let interval_ms = interval_s as i64 * 1000;
    let t0 = 1_900_000_000_000i64;
    let wall = Instant::now();
    println!(
        "{rollouts} rollouts, analysis interval {interval_s}s, window {window_intervals} intervals, deadline {} intervals; 3 baseline and 2 canary containers each, 10 s samples",
        2 * window_intervals
    );
    println!(
        "{:<4} {:<20} {:>6} {:>5} {:<6} {:>6} {:<6} failing checks",
        "#", "scenario", "errors", "rps", "first", "after", "final"
    );
    let mut results = Vec::new();
    for i in 0..rollouts {
        let scenario = if i % 2 == 0 { Scenario::Clean } else { kinds[(i / 2) % kinds.len()] };
        let mut r = Rollout {
            service: format!("svc{i}"),
            scenario,
            base_error: rng.random_range(0.005..0.03),
            rps: rng.random_range(10.0..40.0),
            burst: (rng.random::<f64>() < 0.15).then(|| {
                (
                    rng.random_range(0..5usize),
                    rng.random_range(0..(2 * window_intervals as i64 * interval_ms / STEP_MS)),
                )
            }),
            containers: Vec::new(),
        };
        // Containers behind one load balancer do about the same work: a level per rollout, a few
        // percent apart per container.
        let cpu_level = rng.random_range(0.1..0.4);
        for c in 0..5 {
            let version = if c < 3 { "v1" } else { "v2" };
            r.containers.push(Container {
                name: format!("svc{i}-{version}-{c}"),
                version,
                cpu_level: cpu_level * (1.0 + 0.05 * normal(&mut rng)),
                mem_level: 200e6 * (1.0 + 0.05 * normal(&mut rng)),
                cpu: 0.0,
                buckets: [0.0; 9],
                started_s: (t0 - 3_600_000) as f64 / 1e3,
                restarts: 0,
            });
        }
        // Two minutes of history before the gate starts, then the window.
        let start = t0 + i as i64 * 10_000_000;
        let mut t = start - 120_000;
        let mut seq = 0;
        while t < start {
            seq += 1;
            write_step(&store, &mut r, &mut rng, t, start, seq)?;
            t += STEP_MS;
        }
        let req = GateRequest::parse(
            format!(r#"{{"service":"{}","version":"v2","baseline_version":"v1","interval":"{interval_s}s","window":"{}s"}}"#, r.service, interval_s * window_intervals)
                .as_bytes(),
        )
        .map_err(anyhow::Error::msg)?;
        let gate = gates.start(req, start).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut first: Option<(Verdict, i64)> = None;
        for k in 1..=2 * window_intervals as i64 {
            let at = start + k * interval_ms;
            while t <= at {
                seq += 1;
                write_step(&store, &mut r, &mut rng, t, start, seq)?;
                t += STEP_MS;
            }
            gates.tick(at);
            let g = gates.get(&gate.id).ok_or_else(|| anyhow::anyhow!("gate {} vanished", gate.id))?;
            if first.is_none() && g.verdict != Verdict::Wait {
                first = Some((g.verdict, k));
            }
            if !g.running {
                break;
            }
        }
        let g = gates.get(&gate.id).ok_or_else(|| anyhow::anyhow!("gate {} vanished", gate.id))?;
        let mut failing: Vec<String> =
            g.checks.iter().filter(|c| c.verdict == Verdict::Fail).map(|c| c.name.clone()).collect();
        if failing.is_empty() && g.verdict == Verdict::Fail {
            // Failed at the deadline: name the checks that were still waiting, and why.
            failing = g
                .checks
                .iter()
                .filter(|c| c.verdict == Verdict::Wait)
                .map(|c| format!("not enough data: {} ({})", c.name, c.detail))
                .collect();
        }
        let (fv, fk) = first.unwrap_or((Verdict::Wait, 2 * window_intervals as i64));
        println!(
            "{i:<4} {:<20} {:>5.1}% {:>5.0} {:<6} {:>6} {:<6} {}",
            scenario.name(),
            r.base_error * 100.0,
            r.rps,
            format!("{fv:?}").to_lowercase(),
            fk,
            format!("{:?}", g.verdict).to_lowercase(),
            failing.join(", ")
        );
        results.push((scenario, fv, fk, g.verdict));
    }
    let pct = |n: usize, of: usize| if of == 0 { 0.0 } else { 100.0 * n as f64 / of as f64 };
    println!("\nconfusion (first verdict a waiting pipeline acts on; final verdict at the end of the window):");
    println!(
        "{:<20} {:>5} {:>12} {:>12} {:>12} {:>12}",
        "scenario", "runs", "first pass", "first fail", "final pass", "final fail"
    );
    for s in std::iter::once(Scenario::Clean).chain(kinds) {
        let rows: Vec<_> = results.iter().filter(|r| r.0 == s).collect();
        let count = |f: &dyn Fn(&&Row) -> bool| rows.iter().filter(|r| f(r)).count();
        println!(
            "{:<20} {:>5} {:>12} {:>12} {:>12} {:>12}",
            s.name(),
            rows.len(),
            count(&|r| r.1 == Verdict::Pass),
            count(&|r| r.1 == Verdict::Fail),
            count(&|r| r.3 == Verdict::Pass),
            count(&|r| r.3 == Verdict::Fail)
        );
    }
    let regressions: Vec<_> = results.iter().filter(|r| r.0 != Scenario::Clean).collect();
    let clean: Vec<_> = results.iter().filter(|r| r.0 == Scenario::Clean).collect();
    let passed_regressions = regressions.iter().filter(|r| r.1 == Verdict::Pass || r.3 == Verdict::Pass).count();
    let failed_clean = clean.iter().filter(|r| r.1 == Verdict::Fail || r.3 == Verdict::Fail).count();
    let mut times: Vec<i64> = results.iter().filter(|r| r.1 != Verdict::Wait).map(|r| r.2).collect();
    times.sort();
    let median = if times.is_empty() {
        f64::NAN
    } else if times.len() % 2 == 1 {
        times[times.len() / 2] as f64
    } else {
        (times[times.len() / 2 - 1] + times[times.len() / 2]) as f64 / 2.0
    };
    println!(
        "\nregressions that passed: {passed_regressions} of {} ({:.1}%); clean releases that failed: {failed_clean} of {} ({:.1}%)",
        regressions.len(),
        pct(passed_regressions, regressions.len()),
        clean.len(),
        pct(failed_clean, clean.len())
    );
    println!(
        "median time to the first verdict: {median} analysis intervals ({} rollouts without one); simulated in {:.1}s",
        results.len() - times.len(),
        wall.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Ten seconds of one rollout: metrics of every container and its request log lines.
fn write_step(store: &Store, r: &mut Rollout, rng: &mut StdRng, t: i64, start: i64, seq: u64) -> anyhow::Result<()> {
    let minutes_in = ((t - start) as f64 / 60_000.0).max(0.0);
    // The service's load wanders for both versions alike.
    let load = 1.0 + 0.15 * ((t as f64 / 1e3) / 300.0).sin();
    let mut groups = Vec::new();
    let mut streams = Vec::new();
    let step = (t - start) / STEP_MS;
    for (ci, c) in r.containers.iter_mut().enumerate() {
        let canary = c.version == "v2";
        let s = r.scenario;
        // A crash-looping canary container restarts every two minutes of the window.
        if canary && s == Scenario::CrashLoop && t > start && ((t - start) / STEP_MS) % 12 == 3 && ci == 4 {
            c.started_s = t as f64 / 1e3;
            c.restarts += 1;
            c.cpu = 0.0;
        }
        let latency_factor = if canary && s == Scenario::Latency30 { 1.3 } else { 1.0 };
        let error_rate = r.base_error
            * match (canary, s) {
                (true, Scenario::Errors2x) => 2.0,
                (true, Scenario::Errors5x) => 5.0,
                _ => 1.0,
            };
        let requests = poisson(rng, r.rps * load * 10.0);
        let mut lines = Vec::with_capacity(requests as usize);
        for q in 0..requests {
            let latency = 0.08 * latency_factor * (0.6 * normal(rng)).exp();
            for (b, le) in BUCKETS.iter().enumerate() {
                if latency <= *le {
                    c.buckets[b] += 1.0;
                }
            }
            let at = t - STEP_MS + (q as i64 * STEP_MS) / requests.max(1) as i64;
            let error = rng.random::<f64>() < error_rate;
            let line = if error {
                format!("ERROR handler failed: upstream timeout after {:.0}ms req={q}", latency * 1e3)
            } else {
                format!("GET /api/items/{} 200 {:.0}ms", q % 97, latency * 1e3)
            };
            lines.push(LogLine { time_ns: at * 1_000_000, line });
        }
        if r.burst.is_some_and(|(bc, bs)| bc == ci && bs == step) {
            for q in 0..40 {
                lines.push(LogLine {
                    time_ns: (t - 1000 + q) * 1_000_000,
                    line: "ERROR connection reset by peer (noise)".into(),
                });
            }
            lines.sort_by_key(|l| l.time_ns);
        }
        let cpu_rate = c.cpu_level * load * latency_factor.clamp(1.0, 1.1) * (1.0 + 0.15 * normal(rng)).max(0.05);
        c.cpu += cpu_rate * STEP_MS as f64 / 1e3;
        let leak = if canary && s == Scenario::MemoryLeak { 1.0 + 0.05 * minutes_in } else { 1.0 };
        let mem = c.mem_level * leak * (1.0 + 0.02 * normal(rng));
        let probe_ok = !(canary && s == Scenario::CrashLoop && ci == 4 && ((t - start) / STEP_MS) % 12 == 4);
        let common = LabelSet::from_pairs([
            ("service", r.service.clone()),
            ("version", c.version.to_string()),
            ("container", c.name.clone()),
            ("container_id", format!("{}-id", c.name)),
            ("host", format!("h{}", ci % 2)),
        ]);
        let one = |name: &str, v: f64| {
            (vec![("__name__".to_string(), name.to_string())], Samples { ts: vec![t], values: vec![v] })
        };
        let mut series = vec![
            one("container_last_seen", t as f64 / 1e3),
            one("container_cpu_usage_seconds_total", c.cpu),
            one("container_memory_working_set_bytes", mem),
            one("container_start_time_seconds", c.started_s),
            one("container_oom_events_total", 0.0),
            one("lookout_probe_success", if probe_ok { 1.0 } else { 0.0 }),
        ];
        for (b, le) in BUCKETS.iter().enumerate() {
            let le = if le.is_infinite() { "+Inf".to_string() } else { format!("{le}") };
            series.push((
                vec![
                    ("__name__".to_string(), "app_request_duration_seconds_bucket".to_string()),
                    ("le".to_string(), le),
                ],
                Samples { ts: vec![t], values: vec![c.buckets[b]] },
            ));
        }
        groups.push(SeriesGroup { common: common.clone(), series });
        let mut labels = common;
        labels.set("stream", "stdout");
        streams.push(LogStreamIn { labels, lines });
    }
    store.append_batch(
        &r.service,
        "bench",
        seq,
        t,
        groups,
        LogBatchIn { streams, resume: Vec::new(), window_ns: None },
    )?;
    Ok(())
}
