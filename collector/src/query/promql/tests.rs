//! Semantics tests on fixed data: selectors, staleness, rate/increase/irate, range queries, errors.
//! Each expected value is worked out from Prometheus 3's documented semantics in the comment beside it.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::model::{LabelSet, Matcher, Samples, SeriesData, STALE_NAN_BITS};

/// An in-memory `Queryable` over fixed series, counting its `select` calls.
pub(crate) struct VecStore {
    pub series: Vec<SeriesData>,
    pub calls: AtomicUsize,
}

impl VecStore {
    pub fn new(series: Vec<SeriesData>) -> Self {
        VecStore { series, calls: AtomicUsize::new(0) }
    }
}

impl Queryable for VecStore {
    fn select(&self, matchers: &[Matcher], start_ms: i64, end_ms: i64) -> Result<Vec<SeriesData>, QueryError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(self
            .series
            .iter()
            .filter(|s| matchers.iter().all(|m| m.matches_labels(&s.labels)))
            .map(|s| {
                let mut samples = Samples::default();
                for (t, v) in s.samples.ts.iter().zip(&s.samples.values) {
                    if *t >= start_ms && *t <= end_ms {
                        samples.ts.push(*t);
                        samples.values.push(*v);
                    }
                }
                SeriesData { labels: s.labels.clone(), samples }
            })
            .collect())
    }
}

pub(crate) fn stale() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// A series from labels and (seconds, value) points.
pub(crate) fn series(labels: &[(&str, &str)], points: &[(f64, f64)]) -> SeriesData {
    SeriesData {
        labels: LabelSet::from_pairs(labels.iter().copied()),
        samples: Samples {
            ts: points.iter().map(|p| (p.0 * 1000.0) as i64).collect(),
            values: points.iter().map(|p| p.1).collect(),
        },
    }
}

/// Points every `step_s` seconds from `from_s` (inclusive) to `to_s` (inclusive), value f(t_s).
pub(crate) fn pts(from_s: i64, to_s: i64, step_s: i64, f: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
    (from_s..=to_s).step_by(step_s as usize).map(|t| (t as f64, f(t as f64))).collect()
}

pub(crate) fn labels(pairs: &[(&str, &str)]) -> LabelSet {
    LabelSet::from_pairs(pairs.iter().copied())
}

/// Runs an instant query at `t_s` seconds and returns its vector as (labels, value), sorted by labels.
pub(crate) fn vector(store: &VecStore, q: &str, t_s: f64) -> Vec<(LabelSet, f64)> {
    match Engine::default().instant(store, q, (t_s * 1000.0) as i64) {
        Ok(Value::Vector(v)) => {
            let mut out: Vec<_> = v.into_iter().map(|s| (s.labels, s.v)).collect();
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out
        }
        other => panic!("{q}: expected a vector, got {other:?}"),
    }
}

/// The single value of an instant query that must return exactly one element.
pub(crate) fn one(store: &VecStore, q: &str, t_s: f64) -> f64 {
    let v = vector(store, q, t_s);
    assert_eq!(v.len(), 1, "{q}: {v:?}");
    v[0].1
}

pub(crate) fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

fn counter_store() -> VecStore {
    // A counter rising by 1 every 10 s from 0 at t=0 to 60 at t=600 s.
    VecStore::new(vec![series(&[("__name__", "c"), ("job", "j")], &pts(0, 600, 10, |t| t / 10.0))])
}

#[test]
fn rate_of_counter_rising_one_per_ten_seconds_is_one_tenth() {
    let s = counter_store();
    // Window (540, 600] holds t=550..600: +5 over 50 s. The first sample is 10 s from the window start,
    // under 1.1 average intervals, so the rate extrapolates to the full 60 s: 5 * 60/50 / 60 = 0.1.
    assert!(close(one(&s, "rate(c[1m])", 600.0), 0.1));
    // increase is the same without the division by the range: 6.
    assert!(close(one(&s, "increase(c[1m])", 600.0), 6.0));
    // Functions drop the metric name.
    assert_eq!(vector(&s, "rate(c[1m])", 600.0)[0].0, labels(&[("job", "j")]));
}

