//! Host metrics against the real /proc and against the fixture proc tree `testdata/proc`.

use std::collections::BTreeSet;
use std::path::Path;

use super::host::{excluded_disk, HostReader};
use super::testdata;
use crate::config::{NodeConfig, Pattern};
use crate::model::Sample;

fn labelled<'a>(out: &'a [Sample], name: &str, key: &str) -> Vec<(&'a str, f64)> {
    out.iter()
        .filter(|s| s.name == name)
        .map(|s| (s.labels.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str()).unwrap_or(""), s.value))
        .collect()
}

fn value(out: &[Sample], name: &str) -> Option<f64> {
    out.iter().find(|s| s.name == name).map(|s| s.value)
}

#[test]
fn real_proc() {
    let mut host = HostReader::new(Path::new("/proc"));
    let mut out = Vec::new();
    host.read(&mut out);
    assert!(host.last_errors().is_empty(), "{:?}", host.last_errors());

    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kb: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert_eq!(value(&out, "node_memory_MemTotal_bytes"), Some(kb * 1024.0));
    assert!(value(&out, "node_memory_MemAvailable_bytes").is_some_and(|v| v > 0.0 && v <= kb * 1024.0));

    // Every cpu of /proc/stat has exactly the 8 modes.
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let cpus: BTreeSet<String> = stat
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.strip_prefix("cpu").filter(|n| !n.is_empty()).map(String::from))
        .collect();
    assert!(!cpus.is_empty());
    let cpu_samples: Vec<&Sample> = out.iter().filter(|s| s.name == "node_cpu_seconds_total").collect();
    assert_eq!(cpu_samples.len(), cpus.len() * 8);
    for cpu in &cpus {
        let modes: BTreeSet<&str> = cpu_samples
            .iter()
            .filter(|s| s.labels[0] == ("cpu", cpu.clone()))
            .map(|s| s.labels[1].1.as_str())
            .collect();
        let want: BTreeSet<&str> = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"].into();
        assert_eq!(modes, want, "cpu {cpu}");
    }
    assert!(cpu_samples.iter().any(|s| s.labels[1].1 == "idle" && s.value > 0.0));

    for n in ["node_load1", "node_load5", "node_load15"] {
        assert!(value(&out, n).is_some_and(|v| v >= 0.0), "{n}");
    }
    assert!(labelled(&out, "node_network_receive_bytes_total", "device").iter().any(|(d, _)| *d == "lo"));
    let fs = labelled(&out, "node_filesystem_size_bytes", "mountpoint");
    assert!(fs.iter().any(|(m, v)| *m == "/" && *v > 0.0), "{fs:?}");
    assert!(fs.iter().all(|(m, _)| !m.starts_with("/proc") && !m.starts_with("/sys")), "{fs:?}");
    let disks = labelled(&out, "node_disk_read_bytes_total", "device");
    assert!(disks.iter().all(|(d, _)| !d.starts_with("loop") && !d.starts_with("ram")), "{disks:?}");
}

