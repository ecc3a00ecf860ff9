//! Runs PromQL test files in Prometheus's `promqltest` format (`load`, `eval`, `clear`) against this
//! engine: the engine's own test files and `lookout bench promqltest` over Prometheus's files.
//!
//! The format, as Prometheus's `promql/promqltest` reads it: `load <step>` then indented series
//! lines (`name{labels} 1+2x3 _ stale`), whose i-th value lies at i*step from time 0; `eval instant at
//! <t> <expr>` or `eval range from <t> to <t> step <d> <expr>` then indented expected results, one
//! per line (`{labels} value` for instant vectors, a bare value for a scalar, `{labels} v1 v2 _ ...`
//! per step for ranges); `eval_fail` expects an error, `eval_ordered` the given order; `eval_warn`
//! expects at least one warning beside the answer and `eval_info` at least one info and no warning,
//! as Prometheus 3.0's test runner checks (an `eval` must give no warning; the messages' text is not
//! compared). As in Prometheus, an instant evaluation is also run as a range query from t-1m to
//! t+1m in steps of 1m, and its middle step must give the same result.

use super::{Engine, Queryable, Value};
use crate::model::{LabelSet, Matcher, Samples, SeriesData, METRIC_NAME, STALE_NAN_BITS};
use crate::query::QueryError;

/// What running one file found.
#[derive(Debug, Default)]
pub struct FileReport {
    /// Evaluations whose answers agreed with the file.
    pub passed: usize,
    /// Evaluations that need native histograms (their data or their expected answers): not run.
    pub skipped: usize,
    /// Evaluations that disagreed, and lines the harness could not read.
    pub failures: Vec<Failure>,
}

impl FileReport {
    pub fn evaluated(&self) -> usize {
        self.passed + self.failures.len()
    }
}

/// One evaluation that disagreed, by its line in the file.
#[derive(Debug, Clone)]
pub struct Failure {
    pub line: usize,
    pub query: String,
    pub why: String,
}

/// Series held in memory, as the file's `load` commands wrote them, and the labels of the native
/// histograms they also wrote (which this engine does not store): a selector that matches one of
/// those marks the evaluation as needing native histograms.
#[derive(Default)]
struct MemStore {
    series: Vec<SeriesData>,
    histograms: Vec<LabelSet>,
    touched_histograms: std::sync::atomic::AtomicBool,
}

impl Queryable for MemStore {
    fn select(&self, matchers: &[Matcher], start_ms: i64, end_ms: i64) -> Result<Vec<SeriesData>, QueryError> {
        if self.histograms.iter().any(|h| matchers.iter().all(|m| m.matches_labels(h))) {
            self.touched_histograms.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(self
            .series
            .iter()
            .filter(|s| matchers.iter().all(|m| m.matches_labels(&s.labels)))
            .map(|s| {
                let lo = s.samples.ts.partition_point(|t| *t < start_ms);
                let hi = s.samples.ts.partition_point(|t| *t <= end_ms);
                SeriesData {
                    labels: s.labels.clone(),
                    samples: Samples { ts: s.samples.ts[lo..hi].to_vec(), values: s.samples.values[lo..hi].to_vec() },
                }
            })
            .collect())
    }
}

impl MemStore {
    /// Adds points to the series with these labels (a later `load` may extend an earlier one).
    fn add(&mut self, labels: LabelSet, points: Vec<(i64, f64)>) {
        let i = match self.series.iter().position(|s| s.labels == labels) {
            Some(i) => i,
            None => {
                self.series.push(SeriesData { labels, samples: Samples::default() });
                self.series.len() - 1
            }
        };
        let s = &mut self.series[i].samples;
        // A later definition of a series wins at the times both give, as in Prometheus's `load`.
        let mut all: Vec<(i64, f64)> =
            points.into_iter().chain(s.ts.iter().copied().zip(s.values.iter().copied())).collect();
        all.sort_by_key(|p| p.0);
        all.dedup_by_key(|p| p.0);
        s.ts = all.iter().map(|p| p.0).collect();
        s.values = all.iter().map(|p| p.1).collect();
    }
}

/// How an `eval` line wants its answer judged.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Values,
    Ordered,
    Fail,
}

