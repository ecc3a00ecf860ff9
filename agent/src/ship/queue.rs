//! The queue of sealed batches waiting for the collector's ack: in memory up to its bound, and every
//! batch also in the disk spool (when there is one), so a killed agent or a long outage loses nothing
//! sealed. Past the memory bound, batches live on disk only; past the spool's bound, the oldest
//! segment goes, counted and reported to the collector, never silently.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;

use lookout_proto::v1::{Batch, Loss, SeriesGroup};
use prost::bytes::{BufMut, Bytes};
use prost::Message;
use tokio::sync::Notify;

use super::spool::{Lost, Record, Spool};
use crate::logs::reader::LogAck;
use crate::telemetry::AgentMetrics;

struct Entry {
    /// Given when sealed, kept in the spool: a batch is resent with the same number after a
    /// reconnect and after a restart, so the collector commits it once.
    seq: u64,
    /// The batch without its seq, encoded once when sealed; `None` once it is on disk only (the
    /// memory bound).
    batch: Option<Bytes>,
    /// Bytes it holds in memory.
    bytes: usize,
    /// What the batch's log lines make safe once acknowledged. Such a batch stays in memory (its
    /// lines are not spooled: after a restart the log files are read again from the collector's
    /// checkpoint), bounded by the log reader's in-flight budget.
    logs: Option<LogAck>,
    record: Option<Record>,
    first_ms: i64,
    last_ms: i64,
}

struct Inner {
    entries: VecDeque<Entry>,
    bytes: usize,
    next_seq: u64,
    /// Nothing more will be pushed (the agent is stopping).
    closed: bool,
    spool: Option<Spool>,
    /// Given up and not yet told to the collector.
    lost: Vec<Loss>,
    /// A spool failure was logged (said once until the spool works again).
    spool_failing: bool,
}

pub struct Queue {
    inner: Mutex<Inner>,
    max_bytes: usize,
    pub ready: Notify,
    metrics: AgentMetrics,
    /// Where acknowledged log batches are reported (the log reader), if logs are read.
    log_acks: Mutex<Option<std::sync::mpsc::Sender<LogAck>>>,
    /// Where the log positions a collector's Welcome carries are reported.
    log_resume: Mutex<Option<std::sync::mpsc::Sender<LogResumes>>>,
}

/// The log positions of a Welcome: each source and its reader's saved state.
pub type LogResumes = Vec<(String, Vec<u8>)>;

/// A sealed batch as the stream sends it: its number, and the protobuf encoding of the rest of it.
/// The queue holds batches encoded (a third of the memory of the decoded form for a tick of 100
/// containers, and no copy of every series at each send).
#[derive(Clone, Debug)]
pub struct Sealed {
    pub seq: u64,
    /// `Batch` encoded without its seq, which a renumbering may still change.
    body: Bytes,
}

impl Sealed {
    /// The batch itself, as the collector will decode it.
    pub fn decode(&self) -> Batch {
        let mut b = Batch::decode(&self.body[..]).expect("the queue encoded it");
        b.seq = self.seq;
        b
    }

    /// The length of the encoded `Batch`, seq included.
    pub fn encoded_len(&self) -> usize {
        prost::encoding::uint64::encoded_len(1, &self.seq) + self.body.len()
    }

    /// Writes the encoded `Batch`: its seq field, then the rest (protobuf merges a message's fields in
    /// any order, so this decodes as one `Batch`).
    pub fn encode_raw(&self, buf: &mut impl BufMut) {
        prost::encoding::uint64::encode(1, &self.seq, buf);
        buf.put_slice(&self.body);
    }
}

/// A batch being filled: its series encoded as they come (a tick of 100 containers is 1 MB as
/// messages, 350 KB encoded), everything else as messages in `rest`.
#[derive(Debug, Default)]
pub struct OpenBatch {
    pub rest: Batch,
    /// `Batch.groups`, encoded (field, length and group, one after another).
    groups: Vec<u8>,
    /// The time those series cover, in ms.
    span: Option<(i64, i64)>,
}

impl OpenBatch {
    /// Adds one group of series; returns the bytes it adds.
    pub fn add_group(&mut self, g: &SeriesGroup) -> usize {
        let before = self.groups.len();
        prost::encoding::message::encode(GROUPS_FIELD, g, &mut self.groups);
        let times = g.series.iter().flat_map(|s| s.timestamps_ms.iter().copied());
        self.span = times.fold(self.span, |acc, t| Some(acc.map_or((t, t), |(lo, hi)| (lo.min(t), hi.max(t)))));
        self.groups.len() - before
    }
}

