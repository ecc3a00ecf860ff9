//! The collector's storage: series, compressed sample chunks and the head log in one SQLite file.
//! The only module that sees SQLite; everything else calls `Store` with plain `model` types.
//!
//! Layout: each series' newest samples sit in an open chunk in memory (the head). Every batch is
//! committed as one head-log row (the raw samples it added) in the same transaction that records the
//! agent's sequence number, so an ack means durable. A chunk that reaches `CHUNK_TARGET_SAMPLES` is
//! sealed and written to `chunks`. A checkpoint writes the open chunks to `head_snapshot` and empties
//! the head log, so recovery replays only what came after it.

pub mod chunk;
pub mod decisions;
mod headlog;
mod index;
pub mod logchunk;
pub mod logs;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rusqlite::{params, Connection};

use crate::model::{LabelSet, LabelView, Matcher, Samples, SeriesData};
use chunk::{ChunkAppender, CHUNK_TARGET_SAMPLES};
pub use index::SeriesId;
use index::SeriesIndex;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("cannot create data directory {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("corrupt {what} in {path}: {detail}")]
    Corrupt { path: PathBuf, what: &'static str, detail: String },
}

/// What `Store::append` did with a batch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    /// The batch's seq was at or below the agent's committed seq: nothing was written.
    pub duplicate: bool,
    pub samples: u64,
    /// Samples before their series' newest timestamp, dropped as Prometheus drops them.
    pub out_of_order: u64,
    /// Samples at exactly their series' newest timestamp (a resend), dropped.
    pub same_timestamp: u64,
    pub log_lines: u64,
    pub new_series: u64,
}

/// A batch's log lines and where the agent's reading stands after them (source, opaque state).
#[derive(Clone, Debug, Default)]
pub struct LogBatchIn {
    pub streams: Vec<logs::LogStreamIn>,
    pub resume: Vec<(String, Vec<u8>)>,
}

/// Who sent a batch and its number in that sender's sequence.
struct Sequence<'a> {
    agent_id: &'a str,
    host: &'a str,
    seq: u64,
}

/// Series that share labels (one container's identity): each has its own labels on top of `common`.
#[derive(Clone, Debug, Default)]
pub struct SeriesGroup {
    pub common: LabelSet,
    pub series: Vec<(Vec<(String, String)>, Samples)>,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct LogStorage {
    pub chunks: u64,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
}

#[derive(Clone, Debug, Default)]
pub struct DiskUsage {
    pub used_bytes: u64,
    pub free_bytes: u64,
    pub wal_bytes: u64,
    pub chunk_bytes: u64,
    pub chunks: u64,
}

#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub retention: Duration,
    /// Log chunks whose newest line is older than this are deleted.
    pub log_retention: Duration,
    /// Beyond this many bytes of sealed log chunks the oldest are deleted; 0 for no limit.
    pub log_max_bytes: u64,
    /// Beyond this many bytes of sealed sample chunks the oldest are deleted; 0 for no limit.
    pub max_bytes: u64,
    /// A log head whose oldest line is this old is sealed into a chunk, however small.
    pub log_chunk_max_age: Duration,
    /// When the head log passes this many bytes, the next append checkpoints it.
    pub checkpoint_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            retention: Duration::from_secs(15 * 24 * 3600),
            log_retention: Duration::from_secs(15 * 24 * 3600),
            log_max_bytes: 0,
            max_bytes: 0,
            log_chunk_max_age: Duration::from_secs(3600),
            checkpoint_bytes: 64 << 20,
        }
    }
}

struct HeadSeries {
    open: ChunkAppender,
    /// Newest timestamp stored for the series (in the head or in a sealed chunk).
    last_ts: i64,
}

impl HeadSeries {
    fn new(last_ts: i64) -> Self {
        HeadSeries { open: ChunkAppender::new(), last_ts }
    }
}

struct Writer {
    conn: Connection,
    committed: HashMap<String, u64>,
    head_log_bytes: u64,
    next_series_id: SeriesId,
}

pub struct Store {
    path: PathBuf,
    options: StoreOptions,
    writer: Mutex<Writer>,
    index: RwLock<SeriesIndex>,
    /// Indexed by series id.
    head: RwLock<Vec<Option<HeadSeries>>>,
    /// Log streams and their unsealed heads.
    logs: RwLock<logs::LogState>,
    /// Every committed batch's log streams, for live tails (sent only while someone listens).
    log_feed: tokio::sync::broadcast::Sender<Arc<Vec<logs::LogStreamIn>>>,
    readers: Mutex<Vec<Connection>>,
}

