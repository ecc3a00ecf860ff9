//! node_exporter's `vmstat` collector with its default field filter,
//! `^(oom_kill|pgpg|pswp|pg.*fault).*`: page-ins and -outs, swap-ins and -outs, page faults and
//! OOM kills from `/proc/vmstat`, as `node_vmstat_<field>`.

use crate::metrics::parse;
use crate::model::Sample;

/// The fields the default filter lets through on Linux 4.x to 6.x (sample names are static; a new
/// field the filter would pass is skipped).
const FIELDS: &[(&str, &str)] = &[
    ("oom_kill", "node_vmstat_oom_kill"),
    ("pgpgin", "node_vmstat_pgpgin"),
    ("pgpgout", "node_vmstat_pgpgout"),
    ("pswpin", "node_vmstat_pswpin"),
    ("pswpout", "node_vmstat_pswpout"),
    ("pgfault", "node_vmstat_pgfault"),
    ("pgmajfault", "node_vmstat_pgmajfault"),
];

pub fn parse(buf: &[u8], out: &mut Vec<Sample>) {
    for (_, line) in parse::lines(buf) {
        let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
        let (Some(key), Some(value)) = (fields.next(), fields.next().and_then(parse::parse_u64)) else {
            continue;
        };
        if let Some((_, name)) = FIELDS.iter().find(|(f, _)| f.as_bytes() == key) {
            out.push(Sample::new(name, value as f64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_vmstat_gives_the_default_fields() {
        let text = std::fs::read_to_string(crate::metrics::testdata().join("proc/vmstat")).unwrap();
        let mut out = Vec::new();
        parse(text.as_bytes(), &mut out);
        let field = |f: &str| -> f64 {
            text.lines().find_map(|l| l.strip_prefix(&format!("{f} "))).unwrap().trim().parse().unwrap()
        };
        let got: Vec<_> = out.iter().map(|s| (s.name, s.value)).collect();
        let want: Vec<_> = FIELDS.iter().map(|(f, n)| (*n, field(f))).collect();
        let mut got_sorted = got.clone();
        got_sorted.sort_by(|a, b| a.0.cmp(b.0));
        let mut want_sorted = want;
        want_sorted.sort_by(|a, b| a.0.cmp(b.0));
        assert_eq!(got_sorted, want_sorted);
        // The filter is node_exporter's: a field it does not pass is left out.
        assert!(!got.iter().any(|(n, _)| *n == "node_vmstat_nr_free_pages"));
    }
}
