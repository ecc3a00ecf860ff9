//! Column-wise evaluation: every node yields its value at all steps of the query at once, and every
//! selector reads the store once for the whole query, then walks its samples with cursors. A subquery
//! (`subquery`) evaluates its inner expression once, in a nested `Ctx` on its own steps.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{AtModifier, Expr, MatrixSelector, Offset, VectorSelector};

use super::{aggregate, binary, functions, QueryError};
use crate::model::{is_stale, LabelSet, MatchOp, Matcher, Samples, SeriesData, METRIC_NAME};

pub(crate) const DUPLICATE_LABELSET: &str = "vector cannot contain metrics with the same labelset";

pub(crate) use crate::query::TOO_MANY_SAMPLES;

/// One series of an instant-vector expression: its value at each step, `None` where it has none.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub labels: LabelSet,
    pub vals: Vec<Option<f64>>,
    /// With delayed name removal: an operation has dropped the metric name, which stays in `labels`
    /// (for `label_replace`, `by (__name__)`, `on (__name__)`) until the answer is made.
    pub drop_name: bool,
}

impl Series {
    pub fn new(labels: LabelSet, vals: Vec<Option<f64>>) -> Self {
        Series { labels, vals, drop_name: false }
    }
}

/// The value of an expression at every step of the query.
pub(crate) enum Val {
    Scalar(Vec<f64>),
    Str(String),
    Vector(Vec<Series>),
}

/// When a selector reads: its offset and, with `@`, the fixed time it is evaluated at.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SelTime {
    pub offset: i64,
    pub at: Option<i64>,
}

/// The samples of a range vector (read by a range selector, or computed by a subquery), stale markers
/// removed, and how to window them per step.
pub(crate) struct RangeData {
    pub series: Vec<SeriesData>,
    pub range: i64,
    pub st: SelTime,
    /// Which of `series` a subquery's inner expression marked to lose their name (delayed name
    /// removal); empty for a selector's.
    pub drop_name: Vec<bool>,
}

impl RangeData {
    pub fn drops_name(&self, i: usize) -> bool {
        self.drop_name.get(i).copied().unwrap_or(false)
    }
}

/// The evaluation of one query, or of a subquery's inner expression: its steps and where it reads from.
pub(crate) struct Ctx<'a> {
    pub src: &'a dyn super::Queryable,
    pub start: i64,
    pub step: i64,
    /// Number of steps: start + i*step for i in 0..n.
    pub n: usize,
    pub lookback: i64,
    /// The query's own start and end, which `@ start()` and `@ end()` mean at any depth of subqueries.
    pub query_start: i64,
    pub query_end: i64,
    /// What the query may still spend; checked at every node and by the source between series.
    pub budget: &'a super::Budget,
    /// The warnings and infos the answer will carry, shared by every context of one query.
    pub notes: &'a RefCell<super::Annotations>,
    /// Prometheus's delayed name removal (`--enable-feature=promql-delayed-name-removal`): operations
    /// mark a series' name to be dropped, and the answer drops it.
    pub delayed_names: bool,
}

pub(crate) fn exec(msg: impl Into<String>) -> QueryError {
    QueryError::Execution(msg.into())
}

pub(crate) fn unsupported(msg: impl Into<String>) -> QueryError {
    QueryError::Unsupported(msg.into())
}

pub(crate) fn dur_ms(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => dur_ms(&d),
        Err(e) => dur_ms(&e.duration()).saturating_neg(),
    }
}

impl<'a> Ctx<'a> {
    pub fn new(
        src: &'a dyn super::Queryable,
        start: i64,
        end: i64,
        step: i64,
        lookback: i64,
        budget: &'a super::Budget,
        notes: &'a RefCell<super::Annotations>,
    ) -> Self {
        let step = step.max(1);
        // i128: start and end may be anywhere in i64; the caller has bounded the number of steps.
        let n = ((end as i128 - start as i128).max(0) / step as i128) as usize + 1;
        Ctx { src, start, step, n, lookback, query_start: start, query_end: end, budget, notes, delayed_names: false }
    }

    pub fn with_delayed_names(self, delayed_names: bool) -> Self {
        Ctx { delayed_names, ..self }
    }

    /// A result without its input's metric name: without `__name__` now or, with delayed name
    /// removal, marked to lose it in the answer.
    pub fn unnamed(&self, labels: LabelSet, vals: Vec<Option<f64>>) -> Series {
        if self.delayed_names {
            Series { labels, vals, drop_name: true }
        } else {
            Series::new(labels.without_name(), vals)
        }
    }

