//! Host metrics under node_exporter's names, read from a proc root (normally `/proc`).
//!
//! The collectors are in [`node`], one module each, as pure parsers over a file's bytes; this file
//! reads the files and runs them. The `procfs` crate's types are used through their
//! `FromRead::from_file`, which takes any path and so any proc root: `LoadAverage` and
//! `Vec<MountEntry>` (mounts). `/sys` is the proc root's sibling `sys` (`/host/proc` goes with
//! `/host/sys`, as node_exporter's `--path.procfs` and `--path.sysfs` usually do). `/proc/stat` is the exception, parsed here directly: procfs's
//! `KernelStats` keeps the per-cpu lines in a `Vec` without their cpu number, so with a cpu offline
//! (`cpu0`, `cpu2`, ...) the `cpu` labels would shift; node_exporter labels by the number itself.
//! Filesystem sizes come from `statvfs(2)` on each real mount point (through rustix, no unsafe).
//! `statvfs` on a hung network mount blocks, so call [`HostReader::read`] off the async runtime.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use procfs::{FromRead, LoadAverage, MountEntry};

use super::{node, parse};
use crate::model::Sample;

/// A host file that could not be read or parsed this tick (missing files are not errors).
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("reading {}: {message}", path.display())]
    Read { path: PathBuf, message: String },
    #[error("{}:{line}: unexpected content {text:?}", path.display())]
    Parse { path: PathBuf, line: usize, text: String },
}

/// `/proc/stat` counts in USER_HZ ticks: 100 per second on every Linux architecture the agent targets
/// (node_exporter's procfs library assumes the same).
const USER_HZ: f64 = 100.0;

/// node_exporter's modes, in /proc/stat's column order.
const CPU_MODES: [&str; 8] = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"];

/// Filesystem types that are not disks: node_exporter 1.x's default `fs-types-exclude`, exactly
/// (tmpfs is kept, as there: a full `/run` is worth seeing).
const PSEUDO_FS: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "fusectl",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "procfs",
    "pstore",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tracefs",
];

/// Mount points node_exporter leaves out by default (`mount-points-exclude`): kernel trees and
/// container storage.
fn excluded_mount_point(mp: &str) -> bool {
    let under = |dir: &str| mp == dir || mp.strip_prefix(dir).is_some_and(|r| r.starts_with('/'));
    under("/dev")
        || under("/proc")
        || under("/sys")
        || mp.starts_with("/run/credentials/")
        || mp.starts_with("/var/lib/docker/")
        || mp.starts_with("/var/lib/containers/storage/")
}

/// node_exporter 1.5's default diskstats `device-exclude`, `^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$`:
/// ram, loop and floppy devices, and partitions of sd/hd/vd/xvd and NVMe disks (whole disks, zram,
/// device-mapper and md devices are kept).
pub fn excluded_disk(name: &str) -> bool {
    fn digits(s: &str) -> bool {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
    }
    // `prefix` then one or more digits.
    let numbered = |prefix: &str| name.strip_prefix(prefix).is_some_and(digits);
    if ["ram", "loop", "fd"].into_iter().any(numbered) {
        return true;
    }
    for p in ["hd", "sd", "vd", "xvd"] {
        if let Some(rest) = name.strip_prefix(p) {
            let mut chars = rest.chars();
            if chars.next().is_some_and(|c| c.is_ascii_lowercase()) && digits(chars.as_str()) {
                return true;
            }
        }
    }
    // nvme<digits>n<digits>p<digits>
    if let Some(rest) = name.strip_prefix("nvme") {
        let mut parts = rest.splitn(2, 'n');
        if let (Some(ctrl), Some(rest)) = (parts.next(), parts.next()) {
            let mut parts = rest.splitn(2, 'p');
            if let (Some(ns), Some(part)) = (parts.next(), parts.next()) {
                return digits(ctrl) && digits(ns) && digits(part);
            }
        }
    }
    false
}

/// `/proc/net/dev`'s columns as node_exporter's families.
const NET_DEV_FAMILIES: [&str; 16] = [
    "node_network_receive_bytes_total",
    "node_network_receive_packets_total",
    "node_network_receive_errs_total",
    "node_network_receive_drop_total",
    "node_network_receive_fifo_total",
    "node_network_receive_frame_total",
    "node_network_receive_compressed_total",
    "node_network_receive_multicast_total",
    "node_network_transmit_bytes_total",
    "node_network_transmit_packets_total",
    "node_network_transmit_errs_total",
    "node_network_transmit_drop_total",
    "node_network_transmit_fifo_total",
    "node_network_transmit_colls_total",
    "node_network_transmit_carrier_total",
    "node_network_transmit_compressed_total",
];

