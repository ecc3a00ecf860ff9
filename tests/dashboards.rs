//! The dashboards under dashboards/ work: every template variable and every panel query, with
//! variables substituted as Grafana substitutes them, answers without error and with data wherever
//! the metrics it reads exist, against `lookout up` watching real containers. The two written with
//! node_exporter's and cAdvisor's names and idioms must have data in every panel, and their container
//! panels one line per container.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use lookout_bench::dashboard::{self, Choice};
use serde_json::Value;
use support::*;

const SERVICE: &str = "dashsvc";

fn get(base: &str, path: &str, query: &[(&str, &str)]) -> Result<Value, String> {
    let resp = reqwest::blocking::Client::new().get(format!("{base}{path}")).query(query).send().expect("reachable");
    let status = resp.status();
    let body: Value = resp.json().map_err(|e| format!("{status}: not JSON: {e}"))?;
    if status.is_success() && body["status"] == "success" {
        Ok(body["data"].clone())
    } else {
        Err(format!("{status}: {body}"))
    }
}

fn post(base: &str, path: &str, form: &[(&str, &str)]) -> Result<Value, String> {
    let resp = reqwest::blocking::Client::new().post(format!("{base}{path}")).form(form).send().expect("reachable");
    let status = resp.status();
    let body: Value = resp.json().map_err(|e| format!("{status}: not JSON: {e}"))?;
    if status.is_success() && body["status"] == "success" {
        Ok(body["data"].clone())
    } else {
        Err(format!("{status}: {body}"))
    }
}

/// Metric names an expression reads: the identifiers lookout's agents name metrics with.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"\b((?:container|node|machine|lookout)_[a-zA-Z0-9_]+)").unwrap();
    // `container_id` is a label, not a metric.
    re.captures_iter(expr).map(|c| c[1].to_string()).filter(|m| m != "container_id").collect()
}

/// Every metric name the agent can produce (design section 4); some exist only where the kernel
/// offers them (pressure), so their panels may be empty on a given host.
const AGENT_METRICS: &[&str] = &[
    "container_cpu_usage_seconds_total",
    "container_cpu_user_seconds_total",
    "container_cpu_system_seconds_total",
    "container_cpu_cfs_periods_total",
    "container_cpu_cfs_throttled_periods_total",
    "container_cpu_cfs_throttled_seconds_total",
    "container_memory_usage_bytes",
    "container_memory_working_set_bytes",
    "container_memory_rss",
    "container_memory_cache",
    "container_spec_memory_limit_bytes",
    "container_spec_cpu_quota",
    "container_spec_cpu_period",
    "container_oom_events_total",
    "container_fs_reads_bytes_total",
    "container_fs_writes_bytes_total",
    "container_network_receive_bytes_total",
    "container_network_transmit_bytes_total",
    "container_processes",
    "container_pressure_cpu_waiting_seconds_total",
    "container_pressure_cpu_stalled_seconds_total",
    "container_pressure_memory_waiting_seconds_total",
    "container_pressure_memory_stalled_seconds_total",
    "container_pressure_io_waiting_seconds_total",
    "container_pressure_io_stalled_seconds_total",
    "container_last_seen",
    "container_start_time_seconds",
    "node_cpu_seconds_total",
    "node_memory_MemTotal_bytes",
    "node_memory_MemAvailable_bytes",
    "node_load1",
    "node_load5",
    "node_load15",
    "node_network_receive_bytes_total",
    "node_network_transmit_bytes_total",
    "node_filesystem_size_bytes",
    "node_filesystem_avail_bytes",
    "node_disk_read_bytes_total",
    "node_disk_written_bytes_total",
    // node_exporter's and cAdvisor's, as the compatibility dashboards read them.
    "container_spec_cpu_shares",
    "container_memory_swap",
    "container_memory_mapped_file",
    "container_memory_failcnt",
    "container_network_receive_packets_total",
    "container_network_transmit_packets_total",
    "container_network_receive_errors_total",
    "container_network_transmit_errors_total",
    "container_network_receive_packets_dropped_total",
    "container_network_transmit_packets_dropped_total",
    "container_fs_usage_bytes",
    "container_fs_limit_bytes",
    "container_threads",
    "container_threads_max",
    "machine_cpu_cores",
    "machine_memory_bytes",
    "node_time_seconds",
    "node_boot_time_seconds",
    "node_memory_MemFree_bytes",
    "node_memory_Cached_bytes",
    "node_memory_Buffers_bytes",
    "node_memory_SReclaimable_bytes",
    "node_memory_SwapTotal_bytes",
    "node_memory_SwapFree_bytes",
    "node_vmstat_pgpgin",
    "node_vmstat_pgpgout",
    "node_vmstat_pgmajfault",
    "node_context_switches_total",
    "node_intr_total",
    "node_forks_total",
    "node_procs_running",
    "node_procs_blocked",
    "node_disk_io_time_seconds_total",
    "node_disk_reads_completed_total",
    "node_disk_writes_completed_total",
    "node_filesystem_files_free",
    "node_filesystem_readonly",
    "node_network_receive_packets_total",
    "node_network_transmit_packets_total",
    "node_network_receive_errs_total",
    "node_network_transmit_errs_total",
    "node_network_receive_drop_total",
    "node_network_transmit_drop_total",
    "node_network_up",
    "node_network_mtu_bytes",
    "node_netstat_Tcp_CurrEstab",
    "node_netstat_Tcp_InSegs",
    "node_netstat_Tcp_OutSegs",
    "node_netstat_Tcp_RetransSegs",
    "node_netstat_Udp_InDatagrams",
    "node_netstat_Udp_OutDatagrams",
    "node_sockstat_TCP_inuse",
    "node_sockstat_TCP_tw",
    "node_sockstat_sockets_used",
    "node_filefd_allocated",
    "node_filefd_maximum",
    "node_entropy_available_bits",
    "node_timex_offset_seconds",
    "node_timex_maxerror_seconds",
    "node_timex_sync_status",
    "node_pressure_cpu_waiting_seconds_total",
    "node_pressure_memory_waiting_seconds_total",
    "node_pressure_io_waiting_seconds_total",
    "node_uname_info",
    "node_scrape_collector_duration_seconds",
    "node_scrape_collector_success",
];

