//! node_exporter's `pressure` collector: the host's stall time from `/proc/pressure/{cpu,io,memory}`
//! (PSI, Linux 4.20+), in seconds: `some` as `_waiting_`, `full` as `_stalled_`.

use crate::metrics::parse;
use crate::model::Sample;

/// The three PSI files and the families each gives (`some`, then `full`; node_exporter 1.x has no
/// `full` family for cpu).
pub const FILES: [(&str, &str, Option<&str>); 3] = [
    ("pressure/cpu", "node_pressure_cpu_waiting_seconds_total", None),
    ("pressure/io", "node_pressure_io_waiting_seconds_total", Some("node_pressure_io_stalled_seconds_total")),
    (
        "pressure/memory",
        "node_pressure_memory_waiting_seconds_total",
        Some("node_pressure_memory_stalled_seconds_total"),
    ),
];

/// Appends one PSI file's samples; `Err` with the bad line's number and text when it does not parse.
pub fn parse(
    buf: &[u8],
    some: &'static str,
    full: Option<&'static str>,
    out: &mut Vec<Sample>,
) -> Result<(), (usize, String)> {
    let (s, f) = parse::parse_pressure(buf).map_err(|b| (b.line, String::from_utf8_lossy(b.text).into_owned()))?;
    if let Some(s) = s {
        out.push(Sample::new(some, s as f64 / 1e6));
    }
    if let (Some(name), Some(f)) = (full, f) {
        out.push(Sample::new(name, f as f64 / 1e6));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_files_give_seconds() {
        let mut out = Vec::new();
        for (rel, some, full) in FILES {
            parse(&std::fs::read(crate::metrics::testdata().join("proc").join(rel)).unwrap(), some, full, &mut out)
                .unwrap();
        }
        let got: Vec<_> = out.iter().map(|s| (s.name, s.value)).collect();
        assert_eq!(
            got,
            [
                ("node_pressure_cpu_waiting_seconds_total", 14.269266),
                ("node_pressure_io_waiting_seconds_total", 7.390554),
                ("node_pressure_io_stalled_seconds_total", 6.711448),
                ("node_pressure_memory_waiting_seconds_total", 0.0),
                ("node_pressure_memory_stalled_seconds_total", 0.0),
            ]
        );
    }

    #[test]
    fn a_bad_line_is_named() {
        let mut out = Vec::new();
        let err = parse(b"some avg10=0.00 total=12\nfull avg10=x\n", FILES[1].1, FILES[1].2, &mut out).unwrap_err();
        assert_eq!(err.0, 2);
    }
}
