//! PromQL engine: parses with promql-parser and evaluates instant and range queries over a `Queryable`,
//! with Prometheus 3 semantics; every construct it does not implement is refused with `Unsupported`.

mod aggregate;
mod binary;
mod eval;
mod functions;
mod histogram;
mod range_fns;
mod subquery;
pub mod testfile;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_ops;
#[cfg(test)]
mod tests_prop;
#[cfg(test)]
mod tests_subquery;

use std::cell::RefCell;

use promql_parser::parser::value::ValueType;
use promql_parser::parser::Expr;

use crate::model::{LabelSet, Matcher, Samples, SeriesData};
use crate::query::{limits, runner, Budget, QueryError, QueryLimits};
use eval::{Ctx, Val};

/// Where the engine reads series from. The store implements it; tests implement it over vectors.
pub trait Queryable: Send + Sync {
    /// Every series whose labels pass all `matchers`, with its samples whose timestamps t satisfy
    /// start_ms <= t <= end_ms, in time order.
    fn select(&self, matchers: &[Matcher], start_ms: i64, end_ms: i64) -> Result<Vec<SeriesData>, QueryError>;

    /// `select` within a query's budget. A source that reads for long (the store) overrides it to
    /// stop between series once the budget is spent; the caller checks the budget afterwards.
    fn select_within(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        budget: &Budget,
    ) -> Result<Vec<SeriesData>, QueryError> {
        budget.check()?;
        self.select(matchers, start_ms, end_ms)
    }
}

/// The result of an instant query, in Prometheus's four result types.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar { t_ms: i64, v: f64 },
    String { t_ms: i64, s: String },
    Vector(Vec<InstantSample>),
    Matrix(Vec<SeriesData>),
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct InstantSample {
    pub labels: LabelSet,
    pub t_ms: i64,
    pub v: f64,
}

/// Prometheus's annotations beside an answer, each message once, in the order found: warnings (the
/// answer may be wrong: a quantile outside [0, 1], a bucket without a bound) and infos (it may not be
/// what was meant: `rate` of a series whose name says it is no counter). The HTTP API returns them as
/// `warnings` and `infos`, where Grafana shows them on the panel.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Annotations {
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

impl Annotations {
    /// Prometheus caps what one answer carries; so does this (a quantile per step could make one each).
    const MAX: usize = 10;

    fn warn(&mut self, message: String) {
        if self.warnings.len() < Self::MAX && !self.warnings.contains(&message) {
            self.warnings.push(message);
        }
    }

    fn info(&mut self, message: String) {
        if self.infos.len() < Self::MAX && !self.infos.contains(&message) {
            self.infos.push(message);
        }
    }
}

/// A number as Go's `%g` writes it in Prometheus's messages (`2`, `-0.1`, `NaN`, `+Inf`, `1e+21`).
pub(crate) fn go_g(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v != 0.0 && (v.abs() >= 1e21 || v.abs() < 1e-4) {
        let e = format!("{v:e}");
        match e.split_once('e') {
            Some((m, x)) if x.starts_with('-') => format!("{m}e-{:02}", &x[1..]),
            Some((m, x)) => format!("{m}e+{x:0>2}"),
            None => e,
        }
    } else {
        format!("{v}")
    }
}

/// Evaluates PromQL. Stateless apart from its settings, so one can be shared by all requests.
#[derive(Debug, Clone)]
pub struct Engine {
    /// How far back an instant vector selector looks for a sample (Prometheus's default 5 m).
    pub lookback_ms: i64,
    /// What one query may cost: its text, its depth, its points (`[query]`).
    pub limits: QueryLimits,
    /// Prometheus's `promql-delayed-name-removal`: `__name__` leaves a series only in the answer, so
    /// `label_replace` and `by (__name__)` still see the name an operation dropped (`[query]`).
    pub delayed_name_removal: bool,
}

impl Default for Engine {
    fn default() -> Self {
        Engine { lookback_ms: 300_000, limits: QueryLimits::default(), delayed_name_removal: false }
    }
}

