//! Semantics tests for subqueries: inner times aligned to the epoch, left-open windows, offset and `@`,
//! nesting, and the top-level cases. Each expected value is worked out from Prometheus 3's semantics in
//! the comment beside it.

use std::sync::atomic::Ordering;

use super::tests::{close, labels, one, pts, series, vector, VecStore};
use super::*;

/// `g` = t (in seconds) every 10 s from 0 to 7200 s, so a point's value names the time it was read at.
fn gauge_store() -> VecStore {
    VecStore::new(vec![series(&[("__name__", "g"), ("job", "j")], &pts(0, 7200, 10, |t| t))])
}

/// Runs an instant query that must return a matrix: (labels, timestamps in s, values) per series.
fn matrix(store: &VecStore, q: &str, t_s: f64) -> Vec<(LabelSet, Vec<f64>, Vec<f64>)> {
    match Engine::default().instant(store, q, (t_s * 1000.0) as i64) {
        Ok(Value::Matrix(m)) => m
            .into_iter()
            .map(|s| (s.labels, s.samples.ts.iter().map(|t| *t as f64 / 1000.0).collect(), s.samples.values))
            .collect(),
        other => panic!("{q}: expected a matrix, got {other:?}"),
    }
}

/// The values of a range query's single series.
fn range_values(store: &VecStore, q: &str, start_s: i64, end_s: i64, step_s: i64) -> Vec<f64> {
    let m = Engine::default().range(store, q, start_s * 1000, end_s * 1000, step_s * 1000).unwrap();
    assert_eq!(m.len(), 1, "{q}: {m:?}");
    m[0].samples.values.clone()
}

#[test]
fn subquery_of_a_selector_on_minutely_data_matches_the_range_selector() {
    // One sample a minute, at minute m the value 7m mod 11 (not monotonic).
    let s = VecStore::new(vec![series(&[("__name__", "x")], &pts(0, 7200, 60, |t| (7.0 * t / 60.0) % 11.0))]);
    // At 3600 s both read minutes 51..60 (3060..3600 s): 5 1 8 4 0 7 3 10 6 2. The subquery's inner times
    // are those same minutes, and at each one the selector finds the sample of that very minute.
    assert_eq!(one(&s, "max_over_time(x[10m:1m])", 3600.0), 10.0);
    assert_eq!(one(&s, "max_over_time(x[10m])", 3600.0), 10.0);
    assert_eq!(one(&s, "sum_over_time(x[10m:1m])", 3600.0), 46.0);
    assert_eq!(one(&s, "count_over_time(x[10m:1m])", 3600.0), 10.0);
    // Off the minute, e.g. 3630 s, the subquery still reads at whole minutes (3060..3600 s), which are the
    // sample times the range selector's window (3030, 3630] holds: the same answer at every time.
    for t in [3630.0, 3659.0, 4000.0, 7200.0] {
        assert_eq!(one(&s, "max_over_time(x[10m:1m])", t), one(&s, "max_over_time(x[10m])", t), "at {t}");
        assert_eq!(one(&s, "min_over_time(x[10m:1m])", t), one(&s, "min_over_time(x[10m])", t), "at {t}");
    }
    let e = Engine::default();
    let sub = e.range(&s, "max_over_time(x[10m:1m])", 600_000, 7_200_000, 45_000).unwrap();
    let sel = e.range(&s, "max_over_time(x[10m])", 600_000, 7_200_000, 45_000).unwrap();
    assert_eq!(sub, sel);
}

