//! The bounded in-memory queue of sealed batches waiting for the collector's ack.
//! Bounded by bytes: when full, the oldest batch is dropped and counted, never silently.

use std::collections::VecDeque;
use std::sync::Mutex;

use lookout_proto::v1::Batch;
use tokio::sync::Notify;

use crate::logs::reader::LogAck;
use crate::telemetry::AgentMetrics;

struct Entry {
    /// Assigned when first sent, so numbers are never skipped by drops before sending.
    seq: Option<u64>,
    batch: Batch,
    bytes: usize,
    /// What the batch's log lines make safe once acknowledged. Such a batch is never dropped: its
    /// lines are bounded by the log reader's in-flight budget instead.
    logs: Option<LogAck>,
}

struct Inner {
    entries: VecDeque<Entry>,
    bytes: usize,
    next_seq: u64,
    /// Nothing more will be pushed (the agent is stopping).
    closed: bool,
}

pub struct Queue {
    inner: Mutex<Inner>,
    max_bytes: usize,
    pub ready: Notify,
    metrics: AgentMetrics,
    /// Where acknowledged log batches are reported (the log reader), if logs are read.
    log_acks: Mutex<Option<std::sync::mpsc::Sender<LogAck>>>,
    /// Where the log positions a collector's Welcome carries are reported.
    log_resume: Mutex<Option<std::sync::mpsc::Sender<Vec<(String, Vec<u8>)>>>>,
}

impl Queue {
    pub fn new(max_bytes: usize, metrics: AgentMetrics) -> Self {
        Queue {
            inner: Mutex::new(Inner { entries: VecDeque::new(), bytes: 0, next_seq: 1, closed: false }),
            max_bytes,
            ready: Notify::new(),
            metrics,
            log_acks: Mutex::new(None),
            log_resume: Mutex::new(None),
        }
    }

    /// The log positions of every Welcome will be reported to `tx`.
    pub fn report_log_resume(&self, tx: std::sync::mpsc::Sender<Vec<(String, Vec<u8>)>>) {
        *self.log_resume.lock().expect("queue lock poisoned") = Some(tx);
    }

    /// A collector welcomed us with these log positions.
    pub fn welcomed(&self, resume: Vec<(String, Vec<u8>)>) {
        if let Some(tx) = self.log_resume.lock().expect("queue lock poisoned").as_ref() {
            let _ = tx.send(resume);
        }
    }

    /// Acknowledged log batches will be reported to `tx`.
    pub fn report_log_acks(&self, tx: std::sync::mpsc::Sender<LogAck>) {
        *self.log_acks.lock().expect("queue lock poisoned") = Some(tx);
    }

    pub fn push(&self, batch: Batch, bytes: usize, logs: Option<LogAck>) {
        let mut q = self.inner.lock().expect("queue lock poisoned");
        while q.bytes + bytes > self.max_bytes {
            // The oldest batch without log lines goes; lines are never dropped while on disk.
            let Some(i) = q.entries.iter().position(|e| e.logs.is_none()) else {
                break;
            };
            let old = q.entries.remove(i).expect("index from position");
            q.bytes -= old.bytes;
            self.metrics.dropped_batches.inc();
            tracing::warn!(dropped_seq = ?old.seq, "send queue full: dropped the oldest batch of metrics");
        }
        q.bytes += bytes;
        q.entries.push_back(Entry { seq: None, batch, bytes, logs });
        self.metrics.queue_bytes.set(q.bytes as i64);
        drop(q);
        self.ready.notify_one();
    }

    /// The collector has committed everything up to `seq`: forget it, and never number at or below it.
    pub fn committed(&self, seq: u64) {
        let mut q = self.inner.lock().expect("queue lock poisoned");
        let mut acked_logs: Vec<LogAck> = Vec::new();
        while q.entries.front().is_some_and(|e| e.seq.is_some_and(|s| s <= seq)) {
            let e = q.entries.pop_front().expect("front exists");
            q.bytes -= e.bytes;
            self.metrics.acked_batches.inc();
            acked_logs.extend(e.logs);
        }
        if !acked_logs.is_empty() {
            if let Some(tx) = self.log_acks.lock().expect("queue lock poisoned").as_ref() {
                for a in acked_logs {
                    let _ = tx.send(a);
                }
            }
        }
        q.next_seq = q.next_seq.max(seq + 1);
        self.metrics.queue_bytes.set(q.bytes as i64);
    }

