//! What the store keeps and how big it is: retention by age and by size for samples and log
//! chunks, sealing old log heads, and the disk figures `/metrics` and the full-disk log report.

use rusqlite::{params, Connection};

use super::{DiskUsage, LogStorage, Store, StoreError};

impl Store {
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
}
