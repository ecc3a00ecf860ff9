//! lookout's wire protocols: the generated protobuf and tonic types of `lookout.v1`, and the messages
//! of the protocols it speaks with others: Prometheus remote-write 1.0, Loki push, OTLP.
//! Depends on nothing of ours; only the agent's `ship` and the collector's `ingest` may use it.

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("lookout.v1");
}

/// Prometheus remote-write 1.0 (`prompb`): what the collector's `/api/v1/write` receives.
#[allow(clippy::all, missing_docs)]
pub mod prometheus {
    include!(concat!(env!("OUT_DIR"), "/prometheus.rs"));
}

/// Loki's push API (`logproto.PushRequest`): what Loki clients send to `/loki/api/v1/push`.
#[allow(clippy::all, missing_docs)]
pub mod loki {
    include!(concat!(env!("OUT_DIR"), "/loki.rs"));
}

/// OpenTelemetry's OTLP metrics and logs export requests, as `/v1/metrics` and `/v1/logs` receive them.
#[allow(clippy::all, missing_docs)]
pub mod otlp {
    include!(concat!(env!("OUT_DIR"), "/otlp.rs"));
}

/// The `UNAVAILABLE` message a collector ends an agent's stream with when it stops: the agent
/// reconnects with backoff and resends what it has no ack for; it is no network fault.
pub const GOING_AWAY: &str = "the collector is stopping; reconnect later";
