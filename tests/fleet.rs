//! Several hosts on one machine: two collectors and three agents each in their own container on a
//! private Docker network, with their own host names and addresses, and workloads that write
//! numbered lines. One agent is partitioned from the collector for 2 minutes and SIGKILLed during
//! it, another sends over a slow, lossy link (256 kbit/s, 5% loss), and the collector is killed
//! under load and stays away for 5 minutes while the third agent fails over to the standby. At the
//! end every line is stored once and every agent's 1-second readings have no gap.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

fn seconds(var: &str, default: u64) -> Duration {
    Duration::from_secs(std::env::var(var).ok().and_then(|s| s.parse().ok()).unwrap_or(default))
}

/// How long h1 is cut off: 2 minutes unless LOOKOUT_FLEET_PARTITION_SECONDS says otherwise.
fn partition() -> Duration {
    seconds("LOOKOUT_FLEET_PARTITION_SECONDS", 120)
}

/// How long the killed collector stays down: 5 minutes unless LOOKOUT_FLEET_OUTAGE_SECONDS says
/// otherwise (600 is the soak version).
fn outage() -> Duration {
    seconds("LOOKOUT_FLEET_OUTAGE_SECONDS", 300)
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker runs");
    assert!(out.status.success(), "docker {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// What a test run made; removed when it ends, also when it fails.
struct Bed {
    tag: String,
    containers: Vec<String>,
    dir: tempfile::TempDir,
}

impl Drop for Bed {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = Command::new("docker").args(["rm", "-f", c]).output();
        }
        let _ = Command::new("docker").args(["network", "rm", &self.tag]).output();
        let _ = Command::new("docker").args(["image", "rm", "-f", &self.tag]).output();
    }
}

