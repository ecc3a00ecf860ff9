//! node_exporter's `netclass` collector: each network interface's state, MTU, speed and carrier
//! from `/sys/class/net/<device>/`, a file per value; a file that is absent or refuses to be read
//! (`speed` of a virtual device answers EINVAL) leaves its family out for that device.

use std::path::Path;

use crate::model::Sample;

/// Numeric files and their families. `dev_id` and `flags` are hexadecimal (`0x1003`).
const NUMBERS: [(&str, &str); 16] = [
    ("addr_assign_type", "node_network_address_assign_type"),
    ("carrier", "node_network_carrier"),
    ("carrier_changes", "node_network_carrier_changes_total"),
    ("carrier_up_count", "node_network_carrier_up_changes_total"),
    ("carrier_down_count", "node_network_carrier_down_changes_total"),
    ("dev_id", "node_network_device_id"),
    ("dormant", "node_network_dormant"),
    ("flags", "node_network_flags"),
    ("ifindex", "node_network_iface_id"),
    ("iflink", "node_network_iface_link"),
    ("link_mode", "node_network_iface_link_mode"),
    ("mtu", "node_network_mtu_bytes"),
    ("name_assign_type", "node_network_name_assign_type"),
    ("netdev_group", "node_network_net_dev_group"),
    ("type", "node_network_protocol_type"),
    ("tx_queue_len", "node_network_transmit_queue_length"),
];

fn text(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file)).ok().map(|s| s.trim_end_matches('\n').to_string())
}

fn number(s: &str) -> Option<f64> {
    match s.strip_prefix("0x") {
        Some(hex) => i64::from_str_radix(hex, 16).ok().map(|v| v as f64),
        None => s.parse::<i64>().ok().map(|v| v as f64),
    }
}

/// Appends the samples of every interface under `class_net` (`<sys>/class/net`), in name order.
pub fn read(class_net: &Path, out: &mut Vec<Sample>) {
    let Ok(entries) = std::fs::read_dir(class_net) else {
        return;
    };
    // `bonding_masters` is a file beside the interfaces' directories (symlinks).
    let mut devices: Vec<_> = entries.flatten().filter(|e| e.path().is_dir()).map(|e| e.file_name()).collect();
    devices.sort();
    for name in devices {
        let dir = class_net.join(&name);
        let device = name.to_string_lossy().into_owned();
        let label = || vec![("device", device.clone())];
        for (file, family) in NUMBERS {
            if let Some(v) = text(&dir, file).as_deref().and_then(number) {
                out.push(Sample::with(family, label(), v));
            }
        }
        // Mbit/s in the file; -1 (unknown) is passed on as node_exporter does by default.
        if let Some(v) = text(&dir, "speed").as_deref().and_then(number) {
            out.push(Sample::with("node_network_speed_bytes", label(), v * 125_000.0));
        }
        let operstate = text(&dir, "operstate").unwrap_or_default();
        out.push(Sample::with("node_network_up", label(), if operstate == "up" { 1.0 } else { 0.0 }));
        let info = vec![
            ("address", text(&dir, "address").unwrap_or_default()),
            ("broadcast", text(&dir, "broadcast").unwrap_or_default()),
            ("device", device.clone()),
            ("duplex", text(&dir, "duplex").unwrap_or_default()),
            ("ifalias", text(&dir, "ifalias").unwrap_or_default()),
            ("operstate", operstate),
        ];
        out.push(Sample::with("node_network_info", info, 1.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_interface_and_one_without_speed() {
        let mut out = Vec::new();
        read(&crate::metrics::testdata().join("sys/class/net"), &mut out);
        let get = |name: &str, dev: &str| {
            out.iter()
                .find(|s| s.name == name && s.labels.iter().any(|(k, v)| *k == "device" && v == dev))
                .map(|s| s.value)
        };
        assert_eq!(get("node_network_mtu_bytes", "eth0"), Some(1400.0));
        assert_eq!(get("node_network_flags", "eth0"), Some(4099.0));
        assert_eq!(get("node_network_speed_bytes", "eth0"), Some(-125_000.0));
        assert_eq!(get("node_network_up", "eth0"), Some(1.0));
        assert_eq!(get("node_network_carrier_changes_total", "eth0"), Some(2.0));
        // lo's `speed` refuses to be read: no family rather than a made-up value.
        assert_eq!(get("node_network_speed_bytes", "lo"), None);
        assert_eq!(get("node_network_up", "lo"), Some(0.0));
        let info = out.iter().find(|s| s.name == "node_network_info" && s.labels[2].1 == "eth0").unwrap();
        assert_eq!(
            info.labels,
            [
                ("address", "02:fc:00:00:00:01".to_string()),
                ("broadcast", "ff:ff:ff:ff:ff:ff".to_string()),
                ("device", "eth0".to_string()),
                ("duplex", "unknown".to_string()),
                ("ifalias", String::new()),
                ("operstate", "up".to_string()),
            ]
        );
    }
}