#[test]
fn fixture_proc() {
    // As the agent reads by default: the host ends of containers' veths left out.
    let mut host =
        HostReader::new(&testdata().join("proc")).excluding_net_devices(NodeConfig::default().net_device_exclude());
    let mut out = Vec::new();
    host.read(&mut out);
    assert!(host.last_errors().is_empty(), "{:?}", host.last_errors());

    // cpu1 is offline: the labels are the kernel's numbers, not positions.
    let user = labelled(&out, "node_cpu_seconds_total", "cpu");
    assert_eq!(user.len(), 16);
    let modes_of = |cpu: &str| -> Vec<(String, f64)> {
        out.iter()
            .filter(|s| s.name == "node_cpu_seconds_total" && s.labels[0].1 == cpu)
            .map(|s| (s.labels[1].1.clone(), s.value))
            .collect()
    };
    let cpu2 = modes_of("2");
    let want = [
        ("user", 49.16),
        ("nice", 0.02),
        ("system", 10.51),
        ("idle", 4401.13),
        ("iowait", 3.66),
        ("irq", 0.02),
        ("softirq", 0.96),
        ("steal", 0.14),
    ];
    assert_eq!(cpu2.len(), 8);
    for ((mode, v), (wm, wv)) in cpu2.iter().zip(want) {
        assert_eq!(mode, wm);
        assert!((v - wv).abs() < 1e-9, "{mode}: {v} vs {wv}");
    }

    assert_eq!(value(&out, "node_memory_MemTotal_bytes"), Some(24683360.0 * 1024.0));
    assert_eq!(value(&out, "node_memory_MemAvailable_bytes"), Some(24096892.0 * 1024.0));
    // As written in loadavg, like node_exporter prints them, not widened from f32.
    assert_eq!(value(&out, "node_load1"), Some(0.24));
    assert_eq!(value(&out, "node_load15"), Some(0.09));

    let rx = labelled(&out, "node_network_receive_bytes_total", "device");
    assert_eq!(rx, vec![("docker0", 0.0), ("eth0", 148479399.0), ("lo", 3193.0)]);
    let tx = labelled(&out, "node_network_transmit_bytes_total", "device");
    assert_eq!(tx, vec![("docker0", 966.0), ("eth0", 470808.0), ("lo", 3193.0)]);

    let read = labelled(&out, "node_disk_read_bytes_total", "device");
    let names: Vec<&str> = read.iter().map(|(d, _)| *d).collect();
    // zram is a disk to node_exporter 1.5 (its default exclusion is `^(ram|loop|fd|...)\d+$`).
    assert_eq!(names, ["zram0", "sda", "nvme0n1", "vda", "dm-0", "mmcblk0p1"]);
    assert_eq!(read[1].1, 3462402.0 * 512.0);
    assert_eq!(labelled(&out, "node_disk_written_bytes_total", "device")[1].1, 2864368.0 * 512.0);

    // Of the fixture's mounts "/", /run (tmpfs, kept by node_exporter 1.5) and /var/lib/docker are
    // filesystems it reports; /dev/shm and the overlay are excluded by mount point, the unmounted xfs
    // cannot be statted and is skipped. /var/lib/docker need not exist on every machine.
    let fs: Vec<&str> =
        labelled(&out, "node_filesystem_size_bytes", "mountpoint").into_iter().map(|(m, _)| m).collect();
    assert!(fs.contains(&"/") && fs.contains(&"/run"), "{fs:?}");
    assert!(fs.iter().all(|m| ["/", "/run", "/var/lib/docker"].contains(m)), "{fs:?}");
    let root = out.iter().find(|s| s.name == "node_filesystem_size_bytes" && s.labels.iter().any(|l| l.1 == "/"));
    let root_labels: Vec<(&str, &str)> = root.unwrap().labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(root_labels, [("device", "/dev/root"), ("fstype", "ext4"), ("mountpoint", "/")]);
    assert_eq!(labelled(&out, "node_filesystem_readonly", "mountpoint")[0].1, 0.0);

    // Every column of diskstats, not just bytes: sda's I/O time is 5400 ms.
    let io_time = labelled(&out, "node_disk_io_time_seconds_total", "device");
    assert_eq!(io_time.iter().find(|(d, _)| *d == "sda").map(|d| d.1), Some(5.4));
    assert_eq!(labelled(&out, "node_disk_reads_completed_total", "device")[1], ("sda", 48769.0));
    // With udev's record of sda (fixture run/udev/data/b8:0) its model, path and serial; others empty.
    let info = |dev: &str| -> Vec<(&str, String)> {
        let s = out.iter().find(|s| s.name == "node_disk_info" && s.labels[0].1 == dev).unwrap();
        s.labels.iter().map(|(k, v)| (*k, v.clone())).collect()
    };
    let sda = info("sda");
    let sda: Vec<(&str, &str)> = sda.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        sda,
        [
            ("device", "sda"),
            ("major", "8"),
            ("minor", "0"),
            ("model", "QEMU_HARDDISK"),
            ("path", "pci-0000:00:01.1-ata-1"),
            ("revision", "2.5+"),
            ("serial", "QM00001"),
            ("wwn", "")
        ]
    );
    assert!(info("vda")[3..].iter().all(|(_, v)| v.is_empty()));

    // The other collectors, each read from its own fixture file.
    for (name, want) in [
        ("node_pressure_cpu_waiting_seconds_total", 14.269266),
        ("node_filefd_allocated", 502.0),
        ("node_filefd_maximum", 2466290.0),
        ("node_entropy_available_bits", 256.0),
        ("node_nf_conntrack_entries", 183.0),
        ("node_nf_conntrack_entries_limit", 262144.0),
        ("node_sockstat_sockets_used", 31.0),
        ("node_netstat_Tcp_ActiveOpens", 184.0),
        ("node_nf_conntrack_stat_found", 28.0),
        ("node_os_version", 12.0),
        ("node_selinux_enabled", 0.0),
    ] {
        assert_eq!(value(&out, name), Some(want), "{name}");
    }
    // /sys/class/net: speed -1 (unknown) stays as node_exporter 1.5 reports it, in bytes.
    assert_eq!(labelled(&out, "node_network_speed_bytes", "device"), [("eth0", -125000.0)]);
    assert_eq!(labelled(&out, "node_network_mtu_bytes", "device")[0], ("eth0", 1400.0));
    assert!(labelled(&out, "node_network_up", "device").contains(&("eth0", 1.0)));
    assert!(value(&out, "machine_cpu_cores").is_some_and(|v| v >= 1.0));
    assert_eq!(labelled(&out, "node_network_receive_nohandler_total", "device"), [("eth0", 0.0)]);
    assert_eq!(labelled(&out, "node_time_clocksource_current_info", "clocksource"), [("tsc", 1.0)]);
    let avail = labelled(&out, "node_filesystem_avail_bytes", "mountpoint");
    let size = labelled(&out, "node_filesystem_size_bytes", "mountpoint");
    assert!(avail.iter().zip(&size).all(|(a, s)| a.0 == s.0 && a.1 <= s.1 && s.1 > 0.0));
}

