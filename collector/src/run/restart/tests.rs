//! The restart shell over a real store: decisions recorded, commands sent once, answers and
//! deadlines settled, budgets kept across a restart of the collector.
use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::clock::now_ms;
use crate::health::reports::run;
use crate::model::decision::{Decision, Subject};
use crate::store::Store;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    board: Arc<HealthBoard>,
    r: Restarter,
}

fn fixture(toml_restart: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), Default::default()).unwrap());
    let board: Arc<HealthBoard> = Default::default();
    let cfg: crate::config::CollectorConfig = toml::from_str(toml_restart).unwrap();
    let r = Restarter::new(cfg.restart, board.clone(), Recorder::new(store.clone(), Default::default()), now_ms());
    Fixture { _dir: dir, store, board, r }
}

fn kinds(store: &Store) -> Vec<(String, String)> {
    store
        .decisions(&DecisionFilter::default())
        .unwrap()
        .into_iter()
        .map(|d| (d.kind.as_str().to_string(), d.outcome.as_str().to_string()))
        .collect()
}

#[test]
fn an_opted_in_container_is_restarted_once_and_the_answer_settles_the_decision() {
    let f = fixture("");
    f.board.apply(vec![run("a", "web", "healthy", 0, 0), run("b", "web", "healthy", 0, 0)]);
    f.board.apply(vec![run("a", "web", "unhealthy", 3, 1000)]);
    f.r.tick(1500);
    f.r.tick(2500);
    let cmds = f.r.take_for("h1");
    assert_eq!(cmds.len(), 1, "one restart, not one per tick");
    assert!(cmds[0].reason.contains("http failed 3 times in a row: HTTP 503"), "{}", cmds[0].reason);
    assert!(f.r.take_for("h1").is_empty(), "sent once");
    f.r.result("h1", &cmds[0].id, true, "restarted a");
    let d = f.store.decisions(&DecisionFilter::default()).unwrap();
    assert_eq!((d[0].kind.as_str(), d[0].outcome.as_str(), d[0].detail.as_str()), ("restart", "ok", "restarted a"));
    assert_eq!(d[0].rule["source"], "label lookout.restart=on-unhealthy");
    assert_eq!(d[0].inputs["container"]["probes"][0]["failing_streak"], 3);
}

#[test]
fn backoff_doubles_and_the_budget_ends_in_giving_up_once() {
    let f = fixture("[restart.default]\nbackoff = \"10s\"\nmax_restarts = 3\n");
    f.board.apply(vec![run("a", "web", "healthy", 0, 0)]);
    let mut t = 1000;
    let mut restarts = Vec::new();
    // The container fails again right after every restart.
    while t < 200_000 {
        f.board.apply(vec![run("a", "web", "unhealthy", 3, t)]);
        f.r.tick(t);
        for c in f.r.take_for("h1") {
            restarts.push(t);
            f.r.result("h1", &c.id, true, "ok");
        }
        t += 1000;
    }
    assert_eq!(restarts.len(), 3, "{restarts:?}");
    assert!(restarts[1] - restarts[0] >= 10_000 && restarts[2] - restarts[1] >= 20_000, "{restarts:?}");
    let k = kinds(&f.store);
    assert_eq!(k.iter().filter(|(k, _)| k == "restart_given_up").count(), 1, "{k:?}");
}

#[test]
fn most_of_a_service_failing_together_is_held_not_restarted() {
    let f = fixture("");
    let ids = ["a", "b", "c", "d"];
    f.board.apply(ids.iter().map(|id| run(id, "dep", "healthy", 0, 0)).collect());
    // a turns unhealthy first; b and c are failing but not yet unhealthy; d is fine.
    f.board.apply(vec![
        run("a", "dep", "unhealthy", 2, 2000),
        run("b", "dep", "healthy", 1, 2100),
        run("c", "dep", "healthy", 1, 2200),
    ]);
    f.r.tick(2300);
    f.board.apply(vec![run("b", "dep", "unhealthy", 2, 3100), run("c", "dep", "unhealthy", 2, 3200)]);
    f.r.tick(3300);
    f.r.tick(4300);
    assert!(f.r.take_for("h1").is_empty());
    let k = kinds(&f.store);
    assert_eq!(k, vec![("restart_held".to_string(), "recorded".to_string()); 3], "held once each");
    let d = f.store.decisions(&DecisionFilter::default()).unwrap();
    assert!(d[0].reason.contains("3 of 4 containers of service dep"), "{}", d[0].reason);
}

