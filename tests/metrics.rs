//! Container and host metrics end to end: real containers, a real `lookout up` process, answers read
//! through the collector's Prometheus API and compared with what the kernel says.

mod support;

use std::time::Duration;

use support::*;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn one(base: &str, query: &str) -> Option<f64> {
    let r = instant(base, query);
    (r.len() == 1).then(|| value(&r[0]))
}

#[test]
fn container_metrics_agree_with_the_kernel() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let busy = TestContainer::run("busy", &["--cpus", "1"], &["sh", "-c", "while :; do :; done"]);
    let mem = TestContainer::run(
        "mem",
        &["--memory", "64m"],
        &["sh", "-c", "dd if=/dev/zero of=/dev/shm/fill bs=1M count=24 && sleep 100000"],
    );
    let quiet = TestContainer::run(
        "quiet",
        &["--label", "lookout.service=quietsvc", "--label", "lookout.version=7.1"],
        &["sleep", "100000"],
    );
    let lookout = Lookout::up(dir.path(), &[]);
    let base = lookout.url();

    // Within a few intervals every container shows up, tagged as design section 3 says.
    for c in [&busy, &mem, &quiet] {
        let q = format!("container_last_seen{{container=\"{}\"}}", c.name);
        let r = eventually(Duration::from_secs(20), &format!("{} to show up", c.name), || {
            let r = instant(&base, &q);
            (!r.is_empty()).then_some(r)
        });
        assert_eq!(r[0]["metric"]["container_id"], c.id.as_str());
        assert_eq!(r[0]["metric"]["image"], IMAGE);
        assert!(r[0]["metric"]["host"].as_str().is_some_and(|h| !h.is_empty()));
    }
    let q = format!("container_processes{{container=\"{}\"}}", quiet.name);
    let r = instant(&base, &q);
    assert_eq!(r[0]["metric"]["service"], "quietsvc");
    assert_eq!(r[0]["metric"]["version"], "7.1");
    assert_eq!(value(&r[0]), 1.0, "sleep is one process");

    // Every CPU reading lookout took between two readings of the kernel's own counter lies between
    // them: exact whatever else the machine is doing (the busy loop gets less than a core when the
    // cores are shared, so its rate alone says little about lookout).
    let kernel_cpu = || {
        let ns = std::fs::read_to_string(format!("/sys/fs/cgroup/cpuacct/docker/{}/cpuacct.usage", busy.id))
            .expect("cgroup v1 cpuacct of the busy container");
        (now_ms(), ns.trim().parse::<f64>().expect("cpuacct.usage is a number") / 1e9)
    };
    let (t0, k0) = kernel_cpu();
    std::thread::sleep(Duration::from_secs(12));
    let (t1, k1) = kernel_cpu();
    let q = format!("container_cpu_usage_seconds_total{{container=\"{}\"}}[20s]", busy.name);
    let raw = api(&base, "/api/v1/query", &[("query", &q), ("time", &format!("{:.3}", t1 as f64 / 1e3))]);
    let readings: Vec<(i64, f64)> = raw["result"][0]["values"]
        .as_array()
        .expect("a matrix of CPU readings")
        .iter()
        .map(|p| ((p[0].as_f64().unwrap() * 1e3).round() as i64, p[1].as_str().unwrap().parse().unwrap()))
        // A reading is stamped before its files are read: keep those surely taken inside [t0, t1].
        .filter(|&(t, _)| t >= t0 && t <= t1 - 1_000)
        .collect();
    assert!(readings.len() >= 5, "one reading a second for 12 s, got {readings:?}");
    for &(t, v) in &readings {
        assert!(k0 - 1e-6 <= v && v <= k1 + 1e-6, "reading {v} s at {t} outside the kernel's [{k0}, {k1}]");
    }
    // And the quota Docker set for --cpus 1 holds: never more than one core.
    let q = format!("rate(container_cpu_usage_seconds_total{{container=\"{}\"}}[10s])", busy.name);
    let rate = one(&base, &q).expect("one CPU rate series");
    assert!(rate > 0.1 && rate < 1.1, "busy loop CPU rate {rate}, want a busy loop under a one-core quota");
    // And the quota is what Docker set for --cpus 1.
    let quota = one(&base, &format!("container_spec_cpu_quota{{container=\"{}\"}}", busy.name)).unwrap();
    let period = one(&base, &format!("container_spec_cpu_period{{container=\"{}\"}}", busy.name)).unwrap();
    assert_eq!((quota, period), (100_000.0, 100_000.0));

    // The memory limit is exact, and 24 MiB in tmpfs count in the working set.
    let limit = one(&base, &format!("container_spec_memory_limit_bytes{{container=\"{}\"}}", mem.name)).unwrap();
    assert_eq!(limit, 67_108_864.0);
    let ws = one(&base, &format!("container_memory_working_set_bytes{{container=\"{}\"}}", mem.name)).unwrap();
    assert!(ws >= 24.0 * 1048576.0, "working set {ws} below the 24 MiB written to /dev/shm");
    assert!(ws <= limit);
    let kernel_limit: f64 =
        std::fs::read_to_string(format!("/sys/fs/cgroup/memory/docker/{}/memory.limit_in_bytes", mem.id))
            .map(|s| s.trim().parse().unwrap())
            .unwrap_or(limit);
    assert_eq!(limit, kernel_limit);

    // Aggregation across containers works on the stored data.
    let by = instant(&base, "sum by (container) (rate(container_cpu_usage_seconds_total[10s]))");
    assert!(by.len() >= 3, "{by:?}");
    assert!(by.iter().all(|s| s["metric"].as_object().unwrap().len() == 1), "sum by keeps only container");
}

