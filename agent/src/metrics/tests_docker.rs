//! Cgroup and network readers against real containers, run with the `docker` CLI.
//!
//! The development machine runs Docker on cgroup v1 (cgroupfs driver) with the hybrid unified tree,
//! so this is where v1 is tested; the checks are on metrics, not files, so they hold on v2 as well.
//! Needs the local image `lookout-test-busybox:latest` (see [`IMAGE_HELP`]). Containers are named
//! `lookout-test-metrics-*`, labelled `lookout.test=1`, and removed by a guard even when a test
//! panics. The tests take a lock so that only one runs containers at a time (2-core machine; and the
//! timing test should not share the cpu with the busy loop).

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::cgroup::{detect, resolve, CgroupDirs, ContainerCgroup, Layout};
use super::net::ContainerNet;
use super::tests_fixtures::value;
use crate::model::{ContainerId, Sample};

const IMAGE: &str = "lookout-test-busybox:latest";
const IMAGE_HELP: &str = "the test image lookout-test-busybox:latest is missing; build it with:\n  \
mkdir -p /tmp/bb/bin && cp \"$(command -v busybox)\" /tmp/bb/bin/ && \
for a in $(/tmp/bb/bin/busybox --list); do [ \"$a\" = busybox ] || ln -sf busybox /tmp/bb/bin/$a; done && \
tar -C /tmp/bb -c . | docker import - lookout-test-busybox:latest";

static DOCKER: Mutex<()> = Mutex::new(());

/// A running test container, removed (`docker rm -f`) on drop.
struct Container {
    name: String,
    id: ContainerId,
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.name]).output();
    }
}

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker").args(args).output().expect("running the docker CLI")
}

fn require_image() {
    let out = docker(&["image", "inspect", "--format", "{{.Id}}", IMAGE]);
    assert!(out.status.success(), "{IMAGE_HELP}\n(docker said: {})", String::from_utf8_lossy(&out.stderr).trim());
}

impl Container {
    fn run(suffix: &str, opts: &[&str], cmd: &str) -> Container {
        require_image();
        let name = format!("lookout-test-metrics-{suffix}-{}", std::process::id());
        let _ = docker(&["rm", "-f", &name]);
        let mut args = vec!["run", "-d", "--name", &name, "--label", "lookout.test=1"];
        args.extend_from_slice(opts);
        args.extend_from_slice(&[IMAGE, "sh", "-c", cmd]);
        let out = docker(&args);
        // Guard first, so a half-created container is removed too.
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let guard = Container {
            name,
            id: ContainerId::parse(&id).unwrap_or_else(|| ContainerId::parse(&"0".repeat(64)).unwrap()),
        };
        assert!(out.status.success(), "docker run failed: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(guard.id.as_str(), id, "docker run printed no full id");
        guard
    }

    fn pid(&self) -> u32 {
        let out = docker(&["inspect", "--format", "{{.State.Pid}}", &self.name]);
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("container pid")
    }

    fn cgroup(&self) -> ContainerCgroup {
        ContainerCgroup::open(&layout(), Path::new("/proc"), &self.id, Some(self.pid()))
    }
}

fn layout() -> Layout {
    detect(Path::new("/sys/fs/cgroup"))
}

pub(super) fn lock() -> std::sync::MutexGuard<'static, ()> {
    DOCKER.lock().unwrap_or_else(|e| e.into_inner())
}

fn read(cg: &mut ContainerCgroup) -> Vec<Sample> {
    let mut out = Vec::new();
    cg.read(&mut out).unwrap_or_else(|e| panic!("read: {e}"));
    out
}

/// Reads until `metric` satisfies `ok`, for up to `secs` seconds; returns the last value seen.
fn wait_for(cg: &mut ContainerCgroup, metric: &str, secs: u64, ok: impl Fn(f64) -> bool) -> Option<f64> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = value(&read(cg), metric);
        if v.is_some_and(&ok) || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Microseconds per read, files kept open vs reopened each time; the better of two rounds each.
pub(super) fn time_reads(cg: &mut ContainerCgroup, n: u32) -> (f64, f64) {
    let mut out = Vec::with_capacity(64);
    let mut round = |reopen: bool| {
        let start = Instant::now();
        for _ in 0..n {
            out.clear();
            let r = if reopen { cg.read_reopening(&mut out) } else { cg.read(&mut out) };
            r.expect("read");
        }
        start.elapsed().as_secs_f64() * 1e6 / f64::from(n)
    };
    round(false); // warm up
    let (k1, r1, k2, r2) = (round(false), round(true), round(false), round(true));
    (k1.min(k2), r1.min(r2))
}

