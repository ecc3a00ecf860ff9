//! The write path: a batch's samples, log lines and log positions committed in one transaction
//! with the agent's sequence number, then published to readers; chunks sealed off the write lock.

use std::sync::Arc;

use rusqlite::params;

use super::chunk::{ChunkAppender, CHUNK_TARGET_SAMPLES};
use super::index::SeriesId;
use super::{
    encode_labels, headlog, logs, AppendOutcome, HeadSeries, LogBatchIn, Sequence, SeriesGroup, Store, StoreError,
};
use crate::model::{LabelSet, LabelView, Samples};

impl Store {
    /// The highest seq committed for an agent (0 when none).
    pub fn committed_seq(&self, agent_id: &str) -> u64 {
        let w = self.writer.lock().expect("writer lock poisoned");
        w.committed.get(agent_id).copied().unwrap_or(0)
    }

    /// Commits one agent batch atomically with its seq. Returns only after the commit, so the caller
    /// may ack on `Ok`. A seq at or below the agent's committed seq is skipped as a duplicate.
    pub fn append(
        &self,
        agent_id: &str,
        host: &str,
        seq: u64,
        now_ms: i64,
        batch: Vec<(LabelSet, Samples)>,
    ) -> Result<AppendOutcome, StoreError> {
        let groups =
            batch.into_iter().map(|(common, s)| SeriesGroup { common, series: vec![(Vec::new(), s)] }).collect();
        self.append_groups(agent_id, host, seq, now_ms, groups)
    }

    /// `append` for series that share labels: each series' labels are its group's `common` with its
    /// own laid over them. A known series is found without building its label set.
    pub fn append_groups(
        &self,
        agent_id: &str,
        host: &str,
        seq: u64,
        now_ms: i64,
        groups: Vec<SeriesGroup>,
    ) -> Result<AppendOutcome, StoreError> {
        self.append_inner(Some(Sequence { agent_id, host, seq }), now_ms, groups, LogBatchIn::default())
    }

    /// An agent batch with samples and log lines, committed together with its seq.
    pub fn append_batch(
        &self,
        agent_id: &str,
        host: &str,
        seq: u64,
        now_ms: i64,
        groups: Vec<SeriesGroup>,
        logs: LogBatchIn,
    ) -> Result<AppendOutcome, StoreError> {
        self.append_inner(Some(Sequence { agent_id, host, seq }), now_ms, groups, logs)
    }

    /// Commits series from a sender without sequence numbers (Prometheus remote-write): nothing is
    /// deduplicated by batch, only samples at or before a series' newest timestamp are refused.
    pub fn append_unsequenced(&self, now_ms: i64, groups: Vec<SeriesGroup>) -> Result<AppendOutcome, StoreError> {
        self.append_inner(None, now_ms, groups, LogBatchIn::default())
    }

    /// Commits log streams from a pusher without sequence numbers (Loki's push API, OTLP logs): a
    /// line further behind its stream's newest line than `window_ns` is refused and counted.
    pub fn append_pushed_logs(
        &self,
        now_ms: i64,
        streams: Vec<crate::model::logs::LogStreamIn>,
        window_ns: i64,
    ) -> Result<AppendOutcome, StoreError> {
        let logs = LogBatchIn { streams, resume: Vec::new(), window_ns: Some(window_ns) };
        self.append_inner(None, now_ms, Vec::new(), logs)
    }

