//! Pure parsers for the cgroup and proc files the readers re-read every tick.
//!
//! Every function here takes the raw bytes of a file (as `read_at` left them in a reused buffer) and
//! borrows from them: nothing allocates, and nothing panics whatever the bytes are (see the proptests
//! at the bottom). A malformed line comes back as a [`BadLine`] naming its 1-based number and text, so
//! that the caller can build an error with the file's path around it.

use memchr::memchr;

/// A line that did not have the expected shape, borrowed from the buffer being parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadLine<'a> {
    /// 1-based line number within the file.
    pub line: usize,
    pub text: &'a [u8],
}

/// Non-empty lines of `buf`, each with its 1-based line number, without the trailing `\n`.
pub fn lines(buf: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    buf.split(|&b| b == b'\n').enumerate().map(|(i, l)| (i + 1, l)).filter(|(_, l)| !trim(l).is_empty())
}

/// `buf` without leading and trailing ASCII whitespace.
pub fn trim(buf: &[u8]) -> &[u8] {
    buf.trim_ascii()
}

/// A decimal `u64` with no sign, no spaces and no other characters; `None` on overflow.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// A decimal `i64` (as in v1's `cpu.cfs_quota_us`, `-1` meaning no quota).
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    match s.split_first() {
        Some((b'-', rest)) => parse_u64(rest).and_then(|v| 0i64.checked_sub_unsigned(v)),
        _ => parse_u64(s).and_then(|v| i64::try_from(v).ok()),
    }
}

/// A file holding one number (`memory.current`, `pids.current`, `cpuacct.usage`, ...).
pub fn parse_single_u64(buf: &[u8]) -> Option<u64> {
    parse_u64(trim(buf))
}

/// A file holding one number or the word `max` (v2 `memory.max`, `pids.max`): `Some(None)` for `max`.
pub fn parse_u64_or_max(buf: &[u8]) -> Option<Option<u64>> {
    match trim(buf) {
        b"max" => Some(None),
        s => parse_u64(s).map(Some),
    }
}

/// Splits off the first space-separated word of `s`, skipping leading spaces.
fn word(s: &[u8]) -> (&[u8], &[u8]) {
    let s = &s[s.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(s.len())..];
    let end = s.iter().position(|&b| b == b' ' || b == b'\t').unwrap_or(s.len());
    (&s[..end], &s[end..])
}

/// The cgroup "flat keyed" format (`cpu.stat`, `memory.stat`, `memory.events`, v1 `cpuacct.stat`,
/// `memory.oom_control`): one `key value` pair per line. A line with no value, a value that is not
/// an unsigned integer, or a third field is a [`BadLine`].
pub fn parse_flat_keyed(buf: &[u8]) -> impl Iterator<Item = Result<(&[u8], u64), BadLine<'_>>> {
    lines(buf).map(|(n, l)| {
        let (key, rest) = word(l);
        let (val, rest) = word(rest);
        match parse_u64(val) {
            Some(v) if !key.is_empty() && trim(rest).is_empty() => Ok((key, v)),
            _ => Err(BadLine { line: n, text: l }),
        }
    })
}

/// v2 `cpu.max`: `$MAX $PERIOD`, where `$MAX` may be `max`. Returns `(quota, period)` with quota `None`
/// when unlimited.
pub fn parse_cpu_max(buf: &[u8]) -> Option<(Option<u64>, u64)> {
    let (quota, rest) = word(trim(buf));
    let (period, rest) = word(rest);
    if !trim(rest).is_empty() {
        return None;
    }
    let period = parse_u64(period)?;
    match quota {
        b"max" => Some((None, period)),
        q => Some((Some(parse_u64(q)?), period)),
    }
}

/// The cgroup "nested keyed" format of v2 `io.stat`: `MAJ:MIN key=value key=value ...` per device.
/// Returns the sums over all devices of the values of `key_a` and `key_b` (e.g. `rbytes`, `wbytes`).
/// Keys whose value is not an unsigned integer are ignored; a line whose first word is not a device
/// number, or whose fields are not `key=value`, is a [`BadLine`].
pub fn sum_nested_keyed<'a>(buf: &'a [u8], key_a: &[u8], key_b: &[u8]) -> Result<(u64, u64), BadLine<'a>> {
    let (mut a, mut b) = (0u64, 0u64);
    for (n, l) in lines(buf) {
        let bad = BadLine { line: n, text: l };
        let (dev, mut rest) = word(l);
        if !is_dev_number(dev) {
            return Err(bad);
        }
        loop {
            let (field, r) = word(rest);
            rest = r;
            if field.is_empty() {
                break;
            }
            let eq = memchr(b'=', field).ok_or(bad)?;
            let (k, v) = (&field[..eq], &field[eq + 1..]);
            let Some(v) = parse_u64(v) else { continue };
            if k == key_a {
                a = a.wrapping_add(v);
            } else if k == key_b {
                b = b.wrapping_add(v);
            }
        }
    }
    Ok((a, b))
}

