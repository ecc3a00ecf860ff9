//! Runs log queries and metric queries over a `LogQueryable`: the `limit` first lines of a log
//! query (`TopLines`), and lines counted into a metric query's windows, both as chunks are read.

use std::borrow::Cow;
use std::collections::HashMap;

use super::metric::{self, WindowCounts};
use super::pipeline::LogQuery;
use super::{LinePrefilter, LogQueryable};
use crate::model::logs::LogStreamOut;
use crate::model::LabelSet;
use crate::query::{Budget, QueryError, QueryLimits};

/// Lines grouped by the label set they end with (parsers may split one stored stream into several),
/// each group's lines in the asked order.
pub type Streams = Vec<(LabelSet, Vec<(i64, String)>)>;

/// A metric query over `times` (nanoseconds): lines are counted into their windows as the chunks
/// are read; none is copied out. Windows are (t − range, t]; the source reads [start, end).
pub fn metric_query(
    src: &impl LogQueryable,
    limits: &QueryLimits,
    expr: &metric::Expr,
    times: &[i64],
    budget: &Budget,
) -> Result<metric::Value, QueryError> {
    let (first, last) = (times[0], times[times.len() - 1]);
    let max_range = i64::try_from(limits.max_query_length.as_nanos()).unwrap_or(i64::MAX);
    let mut sels = Vec::new();
    expr.selectors(&mut sels);
    let mut counted = Vec::with_capacity(sels.len());
    for (q, range) in sels {
        if last.saturating_sub(first).saturating_add(range) > max_range {
            return Err(QueryError::Limit {
                reason: "range",
                message: "the query time range exceeds the limit ([query] max_query_length)".into(),
            });
        }
        let filter = LinePrefilter { needles: q.needles(), keep: None, budget: Some(budget) };
        let max_series = limits.max_query_series;
        let parts = src.fold_logs(
            &q.matchers,
            first - range + 1,
            last + 1,
            &filter,
            &|| WindowCounts::new(q, times, range, max_series),
            &|acc, labels, t, _, line| acc.add(labels, t, line),
        )?;
        budget.check()?;
        let mut parts = parts.into_iter();
        let mut all = parts.next().expect("the head's accumulator is always there");
        parts.for_each(|p| all.merge(p));
        if all.over {
            return Err(QueryError::Limit {
                reason: "series",
                message: format!(
                    "maximum of series ({max_series}) reached for a single query ([query] max_query_series)"
                ),
            });
        }
        counted.push(all);
    }
    Ok(expr.eval(times, &mut counted.iter()))
}

/// A log query over `[start, end)`: the `limit` first lines in the direction asked, kept as the
/// chunks are read, so memory is bounded by the limit, not by the range.
pub fn log_query(
    src: &impl LogQueryable,
    q: &LogQuery,
    (start, end): (i64, i64),
    forward: bool,
    limit: usize,
    budget: &Budget,
) -> Result<Streams, QueryError> {
    let filter = LinePrefilter { needles: q.needles(), keep: None, budget: Some(budget) };
    let parts = src.fold_logs(
        &q.matchers,
        start,
        end,
        &filter,
        &|| TopLines::new(q, forward, limit),
        &|acc, labels, t, order, line| acc.add(labels, t, order, line),
    )?;
    budget.check()?;
    let mut parts = parts.into_iter();
    let mut top = parts.next().expect("the head's accumulator is always there");
    parts.for_each(|p| top.merge(p));
    Ok(top.into_streams())
}

/// Every line of `found` the pipeline keeps, then the `limit` newest (backward) or oldest
/// (forward): how a live tail answers what it has been handed.
pub fn pipe(q: &LogQuery, found: &[LogStreamOut], forward: bool, limit: usize) -> Streams {
    let mut kept: Vec<(i64, usize, String)> = Vec::new();
    let mut label_sets: Vec<LabelSet> = Vec::new();
    let mut index: HashMap<LabelSet, usize> = HashMap::new();
    for st in found {
        let plain = q.filters_only().then(|| {
            label_sets.push(st.labels.clone());
            label_sets.len() - 1
        });
        for l in &st.lines {
            if let Some(si) = plain {
                if q.keeps(&l.line) {
                    kept.push((l.time_ns, si, l.line.clone()));
                }
                continue;
            }
            let Some(p) = q.process(&st.labels, &l.line) else { continue };
            let si = match index.get(p.labels.as_ref()) {
                Some(&i) => i,
                None => {
                    label_sets.push(p.labels.clone().into_owned());
                    index.insert(p.labels.into_owned(), label_sets.len() - 1);
                    label_sets.len() - 1
                }
            };
            kept.push((l.time_ns, si, p.line.into_owned()));
        }
    }
    if forward {
        kept.sort_by_key(|k| (k.0, k.1));
    } else {
        kept.sort_by_key(|k| std::cmp::Reverse((k.0, k.1)));
    }
    kept.truncate(limit);
    let mut per: Vec<Vec<(i64, String)>> = vec![Vec::new(); label_sets.len()];
    for (t, si, line) in kept {
        per[si].push((t, line));
    }
    label_sets.into_iter().zip(per).filter(|(_, v)| !v.is_empty()).collect()
}