    fn append_inner(
        &self,
        sequence: Option<Sequence<'_>>,
        now_ms: i64,
        groups: Vec<SeriesGroup>,
        log_batch: LogBatchIn,
    ) -> Result<AppendOutcome, StoreError> {
        let sql = self.sql_err();
        let mut w = self.writer.lock().expect("writer lock poisoned");
        let mut outcome = AppendOutcome::default();
        if let Some(q) = &sequence {
            if q.seq <= w.committed.get(q.agent_id).copied().unwrap_or(0) {
                outcome.duplicate = true;
                return Ok(outcome);
            }
        }

        // Resolve ids; new series get ids now and enter the index after the commit.
        let mut new_series: Vec<(SeriesId, LabelSet)> = Vec::new();
        let mut resolved: Vec<(SeriesId, Samples)> = Vec::with_capacity(groups.iter().map(|g| g.series.len()).sum());
        {
            let index = self.index.read().expect("index lock poisoned");
            let mut pending: hashbrown::HashMap<LabelSet, SeriesId, rustc_hash::FxBuildHasher> = Default::default();
            for group in groups {
                for (own, samples) in group.series {
                    let view = LabelView::merge(&group.common, &own);
                    let id = match index.get_view(&view).or_else(|| pending.get(&view).copied()) {
                        Some(id) => id,
                        None => {
                            let id = w.next_series_id;
                            w.next_series_id += 1;
                            let labels = view.to_label_set();
                            pending.insert(labels.clone(), id);
                            new_series.push((id, labels));
                            id
                        }
                    };
                    resolved.push((id, samples));
                }
            }
        }

        // One entry per series: a sender may name a series twice in one request (remote-write,
        // OTLP points of one series at several times); its samples are merged in time order.
        resolved.sort_by_key(|(id, _)| *id);
        resolved.dedup_by(|later, first| {
            if later.0 != first.0 {
                return false;
            }
            let mut pairs: Vec<(i64, f64)> = first.1.ts.iter().copied().zip(first.1.values.iter().copied()).collect();
            pairs.extend(later.1.ts.iter().copied().zip(later.1.values.iter().copied()));
            pairs.sort_by_key(|p| p.0);
            first.1.ts = pairs.iter().map(|p| p.0).collect();
            first.1.values = pairs.iter().map(|p| p.1).collect();
            true
        });

        // Keep only samples newer than what each series has; seal chunks that fill up.
        let mut record = Vec::new();
        let mut sealed = Vec::new();
        let mut staged: Vec<(SeriesId, Option<ChunkAppender>, Samples)> = Vec::with_capacity(resolved.len());
        {
            let head = self.head.read().expect("head lock poisoned");
            for (id, samples) in resolved {
                let hs = head.get(id as usize).and_then(|s| s.as_ref());
                let mut last = hs.map_or(i64::MIN, |h| h.last_ts);
                let mut kept = Samples::default();
                for (&t, &v) in samples.ts.iter().zip(&samples.values) {
                    if t > last {
                        kept.ts.push(t);
                        kept.values.push(v);
                        last = t;
                    } else if t == last {
                        outcome.same_timestamp += 1;
                    } else {
                        outcome.out_of_order += 1;
                    }
                }
                if kept.ts.is_empty() {
                    continue;
                }
                outcome.samples += kept.ts.len() as u64;
                headlog::put_series(&mut record, id, &kept.ts, &kept.values);
                let open_len = hs.map_or(0, |h| h.open.len());
                if open_len + kept.ts.len() <= CHUNK_TARGET_SAMPLES {
                    staged.push((id, None, kept));
                    continue;
                }
                // This series fills its chunk: build the replacement appender off to the side.
                let mut open = match hs {
                    Some(h) => clone_appender(&h.open),
                    None => ChunkAppender::new(),
                };
                for (&t, &v) in kept.ts.iter().zip(&kept.values) {
                    if open.len() >= CHUNK_TARGET_SAMPLES {
                        sealed.push(seal(id, &open));
                        open = ChunkAppender::new();
                    }
                    open.push(t, v);
                }
                staged.push((id, Some(open), kept));
            }
        }

        let tx = w.conn.transaction().map_err(&sql)?;
        {
            let mut ins = tx.prepare_cached("INSERT INTO series (id, labels) VALUES (?1, ?2)").map_err(&sql)?;
            for (id, labels) in &new_series {
                ins.execute(params![id, encode_labels(labels)]).map_err(&sql)?;
            }
        }
        insert_chunks(&tx, &sealed).map_err(&sql)?;
        if !record.is_empty() {
            tx.prepare_cached("INSERT INTO head_log (data) VALUES (?1)")
                .and_then(|mut s| s.execute(params![record]))
                .map_err(&sql)?;
        }
        let feed = (self.log_feed.receiver_count() > 0 && !log_batch.streams.is_empty())
            .then(|| Arc::new(log_batch.streams.clone()));
        let mut log_record = Vec::new();
        let staged_logs = if log_batch.streams.is_empty() {
            None
        } else {
            let export = self.options.export_logs.then_some(&mut log_record);
            let logs = self.logs.read().expect("logs lock poisoned");
            Some(logs.write(&tx, log_batch.streams, log_batch.window_ns, export).map_err(&sql)?)
        };
        // The exporters' copies, in the same transaction: what is acked is what will be forwarded.
        use super::export::ExportKind;
        for (on, kind, data) in [
            (self.options.export_samples, ExportKind::Samples, &record),
            (self.options.export_logs, ExportKind::Logs, &log_record),
        ] {
            if on && !data.is_empty() {
                Store::append_export(&tx, kind, now_ms, data).map_err(&sql)?;
            }
        }
        if let Some(q) = &sequence {
            logs::write_resume(&tx, q.agent_id, &log_batch.resume).map_err(&sql)?;
            tx.prepare_cached(
                "INSERT INTO agents (agent_id, committed_seq, host, last_seen_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (agent_id) DO UPDATE SET committed_seq = ?2, host = ?3, last_seen_ms = ?4",
            )
            .and_then(|mut s| s.execute(params![q.agent_id, q.seq as i64, q.host, now_ms]))
            .map_err(&sql)?;
        }
        tx.commit().map_err(&sql)?;

        // Committed: publish to readers. Index first, so a reader that sees a head entry can name it.
        if let Some(mut staged) = staged_logs {
            outcome.log_lines = staged.lines;
            outcome.log_lines_behind = staged.behind;
            outcome.first_behind = staged.first_behind.take();
            self.logs.write().expect("logs lock poisoned").apply(staged);
        }
        if let Some(streams) = feed {
            // No listener left between the check and now is fine: the batch is simply not wanted.
            let _ = self.log_feed.send(streams);
        }
        if let Some(q) = &sequence {
            w.committed.insert(q.agent_id.to_string(), q.seq);
        }
        w.head_log_bytes += record.len() as u64;
        outcome.new_series = new_series.len() as u64;
        if !new_series.is_empty() {
            let mut index = self.index.write().expect("index lock poisoned");
            for (id, labels) in new_series {
                index.insert(id, labels);
            }
        }
        {
            let mut head = self.head.write().expect("head lock poisoned");
            for (id, replacement, kept) in staged {
                let slot = id as usize;
                if head.len() <= slot {
                    head.resize_with(slot + 1, || None);
                }
                let hs = head[slot].get_or_insert_with(|| HeadSeries::new(i64::MIN));
                hs.last_ts = *kept.ts.last().expect("staged series have samples");
                match replacement {
                    Some(open) => hs.open = open,
                    None => {
                        for (&t, &v) in kept.ts.iter().zip(&kept.values) {
                            hs.open.push(t, v);
                        }
                    }
                }
            }
        }
        if w.head_log_bytes >= self.options.checkpoint_bytes {
            self.checkpoint_locked(&mut w)?;
        }
        Ok(outcome)
    }
}

