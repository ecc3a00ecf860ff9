//! node_exporter's `thermal_zone` collector: the temperature of each thermal zone and the throttle
//! state of each cooling device, from `/sys/class/thermal/` (zones in millidegrees Celsius).
//!
//! Only where the firmware describes them: virtual machines usually have none, and then there is
//! nothing to read (and, as in node_exporter, nothing has failed).

use std::path::Path;

use super::sysfs::{self, Bad};
use crate::model::Sample;

/// Appends every zone's `node_thermal_zone_temp` and every cooling device's `_cur_state` and
/// `_max_state` under `dir` (`/sys/class/thermal`). A zone whose temperature cannot be read (ENODATA
/// while it is disabled) is left out; a value that is not a number is left out and returned.
pub fn read(dir: &Path, out: &mut Vec<Sample>) -> Vec<Bad> {
    let mut bad = Vec::new();
    let text = |p: &Path| sysfs::attr(p).map(|t| t.trim().to_string()).unwrap_or_default();
    for (zone, path) in sysfs::numbered(dir, "thermal_zone") {
        if let Some(milli) = sysfs::number(&path.join("temp"), &mut bad) {
            let labels = vec![("type", text(&path.join("type"))), ("zone", zone)];
            out.push(Sample::with("node_thermal_zone_temp", labels, milli as f64 / 1000.0));
        }
    }
    for (name, path) in sysfs::numbered(dir, "cooling_device") {
        let kind = text(&path.join("type"));
        for (file, family) in
            [("cur_state", "node_cooling_device_cur_state"), ("max_state", "node_cooling_device_max_state")]
        {
            if let Some(v) = sysfs::number(&path.join(file), &mut bad) {
                out.push(Sample::with(family, vec![("name", name.clone()), ("type", kind.clone())], v as f64));
            }
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_in_celsius_and_cooling_devices() {
        // A laptop's layout: an ACPI zone, a package sensor below zero, a disabled zone, a fan and a
        // processor's throttle states. Hand-made: this machine's /sys/class/thermal is empty.
        let tmp = tempfile::tempdir().unwrap();
        let put = |rel: &str, v: &str| sysfs::write_tree(tmp.path(), &[(rel, v)]);
        put("thermal_zone0/type", "acpitz\n");
        put("thermal_zone0/temp", "27800\n");
        put("thermal_zone0/policy", "step_wise\n");
        put("thermal_zone1/type", "x86_pkg_temp\n");
        put("thermal_zone1/temp", "-1500\n");
        put("thermal_zone2/type", "iwlwifi_1\n");
        put("cooling_device0/type", "Fan\n");
        put("cooling_device0/cur_state", "0\n");
        put("cooling_device0/max_state", "1\n");
        put("cooling_device1/type", "Processor\n");
        put("cooling_device1/cur_state", "-1\n");
        put("cooling_device1/max_state", "ten\n");
        let mut out = Vec::new();
        let bad = read(tmp.path(), &mut out);
        let got: Vec<(&str, Vec<&str>, f64)> =
            out.iter().map(|s| (s.name, s.labels.iter().map(|(_, v)| v.as_str()).collect(), s.value)).collect();
        assert_eq!(
            got,
            [
                ("node_thermal_zone_temp", vec!["acpitz", "0"], 27.8),
                ("node_thermal_zone_temp", vec!["x86_pkg_temp", "1"], -1.5),
                ("node_cooling_device_cur_state", vec!["0", "Fan"], 0.0),
                ("node_cooling_device_max_state", vec!["0", "Fan"], 1.0),
                ("node_cooling_device_cur_state", vec!["1", "Processor"], -1.0),
            ]
        );
        assert_eq!(bad, [Bad { path: tmp.path().join("cooling_device1/max_state"), text: "ten".into() }]);
        assert!(read(Path::new("/nonexistent"), &mut out).is_empty());
    }
}
