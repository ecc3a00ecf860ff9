//! Any string as a PromQL query, instant and range, over a small fixed store: an answer or an error,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lookout_collector::model::{LabelSet, Matcher, Samples, SeriesData};
use lookout_collector::query::promql::{Engine, Queryable};
use lookout_collector::query::QueryError;

struct Fixed(Vec<SeriesData>);

impl Queryable for Fixed {
    fn select(&self, matchers: &[Matcher], start: i64, end: i64) -> Result<Vec<SeriesData>, QueryError> {
        Ok(self
            .0
            .iter()
            .filter(|s| matchers.iter().all(|m| m.matches_labels(&s.labels)))
            .map(|s| {
                let keep: Vec<usize> = (0..s.samples.ts.len()).filter(|&i| (start..=end).contains(&s.samples.ts[i])).collect();
                SeriesData {
                    labels: s.labels.clone(),
                    samples: Samples {
                        ts: keep.iter().map(|&i| s.samples.ts[i]).collect(),
                        values: keep.iter().map(|&i| s.samples.values[i]).collect(),
                    },
                }
            })
            .collect())
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else { return };
    let series = |c: &str, f: f64| SeriesData {
        labels: LabelSet::from_pairs([("__name__", "m"), ("c", c)]),
        samples: Samples { ts: (0..60).map(|i| i * 10_000).collect(), values: (0..60).map(|i| i as f64 * f).collect() },
    };
    let store = Fixed(vec![series("a", 1.0), series("b", -0.5), series("c", f64::NAN)]);
    let engine = Engine::default();
    let _ = engine.instant(&store, q, 300_000);
    let _ = engine.range(&store, q, 0, 600_000, 30_000);
});
