//! LogQL metric queries over log lines: `count_over_time`, `rate`, `bytes_over_time`, `bytes_rate`
//! of a log query, `sum|avg|min|max|count [by|without (...)]`, `topk|bottomk`, `vector(n)`, numbers,
//! and `+ - * /` between them — what Grafana's panels and "Save & test" send.

use std::collections::BTreeMap;

use super::cursor::{Cursor, ParseError};
use super::pipeline::LogQuery;
use crate::model::LabelSet;

#[derive(Debug)]
pub enum Expr {
    Number(f64),
    Vector(f64),
    Range { func: RangeFn, query: LogQuery, range_ns: i64 },
    Agg { op: AggOp, grouping: Option<(bool, Vec<String>)>, param: Option<f64>, inner: Box<Expr> },
    Binary { op: char, lhs: Box<Expr>, rhs: Box<Expr> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeFn {
    Count,
    Rate,
    Bytes,
    BytesRate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Topk,
    Bottomk,
}

/// A metric query's series: labels to one value per evaluation time (absent where there is none).
pub type Series = BTreeMap<LabelSet, BTreeMap<i64, f64>>;

/// Whether `query` is a metric query (as opposed to a log query `{...} | ...`).
pub fn is_metric(query: &str) -> bool {
    !query.trim_start().starts_with('{')
}

impl<'a> Cursor<'a> {
    fn expr(&mut self) -> Result<Expr, ParseError> {
        let mut lhs = self.term()?;
        loop {
            let op = if self.eat("+") {
                '+'
            } else if self.eat("-") {
                '-'
            } else {
                return Ok(lhs);
            };
            let rhs = self.term()?;
            lhs = Expr::Binary { op, lhs: Box::new(lhs), rhs: Box::new(rhs) };
        }
    }
    fn term(&mut self) -> Result<Expr, ParseError> {
        let mut lhs = self.atom()?;
        loop {
            let op = if self.eat("*") {
                '*'
            } else if self.eat("/") {
                '/'
            } else {
                return Ok(lhs);
            };
            let rhs = self.atom()?;
            lhs = Expr::Binary { op, lhs: Box::new(lhs), rhs: Box::new(rhs) };
        }
    }
    fn grouping(&mut self) -> Result<Option<(bool, Vec<String>)>, ParseError> {
        let save = self.i;
        let w = self.word();
        let without = match w {
            "by" => false,
            "without" => true,
            _ => {
                self.i = save;
                return Ok(None);
            }
        };
        self.expect("(")?;
        let mut names = Vec::new();
        while !self.eat(")") {
            let n = self.word();
            if n.is_empty() {
                return self.err("expected a label name");
            }
            names.push(n.to_string());
            if !self.eat(",") {
                self.expect(")")?;
                break;
            }
        }
        Ok(Some((without, names)))
    }
    fn atom(&mut self) -> Result<Expr, ParseError> {
        self.ws();
        if self.eat("(") {
            let e = self.expr()?;
            self.expect(")")?;
            return Ok(e);
        }
        if self.s[self.i..].starts_with(|c: char| c.is_ascii_digit() || c == '.') {
            return Ok(Expr::Number(self.number()?));
        }
        let start = self.i;
        let name = self.word();
        let range_fn = match name {
            "count_over_time" => Some(RangeFn::Count),
            "rate" => Some(RangeFn::Rate),
            "bytes_over_time" => Some(RangeFn::Bytes),
            "bytes_rate" => Some(RangeFn::BytesRate),
            _ => None,
        };
        if let Some(func) = range_fn {
            self.expect("(")?;
            self.ws();
            // The log query runs up to the `[range]` that closes it.
            let rest = &self.s[self.i..];
            let Some(open) = find_range_bracket(rest) else {
                return self.err("expected a [range] after the log query");
            };
            let query = super::parse(&rest[..open])
                .map_err(|e| ParseError { col: self.s[..self.i].chars().count() + e.col, msg: e.msg })?;
            self.i += open + 1;
            let close = self.s[self.i..].find(']').map(|k| self.i + k);
            let Some(close) = close else { return self.err("unclosed [") };
            let Some(d) = humantime::parse_duration(self.s[self.i..close].trim()).ok().filter(|d| !d.is_zero()) else {
                return self.err(format!("invalid range {:?}", &self.s[self.i..close]));
            };
            self.i = close + 1;
            self.expect(")")?;
            return Ok(Expr::Range { func, query, range_ns: d.as_nanos() as i64 });
        }
        let op = match name {
            "sum" => AggOp::Sum,
            "avg" => AggOp::Avg,
            "min" => AggOp::Min,
            "max" => AggOp::Max,
            "count" => AggOp::Count,
            "topk" => AggOp::Topk,
            "bottomk" => AggOp::Bottomk,
            "vector" => {
                self.expect("(")?;
                let v = self.number()?;
                self.expect(")")?;
                return Ok(Expr::Vector(v));
            }
            _ => {
                self.i = start;
                return self.err(format!(
                    "unexpected {:?}: expected a number, vector(), a range aggregation or an aggregation",
                    name
                ));
            }
        };
        let mut grouping = self.grouping()?;
        self.expect("(")?;
        let param = if matches!(op, AggOp::Topk | AggOp::Bottomk) {
            let k = self.number()?;
            self.expect(",")?;
            Some(k)
        } else {
            None
        };
        let inner = self.expr()?;
        self.expect(")")?;
        if grouping.is_none() {
            grouping = self.grouping()?;
        }
        Ok(Expr::Agg { op, grouping, param, inner: Box::new(inner) })
    }
}

/// The `[` that opens the range after a log query: the first one outside quotes and braces.
fn find_range_bracket(s: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q == '"' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '`' => quote = Some(c),
                '[' => return Some(i),
                _ => {}
            },
        }
    }
    None
}