    /// Adds a warning to the answer: it may be wrong (a quantile outside [0, 1], a bucket without a
    /// bound).
    pub fn warn(&self, message: String) {
        self.notes.borrow_mut().warn(message);
    }

    /// Adds an info to the answer: it may not be what was meant (`rate` of a gauge).
    pub fn info(&self, message: String) {
        self.notes.borrow_mut().info(message);
    }

    /// A context for a subquery's inner expression: steps start, start+step, ... <= end, same query.
    /// The caller bounds the number of steps.
    pub fn nested(&self, start: i64, end: i64, step: i64) -> Ctx<'a> {
        Ctx {
            query_start: self.query_start,
            query_end: self.query_end,
            delayed_names: self.delayed_names,
            ..Ctx::new(self.src, start, end, step, self.lookback, self.budget, self.notes)
        }
    }

    pub fn ts(&self, i: usize) -> i64 {
        (self.start as i128 + i as i128 * self.step as i128) as i64
    }

    pub fn eval(&self, e: &Expr) -> Result<Val, QueryError> {
        self.budget.check()?;
        match e {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(vec![n.val; self.n])),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::Unary(u) => match self.eval(&u.expr)? {
                Val::Scalar(v) => Ok(Val::Scalar(v.into_iter().map(|x| -x).collect())),
                Val::Vector(series) => {
                    let negated = series
                        .into_iter()
                        .map(|s| self.unnamed(s.labels, s.vals.into_iter().map(|v| v.map(|x| -x)).collect()))
                        .collect();
                    Ok(Val::Vector(merge_series(negated, true)?))
                }
                Val::Str(_) => Err(exec("unary expression only allowed on expressions of type scalar or vector")),
            },
            Expr::Binary(b) => binary::eval_binary(self, b),
            Expr::Aggregate(a) => aggregate::eval_aggregate(self, a),
            Expr::Call(c) => functions::eval_call(self, c),
            Expr::VectorSelector(vs) => Ok(Val::Vector(self.vector_selector(vs, false)?)),
            Expr::MatrixSelector(_) | Expr::Subquery(_) => {
                Err(exec("a range vector is only allowed as a function argument here"))
            }
            Expr::Extension(_) => Err(unsupported("extension expressions are not supported")),
        }
    }

    pub fn eval_vector(&self, e: &Expr) -> Result<Vec<Series>, QueryError> {
        match self.eval(e)? {
            Val::Vector(v) => Ok(v),
            _ => Err(exec(format!("expected an instant vector, got: {e}"))),
        }
    }

    pub fn eval_scalar(&self, e: &Expr) -> Result<Vec<f64>, QueryError> {
        match self.eval(e)? {
            Val::Scalar(v) => Ok(v),
            _ => Err(exec(format!("expected a scalar, got: {e}"))),
        }
    }

    pub fn eval_string(&self, e: &Expr) -> Result<String, QueryError> {
        match self.eval(e)? {
            Val::Str(s) => Ok(s),
            _ => Err(exec(format!("expected a string, got: {e}"))),
        }
    }

    /// A range argument of a function (or a range vector at the top level of an instant query): a range
    /// selector's samples, or a subquery's points.
    pub fn range_arg(&self, e: &Expr) -> Result<RangeData, QueryError> {
        match super::unwrap_parens(e) {
            Expr::MatrixSelector(ms) => self.range_data(ms),
            Expr::Subquery(sq) => self.subquery_data(sq),
            other => Err(exec(format!("expected a range vector, got: {other}"))),
        }
    }

    /// The `offset` and `@` of a selector or subquery.
    pub fn sel_time(&self, offset: &Option<Offset>, at: &Option<AtModifier>) -> SelTime {
        let offset = match offset {
            None => 0,
            Some(Offset::Pos(d)) => dur_ms(d),
            Some(Offset::Neg(d)) => dur_ms(d).saturating_neg(),
        };
        let at = at.as_ref().map(|a| match a {
            AtModifier::Start => self.query_start,
            AtModifier::End => self.query_end,
            AtModifier::At(t) => system_time_ms(t),
        });
        SelTime { offset, at }
    }

    /// The time a selector reads at for step i: the step's time (or its `@` time) less its offset.
    pub fn eff(&self, st: &SelTime, i: usize) -> i64 {
        st.at.unwrap_or_else(|| self.ts(i)).saturating_sub(st.offset)
    }

    /// Reads every sample any step can need, in one call: (first step - window, last step].
    fn select(&self, vs: &VectorSelector, window: i64) -> Result<(Vec<SeriesData>, SelTime), QueryError> {
        let matchers = convert_matchers(vs)?;
        let st = self.sel_time(&vs.offset, &vs.at);
        let (lo, hi) = (self.eff(&st, 0), self.eff(&st, self.n - 1));
        let data = self.src.select_within(&matchers, lo.saturating_sub(window).saturating_add(1), hi, self.budget)?;
        self.budget.check()?;
        if data.len().saturating_mul(self.n) > self.budget.max_samples() {
            return Err(exec(TOO_MANY_SAMPLES));
        }
        Ok((data, st))
    }

    /// An instant vector selector at every step: per series the newest sample in (t - lookback, t], absent
    /// where that sample is a stale marker. With `timestamps` the value is the sample's time in seconds
    /// (for `timestamp()`), and the metric name is dropped.
    pub fn vector_selector(&self, vs: &VectorSelector, timestamps: bool) -> Result<Vec<Series>, QueryError> {
        let (data, st) = self.select(vs, self.lookback)?;
        let mut out = Vec::with_capacity(data.len());
        for s in data {
            let (ts, values) = (&s.samples.ts, &s.samples.values);
            let mut vals = vec![None; self.n];
            let mut cur = 0;
            let mut any = false;
            for (i, slot) in vals.iter_mut().enumerate() {
                let e = self.eff(&st, i);
                while cur < ts.len() && ts[cur] <= e {
                    cur += 1;
                }
                if cur == 0 {
                    continue;
                }
                let j = cur - 1;
                if ts[j] > e.saturating_sub(self.lookback) && !is_stale(values[j]) {
                    *slot = Some(if timestamps { ts[j] as f64 / 1000.0 } else { values[j] });
                    any = true;
                }
            }
            if any {
                out.push(if timestamps { self.unnamed(s.labels, vals) } else { Series::new(s.labels, vals) });
            }
        }
        if timestamps {
            return merge_series(out, false);
        }
        Ok(out)
    }

    /// Reads a range selector's samples for all steps, with stale markers removed.
    pub fn range_data(&self, ms: &MatrixSelector) -> Result<RangeData, QueryError> {
        let range = dur_ms(&ms.range);
        let (mut series, st) = self.select(&ms.vs, range)?;
        for s in &mut series {
            if s.samples.values.iter().any(|v| is_stale(*v)) {
                let (ts, vals) = (std::mem::take(&mut s.samples.ts), std::mem::take(&mut s.samples.values));
                for (t, v) in ts.into_iter().zip(vals) {
                    if !is_stale(v) {
                        s.samples.ts.push(t);
                        s.samples.values.push(v);
                    }
                }
            }
        }
        Ok(RangeData { series, range, st, drop_name: Vec::new() })
    }

    /// Calls `f(step, timestamps, values, t)` with each step's window (t - range, t] of `s`, where t is the
    /// selector's read time for that step. Both window edges only move forward, so this is linear.
    /// Stops early once the budget is spent (checked every 256 steps; a window function such as
    /// `quantile_over_time` can take long per step): the caller's next `check` reports it.
    pub fn windows(&self, rd: &RangeData, s: &Samples, mut f: impl FnMut(usize, &[i64], &[f64], i64)) {
        let (mut lo, mut hi) = (0, 0);
        let ts = &s.ts;
        for i in 0..self.n {
            if i % 256 == 0 && self.budget.spent().is_some() {
                return;
            }
            let e = self.eff(&rd.st, i);
            while hi < ts.len() && ts[hi] <= e {
                hi += 1;
            }
            let left = e.saturating_sub(rd.range);
            while lo < hi && ts[lo] <= left {
                lo += 1;
            }
            if lo > hi {
                lo = hi;
            }
            f(i, &ts[lo..hi], &s.values[lo..hi], e);
        }
    }

    /// A range vector at the top level of an instant query: the raw points of each window.
    pub fn raw_matrix(&self, rd: &RangeData) -> Result<Vec<SeriesData>, QueryError> {
        let mut out = Vec::new();
        for (i, s) in rd.series.iter().enumerate() {
            let mut samples = Samples::default();
            self.windows(rd, &s.samples, |_, ts, vs, _| {
                samples.ts.extend_from_slice(ts);
                samples.values.extend_from_slice(vs);
            });
            if !samples.ts.is_empty() {
                let labels = if rd.drops_name(i) { s.labels.without_name() } else { s.labels.clone() };
                out.push(SeriesData { labels, samples });
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        if rd.drop_name.iter().any(|&d| d) && out.windows(2).any(|w| w[0].labels == w[1].labels) {
            return Err(exec(DUPLICATE_LABELSET));
        }
        Ok(out)
    }
}

/// The selector's matchers as the store takes them, with the metric name as a `__name__` matcher.
pub(crate) fn convert_matchers(vs: &VectorSelector) -> Result<Vec<Matcher>, QueryError> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(unsupported("the \"or\" operator inside label matchers is not supported"));
    }
    let mut out = Vec::with_capacity(vs.matchers.matchers.len() + 1);
    if let Some(name) = &vs.name {
        out.push(Matcher::equal(METRIC_NAME, name));
    }
    for m in &vs.matchers.matchers {
        let (op, parsed) = match &m.op {
            PMatchOp::Equal => ("=", None),
            PMatchOp::NotEqual => ("!=", None),
            PMatchOp::Re(r) => ("=~", Some(MatchOp::Regex(r.clone()))),
            PMatchOp::NotRe(r) => ("!~", Some(MatchOp::NotRegex(r.clone()))),
        };
        match (Matcher::new(&m.name, op, &m.value), parsed) {
            (Ok(mm), _) => out.push(mm),
            // Go accepts some regexes Rust does not (e.g. a literal `{`); the parser has already
            // rewritten and anchored those, so its compiled form is used.
            (Err(_), Some(op)) => out.push(Matcher { name: m.name.clone(), value: m.value.clone(), op }),
            (Err(e), None) => return Err(exec(e.to_string())),
        }
    }
    Ok(out)
}

