//! What to probe on a container and how often: parsed from its `lookout.probe.*` labels or, for a
//! container without them, from the first agent config rule matching its service or image.

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;

/// The label prefix; `lookout.probe.http=:8080/healthz` is the key `http`.
pub const LABEL_PREFIX: &str = "lookout.probe.";

/// The pattern `log_error_rate` counts when none is given.
pub const DEFAULT_ERROR_PATTERN: &str = r"(?i)\b(error|fatal|panic|exception)\b";

#[derive(Clone, Debug)]
pub enum Check {
    /// GET `http://<address>:<port><path>`; 200–399 passes, and the body must match `body` if given.
    Http { port: u16, path: String, body: Option<Regex> },
    /// A TCP connect to `<address>:<port>`.
    Tcp { port: u16 },
    /// `/bin/sh -c <command>` inside the container (Docker exec); exit code 0 passes.
    Exec { command: String },
    /// The container's own HEALTHCHECK status, as Docker reports it.
    Docker,
    /// Lines matching `pattern` over the last `window`, divided by all lines: fails above `threshold`
    /// once at least `min_lines` lines were written in the window.
    LogErrorRate { pattern: Regex, threshold: f64, window: Duration, min_lines: u64 },
}

impl Check {
    /// The `probe` label value: `http`, `tcp`, `exec`, `docker`, `log_error_rate`.
    pub fn kind(&self) -> &'static str {
        match self {
            Check::Http { .. } => "http",
            Check::Tcp { .. } => "tcp",
            Check::Exec { .. } => "exec",
            Check::Docker => "docker",
            Check::LogErrorRate { .. } => "log_error_rate",
        }
    }
}

/// Docker HEALTHCHECK timing, shared by a container's probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub start_interval: Duration,
    pub retries: u32,
}

