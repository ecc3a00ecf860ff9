//! The log chunk format: a stream's lines, times as varint deltas and texts length-prefixed, the
//! whole block deflated (flate2). Decoding checks every length, so a damaged blob is an error.

use std::io::{Read, Write};

/// One log line as stored: its time (nanoseconds since the epoch) and text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub time_ns: i64,
    pub line: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogChunkError {
    #[error("log chunk does not inflate: {0}")]
    Inflate(String),
    #[error("log chunk ends inside {0}")]
    Truncated(&'static str),
    #[error("log chunk holds a line that is not UTF-8")]
    Utf8,
    #[error("log chunk claims {0} lines, more than its bytes can hold")]
    Count(u64),
}

/// No chunk holds more than this uncompressed (chunks are cut at about 256 KiB).
const MAX_RAW_BYTES: u64 = 64 << 20;

/// Deflate level 6, zlib's default (measured with miniz_oxide; zlib-rs, the backend in use, gives
/// 7.7x where these figures say 8.0x). On 256 KiB of this machine's dpkg.log: level 1 9.2×, 6 11.0×,
/// 9 11.2×; on the test's web-service mix 6 and 9 both give 8.0×. Laying the chunk out column by
/// column (times, lengths, texts) made it worse (7.8×), so lines stay whole. With zlib-rs the web mix
/// gives 7.7× at 6, 7.8× at 7, 8.0× at 8 and 7.9× at 9, but level 8 at seal alone (head rows at 1)
/// cuts durable log ingest from about 550 k to 220 k lines per CPU-second (`lookout bench logstore`).
const LEVEL: u32 = 6;

pub fn encode(lines: &[LogLine]) -> Vec<u8> {
    encode_at(lines, LEVEL)
}

/// A head row: one batch's lines, kept until the chunk is sealed and deflated again at `LEVEL`. Its
/// size hardly matters, its cost is paid on every batch: the fastest level.
pub fn encode_head(lines: &[LogLine]) -> Vec<u8> {
    encode_at(lines, 1)
}

fn encode_at(lines: &[LogLine], level: u32) -> Vec<u8> {
    let raw_len: usize = lines.iter().map(|l| l.line.len() + 6).sum();
    let mut raw = Vec::with_capacity(raw_len + 10);
    put_varint(&mut raw, lines.len() as u64);
    let mut prev = 0i64;
    for l in lines {
        put_varint(&mut raw, zigzag(l.time_ns.wrapping_sub(prev)));
        prev = l.time_ns;
        put_varint(&mut raw, l.line.len() as u64);
        raw.extend_from_slice(l.line.as_bytes());
    }
    let mut z = flate2::write::DeflateEncoder::new(Vec::with_capacity(raw.len() / 6), flate2::Compression::new(level));
    z.write_all(&raw).expect("writing to a Vec cannot fail");
    z.finish().expect("writing to a Vec cannot fail")
}

/// Appends the chunk's lines to `out`.
pub fn decode(data: &[u8], out: &mut Vec<LogLine>) -> Result<(), LogChunkError> {
    decode_where(data, &LinePrefilter::default(), out)
}

/// What a query needs of a line, checked before the line is copied out of its chunk: byte strings
/// that must all occur (a chunk without one of them is skipped after a single memmem pass), and a
/// test on each line.
#[derive(Default)]
pub struct LinePrefilter<'a> {
    pub needles: Vec<&'a [u8]>,
    pub keep: Option<&'a (dyn Fn(&str) -> bool + Sync)>,
}

