//! Semantics tests for aggregations, binary operators and vector matching, and label functions.
//! Each expected value is worked out from Prometheus 3's documented semantics in the comment beside it.

use super::tests::{close, labels, one, pts, series, vector, VecStore};
use super::*;

/// Two containers on two instances, gauge values 1..4, and a `limit` per container.
fn store() -> VecStore {
    let g = |c: &str, i: &str, v: f64| series(&[("__name__", "mem"), ("container", c), ("instance", i)], &[(10.0, v)]);
    VecStore::new(vec![
        g("a", "i1", 1.0),
        g("a", "i2", 2.0),
        g("b", "i1", 3.0),
        g("b", "i2", 4.0),
        series(&[("__name__", "limit"), ("container", "a")], &[(10.0, 10.0)]),
        series(&[("__name__", "limit"), ("container", "b")], &[(10.0, 20.0)]),
    ])
}

#[test]
fn sum_by_keeps_only_the_listed_labels() {
    let s = store();
    // a: 1 + 2 = 3, b: 3 + 4 = 7; the result has only `container`.
    assert_eq!(
        vector(&s, "sum by (container) (mem)", 20.0),
        vec![(labels(&[("container", "a")]), 3.0), (labels(&[("container", "b")]), 7.0)]
    );
    // Without a clause everything is one group with no labels.
    assert_eq!(vector(&s, "sum(mem)", 20.0), vec![(labels(&[]), 10.0)]);
    // `by` may name a label no series has: then it is absent from the result.
    assert_eq!(vector(&s, "sum by (nope) (mem)", 20.0), vec![(labels(&[]), 10.0)]);
}

#[test]
fn sum_without_drops_the_listed_labels_and_the_name() {
    let s = store();
    assert_eq!(
        vector(&s, "sum without (instance) (mem)", 20.0),
        vec![(labels(&[("container", "a")]), 3.0), (labels(&[("container", "b")]), 7.0)]
    );
    // without () keeps every label but the name: one result per series.
    let v = vector(&s, "sum without () (mem)", 20.0);
    assert_eq!(v.len(), 4);
    assert!(v.iter().all(|(l, _)| l.metric_name().is_none()));
}

#[test]
fn other_aggregations_match_prometheus() {
    let s = store();
    assert_eq!(vector(&s, "avg by (container) (mem)", 20.0)[1].1, 3.5);
    assert_eq!(one(&s, "min(mem)", 20.0), 1.0);
    assert_eq!(one(&s, "max(mem)", 20.0), 4.0);
    assert_eq!(one(&s, "count(mem)", 20.0), 4.0);
    assert_eq!(one(&s, "group(mem)", 20.0), 1.0);
    // Values 1..4: mean 2.5, squared deviations 2.25+0.25+0.25+2.25 = 5, population variance 1.25.
    assert!(close(one(&s, "stdvar(mem)", 20.0), 1.25));
    assert!(close(one(&s, "stddev(mem)", 20.0), 1.25f64.sqrt()));
    // quantile 0.5 of 1..4: rank 1.5 between 2 and 3 = 2.5; phi > 1 gives +Inf.
    assert_eq!(one(&s, "quantile(0.5, mem)", 20.0), 2.5);
    assert_eq!(one(&s, "quantile(2, mem)", 20.0), f64::INFINITY);
}

#[test]
fn stddev_and_stdvar_of_nan_or_infinity_are_nan() {
    let g = |l: &str, v: f64| series(&[("__name__", "s"), ("label", l)], &[(0.0, v)]);
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        // First, last, or alone in its group: the group's deviation is NaN; groups without it are 0.
        for order in [vec![g("a", 1.0), g("b", 2.0), g("c", bad)], vec![g("c", bad), g("a", 1.0), g("b", 2.0)]] {
            let s = VecStore::new(order);
            assert!(one(&s, "stddev(s)", 0.0).is_nan());
            assert!(one(&s, "stdvar(s)", 0.0).is_nan());
            let by = vector(&s, "stdvar by (label) (s)", 0.0);
            assert_eq!(by.iter().map(|(_, v)| v.is_nan()).collect::<Vec<_>>(), [false, false, true], "{by:?}");
            assert_eq!(by[0].1, 0.0);
        }
    }
}

