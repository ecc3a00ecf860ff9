//! node_exporter's `hwmon` collector: every hardware monitor's sensors (temperatures, fans, voltages,
//! currents, power, energy, humidity, alarms) from `/sys/class/hwmon/hwmon<N>/`, under node_exporter
//! 1.5's names, `chip` and `sensor` labels and units, its quirks included, since dashboards read them
//! (`temp1_crit_alarm` is `node_hwmon_temp_crit_alarm_celsius`, scaled as a temperature).
//!
//! A sensor file is `<type><n>_<property>` (`temp1_input`, `fan2_min`); files under the monitor's
//! `device/` (where old kernels put them) are read after its own and win. Only where the hardware
//! has monitors: virtual machines usually have none, and then the collector has nothing to read.

use std::collections::BTreeMap;
use std::path::Path;

use super::sysfs;
use crate::model::{intern, Sample};

/// The sensor types node_exporter 1.5 reads; other files (`name`, `uevent`, `freq1_input`) are not
/// sensors to it.
const TYPES: [&str; 13] = [
    "vrm",
    "beep_enable",
    "update_interval",
    "in",
    "cpu",
    "fan",
    "pwm",
    "temp",
    "curr",
    "power",
    "energy",
    "humidity",
    "intrusion",
];

/// node_exporter's `cleanMetricName`: lower case, every character but `[a-z0-9:_]` as `_`, no `_`
/// at either end.
fn clean(s: &str) -> String {
    let lower = s.to_lowercase();
    let replaced: String = lower
        .chars()
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == ':' || c == '_' { c } else { '_' })
        .collect();
    replaced.trim_matches('_').to_string()
}

/// A sensor file's name as (type, number, property); `None` for a file that is not one.
fn split(file: &str) -> Option<(&str, u32, &str)> {
    let digits_at = file.find(|c: char| c.is_ascii_digit()).unwrap_or(file.len());
    let (kind, rest) = file.split_at(digits_at);
    if kind.is_empty() {
        return None;
    }
    let digits_end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    let (digits, rest) = rest.split_at(digits_end);
    let property = match rest.strip_prefix('_') {
        Some(p) if !p.is_empty() => p,
        None if rest.is_empty() => "",
        _ => return None,
    };
    let n = if digits.is_empty() { 0 } else { digits.parse().ok()? };
    Some((kind, n, property))
}

/// The `chip` label: the monitor's device as `<parent>_<device>` (`platform_coretemp_0`,
/// `pci0000:00_0000:00:18_3`), else its `name`, else its directory (`hwmon3`).
fn chip_of(dir: &Path) -> Option<String> {
    if let Ok(device) = std::fs::canonicalize(dir.join("device")) {
        let name = device.file_name().map(|n| clean(&n.to_string_lossy())).unwrap_or_default();
        let parent =
            device.parent().and_then(|p| p.file_name()).map(|n| clean(&n.to_string_lossy())).unwrap_or_default();
        match (parent.is_empty(), name.is_empty()) {
            (false, false) => return Some(format!("{parent}_{name}")),
            (true, false) => return Some(name),
            _ => {}
        }
    }
    if let Ok(name) = std::fs::read_to_string(dir.join("name")) {
        let name = clean(&name);
        if !name.is_empty() {
            return Some(name);
        }
    }
    let real = std::fs::canonicalize(dir).ok()?;
    Some(clean(&real.file_name()?.to_string_lossy())).filter(|n| !n.is_empty())
}

/// Each sensor's properties and their raw values, keyed by (type, number).
type Sensors = BTreeMap<(String, u32), BTreeMap<String, String>>;

fn gather(dir: &Path, sensors: &mut Sensors) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    for e in entries.flatten() {
        let Ok(file) = e.file_name().into_string() else { continue };
        let Some((kind, n, property)) = split(&file) else { continue };
        if !TYPES.contains(&kind) {
            continue;
        }
        // Directories (`power/`) and write-only files refuse to be read: not sensors.
        let Some(raw) = sysfs::attr(&e.path()) else { continue };
        sensors
            .entry((kind.to_string(), n))
            .or_default()
            .insert(property.to_string(), raw.trim_matches('\n').to_string());
    }
    true
}