/// Reads the host's metrics from a proc root.
#[derive(Debug)]
pub struct HostReader {
    proc_root: PathBuf,
    sys_root: PathBuf,
    netclass: node::netclass::NetClass,
    /// Interfaces left out of netdev's and netclass's families.
    net_exclude: Option<regex::Regex>,
    /// udev's database of device properties, for `node_disk_info`'s model, serial and path.
    udev_data: PathBuf,
    page_size: u64,
    buf: Vec<u8>,
    /// `/proc/stat`, read once a tick for the `stat` and `cpu` collectors.
    stat: Vec<u8>,
    /// The cpus `/proc/stat` counted this tick.
    online_cpus: usize,
    errors: Vec<HostError>,
    /// Each collector's run this tick: its node_exporter name, seconds, and whether it gave samples
    /// without an error.
    runs: Vec<(&'static str, f64, bool)>,
    textfile_dir: Option<PathBuf>,
    /// The textfiles refused last tick, logged when they change rather than every tick.
    textfile_problems: Vec<(PathBuf, String)>,
}

impl HostReader {
    pub fn new(proc_root: &Path) -> Self {
        let sys_root = proc_root.parent().unwrap_or(Path::new("/")).join("sys");
        let udev_data = proc_root.parent().unwrap_or(Path::new("/")).join("run/udev/data");
        HostReader {
            proc_root: proc_root.to_path_buf(),
            netclass: node::netclass::NetClass::new(&sys_root.join("class/net")),
            sys_root,
            net_exclude: None,
            udev_data,
            page_size: rustix::param::page_size() as u64,
            buf: Vec::new(),
            stat: Vec::new(),
            online_cpus: 0,
            errors: Vec::new(),
            runs: Vec::new(),
            textfile_dir: None,
            textfile_problems: Vec::new(),
        }
    }

    /// Reads node_exporter's textfiles (`*.prom`) from `dir`.
    pub fn with_textfile_directory(mut self, dir: Option<PathBuf>) -> Self {
        self.textfile_dir = dir;
        self
    }

    /// Leaves the interfaces `exclude` matches out of `node_network_*`.
    pub fn excluding_net_devices(mut self, exclude: Option<regex::Regex>) -> Self {
        self.netclass.exclude(exclude.clone());
        self.net_exclude = exclude;
        self
    }

    /// The files that failed in the last [`Self::read`] (missing files do not count).
    pub fn last_errors(&self) -> &[HostError] {
        &self.errors
    }

