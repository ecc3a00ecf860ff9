//! A gate's checks judged on what the shell read for the canary and baseline versions between
//! two times, and combined into a verdict. Pure and deterministic, so that a replay of a decision
//! gives the same answer from the same data.

use serde::{Deserialize, Serialize};

use super::spec::{Check, CheckKind, NoData, Plan};
use super::stats::{self, Side, CONFIDENCE};
use crate::model::SeriesData;

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    Wait,
    /// The check has nothing to look at for this service (no probes, no baseline to compare with).
    Skip,
}

/// One check's answer with the numbers behind it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Evidence {
    pub name: String,
    pub verdict: Verdict,
    pub required: bool,
    /// The canary's figure (a rate, a typical value, a count).
    pub canary: Option<f64>,
    pub baseline: Option<f64>,
    /// Where the canary's figure fails.
    pub threshold: Option<f64>,
    /// Lines, runs or values the canary's figure rests on, and the baseline's.
    pub samples: u64,
    pub baseline_samples: u64,
    pub detail: String,
}

/// The whole answer at one time.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub reason: String,
    pub checks: Vec<Evidence>,
}

/// The same thing read for the canary and (when there is one) the baseline.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pair<T> {
    pub canary: T,
    pub baseline: Option<T>,
}

/// What the shell read for one check: each kind reads what its rule judges.
#[derive(Clone, Debug, PartialEq)]
pub enum Reading {
    /// `error_rate`: lines matching the pattern, and lines, per version.
    Lines(Pair<(u64, u64)>),
    /// `probe_failures`: the `lookout_probe_success` series.
    ProbeRuns(Pair<Vec<SeriesData>>),
    /// `restarts`: `container_start_time_seconds` and `container_oom_events_total`, from a little
    /// before the start so that a first sample inside the window has a predecessor.
    Restarts { starts: Pair<Vec<SeriesData>>, ooms: Pair<Vec<SeriesData>> },
    /// `cpu`: `container_cpu_usage_seconds_total`; `memory`: `container_memory_working_set_bytes`.
    Series(Pair<Vec<SeriesData>>),
    /// `query`: the query's finite values on its step's grid.
    Values(Pair<Vec<f64>>),
}

/// Judges every check of `plan` over `[start_ms, ..]` on its reading (an `Err` is a reading that
/// failed: that check waits); `final_look` turns waiting checks into the policy's answer for "not
/// enough data".
pub fn evaluate(plan: &Plan, start_ms: i64, readings: Vec<Result<Reading, String>>, final_look: bool) -> Outcome {
    let judge = Judge { plan, start_ms };
    let checks: Vec<Evidence> = plan.checks.iter().zip(readings).map(|(c, r)| judge.check(c, r)).collect();
    combine(checks, plan.on_no_data, final_look)
}

/// Fail if a required check fails; pass if every required check passes (skips aside); else wait,
/// or at the deadline the policy's answer for waiting checks.
pub fn combine(checks: Vec<Evidence>, on_no_data: NoData, final_look: bool) -> Outcome {
    let required = || checks.iter().filter(|c| c.required);
    let failed: Vec<String> =
        required().filter(|c| c.verdict == Verdict::Fail).map(|c| format!("{}: {}", c.name, c.detail)).collect();
    let waiting: Vec<String> =
        required().filter(|c| c.verdict == Verdict::Wait).map(|c| format!("{}: {}", c.name, c.detail)).collect();
    let (verdict, reason) = if !failed.is_empty() {
        (Verdict::Fail, failed.join("; "))
    } else if waiting.is_empty() {
        if required().all(|c| c.verdict == Verdict::Skip) {
            (Verdict::Wait, "no check has anything to look at yet".to_string())
        } else {
            (Verdict::Pass, "every check passes".to_string())
        }
    } else if final_look {
        match on_no_data {
            NoData::Fail => (Verdict::Fail, format!("not enough data: {}", waiting.join("; "))),
            NoData::Pass => (Verdict::Pass, format!("not enough data, passed by policy: {}", waiting.join("; "))),
        }
    } else {
        (Verdict::Wait, waiting.join("; "))
    };
    Outcome { verdict, reason, checks }
}

struct Judge<'a> {
    plan: &'a Plan,
    start_ms: i64,
}

