//! The export logs: every committed batch's samples and log lines, in commit order, kept for the
//! exporters (`export/`) with each target's position, until every target has read them.
//!
//! Written in the batch's own transaction when exporters are configured, so what was acked is
//! what will be forwarded, and a restart resumes at the saved position: nothing lost, nothing
//! sent twice beyond the request in flight at a crash. Rows are the head log's sample records
//! (series ids, not labels) and, for logs, stream ids with their lines in the head-row format.

use rusqlite::{params, OptionalExtension};

use super::headlog::{get_uvarint, put_uvarint};
use super::{headlog, logchunk, SeriesId, Store, StoreError};
use crate::model::logs::LogLine;
use crate::model::{LabelSet, Samples};

pub const SCHEMA: &str = "
-- cum_bytes: the bytes of data written to the log up to and including the row, so that a lag in
-- bytes is two lookups by id instead of a scan of what is unsent.
CREATE TABLE IF NOT EXISTS export_samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL, cum_bytes INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS export_logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL, cum_bytes INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS export_positions (target TEXT PRIMARY KEY, position INTEGER NOT NULL);
";

/// Which export log: samples (remote-write) or log lines (Loki push).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportKind {
    Samples,
    Logs,
}

impl ExportKind {
    fn table(self) -> &'static str {
        match self {
            ExportKind::Samples => "export_samples",
            ExportKind::Logs => "export_logs",
        }
    }
}

/// One committed batch as the exporters read it.
#[derive(Debug)]
pub struct ExportRow {
    pub id: i64,
    /// When the batch was committed: the exporters' lag is measured from it.
    pub time_ms: i64,
    pub data: ExportData,
}

#[derive(Debug)]
pub enum ExportData {
    Samples(Vec<(SeriesId, Samples)>),
    /// Per log stream id, its lines in the order they were committed.
    Logs(Vec<(u32, Vec<LogLine>)>),
}

/// How far behind a target is: batches and bytes not yet sent, and the commit time of the oldest.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExportLag {
    pub rows: u64,
    pub bytes: u64,
    pub oldest_ms: Option<i64>,
}

/// Appends one stream's lines to a log export record: varint stream id, varint length, head row.
pub(super) fn put_stream(out: &mut Vec<u8>, id: u32, lines: &[LogLine]) {
    let row = logchunk::encode_head(lines);
    put_uvarint(out, u64::from(id));
    put_uvarint(out, row.len() as u64);
    out.extend_from_slice(&row);
}

fn decode_logs(mut buf: &[u8]) -> Result<Vec<(u32, Vec<LogLine>)>, String> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let id = u32::try_from(get_uvarint(&mut buf)?).map_err(|_| "stream id out of range")?;
        let len = usize::try_from(get_uvarint(&mut buf)?).map_err(|_| "length out of range")?;
        let (row, rest) = buf.split_at_checked(len).ok_or("truncated stream")?;
        buf = rest;
        let mut lines = Vec::new();
        logchunk::decode(row, &mut lines).map_err(|e| e.to_string())?;
        out.push((id, lines));
    }
    Ok(out)
}

fn decode_samples(buf: &[u8]) -> Result<Vec<(SeriesId, Samples)>, String> {
    let mut out: Vec<(SeriesId, Samples)> = Vec::new();
    headlog::for_each_sample(buf, |id, t, v| match out.last_mut().filter(|(last, _)| *last == id) {
        Some((_, s)) => {
            s.ts.push(t);
            s.values.push(v);
        }
        None => out.push((id, Samples { ts: vec![t], values: vec![v] })),
    })?;
    Ok(out)
}

impl Store {
    /// Where `target` stands in `kind`'s export log; a target seen for the first time starts at
    /// the log's end (what is committed from now on), as a new Prometheus remote-write queue does.
    pub fn export_position(&self, kind: ExportKind, target: &str) -> Result<i64, StoreError> {
        let w = self.writer.lock().expect("writer lock poisoned");
        let key = format!("{}:{target}", kind.table());
        let saved: Option<i64> = w
            .conn
            .query_row("SELECT position FROM export_positions WHERE target = ?1", params![key], |r| r.get(0))
            .optional()
            .map_err(self.sql_err())?;
        if let Some(p) = saved {
            return Ok(p);
        }
        let end: i64 = w
            .conn
            .query_row(&format!("SELECT coalesce(max(id), 0) FROM {}", kind.table()), [], |r| r.get(0))
            .map_err(self.sql_err())?;
        w.conn
            .execute("INSERT INTO export_positions (target, position) VALUES (?1, ?2)", params![key, end])
            .map_err(self.sql_err())?;
        Ok(end)
    }