fn is_dev_number(s: &[u8]) -> bool {
    match memchr(b':', s) {
        Some(i) => parse_u64(&s[..i]).is_some() && parse_u64(&s[i + 1..]).is_some(),
        None => false,
    }
}

/// v1 `blkio.throttle.io_service_bytes` (and its siblings): lines `MAJ:MIN Op bytes` with Op one of
/// Read, Write, Sync, Async, Discard, Total, and a last line `Total bytes`. Returns the sums of the
/// Read and Write lines over all devices.
pub fn sum_blkio_read_write(buf: &[u8]) -> Result<(u64, u64), BadLine<'_>> {
    let (mut read, mut write) = (0u64, 0u64);
    for (n, l) in lines(buf) {
        let bad = BadLine { line: n, text: l };
        let (first, rest) = word(l);
        if first == b"Total" {
            continue; // the grand total line has no device
        }
        let (op, rest) = word(rest);
        let (val, rest) = word(rest);
        if !is_dev_number(first) || !trim(rest).is_empty() {
            return Err(bad);
        }
        let v = parse_u64(val).ok_or(bad)?;
        match op {
            b"Read" => read = read.wrapping_add(v),
            b"Write" => write = write.wrapping_add(v),
            _ => {}
        }
    }
    Ok((read, write))
}

/// A PSI file (`cpu.pressure`, `memory.pressure`, `io.pressure`):
/// `some avg10=0.00 avg60=0.00 avg300=0.00 total=N` and the same for `full`. Returns the `total=`
/// values (microseconds) of the `some` and `full` lines, each `None` if its line is absent.
pub fn parse_pressure(buf: &[u8]) -> Result<(Option<u64>, Option<u64>), BadLine<'_>> {
    let (mut some, mut full) = (None, None);
    for (n, l) in lines(buf) {
        let bad = BadLine { line: n, text: l };
        let (kind, mut rest) = word(l);
        let mut total = None;
        loop {
            let (field, r) = word(rest);
            rest = r;
            if field.is_empty() {
                break;
            }
            if let Some(v) = field.strip_prefix(b"total=") {
                total = Some(parse_u64(v).ok_or(bad)?);
            }
        }
        let total = total.ok_or(bad)?;
        match kind {
            b"some" => some = Some(total),
            b"full" => full = Some(total),
            _ => return Err(bad),
        }
    }
    Ok((some, full))
}

/// One interface of `/proc/<pid>/net/dev`: its name and its 16 counters (8 receive, 8 transmit).
pub type NetDevLine<'a> = (&'a [u8], [u64; 16]);

