//! Grafana dashboards as Grafana runs them: template variables resolved in order through the
//! Prometheus API, then every panel query with `$vars` and `$__rate_interval` substituted.
#![allow(dead_code)] // shared by `lookout bench dashboards` and tests/dashboards.rs, which use different parts

use std::collections::BTreeMap;

use serde_json::Value;

/// A dashboard's template variable of type `query`.
#[derive(Clone, Debug)]
pub struct Variable {
    pub name: String,
    pub query: String,
    pub multi: bool,
    pub include_all: bool,
    pub all_value: Option<String>,
}

/// One panel target.
#[derive(Clone, Debug)]
pub struct Target {
    pub panel: String,
    pub ref_id: String,
    pub expr: String,
}

#[derive(Clone, Debug)]
pub struct Dashboard {
    pub uid: String,
    pub variables: Vec<Variable>,
    pub targets: Vec<Target>,
}

pub fn parse(json: &Value) -> Result<Dashboard, String> {
    // Exported dashboards may have no uid; the title then names it.
    let uid = json["uid"].as_str().or(json["title"].as_str()).ok_or("neither uid nor title")?.to_string();
    let mut variables = Vec::new();
    for v in json["templating"]["list"].as_array().ok_or("no templating.list")? {
        if v["type"] != "query" {
            continue;
        }
        let query = v["query"]["query"].as_str().or_else(|| v["query"].as_str()).ok_or("variable without query")?;
        variables.push(Variable {
            name: v["name"].as_str().ok_or("variable without name")?.to_string(),
            query: query.to_string(),
            multi: v["multi"].as_bool().unwrap_or(false),
            include_all: v["includeAll"].as_bool().unwrap_or(false),
            all_value: v["allValue"].as_str().filter(|s| !s.is_empty()).map(str::to_string),
        });
    }
    let mut targets = Vec::new();
    // Dashboards before schema 16 keep their panels in `rows`; later ones in `panels`, where a
    // collapsed row keeps its panels inside it.
    let top = json["panels"].as_array().or(json["rows"].as_array()).ok_or("neither panels nor rows")?;
    let panels = top.iter().flat_map(|p| std::iter::once(p).chain(p["panels"].as_array().into_iter().flatten()));
    for p in panels {
        for t in p["targets"].as_array().into_iter().flatten() {
            // A hidden target is not run by Grafana.
            if t["hide"].as_bool() == Some(true) {
                continue;
            }
            targets.push(Target {
                panel: p["title"].as_str().unwrap_or("").to_string(),
                ref_id: t["refId"].as_str().unwrap_or("").to_string(),
                expr: t["expr"]
                    .as_str()
                    .ok_or_else(|| format!("panel {:?}: target without expr", p["title"]))?
                    .to_string(),
            });
        }
    }
    Ok(Dashboard { uid, variables, targets })
}

/// What a variable is set to: `All`, or chosen values.
#[derive(Clone, Debug)]
pub enum Choice {
    All,
    Values(Vec<String>),
}

/// `label_values(selector, label)` or `label_values(label)`: (selector, label).
pub fn label_values_call(query: &str) -> Option<(Option<String>, String)> {
    let inner = query.trim().strip_prefix("label_values(")?.strip_suffix(')')?;
    match inner.rfind(',') {
        Some(i) => Some((Some(inner[..i].trim().to_string()), inner[i + 1..].trim().to_string())),
        None => Some((None, inner.trim().to_string())),
    }
}

/// Grafana's value of a variable inside a Prometheus query: a single value as is, several as a
/// regex alternation with regex characters escaped, `All` as `allValue` or the alternation of all.
pub fn format(var: &Variable, choice: &Choice, all_values: &[String]) -> String {
    let alternation = |vals: &[String]| -> String {
        if vals.len() == 1 {
            return escape_regex(&vals[0]);
        }
        format!("({})", vals.iter().map(|v| escape_regex(v)).collect::<Vec<_>>().join("|"))
    };
    match choice {
        Choice::All => var.all_value.clone().unwrap_or_else(|| alternation(all_values)),
        Choice::Values(v) if v.len() == 1 && !var.multi => v[0].clone(),
        Choice::Values(v) => alternation(v),
    }
}

/// Grafana's `prometheusSpecialRegexEscape`: the value goes into a double-quoted PromQL string, so a
/// regex escape is written with two backslashes, and a backslash with four.
fn escape_regex(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str(r"\\\\"),
            '$' | '^' | '*' | '{' | '}' | '[' | ']' | '\'' | '+' | '?' | '.' | '(' | ')' | '|' => {
                out.push_str(r"\\");
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// Grafana's interval macros for a panel over `range_s` seconds at `step_s`, with the data source's
/// scrape interval (`timeInterval`) `scrape_s`: `$__rate_interval` is max(step + scrape, 4 × scrape).
pub fn macros(range_s: u64, step_s: u64, scrape_s: u64) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("__rate_interval".into(), format!("{}s", (step_s + scrape_s).max(4 * scrape_s)));
    m.insert("__interval".into(), format!("{step_s}s"));
    m.insert("__range".into(), format!("{range_s}s"));
    m
}

/// Replaces `$name` and `${name}` with `values[name]`, longest names first so `$__range` does not
/// eat `$__rate_interval`.
pub fn substitute(expr: &str, values: &BTreeMap<String, String>) -> String {
    let mut names: Vec<&String> = values.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    let mut out = expr.to_string();
    for n in names {
        out = out.replace(&format!("${{{n}}}"), &values[n]).replace(&format!("${n}"), &values[n]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_format_as_grafana_formats_them() {
        let v = Variable { name: "c".into(), query: String::new(), multi: true, include_all: true, all_value: None };
        let all = vec!["a.b".to_string(), "c".to_string()];
        assert_eq!(format(&v, &Choice::All, &all), r"(a\\.b|c)");
        assert_eq!(format(&v, &Choice::Values(vec!["x".into()]), &all), "x");
        let v = Variable { all_value: Some(".*".into()), ..v };
        assert_eq!(format(&v, &Choice::All, &all), ".*");
    }

    #[test]
    fn macros_and_variables_are_substituted() {
        let mut vals = macros(3600, 15, 10);
        vals.insert("host".into(), "h1".into());
        assert_eq!(
            substitute(r#"rate(x{host=~"$host"}[$__rate_interval]) + y[$__range] + z[${__interval}]"#, &vals),
            r#"rate(x{host=~"h1"}[40s]) + y[3600s] + z[15s]"#
        );
        assert_eq!(
            label_values_call("label_values(up{a=\"b, c\"}, job)"),
            Some((Some("up{a=\"b, c\"}".into()), "job".into()))
        );
        assert_eq!(label_values_call("label_values(job)"), Some((None, "job".into())));
    }
}