impl Default for Timing {
    /// Docker's defaults.
    fn default() -> Self {
        Timing {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
            start_period: Duration::ZERO,
            start_interval: Duration::from_secs(5),
            retries: 3,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Probe {
    pub check: Check,
    pub timing: Timing,
}

/// A container's probes and what was wrong with its settings (each problem names its key).
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub probes: Vec<Probe>,
    pub problems: Vec<String>,
}

/// Parses a container's probe settings: keys without the label prefix (`http`, `interval`, ...).
/// `healthcheck` is the interval of the container's own HEALTHCHECK, if it has one: then a `docker`
/// probe is added unless `docker=false`, and it reads Docker's state at that interval unless
/// `interval` is set. A key that does not parse is a problem, and the probe it belongs to is
/// left out rather than run with a guess.
pub fn plan(settings: &BTreeMap<String, String>, healthcheck: Option<Duration>) -> Plan {
    let mut out = Plan::default();
    let mut timing = Timing::default();
    let bad = |key: &str, value: &str, why: String| format!("{LABEL_PREFIX}{key}={value:?}: {why}");
    let mut problems = Vec::new();
    let duration = |key: &str, slot: &mut Duration, problems: &mut Vec<String>| {
        if let Some(v) = settings.get(key) {
            match humantime::parse_duration(v.trim()) {
                Ok(d) if d >= Duration::from_millis(100) => *slot = d,
                Ok(_) => problems.push(format!("{LABEL_PREFIX}{key}={v:?}: must be at least 100ms")),
                Err(e) => problems.push(format!("{LABEL_PREFIX}{key}={v:?}: not a duration ({e}); e.g. 10s, 1m30s")),
            }
        }
    };
    duration("interval", &mut timing.interval, &mut problems);
    duration("timeout", &mut timing.timeout, &mut problems);
    duration("start_interval", &mut timing.start_interval, &mut problems);
    if let Some(v) = settings.get("start_period") {
        match humantime::parse_duration(v.trim()) {
            Ok(d) => timing.start_period = d,
            Err(e) => problems.push(bad("start_period", v, format!("not a duration ({e})"))),
        }
    }
    if let Some(v) = settings.get("retries") {
        match v.trim().parse::<u32>() {
            Ok(n) if n >= 1 => timing.retries = n,
            _ => problems.push(bad("retries", v, "must be a whole number, at least 1".into())),
        }
    }

    // A timing that does not parse applies to every probe: none runs on a guess.
    let timing_ok = problems.is_empty();
    let mut checks = Vec::new();
    if let Some(v) = settings.get("http") {
        let body = match settings.get("http_body").map(|b| Regex::new(b)) {
            None => Some(None),
            Some(Ok(r)) => Some(Some(r)),
            Some(Err(e)) => {
                problems.push(bad("http_body", &settings["http_body"], format!("not a regular expression: {e}")));
                None
            }
        };
        match (port_and_path(v), body) {
            (Ok((port, path)), Some(body)) => checks.push(Check::Http { port, path, body }),
            (Err(why), _) => problems.push(bad("http", v, why)),
            _ => {}
        }
    }
    if let Some(v) = settings.get("tcp") {
        match port_and_path(v) {
            Ok((port, path)) if path == "/" && !v.contains('/') => checks.push(Check::Tcp { port }),
            Ok(_) => problems.push(bad("tcp", v, "a port only, e.g. :5432".into())),
            Err(why) => problems.push(bad("tcp", v, why)),
        }
    }
    if let Some(v) = settings.get("exec") {
        if v.trim().is_empty() {
            problems.push(bad("exec", v, "an empty command".into()));
        } else {
            checks.push(Check::Exec { command: v.clone() });
        }
    }
    match settings.get("docker").map(|v| v.trim()) {
        None if healthcheck.is_some() => checks.push(Check::Docker),
        None | Some("false") => {}
        Some("true") if healthcheck.is_some() => checks.push(Check::Docker),
        Some("true") => problems.push(bad("docker", "true", "the container has no HEALTHCHECK".into())),
        Some(v) => problems.push(bad("docker", v, "true or false".into())),
    }
    if let Some(v) = settings.get("error_rate") {
        match error_rate(settings, v) {
            Ok(c) => checks.push(c),
            Err(p) => problems.extend(p),
        }
    }
    for key in settings.keys() {
        if !KEYS.contains(&key.as_str()) {
            problems.push(format!("{LABEL_PREFIX}{key}: unknown setting (known: {})", KEYS.join(", ")));
        }
    }
    if checks.is_empty() && problems.is_empty() && !settings.is_empty() {
        problems.push(format!("{LABEL_PREFIX}*: timing given but no probe (http, tcp, exec, docker or error_rate)"));
    }
    if timing.timeout > timing.interval {
        // Docker allows it, but a probe could then overlap the next one; bound it by the interval.
        timing.timeout = timing.interval;
    }
    if timing_ok {
        let docker_timing = match healthcheck {
            Some(every) if !settings.contains_key("interval") => {
                Timing { interval: every, timeout: timing.timeout.min(every), ..timing }
            }
            _ => timing,
        };
        out.probes = checks
            .into_iter()
            .map(|check| {
                let timing = if matches!(check, Check::Docker) { docker_timing } else { timing };
                Probe { check, timing }
            })
            .collect();
    }
    out.problems = problems;
    out
}

const KEYS: [&str; 14] = [
    "http",
    "http_body",
    "tcp",
    "exec",
    "docker",
    "error_rate",
    "error_pattern",
    "error_window",
    "error_min_lines",
    "interval",
    "timeout",
    "start_period",
    "start_interval",
    "retries",
];

fn error_rate(settings: &BTreeMap<String, String>, v: &str) -> Result<Check, Vec<String>> {
    let mut problems = Vec::new();
    let threshold = match v.trim().parse::<f64>() {
        Ok(t) if t > 0.0 && t < 1.0 => t,
        _ => {
            problems.push(format!("{LABEL_PREFIX}error_rate={v:?}: a fraction between 0 and 1, e.g. 0.05"));
            0.0
        }
    };
    let pattern = settings.get("error_pattern").map_or(DEFAULT_ERROR_PATTERN, String::as_str);
    let pattern = Regex::new(pattern)
        .map_err(|e| vec![format!("{LABEL_PREFIX}error_pattern={pattern:?}: not a regular expression: {e}")]);
    let window = match settings.get("error_window").map(|w| humantime::parse_duration(w.trim())) {
        None => Duration::from_secs(60),
        Some(Ok(d)) if d >= Duration::from_secs(1) => d,
        Some(_) => {
            problems.push(format!("{LABEL_PREFIX}error_window: a duration of at least 1s, e.g. 1m"));
            Duration::from_secs(60)
        }
    };
    let min_lines = match settings.get("error_min_lines").map(|m| m.trim().parse::<u64>()) {
        None => 20,
        Some(Ok(n)) if n >= 1 => n,
        Some(_) => {
            problems.push(format!("{LABEL_PREFIX}error_min_lines: a whole number, at least 1"));
            20
        }
    };
    match pattern {
        Ok(pattern) if problems.is_empty() => Ok(Check::LogErrorRate { pattern, threshold, window, min_lines }),
        Ok(_) => Err(problems),
        Err(p) => Err(p.into_iter().chain(problems).collect()),
    }
}

/// `:8080/healthz`, `8080/healthz`, `:8080` → (8080, "/healthz" or "/").
fn port_and_path(v: &str) -> Result<(u16, String), String> {
    let v = v.trim().trim_start_matches(':');
    let (port, path) = match v.find('/') {
        Some(i) => (&v[..i], &v[i..]),
        None => (v, "/"),
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((p, path.to_string())),
        _ => Err("expected :<port>[/path], e.g. :8080/healthz".into()),
    }
}

/// The settings in a container's labels (`lookout.probe.*`, prefix removed).
pub fn from_labels(labels: &std::collections::HashMap<String, String>) -> BTreeMap<String, String> {
    labels.iter().filter_map(|(k, v)| Some((k.strip_prefix(LABEL_PREFIX)?.to_string(), v.clone()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn labels_give_probes_with_docker_timing() {
        let p = plan(
            &settings(&[("http", ":8080/healthz"), ("tcp", ":5432"), ("interval", "10s"), ("retries", "2")]),
            None,
        );
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        assert_eq!(p.probes.len(), 2);
        assert!(matches!(&p.probes[0].check, Check::Http { port: 8080, path, body: None } if path == "/healthz"));
        assert!(matches!(p.probes[1].check, Check::Tcp { port: 5432 }));
        let t = p.probes[0].timing;
        assert_eq!((t.interval, t.timeout, t.retries), (Duration::from_secs(10), Duration::from_secs(10), 2));
        assert_eq!((t.start_period, t.start_interval), (Duration::ZERO, Duration::from_secs(5)));
    }

    #[test]
    fn a_bad_setting_is_a_problem_naming_the_label_and_its_probe_is_left_out() {
        let p = plan(&settings(&[("http", "eighty"), ("interval", "often"), ("retires", "3")]), None);
        assert!(p.probes.is_empty());
        let all = p.problems.join("\n");
        assert!(all.contains("lookout.probe.http=\"eighty\": expected :<port>[/path]"), "{all}");
        assert!(all.contains("lookout.probe.interval=\"often\": not a duration"), "{all}");
        assert!(all.contains("lookout.probe.retires: unknown setting"), "{all}");
    }

    #[test]
    fn the_containers_own_healthcheck_is_read_at_its_interval_unless_turned_off() {
        let own = Some(Duration::from_secs(2));
        let p = plan(&settings(&[]), own);
        assert!(matches!(p.probes[0].check, Check::Docker));
        assert_eq!(p.probes[0].timing.interval, Duration::from_secs(2), "Docker's own interval");
        let p = plan(&settings(&[("interval", "7s")]), own);
        assert_eq!(p.probes[0].timing.interval, Duration::from_secs(7));
        assert!(plan(&settings(&[("docker", "false")]), own).probes.is_empty());
        assert!(plan(&settings(&[]), None).probes.is_empty());
        assert!(!plan(&settings(&[("docker", "true")]), None).problems.is_empty());
    }

    #[test]
    fn error_rate_takes_a_fraction_and_defaults_its_pattern() {
        let p = plan(&settings(&[("error_rate", "0.05"), ("error_window", "30s")]), None);
        let Check::LogErrorRate { pattern, threshold, window, min_lines } = &p.probes[0].check else { panic!("{p:?}") };
        assert_eq!((*threshold, *window, *min_lines), (0.05, Duration::from_secs(30), 20));
        // Word boundaries: a Java exception class name alone does not match (`\bexception\b`).
        assert!(!pattern.is_match("java.lang.NullPointerException thrown"));
        assert!(pattern.is_match("level=ERROR db down") && pattern.is_match("panic: boom"));
        assert!(!plan(&settings(&[("error_rate", "5%")]), None).problems.is_empty());
        assert!(!plan(&settings(&[("error_rate", "0.1"), ("error_pattern", "(")]), None).problems.is_empty());
    }

    #[test]
    fn timing_without_a_probe_is_a_problem_not_a_silent_nothing() {
        let p = plan(&settings(&[("interval", "5s")]), None);
        assert!(p.probes.is_empty() && p.problems[0].contains("no probe"), "{:?}", p.problems);
    }
}
