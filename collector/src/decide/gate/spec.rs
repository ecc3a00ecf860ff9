//! What a gate is asked and how it checks: the request a pipeline posts, the `[gates]` policy in
//! collector.toml, and their resolution into one list of checks with every parameter filled in.
//! Validation names the field; nothing here reads the store.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::decide::CheckQuery;

/// The built-in checks, in the order they are reported.
pub const BUILTIN: [&str; 5] = ["error_rate", "probe_failures", "restarts", "cpu", "memory"];

/// Lines that count as errors unless a check says otherwise (the agent's `log_error_rate` default).
pub const ERROR_PATTERN: &str = r"(?i)\b(error|fatal|panic|exception)\b";

/// One check as configured or requested; unset parameters take the check's defaults.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// A built-in check (`error_rate`, `probe_failures`, `restarts`, `cpu`, `memory`) or any other
    /// name for a PromQL check (which then needs `query`).
    pub name: String,
    /// PromQL; `$service`, `$version` (the version being measured) are substituted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// `error_rate`: the regex a line matches to count as an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Rates: fail above this many times the baseline's rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ratio: Option<f64>,
    /// Rates without a baseline: fail above this rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rate: Option<f64>,
    /// Rates: never fail below this rate, whatever the baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<f64>,
    /// Values against the baseline (`cpu`, `memory`, PromQL): fail when the canary's typical value
    /// exceeds the baseline's by more than this share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
    /// Absolute limits: `restarts` (count); `cpu` (cores), `memory` (bytes) and PromQL (typical
    /// value) when there is no baseline to compare with (or, for PromQL, no tolerance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// `memory`: fail when the working set grows faster than this share of its typical value per
    /// 10 minutes (beyond the baseline's own growth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_growth: Option<f64>,
    /// Lines, probe runs or values the canary needs before the check may pass or fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_samples: Option<u64>,
    /// PromQL: the resolution at which the query is evaluated over the analysis (default 15s).
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub step: Option<Duration>,
    /// A check that is not required is reported but does not decide the verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
}

/// A check with every parameter decided: what the gate runs and what a replay runs again.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Check {
    pub name: String,
    pub kind: CheckKind,
    pub required: bool,
    pub min_samples: u64,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CheckKind {
    ErrorRate { pattern: String, max_ratio: f64, max_rate: f64, floor: f64 },
    ProbeFailures { max_ratio: f64, max_rate: f64, floor: f64 },
    Restarts { max: f64 },
    Cpu { tolerance: f64, max: Option<f64> },
    Memory { tolerance: f64, max_growth: f64, max: Option<f64> },
    Query { query: String, tolerance: Option<f64>, max: Option<f64>, min: Option<f64>, step_ms: i64 },
}

/// `[gates]` in collector.toml: defaults for every gate, and per-service policies.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GatesConfig {
    #[serde(default)]
    pub default: GatePolicy,
    #[serde(default)]
    pub services: Vec<GatePolicy>,
}

/// How a service's releases are judged.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GatePolicy {
    /// The service (in `[[gates.services]]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// How often the checks are evaluated (the analysis interval).
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// How long a gate keeps watching after it starts; a failure within it fails the release.
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub window: Option<Duration>,
    /// By when every check must have enough data (default: twice the window).
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Duration>,
    /// What a check still waiting at the deadline makes of the verdict: `fail` (default) or `pass`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_no_data: Option<NoData>,
    /// Parameters for built-in checks (by name) and PromQL checks added to them.
    #[serde(default)]
    pub checks: Vec<CheckSpec>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NoData {
    Fail,
    Pass,
}

/// `POST /api/v1/gates`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GateRequest {
    pub service: String,
    pub version: String,
    /// The version to compare with; by default the service's other version with the most containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_version: Option<String>,
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub window: Option<Duration>,
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Duration>,
    /// Only these checks (built-in names with parameters, or PromQL checks); by default the policy's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<Vec<CheckSpec>>,
    /// A name for this stage of a staged rollout ("2 hosts"); each stage is its own gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_no_data: Option<NoData>,
}

