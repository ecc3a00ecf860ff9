//! `lookout bench logread`: the agent's log reading path (tail, parse, join) on a json-file log of
//! 100-byte lines, beside the machine's limits: reading the file (`cat > /dev/null`) and serde_json.

use std::io::Write;
use std::time::{Duration, Instant};

use lookout_agent::logs::assemble::Assembler;
use lookout_agent::logs::tail::Tailer;
use lookout_collector::clock::now_ns;

pub fn run(lines: usize) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("bench-json.log");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
        for i in 0..lines {
            // 100 bytes of text, as the target states, in dockerd's record shape.
            let text = format!(
                "{i:010} GET /api/v1/items?page=3 200 12.5ms user=alice trace=4bf92f3577b34da6a3ce929d0e0e4736"
            );
            let text = &text[..100.min(text.len())];
            writeln!(
                f,
                r#"{{"log":"{text}\n","stream":"stdout","time":"2026-11-23T12:00:{:02}.{:09}Z"}}"#,
                i / 1_000_000 % 60,
                i % 1_000_000_000
            )?;
        }
    }
    let bytes = std::fs::metadata(&path)?.len();
    println!("logread: {lines} records of 100-byte lines, {:.1} MB json-file (page cache warm)", bytes as f64 / 1e6);
    // Warm the page cache, then the limits.
    std::io::copy(&mut std::fs::File::open(&path)?, &mut std::io::sink())?;

    let t = Instant::now();
    std::io::copy(&mut std::fs::File::open(&path)?, &mut std::io::sink())?;
    report("read the file (cat > /dev/null)", lines, t);

    let data = std::fs::read(&path)?;
    let t = Instant::now();
    let mut n = 0usize;
    for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_slice(line)?;
        n += v["log"].as_str().map_or(0, str::len);
    }
    std::hint::black_box(n);
    report("serde_json::Value parse of each line, from memory", lines, t);

    let t = Instant::now();
    let (mut tailer, _) = Tailer::open(&path, None)?;
    let mut asm = Assembler::default();
    let mut entries = Vec::new();
    let mut count = 0;
    loop {
        let (raw, _) = tailer.read(4 << 20)?;
        if raw.is_empty() {
            break;
        }
        for r in &raw {
            asm.push(r, 0, &mut entries);
        }
        count += entries.len();
        entries.clear();
    }
    anyhow::ensure!(count == lines, "read {count} entries of {lines}");
    report("lookout: tail + parse + join into entries", lines, t);
    Ok(())
}

fn report(what: &str, lines: usize, t: Instant) {
    let s = t.elapsed().as_secs_f64();
    println!("  {what}: {:.2} M lines/s ({s:.3} s)", lines as f64 / s / 1e6);
}

/// A realistic container log line: access logs, levelled application lines, JSON lines and the odd
/// stack-trace frame, with the ids, addresses and durations that make real logs compress less well
/// than repeated text.
fn realistic_line(rng: &mut crate::XorShift, i: u64) -> String {
    const PATHS: [&str; 6] =
        ["/api/v1/items", "/api/v1/users/me", "/healthz", "/api/v1/orders", "/static/app.js", "/login"];
    const LEVELS: [&str; 5] = ["INFO", "INFO", "INFO", "WARN", "ERROR"];
    const MSGS: [&str; 5] = [
        "request completed",
        "cache miss, loading from database",
        "connection pool exhausted, waiting",
        "retrying upstream call",
        "user session refreshed",
    ];
    let r = rng.next();
    // A service sees a few hundred clients, not the whole address space.
    let ip = format!("10.1.{}.{}", r % 3, (r >> 8) % 100);
    let ms = (r >> 24) % 2000;
    match (r >> 40) % 10 {
        0..=4 => format!(
            "{ip} - - [23/Nov/2026:12:{:02}:{:02} +0000] \"GET {}?page={} HTTP/1.1\" {} {} \"-\" \"Mozilla/5.0\" {ms}ms",
            i / 60 % 60,
            i % 60,
            PATHS[(r >> 32) as usize % PATHS.len()],
            r % 50,
            [200, 200, 200, 304, 404, 500][(r >> 44) as usize % 6],
            (r >> 12) % 100_000
        ),
        5..=7 => format!(
            "2026-11-23T12:00:00.{:06}Z {} [worker-{}] {} trace={:016x} took={ms}ms",
            i % 1_000_000,
            LEVELS[(r >> 50) as usize % LEVELS.len()],
            r % 16,
            MSGS[(r >> 36) as usize % MSGS.len()],
            rng.next()
        ),
        8 => format!(
            r#"{{"ts":"2026-11-23T12:00:00Z","level":"{}","msg":"{}","user_id":{},"duration_ms":{ms}}}"#,
            LEVELS[(r >> 50) as usize % LEVELS.len()].to_lowercase(),
            MSGS[(r >> 36) as usize % MSGS.len()],
            r % 5000
        ),
        _ => format!("    at com.example.service.Handler.process(Handler.java:{})", r % 500),
    }
}