impl Engine {
    pub fn new(limits: QueryLimits) -> Self {
        Engine { delayed_name_removal: limits.delayed_name_removal, limits, ..Engine::default() }
    }

    /// Parses `query` within the limits: its text first (length, bracket depth), then the parsed
    /// expression's depth, which a long chain of binary operators makes deep without brackets.
    /// promql-parser recurses, and so do this engine's evaluation and `Expr`'s drop: callers run
    /// this on a thread of `runner`'s, whose stack is sized for the limits' ceilings (a worker's
    /// 2 MiB is not), and keep the expression on it.
    pub fn parse_within(&self, what: &str, query: &str) -> Result<Expr, QueryError> {
        self.limits.check_text(what, query)?;
        let expr = parse(query)?;
        let depth = expr_depth(&expr);
        if depth > self.limits.max_depth {
            return Err(limits::too_deep(what, depth, self.limits.max_depth));
        }
        Ok(expr)
    }

    /// Instant query at t_ms, with no deadline (decisions and tests).
    pub fn instant(&self, src: &dyn Queryable, query: &str, t_ms: i64) -> Result<Value, QueryError> {
        self.instant_within(src, query, t_ms, &Budget::unlimited())
    }

    /// Instant query at t_ms, stopped when `budget` is spent. A matrix selector or subquery at the
    /// top level returns Value::Matrix, as Prometheus does.
    pub fn instant_within(
        &self,
        src: &dyn Queryable,
        query: &str,
        t_ms: i64,
        budget: &Budget,
    ) -> Result<Value, QueryError> {
        self.instant_annotated(src, query, t_ms, budget).map(|(v, _)| v)
    }

    /// [`Self::instant_within`] with the answer's annotations.
    pub fn instant_annotated(
        &self,
        src: &dyn Queryable,
        query: &str,
        t_ms: i64,
        budget: &Budget,
    ) -> Result<(Value, Annotations), QueryError> {
        let expr = self.parse_within("query", query)?;
        let notes = RefCell::new(Annotations::default());
        let ctx = Ctx::new(src, t_ms, t_ms, 1, self.lookback_ms, budget, &notes)
            .with_delayed_names(self.delayed_name_removal);
        if let Expr::MatrixSelector(_) | Expr::Subquery(_) = unwrap_parens(&expr) {
            let m = ctx.raw_matrix(&ctx.range_arg(&expr)?)?;
            budget.check()?;
            return Ok((Value::Matrix(m), notes.take()));
        }
        let value = ctx.eval(&expr)?;
        // Loops that found the budget spent stopped early; what they made is not an answer.
        budget.check()?;
        let value = match value {
            Val::Scalar(v) => Value::Scalar { t_ms, v: v[0] },
            Val::Str(s) => Value::String { t_ms, s },
            Val::Vector(series) => {
                let mut out: Vec<InstantSample> = eval::drop_marked_names(series)?
                    .into_iter()
                    .filter_map(|s| s.vals[0].map(|v| InstantSample { labels: s.labels, t_ms, v }))
                    .collect();
                sort_instant(&expr, &mut out);
                Value::Vector(out)
            }
        };
        Ok((value, notes.take()))
    }