#[test]
fn avg_over_time_of_a_rate_subquery_averages_the_rate_at_each_inner_step() {
    // A counter rising 1/s until 1800 s and 2/s after, sampled every 10 s.
    let s = VecStore::new(vec![series(
        &[("__name__", "c"), ("job", "j")],
        &pts(0, 3600, 10, |t| t.min(1800.0) + 2.0 * (t - 1800.0).max(0.0)),
    )]);
    // rate(c[5m]) over a window wholly inside one slope is that slope: the first sample is 10 s after the
    // window start (under 1.1 intervals), so extrapolation scales the increase to exactly the range. The
    // window ending at 1800 s, (1500, 1800], still has slope 1; the one ending at 2100 s has slope 2.
    // At 2400 s the inner times are the multiples of 5 m in (600, 2400]: 900, 1200, 1500, 1800 (rate 1)
    // and 2100, 2400 (rate 2): the average is 8/6.
    assert!(close(one(&s, "avg_over_time(rate(c[5m])[30m:5m])", 2400.0), 8.0 / 6.0));
    assert!(close(one(&s, "min_over_time(rate(c[5m])[30m:5m])", 2400.0), 1.0));
    assert!(close(one(&s, "max_over_time(rate(c[5m])[30m:5m])", 2400.0), 2.0));
    // rate dropped the name, so the subquery's points have none and neither has last_over_time (which
    // keeps whatever name its input has); over the plain counter the name stays.
    assert_eq!(vector(&s, "last_over_time(rate(c[5m])[30m:5m])", 2400.0)[0].0, labels(&[("job", "j")]));
    assert_eq!(vector(&s, "last_over_time(c[30m:5m])", 2400.0)[0].0, labels(&[("__name__", "c"), ("job", "j")]));
    // As a range query: at 3000 s the inner times (1200, 3000] are 1500, 1800 (rate 1) and 2100..3000
    // (four, rate 2): 10/6; at 3600 s all six are after 1800 s: 2. The inner selector is read once for
    // all outer steps, as every selector is.
    s.calls.store(0, Ordering::SeqCst);
    let v = range_values(&s, "avg_over_time(rate(c[5m])[30m:5m])", 2400, 3600, 600);
    assert_eq!(s.calls.load(Ordering::SeqCst), 1);
    assert_eq!(v.len(), 3);
    assert!(close(v[0], 8.0 / 6.0) && close(v[1], 10.0 / 6.0) && close(v[2], 2.0), "{v:?}");
}

#[test]
fn offset_on_a_subquery_moves_its_window_and_keeps_the_inner_times_aligned() {
    let s = gauge_store();
    // offset 10m at 3600 s: the window (2400, 3000], inner times 2460..3000.
    assert_eq!(one(&s, "max_over_time(g[10m:1m] offset 10m)", 3600.0), 3000.0);
    assert_eq!(one(&s, "min_over_time(g[10m:1m] offset 10m)", 3600.0), 2460.0);
    // offset 90s: the window (2910, 3510]; the inner times are still whole minutes, 2940..3480 (ten of
    // them), not 3510 and every minute before it.
    assert_eq!(one(&s, "min_over_time(g[10m:1m] offset 90s)", 3600.0), 2940.0);
    assert_eq!(one(&s, "max_over_time(g[10m:1m] offset 90s)", 3600.0), 3480.0);
    assert_eq!(one(&s, "count_over_time(g[10m:1m] offset 90s)", 3600.0), 10.0);
    // A negative offset reads later: (3300, 3900].
    assert_eq!(one(&s, "max_over_time(g[10m:1m] offset -5m)", 3600.0), 3900.0);
}

#[test]
fn at_on_a_subquery_fixes_its_window_whatever_the_evaluation_time() {
    let s = gauge_store();
    // @ 1230: the window (630, 1230], inner times 660..1200.
    assert_eq!(one(&s, "max_over_time(g[10m:1m] @ 1230)", 3600.0), 1200.0);
    assert_eq!(one(&s, "min_over_time(g[10m:1m] @ 1230)", 3600.0), 660.0);
    // @ 1200 offset 1m: (540, 1140].
    assert_eq!(one(&s, "min_over_time(g[10m:1m] @ 1200 offset 1m)", 3600.0), 600.0);
    assert_eq!(one(&s, "max_over_time(g[10m:1m] @ 1200 offset 1m)", 3600.0), 1140.0);
    // In a range query from 1000 to 2000 s, @ start() is (700, 1000] at every step: 720..960.
    assert_eq!(range_values(&s, "min_over_time(g[5m:1m] @ start())", 1000, 2000, 500), vec![720.0; 3]);
    assert_eq!(range_values(&s, "max_over_time(g[5m:1m] @ end())", 1000, 2000, 500), vec![1980.0; 3]);
    // Inside a subquery, start() and end() are still the query's, not the subquery's own first and last
    // inner times: every inner point reads g at 1000 s or at 2000 s.
    assert_eq!(range_values(&s, "min_over_time((g @ start())[5m:1m])", 1000, 2000, 500), vec![1000.0; 3]);
    assert_eq!(range_values(&s, "min_over_time((g @ end())[5m:1m])", 1000, 2000, 500), vec![2000.0; 3]);
}

