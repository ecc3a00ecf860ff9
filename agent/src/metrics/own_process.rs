//! The agent's own process, under the `process_*` names every Prometheus exporter gives itself, so
//! the "exporter" panels of node_exporter dashboards show what the agent costs its host.

use procfs::process::{LimitValue, Process};

use crate::model::Sample;

/// A limit as Prometheus's Go client reports it: "unlimited" is the largest u64.
fn limit(v: LimitValue) -> f64 {
    match v {
        LimitValue::Unlimited => u64::MAX as f64,
        LimitValue::Value(n) => n as f64,
    }
}

/// CPU seconds, memory, open and allowed file descriptors and start time of this process, from
/// `/proc/self` (always the agent's own, whatever proc root the host metrics come from). A file
/// that cannot be read leaves out its families.
pub fn read(out: &mut Vec<Sample>) {
    let Ok(me) = Process::myself() else { return };
    let ticks = procfs::ticks_per_second() as f64;
    if let Ok(stat) = me.stat() {
        out.push(Sample::new("process_cpu_seconds_total", (stat.utime + stat.stime) as f64 / ticks));
        out.push(Sample::new("process_virtual_memory_bytes", stat.vsize as f64));
        out.push(Sample::new("process_resident_memory_bytes", (stat.rss * procfs::page_size()) as f64));
        if let Ok(boot) = procfs::boot_time_secs() {
            out.push(Sample::new("process_start_time_seconds", boot as f64 + stat.starttime as f64 / ticks));
        }
    }
    if let Ok(n) = me.fd_count() {
        out.push(Sample::new("process_open_fds", n as f64));
    }
    if let Ok(limits) = me.limits() {
        out.push(Sample::new("process_max_fds", limit(limits.max_open_files.soft_limit)));
        out.push(Sample::new("process_virtual_memory_max_bytes", limit(limits.max_address_space.soft_limit)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let mut out = Vec::new();
        read(&mut out);
        let v = |n: &str| out.iter().find(|s| s.name == n).map(|s| s.value).unwrap_or_else(|| panic!("{n}"));
        assert_eq!(out.len(), 7, "{out:?}");
        let files = std::fs::read_dir("/proc/self/fd").unwrap().count() as f64;
        assert!((v("process_open_fds") - files).abs() <= 2.0, "{} vs {files}", v("process_open_fds"));
        assert!(v("process_resident_memory_bytes") > 1e6);
        assert!(v("process_max_fds") >= v("process_open_fds"));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(v("process_start_time_seconds") <= now + 1.0 && v("process_start_time_seconds") > now - 86400.0);
        assert_eq!(limit(LimitValue::Unlimited), 18446744073709551615.0);
    }
}
