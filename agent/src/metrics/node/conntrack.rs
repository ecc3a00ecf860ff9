//! node_exporter's `conntrack` collector, where the netfilter module is loaded: tracked connections
//! and the table's limit, from `/proc/sys/net/netfilter/`.

/// The two files and their families.
pub const FILES: [(&str, &str); 2] = [
    ("sys/net/netfilter/nf_conntrack_count", "node_nf_conntrack_entries"),
    ("sys/net/netfilter/nf_conntrack_max", "node_nf_conntrack_entries_limit"),
];

/// `/proc/net/stat/nf_conntrack`: one row of hexadecimal counters per cpu under a header naming
/// them. node_exporter sums the rows into these families.
const STATS: [(&str, &str); 8] = [
    ("found", "node_nf_conntrack_stat_found"),
    ("invalid", "node_nf_conntrack_stat_invalid"),
    ("ignore", "node_nf_conntrack_stat_ignore"),
    ("insert", "node_nf_conntrack_stat_insert"),
    ("insert_failed", "node_nf_conntrack_stat_insert_failed"),
    ("drop", "node_nf_conntrack_stat_drop"),
    ("early_drop", "node_nf_conntrack_stat_early_drop"),
    ("search_restart", "node_nf_conntrack_stat_search_restart"),
];

/// The per-cpu table summed; `None` if a row is not hexadecimal or the header lacks a column.
pub fn parse_stat(buf: &[u8]) -> Option<Vec<crate::model::Sample>> {
    let text = std::str::from_utf8(buf).ok()?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next()?.split_whitespace().collect();
    let columns: Vec<usize> =
        STATS.iter().map(|(col, _)| header.iter().position(|h| h == col)).collect::<Option<_>>()?;
    let mut sums = [0u64; STATS.len()];
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let row: Vec<&str> = line.split_whitespace().collect();
        for (sum, &c) in sums.iter_mut().zip(&columns) {
            *sum = sum.wrapping_add(u64::from_str_radix(row.get(c)?, 16).ok()?);
        }
    }
    Some(STATS.iter().zip(sums).map(|((_, family), v)| crate::model::Sample::new(family, v as f64)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_cpu_rows_are_summed_from_hex() {
        let buf = std::fs::read(crate::metrics::testdata().join("proc/net/stat/nf_conntrack")).unwrap();
        let out = parse_stat(&buf).unwrap();
        let v = |n: &str| out.iter().find(|s| s.name == n).unwrap().value;
        assert_eq!(out.len(), 8);
        assert_eq!(v("node_nf_conntrack_stat_found"), (0x1a + 0x2) as f64);
        assert_eq!(v("node_nf_conntrack_stat_search_restart"), (0x10 + 0xff) as f64);
        assert_eq!(v("node_nf_conntrack_stat_drop"), 0.0);
        assert!(parse_stat(b"entries found\n0000000z 00000001\n").is_none());
    }
}
