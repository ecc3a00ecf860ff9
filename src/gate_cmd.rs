//! `lookout gate`, `lookout status` and `lookout replay`: a deploy pipeline's and an operator's view
//! of gates, services and decisions, over the collector's HTTP API. Exit codes are the contract.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// What `lookout gate` was asked.
pub struct GateArgs {
    pub collector: String,
    pub service: String,
    pub version: String,
    pub baseline: Option<String>,
    pub window: Option<String>,
    pub interval: Option<String>,
    pub deadline: Option<String>,
    pub stage: Option<String>,
    pub wait: bool,
    pub timeout: Duration,
}

pub const PASS: u8 = 0;
pub const FAIL: u8 = 1;
pub const WAIT: u8 = 2;
pub const UNREACHABLE: u8 = 3;
pub const BAD_REQUEST: u8 = 64;

enum Answer {
    Ok(u16, Value),
    Unreachable(String),
}

async fn call(req: reqwest::RequestBuilder) -> Answer {
    match req.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            match r.json::<Value>().await {
                Ok(v) => Answer::Ok(status, v),
                Err(e) => Answer::Unreachable(format!("the answer is not JSON: {e}")),
            }
        }
        Err(e) => Answer::Unreachable(e.to_string()),
    }
}

pub async fn gate(a: GateArgs) -> ExitCode {
    let base = a.collector.trim_end_matches('/').to_string();
    let client = crate::http_client(Some(Duration::from_secs(30)));
    let mut body = json!({"service": a.service, "version": a.version});
    for (k, v) in [
        ("baseline_version", &a.baseline),
        ("window", &a.window),
        ("interval", &a.interval),
        ("deadline", &a.deadline),
        ("stage", &a.stage),
    ] {
        if let Some(v) = v {
            body[k] = json!(v);
        }
    }
    let started = Instant::now();
    let live = std::io::stderr().is_terminal();
    // A version deployed a moment ago may not have been reported yet: with --wait, ask again.
    let gate = loop {
        match call(client.post(format!("{base}/api/v1/gates")).json(&body)).await {
            Answer::Unreachable(e) => {
                eprintln!("error: cannot reach the collector at {base}: {e}");
                return ExitCode::from(UNREACHABLE);
            }
            Answer::Ok(201, g) => break g,
            Answer::Ok(404, e) if a.wait && started.elapsed() < a.timeout => {
                eprintln!("waiting: {}", e["error"].as_str().unwrap_or("not found"));
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            Answer::Ok(404, e) => {
                eprintln!("error: {}", e["error"].as_str().unwrap_or("not found"));
                return ExitCode::from(WAIT);
            }
            Answer::Ok(status, e) => {
                eprintln!(
                    "error: the collector refused the gate ({status}): {}",
                    e["error"].as_str().unwrap_or(&e.to_string())
                );
                return ExitCode::from(if status == 400 { BAD_REQUEST } else { UNREACHABLE });
            }
        }
    };
    let id = gate["id"].as_str().unwrap_or("").to_string();
    eprintln!(
        "gate {id}: {} {} against {} (window until {}, deadline {})",
        a.service,
        a.version,
        gate["baseline_version"].as_str().unwrap_or("absolute limits"),
        gate["window_end"].as_str().unwrap_or("?"),
        gate["deadline"].as_str().unwrap_or("?")
    );
    let mut g = gate;
    let mut last_line = String::new();
    while a.wait && g["verdict"] == "wait" && started.elapsed() < a.timeout {
        tokio::time::sleep(Duration::from_secs(2)).await;
        match call(client.get(format!("{base}/api/v1/gates/{id}"))).await {
            Answer::Ok(200, v) => g = v,
            Answer::Ok(status, e) => {
                eprintln!("error: asking for gate {id} ({status}): {e}");
                return ExitCode::from(UNREACHABLE);
            }
            Answer::Unreachable(e) => {
                eprintln!("error: cannot reach the collector at {base}: {e}");
                return ExitCode::from(UNREACHABLE);
            }
        }
        let line = progress(&g, started.elapsed());
        if live {
            eprint!("\r\x1b[2K{line}");
            let _ = std::io::stderr().flush();
        } else if strip_time(&line) != strip_time(&last_line) {
            eprintln!("{line}");
        }
        last_line = line;
    }
    if live && !last_line.is_empty() {
        eprintln!();
    }
    println!("{}", table(&g));
    let verdict = g["verdict"].as_str().unwrap_or("wait");
    println!("verdict: {verdict}: {}", g["reason"].as_str().unwrap_or(""));
    ExitCode::from(match verdict {
        "pass" => PASS,
        "fail" => FAIL,
        _ => WAIT,
    })
}

/// One line: the verdict so far and each check's state.
fn progress(g: &Value, elapsed: Duration) -> String {
    let checks: Vec<String> = g["checks"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|c| format!("{} {}", c["name"].as_str().unwrap_or("?"), c["verdict"].as_str().unwrap_or("?")))
                .collect()
        })
        .unwrap_or_default();
    format!(
        "[{:>4}s] {}: {}",
        elapsed.as_secs(),
        g["verdict"].as_str().unwrap_or("?"),
        if checks.is_empty() { g["reason"].as_str().unwrap_or("").to_string() } else { checks.join(", ") }
    )
}