#[test]
fn host_metrics_match_proc() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let lookout = Lookout::up(dir.path(), &[]);
    let base = lookout.url();
    let mem_total =
        eventually(Duration::from_secs(15), "node_memory_MemTotal_bytes", || one(&base, "node_memory_MemTotal_bytes"));
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib: f64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(mem_total, kib * 1024.0);
    let cpus = instant(&base, "count by (cpu) (node_cpu_seconds_total)");
    let nproc = std::thread::available_parallelism().unwrap().get();
    assert!(cpus.len() >= nproc, "{} cpus reported, this machine has {nproc}", cpus.len());
    let load = one(&base, "node_load1").expect("node_load1");
    assert!(load >= 0.0);
}

#[test]
fn docker_unreachable_keeps_host_metrics_flowing_and_says_so_once() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let lookout = Lookout::up(dir.path(), &["--docker-socket", "/nonexistent/docker.sock"]);
    let base = lookout.url();
    eventually(Duration::from_secs(15), "host metrics without Docker", || one(&base, "node_load1"));
    std::thread::sleep(Duration::from_secs(3));
    let log = lookout.log();
    assert_eq!(log.matches("cannot reach Docker").count(), 1, "one warning per outage, not per retry:\n{log}");
    assert!(instant(&base, "container_last_seen").is_empty());
}

