//! `lookout-collector`: the collector as a daemon. `lookout-collector --config FILE`, or
//! `lookout-collector validate FILE` (exit 64 on a bad config), as the systemd unit runs it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lookout_daemon::logging::{self, LogFormat};
use lookout_daemon::signals;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "lookout-collector", version, about = "Stores what lookout agents send and answers queries")]
struct Cli {
    /// Configuration file.
    #[arg(long, default_value = "/etc/lookout/collector.toml")]
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
    let cli = Cli::parse();
    let file = match &cli.cmd {
        Some(Cmd::Validate { file }) => file.clone(),
        None => cli.config.clone(),
    };
    let cfg = match lookout_collector::CollectorConfig::load(&file) {
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
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    match rt.block_on(run(cfg, file, log)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cfg: lookout_collector::CollectorConfig, file: PathBuf, log: logging::LogHandle) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let running = lookout_collector::start(cfg, shutdown.clone()).await?;
    tracing::info!(http = %running.http_addr, grpc = %running.grpc_addr, "collector listening");
    signals::stop_on_signals(shutdown.clone());
    signals::reload_on_hangup(file, log, |file, text| {
        lookout_collector::CollectorConfig::parse(file, text).map(|c| c.log.level).map_err(|e| e.to_string())
    });
    running.done.await?
}
