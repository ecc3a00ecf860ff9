//! node_exporter's `cpufreq` collector: each cpu's current, minimum and maximum frequency, of the
//! hardware (`cpuinfo_*`) and of the governor's scaling (`scaling_*`), from
//! `/sys/devices/system/cpu/cpu<N>/cpufreq/`, in hertz (the files are in kHz).
//!
//! Only where the kernel has a cpufreq driver: virtual machines usually have none, and then there is
//! nothing to read (and, as in node_exporter, nothing has failed).

use std::path::Path;

use super::sysfs::{self, Bad};
use crate::model::Sample;

/// The files and their families, as node_exporter 1.5 exports them.
const FILES: [(&str, &str); 6] = [
    ("cpuinfo_cur_freq", "node_cpu_frequency_hertz"),
    ("cpuinfo_min_freq", "node_cpu_frequency_min_hertz"),
    ("cpuinfo_max_freq", "node_cpu_frequency_max_hertz"),
    ("scaling_cur_freq", "node_cpu_scaling_frequency_hertz"),
    ("scaling_min_freq", "node_cpu_scaling_frequency_min_hertz"),
    ("scaling_max_freq", "node_cpu_scaling_frequency_max_hertz"),
];

/// Appends the frequencies of every cpu under `cpu_dir` (`/sys/devices/system/cpu`) that has a
/// `cpufreq` directory. A file that is absent or unreadable (`cpuinfo_cur_freq` is root's alone) is
/// left out; one that does not hold a number (`<unknown>` when the driver cannot tell) is left out
/// and returned.
pub fn read(cpu_dir: &Path, out: &mut Vec<Sample>) -> Vec<Bad> {
    let mut bad = Vec::new();
    for (cpu, dir) in sysfs::numbered(cpu_dir, "cpu") {
        let freq = dir.join("cpufreq");
        if !freq.is_dir() {
            continue;
        }
        for (file, family) in FILES {
            if let Some(khz) = sysfs::number(&freq.join(file), &mut bad) {
                out.push(Sample::with(family, vec![("cpu", cpu.clone())], khz as f64 * 1000.0));
            }
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequencies_in_hertz_for_the_cpus_with_a_driver() {
        // The layout of a host with the acpi-cpufreq driver, whose cpu1 has no policy and whose
        // driver cannot tell cpu2's current frequency. Hand-made: this machine has no cpufreq driver.
        let tmp = tempfile::tempdir().unwrap();
        let put = |rel: &str, v: &str| sysfs::write_tree(tmp.path(), &[(rel, v)]);
        for (f, v) in [
            ("cpuinfo_cur_freq", "1800000\n"),
            ("cpuinfo_min_freq", "800000\n"),
            ("cpuinfo_max_freq", "3400000\n"),
            ("scaling_cur_freq", "1799998\n"),
            ("scaling_min_freq", "800000\n"),
            ("scaling_max_freq", "3400000\n"),
            ("scaling_governor", "schedutil\n"),
        ] {
            put(&format!("cpu0/cpufreq/{f}"), v);
        }
        put("cpu1/topology/core_id", "1\n");
        put("cpu2/cpufreq/scaling_cur_freq", "<unknown>\n");
        put("cpu2/cpufreq/scaling_max_freq", "2000000\n");
        put("cpufreq/boost", "1\n");
        let mut out = Vec::new();
        let bad = read(tmp.path(), &mut out);
        let got: Vec<(&str, &str, f64)> = out.iter().map(|s| (s.name, s.labels[0].1.as_str(), s.value)).collect();
        assert_eq!(
            got,
            [
                ("node_cpu_frequency_hertz", "0", 1.8e9),
                ("node_cpu_frequency_min_hertz", "0", 8e8),
                ("node_cpu_frequency_max_hertz", "0", 3.4e9),
                ("node_cpu_scaling_frequency_hertz", "0", 1.799998e9),
                ("node_cpu_scaling_frequency_min_hertz", "0", 8e8),
                ("node_cpu_scaling_frequency_max_hertz", "0", 3.4e9),
                ("node_cpu_scaling_frequency_max_hertz", "2", 2e9),
            ]
        );
        assert_eq!(bad.len(), 1);
        assert!(bad[0].path.ends_with("cpu2/cpufreq/scaling_cur_freq") && bad[0].text == "<unknown>", "{bad:?}");
        // This machine's own cpus: whatever they have, nothing fails.
        assert!(read(Path::new("/sys/devices/system/cpu"), &mut Vec::new()).is_empty());
    }
}