impl From<Batch> for OpenBatch {
    fn from(rest: Batch) -> Self {
        OpenBatch { rest, ..Default::default() }
    }
}

/// `Batch.groups`'s field number (proto/lookout/v1/ingest.proto).
const GROUPS_FIELD: u32 = 6;

/// The time a batch's readings cover (its samples, events and probe results), in ms.
fn span(b: &Batch) -> Option<(i64, i64)> {
    let samples =
        b.groups.iter().flat_map(|g| &g.series).chain(&b.series).flat_map(|s| s.timestamps_ms.iter().copied());
    let others = b.probe_results.iter().map(|p| p.time_ms).chain(b.container_events.iter().map(|e| e.time_ms));
    samples.chain(others).fold(None, |acc, t| match acc {
        None => Some((t, t)),
        Some((lo, hi)) => Some((lo.min(t), hi.max(t))),
    })
}

impl Queue {
    /// A queue in memory only: past `max_bytes` the oldest batch of metrics is dropped.
    pub fn new(max_bytes: usize, metrics: AgentMetrics) -> Self {
        Queue {
            inner: Mutex::new(Inner {
                entries: VecDeque::new(),
                bytes: 0,
                next_seq: 1,
                closed: false,
                spool: None,
                lost: Vec::new(),
                spool_failing: false,
            }),
            max_bytes,
            ready: Notify::new(),
            metrics,
            log_acks: Mutex::new(None),
            log_resume: Mutex::new(None),
        }
    }

    /// A queue backed by the spool in `dir` (at most `spool_bytes` on disk); what the spool holds
    /// from before is queued first, with its numbers.
    pub fn with_spool(max_bytes: usize, dir: &Path, spool_bytes: u64, metrics: AgentMetrics) -> std::io::Result<Self> {
        let q = Queue::new(max_bytes, metrics);
        let opened = Spool::open(dir, spool_bytes)?;
        {
            let mut inner = q.inner.lock().expect("queue lock poisoned");
            if opened.torn > 0 {
                q.metrics.spool_torn_records.inc_by(opened.torn);
                tracing::warn!(dir = %dir.display(), records = opened.torn, "the spool's last record was torn (a crash mid-write); cut off, the records before it are kept");
            }
            if !opened.records.is_empty() {
                tracing::info!(
                    batches = opened.records.len(),
                    bytes = opened.spool.bytes(),
                    "spooled batches from before are sent first"
                );
            }
            for r in opened.records {
                inner.entries.push_back(Entry {
                    seq: r.seq,
                    batch: None,
                    bytes: 0,
                    logs: None,
                    record: Some(r),
                    first_ms: r.first_ms,
                    last_ms: r.last_ms,
                });
            }
            inner.next_seq = opened.spool.highest_seq() + 1;
            inner.spool = Some(opened.spool);
            q.gauges(&inner);
        }
        Ok(q)
    }

