//! The bounded in-memory queue of sealed batches waiting for the collector's ack.
//! Bounded by bytes: when full, the oldest batch is dropped and counted, never silently.

use std::collections::VecDeque;
use std::sync::Mutex;

use lookout_proto::v1::Batch;
use tokio::sync::Notify;

use crate::telemetry::AgentMetrics;

struct Entry {
    /// Assigned when first sent, so numbers are never skipped by drops before sending.
    seq: Option<u64>,
    batch: Batch,
    bytes: usize,
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
}

impl Queue {
    pub fn new(max_bytes: usize, metrics: AgentMetrics) -> Self {
        Queue {
            inner: Mutex::new(Inner { entries: VecDeque::new(), bytes: 0, next_seq: 1, closed: false }),
            max_bytes,
            ready: Notify::new(),
            metrics,
        }
    }

    pub fn push(&self, batch: Batch, bytes: usize) {
        let mut q = self.inner.lock().expect("queue lock poisoned");
        while q.bytes + bytes > self.max_bytes {
            let Some(old) = q.entries.pop_front() else {
                break;
            };
            q.bytes -= old.bytes;
            self.metrics.dropped_batches.inc();
            tracing::warn!(dropped_seq = ?old.seq, "send queue full: dropped the oldest batch");
        }
        q.bytes += bytes;
        q.entries.push_back(Entry { seq: None, batch, bytes });
        self.metrics.queue_bytes.set(q.bytes as i64);
        drop(q);
        self.ready.notify_one();
    }

    /// The collector has committed everything up to `seq`: forget it, and never number at or below it.
    pub fn committed(&self, seq: u64) {
        let mut q = self.inner.lock().expect("queue lock poisoned");
        while q.entries.front().is_some_and(|e| e.seq.is_some_and(|s| s <= seq)) {
            let e = q.entries.pop_front().expect("front exists");
            q.bytes -= e.bytes;
            self.metrics.acked_batches.inc();
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
        q.push(Batch::default(), 10);
        q.push(Batch::default(), 10);
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
        q.push(Batch::default(), 10);
        assert_eq!(q.next_to_send(0).unwrap().seq, 42);
    }

    #[test]
    fn full_queue_drops_the_oldest_and_counts_it() {
        let q = queue(25);
        for _ in 0..3 {
            q.push(Batch::default(), 10);
        }
        assert_eq!(q.len(), 2);
        assert_eq!(q.metrics.dropped_batches.get(), 1);
    }
}
