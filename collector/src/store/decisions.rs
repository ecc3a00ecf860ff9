//! The decision log: every decision the collector takes (a restart, a restart held back and why,
//! a budget given up on) with its inputs, its rule and its outcome, in one SQLite table.

use super::{Store, StoreError};
pub use crate::model::decision::{Decision, Kind, Outcome, Subject};
use rusqlite::params;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL, kind TEXT NOT NULL,
    service TEXT NOT NULL, host TEXT NOT NULL, container TEXT NOT NULL, container_id TEXT NOT NULL,
    reason TEXT NOT NULL, rule TEXT NOT NULL, inputs TEXT NOT NULL, outcome TEXT NOT NULL,
    detail TEXT NOT NULL, settled_ms INTEGER);
CREATE INDEX IF NOT EXISTS decisions_time ON decisions (time_ms);
CREATE TABLE IF NOT EXISTS gates (
    id TEXT PRIMARY KEY, service TEXT NOT NULL, version TEXT NOT NULL, body TEXT NOT NULL, updated_ms INTEGER NOT NULL);
";

/// Which decisions to list.
#[derive(Clone, Debug, Default)]
pub struct DecisionFilter {
    pub since_ms: Option<i64>,
    pub kind: Option<String>,
    pub service: Option<String>,
    pub container_id: Option<String>,
    pub limit: usize,
}

impl Store {
    /// Records a decision; returns its id.
    pub fn record_decision(&self, d: &Decision) -> Result<i64, StoreError> {
        let (host, container, container_id) = d.columns();
        let w = self.writer.lock().expect("writer lock poisoned");
        w.conn
            .execute(
                "INSERT INTO decisions (time_ms, kind, service, host, container, container_id, reason, rule, inputs, outcome, detail, settled_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    d.time_ms,
                    d.kind.as_str(),
                    d.service,
                    host,
                    container,
                    container_id,
                    d.reason,
                    d.rule.to_string(),
                    d.inputs.to_string(),
                    d.outcome.as_str(),
                    d.detail,
                    d.settled_ms
                ],
            )
            .map_err(self.sql_err())?;
        Ok(w.conn.last_insert_rowid())
    }

    /// Sets a decision's outcome once it is known (a command's answer, or its deadline).
    pub fn settle_decision(&self, id: i64, outcome: Outcome, detail: &str, at_ms: i64) -> Result<(), StoreError> {
        let w = self.writer.lock().expect("writer lock poisoned");
        w.conn
            .execute(
                "UPDATE decisions SET outcome = ?2, detail = ?3, settled_ms = ?4 WHERE id = ?1",
                params![id, outcome.as_str(), detail, at_ms],
            )
            .map_err(self.sql_err())?;
        Ok(())
    }

    /// Decisions matching `f`, oldest first (the newest `limit` of them).
    pub fn decisions(&self, f: &DecisionFilter) -> Result<Vec<Decision>, StoreError> {
        let f = f.clone();
        self.with_reader("decisions", move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, time_ms, kind, service, host, container, container_id, reason, rule, inputs, outcome, detail, settled_ms
                     FROM decisions
                     WHERE time_ms >= ?1 AND (?2 IS NULL OR kind = ?2) AND (?3 IS NULL OR service = ?3)
                       AND (?4 IS NULL OR container_id = ?4)
                     ORDER BY id DESC LIMIT ?5",
                )
                .map_err(|e| e.to_string())?;
            let limit = if f.limit == 0 { 1000 } else { f.limit } as i64;
            let rows = stmt
                .query_map(params![f.since_ms.unwrap_or(0), f.kind, f.service, f.container_id, limit], row)
                .map_err(|e| e.to_string())?;
            let mut out = rows.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
            out.reverse();
            Ok(out)
        })
    }
}

impl Store {
    /// A `lookout_decision` sample at the decision's time (labels kind, service, container, host), so
    /// that Grafana can draw decisions as annotations with a PromQL query. Best effort: logged on failure.
    pub fn mark_decision(&self, d: &Decision) {
        let (host, container, _) = d.columns();
        let labels = [
            ("__name__", "lookout_decision"),
            ("kind", d.kind.as_str()),
            ("service", d.service.as_str()),
            ("container", container.as_str()),
            ("host", host),
        ];
        // Empty values (a gate has no host) are dropped, as Prometheus drops them.
        let common = crate::model::LabelSet::from_pairs(labels);
        let mark = super::SeriesGroup {
            common,
            series: vec![(Vec::new(), crate::model::Samples { ts: vec![d.time_ms], values: vec![1.0] })],
        };
        if let Err(e) = self.append_unsequenced(d.time_ms, vec![mark]) {
            tracing::warn!(error = %e, "cannot record the decision's sample");
        }
    }