#[test]
fn max_unavailable_lets_one_restart_at_a_time_and_a_dry_run_acts_on_nothing() {
    let f = fixture("");
    let ids = ["a", "b", "c", "d", "e"];
    f.board.apply(ids.iter().map(|id| run(id, "web", "healthy", 0, 0)).collect());
    f.board.apply(vec![run("a", "web", "unhealthy", 3, 1000)]);
    f.r.tick(1000);
    f.board.apply(vec![run("b", "web", "unhealthy", 3, 60_000)]);
    f.r.tick(60_000);
    assert_eq!(f.r.take_for("h1").len(), 1, "b waits while a restarts");
    assert!(kinds(&f.store).contains(&("restart_waiting".to_string(), "recorded".to_string())));

    let g = fixture("[restart]\ndry_run = true\n");
    g.board.apply(vec![run("a", "web", "healthy", 0, 0)]);
    g.board.apply(vec![run("a", "web", "unhealthy", 3, 1000)]);
    g.r.tick(1000);
    assert!(g.r.take_for("h1").is_empty());
    assert_eq!(kinds(&g.store), [("restart".to_string(), "dry_run".to_string())]);
}

#[test]
fn budgets_hold_across_a_restart_of_the_collector() {
    let f = fixture("[restart.default]\nmax_restarts = 1\n");
    let now = now_ms();
    f.board.apply(vec![run("a", "web", "healthy", 0, now - 2000)]);
    f.board.apply(vec![run("a", "web", "unhealthy", 3, now - 1000)]);
    f.r.tick(now - 1000);
    let cmds = f.r.take_for("h1");
    f.r.result("h1", &cmds[0].id, true, "restarted a");
    // Another restart decided and sent, then the collector stops before the answer.
    f.store
        .record_decision(&Decision {
            rule: json!({}),
            inputs: json!({}),
            ..Decision::new(
                now - 500,
                Kind::Restart,
                "web",
                Subject::Container { host: "h1".into(), container: "b".into(), container_id: "b".into() },
                String::new(),
                Outcome::Pending,
            )
        })
        .unwrap();

    let cfg: crate::config::CollectorConfig = toml::from_str("[restart.default]\nmax_restarts = 1\n").unwrap();
    let again =
        Restarter::new(cfg.restart, f.board.clone(), Recorder::new(f.store.clone(), Default::default()), now_ms());
    f.board.apply(vec![run("a", "web", "unhealthy", 4, now)]);
    again.tick(now);
    assert!(again.take_for("h1").is_empty(), "the budget spent before the restart still counts");
    let d = f.store.decisions(&DecisionFilter::default()).unwrap();
    assert_eq!(d.last().unwrap().kind.as_str(), "restart_given_up");
    let left = d.iter().find(|d| d.container_id() == Some("b")).unwrap();
    assert_eq!(
        (left.outcome.as_str(), left.detail.as_str()),
        ("not_carried_out", "the collector stopped before the agent answered")
    );
}

#[test]
fn a_command_for_an_agent_that_stays_away_is_recorded_as_not_carried_out() {
    let f = fixture("[restart]\ncommand_deadline = \"30s\"\n");
    f.board.apply(vec![run("a", "web", "healthy", 0, 0)]);
    f.board.apply(vec![run("a", "web", "unhealthy", 3, 1000)]);
    f.r.tick(1000);
    f.r.tick(31_000);
    let d = f.store.decisions(&DecisionFilter::default()).unwrap();
    assert_eq!(d[0].outcome.as_str(), "not_carried_out");
    assert!(d[0].detail.contains("the agent on h1 was away for 30s"), "{}", d[0].detail);
    assert!(f.r.take_for("h1").is_empty(), "not sent after its deadline, and no new restart on stale evidence");
}
