//! What [`ContainerCgroup`](super::ContainerCgroup) reads from each stat file, and the samples it
//! makes of them: the file tables for v1 and v2, and the per-tick accumulator that turns parsed
//! values into cAdvisor's metrics (names, units; counters stay counters).

use super::parse::{self, BadLine};
use crate::model::Sample;

/// Which file a kept-open descriptor is, and so how to parse it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    V1CpuacctUsage,
    V1CpuacctStat,
    V1CpuStat,
    V1CfsQuota,
    V1CfsPeriod,
    V1CpuShares,
    V1MemUsage,
    V1MemStat,
    V1MemLimit,
    V1MemFailcnt,
    V1OomControl,
    V1Blkio,
    V2CpuStat,
    V2CpuMax,
    V2CpuWeight,
    V2MemCurrent,
    V2SwapCurrent,
    V2MemStat,
    V2MemMax,
    V2MemEvents,
    V2IoStat,
    PidsCurrent,
    PidsMax,
    Pressure(usize),
}

pub(super) const V1_FILES: &[(usize, &str, Kind)] = &[
    // (index into `cgroup::V1_CONTROLLERS`: cpu, cpuacct, memory, blkio, pids; file; kind)
    (1, "cpuacct.usage", Kind::V1CpuacctUsage),
    (1, "cpuacct.stat", Kind::V1CpuacctStat),
    (0, "cpu.stat", Kind::V1CpuStat),
    (0, "cpu.cfs_quota_us", Kind::V1CfsQuota),
    (0, "cpu.cfs_period_us", Kind::V1CfsPeriod),
    (0, "cpu.shares", Kind::V1CpuShares),
    (2, "memory.usage_in_bytes", Kind::V1MemUsage),
    (2, "memory.stat", Kind::V1MemStat),
    (2, "memory.limit_in_bytes", Kind::V1MemLimit),
    (2, "memory.failcnt", Kind::V1MemFailcnt),
    (2, "memory.oom_control", Kind::V1OomControl),
    (3, "blkio.throttle.io_service_bytes", Kind::V1Blkio),
    (4, "pids.current", Kind::PidsCurrent),
    (4, "pids.max", Kind::PidsMax),
];

pub(super) const V2_FILES: &[(&str, Kind)] = &[
    ("cpu.stat", Kind::V2CpuStat),
    ("cpu.max", Kind::V2CpuMax),
    ("cpu.weight", Kind::V2CpuWeight),
    ("memory.current", Kind::V2MemCurrent),
    ("memory.swap.current", Kind::V2SwapCurrent),
    ("memory.stat", Kind::V2MemStat),
    ("memory.max", Kind::V2MemMax),
    ("memory.events", Kind::V2MemEvents),
    ("io.stat", Kind::V2IoStat),
    ("pids.current", Kind::PidsCurrent),
    ("pids.max", Kind::PidsMax),
];

pub(super) const PSI_FILES: [&str; 3] = ["cpu.pressure", "memory.pressure", "io.pressure"];

/// `(waiting, stalled)` metric names for cpu, memory, io.
const PSI_METRICS: [[&str; 2]; 3] = [
    ["container_pressure_cpu_waiting_seconds_total", "container_pressure_cpu_stalled_seconds_total"],
    ["container_pressure_memory_waiting_seconds_total", "container_pressure_memory_stalled_seconds_total"],
    ["container_pressure_io_waiting_seconds_total", "container_pressure_io_stalled_seconds_total"],
];

/// v1 `cpuacct.stat` counts in USER_HZ ticks, which is 100 on every Linux architecture the agent
/// targets (runc and cAdvisor assume the same).
const USER_HZ: f64 = 100.0;

/// v1 reports "no limit" as PAGE_COUNTER_MAX pages in bytes (9223372036854771712 with 4 KiB pages,
/// less with bigger pages); any limit from 2^62 bytes up is that.
const V1_UNLIMITED: u64 = 1 << 62;