/// Committed batches a live tail may fall behind by before it is told it missed some.
const LOG_FEED_BATCHES: usize = 1024;

const SCHEMA: &str = "
-- Label sets are unique by construction: the in-memory index assigns ids; no second copy as an index.
CREATE TABLE IF NOT EXISTS series (id INTEGER PRIMARY KEY, labels TEXT NOT NULL);
-- A rowid table: chunks are sealed in time order, so rows append and pages fill up; keyed by
-- (series_id, t_min) through a small index. (Clustering the blobs by series would split pages to
-- half-full, because sealing interleaves series.)
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY, series_id INTEGER NOT NULL, t_min INTEGER NOT NULL, t_max INTEGER NOT NULL,
    data BLOB NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS chunks_series ON chunks (series_id, t_min);
CREATE INDEX IF NOT EXISTS chunks_t_max ON chunks (t_max);
CREATE TABLE IF NOT EXISTS head_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS head_snapshot (series_id INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS agents (agent_id TEXT PRIMARY KEY, committed_seq INTEGER NOT NULL, host TEXT, last_seen_ms INTEGER);
";

impl Store {
    /// Opens (or creates) the store in `dir`, rebuilding the index and the head from what is on disk.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io { path: dir.to_path_buf(), source })?;
        let path = dir.join("lookout.db");
        let sql = |source| StoreError::Sqlite { path: path.clone(), source };
        let conn = Connection::open(&path).map_err(sql)?;
        // WAL lets queries read while a batch commits; synchronous=FULL makes every commit, and so every
        // ack, survive a power loss, not only a crash of the process.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        conn.execute_batch(logs::SCHEMA).map_err(sql)?;
        conn.execute_batch(decisions::SCHEMA).map_err(sql)?;
        let log_state = logs::LogState::load(&conn).map_err(|detail| StoreError::Corrupt {
            path: path.clone(),
            what: "log streams",
            detail,
        })?;

        let mut index = SeriesIndex::default();
        {
            let mut stmt = conn.prepare("SELECT id, labels FROM series ORDER BY id").map_err(sql)?;
            let mut rows = stmt.query([]).map_err(sql)?;
            while let Some(row) = rows.next().map_err(sql)? {
                let id: u32 = row.get(0).map_err(sql)?;
                let text: String = row.get(1).map_err(sql)?;
                let labels = decode_labels(&text).map_err(|detail| StoreError::Corrupt {
                    path: path.clone(),
                    what: "series labels",
                    detail: format!("series {id}: {detail}"),
                })?;
                index.insert(id, labels);
            }
        }
        let next_series_id = index.next_id();
        let mut head: Vec<Option<HeadSeries>> = (0..next_series_id).map(|_| None).collect();
        {
            let mut stmt = conn.prepare("SELECT series_id, max(t_max) FROM chunks GROUP BY series_id").map_err(sql)?;
            let mut rows = stmt.query([]).map_err(sql)?;
            while let Some(row) = rows.next().map_err(sql)? {
                let id: u32 = row.get(0).map_err(sql)?;
                let t_max: i64 = row.get(1).map_err(sql)?;
                if let Some(slot) = head.get_mut(id as usize) {
                    *slot = Some(HeadSeries::new(t_max));
                }
            }
        }
        {
            let mut stmt = conn.prepare("SELECT series_id, data FROM head_snapshot").map_err(sql)?;
            let mut rows = stmt.query([]).map_err(sql)?;
            while let Some(row) = rows.next().map_err(sql)? {
                let id: u32 = row.get(0).map_err(sql)?;
                let data: Vec<u8> = row.get(1).map_err(sql)?;
                let open = ChunkAppender::from_snapshot(&data).map_err(|e| StoreError::Corrupt {
                    path: path.clone(),
                    what: "head snapshot",
                    detail: format!("series {id}: {e}"),
                })?;
                let Some(slot) = head.get_mut(id as usize) else {
                    continue;
                };
                let hs = slot.get_or_insert_with(|| HeadSeries::new(i64::MIN));
                // A snapshot whose samples were sealed into a chunk after it was taken is stale.
                if open.first_ts().is_some_and(|t| t > hs.last_ts) {
                    hs.last_ts = open.last_ts().unwrap_or(hs.last_ts);
                    hs.open = open;
                }
            }
        }
        let committed = {
            let mut stmt = conn.prepare("SELECT agent_id, committed_seq FROM agents").map_err(sql)?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))).map_err(sql)?;
            rows.collect::<Result<HashMap<_, _>, _>>().map_err(sql)?
        };

        let store = Store {
            path: path.clone(),
            options,
            writer: Mutex::new(Writer { conn, committed, head_log_bytes: 0, next_series_id }),
            index: RwLock::new(index),
            head: RwLock::new(head),
            logs: RwLock::new(log_state),
            log_feed: tokio::sync::broadcast::channel(LOG_FEED_BATCHES).0,
            readers: Mutex::new(Vec::new()),
        };
        store.recover()?;
        Ok(store)
    }

    fn sql_err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sqlite { path: self.path.clone(), source }
    }

    /// Replays the head log into the head, then checkpoints so the log starts empty.
    fn recover(&self) -> Result<(), StoreError> {
        let sql = self.sql_err();
        let mut w = self.writer.lock().expect("writer lock poisoned");
        let mut sealed: Vec<(SeriesId, i64, i64, Vec<u8>)> = Vec::new();
        {
            let mut head = self.head.write().expect("head lock poisoned");
            let mut stmt = w.conn.prepare("SELECT seq, data FROM head_log ORDER BY seq").map_err(&sql)?;
            let mut rows = stmt.query([]).map_err(&sql)?;
            while let Some(row) = rows.next().map_err(&sql)? {
                let seq: i64 = row.get(0).map_err(&sql)?;
                let data: Vec<u8> = row.get(1).map_err(&sql)?;
                headlog::for_each_sample(&data, |id, t, v| {
                    let slot = id as usize;
                    if head.len() <= slot {
                        head.resize_with(slot + 1, || None);
                    }
                    let hs = head[slot].get_or_insert_with(|| HeadSeries::new(i64::MIN));
                    if t <= hs.last_ts {
                        return; // already in a sealed chunk or the snapshot
                    }
                    if hs.open.len() >= CHUNK_TARGET_SAMPLES {
                        sealed.push(seal(id, &hs.open));
                        hs.open = ChunkAppender::new();
                    }
                    hs.open.push(t, v);
                    hs.last_ts = t;
                })
                .map_err(|detail| StoreError::Corrupt {
                    path: self.path.clone(),
                    what: "head log",
                    detail: format!("record {seq}: {detail}"),
                })?;
            }
        }
        let tx = w.conn.transaction().map_err(&sql)?;
        insert_chunks(&tx, &sealed).map_err(&sql)?;
        tx.commit().map_err(&sql)?;
        self.checkpoint_locked(&mut w)
    }

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

    /// Where the agent's log reading stands, per source, as committed.
    pub fn log_resume(&self, agent_id: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let w = self.writer.lock().expect("writer lock poisoned");
        let mut stmt = w
            .conn
            .prepare_cached("SELECT source, state FROM log_resume WHERE agent_id = ?1")
            .map_err(self.sql_err())?;
        let rows = stmt.query_map(params![agent_id], |r| Ok((r.get(0)?, r.get(1)?))).map_err(self.sql_err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sql_err())
    }

    /// Commits series from a sender without sequence numbers (Prometheus remote-write): nothing is
    /// deduplicated by batch, only samples at or before a series' newest timestamp are refused.
    pub fn append_unsequenced(&self, now_ms: i64, groups: Vec<SeriesGroup>) -> Result<AppendOutcome, StoreError> {
        self.append_inner(None, now_ms, groups, LogBatchIn::default())
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
        let staged_logs = if log_batch.streams.is_empty() {
            None
        } else {
            Some(self.logs.read().expect("logs lock poisoned").write(&tx, log_batch.streams).map_err(&sql)?)
        };
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
        if let Some(staged) = staged_logs {
            outcome.log_lines = staged.lines;
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

    /// Writes every open chunk to `head_snapshot` and empties the head log, in one transaction.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        let mut w = self.writer.lock().expect("writer lock poisoned");
        self.checkpoint_locked(&mut w)
    }

    fn checkpoint_locked(&self, w: &mut Writer) -> Result<(), StoreError> {
        let sql = self.sql_err();
        let tx = w.conn.transaction().map_err(&sql)?;
        tx.execute("DELETE FROM head_snapshot", []).map_err(&sql)?;
        {
            let head = self.head.read().expect("head lock poisoned");
            let mut ins =
                tx.prepare_cached("INSERT INTO head_snapshot (series_id, data) VALUES (?1, ?2)").map_err(&sql)?;
            for (id, hs) in head.iter().enumerate() {
                if let Some(hs) = hs.as_ref().filter(|h| !h.open.is_empty()) {
                    ins.execute(params![id as i64, hs.open.snapshot()]).map_err(&sql)?;
                }
            }
        }
        tx.execute("DELETE FROM head_log", []).map_err(&sql)?;
        tx.commit().map_err(&sql)?;
        w.head_log_bytes = 0;
        // Fold the WAL into the database and shrink it, so the WAL does not keep the head log's size.
        w.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).map_err(&sql)?;
        Ok(())
    }

    /// Deletes whole chunks whose newest sample is older than the retention period, and log chunks
    /// older than the log retention or beyond the log size limit (oldest first).
    pub fn enforce_retention(&self, now_ms: i64) -> Result<u64, StoreError> {
        let cutoff = now_ms - self.options.retention.as_millis() as i64;
        let log_cutoff_ns = (now_ms - self.options.log_retention.as_millis() as i64).saturating_mul(1_000_000);
        let w = self.writer.lock().expect("writer lock poisoned");
        let n = w.conn.execute("DELETE FROM chunks WHERE t_max < ?1", params![cutoff]).map_err(self.sql_err())?;
        let mut logs = w
            .conn
            .execute("DELETE FROM log_chunks WHERE t_max < ?1", params![log_cutoff_ns])
            .map_err(self.sql_err())?;
        if self.options.log_max_bytes > 0 {
            logs += self.enforce_log_size(&w.conn, self.options.log_max_bytes).map_err(self.sql_err())?;
        }
        let mut n = n;
        if self.options.max_bytes > 0 {
            n += self.enforce_chunk_size(&w.conn, self.options.max_bytes).map_err(self.sql_err())?;
        }
        Ok((n + logs) as u64)
    }

    /// Deletes the oldest sample chunks until the rest fit in `max_bytes` (compressed, as on disk),
    /// as Prometheus's `--storage.tsdb.retention.size` does with blocks. The freed pages are reused
    /// by new chunks, so the file stays within the budget instead of shrinking.
    fn enforce_chunk_size(&self, conn: &Connection, max_bytes: u64) -> rusqlite::Result<usize> {
        let mut stmt = conn.prepare_cached("SELECT series_id, t_min, length(data) FROM chunks ORDER BY t_max DESC")?;
        let mut rows = stmt.query([])?;
        let mut total = 0u64;
        let mut doomed: Vec<(i64, i64)> = Vec::new();
        while let Some(row) = rows.next()? {
            total += row.get::<_, i64>(2)? as u64;
            if total > max_bytes {
                doomed.push((row.get(0)?, row.get(1)?));
            }
        }
        drop(rows);
        let mut del = conn.prepare_cached("DELETE FROM chunks WHERE series_id = ?1 AND t_min = ?2")?;
        for (id, t_min) in &doomed {
            del.execute(params![id, t_min])?;
        }
        Ok(doomed.len())
    }

    /// Bytes free for this store on its file system (for the full-disk message), if known.
    pub fn free_bytes(&self) -> Option<u64> {
        let dir = self.path.parent()?;
        let st = rustix::fs::statvfs(dir).ok()?;
        Some(st.f_bavail.saturating_mul(st.f_frsize))
    }

    /// Deletes the oldest log chunks until the rest fit in `max_bytes` (compressed, as on disk).
    fn enforce_log_size(&self, conn: &Connection, max_bytes: u64) -> rusqlite::Result<usize> {
        let mut stmt = conn.prepare_cached("SELECT id, length(data) FROM log_chunks ORDER BY t_max DESC, id DESC")?;
        let mut rows = stmt.query([])?;
        let mut total = 0u64;
        let mut doomed: Vec<i64> = Vec::new();
        while let Some(row) = rows.next()? {
            total += row.get::<_, i64>(1)? as u64;
            if total > max_bytes {
                doomed.push(row.get(0)?);
            }
        }
        drop(rows);
        let mut del = conn.prepare_cached("DELETE FROM log_chunks WHERE id = ?1")?;
        for id in &doomed {
            del.execute(params![id])?;
        }
        Ok(doomed.len())
    }

    /// Seals log heads whose oldest line is older than `log_chunk_max_age`; returns how many.
    pub fn seal_old_log_heads(&self, now_ns: i64) -> Result<u64, StoreError> {
        let sql = self.sql_err();
        let mut w = self.writer.lock().expect("writer lock poisoned");
        let tx = w.conn.transaction().map_err(&sql)?;
        let max_age = self.options.log_chunk_max_age.as_nanos() as i64;
        let staged = self.logs.read().expect("logs lock poisoned").seal_old(&tx, now_ns, max_age).map_err(&sql)?;
        tx.commit().map_err(&sql)?;
        let n = staged.changes_len() as u64;
        self.logs.write().expect("logs lock poisoned").apply(staged);
        Ok(n)
    }

    /// Log streams matching every matcher, with their lines in `[start_ns, end_ns)` in time order.
    pub fn select_logs(
        &self,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
    ) -> Result<Vec<logs::LogStreamOut>, StoreError> {
        // Heads and the newest chunk id in one snapshot: chunks sealed after it hold head lines we
        // already have (and later ones), so they are left out.
        self.select_logs_where(matchers, start_ns, end_ns, &logchunk::LinePrefilter::default())
    }

    /// `select_logs`, keeping only lines that pass `filter` (checked before a line is copied out).
    pub fn select_logs_where(
        &self,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
        filter: &logchunk::LinePrefilter<'_>,
    ) -> Result<Vec<logs::LogStreamOut>, StoreError> {
        let heads = self
            .logs
            .read()
            .expect("logs lock poisoned")
            .select_heads(matchers, start_ns, end_ns, |lines| lines.cloned().collect());
        self.with_reader("log chunk", |conn| logs::read(conn, heads, start_ns, end_ns, filter))
    }

    /// Folds the matching streams' lines in `[start_ns, end_ns)` into accumulators, copying no line
    /// out (see `logs::fold`): how log metric queries and counts run in bounded memory.
    pub fn fold_logs<A: Send>(
        &self,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
        filter: &logchunk::LinePrefilter<'_>,
        init: &(dyn Fn() -> A + Sync),
        visit: &(dyn Fn(&mut A, &LabelSet, i64, u64, &str) + Sync),
    ) -> Result<Vec<A>, StoreError> {
        let heads = self
            .logs
            .read()
            .expect("logs lock poisoned")
            .select_heads(matchers, start_ns, end_ns, |lines| lines.cloned().collect());
        self.with_reader("log chunk", |conn| logs::fold(conn, heads, start_ns, end_ns, filter, init, visit))
    }

    /// Runs `f` on a pooled read connection; its error names what was being read.
    fn with_reader<T>(
        &self,
        what: &'static str,
        f: impl FnOnce(&Connection) -> Result<T, String>,
    ) -> Result<T, StoreError> {
        let conn = self.reader()?;
        let result = f(&conn);
        self.readers.lock().expect("reader pool poisoned").push(conn);
        result.map_err(|detail| StoreError::Corrupt { path: self.path.clone(), what, detail })
    }

    /// Log lines as they are committed, batch by batch (a listener too slow for
    /// `LOG_FEED_BATCHES` batches is told how many it missed).
    pub fn subscribe_logs(&self) -> tokio::sync::broadcast::Receiver<Arc<Vec<logs::LogStreamIn>>> {
        self.log_feed.subscribe()
    }

    /// Label sets of the log streams matching every matcher that have lines in `[start_ns, end_ns)`.
    pub fn log_series(&self, matchers: &[Matcher], start_ns: i64, end_ns: i64) -> Result<Vec<LabelSet>, StoreError> {
        let heads =
            self.logs.read().expect("logs lock poisoned").select_heads(matchers, start_ns, end_ns, logs::HeadCount::of);
        self.with_reader("log chunk", |conn| logs::series(conn, heads, start_ns, end_ns))
    }

    /// What `[start_ns, end_ns)` holds for the matching streams: streams, chunks, lines, bytes of text.
    pub fn log_stats(&self, matchers: &[Matcher], start_ns: i64, end_ns: i64) -> Result<logs::LogStats, StoreError> {
        let heads =
            self.logs.read().expect("logs lock poisoned").select_heads(matchers, start_ns, end_ns, logs::HeadCount::of);
        self.with_reader("log chunk", |conn| logs::stats(conn, heads, start_ns, end_ns))
    }

    /// Sealed log chunks: how many, their text and their stored (compressed) size.
    pub fn log_storage(&self) -> Result<LogStorage, StoreError> {
        let conn = self.reader()?;
        let r = conn.query_row(
            "SELECT count(*), coalesce(sum(raw_bytes), 0), coalesce(sum(length(data)), 0) FROM log_chunks",
            [],
            |r| {
                Ok(LogStorage {
                    chunks: r.get::<_, i64>(0)? as u64,
                    raw_bytes: r.get::<_, i64>(1)? as u64,
                    stored_bytes: r.get::<_, i64>(2)? as u64,
                })
            },
        );
        self.readers.lock().expect("reader pool poisoned").push(conn);
        r.map_err(self.sql_err())
    }

    pub fn log_label_names(&self) -> Vec<String> {
        self.logs.read().expect("logs lock poisoned").label_names()
    }

    pub fn log_label_values(&self, name: &str) -> Vec<String> {
        self.logs.read().expect("logs lock poisoned").label_values(name)
    }

    /// Series matching every matcher, with their samples in `start_ms..=end_ms`; series without samples
    /// there are left out.
    pub fn select(&self, matchers: &[Matcher], start_ms: i64, end_ms: i64) -> Result<Vec<SeriesData>, StoreError> {
        self.select_within(matchers, start_ms, end_ms, &crate::query::Budget::none())
    }

    /// `select` that stops between series once `budget` is spent (past its deadline, cancelled, or
    /// over its samples), returning what it read so far: the caller checks the budget after.
    pub fn select_within(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        budget: &crate::query::Budget,
    ) -> Result<Vec<SeriesData>, StoreError> {
        let picked: Vec<(SeriesId, LabelSet)> = {
            let index = self.index.read().expect("index lock poisoned");
            index.select(matchers).into_iter().filter_map(|id| Some((id, index.labels(id)?.clone()))).collect()
        };
        // Head first: a chunk sealed meanwhile is then found in SQLite, and samples it shares with
        // the copy of the head are cut off below by the head's first timestamp.
        let mut out: Vec<(SeriesId, LabelSet, Samples, Option<i64>)> = Vec::with_capacity(picked.len());
        {
            let head = self.head.read().expect("head lock poisoned");
            for (id, labels) in picked {
                let mut head_samples = Samples::default();
                let mut head_first = None;
                if let Some(hs) = head.get(id as usize).and_then(|h| h.as_ref()) {
                    if hs.open.first_ts().is_some_and(|t| t <= end_ms) && hs.last_ts >= start_ms {
                        hs.open.decode_into(&mut head_samples.ts, &mut head_samples.values);
                    }
                    head_first = hs.open.first_ts();
                }
                out.push((id, labels, head_samples, head_first));
            }
        }
        let conn = self.reader()?;
        let result = (|| -> Result<Vec<SeriesData>, rusqlite::Error> {
            let mut stmt = conn.prepare_cached(
                "SELECT data FROM chunks WHERE series_id = ?1 AND t_min <= ?2 AND t_max >= ?3 ORDER BY t_min",
            )?;
            let mut series = Vec::with_capacity(out.len());
            for (id, labels, head_samples, head_first) in out {
                if budget.spent().is_some() {
                    break;
                }
                let chunk_end = head_first.map_or(end_ms, |h| end_ms.min(h - 1));
                let mut all = Samples::default();
                if chunk_end >= start_ms {
                    let mut rows = stmt.query(params![id, chunk_end, start_ms])?;
                    while let Some(row) = rows.next()? {
                        let data = row.get_ref(0)?.as_blob()?;
                        chunk::decode(data, &mut all.ts, &mut all.values).map_err(|e| {
                            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e))
                        })?;
                    }
                    keep_range(&mut all, start_ms, chunk_end);
                }
                let mut head_samples = head_samples;
                keep_range(&mut head_samples, start_ms, end_ms);
                all.ts.extend_from_slice(&head_samples.ts);
                all.values.extend_from_slice(&head_samples.values);
                budget.load(all.ts.len());
                if !all.ts.is_empty() {
                    series.push(SeriesData { labels, samples: all });
                }
            }
            Ok(series)
        })();
        let result = result.map_err(self.sql_err());
        self.readers.lock().expect("reader pool poisoned").push(conn);
        result
    }

    /// Label sets of the series matching every matcher (all series when `matchers` is empty).
    pub fn series(&self, matchers: &[Matcher]) -> Vec<LabelSet> {
        let index = self.index.read().expect("index lock poisoned");
        index.select(matchers).into_iter().filter_map(|id| index.labels(id).cloned()).collect()
    }

    pub fn label_names(&self) -> Vec<String> {
        self.index.read().expect("index lock poisoned").label_names()
    }

    pub fn label_values(&self, name: &str) -> Vec<String> {
        self.index.read().expect("index lock poisoned").label_values(name)
    }

    pub fn series_count(&self) -> usize {
        self.index.read().expect("index lock poisoned").len()
    }

    /// Where the bytes on disk go: pages in use, free pages kept for reuse (the head log's rows are
    /// deleted at each checkpoint and their pages reused by the next ones), the WAL, and chunk payloads.
    pub fn disk_usage(&self) -> Result<DiskUsage, StoreError> {
        let w = self.writer.lock().expect("writer lock poisoned");
        let q = |sql: &str| w.conn.query_row(sql, [], |r| r.get::<_, Option<i64>>(0)).map(|v| v.unwrap_or(0) as u64);
        let sql = self.sql_err();
        let page = q("PRAGMA page_size").map_err(&sql)?;
        let pages = q("PRAGMA page_count").map_err(&sql)?;
        let free = q("PRAGMA freelist_count").map_err(&sql)?;
        let chunk_bytes = q("SELECT sum(length(data)) FROM chunks").map_err(&sql)?;
        let chunks = q("SELECT count(*) FROM chunks").map_err(&sql)?;
        let wal = std::fs::metadata(self.path.with_extension("db-wal")).map_or(0, |m| m.len());
        Ok(DiskUsage {
            used_bytes: (pages - free) * page,
            free_bytes: free * page,
            wal_bytes: wal,
            chunk_bytes,
            chunks,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn reader(&self) -> Result<Connection, StoreError> {
        if let Some(c) = self.readers.lock().expect("reader pool poisoned").pop() {
            return Ok(c);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(self.sql_err())?;
        Ok(conn)
    }
}

fn keep_range(s: &mut Samples, start: i64, end: i64) {
    let lo = s.ts.partition_point(|&t| t < start);
    let hi = s.ts.partition_point(|&t| t <= end);
    if lo > 0 || hi < s.ts.len() {
        s.ts = s.ts[lo..hi.max(lo)].to_vec();
        s.values = s.values[lo..hi.max(lo)].to_vec();
    }
}

fn seal(id: SeriesId, open: &ChunkAppender) -> (SeriesId, i64, i64, Vec<u8>) {
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

fn insert_chunks(
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

/// Labels are stored as a JSON array of `[name, value]` pairs: unambiguous for any string.
fn encode_labels(labels: &LabelSet) -> String {
    let pairs: Vec<[&str; 2]> = labels.iter().map(|(k, v)| [k, v]).collect();
    serde_json::to_string(&pairs).expect("string pairs always serialize")
}

fn decode_labels(text: &str) -> Result<LabelSet, String> {
    let pairs: Vec<(String, String)> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    Ok(LabelSet::from_pairs(pairs))
}

impl crate::query::Queryable for Store {
    fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<SeriesData>, crate::query::QueryError> {
        Store::select(self, matchers, start_ms, end_ms).map_err(|e| crate::query::QueryError::Storage(e.to_string()))
    }

    fn select_within(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        budget: &crate::query::Budget,
    ) -> Result<Vec<SeriesData>, crate::query::QueryError> {
        let found = Store::select_within(self, matchers, start_ms, end_ms, budget)
            .map_err(|e| crate::query::QueryError::Storage(e.to_string()))?;
        budget.check()?;
        Ok(found)
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_logs;