/// Raw samples of one series, via an instant query of a range selector.
fn raw_samples(base: &str, selector: &str) -> Vec<(f64, String)> {
    let r = instant(base, &format!("{selector}[1h]"));
    r.first()
        .map(|s| {
            s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_f64().unwrap(), p[1].as_str().unwrap().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_killed_collector_loses_no_acknowledged_sample() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (http, grpc) = (free_addr(), free_addr());
    let mut lookout = Lookout::up_on(dir.path(), http, grpc, &[]);
    let base = lookout.url();
    let selector = "node_memory_MemAvailable_bytes";
    let before = eventually(Duration::from_secs(20), "a few samples", || {
        let s = raw_samples(&base, selector);
        (s.len() >= 5).then_some(s)
    });
    // Whatever a query saw was committed (the head is published only after the commit), so it must
    // survive SIGKILL.
    lookout.kill9();
    let lookout = Lookout::up_on(dir.path(), http, grpc, &[]);
    let after = raw_samples(&lookout.url(), selector);
    for s in &before {
        assert!(after.contains(s), "sample {s:?} lost across a kill -9; after: {after:?}");
    }
    // And new samples keep arriving after the restart.
    let last = before.last().unwrap().0;
    eventually(Duration::from_secs(10), "new samples after the restart", || {
        raw_samples(&lookout.url(), selector).last().filter(|s| s.0 > last + 2.0).map(|_| ())
    });
}

#[test]
fn an_agent_waits_out_a_collector_outage_and_delivers_what_it_queued() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (http, grpc) = (free_addr(), free_addr());
    let mut collector = Lookout::collector_on(&dir.path().join("c"), http, grpc);
    let mut agent = spawn_agent(dir.path(), grpc, "");
    let base = collector.url();
    eventually(Duration::from_secs(15), "first samples", || one(&base, "node_load1"));
    collector.stop();
    let outage_start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    std::thread::sleep(Duration::from_secs(6));
    assert!(agent.try_wait().unwrap().is_none(), "the agent keeps running while the collector is away");
    let collector = Lookout::collector_on(&dir.path().join("c"), http, grpc);
    let base = collector.url();
    // The ticks of the outage arrive: at least 4 of the ~6 one-second ticks lie inside it.
    let got = eventually(Duration::from_secs(30), "the queued ticks", || {
        let s = raw_samples(&base, "node_load1");
        let inside = s.iter().filter(|(t, _)| *t > outage_start && *t < outage_start + 6.0).count();
        (inside >= 4).then_some(inside)
    });
    assert!(got >= 4);
    let _ = agent.kill();
    let _ = agent.wait();
    let log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap();
    assert!(log.contains("cannot reach the collector"), "the outage is reported:\n{log}");
}

#[test]
fn an_agent_killed_while_its_collector_is_away_delivers_its_spool_after_a_restart() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (http, grpc) = (free_addr(), free_addr());
    let mut collector = Lookout::collector_on(&dir.path().join("c"), http, grpc);
    let mut agent = spawn_agent(dir.path(), grpc, "");
    let base = collector.url();
    eventually(Duration::from_secs(15), "first samples", || one(&base, "node_load1"));
    collector.stop();
    let outage_start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    std::thread::sleep(Duration::from_secs(6));
    // SIGKILL: nothing in memory survives, only what the spool wrote.
    let _ = agent.kill();
    let _ = agent.wait();
    let spooled: u64 = std::fs::read_dir(dir.path().join("agent/spool"))
        .expect("the agent keeps a spool under its state dir")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(spooled > 0, "the outage's batches are on disk");
    let mut agent = spawn_agent(dir.path(), grpc, "");
    std::thread::sleep(Duration::from_secs(2));
    let collector = Lookout::collector_on(&dir.path().join("c"), http, grpc);
    let base = collector.url();
    // The ticks read before the kill arrive: at least 4 of the ~6 one-second ticks inside the outage.
    let got = eventually(Duration::from_secs(30), "the spooled ticks", || {
        let s = raw_samples(&base, "node_load1");
        let inside = s.iter().filter(|(t, _)| *t > outage_start && *t < outage_start + 6.0).count();
        (inside >= 4).then_some(s)
    });
    let mut stamps: Vec<u64> = got.iter().map(|(t, _)| (t * 1000.0) as u64).collect();
    let n = stamps.len();
    stamps.dedup();
    assert_eq!(stamps.len(), n, "no sample is stored twice");
    let _ = agent.kill();
    let _ = agent.wait();
    let log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap();
    assert!(log.contains("spooled batches from before are sent first"), "the restarted agent says so:\n{log}");
}

#[test]
fn two_agents_on_one_engine_each_take_only_the_containers_their_filter_names() {
    let _serial = serial();
    ensure_image();
    let dir = tempfile::tempdir().unwrap();
    let (http, grpc) = (free_addr(), free_addr());
    let collector = Lookout::collector_on(&dir.path().join("c"), http, grpc);
    let a = TestContainer::run("filter-a", &["--label", "lookout.host=fa"], &["sleep", "100000"]);
    let b = TestContainer::run("filter-b", &["--label", "lookout.host=fb"], &["sleep", "100000"]);
    let other = TestContainer::run("filter-none", &[], &["sleep", "100000"]);
    let mut agents = Vec::new();
    for host in ["fa", "fb"] {
        let d = dir.path().join(host);
        std::fs::create_dir_all(&d).unwrap();
        let extra = format!("host = \"{host}\"\n[discover]\ninclude_labels = [\"lookout.host={host}\"]\n");
        agents.push(spawn_agent(&d, grpc, &extra));
    }
    let base = collector.url();
    let hosts_of = |name: &str| -> Vec<String> {
        let r = instant(&base, &format!("container_last_seen{{container=\"{name}\"}}"));
        let mut h: Vec<String> = r.iter().map(|s| s["metric"]["host"].as_str().unwrap_or("").to_string()).collect();
        h.sort();
        h
    };
    eventually(Duration::from_secs(20), "both containers, each by its own agent", || {
        (hosts_of(&a.name) == ["fa"] && hosts_of(&b.name) == ["fb"]).then_some(())
    });
    // A few more ticks: neither agent picks up the other's container, nor the one no filter names.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(hosts_of(&a.name), ["fa"]);
    assert_eq!(hosts_of(&b.name), ["fb"]);
    assert!(hosts_of(&other.name).is_empty(), "a container no filter includes is nobody's");
    for mut a in agents {
        let _ = a.kill();
        let _ = a.wait();
    }
}

