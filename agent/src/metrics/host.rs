//! Host metrics under node_exporter's names, read from a proc root (normally `/proc`).
//!
//! The collectors that read one small file each (meminfo, stat's totals, vmstat, uname) are in
//! [`node`], as pure parsers over the file's bytes. The `procfs` crate's types are used through their
//! `FromRead::from_file`, which takes any path and so any proc root: `LoadAverage`, `InterfaceDeviceStatus` (net/dev), `DiskStats` and
//! `Vec<MountEntry>` (mounts). `/proc/stat` is the exception, parsed here directly: procfs's
//! `KernelStats` keeps the per-cpu lines in a `Vec` without their cpu number, so with a cpu offline
//! (`cpu0`, `cpu2`, ...) the `cpu` labels would shift; node_exporter labels by the number itself.
//! Filesystem sizes come from `statvfs(2)` on each real mount point (through rustix, no unsafe).
//! `statvfs` on a hung network mount blocks, so call [`HostReader::read`] off the async runtime.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use procfs::{DiskStats, FromRead, LoadAverage, MountEntry};

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

/// Filesystem types that are not disks, after node_exporter's default `fs-types-exclude`, plus
/// tmpfs/ramfs and fuse-overlayfs (container layers).
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
    "efivarfs",
    "fusectl",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "procfs",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "erofs",
    "sysfs",
    "tmpfs",
    "tracefs",
    "fuse.fuse-overlayfs",
    "fuse.lxcfs",
    "fuse.portal",
    "shm",
    "nfsd",
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

/// node_exporter's default diskstats `device-exclude`, `^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$`:
/// ram, zram, loop and floppy devices, and partitions of sd/hd/vd/xvd and NVMe disks (whole disks,
/// device-mapper and md devices are kept).
pub fn excluded_disk(name: &str) -> bool {
    fn digits(s: &str) -> bool {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
    }
    // `prefix` then one or more digits.
    let numbered = |prefix: &str| name.strip_prefix(prefix).is_some_and(digits);
    if ["ram", "zram", "loop", "fd"].into_iter().any(numbered) {
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

/// Reads the host's metrics from a proc root.
#[derive(Debug)]
pub struct HostReader {
    proc_root: PathBuf,
    buf: Vec<u8>,
    errors: Vec<HostError>,
}

impl HostReader {
    pub fn new(proc_root: &Path) -> Self {
        HostReader { proc_root: proc_root.to_path_buf(), buf: Vec::new(), errors: Vec::new() }
    }

    /// The files that failed in the last [`Self::read`] (missing files do not count).
    pub fn last_errors(&self) -> &[HostError] {
        &self.errors
    }

    /// Appends this tick's host samples to `out`. A missing or unreadable file is skipped (and, unless
    /// missing, noted in [`Self::last_errors`]); never panics.
    pub fn read(&mut self, out: &mut Vec<Sample>) {
        self.errors.clear();
        self.read_stat(out);
        self.read_meminfo(out);
        self.read_vmstat(out);
        out.extend(node::uname::read(&self.proc_root));
        // node_exporter's `time` collector: the host's clock as it reads it.
        out.push(Sample::new("node_time_seconds", crate::clock::now_ns() as f64 / 1e9));
        self.read_loadavg(out);
        self.read_net_dev(out);
        self.read_diskstats(out);
        self.read_filesystems(out);
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

    fn read_stat(&mut self, out: &mut Vec<Sample>) {
        let path = self.path("stat");
        if !self.read_file("stat") {
            return;
        }
        node::stat::parse(&self.buf, out);
        let mut bad = None;
        for (n, line) in parse::lines(&self.buf) {
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
            let mut fields = rest[sp..].split(|&b| b == b' ').filter(|f| !f.is_empty());
            let mut values = [0u64; 8];
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
        let Some(devs) = self.load::<procfs::net::InterfaceDeviceStatus>("net/dev") else {
            return;
        };
        // node_exporter keeps every device, lo included. Sorted for a stable order.
        let devs: BTreeMap<_, _> = devs.0.into_iter().collect();
        for (name, d) in devs {
            let labels = vec![("device", name)];
            out.push(Sample::with("node_network_receive_bytes_total", labels.clone(), d.recv_bytes as f64));
            out.push(Sample::with("node_network_transmit_bytes_total", labels, d.sent_bytes as f64));
        }
    }

    fn read_diskstats(&mut self, out: &mut Vec<Sample>) {
        let Some(disks) = self.load::<DiskStats>("diskstats") else {
            return;
        };
        for d in disks.0.into_iter().filter(|d| !excluded_disk(&d.name)) {
            // Sectors here are always 512 bytes, whatever the device's sector size.
            let labels = vec![("device", d.name)];
            out.push(Sample::with("node_disk_read_bytes_total", labels.clone(), d.sectors_read as f64 * 512.0));
            out.push(Sample::with("node_disk_written_bytes_total", labels, d.sectors_written as f64 * 512.0));
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
        let by_point: BTreeMap<String, String> = mounts.into_iter().map(|m| (m.fs_file, m.fs_vfstype)).collect();
        let real =
            by_point.into_iter().filter(|(mp, fs)| !PSEUDO_FS.contains(&fs.as_str()) && !excluded_mount_point(mp));
        for (mount_point, _) in real {
            // A mount point we cannot stat (gone, or not in our namespace) is skipped.
            let Ok(st) = rustix::fs::statvfs(mount_point.as_str()) else {
                continue;
            };
            let frsize = if st.f_frsize > 0 { st.f_frsize } else { st.f_bsize };
            let labels = vec![("mountpoint", mount_point)];
            out.push(Sample::with("node_filesystem_size_bytes", labels.clone(), st.f_blocks as f64 * frsize as f64));
            out.push(Sample::with("node_filesystem_avail_bytes", labels, st.f_bavail as f64 * frsize as f64));
        }
    }
}
