//! The agent's own metrics (`lookout_agent_*`), registered on a registry passed in.
//! Counting only: nothing here reads or ships anything.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Default)]
pub struct AgentMetrics {
    pub sent_batches: Counter,
    pub acked_batches: Counter,
    pub dropped_batches: Counter,
    pub dropped_ticks: Counter,
    pub log_lines: Counter,
    pub connect_failures: Counter,
    pub read_errors: Counter,
    pub queue_bytes: Gauge,
    pub spool_bytes: Gauge,
    pub spool_oldest_age_seconds: Gauge<f64, AtomicU64>,
    pub spool_dropped_batches: Counter,
    pub spool_torn_records: Counter,
    pub spool_errors: Counter,
    pub connected: Gauge,
    pub containers: Gauge,
    pub tick_seconds: Gauge<f64, AtomicU64>,
}

impl AgentMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = AgentMetrics::default();
        let r = registry.sub_registry_with_prefix("lookout_agent");
        r.register("sent_batches", "Batches sent to a collector (resends included)", m.sent_batches.clone());
        r.register("acked_batches", "Batches the collector acknowledged as committed", m.acked_batches.clone());
        r.register("dropped_batches", "Batches dropped because the send queue was full", m.dropped_batches.clone());
        r.register(
            "dropped_ticks",
            "Metric ticks dropped because shipping was not keeping up",
            m.dropped_ticks.clone(),
        );
        r.register("log_lines", "Log lines read from containers' json-file logs", m.log_lines.clone());
        r.register("connect_failures", "Failed attempts to open a stream to a collector", m.connect_failures.clone());
        r.register(
            "read_errors",
            "Failed reads of cgroup or /proc files (a container gone mid-read)",
            m.read_errors.clone(),
        );
        r.register("queue_bytes", "Bytes of sealed batches waiting for an ack", m.queue_bytes.clone());
        r.register("spool_bytes", "Bytes of batches in the disk spool", m.spool_bytes.clone());
        r.register(
            "spool_oldest_age_seconds",
            "Age of the oldest batch in the disk spool (0 when it is empty)",
            m.spool_oldest_age_seconds.clone(),
        );
        r.register(
            "spool_dropped_batches",
            "Batches dropped with the spool's oldest segment because it reached [spool] max_mib",
            m.spool_dropped_batches.clone(),
        );
        r.register(
            "spool_torn_records",
            "Torn or corrupt spool records cut off when the spool was opened (a crash mid-write)",
            m.spool_torn_records.clone(),
        );
        r.register("spool_errors", "Failed writes or reads of the disk spool", m.spool_errors.clone());
        r.register("connected", "1 while a collector stream is open", m.connected.clone());
        r.register("containers", "Containers being watched", m.containers.clone());
        r.register("tick_seconds", "How long the last metrics tick took to read", m.tick_seconds.clone());
        m
    }
}
