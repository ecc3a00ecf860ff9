//! Robustness and speed: the engine never panics on random input, and a dashboard-sized range query
//! is fast (timings printed with eprintln; run in release mode).

use proptest::prelude::*;

use super::tests::{pts, series, VecStore};
use super::*;

fn small_store() -> VecStore {
    VecStore::new(vec![
        series(&[("__name__", "a"), ("k", "1")], &pts(0, 600, 10, |t| t)),
        series(&[("__name__", "a"), ("k", "2")], &pts(0, 600, 15, |t| (t * 7.0) % 13.0)),
        series(&[("__name__", "b"), ("k", "1")], &pts(0, 600, 30, |t| -t)),
    ])
}

fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("a{k=\"1\"}".to_string()),
        Just("{k=~\"1|2\"}".to_string()),
        (-1e3f64..1e3).prop_map(|f| format!("{f}")),
        Just("NaN".to_string()),
        Just("Inf".to_string()),
        Just("time()".to_string()),
    ]
}

fn expr() -> impl Strategy<Value = String> {
    leaf().prop_recursive(4, 24, 3, |inner| {
        let ops = prop_oneof![
            Just("+"),
            Just("-"),
            Just("*"),
            Just("/"),
            Just("%"),
            Just("^"),
            Just(">"),
            Just("< bool"),
            Just("=="),
            Just("and"),
            Just("or"),
            Just("unless"),
            Just("atan2"),
            Just("+ on(k)"),
            Just("/ ignoring(k) group_left"),
        ];
        let fns = prop_oneof![
            Just("rate"),
            Just("increase"),
            Just("irate"),
            Just("delta"),
            Just("avg_over_time"),
            Just("deriv"),
            Just("max_over_time"),
            Just("changes"),
            Just("stddev_over_time"),
            Just("absent_over_time"),
        ];
        let aggs = prop_oneof![
            Just("sum"),
            Just("avg"),
            Just("min"),
            Just("max"),
            Just("count"),
            Just("stddev"),
            Just("group"),
        ];
        prop_oneof![
            (inner.clone(), ops, inner.clone()).prop_map(|(l, o, r)| format!("({l}) {o} ({r})")),
            (fns.clone(), prop_oneof![Just("a"), Just("b"), Just("{k=\"1\"}")], 1u32..200)
                .prop_map(|(f, s, r)| format!("{f}({s}[{r}s])")),
            (fns, inner.clone(), 1u32..900, 1u32..120, prop_oneof![Just(""), Just(" offset 45s"), Just(" @ 300")])
                .prop_map(|(f, e, r, st, m)| format!("{f}(({e})[{r}s:{st}s]{m})")),
            (aggs, inner.clone(), prop_oneof![Just(""), Just(" by (k)"), Just(" without (k)")])
                .prop_map(|(a, e, m)| format!("{a}{m} ({e})")),
            (prop_oneof![Just("topk"), Just("bottomk"), Just("quantile")], -2.0f64..4.0, inner.clone())
                .prop_map(|(a, p, e)| format!("{a}({p}, {e})")),
            inner.clone().prop_map(|e| format!("-({e})")),
            inner.clone().prop_map(|e| format!("abs({e})")),
            inner.prop_map(|e| format!("count_values(\"v\", {e})")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn engine_never_panics_on_random_strings(q in ".{0,40}", t in -1_000_000i64..2_000_000) {
        let s = small_store();
        let _ = Engine::default().instant(&s, &q, t);
        let _ = Engine::default().range(&s, &q, t, t + 100_000, 7_000);
    }

    #[test]
    fn engine_never_panics_on_promql_like_strings(q in "[a-z(){}\\[\\]\"=~!,+*/ 0-9.@:-]{0,40}") {
        let s = small_store();
        let _ = Engine::default().instant(&s, &q, 300_000);
        let _ = Engine::default().range(&s, &q, 0, 600_000, 30_000);
    }

    #[test]
    fn engine_never_panics_on_random_expressions(q in expr(), t in 0i64..700_000, step in 1i64..90_000) {
        let s = small_store();
        let _ = Engine::default().instant(&s, &q, t);
        let r = Engine::default().range(&s, &q, 0, 600_000, step);
        // A range query's points are exactly on the steps.
        if let Ok(m) = r {
            for sd in m {
                prop_assert!(sd.samples.ts.iter().all(|t| t % step == 0 && *t <= 600_000));
                prop_assert_eq!(sd.samples.ts.len(), sd.samples.values.len());
            }
        }
    }

    #[test]
    fn instant_query_agrees_with_the_matching_step_of_a_range_query(q in expr(), i in 0i64..20) {
        // Evaluating at one step alone must give what the range query gives at that step.
        let s = small_store();
        let t = i * 30_000;
        let (Ok(inst), Ok(range)) = (Engine::default().instant(&s, &q, t), Engine::default().range(&s, &q, 0, 600_000, 30_000)) else {
            return Ok(());
        };
        let at_t: Vec<(crate::model::LabelSet, f64)> = range
            .iter()
            .filter_map(|sd| sd.samples.ts.iter().position(|x| *x == t).map(|j| (sd.labels.clone(), sd.samples.values[j])))
            .collect();
        let mut got: Vec<(crate::model::LabelSet, f64)> = match inst {
            Value::Vector(v) => v.into_iter().map(|x| (x.labels, x.v)).collect(),
            Value::Scalar { v, .. } => vec![(Default::default(), v)],
            _ => return Ok(()),
        };
        got.sort_by(|a, b| a.0.cmp(&b.0));
        prop_assert_eq!(got.len(), at_t.len(), "{}", q);
        for (g, r) in got.iter().zip(&at_t) {
            prop_assert_eq!(&g.0, &r.0);
            prop_assert!(g.1.to_bits() == r.1.to_bits() || (g.1.is_nan() && r.1.is_nan()), "{} {} {}", q, g.1, r.1);
        }
    }
}

#[test]
fn sum_by_rate_over_100_series_for_an_hour_is_exact_at_every_step() {
    // 100 series in 10 containers, 10 s samples for 1 h 10 m; query 1 h at 15 s steps.
    let mut data = Vec::new();
    for i in 0..100 {
        let c = format!("c{}", i % 10);
        let id = format!("{i}");
        data.push(series(
            &[("__name__", "container_cpu_usage_seconds_total"), ("container", &c), ("id", &id)],
            &pts(0, 4200, 10, |t| t * 0.5 + i as f64),
        ));
    }
    let s = VecStore::new(data);
    let e = Engine::default();
    let q = "sum by (container) (rate(container_cpu_usage_seconds_total[1m]))";
    let m = e.range(&s, q, 600_000, 4_200_000, 15_000).unwrap();
    assert_eq!(m.len(), 10);
    assert_eq!(m[0].samples.ts.len(), 241);
    // Each series rises 0.5/s, ten per container: 5.
    assert!(m.iter().all(|sd| sd.samples.values.iter().all(|v| (v - 5.0).abs() < 1e-9)));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn engine_never_panics_on_extreme_times(
        q in expr(),
        t in prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0i64), any::<i64>()],
        step in prop_oneof![Just(i64::MAX), Just(1i64), any::<i64>()],
    ) {
        let s = small_store();
        let _ = Engine::default().instant(&s, &q, t);
        let _ = Engine::default().range(&s, &q, t, t.saturating_add(step.saturating_mul(3)), step);
        let _ = Engine::default().range(&s, &q, i64::MIN, i64::MAX, step);
        let q2 = format!("({q}) offset 100000y");
        let _ = Engine::default().instant(&s, &q2, t);
    }
}

/// One level of nesting around an expression, as generated queries stack them.
fn wrap(e: String, kind: u8) -> String {
    match kind % 8 {
        0 => format!("({e})"),
        1 => format!("sum by (k) ({e})"),
        2 => format!("abs({e})"),
        3 => format!("max_over_time(({e})[1m:30s])"),
        4 => format!("-({e})"),
        5 => format!("{e} + 1"),
        6 => format!("{e} or a"),
        _ => format!("topk(2, {e})"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The path a query takes through the API, with generated nesting up to past the limit: an
    /// answer or an error on the query thread, never a crash; an expression past `max_depth`
    /// levels is always refused with a limit error, and one well within it never for its depth.
    #[test]
    fn deep_generated_queries_are_answered_or_refused_by_depth(
        kinds in proptest::collection::vec(any::<u8>(), 1..700),
    ) {
        let mut q = "a".to_string();
        for k in &kinds {
            q = wrap(q, *k);
        }
        let engine = Engine::new(QueryLimits { max_depth: 300, max_query_bytes: 1 << 20, ..Default::default() });
        let store = small_store();
        let budget = Budget::new(std::time::Duration::from_secs(30), 50_000_000);
        let r = runner::on_query_stack(|| engine.instant_within(&store, &q, 600_000, &budget));
        let refused_for_depth = matches!(&r, Err(QueryError::Limit { reason: "depth", .. }));
        // Every level adds at least one parsed level and at most three (a subquery's brackets).
        if kinds.len() > 300 {
            prop_assert!(refused_for_depth, "{} levels: {:?}", kinds.len(), r.as_ref().err());
        }
        if kinds.len() * 3 < 300 {
            prop_assert!(!refused_for_depth, "{} levels: {:?}", kinds.len(), r.as_ref().err());
        }
    }
}

/// At the ceilings a config may set (`max_depth` 4096, `max_query_bytes` 1 MiB), the worst shapes
/// just within them parse, evaluate and drop on a query thread: this is what sizes the stack.
#[test]
fn the_deepest_accepted_queries_fit_the_stack() {
    use limits::{MAX_DEPTH_CEILING as D, MAX_QUERY_BYTES_CEILING};
    let engine =
        Engine::new(QueryLimits { max_depth: D, max_query_bytes: MAX_QUERY_BYTES_CEILING, ..Default::default() });
    let store = small_store();
    let nest = |open: &str, inner: &str, close: &str, n: usize| format!("{}{inner}{}", open.repeat(n), close.repeat(n));
    let shapes = [
        nest("(", "a", ")", D - 1),
        nest("abs(", "a", ")", D - 1),
        nest("sum(", "a", ")", D - 1),
        vec!["a"; D - 1].join(" + "),
        nest("max_over_time(", "a", "[1m:30s])", D / 2 - 1),
        nest("-(", "a", ")", D / 2 - 1),
    ];
    for q in &shapes {
        let budget = Budget::new(std::time::Duration::from_secs(120), 50_000_000);
        let r = runner::on_query_stack(|| engine.instant_within(&store, q, 600_000, &budget).map(|_| ()));
        assert!(
            !matches!(r, Err(QueryError::Limit { .. })),
            "{}…: within the ceilings, refused: {r:?}",
            &q[..q.len().min(40)]
        );
    }
}
