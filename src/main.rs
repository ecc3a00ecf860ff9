//! `lookout`: the command people type. `up` runs a collector and this host's agent in one process;
//! `query` asks a collector; `check-config` validates a file; `bench` measures.

mod gate_cmd;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "lookout", version, about = "Monitoring, logging and health for container hosts")]
struct Cli {
    /// Log lines as `text` (colour only on a terminal) or `json`; overrides `[log] format`.
    #[arg(long, global = true)]
    log_format: Option<lookout_daemon::logging::LogFormat>,
    /// A file holding the token the collector's HTTP API wants (`query`, `logs`, `gate`, `status`,
    /// `replay`); else the token in `LOOKOUT_TOKEN`, if set. Never a token on the command line.
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

/// The token the HTTP commands send, read once at start.
static TOKEN: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// An HTTP client for the collector's API, with the token (when there is one) on every request.
pub(crate) fn http_client(timeout: Option<Duration>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(Some(t)) = TOKEN.get() {
        if let Ok(mut v) = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}")) {
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
    }
    let mut b = reqwest::Client::builder().default_headers(headers);
    if let Some(t) = timeout {
        b = b.timeout(t);
    }
    b.build().unwrap_or_default()
}

/// `--token-file`'s first line, else `LOOKOUT_TOKEN`.
fn read_token(file: Option<&std::path::Path>) -> Result<Option<String>, String> {
    if let Some(f) = file {
        let text = std::fs::read_to_string(f).map_err(|e| format!("cannot read --token-file {}: {e}", f.display()))?;
        let t = text.lines().next().unwrap_or("").trim().to_string();
        if t.is_empty() {
            return Err(format!("--token-file {} is empty", f.display()));
        }
        return Ok(Some(t));
    }
    Ok(std::env::var("LOOKOUT_TOKEN").ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()))
}