pub(super) fn seal(id: SeriesId, open: &ChunkAppender) -> (SeriesId, i64, i64, Vec<u8>) {
    let t_min = open.first_ts().expect("only full chunks are sealed");
    let t_max = open.last_ts().expect("only full chunks are sealed");
    (id, t_min, t_max, open.seal())
}

fn clone_appender(open: &ChunkAppender) -> ChunkAppender {
    let mut ts = Vec::with_capacity(open.len());
    let mut vs = Vec::with_capacity(open.len());
    open.decode_into(&mut ts, &mut vs);
    let mut copy = ChunkAppender::new();
    for (t, v) in ts.into_iter().zip(vs) {
        copy.push(t, v);
    }
    copy
}

pub(super) fn insert_chunks(
    tx: &rusqlite::Transaction<'_>,
    sealed: &[(SeriesId, i64, i64, Vec<u8>)],
) -> Result<(), rusqlite::Error> {
    if sealed.is_empty() {
        return Ok(());
    }
    let mut ins =
        tx.prepare_cached("INSERT OR REPLACE INTO chunks (series_id, t_min, t_max, data) VALUES (?1, ?2, ?3, ?4)")?;
    for (id, t_min, t_max, data) in sealed {
        ins.execute(params![id, t_min, t_max, data])?;
    }
    Ok(())
}
