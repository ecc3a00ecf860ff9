//! node_exporter's `netstat` collector: the protocol counters of `/proc/net/netstat`, `/proc/net/snmp`
//! and `/proc/net/snmp6` as `node_netstat_<Proto>_<Field>`, through node_exporter 1.x's default filter.

use std::sync::OnceLock;

use crate::metrics::parse;
use crate::model::{intern, Sample};

/// node_exporter 1.5's default `--collector.netstat.fields`.
const DEFAULT_FIELDS: &str = r"^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts)|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$";

fn accepted(name: &str) -> bool {
    static FIELDS: OnceLock<regex::Regex> = OnceLock::new();
    FIELDS.get_or_init(|| regex::Regex::new(DEFAULT_FIELDS).expect("the default pattern compiles")).is_match(name)
}

fn push(proto: &str, field: &str, value: &[u8], out: &mut Vec<Sample>) {
    let key = format!("{proto}_{field}");
    if !accepted(&key) {
        return;
    }
    // Counters are unsigned, but Tcp's MaxConn is -1; everything parses as a float, as in node_exporter.
    if let Some(v) = std::str::from_utf8(value).ok().and_then(|v| v.parse::<f64>().ok()) {
        out.push(Sample::new(intern(&format!("node_netstat_{key}")), v));
    }
}

/// `/proc/net/netstat` and `/proc/net/snmp`: pairs of lines, `Proto: Name1 Name2 ...` then
/// `Proto: 1 2 ...`. A pair whose lines disagree (name or length) is skipped.
pub fn parse_paired(buf: &[u8], out: &mut Vec<Sample>) {
    let mut lines = parse::lines(buf).map(|(_, l)| l);
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let split = |l: &[u8]| -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
            let colon = l.iter().position(|&b| b == b':')?;
            let rest = l[colon + 1..].split(|&b| b == b' ').filter(|f| !f.is_empty()).map(<[u8]>::to_vec).collect();
            Some((l[..colon].to_vec(), rest))
        };
        let (Some((p1, names)), Some((p2, values))) = (split(names), split(values)) else {
            continue;
        };
        if p1 != p2 || names.len() != values.len() {
            continue;
        }
        let proto = String::from_utf8_lossy(&p1);
        for (n, v) in names.iter().zip(&values) {
            push(&proto, &String::from_utf8_lossy(n), v, out);
        }
    }
}

/// `/proc/net/snmp6`: `Ip6InReceives   12` per line; the protocol is the name up to its `6`.
pub fn parse_snmp6(buf: &[u8], out: &mut Vec<Sample>) {
    for (_, line) in parse::lines(buf) {
        let mut fields = line.split(|&b| b == b' ' || b == b'\t').filter(|f| !f.is_empty());
        let (Some(key), Some(value)) = (fields.next(), fields.next()) else {
            continue;
        };
        let key = String::from_utf8_lossy(key);
        let Some(six) = key.find('6') else {
            continue;
        };
        push(&key[..=six], &key[six + 1..], value, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(rel: &str) -> Vec<Sample> {
        let buf = std::fs::read(crate::metrics::testdata().join(rel)).unwrap();
        let mut out = Vec::new();
        if rel.ends_with("snmp6") {
            parse_snmp6(&buf, &mut out)
        } else {
            parse_paired(&buf, &mut out)
        }
        out
    }

    fn value(out: &[Sample], name: &str) -> Option<f64> {
        out.iter().find(|s| s.name == name).map(|s| s.value)
    }

    #[test]
    fn real_files_give_the_default_fields_only() {
        let snmp = read("proc/net/snmp");
        assert_eq!(value(&snmp, "node_netstat_Tcp_ActiveOpens"), Some(184.0));
        assert_eq!(value(&snmp, "node_netstat_Ip_Forwarding"), Some(1.0));
        assert_eq!(value(&snmp, "node_netstat_Udp_InErrors"), Some(0.0));
        // Not in the default filter.
        assert_eq!(value(&snmp, "node_netstat_Tcp_MaxConn"), None);
        let netstat = read("proc/net/netstat");
        assert_eq!(value(&netstat, "node_netstat_TcpExt_ListenOverflows"), Some(0.0));
        assert_eq!(value(&netstat, "node_netstat_TcpExt_TCPTimeouts"), Some(2.0));
        assert_eq!(value(&netstat, "node_netstat_IpExt_InOctets"), Some(283_884_750.0));
        assert_eq!(value(&netstat, "node_netstat_TcpExt_DelayedACKs"), None);
        let snmp6 = read("proc/net/snmp6");
        assert_eq!(value(&snmp6, "node_netstat_Ip6_InOctets"), Some(128.0));
        assert!(value(&snmp6, "node_netstat_Udp6_InDatagrams").is_some());
        assert!(value(&snmp6, "node_netstat_UdpLite6_InErrors").is_some());
        assert_eq!(value(&snmp6, "node_netstat_Ip6_InReceives"), None);
    }

    #[test]
    fn mismatched_pairs_are_skipped() {
        let mut out = Vec::new();
        parse_paired(
            b"Tcp: ActiveOpens PassiveOpens\nUdp: 1 2\nTcp: ActiveOpens\nTcp: 3 4\nTcp: ActiveOpens\nTcp: 5\n",
            &mut out,
        );
        assert_eq!(
            out.iter().map(|s| (s.name, s.value)).collect::<Vec<_>>(),
            vec![("node_netstat_Tcp_ActiveOpens", 5.0)]
        );
    }
}
