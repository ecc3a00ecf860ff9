//! Shipping: seals what the readers produce into batches (1 MiB or 1 s, whichever first), queues them
//! bounded in memory, and streams them to a collector over one gRPC stream until each is acked.
//! Delivery is at-least-once; the collector's per-agent seq makes it exactly-once in the store.

mod convert;
mod queue;
pub mod spool;

use std::sync::Arc;
use std::time::Duration;

use lookout_proto::v1::{agent_message, collector_message, AgentMessage, CollectorMessage, CommandResult, Hello};
use prost::Message;
use rand::Rng;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::transport::Endpoint;

use crate::discover::ContainerChange;
use crate::logs::reader::{LogAck, LogBatch};
use crate::sampler::Tick;
use crate::telemetry::AgentMetrics;
pub use queue::{OpenBatch, Queue, Sealed};

/// A batch is sealed when it reaches this size...
pub const SEAL_BYTES: usize = 1 << 20;
/// ...or this age, whichever comes first.
pub const SEAL_AGE: Duration = Duration::from_secs(1);
/// Batches sent but not yet acked on one stream, at most.
const WINDOW: u64 = 32;
/// How long a stopping agent waits for the collector to ack what it has sealed.
const DRAIN: Duration = Duration::from_secs(5);

/// What the readers hand to shipping.
#[derive(Debug)]
pub enum Outgoing {
    Tick(Arc<Tick>),
    Change(ContainerChange),
    Logs(LogBatch),
    Probe(crate::probe::ProbeEvent),
}

#[derive(Clone, Debug)]
pub struct ShipConfig {
    pub agent_id: String,
    pub host: String,
    pub collectors: Vec<String>,
    pub token: Option<String>,
    pub tls: Option<ClientTls>,
    pub include_labels: Vec<String>,
    pub max_queue_bytes: usize,
    /// The disk spool's directory and bound; `None`: memory only.
    pub spool: Option<(std::path::PathBuf, u64)>,
    /// Carries out the collector's commands (restarts); without it they are refused with a reason.
    pub docker: Option<bollard::Docker>,
}

/// `[tls]` in agent.toml: the CA that signed the collector's certificate, the agent's own
/// certificate and key (for a collector that asks for one), and the name to expect in the
/// collector's certificate. The files are read at every connection, so rotated files are used at
/// the next one.
#[derive(Clone, Debug, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    pub ca: std::path::PathBuf,
    #[serde(default)]
    pub cert: Option<std::path::PathBuf>,
    #[serde(default)]
    pub key: Option<std::path::PathBuf>,
    /// The name the collector's certificate must hold; the collector URL's host when absent.
    #[serde(default)]
    pub server_name: Option<String>,
}

impl ClientTls {
    fn tonic(&self) -> anyhow::Result<tonic::transport::ClientTlsConfig> {
        use anyhow::Context;
        let read = |p: &std::path::Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        let mut c = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(read(&self.ca)?));
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            c = c.identity(tonic::transport::Identity::from_pem(read(cert)?, read(key)?));
        }
        if let Some(name) = &self.server_name {
            c = c.domain_name(name.clone());
        }
        Ok(c)
    }
}

/// Where shipping tells the log reader what the collector has: acknowledged log batches, and the
/// log positions each Welcome carries.
pub struct LogLinks {
    pub acks: std::sync::mpsc::Sender<LogAck>,
    pub resume: std::sync::mpsc::Sender<Vec<(String, Vec<u8>)>>,
}

/// Starts the batcher and the connection; returns the sender the readers use and the queue (for tests
/// and self-metrics). `logs` is linked before the first connection, so no Welcome goes unheard.
pub fn spawn(
    cfg: ShipConfig,
    logs: Option<LogLinks>,
    metrics: AgentMetrics,
    shutdown: CancellationToken,
) -> anyhow::Result<(mpsc::Sender<Outgoing>, Arc<Queue>)> {
    use anyhow::Context;
    let (tx, rx) = mpsc::channel(64);
    let queue = Arc::new(match &cfg.spool {
        Some((dir, bytes)) => Queue::with_spool(cfg.max_queue_bytes, dir, *bytes, metrics.clone())
            .with_context(|| format!("opening the spool in {}", dir.display()))?,
        None => Queue::new(cfg.max_queue_bytes, metrics.clone()),
    });
    if let Some(l) = logs {
        queue.report_log_acks(l.acks);
        queue.report_log_resume(l.resume);
    }
    tokio::spawn(batcher(cfg.clone(), rx, queue.clone(), shutdown.clone()));
    tokio::spawn(connection(cfg, queue.clone(), metrics, shutdown));
    Ok((tx, queue))
}

