//! node_exporter's `filefd` collector: open file handles and their limit from `/proc/sys/fs/file-nr`.

use crate::metrics::parse;
use crate::model::Sample;

/// `allocated unused maximum`; `None` when the file does not hold three numbers.
pub fn parse(buf: &[u8]) -> Option<[Sample; 2]> {
    let mut f = buf.split(|b| b.is_ascii_whitespace()).filter(|f| !f.is_empty()).map(parse::parse_u64);
    let (Some(Some(allocated)), Some(Some(_)), Some(Some(maximum))) = (f.next(), f.next(), f.next()) else {
        return None;
    };
    Some([Sample::new("node_filefd_allocated", allocated as f64), Sample::new("node_filefd_maximum", maximum as f64)])
}

#[cfg(test)]
mod tests {
    #[test]
    fn real_file_and_a_bad_one() {
        let buf = std::fs::read(crate::metrics::testdata().join("proc/sys/fs/file-nr")).unwrap();
        let [a, m] = super::parse(&buf).unwrap();
        assert_eq!(
            (a.name, a.value, m.name, m.value),
            ("node_filefd_allocated", 502.0, "node_filefd_maximum", 2466290.0)
        );
        assert!(super::parse(b"502 0\n").is_none());
    }
}