#[test]
fn inner_times_are_multiples_of_the_step_since_the_epoch() {
    let s = gauge_store();
    // At 3630 s the inner times of [5m:1m] are the whole minutes in (3330, 3630], not 3630 - k·60.
    let m = matrix(&s, "g[5m:1m]", 3630.0);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].1, vec![3360.0, 3420.0, 3480.0, 3540.0, 3600.0]);
    assert_eq!(m[0].2, vec![3360.0, 3420.0, 3480.0, 3540.0, 3600.0]);
    // A step that does not divide an hour: multiples of 420 s in (1800, 3600] are 2100, 2520, 2940 and
    // 3360 (four); counted back from 3600 s they would be 3600, 3180, 2760, 2340 and 1920 (five).
    assert_eq!(matrix(&s, "g[30m:7m]", 3600.0)[0].1, vec![2100.0, 2520.0, 2940.0, 3360.0]);
    assert_eq!(one(&s, "count_over_time(g[30m:7m])", 3600.0), 4.0);
    // Without a step the resolution is one minute (Prometheus's default evaluation_interval).
    assert_eq!(matrix(&s, "g[5m:]", 3630.0)[0].1, vec![3360.0, 3420.0, 3480.0, 3540.0, 3600.0]);
}

#[test]
fn subquery_window_is_left_open() {
    let s = gauge_store();
    // At 3600 s the window is (3300, 3600]: 3300 itself is out, so five points, not six.
    assert_eq!(one(&s, "count_over_time(g[5m:1m])", 3600.0), 5.0);
    assert_eq!(one(&s, "min_over_time(g[5m:1m])", 3600.0), 3360.0);
    assert_eq!(matrix(&s, "g[5m:1m]", 3600.0)[0].1, vec![3360.0, 3420.0, 3480.0, 3540.0, 3600.0]);
    // A millisecond earlier the window (3299.999, 3599.999] takes 3300 and loses 3600.
    assert_eq!(one(&s, "min_over_time(g[5m:1m])", 3599.999), 3300.0);
    assert_eq!(one(&s, "max_over_time(g[5m:1m])", 3599.999), 3540.0);
    assert_eq!(one(&s, "count_over_time(g[5m:1m])", 3599.999), 5.0);
}

#[test]
fn nested_subqueries_evaluate_each_level_on_its_own_steps() {
    // A counter sampled every 10 s whose slope is, in each 10-minute block ending at 600, 1200, ... 3600 s:
    // 1, 3, 2, 5, 1, 4.
    let slopes = [1.0, 3.0, 2.0, 5.0, 1.0, 4.0];
    let c = |t: f64| slopes.iter().enumerate().map(|(k, r)| r * (t - 600.0 * k as f64).clamp(0.0, 600.0)).sum();
    let s = VecStore::new(vec![series(&[("__name__", "c"), ("job", "j")], &pts(0, 3600, 10, c))]);
    // rate(c[1m]) at a whole minute t'' is the slope of the block holding (t'' - 60, t''] (exact, as in
    // the test above). The middle level, max_over_time(...[10m:1m]) at t', is the largest slope among
    // the minutes of (t' - 600, t']. The outer level at 3600 s reads t' = 2100, 2400, ..., 3600:
    //   2100: minutes 1560..2100 span slopes 2 and 5 -> 5;   2400: 1860..2400, all 5 -> 5;
    //   2700: 2160..2700, slopes 5 and 1 -> 5;               3000: 2460..3000, all 1 -> 1;
    //   3300: 2760..3300, slopes 1 and 4 -> 4;               3600: 3060..3600, all 4 -> 4.
    let inner = "max_over_time(rate(c[1m])[10m:1m])[30m:5m]";
    assert!(close(one(&s, &format!("avg_over_time({inner})"), 3600.0), 24.0 / 6.0));
    assert!(close(one(&s, &format!("min_over_time({inner})"), 3600.0), 1.0));
    assert!(close(one(&s, &format!("max_over_time({inner})"), 3600.0), 5.0));
    assert_eq!(vector(&s, &format!("min_over_time({inner})"), 3600.0)[0].0, labels(&[("job", "j")]));
    // A range query gives at each step what the instant query gives at that time, reading c once.
    s.calls.store(0, Ordering::SeqCst);
    let q = format!("avg_over_time({inner})");
    let v = range_values(&s, &q, 2400, 3600, 300);
    assert_eq!(s.calls.load(Ordering::SeqCst), 1);
    for (i, t) in (2400..=3600).step_by(300).enumerate() {
        assert!(close(v[i], one(&s, &q, t as f64)), "at {t}: {v:?}");
    }
}

