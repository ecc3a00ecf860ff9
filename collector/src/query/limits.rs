//! Query limits: the `[query]` settings of collector.toml, the checks on a query's text before any
//! parser sees it, and the per-query `Budget` (deadline, cancellation, samples) that evaluation loops
//! and chunk readers consult. Holds no query state of its own beyond one query's budget.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::QueryError;

/// `[query]`: what one query may cost. Names and defaults follow Prometheus's `--query.*` flags and
/// Loki's limits where they have one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryLimits {
    /// A query still running after this long is stopped and answered 503 `timeout`
    /// (Prometheus's `--query.timeout`).
    #[serde(default = "defaults::timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// The most samples one query may load (Prometheus's `--query.max-samples`); past it, 422.
    #[serde(default = "defaults::max_samples")]
    pub max_samples: usize,
    /// The most points a range query may return per series; past it, 400 (Prometheus's 11,000).
    #[serde(default = "defaults::max_points_per_series")]
    pub max_points_per_series: i64,
    /// Queries evaluated at once (Prometheus's `--query.max-concurrency`); the rest wait.
    #[serde(default = "defaults::max_concurrency")]
    pub max_concurrency: usize,
    /// Queries that may wait for a turn; one more is refused at once with 503.
    #[serde(default = "defaults::max_queued")]
    pub max_queued: usize,
    /// The deepest nesting of brackets, and of the parsed expression, a PromQL or LogQL query may
    /// have; past it, 400 naming the depth.
    #[serde(default = "defaults::max_depth")]
    pub max_depth: usize,
    /// The longest query text accepted, in bytes; past it, 400.
    #[serde(default = "defaults::max_query_bytes")]
    pub max_query_bytes: usize,
    /// The most log lines one log query may return (Loki's `max_entries_limit_per_query`).
    #[serde(default = "defaults::max_entries_limit_per_query")]
    pub max_entries_limit_per_query: usize,
    /// The most series a LogQL metric query may make (Loki's `max_query_series`); past it, 400.
    #[serde(default = "defaults::max_query_series")]
    pub max_query_series: usize,
    /// The longest time range a log query may scan (Loki's `max_query_length`, 30d1h).
    #[serde(default = "defaults::max_query_length", with = "humantime_serde")]
    pub max_query_length: Duration,
    /// Prometheus's `--enable-feature=promql-delayed-name-removal`: an operation that drops a
    /// series' `__name__` marks it instead, and the answer drops it, so `label_replace` and
    /// `by (__name__)` can still use it. Off, as in Prometheus.
    #[serde(default)]
    pub delayed_name_removal: bool,
}

mod defaults {
    use std::time::Duration;
    pub fn timeout() -> Duration {
        Duration::from_secs(120)
    }
    pub fn max_samples() -> usize {
        50_000_000
    }
    pub fn max_points_per_series() -> i64 {
        11_000
    }
    pub fn max_concurrency() -> usize {
        20
    }
    pub fn max_queued() -> usize {
        200
    }
    pub fn max_depth() -> usize {
        // Grafana's and the public dashboards' deepest queries nest under 20; generated sums of a
        // few hundred terms stay well under this too.
        512
    }
    pub fn max_query_bytes() -> usize {
        128 << 10
    }
    pub fn max_entries_limit_per_query() -> usize {
        5000
    }
    pub fn max_query_series() -> usize {
        500
    }
    pub fn max_query_length() -> Duration {
        Duration::from_secs(721 * 3600)
    }
}

impl Default for QueryLimits {
    fn default() -> Self {
        toml::from_str("").expect("the empty [query] section is valid")
    }
}