pub fn parse(query: &str) -> Result<Expr, ParseError> {
    let mut p = Cursor::new(query);
    let e = p.expr()?;
    p.ws();
    if p.i != query.len() {
        return p.err("unexpected text after the expression");
    }
    Ok(e)
}

impl Expr {
    /// How deep the expression nests, its log queries' pipelines included. Recursive: called on a
    /// query thread.
    pub fn depth(&self) -> usize {
        match self {
            Expr::Number(_) | Expr::Vector(_) => 1,
            Expr::Range { query, .. } => 1 + query.depth(),
            Expr::Agg { inner, .. } => 1 + inner.depth(),
            Expr::Binary { lhs, rhs, .. } => 1 + lhs.depth().max(rhs.depth()),
        }
    }

    /// Every log query in the expression with the widest range it needs.
    pub fn selectors<'a>(&'a self, out: &mut Vec<(&'a LogQuery, i64)>) {
        match self {
            Expr::Range { query, range_ns, .. } => out.push((query, *range_ns)),
            Expr::Agg { inner, .. } => inner.selectors(out),
            Expr::Binary { lhs, rhs, .. } => {
                lhs.selectors(out);
                rhs.selectors(out);
            }
            Expr::Number(_) | Expr::Vector(_) => {}
        }
    }

    /// Evaluates at each of `times`; `counted` holds, per selector in `selectors` order, the lines
    /// of `[first time − range, last time]` counted into its windows.
    pub fn eval(&self, times: &[i64], counted: &mut std::slice::Iter<'_, WindowCounts<'_>>) -> Value {
        match self {
            Expr::Number(v) => Value::Scalar(*v),
            Expr::Vector(v) => {
                let mut s = Series::new();
                s.insert(LabelSet::default(), times.iter().map(|&t| (t, *v)).collect());
                Value::Series(s)
            }
            Expr::Range { func, range_ns, .. } => {
                let counted = counted.next().expect("one count per selector");
                Value::Series(counted.series(*func, *range_ns))
            }
            Expr::Agg { op, grouping, param, inner } => {
                let Value::Series(inner) = inner.eval(times, counted) else { return Value::Series(Series::new()) };
                Value::Series(aggregate(*op, grouping.as_ref(), *param, times, inner))
            }
            Expr::Binary { op, lhs, rhs } => {
                let (l, r) = (lhs.eval(times, counted), rhs.eval(times, counted));
                binary(*op, l, r)
            }
        }
    }
}

/// One range selector's lines counted into the windows `(t − range, t]` of every evaluation time,
/// per label set after the pipeline, as they are read: a line adds to a difference array (+1 at
/// the first window holding it, −1 after the last), so nothing of a line is kept. Memory is two
/// `i64` per evaluation time per label set, and label sets stop at `max_series`.
pub struct WindowCounts<'a> {
    query: &'a LogQuery,
    times: &'a [i64],
    range_ns: i64,
    max_series: usize,
    /// Per label set: line counts and bytes, as differences between neighbouring times.
    per: Vec<(LabelSet, Vec<i64>, Vec<i64>)>,
    index: std::collections::HashMap<LabelSet, usize>,
    /// The stream last counted, by address, and its place in `per`: lines come a chunk at a time,
    /// and a pipeline of filters keeps the stream's labels, so most lines need no hashing.
    last: Option<(usize, usize)>,
    /// A label set past `max_series` was seen (and not counted).
    pub over: bool,
}