/// Collects per-step results under their label sets. Two results with the same labels at the same step
/// are Prometheus's "same labelset" error; at different steps they are one series.
pub(crate) struct Out {
    n: usize,
    index: HashMap<(LabelSet, bool), usize>,
    pub series: Vec<Series>,
}

impl Out {
    pub fn new(n: usize) -> Self {
        Out { n, index: HashMap::new(), series: Vec::new() }
    }

    pub fn idx(&mut self, labels: LabelSet) -> usize {
        self.idx_marked(labels, false)
    }

    /// The series of these labels and this [`Series::drop_name`].
    pub fn idx_marked(&mut self, labels: LabelSet, drop_name: bool) -> usize {
        let key = (labels, drop_name);
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        let i = self.series.len();
        self.series.push(Series { labels: key.0.clone(), vals: vec![None; self.n], drop_name });
        self.index.insert(key, i);
        i
    }

    pub fn put(&mut self, idx: usize, step: usize, v: f64) -> Result<(), QueryError> {
        let slot = &mut self.series[idx].vals[step];
        if slot.is_some() {
            return Err(exec(DUPLICATE_LABELSET));
        }
        *slot = Some(v);
        Ok(())
    }

    pub fn finish(self) -> Vec<Series> {
        self.series.into_iter().filter(|s| s.vals.iter().any(Option::is_some)).collect()
    }
}