#[derive(clap::Args)]
struct UpArgs {
    /// Where the collector keeps its database and the agent its state.
    #[arg(long, default_value = "./lookout-data")]
    data_dir: PathBuf,
    /// The Prometheus-compatible HTTP API.
    #[arg(long, default_value = "127.0.0.1:9470")]
    http: SocketAddr,
    /// The agents' gRPC ingest.
    #[arg(long, default_value = "127.0.0.1:9471")]
    grpc: SocketAddr,
    /// The agent's own /metrics.
    #[arg(long, default_value = "127.0.0.1:9472")]
    agent_metrics: SocketAddr,
    /// How often container and host metrics are read.
    #[arg(long, default_value = "10s", value_parser = humantime_duration)]
    interval: Duration,
    /// Docker's API socket.
    #[arg(long, default_value = "/var/run/docker.sock")]
    docker_socket: String,
    /// A container label to copy onto that container's series (as itself and as cAdvisor's
    /// `container_label_<key>`); repeat for several.
    #[arg(long = "include-label", value_name = "KEY")]
    include_labels: Vec<String>,
    /// How often each container's writable layer and own volumes are walked for `container_fs_usage_bytes`.
    #[arg(long, default_value = "60s", value_parser = humantime_duration)]
    fs_usage_refresh: Duration,
    /// A directory of `*.prom` files (Prometheus's text format) to send as host metrics, as
    /// node_exporter's `--collector.textfile.directory`.
    #[arg(long, value_name = "DIR")]
    textfile_directory: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a collector and this host's agent in one process.
    Up(UpArgs),
    /// Run only the agent, as `lookout-agent --config FILE` does.
    Agent {
        #[arg(long, default_value = "/etc/lookout/agent.toml")]
        config: PathBuf,
    },
    /// Run only the collector, as `lookout-collector --config FILE` does.
    Collector {
        #[arg(long, default_value = "/etc/lookout/collector.toml")]
        config: PathBuf,
    },
    /// Run a PromQL instant query against a collector and print the result.
    Query {
        #[arg(long, default_value = "http://127.0.0.1:9470", env = "LOOKOUT_COLLECTOR")]
        collector: String,
        /// The PromQL expression.
        query: String,
        /// Evaluation time (RFC 3339 or Unix seconds); now when absent.
        #[arg(long)]
        time: Option<String>,
    },
    /// Print log lines matching a LogQL query, oldest first, with their tags; `-f` keeps following.
    Logs {
        #[arg(long, default_value = "http://127.0.0.1:9470", env = "LOOKOUT_COLLECTOR")]
        collector: String,
        /// The LogQL query: a stream selector and line filters, e.g. '{service="api"} |= "error"'.
        query: String,
        /// How far back to start.
        #[arg(long, default_value = "1h", value_parser = humantime_duration)]
        since: Duration,
        /// At most this many lines (the newest ones).
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// Keep printing new lines as they arrive.
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Ask whether a release is healthy enough to go on: exits 0 on pass, 1 on fail, 2 on wait or
    /// timeout, 3 when the collector cannot be reached, 64 when it refuses the request.
    Gate {
        #[arg(long, default_value = "http://127.0.0.1:9470", env = "LOOKOUT_COLLECTOR")]
        collector: String,
        #[arg(long)]
        service: String,
        #[arg(long)]
        version: String,
        /// The version to compare with; by default the service's other running version.
        #[arg(long)]
        baseline: Option<String>,
        /// How long the gate watches (default: the collector's policy, 5m).
        #[arg(long)]
        window: Option<String>,
        /// How often the checks are evaluated (default: the policy's, 1m).
        #[arg(long)]
        interval: Option<String>,
        /// By when every check needs enough data (default: the end of the window).
        #[arg(long)]
        deadline: Option<String>,
        /// A name for this stage of a staged rollout.
        #[arg(long)]
        stage: Option<String>,
        /// Wait for pass or fail, printing progress.
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this long (exit 2).
        #[arg(long, default_value = "15m", value_parser = humantime_duration)]
        timeout: Duration,
    },
    /// A service's versions, containers and their health, gates and recent decisions; and the
    /// collector's export targets with their lag.
    Status {
        #[arg(long, default_value = "http://127.0.0.1:9470", env = "LOOKOUT_COLLECTOR")]
        collector: String,
        /// The service to show; without it, only the export targets.
        #[arg(long)]
        service: Option<String>,
    },
    /// Recompute a recorded gate or scale decision from the stored data; exits 0 when it agrees.
    Replay {
        #[arg(long, default_value = "http://127.0.0.1:9470", env = "LOOKOUT_COLLECTOR")]
        collector: String,
        #[arg(long)]
        decision: i64,
    },
    /// Check an agent or collector configuration file; exits 64 when it is invalid.
    CheckConfig {
        file: PathBuf,
        /// Which daemon the file is for; guessed from the file name when absent.
        #[arg(long)]
        kind: Option<ConfigKind>,
    },
    /// Tokens for the collector's tokens file.
    Token {
        #[command(subcommand)]
        what: TokenCmd,
    },
    /// Measure lookout on this machine (figures for docs/performance.md): runs `lookout-bench`,
    /// built beside this program by `cargo build --release --workspace`.
    #[command(disable_help_flag = true)]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Print a new random token, and the line that lets it in (for the collector's tokens file).
    New(TokenEntry),
    /// The tokens-file line for a token you have, read from standard input.
    Hash(TokenEntry),
}

#[derive(clap::Args)]
struct TokenEntry {
    /// Who holds it: `grafana`, `ci`, a host's name (basic auth sends it as the user name).
    #[arg(long)]
    name: String,
    /// `read`, `write`, `admin` (HTTP) or `agent` (gRPC ingest); several with commas.
    #[arg(long)]
    scope: String,
    /// For `agent`: the hosts it may speak for, with `*` for any run of characters.
    #[arg(long)]
    hosts: Option<String>,
}

/// The tokens-file line for `token`, checked as the collector will read it.
fn token_line(token: &str, name: &str, scope: &str, hosts: Option<&str>) -> Result<String, String> {
    let line = format!(
        "{name} {scope} {}{}",
        lookout_collector::auth::hash_hex(token),
        hosts.map(|h| format!(" {h}")).unwrap_or_default()
    );
    lookout_collector::auth::Tokens::parse(&line).map_err(|(_, m)| m)?;
    Ok(line)
}

fn token_cmd(what: TokenCmd) -> ExitCode {
    let (token, name, scope, hosts, new) = match what {
        TokenCmd::New(TokenEntry { name, scope, hosts }) => {
            (lookout_collector::auth::new_token(), name, scope, hosts, true)
        }
        TokenCmd::Hash(TokenEntry { name, scope, hosts }) => {
            let mut t = String::new();
            if std::io::stdin().read_line(&mut t).is_err() || t.trim().is_empty() {
                eprintln!("error: give the token on standard input");
                return ExitCode::from(64);
            }
            (t.trim().to_string(), name, scope, hosts, false)
        }
    };
    match token_line(&token, &name, &scope, hosts.as_deref()) {
        Ok(line) => {
            if new {
                println!("token (shown once; keep it in a file only its user can read):\n{token}\n");
            }
            println!("line for the collector's tokens file:\n{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(64)
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum ConfigKind {
    Agent,
    Collector,
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

/// The measurements live in their own program, so that they are not shipped in this one.
fn bench(args: Vec<std::ffi::OsString>) -> ExitCode {
    let path = match std::env::current_exe() {
        Ok(me) => me.with_file_name("lookout-bench"),
        Err(e) => {
            eprintln!("error: cannot find this program's path: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !path.exists() {
        eprintln!(
            "error: {} is not built; build it with `cargo build --release --workspace` (or run `cargo run --release -p lookout-bench -- ...`)",
            path.display()
        );
        return ExitCode::from(69);
    }
    match std::process::Command::new(&path).args(args).status() {
        Ok(s) => ExitCode::from(s.code().map_or(1, |c| c.clamp(0, 255) as u8)),
        Err(e) => {
            eprintln!("error: cannot run {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = cli.log_format;
    match read_token(cli.token_file.as_deref()) {
        Ok(t) => {
            let _ = TOKEN.set(t);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(64);
        }
    }
    if !matches!(cli.cmd, Cmd::Agent { .. } | Cmd::Collector { .. }) {
        // The daemons install their logger once their config (and its `[log]`) is read.
        lookout_daemon::logging::init("info", log_format.unwrap_or_default());
    }
    match cli.cmd {
        Cmd::CheckConfig { file, kind } => check_config(&file, kind),
        Cmd::Bench { args } => bench(args),
        Cmd::Token { what } => token_cmd(what),
        Cmd::Agent { config } => daemon(&config, log_format, |cfg: lookout_agent::AgentConfig, stop| async move {
            let running = lookout_agent::start(cfg, stop).await?;
            running.done.await?;
            Ok(())
        }),
        Cmd::Collector { config } => {
            daemon(&config, log_format, |cfg: lookout_collector::CollectorConfig, stop| async move {
                let running = lookout_collector::start(cfg, stop).await?;
                tracing::info!(http = %running.http_addr, grpc = %running.grpc_addr, "collector listening");
                running.done.await?
            })
        }
        Cmd::Query { collector, query, time } => runtime().block_on(query_cmd(&collector, &query, time.as_deref())),
        Cmd::Gate { collector, service, version, baseline, window, interval, deadline, stage, wait, timeout } => {
            runtime().block_on(gate_cmd::gate(gate_cmd::GateArgs {
                collector,
                service,
                version,
                baseline,
                window,
                interval,
                deadline,
                stage,
                wait,
                timeout,
            }))
        }
        Cmd::Status { collector, service } => runtime().block_on(gate_cmd::status(&collector, service.as_deref())),
        Cmd::Replay { collector, decision } => runtime().block_on(gate_cmd::replay(&collector, decision)),
        Cmd::Logs { collector, query, since, limit, follow } => {
            runtime().block_on(logs_cmd(&collector, &query, since, limit, follow))
        }
        Cmd::Up(args) => match runtime().block_on(up(args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// A config file that can be loaded with an error naming the file, line and key.
trait LoadConfig: Sized {
    fn parse_file(file: &std::path::Path, text: &str) -> Result<Self, String>;
    fn log(&self) -> &lookout_daemon::logging::LogConfig;
}

impl LoadConfig for lookout_agent::AgentConfig {
    fn parse_file(file: &std::path::Path, text: &str) -> Result<Self, String> {
        Self::parse(file, text).map_err(|e| e.to_string())
    }
    fn log(&self) -> &lookout_daemon::logging::LogConfig {
        &self.log
    }
}

impl LoadConfig for lookout_collector::CollectorConfig {
    fn parse_file(file: &std::path::Path, text: &str) -> Result<Self, String> {
        Self::parse(file, text).map_err(|e| e.to_string())
    }
    fn log(&self) -> &lookout_daemon::logging::LogConfig {
        &self.log
    }
}

/// Loads a config (exit 64 when invalid), installs the logger it asks for, and runs one daemon
/// until SIGINT or SIGTERM; SIGHUP reloads what can be reloaded.
fn daemon<C, F, Fut>(file: &std::path::Path, log_format: Option<lookout_daemon::logging::LogFormat>, run: F) -> ExitCode
where
    C: LoadConfig + 'static,
    F: FnOnce(C, CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let loaded = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))
        .and_then(|text| C::parse_file(file, &text));
    let cfg = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(64);
        }
    };
    let log = lookout_daemon::logging::init(
        cfg.log().level.as_deref().unwrap_or("info"),
        log_format.or(cfg.log().format).unwrap_or_default(),
    );
    let shutdown = CancellationToken::new();
    let file = file.to_path_buf();
    let result = runtime().block_on(async move {
        lookout_daemon::signals::stop_on_signals(shutdown.clone());
        lookout_daemon::signals::reload_on_hangup(file, log, |file, text| {
            C::parse_file(file, text).map(|c| c.log().level.clone())
        });
        run(cfg, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("a tokio runtime starts")
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let UpArgs {
        data_dir,
        http,
        grpc,
        agent_metrics,
        interval,
        docker_socket,
        include_labels,
        fs_usage_refresh,
        textfile_directory,
    } = args;
    let shutdown = CancellationToken::new();
    let collector_cfg = lookout_collector::CollectorConfig {
        data_dir: data_dir.clone(),
        http_listen: http,
        grpc_listen: grpc,
        ..Default::default()
    };
    let problems = collector_cfg.validate();
    anyhow::ensure!(problems.is_empty(), "{}", problems.join("; "));
    let collector = lookout_collector::start(collector_cfg, shutdown.clone()).await?;
    let agent_cfg = lookout_agent::AgentConfig {
        collectors: vec![format!("http://{}", collector.grpc_addr)],
        interval,
        state_dir: data_dir.join("agent"),
        metrics_listen: agent_metrics,
        docker_socket,
        fs_usage_refresh,
        labels: lookout_agent::config::LabelsConfig { include: include_labels, ..Default::default() },
        node: lookout_agent::config::NodeConfig { textfile_directory, ..Default::default() },
        ..Default::default()
    };
    let problems = agent_cfg.validate();
    anyhow::ensure!(problems.is_empty(), "{}", problems.join("; "));
    let agent = lookout_agent::start(agent_cfg, shutdown.clone()).await?;
    println!("lookout is up");
    println!("  collector HTTP API (Prometheus data source for Grafana): http://{}", collector.http_addr);
    println!("  collector gRPC ingest:                                  http://{}", collector.grpc_addr);
    println!("  agent /metrics:                                         http://{}/metrics", agent.metrics_addr);
    println!("  data:                                                   {}", data_dir.display());
    println!(
        "try: curl -s {}/api/v1/query --data-urlencode 'query=rate(container_cpu_usage_seconds_total[1m])'",
        collector.http_addr
    );

    lookout_daemon::signals::stop_on_signals(shutdown.clone());
    shutdown.cancelled().await;
    eprintln!("stopping");
    let _ = agent.done.await;
    collector.done.await??;
    Ok(())
}

/// Fetches `[start, end)` newest-first up to `limit` and prints it oldest first, with host, container
/// and stream; with `follow`, polls every second.
async fn logs_cmd(collector: &str, query: &str, since: Duration, limit: usize, follow: bool) -> ExitCode {
    let url = format!("{}/loki/api/v1/query_range", collector.trim_end_matches('/'));
    let client = http_client(None);
    let now = lookout_collector::clock::now_ns;
    let mut start = now() - since.as_nanos() as i64;
    let mut seen: std::collections::HashSet<(i64, String, String)> = Default::default();
    loop {
        let end = now();
        let form = [
            ("query", query.to_string()),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("limit", limit.to_string()),
            ("direction", "backward".to_string()),
        ];
        let body: serde_json::Value = match client.post(&url).form(&form).send().await {
            Ok(r) => match r.json().await {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("error: the collector's answer is not JSON: {e}");
                    return ExitCode::from(3);
                }
            },
            Err(e) => {
                eprintln!("error: cannot reach the collector at {collector}: {e}");
                return ExitCode::from(3);
            }
        };
        if body["status"] != "success" {
            eprintln!("error: {}", body["error"].as_str().unwrap_or("unknown"));
            return ExitCode::FAILURE;
        }
        let mut lines: Vec<(i64, String, String)> = Vec::new();
        for st in body["data"]["result"].as_array().into_iter().flatten() {
            let labels = st["stream"].as_object().cloned().unwrap_or_default();
            let get = |k: &str| labels.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
            let tag = format!("{} {} {}", get("host"), get("container"), get("stream"));
            for v in st["values"].as_array().into_iter().flatten() {
                let t: i64 = v[0].as_str().and_then(|t| t.parse().ok()).unwrap_or(0);
                lines.push((t, tag.clone(), v[1].as_str().unwrap_or("").to_string()));
            }
        }
        lines.sort_by_key(|l| l.0);
        for l in &lines {
            if seen.insert(l.clone()) {
                let time =
                    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_nanos(l.0.max(0) as u64));
                println!("{time} {} {}", l.1, l.2);
            }
        }
        if !follow {
            return ExitCode::SUCCESS;
        }
        // A line reaches the collector a little after its Docker time: each poll looks back over the
        // last ten seconds and prints only what it has not printed.
        start = end - 10_000_000_000;
        seen.retain(|l| l.0 >= start);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn query_cmd(collector: &str, query: &str, time: Option<&str>) -> ExitCode {
    let mut form = vec![("query", query.to_string())];
    if let Some(t) = time {
        form.push(("time", t.to_string()));
    }
    let url = format!("{}/api/v1/query", collector.trim_end_matches('/'));
    let resp = match http_client(None).post(&url).form(&form).send().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot reach the collector at {collector}: {e}");
            return ExitCode::from(3);
        }
    };
    let body: serde_json::Value = match resp.json().await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: the collector's answer is not JSON: {e}");
            return ExitCode::from(3);
        }
    };
    if body["status"] != "success" {
        eprintln!(
            "error: {} ({})",
            body["error"].as_str().unwrap_or("unknown"),
            body["errorType"].as_str().unwrap_or("")
        );
        return ExitCode::FAILURE;
    }
    let data = &body["data"];
    let fmt_labels = |m: &serde_json::Value| {
        let obj = m.as_object().cloned().unwrap_or_default();
        let name = obj.get("__name__").and_then(|v| v.as_str()).unwrap_or("").to_string();
        let rest: Vec<String> = obj.iter().filter(|(k, _)| *k != "__name__").map(|(k, v)| format!("{k}={v}")).collect();
        format!("{name}{{{}}}", rest.join(", "))
    };
    match data["resultType"].as_str() {
        Some("scalar") | Some("string") => println!("{}", data["result"][1].as_str().unwrap_or("")),
        Some("vector") => {
            for r in data["result"].as_array().into_iter().flatten() {
                println!("{} {}", fmt_labels(&r["metric"]), r["value"][1].as_str().unwrap_or(""));
            }
        }
        Some("matrix") => {
            for r in data["result"].as_array().into_iter().flatten() {
                let vals: Vec<String> = r["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| format!("{} @{}", p[1].as_str().unwrap_or(""), p[0]))
                    .collect();
                println!("{} {}", fmt_labels(&r["metric"]), vals.join(", "));
            }
        }
        _ => println!("{data}"),
    }
    ExitCode::SUCCESS
}

fn check_config(file: &std::path::Path, kind: Option<ConfigKind>) -> ExitCode {
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let kind = kind.or(if name.contains("collector") {
        Some(ConfigKind::Collector)
    } else if name.contains("agent") {
        Some(ConfigKind::Agent)
    } else {
        None
    });
    let result = match kind {
        Some(ConfigKind::Agent) => lookout_agent::AgentConfig::load(file).map(|_| "agent").map_err(|e| e.to_string()),
        Some(ConfigKind::Collector) => {
            lookout_collector::CollectorConfig::load(file).map(|_| "collector").map_err(|e| e.to_string())
        }
        None => {
            eprintln!(
                "error: {}: cannot tell whether this is an agent or a collector config; pass --kind agent|collector",
                file.display()
            );
            return ExitCode::from(64);
        }
    };
    match result {
        Ok(k) => {
            println!("{}: valid {k} configuration", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(64)
        }
    }
}
