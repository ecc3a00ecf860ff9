//! Side by side with Debian's `prometheus-node-exporter` (1.5) on this host: for every metric name
//! both export, the agent gives the same label sets, equal values for constants and values within one
//! reading's drift for the rest.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";

/// One exposition: name → (label set → value), and name → TYPE.
#[derive(Default)]
struct Exposition {
    samples: BTreeMap<String, BTreeMap<Vec<(String, String)>, f64>>,
    types: BTreeMap<String, String>,
}

/// The text format as both sides write it (no exemplars, no escapes beyond `\\`, `\"`, `\n`).
fn parse(text: &str) -> Exposition {
    let mut e = Exposition::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            if let (Some(n), Some(t)) = (it.next(), it.next()) {
                e.types.insert(n.to_string(), t.to_string());
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("no value: {line}"));
        let name = &line[..name_end];
        let mut labels = Vec::new();
        let mut rest = &line[name_end..];
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let mut key = String::new();
            let mut end = None;
            while let Some((i, ch)) = chars.next() {
                match ch {
                    '}' => {
                        end = Some(i + 1);
                        break;
                    }
                    ',' | ' ' => {}
                    '=' => {
                        assert_eq!(chars.next().map(|c| c.1), Some('"'), "{line}");
                        let mut v = String::new();
                        while let Some((_, c)) = chars.next() {
                            match c {
                                '\\' => match chars.next().map(|c| c.1) {
                                    Some('n') => v.push('\n'),
                                    Some(o) => v.push(o),
                                    None => panic!("{line}"),
                                },
                                '"' => break,
                                o => v.push(o),
                            }
                        }
                        labels.push((std::mem::take(&mut key), v));
                    }
                    o => key.push(o),
                }
            }
            rest = &body[end.unwrap_or_else(|| panic!("unterminated labels: {line}"))..];
        }
        let value = rest.split_whitespace().next().unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        labels.retain(|(k, _)| k != "host");
        labels.sort();
        e.samples.entry(name.to_string()).or_default().insert(labels, value);
    }
    e
}

struct NodeExporter(Child, String);

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl NodeExporter {
    fn start(textfiles: &std::path::Path) -> NodeExporter {
        assert!(
            std::path::Path::new(NODE_EXPORTER).exists(),
            "{NODE_EXPORTER} is missing; install it with: apt-get install prometheus-node-exporter"
        );
        let addr = free_addr();
        // Debian's build changes two defaults (it leaves out `lo` and every mount under /run);
        // lookout follows upstream's, so the comparison runs with those. Both leave the host ends of
        // containers' veths out, as lookout does by default (`[node] net_device_exclude`).
        let child = Command::new(NODE_EXPORTER)
            .arg(format!("--web.listen-address={addr}"))
            .arg("--collector.netdev.device-exclude=^veth")
            .arg("--collector.netclass.ignored-devices=^veth")
            .arg(format!("--collector.textfile.directory={}", textfiles.display()))
            .arg("--collector.filesystem.mount-points-exclude=^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node_exporter starts");
        let ne = NodeExporter(child, format!("http://{addr}/metrics"));
        eventually(Duration::from_secs(20), "node_exporter to answer", || ne.scrape_text().ok());
        ne
    }

    fn scrape_text(&self) -> Result<String, reqwest::Error> {
        reqwest::blocking::get(&self.1)?.error_for_status()?.text()
    }
}

/// Values that exist once per boot or per device and do not move while the test runs.
fn constant(name: &str) -> bool {
    name.ends_with("_info")
        || [
            "node_boot_time_seconds",
            "node_memory_MemTotal_bytes",
            "node_memory_SwapTotal_bytes",
            "node_memory_Hugepagesize_bytes",
            "node_filesystem_size_bytes",
            "node_filesystem_files",
            "node_filesystem_readonly",
            "node_filesystem_device_error",
            "node_network_mtu_bytes",
            "node_network_speed_bytes",
            "node_network_up",
            "node_network_flags",
            "node_network_iface_id",
            "node_network_address_assign_type",
            "node_network_device_id",
            "node_network_net_dev_group",
            "node_network_protocol_type",
            "node_network_transmit_queue_length",
            "node_network_dormant",
            "node_network_iface_link",
            "node_network_iface_link_mode",
            "node_filefd_maximum",
            "node_entropy_pool_size_bits",
            "node_nf_conntrack_entries_limit",
            "node_timex_tick_seconds",
            "node_timex_status",
            "node_timex_sync_status",
            "node_timex_loop_time_constant",
            "node_timex_pps_shift_seconds",
            "machine_cpu_cores",
        ]
        .contains(&name)
}

/// Gauges that a scrape itself moves (the scrape's own socket, file, thread, page faults), that keep
/// time, or that kernel noise moves between two readings a second apart: a tolerance, not a bracket.
fn tolerance(name: &str, hi: f64) -> f64 {
    if name == "node_time_seconds" {
        return 3.0;
    }
    if name.starts_with("node_timex_") {
        // offset, frequency, max and estimated error follow the kernel's clock discipline.
        return (hi.abs() * 0.5).max(1e-3);
    }
    if name.starts_with("node_procs_") || name.starts_with("node_sockstat_") || name.starts_with("node_netstat_") {
        return (hi.abs() * 0.05).max(16.0);
    }
    if name.starts_with("node_pressure_") {
        return (hi.abs() * 0.01).max(0.5);
    }
    // Memory, free space, open files, entropy: a few percent over the seconds between readings.
    (hi.abs() * 0.03).max(64.0)
}

