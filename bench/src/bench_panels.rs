//! `lookout bench panels`: how many panel queries of Grafana dashboards answer with data, on lookout
//! and on a Prometheus scraping node_exporter (or cAdvisor) on the same host, each with its
//! template variables resolved through its own API as Grafana resolves them.

use std::collections::BTreeMap;

use serde_json::Value;

use lookout_bench::dashboard::{self, Choice};

/// A data source's answers to one dashboard: per target, whether it returned data (or its error).
struct Answers {
    with_data: Vec<Result<bool, String>>,
}

/// A query API call: POSTed as Grafana posts queries; label values by GET, the only method
/// Prometheus takes for them.
fn api(client: &reqwest::blocking::Client, base: &str, path: &str, form: &[(&str, String)]) -> Result<Value, String> {
    let url = format!("{base}{path}");
    let req =
        if path.starts_with("/api/v1/label/") { client.get(url).query(form) } else { client.post(url).form(form) };
    let resp = req.send().map_err(|e| e.to_string())?;
    let status = resp.status();
    let body: Value = resp.json().map_err(|e| format!("{status}: not JSON: {e}"))?;
    if body["status"] == "success" {
        Ok(body["data"].clone())
    } else {
        Err(format!("{status}: {}", body["error"].as_str().unwrap_or("")))
    }
}

/// Runs `d` against the data source at `base`: variables first (first value, or All where allowed),
/// then every target as a range query over the last `range_s` seconds.
fn answer(
    client: &reqwest::blocking::Client,
    base: &str,
    d: &dashboard::Dashboard,
    range_s: u64,
    step_s: u64,
) -> Answers {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    let (start, end) = (now - range_s, now);
    let mut values = dashboard::macros(range_s, step_s, 15);
    for v in &d.variables {
        let q = dashboard::substitute(&v.query, &values);
        let mut options: Vec<String> = match dashboard::label_values_call(&q) {
            Some((sel, label)) => {
                let mut form = vec![("start", start.to_string()), ("end", end.to_string())];
                if let Some(sel) = sel {
                    form.push(("match[]", sel));
                }
                match api(client, base, &format!("/api/v1/label/{label}/values"), &form) {
                    Ok(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
                    _ => Vec::new(),
                }
            }
            None => Vec::new(),
        };
        options.sort();
        let choice =
            if v.include_all { Choice::All } else { Choice::Values(options.iter().take(1).cloned().collect()) };
        let value = match (&choice, options.is_empty()) {
            (Choice::Values(_), true) => String::new(),
            _ => dashboard::format(v, &choice, &options),
        };
        values.insert(v.name.clone(), value);
    }
    let with_data = d
        .targets
        .iter()
        .map(|t| {
            let q = dashboard::substitute(&t.expr, &values);
            let form =
                [("query", q), ("start", start.to_string()), ("end", end.to_string()), ("step", step_s.to_string())];
            api(client, base, "/api/v1/query_range", &form).map(|data| {
                data["result"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|s| s["values"].as_array().is_some_and(|v| !v.is_empty())))
            })
        })
        .collect();
    Answers { with_data }
}

pub fn run(
    dashboards: &[std::path::PathBuf],
    lookout: &str,
    prometheus: Option<&str>,
    range_s: u64,
    verbose: bool,
) -> anyhow::Result<()> {
    let client = reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(60)).build()?;
    println!(
        "{:<28} {:>8} {:>12} {:>12} {:>22}",
        "dashboard", "queries", "lookout", "prometheus", "lookout of prometheus's"
    );
    for path in dashboards {
        let json: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
        let d = dashboard::parse(&json).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let ours = answer(&client, lookout, &d, range_s, 15);
        let theirs = prometheus.map(|p| answer(&client, p, &d, range_s, 15));
        let count = |a: &Answers| a.with_data.iter().filter(|r| matches!(r, Ok(true))).count();
        let both = theirs.as_ref().map(|t| {
            let answered = t.with_data.iter().filter(|r| matches!(r, Ok(true))).count();
            let shared =
                ours.with_data.iter().zip(&t.with_data).filter(|(o, t)| matches!((o, t), (Ok(true), Ok(true)))).count();
            (answered, shared)
        });
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let (theirs_s, share) = match both {
            Some((answered, shared)) => (
                answered.to_string(),
                format!("{shared} of {answered} ({:.1}%)", 100.0 * shared as f64 / answered.max(1) as f64),
            ),
            None => ("-".into(), "-".into()),
        };
        println!("{name:<28} {:>8} {:>12} {:>12} {:>22}", d.targets.len(), count(&ours), theirs_s, share);
        if verbose {
            let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (i, t) in d.targets.iter().enumerate() {
                let peer_has = theirs.as_ref().is_none_or(|th| matches!(th.with_data[i], Ok(true)));
                match &ours.with_data[i] {
                    Ok(true) => {}
                    other if peer_has => {
                        let why = match other {
                            Err(e) => format!(" [error: {e}]"),
                            _ => String::new(),
                        };
                        missing.entry(t.panel.clone()).or_default().push(format!("{}{why}", t.expr));
                    }
                    _ => {}
                }
            }
            for (panel, exprs) in missing {
                for e in exprs {
                    println!("  no data on lookout: {panel}: {e}");
                }
            }
        }
    }
    Ok(())
}