/// `/proc/<pid>/net/dev`: two header lines, then `name: rx_bytes rx_packets ... (8 rx fields)
/// tx_bytes ... (8 tx fields)`. The name is split off at the first `:` (old kernels printed no space
/// after it).
pub fn parse_net_dev(buf: &[u8]) -> impl Iterator<Item = Result<NetDevLine<'_>, BadLine<'_>>> {
    lines(buf).skip(2).map(|(n, l)| {
        let bad = BadLine { line: n, text: l };
        let colon = memchr(b':', l).ok_or(bad)?;
        let name = trim(&l[..colon]);
        let mut rest = &l[colon + 1..];
        let mut fields = [0u64; 16];
        for f in fields.iter_mut() {
            let (w, r) = word(rest);
            rest = r;
            *f = parse_u64(w).ok_or(bad)?;
        }
        if name.is_empty() {
            return Err(bad);
        }
        Ok((name, fields))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"1a"), None);
        assert_eq!(parse_i64(b"-1"), Some(-1));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_single_u64(b"  4096\n"), Some(4096));
        assert_eq!(parse_u64_or_max(b"max\n"), Some(None));
        assert_eq!(parse_u64_or_max(b"67108864\n"), Some(Some(67108864)));
    }

    #[test]
    fn flat_keyed() {
        let buf = b"usage_usec 3562238\nuser_usec 3546679\n\nsystem_usec 15559\n";
        let v: Vec<_> = parse_flat_keyed(buf).collect();
        assert_eq!(
            v,
            vec![Ok((&b"usage_usec"[..], 3562238)), Ok((&b"user_usec"[..], 3546679)), Ok((&b"system_usec"[..], 15559))]
        );
        let v: Vec<_> = parse_flat_keyed(b"a 1\nb x\nc 2 3\n").collect();
        assert_eq!(v[1], Err(BadLine { line: 2, text: b"b x" }));
        assert_eq!(v[2], Err(BadLine { line: 3, text: b"c 2 3" }));
    }

    #[test]
    fn cpu_max() {
        assert_eq!(parse_cpu_max(b"max 100000\n"), Some((None, 100000)));
        assert_eq!(parse_cpu_max(b"50000 100000\n"), Some((Some(50000), 100000)));
        assert_eq!(parse_cpu_max(b"50000\n"), None);
    }

    #[test]
    fn io_stat() {
        let buf = b"8:16 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0\n\
                    8:0 rbytes=90430464 wbytes=299008000 rios=8950 wios=1252 dbytes=50331648 dios=3021\n";
        assert_eq!(sum_nested_keyed(buf, b"rbytes", b"wbytes"), Ok((91889664, 613781504)));
        assert_eq!(sum_nested_keyed(b"", b"rbytes", b"wbytes"), Ok((0, 0)));
        assert!(sum_nested_keyed(b"rbytes=1\n", b"rbytes", b"wbytes").is_err());
    }

    #[test]
    fn blkio() {
        let buf = b"8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Async 12288\n8:0 Discard 0\n8:0 Total 12288\n\
                    253:1 Read 1\n253:1 Write 2\nTotal 12291\n";
        assert_eq!(sum_blkio_read_write(buf), Ok((4097, 8194)));
        assert_eq!(sum_blkio_read_write(b"Total 0\n"), Ok((0, 0)));
    }

    #[test]
    fn pressure() {
        let buf = b"some avg10=18.02 avg60=3.77 avg300=0.80 total=2783332\nfull avg10=18.02 avg60=3.77 avg300=0.80 total=2777479\n";
        assert_eq!(parse_pressure(buf), Ok((Some(2783332), Some(2777479))));
        assert_eq!(parse_pressure(b"some avg10=0.00 avg60=0.00 avg300=0.00 total=7\n"), Ok((Some(7), None)));
        assert!(parse_pressure(b"some avg10=0.00\n").is_err());
    }

    #[test]
    fn net_dev() {
        let buf = b"Inter-|   Receive                                                |  Transmit\n \
face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
lo:    3193      29    0    0    0     0          0         0     3193      29    0    0    0     0       0          0\n  \
eth0:148479399    6513    0    0    0     0          0         0   470808    4721    0    0    0     0       0          0\n";
        let v: Vec<_> = parse_net_dev(buf).map(|r| r.map(|(n, f)| (n, f[0], f[1], f[8], f[9]))).collect();
        assert_eq!(v, vec![Ok((&b"lo"[..], 3193, 29, 3193, 29)), Ok((&b"eth0"[..], 148479399, 6513, 470808, 4721))]);
        // A line cut short is an error, not a row of zeros.
        let short = b"h1\nh2\n  eth0: 1 2 3 4 5 6 7 8 9 10\n";
        assert!(parse_net_dev(short).next().unwrap().is_err());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_single_u64(&buf);
            let _ = parse_u64_or_max(&buf);
            let _ = parse_i64(&buf);
            let _ = parse_flat_keyed(&buf).count();
            let _ = parse_cpu_max(&buf);
            let _ = sum_nested_keyed(&buf, b"rbytes", b"wbytes");
            let _ = sum_blkio_read_write(&buf);
            let _ = parse_pressure(&buf);
            let _ = parse_net_dev(&buf).count();
        }

        #[test]
        fn parsers_never_panic_on_plausible_text(buf in "([a-z0-9_:=. \\-]{0,30}\n){0,12}") {
            let buf = buf.as_bytes();
            let _ = parse_flat_keyed(buf).count();
            let _ = parse_cpu_max(buf);
            let _ = sum_nested_keyed(buf, b"rbytes", b"wbytes");
            let _ = sum_blkio_read_write(buf);
            let _ = parse_pressure(buf);
            let _ = parse_net_dev(buf).count();
        }

        #[test]
        fn flat_keyed_roundtrip(pairs in proptest::collection::vec(("[a-z_]{1,12}", any::<u64>()), 0..20)) {
            let text: String = pairs.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
            let got: Vec<_> = parse_flat_keyed(text.as_bytes()).map(|r| r.map(|(k, v)| (k.to_vec(), v))).collect();
            let want: Vec<_> = pairs.iter().map(|(k, v)| Ok((k.as_bytes().to_vec(), *v))).collect();
            prop_assert_eq!(got, want);
        }
    }
}