    /// The log positions of every Welcome will be reported to `tx`.
    pub fn report_log_resume(&self, tx: std::sync::mpsc::Sender<LogResumes>) {
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

    /// What was given up since the last call, for the next batch to tell the collector.
    pub fn take_losses(&self) -> Vec<Loss> {
        std::mem::take(&mut self.inner.lock().expect("queue lock poisoned").lost)
    }

    fn gauges(&self, q: &Inner) {
        self.metrics.queue_bytes.set(q.bytes as i64);
        let (bytes, oldest) = q.spool.as_ref().map(|s| (s.bytes(), s.oldest_ms())).unwrap_or((0, None));
        self.metrics.spool_bytes.set(bytes as i64);
        let age = oldest.map(|t| (crate::clock::now_ms() - t).max(0) as f64 / 1000.0).unwrap_or(0.0);
        self.metrics.spool_oldest_age_seconds.set(age);
    }

    /// Queues a sealed batch. Only one task pushes (the batcher), so numbers follow the order.
    pub fn push(&self, batch: impl Into<OpenBatch>, bytes: usize, logs: Option<LogAck>) {
        let OpenBatch { rest: mut batch, groups, span: groups_span } = batch.into();
        let spans = [span(&batch), groups_span].into_iter().flatten();
        let (first_ms, last_ms) = spans.reduce(|(a, b), (c, d)| (a.min(c), b.max(d))).unwrap_or_else(|| {
            let now = crate::clock::now_ms();
            (now, now)
        });
        let spooled = self.inner.lock().expect("queue lock poisoned").spool.is_some();
        // Encoded and compressed outside the lock. The log lines stay out of the spool: the batch is
        // encoded without them, and they are encoded after it (a message's encodings concatenated
        // decode as their merge).
        let lines = Batch {
            log_streams: std::mem::take(&mut batch.log_streams),
            log_resume: std::mem::take(&mut batch.log_resume),
            ..Default::default()
        };
        // The seq goes in front at each send (see `Sealed`).
        batch.seq = 0;
        let mut body = Vec::with_capacity(batch.encoded_len() + groups.len() + lines.encoded_len());
        batch.encode(&mut body).expect("a Vec grows");
        drop(batch);
        body.extend_from_slice(&groups);
        drop(groups);
        let mut record = spooled.then(|| Spool::encode(first_ms, last_ms, &body));
        lines.encode(&mut body).expect("a Vec grows");
        drop(lines);
        let batch = Bytes::from(body);
        let mut q = self.inner.lock().expect("queue lock poisoned");
        let seq = q.next_seq;
        q.next_seq += 1;
        let mut on_disk = None;
        if let (Some(spool), Some(r)) = (q.spool.as_mut(), record.as_mut()) {
            match spool.append(seq, r) {
                Ok((rec, dropped)) => {
                    on_disk = Some(rec);
                    q.spool_failing = false;
                    for (first, last) in dropped {
                        self.forget_segment(&mut q, first, last);
                    }
                }
                Err(e) => {
                    self.metrics.spool_errors.inc();
                    if !std::mem::replace(&mut q.spool_failing, true) {
                        tracing::error!(error = %e, "cannot write the spool (disk full?); batches are held in memory only until it works again");
                    }
                }
            }
        }
        q.bytes += bytes;
        q.entries.push_back(Entry { seq, batch: Some(batch), bytes, logs, record: on_disk, first_ms, last_ms });
        self.fit_memory(&mut q);
        self.gauges(&q);
        drop(q);
        self.ready.notify_one();
    }

    /// The spool dropped the segment holding `first..=last`: entries only there are lost.
    fn forget_segment(&self, q: &mut Inner, first: u64, last: u64) {
        let mut lost = Lost::default();
        q.entries.retain_mut(|e| {
            if e.seq < first || e.seq > last {
                return true;
            }
            e.record = None;
            if e.batch.is_some() {
                return true;
            }
            lost.add(e.first_ms, e.last_ms);
            false
        });
        if lost.batches > 0 {
            self.metrics.spool_dropped_batches.inc_by(lost.batches);
            tracing::warn!(
                batches = lost.batches,
                from_ms = lost.first_ms,
                to_ms = lost.last_ms,
                "spool full ([spool] max_mib): dropped its oldest segment; the collector is told"
            );
            q.lost.push(Loss {
                batches: lost.batches,
                first_ms: lost.first_ms,
                last_ms: lost.last_ms,
                reason: "spool_full".into(),
            });
        }
    }

    /// Keeps memory within its bound: batches that are on disk leave memory first (oldest first);
    /// without a spool, the oldest batch of metrics is dropped. Batches with log lines stay.
    fn fit_memory(&self, q: &mut Inner) {
        while q.bytes > self.max_bytes {
            if let Some(e) = q.entries.iter_mut().find(|e| e.batch.is_some() && e.record.is_some() && e.logs.is_none())
            {
                e.batch = None;
                q.bytes -= std::mem::take(&mut e.bytes);
                continue;
            }
            let Some(i) = q.entries.iter().position(|e| e.batch.is_some() && e.logs.is_none()) else { break };
            let old = q.entries.remove(i).expect("index from position");
            q.bytes -= old.bytes;
            self.metrics.dropped_batches.inc();
            tracing::warn!(dropped_seq = old.seq, "send queue full: dropped the oldest batch of metrics");
            q.lost.push(Loss { batches: 1, first_ms: old.first_ms, last_ms: old.last_ms, reason: "queue_full".into() });
        }
    }

    /// The collector has committed everything up to `seq`: forget it. A collector that has committed
    /// numbers this agent never gave (its state was lost or copied) moves every queued batch past them.
    pub fn committed(&self, seq: u64) {
        let mut q = self.inner.lock().expect("queue lock poisoned");
        if seq >= q.next_seq {
            let by = q.entries.front().map(|e| seq + 1 - e.seq).unwrap_or(seq + 1 - q.next_seq);
            if !q.entries.is_empty() {
                tracing::warn!(
                    collector_committed = seq,
                    queued_from = q.entries[0].seq,
                    "the collector has batches numbered past this agent's: renumbering what is queued after them"
                );
            }
            for e in q.entries.iter_mut() {
                e.seq += by;
                if let Some(r) = e.record.as_mut() {
                    r.seq += by;
                }
            }
            if let Some(s) = q.spool.as_mut() {
                if let Err(e) = s.shift(by) {
                    self.metrics.spool_errors.inc();
                    tracing::error!(error = %e, "cannot renumber the spool");
                }
            }
            q.next_seq += by;
            return;
        }
        let mut acked_logs: Vec<LogAck> = Vec::new();
        while q.entries.front().is_some_and(|e| e.seq <= seq) {
            let e = q.entries.pop_front().expect("front exists");
            q.bytes -= e.bytes;
            self.metrics.acked_batches.inc();
            acked_logs.extend(e.logs);
        }
        if let Some(s) = q.spool.as_mut() {
            if let Err(e) = s.release(seq) {
                self.metrics.spool_errors.inc();
                tracing::warn!(error = %e, "cannot release acknowledged spool segments");
            }
        }
        if !acked_logs.is_empty() {
            if let Some(tx) = self.log_acks.lock().expect("queue lock poisoned").as_ref() {
                for a in acked_logs {
                    let _ = tx.send(a);
                }
            }
        }
        self.gauges(&q);
    }

    /// The first batch after `after` (a seq already sent on this connection, 0 for none), read back
    /// from the spool when it is on disk only.
    pub fn next_to_send(&self, after: u64) -> Option<Sealed> {
        let mut q = self.inner.lock().expect("queue lock poisoned");
        loop {
            let i = q.entries.iter().position(|e| e.seq > after)?;
            let e = &q.entries[i];
            let read = match (&e.batch, &e.record, &q.spool) {
                (Some(b), _, _) => Ok(b.clone()),
                (None, Some(r), Some(s)) => s.read(r).map(Bytes::from),
                _ => Err(std::io::Error::other("neither in memory nor in the spool")),
            };
            match read {
                Ok(body) => return Some(Sealed { seq: e.seq, body }),
                Err(err) => {
                    let e = q.entries.remove(i).expect("index from position");
                    self.metrics.spool_errors.inc();
                    tracing::error!(seq = e.seq, error = %err, "a spooled batch cannot be read back; dropped and reported");
                    q.lost.push(Loss {
                        batches: 1,
                        first_ms: e.first_ms,
                        last_ms: e.last_ms,
                        reason: "spool_unreadable".into(),
                    });
                }
            }
        }
    }

    /// The lowest seq still waiting for an ack (0 when none).
    pub fn oldest_unacked(&self) -> u64 {
        let q = self.inner.lock().expect("queue lock poisoned");
        q.entries.front().map(|e| e.seq).unwrap_or(0)
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

    fn tick(n: u64) -> Batch {
        use lookout_proto::v1::{Label, SeriesGroup, SeriesSamples};
        let series = SeriesSamples {
            labels: vec![Label { name: "__name__".into(), value: "node_load1".into() }],
            timestamps_ms: vec![n as i64 * 1000],
            values: vec![n as f64],
        };
        Batch { groups: vec![SeriesGroup { labels: vec![], series: vec![series] }], ..Default::default() }
    }

    fn spooled(dir: &std::path::Path, memory: usize, disk: u64) -> Queue {
        Queue::with_spool(memory, dir, disk, AgentMetrics::register(&mut Registry::default())).unwrap()
    }

    #[test]
    fn a_restarted_agent_sends_what_it_spooled_with_the_same_numbers_and_then_numbers_on() {
        let dir = tempfile::tempdir().unwrap();
        let q = spooled(dir.path(), 1 << 20, 1 << 30);
        for n in 1..=5 {
            q.push(tick(n), 100, None);
        }
        q.committed(2);
        drop(q);
        let q = spooled(dir.path(), 1 << 20, 1 << 30);
        assert_eq!(q.len(), 3);
        let b = q.next_to_send(0).unwrap();
        assert_eq!(
            (b.seq, b.decode().groups[0].series[0].values[0]),
            (3, 3.0),
            "the oldest unacknowledged first, as it was"
        );
        q.push(tick(6), 100, None);
        let seqs: Vec<u64> =
            std::iter::successors(q.next_to_send(0), |b| q.next_to_send(b.seq)).map(|b| b.seq).collect();
        assert_eq!(seqs, vec![3, 4, 5, 6], "live data behind the spool, numbered after it");
    }

    #[test]
    fn past_the_memory_bound_batches_wait_on_disk_and_none_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let q = spooled(dir.path(), 250, 1 << 30);
        for n in 1..=10 {
            q.push(tick(n), 100, None);
        }
        assert_eq!(q.len(), 10);
        assert!(q.inner.lock().unwrap().bytes <= 250);
        assert_eq!(q.metrics.dropped_batches.get(), 0);
        let values: Vec<f64> = std::iter::successors(q.next_to_send(0), |b| q.next_to_send(b.seq))
            .map(|b| b.decode().groups[0].series[0].values[0])
            .collect();
        assert_eq!(values, (1..=10).map(|n| n as f64).collect::<Vec<_>>());
        assert!(q.take_losses().is_empty());
    }

    #[test]
    fn a_full_spool_drops_its_oldest_segment_and_the_loss_is_reported_with_its_time() {
        let dir = tempfile::tempdir().unwrap();
        // 64 KiB segments, 256 KiB in all; memory holds almost nothing.
        let q = spooled(dir.path(), 1, 256 << 10);
        let big = |n: u64| {
            let mut b = tick(n);
            let noise = crate::ship::spool::tests::noise(n, 30_000);
            b.container_events.push(lookout_proto::v1::ContainerEvent {
                container_id: noise,
                time_ms: n as i64 * 1000,
                ..Default::default()
            });
            b
        };
        for n in 1..=60 {
            q.push(big(n), 30_000, None);
        }
        let losses = q.take_losses();
        assert!(!losses.is_empty());
        assert_eq!(losses[0].reason, "spool_full");
        assert_eq!(losses[0].first_ms, 1000, "the oldest batches went first");
        let lost: u64 = losses.iter().map(|l| l.batches).sum();
        assert_eq!(q.metrics.spool_dropped_batches.get(), lost);
        assert_eq!(q.len() as u64 + lost, 60, "every batch is either queued or reported lost");
        assert!(q.metrics.spool_bytes.get() <= 256 << 10);
    }

    #[test]
    fn a_collector_with_numbers_past_ours_gets_what_is_spooled_renumbered_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let q = spooled(dir.path(), 1 << 20, 1 << 30);
        q.push(tick(1), 100, None);
        q.push(tick(2), 100, None);
        q.committed(500);
        assert_eq!(q.len(), 2, "nothing of ours is taken for committed");
        assert_eq!(q.next_to_send(0).unwrap().seq, 501);
        drop(q);
        let q = spooled(dir.path(), 1 << 20, 1 << 30);
        assert_eq!(q.next_to_send(0).unwrap().seq, 501, "the renumbering survives a restart");
    }

