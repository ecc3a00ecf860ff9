//! Docker's json-file log lines: `{"log":"...","stream":"stdout","time":"<RFC 3339 nano>"}`.
//! A hand-written fast path for the shape dockerd writes, serde_json for any other key order.

use std::borrow::Cow;

/// Which of the container's output streams a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One json-file record: a whole line, or a piece of one (`partial`) that Docker cut at 16 KiB.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The text without its trailing newline.
    pub text: Cow<'a, str>,
    pub stream: Stream,
    /// Docker's receive time, nanoseconds since the Unix epoch.
    pub time_ns: i64,
    /// No trailing newline: the line goes on in the next record of the same stream.
    pub partial: bool,
    /// The container wrote bytes that were not UTF-8; dockerd stored them as U+FFFD (`\ufffd`).
    pub replaced: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("not a json-file record: {0}")]
    Json(String),
    #[error("unknown stream {0:?}")]
    Stream(String),
    #[error("bad time {0:?}")]
    Time(String),
}

/// Parses one line of a json-file log (without its `\n`).
pub fn parse(line: &[u8]) -> Result<Record<'_>, ParseError> {
    match fast(line) {
        Some(r) => r,
        None => slow(line),
    }
}

/// The exact shape dockerd writes. `None` means "not that shape": the caller falls back to serde.
fn fast(line: &[u8]) -> Option<Result<Record<'_>, ParseError>> {
    let rest = line.strip_prefix(br#"{"log":""#)?;
    let (text, replaced, rest) = json_string(rest)?;
    let rest = rest.strip_prefix(br#","stream":""#)?;
    let (stream, rest) = if let Some(r) = rest.strip_prefix(br#"stdout""#) {
        (Stream::Stdout, r)
    } else {
        (Stream::Stderr, rest.strip_prefix(br#"stderr""#)?)
    };
    let rest = rest.strip_prefix(br#","time":""#)?;
    let end = memchr::memchr(b'"', rest)?;
    if &rest[end..] != br#""}"# {
        return None;
    }
    let time = std::str::from_utf8(&rest[..end]).ok()?;
    Some(finish(text, stream, time, replaced))
}

fn slow(line: &[u8]) -> Result<Record<'_>, ParseError> {
    #[derive(serde::Deserialize)]
    struct Raw {
        log: String,
        stream: String,
        time: String,
    }
    let raw: Raw = serde_json::from_slice(line).map_err(|e| ParseError::Json(e.to_string()))?;
    let stream = match raw.stream.as_str() {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => return Err(ParseError::Stream(raw.stream)),
    };
    // serde has already turned `\ufffd` into the character; a raw U+FFFD counts the same here.
    let replaced = raw.log.contains('\u{fffd}');
    finish(Cow::Owned(raw.log), stream, &raw.time, replaced)
}

fn finish<'a>(mut text: Cow<'a, str>, stream: Stream, time: &str, replaced: bool) -> Result<Record<'a>, ParseError> {
    let time_ns = parse_rfc3339_ns(time).ok_or_else(|| ParseError::Time(time.to_string()))?;
    let partial = !text.ends_with('\n');
    if !partial {
        match &mut text {
            Cow::Borrowed(s) => *s = &s[..s.len() - 1],
            Cow::Owned(s) => {
                s.pop();
            }
        }
    }
    Ok(Record { text, stream, time_ns, partial, replaced })
}

/// A JSON string body up to its closing quote: the text (borrowed when it has no escapes other than
/// a final `\n`), whether it held `\ufffd`, and the bytes after the quote. `None` if malformed.
fn json_string(s: &[u8]) -> Option<(Cow<'_, str>, bool, &[u8])> {
    let first = memchr::memchr2(b'"', b'\\', s)?;
    if s[first] == b'"' {
        let text = std::str::from_utf8(&s[..first]).ok()?;
        return Some((Cow::Borrowed(text), false, &s[first + 1..]));
    }
    // The common escaped case: only the final "\n" before the quote.
    if s.get(first..first + 3) == Some(br#"\n""#) {
        // Borrow up to and including a newline we cannot borrow; rebuild cheaply instead.
        let mut out = String::with_capacity(first + 1);
        out.push_str(std::str::from_utf8(&s[..first]).ok()?);
        out.push('\n');
        return Some((Cow::Owned(out), false, &s[first + 3..]));
    }
    let mut out: Vec<u8> = Vec::with_capacity(s.len());
    let mut replaced = false;
    let mut i = 0;
    loop {
        let j = i + memchr::memchr2(b'"', b'\\', &s[i..])?;
        out.extend_from_slice(&s[i..j]);
        if s[j] == b'"' {
            let text = String::from_utf8(out).ok()?;
            return Some((Cow::Owned(text), replaced, &s[j + 1..]));
        }
        let esc = *s.get(j + 1)?;
        i = j + 2;
        match esc {
            b'"' => out.push(b'"'),
            b'\\' => out.push(b'\\'),
            b'/' => out.push(b'/'),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'u' => {
                let hi = hex4(s.get(i..i + 4)?)?;
                i += 4;
                let c = if (0xd800..0xdc00).contains(&hi) {
                    // A surrogate pair, or a lone high surrogate (U+FFFD, as Go decodes it).
                    match s.get(i..i + 2).filter(|p| p == b"\\u").and_then(|_| hex4(s.get(i + 2..i + 6)?)) {
                        Some(lo) if (0xdc00..0xe000).contains(&lo) => {
                            i += 6;
                            char::from_u32(0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00))
                        }
                        _ => None,
                    }
                } else {
                    char::from_u32(hi)
                };
                let c = c.unwrap_or('\u{fffd}');
                replaced |= c == '\u{fffd}';
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            _ => return None,
        }
    }
}