impl QueryLimits {
    /// Every problem with its key, under `at` (`query`).
    pub fn validate(&self, at: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let mut positive = |key: &str, v: u128| {
            if v == 0 {
                problems.push(format!("{at}.{key}: must be above 0"));
            }
        };
        positive("timeout", self.timeout.as_millis());
        positive("max_samples", self.max_samples as u128);
        positive("max_points_per_series", self.max_points_per_series.max(0) as u128);
        positive("max_concurrency", self.max_concurrency as u128);
        positive("max_depth", self.max_depth as u128);
        positive("max_query_bytes", self.max_query_bytes as u128);
        positive("max_entries_limit_per_query", self.max_entries_limit_per_query as u128);
        positive("max_query_length", self.max_query_length.as_millis());
        positive("max_query_series", self.max_query_series as u128);
        if self.max_depth > MAX_DEPTH_CEILING {
            problems.push(format!(
                "{at}.max_depth: {} is deeper than the {MAX_DEPTH_CEILING} a query thread's stack is sized for",
                self.max_depth
            ));
        }
        if self.max_query_bytes > MAX_QUERY_BYTES_CEILING {
            problems.push(format!(
                "{at}.max_query_bytes: {} is over the {MAX_QUERY_BYTES_CEILING} bytes a query thread's stack is sized for",
                self.max_query_bytes
            ));
        }
        problems
    }

    /// The checks every query text passes before a parser sees it: its length, how deep its
    /// brackets nest and how long a chain of operators it has at one level. promql-parser takes
    /// time quadratic in the depth it builds (16,000 chained `+` took 3.2 s, 64,000 took 58 s, and
    /// 16,000 nested `sum(` 10.7 s), and cannot be interrupted, so depth is refused before it
    /// starts; this runs in one pass over the bytes.
    pub fn check_text(&self, what: &str, text: &str) -> Result<(), QueryError> {
        if text.len() > self.max_query_bytes {
            return Err(QueryError::Limit {
                reason: "query_bytes",
                message: format!(
                    "{what} is {} bytes long, over the limit of {} bytes ([query] max_query_bytes)",
                    text.len(),
                    self.max_query_bytes
                ),
            });
        }
        let shape = shape(text, self.max_depth);
        if shape.depth > self.max_depth {
            return Err(too_deep(what, shape.depth, self.max_depth));
        }
        if shape.chain > self.max_depth {
            return Err(QueryError::Limit {
                reason: "depth",
                message: format!(
                    "{what} chains more than {} binary operators at one level, past the limit of {} ([query] max_depth): it would parse that deep",
                    self.max_depth, self.max_depth
                ),
            });
        }
        Ok(())
    }
}

/// The error for an expression nested past `max_depth`.
pub(crate) fn too_deep(what: &str, depth: usize, max_depth: usize) -> QueryError {
    QueryError::Limit {
        reason: "depth",
        message: format!("{what} nests {depth} levels deep, past the limit of {max_depth} ([query] max_depth)"),
    }
}

/// The deepest `max_depth` a configuration may ask for, and the longest text: the query threads'
/// stack (`QUERY_STACK_BYTES`) is sized so that parsing, checking, evaluating and dropping any
/// expression within both bounds fits (the test `the_deepest_accepted_queries_fit_the_stack` runs
/// the worst shapes at both ceilings).
pub const MAX_DEPTH_CEILING: usize = 4096;
pub const MAX_QUERY_BYTES_CEILING: usize = 1 << 20;

/// What a query's text shows of its nesting before it is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shape {
    /// Deepest nesting of `(`, `[` and `{`.
    pub depth: usize,
    /// Most binary operators (`+ - * / % ^`, comparisons, `and`, `or`, `unless`) at one bracket
    /// level outside `{…}`: a chain of them parses into an expression that deep, with no bracket
    /// to show it.
    pub chain: usize,
}