/// A request resolved against the policy: what the gate runs.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Plan {
    pub service: String,
    pub version: String,
    pub baseline: Option<String>,
    /// Why this baseline (named in the request, or the running version with most containers).
    pub baseline_reason: String,
    pub stage: Option<String>,
    pub interval_ms: i64,
    pub window_ms: i64,
    pub deadline_ms: i64,
    pub on_no_data: NoData,
    pub checks: Vec<Check>,
}

impl GatesConfig {
    fn policy_for(&self, service: &str) -> Option<&GatePolicy> {
        self.services.iter().find(|p| p.service.as_deref() == Some(service))
    }

    /// Every problem with its key (`gates.services[1].checks[0].query: ...`).
    pub fn validate(&self, check_query: CheckQuery<'_>) -> Vec<String> {
        let mut problems = Vec::new();
        let each = |at: String, p: &GatePolicy, problems: &mut Vec<String>| {
            for (i, c) in p.checks.iter().enumerate() {
                let key = format!("{at}.checks[{i}]");
                if p.checks[..i].iter().any(|o| o.name == c.name) {
                    problems.push(format!("{key}.name: {:?} is listed twice", c.name));
                }
                if let Err(e) = build(&key, c.clone(), check_query) {
                    problems.push(e);
                }
            }
            if let Err(e) = timing(&at, &self.default, Some(p), &GateRequest::bare()) {
                problems.push(e);
            }
        };
        each("gates.default".into(), &self.default, &mut problems);
        for (i, p) in self.services.iter().enumerate() {
            if p.service.is_none() {
                problems.push(format!("gates.services[{i}].service: needed, to say which service this policy is for"));
            }
            each(format!("gates.services[{i}]"), p, &mut problems);
        }
        problems
    }

    /// The plan for a request, or a message naming the field that is wrong.
    pub fn plan(
        &self,
        req: &GateRequest,
        baseline: Option<String>,
        baseline_reason: String,
        check_query: CheckQuery<'_>,
    ) -> Result<Plan, String> {
        if req.service.is_empty() {
            return Err("service: must not be empty".into());
        }
        if req.version.is_empty() {
            return Err("version: must not be empty".into());
        }
        let policy = self.policy_for(&req.service);
        let (interval_ms, window_ms, deadline_ms) = timing("", &self.default, policy, req)?;
        let checks = resolve_checks("", &self.default, policy, req.checks.as_deref(), check_query)?;
        Ok(Plan {
            service: req.service.clone(),
            version: req.version.clone(),
            baseline,
            baseline_reason,
            stage: req.stage.clone(),
            interval_ms,
            window_ms,
            deadline_ms,
            on_no_data: req
                .on_no_data
                .or(policy.and_then(|p| p.on_no_data))
                .or(self.default.on_no_data)
                .unwrap_or(NoData::Fail),
            checks,
        })
    }
}

impl GateRequest {
    /// Parses a request body; an error names the field (`window: invalid value ...`).
    pub fn parse(body: &[u8]) -> Result<GateRequest, String> {
        let de = &mut serde_json::Deserializer::from_slice(body);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                e.inner().to_string()
            } else {
                format!("{path}: {}", e.inner())
            }
        })
    }

    fn bare() -> Self {
        GateRequest {
            service: String::new(),
            version: String::new(),
            baseline_version: None,
            window: None,
            interval: None,
            deadline: None,
            checks: None,
            stage: None,
            on_no_data: None,
        }
    }
}

