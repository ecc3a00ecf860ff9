//! Cgroup readers against fixture trees.
//!
//! cgroup v2 controllers are not mounted on the development machine (it runs cgroup v1 with a hybrid
//! unified tree that has no controllers), so v2 is tested against fixture trees under
//! `testdata/cgroup/` whose files follow the kernel's documented formats (cgroup-v2.rst, PSI in
//! psi.rst): `v2-systemd` (systemd driver, `system.slice/docker-<id>.scope`) and `v2-cgroupfs`
//! (`docker/<id>`), with `testdata/proc/<pid>/cgroup` files pointing into them. v1 is tested against
//! real containers in `tests_docker`; here only its path resolution, on small trees built in a temp dir.

use std::fs;
use std::path::{Path, PathBuf};

use super::cgroup::{detect, resolve, CgroupDirs, CgroupError, ContainerCgroup, Layout};
use super::testdata;
use crate::model::{ContainerId, Sample};

pub(super) const SYSTEMD_ID: &str = "35f95d053f6256a15931ba759eaadd3d9b59d74aa47e730a1cd95832a717472e";
pub(super) const CGROUPFS_ID: &str = "d41254dfe5bf4ecd4b67439e8a881f95b3d7689ab8f188f6aa8bd4d02ecc5f6a";

/// The value of the one unlabelled sample called `name`.
pub(super) fn value(out: &[Sample], name: &str) -> Option<f64> {
    let mut it = out.iter().filter(|s| s.name == name);
    let v = it.next().map(|s| s.value);
    assert!(it.next().is_none(), "{name} appears twice");
    v
}

fn id(s: &str) -> ContainerId {
    ContainerId::parse(s).unwrap()
}

fn proc_root() -> PathBuf {
    testdata().join("proc")
}

fn systemd_root() -> PathBuf {
    testdata().join("cgroup/v2-systemd")
}

fn systemd_dir() -> PathBuf {
    systemd_root().join(format!("system.slice/docker-{SYSTEMD_ID}.scope"))
}