    /// Range query with no deadline (decisions and tests).
    pub fn range(
        &self,
        src: &dyn Queryable,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<SeriesData>, QueryError> {
        self.range_within(src, query, start_ms, end_ms, step_ms, &Budget::unlimited())
    }

    /// Range query: evaluates at start, start+step, ... <= end. Returns a matrix (a scalar expression becomes
    /// one series with no labels). Rejects (end-start)/step > max_points_per_series with BadData as
    /// Prometheus does, and step <= 0.
    pub fn range_within(
        &self,
        src: &dyn Queryable,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        budget: &Budget,
    ) -> Result<Vec<SeriesData>, QueryError> {
        self.range_annotated(src, query, start_ms, end_ms, step_ms, budget).map(|(m, _)| m)
    }

    /// [`Self::range_within`] with the answer's annotations.
    pub fn range_annotated(
        &self,
        src: &dyn Queryable,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        budget: &Budget,
    ) -> Result<(Vec<SeriesData>, Annotations), QueryError> {
        if end_ms < start_ms {
            return Err(QueryError::BadData("end timestamp must not be before start time".into()));
        }
        if step_ms <= 0 {
            return Err(QueryError::BadData(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        let max_points = self.limits.max_points_per_series;
        if (end_ms as i128 - start_ms as i128) / step_ms as i128 > max_points as i128 {
            return Err(QueryError::BadData(format!(
                "exceeded maximum resolution of {} points per timeseries. Try decreasing the query resolution (?step=XX)",
                thousands(max_points)
            )));
        }
        let expr = self.parse_within("query", query)?;
        match expr.value_type() {
            ValueType::Scalar | ValueType::Vector => {}
            other => {
                return Err(QueryError::BadData(format!(
                    "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                    type_name(other)
                )))
            }
        }
        let notes = RefCell::new(Annotations::default());
        let ctx = Ctx::new(src, start_ms, end_ms, step_ms, self.lookback_ms, budget, &notes)
            .with_delayed_names(self.delayed_name_removal);
        let value = ctx.eval(&expr)?;
        budget.check()?;
        let mut out = match value {
            Val::Scalar(v) => {
                let ts = (0..ctx.n).map(|i| ctx.ts(i)).collect();
                vec![SeriesData { labels: LabelSet::default(), samples: Samples { ts, values: v } }]
            }
            Val::Str(_) => {
                return Err(QueryError::BadData(
                    "invalid expression type \"string\" for range query, must be Scalar or instant Vector".into(),
                ))
            }
            Val::Vector(series) => eval::drop_marked_names(series)?
                .into_iter()
                .filter_map(|s| {
                    let mut samples = Samples::default();
                    for (i, v) in s.vals.iter().enumerate() {
                        if let Some(v) = v {
                            samples.ts.push(ctx.ts(i));
                            samples.values.push(*v);
                        }
                    }
                    (!samples.ts.is_empty()).then_some(SeriesData { labels: s.labels, samples })
                })
                .collect::<Vec<_>>(),
        };
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok((out, notes.take()))
    }
}

/// Whether `text` is PromQL within the default limits, parsed on a query thread: for the queries
/// of gate requests and of the config, which are checked where they arrive and run later.
pub fn check_promql(text: &str) -> Result<(), QueryError> {
    runner::on_query_stack(|| Engine::default().parse_within("query", text).map(|_| ()))
}

/// How deep an expression nests: 1 for a leaf, one more for each operator, call, aggregation,
/// parenthesis or subquery around it. Recursive: called on a query thread, on expressions whose
/// text is within `max_query_bytes`.
pub fn expr_depth(e: &Expr) -> usize {
    1 + match e {
        Expr::Aggregate(a) => expr_depth(&a.expr).max(a.param.as_deref().map_or(0, expr_depth)),
        Expr::Unary(u) => expr_depth(&u.expr),
        Expr::Binary(b) => expr_depth(&b.lhs).max(expr_depth(&b.rhs)),
        Expr::Paren(p) => expr_depth(&p.expr),
        Expr::Subquery(s) => expr_depth(&s.expr),
        Expr::Call(c) => c.args.args.iter().map(|a| expr_depth(a)).max().unwrap_or(0),
        Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::Extension(_) => 0,
    }
}

/// What promql-parser says of every grammar error.
const GENERIC_PARSE_ERROR: &str = "invalid promql query";

/// Parses a query, turning the parser's message into `QueryError::Parse`. Where the lexer failed, the
/// message gets Prometheus's `line:col: parse error:` prefix, found by lexing ever longer prefixes.
pub(crate) fn parse(query: &str) -> Result<Expr, QueryError> {
    let res = std::panic::catch_unwind(|| promql_parser::parser::parse(query));
    match res {
        Ok(Ok(e)) => Ok(e),
        Ok(Err(msg)) => Err(QueryError::Parse(match lex_error_position(query, &msg) {
            Some((line, col)) => format!("{line}:{col}: parse error: {msg}"),
            // The parser's own message where it says more than "invalid", else what was found.
            None => match (grammar_error_position(query), msg == GENERIC_PARSE_ERROR) {
                (Some(((line, col), None)), true) => format!("{line}:{col}: parse error: unexpected end of input"),
                (Some(((line, col), Some(token))), true) => format!("{line}:{col}: parse error: unexpected {token:?}"),
                (Some(((line, col), _)), false) => format!("{line}:{col}: parse error: {msg}"),
                (None, _) => format!("parse error: {msg}"),
            },
        })),
        Err(_) => Err(QueryError::Parse("parse error: the parser failed on this input".into())),
    }
}

/// The 1-based line and column where the lexer first reports `msg`, if it is a lexer error at all.
fn lex_error_position(query: &str, msg: &str) -> Option<(usize, usize)> {
    let lex = |s: &str| std::panic::catch_unwind(|| promql_parser::parser::lexer(s).err()).ok().flatten();
    if query.len() > 4096 || lex(query).as_deref() != Some(msg) {
        return None;
    }
    let ends = query.char_indices().map(|(i, c)| i + c.len_utf8());
    let end = ends.into_iter().find(|&e| lex(&query[..e]).as_deref() == Some(msg))?;
    // The offending character is the last one of the shortest prefix that fails the same way.
    let before = &query[..end];
    let last_start = before.char_indices().last().map_or(0, |(i, _)| i);
    let line = before[..last_start].matches('\n').count() + 1;
    let line_start = before[..last_start].rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..last_start].chars().count() + 1;
    Some((line, col))
}

/// Where a query stops being PromQL, for errors the parser reports without a position: the end of
/// its longest prefix that some short completion (closing brackets, an operand, a grouping's
/// operand) turns into a valid query. Returns the position and the token found there, or `None` as
/// the token when the query ends too early. Only on the error path, and only for queries of a size
/// a person types, since it parses each prefix a few times.
fn grammar_error_position(query: &str) -> Option<((usize, usize), Option<String>)> {
    if query.len() > 1024 {
        return None;
    }
    let parses = |s: &str| std::panic::catch_unwind(|| promql_parser::parser::parse(s).is_ok()).unwrap_or(false);
    let cuts: Vec<usize> = query.char_indices().map(|(i, _)| i).chain([query.len()]).collect();
    let viable = cuts.iter().rev().copied().find(|&cut| {
        let prefix = &query[..cut];
        let close = closers(prefix);
        [
            close.clone(),
            format!(" x{close}"),
            format!(" 1{close}"),
            format!("{close} (x)"),
            format!(" x{close} (x)"),
            format!("=\"v\"{close}"),
            format!("\"v\"{close}"),
            format!("m{close}"),
            format!(" 5m{close}"),
        ]
        .iter()
        .any(|c| parses(&format!("{prefix}{c}")))
    })?;
    let rest = &query[viable..];
    let skipped = rest.len() - rest.trim_start().len();
    let at = viable + skipped;
    let before = &query[..at];
    let line = before.matches('\n').count() + 1;
    let col = before[before.rfind('\n').map_or(0, |i| i + 1)..].chars().count() + 1;
    let rest = &query[at..];
    let token = match rest.chars().next() {
        None => None,
        Some(c) if c.is_alphanumeric() || c == '_' || c == ':' => {
            Some(rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect())
        }
        Some(c) => Some(c.to_string()),
    };
    Some(((line, col), token))
}

/// The brackets a prefix leaves open, closed in order (quoted strings skipped).
fn closers(prefix: &str) -> String {
    let mut stack = Vec::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in prefix.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' | '`' => quote = Some(c),
                '(' => stack.push(')'),
                '[' => stack.push(']'),
                '{' => stack.push('}'),
                ')' | ']' | '}' => {
                    stack.pop();
                }
                _ => {}
            },
        }
    }
    let mut out: String = quote.map(String::from).unwrap_or_default();
    out.extend(stack.iter().rev());
    out
}

pub(crate) fn unwrap_parens(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

fn type_name(t: ValueType) -> &'static str {
    match t {
        ValueType::Vector => "instant vector",
        ValueType::Scalar => "scalar",
        ValueType::Matrix => "range vector",
        ValueType::String => "string",
    }
}

/// 11000 -> "11,000", as Prometheus prints the resolution limit.
fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let first = match digits.len() % 3 {
        0 => 3.min(digits.len()),
        r => r,
    };
    let mut out = digits[..first].to_string();
    for chunk in digits.as_bytes()[first..].chunks(3) {
        out.push(',');
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
    }
    if n < 0 {
        out.insert(0, '-');
    }
    out
}

/// Natural order, as `sort_by_label` compares label values: runs of digits by their number, the rest
/// byte by byte (`cpu2` before `cpu10`).
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    fn chunks(s: &str) -> impl Iterator<Item = &str> {
        let mut rest = s;
        std::iter::from_fn(move || {
            let first = rest.bytes().next()?;
            let digit = first.is_ascii_digit();
            let n = rest.bytes().take_while(|b| b.is_ascii_digit() == digit).count();
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            Some(chunk)
        })
    }
    let (mut x, mut y) = (chunks(a), chunks(b));
    loop {
        match (x.next(), y.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) => {
                let numeric = p.as_bytes()[0].is_ascii_digit() && q.as_bytes()[0].is_ascii_digit();
                let o = if numeric {
                    let (p, q) = (p.trim_start_matches('0'), q.trim_start_matches('0'));
                    p.len().cmp(&q.len()).then_with(|| p.cmp(q))
                } else {
                    p.cmp(q)
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

/// Orders an instant vector: by value where the outermost operation is `sort`, `sort_desc`, `topk` or
/// `bottomk` (as Prometheus returns them), otherwise by labels so that answers are stable.
fn sort_instant(expr: &Expr, out: &mut [InstantSample]) {
    let by_value = |desc: bool| {
        move |a: &InstantSample, b: &InstantSample| {
            let (x, y) = if desc { (b.v, a.v) } else { (a.v, b.v) };
            // NaN goes last either way.
            match (a.v.is_nan(), b.v.is_nan()) {
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
            }
        }
    };
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    match unwrap_parens(expr) {
        Expr::Call(c) if c.func.name == "sort" => out.sort_by(by_value(false)),
        Expr::Call(c) if c.func.name == "sort_desc" => out.sort_by(by_value(true)),
        Expr::Call(c) if c.func.name == "sort_by_label" || c.func.name == "sort_by_label_desc" => {
            let names: Vec<&str> = c
                .args
                .args
                .iter()
                .skip(1)
                .filter_map(|a| match unwrap_parens(a) {
                    Expr::StringLiteral(s) => Some(s.val.as_str()),
                    _ => None,
                })
                .collect();
            let desc = c.func.name == "sort_by_label_desc";
            out.sort_by(|a, b| {
                let by_labels = names
                    .iter()
                    .map(|n| natural_cmp(a.labels.get(n).unwrap_or(""), b.labels.get(n).unwrap_or("")))
                    .find(|o| o.is_ne())
                    .unwrap_or_else(|| a.labels.cmp(&b.labels));
                if desc {
                    by_labels.reverse()
                } else {
                    by_labels
                }
            });
        }
        Expr::Aggregate(a) if a.op.to_string() == "topk" => out.sort_by(by_value(true)),
        Expr::Aggregate(a) if a.op.to_string() == "bottomk" => out.sort_by(by_value(false)),
        _ => {}
    }
}