#[test]
fn topk_and_bottomk_keep_the_series_labels_and_order_the_instant_result() {
    let s = store();
    let e = Engine::default();
    match e.instant(&s, "topk(2, mem)", 20_000).unwrap() {
        Value::Vector(v) => {
            // The two largest, largest first, with their full labels including the name.
            assert_eq!(v.iter().map(|x| x.v).collect::<Vec<_>>(), vec![4.0, 3.0]);
            assert_eq!(v[0].labels.metric_name(), Some("mem"));
        }
        other => panic!("{other:?}"),
    }
    // Per group: the smallest of each container.
    assert_eq!(
        vector(&s, "bottomk by (container) (1, mem)", 20.0).iter().map(|x| x.1).collect::<Vec<_>>(),
        vec![1.0, 3.0]
    );
    assert!(vector(&s, "topk(0, mem)", 20.0).is_empty());
}

#[test]
fn count_values_counts_each_distinct_value() {
    let s = VecStore::new(vec![
        series(&[("__name__", "v"), ("i", "1")], &[(0.0, 2.0)]),
        series(&[("__name__", "v"), ("i", "2")], &[(0.0, 2.0)]),
        series(&[("__name__", "v"), ("i", "3")], &[(0.0, 0.5)]),
    ]);
    // Two series have the value 2 and one 0.5, written as Go's shortest decimal form.
    assert_eq!(
        vector(&s, "count_values(\"val\", v)", 0.0),
        vec![(labels(&[("val", "0.5")]), 1.0), (labels(&[("val", "2")]), 2.0)]
    );
}

#[test]
fn vector_scalar_arithmetic_drops_the_name_and_comparisons_filter() {
    let s = store();
    let v = vector(&s, "mem * 2", 20.0);
    assert_eq!(v.iter().map(|x| x.1).collect::<Vec<_>>(), vec![2.0, 4.0, 6.0, 8.0]);
    assert!(v.iter().all(|(l, _)| l.metric_name().is_none()));
    // A comparison keeps the elements that pass, with their name and value.
    let v = vector(&s, "mem > 2", 20.0);
    assert_eq!(v.iter().map(|x| x.1).collect::<Vec<_>>(), vec![3.0, 4.0]);
    assert!(v.iter().all(|(l, _)| l.metric_name() == Some("mem")));
    // With the scalar on the left the value is still the vector's.
    assert_eq!(vector(&s, "2 < mem", 20.0).iter().map(|x| x.1).collect::<Vec<_>>(), vec![3.0, 4.0]);
    // `bool` keeps every element as 0 or 1 and drops the name.
    let v = vector(&s, "mem > bool 2", 20.0);
    assert_eq!(v.iter().map(|x| x.1).collect::<Vec<_>>(), vec![0.0, 0.0, 1.0, 1.0]);
    assert!(v.iter().all(|(l, _)| l.metric_name().is_none()));
    // Unary minus negates and drops the name.
    assert_eq!(vector(&s, "-mem", 20.0)[0], (labels(&[("container", "a"), ("instance", "i1")]), -1.0));
}