    /// Appends this tick's host samples to `out`, each of node_exporter's collectors timed as
    /// `node_scrape_collector_duration_seconds` and `_success` (1 when it gave samples and no error, as
    /// there: a collector with nothing to read, such as `conntrack` without netfilter, reports 0). A
    /// missing or unreadable file is skipped (and, unless missing, noted in [`Self::last_errors`]);
    /// never panics.
    pub fn read(&mut self, out: &mut Vec<Sample>) {
        self.errors.clear();
        self.runs.clear();
        self.collect("stat", out, Self::read_stat);
        self.collect("cpu", out, Self::read_cpu);
        self.collect("meminfo", out, Self::read_meminfo);
        self.collect("vmstat", out, Self::read_vmstat);
        self.collect("uname", out, |r, out| out.extend(node::uname::read(&r.proc_root)));
        self.collect("time", out, |r, out| {
            let now_s = crate::clock::now_ns() as f64 / 1e9;
            out.push(Sample::new("node_time_seconds", now_s));
            if let Some((zone, offset)) = node::timex::zone(now_s as i64) {
                out.push(Sample::with("node_time_zone_offset_seconds", vec![("time_zone", zone)], offset as f64));
            }
            node::clocksource::read(&r.sys_root.join("devices/system/clocksource"), out);
        });
        // The clock and its discipline are the kernel's, whatever the proc root (no namespace has
        // its own wall clock).
        self.collect("timex", out, |_, out| {
            if let Some(t) = node::timex::read() {
                node::timex::samples(&t, out);
            }
        });
        self.collect("loadavg", out, Self::read_loadavg);
        self.collect("netdev", out, Self::read_net_dev);
        self.collect("netclass", out, |r, out| r.netclass.read(out));
        self.collect("netstat", out, Self::read_netstat);
        self.collect("sockstat", out, Self::read_sockstat);
        self.collect("arp", out, Self::read_arp);
        self.collect("softnet", out, Self::read_softnet);
        self.collect("udp_queues", out, Self::read_udp_queues);
        self.collect("pressure", out, Self::read_pressure);
        self.collect("filefd", out, Self::read_filefd);
        self.collect("conntrack", out, Self::read_conntrack);
        self.collect("entropy", out, Self::read_entropy);
        self.collect("diskstats", out, Self::read_diskstats);
        self.collect("filesystem", out, Self::read_filesystems);
        self.collect("os", out, Self::read_os);
        self.collect("selinux", out, |r, out| out.push(node::os::selinux(&r.sys_root)));
        // Present on hardware, seldom on virtual machines; node_exporter counts an empty cpufreq or
        // thermal class as a success and a missing hwmon class as a failure, and so does this.
        self.collect_any("cpufreq", out, |r, out| {
            let bad = node::cpufreq::read(&r.sys_root.join("devices/system/cpu"), out);
            r.note_bad(bad);
            true
        });
        self.collect_any("thermal_zone", out, |r, out| {
            let bad = node::thermal::read(&r.sys_root.join("class/thermal"), out);
            r.note_bad(bad);
            true
        });
        self.collect_any("hwmon", out, |r, out| node::hwmon::read(&r.sys_root.join("class/hwmon"), out));
        // As node_exporter's: a refused file is `node_textfile_scrape_error 1`, not a failed collector.
        self.collect_any("textfile", out, |r, out| {
            let problems = node::textfile::read(r.textfile_dir.as_deref(), out);
            if problems != r.textfile_problems {
                for (path, why) in &problems {
                    tracing::warn!(file = %path.display(), error = %why, "textfile refused; none of its samples are sent");
                }
                r.textfile_problems = problems;
            }
            true
        });
        self.read_machine(out);
        for (collector, seconds, ok) in self.runs.drain(..) {
            let labels = vec![("collector", collector.to_string())];
            out.push(Sample::with("node_scrape_collector_duration_seconds", labels.clone(), seconds));
            out.push(Sample::with("node_scrape_collector_success", labels, if ok { 1.0 } else { 0.0 }));
        }
    }

    /// Runs one collector, timing it; it succeeded if it gave samples and noted no error.
    fn collect(&mut self, name: &'static str, out: &mut Vec<Sample>, f: impl FnOnce(&mut Self, &mut Vec<Sample>)) {
        self.collect_any(name, out, |r, out| {
            let samples = out.len();
            f(r, out);
            out.len() > samples
        });
    }

    /// Runs one collector, timing it; it succeeded if it says so (`true`: it found what it reads,
    /// samples or not) and noted no error.
    fn collect_any(
        &mut self,
        name: &'static str,
        out: &mut Vec<Sample>,
        f: impl FnOnce(&mut Self, &mut Vec<Sample>) -> bool,
    ) {
        let (start, errors) = (std::time::Instant::now(), self.errors.len());
        let found = f(self, out);
        let ok = found && self.errors.len() == errors;
        self.runs.push((name, start.elapsed().as_secs_f64(), ok));
    }

    /// Notes sysfs values that did not parse.
    fn note_bad(&mut self, bad: Vec<node::sysfs::Bad>) {
        self.errors.extend(bad.into_iter().map(|b| HostError::Parse { path: b.path, line: 1, text: b.text }));
    }

