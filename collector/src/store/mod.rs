//! The collector's storage: series, compressed sample chunks and the head log in one SQLite file.
//! The only module that sees SQLite; everything else calls `Store` with plain `model` types.
//!
//! Layout: each series' newest samples sit in an open chunk in memory (the head). Every batch is
//! committed as one head-log row (the raw samples it added) in the same transaction that records the
//! agent's sequence number, so an ack means durable. A chunk that reaches `CHUNK_TARGET_SAMPLES` is
//! sealed and written to `chunks`. A checkpoint writes the open chunks to `head_snapshot` and empties
//! the head log, so recovery replays only what came after it.

pub(crate) mod chunk;
pub mod decisions;
pub mod export;
mod headlog;
mod index;
pub(crate) mod logchunk;
pub mod logs;
mod read;
mod retention;
mod write;

/// The sample and log chunk codecs, for the fuzz targets (feature `fuzzing`); internal otherwise.
#[cfg(feature = "fuzzing")]
pub mod codecs {
    pub use super::chunk::{decode as decode_samples, encode as encode_samples};
    pub use super::logchunk::{decode as decode_lines, decode_where as decode_lines_where, encode as encode_lines};
}

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rusqlite::{params, Connection};

use crate::model::logs::LogStreamIn;
use crate::model::{LabelSet, Samples};
use chunk::{ChunkAppender, CHUNK_TARGET_SAMPLES};
pub use index::SeriesId;
use index::SeriesIndex;
use write::{insert_chunks, seal};

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
    /// Pushed log lines refused for being too far behind their stream's newest line, and the first.
    pub log_lines_behind: u64,
    pub first_behind: Option<logs::Behind>,
    pub new_series: u64,
}

/// A batch's log lines and where the agent's reading stands after them (source, opaque state).
#[derive(Clone, Debug, Default)]
pub struct LogBatchIn {
    pub streams: Vec<LogStreamIn>,
    pub resume: Vec<(String, Vec<u8>)>,
    /// For pushers (Loki's API): lines further behind their stream's newest than this are refused.
    pub window_ns: Option<i64>,
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
    /// Keep every committed batch's samples (log lines) in the export log too, for exporters.
    pub export_samples: bool,
    pub export_logs: bool,
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
            export_samples: false,
            export_logs: false,
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
    log_feed: tokio::sync::broadcast::Sender<Arc<Vec<LogStreamIn>>>,
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
        conn.execute_batch(export::SCHEMA).map_err(sql)?;
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

/// Labels are stored as a JSON array of `[name, value]` pairs: unambiguous for any string.
fn encode_labels(labels: &LabelSet) -> String {
    let pairs: Vec<[&str; 2]> = labels.iter().map(|(k, v)| [k, v]).collect();
    serde_json::to_string(&pairs).expect("string pairs always serialize")
}

fn decode_labels(text: &str) -> Result<LabelSet, String> {
    let pairs: Vec<(String, String)> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    Ok(LabelSet::from_pairs(pairs))
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_logs;