/// The annotations an evaluation must carry.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Notes {
    NoWarning,
    Warning,
    Info,
}

impl Notes {
    fn check(self, got: &super::Annotations) -> Result<(), String> {
        match self {
            Notes::Warning if got.warnings.is_empty() => Err("expected a warning, got none".into()),
            Notes::NoWarning | Notes::Info if !got.warnings.is_empty() => {
                Err(format!("unexpected warnings: {:?}", got.warnings))
            }
            Notes::Info if got.infos.is_empty() => Err("expected an info annotation, got none".into()),
            _ => Ok(()),
        }
    }
}

enum When {
    Instant(i64),
    Range { start: i64, end: i64, step: i64 },
}

/// One expected result line: labels (empty for a scalar) and values, `None` where omitted (`_`).
struct Expected {
    labels: Option<LabelSet>,
    values: Vec<Option<f64>>,
    string: Option<String>,
}

/// Runs every command of `text` with `engine`.
pub fn run(engine: &Engine, text: &str) -> FileReport {
    let lines: Vec<&str> = text.lines().collect();
    let mut report = FileReport::default();
    let mut store = MemStore::default();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_end();
        let lineno = i + 1;
        i += 1;
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let block_end = {
            let mut j = i;
            while j < lines.len() && is_indented(lines[j]) {
                j += 1;
            }
            j
        };
        let body: Vec<(usize, &str)> = (i..block_end)
            .map(|j| (j + 1, lines[j].trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
            .collect();
        i = block_end;
        let (cmd, rest) = trimmed.split_once(char::is_whitespace).unwrap_or((trimmed, ""));
        let fail = |why: String| Failure { line: lineno, query: trimmed.to_string(), why };
        match cmd {
            "clear" => store = MemStore::default(),
            "load" | "load_with_nhcb" => {
                let Some(step) = parse_duration(rest.trim()) else {
                    report.failures.push(fail(format!("bad load step {rest:?}")));
                    continue;
                };
                for (n, l) in body {
                    let loaded = parse_labels(l).and_then(|(labels, values)| {
                        if values.contains("{{") {
                            store.histograms.push(labels.clone());
                        } else if cmd == "load_with_nhcb" {
                            // The native histogram with custom buckets Prometheus makes of a classic one.
                            let name = labels.metric_name().unwrap_or_default();
                            if let Some(base) = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s))
                            {
                                let mut h = labels.filtered(|l| l != "le");
                                h.set(METRIC_NAME, base);
                                store.histograms.push(h);
                            }
                        }
                        if !values.contains("{{") {
                            store.add(labels, points(step, &parse_values(values)?));
                        }
                        Ok(())
                    });
                    if let Err(e) = loaded {
                        report.failures.push(Failure { line: n, query: l.to_string(), why: e });
                    }
                }
            }
            c if c.starts_with("eval") => {
                let (expect, notes) = match c {
                    "eval" => (Expect::Values, Notes::NoWarning),
                    "eval_warn" => (Expect::Values, Notes::Warning),
                    "eval_info" => (Expect::Values, Notes::Info),
                    "eval_ordered" => (Expect::Ordered, Notes::NoWarning),
                    "eval_fail" => (Expect::Fail, Notes::NoWarning),
                    other => {
                        report.failures.push(fail(format!("unknown command {other}")));
                        continue;
                    }
                };
                let (when, query) = match parse_when(rest) {
                    Ok(w) => w,
                    Err(e) => {
                        report.failures.push(fail(e));
                        continue;
                    }
                };
                // Functions of native histograms only, and answers that are histograms.
                let histogram_fns = [
                    "histogram_count",
                    "histogram_sum",
                    "histogram_avg",
                    "histogram_fraction",
                    "histogram_stddev",
                    "histogram_stdvar",
                ];
                if body.iter().any(|(_, l)| l.contains("{{")) || identifiers(query).any(|w| histogram_fns.contains(&w))
                {
                    report.skipped += 1;
                    continue;
                }
                let mut expected = Vec::new();
                let mut bad = None;
                for (_, l) in &body {
                    if l.starts_with("expected_fail") || l.starts_with("expect ") {
                        continue; // the error's text is Prometheus's own; only failing is compared
                    }
                    match parse_expected(l) {
                        Ok(e) => expected.push(e),
                        Err(e) => bad = Some(e),
                    }
                }
                if let Some(e) = bad {
                    report.failures.push(fail(e));
                    continue;
                }
                // A panic is an answer too (a wrong one): reported, and the file goes on.
                let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    check(engine, &store, &when, query, expect, notes, &expected)
                }));
                if store.touched_histograms.swap(false, std::sync::atomic::Ordering::Relaxed) {
                    report.skipped += 1;
                    continue;
                }
                match checked {
                    Ok(Ok(())) => report.passed += 1,
                    Ok(Err(why)) => report.failures.push(fail(why)),
                    Err(panic) => {
                        let msg = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        report.failures.push(fail(format!("the engine panicked: {msg}")))
                    }
                }
            }
            other => report.failures.push(fail(format!("unknown command {other}"))),
        }
    }
    report
}

