//! The health board: every container's probes as the agents last reported them (state, failing
//! streak, last output, since when), their recent runs, and probe settings that did not parse.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

/// Runs kept per probe, newest last.
const RECENT: usize = 10;
/// State changes kept per probe, newest last.
const TRANSITIONS: usize = 20;

/// One probe run as the collector received it.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    pub time_ms: i64,
    pub success: bool,
    pub duration_seconds: f64,
    pub output: String,
    pub state: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProbeHealth {
    pub probe: String,
    pub state: String,
    /// When the probe entered `state` (the first run the collector saw in it, if it saw no change).
    pub since_ms: i64,
    pub failing_streak: u32,
    pub last_output: String,
    pub last_run_ms: i64,
    pub interval_seconds: f64,
    pub recent: VecDeque<Run>,
    /// Its last state changes, with the output of the run that changed it.
    pub transitions: VecDeque<Transition>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ContainerHealth {
    pub host: String,
    pub service: String,
    pub version: String,
    pub container: String,
    pub container_id: String,
    pub image: String,
    /// The worst of its probes: unhealthy, else starting, else healthy.
    pub state: String,
    pub since_ms: i64,
    pub probes: Vec<ProbeHealth>,
    /// Probe settings on this container that do not parse (each names its label).
    pub config_problems: Vec<String>,
    /// Its `lookout.restart` label (`on-unhealthy` opts in to restarts).
    pub restart: String,
}

/// A probe run in the terms of the board (decoded from the wire by ingest).
#[derive(Clone, Debug)]
pub struct ProbeReport {
    pub labels: BTreeMap<String, String>,
    pub probe: String,
    pub run: Run,
    pub previous_state: Option<String>,
    pub failing_streak: u32,
    pub interval_seconds: f64,
    pub restart: String,
}

/// A state change, for the decision log and whoever watches.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Transition {
    pub container_id: String,
    pub probe: String,
    pub from: String,
    pub to: String,
    pub time_ms: i64,
    pub output: String,
}

#[derive(Default)]
pub struct HealthBoard {
    containers: Mutex<HashMap<String, ContainerHealth>>,
}

fn rank(state: &str) -> u8 {
    match state {
        "unhealthy" => 2,
        "starting" => 1,
        _ => 0,
    }
}

impl HealthBoard {
    /// Applies an agent's reports in the order they ran; returns the state changes among them.
    pub fn apply(&self, reports: Vec<ProbeReport>) -> Vec<Transition> {
        let mut out = Vec::new();
        let mut all = self.containers.lock().expect("health board poisoned");
        for r in reports {
            let label = |k: &str| r.labels.get(k).cloned().unwrap_or_default();
            let id = label("container_id");
            if id.is_empty() {
                continue;
            }
            let c = all.entry(id.clone()).or_insert_with(|| ContainerHealth {
                host: label("host"),
                service: label("service"),
                version: label("version"),
                container: label("container"),
                container_id: id.clone(),
                image: label("image"),
                state: r.run.state.clone(),
                since_ms: r.run.time_ms,
                probes: Vec::new(),
                config_problems: Vec::new(),
                restart: String::new(),
            });
            c.container = label("container");
            c.restart = r.restart.clone();
            let p = match c.probes.iter_mut().position(|p| p.probe == r.probe) {
                Some(i) => &mut c.probes[i],
                None => {
                    c.probes.push(ProbeHealth {
                        probe: r.probe.clone(),
                        state: r.run.state.clone(),
                        since_ms: r.run.time_ms,
                        failing_streak: 0,
                        last_output: String::new(),
                        last_run_ms: 0,
                        interval_seconds: r.interval_seconds,
                        recent: VecDeque::new(),
                        transitions: VecDeque::new(),
                    });
                    c.probes.last_mut().expect("pushed")
                }
            };
            if p.state != r.run.state {
                let t = Transition {
                    container_id: id.clone(),
                    probe: r.probe.clone(),
                    from: r.previous_state.clone().unwrap_or_else(|| p.state.clone()),
                    to: r.run.state.clone(),
                    time_ms: r.run.time_ms,
                    output: r.run.output.clone(),
                };
                p.transitions.push_back(t.clone());
                if p.transitions.len() > TRANSITIONS {
                    p.transitions.pop_front();
                }
                out.push(t);
                p.state = r.run.state.clone();
                p.since_ms = r.run.time_ms;
            }
            p.failing_streak = r.failing_streak;
            p.interval_seconds = r.interval_seconds;
            p.last_output = r.run.output.clone();
            p.last_run_ms = r.run.time_ms;
            p.recent.push_back(r.run);
            if p.recent.len() > RECENT {
                p.recent.pop_front();
            }
            let worst = c.probes.iter().max_by_key(|p| rank(&p.state)).map(|p| p.state.clone()).unwrap_or_default();
            if worst != c.state {
                c.state = worst;
                c.since_ms = c.probes.iter().filter(|p| p.state == c.state).map(|p| p.since_ms).max().unwrap_or(0);
            }
        }
        out
    }

    /// Records a probe setting of a container that does not parse.
    pub fn config_problem(&self, labels: &BTreeMap<String, String>, message: String) {
        let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
        let id = label("container_id");
        let mut all = self.containers.lock().expect("health board poisoned");
        let c = all.entry(id.clone()).or_insert_with(|| ContainerHealth {
            host: label("host"),
            service: label("service"),
            version: label("version"),
            container: label("container"),
            container_id: id,
            image: label("image"),
            state: "unknown".into(),
            since_ms: 0,
            probes: Vec::new(),
            config_problems: Vec::new(),
            restart: String::new(),
        });
        if !c.config_problems.contains(&message) {
            c.config_problems.push(message);
        }
    }