    /// The first batch after `after` (a seq already sent on this connection, 0 for none), numbering it
    /// if it has no seq yet. Returns a copy to send.
    pub fn next_to_send(&self, after: u64) -> Option<Batch> {
        let mut q = self.inner.lock().expect("queue lock poisoned");
        let mut next_seq = q.next_seq;
        let entry = q.entries.iter_mut().find(|e| e.seq.is_none_or(|s| s > after))?;
        let seq = *entry.seq.get_or_insert_with(|| {
            next_seq += 1;
            next_seq - 1
        });
        let mut batch = entry.batch.clone();
        batch.seq = seq;
        q.next_seq = next_seq;
        Some(batch)
    }

    /// The lowest seq still waiting for an ack (0 when none is numbered).
    pub fn oldest_unacked(&self) -> u64 {
        let q = self.inner.lock().expect("queue lock poisoned");
        q.entries.front().and_then(|e| e.seq).unwrap_or(0)
    }

    /// Says that nothing more will be pushed, so a stopping connection knows when it is done.
    pub fn close(&self) {
        self.inner.lock().expect("queue lock poisoned").closed = true;
        self.ready.notify_one();
    }

    pub fn is_closed(&self) -> bool {
        self.inner.lock().expect("queue lock poisoned").closed
    }

    pub fn len(&self) -> usize {
        self.inner.lock().expect("queue lock poisoned").entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    fn queue(max: usize) -> Queue {
        Queue::new(max, AgentMetrics::register(&mut Registry::default()))
    }

    #[test]
    fn batches_are_numbered_when_first_sent_and_resent_with_the_same_seq() {
        let q = queue(1000);
        q.push(Batch::default(), 10, None);
        q.push(Batch::default(), 10, None);
        assert_eq!(q.next_to_send(0).unwrap().seq, 1);
        assert_eq!(q.next_to_send(1).unwrap().seq, 2);
        assert!(q.next_to_send(2).is_none());
        // A new connection starts over and resends both with their numbers.
        assert_eq!(q.next_to_send(0).unwrap().seq, 1);
        q.committed(1);
        assert_eq!(q.next_to_send(0).unwrap().seq, 2);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn a_collector_ahead_of_us_moves_numbering_past_its_seq() {
        let q = queue(1000);
        q.committed(41);
        q.push(Batch::default(), 10, None);
        assert_eq!(q.next_to_send(0).unwrap().seq, 42);
    }

    #[test]
    fn batches_with_log_lines_are_never_dropped_and_their_acks_reach_the_reader() {
        let q = queue(25);
        let (tx, rx) = std::sync::mpsc::channel();
        q.report_log_acks(tx);
        q.push(Batch::default(), 10, Some(LogAck { bytes: 7, ..LogAck::default() }));
        q.push(Batch::default(), 10, None);
        q.push(Batch::default(), 10, None);
        // Full: the batch of metrics went, the batch with lines stayed.
        assert_eq!(q.len(), 2);
        assert_eq!(q.metrics.dropped_batches.get(), 1);
        assert_eq!(q.next_to_send(0).unwrap().seq, 1);
        q.committed(1);
        assert_eq!(rx.try_recv().unwrap().bytes, 7);
    }

    #[test]
    fn full_queue_drops_the_oldest_and_counts_it() {
        let q = queue(25);
        for _ in 0..3 {
            q.push(Batch::default(), 10, None);
        }
        assert_eq!(q.len(), 2);
        assert_eq!(q.metrics.dropped_batches.get(), 1);
    }
}