/// (interval, window, deadline) in ms: the request, else the service's policy, else the default.
fn timing(
    at: &str,
    default: &GatePolicy,
    policy: Option<&GatePolicy>,
    req: &GateRequest,
) -> Result<(i64, i64, i64), String> {
    let pick = |r: Option<Duration>, f: fn(&GatePolicy) -> Option<Duration>| r.or(policy.and_then(f)).or(f(default));
    let key = |k: &str| if at.is_empty() { k.to_string() } else { format!("{at}.{k}") };
    let interval = pick(req.interval, |p| p.interval).unwrap_or(Duration::from_secs(60));
    let window = pick(req.window, |p| p.window).unwrap_or(Duration::from_secs(300));
    // By default a gate that still waits at the end of its window keeps gathering for as long
    // again: a service with little traffic needs that to tell a small regression from noise.
    let deadline = pick(req.deadline, |p| p.deadline).unwrap_or(window * 2);
    if interval < Duration::from_secs(1) {
        return Err(format!("{}: must be at least 1s", key("interval")));
    }
    if window < interval {
        return Err(format!(
            "{}: must be at least the interval ({})",
            key("window"),
            humantime::format_duration(interval)
        ));
    }
    if window > Duration::from_secs(7 * 86_400) || deadline > Duration::from_secs(7 * 86_400) {
        return Err(format!("{}: at most 7 days", key("window")));
    }
    if deadline < interval {
        return Err(format!(
            "{}: must be at least the interval ({})",
            key("deadline"),
            humantime::format_duration(interval)
        ));
    }
    Ok((interval.as_millis() as i64, window.as_millis() as i64, deadline.as_millis() as i64))
}

/// The checks a gate runs: `requested` if given, else the built-ins with the policy's parameters
/// and the policy's PromQL checks.
fn resolve_checks(
    at: &str,
    default: &GatePolicy,
    policy: Option<&GatePolicy>,
    requested: Option<&[CheckSpec]>,
    check_query: CheckQuery<'_>,
) -> Result<Vec<Check>, String> {
    let prefix = if at.is_empty() { "checks".to_string() } else { format!("{at}.checks") };
    let configured = |name: &str| -> CheckSpec {
        let mut spec = CheckSpec { name: name.to_string(), ..Default::default() };
        for layer in [Some(default), policy].into_iter().flatten() {
            if let Some(s) = layer.checks.iter().find(|c| c.name == name) {
                spec = overlay(spec, s);
            }
        }
        spec
    };
    let wanted: Vec<(usize, CheckSpec)> = match requested {
        Some(list) => list.iter().cloned().enumerate().map(|(i, s)| (i, overlay(configured(&s.name), &s))).collect(),
        None => {
            let mut all: Vec<CheckSpec> = BUILTIN.iter().map(|n| configured(n)).collect();
            for layer in [Some(default), policy].into_iter().flatten() {
                for c in layer.checks.iter().filter(|c| !BUILTIN.contains(&c.name.as_str())) {
                    all.retain(|a| a.name != c.name);
                    all.push(c.clone());
                }
            }
            all.into_iter().enumerate().collect()
        }
    };
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (i, spec) in wanted {
        let key = format!("{prefix}[{i}]");
        if !seen.insert(spec.name.clone()) {
            return Err(format!("{key}.name: {:?} is listed twice", spec.name));
        }
        out.push(build(&key, spec, check_query)?);
    }
    if out.is_empty() {
        return Err(format!("{prefix}: at least one check is needed"));
    }
    Ok(out)
}

fn overlay(mut base: CheckSpec, over: &CheckSpec) -> CheckSpec {
    macro_rules! take {
        ($($f:ident),*) => { $( if over.$f.is_some() { base.$f = over.$f.clone(); } )* };
    }
    take!(query, pattern, max_ratio, max_rate, floor, tolerance, max, min, max_growth, min_samples, step, required);
    base
}

