//! Per-container disk usage (`container_fs_usage_bytes`) of the writable layer and of the volumes no
//! other container mounts, found by walking their directories from the host at a bounded pace, as
//! cAdvisor's fs handler does: no `docker inspect ?size=true` per tick, nothing run inside the container.
//!
//! Each container's walk advances by at most a budget of directory entries per tick, shared by all
//! containers, and starts again once its refresh period has passed since the last one began; the
//! total of the last finished walk is what is reported, one series per device (cAdvisor's `device`
//! label: the filesystem's source, as `node_filesystem_*` name it). Bytes are disk usage
//! (`st_blocks` * 512, a file with several hard links counted once), as `du` and cAdvisor count them.

use std::collections::{HashMap, HashSet};
use std::fs::ReadDir;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use procfs::{FromRead, MountEntry};

use crate::model::{ContainerId, Sample};

/// Directory entries all walks together may visit per tick: about 10 ms of `lstat`s, which at a 10 s
/// interval is 0.1% of a core even on a host with millions of files in its layers.
pub const ENTRIES_PER_TICK: usize = 20_000;

struct Walk {
    /// The layer first, then the container's own volumes.
    roots: Vec<PathBuf>,
    /// The device of each root.
    devices: Vec<Arc<str>>,
    /// The directory being listed (with its root's index) and those still to list.
    current: Option<(usize, ReadDir)>,
    pending: Vec<(usize, PathBuf)>,
    links: HashSet<(u64, u64)>,
    /// Per root; `None` for one that could not be listed.
    bytes: Vec<Option<u64>>,
    started: Instant,
    done: bool,
    /// Per root, the totals of the last finished walk.
    last: Option<Vec<Option<u64>>>,
}

impl Walk {
    fn new(roots: Vec<PathBuf>, mounts: &Mounts) -> Self {
        let devices = roots.iter().map(|r| mounts.device_of(r)).collect();
        let mut w = Walk {
            roots,
            devices,
            current: None,
            pending: Vec::new(),
            links: HashSet::new(),
            bytes: Vec::new(),
            started: Instant::now(),
            done: true,
            last: None,
        };
        w.restart();
        w
    }

    fn restart(&mut self) {
        self.current = None;
        self.pending = self.roots.iter().cloned().enumerate().rev().collect();
        self.links.clear();
        self.bytes = vec![Some(0); self.roots.len()];
        self.started = Instant::now();
        self.done = false;
    }

    /// Visits up to `budget` entries; returns how many it used.
    fn advance(&mut self, budget: usize) -> usize {
        let mut used = 0;
        while used < budget {
            let Some((root, dir)) = self.current.as_mut() else {
                match self.pending.pop() {
                    Some((root, next)) => match std::fs::read_dir(&next) {
                        Ok(d) => self.current = Some((root, d)),
                        // An unreadable root (not visible from here) has no usage to report; an
                        // unreadable directory inside one (removed meanwhile, say) adds nothing.
                        Err(_) if next == self.roots[root] => self.bytes[root] = None,
                        Err(_) => {}
                    },
                    None => {
                        self.done = true;
                        self.last = Some(std::mem::take(&mut self.bytes));
                        return used;
                    }
                }
                continue;
            };
            let root = *root;
            let Some(entry) = dir.next() else {
                self.current = None;
                continue;
            };
            used += 1;
            let Ok(entry) = entry else { continue };
            // lstat: a symlink counts as itself and is never followed out of the tree.
            let Ok(meta) = entry.metadata() else { continue };
            if meta.nlink() > 1 && !meta.is_dir() && !self.links.insert((meta.dev(), meta.ino())) {
                continue;
            }
            if let Some(b) = self.bytes[root].as_mut() {
                *b += meta.blocks() * 512;
            }
            if meta.is_dir() {
                self.pending.push((root, entry.path()));
            }
        }
        used
    }
}

/// The host's mounts, to name the device under a path as `node_filesystem_*` names it.
struct Mounts(Vec<(PathBuf, Arc<str>)>);

impl Mounts {
    /// The host's mount namespace (`1/mounts` under the proc root), else the agent's own.
    fn read(proc_root: &Path) -> Mounts {
        let entries = Vec::<MountEntry>::from_file(proc_root.join("1/mounts"))
            .or_else(|_| Vec::<MountEntry>::from_file(proc_root.join("self/mounts")))
            .unwrap_or_default();
        Mounts(entries.into_iter().map(|m| (PathBuf::from(m.fs_file), Arc::from(m.fs_spec))).collect())
    }