fn hex4(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b {
        v = v * 16 + (c as char).to_digit(16)?;
    }
    Some(v)
}

/// `2026-11-23T12:00:00.123456789Z` (or with a `+hh:mm` offset, fraction of 0–9 digits) to
/// nanoseconds since the epoch. Written out because it runs once per log line.
pub fn parse_rfc3339_ns(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b[r].iter().try_fold(0i64, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as i64))
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + (b[i] - b'0') as i64;
            }
            i += 1;
        }
        let digits = (i - start).min(9);
        if digits == 0 {
            return None;
        }
        nanos *= 10i64.pow(9 - digits as u32);
    }
    let offset_s = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        c @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            let o = h * 3600 + m * 60;
            if *c == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_s;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dockerd_lines_parse_on_the_fast_path() {
        let r = parse(br#"{"log":"hello world\n","stream":"stdout","time":"2026-11-23T12:00:00.123456789Z"}"#).unwrap();
        assert_eq!(r.text, "hello world");
        assert_eq!(r.stream, Stream::Stdout);
        assert_eq!(r.time_ns, 1_795_435_200_123_456_789);
        assert!(!r.partial && !r.replaced);

        // A piece of a line cut at 16 KiB has no newline; escapes are decoded.
        let r = parse(br#"{"log":"a\"b\\c\tx\u003cy\u0026","stream":"stderr","time":"2026-11-23T12:00:00Z"}"#).unwrap();
        assert_eq!(r.text, "a\"b\\c\tx<y&");
        assert_eq!(r.stream, Stream::Stderr);
        assert!(r.partial);
        assert_eq!(r.time_ns, 1_795_435_200_000_000_000);
    }

    #[test]
    fn bytes_that_were_not_utf8_are_flagged() {
        // dockerd writes invalid UTF-8 as \ufffd.
        let r = parse(br#"{"log":"bad \ufffd byte\n","stream":"stdout","time":"2026-11-23T12:00:00.5Z"}"#).unwrap();
        assert_eq!(r.text, "bad \u{fffd} byte");
        assert!(r.replaced);
        let r =
            parse(br#"{"log":"emoji \ud83d\ude00 lone \ud83d!\n","stream":"stdout","time":"2026-11-23T12:00:00Z"}"#)
                .unwrap();
        assert_eq!(r.text, "emoji \u{1F600} lone \u{fffd}!");
        assert!(r.replaced);
    }

    #[test]
    fn other_key_orders_and_attrs_parse_through_serde() {
        let r = parse(
            br#"{"log":"x\n","stream":"stdout","attrs":{"tag":"a"},"time":"2026-11-23T13:00:00.000000001+01:00"}"#,
        )
        .unwrap();
        assert_eq!(r.text, "x");
        assert_eq!(r.time_ns, 1_795_435_200_000_000_001);
        let r = parse(br#"{"time":"2026-11-23T12:00:00Z","stream":"stderr","log":"y"}"#).unwrap();
        assert!(r.partial);
    }

    #[test]
    fn broken_records_are_errors_not_panics() {
        // A line cut by a crash mid-write.
        assert!(matches!(parse(br#"{"log":"half a li"#), Err(ParseError::Json(_))));
        assert!(matches!(parse(b"not json"), Err(ParseError::Json(_))));
        assert!(matches!(
            parse(br#"{"log":"x","stream":"stdin","time":"2026-11-23T12:00:00Z"}"#),
            Err(ParseError::Stream(_))
        ));
        assert!(matches!(parse(br#"{"log":"x","stream":"stdout","time":"yesterday"}"#), Err(ParseError::Time(_))));
        assert!(parse(b"{\"log\":\"\xff\xfe\",\"stream\":\"stdout\",\"time\":\"2026-11-23T12:00:00Z\"}").is_err());
    }

    /// Go's time.Format(RFC3339Nano): trailing zeros of the fraction dropped, no fraction when zero.
    fn format_rfc3339_nano(ns: i64) -> String {
        let secs = ns.div_euclid(1_000_000_000);
        let frac = ns.rem_euclid(1_000_000_000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        // civil_from_days
        let z = days + 719_468;
        let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        let mut s = format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", sod / 3600, sod / 60 % 60, sod % 60);
        if frac != 0 {
            let f = format!("{frac:09}");
            s.push('.');
            s.push_str(f.trim_end_matches('0'));
        }
        s.push('Z');
        s
    }

    fn json_escape(s: &str) -> String {
        serde_json::to_string(s).unwrap()
    }

    proptest! {
        #[test]
        fn times_round_trip(ns in 0i64..4_102_444_800_000_000_000) {
            prop_assert_eq!(parse_rfc3339_ns(&format_rfc3339_nano(ns)), Some(ns));
        }

        #[test]
        fn any_text_round_trips(text in "\\PC*", newline: bool, stderr: bool, ns in 0i64..4_102_444_800_000_000_000) {
            let log = if newline { format!("{text}\n") } else { text.clone() };
            let stream = if stderr { "stderr" } else { "stdout" };
            let line = format!(r#"{{"log":{},"stream":"{stream}","time":"{}"}}"#, json_escape(&log), format_rfc3339_nano(ns));
            let r = parse(line.as_bytes()).unwrap();
            prop_assert_eq!(r.text.as_ref(), text.as_str());
            prop_assert_eq!(r.partial, !newline);
            prop_assert_eq!(r.time_ns, ns);
            prop_assert_eq!(r.stream.as_str(), stream);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&bytes);
        }
    }
}