async fn batcher(cfg: ShipConfig, mut rx: mpsc::Receiver<Outgoing>, queue: Arc<Queue>, shutdown: CancellationToken) {
    let mut open = OpenBatch::default();
    let mut logs: Option<LogAck> = None;
    let mut bytes = 0usize;
    let mut opened: Option<Instant> = None;
    let mut urgent = false;
    loop {
        let deadline = opened.map(|t| t + SEAL_AGE);
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else { break };
                let rest = &mut open.rest;
                let events_before = rest.container_events.len();
                let streams_before = rest.log_streams.len();
                let probes_before = rest.probe_results.len();
                match msg {
                    Outgoing::Tick(t) => convert::tick_groups(&t, |g| bytes += open.add_group(&g)),
                    Outgoing::Change(c) => rest.container_events.push(convert::change_event(&cfg.host, &cfg.include_labels, &c)),
                    Outgoing::Logs(b) => {
                        convert::log_streams(b.streams, &mut rest.log_streams);
                        logs.get_or_insert_with(LogAck::default).merge(b.ack);
                    }
                    Outgoing::Probe(crate::probe::ProbeEvent::Run(r)) => {
                        // A change of health, and the first failure of a streak, go out at once: the
                        // collector may act on them (and weighs a service's failing containers together).
                        urgent |= r.previous.is_some() || (!r.success && r.failing_streak == 1);
                        rest.probe_results.push(convert::probe_result(r));
                    }
                    Outgoing::Probe(crate::probe::ProbeEvent::ConfigProblem { container, message, time_ms }) => {
                        rest.container_events.push(convert::config_event(&cfg.host, &cfg.include_labels, &container, message, time_ms));
                    }
                }
                let rest = &open.rest;
                bytes += rest.container_events[events_before..].iter().map(|e| e.encoded_len() + 4).sum::<usize>()
                    + rest.log_streams[streams_before..].iter().map(|e| e.encoded_len() + 4).sum::<usize>()
                    + rest.probe_results[probes_before..].iter().map(|e| e.encoded_len() + 4).sum::<usize>();
                opened.get_or_insert_with(Instant::now);
                if bytes >= SEAL_BYTES || std::mem::take(&mut urgent) {
                    seal(&queue, &mut open, &mut logs, &mut bytes, &mut opened);
                }
            }
            _ = async { tokio::time::sleep_until(deadline.expect("guarded by the condition")).await }, if deadline.is_some() => {
                seal(&queue, &mut open, &mut logs, &mut bytes, &mut opened);
            }
            _ = shutdown.cancelled() => break,
        }
    }
    if bytes > 0 || logs.is_some() {
        seal(&queue, &mut open, &mut logs, &mut bytes, &mut opened);
    }
    queue.close();
}

fn seal(
    queue: &Queue,
    open: &mut OpenBatch,
    logs: &mut Option<LogAck>,
    bytes: &mut usize,
    opened: &mut Option<Instant>,
) {
    if let Some(ack) = logs.as_ref() {
        // Committed with the lines, so a restarted agent learns from the collector where it stands.
        for (source, resume) in &ack.checkpoints {
            let state = serde_json::to_vec(resume).expect("checkpoints serialize");
            open.rest.log_resume.push(lookout_proto::v1::LogResume { source: source.clone(), state });
        }
    }
    // What was given up since the last batch travels with this one, so the collector shows the gap.
    open.rest.losses = queue.take_losses();
    let batch = std::mem::take(open);
    queue.push(batch, *bytes, logs.take());
    *bytes = 0;
    *opened = None;
}

/// What the stream carries: `AgentMessage`s, with batches as the queue holds them, already encoded
/// (a batch of 100 containers' tick is 4,000 series; sending one is a copy of its bytes, not of
/// its series). Encodes exactly as the `AgentMessage` it stands for.
#[derive(Debug)]
enum Outbound {
    Message(AgentMessage),
    Batch(Sealed),
}

/// `AgentMessage.batch`'s field number (proto/lookout/v1/ingest.proto).
const BATCH_FIELD: u32 = 2;