    /// `os-release` of the root the proc root belongs to (`/etc`, then `/usr/lib`, as node_exporter).
    fn read_os(&mut self, out: &mut Vec<Sample>) {
        let root = self.proc_root.parent().unwrap_or(Path::new("/"));
        for rel in ["etc/os-release", "usr/lib/os-release"] {
            if let Ok(text) = std::fs::read_to_string(root.join(rel)) {
                node::os::parse(&text, out);
                return;
            }
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.proc_root.join(rel)
    }

    /// Runs a procfs `from_file`; `None` if the file is missing (silently) or bad (noted).
    fn load<T: FromRead>(&mut self, rel: &str) -> Option<T> {
        let path = self.path(rel);
        match T::from_file(&path) {
            Ok(v) => Some(v),
            Err(procfs::ProcError::NotFound(_)) => None,
            Err(e) => {
                self.errors.push(HostError::Read { path, message: e.to_string() });
                None
            }
        }
    }

    /// Reads `rel` into the reused buffer; `false` if it is missing (silently) or unreadable (noted).
    fn read_file(&mut self, rel: &str) -> bool {
        let path = self.path(rel);
        self.buf.clear();
        match std::fs::File::open(&path).and_then(|mut f| std::io::Read::read_to_end(&mut f, &mut self.buf)) {
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => {
                self.errors.push(HostError::Read { path, message: e.to_string() });
                false
            }
        }
    }

    /// `/proc/stat`'s totals; keeps the file for [`Self::read_cpu`].
    fn read_stat(&mut self, out: &mut Vec<Sample>) {
        self.stat.clear();
        if self.read_file("stat") {
            std::mem::swap(&mut self.stat, &mut self.buf);
            node::stat::parse(&self.stat, out);
        }
    }

    /// The `cpuN` lines of the `/proc/stat` that [`Self::read_stat`] read.
    fn read_cpu(&mut self, out: &mut Vec<Sample>) {
        let path = self.path("stat");
        let mut bad = None;
        self.online_cpus = 0;
        for (n, line) in parse::lines(&self.stat) {
            // `cpuN user nice system idle iowait irq softirq steal guest guest_nice`; skip the `cpu` total.
            let Some(rest) = line.strip_prefix(b"cpu") else {
                continue;
            };
            let Some(sp) = rest.iter().position(|&b| b == b' ') else {
                continue;
            };
            let Some(cpu) = parse::parse_u64(&rest[..sp]) else {
                continue;
            };
            self.online_cpus += 1;
            let mut fields = rest[sp..].split(|&b| b == b' ').filter(|f| !f.is_empty());
            let mut values = [0u64; 10];
            let mut ok = true;
            for v in values.iter_mut() {
                // Kernels before 2.6.11 lack the later columns; count them as 0 like node_exporter.
                match fields.next().map(parse::parse_u64) {
                    Some(Some(x)) => *v = x,
                    Some(None) => ok = false,
                    None => {}
                }
            }
            if !ok {
                bad.get_or_insert((n, String::from_utf8_lossy(line).into_owned()));
                continue;
            }
            for (mode, v) in CPU_MODES.iter().zip(values) {
                let labels = vec![("cpu", cpu.to_string()), ("mode", mode.to_string())];
                out.push(Sample::with("node_cpu_seconds_total", labels, v as f64 / USER_HZ));
            }
            // Time spent running guests, which the kernel also counts in user and nice.
            for (mode, v) in ["user", "nice"].into_iter().zip(&values[8..]) {
                let labels = vec![("cpu", cpu.to_string()), ("mode", mode.to_string())];
                out.push(Sample::with("node_cpu_guest_seconds_total", labels, *v as f64 / USER_HZ));
            }
        }
        if let Some((line, text)) = bad {
            self.errors.push(HostError::Parse { path, line, text });
        }
    }

    fn read_meminfo(&mut self, out: &mut Vec<Sample>) {
        if !self.read_file("meminfo") {
            return;
        }
        if let Err((line, text)) = node::meminfo::parse(&self.buf, out) {
            self.errors.push(HostError::Parse { path: self.path("meminfo"), line, text });
        }
    }

    fn read_vmstat(&mut self, out: &mut Vec<Sample>) {
        if self.read_file("vmstat") {
            node::vmstat::parse(&self.buf, out);
        }
    }

    fn read_loadavg(&mut self, out: &mut Vec<Sample>) {
        let Some(l) = self.load::<LoadAverage>("loadavg") else {
            return;
        };
        // procfs parses the two-decimal text as f32; widening that directly gives 0.7799999713897705
        // for "0.78", so go through the shortest decimal form of the f32.
        let widen = |v: f32| v.to_string().parse::<f64>().unwrap_or(f64::from(v));
        out.push(Sample::new("node_load1", widen(l.one)));
        out.push(Sample::new("node_load5", widen(l.five)));
        out.push(Sample::new("node_load15", widen(l.fifteen)));
    }

    fn read_net_dev(&mut self, out: &mut Vec<Sample>) {
        if !self.read_file("net/dev") {
            return;
        }
        // Every device but the excluded ones, lo included, as node_exporter. Sorted for a stable order.
        let excluded = |name: &[u8]| {
            self.net_exclude.as_ref().is_some_and(|r| std::str::from_utf8(name).is_ok_and(|n| r.is_match(n)))
        };
        let mut devs: Vec<_> =
            parse::parse_net_dev(&self.buf).filter(|d| d.as_ref().map_or(true, |d| !excluded(d.0))).collect();
        devs.sort_by(|a, b| a.as_ref().ok().map(|d| d.0).cmp(&b.as_ref().ok().map(|d| d.0)));
        let mut bad = None;
        for d in devs {
            let (name, fields) = match d {
                Ok(d) => d,
                Err(b) => {
                    bad.get_or_insert((b.line, String::from_utf8_lossy(b.text).into_owned()));
                    continue;
                }
            };
            let device = String::from_utf8_lossy(name).into_owned();
            for (family, v) in NET_DEV_FAMILIES.iter().zip(fields) {
                out.push(Sample::with(family, vec![("device", device.clone())], v as f64));
            }
        }
        if let Some((line, text)) = bad {
            self.errors.push(HostError::Parse { path: self.path("net/dev"), line, text });
        }
    }

    fn read_netstat(&mut self, out: &mut Vec<Sample>) {
        for rel in ["net/netstat", "net/snmp"] {
            if self.read_file(rel) {
                node::netstat::parse_paired(&self.buf, out);
            }
        }
        if self.read_file("net/snmp6") {
            node::netstat::parse_snmp6(&self.buf, out);
        }
    }

    fn read_arp(&mut self, out: &mut Vec<Sample>) {
        if self.read_file("net/arp") {
            node::netmisc::arp(&self.buf, out);
        }
    }

    fn read_softnet(&mut self, out: &mut Vec<Sample>) {
        if self.read_file("net/softnet_stat") {
            node::netmisc::softnet(&self.buf, out);
        }
    }

    fn read_udp_queues(&mut self, out: &mut Vec<Sample>) {
        for (rel, ip) in [("net/udp", "v4"), ("net/udp6", "v6")] {
            if self.read_file(rel) {
                match node::netmisc::udp_queues(&self.buf) {
                    Some(q) => node::netmisc::udp_samples(ip, q, out),
                    None => self.bad_whole_file(rel),
                }
            }
        }
    }

    fn read_sockstat(&mut self, out: &mut Vec<Sample>) {
        for rel in ["net/sockstat", "net/sockstat6"] {
            if self.read_file(rel) {
                node::sockstat::parse(&self.buf, self.page_size, out);
            }
        }
    }

    fn read_pressure(&mut self, out: &mut Vec<Sample>) {
        for (rel, some, full) in node::pressure::FILES {
            // Kernels built without PSI, or booted with psi=0, answer EOPNOTSUPP: no family.
            let path = self.path(rel);
            self.buf.clear();
            match std::fs::File::open(&path).and_then(|mut f| std::io::Read::read_to_end(&mut f, &mut self.buf)) {
                Ok(_) => {}
                Err(_) => continue,
            }
            if let Err((line, text)) = node::pressure::parse(&self.buf, some, full, out) {
                self.errors.push(HostError::Parse { path, line, text });
            }
        }
    }

    fn read_filefd(&mut self, out: &mut Vec<Sample>) {
        if self.read_file("sys/fs/file-nr") {
            match node::filefd::parse(&self.buf) {
                Some(samples) => out.extend(samples),
                None => self.bad_whole_file("sys/fs/file-nr"),
            }
        }
    }

    fn read_conntrack(&mut self, out: &mut Vec<Sample>) {
        if self.read_file("net/stat/nf_conntrack") {
            match node::conntrack::parse_stat(&self.buf) {
                Some(samples) => out.extend(samples),
                None => self.bad_whole_file("net/stat/nf_conntrack"),
            }
        }
        self.read_numbers(&node::conntrack::FILES, out);
    }

    fn read_entropy(&mut self, out: &mut Vec<Sample>) {
        self.read_numbers(&node::entropy::FILES, out);
    }

    /// Files of one number each, as the families they stand for.
    fn read_numbers(&mut self, files: &[(&str, &'static str)], out: &mut Vec<Sample>) {
        for (rel, family) in files {
            if self.read_file(rel) {
                match parse::parse_single_u64(&self.buf) {
                    Some(v) => out.push(Sample::new(family, v as f64)),
                    None => self.bad_whole_file(rel),
                }
            }
        }
    }

    fn bad_whole_file(&mut self, rel: &str) {
        let text = String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)]).into_owned();
        self.errors.push(HostError::Parse { path: self.path(rel), line: 1, text });
    }

