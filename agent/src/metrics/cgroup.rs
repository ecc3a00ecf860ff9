//! A container's cgroup: where it lives (v1, v2 or hybrid) and its stat files, read every tick.
//!
//! Why not the `cgroups-rs` crate: it opens, reads into a fresh `String`, parses into freshly
//! allocated structs and closes every file on every read. The agent reads ~20 files per container per
//! tick for every container on the host, so instead [`ContainerCgroup`] opens each file once, keeps it
//! open and re-reads it with `pread(fd, buf, 0)` (`FileExt::read_at`) into one reused buffer, and the
//! pure parsers of [`super::parse`] borrow from that buffer. After the first tick a read allocates
//! nothing but the caller's `Vec<Sample>` growth.
//!
//! Every function takes the cgroup root (normally `/sys/fs/cgroup`) and the proc root (normally
//! `/proc`) as parameters, so tests can point them at fixture trees.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::cgroup_stats::{Acc, Kind, PSI_FILES, V1_FILES, V2_FILES};
use super::parse::BadLine;
use crate::model::{ContainerId, Sample};

/// How the cgroup hierarchy under the cgroup root is laid out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Legacy hierarchy: one mount per controller (`root/memory`, `root/cpu`, ... or a shared
    /// `root/cpu,cpuacct`). `unified` is the hybrid setup's v2 tree (`root/unified`): it has no
    /// controllers but gives per-cgroup PSI (`*.pressure`) on kernels with PSI.
    V1 { root: PathBuf, unified: Option<PathBuf> },
    /// Unified hierarchy: every controller in one tree.
    V2 { root: PathBuf },
}

/// v2 when the root itself is a cgroup2 mount (it has `cgroup.controllers`); v1 otherwise, with the
/// hybrid `unified` tree when `root/unified` is a cgroup2 mount.
pub fn detect(cgroup_root: &Path) -> Layout {
    if cgroup_root.join("cgroup.controllers").is_file() {
        return Layout::V2 { root: cgroup_root.to_path_buf() };
    }
    let unified = cgroup_root.join("unified");
    let unified = unified.join("cgroup.controllers").is_file().then_some(unified);
    Layout::V1 { root: cgroup_root.to_path_buf(), unified }
}

/// Reading a cgroup file failed. Always names the file.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("reading {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}:{line}: unexpected content {text:?}", path.display())]
    Parse { path: PathBuf, line: usize, text: String },
}

impl CgroupError {
    pub fn path(&self) -> &Path {
        match self {
            CgroupError::Io { path, .. } | CgroupError::Parse { path, .. } => path,
        }
    }

    fn parse(path: &Path, bad: BadLine<'_>) -> Self {
        let text = String::from_utf8_lossy(&bad.text[..bad.text.len().min(200)]).into_owned();
        CgroupError::Parse { path: path.to_path_buf(), line: bad.line, text }
    }
}

/// The directories of one container's cgroup. `None` where the controller is not mounted or the
/// container's group could not be found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupDirs {
    V1 {
        cpu: Option<PathBuf>,
        cpuacct: Option<PathBuf>,
        memory: Option<PathBuf>,
        blkio: Option<PathBuf>,
        pids: Option<PathBuf>,
        /// The container's group in the hybrid unified tree (PSI only).
        unified: Option<PathBuf>,
    },
    V2 {
        dir: Option<PathBuf>,
    },
}

const V1_CONTROLLERS: [&str; 5] = ["cpu", "cpuacct", "memory", "blkio", "pids"];