fn is_indented(l: &str) -> bool {
    l.starts_with([' ', '\t']) || l.trim().is_empty()
}

/// Words of `query` that could be metric names.
fn identifiers(query: &str) -> impl Iterator<Item = &str> {
    query.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).filter(|w| !w.is_empty())
}

fn points(step: i64, values: &[Option<f64>]) -> Vec<(i64, f64)> {
    values.iter().enumerate().filter_map(|(i, v)| v.map(|v| (i as i64 * step, v))).collect()
}

/// `instant at <t> <expr>` or `range from <t> to <t> step <d> <expr>`.
fn parse_when(rest: &str) -> Result<(When, &str), String> {
    let mut words = rest.trim_start();
    let mut next = || -> Result<&str, String> {
        let w = words.trim_start();
        let (word, tail) =
            w.split_once(char::is_whitespace).ok_or_else(|| format!("eval line ends early: {rest:?}"))?;
        words = tail;
        Ok(word)
    };
    let dur = |w: &str| parse_duration(w).ok_or_else(|| format!("bad time {w:?}"));
    match next()? {
        "instant" => {
            if next()? != "at" {
                return Err(format!("expected `at` in {rest:?}"));
            }
            let t = dur(next()?)?;
            Ok((When::Instant(t), words.trim()))
        }
        "range" => {
            let mut get = |kw: &str| -> Result<i64, String> {
                let w = next()?;
                if w != kw {
                    return Err(format!("expected `{kw}` in {rest:?}"));
                }
                dur(next()?)
            };
            let start = get("from")?;
            let end = get("to")?;
            let step = get("step")?;
            Ok((When::Range { start, end, step }, words.trim()))
        }
        other => Err(format!("expected `instant` or `range`, found {other:?}")),
    }
}

/// Prometheus's duration syntax (`1h30m`, `10s`, `1ms`, `0`), in milliseconds; a leading `-` negates.
pub fn parse_duration(s: &str) -> Option<i64> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if s == "0" {
        return Some(0);
    }
    let mut total: i64 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let mult = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.checked_add(n.checked_mul(mult)?)?;
    }
    Some(if neg { -total } else { total })
}

/// A series line: `name{l="v",...} values...`, the name or the braces optional.
fn parse_series_line(l: &str) -> Result<(LabelSet, Vec<Option<f64>>), String> {
    let (labels, rest) = parse_labels(l)?;
    Ok((labels, parse_values(rest)?))
}