#[test]
fn extrapolation_stops_half_an_interval_before_a_series_starting_inside_the_window() {
    // Samples only at 630..660 s, values 10..13.
    let s = VecStore::new(vec![series(&[("__name__", "c")], &pts(630, 660, 10, |t| (t - 530.0) / 10.0))]);
    // Window (600, 660]: +3 over 30 s; the gap to the window start (30 s) exceeds 1.1 * 10 s, so it
    // extrapolates only 5 s (half an interval) backwards; the zero point (30 * 10/3 = 100 s) is further.
    // increase = 3 * (30 + 5) / 30 = 3.5.
    assert!(close(one(&s, "increase(c[1m])", 660.0), 3.5));
}

#[test]
fn increase_extrapolation_toward_zero_stops_where_the_counter_would_be_zero() {
    // Samples at 630..660 s with values 1, 11, 21, 31.
    let s =
        VecStore::new(vec![series(&[("__name__", "c")], &[(630.0, 1.0), (640.0, 11.0), (650.0, 21.0), (660.0, 31.0)])]);
    // +30 over 30 s; backwards extrapolation would be 5 s, but the counter reaches zero 30 * 1/30 = 1 s
    // before the first sample, so only 1 s is added: increase = 30 * 31/30 = 31.
    assert!(close(one(&s, "increase(c[1m])", 660.0), 31.0));
    // delta (a gauge function) has no zero-point rule: 30 * 35/30 = 35.
    assert!(close(one(&s, "delta(c[1m])", 660.0), 35.0));
}

#[test]
fn rate_of_counter_with_reset_counts_only_increases() {
    // At 10..60 s: 10, 20, 30, then a restart: 5, 15, 25.
    let s = VecStore::new(vec![series(
        &[("__name__", "c")],
        &[(10.0, 10.0), (20.0, 20.0), (30.0, 30.0), (40.0, 5.0), (50.0, 15.0), (60.0, 25.0)],
    )]);
    // Raw increase: 25 - 10 + 30 (the value lost at the reset) = 45 over 50 s; the first sample is 10 s
    // from the window start (0, 60], within 1.1 intervals, and the zero point is 50 * 10/45 = 11.1 s
    // away, further than 10 s, so it extrapolates to 60 s: increase = 45 * 60/50 = 54, rate = 0.9.
    assert!(close(one(&s, "increase(c[1m])", 60.0), 54.0));
    assert!(close(one(&s, "rate(c[1m])", 60.0), 0.9));
    // resets counts one drop; changes counts every change of value (5).
    assert_eq!(one(&s, "resets(c[1m])", 60.0), 1.0);
    assert_eq!(one(&s, "changes(c[1m])", 60.0), 5.0);
}

#[test]
fn irate_uses_the_last_two_samples_and_treats_a_drop_as_a_reset() {
    let s = VecStore::new(vec![
        series(&[("__name__", "a")], &[(40.0, 30.0), (50.0, 15.0), (60.0, 25.0)]),
        series(&[("__name__", "b")], &[(40.0, 10.0), (50.0, 30.0), (60.0, 5.0)]),
    ]);
    // a: (25 - 15) / 10 s = 1. b: 30 -> 5 is a reset, so the increase is 5: 5 / 10 s = 0.5.
    assert!(close(one(&s, "irate(a[1m])", 60.0), 1.0));
    assert!(close(one(&s, "irate(b[1m])", 60.0), 0.5));
    // idelta is the plain difference of the last two: 5 - 30 = -25.
    assert!(close(one(&s, "idelta(b[1m])", 60.0), -25.0));
}

#[test]
fn rate_needs_two_samples_in_the_window() {
    let s = VecStore::new(vec![series(&[("__name__", "c")], &[(0.0, 1.0), (100.0, 2.0)])]);
    // Window (40, 100] holds one sample: no output.
    assert!(vector(&s, "rate(c[1m])", 100.0).is_empty());
    assert!(vector(&s, "irate(c[1m])", 100.0).is_empty());
    // A 2 m window holds both: (2 - 1) over 100 s, first sample 20 s from the start (threshold 110 s),
    // zero point 100 * 1/1 = 100 s further away: extrapolated to 120 s: increase = 1.2.
    assert!(close(one(&s, "increase(c[2m])", 100.0), 1.2));
}