#[test]
fn container_veths_are_host_interfaces_only_when_asked_for() {
    let read = |exclude| {
        let mut host = HostReader::new(&testdata().join("proc")).excluding_net_devices(exclude);
        let mut out = Vec::new();
        host.read(&mut out);
        out
    };
    let families = ["node_network_receive_bytes_total", "node_network_mtu_bytes", "node_network_info"];
    let by_default = read(NodeConfig::default().net_device_exclude());
    let everything = read(
        NodeConfig { net_device_exclude: Pattern(regex::Regex::new("").unwrap()), textfile_directory: None }
            .net_device_exclude(),
    );
    for family in families {
        let devices =
            |out: &[Sample]| labelled(out, family, "device").iter().map(|(d, _)| d.to_string()).collect::<Vec<_>>();
        let (default, all) = (devices(&by_default), devices(&everything));
        assert!(
            default.contains(&"eth0".to_string()) && !default.iter().any(|d| d.starts_with("veth")),
            "{family}: {default:?}"
        );
        assert!(all.contains(&"eth0".to_string()) && all.contains(&"veth03013e5".to_string()), "{family}: {all:?}");
    }
}

#[test]
fn missing_files_are_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let mut host = HostReader::new(tmp.path());
    let mut out = Vec::new();
    host.read(&mut out);
    // The clock comes from system calls, not files; SELinux is off where selinuxfs is not there; no
    // textfile directory is no textfile error.
    assert!(
        out.iter().all(|s| s.name.starts_with("node_time_")
            || s.name.starts_with("node_timex_")
            || s.name.starts_with("node_scrape_collector_")
            || (s.name, s.value) == ("node_selinux_enabled", 0.0)
            || (s.name, s.value) == ("node_textfile_scrape_error", 0.0)),
        "only the clock without files: {out:?}"
    );
    assert!(host.last_errors().is_empty(), "{:?}", host.last_errors());
    // Each collector reports on itself as node_exporter's do: those with nothing to read failed.
    let success = |out: &[Sample]| -> Vec<(String, f64)> {
        out.iter()
            .filter(|s| s.name == "node_scrape_collector_success")
            .map(|s| (s.labels[0].1.clone(), s.value))
            .collect()
    };
    let ok: Vec<String> = success(&out).into_iter().filter(|(_, v)| *v == 1.0).map(|(c, _)| c).collect();
    assert_eq!(ok, ["time", "timex", "selinux", "cpufreq", "thermal_zone", "textfile"], "{out:?}");
    assert_eq!(success(&out).len(), 27, "{out:?}");
    assert_eq!(out.iter().filter(|s| s.name == "node_scrape_collector_duration_seconds").count(), 27);
    out.clear();
    // A garbled file is skipped and reported; the others still count.
    std::fs::write(tmp.path().join("loadavg"), "not a load average\n").unwrap();
    std::fs::write(tmp.path().join("stat"), "cpu  1 2 3 4\ncpu0 1 2 x 4\ncpu1 100 0 0 0\n").unwrap();
    host.read(&mut out);
    assert_eq!(host.last_errors().len(), 2, "{:?}", host.last_errors());
    let msg = host.last_errors().iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n");
    assert!(msg.contains("stat:2") && msg.contains("cpu0 1 2 x 4") && msg.contains("loadavg"), "{msg}");
    let cpu: Vec<_> = out.iter().filter(|s| s.name == "node_cpu_seconds_total").collect();
    assert_eq!(cpu.len(), 8, "cpu1's 8 modes: {out:?}");
    // A collector whose file is garbled failed, though it gave what it could.
    let failed: Vec<(String, f64)> = success(&out).into_iter().filter(|(c, _)| c == "cpu" || c == "loadavg").collect();
    assert_eq!(failed, [("cpu".to_string(), 0.0), ("loadavg".to_string(), 0.0)], "{out:?}");
}

#[test]
fn disk_exclusion_follows_node_exporter() {
    for name in ["loop0", "ram12", "fd0", "sda1", "hdb2", "vda15", "xvdf1", "nvme0n1p1", "nvme10n2p3"] {
        assert!(excluded_disk(name), "{name} should be excluded");
    }
    for name in
        ["sda", "sdaa1", "vda", "xvdf", "nvme0n1", "dm-0", "md0", "mmcblk0", "mmcblk0p1", "loop", "sr0", "zram0"]
    {
        assert!(!excluded_disk(name), "{name} should be kept");
    }
}