/// The metric name and braces at the start of `l`, and what follows them.
fn parse_labels(l: &str) -> Result<(LabelSet, &str), String> {
    let name_len = l.bytes().take_while(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b':').count();
    let mut pairs: Vec<(String, String)> = Vec::new();
    if name_len > 0 {
        pairs.push((METRIC_NAME.to_string(), l[..name_len].to_string()));
    }
    let mut rest = &l[name_len..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut s = inner;
        loop {
            s = s.trim_start_matches([' ', ',']);
            if let Some(after) = s.strip_prefix('}') {
                rest = after;
                break;
            }
            let (name, after) = if s.starts_with('"') {
                let (n, after) = parse_quoted(s)?;
                (n, after)
            } else {
                let n = s.bytes().take_while(|b| b.is_ascii_alphanumeric() || *b == b'_').count();
                if n == 0 {
                    return Err(format!("bad label set in {l:?}"));
                }
                (s[..n].to_string(), &s[n..])
            };
            let after = after.trim_start();
            // `{"name"}` alone is a metric name (Prometheus 3's quoted names).
            if after.starts_with(',') || after.starts_with('}') {
                pairs.push((METRIC_NAME.to_string(), name));
                s = after;
                continue;
            }
            let after = after.strip_prefix('=').ok_or_else(|| format!("expected `=` in {l:?}"))?;
            let (value, after) = parse_quoted(after.trim_start())?;
            pairs.push((name, value));
            s = after;
        }
    }
    Ok((LabelSet::from_pairs(pairs), rest))
}

/// A Go double-quoted string at the start of `s`, unescaped, and what follows it.
fn parse_quoted(s: &str) -> Result<(String, &str), String> {
    let mut chars = s.char_indices();
    if chars.next().map(|c| c.1) != Some('"') {
        return Err(format!("expected a quoted string at {s:?}"));
    }
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            '\\' => match chars.next().map(|c| c.1) {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    Err(format!("unterminated string in {s:?}"))
}

/// A series' values: numbers, `Inf`, `NaN`, `stale`, `_` (omitted), `a+bxn` and `a-bxn` (n+1
/// values from a in steps of b), `axn` (a, n+1 times), `_xn` (n omitted).
fn parse_values(s: &str) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for item in s.split_whitespace() {
        let (head, times) = match item.rsplit_once('x') {
            Some((h, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                (h, Some(n.parse::<usize>().map_err(|e| e.to_string())?))
            }
            _ => (item, None),
        };
        if head == "_" {
            out.extend(std::iter::repeat_n(None, times.unwrap_or(1)));
            continue;
        }
        let Some(n) = times else {
            out.push(Some(parse_value(head).ok_or_else(|| format!("bad value {item:?}"))?));
            continue;
        };
        // Split `a+b` / `a-b` at the sign that follows the first number (not an exponent's).
        let split = head
            .char_indices()
            .skip(1)
            .find(|&(i, c)| (c == '+' || c == '-') && !matches!(head.as_bytes()[i - 1], b'e' | b'E'))
            .map(|(i, _)| i);
        let (start, delta) = match split {
            Some(i) => (&head[..i], &head[i..]),
            None => (head, "0"),
        };
        let start = parse_value(start).ok_or_else(|| format!("bad value {item:?}"))?;
        let delta = parse_value(delta).ok_or_else(|| format!("bad value {item:?}"))?;
        let mut v = start;
        for _ in 0..=n {
            out.push(Some(v));
            v += delta;
        }
    }
    Ok(out)
}

fn parse_value(s: &str) -> Option<f64> {
    let lower = s.to_ascii_lowercase();
    Some(match lower.trim_start_matches('+') {
        "stale" => f64::from_bits(STALE_NAN_BITS),
        "inf" => {
            if lower.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            }
        }
        "-inf" => f64::NEG_INFINITY,
        "nan" => f64::NAN,
        _ => {
            if let Some(hex) = lower.strip_prefix("0x") {
                return i64::from_str_radix(hex, 16).ok().map(|v| v as f64);
            }
            s.parse().ok()?
        }
    })
}

