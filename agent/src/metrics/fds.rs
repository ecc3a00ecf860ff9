//! cAdvisor's `container_file_descriptors` and `container_sockets`: the open files of every process
//! in a container's cgroup, counted from `/proc/<pid>/fd` at a bounded pace, as cAdvisor does.
//!
//! A count reads one directory per process and one link per open file, so it is taken again only when
//! the last one is older than the refresh period (the disk-usage period, a minute by default); the
//! ticks between carry the last count. A process that has gone, or whose files this agent may not read,
//! counts nothing.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::model::{ContainerId, Sample};

/// What one count found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub fds: u64,
    pub sockets: u64,
}

/// Counts the open files and sockets of the processes listed in a cgroup's `cgroup.procs`.
pub fn count(procs: &Path, proc_root: &Path) -> std::io::Result<Counts> {
    let list = std::fs::read_to_string(procs)?;
    let mut counts = Counts::default();
    for pid in list.split_ascii_whitespace().filter(|p| p.bytes().all(|b| b.is_ascii_digit())) {
        let Ok(entries) = std::fs::read_dir(proc_root.join(pid).join("fd")) else { continue };
        for entry in entries.flatten() {
            counts.fds += 1;
            // A socket's link reads `socket:[inode]`.
            if std::fs::read_link(entry.path()).is_ok_and(|t| t.as_os_str().as_bytes().starts_with(b"socket:")) {
                counts.sockets += 1;
            }
        }
    }
    Ok(counts)
}

/// Each watched container's last count, taken again once it is older than the refresh period.
pub struct FdCounts {
    refresh: Duration,
    last: HashMap<ContainerId, (Instant, Counts)>,
}

impl FdCounts {
    pub fn new(refresh: Duration) -> Self {
        FdCounts { refresh, last: HashMap::new() }
    }

    /// Appends this container's two families, counting again when its count is due. `procs` is its
    /// cgroup's `cgroup.procs`; without one (no cgroup found) nothing is appended.
    pub fn samples(&mut self, id: &ContainerId, procs: Option<&Path>, proc_root: &Path, out: &mut Vec<Sample>) {
        let Some(procs) = procs else { return };
        let now = Instant::now();
        let due = self.last.get(id).is_none_or(|(at, _)| now.duration_since(*at) >= self.refresh);
        if due {
            match count(procs, proc_root) {
                Ok(c) => {
                    self.last.insert(id.clone(), (now, c));
                }
                // The cgroup is gone: the container's other files say so too, and it leaves the set.
                Err(_) => {
                    self.last.remove(id);
                }
            }
        }
        if let Some((_, c)) = self.last.get(id) {
            out.push(Sample::new("container_file_descriptors", c.fds as f64));
            out.push(Sample::new("container_sockets", c.sockets as f64));
        }
    }

    /// Forgets a container that is no longer watched.
    pub fn forget(&mut self, id: &ContainerId) {
        self.last.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A proc tree of two processes: pid 10 with stdin, stdout, stderr and a socket; pid 11 with two
    /// sockets and a file; pid 12 listed but gone.
    fn tree(dir: &Path) -> std::path::PathBuf {
        let fd = |pid: u32, links: &[&str]| {
            let d = dir.join("proc").join(pid.to_string()).join("fd");
            std::fs::create_dir_all(&d).unwrap();
            for (n, target) in links.iter().enumerate() {
                symlink(target, d.join(n.to_string())).unwrap();
            }
        };
        fd(10, &["/dev/null", "pipe:[100]", "pipe:[101]", "socket:[5001]"]);
        fd(11, &["socket:[5002]", "socket:[5003]", "/var/log/app.log"]);
        let procs = dir.join("cgroup.procs");
        std::fs::write(&procs, "10\n11\n12\n").unwrap();
        procs
    }

    #[test]
    fn counts_every_processes_files_and_the_sockets_among_them() {
        let dir = tempfile::tempdir().unwrap();
        let procs = tree(dir.path());
        assert_eq!(count(&procs, &dir.path().join("proc")).unwrap(), Counts { fds: 7, sockets: 3 });
    }

    #[test]
    fn a_count_is_kept_until_it_is_due_and_a_gone_cgroup_ends_it() {
        let dir = tempfile::tempdir().unwrap();
        let procs = tree(dir.path());
        let proc_root = dir.path().join("proc");
        let id = ContainerId::parse(&"a".repeat(64)).unwrap();
        let mut fds = FdCounts::new(Duration::from_secs(3600));
        let mut out = Vec::new();
        fds.samples(&id, Some(&procs), &proc_root, &mut out);
        let value = |out: &[Sample], name: &str| out.iter().rev().find(|s| s.name == name).map(|s| s.value);
        assert_eq!(value(&out, "container_file_descriptors"), Some(7.0));
        assert_eq!(value(&out, "container_sockets"), Some(3.0));
        // Not due: a process that opened another socket is not counted again yet.
        symlink("socket:[5004]", proc_root.join("10/fd/9")).unwrap();
        fds.samples(&id, Some(&procs), &proc_root, &mut out);
        assert_eq!(value(&out, "container_sockets"), Some(3.0));
        let mut due = FdCounts::new(Duration::ZERO);
        let mut out = Vec::new();
        due.samples(&id, Some(&procs), &proc_root, &mut out);
        assert_eq!(value(&out, "container_sockets"), Some(4.0));
        std::fs::remove_file(&procs).unwrap();
        let mut out = Vec::new();
        due.samples(&id, Some(&procs), &proc_root, &mut out);
        assert!(out.is_empty(), "{out:?}");
        due.samples(&id, None, &proc_root, &mut out);
        assert!(out.is_empty());
    }
}