impl<'a> WindowCounts<'a> {
    pub fn new(query: &'a LogQuery, times: &'a [i64], range_ns: i64, max_series: usize) -> Self {
        WindowCounts {
            query,
            times,
            range_ns,
            max_series,
            per: Vec::new(),
            index: Default::default(),
            last: None,
            over: false,
        }
    }

    /// Counts one line of a stream labelled `labels`, if the pipeline keeps it.
    pub fn add(&mut self, labels: &LabelSet, time_ns: i64, line: &str) {
        // The windows holding the line: from the first time at or after it to the last before
        // time + range (times are in order).
        let lo = self.times.partition_point(|&t| t < time_ns);
        let hi = self.times.partition_point(|&t| t.saturating_sub(self.range_ns) < time_ns);
        if lo >= hi {
            return;
        }
        let stream = labels as *const LabelSet as usize;
        let (slot, len) = if self.query.filters_only() {
            if !self.query.keeps(line) {
                return;
            }
            match self.last {
                Some((at, slot)) if at == stream => (slot, line.len()),
                _ => match self.slot(std::borrow::Cow::Borrowed(labels)) {
                    Some(slot) => {
                        self.last = Some((stream, slot));
                        (slot, line.len())
                    }
                    None => return,
                },
            }
        } else {
            match self.query.process(labels, line) {
                Some(p) => match self.slot(p.labels) {
                    Some(slot) => (slot, p.line.len()),
                    None => return,
                },
                None => return,
            }
        };
        let (_, counts, bytes) = &mut self.per[slot];
        counts[lo] += 1;
        counts[hi] -= 1;
        bytes[lo] += len as i64;
        bytes[hi] -= len as i64;
    }

    /// The place of `labels` in `per`, made if new; `None` (and `over` set) past `max_series`.
    fn slot(&mut self, labels: std::borrow::Cow<'_, LabelSet>) -> Option<usize> {
        if let Some(&slot) = self.index.get(labels.as_ref()) {
            return Some(slot);
        }
        if self.per.len() >= self.max_series {
            self.over = true;
            return None;
        }
        let n = self.times.len() + 1;
        let labels = labels.into_owned();
        self.index.insert(labels.clone(), self.per.len());
        self.per.push((labels, vec![0; n], vec![0; n]));
        Some(self.per.len() - 1)
    }

    /// Adds what another reader (another core's share of the chunks) counted.
    pub fn merge(&mut self, other: WindowCounts<'_>) {
        self.over |= other.over;
        for (labels, c, b) in other.per {
            let Some(slot) = self.slot(std::borrow::Cow::Owned(labels)) else { continue };
            let (_, counts, bytes) = &mut self.per[slot];
            counts.iter_mut().zip(c).for_each(|(x, y)| *x += y);
            bytes.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        }
    }

    fn series(&self, func: RangeFn, range_ns: i64) -> Series {
        let secs = range_ns as f64 / 1e9;
        let mut out = Series::new();
        for (labels, counts, bytes) in &self.per {
            let (mut count, mut size) = (0i64, 0i64);
            let mut points = BTreeMap::new();
            for (i, &t) in self.times.iter().enumerate() {
                count += counts[i];
                size += bytes[i];
                if count > 0 {
                    let v = match func {
                        RangeFn::Count => count as f64,
                        RangeFn::Rate => count as f64 / secs,
                        RangeFn::Bytes => size as f64,
                        RangeFn::BytesRate => size as f64 / secs,
                    };
                    points.insert(t, v);
                }
            }
            if !points.is_empty() {
                out.insert(labels.clone(), points);
            }
        }
        out
    }
}

#[derive(Debug)]
pub enum Value {
    Scalar(f64),
    Series(Series),
}

fn group_key(labels: &LabelSet, grouping: Option<&(bool, Vec<String>)>) -> LabelSet {
    match grouping {
        None => LabelSet::default(),
        Some((false, by)) => labels.filtered(|n| by.iter().any(|b| b == n)),
        Some((true, without)) => labels.filtered(|n| !without.iter().any(|b| b == n)),
    }
}

