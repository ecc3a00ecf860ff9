//! Metric reads: series by matchers and time from the head and the sealed chunks, label names and
//! values; the store's side of PromQL's `Queryable`.

use rusqlite::params;

use super::index::SeriesId;
use super::{chunk, Store, StoreError};
use crate::model::{LabelSet, Matcher, Samples, SeriesData};

impl Store {
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
}

fn keep_range(s: &mut Samples, start: i64, end: i64) {
    let lo = s.ts.partition_point(|&t| t < start);
    let hi = s.ts.partition_point(|&t| t <= end);
    if lo > 0 || hi < s.ts.len() {
        s.ts = s.ts[lo..hi.max(lo)].to_vec();
        s.values = s.values[lo..hi.max(lo)].to_vec();
    }
}

impl crate::query::promql::Queryable for Store {
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