/// Reads the nesting of a query's text, outside quoted strings (`"…"`, `'…'`, `` `…` ``) and `#`
/// comments, in one pass; stops early once either count is past `max` (that answer is enough).
/// Unbalanced closers count as nothing: the parser reports them.
pub fn shape(text: &str, max: usize) -> Shape {
    let bytes = text.as_bytes();
    let mut shape = Shape::default();
    // Operators seen at each open level; index 0 is the top level.
    let mut chains: Vec<usize> = vec![0];
    // How many of the open levels are `{…}` (label matchers, whose `=`, `!=` are no operators).
    let mut braces = 0usize;
    let mut opened: Vec<u8> = Vec::new();
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    let mut comment = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        if comment {
            comment = b != b'\n';
            continue;
        }
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if b == b'\\' && q != b'`' {
                escaped = true;
            } else if b == q {
                quote = None;
            }
            continue;
        }
        let mut operator = false;
        match b {
            b'"' | b'\'' | b'`' => quote = Some(b),
            b'#' => comment = true,
            b'(' | b'[' | b'{' => {
                opened.push(b);
                braces += usize::from(b == b'{');
                chains.push(0);
                shape.depth = shape.depth.max(opened.len());
            }
            b')' | b']' | b'}' => {
                if let Some(o) = opened.pop() {
                    braces -= usize::from(o == b'{');
                    chains.pop();
                }
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' => operator = true,
            // `|=` and `|~` are line filters, stages of a flat list.
            b'|' => {
                if matches!(bytes.get(i), Some(b'=' | b'~')) {
                    i += 1;
                }
            }
            // `==`, `!=`, `<`, `<=`, `>`, `>=` are operators; a lone `=`, `=~` and `!~` only
            // compare a label with a value (in matchers and LogQL label filters).
            b'=' | b'!' => match bytes.get(i) {
                Some(b'=') => {
                    i += 1;
                    operator = true;
                }
                Some(b'~') => i += 1,
                _ => {}
            },
            b'<' | b'>' => {
                if bytes.get(i) == Some(&b'=') {
                    i += 1;
                }
                operator = true;
            }
            b'a' | b'o' | b'u' => {
                let word_start = i == 1 || !is_word(bytes[i - 2]);
                let rest = &bytes[i - 1..];
                let word = [&b"and"[..], b"or", b"unless"]
                    .into_iter()
                    .find(|w| rest.starts_with(w) && !rest.get(w.len()).copied().is_some_and(is_word));
                match word {
                    Some(w) if word_start => {
                        i += w.len() - 1;
                        operator = true;
                    }
                    _ => {
                        while i < bytes.len() && is_word(bytes[i]) {
                            i += 1;
                        }
                    }
                }
            }
            c if is_word(c) => {
                // Skip the rest of an identifier, so `brand` is no `and`.
                while i < bytes.len() && is_word(bytes[i]) {
                    i += 1;
                }
            }
            _ => {}
        }
        if operator && braces == 0 {
            if let Some(c) = chains.last_mut() {
                *c += 1;
                shape.chain = shape.chain.max(*c);
            }
        }
        if shape.depth > max || shape.chain > max {
            break;
        }
    }
    shape
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':' || b == b'.'
}

/// Why a query was stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupted {
    /// Past its deadline.
    Timeout,
    /// Its caller went away (the client closed the connection).
    Cancelled,
    /// It loaded more samples than `max_samples`.
    TooManySamples,
}

/// What one query may still spend. Shared between the thread that evaluates it and the request
/// that waits for it: the request cancels it when it stops waiting, and every loop that can run
/// long (each expression node, each series a selector reads, each log chunk inflated) asks
/// `check`. Readers that find it spent stop early and return what they have; the evaluator's next
/// `check` turns that into the error, so nothing partial is ever answered.
#[derive(Debug)]
pub struct Budget {
    deadline: Option<Instant>,
    cancelled: AtomicBool,
    samples: AtomicUsize,
    max_samples: usize,
}

impl Budget {
    pub fn new(timeout: Duration, max_samples: usize) -> Self {
        Budget {
            deadline: Instant::now().checked_add(timeout),
            cancelled: AtomicBool::new(false),
            samples: AtomicUsize::new(0),
            max_samples,
        }
    }

    /// No deadline and no sample limit beyond Prometheus's default: for decisions, which run on
    /// their own schedule, and for tests.
    pub fn unlimited() -> Self {
        Budget {
            deadline: None,
            cancelled: AtomicBool::new(false),
            samples: AtomicUsize::new(0),
            max_samples: defaults::max_samples(),
        }
    }

    /// Nothing to spend: for reads that are not queries (the gates' own statistics).
    pub fn none() -> Self {
        Budget { max_samples: usize::MAX, ..Budget::unlimited() }
    }