/// `lookout bench logstore`: the collector's side. Durable ingest of agent-shaped batches into the
/// store (lines/s), the compression of what it stored, then `{service="x"} |= "needle"` over all of
/// it through the Loki HTTP API.
pub fn store(gib: f64, runs: usize) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let tmp = tempfile::tempdir()?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let collector = crate::local_collector(&rt, tmp.path().to_path_buf(), &shutdown)?;
    let store = collector.store.clone();
    let target = (gib * (1u64 << 30) as f64) as u64;
    let containers = 8;
    let per_stream = 1000; // lines per container per batch: 8,000 lines (~1 MB) a batch, as an agent under load
    let mut rng = crate::XorShift(0x9e37_79b9_7f4a_7c15);
    let t0_ns: i64 = now_ns() - 20 * 3600 * 1_000_000_000;
    let (mut raw, mut lines, mut seq, mut needles) = (0u64, 0u64, 0u64, 0u64);
    let (mut append_wall, mut gen_cpu) = (0.0f64, 0.0f64);
    let cpu0 = crate::process_cpu_seconds();
    println!("logstore: {gib} GiB of realistic lines from {containers} containers of service x, 8,000 lines a batch");
    while raw < target {
        let g = crate::process_cpu_seconds();
        let streams: Vec<lookout_collector::model::logs::LogStreamIn> = (0..containers)
            .map(|c| {
                let lines: Vec<lookout_collector::model::logs::LogLine> = (0..per_stream)
                    .map(|k| {
                        let i = lines + (c * per_stream + k) as u64;
                        let mut line = realistic_line(&mut rng, i);
                        // One line in about 1.3 million carries the needle.
                        if rng.next().is_multiple_of(1_300_000) {
                            line.push_str(" needle-7f3a");
                            needles += 1;
                        }
                        lookout_collector::model::logs::LogLine {
                            time_ns: t0_ns + (lines / containers as u64 + k as u64) as i64 * 5_000_000,
                            line,
                        }
                    })
                    .collect();
                lookout_collector::model::logs::LogStreamIn {
                    labels: lookout_collector::model::LabelSet::from_pairs([
                        ("service", "x".to_string()),
                        ("container", format!("x-{c}")),
                        ("stream", "stdout".to_string()),
                    ]),
                    lines,
                }
            })
            .collect();
        gen_cpu += crate::process_cpu_seconds() - g;
        raw += streams.iter().flat_map(|s| &s.lines).map(|l| l.line.len() as u64).sum::<u64>();
        lines += streams.iter().map(|s| s.lines.len() as u64).sum::<u64>();
        seq += 1;
        let t = Instant::now();
        store.append_batch(
            "bench",
            "host",
            seq,
            0,
            Vec::new(),
            lookout_collector::store::LogBatchIn { streams, resume: Vec::new(), window_ns: None },
        )?;
        append_wall += t.elapsed().as_secs_f64();
    }
    let append_cpu = crate::process_cpu_seconds() - cpu0 - gen_cpu;
    println!(
        "  ingest: {lines} lines ({:.2} GB of text) in {append_wall:.1} s of durable appends: {:.0} k lines/s wall, {:.0} k lines per CPU-second",
        raw as f64 / 1e9,
        lines as f64 / append_wall / 1e3,
        lines as f64 / append_cpu / 1e3
    );
    let s = store.log_storage()?;
    println!(
        "  stored: {} chunks, {:.1} MB compressed for {:.1} MB of text in chunks: {:.1}x; database files {:.1} MB",
        s.chunks,
        s.stored_bytes as f64 / 1e6,
        s.raw_bytes as f64 / 1e6,
        s.raw_bytes as f64 / s.stored_bytes.max(1) as f64,
        crate::dir_bytes(tmp.path()) as f64 / 1e6
    );

    let base = format!("http://{}", collector.http_addr);
    let client = reqwest::Client::new();
    let end = now_ns();
    let queries = [
        (r#"{service="x"} |= "needle-7f3a""#, "needle"),
        (r#"{service="x"} |~ "needle-7f3[a-z]""#, "needle by regex"),
        (r#"sum(count_over_time({service="x"} |= "ERROR" [1h]))"#, "count of ERROR lines per hour"),
        (r#"sum by (container) (count_over_time({service="x"}[1h]))"#, "volume of every line per hour"),
    ];
    let pid = std::process::id();
    for (q, what) in queries {
        // The peak resident size while this query runs (`5` to clear_refs resets VmHWM to now).
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let rss_before = crate::pid_status_kib(pid, "VmRSS:").unwrap_or(0);
        let mut times = Vec::new();
        let mut found = 0;
        for _ in 0..runs {
            let t = Instant::now();
            let body: serde_json::Value = rt.block_on(async {
                client
                    .post(format!("{base}/loki/api/v1/query_range"))
                    .form(&[
                        ("query", q.to_string()),
                        ("start", (t0_ns - 1).to_string()),
                        ("end", end.to_string()),
                        ("limit", "1000".into()),
                        ("step", "3600".into()),
                    ])
                    .send()
                    .await?
                    .json()
                    .await
            })?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
            anyhow::ensure!(body["status"] == "success", "{q}: {body}");
            found = body["data"]["result"]
                .as_array()
                .map_or(0, |r| r.iter().map(|s| s["values"].as_array().map_or(0, Vec::len)).sum::<usize>());
        }
        times.sort_by(f64::total_cmp);
        let peak = crate::pid_status_kib(pid, "VmHWM:").unwrap_or(0);
        println!(
            "  {what}: {q} over {:.2} GB: best {:.0} ms, median {:.0} ms ({found} results; {needles} needles written); \
             peak RSS {:.0} MB, {:.0} MB above before",
            raw as f64 / 1e9,
            times[0],
            times[times.len() / 2],
            peak as f64 / 1e6,
            peak.saturating_sub(rss_before) as f64 / 1e6
        );
    }
    shutdown.cancel();
    Ok(())
}

/// `lookout bench logship`: the agent's whole log path with a real container and a real agent
/// process. A container writes `lines` 100-byte lines into Docker's json-file log first; then an
/// agent starts and ships them to a collector in this process over gRPC on loopback, timed until the
/// collector has committed the last one (it acknowledges only after the commit). Then a second
/// container writes at `rate` lines/s and each line's delay from Docker's timestamp to the commit is
/// measured.
pub fn ship(lines: usize, rate: usize, seconds: u64) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    crate::ensure_test_image()?;
    crate::cleanup_bench_containers();
    let result = (|| -> anyhow::Result<()> {
        let bulk = "lookout-bench-logship";
        let script = format!(
            r#"awk 'BEGIN {{ for (i = 0; i < {lines}; i++) printf "%010d GET /api/v1/items?page=3 200 12.5ms user=alice trace=4bf92f3577b34da6a3ce929d0e0e4736 ok\n", i }}'; sleep 100000"#
        );
        let log_path = run_container(bulk, &script)?;
        println!("logship: waiting for the container to write {lines} lines of 100 bytes");
        let deadline = Instant::now() + std::time::Duration::from_secs(600);
        loop {
            let n = std::fs::read(&log_path).map(|d| d.iter().filter(|&&b| b == b'\n').count()).unwrap_or(0);
            if n >= lines {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "the container wrote only {n} lines in 10 minutes");
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        let file_bytes = std::fs::metadata(&log_path)?.len();

        let rt = tokio::runtime::Runtime::new()?;
        let tmp = tempfile::tempdir()?;
        let shutdown = tokio_util::sync::CancellationToken::new();
        let collector = crate::local_collector(&rt, tmp.path().join("collector"), &shutdown)?;
        let committed = Arc::new(AtomicU64::new(0));
        let delays: Arc<Mutex<Vec<i64>>> = Default::default();
        let mut feed = collector.store.subscribe_logs();
        let (c2, d2) = (committed.clone(), delays.clone());
        rt.spawn(async move {
            while let Ok(batch) = feed.recv().await {
                let now = now_ns();
                for s in batch.iter() {
                    match s.labels.get("container") {
                        Some("lookout-bench-logship") => {
                            c2.fetch_add(s.lines.len() as u64, Ordering::Relaxed);
                        }
                        Some("lookout-bench-lograte") => {
                            d2.lock().expect("delays").extend(s.lines.iter().map(|l| now - l.time_ns));
                        }
                        _ => {}
                    }
                }
            }
        });
        let cfg = crate::agent_config(tmp.path(), collector.grpc_addr, Duration::from_secs(10))?;
        let collector_cpu0 = crate::process_cpu_seconds();
        let t0 = Instant::now();
        let mut child = crate::agent_command(&cfg)?.env("RUST_LOG", "warn").spawn()?;
        let pid = child.id();
        let mut rss_max = 0;
        while committed.load(Ordering::Relaxed) < lines as u64 {
            anyhow::ensure!(
                t0.elapsed().as_secs() < 300,
                "only {} lines committed in 5 minutes",
                committed.load(Ordering::Relaxed)
            );
            rss_max = rss_max.max(crate::pid_status_kib(pid, "VmRSS:").unwrap_or(0));
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let wall = t0.elapsed().as_secs_f64();
        let agent_cpu = crate::pid_cpu_seconds(pid).unwrap_or(0.0);
        let collector_cpu = crate::process_cpu_seconds() - collector_cpu0;
        let hwm = crate::pid_status_kib(pid, "VmHWM:").unwrap_or(0);
        println!(
            "  {lines} lines ({:.0} MB of json-file) from the file to committed at the collector: {wall:.2} s, {:.0} k lines/s",
            file_bytes as f64 / 1e6,
            lines as f64 / wall / 1e3
        );
        println!(
            "  agent: {agent_cpu:.2} s CPU ({:.0} k lines per CPU-second), RSS at most {:.1} MB (VmHWM {:.1} MB)",
            lines as f64 / agent_cpu / 1e3,
            rss_max as f64 / 1e6,
            hwm as f64 / 1e6
        );
        println!(
            "  collector (this process): {collector_cpu:.2} s CPU ({:.0} k lines per CPU-second, gRPC decode + durable commit)",
            lines as f64 / collector_cpu / 1e3
        );

        // Latency at a steady rate: bursts of rate/50 lines every 20 ms.
        let burst = (rate / 50).max(1);
        let script = format!(
            r#"end=$(( $(date +%s) + {seconds} )); while [ $(date +%s) -lt $end ]; do awk 'BEGIN {{ for (i = 0; i < {burst}; i++) print "latency probe line with some padding to make it about a hundred bytes long ........." }}'; usleep 20000; done; sleep 100000"#
        );
        let t = Instant::now();
        run_container("lookout-bench-lograte", &script)?;
        std::thread::sleep(std::time::Duration::from_secs(seconds + 3));
        let mut d = std::mem::take(&mut *delays.lock().expect("delays"));
        let elapsed = t.elapsed().as_secs_f64() - 3.0;
        let _ = child.kill();
        let _ = child.wait();
        shutdown.cancel();
        anyhow::ensure!(!d.is_empty(), "no line of the rate container arrived");
        d.sort_unstable();
        let q = |p: f64| d[((d.len() - 1) as f64 * p) as usize] as f64 / 1e6;
        println!(
            "  written at {:.0} lines/s for {seconds} s: from Docker's timestamp to committed, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} lines)",
            d.len() as f64 / elapsed,
            q(0.5),
            q(0.99),
            q(1.0),
            d.len()
        );
        Ok(())
    })();
    crate::cleanup_bench_containers();
    result
}

/// Starts a bench container running `script` under `sh -c`; returns its json-file log path.
fn run_container(name: &str, script: &str) -> anyhow::Result<std::path::PathBuf> {
    let out = std::process::Command::new("docker")
        .args(["run", "-d", "--name", name, "--label", "lookout.bench=1"])
        // One file for the whole run, whatever the daemon's default rotation is.
        .args(["--log-opt", "max-size=2g", "--log-opt", "max-file=2"])
        .args([crate::TEST_IMAGE, "sh", "-c", script])
        .output()?;
    anyhow::ensure!(out.status.success(), "docker run {name}: {}", String::from_utf8_lossy(&out.stderr));
    let out = std::process::Command::new("docker").args(["inspect", "-f", "{{.LogPath}}", name]).output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().into())
}
