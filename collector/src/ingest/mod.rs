//! The gRPC ingest server: authenticates agents, decodes batches, commits them, then acks; and the
//! remote-write decoder. The only module that sees `lookout_proto`; it hands on plain `model` types.

pub mod body;
mod convert;
pub use convert::valid_label_name;
pub mod loki_push;
pub mod otlp;
pub mod remote_write;

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use lookout_proto::v1::{
    agent_message, collector_message, ingest_server::Ingest, Ack, AgentMessage, CollectorMessage, LogResume, Welcome,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{Scope, TokenFile};
use crate::store::{LogBatchIn, Store};
use crate::telemetry::CollectorMetrics;
pub use lookout_proto::v1::ingest_server::IngestServer;

/// Largest batch a collector accepts after decompression; agents seal at 1 MiB, so 64 MiB leaves room
/// for replays merged by a later spool without letting one peer exhaust memory.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

use crate::clock::now_ms;
use crate::health::HealthBoard;
use crate::run::restart::Restarter;

pub struct IngestService {
    store: Arc<Store>,
    tokens: Arc<TokenFile>,
    metrics: CollectorMetrics,
    health: Arc<HealthBoard>,
    restarter: Arc<Restarter>,
    shutdown: CancellationToken,
}

/// What let a stream in, kept for its life: a token is checked again whenever the tokens file is
/// re-read, so a revoked token's open stream ends at its next batch.
enum Grant {
    /// No credentials asked for (no tokens file; loopback or `insecure`).
    Open,
    /// A token of the entry `name`, bound to the hosts the entry names.
    Token { token: String, name: String },
    /// A client certificate client_ca verified, for the hosts it names.
    Certificate,
}

impl Grant {
    /// Whether the stream writes for its own host alone.
    fn bound(&self) -> bool {
        !matches!(self, Grant::Open)
    }
}

/// What an agent stream is told when the collector stops, with `UNAVAILABLE`.
pub use lookout_proto::GOING_AWAY;

impl IngestService {
    /// `tokens` without a file means no authentication (only loopback listeners, or `insecure`,
    /// allow that).
    pub fn new(
        store: Arc<Store>,
        tokens: Arc<TokenFile>,
        metrics: CollectorMetrics,
        health: Arc<HealthBoard>,
        restarter: Arc<Restarter>,
        shutdown: CancellationToken,
    ) -> Self {
        IngestService { store, tokens, metrics, health, restarter, shutdown }
    }

    /// The tonic service with gzip both ways and the message size bound.
    pub fn into_server(self) -> IngestServer<Self> {
        IngestServer::new(self)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .send_compressed(tonic::codec::CompressionEncoding::Gzip)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// What lets this stream in, or why nothing does. A token is never logged or echoed, only its
    /// entry's name.
    fn authorize<T>(&self, req: &Request<T>, has_cert: bool) -> Result<Grant, Status> {
        let given =
            req.metadata().get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if !self.tokens.required() {
            return Ok(Grant::Open);
        }
        // A client certificate that client_ca verified is an identity of its own.
        if has_cert && given.is_none() {
            return Ok(Grant::Certificate);
        }
        let Some(token) = given else {
            self.metrics.ingest_refused("token");
            return Err(Status::unauthenticated("missing bearer token (authorization: Bearer <token>)"));
        };
        match self.tokens.now().check(token) {
            Some(c) if c.allows(Scope::Agent) => Ok(Grant::Token { token: token.to_string(), name: c.name.clone() }),
            Some(c) => {
                self.metrics.ingest_refused("scope");
                Err(Status::permission_denied(format!("token {} has no agent scope", c.name)))
            }
            None => {
                self.metrics.ingest_refused("token");
                Err(Status::unauthenticated("unknown bearer token"))
            }
        }
    }
}

/// Whether a stream's token still lets it write for `host` after the tokens file was re-read.
fn still_granted(tokens: &TokenFile, grant: &Grant, host: &str) -> Result<(), Status> {
    let Grant::Token { token, name } = grant else { return Ok(()) };
    match tokens.now().check(token) {
        Some(c) if c.allows(Scope::Agent) && c.speaks_for(host) => Ok(()),
        _ => Err(Status::permission_denied(format!(
            "token {name} was revoked or no longer speaks for host {host:?} (the tokens file changed)"
        ))),
    }
}

type Outbound = Pin<Box<dyn Stream<Item = Result<CollectorMessage, Status>> + Send>>;

#[tonic::async_trait]
impl Ingest for IngestService {
    type StreamStream = Outbound;

    async fn stream(&self, req: Request<Streaming<AgentMessage>>) -> Result<Response<Outbound>, Status> {
        if self.shutdown.is_cancelled() {
            return Err(Status::unavailable(GOING_AWAY));
        }
        // The names of a client certificate the handshake verified (with `[ingest.tls] client_ca`).
        let cert_hosts: Option<Vec<String>> =
            req.peer_certs().and_then(|c| c.first().map(|der| crate::tls::cert_names(der.as_ref())));
        let identity = self.authorize(&req, cert_hosts.is_some())?;
        let peer = req.remote_addr().map(|a| a.to_string()).unwrap_or_else(|| "unknown".into());
        let mut inbound = req.into_inner();
        let hello = match inbound.message().await? {
            Some(AgentMessage { msg: Some(agent_message::Msg::Hello(h)) }) => h,
            _ => return Err(Status::invalid_argument("the first message of a stream must be Hello")),
        };
        if hello.agent_id.is_empty() {
            return Err(Status::invalid_argument("Hello.agent_id is empty"));
        }
        if let Grant::Token { name, .. } = &identity {
            let tokens = self.tokens.now();
            let c = tokens.by_name(name).filter(|c| c.speaks_for(&hello.host));
            if c.is_none() {
                self.metrics.ingest_refused("host");
                let hosts = tokens.by_name(name).map(|c| c.hosts.join(",")).unwrap_or_default();
                tracing::warn!(token = %name, host = %hello.host, %peer, "an agent said it is a host its token does not speak for; refused");
                return Err(Status::permission_denied(format!(
                    "token {name} speaks for hosts {hosts}, not for host {:?}",
                    hello.host
                )));
            }
        }
        if let Some(names) = &cert_hosts {
            if !names.contains(&hello.host) {
                self.metrics.ingest_refused("host");
                tracing::warn!(names = ?names, host = %hello.host, %peer, "an agent's certificate is for other hosts than the one it says it is; refused");
                return Err(Status::permission_denied(format!(
                    "the client certificate is for {}, not for host {:?}",
                    names.join(","),
                    hello.host
                )));
            }
        }
        let (tx, rx) = mpsc::channel::<Result<CollectorMessage, Status>>(256);
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let health = self.health.clone();
        let restarter = self.restarter.clone();
        let shutdown = self.shutdown.clone();
        let tokens = self.tokens.clone();
        let committed = store.committed_seq(&hello.agent_id);
        tracing::info!(agent = %hello.agent_id, host = %hello.host, %peer, committed, "agent connected");
        let log_resume = store
            .log_resume(&hello.agent_id)
            .map_err(|e| Status::unavailable(format!("cannot read the agent's log positions: {e}")))?
            .into_iter()
            .map(|(source, state)| LogResume { source, state })
            .collect();
        let welcome = collector_message::Msg::Welcome(Welcome {
            committed_seq: committed,
            collector_version: env!("CARGO_PKG_VERSION").to_string(),
            log_resume,
        });
        tx.send(Ok(CollectorMessage { msg: Some(welcome) })).await.map_err(|_| Status::cancelled("stream closed"))?;
        metrics.connected_agents.inc();
        tokio::spawn(async move {
            let peer = (hello.agent_id.as_str(), hello.host.as_str());
            // A verified certificate binds the stream to its hosts even where no token is asked for.
            let grant = (&*tokens, &identity, identity.bound() || cert_hosts.is_some());
            let result =
                serve_agent(&store, &metrics, (&health, &restarter, &shutdown), peer, grant, &mut inbound, &tx).await;
            metrics.connected_agents.dec();
            if let Err(status) = &result {
                // The agent learns why its stream ended (and logs it), not just that it did.
                let _ = tx.send(Err(status.clone())).await;
                if status.message() == GOING_AWAY {
                    tracing::info!(agent = %hello.agent_id, "agent told the collector is stopping");
                    return;
                }
            }
            match result {
                Ok(()) => tracing::info!(agent = %hello.agent_id, "agent disconnected"),
                Err(e) => {
                    tracing::warn!(agent = %hello.agent_id, error = %e, "agent stream ended with an error")
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

async fn serve_agent(
    store: &Arc<Store>,
    metrics: &CollectorMetrics,
    (health, restarter, shutdown): (&HealthBoard, &Restarter, &CancellationToken),
    (agent_id, host): (&str, &str),
    (tokens, grant, bound): (&TokenFile, &Grant, bool),
    inbound: &mut Streaming<AgentMessage>,
    tx: &mpsc::Sender<Result<CollectorMessage, Status>>,
) -> Result<(), Status> {
    let mut read = tokens.generation();
    loop {
        // Commands for this host go down the stream as soon as they are decided (registered for the
        // wake-up before looking, so a command queued in between is not missed).
        let queued = restarter.commands.queued.notified();
        tokio::pin!(queued);
        queued.as_mut().enable();
        for c in restarter.commands.take_for(host) {
            let restart = lookout_proto::v1::Restart { container_id: c.container_id.clone(), reason: c.reason.clone() };
            let cmd = lookout_proto::v1::Command {
                id: c.id.clone(),
                action: Some(lookout_proto::v1::command::Action::Restart(restart)),
            };
            if tx.send(Ok(CollectorMessage { msg: Some(collector_message::Msg::Command(cmd)) })).await.is_err() {
                restarter.commands.unsent(&c.id);
                return Ok(());
            }
        }
        let msg = tokio::select! {
            m = inbound.message() => match m? {
                Some(m) => m,
                None => break,
            },
            _ = &mut queued => continue,
            // Only between batches: one being committed is finished and acked first.
            _ = shutdown.cancelled() => return Err(Status::unavailable(GOING_AWAY)),
        };
        match msg.msg {
            Some(agent_message::Msg::Batch(batch)) => {
                let seq = batch.seq;
                if tokens.generation() != read {
                    read = tokens.generation();
                    still_granted(tokens, grant, host).inspect_err(|e| {
                        metrics.ingest_refused("revoked");
                        tracing::warn!(agent = agent_id, host, reason = %e.message(), "an open stream's token no longer lets it in; ended");
                    })?;
                }
                let mut decoded = convert::batch(batch);
                // An agent whose token speaks for its host writes for that host alone: a batch
                // naming another is refused whole, and nothing of it is stored.
                if let Some(other) = decoded.foreign_host(host).filter(|_| bound) {
                    metrics.ingest_refused("host");
                    tracing::warn!(agent = agent_id, host, other = %other, seq, "a batch names a host its agent does not speak for; refused");
                    return Err(Status::permission_denied(format!(
                        "batch {seq} has data for host {other:?}; this stream speaks for host {host:?}"
                    )));
                }
                for (batches, from_ms, to_ms, reason) in &decoded.losses {
                    tracing::warn!(agent = agent_id, host, batches, from_ms, to_ms, reason = %reason, "the agent gave up batches before sending them; the gap is in lookout_agent_lost_batches");
                }
                decoded.record_losses(host);
                let probes = std::mem::take(&mut decoded.probes);
                let events = std::mem::take(&mut decoded.events);
                if decoded.invalid_series > 0 {
                    metrics.invalid_series.inc_by(decoded.invalid_series);
                    tracing::warn!(agent = agent_id, seq, count = decoded.invalid_series, first = %decoded.first_problem, "invalid series skipped");
                }
                let (committer, agent, writer_host) = (store.clone(), agent_id.to_string(), host.to_string());
                let now = now_ms();
                let outcome = tokio::task::spawn_blocking(move || {
                    let logs = LogBatchIn { streams: decoded.logs, resume: decoded.log_resume, window_ns: None };
                    committer.append_batch(&agent, &writer_host, seq, now, decoded.groups, logs)
                })
                .await
                .map_err(|e| Status::internal(format!("store task failed: {e}")))?
                .map_err(|e| {
                    metrics.commit_failed("a batch", &e, store.free_bytes());
                    Status::unavailable("the collector cannot commit right now; retry")
                })?;
                metrics.record_batch(&outcome);
                if !outcome.duplicate {
                    for e in events {
                        match e {
                            convert::EventIn::Gone { container_id } => health.forget(host, &container_id),
                            convert::EventIn::ConfigProblem { labels, message } => {
                                tracing::warn!(agent = agent_id, container = ?labels.get("container"), %message, "probe setting ignored");
                                health.config_problem(&labels, message);
                            }
                        }
                    }
                    let transitions = health.apply(probes);
                    for t in &transitions {
                        tracing::info!(container_id = %t.container_id, probe = %t.probe, from = %t.from, to = %t.to, "health changed");
                    }
                    if !transitions.is_empty() {
                        restarter.changed.notify_one();
                    }
                }
                let ack = CollectorMessage { msg: Some(collector_message::Msg::Ack(Ack { seq })) };
                if tx.send(Ok(ack)).await.is_err() {
                    return Ok(());
                }
            }
            Some(agent_message::Msg::CommandResult(r)) => {
                tracing::info!(agent = agent_id, command = %r.id, ok = r.ok, message = %r.message, "command result");
                restarter.result(host, &r.id, r.ok, &r.message);
            }
            Some(agent_message::Msg::Hello(_)) => return Err(Status::invalid_argument("Hello sent twice")),
            None => return Err(Status::invalid_argument("empty AgentMessage")),
        }
    }
    Ok(())
}