/// Appends the chunk's lines that pass `filter` to `out`.
pub fn decode_where(data: &[u8], filter: &LinePrefilter<'_>, out: &mut Vec<LogLine>) -> Result<(), LogChunkError> {
    let mut raw = Vec::with_capacity(data.len() * 8);
    // Bounded, so a damaged blob cannot inflate without limit.
    flate2::read::DeflateDecoder::new(data)
        .take(MAX_RAW_BYTES)
        .read_to_end(&mut raw)
        .map_err(|e| LogChunkError::Inflate(e.to_string()))?;
    if filter.needles.iter().any(|n| memchr::memmem::find(&raw, n).is_none()) {
        return Ok(());
    }
    let mut r = &raw[..];
    let n = get_varint(&mut r).ok_or(LogChunkError::Truncated("the line count"))?;
    // Each line takes at least two bytes (time delta and length).
    if n > r.len() as u64 / 2 {
        return Err(LogChunkError::Count(n));
    }
    if filter.keep.is_none() {
        out.reserve(n as usize);
    }
    let mut t = 0i64;
    for _ in 0..n {
        t = t.wrapping_add(unzigzag(get_varint(&mut r).ok_or(LogChunkError::Truncated("a time"))?));
        let len = get_varint(&mut r).ok_or(LogChunkError::Truncated("a length"))?;
        if len > r.len() as u64 {
            return Err(LogChunkError::Truncated("a line"));
        }
        let (text, rest) = r.split_at(len as usize);
        r = rest;
        let line = std::str::from_utf8(text).map_err(|_| LogChunkError::Utf8)?;
        if filter.keep.is_none_or(|keep| keep(line)) {
            out.push(LogLine { time_ns: t, line: line.to_string() });
        }
    }
    Ok(())
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(r: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = r.split_first()?;
        *r = rest;
        v |= ((b & 0x7f) as u64) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Lines shaped like a web service's access and application logs.
    pub(crate) fn realistic(n: usize) -> Vec<LogLine> {
        let paths = ["/api/v1/items", "/api/v1/orders", "/healthz", "/api/v1/users/me", "/static/app.js"];
        let users = ["alice", "bob", "carol", "dave"];
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut t = 1_795_435_200_000_000_000i64;
        (0..n)
            .map(|i| {
                t += (next() % 20_000_000) as i64;
                let r = next();
                let line = if r % 10 == 0 {
                    format!(
                        "{{\"level\":\"warn\",\"ts\":\"2026-11-23T12:00:{:02}.{:03}Z\",\"msg\":\"slow query\",\"table\":\"orders\",\"ms\":{}}}",
                        i / 1000 % 60,
                        i % 1000,
                        r % 5000
                    )
                } else {
                    format!(
                        "10.0.{}.{} - {} [23/Nov/2026:12:00:{:02} +0000] \"GET {}?page={} HTTP/1.1\" {} {} \"-\" \"Go-http-client/1.1\" rt={}.{:03}",
                        r % 4,
                        r % 250,
                        users[(r % 4) as usize],
                        i / 1000 % 60,
                        paths[(r / 7 % 5) as usize],
                        r % 40,
                        if r % 50 == 0 { 500 } else { 200 },
                        r % 30_000,
                        r % 2,
                        r % 1000
                    )
                };
                LogLine { time_ns: t, line }
            })
            .collect()
    }

    #[test]
    fn realistic_logs_compress_at_least_eightfold() {
        let lines = realistic(2000);
        let raw: usize = lines.iter().map(|l| l.line.len() + 8).sum();
        let data = encode(&lines);
        let ratio = raw as f64 / data.len() as f64;
        println!("{} lines, {raw} bytes of text and times, {} stored: {ratio:.1}x", lines.len(), data.len());
        // 8.0x with flate2's miniz_oxide backend, 7.7x with zlib-rs, which inflates and deflates
        // about 2.7 times faster (docs/performance.md); this guards against regressions of the format.
        assert!(ratio >= 7.5, "{ratio:.1}x");
        let mut back = Vec::new();
        decode(&data, &mut back).unwrap();
        assert_eq!(back, lines);
    }

    #[test]
    fn damaged_chunks_are_errors() {
        let data = encode(&realistic(10));
        let mut out = Vec::new();
        assert!(decode(&data[..data.len() / 2], &mut out).is_err());
        assert!(matches!(decode(b"\xff\xff\xff", &mut out), Err(LogChunkError::Inflate(_))));
    }

    proptest! {
        #[test]
        fn lines_round_trip(lines in proptest::collection::vec((any::<i64>(), "\\PC{0,40}"), 0..50)) {
            let lines: Vec<LogLine> = lines.into_iter().map(|(time_ns, line)| LogLine { time_ns, line }).collect();
            let mut back = Vec::new();
            decode(&encode(&lines), &mut back).unwrap();
            prop_assert_eq!(back, lines);
        }

        #[test]
        fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut out = Vec::new();
            let _ = decode(&bytes, &mut out);
            let raw = { let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast()); z.write_all(&bytes).unwrap(); z.finish().unwrap() };
            let _ = decode(&raw, &mut out);
        }
    }
}