/// A check's parameters decided, or the field that is wrong.
fn build(key: &str, s: CheckSpec, check_query: CheckQuery<'_>) -> Result<Check, String> {
    let share = |field: &str, v: Option<f64>, default: f64| -> Result<f64, String> {
        match v {
            Some(x) if !(x.is_finite() && x >= 0.0) => {
                Err(format!("{key}.{field}: must be a number at least 0, not {x}"))
            }
            Some(x) => Ok(x),
            None => Ok(default),
        }
    };
    let no = |field: &str, v: bool| -> Result<(), String> {
        if v {
            Err(format!("{key}.{field}: does not apply to the {:?} check", s.name))
        } else {
            Ok(())
        }
    };
    if s.name.is_empty() {
        return Err(format!("{key}.name: must not be empty"));
    }
    let builtin = BUILTIN.contains(&s.name.as_str());
    if builtin {
        no("query", s.query.is_some())?;
    }
    if s.name != "error_rate" {
        no("pattern", s.pattern.is_some())?;
    }
    let (kind, min_samples) = match s.name.as_str() {
        "error_rate" => {
            let pattern = s.pattern.clone().unwrap_or_else(|| ERROR_PATTERN.to_string());
            regex::Regex::new(&pattern).map_err(|e| format!("{key}.pattern: {e}"))?;
            let kind = CheckKind::ErrorRate {
                pattern,
                max_ratio: share("max_ratio", s.max_ratio, 1.5)?,
                max_rate: share("max_rate", s.max_rate, 0.05)?,
                floor: share("floor", s.floor, 0.002)?,
            };
            (kind, 200)
        }
        "probe_failures" => {
            let kind = CheckKind::ProbeFailures {
                max_ratio: share("max_ratio", s.max_ratio, 1.5)?,
                max_rate: share("max_rate", s.max_rate, 0.1)?,
                floor: share("floor", s.floor, 0.02)?,
            };
            (kind, 20)
        }
        "restarts" => (CheckKind::Restarts { max: share("max", s.max, 0.0)? }, 1),
        "cpu" => (CheckKind::Cpu { tolerance: share("tolerance", s.tolerance, 0.2)?, max: s.max }, 8),
        "memory" => {
            let kind = CheckKind::Memory {
                tolerance: share("tolerance", s.tolerance, 0.2)?,
                max_growth: share("max_growth", s.max_growth, 0.1)?,
                max: s.max,
            };
            (kind, 8)
        }
        _ => {
            let query = s.query.clone().ok_or_else(|| {
                format!("{key}.query: a check named {:?} is not built in, so it needs a PromQL query", s.name)
            })?;
            let probe = substitute(&query, "svc", "v");
            check_query(&probe).map_err(|e| format!("{key}.query: {e}"))?;
            if s.tolerance.is_none() && s.max.is_none() && s.min.is_none() {
                return Err(format!("{key}: a PromQL check needs `tolerance` (against the baseline), `max` or `min`"));
            }
            let step = s.step.unwrap_or(Duration::from_secs(15));
            if step < Duration::from_secs(1) {
                return Err(format!("{key}.step: must be at least 1s"));
            }
            let kind = CheckKind::Query {
                query,
                tolerance: s.tolerance.map(|t| share("tolerance", Some(t), 0.0)).transpose()?,
                max: s.max,
                min: s.min,
                step_ms: step.as_millis() as i64,
            };
            (kind, 8)
        }
    };
    Ok(Check {
        name: s.name.clone(),
        kind,
        required: s.required.unwrap_or(true),
        min_samples: s.min_samples.unwrap_or(min_samples),
    })
}