/// The dashboards written in node_exporter's and cAdvisor's idioms: every metric they read exists on
/// any Linux host with Docker, so a panel without data is a failure, not a skip.
const COMPATIBILITY: &[&str] = &["cadvisor-style.json", "node-exporter-style.json"];

fn load_dashboards() -> Vec<(String, dashboard::Dashboard)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dashboards/ exists") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let json: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
            assert!(json["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "{}: schemaVersion", path.display());
            let d = dashboard::parse(&json).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push((path.file_name().unwrap().to_string_lossy().to_string(), d));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 5, "hosts, containers, service and the two compatibility dashboards");
    out
}

#[test]
fn every_dashboard_query_answers_with_data_from_real_containers() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let limits = ["--cpus", "0.5", "--memory", "64m", "--label", "lookout.service=dashsvc"];
    let a = TestContainer::run(
        "dash-a",
        &[&limits[..], &["--label", "lookout.version=1.0"]].concat(),
        &["sh", "-c", "while :; do :; done"],
    );
    let b = TestContainer::run(
        "dash-b",
        &[&limits[..], &["--label", "lookout.version=1.1"]].concat(),
        &["sh", "-c", "while :; do echo x > /dev/null; sleep 1; done"],
    );
    let lookout = Lookout::up(dir.path(), &[]);
    let base = lookout.url();
    eventually(Duration::from_secs(40), "eight CPU samples of both containers", || {
        let r = instant(&base, r#"count_over_time(container_cpu_usage_seconds_total{service="dashsvc"}[1m]) >= 8"#);
        (r.len() == 2).then_some(())
    });
    let known: BTreeSet<String> = get(&base, "/api/v1/label/__name__/values", &[])
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();

    let mut failures = Vec::new();
    let mut skipped = BTreeSet::new();
    let mut ran = 0;
    for (file, d) in load_dashboards() {
        // Twice: every multi-value variable on All, then narrowed to two chosen values where it names
        // the test's containers or versions, as a user picking them would.
        for narrowed in [false, true] {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
            let (range, step) = (120u64, 5u64);
            let mut values: BTreeMap<String, String> = dashboard::macros(range, step, 10);
            for var in &d.variables {
                let query = dashboard::substitute(&var.query, &values);
                let (selector, label) = dashboard::label_values_call(&query)
                    .unwrap_or_else(|| panic!("{file}: variable {} is not label_values(): {query}", var.name));
                let path = format!("/api/v1/label/{label}/values");
                let start = (now - range).to_string();
                let end = now.to_string();
                let mut params = vec![("start", start.as_str()), ("end", end.as_str())];
                if let Some(s) = &selector {
                    params.push(("match[]", s.as_str()));
                }
                let found: Vec<String> = match get(&base, &path, &params) {
                    Ok(v) => v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect(),
                    Err(e) => {
                        failures.push(format!("{file}: variable {} ({query}): {e}", var.name));
                        Vec::new()
                    }
                };
                if found.is_empty() {
                    failures.push(format!("{file}: variable {} ({query}) has no values", var.name));
                }
                let ours: Vec<String> = match var.name.as_str() {
                    "service" => vec![SERVICE.to_string()],
                    "container" | "name" => vec![a.name.clone(), b.name.clone()],
                    "version" => vec!["1.0".to_string(), "1.1".to_string()],
                    _ => Vec::new(),
                };
                for v in &ours {
                    if !found.contains(v) {
                        failures.push(format!("{file}: variable {} ({query}) lacks {v}: {found:?}", var.name));
                    }
                }
                let choice = if !var.multi || !var.include_all {
                    Choice::Values(if ours.is_empty() {
                        found[..1.min(found.len())].to_vec()
                    } else {
                        ours[..1].to_vec()
                    })
                } else if narrowed && !ours.is_empty() {
                    Choice::Values(ours)
                } else {
                    Choice::All
                };
                values.insert(var.name.clone(), dashboard::format(var, &choice, &found));
            }
            for t in &d.targets {
                let expr = dashboard::substitute(&t.expr, &values);
                assert!(!expr.contains('$'), "{file}: {}: unsubstituted variable in {expr}", t.panel);
                let (start, end, step) = ((now - range).to_string(), now.to_string(), step.to_string());
                ran += 1;
                let form = [("query", expr.as_str()), ("start", &start), ("end", &end), ("step", &step)];
                match post(&base, "/api/v1/query_range", &form) {
                    Err(e) => failures.push(format!("{file}: panel {:?} {}: {expr}\n    {e}", t.panel, t.ref_id)),
                    Ok(data) => {
                        let missing: Vec<String> =
                            metric_names(&expr).into_iter().filter(|m| !known.contains(m)).collect();
                        let empty = data["result"].as_array().is_none_or(|r| r.is_empty());
                        if let Some(m) = metric_names(&expr).into_iter().find(|m| !AGENT_METRICS.contains(&m.as_str()))
                        {
                            failures.push(format!("{file}: panel {:?}: {m} is not a metric lookout produces", t.panel));
                        } else if !missing.is_empty() && COMPATIBILITY.contains(&file.as_str()) {
                            failures.push(format!("{file}: panel {:?}: no {missing:?} on this host", t.panel));
                        } else if !missing.is_empty() {
                            skipped.insert(format!("{file}: panel {:?}: this host produces no {missing:?}", t.panel));
                        } else if empty {
                            failures.push(format!(
                                "{file}: panel {:?} {}: empty, though its metrics exist: {expr}",
                                t.panel, t.ref_id
                            ));
                        } else if expr.contains("by (name)") {
                            // One line per container, as cAdvisor's `name` gives it.
                            let names: BTreeSet<&str> = data["result"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .filter_map(|r| r["metric"]["name"].as_str())
                                .collect();
                            if !names.contains(a.name.as_str()) || !names.contains(b.name.as_str()) {
                                failures.push(format!(
                                    "{file}: panel {:?} {}: not one line per container: {names:?}",
                                    t.panel, t.ref_id
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    println!("{ran} panel queries run; not checked for data:");
    for s in &skipped {
        println!("  {s}");
    }
    assert!(failures.is_empty(), "{} dashboard problems:\n{}", failures.len(), failures.join("\n"));
}
