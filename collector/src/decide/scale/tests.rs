//! The HPA rule on plain readings: its arithmetic, rate limits, bounds, stabilization, and when a
//! look is news worth a decision.

use super::*;

fn policy(extra: &str) -> AutoscalePolicy {
    toml::from_str(&format!("service = \"api\"\nmetric = \"cpu\"\ntarget = 0.5\ninterval = \"15s\"\n{extra}")).unwrap()
}

fn at(current: u32, value: f64, p: &AutoscalePolicy) -> Reading {
    let ratio = value / p.target;
    let rec = if (ratio - 1.0).abs() <= p.tolerance { current } else { (current as f64 * ratio).ceil() as u32 };
    Reading { current, counted: Vec::new(), left_out: Vec::new(), value, target: p.target, ratio, recommendation: rec }
}

#[test]
fn the_hpa_rule_shows_its_arithmetic_and_respects_rate_and_bounds() {
    let p = policy("");
    let s = decide(&p, &at(2, 1.0, &p), &[], 0);
    assert_eq!(s.desired, 4);
    assert!(s.explanation.starts_with("ceil(2 × 1.000 / 0.5) = 4"), "{}", s.explanation);
    // Ten times the target from 2 replicas: at most max(2 × 200%, 2 + 4) = 6 in one step.
    let s = decide(&p, &at(2, 5.0, &p), &[], 0);
    assert_eq!(s.desired, 6, "{}", s.explanation);
    let p = policy("max_replicas = 3");
    assert_eq!(decide(&p, &at(2, 1.0, &p), &[], 0).desired, 3);
}

#[test]
fn scaling_down_waits_for_the_highest_recommendation_of_the_window() {
    let p = policy("");
    let r = at(4, 0.2, &p); // would be 2
    assert_eq!(r.recommendation, 2);
    // A recommendation of 4 two minutes ago holds the count at 4.
    let s = decide(&p, &r, &[(-120_000, 4)], 0);
    assert_eq!(s.desired, 4, "{}", s.explanation);
    // Six minutes ago it no longer counts.
    assert_eq!(decide(&p, &r, &[(-360_000, 4)], 0).desired, 2);
}

#[test]
fn unhealthy_and_limitless_containers_are_left_out_of_the_mean() {
    let p = policy("");
    let seen = |ids: &[&str]| ids.iter().map(|i| (i.to_string(), format!("api-{i}"))).collect();
    let o = Observed {
        seen: seen(&["a", "b", "c", "d"]),
        health: [("c".to_string(), "unhealthy".to_string())].into(),
        per_container: [("a".to_string(), 1.0), ("b".to_string(), 0.8), ("c".to_string(), 0.0)].into(),
        query_value: None,
    };
    let r = reading(&p, &o);
    assert_eq!(r.current, 4);
    assert_eq!(
        r.left_out,
        [
            ("api-c".to_string(), "unhealthy".to_string()),
            ("api-d".to_string(), "no CPU limit or no readings".to_string())
        ]
    );
    assert!((r.value - 0.9).abs() < 1e-12);
    assert_eq!(r.recommendation, 8, "ceil(4 × 0.9 / 0.5)");
}

#[test]
fn a_look_decides_once_a_running_gate_holds_and_a_webhook_makes_it_pending() {
    let p = policy("");
    let r = at(2, 1.0, &p);
    let mut m = Memory::default();
    let d = look(&p, &r, false, &mut m, 60_000).expect("twice the target is news");
    assert_eq!((d.kind, d.outcome, d.inputs["desired"].as_u64()), (Kind::Scale, Outcome::Recorded, Some(4)));
    assert!(look(&p, &r, false, &mut m, 75_000).is_none(), "the same answer is not repeated");

    let mut m = Memory::default();
    let held = look(&p, &r, true, &mut m, 60_000).unwrap();
    assert_eq!((held.kind, held.outcome), (Kind::ScaleHeld, Outcome::Recorded));
    assert!(held.reason.contains("a rollout gate on it is running"), "{}", held.reason);
    assert!(look(&p, &r, true, &mut m, 75_000).is_none(), "held is said once");

    let hooked = policy("webhook = \"http://127.0.0.1:1/scale\"");
    let d = look(&hooked, &r, false, &mut Memory::default(), 60_000).unwrap();
    assert_eq!(d.outcome, Outcome::Pending);
}