fn aggregate(
    op: AggOp,
    grouping: Option<&(bool, Vec<String>)>,
    param: Option<f64>,
    times: &[i64],
    inner: Series,
) -> Series {
    if matches!(op, AggOp::Topk | AggOp::Bottomk) {
        let k = param.unwrap_or(1.0).max(0.0) as usize;
        let mut out = Series::new();
        for &t in times {
            let mut groups: BTreeMap<LabelSet, Vec<(&LabelSet, f64)>> = BTreeMap::new();
            for (l, pts) in &inner {
                if let Some(&v) = pts.get(&t) {
                    groups.entry(group_key(l, grouping)).or_default().push((l, v));
                }
            }
            for (_, mut members) in groups {
                members.sort_by(|a, b| if op == AggOp::Topk { b.1.total_cmp(&a.1) } else { a.1.total_cmp(&b.1) });
                for (l, v) in members.into_iter().take(k) {
                    out.entry(l.clone()).or_default().insert(t, v);
                }
            }
        }
        return out;
    }
    let mut acc: BTreeMap<LabelSet, BTreeMap<i64, (f64, usize)>> = BTreeMap::new();
    for (l, pts) in inner {
        let slot = acc.entry(group_key(&l, grouping)).or_default();
        for (t, v) in pts {
            let e = slot.entry(t).or_insert((
                match op {
                    AggOp::Min => f64::INFINITY,
                    AggOp::Max => f64::NEG_INFINITY,
                    _ => 0.0,
                },
                0,
            ));
            e.1 += 1;
            e.0 = match op {
                AggOp::Sum | AggOp::Avg => e.0 + v,
                AggOp::Min => e.0.min(v),
                AggOp::Max => e.0.max(v),
                AggOp::Count => e.1 as f64,
                AggOp::Topk | AggOp::Bottomk => unreachable!("handled above"),
            };
        }
    }
    acc.into_iter()
        .map(|(l, pts)| {
            (l, pts.into_iter().map(|(t, (v, n))| (t, if op == AggOp::Avg { v / n as f64 } else { v })).collect())
        })
        .collect()
}

fn apply(op: char, a: f64, b: f64) -> f64 {
    match op {
        '+' => a + b,
        '-' => a - b,
        '*' => a * b,
        _ => a / b,
    }
}