#[test]
fn vector_vector_matches_one_to_one_on_all_labels_but_the_name() {
    let s = VecStore::new(vec![
        series(&[("__name__", "used"), ("c", "a")], &[(0.0, 3.0)]),
        series(&[("__name__", "used"), ("c", "b")], &[(0.0, 5.0)]),
        series(&[("__name__", "total"), ("c", "a")], &[(0.0, 4.0)]),
        series(&[("__name__", "total"), ("c", "z")], &[(0.0, 9.0)]),
    ]);
    // Only c="a" has a partner: 3 / 4.
    assert_eq!(vector(&s, "used / total", 0.0), vec![(labels(&[("c", "a")]), 0.75)]);
    // on() with no labels matches everything to one group; the result has no labels... but the right
    // side then has two series: Prometheus's many-to-many error.
    match Engine::default().instant(&s, "used / on() total", 0) {
        Err(QueryError::Execution(m)) => {
            assert!(m.contains("many-to-many matching not allowed"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    // A comparison between vectors filters and keeps the left side's labels and value.
    assert_eq!(vector(&s, "used < total", 0.0), vec![(labels(&[("__name__", "used"), ("c", "a")]), 3.0)]);
}

#[test]
fn group_left_copies_labels_from_the_one_side() {
    let s = store();
    // Each mem series divided by its container's limit; group_left allows many mem per limit.
    let v = vector(&s, "mem / on (container) group_left limit", 20.0);
    assert_eq!(v.len(), 4);
    assert_eq!(v[0], (labels(&[("container", "a"), ("instance", "i1")]), 0.1));
    assert_eq!(v[3], (labels(&[("container", "b"), ("instance", "i2")]), 0.2));
    // Without group_left the left side has two series per container: an error.
    match Engine::default().instant(&s, "mem / on (container) limit", 20_000) {
        Err(QueryError::Execution(m)) => {
            assert!(m.contains("many-to-one matching must be explicit"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    // group_right mirrors it, with the value computed left op right.
    let v = vector(&s, "limit / on (container) group_right mem", 20.0);
    assert_eq!(v[0], (labels(&[("container", "a"), ("instance", "i1")]), 10.0));
}

#[test]
fn set_operators_and_or_unless() {
    let s = store();
    // and: mem series whose labels (but the name) also exist on the right: mem > 2 selects b's.
    assert_eq!(vector(&s, "mem and mem > 2", 20.0).iter().map(|x| x.1).collect::<Vec<_>>(), vec![3.0, 4.0]);
    assert_eq!(vector(&s, "mem unless mem > 2", 20.0).iter().map(|x| x.1).collect::<Vec<_>>(), vec![1.0, 2.0]);
    // or: all of the left, plus right series whose match set is missing on the left.
    assert_eq!(vector(&s, "mem > 3 or mem < 2", 20.0).iter().map(|x| x.1).collect::<Vec<_>>(), vec![1.0, 4.0]);
    // Matching on a label subset: limits of containers that have some mem above 3 (only b).
    assert_eq!(
        vector(&s, "limit and on (container) mem > 3", 20.0).iter().map(|x| x.1).collect::<Vec<_>>(),
        vec![20.0]
    );
}

#[test]
fn label_functions_and_absent() {
    let s = store();
    let v = vector(&s, "label_replace(limit, \"short\", \"c-$1\", \"container\", \"(.)\")", 20.0);
    assert_eq!(v[0].0, labels(&[("__name__", "limit"), ("container", "a"), ("short", "c-a")]));
    let v = vector(&s, "label_join(limit, \"both\", \"/\", \"__name__\", \"container\")", 20.0);
    assert_eq!(v[1].0.get("both"), Some("limit/b"));
    // absent gives 1 with the equality matchers' labels when nothing matches, else nothing.
    assert_eq!(vector(&s, "absent(nope{job=\"x\", env=~\"p.*\"})", 20.0), vec![(labels(&[("job", "x")]), 1.0)]);
    assert!(vector(&s, "absent(mem)", 20.0).is_empty());
    // scalar() of one element is its value, of several NaN; vector() makes a label-less element.
    assert_eq!(one(&s, "vector(scalar(limit{container=\"a\"}))", 20.0), 10.0);
    assert!(one(&s, "vector(scalar(mem))", 20.0).is_nan());
    // timestamp() of a selector is the sample's own time (10 s), not the query time.
    assert_eq!(one(&s, "timestamp(limit{container=\"a\"})", 20.0), 10.0);
}

#[test]
fn math_functions_drop_the_name() {
    let s = VecStore::new(vec![series(&[("__name__", "g")], &[(0.0, -2.5)])]);
    assert_eq!(vector(&s, "abs(g)", 0.0), vec![(labels(&[]), 2.5)]);
    assert_eq!(one(&s, "ceil(g)", 0.0), -2.0);
    assert_eq!(one(&s, "floor(g)", 0.0), -3.0);
    // round rounds half up: -2.5 -> floor(-2.0) = -2.
    assert_eq!(one(&s, "round(g)", 0.0), -2.0);
    assert_eq!(one(&s, "round(g, 2)", 0.0), -2.0);
    assert_eq!(one(&s, "clamp(g, -1, 1)", 0.0), -1.0);
    assert!(vector(&s, "clamp(g, 1, -1)", 0.0).is_empty());
    assert_eq!(one(&s, "clamp_min(g, 0)", 0.0), 0.0);
    assert_eq!(one(&s, "clamp_max(g, -3)", 0.0), -3.0);
    assert_eq!(one(&s, "sgn(g)", 0.0), -1.0);
    assert!(close(one(&s, "exp(abs(g) - 2.5)", 0.0), 1.0));
}

#[test]
fn range_query_of_sum_by_rate_over_steps() {
    // Two counters per container, each rising 1 per 10 s: every rate is 0.1, so sum by container is 0.2.
    let mk =
        |c: &str, i: &str| series(&[("__name__", "cpu"), ("container", c), ("i", i)], &pts(0, 1200, 10, |t| t / 10.0));
    let s = VecStore::new(vec![mk("a", "1"), mk("a", "2"), mk("b", "1"), mk("b", "2")]);
    let m = Engine::default().range(&s, "sum by (container) (rate(cpu[1m]))", 600_000, 1_200_000, 15_000).unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].labels, labels(&[("container", "a")]));
    assert_eq!(m[0].samples.ts.len(), 41);
    assert!(m[0].samples.values.iter().all(|v| close(*v, 0.2)), "{:?}", m[0].samples.values);
}

#[test]
fn histogram_quantile_interpolates_within_classic_buckets() {
    // Cumulative buckets: <=0.1: 10, <=0.5: 30, <=1: 40, +Inf: 50, for two pods (pod b twice as many).
    let mut data = Vec::new();
    for (pod, k) in [("a", 1.0), ("b", 2.0)] {
        for (le, c) in [("0.1", 10.0), ("0.5", 30.0), ("1", 40.0), ("+Inf", 50.0)] {
            data.push(series(&[("__name__", "lat_bucket"), ("pod", pod), ("le", le)], &[(0.0, c * k)]));
        }
    }
    let s = VecStore::new(data);
    // q=0.5 of pod a: rank 25 falls in (0.1, 0.5] holding 20 of them, 15 in: 0.1 + 0.4 * 15/20 = 0.4.
    assert!(close(vector(&s, "histogram_quantile(0.5, lat_bucket)", 0.0)[0].1, 0.4));
    // The result keeps the other labels but neither `le` nor the name; pod b has the same shape.
    let v = vector(&s, "histogram_quantile(0.5, lat_bucket)", 0.0);
    assert_eq!(v[1].0, labels(&[("pod", "b")]));
    assert!(close(v[1].1, 0.4));
    // q=0.1: rank 5 in the first bucket, interpolated from 0: 0.1 * 5/10 = 0.05.
    assert!(close(vector(&s, "histogram_quantile(0.1, lat_bucket)", 0.0)[0].1, 0.05));
    // q=0.9: rank 45 is beyond the last finite bucket: its upper bound, 1.
    assert_eq!(vector(&s, "histogram_quantile(0.9, lat_bucket)", 0.0)[0].1, 1.0);
    // Summed over pods by le: 30, 90, 120, 150; q=0.5 -> rank 75 in (0.1, 0.5]: 0.1 + 0.4 * 45/60 = 0.4.
    assert!(close(one(&s, "histogram_quantile(0.5, sum by (le) (lat_bucket))", 0.0), 0.4));
    // Without a +Inf bucket the quantile is NaN.
    assert!(one(&s, "histogram_quantile(0.5, lat_bucket{pod=\"a\", le!=\"+Inf\"})", 0.0).is_nan());
}

#[test]
fn histogram_quantile_refuses_two_histograms_with_one_label_set() {
    // lat_bucket and lat2_bucket of one pod are the same series once the name is dropped.
    let mut data = Vec::new();
    for name in ["lat_bucket", "lat2_bucket"] {
        for (le, c) in [("0.1", 1.0), ("+Inf", 4.0)] {
            data.push(series(&[("__name__", name), ("pod", "a"), ("le", le)], &[(0.0, c)]));
        }
    }
    let s = VecStore::new(data);
    let err =
        Engine::default().instant(&s, "histogram_quantile(0.99, {__name__=~\"lat\\\\d*_bucket\"})", 0).unwrap_err();
    assert!(err.to_string().contains("same labelset"), "{err}");
    // One of them alone is fine: rank 2 of 4 lies past the last finite bucket, so its bound, 0.1.
    assert!(close(one(&s, "histogram_quantile(0.5, lat2_bucket)", 0.0), 0.1));
}

#[test]
fn histogram_quantile_repairs_non_monotonic_buckets() {
    // Counts 10, 8 (lower than before: raised to 10), 20 at +Inf. q=0.5: rank 10 is reached in the first
    // bucket already: 0.1 * 10/10 = 0.1.
    let b = |le: &str, c: f64| series(&[("__name__", "h_bucket"), ("le", le)], &[(0.0, c)]);
    let s = VecStore::new(vec![b("0.1", 10.0), b("0.2", 8.0), b("+Inf", 20.0)]);
    assert!(close(one(&s, "histogram_quantile(0.5, h_bucket)", 0.0), 0.1));
    // q=0.75: rank 15; buckets 10, 10, 20: beyond the last finite bucket: 0.2.
    assert_eq!(one(&s, "histogram_quantile(0.75, h_bucket)", 0.0), 0.2);
}
