//! The wiring: opens the store, starts ingest, the API, the decision shells and housekeeping, and
//! stops them in order. Holds no behaviour of its own beyond when things start and stop.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::config::CollectorConfig;
use crate::{api, auth, export, health, ingest, query, run, store, telemetry, tls};

/// A running collector: where it listens, and a handle that ends when it has stopped.
pub struct Running {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub store: Arc<store::Store>,
    pub done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Opens the store, binds both listeners and serves until `shutdown` is cancelled.
pub async fn start(cfg: CollectorConfig, shutdown: CancellationToken) -> anyhow::Result<Running> {
    let options = store::StoreOptions {
        retention: cfg.retention,
        log_retention: cfg.logs.retention,
        log_max_bytes: cfg.logs.max_mib << 20,
        max_bytes: cfg.retention_size_mib << 20,
        log_chunk_max_age: cfg.logs.chunk_max_age,
        export_samples: !cfg.export.remote_write.is_empty(),
        export_logs: !cfg.export.loki.is_empty(),
        ..Default::default()
    };
    let problems = cfg.validate();
    anyhow::ensure!(problems.is_empty(), "the collector's configuration is invalid:\n  {}", problems.join("\n  "));
    let tokens = Arc::new(match &cfg.tokens_file {
        Some(path) => auth::TokenFile::load(path)?,
        None => auth::TokenFile::open(),
    });
    let beyond_loopback = !cfg.http_listen.ip().is_loopback() || !cfg.grpc_listen.ip().is_loopback();
    if !tokens.required() && beyond_loopback {
        tracing::warn!(http = %cfg.http_listen, grpc = %cfg.grpc_listen, "insecure = true: listening beyond loopback without credentials; anyone who reaches these ports can read every log line and write data");
    }
    let data_dir = cfg.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || store::Store::open(&data_dir, options))
        .await?
        .with_context(|| format!("opening the store in {}", cfg.data_dir.display()))?;
    let store = Arc::new(store);
    let mut registry = Registry::default();
    let metrics = telemetry::CollectorMetrics::register(&mut registry);
    let export_metrics = export::queue::ExportMetrics::register(&mut registry);
    let exports: export::Statuses = Default::default();
    let export_tasks = export::start(&cfg.export, store.clone(), export_metrics, exports.clone(), shutdown.clone())?;

    let http = TcpListener::bind(cfg.http_listen)
        .await
        .with_context(|| format!("binding the HTTP API to {}", cfg.http_listen))?;
    let grpc = TcpListener::bind(cfg.grpc_listen)
        .await
        .with_context(|| format!("binding gRPC ingest to {}", cfg.grpc_listen))?;
    let (http_addr, grpc_addr) = (http.local_addr()?, grpc.local_addr()?);

    let health: Arc<health::HealthBoard> = Default::default();
    let engine = Arc::new(query::promql::Engine::new(cfg.query.clone()));
    let queries = Arc::new(query::runner::QueryRunner::new(cfg.query.clone(), metrics.query.clone(), shutdown.clone()));
    let recorder = run::Recorder::new(store.clone(), metrics.decisions.clone());
    let gates = Arc::new(run::gate::Gates::new(cfg.gates.clone(), engine.clone(), recorder.clone()));
    tokio::spawn(gates.clone().run(shutdown.clone()));
    let autoscaler = Arc::new(run::scale::Autoscaler::new(
        cfg.autoscale.clone(),
        engine.clone(),
        health.clone(),
        gates.clone(),
        recorder.clone(),
    ));
    tokio::spawn(autoscaler.clone().run(shutdown.clone()));
    let state = api::AppState {
        store: store.clone(),
        health: health.clone(),
        gates,
        autoscaler,
        engine,
        queries,
        shutdown: shutdown.clone(),
        registry: Arc::new(Mutex::new(registry)),
        metrics: metrics.clone(),
        tokens: tokens.clone(),
        exports,
    };
    let router = api::router(state);
    let restarter = Arc::new(run::restart::Restarter::new(cfg.restart.clone(), health.clone(), recorder, now_ms()));
    tokio::spawn(restarter.clone().run(shutdown.clone()));
    let ingest =
        ingest::IngestService::new(store.clone(), tokens.clone(), metrics, health, restarter.clone(), shutdown.clone())
            .into_server();

