//! Bytes as a recipe for a deeply nested PromQL or LogQL metric query (each byte one level of
//! wrapping, as generated queries stack them), through the checks and the parse-and-evaluate path
//! the API runs on a query thread: an answer or an error, never a crash or a stack overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lookout_collector::model::{LabelSet, Matcher, Samples, SeriesData};
use lookout_collector::query::promql::{Engine, Queryable};
use lookout_collector::query::{runner, Budget, QueryError, QueryLimits};

struct Fixed(Vec<SeriesData>);

impl Queryable for Fixed {
    fn select(&self, matchers: &[Matcher], _start: i64, _end: i64) -> Result<Vec<SeriesData>, QueryError> {
        Ok(self.0.iter().filter(|s| matchers.iter().all(|m| m.matches_labels(&s.labels))).cloned().collect())
    }
}

fn promql(recipe: &[u8]) -> String {
    let mut e = "m".to_string();
    for b in recipe {
        e = match b % 10 {
            0 => format!("({e})"),
            1 => format!("sum by (c) ({e})"),
            2 => format!("abs({e})"),
            3 => format!("max_over_time(({e})[1m:10s])"),
            4 => format!("-({e})"),
            5 => format!("{e} + m"),
            6 => format!("{e} or m"),
            7 => format!("topk(1, {e})"),
            8 => format!("rate(m[1m]) * {e}"),
            _ => format!("{e} > bool 0"),
        };
    }
    e
}

fn logql(recipe: &[u8]) -> String {
    let mut e = r#"count_over_time({c="a"} |= "x" | l="1" [1m])"#.to_string();
    for b in recipe {
        e = match b % 4 {
            0 => format!("({e})"),
            1 => format!("sum by (c) ({e})"),
            2 => format!("{e} + vector(1)"),
            _ => format!("topk(1, {e})"),
        };
    }
    e
}

fn within_limits(limits: &QueryLimits, q: &str) {
    let shape = lookout_collector::query::limits::shape(q, usize::MAX);
    assert!(
        q.len() <= limits.max_query_bytes && shape.depth <= limits.max_depth && shape.chain <= limits.max_depth,
        "answered past the limits: {} bytes, {shape:?}",
        q.len()
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, recipe)) = data.split_first() else { return };
    let limits = QueryLimits::default();
    if which % 2 == 0 {
        let q = promql(recipe);
        let series = |c: &str| SeriesData {
            labels: LabelSet::from_pairs([("__name__", "m"), ("c", c)]),
            samples: Samples { ts: (0..60).map(|i| i * 10_000).collect(), values: (0..60).map(|i| i as f64).collect() },
        };
        let store = Fixed(vec![series("a"), series("b")]);
        let engine = Engine::new(limits.clone());
        let budget = Budget::new(std::time::Duration::from_secs(10), limits.max_samples);
        let r = runner::on_query_stack(|| engine.instant_within(&store, &q, 600_000, &budget));
        // A wrapper does not always nest deeper (`rate(m[1m]) * …` before a chain of `*` joins the
        // chain), so what holds is that nothing past the limits is evaluated.
        if r.is_ok() {
            within_limits(&limits, &q);
        }
    } else {
        let q = logql(recipe);
        let r = runner::on_query_stack(|| {
            limits.check_text("query", &q)?;
            let e = lookout_collector::query::logql::metric::parse(&q).map_err(|e| QueryError::Parse(e.to_string()))?;
            if e.depth() > limits.max_depth {
                return Err(QueryError::Limit { reason: "depth", message: String::new() });
            }
            let times = [0, 60_000_000_000];
            let mut sels = Vec::new();
            e.selectors(&mut sels);
            let labels = LabelSet::from_pairs([("c", "a")]);
            let counted: Vec<_> = sels
                .iter()
                .map(|(q, range)| {
                    let mut w = lookout_collector::query::logql::metric::WindowCounts::new(q, &times, *range, 500);
                    w.add(&labels, 30_000_000_000, "x l=1");
                    w
                })
                .collect();
            let _ = e.eval(&times, &mut counted.iter());
            Ok(())
        });
        if r.is_ok() {
            within_limits(&limits, &q);
        }
    }
});