/// Finds a container's cgroup directories.
///
/// With the container's main `pid`, the paths come from `<proc_root>/<pid>/cgroup`, which is right for
/// the cgroupfs and systemd drivers, `--cgroup-parent` and nested setups alike. A path is taken only if
/// it names the container id (so a recycled pid cannot point us at another process's group) and has no
/// `..` (which is what a group outside our cgroup namespace looks like). Otherwise, or when the pid is
/// unknown or gone, the conventional paths are tried: v2 `system.slice/docker-<id>.scope` (systemd
/// driver) then `docker/<id>` (cgroupfs); v1 `<controller>/docker/<id>` then
/// `<controller>/system.slice/docker-<id>.scope`.
pub fn resolve(layout: &Layout, proc_root: &Path, id: &ContainerId, pid: Option<u32>) -> CgroupDirs {
    let proc_cgroup = pid.and_then(|p| std::fs::read_to_string(proc_root.join(p.to_string()).join("cgroup")).ok());
    // (hierarchy controllers, path) pairs naming this container.
    let entries: Vec<(&str, &str)> = proc_cgroup
        .as_deref()
        .unwrap_or("")
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_, ctrls, path) = (it.next()?, it.next()?, it.next()?);
            let ok = path.contains(id.as_str()) && !Path::new(path).components().any(|c| c == Component::ParentDir);
            ok.then_some((ctrls, path))
        })
        .collect();
    let conventional = [format!("docker/{id}"), format!("system.slice/docker-{id}.scope")];
    let existing = |base: &Path, rels: &[&str]| rels.iter().map(|r| base.join(r)).find(|p| p.is_dir());
    let v2_dir = |root: &Path| -> Option<PathBuf> {
        match entries.iter().find(|(c, _)| c.is_empty()) {
            Some((_, path)) => Some(root.join(path.trim_start_matches('/'))),
            None => existing(root, &[&conventional[1], &conventional[0]]),
        }
    };
    match layout {
        Layout::V2 { root } => CgroupDirs::V2 { dir: v2_dir(root) },
        Layout::V1 { root, unified } => {
            let controller = |name: &str| -> Option<PathBuf> {
                let from_pid = entries.iter().find(|(c, _)| c.split(',').any(|c| c == name));
                if let Some((ctrls, path)) = from_pid {
                    // `root/cpu` is usually a symlink to a shared `root/cpu,cpuacct` mount.
                    let mount = [root.join(name), root.join(ctrls)].into_iter().find(|m| m.is_dir())?;
                    return Some(mount.join(path.trim_start_matches('/')));
                }
                let mut mount = root.join(name);
                if !mount.is_dir() && (name == "cpu" || name == "cpuacct") {
                    mount = root.join("cpu,cpuacct");
                }
                existing(&mount, &[&conventional[0], &conventional[1]])
            };
            let [cpu, cpuacct, memory, blkio, pids] = V1_CONTROLLERS.map(controller);
            let unified = unified.as_deref().and_then(v2_dir);
            CgroupDirs::V1 { cpu, cpuacct, memory, blkio, pids, unified }
        }
    }
}

impl CgroupDirs {
    /// The container's `cgroup.procs` (its processes' pids): the v2 group's, or the first v1
    /// controller's found (every controller's group lists the same processes).
    pub fn procs_file(&self) -> Option<PathBuf> {
        let dir = match self {
            CgroupDirs::V2 { dir } => dir.as_deref(),
            CgroupDirs::V1 { pids, memory, cpu, .. } => pids.as_deref().or(memory.as_deref()).or(cpu.as_deref()),
        };
        dir.map(|d| d.join("cgroup.procs"))
    }

    /// The container's cgroup as cAdvisor names it in its `id` label: the path below the hierarchy's
    /// root, with a leading `/` (`/docker/<id>` with the cgroupfs driver,
    /// `/system.slice/docker-<id>.scope` with systemd's). `None` when no directory was found.
    pub fn cgroup_id(&self, layout: &Layout) -> Option<String> {
        let (dir, roots): (&Path, Vec<PathBuf>) = match (self, layout) {
            (CgroupDirs::V2 { dir: Some(dir) }, Layout::V2 { root }) => (dir, vec![root.clone()]),
            (CgroupDirs::V1 { memory, cpu, pids, .. }, Layout::V1 { root, .. }) => {
                let dir = memory.as_deref().or(cpu.as_deref()).or(pids.as_deref())?;
                // The hierarchy's root is the controller's mount: `root/<name>` for the first
                // component below the cgroup root (`memory`, `cpu,cpuacct`, ...).
                let first = dir.strip_prefix(root).ok()?.components().next()?;
                (dir, vec![root.join(first)])
            }
            _ => return None,
        };
        let rel = roots.iter().find_map(|r| dir.strip_prefix(r).ok())?;
        Some(format!("/{}", rel.display()))
    }
}

/// Files larger than this are read truncated rather than grown into (no cgroup file comes close).
const MAX_FILE: usize = 1 << 20;

struct StatFile {
    kind: Kind,
    /// Its directory, shared by the files under it, and its name (a path of its own cost 180 bytes
    /// a file, 14 files a container).
    dir: Arc<Path>,
    name: &'static str,
    file: Option<File>,
}

impl StatFile {
    fn path(&self) -> PathBuf {
        self.dir.join(self.name)
    }

