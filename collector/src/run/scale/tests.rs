//! The autoscaler over a real store with CPU readings written as agents write them.

use std::time::Duration;

use super::*;
use crate::model::{LabelSet, Samples};
use crate::store::decisions::DecisionFilter;
use crate::store::SeriesGroup;
use crate::store::Store;

fn policy(extra: &str) -> AutoscalePolicy {
    toml::from_str(&format!("service = \"api\"\nmetric = \"cpu\"\ntarget = 0.5\ninterval = \"15s\"\n{extra}")).unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    a: Autoscaler,
}

fn fixture(extra: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), Default::default()).unwrap());
    let engine = Arc::new(Engine::default());
    let gates = Arc::new(crate::run::gate::Gates::new(
        Default::default(),
        engine.clone(),
        Recorder::new(store.clone(), Default::default()),
    ));
    let recorder = Recorder::new(store.clone(), Default::default());
    let a = Autoscaler::new(vec![policy(extra)], engine, Default::default(), gates, recorder);
    Fixture { _dir: dir, store, a }
}

/// Ten seconds of readings of `n` containers with a limit of half a core, each using `use_of_limit`
/// of it, ending at `t` (ms); `cpu` holds each container's counter.
fn write(store: &Store, cpu: &mut [f64], use_of_limit: &[f64], t: i64) {
    let mut groups = Vec::new();
    for (i, c) in cpu.iter_mut().enumerate() {
        *c += use_of_limit[i] * 0.5 * 10.0;
        let common = LabelSet::from_pairs([
            ("service", "api".to_string()),
            ("version", "1".to_string()),
            ("container", format!("api-{i}")),
            ("container_id", format!("id{i}")),
            ("host", "h".to_string()),
        ]);
        let one = |name: &str, v: f64| {
            (vec![("__name__".to_string(), name.to_string())], Samples { ts: vec![t], values: vec![v] })
        };
        groups.push(SeriesGroup {
            common,
            series: vec![
                one("container_last_seen", t as f64 / 1e3),
                one("container_cpu_usage_seconds_total", *c),
                one("container_spec_cpu_quota", 50_000.0),
                one("container_spec_cpu_period", 100_000.0),
            ],
        });
    }
    store.append_unsequenced(t, groups).unwrap();
}

#[test]
fn containers_at_twice_the_target_are_scaled_up_and_load_near_the_target_does_not_flap() {
    let f = fixture("");
    let mut cpu = [0.0, 0.0];
    let t0 = 1_800_000_000_000;
    // Both containers use all of their half core: twice the 50% target.
    for k in 0..=6 {
        write(&f.store, &mut cpu, &[1.0, 1.0], t0 + k * 10_000);
    }
    f.a.tick(t0 + 60_000);
    let d = f.store.decisions(&DecisionFilter::default()).unwrap();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].kind.as_str(), d[0].outcome.as_str()), ("scale", "recorded"));
    assert_eq!(d[0].inputs["desired"], 4);
    assert_eq!(d[0].inputs["reading"]["current"], 2);
    assert!(d[0].reason.contains("ceil(2 × 1.000 / 0.5) = 4"), "{}", d[0].reason);
    // The same answer is not repeated at the next look.
    write(&f.store, &mut cpu, &[1.0, 1.0], t0 + 70_000);
    f.a.tick(t0 + 75_000);
    assert_eq!(f.store.decisions(&DecisionFilter::default()).unwrap().len(), 1);

    // A fresh service whose load wanders within ±5% of the target for ten minutes: no decision.
    let f = fixture("");
    let mut cpu = [0.0, 0.0];
    for k in 0..60 {
        // A minute at 5% over the target, a minute at 5% under, and so on.
        let wobble = if (k / 6) % 2 == 0 { 1.05 } else { 0.95 };
        write(&f.store, &mut cpu, &[0.5 * wobble, 0.5 * wobble], t0 + k * 10_000);
        if k % 2 == 1 && k > 6 {
            f.a.tick(t0 + k * 10_000);
        }
    }
    assert_eq!(f.store.decisions(&DecisionFilter::default()).unwrap(), Vec::new());
}