#[test]
fn garbage_on_the_grpc_port_does_not_hurt_the_collector() {
    use std::io::Write;
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let lookout = Lookout::up(dir.path(), &[]);
    for junk in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0u8; 4096][..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff",
    ] {
        let mut s = std::net::TcpStream::connect(lookout.grpc).unwrap();
        let _ = s.write_all(junk);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut s, &mut sink);
    }
    let base = lookout.url();
    let before =
        eventually(Duration::from_secs(10), "samples", || raw_samples(&base, "node_load1").last().map(|s| s.0));
    eventually(Duration::from_secs(10), "ingest still working", || {
        raw_samples(&base, "node_load1").last().filter(|s| s.0 > before).map(|_| ())
    });
}

#[test]
fn bad_config_names_file_line_and_key_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    std::fs::write(&file, "interval = \"10s\"\ncolectors = [\"http://x:1\"]\n").unwrap();
    let out =
        std::process::Command::new(lookout_bin()).args(["check-config", file.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(file.to_str().unwrap()) && err.contains("line 2") && err.contains("colectors"), "{err}");
    let packaged = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/collector.toml");
    let out = std::process::Command::new(lookout_bin()).args(["check-config", packaged]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn containers_started_later_are_found_through_events_and_dropped_when_they_stop() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let lookout = Lookout::up(dir.path(), &[]);
    let base = lookout.url();
    eventually(Duration::from_secs(15), "the agent's first tick", || one(&base, "node_load1"));
    let late = TestContainer::run("late", &[], &["sleep", "100000"]);
    let q = format!("container_last_seen{{container=\"{}\"}}", late.name);
    eventually(Duration::from_secs(10), "the late container", || one(&base, &q));
    let out = std::process::Command::new("docker").args(["stop", "-t", "0", &late.id]).output().unwrap();
    assert!(out.status.success());
    // Once it is gone, its series end with a stale marker at once (not after the 5 minute lookback)...
    eventually(Duration::from_secs(5), "the stopped container to vanish from instant queries", || {
        instant(&base, &q).is_empty().then_some(())
    });
    // ...and get no more samples.
    let last = raw_samples(&base, &format!("container_last_seen{{container=\"{}\"}}", late.name));
    std::thread::sleep(Duration::from_secs(3));
    let later = raw_samples(&base, &format!("container_last_seen{{container=\"{}\"}}", late.name));
    assert_eq!(last, later, "no samples after the container stopped");
}

#[test]
fn the_agent_serves_its_readings_and_its_own_metrics() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let c = TestContainer::run("scrape", &["--memory", "32m"], &["sleep", "100000"]);
    let lookout = Lookout::up(dir.path(), &[]);
    let url = format!("http://{}/metrics", lookout.agent_metrics.unwrap());
    let body = eventually(Duration::from_secs(15), "the agent's /metrics with the container", || {
        let text = reqwest::blocking::get(&url).ok()?.text().ok()?;
        text.contains(&format!("container=\"{}\"", c.name)).then_some(text)
    });
    let limit_line = body
        .lines()
        .find(|l| l.starts_with("container_spec_memory_limit_bytes{") && l.contains(&c.name))
        .expect("the memory limit line");
    assert!(limit_line.contains(" 33554432 "), "{limit_line}");
    assert!(body.contains("# TYPE container_cpu_usage_seconds_total counter"));
    assert!(body.contains("lookout_agent_acked_batches_total"), "self-metrics are served too");
}