/// This tick's values, gathered from all files before emitting (working set needs two files).
#[derive(Default)]
pub(super) struct Acc {
    cpu_usage: Option<f64>,
    cpu_user: Option<f64>,
    cpu_system: Option<f64>,
    periods: Option<u64>,
    throttled_periods: Option<u64>,
    throttled_seconds: Option<f64>,
    /// `Some(None)`: read, and no quota set.
    quota: Option<Option<u64>>,
    period: Option<u64>,
    shares: Option<u64>,
    mem_usage: Option<u64>,
    swap: Option<u64>,
    mapped_file: Option<u64>,
    failcnt: Option<u64>,
    rss: Option<u64>,
    cache: Option<u64>,
    inactive_file: Option<u64>,
    mem_limit: Option<u64>,
    oom_kills: Option<u64>,
    fs_rw: Option<(u64, u64)>,
    processes: Option<u64>,
    /// `Some(None)`: read, and no limit.
    pids_max: Option<Option<u64>>,
    pressure: [[Option<u64>; 2]; 3],
}

/// Calls `f` on every well-formed pair and returns the first bad line, if any.
fn flat<'a>(buf: &'a [u8], mut f: impl FnMut(&[u8], u64)) -> Result<(), BadLine<'a>> {
    let mut bad = None;
    for r in parse::parse_flat_keyed(buf) {
        match r {
            Ok((k, v)) => f(k, v),
            Err(b) => {
                bad.get_or_insert(b);
            }
        }
    }
    bad.map_or(Ok(()), Err)
}

/// A whole-file value that failed to parse, reported as line 1.
fn whole(buf: &[u8]) -> BadLine<'_> {
    BadLine { line: 1, text: parse::trim(buf) }
}

fn single(buf: &[u8]) -> Result<u64, BadLine<'_>> {
    parse::parse_single_u64(buf).ok_or_else(|| whole(buf))
}

