//! A gate's life over a real store in simulated time: it passes on evidence, keeps watching, fails
//! on a late regression, outlives a collector restart, and answers per stage.

use super::*;
use crate::model::logs::LogLine;
use crate::model::logs::LogStreamIn;
use crate::model::{LabelSet, Samples};
use crate::store::{LogBatchIn, SeriesGroup};

const T0: i64 = 1_900_000_000_000;

/// Ten seconds of a version's containers: seen, and `lines` request lines each, `errors` of them
/// error lines.
fn write(store: &Store, seq: &mut u64, version: &str, containers: usize, t: i64, lines: usize, errors: usize) {
    let mut groups = Vec::new();
    let mut streams = Vec::new();
    for c in 0..containers {
        let common = LabelSet::from_pairs([
            ("service", "shop".to_string()),
            ("version", version.to_string()),
            ("container", format!("shop-{version}-{c}")),
            ("container_id", format!("{version}{c}")),
        ]);
        let one = |name: &str, v: f64| {
            (vec![("__name__".to_string(), name.to_string())], Samples { ts: vec![t], values: vec![v] })
        };
        groups.push(SeriesGroup {
            common: common.clone(),
            series: vec![one("container_last_seen", t as f64 / 1e3), one("container_start_time_seconds", 1.0)],
        });
        let lines = (0..lines)
            .map(|i| LogLine {
                time_ns: (t - 10_000 + i as i64) * 1_000_000,
                line: if i < errors { format!("ERROR failed {i}") } else { format!("GET / 200 {i}") },
            })
            .collect();
        streams.push(LogStreamIn { labels: common, lines });
    }
    *seq += 1;
    store.append_batch("a", "h", *seq, t, groups, LogBatchIn { streams, resume: Vec::new(), window_ns: None }).unwrap();
}

fn gates(store: &Arc<Store>) -> Gates {
    Gates::new(
        GatesConfig::default(),
        Arc::new(Engine::default()),
        crate::run::Recorder::new(store.clone(), Default::default()),
    )
}

fn request(version: &str, stage: Option<&str>) -> GateRequest {
    let stage = stage.map(|s| format!(r#","stage":"{s}""#)).unwrap_or_default();
    GateRequest::parse(
        format!(r#"{{"service":"shop","version":"{version}","interval":"1m","window":"5m","checks":[{{"name":"error_rate"}},{{"name":"restarts"}}]{stage}}}"#)
            .as_bytes(),
    )
    .unwrap()
}

/// Writes 10 s steps from `from` to `to` for v1 (1% errors) and v2 (`v2_errors` per 1000 lines).
fn traffic(store: &Store, seq: &mut u64, from: i64, to: i64, v2_errors: usize) {
    let mut t = from;
    while t <= to {
        write(store, seq, "v1", 2, t, 1000, 10);
        write(store, seq, "v2", 2, t, 1000, v2_errors);
        t += 10_000;
    }
}

#[test]
fn a_gate_that_passed_keeps_watching_and_a_late_regression_fails_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), Default::default()).unwrap());
    let g = gates(&store);
    let mut seq = 0;
    traffic(&store, &mut seq, T0 - 30_000, T0, 10);
    let id = g.start(request("v2", None), T0).unwrap().id;
    assert_eq!(g.get(&id).unwrap().plan.baseline.as_deref(), Some("v1"), "the other running version");
    // Two healthy minutes: a pass.
    traffic(&store, &mut seq, T0 + 10_000, T0 + 120_000, 10);
    g.tick(T0 + 60_000);
    g.tick(T0 + 120_000);
    let now = g.get(&id).unwrap();
    assert_eq!((now.verdict, now.running), (Verdict::Pass, true), "{}", now.reason);
    // Then v2 starts failing one request in ten: the gate, still in its window, fails.
    traffic(&store, &mut seq, T0 + 130_000, T0 + 240_000, 100);
    g.tick(T0 + 180_000);
    g.tick(T0 + 240_000);
    let now = g.get(&id).unwrap();
    assert_eq!((now.verdict, now.running), (Verdict::Fail, false), "{}", now.reason);
    assert!(now.reason.starts_with("error_rate: "), "{}", now.reason);
    let verdicts: Vec<Verdict> = now.history.iter().map(|c| c.verdict).collect();
    assert_eq!(verdicts, [Verdict::Pass, Verdict::Fail]);
    // Both verdicts are decisions, and each replays to what was recorded.
    for c in &now.history {
        let d = store.decision(c.decision_id).unwrap().unwrap();
        let r = g.replay(&d).unwrap();
        assert_eq!(r["same"], true, "{r}");
    }
    // A collector restart keeps the gate and its answer.
    drop(g);
    let again = gates(&store);
    assert_eq!(again.get(&id).unwrap().verdict, Verdict::Fail);
    assert_eq!(again.start(request("v2", None), T0 + 250_000).unwrap().id, "g2", "ids go on after the saved ones");
}

#[test]
fn each_stage_is_its_own_gate_and_the_release_answers_with_the_latest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), Default::default()).unwrap());
    let g = gates(&store);
    let mut seq = 0;
    traffic(&store, &mut seq, T0 - 30_000, T0 + 120_000, 10);
    let first = g.start(request("v2", Some("2 hosts")), T0).unwrap().id;
    g.tick(T0 + 60_000);
    g.tick(T0 + 120_000);
    let second = g.start(request("v2", Some("all hosts")), T0 + 120_000).unwrap().id;
    let release = g.of_release("shop", "v2");
    assert_eq!(release.iter().map(|g| g.id.as_str()).collect::<Vec<_>>(), [first.as_str(), second.as_str()]);
    assert_eq!(release[0].verdict, Verdict::Pass);
    assert_eq!((release[1].verdict, release[1].plan.stage.as_deref()), (Verdict::Wait, Some("all hosts")));
    assert!(g.running_for("shop"));
}

#[test]
fn unknown_services_versions_and_baselines_are_refused_with_what_exists() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), Default::default()).unwrap());
    let g = gates(&store);
    let mut seq = 0;
    traffic(&store, &mut seq, T0 - 30_000, T0, 10);
    let err = |r: GateRequest| g.start(r, T0).unwrap_err().to_string();
    assert_eq!(
        err(request("v3", None)),
        "version \"v3\" of service \"shop\" has not been seen; versions: v1 (2 containers), v2 (2 containers)"
    );
    let mut other = request("v2", None);
    other.service = "cart".into();
    assert!(err(other).starts_with("service \"cart\" has no containers lookout has seen; services: shop"));
    let mut base = request("v2", None);
    base.baseline_version = Some("v0".into());
    assert!(err(base).starts_with("baseline_version \"v0\" of service \"shop\" has not been seen"));
}

#[test]
fn a_first_release_is_held_to_absolute_limits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), Default::default()).unwrap());
    let g = gates(&store);
    let mut seq = 0;
    let mut t = T0 - 30_000;
    while t <= T0 + 60_000 {
        // One request in ten fails: above the 5% limit for a release without a baseline.
        write(&store, &mut seq, "v1", 2, t, 1000, 100);
        t += 10_000;
    }
    let gate = g.start(request("v1", None), T0).unwrap();
    assert_eq!(gate.plan.baseline, None);
    assert!(gate.plan.baseline_reason.starts_with("no other version is running"), "{}", gate.plan.baseline_reason);
    g.tick(T0 + 60_000);
    let now = g.get(&gate.id).unwrap();
    assert_eq!(now.verdict, Verdict::Fail, "{}", now.reason);
    assert!(now.reason.contains("against 5.00% allowed, the limit (no baseline)"), "{}", now.reason);
}