    /// Reads the whole file into `buf` from offset 0; `Ok(None)` when it is not open or has vanished.
    fn fill(&mut self, buf: &mut Vec<u8>, reopen: bool) -> io::Result<Option<usize>> {
        let Some(file) = &self.file else {
            return Ok(None);
        };
        let res =
            if reopen { File::open(self.path()).and_then(|f| read_whole(&f, buf)) } else { read_whole(file, buf) };
        match res {
            Ok(n) => Ok(Some(n)),
            // A removed cgroup's open files answer ENODEV forever: close ours.
            Err(e) if vanished(&e) => {
                self.file = None;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

fn vanished(e: &io::Error) -> bool {
    use rustix::io::Errno;
    e.kind() == io::ErrorKind::NotFound
        || matches!(Errno::from_io_error(e), Some(Errno::NODEV | Errno::NOENT | Errno::SRCH))
}

/// `pread` at offset 0 into `buf`, growing it while the file fills it. Returns the length read.
fn read_whole(file: &File, buf: &mut Vec<u8>) -> io::Result<usize> {
    loop {
        let n = match file.read_at(buf, 0) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n < buf.len() || buf.len() >= MAX_FILE {
            return Ok(n);
        }
        let len = buf.len() * 2;
        buf.resize(len, 0);
    }
}

/// One container's cgroup with its stat files held open.
pub struct ContainerCgroup {
    dirs: CgroupDirs,
    files: Vec<StatFile>,
}

impl std::fmt::Debug for ContainerCgroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerCgroup").field("dirs", &self.dirs).field("open_files", &self.open_files()).finish()
    }
}

impl ContainerCgroup {
    /// Resolves the container's cgroup (see [`resolve`]) and opens its stat files.
    pub fn open(layout: &Layout, proc_root: &Path, id: &ContainerId, pid: Option<u32>) -> Self {
        Self::from_dirs(resolve(layout, proc_root, id, pid))
    }

    /// Opens the stat files under already resolved directories. A file that cannot be opened (the
    /// controller is not enabled there, the kernel lacks PSI, ...) is left out for good.
    pub fn from_dirs(dirs: CgroupDirs) -> Self {
        let mut files = Vec::new();
        let shared = |dir: &Option<PathBuf>| dir.as_deref().map(Arc::<Path>::from);
        let mut add = |dir: &Option<Arc<Path>>, name: &'static str, kind: Kind| {
            if let Some(dir) = dir {
                let file = File::open(dir.join(name)).ok();
                files.push(StatFile { kind, dir: dir.clone(), name, file });
            }
        };
        match &dirs {
            CgroupDirs::V1 { cpu, cpuacct, memory, blkio, pids, unified } => {
                let by_index = [cpu, cpuacct, memory, blkio, pids].map(shared);
                for &(i, name, kind) in V1_FILES {
                    add(&by_index[i], name, kind);
                }
                let unified = shared(unified);
                for (i, &name) in PSI_FILES.iter().enumerate() {
                    add(&unified, name, Kind::Pressure(i));
                }
            }
            CgroupDirs::V2 { dir } => {
                let dir = shared(dir);
                for &(name, kind) in V2_FILES {
                    add(&dir, name, kind);
                }
                for (i, &name) in PSI_FILES.iter().enumerate() {
                    add(&dir, name, Kind::Pressure(i));
                }
            }
        }
        ContainerCgroup { dirs, files }
    }

    pub fn dirs(&self) -> &CgroupDirs {
        &self.dirs
    }

    /// Paths of the files still held open. Empty once the container's cgroup is gone.
    pub fn open_files(&self) -> Vec<PathBuf> {
        self.files.iter().filter(|f| f.file.is_some()).map(StatFile::path).collect()
    }

    /// True once every file has vanished (or none could be opened): the container is gone.
    pub fn is_gone(&self) -> bool {
        self.files.iter().all(|f| f.file.is_none())
    }

    /// Appends this tick's samples to `out`. A vanished file is skipped (and closed); any other
    /// failure skips that file and is returned after every other file has been read, so one bad file
    /// never hides the rest.
    pub fn read(&mut self, out: &mut Vec<Sample>) -> Result<(), CgroupError> {
        self.read_impl(out, false)
    }

    /// Like [`Self::read`] but opening, reading and closing each file every time: only to measure
    /// what keeping the files open saves.
    #[doc(hidden)]
    pub fn read_reopening(&mut self, out: &mut Vec<Sample>) -> Result<(), CgroupError> {
        self.read_impl(out, true)
    }

    fn read_impl(&mut self, out: &mut Vec<Sample>, reopen: bool) -> Result<(), CgroupError> {
        super::with_scratch(|buf| self.read_into(buf, out, reopen))
    }

    fn read_into(&mut self, buf: &mut Vec<u8>, out: &mut Vec<Sample>, reopen: bool) -> Result<(), CgroupError> {
        let mut acc = Acc::default();
        let mut first_err = None;
        for f in self.files.iter_mut() {
            match f.fill(buf, reopen) {
                Ok(None) => {}
                Ok(Some(n)) => {
                    if let Err(bad) = acc.take(f.kind, &buf[..n]) {
                        first_err.get_or_insert_with(|| CgroupError::parse(&f.path(), bad));
                    }
                }
                Err(source) => {
                    first_err.get_or_insert_with(|| CgroupError::Io { path: f.path(), source });
                }
            }
        }
        acc.emit(out);
        first_err.map_or(Ok(()), Err)
    }
}