impl Acc {
    pub(super) fn take<'a>(&mut self, kind: Kind, buf: &'a [u8]) -> Result<(), BadLine<'a>> {
        let s = |ns: u64, per_s: f64| Some(ns as f64 / per_s);
        match kind {
            Kind::V1CpuacctUsage => self.cpu_usage = s(single(buf)?, 1e9),
            Kind::V1CpuacctStat => flat(buf, |k, v| match k {
                b"user" => self.cpu_user = s(v, USER_HZ),
                b"system" => self.cpu_system = s(v, USER_HZ),
                _ => {}
            })?,
            Kind::V1CpuStat => flat(buf, |k, v| match k {
                b"nr_periods" => self.periods = Some(v),
                b"nr_throttled" => self.throttled_periods = Some(v),
                b"throttled_time" => self.throttled_seconds = s(v, 1e9),
                _ => {}
            })?,
            Kind::V2CpuStat => flat(buf, |k, v| match k {
                b"usage_usec" => self.cpu_usage = s(v, 1e6),
                b"user_usec" => self.cpu_user = s(v, 1e6),
                b"system_usec" => self.cpu_system = s(v, 1e6),
                b"nr_periods" => self.periods = Some(v),
                b"nr_throttled" => self.throttled_periods = Some(v),
                b"throttled_usec" => self.throttled_seconds = s(v, 1e6),
                _ => {}
            })?,
            Kind::V1CfsQuota => {
                let q = parse::parse_i64(parse::trim(buf)).ok_or_else(|| whole(buf))?;
                self.quota = Some(u64::try_from(q).ok());
            }
            Kind::V1CfsPeriod => self.period = Some(single(buf)?),
            Kind::V1CpuShares => self.shares = Some(single(buf)?),
            // cAdvisor reports v2's weight (1..10000) as the v1 shares it stands for (2..262144),
            // inverting runc's shares-to-weight mapping.
            Kind::V2CpuWeight => self.shares = Some(2 + (single(buf)?.clamp(1, 10_000) - 1) * 262_142 / 9_999),
            Kind::V2CpuMax => {
                let (quota, period) = parse::parse_cpu_max(buf).ok_or_else(|| whole(buf))?;
                (self.quota, self.period) = (Some(quota), Some(period));
            }
            Kind::V1MemUsage | Kind::V2MemCurrent => self.mem_usage = Some(single(buf)?),
            Kind::V2SwapCurrent => self.swap = Some(single(buf)?),
            Kind::V1MemFailcnt => self.failcnt = Some(single(buf)?),
            Kind::V1MemStat => flat(buf, |k, v| match k {
                b"total_rss" => self.rss = Some(v),
                b"total_cache" => self.cache = Some(v),
                b"total_inactive_file" => self.inactive_file = Some(v),
                b"total_swap" => self.swap = Some(v),
                b"total_mapped_file" => self.mapped_file = Some(v),
                _ => {}
            })?,
            Kind::V2MemStat => flat(buf, |k, v| match k {
                b"anon" => self.rss = Some(v),
                b"file" => self.cache = Some(v),
                b"inactive_file" => self.inactive_file = Some(v),
                b"file_mapped" => self.mapped_file = Some(v),
                _ => {}
            })?,
            Kind::V1MemLimit => {
                let v = single(buf)?;
                self.mem_limit = Some(if v >= V1_UNLIMITED { 0 } else { v });
            }
            Kind::V2MemMax => {
                let v = parse::parse_u64_or_max(buf).ok_or_else(|| whole(buf))?;
                self.mem_limit = Some(v.unwrap_or(0));
            }
            // v1 has `oom_kill` in memory.oom_control since Linux 4.13 (memory.failcnt counts limit
            // hits, not kills); v2 in memory.events, beside `max`, its count of limit hits.
            Kind::V1OomControl | Kind::V2MemEvents => flat(buf, |k, v| match k {
                b"oom_kill" => self.oom_kills = Some(v),
                b"max" if kind == Kind::V2MemEvents => self.failcnt = Some(v),
                _ => {}
            })?,
            Kind::V1Blkio => self.fs_rw = Some(parse::sum_blkio_read_write(buf)?),
            Kind::V2IoStat => self.fs_rw = Some(parse::sum_nested_keyed(buf, b"rbytes", b"wbytes")?),
            Kind::PidsCurrent => self.processes = Some(single(buf)?),
            Kind::PidsMax => self.pids_max = Some(parse::parse_u64_or_max(buf).ok_or_else(|| whole(buf))?),
            Kind::Pressure(i) => {
                let (some, full) = parse::parse_pressure(buf)?;
                self.pressure[i] = [some, full];
            }
        }
        Ok(())
    }

    pub(super) fn emit(&self, out: &mut Vec<Sample>) {
        let mut put = |name: &'static str, v: Option<f64>| {
            if let Some(v) = v {
                out.push(Sample::new(name, v));
            }
        };
        let f = |v: Option<u64>| v.map(|v| v as f64);
        put("container_cpu_usage_seconds_total", self.cpu_usage);
        put("container_cpu_user_seconds_total", self.cpu_user);
        put("container_cpu_system_seconds_total", self.cpu_system);
        put("container_cpu_cfs_periods_total", f(self.periods));
        put("container_cpu_cfs_throttled_periods_total", f(self.throttled_periods));
        put("container_cpu_cfs_throttled_seconds_total", self.throttled_seconds);
        if let Some(Some(quota)) = self.quota {
            put("container_spec_cpu_quota", Some(quota as f64));
            put("container_spec_cpu_period", f(self.period));
        }
        put("container_spec_cpu_shares", f(self.shares));
        put("container_memory_usage_bytes", f(self.mem_usage));
        put("container_memory_swap", f(self.swap));
        put("container_memory_mapped_file", f(self.mapped_file));
        put("container_memory_failcnt", f(self.failcnt));
        let working_set = self.mem_usage.map(|u| u.saturating_sub(self.inactive_file.unwrap_or(0)));
        put("container_memory_working_set_bytes", f(working_set));
        put("container_memory_rss", f(self.rss));
        put("container_memory_cache", f(self.cache));
        put("container_spec_memory_limit_bytes", f(self.mem_limit));
        put("container_oom_events_total", f(self.oom_kills));
        put("container_fs_reads_bytes_total", f(self.fs_rw.map(|rw| rw.0)));
        put("container_fs_writes_bytes_total", f(self.fs_rw.map(|rw| rw.1)));
        // pids.current counts tasks, that is threads: cAdvisor's container_threads. cAdvisor counts
        // container_processes by walking /proc; the pids controller's count stands in for it.
        put("container_processes", f(self.processes));
        put("container_threads", f(self.processes));
        // cAdvisor reports an unlimited pids.max as 0.
        put("container_threads_max", self.pids_max.map(|m| m.unwrap_or(0) as f64));
        for (names, [some, full]) in PSI_METRICS.iter().zip(self.pressure) {
            put(names[0], some.map(|us| us as f64 / 1e6));
            put(names[1], full.map(|us| us as f64 / 1e6));
        }
    }
}