fn parse_expected(l: &str) -> Result<Expected, String> {
    if l.starts_with('"') {
        let (s, _) = parse_quoted(l)?;
        return Ok(Expected { labels: None, values: Vec::new(), string: Some(s) });
    }
    // A bare value is a scalar; anything that starts with a name or a brace is a series.
    let first = l.split_whitespace().next().unwrap_or_default();
    if l.split_whitespace().count() == 1 && parse_value(first).is_some() {
        return Ok(Expected { labels: None, values: vec![parse_value(first)], string: None });
    }
    let (labels, values) = parse_series_line(l)?;
    Ok(Expected { labels: Some(labels), values, string: None })
}

/// Prometheus's comparison of expected and computed values: NaNs are equal, others within a
/// relative 1e-6.
fn almost_equal(a: f64, b: f64) -> bool {
    super::histogram::almost_equal(a, b, 1e-6)
}

fn check(
    engine: &Engine,
    store: &MemStore,
    when: &When,
    query: &str,
    expect: Expect,
    notes: Notes,
    expected: &[Expected],
) -> Result<(), String> {
    let unlimited = crate::query::Budget::unlimited();
    match *when {
        When::Instant(t) => {
            let got = engine.instant_annotated(store, query, t, &unlimited);
            if expect == Expect::Fail {
                return match got {
                    Err(_) => Ok(()),
                    Ok((v, _)) => Err(format!("expected an error, got {}", show_value(&v))),
                };
            }
            let (got, annotations) = got.map_err(|e| format!("error: {e}"))?;
            compare_instant(&got, expected, expect == Expect::Ordered)?;
            notes.check(&annotations)?;
            if matches!(got, Value::Matrix(_) | Value::String { .. }) || expect == Expect::Ordered {
                return Ok(());
            }
            // The same in range mode: the middle of three steps around t.
            let range = engine
                .range(store, query, t - 60_000, t + 60_000, 60_000)
                .map_err(|e| format!("range mode: error: {e}"))?;
            let at_t: Vec<(LabelSet, f64)> = range
                .iter()
                .filter_map(|s| {
                    s.samples.ts.iter().position(|x| *x == t).map(|i| (s.labels.clone(), s.samples.values[i]))
                })
                .collect();
            let as_value = match got {
                Value::Scalar { .. } => {
                    Value::Scalar { t_ms: t, v: at_t.first().map(|p| p.1).ok_or("range mode: no scalar at t")? }
                }
                _ => Value::Vector(
                    at_t.into_iter().map(|(labels, v)| super::InstantSample { labels, t_ms: t, v }).collect(),
                ),
            };
            compare_instant(&as_value, expected, false).map_err(|e| format!("range mode: {e}"))
        }
        When::Range { start, end, step } => {
            let got = engine.range_annotated(store, query, start, end, step, &unlimited);
            if expect == Expect::Fail {
                return match got {
                    Err(_) => Ok(()),
                    Ok((m, _)) => Err(format!("expected an error, got {} series", m.len())),
                };
            }
            let (got, annotations) = got.map_err(|e| format!("error: {e}"))?;
            notes.check(&annotations)?;
            let mut unmatched: Vec<&SeriesData> = got.iter().collect();
            for e in expected {
                let labels = e.labels.clone().unwrap_or_default();
                let Some(pos) = unmatched.iter().position(|s| s.labels == labels) else {
                    return Err(format!("expected {labels} in the result, which has {}", show_labels(&got)));
                };
                let s = unmatched.remove(pos);
                let want: Vec<(i64, f64)> =
                    e.values.iter().enumerate().filter_map(|(i, v)| v.map(|v| (start + i as i64 * step, v))).collect();
                let have: Vec<(i64, f64)> =
                    s.samples.ts.iter().copied().zip(s.samples.values.iter().copied()).collect();
                let same = want.len() == have.len()
                    && want.iter().zip(&have).all(|(a, b)| a.0 == b.0 && almost_equal(a.1, b.1));
                if !same {
                    return Err(format!("{labels}: expected {}, got {}", show_points(&want), show_points(&have)));
                }
            }
            if !unmatched.is_empty() {
                return Err(format!("unexpected series {}", show_labels_of(&unmatched)));
            }
            Ok(())
        }
    }
}

