//! A container's network counters, from `/proc/<pid>/net/dev` of its main process, which shows the
//! interfaces of the container's network namespace.
//!
//! Unlike the cgroup files this one is opened afresh each tick (into a reused buffer): an open
//! `/proc/<pid>/net/dev` pins the network namespace it was opened in, so a kept descriptor would keep
//! a dead container's namespace alive and go on reporting it after a restart gave the container a
//! new pid and namespace. It is one file per container, so the cost is small.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::parse;
use crate::model::Sample;

/// cAdvisor's per-interface families and the `/proc/net/dev` column each comes from.
pub const CADVISOR_NET: [(&str, usize); 8] = [
    ("container_network_receive_bytes_total", 0),
    ("container_network_receive_packets_total", 1),
    ("container_network_receive_errors_total", 2),
    ("container_network_receive_packets_dropped_total", 3),
    ("container_network_transmit_bytes_total", 8),
    ("container_network_transmit_packets_total", 9),
    ("container_network_transmit_errors_total", 10),
    ("container_network_transmit_packets_dropped_total", 11),
];

/// Reading a container's `net/dev` failed. Always names the file.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("reading {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}:{line}: unexpected content {text:?}", path.display())]
    Parse { path: PathBuf, line: usize, text: String },
}

/// Reads one container's `/proc/<pid>/net/dev`.
#[derive(Debug)]
pub struct ContainerNet {
    path: PathBuf,
}

impl ContainerNet {
    /// `pid` is the container's main process as seen from `proc_root`.
    pub fn new(proc_root: &Path, pid: u32) -> Self {
        ContainerNet { path: proc_root.join(pid.to_string()).join("net/dev") }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends cAdvisor's network families ([`CADVISOR_NET`]), labelled `interface`, for every
    /// interface but `lo`. A process that has gone is skipped
    /// (`Ok` with nothing appended); a malformed line is skipped and reported after the others.
    pub fn read(&mut self, out: &mut Vec<Sample>) -> Result<(), NetError> {
        super::with_scratch(|buf| self.read_into(buf, out))
    }

    fn read_into(&self, buf: &mut Vec<u8>, out: &mut Vec<Sample>) -> Result<(), NetError> {
        buf.clear();
        let res = File::open(&self.path).and_then(|mut f| f.read_to_end(buf));
        match res {
            Ok(_) => {}
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(rustix::io::Errno::SRCH.raw_os_error()) =>
            {
                return Ok(())
            }
            Err(source) => return Err(NetError::Io { path: self.path.clone(), source }),
        }
        let mut first_err = None;
        for r in parse::parse_net_dev(buf) {
            match r {
                Ok((b"lo", _)) => {}
                Ok((name, f)) => {
                    let iface = String::from_utf8_lossy(name).into_owned();
                    for (name, col) in CADVISOR_NET {
                        out.push(Sample::with(name, vec![("interface", iface.clone())], f[col] as f64));
                    }
                }
                Err(bad) => {
                    first_err.get_or_insert_with(|| NetError::Parse {
                        path: self.path.clone(),
                        line: bad.line,
                        text: String::from_utf8_lossy(&bad.text[..bad.text.len().min(200)]).into_owned(),
                    });
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::testdata;

    fn value(out: &[Sample], name: &str, iface: &str) -> Option<f64> {
        out.iter().find(|s| s.name == name && s.labels == [("interface", iface.to_string())]).map(|s| s.value)
    }

    #[test]
    fn fixture_net_dev_skips_lo() {
        let mut net = ContainerNet::new(&testdata().join("proc"), 4242);
        let mut out = Vec::new();
        net.read(&mut out).unwrap();
        // Eight families (bytes, packets, errors, drops; each way) for eth0 and eth1.
        assert_eq!(out.len(), 16, "{out:?}");
        assert_eq!(value(&out, "container_network_receive_bytes_total", "eth0"), Some(1234567.0));
        assert_eq!(value(&out, "container_network_transmit_bytes_total", "eth0"), Some(7654321.0));
        assert_eq!(value(&out, "container_network_receive_bytes_total", "eth1"), Some(100.0));
        assert_eq!(value(&out, "container_network_receive_packets_total", "eth0"), Some(6513.0));
        assert_eq!(value(&out, "container_network_transmit_packets_total", "eth0"), Some(4721.0));
        assert_eq!(value(&out, "container_network_receive_packets_total", "eth1"), Some(2.0));
        assert_eq!(value(&out, "container_network_transmit_packets_total", "eth1"), Some(3.0));
        assert!(out.iter().all(|s| s.labels[0].1 != "lo"));
    }

    #[test]
    fn gone_pid_is_skipped() {
        let mut net = ContainerNet::new(&testdata().join("proc"), 999_999_999);
        let mut out = Vec::new();
        net.read(&mut out).unwrap();
        assert!(out.is_empty());
    }
}
