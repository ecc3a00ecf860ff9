//! node_exporter's `meminfo` collector: every field of `/proc/meminfo`. `Name: N kB` becomes
//! `node_memory_<Name>_bytes` (N × 1024), a field without a unit (`HugePages_Total: 0`) becomes
//! `node_memory_<Name>`, and `(anon)`, `(file)` become `_anon`, `_file` (`Active_anon`).

use crate::metrics::parse;
use crate::model::Sample;

/// A field and its two names (without and with a unit). Sample names are static, so the fields are
/// the kernel's (Documentation/filesystems/proc.rst, 6.x, and what older kernels had); a field not
/// listed here is skipped.
type Field = (&'static str, &'static str, &'static str);

macro_rules! fields {
    ($($field:literal => $stem:literal),* $(,)?) => {
        &[$(($field, concat!("node_memory_", $stem), concat!("node_memory_", $stem, "_bytes"))),*]
    };
}

const FIELDS: &[Field] = fields![
    "MemTotal" => "MemTotal", "MemFree" => "MemFree", "MemAvailable" => "MemAvailable",
    "Buffers" => "Buffers", "Cached" => "Cached", "SwapCached" => "SwapCached",
    "Active" => "Active", "Inactive" => "Inactive", "Active(anon)" => "Active_anon",
    "Inactive(anon)" => "Inactive_anon", "Active(file)" => "Active_file", "Inactive(file)" => "Inactive_file",
    "Unevictable" => "Unevictable", "Mlocked" => "Mlocked", "HighTotal" => "HighTotal",
    "HighFree" => "HighFree", "LowTotal" => "LowTotal", "LowFree" => "LowFree", "MmapCopy" => "MmapCopy",
    "SwapTotal" => "SwapTotal", "SwapFree" => "SwapFree", "Zswap" => "Zswap", "Zswapped" => "Zswapped",
    "Dirty" => "Dirty", "Writeback" => "Writeback", "AnonPages" => "AnonPages", "Mapped" => "Mapped",
    "Shmem" => "Shmem", "KReclaimable" => "KReclaimable", "Slab" => "Slab",
    "SReclaimable" => "SReclaimable", "SUnreclaim" => "SUnreclaim", "KernelStack" => "KernelStack",
    "ShadowCallStack" => "ShadowCallStack", "PageTables" => "PageTables",
    "SecPageTables" => "SecPageTables", "NFS_Unstable" => "NFS_Unstable", "Bounce" => "Bounce",
    "WritebackTmp" => "WritebackTmp", "CommitLimit" => "CommitLimit", "Committed_AS" => "Committed_AS",
    "VmallocTotal" => "VmallocTotal", "VmallocUsed" => "VmallocUsed", "VmallocChunk" => "VmallocChunk",
    "Percpu" => "Percpu", "HardwareCorrupted" => "HardwareCorrupted", "AnonHugePages" => "AnonHugePages",
    "ShmemHugePages" => "ShmemHugePages", "ShmemPmdMapped" => "ShmemPmdMapped",
    "FileHugePages" => "FileHugePages", "FilePmdMapped" => "FilePmdMapped", "CmaTotal" => "CmaTotal",
    "CmaFree" => "CmaFree", "Unaccepted" => "Unaccepted", "Balloon" => "Balloon",
    "HugePages_Total" => "HugePages_Total", "HugePages_Free" => "HugePages_Free",
    "HugePages_Rsvd" => "HugePages_Rsvd", "HugePages_Surp" => "HugePages_Surp",
    "Hugepagesize" => "Hugepagesize", "Hugetlb" => "Hugetlb", "DirectMap4k" => "DirectMap4k",
    "DirectMap2M" => "DirectMap2M", "DirectMap4M" => "DirectMap4M", "DirectMap1G" => "DirectMap1G",
    "Quicklists" => "Quicklists",
];

/// The samples of a `/proc/meminfo`; `Err` with the first line that is not `Name: number [kB]`.
pub fn parse(buf: &[u8], out: &mut Vec<Sample>) -> Result<(), (usize, String)> {
    let mut bad = None;
    for (n, line) in parse::lines(buf) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            bad.get_or_insert((n, String::from_utf8_lossy(line).into_owned()));
            continue;
        };
        let key = &line[..colon];
        let mut rest = line[colon + 1..].split(|&b| b == b' ').filter(|f| !f.is_empty());
        let (Some(value), unit) = (rest.next().and_then(parse::parse_u64), rest.next()) else {
            bad.get_or_insert((n, String::from_utf8_lossy(line).into_owned()));
            continue;
        };
        let Some((_, plain, bytes)) = FIELDS.iter().find(|(f, _, _)| f.as_bytes() == key) else {
            continue;
        };
        match unit {
            Some(b"kB") => out.push(Sample::new(bytes, value as f64 * 1024.0)),
            None => out.push(Sample::new(plain, value as f64)),
            Some(_) => {
                bad.get_or_insert((n, String::from_utf8_lossy(line).into_owned()));
            }
        }
    }
    bad.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Vec<(&'static str, f64)> {
        let mut out = Vec::new();
        parse(text.as_bytes(), &mut out).unwrap();
        out.into_iter().map(|s| (s.name, s.value)).collect()
    }

    #[test]
    fn every_field_of_a_real_meminfo_is_named_as_node_exporter_names_it() {
        let text = std::fs::read_to_string(crate::metrics::testdata().join("proc/meminfo")).unwrap();
        let got = read(&text);
        assert_eq!(got.len(), text.lines().count(), "every field of the fixture is known");
        let v = |name: &str| got.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        let kb = |field: &str| -> f64 {
            let line = text.lines().find(|l| l.starts_with(&format!("{field}:"))).unwrap();
            line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap()
        };
        assert_eq!(v("node_memory_MemFree_bytes"), Some(kb("MemFree") * 1024.0));
        assert_eq!(v("node_memory_Active_anon_bytes"), Some(kb("Active(anon)") * 1024.0));
        assert_eq!(v("node_memory_Hugepagesize_bytes"), Some(kb("Hugepagesize") * 1024.0));
        assert_eq!(v("node_memory_HugePages_Total"), Some(kb("HugePages_Total")), "no unit, no _bytes");
        assert_eq!(v("node_memory_SReclaimable_bytes"), Some(kb("SReclaimable") * 1024.0));
    }

    #[test]
    fn this_hosts_meminfo_parses_whole() {
        let text = std::fs::read_to_string("/proc/meminfo").unwrap();
        assert!(read(&text).len() >= 40);
    }

    #[test]
    fn a_line_that_is_not_a_field_is_reported_and_the_rest_kept() {
        let mut out = Vec::new();
        let err = parse(b"MemTotal: 10 kB\ngarbage\nMemFree: x kB\nSwapFree: 5 kB\nNewField: 3 kB\n", &mut out);
        assert_eq!(err, Err((2, "garbage".to_string())));
        let names: Vec<_> = out.iter().map(|s| (s.name, s.value)).collect();
        assert_eq!(names, [("node_memory_MemTotal_bytes", 10240.0), ("node_memory_SwapFree_bytes", 5120.0)]);
    }
}
