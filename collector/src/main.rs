//! `lookout-collector`: the collector as a daemon. `lookout-collector --config FILE`, or
//! `lookout-collector validate FILE` (exit 64 on a bad config), as the systemd unit runs it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "lookout-collector", version, about = "Stores what lookout agents send and answers queries")]
struct Cli {
    /// Configuration file.
    #[arg(long, default_value = "/etc/lookout/collector.toml")]
    config: PathBuf,
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
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
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
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    match rt.block_on(run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cfg: lookout_collector::CollectorConfig) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let running = lookout_collector::start(cfg, shutdown.clone()).await?;
    tracing::info!(http = %running.http_addr, grpc = %running.grpc_addr, "collector listening");
    let stop = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        stop.cancel();
    });
    running.done.await?
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