fn strip_time(line: &str) -> &str {
    line.split_once("] ").map_or(line, |(_, rest)| rest)
}

fn num(v: &Value) -> String {
    v.as_f64().map_or("-".into(), |x| {
        if x != 0.0 && x.abs() < 0.01 {
            format!("{x:.5}")
        } else if x.abs() >= 1e9 {
            format!("{:.3}G", x / 1e9)
        } else if x.abs() >= 1e6 {
            format!("{:.3}M", x / 1e6)
        } else if x.abs() >= 1e4 {
            format!("{:.1}k", x / 1e3)
        } else {
            format!("{x:.3}")
        }
    })
}

/// The evidence: one row per check.
pub fn table(g: &Value) -> String {
    let mut rows =
        vec![["check", "verdict", "canary", "baseline", "threshold", "samples", "detail"].map(String::from).to_vec()];
    for c in g["checks"].as_array().into_iter().flatten() {
        rows.push(vec![
            format!("{}{}", c["name"].as_str().unwrap_or("?"), if c["required"] == false { " (info)" } else { "" }),
            c["verdict"].as_str().unwrap_or("?").to_string(),
            num(&c["canary"]),
            num(&c["baseline"]),
            num(&c["threshold"]),
            format!("{}/{}", c["samples"], c["baseline_samples"]),
            c["detail"].as_str().unwrap_or("").to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..6).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    rows.iter()
        .map(|r| {
            let mut line: String = (0..6).map(|i| format!("{:<w$}  ", r[i], w = widths[i])).collect();
            line.push_str(&r[6]);
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub async fn status(collector: &str, service: Option<&str>) -> ExitCode {
    let base = collector.trim_end_matches('/');
    let client = crate::http_client(None);
    if let Some(service) = service {
        if let Some(code) = service_status(&client, base, service).await {
            return code;
        }
    }
    // The export targets: where forwarding stands (none configured: nothing printed).
    match call(client.get(format!("{base}/api/v1/status/export"))).await {
        Answer::Ok(200, v) => {
            let targets = v["data"]["targets"].as_array().cloned().unwrap_or_default();
            if service.is_some() && !targets.is_empty() {
                println!();
            }
            if targets.is_empty() && service.is_none() {
                println!("no export targets ([[export.remote_write]] and [[export.loki]] in collector.toml)");
            }
            if !targets.is_empty() {
                println!("export:");
            }
            for t in &targets {
                let error = t["last_error"].as_str().map(|e| format!("  last error: {e}")).unwrap_or_default();
                println!(
                    "  {:<12} {:<40} lag {:>7.1} s {:>10} bytes  sent {}  refused {}  retries {}{error}",
                    t["kind"].as_str().unwrap_or(""),
                    t["name"].as_str().unwrap_or(""),
                    t["lag_seconds"].as_f64().unwrap_or(0.0),
                    t["lag_bytes"].as_u64().unwrap_or(0),
                    t["sent"].as_u64().unwrap_or(0),
                    t["refused"].as_u64().unwrap_or(0),
                    t["retries"].as_u64().unwrap_or(0),
                );
            }
            ExitCode::SUCCESS
        }
        Answer::Ok(_, e) => {
            eprintln!("error: {}", e["error"].as_str().unwrap_or(&e.to_string()));
            ExitCode::FAILURE
        }
        Answer::Unreachable(e) => {
            eprintln!("error: cannot reach the collector at {base}: {e}");
            ExitCode::from(UNREACHABLE)
        }
    }
}

/// Prints a service's part of `status`; `Some` with the exit code when it cannot.
async fn service_status(client: &reqwest::Client, base: &str, service: &str) -> Option<ExitCode> {
    let s = match call(client.get(format!("{base}/api/v1/services/{service}"))).await {
        Answer::Ok(200, v) => v,
        Answer::Ok(_, e) => {
            eprintln!("error: {}", e["error"].as_str().unwrap_or(&e.to_string()));
            return Some(ExitCode::FAILURE);
        }
        Answer::Unreachable(e) => {
            eprintln!("error: cannot reach the collector at {base}: {e}");
            return Some(ExitCode::from(UNREACHABLE));
        }
    };
    let containers = s["containers"].as_array().cloned().unwrap_or_default();
    let mut versions: std::collections::BTreeMap<String, usize> = Default::default();
    for c in &containers {
        *versions.entry(c["version"].as_str().unwrap_or("").to_string()).or_default() += 1;
    }
    println!("service {service}");
    println!("versions: {}", versions.iter().map(|(v, n)| format!("{v} ({n})")).collect::<Vec<_>>().join(", "));
    println!("\ncontainers:");
    for c in &containers {
        println!(
            "  {:<28} {:<10} {:<16} {}",
            c["container"].as_str().unwrap_or(""),
            c["version"].as_str().unwrap_or(""),
            c["host"].as_str().unwrap_or(""),
            c["health"].as_str().unwrap_or("no probes")
        );
    }
    println!("\ngates:");
    for g in s["gates"].as_array().into_iter().flatten() {
        println!(
            "  {:<5} {} {:<10} {:<6} {:<8} {}",
            g["id"].as_str().unwrap_or(""),
            g["started"].as_str().unwrap_or(""),
            g["version"].as_str().unwrap_or(""),
            g["verdict"].as_str().unwrap_or(""),
            g["status"].as_str().unwrap_or(""),
            g["reason"].as_str().unwrap_or("")
        );
    }
    println!("\nrecent decisions:");
    for d in s["decisions"].as_array().into_iter().flatten() {
        let t = d["time_ms"].as_i64().unwrap_or(0);
        let when = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(t.max(0) as u64));
        println!(
            "  #{:<5} {when} {:<16} {:<14} {}",
            d["id"].as_i64().unwrap_or(0),
            d["kind"].as_str().unwrap_or(""),
            d["outcome"].as_str().unwrap_or(""),
            d["reason"].as_str().unwrap_or("")
        );
    }
    None
}

/// Exits 0 when the recomputed decision is the recorded one, 1 when it differs.
pub async fn replay(collector: &str, decision: i64) -> ExitCode {
    let base = collector.trim_end_matches('/');
    let client = crate::http_client(None);
    let r = match call(client.get(format!("{base}/api/v1/decisions/{decision}/replay"))).await {
        Answer::Ok(200, v) => v,
        Answer::Ok(_, e) => {
            eprintln!("error: {}", e["error"].as_str().unwrap_or(&e.to_string()));
            return ExitCode::from(2);
        }
        Answer::Unreachable(e) => {
            eprintln!("error: cannot reach the collector at {base}: {e}");
            return ExitCode::from(UNREACHABLE);
        }
    };
    if let Some(e) = r["error"].as_str() {
        eprintln!("decision {decision}: {e}");
        return ExitCode::from(2);
    }
    match r["kind"].as_str() {
        Some("gate") => {
            println!(
                "recorded: {}: {}",
                r["recorded"]["verdict"].as_str().unwrap_or(""),
                r["recorded"]["reason"].as_str().unwrap_or("")
            );
            println!("{}", table(&r["recorded"]));
            println!(
                "\nreplayed: {}: {}",
                r["replayed"]["verdict"].as_str().unwrap_or(""),
                r["replayed"]["reason"].as_str().unwrap_or("")
            );
            println!("{}", table(&r["replayed"]));
        }
        _ => {
            let show = |k: &str| {
                let x = &r[k];
                println!(
                    "{k}: {} → {} replicas (value {} against target {}){}",
                    x["reading"]["current"],
                    x["desired"],
                    num(&x["reading"]["value"]),
                    num(&x["reading"]["target"]),
                    x["explanation"].as_str().map(|e| format!(": {e}")).unwrap_or_default()
                );
            };
            show("recorded");
            show("replayed");
        }
    }
    let same = r["same"] == true;
    println!("\n{}", if same { "same result" } else { "DIFFERENT result" });
    ExitCode::from(if same { 0 } else { 1 })
}