impl Message for Outbound {
    fn encode_raw(&self, buf: &mut impl prost::bytes::BufMut) {
        match self {
            Outbound::Message(m) => m.encode_raw(buf),
            Outbound::Batch(b) => {
                prost::encoding::encode_key(BATCH_FIELD, prost::encoding::WireType::LengthDelimited, buf);
                prost::encoding::encode_varint(b.encoded_len() as u64, buf);
                b.encode_raw(buf);
            }
        }
    }

    /// Never decoded: the agent only sends these.
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl prost::bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        match self {
            Outbound::Message(m) => m.encoded_len(),
            Outbound::Batch(b) => {
                let len = b.encoded_len();
                prost::encoding::key_len(BATCH_FIELD) + prost::encoding::encoded_len_varint(len as u64) + len
            }
        }
    }

    fn clear(&mut self) {
        *self = Outbound::Message(AgentMessage::default());
    }
}

fn message(msg: agent_message::Msg) -> Outbound {
    Outbound::Message(AgentMessage { msg: Some(msg) })
}

/// How a stream ended.
enum End {
    Shutdown,
    Closed,
}

async fn connection(cfg: ShipConfig, queue: Arc<Queue>, metrics: AgentMetrics, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(200);
    let mut attempt = 0usize;
    let mut failures = 0u64;
    // What was last said about each collector: a cause is said once, not once per retry, and said
    // again when it changes or after the collector was reached.
    let mut told: std::collections::HashMap<String, &'static str> = Default::default();
    loop {
        let url = &cfg.collectors[attempt % cfg.collectors.len()];
        let result = session(&cfg, url, &queue, &metrics, &shutdown).await;
        metrics.connected.set(0);
        match result {
            Ok((End::Shutdown, _)) => return,
            Err((e, true)) if format!("{e:#}").contains(lookout_proto::GOING_AWAY) => {
                tracing::info!(collector = %url, queued = queue.len(), "the collector is stopping; reconnecting with backoff");
                backoff = Duration::from_millis(200);
                failures = 0;
            }
            Ok((End::Closed, welcomed)) | Err((_, welcomed)) if welcomed => {
                // It worked for a while: retry soon, same collector.
                backoff = Duration::from_millis(200);
                failures = 0;
                told.remove(url);
            }
            Ok((End::Closed, _)) => attempt += 1,
            Err((e, _)) => {
                failures += 1;
                metrics.connect_failures.inc();
                let error = format!("{e:#}");
                let cause = why_not(&error);
                if told.insert(url.clone(), cause) != Some(cause) {
                    tracing::warn!(collector = %url, cause, %error, queued = queue.len(), "cannot reach the collector; batches wait in the queue (said once until the cause changes)");
                } else {
                    tracing::debug!(collector = %url, cause, %error, failures, "still cannot reach the collector");
                }
                attempt += 1;
            }
        }
        // Full jitter keeps a fleet of agents from reconnecting in lockstep after a collector restart.
        let sleep = backoff.mul_f64(rand::rng().random_range(0.5..1.0));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(sleep) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Why a connection failed, in words an operator can act on; rustls's and tonic's own words follow
/// in the log line.
fn why_not(error: &str) -> &'static str {
    let has = |needles: &[&str]| needles.iter().any(|n| error.contains(n));
    // An alert is the collector refusing this agent; the other TLS errors are this agent refusing
    // the collector's certificate.
    if has(&["CertificateRequired", "certificate required"]) {
        "the collector asks for a client certificate ([tls] cert and key)"
    } else if error.contains("fatal alert") && has(&["UnknownCA", "UnknownCa", "BadCertificate", "CertificateExpired"])
    {
        "the collector refused this agent's certificate (not signed by its client_ca, or expired)"
    } else if has(&["UnknownIssuer", "unknown issuer"]) {
        "the collector's certificate is not signed by the CA in [tls] ca (unknown CA)"
    } else if has(&["NotValidForName", "not valid for name"]) {
        "the collector's certificate is not for the name asked for (name mismatch: see [tls] server_name)"
    } else if has(&["Expired", "expired", "NotValidYet"]) {
        "the collector's certificate has expired or is not valid yet"
    } else if has(&["InvalidContentType", "corrupt message", "HTTP/1", "invalid HTTP version"]) {
        "the collector does not speak TLS on that port, or speaks TLS where plain was asked for"
    } else if has(&["Unauthenticated", "unauthenticated", "bearer token"]) {
        "the collector does not know this agent's token"
    } else if has(&["PermissionDenied", "permission denied", "speaks for"]) {
        "the collector refused this agent's host name for its credential"
    } else if has(&["Connection refused", "connection refused"]) {
        "nothing listens at that address (connection refused)"
    } else if has(&["timed out", "deadline has elapsed", "Timeout"]) {
        "the collector did not answer in time (network down or filtered?)"
    } else {
        "the connection failed"
    }
}

/// One stream: Hello, Welcome, then batches out and acks in. Returns whether the collector welcomed us.
async fn session(
    cfg: &ShipConfig,
    url: &str,
    queue: &Queue,
    metrics: &AgentMetrics,
    shutdown: &CancellationToken,
) -> Result<(End, bool), (anyhow::Error, bool)> {
    let fail = |e: anyhow::Error| (e, false);
    let mut endpoint = Endpoint::from_shared(url.to_string()).map_err(|e| fail(e.into()))?;
    if let Some(tls) = &cfg.tls {
        endpoint = endpoint.tls_config(tls.tonic().map_err(fail)?).map_err(|e| fail(e.into()))?;
    }
    let channel = endpoint
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| fail(e.into()))?;
    let auth = cfg
        .token
        .as_ref()
        .map(|t| format!("Bearer {t}").parse::<tonic::metadata::MetadataValue<_>>())
        .transpose()
        .map_err(|e| fail(anyhow::anyhow!("the token is not a valid header value: {e}")))?;
    let mut grpc = tonic::client::Grpc::new(channel)
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);

    let (tx, rx) = mpsc::channel::<Outbound>(WINDOW as usize);
    let hello = Hello {
        agent_id: cfg.agent_id.clone(),
        host: cfg.host.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        resume_from_seq: queue.oldest_unacked(),
    };
    tx.send(message(agent_message::Msg::Hello(hello))).await.map_err(|e| fail(e.into()))?;
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(v) = auth {
        request.metadata_mut().insert("authorization", v);
    }
    grpc.ready().await.map_err(|e| fail(e.into()))?;
    // The generated `IngestClient::stream`, but sending `Outbound` (see there).
    let codec = tonic_prost::ProstCodec::<Outbound, CollectorMessage>::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/lookout.v1.Ingest/Stream");
    let mut inbound = grpc.streaming(request, path, codec).await.map_err(|e| fail(e.into()))?.into_inner();
    let (committed, welcome_resume) = match inbound.message().await.map_err(|e| fail(e.into()))? {
        Some(m) => match m.msg {
            Some(collector_message::Msg::Welcome(w)) => {
                (w.committed_seq, w.log_resume.into_iter().map(|r| (r.source, r.state)).collect::<Vec<_>>())
            }
            _ => return Err(fail(anyhow::anyhow!("the collector did not answer Hello with Welcome"))),
        },
        None => return Err(fail(anyhow::anyhow!("the collector closed the stream after Hello"))),
    };
    queue.committed(committed);
    queue.welcomed(welcome_resume);
    metrics.connected.set(1);
    tracing::info!(collector = %url, committed, queued = queue.len(), "connected to the collector");
    let welcomed = |e: anyhow::Error| (e, true);

    let mut last_sent = 0u64;
    let mut acked = committed;
    // On shutdown, keep the stream open until what was sealed is acked, for at most DRAIN.
    let mut draining: Option<Instant> = None;
    loop {
        while last_sent.saturating_sub(acked) < WINDOW {
            let Some(batch) = queue.next_to_send(last_sent) else { break };
            last_sent = batch.seq;
            metrics.sent_batches.inc();
            if tx.send(Outbound::Batch(batch)).await.is_err() {
                return Ok((End::Closed, true));
            }
        }
        if let Some(deadline) = draining {
            if (queue.is_closed() && queue.is_empty()) || Instant::now() >= deadline {
                return Ok((End::Shutdown, true));
            }
        }
        tokio::select! {
            msg = inbound.message() => match msg.map_err(|e| welcomed(e.into()))? {
                None => return Ok((End::Closed, true)),
                Some(m) => match m.msg {
                    Some(collector_message::Msg::Ack(a)) => {
                        acked = acked.max(a.seq);
                        queue.committed(a.seq);
                    }
                    Some(collector_message::Msg::Command(c)) => {
                        // Carried out beside the stream: a slow restart must not hold up acks.
                        let (tx, docker) = (tx.clone(), cfg.docker.clone());
                        tokio::spawn(async move {
                            let result = carry_out(docker.as_ref(), c).await;
                            let _ = tx.send(message(agent_message::Msg::CommandResult(result))).await;
                        });
                    }
                    _ => {}
                },
            },
            _ = queue.ready.notified() => {}
            _ = shutdown.cancelled(), if draining.is_none() => draining = Some(Instant::now() + DRAIN),
            _ = tokio::time::sleep_until(draining.unwrap_or_else(Instant::now)), if draining.is_some() => {}
        }
    }
}

