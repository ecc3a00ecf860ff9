//! node_exporter's `stat` collector, the lines of `/proc/stat` other than the cpus (which
//! `host.rs` reads as the `cpu` collector): interrupts, context switches, boot time, forks and
//! processes running or blocked.

use crate::metrics::parse;
use crate::model::Sample;

/// Appends the samples of a `/proc/stat`'s totals; a line it knows with no number is skipped.
pub fn parse(buf: &[u8], out: &mut Vec<Sample>) {
    for (_, line) in parse::lines(buf) {
        let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
        let (Some(key), Some(value)) = (fields.next(), fields.next().and_then(parse::parse_u64)) else {
            continue;
        };
        let name = match key {
            // The first number of `intr` is the total; the rest are per interrupt, which
            // node_exporter leaves to its (off by default) interrupts collector.
            b"intr" => "node_intr_total",
            b"ctxt" => "node_context_switches_total",
            b"btime" => "node_boot_time_seconds",
            b"processes" => "node_forks_total",
            b"procs_running" => "node_procs_running",
            b"procs_blocked" => "node_procs_blocked",
            _ => continue,
        };
        out.push(Sample::new(name, value as f64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_totals_of_a_real_stat_under_node_exporters_names() {
        let text = std::fs::read(crate::metrics::testdata().join("proc/stat")).unwrap();
        let mut out = Vec::new();
        parse(&text, &mut out);
        let got: Vec<_> = out.iter().map(|s| (s.name, s.value)).collect();
        assert_eq!(
            got,
            [
                ("node_intr_total", 1383622.0),
                ("node_context_switches_total", 2412334.0),
                ("node_boot_time_seconds", 1795420800.0),
                ("node_forks_total", 7185.0),
                ("node_procs_running", 2.0),
                ("node_procs_blocked", 0.0),
            ]
        );
    }

    #[test]
    fn garbage_is_skipped() {
        let mut out = Vec::new();
        parse(b"intr x\nctxt\nbtime 12 3\n\xff\xfe\n", &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].name, out[0].value), ("node_boot_time_seconds", 12.0));
    }
}
