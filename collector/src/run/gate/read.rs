//! What a gate's checks read from the store (and the PromQL engine, for `query` checks) for the
//! canary and baseline versions between two times: the readings `decide::gate::checks` judges.

use crate::decide::gate::checks::{Pair, Reading};
use crate::decide::gate::spec::{Check, CheckKind, Plan};
use crate::model::{Matcher, SeriesData};
use crate::query::logql::{LinePrefilter, LogQueryable};
use crate::query::promql::Engine;
use crate::store::Store;

/// Each check's reading over `[start_ms, end_ms]`, in the plan's order.
pub fn readings(
    store: &Store,
    engine: &Engine,
    plan: &Plan,
    start_ms: i64,
    end_ms: i64,
) -> Vec<Result<Reading, String>> {
    let r = Reader { store, engine, plan, start_ms, end_ms };
    plan.checks.iter().map(|c| r.read(c)).collect()
}

struct Reader<'a> {
    store: &'a Store,
    engine: &'a Engine,
    plan: &'a Plan,
    start_ms: i64,
    end_ms: i64,
}

impl Reader<'_> {
    fn read(&self, check: &Check) -> Result<Reading, String> {
        let series = |name: &str, from: i64| self.versions(|v| self.select(v, name, from));
        Ok(match &check.kind {
            CheckKind::ErrorRate { pattern, .. } => Reading::Lines(self.error_lines(pattern)?),
            CheckKind::ProbeFailures { .. } => Reading::ProbeRuns(series("lookout_probe_success", self.start_ms)?),
            CheckKind::Restarts { .. } => {
                // From a little before the start, so that a first sample inside the window has a predecessor.
                let from = self.start_ms - 300_000;
                Reading::Restarts {
                    starts: series("container_start_time_seconds", from)?,
                    ooms: series("container_oom_events_total", from)?,
                }
            }
            CheckKind::Cpu { .. } => Reading::Series(series("container_cpu_usage_seconds_total", self.start_ms)?),
            CheckKind::Memory { .. } => Reading::Series(series("container_memory_working_set_bytes", self.start_ms)?),
            CheckKind::Query { query, step_ms, .. } => {
                Reading::Values(self.versions(|v| self.query_values(query, v, *step_ms))?)
            }
        })
    }

    fn matchers(&self, version: &str, name: Option<&str>) -> Vec<Matcher> {
        let mut m = vec![Matcher::equal("service", &self.plan.service), Matcher::equal("version", version)];
        if let Some(n) = name {
            m.push(Matcher::equal("__name__", n));
        }
        m
    }

    /// Reads the same thing for the canary and (when there is one) the baseline.
    fn versions<T>(&self, read: impl Fn(&str) -> Result<T, String>) -> Result<Pair<T>, String> {
        Ok(Pair { canary: read(&self.plan.version)?, baseline: self.plan.baseline.as_deref().map(&read).transpose()? })
    }

    fn select(&self, version: &str, name: &str, from_ms: i64) -> Result<Vec<SeriesData>, String> {
        self.store.select(&self.matchers(version, Some(name)), from_ms, self.end_ms).map_err(|e| e.to_string())
    }

    /// Lines matching `pattern`, and lines, per version: counted where the lines are read, none
    /// copied out (a busy service's gate would otherwise hold every line of its window at each look).
    fn error_lines(&self, pattern: &str) -> Result<Pair<(u64, u64)>, String> {
        let re = regex::Regex::new(pattern).map_err(|e| e.to_string())?;
        self.versions(|v| {
            let counts = self
                .store
                .fold_logs(
                    &self.matchers(v, None),
                    self.start_ms * 1_000_000,
                    (self.end_ms + 1) * 1_000_000,
                    &LinePrefilter::default(),
                    &|| (0u64, 0u64),
                    &|(hits, n), _, _, _, line| {
                        *n += 1;
                        *hits += u64::from(re.is_match(line));
                    },
                )
                .map_err(|e| e.to_string())?;
            Ok(counts.into_iter().fold((0, 0), |(h, n), (a, b)| (h + a, n + b)))
        })
    }

    fn query_values(&self, query: &str, version: &str, step_ms: i64) -> Result<Vec<f64>, String> {
        let q = crate::decide::gate::spec::substitute(query, &self.plan.service, version);
        // Evaluation times on the step's grid, so that a replay evaluates at the same instants.
        let first = (self.start_ms + step_ms - 1) / step_ms * step_ms;
        if first > self.end_ms {
            return Ok(Vec::new());
        }
        let (engine, store, end_ms) = (self.engine, self.store, self.end_ms);
        let series = crate::query::runner::on_query_stack(|| engine.range(store, &q, first, end_ms, step_ms))
            .map_err(|e| e.to_string())?;
        Ok(series.into_iter().flat_map(|s| s.samples.values).filter(|v| v.is_finite()).collect())
    }
}