    /// cAdvisor's machine families, which its dashboards divide container usage by: the cpus the
    /// kernel counts online and the memory it manages.
    fn read_machine(&mut self, out: &mut Vec<Sample>) {
        if self.online_cpus > 0 {
            out.push(Sample::new("machine_cpu_cores", self.online_cpus as f64));
        }
        if let Some(total) = out.iter().find(|s| s.name == "node_memory_MemTotal_bytes").map(|s| s.value) {
            out.push(Sample::new("machine_memory_bytes", total));
        }
    }

    fn read_diskstats(&mut self, out: &mut Vec<Sample>) {
        if !self.read_file("diskstats") {
            return;
        }
        let mut bad = None;
        for d in node::diskstats::parse(&self.buf) {
            match d {
                Ok(d) if !excluded_disk(d.name) => {
                    d.samples(out);
                    let udev_file = self.udev_data.join(format!("b{}:{}", d.major, d.minor));
                    let udev = std::fs::read_to_string(udev_file).unwrap_or_default();
                    let mut info = vec![
                        ("device", d.name.to_string()),
                        ("major", d.major.to_string()),
                        ("minor", d.minor.to_string()),
                    ];
                    info.extend(node::diskstats::udev_labels(&udev));
                    out.push(Sample::with("node_disk_info", info, 1.0));
                }
                Ok(_) => {}
                Err(e) => {
                    bad.get_or_insert(e);
                }
            }
        }
        if let Some((line, text)) = bad {
            self.errors.push(HostError::Parse { path: self.path("diskstats"), line, text });
        }
    }