/// A log query's answer as its lines are read: the `limit` first lines in the asked direction
/// (newest first when backward) that pass the pipeline, by time, then label set, then the order
/// they were written. Holds at most `limit` lines, whatever the range holds; several readers'
/// shares merge into one.
pub struct TopLines<'q> {
    query: &'q LogQuery,
    forward: bool,
    limit: usize,
    heap: std::collections::BinaryHeap<Ranked>,
}

/// A kept line; the heap's top is the worst kept, the first to go.
struct Ranked {
    forward: bool,
    time_ns: i64,
    labels: LabelSet,
    order: u64,
    line: String,
}

impl Ranked {
    /// Better lines compare less.
    fn rank(&self, time_ns: i64, labels: &LabelSet, order: u64) -> std::cmp::Ordering {
        let by_time = if self.forward { self.time_ns.cmp(&time_ns) } else { time_ns.cmp(&self.time_ns) };
        let by_labels = if self.forward { self.labels.cmp(labels) } else { labels.cmp(&self.labels) };
        by_time.then(by_labels).then(self.order.cmp(&order))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank(other.time_ns, &other.labels, other.order)
    }
}

impl<'q> TopLines<'q> {
    pub fn new(query: &'q LogQuery, forward: bool, limit: usize) -> Self {
        TopLines { query, forward, limit, heap: std::collections::BinaryHeap::with_capacity(limit.min(1 << 16) + 1) }
    }

    /// Offers one stored line; `order` ranks the lines of its stream as written.
    pub fn add(&mut self, labels: &LabelSet, time_ns: i64, order: u64, line: &str) {
        if self.limit == 0 {
            return;
        }
        // Time decides most offers: a line no better than the worst kept costs nothing.
        if self.heap.len() >= self.limit {
            let worst = self.heap.peek().expect("a full heap has a top");
            let later = if self.forward { time_ns > worst.time_ns } else { time_ns < worst.time_ns };
            if later {
                return;
            }
        }
        let (labels, line) = if self.query.filters_only() {
            if !self.query.keeps(line) {
                return;
            }
            (Cow::Borrowed(labels), Cow::Borrowed(line))
        } else {
            match self.query.process(labels, line) {
                Some(p) => (p.labels, p.line),
                None => return,
            }
        };
        if self.heap.len() >= self.limit {
            let worst = self.heap.peek().expect("a full heap has a top");
            if worst.rank(time_ns, &labels, order) != std::cmp::Ordering::Greater {
                return;
            }
            self.heap.pop();
        }
        let forward = self.forward;
        self.heap.push(Ranked { forward, time_ns, labels: labels.into_owned(), order, line: line.into_owned() });
    }

    pub fn merge(&mut self, other: TopLines<'_>) {
        for r in other.heap {
            if self.heap.len() >= self.limit {
                if self.heap.peek().is_some_and(|w| w.cmp(&r) != std::cmp::Ordering::Greater) {
                    continue;
                }
                self.heap.pop();
            }
            self.heap.push(r);
        }
    }

    /// The kept lines best first, grouped by label set in the order each set first appears.
    pub fn into_streams(self) -> Vec<(LabelSet, Vec<(i64, String)>)> {
        let mut out: Vec<(LabelSet, Vec<(i64, String)>)> = Vec::new();
        let mut index: std::collections::HashMap<LabelSet, usize> = std::collections::HashMap::new();
        for r in self.heap.into_sorted_vec() {
            let slot = *index.entry(r.labels.clone()).or_insert_with(|| {
                out.push((r.labels.clone(), Vec::new()));
                out.len() - 1
            });
            out[slot].1.push((r.time_ns, r.line));
        }
        out
    }
}