    /// Records that `target` has delivered everything up to and including row `position`.
    pub fn save_export_position(&self, kind: ExportKind, target: &str, position: i64) -> Result<(), StoreError> {
        let w = self.writer.lock().expect("writer lock poisoned");
        let key = format!("{}:{target}", kind.table());
        w.conn
            .prepare_cached(
                "INSERT INTO export_positions (target, position) VALUES (?1, ?2)
                 ON CONFLICT (target) DO UPDATE SET position = ?2",
            )
            .and_then(|mut s| s.execute(params![key, position]))
            .map_err(self.sql_err())?;
        Ok(())
    }

    /// The rows after `after`, in commit order, until about `max_bytes` of them (at least one).
    pub fn read_export(&self, kind: ExportKind, after: i64, max_bytes: usize) -> Result<Vec<ExportRow>, StoreError> {
        self.with_reader("export log", |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT id, time_ms, data FROM {} WHERE id > ?1 ORDER BY id LIMIT ?2",
                    kind.table()
                ))
                .map_err(|e| e.to_string())?;
            let mut rows = stmt.query(params![after, 100_000]).map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            let mut bytes = 0;
            while bytes < max_bytes {
                let Some(row) = rows.next().map_err(|e| e.to_string())? else { break };
                let id: i64 = row.get(0).map_err(|e| e.to_string())?;
                let time_ms: i64 = row.get(1).map_err(|e| e.to_string())?;
                let data = row.get_ref(2).and_then(|v| v.as_blob().map_err(Into::into)).map_err(|e| e.to_string())?;
                bytes += data.len();
                let data = match kind {
                    ExportKind::Samples => {
                        ExportData::Samples(decode_samples(data).map_err(|e| format!("row {id}: {e}"))?)
                    }
                    ExportKind::Logs => ExportData::Logs(decode_logs(data).map_err(|e| format!("row {id}: {e}"))?),
                };
                out.push(ExportRow { id, time_ms, data });
            }
            Ok(out)
        })
    }

    /// What is left to send after `after`: a few lookups by id, however long the backlog.
    pub fn export_lag(&self, kind: ExportKind, after: i64) -> Result<ExportLag, StoreError> {
        let table = kind.table();
        self.with_reader("export log", |conn| {
            let e = |e: rusqlite::Error| e.to_string();
            let last: Option<(i64, i64)> = conn
                .query_row(&format!("SELECT id, cum_bytes FROM {table} ORDER BY id DESC LIMIT 1"), [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
                .map_err(e)?;
            let Some((last_id, last_cum)) = last.filter(|(id, _)| *id > after) else { return Ok(ExportLag::default()) };
            let first: (i64, i64, i64) = conn
                .query_row(
                    &format!(
                        "SELECT id, time_ms, cum_bytes - length(data) FROM {table} WHERE id > ?1 ORDER BY id LIMIT 1"
                    ),
                    params![after],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .map_err(e)?;
            Ok(ExportLag {
                rows: (last_id - first.0 + 1) as u64,
                bytes: (last_cum - first.2).max(0) as u64,
                oldest_ms: Some(first.1),
            })
        })
    }

    /// Appends a batch's record to `kind`'s export log inside the batch's transaction.
    pub(super) fn append_export(
        tx: &rusqlite::Transaction<'_>,
        kind: ExportKind,
        now_ms: i64,
        data: &[u8],
    ) -> rusqlite::Result<()> {
        let table = kind.table();
        let cum: i64 = tx
            .prepare_cached(&format!("SELECT cum_bytes FROM {table} ORDER BY id DESC LIMIT 1"))?
            .query_row([], |r| r.get(0))
            .optional()?
            .unwrap_or(0);
        tx.prepare_cached(&format!("INSERT INTO {table} (time_ms, cum_bytes, data) VALUES (?1, ?2, ?3)"))?
            .execute(params![now_ms, cum + data.len() as i64, data])?;
        Ok(())
    }

    /// Deletes the rows every target has sent (at or below `upto`), then, beyond `max_bytes`, the
    /// oldest rows even if a target still needs them. Returns the rows deleted unsent.
    pub fn trim_export(&self, kind: ExportKind, upto: i64, max_bytes: u64) -> Result<u64, StoreError> {
        let w = self.writer.lock().expect("writer lock poisoned");
        let sql = self.sql_err();
        let table = kind.table();
        w.conn.execute(&format!("DELETE FROM {table} WHERE id <= ?1"), params![upto]).map_err(&sql)?;
        if max_bytes == 0 {
            return Ok(0);
        }
        // The newest rows that fit stay; everything older goes: the cut is the newest row whose
        // cumulative size is more than max_bytes below the last row's (an index search by rowid
        // would need an index on cum_bytes; it grows with id, so a bisection over ids does).
        let last: Option<(i64, i64)> = w
            .conn
            .query_row(&format!("SELECT id, cum_bytes FROM {table} ORDER BY id DESC LIMIT 1"), [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(&sql)?;
        let Some((last_id, last_cum)) = last else { return Ok(0) };
        let first_id: i64 =
            w.conn.query_row(&format!("SELECT min(id) FROM {table}"), [], |r| r.get(0)).map_err(&sql)?;
        let floor = last_cum - max_bytes as i64;
        let cum_at = |id: i64| -> rusqlite::Result<i64> {
            w.conn.query_row(
                &format!("SELECT cum_bytes FROM {table} WHERE id >= ?1 ORDER BY id LIMIT 1"),
                params![id],
                |r| r.get(0),
            )
        };
        if cum_at(first_id).map_err(&sql)? > floor {
            return Ok(0);
        }
        // The largest id with cum_bytes <= floor.
        let (mut lo, mut hi) = (first_id, last_id);
        while lo < hi {
            let mid = lo + (hi - lo + 1) / 2;
            if cum_at(mid).map_err(&sql)? <= floor {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let cut = Some(lo);
        match cut {
            Some(id) => {
                let n = w.conn.execute(&format!("DELETE FROM {table} WHERE id <= ?1"), params![id]).map_err(&sql)?;
                Ok(n as u64)
            }
            None => Ok(0),
        }
    }

    /// A series' labels by its id (the export log names series by id).
    pub fn series_labels(&self, id: SeriesId) -> Option<LabelSet> {
        self.index.read().expect("index lock poisoned").labels(id).cloned()
    }

    /// A log stream's labels by its id.
    pub fn log_stream_labels(&self, id: u32) -> Option<LabelSet> {
        self.logs.read().expect("logs lock poisoned").labels_of(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn store(dir: &std::path::Path) -> Store {
        let options = crate::store::StoreOptions { export_samples: true, export_logs: true, ..Default::default() };
        Store::open(dir, options).unwrap()
    }

    fn batch(t: i64) -> Vec<(LabelSet, Samples)> {
        (0..3)
            .map(|i| {
                let l = LabelSet::from_pairs([("__name__", "m"), ("i", &i.to_string())]);
                (l, Samples { ts: vec![t], values: vec![i as f64] })
            })
            .collect()
    }

    #[test]
    fn committed_batches_are_read_back_in_order_from_a_saved_position_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        s.append("a", "h", 1, 100, batch(1)).unwrap();
        assert_eq!(s.export_position(ExportKind::Samples, "t").unwrap(), 1, "a new target starts at the end");
        s.append("a", "h", 2, 200, batch(2)).unwrap();
        s.append("a", "h", 2, 200, batch(2)).unwrap(); // a resent batch adds nothing
        s.append("a", "h", 3, 300, batch(2)).unwrap(); // nor do samples the store already has
        s.append("a", "h", 4, 400, batch(3)).unwrap();
        let rows = s.read_export(ExportKind::Samples, 1, 1 << 20).unwrap();
        assert_eq!(rows.iter().map(|r| r.time_ms).collect::<Vec<_>>(), [200, 400]);
        let ExportData::Samples(series) = &rows[1].data else { panic!("samples") };
        assert_eq!(series.len(), 3);
        assert_eq!(s.series_labels(series[2].0).unwrap().get("i"), Some("2"));
        assert_eq!(series[2].1, Samples { ts: vec![3], values: vec![2.0] });
        let lag = s.export_lag(ExportKind::Samples, 1).unwrap();
        assert_eq!((lag.rows, lag.oldest_ms), (2, Some(200)));
        assert!(lag.bytes > 0);
        s.save_export_position(ExportKind::Samples, "t", rows[0].id).unwrap();
        drop(s);
        let s = store(dir.path());
        let p = s.export_position(ExportKind::Samples, "t").unwrap();
        assert_eq!(s.read_export(ExportKind::Samples, p, 1 << 20).unwrap().len(), 1, "the position survives a restart");
        assert_eq!(s.export_lag(ExportKind::Samples, p).unwrap().oldest_ms, Some(400));
        assert_eq!(s.trim_export(ExportKind::Samples, p, 0).unwrap(), 0);
        assert_eq!(s.read_export(ExportKind::Samples, 0, 1 << 20).unwrap().len(), 1, "what was sent is trimmed");
    }

    #[test]
    fn past_its_bound_the_log_drops_its_oldest_batches_and_says_how_many() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        for k in 1..=50 {
            s.append("a", "h", k, k as i64, batch(k as i64)).unwrap();
        }
        let rows = s.read_export(ExportKind::Samples, 0, 1 << 20).unwrap();
        let per_row = s.export_lag(ExportKind::Samples, 0).unwrap().bytes / 50;
        let dropped = s.trim_export(ExportKind::Samples, 0, per_row * 10).unwrap();
        let left = s.read_export(ExportKind::Samples, 0, 1 << 20).unwrap();
        assert_eq!((dropped, left.len()), (40, 10), "the newest 10 batches fit the bound");
        assert_eq!(left[0].id, rows[40].id);
    }

    #[test]
    fn log_lines_of_pushes_and_agents_enter_the_log_export() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let stream = |line: &str, t: i64| crate::model::logs::LogStreamIn {
            labels: LabelSet::from_pairs([("app", "web")]),
            lines: vec![LogLine { time_ns: t, line: line.into() }],
        };
        s.append_pushed_logs(0, vec![stream("one", 10)], 1_000).unwrap();
        s.append_pushed_logs(0, vec![stream("far behind", 5), stream("two", 11)], 1).unwrap();
        let rows = s.read_export(ExportKind::Logs, 0, 1 << 20).unwrap();
        let lines: Vec<String> = rows
            .iter()
            .flat_map(|r| match &r.data {
                ExportData::Logs(l) => {
                    l.iter().flat_map(|(_, ls)| ls.iter().map(|l| l.line.clone())).collect::<Vec<_>>()
                }
                ExportData::Samples(_) => vec![],
            })
            .collect();
        assert_eq!(lines, ["one", "two"], "a refused line is not forwarded");
        let ExportData::Logs(l) = &rows[0].data else { panic!("logs") };
        assert_eq!(s.log_stream_labels(l[0].0).unwrap().get("app"), Some("web"));
    }

    proptest! {
        #[test]
        fn log_records_round_trip(streams in proptest::collection::vec((0u32..50, proptest::collection::vec((any::<i64>(), "[a-z ]{0,20}"), 1..5)), 0..5)) {
            let mut buf = Vec::new();
            let mut want = Vec::new();
            for (id, lines) in &streams {
                let lines: Vec<LogLine> = lines.iter().map(|(t, l)| LogLine { time_ns: *t, line: l.clone() }).collect();
                put_stream(&mut buf, *id, &lines);
                want.push((*id, lines));
            }
            prop_assert_eq!(decode_logs(&buf).unwrap(), want);
        }

        #[test]
        fn garbage_is_an_error_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_logs(&bytes);
            let _ = decode_samples(&bytes);
        }
    }
}