    /// One decision by id.
    pub fn decision(&self, id: i64) -> Result<Option<Decision>, StoreError> {
        self.with_reader("decisions", move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, time_ms, kind, service, host, container, container_id, reason, rule, inputs, outcome, detail, settled_ms
                     FROM decisions WHERE id = ?1",
                )
                .map_err(|e| e.to_string())?;
            let mut rows = stmt.query_map(params![id], row).map_err(|e| e.to_string())?;
            rows.next().transpose().map_err(|e| e.to_string())
        })
    }

    /// Keeps a gate's state (JSON, the gate module's own shape) so that it outlives a restart.
    pub fn save_gate(&self, id: &str, service: &str, version: &str, body: &str, now_ms: i64) -> Result<(), StoreError> {
        let w = self.writer.lock().expect("writer lock poisoned");
        w.conn
            .execute(
                "INSERT INTO gates (id, service, version, body, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET body = excluded.body, updated_ms = excluded.updated_ms",
                params![id, service, version, body, now_ms],
            )
            .map_err(self.sql_err())?;
        Ok(())
    }

    /// Every saved gate's JSON, oldest first.
    pub fn gates(&self) -> Result<Vec<String>, StoreError> {
        self.with_reader("gates", |conn| {
            let mut stmt = conn.prepare_cached("SELECT body FROM gates ORDER BY rowid").map_err(|e| e.to_string())?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(|e| e.to_string())?;
            rows.collect::<Result<Vec<String>, _>>().map_err(|e| e.to_string())
        })
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Decision> {
    let json = |i: usize| -> rusqlite::Result<serde_json::Value> {
        let text: String = r.get(i)?;
        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
    };
    let name = |i: usize| -> rusqlite::Result<String> { r.get(i) };
    let unknown = |i: usize, what: &str, v: String| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unknown {what} {v:?}").into(),
        )
    };
    let kind = name(2)?;
    let kind = Kind::parse(&kind).ok_or_else(|| unknown(2, "decision kind", kind))?;
    let outcome = name(10)?;
    let outcome = Outcome::parse(&outcome).ok_or_else(|| unknown(10, "decision outcome", outcome))?;
    Ok(Decision {
        id: r.get(0)?,
        time_ms: r.get(1)?,
        kind,
        service: r.get(3)?,
        subject: Decision::subject_from(kind, r.get(4)?, r.get(5)?, r.get(6)?),
        reason: r.get(7)?,
        rule: json(8)?,
        inputs: json(9)?,
        outcome,
        detail: r.get(11)?,
        settled_ms: r.get(12)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(kind: &str, service: &str, t: i64) -> Decision {
        let subject = Subject::Container { host: "h".into(), container: "c".into(), container_id: "abc".into() };
        let kind = Kind::parse(kind).unwrap();
        let mut d = Decision::new(t, kind, service, subject, "unhealthy for 3 runs".into(), Outcome::Pending);
        d.rule = serde_json::json!({"max_restarts": 5});
        d.inputs = serde_json::json!({"probes": []});
        d
    }

    #[test]
    fn decisions_are_recorded_settled_and_listed_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Default::default()).unwrap();
        let a = store.record_decision(&decision("restart", "web", 10)).unwrap();
        store.record_decision(&decision("restart_held", "web", 20)).unwrap();
        store.record_decision(&decision("restart", "db", 30)).unwrap();
        store.settle_decision(a, Outcome::Ok, "restarted abc", 15).unwrap();
        drop(store);
        let store = Store::open(dir.path(), Default::default()).unwrap();
        let web = store.decisions(&DecisionFilter { service: Some("web".into()), ..Default::default() }).unwrap();
        assert_eq!(web.iter().map(|d| d.kind.as_str()).collect::<Vec<_>>(), ["restart", "restart_held"]);
        assert_eq!((web[0].outcome.as_str(), web[0].settled_ms), ("ok", Some(15)));
        assert_eq!(web[0].rule["max_restarts"], 5);
        let late = store.decisions(&DecisionFilter { since_ms: Some(25), ..Default::default() }).unwrap();
        assert_eq!(late.len(), 1);
        assert_eq!(web[0].detail, "restarted abc");
    }
}