fn compare_instant(got: &Value, expected: &[Expected], ordered: bool) -> Result<(), String> {
    match got {
        Value::Scalar { v, .. } => match expected {
            [Expected { labels: None, values, string: None }] if values.len() == 1 => {
                let want = values[0].unwrap_or(f64::NAN);
                if almost_equal(want, *v) {
                    Ok(())
                } else {
                    Err(format!("expected scalar {want}, got {v}"))
                }
            }
            _ => Err(format!("expected {} results, got scalar {v}", expected.len())),
        },
        Value::String { s, .. } => match expected {
            [Expected { string: Some(want), .. }] if want == s => Ok(()),
            _ => Err(format!("got string {s:?}")),
        },
        Value::Vector(samples) => {
            if samples.len() != expected.len() {
                return Err(format!("expected {} samples, got {}: {}", expected.len(), samples.len(), show_value(got)));
            }
            let mut unmatched: Vec<(usize, &super::InstantSample)> = samples.iter().enumerate().collect();
            for (i, e) in expected.iter().enumerate() {
                let labels = e.labels.clone().ok_or("expected a series, got a vector")?;
                let want = e.values.first().copied().flatten().ok_or("expected line without a value")?;
                let Some(pos) = unmatched.iter().position(|(_, s)| s.labels == labels) else {
                    return Err(format!("expected {labels} in the result, which is {}", show_value(got)));
                };
                let (at, s) = unmatched.remove(pos);
                if ordered && at != i {
                    return Err(format!("{labels}: expected at position {i}, found at {at}"));
                }
                if !almost_equal(want, s.v) {
                    return Err(format!("{labels}: expected {want}, got {}", s.v));
                }
            }
            Ok(())
        }
        Value::Matrix(series) => {
            if series.len() != expected.len() {
                return Err(format!("expected {} series, got {}", expected.len(), series.len()));
            }
            for e in expected {
                let labels = e.labels.clone().unwrap_or_default();
                let s = series
                    .iter()
                    .find(|s| s.labels == labels)
                    .ok_or_else(|| format!("expected {labels} in the result, which has {}", show_labels(series)))?;
                let want: Vec<f64> = e.values.iter().flatten().copied().collect();
                let same = want.len() == s.samples.values.len()
                    && want.iter().zip(&s.samples.values).all(|(a, b)| almost_equal(*a, *b));
                if !same {
                    return Err(format!("{labels}: expected {want:?}, got {:?}", s.samples.values));
                }
            }
            Ok(())
        }
    }
}

fn show_value(v: &Value) -> String {
    match v {
        Value::Scalar { v, .. } => format!("scalar {v}"),
        Value::String { s, .. } => format!("string {s:?}"),
        Value::Vector(samples) => {
            let items: Vec<String> = samples.iter().take(6).map(|s| format!("{} {}", s.labels, s.v)).collect();
            format!("[{}{}]", items.join(", "), if samples.len() > 6 { ", ..." } else { "" })
        }
        Value::Matrix(series) => format!("matrix of {} series", series.len()),
    }
}

fn show_labels(series: &[SeriesData]) -> String {
    show_labels_of(&series.iter().collect::<Vec<_>>())
}

fn show_labels_of(series: &[&SeriesData]) -> String {
    let items: Vec<String> = series.iter().take(6).map(|s| s.labels.to_string()).collect();
    format!("[{}{}]", items.join(", "), if series.len() > 6 { ", ..." } else { "" })
}

