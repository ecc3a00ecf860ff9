//! `lookout-agent`: the agent as a daemon. `lookout-agent --config FILE`, or
//! `lookout-agent validate FILE` (exit 64 on a bad config), as the systemd unit runs it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lookout_daemon::logging::{self, LogFormat};
use lookout_daemon::signals;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "lookout-agent",
    version,
    about = "Watches this host's containers and ships what it sees to a lookout collector"
)]
struct Cli {
    /// Configuration file.
    #[arg(long, default_value = "/etc/lookout/agent.toml")]
    config: PathBuf,
    /// Log lines as `text` (colour only on a terminal) or `json`; overrides `[log] format`.
    #[arg(long)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check a configuration file and exit (64 when it is invalid).
    Validate { file: PathBuf },
}

fn main() -> ExitCode {
    tune_malloc();
    let cli = Cli::parse();
    let file = match &cli.cmd {
        Some(Cmd::Validate { file }) => file.clone(),
        None => cli.config.clone(),
    };
    let cfg = match lookout_agent::AgentConfig::load(&file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(64);
        }
    };
    if cli.cmd.is_some() {
        println!("{}: ok", file.display());
        return ExitCode::SUCCESS;
    }
    let format = cli.log_format.or(cfg.log.format).unwrap_or_default();
    let log = logging::init(cfg.log.level.as_deref().unwrap_or("info"), format);
    // Two worker threads are plenty: the agent's work is a tick every few seconds and one stream.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    match rt.block_on(run(cfg, file, log)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// glibc's allocator, set for a process that holds little and builds a few large buffers each
/// tick (docs/performance.md, "Agent memory"):
/// - one arena for the whole process: glibc gives each thread that allocates an arena of its own
///   (up to eight per core), and memory freed in one is never reused by another; at 100 containers
///   that held 1.5 MB of 7.5. The agent's few threads seldom allocate at the same moment.
/// - buffers of 128 KiB and more (a tick's readings, an encoded batch) mapped on their own and
///   given back when freed, and the heap's free top given back past 128 KiB: glibc raises both
///   thresholds after the first large free, so those buffers' pages stayed (1 MB at 100 containers).
///
/// Neither costs measurable CPU: a tick makes a handful of such buffers and reads 1,500 files.
#[allow(unsafe_code)]
fn tune_malloc() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets parameters of glibc's allocator, and no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 10);
    }
}

async fn run(cfg: lookout_agent::AgentConfig, file: PathBuf, log: logging::LogHandle) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let running = lookout_agent::start(cfg, shutdown.clone()).await?;
    signals::stop_on_signals(shutdown.clone());
    signals::reload_on_hangup(file, log, |file, text| {
        lookout_agent::AgentConfig::parse(file, text).map(|c| c.log.level).map_err(|e| e.to_string())
    });
    running.done.await?;
    tracing::info!("agent stopped cleanly");
    Ok(())
}