/// Carries out one command from the collector through the Docker API; the answer says what Docker said.
async fn carry_out(docker: Option<&bollard::Docker>, c: lookout_proto::v1::Command) -> CommandResult {
    use lookout_proto::v1::command::Action;
    let fail = |id: String, message: String| CommandResult { id, ok: false, message };
    let Some(docker) = docker else { return fail(c.id, "this agent has no Docker connection".into()) };
    match c.action {
        Some(Action::Restart(r)) => {
            tracing::info!(container = %r.container_id, reason = %r.reason, command = %c.id, "restarting a container for the collector");
            // Docker waits the container's own stop timeout (10 s unless `--stop-timeout` says otherwise).
            match docker.restart_container(&r.container_id, None).await {
                Ok(()) => CommandResult { id: c.id, ok: true, message: format!("restarted {}", r.container_id) },
                Err(e) => fail(c.id, format!("Docker refused the restart of {}: {e}", r.container_id)),
            }
        }
        None => fail(c.id, "a command without an action".into()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_failed_connection_is_named_by_what_an_operator_can_fix() {
        let e = "transport error: invalid peer certificate: UnknownIssuer";
        assert!(super::why_not(e).contains("unknown CA"));
        assert!(super::why_not("invalid peer certificate: NotValidForName").contains("name mismatch"));
        assert!(super::why_not("received fatal alert: CertificateRequired").contains("client certificate"));
        assert!(super::why_not("received fatal alert: CertificateExpired").contains("refused this agent's"));
        assert!(super::why_not("invalid peer certificate: Expired").contains("collector's certificate has expired"));
        assert!(super::why_not("tcp connect error: Connection refused (os error 111)").contains("nothing listens"));
    }

    use super::*;

    #[test]
    fn an_encoded_batch_goes_out_as_the_agent_message_it_stands_for() {
        let q = Queue::new(1 << 20, crate::telemetry::AgentMetrics::register(&mut Default::default()));
        let event = lookout_proto::v1::ContainerEvent { container_id: "c1".into(), ..Default::default() };
        q.committed(299);
        q.push(lookout_proto::v1::Batch { container_events: vec![event.clone()], ..Default::default() }, 10, None);
        let sealed = q.next_to_send(0).unwrap();
        let out = Outbound::Batch(sealed.clone());
        let bytes = out.encode_to_vec();
        assert_eq!(bytes.len(), out.encoded_len());
        let msg = AgentMessage::decode(&bytes[..]).unwrap();
        let Some(agent_message::Msg::Batch(b)) = msg.msg else { panic!("{msg:?}") };
        assert_eq!((b.seq, b.container_events), (300, vec![event]));
        assert_eq!(sealed.decode().seq, 300);
        let hello = message(agent_message::Msg::Hello(Hello { agent_id: "a".into(), ..Default::default() }));
        let m = AgentMessage::decode(&hello.encode_to_vec()[..]).unwrap();
        assert!(matches!(m.msg, Some(agent_message::Msg::Hello(h)) if h.agent_id == "a"));
    }

    #[tokio::test]
    async fn a_restart_docker_refuses_is_answered_with_dockers_message() {
        let docker = bollard::Docker::connect_with_unix("/var/run/docker.sock", 30, bollard::API_DEFAULT_VERSION)
            .expect("a Docker client (apt-get install docker.io)");
        let gone = "0".repeat(64);
        let cmd = lookout_proto::v1::Command {
            id: "restart-1".into(),
            action: Some(lookout_proto::v1::command::Action::Restart(lookout_proto::v1::Restart {
                container_id: gone.clone(),
                reason: "test".into(),
            })),
        };
        let r = carry_out(Some(&docker), cmd).await;
        assert!(!r.ok, "{r:?}");
        assert!(
            r.message.contains("Docker refused the restart") && r.message.contains("No such container"),
            "{}",
            r.message
        );
        let none = carry_out(None, lookout_proto::v1::Command { id: "x".into(), action: None }).await;
        assert_eq!(none.message, "this agent has no Docker connection");
    }
}