impl Judge<'_> {
    fn check(&self, check: &Check, reading: Result<Reading, String>) -> Evidence {
        let mut e = Evidence {
            name: check.name.clone(),
            verdict: Verdict::Wait,
            required: check.required,
            canary: None,
            baseline: None,
            threshold: None,
            samples: 0,
            baseline_samples: 0,
            detail: String::new(),
        };
        let reading = match reading {
            Ok(r) => r,
            Err(msg) => {
                e.detail = format!("could not read the data: {msg}");
                return e;
            }
        };
        let min = check.min_samples;
        match (&check.kind, &reading) {
            (CheckKind::ErrorRate { max_ratio, max_rate, floor, .. }, Reading::Lines(counts)) => {
                self.rates(&mut e, min, counts, (*max_ratio, *max_rate, *floor), true, "lines", "error lines");
            }
            (CheckKind::ProbeFailures { max_ratio, max_rate, floor }, Reading::ProbeRuns(series)) => {
                let count = |s: &[SeriesData]| {
                    let n = s.iter().map(|s| s.samples.values.len() as u64).sum::<u64>();
                    let failed = s.iter().flat_map(|s| &s.samples.values).filter(|v| **v == 0.0).count() as u64;
                    (failed, n)
                };
                let counts = Pair { canary: count(&series.canary), baseline: series.baseline.as_deref().map(count) };
                if counts.canary.1 == 0 && counts.baseline.is_none_or(|b| b.1 == 0) {
                    e.verdict = Verdict::Skip;
                    e.detail = "no probe runs for this service".into();
                } else {
                    self.rates(
                        &mut e,
                        min,
                        &counts,
                        (*max_ratio, *max_rate, *floor),
                        false,
                        "probe runs",
                        "failed runs",
                    );
                }
            }
            (CheckKind::Restarts { max }, Reading::Restarts { starts, ooms }) => {
                self.restarts(&mut e, *max, starts, ooms)
            }
            (CheckKind::Cpu { tolerance, max }, Reading::Series(series)) => {
                let v = Pair {
                    canary: Self::cpu_values(&series.canary),
                    baseline: series.baseline.as_deref().map(Self::cpu_values),
                };
                self.compare(&mut e, min, v, Some(*tolerance), *max, None, "CPU (cores)");
            }
            (CheckKind::Memory { tolerance, max_growth, max }, Reading::Series(series)) => {
                self.memory(&mut e, min, (*tolerance, *max_growth, *max), series);
            }
            (CheckKind::Query { tolerance, max, min: min_v, .. }, Reading::Values(v)) => {
                self.compare(&mut e, min, v.clone(), *tolerance, *max, *min_v, "value");
            }
            _ => e.detail = format!("could not read the data: a reading that does not fit check {}", check.name),
        }
        e
    }

    #[allow(clippy::too_many_arguments)]
    fn rates(
        &self,
        e: &mut Evidence,
        min: u64,
        counts: &Pair<(u64, u64)>,
        (ratio, limit, floor): (f64, f64, f64),
        strict: bool,
        unit: &str,
        what: &str,
    ) {
        let (hits, n) = counts.canary;
        e.samples = n;
        e.canary = Some(hits as f64 / n.max(1) as f64);
        let baseline = counts.baseline.filter(|b| b.1 >= min);
        if let Some((bk, bn)) = counts.baseline {
            e.baseline = Some(bk as f64 / bn.max(1) as f64);
            e.baseline_samples = bn;
        }
        if n < min {
            e.detail = format!("needs {min} {unit} of version {}, has {n}", self.plan.version);
            return;
        }
        let r = stats::rate_against(hits, n, baseline, ratio, limit, floor, &CONFIDENCE);
        e.threshold = Some(r.allowed);
        // Probe runs are few (one per interval per container), too few to prove a small failure rate
        // is below the limit: they pass once they have their minimum with no more failures than
        // allowed, and fail only on evidence. Log lines are plenty, so errors must prove it both ways.
        let side = match r.side {
            Side::Unsure if !strict && r.rate <= r.allowed => Side::Below,
            s => s,
        };
        let against = match (baseline, counts.baseline) {
            (Some(_), _) => format!("{}× the baseline's {}", ratio, pct(e.baseline.unwrap_or(0.0))),
            (None, Some((_, bn))) => format!("the limit (baseline has only {bn} {unit})"),
            (None, None) => "the limit (no baseline)".to_string(),
        };
        let figures = format!(
            "{} {what} ({hits} of {n}) against {} allowed, {against}; z = {:.1}",
            pct(r.rate),
            pct(r.allowed),
            r.z
        );
        (e.verdict, e.detail) = match side {
            Side::Above => (Verdict::Fail, figures),
            Side::Below => (Verdict::Pass, figures),
            Side::Unsure => (Verdict::Wait, format!("{figures}: too few {unit} to tell yet")),
        };
    }

    fn restarts(&self, e: &mut Evidence, max: f64, starts: &Pair<Vec<SeriesData>>, ooms: &Pair<Vec<SeriesData>>) {
        let count = |starts: &[SeriesData], ooms: &[SeriesData]| -> (u64, u64, Vec<String>) {
            let (mut restarts, mut n_ooms, mut who) = (0u64, 0u64, Vec::new());
            let seen = starts.iter().filter(|s| s.samples.ts.iter().any(|t| *t >= self.start_ms)).count() as u64;
            for s in starts {
                // A stopped container's series ends with a stale marker (NaN) that is no start time.
                let (ts, vs): (Vec<i64>, Vec<f64>) = s
                    .samples
                    .ts
                    .iter()
                    .zip(&s.samples.values)
                    .filter(|(_, v)| !v.is_nan())
                    .map(|(t, v)| (*t, *v))
                    .unzip();
                let n = changes_after(&ts, &vs, self.start_ms, |a, b| a != b);
                if n > 0 {
                    who.push(format!("{} restarted {n}×", s.labels.get("container").unwrap_or("?")));
                }
                restarts += n;
            }
            for s in ooms {
                let mut n = 0.0;
                let (ts, vs) = (&s.samples.ts, &s.samples.values);
                for i in 1..ts.len() {
                    if ts[i] >= self.start_ms {
                        n += if vs[i] >= vs[i - 1] { vs[i] - vs[i - 1] } else { vs[i] };
                    }
                }
                if n > 0.0 {
                    who.push(format!("{} OOM-killed {n}×", s.labels.get("container").unwrap_or("?")));
                }
                n_ooms += n as u64;
            }
            (restarts + n_ooms, seen, who)
        };
        let (n, seen, who) = count(&starts.canary, &ooms.canary);
        let baseline = starts.baseline.as_deref().map(|b| count(b, ooms.baseline.as_deref().unwrap_or(&[])));
        e.canary = Some(n as f64);
        e.samples = seen;
        e.threshold = Some(max);
        if let Some((bn, bseen, _)) = baseline {
            e.baseline = Some(bn as f64);
            e.baseline_samples = bseen;
        }
        (e.verdict, e.detail) = if n as f64 > max {
            (Verdict::Fail, format!("{n} restarts and OOM kills (at most {max}): {}", who.join(", ")))
        } else if seen == 0 {
            (Verdict::Wait, format!("no container of version {} seen yet", self.plan.version))
        } else {
            (Verdict::Pass, format!("{n} restarts and OOM kills in {seen} containers"))
        };
    }

    /// Per-sample CPU use (cores) of each container of a version: the counter's rise over the time
    /// between two samples.
    fn cpu_values(series: &[SeriesData]) -> Vec<f64> {
        let mut out = Vec::new();
        for s in series {
            let (ts, vs) = (&s.samples.ts, &s.samples.values);
            for i in 1..ts.len() {
                let dt = (ts[i] - ts[i - 1]) as f64 / 1e3;
                if dt > 0.0 && vs[i] >= vs[i - 1] {
                    out.push((vs[i] - vs[i - 1]) / dt);
                }
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn compare(
        &self,
        e: &mut Evidence,
        min: u64,
        v: Pair<Vec<f64>>,
        tolerance: Option<f64>,
        max: Option<f64>,
        min_v: Option<f64>,
        what: &str,
    ) {
        e.samples = v.canary.len() as u64;
        if !v.canary.is_empty() {
            e.canary = Some(stats::median(&v.canary));
        }
        if let Some(b) = &v.baseline {
            e.baseline_samples = b.len() as u64;
            if !b.is_empty() {
                e.baseline = Some(stats::median(b));
            }
        }
        if e.samples < min {
            e.detail = format!("needs {min} values of version {}, has {}", self.plan.version, e.samples);
            return;
        }
        let canary = e.canary.unwrap_or(f64::NAN);
        if let (Some(tol), Some(b)) = (tolerance, v.baseline.as_ref().filter(|b| b.len() as u64 >= min)) {
            let s = stats::shift_against(&v.canary, b, tol, &CONFIDENCE);
            e.threshold = e.baseline.map(|m| m * (1.0 + tol));
            let figures = format!(
                "typical {what} {} is {:.2}× the baseline's {} (between {:.2}× and {:.2}×; fails above {:.2}×)",
                short(canary),
                s.ratio,
                short(e.baseline.unwrap_or(f64::NAN)),
                s.lower,
                s.upper,
                1.0 + tol
            );
            (e.verdict, e.detail) = match s.side {
                Side::Above => (Verdict::Fail, figures),
                Side::Below => (Verdict::Pass, figures),
                Side::Unsure => (Verdict::Wait, format!("{figures}: too few values to tell yet")),
            };
            return;
        }
        if max.is_none() && min_v.is_none() {
            e.verdict = Verdict::Skip;
            e.detail = match &v.baseline {
                Some(b) => format!("the baseline has only {} values; no absolute limit is set", b.len()),
                None => "no baseline to compare with and no absolute limit set".into(),
            };
            return;
        }
        e.threshold = max.or(min_v);
        let over = max.is_some_and(|m| canary > m);
        let under = min_v.is_some_and(|m| canary < m);
        let limits = [max.map(|m| format!("at most {}", short(m))), min_v.map(|m| format!("at least {}", short(m)))]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" and ");
        e.verdict = if over || under { Verdict::Fail } else { Verdict::Pass };
        e.detail = format!("typical {what} {} ({limits})", short(canary));
    }

    fn memory(
        &self,
        e: &mut Evidence,
        min: u64,
        (tolerance, max_growth, max): (f64, f64, Option<f64>),
        series: &Pair<Vec<SeriesData>>,
    ) {
        let values = |s: &[SeriesData]| s.iter().flat_map(|s| s.samples.values.iter().copied()).collect::<Vec<f64>>();
        let v = Pair { canary: values(&series.canary), baseline: series.baseline.as_deref().map(values) };
        self.compare(e, min, v, Some(tolerance), max, None, "working set (bytes)");
        // Growth is judged with or without a baseline (without one, against the canary's own level).
        if e.verdict == Verdict::Fail || e.samples < min {
            return;
        }
        // Growth: a leak shows as a slope long before it lifts the typical value.
        let points = |s: &[SeriesData]| -> Vec<Vec<(f64, f64)>> {
            s.iter()
                .map(|s| {
                    s.samples
                        .ts
                        .iter()
                        .zip(&s.samples.values)
                        .map(|(t, v)| ((t - self.start_ms) as f64 / 1e3, *v))
                        .collect()
                })
                .collect()
        };
        // A slope over less than a minute extrapolates start-up and noise, not a leak.
        let span = |s: &[SeriesData]| {
            s.iter().filter_map(|s| Some(s.samples.ts.last()? - s.samples.ts.first()?)).max().unwrap_or(0)
        };
        if span(&series.canary) < GROWTH_MIN_SPAN_MS {
            return;
        }
        let Some(c) = stats::pooled_slope(&points(&series.canary)) else { return };
        let b = series.baseline.as_deref().and_then(|b| stats::pooled_slope(&points(b)));
        let level = e.baseline.or(e.canary).unwrap_or(0.0);
        let allowed = (max_growth * level).max(GROWTH_FLOOR_BYTES) / 600.0;
        let (diff, se) = match b {
            Some(b) => (c.per_s - b.per_s, (c.se * c.se + b.se * b.se).sqrt()),
            None => (c.per_s, c.se),
        };
        let z = (diff - allowed) / se.max(f64::MIN_POSITIVE);
        if z > CONFIDENCE.fail_z {
            e.verdict = Verdict::Fail;
            e.detail = format!(
                "working set grows {} per 10 min{} (at most {}, {} of {}); z = {:.1}",
                short(diff * 600.0),
                if b.is_some() { " more than the baseline's" } else { "" },
                short(allowed * 600.0),
                pct(max_growth),
                short(level),
                z
            );
        } else {
            e.detail = format!("{}; grows {} per 10 min, within {}", e.detail, short(diff * 600.0), pct(max_growth));
        }
    }
}

/// The working set's growth is judged only over at least this span of the canary's readings.
const GROWTH_MIN_SPAN_MS: i64 = 60_000;
/// Growth below this many bytes per 10 minutes never fails a release, however small the container.
const GROWTH_FLOOR_BYTES: f64 = 1_048_576.0;

/// How many times a series' value changed at or after `from` (`differs` decides what a change is).
fn changes_after(ts: &[i64], vs: &[f64], from: i64, differs: impl Fn(f64, f64) -> bool) -> u64 {
    (1..ts.len()).filter(|&i| ts[i] >= from && differs(vs[i - 1], vs[i])).count() as u64
}

fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

/// A number short enough to read in a table: 3 significant digits, with k/M/G for large values.
pub fn short(x: f64) -> String {
    let a = x.abs();
    if !x.is_finite() {
        format!("{x}")
    } else if a >= 1e9 {
        format!("{:.3}G", x / 1e9)
    } else if a >= 1e6 {
        format!("{:.3}M", x / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", x / 1e3)
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(name: &str, verdict: Verdict, required: bool) -> Evidence {
        Evidence {
            name: name.into(),
            verdict,
            required,
            canary: None,
            baseline: None,
            threshold: None,
            samples: 0,
            baseline_samples: 0,
            detail: format!("{name} says {verdict:?}"),
        }
    }

    #[test]
    fn one_failure_fails_all_passes_pass_and_waiting_at_the_deadline_is_the_policys_call() {
        use Verdict::*;
        let o = combine(vec![ev("a", Pass, true), ev("b", Fail, true), ev("c", Wait, true)], NoData::Fail, false);
        assert_eq!((o.verdict, o.reason.as_str()), (Fail, "b: b says Fail"));
        let o = combine(vec![ev("a", Pass, true), ev("b", Fail, false), ev("c", Skip, true)], NoData::Fail, false);
        assert_eq!(o.verdict, Pass, "a check that is not required does not decide");
        let o = combine(vec![ev("a", Pass, true), ev("c", Wait, true)], NoData::Fail, false);
        assert_eq!(o.verdict, Wait);
        let o = combine(vec![ev("a", Pass, true), ev("c", Wait, true)], NoData::Fail, true);
        assert_eq!((o.verdict, o.reason.as_str()), (Fail, "not enough data: c: c says Wait"));
        let o = combine(vec![ev("a", Pass, true), ev("c", Wait, true)], NoData::Pass, true);
        assert_eq!(o.verdict, Pass);
        let o = combine(vec![ev("a", Skip, true)], NoData::Fail, false);
        assert_eq!(o.verdict, Wait, "nothing to look at is not a pass");
    }

    #[test]
    fn a_restart_is_a_change_of_start_time_inside_the_window() {
        let ts = [0, 10, 20, 30, 40];
        let vs = [5.0, 5.0, 25.0, 25.0, 35.0];
        assert_eq!(changes_after(&ts, &vs, 0, |a, b| a != b), 2);
        assert_eq!(changes_after(&ts, &vs, 25, |a, b| a != b), 1);
    }

    fn plan(baseline: Option<&str>) -> Plan {
        let req = super::super::spec::GateRequest::parse(br#"{"service":"shop","version":"2"}"#).unwrap();
        let cfg = super::super::spec::GatesConfig::default();
        cfg.plan(&req, baseline.map(str::to_string), String::new(), &|_| Ok(())).unwrap()
    }

    fn series(container: &str, points: &[(i64, f64)]) -> SeriesData {
        SeriesData {
            labels: crate::model::LabelSet::from_pairs([("container", container)]),
            samples: crate::model::Samples {
                ts: points.iter().map(|p| p.0).collect(),
                values: points.iter().map(|p| p.1).collect(),
            },
        }
    }

    /// Every check of the default plan judged on `read`'s reading for it.
    fn judge(plan: &Plan, read: impl Fn(&CheckKind) -> Result<Reading, String>) -> Outcome {
        let readings = plan.checks.iter().map(|c| read(&c.kind)).collect();
        evaluate(plan, 0, readings, false)
    }

    fn quiet(kind: &CheckKind) -> Result<Reading, String> {
        let none = || Pair { canary: Vec::new(), baseline: Some(Vec::new()) };
        Ok(match kind {
            CheckKind::ErrorRate { .. } => Reading::Lines(Pair { canary: (10, 20_000), baseline: Some((10, 20_000)) }),
            CheckKind::Restarts { .. } => Reading::Restarts {
                starts: Pair { canary: vec![series("c2", &[(0, 5.0), (10_000, 5.0)])], baseline: Some(Vec::new()) },
                ooms: none(),
            },
            CheckKind::ProbeFailures { .. } => Reading::ProbeRuns(none()),
            CheckKind::Query { .. } => Reading::Values(Pair { canary: Vec::new(), baseline: Some(Vec::new()) }),
            _ => Reading::Series(none()),
        })
    }

    #[test]
    fn readings_alone_decide_a_release_errors_fail_it_and_a_crash_loop_names_its_container() {
        let p = plan(Some("1"));
        let calm = judge(&p, quiet);
        let by = |o: &Outcome, name: &str| o.checks.iter().find(|c| c.name == name).unwrap().clone();
        assert_eq!(by(&calm, "error_rate").verdict, Verdict::Pass, "{:?}", by(&calm, "error_rate"));
        assert_eq!(by(&calm, "probe_failures").verdict, Verdict::Skip);
        assert_eq!(by(&calm, "restarts").verdict, Verdict::Pass);

        let errors = judge(&p, |k| match k {
            CheckKind::ErrorRate { .. } => {
                Ok(Reading::Lines(Pair { canary: (400, 20_000), baseline: Some((10, 20_000)) }))
            }
            k => quiet(k),
        });
        assert_eq!(errors.verdict, Verdict::Fail);
        assert!(errors.reason.starts_with("error_rate: 2.00% error lines (400 of 20000)"), "{}", errors.reason);

        let crash = judge(&p, |k| match k {
            CheckKind::Restarts { .. } => Ok(Reading::Restarts {
                starts: Pair {
                    canary: vec![series("c2", &[(0, 5.0), (10_000, 15.0), (20_000, 25.0)])],
                    baseline: None,
                },
                ooms: Pair { canary: Vec::new(), baseline: None },
            }),
            k => quiet(k),
        });
        let r = by(&crash, "restarts");
        assert_eq!((r.verdict, r.canary), (Verdict::Fail, Some(2.0)));
        assert!(r.detail.contains("c2 restarted 2×"), "{}", r.detail);

        let unread = judge(&p, |k| match k {
            CheckKind::Cpu { .. } => Err("the store failed".into()),
            k => quiet(k),
        });
        let cpu = by(&unread, "cpu");
        assert_eq!((cpu.verdict, cpu.detail.as_str()), (Verdict::Wait, "could not read the data: the store failed"));
    }

    #[test]
    fn cpu_is_compared_by_its_typical_use_and_a_leak_fails_on_its_slope() {
        let p = plan(Some("1"));
        // Counters rising by 0.1 core (baseline) and 0.3 core (canary) per 10 s sample, 30 samples each.
        let counter =
            |rate: f64, c: &str| series(c, &(0..30).map(|i| (i * 10_000, rate * 10.0 * i as f64)).collect::<Vec<_>>());
        let cpu = |canary: f64| {
            move |k: &CheckKind| match k {
                CheckKind::Cpu { .. } => Ok(Reading::Series(Pair {
                    canary: vec![counter(canary, "c2")],
                    baseline: Some(vec![counter(0.1, "c1")]),
                })),
                k => quiet(k),
            }
        };
        let by = |o: &Outcome| o.checks.iter().find(|c| c.name == "cpu").unwrap().clone();
        assert_eq!(by(&judge(&p, cpu(0.3))).verdict, Verdict::Fail, "three times the baseline's CPU");
        assert_eq!(by(&judge(&p, cpu(0.1))).verdict, Verdict::Pass, "the same use as the baseline");

        // Working set: steady at 100 MB for the baseline, growing 2 MB a minute for the canary (its level stays within the tolerance).
        let ws = |slope_per_min: f64, c: &str| {
            series(c, &(0..30).map(|i| (i * 10_000, 100e6 + slope_per_min * i as f64 / 6.0)).collect::<Vec<_>>())
        };
        let leak = judge(&p, |k| match k {
            CheckKind::Memory { .. } => Ok(Reading::Series(Pair {
                canary: vec![ws(2e6, "c2"), ws(2e6, "c3")],
                baseline: Some(vec![ws(0.0, "c1"), ws(0.0, "c4")]),
            })),
            k => quiet(k),
        });
        let m = leak.checks.iter().find(|c| c.name == "memory").unwrap();
        assert_eq!(m.verdict, Verdict::Fail, "{}", m.detail);
        assert!(m.detail.contains("working set grows"), "{}", m.detail);
    }
}
