//! node_exporter's `sockstat` collector: sockets in use per protocol from `/proc/net/sockstat` and
//! `/proc/net/sockstat6`, as `node_sockstat_<PROTO>_<field>`, and the memory ones also in bytes.

use crate::metrics::parse;
use crate::model::{intern, Sample};

/// Appends one sockstat file's samples. `page_size` turns `mem` (pages) into `mem_bytes`, as
/// node_exporter does. A field without a number is skipped.
pub fn parse(buf: &[u8], page_size: u64, out: &mut Vec<Sample>) {
    for (_, line) in parse::lines(buf) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let proto = String::from_utf8_lossy(&line[..colon]);
        let words: Vec<&[u8]> = line[colon + 1..].split(|&b| b == b' ').filter(|f| !f.is_empty()).collect();
        for pair in words.chunks_exact(2) {
            let (key, Some(v)) = (String::from_utf8_lossy(pair[0]), parse::parse_u64(pair[1])) else {
                continue;
            };
            if proto == "sockets" {
                // `sockets: used N` is the one line without a protocol.
                out.push(Sample::new(intern(&format!("node_sockstat_sockets_{key}")), v as f64));
                continue;
            }
            out.push(Sample::new(intern(&format!("node_sockstat_{proto}_{key}")), v as f64));
            if key == "mem" {
                out.push(Sample::new(intern(&format!("node_sockstat_{proto}_mem_bytes")), (v * page_size) as f64));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_files_give_node_exporters_names() {
        let mut out = Vec::new();
        for f in ["proc/net/sockstat", "proc/net/sockstat6"] {
            parse(&std::fs::read(crate::metrics::testdata().join(f)).unwrap(), 4096, &mut out);
        }
        let got: Vec<_> = out.iter().map(|s| (s.name, s.value)).collect();
        let want = [
            ("node_sockstat_sockets_used", 31.0),
            ("node_sockstat_TCP_inuse", 3.0),
            ("node_sockstat_TCP_orphan", 0.0),
            ("node_sockstat_TCP_tw", 2.0),
            ("node_sockstat_TCP_alloc", 3.0),
            ("node_sockstat_TCP_mem", 238.0),
            ("node_sockstat_TCP_mem_bytes", 238.0 * 4096.0),
            ("node_sockstat_UDP_inuse", 0.0),
            ("node_sockstat_UDP_mem", 0.0),
            ("node_sockstat_UDP_mem_bytes", 0.0),
            ("node_sockstat_UDPLITE_inuse", 0.0),
            ("node_sockstat_RAW_inuse", 0.0),
            ("node_sockstat_FRAG_inuse", 0.0),
            ("node_sockstat_FRAG_memory", 0.0),
            ("node_sockstat_TCP6_inuse", 0.0),
            ("node_sockstat_UDP6_inuse", 0.0),
            ("node_sockstat_UDPLITE6_inuse", 0.0),
            ("node_sockstat_RAW6_inuse", 0.0),
            ("node_sockstat_FRAG6_inuse", 0.0),
            ("node_sockstat_FRAG6_memory", 0.0),
        ];
        assert_eq!(got, want);
    }
}