#[test]
fn real_layout_and_resolution() {
    let _l = lock();
    let c = Container::run("resolve", &[], "sleep 600");
    let layout = layout();
    eprintln!("layout: {layout:?}");
    let with_pid = resolve(&layout, Path::new("/proc"), &c.id, Some(c.pid()));
    let without = resolve(&layout, Path::new("/proc"), &c.id, None);
    assert_eq!(with_pid, without, "pid-based and conventional paths differ");
    match &with_pid {
        CgroupDirs::V1 { cpu, cpuacct, memory, blkio, pids, unified } => {
            for d in [cpu, cpuacct, memory, blkio, pids] {
                let d = d.as_ref().expect("every v1 controller is mounted here");
                assert!(d.is_dir() && d.ends_with(c.id.as_str()), "{d:?}");
            }
            if let Layout::V1 { unified: Some(_), .. } = layout {
                assert!(unified.as_ref().is_some_and(|u| u.is_dir()), "hybrid tree without the container: {unified:?}");
            }
        }
        CgroupDirs::V2 { dir } => assert!(dir.as_ref().is_some_and(|d| d.is_dir()), "{dir:?}"),
    }
    let mut cg = c.cgroup();
    let out = read(&mut cg);
    for s in &out {
        eprintln!("  {} = {}", s.name, s.value);
    }
    for name in ["container_cpu_usage_seconds_total", "container_memory_usage_bytes", "container_processes"] {
        assert!(value(&out, name).is_some(), "{name} missing: {out:?}");
    }
    // No --memory: unlimited reads as 0; no --cpus: no quota.
    assert_eq!(value(&out, "container_spec_memory_limit_bytes"), Some(0.0));
    assert_eq!(value(&out, "container_spec_cpu_quota"), None);
}

#[test]
fn memory_limit_is_reported() {
    let _l = lock();
    let c = Container::run("memlimit", &["--memory", "64m"], "sleep 600");
    let out = read(&mut c.cgroup());
    assert_eq!(value(&out, "container_spec_memory_limit_bytes"), Some(67108864.0));
}

#[test]
fn cpu_quota_and_throttling() {
    let _l = lock();
    let c = Container::run("cpu", &["--cpus", "0.5"], "while :; do :; done");
    let mut cg = c.cgroup();
    let before = read(&mut cg);
    assert_eq!(value(&before, "container_spec_cpu_quota"), Some(50000.0));
    assert_eq!(value(&before, "container_spec_cpu_period"), Some(100000.0));
    std::thread::sleep(Duration::from_secs(2));
    let after = read(&mut cg);
    let grew = |name: &str| {
        let (b, a) = (value(&before, name).unwrap(), value(&after, name).unwrap());
        assert!(a > b, "{name} did not rise: {b} -> {a}");
        a - b
    };
    let throttled = grew("container_cpu_cfs_throttled_periods_total");
    assert!(throttled >= 5.0, "only {throttled} throttled periods in 2 s");
    grew("container_cpu_cfs_periods_total");
    grew("container_cpu_cfs_throttled_seconds_total");
    let used = grew("container_cpu_usage_seconds_total");
    assert!(used > 0.3 && used < 1.5, "a 0.5-cpu busy loop used {used} s of cpu in ~2 s");
    grew("container_cpu_user_seconds_total");
    if matches!(layout(), Layout::V1 { unified: Some(_), .. } | Layout::V2 { .. }) {
        // Waiting for the cpu is what a throttled busy loop does (PSI from the unified tree).
        grew("container_pressure_cpu_waiting_seconds_total");
    }
}

#[test]
fn working_set_counts_shared_memory() {
    let _l = lock();
    let cmd = "dd if=/dev/zero of=/dev/shm/x bs=1M count=40 2>/dev/null; sleep 600";
    let c = Container::run("workingset", &["--shm-size", "100m"], cmd);
    let mut cg = c.cgroup();
    let ws = wait_for(&mut cg, "container_memory_working_set_bytes", 15, |v| v >= 30e6);
    assert!(ws.is_some_and(|v| v >= 30e6), "working set {ws:?} after writing 40 MB to /dev/shm");
    let out = read(&mut cg);
    let usage = value(&out, "container_memory_usage_bytes").unwrap();
    assert!(usage >= ws.unwrap() * 0.9, "usage {usage} < working set {ws:?}");
    // tmpfs pages are page cache (cache), not rss.
    assert!(value(&out, "container_memory_cache").unwrap() >= 30e6, "{out:?}");
}