    #[test]
    fn a_sealed_batch_decodes_as_what_was_pushed_and_the_spool_keeps_it_without_its_lines() {
        use lookout_proto::v1::{ContainerEvent, LogLine, LogResume, LogStream};
        let dir = tempfile::tempdir().unwrap();
        let q = spooled(dir.path(), 1 << 20, 1 << 30);
        let event = ContainerEvent { container_id: "c1".into(), time_ms: 5_000, ..Default::default() };
        let mut open = OpenBatch::from(Batch { container_events: vec![event.clone()], ..Default::default() });
        let groups: Vec<_> = [7, 8].into_iter().flat_map(|n| tick(n).groups).collect();
        for g in &groups {
            open.add_group(g);
        }
        let line = LogLine { time_ns: 9, text: "hello".into(), flags: 0 };
        open.rest.log_streams.push(LogStream { labels: vec![], lines: vec![line] });
        open.rest.log_resume.push(LogResume { source: "c1".into(), state: b"{}".to_vec() });
        q.push(open, 100, None);
        {
            let e = &q.inner.lock().unwrap().entries[0];
            assert_eq!((e.first_ms, e.last_ms), (5_000, 8_000), "the span covers the encoded series too");
        }
        let sent = q.next_to_send(0).unwrap().decode();
        assert_eq!(sent.seq, 1);
        assert_eq!(sent.groups, groups);
        assert_eq!(sent.container_events, vec![event.clone()]);
        assert_eq!(sent.log_streams[0].lines[0].text, "hello");
        assert_eq!(sent.log_resume[0].source, "c1");
        drop(q);
        // After a restart: from the spool, with the same number, and no lines (the log files hold them).
        let q = spooled(dir.path(), 1 << 20, 1 << 30);
        let again = q.next_to_send(0).unwrap().decode();
        assert_eq!((again.seq, again.groups, again.container_events), (1, groups, vec![event]));
        assert!(again.log_streams.is_empty() && again.log_resume.is_empty());
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