#[test]
fn a_collector_with_tokens_refuses_agents_without_one_and_agents_speaking_for_another_host() {
    use std::os::unix::fs::PermissionsExt;
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (http, grpc) = (free_addr(), free_addr());
    let (token, reader) = ("s3cret-token-for-tests-0123456789", "a-reader-token-for-tests-0123456");
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        format!(
            "# name scopes sha256 hosts\nfriend agent {} friend\ngrafana read {}\n",
            lookout_collector::auth::hash_hex(token),
            lookout_collector::auth::hash_hex(reader)
        ),
    )
    .unwrap();
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600)).unwrap();
    let collector = Lookout::collector_with(
        &dir.path().join("c"),
        http,
        grpc,
        &format!("tokens_file = \"{}\"\n", tokens.display()),
    );
    // Reads need the read token too; basic auth as Grafana sends it, from the URL's user and password.
    let base = format!("http://grafana:{reader}@{http}");
    assert_eq!(reqwest::blocking::get(format!("{}/api/v1/labels", collector.url())).unwrap().status(), 401);
    let agent_dir = |name: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    let (nobody, friend, impostor) = (agent_dir("nobody"), agent_dir("friend"), agent_dir("impostor"));
    let mut without = spawn_agent(&nobody, grpc, "host = \"intruder\"\n");
    let mut with = spawn_agent(&friend, grpc, &format!("host = \"friend\"\ntoken = \"{token}\"\n"));
    let mut other = spawn_agent(&impostor, grpc, &format!("host = \"impostor\"\ntoken = \"{token}\"\n"));
    eventually(Duration::from_secs(15), "the friendly agent's samples", || one(&base, "node_load1{host=\"friend\"}"));
    eventually(Duration::from_secs(15), "the impostor refused and counted", || {
        let m = reqwest::blocking::get(format!("{base}/metrics")).ok()?.text().ok()?;
        m.lines().any(|l| l.starts_with("lookout_collector_ingest_refused_total{reason=\"host\"}")).then_some(())
    });
    assert!(instant(&base, "node_load1{host=\"intruder\"}").is_empty());
    assert!(instant(&base, "node_load1{host=\"impostor\"}").is_empty(), "nothing of the impostor is stored");
    // The CLI sends a token from a file (or LOOKOUT_TOKEN), never from its command line.
    let token_file = dir.path().join("reader.token");
    std::fs::write(&token_file, format!("{reader}\n")).unwrap();
    let query = |extra: &[&str], env: Option<&str>| {
        let mut c = std::process::Command::new(lookout_bin());
        c.args(["query", "--collector", &collector.url()]).args(extra).arg("node_load1{host=\"friend\"}");
        c.env_remove("LOOKOUT_TOKEN");
        if let Some(t) = env {
            c.env("LOOKOUT_TOKEN", t);
        }
        c.output().unwrap()
    };
    let out = query(&["--token-file", token_file.to_str().unwrap()], None);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("host=\"friend\""), "{out:?}");
    assert!(query(&[], Some(reader)).status.success(), "LOOKOUT_TOKEN serves as well");
    let out = query(&[], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("credentials needed"), "{out:?}");
    for c in [&mut without, &mut with, &mut other] {
        let _ = c.kill();
        let _ = c.wait();
    }
    let log = std::fs::read_to_string(nobody.join("agent.log")).unwrap();
    assert!(log.contains("missing bearer token"), "the refused agent says why:\n{log}");
    let log = std::fs::read_to_string(impostor.join("agent.log")).unwrap();
    assert!(log.contains("token friend speaks for hosts friend, not for host"), "the impostor says why:\n{log}");
    assert!(!collector.log().contains(token) && !collector.log().contains(reader), "no token is ever logged");
}

