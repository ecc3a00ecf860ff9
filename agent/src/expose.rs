//! The agent's own HTTP endpoint: `/metrics` with the latest readings (Prometheus text format, so an
//! existing Prometheus can scrape the agent directly) and the agent's self-metrics; `/healthz`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, RwLock};

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;

use crate::sampler::Tick;

#[derive(Clone)]
pub struct ExposeState {
    pub latest: Arc<RwLock<Arc<Tick>>>,
    pub registry: Arc<Mutex<Registry>>,
}

pub fn router(state: ExposeState) -> Router {
    Router::new().route("/metrics", get(metrics)).route("/healthz", get(|| async { "ok\n" })).with_state(state)
}

async fn metrics(State(s): State<ExposeState>) -> impl IntoResponse {
    let tick = s.latest.read().expect("latest tick lock poisoned").clone();
    let mut body = render(&tick);
    let mut own = String::new();
    let encoded =
        prometheus_client::encoding::text::encode(&mut own, &s.registry.lock().expect("registry lock poisoned"));
    if encoded.is_ok() {
        // Our text is Prometheus 0.0.4 format; drop OpenMetrics' trailing "# EOF" so the two parts join.
        body.push_str(own.trim_end().trim_end_matches("# EOF"));
    }
    ([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}

/// Renders one tick as Prometheus text, one family per metric name, with its timestamp.
pub fn render(tick: &Tick) -> String {
    let mut families: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    // Stale markers end series in lookout's store; a scraper learns the same by their absence.
    let live = tick.readings.iter().enumerate().filter(|(_, r)| r.sample.value.to_bits() != crate::sampler::STALE_NAN);
    for (i, r) in live {
        families.entry(r.sample.name).or_default().push(i);
    }
    let mut out = String::with_capacity(tick.readings.len() * 160);
    for (name, idx) in families {
        let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for i in idx {
            let r = &tick.readings[i];
            out.push_str(name);
            out.push('{');
            let labels = r
                .identity
                .iter()
                // A scraper sets its own `job` and `instance`.
                .filter(|(k, _)| k != "job" && k != "instance")
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .chain(r.sample.labels.iter().map(|(k, v)| (*k, v.as_str())));
            for (n, (k, v)) in labels.enumerate() {
                if n > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{k}=\"");
                escape_into(&mut out, v);
                out.push('"');
            }
            let _ = writeln!(out, "}} {} {}", format_value(r.sample.value), tick.ts_ms);
        }
    }
    out
}

fn escape_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Sample;
    use crate::sampler::Reading;

    #[test]
    fn families_are_grouped_typed_and_escaped() {
        let id = Arc::new(vec![("host".to_string(), "h\"1".to_string())]);
        let tick = Tick {
            ts_ms: 1000,
            readings: vec![
                Reading { identity: id.clone(), sample: Sample::new("container_cpu_usage_seconds_total", 1.5) },
                Reading {
                    identity: id.clone(),
                    sample: Sample::with("node_cpu_seconds_total", vec![("cpu", "0".into())], 2.0),
                },
                Reading { identity: id, sample: Sample::new("container_cpu_usage_seconds_total", 3.0) },
            ],
        };
        let text = render(&tick);
        assert_eq!(
            text,
            "# TYPE container_cpu_usage_seconds_total counter\n\
             container_cpu_usage_seconds_total{host=\"h\\\"1\"} 1.5 1000\n\
             container_cpu_usage_seconds_total{host=\"h\\\"1\"} 3 1000\n\
             # TYPE node_cpu_seconds_total counter\n\
             node_cpu_seconds_total{host=\"h\\\"1\",cpu=\"0\"} 2 1000\n"
        );
    }
}
