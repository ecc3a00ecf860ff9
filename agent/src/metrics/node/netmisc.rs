//! node_exporter's small network collectors, each from one /proc/net file: `arp` (neighbour entries
//! per device), `softnet` (per-cpu packet processing from `softnet_stat`) and `udp_queues` (bytes
//! waiting in UDP sockets' queues, from `udp` and `udp6`).

use std::collections::BTreeMap;

use crate::metrics::parse;
use crate::model::Sample;

/// `/proc/net/arp`: a header, then one entry per line with the device last.
pub fn arp(buf: &[u8], out: &mut Vec<Sample>) {
    let mut per_device: BTreeMap<String, u64> = BTreeMap::new();
    for (_, line) in parse::lines(buf).skip(1) {
        if let Some(dev) = line.split(|&b| b == b' ').filter(|f| !f.is_empty()).nth(5) {
            *per_device.entry(String::from_utf8_lossy(dev).into_owned()).or_default() += 1;
        }
    }
    for (device, n) in per_device {
        out.push(Sample::with("node_arp_entries", vec![("device", device)], n as f64));
    }
}

/// `/proc/net/softnet_stat`: one line per cpu, hexadecimal columns: processed, dropped,
/// time_squeezed, ... The cpu label is the line's position, as in node_exporter 1.5.
pub fn softnet(buf: &[u8], out: &mut Vec<Sample>) {
    let families = ["node_softnet_processed_total", "node_softnet_dropped_total", "node_softnet_times_squeezed_total"];
    for (cpu, (_, line)) in parse::lines(buf).filter(|(_, l)| !parse::trim(l).is_empty()).enumerate() {
        let cols: Vec<u64> = line
            .split(|&b| b == b' ')
            .filter(|f| !f.is_empty())
            .take(3)
            .filter_map(|f| std::str::from_utf8(f).ok().and_then(|f| u64::from_str_radix(f, 16).ok()))
            .collect();
        if cols.len() == 3 {
            for (family, v) in families.iter().zip(cols) {
                out.push(Sample::with(family, vec![("cpu", cpu.to_string())], v as f64));
            }
        }
    }
}

/// `/proc/net/udp` or `udp6`: sums the `tx_queue:rx_queue` column (hexadecimal) over all sockets.
/// `None` when a line does not have it.
pub fn udp_queues(buf: &[u8]) -> Option<(u64, u64)> {
    let (mut tx, mut rx) = (0u64, 0u64);
    for (_, line) in parse::lines(buf).skip(1).filter(|(_, l)| !parse::trim(l).is_empty()) {
        let queues = line.split(|&b| b == b' ').filter(|f| !f.is_empty()).nth(4)?;
        let text = std::str::from_utf8(queues).ok()?;
        let (t, r) = text.split_once(':')?;
        tx = tx.saturating_add(u64::from_str_radix(t, 16).ok()?);
        rx = rx.saturating_add(u64::from_str_radix(r, 16).ok()?);
    }
    Some((tx, rx))
}

/// The samples of both UDP files' sums, labelled as node_exporter labels them.
pub fn udp_samples(ip: &str, (tx, rx): (u64, u64), out: &mut Vec<Sample>) {
    out.push(Sample::with("node_udp_queues", vec![("ip", ip.to_string()), ("queue", "rx".to_string())], rx as f64));
    out.push(Sample::with("node_udp_queues", vec![("ip", ip.to_string()), ("queue", "tx".to_string())], tx as f64));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(rel: &str) -> Vec<u8> {
        std::fs::read(crate::metrics::testdata().join(rel)).unwrap()
    }

    #[test]
    fn real_files() {
        let mut out = Vec::new();
        arp(&fixture("proc/net/arp"), &mut out);
        softnet(&fixture("proc/net/softnet_stat"), &mut out);
        let got: Vec<_> = out.iter().map(|s| (s.name, s.labels[0].1.as_str(), s.value)).collect();
        assert_eq!(
            got,
            [
                ("node_arp_entries", "eth0", 1.0),
                ("node_softnet_processed_total", "0", 35.0),
                ("node_softnet_dropped_total", "0", 0.0),
                ("node_softnet_times_squeezed_total", "0", 0.0),
                ("node_softnet_processed_total", "1", 19223.0),
                ("node_softnet_dropped_total", "1", 0.0),
                ("node_softnet_times_squeezed_total", "1", 0.0),
            ]
        );
        assert_eq!(udp_queues(&fixture("proc/net/udp")), Some((0x40, 0x300)));
        assert_eq!(udp_queues(b"header\n  0: 0100007F:0035 00000000:0000 07 zz:0 00\n"), None);
    }
}
