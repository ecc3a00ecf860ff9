//! node_exporter's `diskstats` collector: per-device I/O counters from `/proc/diskstats` (14, 18 or
//! 20 columns by kernel version; the later ones are left out where absent), in bytes and seconds.

use crate::metrics::parse;
use crate::model::Sample;

/// The columns after `major minor name`, in order: family, and the factor to node_exporter's unit
/// (sectors are always 512 bytes here; times are milliseconds).
const COLUMNS: [(&str, f64); 17] = [
    ("node_disk_reads_completed_total", 1.0),
    ("node_disk_reads_merged_total", 1.0),
    ("node_disk_read_bytes_total", 512.0),
    ("node_disk_read_time_seconds_total", 0.001),
    ("node_disk_writes_completed_total", 1.0),
    ("node_disk_writes_merged_total", 1.0),
    ("node_disk_written_bytes_total", 512.0),
    ("node_disk_write_time_seconds_total", 0.001),
    ("node_disk_io_now", 1.0),
    ("node_disk_io_time_seconds_total", 0.001),
    ("node_disk_io_time_weighted_seconds_total", 0.001),
    ("node_disk_discards_completed_total", 1.0),
    ("node_disk_discards_merged_total", 1.0),
    ("node_disk_discarded_sectors_total", 1.0),
    ("node_disk_discard_time_seconds_total", 0.001),
    ("node_disk_flush_requests_total", 1.0),
    ("node_disk_flush_requests_time_seconds_total", 0.001),
];

/// One device's line: major, minor, name, and its counters (11, 15 or 17).
pub struct Disk<'a> {
    pub major: u64,
    pub minor: u64,
    pub name: &'a str,
    counters: Vec<u64>,
}

impl Disk<'_> {
    /// The device's samples, labelled `device`.
    pub fn samples(&self, out: &mut Vec<Sample>) {
        for ((family, factor), v) in COLUMNS.iter().zip(&self.counters) {
            out.push(Sample::with(family, vec![("device", self.name.to_string())], *v as f64 * factor));
        }
    }
}

/// Parses `/proc/diskstats`; `Err` with the first bad line's number and text (the good lines are
/// still returned in the `Ok` part of each item).
pub fn parse(buf: &[u8]) -> impl Iterator<Item = Result<Disk<'_>, (usize, String)>> {
    parse::lines(buf).filter(|(_, l)| !parse::trim(l).is_empty()).map(|(n, line)| {
        let bad = || (n, String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned());
        let mut f = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
        let major = f.next().and_then(parse::parse_u64).ok_or_else(bad)?;
        let minor = f.next().and_then(parse::parse_u64).ok_or_else(bad)?;
        let name = f.next().and_then(|n| std::str::from_utf8(n).ok()).ok_or_else(bad)?;
        let counters = f.map(parse::parse_u64).collect::<Option<Vec<u64>>>().ok_or_else(bad)?;
        if !matches!(counters.len(), 11 | 15 | 17) {
            return Err(bad());
        }
        Ok(Disk { major, minor, name, counters })
    })
}

/// `node_disk_info`'s labels from a device's udev record (`E:KEY=value` lines of
/// `/run/udev/data/b<major>:<minor>`), each empty where udev has no such property, as node_exporter.
pub fn udev_labels(record: &str) -> [(&'static str, String); 5] {
    let get = |key: &str| {
        record
            .lines()
            .find_map(|l| l.strip_prefix("E:")?.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or("")
            .to_string()
    };
    [
        ("model", get("ID_MODEL")),
        ("path", get("ID_PATH")),
        ("revision", get("ID_REVISION")),
        ("serial", get("ID_SERIAL_SHORT")),
        ("wwn", get("ID_WWN")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_layout_and_bad_lines() {
        let buf = b"   8       0 sda 100 2 800 30 50 1 400 20 0 40 50\n \
 259 0 nvme0n1 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15\n \
 254 0 vda 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n \
 7 0 loop0 1 2 x\n";
        let disks: Vec<_> = parse(buf).collect();
        assert_eq!(disks.len(), 4);
        let mut out = Vec::new();
        disks[0].as_ref().unwrap().samples(&mut out);
        assert_eq!(out.len(), 11);
        assert_eq!(out[2].name, "node_disk_read_bytes_total");
        assert_eq!(out[2].value, 800.0 * 512.0);
        assert_eq!(out[3].value, 0.03);
        out.clear();
        disks[2].as_ref().unwrap().samples(&mut out);
        assert_eq!(out.len(), 17);
        assert_eq!(out[16].name, "node_disk_flush_requests_time_seconds_total");
        assert_eq!(out[16].value, 0.017);
        assert_eq!(disks[3].as_ref().err().map(|e| e.0), Some(4));
    }

    #[test]
    fn udev_properties_become_info_labels() {
        let record =
            "S:disk/by-id/ata-X\nE:ID_MODEL=Samsung_SSD\nE:ID_SERIAL_SHORT=S3Z\nE:ID_PATH=pci-0000:00:17.0-ata-1\n";
        let labels = udev_labels(record);
        assert_eq!(labels[0], ("model", "Samsung_SSD".to_string()));
        assert_eq!(labels[1], ("path", "pci-0000:00:17.0-ata-1".to_string()));
        assert_eq!(labels[3], ("serial", "S3Z".to_string()));
        assert_eq!(labels[4], ("wwn", String::new()));
        assert!(udev_labels("").iter().all(|(_, v)| v.is_empty()));
    }
}
