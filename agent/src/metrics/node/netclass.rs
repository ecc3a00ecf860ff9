//! node_exporter's `netclass` collector: each network interface's state, MTU, speed and carrier
//! from `/sys/class/net/<device>/`, a file per value; a file that is absent or refuses to be read
//! (`speed` of a virtual device answers EINVAL) leaves its family out for that device.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

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

/// `ifindex`'s place in [`NUMBERS`]: a file every interface has, so a failed read means the device
/// behind the open files is gone.
const IFINDEX: usize = 8;

/// The text files read besides [`NUMBERS`], in this order after them.
const TEXTS: [&str; 7] = ["speed", "operstate", "address", "broadcast", "duplex", "ifalias", "statistics/rx_nohandler"];

fn number(s: &str) -> Option<f64> {
    match s.strip_prefix("0x") {
        Some(hex) => i64::from_str_radix(hex, 16).ok().map(|v| v as f64),
        None => s.parse::<i64>().ok().map(|v| v as f64),
    }
}

/// One interface's attribute files, opened once: a sysfs attribute read again from offset 0 gives
/// its current value, so each tick costs a `pread` per value instead of an open, read and close
/// (2,300 of them a tick on a host with 100 containers' veths). `None` where the file is absent.
#[derive(Debug)]
struct Device {
    files: Vec<Option<File>>,
}

impl Device {
    fn open(dir: &Path) -> Device {
        let names = NUMBERS.iter().map(|(f, _)| *f).chain(TEXTS);
        Device { files: names.map(|f| File::open(dir.join(f)).ok()).collect() }
    }
}

/// Reads every interface under `<sys>/class/net` each tick, keeping their files open.
#[derive(Debug)]
pub struct NetClass {
    dir: PathBuf,
    devices: BTreeMap<String, Device>,
    exclude: Option<regex::Regex>,
    buf: Vec<u8>,
}

impl NetClass {
    pub fn new(class_net: &Path) -> NetClass {
        NetClass { dir: class_net.to_path_buf(), devices: BTreeMap::new(), exclude: None, buf: vec![0; 4096] }
    }

    /// Leaves the interfaces `exclude` matches out (their files are not even opened).
    pub fn exclude(&mut self, exclude: Option<regex::Regex>) {
        self.exclude = exclude;
        self.devices.clear();
    }

    /// `i`'s current value, trimmed; `None` if the file is absent or refuses to be read (the
    /// `speed` of a virtual device answers EINVAL).
    fn text(buf: &mut [u8], dev: &Device, i: usize) -> Option<String> {
        let n = dev.files[i].as_ref()?.read_at(buf, 0).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).trim_end_matches('\n').to_string())
    }

    /// Appends the samples of every interface, in name order.
    pub fn read(&mut self, out: &mut Vec<Sample>) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            self.devices.clear();
            return;
        };
        let mut present = BTreeSet::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if self.exclude.as_ref().is_some_and(|r| r.is_match(&name)) {
                continue;
            }
            // `bonding_masters` is a file beside the interfaces' directories (symlinks).
            if self.devices.contains_key(&name) || e.path().is_dir() {
                present.insert(name);
            }
        }
        self.devices.retain(|name, _| present.contains(name));
        for name in present {
            let dev = self.devices.entry(name.clone()).or_insert_with(|| Device::open(&self.dir.join(&name)));
            // A device gone and back under the same name leaves stale files: open them again.
            if dev.files[IFINDEX].as_ref().is_some_and(|f| f.read_at(&mut self.buf, 0).is_err()) {
                *dev = Device::open(&self.dir.join(&name));
            }
            let dev = &self.devices[&name];
            let label = || vec![("device", name.clone())];
            for (i, (_, family)) in NUMBERS.iter().enumerate() {
                if let Some(v) = Self::text(&mut self.buf, dev, i).as_deref().and_then(number) {
                    out.push(Sample::with(family, label(), v));
                }
            }
            let mut text = |j: usize| Self::text(&mut self.buf, dev, NUMBERS.len() + j);
            // Mbit/s in the file; -1 (unknown) is passed on as node_exporter does by default.
            if let Some(v) = text(0).as_deref().and_then(number) {
                out.push(Sample::with("node_network_speed_bytes", label(), v * 125_000.0));
            }
            let operstate = text(1).unwrap_or_default();
            out.push(Sample::with("node_network_up", label(), if operstate == "up" { 1.0 } else { 0.0 }));
            let info = vec![
                ("address", text(2).unwrap_or_default()),
                ("broadcast", text(3).unwrap_or_default()),
                ("device", name.clone()),
                ("duplex", text(4).unwrap_or_default()),
                ("ifalias", text(5).unwrap_or_default()),
                ("operstate", operstate),
            ];
            out.push(Sample::with("node_network_info", info, 1.0));
            // Packets dropped for want of a protocol handler: not in net/dev, but in the device's
            // statistics (node_exporter 1.5 reads it over netlink).
            if let Some(v) = text(6).as_deref().and_then(number) {
                out.push(Sample::with("node_network_receive_nohandler_total", label(), v));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_interface_and_one_without_speed() {
        let mut out = Vec::new();
        let mut reader = NetClass::new(&crate::metrics::testdata().join("sys/class/net"));
        reader.read(&mut out);
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
        assert_eq!(get("node_network_receive_nohandler_total", "eth0"), Some(0.0));
        // Read again through the files kept open: the same values.
        let first = out.clone();
        out.clear();
        reader.read(&mut out);
        assert_eq!(out, first);
    }

    #[test]
    fn ifindex_is_where_the_stale_check_looks() {
        assert_eq!(NUMBERS[IFINDEX].0, "ifindex");
    }

    #[test]
    fn kept_files_follow_changes_and_devices_come_and_go() {
        let tmp = tempfile::tempdir().unwrap();
        let dev = tmp.path().join("veth0");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("mtu"), "1500\n").unwrap();
        std::fs::write(dev.join("ifindex"), "7\n").unwrap();
        let mut reader = NetClass::new(tmp.path());
        let mtu = |reader: &mut NetClass| {
            let mut out = Vec::new();
            reader.read(&mut out);
            out.iter().find(|s| s.name == "node_network_mtu_bytes").map(|s| s.value)
        };
        assert_eq!(mtu(&mut reader), Some(1500.0));
        // Rewritten in place, as the kernel regenerates an attribute: the open file sees it.
        std::fs::OpenOptions::new().write(true).open(dev.join("mtu")).unwrap().write_all_at(b"9000\n", 0).unwrap();
        assert_eq!(mtu(&mut reader), Some(9000.0));
        std::fs::remove_dir_all(&dev).unwrap();
        assert_eq!(mtu(&mut reader), None);
        assert!(reader.devices.is_empty());
    }
}