    pub fn max_samples(&self) -> usize {
        self.max_samples
    }

    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// Whether the query should stop now, and why.
    pub fn spent(&self) -> Option<Interrupted> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Some(Interrupted::Cancelled);
        }
        if self.samples.load(Ordering::Relaxed) > self.max_samples {
            return Some(Interrupted::TooManySamples);
        }
        match self.deadline {
            Some(d) if Instant::now() >= d => Some(Interrupted::Timeout),
            _ => None,
        }
    }

    pub fn check(&self) -> Result<(), QueryError> {
        match self.spent() {
            None => Ok(()),
            Some(why) => Err(QueryError::Interrupted(why)),
        }
    }

    /// Counts `n` samples loaded; false once the query has loaded more than it may.
    pub fn load(&self, n: usize) -> bool {
        self.samples.fetch_add(n, Ordering::Relaxed).saturating_add(n) <= self.max_samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth(text: &str) -> usize {
        shape(text, usize::MAX).depth
    }

    fn chain(text: &str) -> usize {
        shape(text, usize::MAX).chain
    }

    #[test]
    fn brackets_in_strings_and_comments_do_not_count() {
        assert_eq!(depth("sum(rate(x{a=\"((((\"}[5m]))"), 3);
        assert_eq!(depth("x # ((((\n + (y)"), 1);
        assert_eq!(depth(r#"{a="\"(("} |= `((`"#), 1);
        assert_eq!(depth(")))(("), 2);
    }

    #[test]
    fn operators_are_counted_per_level_and_matchers_are_not_operators() {
        assert_eq!(chain("a + b - c * d"), 3);
        assert_eq!(chain("(a + b) + (c + d)"), 1);
        assert_eq!(chain(r#"up{a!="x", b=~"y"} == 1 and brand or sandy unless x"#), 4);
        assert_eq!(chain(r#"{app="x"} |= "a+b" |~ "c" | level="error" and status>=500"#), 2);
        assert_eq!(chain(r#"{app="x"} != "a" | level!="debug""#), 2, "a bound, not a parse");
        assert_eq!(chain(&vec!["1"; 1000].join("+")), 999);
        assert_eq!(shape(&vec!["1"; 1000].join("+"), 10).chain, 11, "stops once past the bound");
    }

    #[test]
    fn text_checks_name_the_limit() {
        let limits = QueryLimits { max_depth: 3, max_query_bytes: 20, ..Default::default() };
        assert!(limits.check_text("query", "((1))").is_ok());
        let deep = limits.check_text("query", "((((1))))").unwrap_err().to_string();
        assert!(deep.contains("nests 4 levels deep, past the limit of 3"), "{deep}");
        let long = limits.check_text("query", &"1+".repeat(20)).unwrap_err().to_string();
        assert!(long.contains("40 bytes long, over the limit of 20 bytes"), "{long}");
        let chained = limits.check_text("query", "1+1+1+1+1").unwrap_err().to_string();
        assert!(chained.contains("chains more than 3 binary operators"), "{chained}");
    }

    #[test]
    fn a_budget_is_spent_by_time_samples_or_cancellation() {
        let b = Budget::new(Duration::from_secs(60), 10);
        assert!(b.check().is_ok());
        assert!(b.load(10));
        assert!(!b.load(1));
        assert_eq!(b.spent(), Some(Interrupted::TooManySamples));
        let b = Budget::new(Duration::ZERO, 10);
        assert_eq!(b.spent(), Some(Interrupted::Timeout));
        let b = Budget::unlimited();
        b.cancel();
        assert_eq!(b.spent(), Some(Interrupted::Cancelled));
    }

    #[test]
    fn the_defaults_are_prometheus_and_loki_ones_and_valid() {
        let l = QueryLimits::default();
        assert_eq!(l.timeout, Duration::from_secs(120));
        assert_eq!(l.max_samples, 50_000_000);
        assert_eq!(l.max_concurrency, 20);
        assert_eq!(l.max_entries_limit_per_query, 5000);
        assert!(l.validate("query").is_empty());
        let bad = QueryLimits { max_depth: 0, max_query_bytes: 10 << 20, ..Default::default() };
        let problems = bad.validate("query");
        assert!(problems.iter().any(|p| p == "query.max_depth: must be above 0"), "{problems:?}");
        assert!(problems.iter().any(|p| p.starts_with("query.max_query_bytes:")), "{problems:?}");
    }
}