#[test]
fn container_series_carry_cadvisors_labels_and_their_own_disk_usage() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // A named volume that two containers share: it is neither's own.
    let shared = format!("lookout-test-shared-{}", std::process::id());
    let _volume = Volume(shared.clone());
    let mount = format!("source={shared},target=/shared");
    // Once /go exists, writes 50 MiB into its writable layer, 20 MiB into its anonymous volume and
    // 10 MiB into the shared one, so the test sees the usage before and after.
    let c = TestContainer::run(
        "fsuse",
        &["--label", "com.example.team=payments", "--label", "com.example.unlisted=x", "-v", "/own", "--mount", &mount],
        &[
            "sh",
            "-c",
            "while [ ! -e /go ]; do sleep 0.2; done; dd if=/dev/zero of=/fill bs=1M count=50; \
             dd if=/dev/zero of=/own/fill bs=1M count=20; dd if=/dev/zero of=/shared/fill bs=1M count=10; \
             sync; sleep 100000",
        ],
    );
    let _other = TestContainer::run("fsshare", &["--mount", &mount], &["sleep", "100000"]);
    let lookout = Lookout::up(dir.path(), &["--include-label", "com.example.team", "--fs-usage-refresh", "2s"]);
    let base = lookout.url();
    let q = format!("container_cpu_usage_seconds_total{{name=\"{}\"}}", c.name);
    let r = eventually(Duration::from_secs(20), "the container's cpu series by cAdvisor's name", || {
        let r = instant(&base, &q);
        (!r.is_empty()).then_some(r)
    });
    let m = &r[0]["metric"];
    assert_eq!(m["id"], format!("/docker/{}", c.id), "{m}");
    assert_eq!(m["image"], IMAGE, "{m}");
    assert_eq!(m["job"], "cadvisor", "{m}");
    assert_eq!(m["instance"], m["host"], "{m}");
    assert_eq!(m["container_label_com_example_team"], "payments", "{m}");
    assert!(m.get("container_label_com_example_unlisted").is_none(), "not in the allowlist: {m}");
    // The host's own series look like a scrape of node_exporter.
    let load = instant(&base, "node_load1");
    assert_eq!(load.len(), 1, "{load:?}");
    assert_eq!(load[0]["metric"]["job"], "node");
    assert_eq!(load[0]["metric"]["instance"], m["host"]);

    let usage_q = format!("container_fs_usage_bytes{{name=\"{}\"}}", c.name);
    let before = eventually(Duration::from_secs(20), "a first disk usage of the layer", || one(&base, &usage_q));
    // cAdvisor's device label: the filesystem under the layer, as node_filesystem_* names it.
    let usage = instant(&base, &usage_q);
    let device = usage[0]["metric"]["device"].as_str().unwrap_or_default().to_string();
    assert!(
        !instant(&base, &format!("node_filesystem_size_bytes{{device=\"{device}\"}}")).is_empty(),
        "a node_filesystem device: {usage:?}"
    );
    let limit = one(&base, &format!("container_fs_limit_bytes{{name=\"{}\"}}", c.name));
    assert!(limit.is_some_and(|l| l > before + 50.0 * 1048576.0), "the layer's filesystem size: {limit:?}");
    // Its processes' open files, counted from /proc without entering it: the shell's standard three
    // at least, and no socket.
    let fds_q = format!("container_file_descriptors{{name=\"{}\"}}", c.name);
    let fds = eventually(Duration::from_secs(20), "its open files", || one(&base, &fds_q));
    assert!(fds >= 3.0, "container_file_descriptors {fds}");
    assert_eq!(one(&base, &format!("container_sockets{{name=\"{}\"}}", c.name)), Some(0.0));
    let out = std::process::Command::new("docker").args(["exec", &c.name, "touch", "/go"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Refresh 2 s plus one interval of delivery; 70 MiB of blocks (the layer's and its own volume's,
    // not the shared volume's), plus at most a few of ext4's indirect blocks.
    let after = eventually(Duration::from_secs(15), "the usage to grow by 70 MiB", || {
        one(&base, &usage_q).filter(|v| v - before >= 70.0 * 1048576.0)
    });
    // One more refresh, so that a walk which had not yet reached the shared volume is not what is seen.
    std::thread::sleep(Duration::from_secs(5));
    let grown = one(&base, &usage_q).unwrap_or(after) - before;
    assert!(grown < 71.0 * 1048576.0, "grew by {grown} bytes for 70 MiB written to its own trees");
}

/// A named Docker volume, removed when the test ends (after its containers, declared later).
struct Volume(String);

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker").args(["volume", "rm", "-f", &self.0]).output();
    }
}
