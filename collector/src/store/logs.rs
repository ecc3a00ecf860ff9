//! Log streams in SQLite: a stream is a label set; its lines gather in a head (one `log_head` row per
//! batch, so every ack is durable) until about 256 KiB, then become one deflated `log_chunks` row.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::{params, Connection, Transaction};

use super::{logchunk, StoreError};
use crate::model::logs::{LogLine, LogStreamIn, LogStreamOut};
use crate::model::{LabelSet, Matcher};
use crate::query::logql::LinePrefilter;
use crate::query::QueryError;

/// A stream's head is sealed into a chunk at this many bytes of text.
pub const CHUNK_RAW_BYTES: usize = 256 * 1024;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log_streams (id INTEGER PRIMARY KEY, labels TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS log_chunks (
    id INTEGER PRIMARY KEY, stream_id INTEGER NOT NULL, t_min INTEGER NOT NULL, t_max INTEGER NOT NULL,
    lines INTEGER NOT NULL, raw_bytes INTEGER NOT NULL, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS log_chunks_stream ON log_chunks (stream_id, t_max);
CREATE INDEX IF NOT EXISTS log_chunks_t_max ON log_chunks (t_max);
CREATE TABLE IF NOT EXISTS log_head (id INTEGER PRIMARY KEY, stream_id INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS log_resume (
    agent_id TEXT NOT NULL, source TEXT NOT NULL, state BLOB NOT NULL, PRIMARY KEY (agent_id, source));
";

/// Records where an agent's reading of `source` stands, in the batch's transaction.
pub fn write_resume(tx: &Transaction, agent_id: &str, resume: &[(String, Vec<u8>)]) -> rusqlite::Result<()> {
    let mut stmt =
        tx.prepare_cached("INSERT OR REPLACE INTO log_resume (agent_id, source, state) VALUES (?1, ?2, ?3)")?;
    for (source, state) in resume {
        stmt.execute(params![agent_id, source, state])?;
    }
    Ok(())
}

/// Matching streams with what was taken of their heads, and the newest chunk id at that moment:
/// chunks sealed later hold head lines already taken, so readers leave them out.
pub type Heads<T> = (Vec<(u32, LabelSet, T)>, i64);

/// Lines and bytes of text of a stream's head within a time range.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeadCount {
    pub lines: u64,
    pub bytes: u64,
}

impl HeadCount {
    pub fn of(lines: &mut dyn Iterator<Item = &LogLine>) -> HeadCount {
        lines.fold(HeadCount::default(), |c, l| HeadCount { lines: c.lines + 1, bytes: c.bytes + l.line.len() as u64 })
    }
}

#[derive(Default)]
struct HeadStream {
    lines: Vec<LogLine>,
    raw_bytes: usize,
}

/// The writer's and readers' view of log streams: ids, labels, and the unsealed heads.
#[derive(Default)]
pub struct LogState {
    ids: HashMap<LabelSet, u32>,
    labels: Vec<LabelSet>,
    heads: Vec<HeadStream>,
    /// Per stream, its newest line's time (in a chunk or the head): pushers' lines further behind it
    /// than their window are refused.
    newest: Vec<i64>,
    /// The newest chunk's id: a reader takes heads and this together, and reads only chunks up to it,
    /// so a head sealed meanwhile is not read twice.
    last_chunk: i64,
}

/// What a batch does to the log state, applied only after its transaction commits.
#[derive(Default)]
pub struct Staged {
    new_streams: Vec<(u32, LabelSet)>,
    /// Per stream: lines to add to the head, or `sealed` to empty it first.
    changes: Vec<(u32, bool, Vec<LogLine>)>,
    last_chunk: Option<i64>,
    pub lines: u64,
    /// Lines refused for being too far behind their stream's newest, and the first of them.
    pub behind: u64,
    pub first_behind: Option<Behind>,
}

/// A line refused for being older than its stream's window allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Behind {
    pub labels: LabelSet,
    pub time_ns: i64,
    pub oldest_acceptable_ns: i64,
}

impl Staged {
    pub fn changes_len(&self) -> usize {
        self.changes.len()
    }
}

impl LogState {
    /// Rebuilds streams and heads from the database.
    pub fn load(conn: &Connection) -> Result<LogState, String> {
        let mut s = LogState::default();
        let mut stmt = conn.prepare("SELECT id, labels FROM log_streams ORDER BY id").map_err(|e| e.to_string())?;
        let rows =
            stmt.query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?))).map_err(|e| e.to_string())?;
        for row in rows {
            let (id, text) = row.map_err(|e| e.to_string())?;
            let labels = super::decode_labels(&text).map_err(|e| format!("log stream {id}: {e}"))?;
            s.insert_stream(id, labels);
        }
        s.last_chunk = conn
            .query_row("SELECT coalesce(max(id), 0) FROM log_chunks", [], |r| r.get(0))
            .map_err(|e| e.to_string())?;
        let mut stmt = conn.prepare("SELECT stream_id, data FROM log_head ORDER BY id").map_err(|e| e.to_string())?;
        let mut rows = stmt.query([]).map_err(|e| e.to_string())?;
        while let Some(row) = rows.next().map_err(|e| e.to_string())? {
            let id: u32 = row.get(0).map_err(|e| e.to_string())?;
            let data = row.get_ref(1).and_then(|v| v.as_blob().map_err(Into::into)).map_err(|e| e.to_string())?;
            let mut lines = Vec::new();
            logchunk::decode(data, &mut lines).map_err(|e| format!("log head of stream {id}: {e}"))?;
            let head = s.heads.get_mut(id as usize).ok_or_else(|| format!("log head of unknown stream {id}"))?;
            head.raw_bytes += lines.iter().map(|l| l.line.len()).sum::<usize>();
            head.lines.extend(lines);
        }
        let mut stmt = conn
            .prepare("SELECT stream_id, max(t_max) FROM log_chunks GROUP BY stream_id")
            .map_err(|e| e.to_string())?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, i64>(1)?))).map_err(|e| e.to_string())?;
        for row in rows {
            let (id, t_max) = row.map_err(|e| e.to_string())?;
            if let Some(n) = s.newest.get_mut(id as usize) {
                *n = (*n).max(t_max);
            }
        }
        for (n, head) in s.newest.iter_mut().zip(&s.heads) {
            *n = head.lines.iter().map(|l| l.time_ns).fold(*n, i64::max);
        }
        Ok(s)
    }

    pub fn labels_of(&self, id: u32) -> Option<&LabelSet> {
        self.labels.get(id as usize).filter(|l| !l.is_empty())
    }

    fn insert_stream(&mut self, id: u32, labels: LabelSet) {
        let slot = id as usize;
        if self.labels.len() <= slot {
            self.labels.resize_with(slot + 1, LabelSet::default);
            self.heads.resize_with(slot + 1, HeadStream::default);
            self.newest.resize(slot + 1, i64::MIN);
        }
        self.ids.insert(labels.clone(), id);
        self.labels[slot] = labels;
    }

    /// Writes a batch's streams inside the batch's transaction; returns what to apply after commit.
    /// With `window_ns`, a line older than its stream's newest (stored, or earlier in this batch) by
    /// more than the window is refused, as Loki refuses out-of-order lines; agents' lines never are.
    pub fn write(
        &self,
        tx: &Transaction,
        mut streams: Vec<LogStreamIn>,
        window_ns: Option<i64>,
        export: Option<&mut Vec<u8>>,
    ) -> rusqlite::Result<Staged> {
        let mut export = export;
        let mut staged = Staged::default();
        let mut next_id = self.labels.len() as u32;
        let mut pending: HashMap<LabelSet, u32> = HashMap::new();
        let mut ins_stream = tx.prepare_cached("INSERT INTO log_streams (id, labels) VALUES (?1, ?2)")?;
        let mut ins_head = tx.prepare_cached("INSERT INTO log_head (stream_id, data) VALUES (?1, ?2)")?;
        let mut ins_chunk = tx.prepare_cached(
            "INSERT INTO log_chunks (stream_id, t_min, t_max, lines, raw_bytes, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut del_head = tx.prepare_cached("DELETE FROM log_head WHERE stream_id = ?1")?;
        // Raw bytes added to each stream's head earlier in this same batch.
        let mut added: HashMap<u32, usize> = HashMap::new();
        if let Some(window) = window_ns {
            let mut newest: HashMap<&LabelSet, i64> = HashMap::new();
            for s in &mut streams {
                let n = newest.entry(&s.labels).or_insert_with(|| {
                    self.ids.get(&s.labels).and_then(|&id| self.newest.get(id as usize)).copied().unwrap_or(i64::MIN)
                });
                s.lines.retain(|l| {
                    let oldest = n.saturating_sub(window);
                    if l.time_ns < oldest {
                        staged.behind += 1;
                        staged.first_behind.get_or_insert_with(|| Behind {
                            labels: s.labels.clone(),
                            time_ns: l.time_ns,
                            oldest_acceptable_ns: oldest,
                        });
                        return false;
                    }
                    *n = (*n).max(l.time_ns);
                    true
                });
            }
        }
        for s in streams {
            if s.lines.is_empty() {
                continue;
            }
            let id = match self.ids.get(&s.labels).or_else(|| pending.get(&s.labels)) {
                Some(&id) => id,
                None => {
                    let id = next_id;
                    next_id += 1;
                    ins_stream.execute(params![id, super::encode_labels(&s.labels)])?;
                    pending.insert(s.labels.clone(), id);
                    staged.new_streams.push((id, s.labels.clone()));
                    id
                }
            };
            staged.lines += s.lines.len() as u64;
            if let Some(out) = export.as_deref_mut() {
                super::export::put_stream(out, id, &s.lines);
            }
            let raw: usize = s.lines.iter().map(|l| l.line.len()).sum();
            let head_raw =
                self.heads.get(id as usize).map_or(0, |h| h.raw_bytes) + added.get(&id).copied().unwrap_or(0);
            if head_raw + raw < CHUNK_RAW_BYTES {
                ins_head.execute(params![id, logchunk::encode_head(&s.lines)])?;
                *added.entry(id).or_default() += raw;
                staged.changes.push((id, false, s.lines));
                continue;
            }
            // Seal: the head so far (stored and staged in this batch) and these lines become one chunk.
            let mut lines: Vec<LogLine> = self.heads.get(id as usize).map(|h| h.lines.clone()).unwrap_or_default();
            for (cid, sealed, more) in &staged.changes {
                if *cid == id {
                    if *sealed {
                        lines.clear();
                    }
                    lines.extend(more.iter().cloned());
                }
            }
            lines.extend(s.lines);
            lines.sort_by_key(|l| l.time_ns);
            let t_min = lines.first().map_or(0, |l| l.time_ns);
            let t_max = lines.last().map_or(0, |l| l.time_ns);
            let raw_bytes: usize = lines.iter().map(|l| l.line.len()).sum();
            ins_chunk.execute(params![
                id,
                t_min,
                t_max,
                lines.len() as i64,
                raw_bytes as i64,
                logchunk::encode(&lines)
            ])?;
            staged.last_chunk = Some(tx.last_insert_rowid());
            del_head.execute(params![id])?;
            added.insert(id, 0);
            staged.changes.push((id, true, Vec::new()));
        }
        Ok(staged)
    }

    /// Seals every head whose oldest line is at least `max_age_ns` older than `now_ns`, so that a
    /// quiet stream's lines leave the per-batch head rows (and memory) for a compressed chunk.
    pub fn seal_old(&self, tx: &Transaction, now_ns: i64, max_age_ns: i64) -> rusqlite::Result<Staged> {
        let mut staged = Staged::default();
        let mut ins_chunk = tx.prepare_cached(
            "INSERT INTO log_chunks (stream_id, t_min, t_max, lines, raw_bytes, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut del_head = tx.prepare_cached("DELETE FROM log_head WHERE stream_id = ?1")?;
        for (id, head) in self.heads.iter().enumerate() {
            let Some(oldest) = head.lines.iter().map(|l| l.time_ns).min() else { continue };
            if now_ns.saturating_sub(oldest) < max_age_ns {
                continue;
            }
            let mut lines = head.lines.clone();
            lines.sort_by_key(|l| l.time_ns);
            let t_max = lines.last().map_or(0, |l| l.time_ns);
            ins_chunk.execute(params![
                id as u32,
                oldest,
                t_max,
                lines.len() as i64,
                head.raw_bytes as i64,
                logchunk::encode(&lines)
            ])?;
            staged.last_chunk = Some(tx.last_insert_rowid());
            del_head.execute(params![id as u32])?;
            staged.changes.push((id as u32, true, Vec::new()));
        }
        Ok(staged)
    }

    /// Publishes a committed batch.
    pub fn apply(&mut self, staged: Staged) {
        if let Some(c) = staged.last_chunk {
            self.last_chunk = c;
        }
        for (id, labels) in staged.new_streams {
            self.insert_stream(id, labels);
        }
        for (id, sealed, lines) in staged.changes {
            let head = &mut self.heads[id as usize];
            if sealed {
                *head = HeadStream::default();
            }
            head.raw_bytes += lines.iter().map(|l| l.line.len()).sum::<usize>();
            let n = &mut self.newest[id as usize];
            *n = lines.iter().map(|l| l.time_ns).fold(*n, i64::max);
            head.lines.extend(lines);
        }
    }

    /// Streams whose labels match, each with `take` of its head lines in `[start_ns, end_ns)` (a copy
    /// for reads, a count for series and stats), and the newest chunk id that goes with them.
    pub fn select_heads<T>(
        &self,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
        take: impl Fn(&mut dyn Iterator<Item = &LogLine>) -> T,
    ) -> Heads<T> {
        let heads = self
            .labels
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.is_empty() && matchers.iter().all(|m| m.matches_labels(l)))
            .map(|(id, l)| {
                let mut lines = self.heads[id].lines.iter().filter(|x| x.time_ns >= start_ns && x.time_ns < end_ns);
                (id as u32, l.clone(), take(&mut lines))
            })
            .collect();
        (heads, self.last_chunk)
    }

    pub fn label_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.labels.iter().flat_map(|l| l.iter().map(|(k, _)| k.to_string())).collect();
        names.sort();
        names.dedup();
        names
    }

    pub fn label_values(&self, name: &str) -> Vec<String> {
        let mut vals: Vec<String> = self.labels.iter().filter_map(|l| l.get(name).map(str::to_string)).collect();
        vals.sort();
        vals.dedup();
        vals
    }
}