/// Scalars combine with every point; two series match by identical label sets.
fn binary(op: char, l: Value, r: Value) -> Value {
    match (l, r) {
        (Value::Scalar(a), Value::Scalar(b)) => Value::Scalar(apply(op, a, b)),
        (Value::Series(s), Value::Scalar(b)) => Value::Series(
            s.into_iter().map(|(l, p)| (l, p.into_iter().map(|(t, v)| (t, apply(op, v, b))).collect())).collect(),
        ),
        (Value::Scalar(a), Value::Series(s)) => Value::Series(
            s.into_iter().map(|(l, p)| (l, p.into_iter().map(|(t, v)| (t, apply(op, a, v))).collect())).collect(),
        ),
        (Value::Series(a), Value::Series(b)) => {
            let mut out = Series::new();
            for (l, pa) in a {
                if let Some(pb) = b.get(&l) {
                    let pts: BTreeMap<i64, f64> =
                        pa.into_iter().filter_map(|(t, v)| pb.get(&t).map(|w| (t, apply(op, v, *w)))).collect();
                    if !pts.is_empty() {
                        out.insert(l, pts);
                    }
                }
            }
            Value::Series(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::logs::{LogLine, LogStreamOut};

    fn stream(c: &str, times_s: &[i64], text: &str) -> LogStreamOut {
        LogStreamOut {
            labels: LabelSet::from_pairs([("container", c), ("stream", "stdout")]),
            lines: times_s.iter().map(|&t| LogLine { time_ns: t * 1_000_000_000, line: text.into() }).collect(),
        }
    }

    fn eval(q: &str, times_s: &[i64], data: Vec<Vec<LogStreamOut>>) -> Value {
        let e = parse(q).unwrap();
        let times: Vec<i64> = times_s.iter().map(|t| t * 1_000_000_000).collect();
        let mut sels = Vec::new();
        e.selectors(&mut sels);
        let counted: Vec<WindowCounts> = sels
            .iter()
            .zip(&data)
            .map(|((q, range), streams)| {
                let mut w = WindowCounts::new(q, &times, *range, 500);
                for st in streams {
                    for l in &st.lines {
                        w.add(&st.labels, l.time_ns, &l.line);
                    }
                }
                w
            })
            .collect();
        e.eval(&times, &mut counted.iter())
    }

    #[test]
    fn counts_merged_from_several_readers_equal_one_reader_s() {
        let q = parse(r#"count_over_time({stream="stdout"}[5s])"#).unwrap();
        let mut sels = Vec::new();
        q.selectors(&mut sels);
        let (query, range) = sels[0];
        let times: Vec<i64> = (0..20).map(|t| t * 1_000_000_000).collect();
        let st = stream("web", &(0..20).collect::<Vec<_>>(), "x");
        let mut whole = WindowCounts::new(query, &times, range, 500);
        let (mut a, mut b) =
            (WindowCounts::new(query, &times, range, 500), WindowCounts::new(query, &times, range, 500));
        for (i, l) in st.lines.iter().enumerate() {
            whole.add(&st.labels, l.time_ns, &l.line);
            if i % 3 == 0 { &mut a } else { &mut b }.add(&st.labels, l.time_ns, &l.line);
        }
        a.merge(b);
        assert_eq!(a.series(RangeFn::Count, range), whole.series(RangeFn::Count, range));
        assert_eq!(whole.series(RangeFn::Count, range)[&st.labels][&10_000_000_000], 5.0);
    }

    #[test]
    fn label_sets_past_the_bound_are_not_counted_and_say_so() {
        let q = parse(r#"count_over_time({stream="stdout"} | json [5s])"#).unwrap();
        let mut sels = Vec::new();
        q.selectors(&mut sels);
        let times = [5_000_000_000i64];
        let mut w = WindowCounts::new(sels[0].0, &times, sels[0].1, 2);
        let labels = LabelSet::from_pairs([("stream", "stdout")]);
        for i in 0..5 {
            w.add(&labels, 1_000_000_000, &format!(r#"{{"id":"{i}"}}"#));
        }
        assert!(w.over);
        assert_eq!(w.series(RangeFn::Count, sels[0].1).len(), 2);
    }

    #[test]
    fn grafanas_save_and_test_is_two() {
        let Value::Series(s) = eval("vector(1)+vector(1)", &[4], vec![]) else { panic!() };
        assert_eq!(s[&LabelSet::default()][&4_000_000_000], 2.0);
    }

    #[test]
    fn counts_rates_and_sums_over_windows() {
        // web: lines at 1..=10 s; db: at 5 and 6 s. Windows (t − 5 s, t].
        let data = || vec![vec![stream("web", &(1..=10).collect::<Vec<_>>(), "error x"), stream("db", &[5, 6], "ok")]];
        let Value::Series(s) = eval(r#"count_over_time({stream="stdout"}[5s])"#, &[5, 10], data()) else { panic!() };
        let web = LabelSet::from_pairs([("container", "web"), ("stream", "stdout")]);
        assert_eq!(s[&web][&5_000_000_000], 5.0);
        assert_eq!(s[&web][&10_000_000_000], 5.0);
        let db = LabelSet::from_pairs([("container", "db"), ("stream", "stdout")]);
        assert_eq!(s[&db].get(&10_000_000_000), Some(&1.0), "6 s is in (5, 10]");
        let Value::Series(s) = eval(r#"sum by (stream) (rate({stream="stdout"} |= "error" [5s]))"#, &[10], data())
        else {
            panic!()
        };
        assert_eq!(s[&LabelSet::from_pairs([("stream", "stdout")])][&10_000_000_000], 1.0);
        let Value::Series(s) = eval(r#"topk(1, bytes_over_time({stream="stdout"}[10s])) * 2"#, &[10], data()) else {
            panic!()
        };
        assert_eq!(s.len(), 1);
        assert_eq!(s[&web][&10_000_000_000], 140.0);
    }

    #[test]
    fn parsed_labels_split_series_for_grouping() {
        let mut web = stream("web", &[1, 2, 3], r#"{"level":"error"}"#);
        web.lines[2].line = r#"{"level":"info"}"#.into();
        let data = vec![vec![web, stream("db", &[2], "level=error msg=x")]];
        let q = r#"sum by (level) (count_over_time({stream="stdout"} | json | drop __error__ [5s]))"#;
        let Value::Series(s) = eval(q, &[5], data) else { panic!() };
        assert_eq!(s[&LabelSet::from_pairs([("level", "error")])][&5_000_000_000], 2.0);
        assert_eq!(s[&LabelSet::from_pairs([("level", "info")])][&5_000_000_000], 1.0);
        assert_eq!(s[&LabelSet::default()][&5_000_000_000], 1.0, "the logfmt line is no JSON: no level");
    }

    #[test]
    fn errors_name_the_column() {
        assert_eq!(parse(r#"count_over_time({a="b"} [5x])"#).unwrap_err().msg, "invalid range \"5x\"");
        assert_eq!(parse(r#"count_over_time({a="b" |= "x"[5m])"#).unwrap_err().col, 24);
        assert_eq!(parse("nope(1)").unwrap_err().col, 1);
        assert!(is_metric("sum(count_over_time({a=\"b\"}[1m]))") && !is_metric(" {a=\"b\"}"));
    }
}