    /// The source of the last mount whose mount point is the longest prefix of `path` (the one
    /// visible there); empty when none is known.
    fn device_of(&self, path: &Path) -> Arc<str> {
        let mut best: Option<&(PathBuf, Arc<str>)> = None;
        for m in &self.0 {
            if path.starts_with(&m.0) && best.is_none_or(|b| m.0.as_os_str().len() >= b.0.as_os_str().len()) {
                best = Some(m);
            }
        }
        best.map(|b| b.1.clone()).unwrap_or_else(|| Arc::from(""))
    }
}

/// The walks of every running container.
pub struct LayerUsage {
    refresh: Duration,
    proc_root: PathBuf,
    walks: HashMap<ContainerId, Walk>,
}

impl LayerUsage {
    /// `refresh`: how long after one walk of a container began the next may begin; `proc_root`: where
    /// the host's mounts are read, to name each tree's device.
    pub fn new(refresh: Duration, proc_root: &Path) -> Self {
        LayerUsage { refresh, proc_root: proc_root.to_path_buf(), walks: HashMap::new() }
    }

    /// Keeps walks for exactly the containers in `trees` (id, then its layer's upper directory and
    /// its own volumes), then advances them within this tick's budget, oldest walk first so that none
    /// starves. A container whose trees change starts a new walk.
    pub fn tick<'a>(&mut self, trees: impl Iterator<Item = (&'a ContainerId, Vec<PathBuf>)>) {
        let mut keep = HashSet::new();
        let mut mounts = None;
        for (id, roots) in trees {
            keep.insert(id.clone());
            match self.walks.get(id) {
                Some(w) if w.roots == roots => {}
                _ => {
                    let mounts = mounts.get_or_insert_with(|| Mounts::read(&self.proc_root));
                    self.walks.insert(id.clone(), Walk::new(roots, mounts));
                }
            }
        }
        self.walks.retain(|id, _| keep.contains(id));
        let mut order: Vec<&mut Walk> = self.walks.values_mut().collect();
        order.sort_by_key(|w| w.started);
        let mut budget = ENTRIES_PER_TICK;
        for w in order {
            if w.done && w.started.elapsed() >= self.refresh {
                w.restart();
            }
            if !w.done {
                budget -= w.advance(budget);
            }
            if budget == 0 {
                break;
            }
        }
    }

    /// `container_fs_usage_bytes` and `container_fs_limit_bytes` (the size of the filesystem) for each
    /// device that holds a readable tree, once the container's first walk has finished.
    pub fn samples(&self, id: &ContainerId, out: &mut Vec<Sample>) {
        let Some(w) = self.walks.get(id) else { return };
        let Some(last) = &w.last else { return };
        for (i, bytes) in last.iter().enumerate() {
            let device = &w.devices[i];
            // Each device once, at its first readable root, with the sum of its roots.
            if bytes.is_none() || (0..i).any(|j| last[j].is_some() && w.devices[j] == *device) {
                continue;
            }
            let total: u64 = (i..last.len()).filter(|j| w.devices[*j] == *device).filter_map(|j| last[j]).sum();
            let labels = vec![("device", device.to_string())];
            out.push(Sample::with("container_fs_usage_bytes", labels.clone(), total as f64));
            if let Ok(st) = rustix::fs::statvfs(&w.roots[i]) {
                let frsize = if st.f_frsize > 0 { st.f_frsize } else { st.f_bsize };
                out.push(Sample::with("container_fs_limit_bytes", labels, st.f_blocks as f64 * frsize as f64));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(l: &LayerUsage, id: &ContainerId) -> Option<f64> {
        let mut out = Vec::new();
        l.samples(id, &mut out);
        out.iter().find(|s| s.name == "container_fs_usage_bytes").map(|s| s.value)
    }

    fn one<'a>(id: &'a ContainerId, root: &Path) -> impl Iterator<Item = (&'a ContainerId, Vec<PathBuf>)> {
        std::iter::once((id, vec![root.to_path_buf()]))
    }

    fn usage_at(proc_root: &Path) -> LayerUsage {
        LayerUsage::new(Duration::ZERO, proc_root)
    }

    #[test]
    fn counts_disk_usage_once_per_inode_and_refreshes() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/data"), vec![1u8; 1 << 20]).unwrap();
        std::fs::hard_link(root.join("a/b/data"), root.join("a/link")).unwrap();
        std::os::unix::fs::symlink("/", root.join("a/to-root")).unwrap();
        let id = ContainerId::parse(&"c".repeat(64)).unwrap();
        let mut l = usage_at(tmp.path());
        assert_eq!(usage(&l, &id), None);
        l.tick(one(&id, &root));
        let first = usage(&l, &id).expect("a small tree is walked in one tick");
        // The 1 MiB file once (not twice for its link, not / through the symlink), plus the dirs.
        assert!((1 << 20) as f64 <= first && first < (1 << 20) as f64 + 64.0 * 1024.0, "{first}");
        std::fs::write(root.join("more"), vec![1u8; 3 << 20]).unwrap();
        l.tick(one(&id, &root));
        let second = usage(&l, &id).unwrap();
        assert!(((second - first) - (3 << 20) as f64).abs() < 64.0 * 1024.0, "{first} -> {second}");
        // A layer that cannot be read reports nothing rather than 0.
        let gone = root.join("nope");
        l.tick(one(&id, &gone));
        assert_eq!(usage(&l, &id), None);
        // A container that has gone has no walk left.
        l.tick(std::iter::empty());
        assert_eq!(usage(&l, &id), None);
    }

    #[test]
    fn a_big_tree_takes_several_ticks_and_reports_only_whole_walks() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        for i in 0..(ENTRIES_PER_TICK + 10) {
            std::fs::write(root.join(i.to_string()), b"x").unwrap();
        }
        let id = ContainerId::parse(&"d".repeat(64)).unwrap();
        let mut l = LayerUsage::new(Duration::from_secs(3600), tmp.path());
        l.tick(one(&id, &root));
        assert_eq!(usage(&l, &id), None, "half a walk is not reported");
        l.tick(one(&id, &root));
        assert!(usage(&l, &id).is_some_and(|b| b >= (ENTRIES_PER_TICK as f64) * 512.0));
    }

    #[test]
    fn own_volumes_add_to_the_layer_under_their_device() {
        let tmp = tempfile::tempdir().unwrap();
        // The host's mounts as /proc/1/mounts lists them: the layer and one volume under the disk at
        // /srv, another volume on a filesystem of its own, mounted over part of it.
        let (disk, other) = (tmp.path().join("srv"), tmp.path().join("srv/volumes/big"));
        std::fs::create_dir_all(tmp.path().join("proc/1")).unwrap();
        std::fs::write(
            tmp.path().join("proc/1/mounts"),
            format!(
                "/dev/vda1 / ext4 rw,relatime 0 0\n/dev/vdb1 {} ext4 rw 0 0\n/dev/vdc1 {} xfs rw 0 0\n",
                disk.display(),
                other.display()
            ),
        )
        .unwrap();
        let (layer, small, big, gone) =
            (disk.join("layer"), disk.join("volumes/small"), other.join("_data"), disk.join("volumes/gone"));
        for (dir, mib) in [(&layer, 1), (&small, 2), (&big, 4)] {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join("data"), vec![1u8; mib << 20]).unwrap();
        }
        let id = ContainerId::parse(&"e".repeat(64)).unwrap();
        let mut l = usage_at(&tmp.path().join("proc"));
        l.tick(std::iter::once((&id, vec![layer.clone(), small.clone(), big.clone(), gone.clone()])));
        let mut out = Vec::new();
        l.samples(&id, &mut out);
        let usage: Vec<(&str, f64)> = out
            .iter()
            .filter(|s| s.name == "container_fs_usage_bytes")
            .map(|s| (s.labels[0].1.as_str(), (s.value / 1048576.0).floor()))
            .collect();
        // The layer and the small volume together on vdb1, the big one on its own; the volume that
        // cannot be read adds nothing and no series.
        assert_eq!(usage, [("/dev/vdb1", 3.0), ("/dev/vdc1", 4.0)], "{out:?}");
        assert_eq!(out.iter().filter(|s| s.name == "container_fs_limit_bytes").count(), 2, "{out:?}");
        // A volume that stops being its own (another container mounts it) leaves the sum.
        l.tick(std::iter::once((&id, vec![layer.clone(), big.clone()])));
        let mut out = Vec::new();
        l.samples(&id, &mut out);
        let vdb: Vec<f64> = out
            .iter()
            .filter(|s| s.name == "container_fs_usage_bytes" && s.labels[0].1 == "/dev/vdb1")
            .map(|s| (s.value / 1048576.0).floor())
            .collect();
        assert_eq!(vdb, [1.0], "{out:?}");
    }
}