fn read_all(cg: &mut ContainerCgroup) -> Vec<Sample> {
    let mut out = Vec::new();
    cg.read(&mut out).unwrap();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn detects_v2_and_hybrid_v1() {
    assert_eq!(detect(&systemd_root()), Layout::V2 { root: systemd_root() });
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(detect(tmp.path()), Layout::V1 { root: tmp.path().into(), unified: None });
    fs::create_dir_all(tmp.path().join("unified")).unwrap();
    fs::write(tmp.path().join("unified/cgroup.controllers"), "").unwrap();
    let unified = Some(tmp.path().join("unified"));
    assert_eq!(detect(tmp.path()), Layout::V1 { root: tmp.path().into(), unified });
}

#[test]
fn v2_resolves_from_pid_and_by_convention() {
    let layout = detect(&systemd_root());
    let want = CgroupDirs::V2 { dir: Some(systemd_dir()) };
    // From /proc/4242/cgroup, with no pid, with a gone pid, and with a recycled pid in another group.
    for pid in [Some(4242), None, Some(999_999_999), Some(4244)] {
        assert_eq!(resolve(&layout, &proc_root(), &id(SYSTEMD_ID), pid), want, "pid {pid:?}");
    }
    let root = testdata().join("cgroup/v2-cgroupfs");
    let layout = detect(&root);
    let want = CgroupDirs::V2 { dir: Some(root.join(format!("docker/{CGROUPFS_ID}"))) };
    for pid in [Some(4243), None] {
        assert_eq!(resolve(&layout, &proc_root(), &id(CGROUPFS_ID), pid), want, "pid {pid:?}");
    }
    // A container of another id is nowhere.
    assert_eq!(resolve(&layout, &proc_root(), &id(SYSTEMD_ID), None), CgroupDirs::V2 { dir: None });
}

#[test]
fn v2_nested_path_comes_from_pid() {
    let layout = detect(&systemd_root());
    let dirs = resolve(&layout, &proc_root(), &id(SYSTEMD_ID), Some(4245));
    let nested =
        format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0c1d.slice/docker-{SYSTEMD_ID}.scope");
    assert_eq!(dirs, CgroupDirs::V2 { dir: Some(systemd_root().join(nested)) });
    // That group does not exist in the fixture: nothing to read, and no error.
    let mut cg = ContainerCgroup::from_dirs(dirs);
    assert!(cg.is_gone());
    assert!(read_all(&mut cg).is_empty());
}

#[test]
fn v2_systemd_reads_every_metric() {
    let layout = detect(&systemd_root());
    let mut cg = ContainerCgroup::open(&layout, &proc_root(), &id(SYSTEMD_ID), Some(4242));
    assert_eq!(cg.open_files().len(), 12, "{cg:?}");
    let out = read_all(&mut cg);
    let want: &[(&str, f64)] = &[
        ("container_cpu_usage_seconds_total", 7.435125),
        ("container_cpu_user_seconds_total", 5.120533),
        ("container_cpu_system_seconds_total", 2.314592),
        ("container_cpu_cfs_periods_total", 1520.0),
        ("container_cpu_cfs_throttled_periods_total", 87.0),
        ("container_cpu_cfs_throttled_seconds_total", 2.153921),
        ("container_spec_cpu_quota", 50000.0),
        ("container_spec_cpu_period", 100000.0),
        ("container_memory_usage_bytes", 52428800.0),
        ("container_memory_working_set_bytes", (52428800 - 12582912) as f64),
        ("container_memory_rss", 31457280.0),
        ("container_memory_cache", 18874368.0),
        ("container_spec_memory_limit_bytes", 67108864.0),
        ("container_oom_events_total", 2.0),
        ("container_fs_reads_bytes_total", (1459200 + 90430464) as f64),
        ("container_fs_writes_bytes_total", (314773504 + 299008000) as f64),
        ("container_processes", 7.0),
        ("container_threads", 7.0),
        ("container_threads_max", 4096.0),
        ("container_memory_mapped_file", 5636096.0),
        // memory.events "max": how often usage hit memory.max, cAdvisor's failcnt on v2.
        ("container_memory_failcnt", 12.0),
        ("container_pressure_cpu_waiting_seconds_total", 3.125),
        ("container_pressure_cpu_stalled_seconds_total", 2.5),
        ("container_pressure_memory_waiting_seconds_total", 0.000042),
        ("container_pressure_memory_stalled_seconds_total", 0.000017),
        ("container_pressure_io_waiting_seconds_total", 1.0),
        ("container_pressure_io_stalled_seconds_total", 0.5),
    ];
    for &(name, v) in want {
        let got = value(&out, name).unwrap_or_else(|| panic!("{name} missing from {out:?}"));
        assert!((got - v).abs() < 1e-9, "{name}: got {got}, want {v}");
    }
    assert_eq!(out.len(), want.len(), "{out:?}");
    assert!(out.iter().all(|s| s.labels.is_empty()));
    // Reading again gives the same (the files stay open and are re-read from offset 0).
    assert_eq!(read_all(&mut cg), out);
}

#[test]
fn v2_cgroupfs_unlimited_and_without_psi() {
    let root = testdata().join("cgroup/v2-cgroupfs");
    let mut cg = ContainerCgroup::open(&detect(&root), &proc_root(), &id(CGROUPFS_ID), Some(4243));
    let out = read_all(&mut cg);
    // memory.max "max" → 0 as cAdvisor; cpu.max "max 100000" → no quota, so neither spec_cpu metric.
    assert_eq!(value(&out, "container_spec_memory_limit_bytes"), Some(0.0));
    assert_eq!(value(&out, "container_spec_cpu_quota"), None);
    assert_eq!(value(&out, "container_spec_cpu_period"), None);
    // inactive_file above memory.current (possible between the two reads) clamps at 0.
    assert_eq!(value(&out, "container_memory_working_set_bytes"), Some(0.0));
    assert_eq!(value(&out, "container_oom_events_total"), Some(0.0));
    // An empty io.stat (no I/O yet) is zero, not an error.
    assert_eq!(value(&out, "container_fs_reads_bytes_total"), Some(0.0));
    assert_eq!(value(&out, "container_processes"), Some(1.0));
    assert!(out.iter().all(|s| !s.name.starts_with("container_pressure_")), "no PSI files here: {out:?}");
}

#[test]
fn missing_file_is_skipped_and_garbage_is_reported_with_path_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(format!("system.slice/docker-{SYSTEMD_ID}.scope"));
    copy_dir(&systemd_dir(), &dir);
    fs::write(tmp.path().join("cgroup.controllers"), "cpu io memory pids\n").unwrap();
    fs::remove_file(dir.join("memory.stat")).unwrap();
    fs::write(dir.join("cpu.stat"), "usage_usec 1000000\nuser_usec lots\n").unwrap();
    let mut cg = ContainerCgroup::open(&detect(tmp.path()), &proc_root(), &id(SYSTEMD_ID), None);
    let mut out = Vec::new();
    let err = cg.read(&mut out).unwrap_err();
    match &err {
        CgroupError::Parse { path, line, text } => {
            assert_eq!(path, &dir.join("cpu.stat"));
            assert_eq!((*line, text.as_str()), (2, "user_usec lots"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("cpu.stat:2"), "{err}");
    // The good line of the bad file and every other file still count.
    assert_eq!(value(&out, "container_cpu_usage_seconds_total"), Some(1.0));
    assert_eq!(value(&out, "container_cpu_user_seconds_total"), None);
    assert_eq!(value(&out, "container_processes"), Some(7.0));
    // Without memory.stat: no rss/cache, and the working set is the whole usage.
    assert_eq!(value(&out, "container_memory_rss"), None);
    assert_eq!(value(&out, "container_memory_working_set_bytes"), Some(52428800.0));
}

#[test]
fn file_growing_past_the_buffer_is_read_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(format!("docker/{CGROUPFS_ID}"));
    fs::create_dir_all(&dir).unwrap();
    fs::write(tmp.path().join("cgroup.controllers"), "io\n").unwrap();
    let line = "8:0 rbytes=1 wbytes=2 rios=1 wios=1 dbytes=0 dios=0\n";
    fs::write(dir.join("io.stat"), line).unwrap();
    let mut cg = ContainerCgroup::open(&detect(tmp.path()), &proc_root(), &id(CGROUPFS_ID), None);
    assert_eq!(value(&read_all(&mut cg), "container_fs_writes_bytes_total"), Some(2.0));
    // 20 KB: several times the initial 4 KiB buffer, rewritten in place (same open file).
    fs::write(dir.join("io.stat"), line.repeat(400)).unwrap();
    assert_eq!(value(&read_all(&mut cg), "container_fs_writes_bytes_total"), Some(800.0));
}

/// v1 tree with a shared `cpu,cpuacct` mount and the systemd driver, in a temp dir.
#[test]
fn v1_resolves_shared_cpu_cpuacct_mount_and_systemd_scope() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, proc) = (tmp.path().join("cgroup"), tmp.path().join("proc"));
    let scope = format!("system.slice/docker-{SYSTEMD_ID}.scope");
    for ctrl in ["cpu,cpuacct", "memory", "pids", "unified"] {
        fs::create_dir_all(root.join(ctrl).join(&scope)).unwrap();
    }
    fs::write(root.join("unified/cgroup.controllers"), "").unwrap();
    fs::write(root.join("cpu,cpuacct").join(&scope).join("cpuacct.usage"), "2500000000\n").unwrap();
    fs::write(root.join("memory").join(&scope).join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
    fs::create_dir_all(proc.join("77")).unwrap();
    let cgroup_file =
        format!("12:pids:/{scope}\n4:memory:/{scope}\n3:cpu,cpuacct:/{scope}\n1:name=systemd:/{scope}\n0::/{scope}\n");
    fs::write(proc.join("77/cgroup"), cgroup_file).unwrap();
    let layout = detect(&root);
    let shared = root.join("cpu,cpuacct").join(&scope);
    let want = CgroupDirs::V1 {
        cpu: Some(shared.clone()),
        cpuacct: Some(shared),
        memory: Some(root.join("memory").join(&scope)),
        blkio: None, // not mounted
        pids: Some(root.join("pids").join(&scope)),
        unified: Some(root.join("unified").join(&scope)),
    };
    assert_eq!(resolve(&layout, &proc, &id(SYSTEMD_ID), Some(77)), want);
    // The conventional paths find the same groups without the pid.
    assert_eq!(resolve(&layout, &proc, &id(SYSTEMD_ID), None), want);
    let out = read_all(&mut ContainerCgroup::from_dirs(want));
    assert_eq!(value(&out, "container_cpu_usage_seconds_total"), Some(2.5));
    // v1's "unlimited" (PAGE_COUNTER_MAX pages) is 0, as cAdvisor reports it.
    assert_eq!(value(&out, "container_spec_memory_limit_bytes"), Some(0.0));
}

/// What keeping files open saves, on the fixture tree (regular files; the real cgroupfs figure is in
/// `tests_docker`). Prints, asserts nothing about speed.
#[test]
fn timing_fixture_open_kept_vs_reopen() {
    let _l = super::tests_docker::lock(); // not while containers run
    let layout = detect(&systemd_root());
    let mut cg = ContainerCgroup::open(&layout, &proc_root(), &id(SYSTEMD_ID), Some(4242));
    let (kept, reopen) = super::tests_docker::time_reads(&mut cg, 10_000);
    eprintln!(
        "fixture v2 ({} files): open-kept {:.2} µs/read, reopen {:.2} µs/read",
        cg.open_files().len(),
        kept,
        reopen
    );
}
