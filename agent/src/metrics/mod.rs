//! Metric readers: per-container cgroup and network counters under cAdvisor's names, and host
//! counters under node_exporter's names, all as [`Sample`](crate::model::Sample)s.
//!
//! - [`cgroup`]: finds the cgroup layout ([`detect`] → [`Layout`]: v1, v2 or hybrid) and a
//!   container's cgroup ([`resolve`] → [`CgroupDirs`]), and reads it every tick with
//!   [`ContainerCgroup`], which keeps its stat files open and re-reads them with `pread` into a
//!   reused buffer.
//! - [`net`]: a container's interfaces from `/proc/<pid>/net/dev` ([`ContainerNet`]).
//! - [`fsusage`]: each container's writable-layer disk usage, walked at a bounded pace ([`LayerUsage`]).
//! - [`fds`]: each container's open files and sockets from `/proc/<pid>/fd`, at the same pace.
//! - [`host`]: node_exporter's host families and cAdvisor's `machine_*` ([`HostReader`]), reading
//!   `/proc` and `/sys`; [`node`] holds the collectors, one module each (cpu and filesystem aside).
//! - [`parse`]: the pure, allocation-free parsers behind them.
//!
//! Every reader takes its roots (`/sys/fs/cgroup`, `/proc`) as parameters so that tests can point it
//! at fixture trees, and none panics on a file that vanished or holds garbage: a vanished file is
//! skipped, a malformed one is reported with its path, line and text. Samples carry only the labels
//! the reader knows (`interface`, `cpu`, `mode`, `device`, `mountpoint`, ...); the caller adds
//! identity.

pub mod cgroup;
mod cgroup_stats;
pub mod fds;
pub mod fsusage;
pub mod host;
pub mod net;
pub mod node;
pub mod own_process;
pub mod parse;

pub use cgroup::{detect, resolve, CgroupDirs, CgroupError, ContainerCgroup, Layout};
pub use fsusage::LayerUsage;
pub use host::{HostError, HostReader};
pub use net::{ContainerNet, NetError};

thread_local! {
    /// The buffer files are read into on this thread: one for every container's files (the sampler
    /// reads them all on its one thread), where a buffer each cost 8 KiB per container.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 4096]);
}

/// Runs `f` with this thread's read buffer, as long as it has ever grown (4 KiB at first), so a
/// `pread` into all of it reads a whole file in one call.
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    SCRATCH.with(|b| {
        let mut b = b.borrow_mut();
        let len = b.capacity();
        b.resize(len, 0);
        f(&mut b)
    })
}

/// The agent's `testdata` directory: `$LOOKOUT_AGENT_TESTDATA` when set (a crate built elsewhere
/// from these sources), else `<CARGO_MANIFEST_DIR>/testdata`.
#[cfg(test)]
pub(crate) fn testdata() -> std::path::PathBuf {
    match std::env::var_os("LOOKOUT_AGENT_TESTDATA") {
        Some(dir) => dir.into(),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata"),
    }
}

#[cfg(test)]
mod tests_docker;
#[cfg(test)]
mod tests_fixtures;
#[cfg(test)]
mod tests_host;