#[test]
fn subquery_at_the_top_level_of_an_instant_query_is_a_matrix() {
    let s = VecStore::new(vec![series(
        &[("__name__", "c"), ("job", "j")],
        &pts(0, 3600, 10, |t| t.min(1800.0) + 2.0 * (t - 1800.0).max(0.0)),
    )]);
    // The points of rate(c[5m]) at the multiples of 10 m in (600, 2400]: 1200, 1800 (slope 1), 2400
    // (slope 2), stamped with those inner times, without a name since rate dropped it.
    let m = matrix(&s, "rate(c[5m])[30m:10m]", 2400.0);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].0, labels(&[("job", "j")]));
    assert_eq!(m[0].1, vec![1200.0, 1800.0, 2400.0]);
    assert!(m[0].2.iter().zip([1.0, 1.0, 2.0]).all(|(a, b)| close(*a, b)), "{m:?}");
    // A plain selector keeps its name, as the inner expression had it; parentheses change nothing.
    // (2280, 2400] holds the inner times 2340 and 2400, where c is 1800 + 2·540 and 1800 + 2·600.
    let m = matrix(&s, "(c[2m:1m])", 2400.0);
    assert_eq!(m[0].0, labels(&[("__name__", "c"), ("job", "j")]));
    assert_eq!(m[0].1, vec![2340.0, 2400.0]);
    assert_eq!(m[0].2, vec![2880.0, 3000.0]);
    // No inner time in the window: an empty matrix, not an error.
    assert!(matrix(&s, "c[30s:1m]", 2430.0).is_empty());
}

#[test]
fn subquery_at_the_top_level_of_a_range_query_is_refused() {
    let s = gauge_store();
    for q in ["g[5m:1m]", "max_over_time(g[10m:1m])[30m:5m]", "(g[5m:])"] {
        match Engine::default().range(&s, q, 0, 60_000, 10_000) {
            Err(QueryError::BadData(m)) => assert_eq!(
                m, "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector",
                "{q}"
            ),
            other => panic!("{q}: {other:?}"),
        }
    }
}

#[test]
fn subquery_with_too_many_inner_steps_is_refused_before_evaluating() {
    let s = gauge_store();
    // A year at 1 ms is 3.15e10 inner steps, far past the 50,000,000 samples a query may hold.
    match Engine::default().instant(&s, "count_over_time(g[365d:1ms])", 3_600_000) {
        Err(QueryError::Execution(m)) => assert!(m.contains("too many samples"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn predict_linear_under_at_predicts_from_each_steps_time() {
    // g = t: the line through the fixed window @ 1000 is v = t, so predicting 60 s past the step's
    // own time gives step + 60, moving with every step rather than repeating the @ time's answer.
    let s = gauge_store();
    let v = range_values(&s, "predict_linear(g[5m] @ 1000, 60)", 2000, 2600, 300);
    assert_eq!(v.len(), 3);
    for (got, want) in v.iter().zip([2060.0, 2360.0, 2660.0]) {
        assert!(close(*got, want), "{v:?}");
    }
    // The window itself stays fixed: max_over_time repeats.
    assert_eq!(range_values(&s, "max_over_time(g[5m] @ 1000)", 2000, 2600, 300), [1000.0; 3]);
}
