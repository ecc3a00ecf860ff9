//! The restart rules on plain values: a board made of probe reports, a memory, and times.

use super::*;
use crate::health::reports::run;
use crate::health::HealthBoard;

fn cfg(toml_restart: &str) -> RestartConfig {
    let c: crate::config::CollectorConfig = toml::from_str(toml_restart).unwrap();
    c.restart
}

fn look(cfg: &RestartConfig, board: &HealthBoard, memory: &mut Memories, now: i64) -> Vec<Planned> {
    decide(cfg, &board.needing_decisions(&memory.ids()), memory, now)
}

fn kinds(planned: &[Planned]) -> Vec<(Kind, Outcome)> {
    planned.iter().map(|p| (p.decision.kind, p.decision.outcome)).collect()
}

#[test]
fn an_unhealthy_opted_in_container_is_restarted_once_with_its_evidence() {
    let (c, board, mut m) = (cfg(""), HealthBoard::default(), Memories::default());
    board.apply(vec![run("a", "web", "healthy", 0, 0), run("b", "web", "healthy", 0, 0)]);
    board.apply(vec![run("a", "web", "unhealthy", 3, 1000)]);
    let first = look(&c, &board, &mut m, 1500);
    assert_eq!(kinds(&first), [(Kind::Restart, Outcome::Pending)]);
    let r = first[0].restart.as_ref().expect("enforced: the label opts in");
    assert_eq!((r.host.as_str(), r.container_id.as_str()), ("h1", "a"));
    assert!(r.reason.contains("http failed 3 times in a row: HTTP 503"), "{}", r.reason);
    assert_eq!(first[0].decision.rule["source"], "label lookout.restart=on-unhealthy");
    assert!(look(&c, &board, &mut m, 2500).is_empty(), "nothing new while the restart is out");
}

#[test]
fn backoff_doubles_and_the_budget_ends_in_giving_up_once() {
    let (c, board, mut m) =
        (cfg("[restart.default]\nbackoff = \"10s\"\nmax_restarts = 3\n"), HealthBoard::default(), Memories::default());
    board.apply(vec![run("a", "web", "healthy", 0, 0)]);
    let (mut restarts, mut given_up) = (Vec::new(), 0);
    let mut t = 1000;
    while t < 200_000 {
        board.apply(vec![run("a", "web", "unhealthy", 3, t)]);
        for p in look(&c, &board, &mut m, t) {
            given_up += usize::from(p.decision.kind == Kind::RestartGivenUp);
            if let Some(r) = p.restart {
                restarts.push(t);
                m.answered(&r.container_id, true, t);
            }
        }
        t += 1000;
    }
    assert_eq!(restarts.len(), 3, "{restarts:?}");
    assert!(restarts[1] - restarts[0] >= 10_000 && restarts[2] - restarts[1] >= 20_000, "{restarts:?}");
    assert_eq!(given_up, 1);
}

#[test]
fn most_of_a_service_failing_together_is_held_once_each() {
    let (c, board, mut m) = (cfg(""), HealthBoard::default(), Memories::default());
    board.apply(["a", "b", "c", "d"].iter().map(|id| run(id, "dep", "healthy", 0, 0)).collect());
    board.apply(vec![
        run("a", "dep", "unhealthy", 2, 2000),
        run("b", "dep", "healthy", 1, 2100),
        run("c", "dep", "healthy", 1, 2200),
    ]);
    let mut all = look(&c, &board, &mut m, 2300);
    board.apply(vec![run("b", "dep", "unhealthy", 2, 3100), run("c", "dep", "unhealthy", 2, 3200)]);
    all.extend(look(&c, &board, &mut m, 3300));
    all.extend(look(&c, &board, &mut m, 4300));
    assert_eq!(kinds(&all), vec![(Kind::RestartHeld, Outcome::Recorded); 3]);
    assert!(all.iter().all(|p| p.restart.is_none()));
    assert!(all[0].decision.reason.contains("3 of 4 containers of service dep"), "{}", all[0].decision.reason);
}

#[test]
fn max_unavailable_waits_and_a_dry_run_restarts_nothing() {
    let (c, board, mut m) = (cfg(""), HealthBoard::default(), Memories::default());
    board.apply(["a", "b", "c", "d", "e"].iter().map(|id| run(id, "web", "healthy", 0, 0)).collect());
    board.apply(vec![run("a", "web", "unhealthy", 3, 1000)]);
    assert_eq!(kinds(&look(&c, &board, &mut m, 1000)), [(Kind::Restart, Outcome::Pending)]);
    board.apply(vec![run("b", "web", "unhealthy", 3, 60_000)]);
    assert_eq!(kinds(&look(&c, &board, &mut m, 60_000)), [(Kind::RestartWaiting, Outcome::Recorded)]);

    let (dry, board, mut m) = (cfg("[restart]\ndry_run = true\n"), HealthBoard::default(), Memories::default());
    board.apply(vec![run("a", "web", "healthy", 0, 0)]);
    board.apply(vec![run("a", "web", "unhealthy", 3, 1000)]);
    let p = look(&dry, &board, &mut m, 1000);
    assert_eq!(kinds(&p), [(Kind::Restart, Outcome::DryRun)]);
    assert!(p[0].restart.is_none());
}

#[test]
fn the_log_s_restarts_spend_the_budget_and_stale_evidence_decides_nothing() {
    let c = cfg("[restart.default]\nmax_restarts = 1\n");
    let subject = Subject::Container { host: "h1".into(), container: "a".into(), container_id: "a".into() };
    let past = [Decision::new(500, Kind::Restart, "web", subject, String::new(), Outcome::Ok)];
    let (board, mut m) = (HealthBoard::default(), Memories::from_log(&past));
    board.apply(vec![run("a", "web", "healthy", 0, 0)]);
    board.apply(vec![run("a", "web", "unhealthy", 4, 1000)]);
    assert_eq!(kinds(&look(&c, &board, &mut m, 1000)), [(Kind::RestartGivenUp, Outcome::Recorded)]);

    let (board, mut m) = (HealthBoard::default(), Memories::default());
    board.apply(vec![run("a", "web", "healthy", 0, 0)]);
    board.apply(vec![run("a", "web", "unhealthy", 3, 1000)]);
    assert!(look(&c, &board, &mut m, 1000 + 11_000).is_empty(), "the agent stopped reporting: no restart on old news");
}