fn show_points(p: &[(i64, f64)]) -> String {
    let items: Vec<String> = p.iter().take(8).map(|(t, v)| format!("{v}@{}s", *t as f64 / 1000.0)).collect();
    format!("[{}{}]", items.join(" "), if p.len() > 8 { " ..." } else { "" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_values_expand_as_prometheus_reads_them() {
        let v = |s| parse_values(s).unwrap();
        assert_eq!(v("1+2x3"), vec![Some(1.0), Some(3.0), Some(5.0), Some(7.0)]);
        assert_eq!(v("10-1x2 _x2 5"), vec![Some(10.0), Some(9.0), Some(8.0), None, None, Some(5.0)]);
        assert_eq!(v("-2x1"), vec![Some(-2.0), Some(-2.0)]);
        assert_eq!(v("1e3+1e-1x1"), vec![Some(1000.0), Some(1000.1)]);
        assert!(v("stale")[0].unwrap().to_bits() == STALE_NAN_BITS);
        assert_eq!(v("-Inf Inf"), vec![Some(f64::NEG_INFINITY), Some(f64::INFINITY)]);
        assert!(parse_values("1+").is_err());
    }

    #[test]
    fn durations_and_labels_parse() {
        assert_eq!(parse_duration("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration("1ms"), Some(1));
        assert_eq!(parse_duration("-1m"), Some(-60_000));
        assert_eq!(parse_duration("1x"), None);
        let (labels, rest) = parse_labels(r#"up{job="a\"b", instance="x"} 1"#).unwrap();
        assert_eq!(labels.get("job"), Some("a\"b"));
        assert_eq!(labels.metric_name(), Some("up"));
        assert_eq!(rest.trim(), "1");
    }

    /// The engine's own test files, under collector/testdata/promql: every evaluation agrees, with
    /// names dropped at once (Prometheus's default) and with delayed name removal, except the files
    /// written for one of the two (`names_*`, `delayed_names*`).
    #[test]
    fn the_engines_test_files_agree() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/promql");
        let mut evaluated = 0;
        for entry in std::fs::read_dir(&dir).expect("collector/testdata/promql exists") {
            let path = entry.expect("a directory entry").path();
            let text = std::fs::read_to_string(&path).expect("a readable test file");
            let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let mut report = FileReport::default();
            for delayed_name_removal in [false, true] {
                if file.starts_with(if delayed_name_removal { "names_" } else { "delayed_names" }) {
                    continue;
                }
                let r = run(&Engine { delayed_name_removal, ..Engine::default() }, &text);
                report.passed += r.passed;
                report.failures.extend(r.failures.into_iter().map(|mut f| {
                    f.why =
                        format!("(delayed name removal {}) {}", if delayed_name_removal { "on" } else { "off" }, f.why);
                    f
                }));
            }
            let failures: Vec<String> = report
                .failures
                .iter()
                .map(|f| format!("{}:{}: {}\n    {}", path.display(), f.line, f.query, f.why))
                .collect();
            assert!(failures.is_empty(), "{}", failures.join("\n"));
            evaluated += report.passed;
        }
        assert!(evaluated >= 30, "only {evaluated} evaluations found in {}", dir.display());
    }

    #[test]
    fn a_wrong_expectation_is_reported_with_its_line() {
        let text = "load 1m\n  up{job=\"a\"} 1 2 3\n\neval instant at 2m up\n  up{job=\"a\"} 4\n\neval instant at 2m up\n  up{job=\"a\"} 3\n";
        let r = run(&Engine::default(), text);
        assert_eq!(r.passed, 1);
        assert_eq!(r.failures.len(), 1);
        assert_eq!(r.failures[0].line, 4);
        assert!(r.failures[0].why.contains("expected 4, got 3"), "{:?}", r.failures);
    }
}