    /// A container stopped or was removed: it leaves the board.
    /// Forgets a container that stopped or went away, if it is on `host` (an agent speaks only for
    /// its own host's containers).
    pub fn forget(&self, host: &str, container_id: &str) {
        let mut all = self.containers.lock().expect("health board poisoned");
        if all.get(container_id).is_some_and(|c| c.host == host || c.host.is_empty()) {
            all.remove(container_id);
        }
    }

    /// Containers matching every given filter, by service then container name.
    pub fn list(&self, host: Option<&str>, service: Option<&str>, container: Option<&str>) -> Vec<ContainerHealth> {
        let all = self.containers.lock().expect("health board poisoned");
        let mut out: Vec<ContainerHealth> = all
            .values()
            .filter(|c| host.is_none_or(|h| c.host == h))
            .filter(|c| service.is_none_or(|s| c.service == s))
            .filter(|c| container.is_none_or(|n| c.container == n || c.container_id.starts_with(n)))
            .cloned()
            .collect();
        out.sort_by(|a, b| (&a.service, &a.container).cmp(&(&b.service, &b.container)));
        out
    }

    /// What restart decisions look at: every container of a service that has an unhealthy one, and
    /// the containers in `also`; cloning only those keeps a large, healthy fleet cheap to look at.
    pub fn needing_decisions(&self, also: &std::collections::HashSet<String>) -> Vec<ContainerHealth> {
        let all = self.containers.lock().expect("health board poisoned");
        let troubled: std::collections::HashSet<&str> =
            all.values().filter(|c| c.state == "unhealthy").map(|c| c.service.as_str()).collect();
        all.values()
            .filter(|c| troubled.contains(c.service.as_str()) || also.contains(&c.container_id))
            .cloned()
            .collect()
    }
}

/// Probe reports as ingest hands them over, for the tests of what reads the board.
#[cfg(test)]
pub(crate) mod reports {
    use super::{ProbeReport, Run};

    /// A probe run of container `id` of `service` at `t` (ms).
    pub fn run(id: &str, service: &str, state: &str, streak: u32, t: i64) -> ProbeReport {
        let labels = [("container_id", id), ("container", id), ("service", service), ("host", "h1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ProbeReport {
            labels,
            probe: "http".into(),
            run: Run {
                time_ms: t,
                success: streak == 0,
                duration_seconds: 0.01,
                output: "HTTP 503".into(),
                state: state.into(),
            },
            previous_state: None,
            failing_streak: streak,
            interval_seconds: 1.0,
            restart: "on-unhealthy".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(b: &HealthBoard, id: &str) -> Option<ContainerHealth> {
        b.list(None, None, Some(id)).into_iter().find(|c| c.container_id == id)
    }

    fn report(id: &str, probe: &str, state: &str, t: i64, success: bool) -> ProbeReport {
        let labels = [("container_id", id), ("container", "web-1"), ("service", "web"), ("host", "h")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ProbeReport {
            labels,
            probe: probe.into(),
            run: Run {
                time_ms: t,
                success,
                duration_seconds: 0.01,
                output: format!("run at {t}"),
                state: state.into(),
            },
            previous_state: None,
            failing_streak: u32::from(!success),
            interval_seconds: 1.0,
            restart: String::new(),
        }
    }

    #[test]
    fn the_container_takes_its_worst_probe_and_transitions_are_reported() {
        let b = HealthBoard::default();
        assert!(b
            .apply(vec![report("c1", "http", "healthy", 1, true), report("c1", "tcp", "healthy", 1, true)])
            .is_empty());
        let t = b.apply(vec![report("c1", "http", "unhealthy", 5, false)]);
        let expected = Transition {
            container_id: "c1".into(),
            probe: "http".into(),
            from: "healthy".into(),
            to: "unhealthy".into(),
            time_ms: 5,
            output: "run at 5".into(),
        };
        assert_eq!(t, std::slice::from_ref(&expected));
        assert_eq!(get(&b, "c1").unwrap().probes[0].transitions, [expected]);
        let c = get(&b, "c1").unwrap();
        assert_eq!((c.state.as_str(), c.since_ms), ("unhealthy", 5));
        assert_eq!(c.probes[0].last_output, "run at 5");
        assert_eq!(b.list(None, Some("web"), None).len(), 1);
        assert!(b.list(None, Some("db"), None).is_empty());
        b.forget("other-host", "c1");
        assert!(get(&b, "c1").is_some(), "an agent forgets only its own host's containers");
        b.forget("h", "c1");
        assert!(get(&b, "c1").is_none());
    }

    #[test]
    fn recent_runs_are_bounded() {
        let b = HealthBoard::default();
        b.apply((0..50).map(|t| report("c1", "http", "healthy", t, true)).collect());
        let c = get(&b, "c1").unwrap();
        assert_eq!(c.probes[0].recent.len(), RECENT);
        assert_eq!(c.probes[0].recent.back().unwrap().time_ms, 49);
        assert_eq!(c.probes[0].since_ms, 0, "healthy since the first run seen");
    }
}