    // TLS configs and the tokens file follow their files (looked at every 5 s, and on SIGHUP); open
    // connections keep their certificates.
    let http_tls = cfg.http.tls.clone().map(|t| tls::Reloading::load(t, &[b"h2", b"http/1.1"], "http")).transpose()?;
    let grpc_tls = cfg.ingest.tls.clone().map(|t| tls::Reloading::load(t, &[b"h2"], "grpc")).transpose()?;
    let mut watched: Vec<Arc<dyn Reread>> =
        http_tls.iter().chain(&grpc_tls).map(|t| t.clone() as Arc<dyn Reread>).collect();
    if cfg.tokens_file.is_some() {
        watched.push(tokens.clone());
    }
    if !watched.is_empty() {
        tokio::spawn(follow_files(watched, Duration::from_secs(5), shutdown.clone()));
    }
    let s1 = shutdown.clone();
    let http_task = match http_tls {
        Some(t) => {
            let listener = tls::Listener::new(http, t, shutdown.clone())?;
            // Each connection carries the names of its client certificate, for `api::auth`.
            let service = router.into_make_service_with_connect_info::<api::auth::ClientCert>();
            tokio::spawn(
                async move { axum::serve(listener, service).with_graceful_shutdown(s1.cancelled_owned()).await },
            )
        }
        None => {
            tokio::spawn(async move { axum::serve(http, router).with_graceful_shutdown(s1.cancelled_owned()).await })
        }
    };
    let s2 = shutdown.clone();
    let server = tonic::transport::Server::builder().http2_keepalive_interval(Some(Duration::from_secs(30)));
    let grpc_task = match grpc_tls {
        Some(t) => {
            let incoming = tls::incoming(grpc, t, shutdown.clone());
            tokio::spawn(async move {
                let mut server = server;
                server.add_service(ingest).serve_with_incoming_shutdown(incoming, s2.cancelled_owned()).await
            })
        }
        None => tokio::spawn(async move {
            let mut server = server;
            server
                .add_service(ingest)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(grpc),
                    s2.cancelled_owned(),
                )
                .await
        }),
    };
    let retention_store = store.clone();
    let s3 = shutdown.clone();
    let housekeeping = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = s3.cancelled() => break,
                _ = tick.tick() => {}
            }
            let st = retention_store.clone();
            let now = now_ms();
            match tokio::task::spawn_blocking(move || {
                (st.enforce_retention(now), st.seal_old_log_heads(now.saturating_mul(1_000_000)))
            })
            .await
            {
                Ok((retention, sealed)) => {
                    match retention {
                        Ok(n) if n > 0 => tracing::info!(chunks = n, "retention deleted old chunks"),
                        Err(e) => tracing::warn!(error = %e, "retention failed"),
                        _ => {}
                    }
                    if let Err(e) = sealed {
                        tracing::warn!(error = %e, "sealing old log heads failed");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "housekeeping task failed"),
            }
        }
    });
    let final_store = store.clone();
    let s4 = shutdown.clone();
    let done = tokio::spawn(async move {
        let (http_abort, grpc_abort) = (http_task.abort_handle(), grpc_task.abort_handle());
        let servers = async { tokio::join!(http_task, grpc_task) };
        tokio::pin!(servers);
        // Serving until told to stop, then at most STOP_GRACE for answers in flight: agent streams
        // end at their next message, queries are answered 503, tails get a close frame. Whatever
        // still hangs then is cut off (an agent resends any batch it has no ack for).
        let joined = tokio::select! {
            j = &mut servers => Some(j),
            _ = s4.cancelled() => None,
        };
        let (h, g) = match joined {
            Some(j) => j,
            None => match tokio::time::timeout(STOP_GRACE, &mut servers).await {
                Ok(j) => j,
                Err(_) => {
                    tracing::warn!(grace = ?STOP_GRACE, "connections still open at the end of the stop's grace; closing them");
                    http_abort.abort();
                    grpc_abort.abort();
                    (Ok(Ok(())), Ok(Ok(())))
                }
            },
        };
        housekeeping.abort();
        // The exporters end their round (or give it up unsaved) once told to stop.
        for t in export_tasks {
            if tokio::time::timeout(STOP_GRACE, t).await.is_err() {
                tracing::warn!("an exporter did not stop within the grace; its last round is sent again next start");
            }
        }
        h?.context("HTTP API")?;
        g?.context("gRPC ingest")?;
        // A clean stop leaves an empty head log, so the next start has nothing to replay.
        tokio::task::spawn_blocking(move || final_store.checkpoint()).await??;
        tracing::info!("collector stopped cleanly");
        Ok(())
    });
    Ok(Running { http_addr, grpc_addr, store, done })
}

/// A file-backed setting that can be read again while the collector runs.
trait Reread: Send + Sync {
    /// Reads the files now (SIGHUP).
    fn reload(&self);
    /// Reads them if they changed since the last look.
    fn reload_if_changed(&self);
}

impl Reread for tls::Reloading {
    fn reload(&self) {
        tls::Reloading::reload(self)
    }
    fn reload_if_changed(&self) {
        tls::Reloading::reload_if_changed(self)
    }
}

impl Reread for auth::TokenFile {
    fn reload(&self) {
        auth::TokenFile::reload(self)
    }
    fn reload_if_changed(&self) {
        auth::TokenFile::reload_if_changed(self)
    }
}

/// Looks at the files every `every` (a certificate manager's rotation, an edited tokens file) and
/// reads them all on SIGHUP, until `shutdown`.
async fn follow_files(files: Vec<Arc<dyn Reread>>, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| tracing::warn!(error = %e, "no SIGHUP handler; files are still looked at every {every:?}"))
        .ok();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => files.iter().for_each(|f| f.reload_if_changed()),
            Some(_) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                files.iter().for_each(|f| f.reload())
            }
        }
    }
}

/// How long a stop waits for answers in flight before it cuts connections: systemd's stop timeout
/// is 90 s, the target is a stop within 5 s with the checkpoint included.
pub const STOP_GRACE: Duration = Duration::from_secs(3);