#[test]
fn every_family_both_export_agrees_with_node_exporter() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // What a cron job writes for both to read: samples, and a file each refuses.
    let textfiles = dir.path().join("textfiles");
    std::fs::create_dir(&textfiles).unwrap();
    std::fs::write(
        textfiles.join("backup.prom"),
        "# HELP backup_last_success_seconds When it last succeeded.\n# TYPE backup_last_success_seconds gauge\nbackup_last_success_seconds{target=\"s3\"} 1.7e+09\nbackup_bytes 12345\n",
    )
    .unwrap();
    std::fs::write(textfiles.join("broken.prom"), "half_written{target=\"s3\n").unwrap();
    let ne = NodeExporter::start(&textfiles);
    let lookout = Lookout::up(dir.path(), &["--textfile-directory", textfiles.to_str().unwrap()]);
    let agent = format!("http://{}/metrics", lookout.agent_metrics.unwrap());
    // The agent's /metrics holds its last tick (1 s interval); reading node_exporter before it, waiting
    // for a newer tick, and reading node_exporter again brackets what the agent read.
    let (before, ours, after) = eventually(Duration::from_secs(30), "a tick with host metrics", || {
        let before = parse(&ne.scrape_text().ok()?);
        let t = Instant::now();
        std::thread::sleep(Duration::from_millis(1100));
        let ours = parse(&reqwest::blocking::get(&agent).ok()?.text().ok()?);
        let after = parse(&ne.scrape_text().ok()?);
        (ours.samples.contains_key("node_load1") && t.elapsed() < Duration::from_secs(5))
            .then_some((before, ours, after))
    });

    // process_* describe each exporter's own process, not the host; node_scrape_collector_* each
    // one's own collectors (compared below).
    let shared: BTreeSet<&String> = ours
        .samples
        .keys()
        .filter(|n| before.samples.contains_key(*n) && !n.starts_with("process_") && !n.starts_with("node_scrape_"))
        .collect();
    // Every collector lookout reports on is one of node_exporter's, and they agree on its success.
    let success = |e: &Exposition| -> BTreeMap<String, f64> {
        e.samples["node_scrape_collector_success"]
            .iter()
            .map(|(labels, v)| (labels.iter().find(|(k, _)| k == "collector").unwrap().1.clone(), *v))
            .collect()
    };
    let (ours_ok, theirs_ok) = (success(&ours), success(&before));
    assert!(ours_ok.len() >= 20, "{ours_ok:?}");
    for (collector, ok) in &ours_ok {
        assert_eq!(
            theirs_ok.get(collector),
            Some(ok),
            "collector {collector}: lookout {ours_ok:?}, node_exporter {theirs_ok:?}"
        );
    }
    assert!(ours.samples["node_scrape_collector_duration_seconds"].values().all(|s| (0.0..1.0).contains(s)));
    let ours_node: Vec<&String> = ours.samples.keys().filter(|n| n.starts_with("node_")).collect();
    let theirs_node =
        before.samples.keys().filter(|n| n.starts_with("node_") && !n.starts_with("node_scrape_")).count();
    println!(
        "names: lookout {} node_*, node_exporter {} node_*, {} shared",
        ours_node.len(),
        theirs_node,
        shared.len()
    );
    // Every node_* name lookout makes is one node_exporter 1.5 makes too.
    let only_ours: Vec<&&String> = ours_node.iter().filter(|n| !before.samples.contains_key(**n)).collect();
    assert!(only_ours.is_empty(), "node_* names node_exporter does not have: {only_ours:?}");
    assert!(shared.len() >= 150, "only {} names in common", shared.len());

    // The textfiles: both send the good file's samples and its mtime, and flag the broken one.
    for name in
        ["backup_last_success_seconds", "backup_bytes", "node_textfile_mtime_seconds", "node_textfile_scrape_error"]
    {
        assert!(shared.contains(&name.to_string()), "{name} is not sent by both");
    }
    assert_eq!(ours.samples["node_textfile_scrape_error"].values().collect::<Vec<_>>(), [&1.0]);
    assert_eq!(
        ours.samples["node_textfile_mtime_seconds"].len(),
        1,
        "{:?}",
        ours.samples["node_textfile_mtime_seconds"]
    );

    let mut problems = Vec::new();
    for name in shared {
        let (ls, b, a) = (&ours.samples[name], &before.samples[name], &after.samples[name]);
        let (mine, theirs): (BTreeSet<_>, BTreeSet<_>) = (ls.keys().collect(), b.keys().collect());
        if mine != theirs && theirs == a.keys().collect::<BTreeSet<_>>() {
            let missing: Vec<_> = theirs.difference(&mine).collect();
            let extra: Vec<_> = mine.difference(&theirs).collect();
            problems.push(format!("{name}: label sets differ; missing {missing:?}, extra {extra:?}"));
            continue;
        }
        let counter = before.types.get(name).is_some_and(|t| t == "counter");
        for (labels, &v) in ls {
            let (Some(&x), Some(&y)) = (b.get(labels), a.get(labels)) else { continue };
            let (lo, hi) = (x.min(y), x.max(y));
            let ok = if constant(name) {
                v == x || (v.is_nan() && x.is_nan())
            } else if counter {
                // Read between the two readings of node_exporter; rounding of ms and 1/100 s aside.
                v >= lo - (lo.abs() * 1e-9).max(0.01) && v <= hi + (hi.abs() * 1e-9).max(0.01)
            } else {
                let tol = tolerance(name, hi);
                v >= lo - tol && v <= hi + tol
            };
            if !ok {
                problems.push(format!("{name}{labels:?}: lookout {v}, node_exporter {x} then {y}"));
            }
        }
    }
    assert!(problems.is_empty(), "{} disagreements with node_exporter:\n{}", problems.len(), problems.join("\n"));
}
