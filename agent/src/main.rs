//! `lookout-agent`: the agent as a daemon. `lookout-agent --config FILE`, or
//! `lookout-agent validate FILE` (exit 64 on a bad config), as the systemd unit runs it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
    // Two worker threads are plenty: the agent's work is a tick every few seconds and one stream.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    match rt.block_on(run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cfg: lookout_agent::AgentConfig) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let running = lookout_agent::start(cfg, shutdown.clone()).await?;
    let stop = shutdown.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        stop.cancel();
    });
    running.done.await?;
    Ok(())
}
