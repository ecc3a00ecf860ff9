//! Subqueries (`<expr>[<range>:<step>]`): the inner expression is evaluated once, as a range query on the
//! step-aligned times that all outer windows together need, and range functions then window its points
//! as they window a selector's samples. It never evaluates the inner expression once per outer step.

use promql_parser::parser::SubqueryExpr;

use super::eval::{dur_ms, exec, merge_series, Ctx, RangeData, Val, TOO_MANY_SAMPLES};
use super::QueryError;
use crate::model::{is_stale, Samples, SeriesData};

/// The resolution of a subquery written without one (`[30m:]`). Prometheus takes its global
/// `evaluation_interval` here; the collector evaluates no rules, so it uses that setting's default.
pub(crate) const DEFAULT_STEP_MS: i64 = 60_000;

impl Ctx<'_> {
    /// The points of a subquery for every outer step: the inner expression at every multiple of the
    /// subquery's step (counted from the Unix epoch, not from the outer time) inside the union of the
    /// windows (t - offset - range, t - offset], left-open as in Prometheus 3, each point stamped with its
    /// inner time and labelled as the inner expression labelled it.
    pub fn subquery_data(&self, sq: &SubqueryExpr) -> Result<RangeData, QueryError> {
        let range = dur_ms(&sq.range);
        let step = match sq.step.as_ref().map(dur_ms) {
            Some(s) if s > 0 => s,
            _ => DEFAULT_STEP_MS,
        };
        let st = self.sel_time(&sq.offset, &sq.at);
        let mut rd = RangeData { series: Vec::new(), range, st, drop_name: Vec::new() };
        // Outer steps only move forward in time, so the first and last windows bound all others.
        let lo = self.eff(&st, 0).saturating_sub(range) as i128;
        let hi = self.eff(&st, self.n - 1) as i128;
        // The first multiple of the step after lo; lo itself is outside every window (left-open).
        let first = (lo.div_euclid(step as i128) + 1) * step as i128;
        if first > hi {
            return Ok(rd);
        }
        if (hi - first) / step as i128 >= self.budget.max_samples() as i128 {
            return Err(exec(TOO_MANY_SAMPLES));
        }
        // first <= hi, so it fits in i64.
        let inner = self.nested(first as i64, hi as i64, step);
        let series = match inner.eval(&sq.expr)? {
            Val::Vector(series) => series,
            _ => return Err(exec(format!("subquery is only allowed on instant vector, got: {}", sq.expr))),
        };
        // One series per label set, as a range vector has; equal labels at different steps are one series.
        for s in merge_series(series, false)? {
            let mut samples = Samples::default();
            for (i, v) in s.vals.iter().enumerate() {
                // Prometheus skips stale markers in a subquery's points as in a selector's samples.
                if let Some(v) = v.filter(|v| !is_stale(*v)) {
                    samples.ts.push(inner.ts(i));
                    samples.values.push(v);
                }
            }
            if !samples.ts.is_empty() {
                rd.series.push(SeriesData { labels: s.labels, samples });
                rd.drop_name.push(s.drop_name);
            }
        }
        Ok(rd)
    }
}
