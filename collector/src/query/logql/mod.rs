//! LogQL, Loki's query language: `parse` reads log queries into a `pipeline`, `metric` reads and
//! evaluates metric queries over them, `eval` runs both over any `LogQueryable` (the store).
//! Never sees SQLite: the store lends its lines through the trait.

mod cursor;
pub mod eval;
pub mod metric;
mod parse;
pub mod pipeline;

pub use cursor::ParseError;
pub use eval::TopLines;
pub use parse::parse;
pub use pipeline::{LineFilter, LogQuery, ERROR_LABEL};

use crate::model::logs::LogStreamOut;
use crate::model::{LabelSet, Matcher};
use crate::query::{QueryError, QueryLimits};

/// Where LogQL reads lines from. The store implements it; tests may implement it over vectors.
pub trait LogQueryable: Sync {
    /// Folds the lines of the streams `matchers` select in `[start_ns, end_ns)` that pass `filter`
    /// into accumulators made by `init` (one per reader, returned for the caller to merge); no line
    /// is copied out. Readers stop early once `filter`'s budget is spent.
    #[allow(clippy::type_complexity)]
    fn fold_logs<A: Send>(
        &self,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
        filter: &LinePrefilter<'_>,
        init: &(dyn Fn() -> A + Sync),
        visit: &(dyn Fn(&mut A, &LabelSet, i64, u64, &str) + Sync),
    ) -> Result<Vec<A>, QueryError>;

    /// Every line of the selected streams in `[start_ns, end_ns)`, per stream in time order.
    fn select_logs(&self, matchers: &[Matcher], start_ns: i64, end_ns: i64) -> Result<Vec<LogStreamOut>, QueryError>;
}

/// Checks a log query's text against the limits, then parses it and checks its depth. Call it on a
/// query thread: the parser and the pipeline's label filters recurse.
pub fn parse_within(limits: &QueryLimits, what: &str, text: &str) -> Result<LogQuery, QueryError> {
    limits.check_text(what, text)?;
    let q = parse(text).map_err(|e| QueryError::Parse(e.to_string()))?;
    let depth = q.depth();
    if depth > limits.max_depth {
        return Err(crate::query::limits::too_deep(what, depth, limits.max_depth));
    }
    Ok(q)
}

/// As `parse_within`, for a metric query.
pub fn parse_metric_within(limits: &QueryLimits, text: &str) -> Result<metric::Expr, QueryError> {
    limits.check_text("query", text)?;
    let e = metric::parse(text).map_err(|e| QueryError::Parse(e.to_string()))?;
    let depth = e.depth();
    if depth > limits.max_depth {
        return Err(crate::query::limits::too_deep("query", depth, limits.max_depth));
    }
    Ok(e)
}

/// What a query needs of a line, checked before the line is copied out of its chunk: byte strings
/// that must all occur (a chunk without one of them is skipped after a single memmem pass), and a
/// test on each line.
#[derive(Default)]
pub struct LinePrefilter<'a> {
    pub needles: Vec<&'a [u8]>,
    pub keep: Option<&'a (dyn Fn(&str) -> bool + Sync)>,
    /// The query's budget: chunk readers stop between chunks once it is spent (the caller then
    /// checks it and answers the timeout, never the lines read so far).
    pub budget: Option<&'a crate::query::Budget>,
}

impl LinePrefilter<'_> {
    #[inline]
    pub fn spent(&self) -> bool {
        self.budget.is_some_and(|b| b.spent().is_some())
    }

    #[inline]
    pub(crate) fn lacks_a_needle(&self, raw: &[u8]) -> bool {
        self.needles.iter().any(|n| memchr::memmem::find(raw, n).is_none())
    }

    #[inline]
    pub(crate) fn keeps(&self, line: &str) -> bool {
        self.keep.is_none_or(|keep| keep(line))
    }
}