impl Bed {
    /// A network and an image of busybox, the lookout binary and the libraries `ldd` names.
    fn new() -> Bed {
        ensure_image();
        let tag = format!("lookout-test-fleet-{}", std::process::id());
        let bed = Bed { tag: tag.clone(), containers: Vec::new(), dir: tempfile::tempdir().unwrap() };
        let root = bed.dir.path().join("root");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        let bb = docker(&["create", "lookout-test-busybox:latest"]);
        docker(&["cp", &format!("{bb}:/bin/busybox"), root.join("bin/busybox").to_str().unwrap()]);
        docker(&["rm", &bb]);
        for applet in ["sh", "sleep", "echo"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
        let bin = root.join("lookout");
        // Without debug sections the image is a few MiB instead of hundreds.
        let stripped = Command::new("objcopy").args(["--strip-debug", lookout_bin(), bin.to_str().unwrap()]).status();
        if !stripped.is_ok_and(|s| s.success()) {
            std::fs::copy(lookout_bin(), &bin).unwrap();
        }
        let ldd = Command::new("ldd").arg(lookout_bin()).output().expect("ldd runs (apt-get install libc-bin)");
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            let Some(path) = line.split_whitespace().find(|w| w.starts_with('/')) else { continue };
            let to = root.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(path, &to).unwrap();
        }
        for d in ["tmp", "proc", "sys", "dev", "etc", "state", "data"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").unwrap();
        let tar = Command::new("sh")
            .arg("-c")
            .arg(format!("tar -C {} -c . | docker import -c 'ENV PATH=/bin' -c 'CMD [\"sh\"]' - {tag}", root.display()))
            .output()
            .unwrap();
        assert!(tar.status.success(), "building the fleet image: {}", String::from_utf8_lossy(&tar.stderr));
        docker(&["network", "create", "--label", "lookout.test=1", &tag]);
        bed
    }

    fn run(&mut self, name: &str, args: &[&str], cmd: &[&str]) -> String {
        let full = format!("{}-{name}", self.tag);
        let mut a = vec!["run", "-d", "--name", &full, "--label", "lookout.test=1"];
        a.extend_from_slice(args);
        a.push(&self.tag);
        a.extend_from_slice(cmd);
        docker(&a);
        self.containers.push(full.clone());
        full
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    fn collector(&mut self, name: &str) -> (String, String) {
        let cfg = self.file(
            &format!("{name}/collector.toml"),
            "data_dir = \"/data/db\"\nhttp_listen = \"0.0.0.0:9470\"\ngrpc_listen = \"0.0.0.0:9471\"\n# A private test network.\ninsecure = true\n",
        );
        let data = Path::new(&cfg).parent().unwrap().display().to_string();
        let name = self.run(
            name,
            &[
                "--network",
                &self.tag.clone(),
                "--hostname",
                name,
                "--network-alias",
                name,
                "-v",
                &format!("{data}:/data"),
            ],
            &["/lookout", "collector", "--config", "/data/collector.toml"],
        );
        let ip = docker(&["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", &name]);
        (name, format!("http://{ip}:9470"))
    }

    /// An agent for `host` streaming to the first of `collectors` that answers.
    fn agent(&mut self, host: &str, collectors: &[&str]) -> String {
        let list: Vec<String> = collectors.iter().map(|c| format!("\"http://{c}:9471\"")).collect();
        let cfg = self.file(
            &format!("{host}/agent.toml"),
            &format!(
                "host = \"{host}\"\ncollectors = [{}]\ninterval = \"1s\"\nstate_dir = \"/state\"\nmetrics_listen = \"127.0.0.1:9472\"\n[discover]\ninclude_labels = [\"lookout.host={host}\"]\n",
                list.join(", ")
            ),
        );
        let state = Path::new(&cfg).parent().unwrap().display().to_string();
        let tag = self.tag.clone();
        self.run(
            host,
            &[
                "--network",
                &tag,
                "--hostname",
                host,
                "-e",
                "RUST_LOG=info,lookout_agent::logs=debug,lookout_agent::discover=debug",
                "-v",
                &format!("{state}:/state"),
                "-v",
                "/var/run/docker.sock:/var/run/docker.sock",
                "-v",
                "/sys/fs/cgroup:/sys/fs/cgroup:ro",
                "-v",
                "/var/lib/docker/containers:/var/lib/docker/containers:ro",
            ],
            &["/lookout", "agent", "--config", "/state/agent.toml"],
        )
    }
}

/// The numbers of the lines the collector holds for a container, with how often each is there.
fn stored_lines(base: &str, container: &str) -> BTreeMap<u64, usize> {
    let start = format!("{}", ((now_s() - 3600.0) * 1e9) as u64);
    let r = api(
        base,
        "/loki/api/v1/query_range",
        &[
            ("query", &format!("{{container=\"{container}\"}}")),
            ("limit", "5000"),
            ("direction", "forward"),
            ("start", &start),
        ],
    );
    let mut seen = BTreeMap::new();
    for stream in r["result"].as_array().into_iter().flatten() {
        for v in stream["values"].as_array().into_iter().flatten() {
            if let Some(n) = v[1].as_str().and_then(|l| l.trim().strip_prefix("line ")).and_then(|n| n.parse().ok()) {
                *seen.entry(n).or_insert(0) += 1;
            }
        }
    }
    seen
}

/// The times (s) of a host's node_load1 readings.
fn readings(base: &str, host: &str) -> Vec<f64> {
    let r = api(base, "/api/v1/query", &[("query", &format!("node_load1{{host=\"{host}\"}}[1h]"))]);
    r["result"][0]["values"].as_array().into_iter().flatten().filter_map(|p| p[0].as_f64()).collect()
}

fn now_s() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

#[test]
fn a_partitioned_agent_a_lossy_link_and_a_killed_collector_lose_and_repeat_nothing() {
    let _serial = serial();
    let mut bed = Bed::new();
    let (collector, base) = bed.collector("collector");
    // A second collector, on storage of its own: h3 has both in its list and fails over to it.
    let (_standby, standby_base) = bed.collector("standby");
    let hosts = ["h1", "h2", "h3"];
    let agents: Vec<String> = hosts
        .iter()
        .map(|h| if *h == "h3" { bed.agent(h, &["collector", "standby"]) } else { bed.agent(h, &["collector"]) })
        .collect();
    let workloads: Vec<String> = hosts
        .iter()
        .map(|h| {
            let name = format!("work-{h}");
            let label = format!("lookout.host={h}");
            let full = format!("{}-{name}", bed.tag);
            docker(&[
                "run",
                "-d",
                "--name",
                &full,
                "--label",
                "lookout.test=1",
                "--label",
                &label,
                "lookout-test-busybox:latest",
                "sh",
                "-c",
                "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); echo \"line $i\"; sleep 0.2; done",
            ]);
            bed.containers.push(full.clone());
            full
        })
        .collect();
    let up = |what: &str| {
        eventually(Duration::from_secs(60), what, || {
            let ok = hosts.iter().all(|h| !readings(&base, h).is_empty());
            ok.then_some(())
        })
    };
    up("readings of all three hosts");
    // h2 is behind a slow, lossy link for the whole run, in its network namespace only: 256 kbit/s
    // with up to 400 ms of queueing (tc tbf), and 5% of its packets dropped (iptables). This
    // machine's kernel has no netem, so the delay is the queue's, not a fixed one.
    let pid = docker(&["inspect", "-f", "{{.State.Pid}}", &agents[1]]);
    for cmd in [
        &["tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "256kbit", "burst", "16kbit", "latency", "400ms"]
            [..],
        &["iptables", "-A", "OUTPUT", "-m", "statistic", "--mode", "random", "--probability", "0.05", "-j", "DROP"][..],
    ] {
        let out = Command::new("nsenter")
            .args(["-t", &pid, "-n"])
            .args(cmd)
            .output()
            .expect("nsenter runs (apt-get install util-linux iproute2 iptables)");
        assert!(out.status.success(), "{} in h2's namespace: {}", cmd.join(" "), String::from_utf8_lossy(&out.stderr));
    }

    // h1 is cut off from the collector for the whole partition, spooling, and killed with SIGKILL
    // halfway through it and started again, still cut off (a started container keeps the networks
    // it had).
    docker(&["network", "disconnect", &bed.tag, &agents[0]]);
    let cut = now_s();
    std::thread::sleep(partition() / 2);
    let killed = now_s();
    docker(&["kill", "-s", "KILL", &agents[0]]);
    std::thread::sleep(Duration::from_secs(3));
    docker(&["start", &agents[0]]);
    let restarted = now_s();
    std::thread::sleep(partition() / 2);
    docker(&["network", "connect", &bed.tag, &agents[0]]);

    // The collector is killed under load, stays away (the agents spool), and is started again on
    // the same volume.
    std::thread::sleep(Duration::from_secs(5));
    docker(&["kill", "-s", "KILL", &collector]);
    let collector_killed = now_s();
    std::thread::sleep(outage());
    docker(&["start", &collector]);
    let ip = docker(&["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", &collector]);
    let base = format!("http://{ip}:9470");
    std::thread::sleep(Duration::from_secs(10));

    // The workloads stop; their own logs say how many lines there were.
    for w in &workloads {
        docker(&["kill", "-s", "KILL", w]);
    }
    let last_line = |w: &str| -> u64 {
        let out = Command::new("docker").args(["logs", "--tail", "1", w]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().strip_prefix("line ").and_then(|n| n.parse().ok()).unwrap()
    };
    // h3's data is in the pair of collectors together: what the first held before its death, and
    // what the standby took from then on (the agent stays with it after the first comes back).
    let bases_of = |i: usize| if i == 2 { vec![base.clone(), standby_base.clone()] } else { vec![base.clone()] };
    for (i, w) in workloads.iter().enumerate() {
        let n = last_line(w);
        // Until every line is there, or 90 s; then what is missing is named.
        let deadline = Instant::now() + Duration::from_secs(90);
        let (seen, each) = loop {
            let each: Vec<BTreeMap<u64, usize>> = bases_of(i).iter().map(|b| stored_lines(b, w)).collect();
            let mut seen = BTreeMap::new();
            for (k, c) in each.iter().flatten() {
                *seen.entry(*k).or_insert(0) += c;
            }
            if seen.len() as u64 >= n || Instant::now() > deadline {
                break (seen, each);
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        let missing: Vec<u64> = (1..=n).filter(|i| !seen.contains_key(i)).collect();
        // A collector never stores a line twice. Across the pair, a line is in both only if the first
        // committed its batch and was killed before the ack left: at most the batches in flight then,
        // about a second of this workload's lines (docs/operations.md, "Delivery").
        let mut twice: Vec<(&u64, &usize)> = each.iter().flat_map(|m| m.iter().filter(|(_, c)| **c > 1)).collect();
        let across: Vec<u64> = seen.iter().filter(|(_, c)| **c > 1).map(|(k, _)| *k).collect();
        if across.len() > 10 || across.windows(2).any(|p| p[1] != p[0] + 1) {
            twice.extend(seen.iter().filter(|(_, c)| **c > 1));
        }
        if !(missing.is_empty() && twice.is_empty()) {
            for a in &agents {
                // What the agent says of itself (curl in its network namespace, where it is there).
                let pid = docker(&["inspect", "-f", "{{.State.Pid}}", a]);
                if let Ok(m) =
                    Command::new("nsenter").args(["-t", &pid, "-n", "curl", "-s", "127.0.0.1:9472/metrics"]).output()
                {
                    let m = String::from_utf8_lossy(&m.stdout);
                    let wanted = ["batch", "spool", "queue", "connect", "log_lines", "container"];
                    let lines: Vec<&str> =
                        m.lines().filter(|l| !l.starts_with('#') && wanted.iter().any(|w| l.contains(w))).collect();
                    eprintln!("--- {a} metrics\n{}", lines.join("\n"));
                }
                // Where each thread is, where gdb is installed.
                if let Ok(g) = Command::new("gdb")
                    .args([lookout_bin(), "-p", &pid, "-batch", "-ex", "thread apply all bt 20"])
                    .output()
                {
                    eprintln!("--- {a} threads\n{}", String::from_utf8_lossy(&g.stdout));
                }
            }
            for a in agents.iter().chain([&collector]) {
                let out = Command::new("docker").args(["logs", "--tail", "150", a]).output().unwrap();
                eprintln!("--- {a}\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            }
        }
        assert!(missing.is_empty() && twice.is_empty(), "{w}: {n} lines; missing {missing:?}; twice {twice:?}");
    }

    // Readings every second: no gap but the one the kill made, and none stored twice.
    for (i, h) in hosts.into_iter().enumerate() {
        let mut r: Vec<f64> = bases_of(i).iter().flat_map(|b| readings(b, h)).collect();
        r.sort_by(f64::total_cmp);
        let first = r[0];
        let mut gaps = Vec::new();
        for w in r.windows(2) {
            // Only h3's, across the pair, and only from the second the first collector died.
            let in_flight = h == "h3" && (w[0] - collector_killed).abs() < 3.0;
            assert!(w[1] > w[0] || in_flight, "{h}: a reading at {} is stored twice", w[0]);
            if w[1] - w[0] > 2.5 {
                gaps.push((w[0], w[1]));
            }
        }
        let allowed = |(a, b): &(f64, f64)| h == "h1" && *a >= killed - 2.5 && *b <= restarted + 15.0;
        let bad: Vec<_> = gaps.iter().filter(|g| !allowed(g)).collect();
        assert!(bad.is_empty(), "{h}: readings since {first:.0} have gaps {bad:?} (cut off at {cut:.0}, killed at {killed:.0}, started at {restarted:.0})");
        let during = r.iter().filter(|t| **t > cut + 1.0 && **t < killed - 1.0).count() as f64;
        if h == "h1" {
            assert!(during >= (killed - cut - 3.0) * 0.9, "h1: {during} readings from its partition before the kill");
        }
    }
    // h3 failed over: the standby holds its readings from the outage on, and nothing of the others.
    let standby = readings(&standby_base, "h3");
    let outage_s = outage().as_secs_f64();
    let after_kill = standby.iter().filter(|t| **t > collector_killed + 5.0).count() as f64;
    assert!(after_kill >= outage_s * 0.8, "h3: {after_kill} readings on the standby after the first collector died");
    for h in ["h1", "h2"] {
        assert!(readings(&standby_base, h).is_empty(), "{h} wrote to the standby, which is not in its list");
    }
}