#[test]
fn a_scale_decision_replays_to_the_same_answer() {
    let f = fixture("");
    let mut cpu = [0.0, 0.0, 0.0];
    let t0 = 1_800_000_000_000;
    for k in 0..=6 {
        write(&f.store, &mut cpu, &[0.9, 0.8, 1.0], t0 + k * 10_000);
    }
    f.a.tick(t0 + 60_000);
    let d = f.store.decisions(&DecisionFilter::default()).unwrap();
    let r = f.a.replay(&d[0]).unwrap();
    assert_eq!(r["same"], true, "{r}");
    assert_eq!(r["replayed"]["desired"], 6);
}

#[test]
fn unhealthy_containers_are_left_out_and_a_running_gate_holds_the_decision() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), Default::default()).unwrap());
    let engine = Arc::new(Engine::default());
    let board: Arc<HealthBoard> = Default::default();
    let gates = Arc::new(crate::run::gate::Gates::new(
        Default::default(),
        engine.clone(),
        Recorder::new(store.clone(), Default::default()),
    ));
    let recorder = Recorder::new(store.clone(), Default::default());
    let a = Autoscaler::new(vec![policy("")], engine, board.clone(), gates.clone(), recorder);
    let mut cpu = [0.0, 0.0, 0.0];
    let t0 = crate::clock::now_ms() - 70_000;
    for k in 0..=6 {
        // The third container is idle because it is broken.
        write(&store, &mut cpu, &[1.0, 1.0, 0.0], t0 + k * 10_000);
    }
    let labels = [("container_id", "id2"), ("container", "api-2"), ("service", "api"), ("host", "h")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    board.apply(vec![crate::health::ProbeReport {
        labels,
        probe: "http".into(),
        run: crate::health::Run {
            time_ms: t0,
            success: false,
            duration_seconds: 0.01,
            output: "HTTP 503".into(),
            state: "unhealthy".into(),
        },
        previous_state: None,
        failing_streak: 3,
        interval_seconds: 10.0,
        restart: String::new(),
    }]);
    let r = a.read(&policy(""), t0 + 60_000, true).unwrap();
    assert_eq!(r.current, 3);
    assert_eq!(r.left_out, vec![("api-2".to_string(), "unhealthy".to_string())]);
    assert!((r.value - 1.0).abs() < 1e-9, "the average of the two healthy ones: {r:?}");
    assert_eq!(r.recommendation, 6);

    // A rollout gate on the service holds the decision, and says so once.
    let req = crate::decide::gate::spec::GateRequest::parse(br#"{"service":"api","version":"1"}"#).unwrap();
    gates.start(req, t0 + 60_000).unwrap();
    a.tick(t0 + 60_000);
    write(&store, &mut cpu, &[1.0, 1.0, 0.0], t0 + 70_000);
    a.tick(t0 + 75_000);
    let d = store.decisions(&DecisionFilter::default()).unwrap();
    assert_eq!(d.iter().map(|d| d.kind.as_str()).collect::<Vec<_>>(), ["scale_held"], "{d:?}");
    assert!(d[0].reason.contains("a rollout gate on it is running"), "{}", d[0].reason);
}

#[test]
fn a_webhook_that_is_down_is_retried_then_recorded_as_not_delivered() {
    let f = fixture("webhook = \"http://127.0.0.1:1/scale\"\nsecret = \"x\"");
    let mut cpu = [0.0, 0.0];
    let t0 = 1_800_000_000_000;
    for k in 0..=6 {
        write(&f.store, &mut cpu, &[1.0, 1.0], t0 + k * 10_000);
    }
    let out = f.a.tick(t0 + 60_000);
    assert_eq!(out.len(), 1);
    let (p, d) = out.into_iter().next().unwrap();
    assert_eq!(d.outcome.as_str(), "pending");
    let started = std::time::Instant::now();
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f.a.deliver(p, d));
    assert!(started.elapsed() >= Duration::from_secs(7), "three waits of 1, 2 and 4 s between four attempts");
    let d = f.store.decisions(&DecisionFilter::default()).unwrap();
    assert_eq!(d[0].outcome.as_str(), "not_delivered");
    assert!(d[0].detail.starts_with("4 attempts; last: http://127.0.0.1:1/scale"), "{}", d[0].detail);
}
