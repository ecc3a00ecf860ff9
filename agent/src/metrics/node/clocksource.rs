//! The clock sources of node_exporter's `time` collector: which ones each clocksource device offers
//! and which it uses, from `/sys/devices/system/clocksource/clocksource<N>/`.

use std::path::Path;

use crate::model::Sample;

/// `node_time_clocksource_available_info` and `_current_info` for every clocksource device under
/// `dir`; nothing where the directory is missing.
pub fn read(dir: &Path, out: &mut Vec<Sample>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut devices: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("clocksource").map(str::to_string))
        .filter(|n| n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty())
        .collect();
    devices.sort();
    for device in devices {
        let base = dir.join(format!("clocksource{device}"));
        let read = |f: &str| std::fs::read_to_string(base.join(f)).unwrap_or_default();
        for source in read("available_clocksource").split_whitespace() {
            let labels = vec![("clocksource", source.to_string()), ("device", device.clone())];
            out.push(Sample::with("node_time_clocksource_available_info", labels, 1.0));
        }
        if let Some(current) = read("current_clocksource").split_whitespace().next() {
            let labels = vec![("clocksource", current.to_string()), ("device", device.clone())];
            out.push(Sample::with("node_time_clocksource_current_info", labels, 1.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_files() {
        let mut out = Vec::new();
        read(&crate::metrics::testdata().join("sys/devices/system/clocksource"), &mut out);
        let got: Vec<(&str, &str)> = out.iter().map(|s| (s.name, s.labels[0].1.as_str())).collect();
        assert_eq!(
            got,
            [
                ("node_time_clocksource_available_info", "tsc"),
                ("node_time_clocksource_available_info", "kvm-clock"),
                ("node_time_clocksource_current_info", "tsc"),
            ]
        );
        assert!(out.iter().all(|s| s.labels[1] == ("device", "0".to_string())));
        out.clear();
        read(Path::new("/nonexistent"), &mut out);
        assert!(out.is_empty());
    }
}