/// Reads the sealed chunks of `streams` overlapping `[start_ns, end_ns)` and merges them with the head
/// lines given, each stream in time order; only lines passing `filter` are copied out. Chunks are
/// inflated on every core: a scan over gigabytes is bound by inflating.
pub fn read(
    conn: &Connection,
    (streams, last_chunk): Heads<Vec<LogLine>>,
    start_ns: i64,
    end_ns: i64,
    filter: &LinePrefilter<'_>,
) -> Result<Vec<LogStreamOut>, String> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, data FROM log_chunks WHERE stream_id = ?1 AND t_max >= ?2 AND t_min < ?3 AND id <= ?4",
        )
        .map_err(|e| e.to_string())?;
    // Every chunk's blob, tagged with its stream's place in `streams`, in the order the chunks were
    // sealed. Sorted here: an ORDER BY had SQLite sort the blobs themselves (a third of a search).
    let mut blobs: Vec<(usize, i64, Vec<u8>)> = Vec::new();
    for (i, (id, _, _)) in streams.iter().enumerate() {
        if filter.spent() {
            break;
        }
        let mut rows = stmt.query(params![id, start_ns, end_ns, last_chunk]).map_err(|e| e.to_string())?;
        while let Some(row) = rows.next().map_err(|e| e.to_string())? {
            blobs.push((i, row.get(0).map_err(|e| e.to_string())?, row.get(1).map_err(|e| e.to_string())?));
        }
    }
    blobs.sort_unstable_by_key(|&(i, id, _)| (i, id));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(blobs.len().max(1));
    let per = blobs.len().div_ceil(threads).max(1);
    // Per thread: each chunk's lines with the index of the request they answer, or why not.
    type Decoded = Result<Vec<(usize, Vec<LogLine>)>, String>;
    let decoded: Vec<Decoded> = std::thread::scope(|scope| {
        let handles: Vec<_> = blobs
            .chunks(per)
            .map(|part| {
                scope.spawn(move || {
                    let mut out = Vec::with_capacity(part.len());
                    for (i, _, data) in part {
                        if filter.spent() {
                            break;
                        }
                        let mut lines = Vec::new();
                        logchunk::decode_where(data, start_ns..=end_ns.saturating_sub(1), filter, &mut lines)
                            .map_err(|e| format!("log chunk: {e}"))?;
                        out.push((*i, lines));
                    }
                    Ok(out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("a chunk decoder panicked".into()))).collect()
    });
    let mut per_stream: Vec<Vec<LogLine>> = vec![Vec::new(); streams.len()];
    for part in decoded {
        for (i, lines) in part? {
            per_stream[i].extend(lines);
        }
    }
    let mut out = Vec::with_capacity(streams.len());
    for ((_, labels, head), mut lines) in streams.into_iter().zip(per_stream) {
        lines.extend(head.into_iter().filter(|l| filter.keep.is_none_or(|keep| keep(&l.line))));
        if lines.is_empty() {
            continue;
        }
        // Stable: lines with equal times keep the order they were written in.
        lines.sort_by_key(|l| l.time_ns);
        out.push(LogStreamOut { labels, lines });
    }
    Ok(out)
}

/// Compressed chunk bytes one round of `fold` holds at most: what bounds its memory, whatever the
/// time range.
const FOLD_ROUND_BYTES: u64 = 32 << 20;

/// Folds every line of `streams` in `[start_ns, end_ns)` into accumulators without copying a line
/// out: `visit(acc, labels, time, order, line)` on each, where `order` ranks the lines of one stream
/// as they were written (sealed chunks by id, then the head), chunks inflated on every core (one accumulator
/// from `init` per thread and per round, all returned for the caller to merge), sealed chunks read
/// in rounds of at most `FOLD_ROUND_BYTES`. Chunks lacking a needle of `filter` are skipped; it
/// stops between chunks once `filter`'s budget is spent (the caller checks it).
pub fn fold<A: Send>(
    conn: &Connection,
    (streams, last_chunk): Heads<Vec<LogLine>>,
    start_ns: i64,
    end_ns: i64,
    filter: &LinePrefilter<'_>,
    init: &(dyn Fn() -> A + Sync),
    visit: &(dyn Fn(&mut A, &LabelSet, i64, u64, &str) + Sync),
) -> Result<Vec<A>, String> {
    let e = |e: rusqlite::Error| e.to_string();
    let mut list = conn
        .prepare_cached(
            "SELECT id, length(data) FROM log_chunks WHERE stream_id = ?1 AND t_max >= ?2 AND t_min < ?3 AND id <= ?4",
        )
        .map_err(e)?;
    let mut chunks: Vec<(usize, i64, u64)> = Vec::new();
    for (i, (id, _, _)) in streams.iter().enumerate() {
        let mut rows = list.query(params![id, start_ns, end_ns, last_chunk]).map_err(e)?;
        while let Some(row) = rows.next().map_err(e)? {
            chunks.push((i, row.get(0).map_err(e)?, row.get::<_, i64>(1).map_err(e)? as u64));
        }
    }
    drop(list);
    let times = start_ns..=end_ns.saturating_sub(1);
    let mut out = Vec::new();
    let mut head = init();
    for (_, labels, lines) in &streams {
        for (k, l) in lines.iter().enumerate().filter(|(_, l)| times.contains(&l.time_ns)) {
            visit(&mut head, labels, l.time_ns, (u64::from(u32::MAX) << 32) | k as u64, &l.line);
        }
    }
    out.push(head);
    let mut blob = conn.prepare_cached("SELECT data FROM log_chunks WHERE id = ?1").map_err(e)?;
    // Chunks ordered as sealed within each stream, so their place in `chunks` ranks their lines.
    chunks.sort_unstable_by_key(|&(i, id, _)| (i, id));
    let mut rest = &chunks[..];
    let mut first = 0usize;
    while !rest.is_empty() && !filter.spent() {
        let mut bytes = 0u64;
        // Chunks while the round is under its bytes (at least one, however large).
        let take = rest
            .iter()
            .take_while(|c| {
                let before = bytes;
                bytes += c.2;
                before < FOLD_ROUND_BYTES
            })
            .count();
        let (round, after) = rest.split_at(take.max(1));
        rest = after;
        let mut blobs: Vec<(usize, u64, Vec<u8>)> = Vec::with_capacity(round.len());
        for (j, &(i, id, _)) in round.iter().enumerate() {
            blobs.push((i, (first + j) as u64, blob.query_row(params![id], |r| r.get(0)).map_err(e)?));
        }
        first += round.len();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(blobs.len().max(1));
        let per = blobs.len().div_ceil(threads).max(1);
        let folded: Vec<Result<A, String>> = std::thread::scope(|scope| {
            let handles: Vec<_> = blobs
                .chunks(per)
                .map(|part| {
                    let (streams, times) = (&streams, &times);
                    scope.spawn(move || {
                        let mut acc = init();
                        for (i, place, data) in part {
                            if filter.spent() {
                                break;
                            }
                            let labels = &streams[*i].1;
                            let mut k = 0u64;
                            logchunk::visit_where(data, times.clone(), filter, |t, line| {
                                visit(&mut acc, labels, t, (place << 32) | k, line);
                                k += 1;
                            })
                            .map_err(|e| format!("log chunk: {e}"))?;
                        }
                        Ok(acc)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("a chunk decoder panicked".into()))).collect()
        });
        for acc in folded {
            out.push(acc?);
        }
    }
    Ok(out)
}

/// Matching streams that have a line in `[start_ns, end_ns)`: in the head, or in a sealed chunk
/// whose time range overlaps.
pub fn series(
    conn: &Connection,
    (streams, last_chunk): Heads<HeadCount>,
    start_ns: i64,
    end_ns: i64,
) -> Result<Vec<LabelSet>, String> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT 1 FROM log_chunks WHERE stream_id = ?1 AND t_max >= ?2 AND t_min < ?3 AND id <= ?4 LIMIT 1",
        )
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for (id, labels, head) in streams {
        if head.lines > 0 || stmt.exists(params![id, start_ns, end_ns, last_chunk]).map_err(|e| e.to_string())? {
            out.push(labels);
        }
    }
    Ok(out)
}

/// Loki's `index/stats` answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LogStats {
    pub streams: u64,
    pub chunks: u64,
    pub entries: u64,
    pub bytes: u64,
}

/// Counts from chunk rows (a chunk overlapping the range counts whole, as Loki's index does) and
/// from head lines in the range; a stream counts when it has either.
pub fn stats(
    conn: &Connection,
    (streams, last_chunk): Heads<HeadCount>,
    start_ns: i64,
    end_ns: i64,
) -> Result<LogStats, String> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT count(*), coalesce(sum(lines), 0), coalesce(sum(raw_bytes), 0) FROM log_chunks
             WHERE stream_id = ?1 AND t_max >= ?2 AND t_min < ?3 AND id <= ?4",
        )
        .map_err(|e| e.to_string())?;
    let mut st = LogStats::default();
    for (id, _, head) in streams {
        let (chunks, lines, bytes): (i64, i64, i64) = stmt
            .query_row(params![id, start_ns, end_ns, last_chunk], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| e.to_string())?;
        if chunks == 0 && head.lines == 0 {
            continue;
        }
        st.streams += 1;
        st.chunks += chunks as u64 + u64::from(head.lines > 0);
        st.entries += lines as u64 + head.lines;
        st.bytes += bytes as u64 + head.bytes;
    }
    Ok(st)
}