#[test]
fn instant_selector_takes_the_newest_sample_and_stamps_the_query_time() {
    let s = VecStore::new(vec![series(&[("__name__", "g")], &[(10.0, 1.0), (20.0, 2.0)])]);
    match Engine::default().instant(&s, "g", 25_000).unwrap() {
        Value::Vector(v) => {
            assert_eq!(v.len(), 1);
            assert_eq!((v[0].t_ms, v[0].v), (25_000, 2.0));
            assert_eq!(v[0].labels.metric_name(), Some("g"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn stale_marker_ends_a_series_inside_the_lookback() {
    let s = VecStore::new(vec![series(&[("__name__", "g")], &[(90.0, 5.0), (100.0, 6.0), (105.0, stale())])]);
    // At 100 s the newest sample is 6. At 110 s it is the stale marker at 105 s: the series is gone,
    // although 100 s is well inside the 5 m lookback.
    assert_eq!(one(&s, "g", 100.0), 6.0);
    assert!(vector(&s, "g", 110.0).is_empty());
    // Range selectors drop the marker and keep the real samples: count over (50, 110] = 2.
    assert_eq!(one(&s, "count_over_time(g[1m])", 110.0), 2.0);
}

#[test]
fn lookback_expires_five_minutes_after_the_last_sample() {
    let s = VecStore::new(vec![series(&[("__name__", "g")], &[(100.0, 7.0)])]);
    // The lookback window (t - 5m, t] is open on the left: at 399.999 s the sample is still in,
    // at exactly 400 s it is out.
    assert_eq!(one(&s, "g", 399.999), 7.0);
    assert!(vector(&s, "g", 400.0).is_empty());
    // Before the sample there is nothing.
    assert!(vector(&s, "g", 99.0).is_empty());
}

#[test]
fn range_selector_is_left_open_and_right_closed() {
    let s = VecStore::new(vec![series(&[("__name__", "g"), ("a", "1")], &pts(0, 100, 10, |t| t))]);
    // [1m] at 60 s is (0, 60]: the samples at 10..60 s, not the one at 0.
    match Engine::default().instant(&s, "g[1m]", 60_000).unwrap() {
        Value::Matrix(m) => {
            assert_eq!(m.len(), 1);
            assert_eq!(m[0].samples.ts, vec![10_000, 20_000, 30_000, 40_000, 50_000, 60_000]);
            assert_eq!(m[0].labels.metric_name(), Some("g"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(one(&s, "count_over_time(g[1m])", 60.0), 6.0);
}

#[test]
fn one_plus_one_is_a_scalar_at_the_query_time() {
    // Grafana's health check: `1+1` at time=4 s is the scalar 2 stamped 4000 ms.
    let s = VecStore::new(vec![]);
    match Engine::default().instant(&s, "1+1", 4000).unwrap() {
        Value::Scalar { t_ms, v } => assert_eq!((t_ms, v), (4000, 2.0)),
        other => panic!("{other:?}"),
    }
    match Engine::default().instant(&s, "\"hello\"", 4000).unwrap() {
        Value::String { t_ms, s } => assert_eq!((t_ms, s.as_str()), (4000, "hello")),
        other => panic!("{other:?}"),
    }
    // Precedence, parentheses, unary minus, and every arithmetic operator on scalars.
    let scalar = |q: &str| match Engine::default().instant(&s, q, 0).unwrap() {
        Value::Scalar { v, .. } => v,
        other => panic!("{other:?}"),
    };
    assert_eq!(scalar("-(2 + 3) * 4 ^ 2 / 8"), -10.0);
    assert_eq!(scalar("7 % 4"), 3.0);
    assert_eq!(scalar("-7 % 4"), -3.0); // fmod keeps the dividend's sign
    assert_eq!(scalar("2 ^ 3 ^ 2"), 512.0); // ^ is right-associative
    assert_eq!(scalar("1 < bool 2"), 1.0);
    assert_eq!(scalar("time()"), 0.0);
}

#[test]
fn range_query_evaluates_exactly_at_start_plus_multiples_of_step() {
    let s = VecStore::new(vec![series(&[("__name__", "g")], &pts(0, 100, 1, |t| t))]);
    // start 1 s, step 15 s, end 70 s: 1, 16, 31, 46, 61 (76 would pass the end).
    let m = Engine::default().range(&s, "g", 1000, 70_000, 15_000).unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].samples.ts, vec![1000, 16_000, 31_000, 46_000, 61_000]);
    assert_eq!(m[0].samples.values, vec![1.0, 16.0, 31.0, 46.0, 61.0]);
    // A scalar becomes one series without labels, with a point at every step.
    let m = Engine::default().range(&s, "time() * 2", 0, 30_000, 10_000).unwrap();
    assert_eq!(m.len(), 1);
    assert!(m[0].labels.is_empty());
    assert_eq!(m[0].samples.values, vec![0.0, 20.0, 40.0, 60.0]);
}

#[test]
fn range_query_has_points_only_where_the_expression_has_a_value() {
    // Samples from 100 to 200 s; the lookback keeps the last one visible until 500 s (exclusive).
    let s = VecStore::new(vec![series(&[("__name__", "g")], &pts(100, 200, 10, |_| 1.0))]);
    let m = Engine::default().range(&s, "g", 0, 600_000, 100_000).unwrap();
    assert_eq!(m[0].samples.ts, vec![100_000, 200_000, 300_000, 400_000]);
    // With a stale marker at 250 s, the series ends there.
    let s = VecStore::new(vec![series(&[("__name__", "g")], &[(100.0, 1.0), (200.0, 1.0), (250.0, stale())])]);
    let m = Engine::default().range(&s, "g", 0, 600_000, 100_000).unwrap();
    assert_eq!(m[0].samples.ts, vec![100_000, 200_000]);
}

#[test]
fn range_query_selects_once_per_selector() {
    let s = VecStore::new(vec![series(&[("__name__", "c"), ("a", "x")], &pts(0, 3600, 10, |t| t))]);
    Engine::default().range(&s, "sum(rate(c[1m])) / sum(c)", 0, 3_600_000, 15_000).unwrap();
    assert_eq!(s.calls.load(Ordering::SeqCst), 2);
}

#[test]
fn range_query_rejects_too_many_points_and_bad_steps() {
    let s = VecStore::new(vec![]);
    let e = Engine::default();
    // (end - start) / step = 11001 > 11000.
    match e.range(&s, "1", 0, 11_001_000, 1000) {
        Err(QueryError::BadData(m)) => assert_eq!(
            m,
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
        ),
        other => panic!("{other:?}"),
    }
    // Exactly 11000 is allowed (11001 points).
    assert_eq!(e.range(&s, "1", 0, 11_000_000, 1000).unwrap()[0].samples.ts.len(), 11_001);
    assert!(matches!(e.range(&s, "1", 0, 1000, 0), Err(QueryError::BadData(_))));
    assert!(matches!(e.range(&s, "1", 0, 1000, -5), Err(QueryError::BadData(_))));
    assert!(matches!(e.range(&s, "1", 1000, 0, 10), Err(QueryError::BadData(_))));
    // A range query must be a scalar or an instant vector.
    assert!(matches!(e.range(&s, "g[5m]", 0, 1000, 10), Err(QueryError::BadData(_))));
    assert!(matches!(e.range(&s, "\"s\"", 0, 1000, 10), Err(QueryError::BadData(_))));
    assert_eq!(
        (thousands(0), thousands(999), thousands(11_000), thousands(1_234_567)),
        ("0".into(), "999".into(), "11,000".into(), "1,234,567".into())
    );
}

#[test]
fn parse_error_carries_the_position() {
    let s = VecStore::new(vec![]);
    // The `$` is the 12th character of the first line.
    match Engine::default().instant(&s, "foo{a=\"b\"} $ 1", 0) {
        Err(QueryError::Parse(m)) => assert_eq!(m, "1:12: parse error: unexpected character: '$'"),
        other => panic!("{other:?}"),
    }
    match Engine::default().instant(&s, "sum(rate(x[5m])\n  / y{a~\"b\"})", 0) {
        Err(QueryError::Parse(m)) => {
            assert!(m.starts_with("2:8: parse error: unexpected character inside braces"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    match Engine::default().instant(&s, "sum(x", 0) {
        Err(QueryError::Parse(m)) => assert!(m.contains("unclosed left parenthesis"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Grammar errors, which promql-parser reports without a position, are placed where the query
    // stops being PromQL, with the token found there, as Prometheus places them.
    for (q, want) in [
        ("1 +* 2", r#"1:4: parse error: unexpected "*""#),
        ("x +", "1:4: parse error: unexpected end of input"),
        ("sum by (a b) (x)", r#"1:11: parse error: unexpected "b""#),
        ("x offset", "1:9: parse error: unexpected end of input"),
        ("foo(x)", "1:4: parse error: unknown function with name 'foo'"),
        ("up\n  and * up", "2:7: parse error: unexpected \"*\""),
    ] {
        match Engine::default().instant(&s, q, 0) {
            Err(QueryError::Parse(m)) => assert!(m.starts_with(want), "{q:?}: {m}"),
            other => panic!("{q:?}: {other:?}"),
        }
    }
}

#[test]
fn unimplemented_constructs_are_unsupported_and_named() {
    let s = VecStore::new(vec![series(&[("__name__", "x")], &[(0.0, 1.0)])]);
    let e = Engine::default();
    for (q, needle) in [("x{a=\"1\" or b=\"2\"}", "\"or\" operator inside label matchers"), ("x + fill(0) x", "fill")] {
        match e.instant(&s, q, 1000) {
            Err(QueryError::Unsupported(m)) => assert!(m.contains(needle), "{q}: {m}"),
            other => panic!("{q}: {other:?}"),
        }
        assert!(matches!(e.range(&s, q, 0, 1000, 100), Err(QueryError::Unsupported(_))), "{q}");
    }
    // A function unknown to PromQL itself (holt_winters was renamed in Prometheus 3) is a parse error,
    // as in Prometheus.
    match e.instant(&s, "holt_winters(x[5m], 0.5, 0.5)", 0) {
        Err(QueryError::Parse(m)) => assert!(m.contains("holt_winters"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn offset_and_at_modifiers_move_the_read_time() {
    let s = VecStore::new(vec![series(&[("__name__", "g")], &pts(0, 1000, 10, |t| t))]);
    // offset 1m at 600 s reads at 540 s.
    assert_eq!(one(&s, "g offset 1m", 600.0), 540.0);
    // @ 300 reads at 300 s whatever the query time; with offset 1m at 240 s.
    assert_eq!(one(&s, "g @ 300", 900.0), 300.0);
    assert_eq!(one(&s, "g @ 300 offset 1m", 900.0), 240.0);
    // A negative offset reads later.
    assert_eq!(one(&s, "g offset -1m", 600.0), 660.0);
    // In a range query @ end() is the same at every step.
    let m = Engine::default().range(&s, "g @ end()", 100_000, 300_000, 100_000).unwrap();
    assert_eq!(m[0].samples.values, vec![300.0, 300.0, 300.0]);
    // rate over an offset window: (480, 540] of g, which rises 1 per second, is 1.
    assert!(close(one(&s, "rate(g[1m] offset 1m)", 600.0), 1.0));
}

#[test]
fn functions_over_range_vectors_that_keep_names_and_collisions() {
    let s = VecStore::new(vec![
        series(&[("__name__", "a"), ("k", "1")], &pts(0, 100, 10, |t| t)),
        series(&[("__name__", "b"), ("k", "1")], &pts(0, 100, 10, |t| t)),
    ]);
    // last_over_time keeps the name, so both survive.
    assert_eq!(vector(&s, "last_over_time({k=\"1\"}[1m])", 100.0).len(), 2);
    // rate drops it: two results with labels {k="1"} is Prometheus's duplicate-labelset error.
    match Engine::default().instant(&s, "rate({k=\"1\"}[1m])", 100_000) {
        Err(QueryError::Execution(m)) => {
            assert_eq!(m, "vector cannot contain metrics with the same labelset")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn over_time_functions_follow_prometheus() {
    let s = VecStore::new(vec![series(&[("__name__", "g")], &[(10.0, 1.0), (20.0, 4.0), (30.0, 2.0), (40.0, 5.0)])]);
    // Window (0, 40] holds 1, 4, 2, 5.
    assert_eq!(one(&s, "avg_over_time(g[40s])", 40.0), 3.0);
    assert_eq!(one(&s, "sum_over_time(g[40s])", 40.0), 12.0);
    assert_eq!(one(&s, "min_over_time(g[40s])", 40.0), 1.0);
    assert_eq!(one(&s, "max_over_time(g[40s])", 40.0), 5.0);
    assert_eq!(one(&s, "last_over_time(g[40s])", 40.0), 5.0);
    assert_eq!(one(&s, "present_over_time(g[40s])", 40.0), 1.0);
    // Population variance: mean 3, squared deviations 4+1+1+4 = 10, / 4 = 2.5.
    assert!(close(one(&s, "stdvar_over_time(g[40s])", 40.0), 2.5));
    assert!(close(one(&s, "stddev_over_time(g[40s])", 40.0), 2.5f64.sqrt()));
    // Median of 1, 2, 4, 5: rank 0.5 * 3 = 1.5, between 2 and 4: 3.
    assert_eq!(one(&s, "quantile_over_time(0.5, g[40s])", 40.0), 3.0);
    // deriv of exactly linear data is its slope: 1 per 10 s at 20..40 (4, 2, 5 is not linear; use 1m
    // of a linear series instead).
    let lin = VecStore::new(vec![series(&[("__name__", "l")], &pts(0, 100, 10, |t| 2.0 * t + 3.0))]);
    assert!(close(one(&lin, "deriv(l[1m])", 100.0), 2.0));
    // predict_linear 10 s ahead of 100 s: 2 * 110 + 3 = 223.
    assert!(close(one(&lin, "predict_linear(l[1m], 10)", 100.0), 223.0));
    // absent_over_time of a missing series gives 1 with the equality-matched labels.
    assert_eq!(vector(&s, "absent_over_time(nope{job=\"x\"}[1m])", 40.0), vec![(labels(&[("job", "x")]), 1.0)]);
    assert!(vector(&s, "absent_over_time(g[1m])", 40.0).is_empty());
}

#[test]
fn date_functions_read_utc_dates_from_values_or_the_evaluation_time() {
    let s = VecStore::new(vec![series(&[("__name__", "t"), ("job", "j")], &[(0.0, 1_136_239_445.0)])]);
    // 2006-01-02 22:04:05 UTC, a Monday.
    for (f, want) in [
        ("year", 2006.0),
        ("month", 1.0),
        ("day_of_month", 2.0),
        ("day_of_year", 2.0),
        ("day_of_week", 1.0),
        ("days_in_month", 31.0),
        ("hour", 22.0),
        ("minute", 4.0),
    ] {
        // The metric name goes, the other labels stay.
        assert_eq!(vector(&s, &format!("{f}(t)"), 10.0), vec![(labels(&[("job", "j")]), want)], "{f}");
    }
    // No argument: the evaluation time. 1970-01-01 was a Thursday.
    assert_eq!(one(&s, "year()", 0.0), 1970.0);
    assert_eq!(one(&s, "day_of_week()", 0.0), 4.0);
    // Leap years: 2016-02-29 23:59:59, 2016-12-31 (day 366), February 2016 and 2017, 1900 and 2000.
    assert!(close(one(&s, "month(vector(1456790399)) + day_of_month(vector(1456790399)) / 100", 0.0), 2.29));
    assert_eq!(one(&s, "day_of_year(vector(1483191420))", 0.0), 366.0);
    assert_eq!(one(&s, "days_in_month(vector(1454284800))", 0.0), 29.0);
    assert_eq!(one(&s, "days_in_month(vector(1485907200))", 0.0), 28.0);
    assert_eq!(one(&s, "days_in_month(vector(-2206310400))", 0.0), 28.0);
    assert_eq!(one(&s, "days_in_month(vector(949363200))", 0.0), 29.0);
    // Before 1970: 1969-12-31 23:59:59.
    assert_eq!(one(&s, "year(vector(-1))", 0.0), 1969.0);
    assert_eq!(one(&s, "minute(vector(-1))", 0.0), 59.0);
    assert!(one(&s, "year(vector(NaN))", 0.0).is_nan());
}

/// `[query] delayed_name_removal = true` reaches the engine: `sum` over the rates of two metrics that
/// differ only in their names answers instead of refusing the duplicate label sets.
#[test]
fn delayed_name_removal_is_a_query_setting() {
    let s = VecStore::new(vec![
        series(&[("__name__", "requests_total"), ("job", "api")], &pts(0, 600, 60, |t| t)),
        series(&[("__name__", "errors_total"), ("job", "api")], &pts(0, 600, 60, |t| t / 10.0)),
    ]);
    let q = r#"sum(rate({job="api"}[5m]))"#;
    let err = Engine::default().instant(&s, q, 600_000).unwrap_err();
    assert!(err.to_string().contains("same labelset"), "{err}");
    let limits: crate::query::QueryLimits = toml::from_str("delayed_name_removal = true").unwrap();
    match Engine::new(limits).instant(&s, q, 600_000).unwrap() {
        Value::Vector(v) => {
            assert_eq!(v.len(), 1);
            assert!(v[0].labels.is_empty(), "{:?}", v[0].labels);
            assert!((v[0].v - 1.1).abs() < 1e-9, "{}", v[0].v);
        }
        other => panic!("expected a vector, got {other:?}"),
    }
}
