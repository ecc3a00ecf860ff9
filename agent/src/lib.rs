//! lookout-agent: discovers this host's containers, reads their cgroup, network and the host's
//! metrics every interval and their logs as they are written, and ships it all to a collector.

pub mod clock;
pub mod config;
pub mod discover;
pub mod expose;
pub mod logs;
pub mod metrics;
pub mod model;
pub mod probe;
pub mod sampler;
pub mod ship;
pub mod telemetry;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

pub use config::AgentConfig;

/// A running agent: where its /metrics listens, its send queue, and a handle that ends when it stops.
pub struct Running {
    pub metrics_addr: SocketAddr,
    pub agent_id: String,
    pub queue: Arc<ship::Queue>,
    pub done: tokio::task::JoinHandle<()>,
}

/// Starts discovery, sampling, shipping and the /metrics endpoint; they run until `shutdown`.
/// Stat and attribute files stay open between ticks (a dozen per container, twenty per network
/// interface), so the soft limit on open files is raised to the hard one, as Go programs such as
/// node_exporter do at start; a shell's 1024 would not hold 100 containers.
fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!(error = %e, "could not raise the open files limit");
        }
    }
}

pub async fn start(cfg: AgentConfig, shutdown: CancellationToken) -> anyhow::Result<Running> {
    raise_open_files_limit();
    let host = cfg.host_name();
    let agent_id = agent_id(&cfg.state_dir, &host)?;
    let mut registry = Registry::default();
    let metrics = telemetry::AgentMetrics::register(&mut registry);

    // One Docker client (it connects per request) for probes and for restarts the collector asks for.
    let docker = bollard::Docker::connect_with_unix(&cfg.docker_socket, 30, bollard::API_DEFAULT_VERSION).ok();
    let ship_cfg = ship::ShipConfig {
        agent_id: agent_id.clone(),
        host: host.clone(),
        collectors: cfg.collectors.clone(),
        token: match &cfg.token_file {
            Some(f) => Some(
                std::fs::read_to_string(f)
                    .with_context(|| format!("reading token_file {}", f.display()))?
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string(),
            ),
            None => cfg.token.clone(),
        },
        tls: cfg.tls.clone(),
        include_labels: cfg.labels.include.clone(),
        max_queue_bytes: (cfg.queue.max_mib as usize) << 20,
        spool: (cfg.spool.max_mib > 0)
            .then(|| (cfg.spool.dir.clone().unwrap_or_else(|| cfg.state_dir.join("spool")), cfg.spool.max_mib << 20)),
        docker: docker.clone(),
    };
    let (ack_tx, ack_rx) = std::sync::mpsc::channel();
    let (welcome_tx, welcome_rx) = std::sync::mpsc::channel();
    let links = cfg.logs.enabled.then_some(ship::LogLinks { acks: ack_tx, resume: welcome_tx });
    let (out, queue) = ship::spawn(ship_cfg, links, metrics.clone(), shutdown.clone())?;

    let containers: discover::ContainerSet = Default::default();
    let stopped: discover::ContainerSet = Default::default();
    let error_rates: Arc<probe::errors::ErrorRates> = Default::default();
    let log_reader = if cfg.logs.enabled {
        let reader_cfg = logs::reader::LogReaderConfig {
            host: host.clone(),
            include_labels: cfg.labels.include.clone(),
            state_dir: cfg.state_dir.clone(),
            in_flight_bytes: (cfg.logs.in_flight_mib as usize) << 20,
            multiline: cfg.logs.multiline.clone(),
            error_rates: error_rates.clone(),
        };
        let (c, m, s, log_out) = (containers.clone(), metrics.clone(), shutdown.clone(), out.clone());
        let st = stopped.clone();
        Some(tokio::task::spawn_blocking(move || {
            logs::reader::run(reader_cfg, c, st, ack_rx, welcome_rx, m, s, |batch| {
                log_out.blocking_send(ship::Outgoing::Logs(batch)).is_ok()
            })
        }))
    } else {
        None
    };
    let (changes_tx, mut changes_rx) = tokio::sync::mpsc::channel(1024);
    // Docker's `health_status` events, from discovery to the `docker` probes.
    let (health_events, _) = tokio::sync::broadcast::channel(1024);
    let discovery = discover::Discovery::new(&cfg.docker_socket, containers.clone(), changes_tx)
        .with_health_events(health_events.clone())
        .with_stopped(stopped)
        .with_filter(cfg.discover.clone());
    tokio::spawn(discovery.run(shutdown.clone()));
    let change_out = out.clone();
    tokio::spawn(async move {
        while let Some(c) = changes_rx.recv().await {
            if change_out.send(ship::Outgoing::Change(c)).await.is_err() {
                break;
            }
        }
    });

    let probe_problems: probe::ConfigProblems = Default::default();
    let runner = Arc::new(probe::check::Runner::new(docker, error_rates, cfg.proc_root.clone()));
    let prober_cfg = probe::ProberConfig {
        host: host.clone(),
        include_labels: cfg.labels.include.clone(),
        rules: cfg.probes.clone(),
        health_events: Some(health_events),
        problems: probe_problems.clone(),
    };
    let (probe_tx, mut probe_rx) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(probe::run(prober_cfg, containers.clone(), runner, Default::default(), probe_tx, shutdown.clone()));
    let probe_out = out.clone();
    tokio::spawn(async move {
        while let Some(ev) = probe_rx.recv().await {
            if probe_out.send(ship::Outgoing::Probe(ev)).await.is_err() {
                break;
            }
        }
    });

    let latest: Arc<RwLock<Arc<sampler::Tick>>> = Default::default();
    let sampler = sampler::Sampler::new(
        sampler::SamplerConfig {
            host,
            interval: cfg.interval,
            cgroup_root: cfg.cgroup_root.clone(),
            proc_root: cfg.proc_root.clone(),
            include_labels: cfg.labels.include.clone(),
            scrape: cfg.labels.scrape(),
            fs_usage_refresh: cfg.fs_usage_refresh,
            net_device_exclude: cfg.node.net_device_exclude(),
            textfile_directory: cfg.node.textfile_directory.clone(),
        },
        containers,
        metrics.clone(),
    )
    .with_probe_problems(probe_problems);
    let (s, l, m) = (shutdown.clone(), latest.clone(), metrics.clone());
    let sampling = tokio::task::spawn_blocking(move || {
        sampler.run(s, l, |tick| {
            // Never block the sampler on a slow network: a tick that cannot be queued is counted.
            if out.try_send(ship::Outgoing::Tick(tick)).is_err() {
                m.dropped_ticks.inc();
            }
        })
    });

    let listener = tokio::net::TcpListener::bind(cfg.metrics_listen)
        .await
        .with_context(|| format!("binding the agent's /metrics to {}", cfg.metrics_listen))?;
    let metrics_addr = listener.local_addr()?;
    let router = expose::router(expose::ExposeState { latest, registry: Arc::new(Mutex::new(registry)) });
    let s = shutdown.clone();
    let http = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(s.cancelled_owned()).await {
            tracing::error!(error = %e, "agent /metrics server failed");
        }
    });
    let done = tokio::spawn(async move {
        let _ = tokio::join!(sampling, http);
        if let Some(r) = log_reader {
            let _ = r.await;
        }
    });
    tracing::info!(%agent_id, metrics = %metrics_addr, collectors = ?cfg.collectors, "agent started");
    Ok(Running { metrics_addr, agent_id, queue, done })
}

/// The agent's id: kept in `state_dir/agent-id` so it survives restarts (the collector de-duplicates
/// by it); made from the host name and random bits the first time.
fn agent_id(state_dir: &Path, host: &str) -> anyhow::Result<String> {
    let file = state_dir.join("agent-id");
    if let Ok(id) = std::fs::read_to_string(&file) {
        let id = id.trim();
        if !id.is_empty() {
            return Ok(id.to_string());
        }
    }
    std::fs::create_dir_all(state_dir).with_context(|| format!("creating the state dir {}", state_dir.display()))?;
    let id = format!("{host}-{:016x}", rand::random::<u64>());
    let tmp = state_dir.join("agent-id.tmp");
    std::fs::write(&tmp, format!("{id}\n")).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &file).with_context(|| format!("writing {}", file.display()))?;
    Ok(id)
}