/// The family of one property of a `kind` sensor, and the factor its raw value is multiplied by.
fn family(kind: &str, property: &str, has_bare: bool) -> (String, f64) {
    let mut name = format!("node_hwmon_{kind}");
    match property {
        "input" if has_bare => name.push_str("_input"),
        "input" | "" => {}
        p => {
            name.push('_');
            name.push_str(&clean(p));
        }
    }
    let (suffix, factor) = match (kind, property) {
        (_, "fault" | "alarm") => ("", 1.0),
        (_, "beep") => ("_enabled", 1.0),
        ("in" | "cpu", _) => ("_volts", 0.001),
        ("temp", p) if p != "type" => ("_celsius", 0.001),
        ("curr", _) => ("_amps", 0.001),
        ("energy", _) => ("_joule_total", 1e-6),
        ("power", "accuracy") => ("", 1e-6),
        ("power", "average_interval" | "average_interval_min" | "average_interval_max") => ("_seconds", 0.001),
        ("power", _) => ("_watt", 1e-6),
        ("humidity", _) => ("", 1e-6),
        ("fan", "input" | "min" | "max" | "target") => ("_rpm", 1.0),
        _ => ("", 1.0),
    };
    name.push_str(suffix);
    (name, factor)
}

/// Appends the samples of every monitor under `dir` (`/sys/class/hwmon`); `false` if there is no
/// such directory (no monitors: node_exporter's "no data").
pub fn read(dir: &Path, out: &mut Vec<Sample>) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    let mut monitors: Vec<_> = entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    monitors.sort();
    for monitor in monitors {
        let Some(chip) = chip_of(&monitor) else { continue };
        let mut sensors = Sensors::new();
        if !gather(&monitor, &mut sensors) {
            continue;
        }
        let device = monitor.join("device");
        if device.is_dir() {
            gather(&device, &mut sensors);
        }
        if let Ok(name) = std::fs::read_to_string(monitor.join("name")) {
            let chip_name = clean(&name);
            if !chip_name.is_empty() {
                out.push(Sample::with(
                    "node_hwmon_chip_names",
                    vec![("chip", chip.clone()), ("chip_name", chip_name)],
                    1.0,
                ));
            }
        }
        for ((kind, n), properties) in &sensors {
            let sensor = format!("{kind}{n}");
            let labels = || vec![("chip", chip.clone()), ("sensor", sensor.clone())];
            if let Some(label) = properties.get("label") {
                let labels = vec![("chip", chip.clone()), ("label", label.clone()), ("sensor", sensor.clone())];
                out.push(Sample::with("node_hwmon_sensor_label", labels, 1.0));
            }
            let has_bare = properties.contains_key("");
            for (property, raw) in properties.iter().filter(|(p, _)| *p != "label") {
                match kind.as_str() {
                    "beep_enable" => {
                        out.push(Sample::with("node_hwmon_beep_enabled", labels(), if raw == "1" { 1.0 } else { 0.0 }));
                        continue;
                    }
                    "vrm" | "update_interval" => {
                        let Ok(v) = raw.parse::<f64>() else { continue };
                        let (name, v) = if kind == "vrm" {
                            ("node_hwmon_voltage_regulator_version", v)
                        } else {
                            ("node_hwmon_update_interval_seconds", v * 0.001)
                        };
                        out.push(Sample::with(name, labels(), v));
                        continue;
                    }
                    _ => {}
                }
                // A value that is not a number (an enable file's text, say) is no sample, as there.
                let Ok(v) = raw.parse::<f64>() else { continue };
                let (name, factor) = family(kind, property, has_bare);
                // Bounded: the names come from the kernel's drivers, not from containers.
                out.push(Sample::with(intern(&name), labels(), v * factor));
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_split_as_node_exporter_splits_them() {
        assert_eq!(split("temp1_input"), Some(("temp", 1, "input")));
        assert_eq!(split("temp01_max"), Some(("temp", 1, "max")));
        assert_eq!(split("power1_average_interval"), Some(("power", 1, "average_interval")));
        assert_eq!(split("beep_enable"), Some(("beep_enable", 0, "")));
        assert_eq!(split("in0"), Some(("in", 0, "")));
        assert_eq!(split("temp1_"), None);
        assert_eq!(split("temp1x"), None);
        assert_eq!(split("1temp"), None);
        assert_eq!(clean("ACPI TZ-1\n"), "acpi_tz_1");
        assert_eq!(clean("coretemp.0"), "coretemp_0");
        assert_eq!(clean("0000:00:18.3"), "0000:00:18_3");
    }

    #[test]
    fn sensors_of_a_real_layout_under_node_exporters_names() {
        // A desktop's coretemp and nct6775 monitors and an ACPI one, as the kernel's sysfs interface
        // lays them out. Hand-made: this machine has no
        // /sys/class/hwmon.
        let tmp = tempfile::tempdir().unwrap();
        let put = |rel: &str, v: &str| sysfs::write_tree(tmp.path(), &[(rel, v)]);
        let class = tmp.path().join("class/hwmon");
        std::fs::create_dir_all(&class).unwrap();
        let link = |hwmon: &str, device: &str| {
            let dev = tmp.path().join(device);
            std::fs::create_dir_all(&dev).unwrap();
            let mon = dev.join("hwmon").join(hwmon);
            std::fs::create_dir_all(&mon).unwrap();
            std::os::unix::fs::symlink(&dev, mon.join("device")).unwrap();
            std::os::unix::fs::symlink(&mon, class.join(hwmon)).unwrap();
            mon
        };
        let core = link("hwmon0", "devices/platform/coretemp.0");
        let rel = |p: &Path, f: &str| p.join(f).strip_prefix(tmp.path()).unwrap().to_str().unwrap().to_string();
        for (f, v) in [
            ("name", "coretemp\n"),
            ("temp1_input", "45000\n"),
            ("temp1_label", "Package id 0\n"),
            ("temp1_max", "80000\n"),
            ("temp1_crit", "100000\n"),
            ("temp1_crit_alarm", "0\n"),
        ] {
            put(&rel(&core, f), v);
        }
        let sio = link("hwmon1", "devices/platform/nct6775.656");
        for (f, v) in [
            ("name", "nct6798\n"),
            ("fan1_input", "1150\n"),
            ("fan1_min", "300\n"),
            ("fan1_alarm", "0\n"),
            ("in0_input", "1032\n"),
            ("pwm1", "128\n"),
            ("pwm1_enable", "5\n"),
            ("power1_average", "12500000\n"),
            ("energy1_input", "3000000\n"),
            ("curr1_input", "1500\n"),
            ("intrusion0_alarm", "1\n"),
            ("beep_enable", "1\n"),
            ("freq1_input", "100\n"),
            ("temp2_type", "3\n"),
        ] {
            put(&rel(&sio, f), v);
        }
        // No device link: named by its name file; a bare value beside an input.
        put("class/hwmon/hwmon2/name", "ACPI TZ\n");
        put("class/hwmon/hwmon2/temp1_input", "30000\n");
        put("class/hwmon/hwmon2/temp5", "1\n");
        put("class/hwmon/hwmon2/temp5_input", "2000\n");
        let mut out = Vec::new();
        assert!(read(&class, &mut out));
        let got: Vec<String> = out
            .iter()
            .map(|s| {
                let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{}{{{}}} {}", s.name, labels.join(","), s.value)
            })
            .collect();
        let want = [
            "node_hwmon_chip_names{chip=platform_coretemp_0,chip_name=coretemp} 1",
            "node_hwmon_sensor_label{chip=platform_coretemp_0,label=Package id 0,sensor=temp1} 1",
            "node_hwmon_temp_crit_celsius{chip=platform_coretemp_0,sensor=temp1} 100",
            "node_hwmon_temp_crit_alarm_celsius{chip=platform_coretemp_0,sensor=temp1} 0",
            "node_hwmon_temp_celsius{chip=platform_coretemp_0,sensor=temp1} 45",
            "node_hwmon_temp_max_celsius{chip=platform_coretemp_0,sensor=temp1} 80",
            "node_hwmon_chip_names{chip=platform_nct6775_656,chip_name=nct6798} 1",
            "node_hwmon_beep_enabled{chip=platform_nct6775_656,sensor=beep_enable0} 1",
            "node_hwmon_curr_amps{chip=platform_nct6775_656,sensor=curr1} 1.5",
            "node_hwmon_energy_joule_total{chip=platform_nct6775_656,sensor=energy1} 3",
            "node_hwmon_fan_alarm{chip=platform_nct6775_656,sensor=fan1} 0",
            "node_hwmon_fan_rpm{chip=platform_nct6775_656,sensor=fan1} 1150",
            "node_hwmon_fan_min_rpm{chip=platform_nct6775_656,sensor=fan1} 300",
            "node_hwmon_in_volts{chip=platform_nct6775_656,sensor=in0} 1.032",
            "node_hwmon_intrusion_alarm{chip=platform_nct6775_656,sensor=intrusion0} 1",
            "node_hwmon_power_average_watt{chip=platform_nct6775_656,sensor=power1} 12.5",
            "node_hwmon_pwm{chip=platform_nct6775_656,sensor=pwm1} 128",
            "node_hwmon_pwm_enable{chip=platform_nct6775_656,sensor=pwm1} 5",
            "node_hwmon_temp_type{chip=platform_nct6775_656,sensor=temp2} 3",
            "node_hwmon_chip_names{chip=acpi_tz,chip_name=acpi_tz} 1",
            "node_hwmon_temp_celsius{chip=acpi_tz,sensor=temp1} 30",
            "node_hwmon_temp_celsius{chip=acpi_tz,sensor=temp5} 0.001",
            "node_hwmon_temp_input_celsius{chip=acpi_tz,sensor=temp5} 2",
        ];
        assert_eq!(got, want);
        assert!(!read(&tmp.path().join("nope"), &mut out), "no monitors at all");
    }
}