/// `$service` and `$version` in a PromQL check, quoted as label values.
pub fn substitute(query: &str, service: &str, version: &str) -> String {
    let esc = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
    query.replace("$service", &esc(service)).replace("$version", &esc(version))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PromQL's grammar, as the shells' check asks it (without the engine's limits).
    fn promql(q: &str) -> Result<(), String> {
        promql_parser::parser::parse(q).map(|_| ()).map_err(|e| e.to_string())
    }

    fn req(json: &str) -> Result<GateRequest, String> {
        GateRequest::parse(json.as_bytes())
    }

    #[test]
    fn a_bare_request_gets_the_builtin_checks_and_the_policy_parameters() {
        let cfg: GatesConfig = toml::from_str(
            r#"
            [default]
            interval = "30s"
            [[services]]
            service = "api"
            window = "10m"
            [[services.checks]]
            name = "error_rate"
            max_ratio = 2.0
            [[services.checks]]
            name = "latency"
            query = 'histogram_quantile(0.9, sum by (le) (rate(req_seconds_bucket{service="$service",version="$version"}[1m])))'
            tolerance = 0.3
            "#,
        )
        .unwrap();
        assert_eq!(cfg.validate(&promql), Vec::<String>::new());
        let plan = cfg.plan(&req(r#"{"service":"api","version":"2"}"#).unwrap(), None, String::new(), &promql).unwrap();
        assert_eq!((plan.interval_ms, plan.window_ms, plan.deadline_ms), (30_000, 600_000, 1_200_000));
        let names: Vec<&str> = plan.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["error_rate", "probe_failures", "restarts", "cpu", "memory", "latency"]);
        assert!(matches!(plan.checks[0].kind, CheckKind::ErrorRate { max_ratio, .. } if max_ratio == 2.0));
        // Another service gets the defaults.
        let other =
            cfg.plan(&req(r#"{"service":"web","version":"2"}"#).unwrap(), None, String::new(), &promql).unwrap();
        assert_eq!(other.checks.len(), 5);
        assert_eq!(other.window_ms, 300_000);
    }

    #[test]
    fn a_malformed_request_names_its_field() {
        let cfg = GatesConfig::default();
        assert!(req(r#"{"service":"api"}"#).unwrap_err().contains("missing field `version`"));
        assert!(req(r#"{"service":"api","version":"1","windw":"5m"}"#).unwrap_err().contains("unknown field `windw`"));
        let e = req(r#"{"service":"api","version":"1","window":"5 parsecs"}"#).unwrap_err();
        assert!(e.starts_with("window: invalid value"), "{e}");
        let e = req(r#"{"service":"api","version":"1","checks":[{"name":"cpu","tolerence":1}]}"#).unwrap_err();
        assert!(e.starts_with("checks[0].tolerence: unknown field `tolerence`"), "{e}");
        let plan = |j: &str| cfg.plan(&req(j).unwrap(), None, String::new(), &promql).unwrap_err();
        assert_eq!(
            plan(r#"{"service":"api","version":"1","window":"10s","interval":"1m"}"#),
            "window: must be at least the interval (1m)"
        );
        let e = plan(r#"{"service":"api","version":"1","checks":[{"name":"p99","query":"rate(x[1m]","max":1}]}"#);
        assert!(e.starts_with("checks[0].query: "), "{e}");
        let e = plan(r#"{"service":"api","version":"1","checks":[{"name":"p99","query":"up"}]}"#);
        assert!(e.starts_with("checks[0]: a PromQL check needs"), "{e}");
        let e = plan(r#"{"service":"api","version":"1","checks":[{"name":"cpu","query":"up"}]}"#);
        assert_eq!(e, "checks[0].query: does not apply to the \"cpu\" check");
        let e = plan(r#"{"service":"api","version":"1","checks":[{"name":"error_rate","pattern":"(("}]}"#);
        assert!(e.starts_with("checks[0].pattern: "), "{e}");
        let e = plan(r#"{"service":"api","version":"1","checks":[{"name":"cpu","tolerance":-1}]}"#);
        assert_eq!(e, "checks[0].tolerance: must be a number at least 0, not -1");
    }

    #[test]
    fn substitution_quotes_label_values() {
        assert_eq!(
            substitute(r#"up{service="$service",version="$version"}"#, "a\"b", "1"),
            r#"up{service="a\"b",version="1"}"#
        );
    }
}