impl super::Store {
    /// The matching streams' head lines in the range, and (in the same snapshot) the newest chunk
    /// id: chunks sealed after it hold head lines already taken, so readers leave them out.
    fn heads(&self, matchers: &[Matcher], start_ns: i64, end_ns: i64) -> Heads<Vec<LogLine>> {
        self.logs
            .read()
            .expect("logs lock poisoned")
            .select_heads(matchers, start_ns, end_ns, |lines| lines.cloned().collect())
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

    /// Log lines as they are committed, batch by batch (a listener too slow for
    /// `LOG_FEED_BATCHES` batches is told how many it missed).
    pub fn subscribe_logs(&self) -> tokio::sync::broadcast::Receiver<Arc<Vec<LogStreamIn>>> {
        self.log_feed.subscribe()
    }

    /// Label sets of the log streams matching every matcher that have lines in `[start_ns, end_ns)`.
    pub fn log_series(&self, matchers: &[Matcher], start_ns: i64, end_ns: i64) -> Result<Vec<LabelSet>, StoreError> {
        let heads =
            self.logs.read().expect("logs lock poisoned").select_heads(matchers, start_ns, end_ns, HeadCount::of);
        self.with_reader("log chunk", |conn| series(conn, heads, start_ns, end_ns))
    }

    /// What `[start_ns, end_ns)` holds for the matching streams: streams, chunks, lines, bytes of text.
    pub fn log_stats(&self, matchers: &[Matcher], start_ns: i64, end_ns: i64) -> Result<LogStats, StoreError> {
        let heads =
            self.logs.read().expect("logs lock poisoned").select_heads(matchers, start_ns, end_ns, HeadCount::of);
        self.with_reader("log chunk", |conn| stats(conn, heads, start_ns, end_ns))
    }

    pub fn log_label_names(&self) -> Vec<String> {
        self.logs.read().expect("logs lock poisoned").label_names()
    }

    pub fn log_label_values(&self, name: &str) -> Vec<String> {
        self.logs.read().expect("logs lock poisoned").label_values(name)
    }
}

/// LogQL (and the gates' error counts) read the store's lines through LogQL's seam, as PromQL
/// reads samples through `Queryable`.
impl crate::query::logql::LogQueryable for super::Store {
    fn fold_logs<A: Send>(
        &self,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
        filter: &LinePrefilter<'_>,
        init: &(dyn Fn() -> A + Sync),
        visit: &(dyn Fn(&mut A, &LabelSet, i64, u64, &str) + Sync),
    ) -> Result<Vec<A>, QueryError> {
        let heads = self.heads(matchers, start_ns, end_ns);
        self.with_reader("log chunk", |conn| fold(conn, heads, start_ns, end_ns, filter, init, visit))
            .map_err(|e| QueryError::Storage(e.to_string()))
    }

    fn select_logs(&self, matchers: &[Matcher], start_ns: i64, end_ns: i64) -> Result<Vec<LogStreamOut>, QueryError> {
        let heads = self.heads(matchers, start_ns, end_ns);
        self.with_reader("log chunk", |conn| read(conn, heads, start_ns, end_ns, &LinePrefilter::default()))
            .map_err(|e| QueryError::Storage(e.to_string()))
    }
}