/// Delayed name removal's last step: the marked series lose their name, and series whose labels
/// became equal are joined; a pair with values at the same step is refused.
pub(crate) fn drop_marked_names(series: Vec<Series>) -> Result<Vec<Series>, QueryError> {
    if !series.iter().any(|s| s.drop_name) {
        return Ok(series);
    }
    let unnamed = series
        .into_iter()
        .map(|s| if s.drop_name { Series::new(s.labels.without_name(), s.vals) } else { s })
        .collect();
    merge_series(unnamed, false)
}

/// Drops series without points and joins series whose labels became equal. `strict` refuses any such
/// pair (as Prometheus does after functions over range vectors, unary minus and label_replace); otherwise
/// only a pair with values at the same step is refused (as its per-step evaluation does).
pub(crate) fn merge_series(series: Vec<Series>, strict: bool) -> Result<Vec<Series>, QueryError> {
    let mut index: HashMap<(LabelSet, bool), usize> = HashMap::with_capacity(series.len());
    let mut out: Vec<Series> = Vec::with_capacity(series.len());
    for s in series {
        if !s.vals.iter().any(Option::is_some) {
            continue;
        }
        let key = (s.labels.clone(), s.drop_name);
        match index.get(&key) {
            None => {
                index.insert(key, out.len());
                out.push(s);
            }
            Some(_) if strict => return Err(exec(DUPLICATE_LABELSET)),
            Some(&i) => {
                for (slot, v) in out[i].vals.iter_mut().zip(s.vals) {
                    if v.is_some() {
                        if slot.is_some() {
                            return Err(exec(DUPLICATE_LABELSET));
                        }
                        *slot = v;
                    }
                }
            }
        }
    }
    Ok(out)
}