#[test]
fn process_count_matches() {
    let _l = lock();
    let c = Container::run("procs", &[], "sleep 600 & sleep 600 & sleep 600 & wait");
    let mut cg = c.cgroup();
    let n = wait_for(&mut cg, "container_processes", 10, |v| v == 4.0);
    assert_eq!(n, Some(4.0), "sh and three sleeps");
    let top = docker(&["top", &c.name]);
    let listed = String::from_utf8_lossy(&top.stdout).lines().skip(1).filter(|l| !l.trim().is_empty()).count();
    assert_eq!(listed, 4, "docker top lists {listed}");
}

#[test]
fn oom_kill_is_counted() {
    let _l = lock();
    // busybox tail keeps the last "line" of /dev/zero, which never ends: it grows until killed.
    let c = Container::run("oom", &["--memory", "16m"], "tail /dev/zero; sleep 600");
    let mut cg = c.cgroup();
    let ooms = wait_for(&mut cg, "container_oom_events_total", 20, |v| v >= 1.0);
    assert!(ooms.is_some_and(|v| v >= 1.0), "container_oom_events_total {ooms:?}");
}

#[test]
fn container_removed_mid_life_is_skipped() {
    let _l = lock();
    let c = Container::run("removed", &[], "sleep 600");
    let pid = c.pid();
    let mut cg = c.cgroup();
    let mut net = ContainerNet::new(Path::new("/proc"), pid);
    assert!(!read(&mut cg).is_empty());
    let mut out = Vec::new();
    net.read(&mut out).unwrap();
    assert!(!out.is_empty());
    let id = c.id.clone();
    drop(c); // docker rm -f
    let mut out = Vec::new();
    cg.read(&mut out).expect("a vanished cgroup is skipped, not an error");
    assert!(out.is_empty(), "{out:?}");
    assert!(cg.is_gone(), "{cg:?}");
    cg.read(&mut out).expect("and stays skipped");
    net.read(&mut out).expect("a gone pid is skipped");
    assert!(out.is_empty(), "{out:?}");
    // Resolving again, pid gone: nothing found, nothing to read.
    let mut again = ContainerCgroup::open(&layout(), Path::new("/proc"), &id, Some(pid));
    assert!(again.is_gone());
    assert!(read(&mut again).is_empty());
}

#[test]
fn container_network_interfaces() {
    let _l = lock();
    let c = Container::run("net", &[], "sleep 600");
    let mut out = Vec::new();
    ContainerNet::new(Path::new("/proc"), c.pid()).read(&mut out).unwrap();
    let ifaces: Vec<_> = out.iter().map(|s| s.labels[0].1.as_str()).collect();
    assert!(ifaces.contains(&"eth0"), "{out:?}");
    assert!(!ifaces.contains(&"lo"), "{out:?}");
}

#[test]
fn timing_real_container_open_kept_vs_reopen() {
    let _l = lock();
    let c = Container::run("timing", &[], "sleep 600");
    let mut cg = c.cgroup();
    let n = 10_000;
    let (kept, reopen) = time_reads(&mut cg, n);
    eprintln!(
        "real container ({} files, {:?}): {n} reads: open-kept {kept:.2} µs/read, reopen {reopen:.2} µs/read ({:.1}x)",
        cg.open_files().len(),
        match layout() {
            Layout::V1 { .. } => "cgroup v1",
            Layout::V2 { .. } => "cgroup v2",
        },
        reopen / kept
    );
}

#[test]
fn open_files_and_sockets_of_a_real_containers_processes() {
    use super::fds::count;
    let _l = lock();
    // Two processes (the shell and nc, or sleep if the shell execs it): each has stdin, stdout and
    // stderr, and nc a listening socket.
    let c = Container::run("fds", &[], "nc -l -p 8080 & sleep 600");
    let procs = c.cgroup().dirs().procs_file().expect("the container's cgroup.procs");
    let deadline = Instant::now() + Duration::from_secs(10);
    let counts = loop {
        let counts = count(&procs, Path::new("/proc")).expect("cgroup.procs is readable");
        if counts.sockets >= 1 || Instant::now() > deadline {
            break counts;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(counts.sockets, 1, "nc's listening socket: {counts:?}");
    assert!(counts.fds >= 7, "three standard files per process and the socket: {counts:?}");
}