    /// Mounts of the host's mount namespace (`1/mounts`, as node_exporter; `self/mounts` if that is
    /// unreadable). Mount points are looked up with `statvfs` in our own namespace, so an agent in a
    /// container must share the host's (or see it at the same paths).
    fn read_filesystems(&mut self, out: &mut Vec<Sample>) {
        let mounts = match Vec::<MountEntry>::from_file(self.path("1/mounts")) {
            Ok(m) => m,
            Err(_) => match self.load::<Vec<MountEntry>>("self/mounts") {
                Some(m) => m,
                None => return,
            },
        };
        // The last mount on a mount point is the one visible there.
        let by_point: BTreeMap<String, MountEntry> = mounts.into_iter().map(|m| (m.fs_file.clone(), m)).collect();
        let real = by_point
            .into_values()
            .filter(|m| !PSEUDO_FS.contains(&m.fs_vfstype.as_str()) && !excluded_mount_point(&m.fs_file));
        for m in real {
            let labels = vec![
                ("device", m.fs_spec.clone()),
                ("fstype", m.fs_vfstype.clone()),
                ("mountpoint", m.fs_file.clone()),
            ];
            let ro = m.fs_mntops.contains_key("ro");
            out.push(Sample::with("node_filesystem_readonly", labels.clone(), if ro { 1.0 } else { 0.0 }));
            // A mount point we cannot stat (gone, or not in our namespace) is a device error, with
            // no sizes, as in node_exporter.
            let Ok(st) = rustix::fs::statvfs(m.fs_file.as_str()) else {
                out.push(Sample::with("node_filesystem_device_error", labels, 1.0));
                continue;
            };
            out.push(Sample::with("node_filesystem_device_error", labels.clone(), 0.0));
            let frsize = (if st.f_frsize > 0 { st.f_frsize } else { st.f_bsize }) as f64;
            for (family, v) in [
                ("node_filesystem_size_bytes", st.f_blocks as f64 * frsize),
                ("node_filesystem_free_bytes", st.f_bfree as f64 * frsize),
                ("node_filesystem_avail_bytes", st.f_bavail as f64 * frsize),
                ("node_filesystem_files", st.f_files as f64),
                ("node_filesystem_files_free", st.f_ffree as f64),
            ] {
                out.push(Sample::with(family, labels.clone(), v));
            }
        }
    }
}
