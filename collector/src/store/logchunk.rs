//! The log chunk format: a stream's lines as two deflated columns (flate2), times as varint deltas
//! and texts each ended by 0xFF. Decoding checks every length, so a damaged blob is an error.

use std::io::{Read, Write};

use crate::model::logs::LogLine;
use crate::query::logql::LinePrefilter;

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
    #[error("log chunk holds {0} bytes after its last line")]
    Trailing(usize),
}

/// No chunk holds more than this uncompressed (chunks are cut at about 256 KiB).
const MAX_RAW_BYTES: u64 = 64 << 20;

/// The first byte of a chunk laid out in columns. Its low three bits read as a deflate block of type
/// 3, which deflate reserves, so no chunk of the older layout (one deflate stream of interleaved
/// times, lengths and texts) starts with it, and both are read.
const COLUMNS: u8 = 0b0000_1110;

/// Ends every text in the text column: a byte that never occurs in UTF-8, so texts need no lengths
/// and a needle can never match across two lines.
const END: u8 = 0xFF;

/// Deflate level 6, zlib's default. The text column alone gives deflate what it compresses well; on
/// the test's web-service mix (zlib-rs): interleaved times, lengths and texts 7.7× at 6 and 8.0× at
/// 8; the columns 8.7× at 6, 9.1× at 8. Level 8 at seal cuts durable ingest from about 550 k to 220 k
/// lines per CPU-second (`lookout bench logstore`), so 6 stays.
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
    let mut times = Vec::with_capacity(lines.len() * 4);
    let mut prev = 0i64;
    for l in lines {
        put_varint(&mut times, zigzag(l.time_ns.wrapping_sub(prev)));
        prev = l.time_ns;
    }
    let times = deflate(&times, level);
    let text_len: usize = lines.iter().map(|l| l.line.len() + 1).sum();
    let mut out = Vec::with_capacity(times.len() + text_len / 6 + 16);
    out.push(COLUMNS);
    put_varint(&mut out, lines.len() as u64);
    put_varint(&mut out, times.len() as u64);
    out.extend_from_slice(&times);
    let mut z = flate2::write::DeflateEncoder::new(out, flate2::Compression::new(level));
    for l in lines {
        z.write_all(l.line.as_bytes()).expect("writing to a Vec cannot fail");
        z.write_all(&[END]).expect("writing to a Vec cannot fail");
    }
    z.finish().expect("writing to a Vec cannot fail")
}

fn deflate(raw: &[u8], level: u32) -> Vec<u8> {
    let mut z = flate2::write::DeflateEncoder::new(Vec::with_capacity(raw.len()), flate2::Compression::new(level));
    z.write_all(raw).expect("writing to a Vec cannot fail");
    z.finish().expect("writing to a Vec cannot fail")
}

/// Inflates `data` into `raw` (cleared first), bounded so a damaged blob cannot inflate without limit.
fn inflate(data: &[u8], limit: u64, raw: &mut Vec<u8>) -> Result<(), LogChunkError> {
    raw.clear();
    flate2::read::DeflateDecoder::new(data)
        .take(limit)
        .read_to_end(raw)
        .map(drop)
        .map_err(|e| LogChunkError::Inflate(e.to_string()))
}

/// Appends the chunk's lines to `out`.
pub fn decode(data: &[u8], out: &mut Vec<LogLine>) -> Result<(), LogChunkError> {
    decode_where(data, i64::MIN..=i64::MAX, &LinePrefilter::default(), out)
}

/// Hands a line in `times` to `f`, once its text is known to be UTF-8.
fn emit(times: &Times, time_ns: i64, text: &[u8], f: &mut impl FnMut(i64, &str)) -> Result<(), LogChunkError> {
    let line = std::str::from_utf8(text).map_err(|_| LogChunkError::Utf8)?;
    if times.contains(&time_ns) {
        f(time_ns, line);
    }
    Ok(())
}

/// The times of the lines wanted, both ends included.
type Times = std::ops::RangeInclusive<i64>;

/// Appends the chunk's lines with times in `times` that pass `filter` to `out`; `filter.keep` sees
/// only lines in `times`.
pub fn decode_where(
    data: &[u8],
    times: Times,
    filter: &LinePrefilter<'_>,
    out: &mut Vec<LogLine>,
) -> Result<(), LogChunkError> {
    visit_where(data, times, filter, |time_ns, line| {
        if filter.keeps(line) {
            out.push(LogLine { time_ns, line: line.to_string() });
        }
    })
}

/// Calls `f(time, line)` for every line of the chunk with its time in `times`, in the order
/// written, copying nothing; a chunk without one of `filter.needles` is skipped whole
/// (`filter.keep` is not consulted: `f` decides).
pub fn visit_where(
    data: &[u8],
    times: Times,
    filter: &LinePrefilter<'_>,
    mut f: impl FnMut(i64, &str),
) -> Result<(), LogChunkError> {
    match data.split_first() {
        Some((&COLUMNS, rest)) => decode_columns(rest, &times, filter, &mut f),
        _ => decode_interleaved(data, &times, filter, &mut f),
    }
}

fn decode_columns(
    mut r: &[u8],
    times: &Times,
    filter: &LinePrefilter<'_>,
    f: &mut impl FnMut(i64, &str),
) -> Result<(), LogChunkError> {
    let n = get_varint(&mut r).ok_or(LogChunkError::Truncated("the line count"))?;
    let times_len = get_varint(&mut r).ok_or(LogChunkError::Truncated("the times' length"))?;
    if times_len > r.len() as u64 {
        return Err(LogChunkError::Truncated("the times"));
    }
    let (time_column, text) = r.split_at(times_len as usize);
    let mut raw = Vec::with_capacity(text.len() * 8);
    inflate(text, MAX_RAW_BYTES, &mut raw)?;
    // Each line takes at least its end byte.
    if n > raw.len() as u64 {
        return Err(LogChunkError::Count(n));
    }
    if filter.lacks_a_needle(&raw) {
        return Ok(());
    }
    let mut deltas = Vec::with_capacity(n as usize * 4);
    // A delta takes at most ten bytes.
    inflate(time_column, n * 10, &mut deltas)?;
    let mut deltas = &deltas[..];
    let (mut t, mut text) = (0i64, &raw[..]);
    for _ in 0..n {
        t = t.wrapping_add(unzigzag(get_varint(&mut deltas).ok_or(LogChunkError::Truncated("a time"))?));
        let end = memchr::memchr(END, text).ok_or(LogChunkError::Truncated("a line"))?;
        emit(times, t, &text[..end], f)?;
        text = &text[end + 1..];
    }
    if !text.is_empty() {
        return Err(LogChunkError::Trailing(text.len()));
    }
    Ok(())
}

/// The layout before columns: one deflate stream of the line count, then each line's time delta,
/// length and text.
fn decode_interleaved(
    data: &[u8],
    times: &Times,
    filter: &LinePrefilter<'_>,
    f: &mut impl FnMut(i64, &str),
) -> Result<(), LogChunkError> {
    let mut raw = Vec::with_capacity(data.len() * 8);
    inflate(data, MAX_RAW_BYTES, &mut raw)?;
    if filter.lacks_a_needle(&raw) {
        return Ok(());
    }
    let mut r = &raw[..];
    let n = get_varint(&mut r).ok_or(LogChunkError::Truncated("the line count"))?;
    // Each line takes at least two bytes (time delta and length).
    if n > r.len() as u64 / 2 {
        return Err(LogChunkError::Count(n));
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
        emit(times, t, text, f)?;
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
        // 8.7x in columns; the interleaved layout gave 7.7x.
        assert!(ratio >= 8.0, "{ratio:.1}x");
        let mut back = Vec::new();
        decode(&data, &mut back).unwrap();
        assert_eq!(back, lines);
    }

    /// The layout chunks had before columns, as stores written then hold it.
    fn encode_interleaved(lines: &[LogLine]) -> Vec<u8> {
        let mut raw = Vec::new();
        put_varint(&mut raw, lines.len() as u64);
        let mut prev = 0i64;
        for l in lines {
            put_varint(&mut raw, zigzag(l.time_ns.wrapping_sub(prev)));
            prev = l.time_ns;
            put_varint(&mut raw, l.line.len() as u64);
            raw.extend_from_slice(l.line.as_bytes());
        }
        deflate(&raw, LEVEL)
    }

    #[test]
    fn chunks_of_the_interleaved_layout_still_read() {
        let lines = realistic(500);
        let old = encode_interleaved(&lines);
        let mut back = Vec::new();
        decode(&old, &mut back).unwrap();
        assert_eq!(back, lines);
        let keep_orders = |l: &str| l.contains("orders");
        let filter = LinePrefilter { needles: vec![b"HTTP/1.1"], keep: Some(&keep_orders), budget: None };
        let (mut from_old, mut from_new) = (Vec::new(), Vec::new());
        decode_where(&old, i64::MIN..=i64::MAX, &filter, &mut from_old).unwrap();
        decode_where(&encode(&lines), i64::MIN..=i64::MAX, &filter, &mut from_new).unwrap();
        assert!(!from_new.is_empty());
        assert_eq!(from_old, from_new);
    }

    #[test]
    fn a_chunk_without_the_needle_gives_nothing_and_a_needle_never_spans_two_lines() {
        let lines = vec![LogLine { time_ns: 1, line: "abc".into() }, LogLine { time_ns: 2, line: "def".into() }];
        let data = encode(&lines);
        let mut out = Vec::new();
        decode_where(
            &data,
            i64::MIN..=i64::MAX,
            &LinePrefilter { needles: vec![b"cd"], keep: None, budget: None },
            &mut out,
        )
        .unwrap();
        assert!(out.is_empty());
        decode_where(
            &data,
            i64::MIN..=i64::MAX,
            &LinePrefilter { needles: vec![b"de"], keep: None, budget: None },
            &mut out,
        )
        .unwrap();
        assert_eq!(out, lines);
        out.clear();
        let keep_all = |_: &str| true;
        decode_where(&data, 2..=2, &LinePrefilter { needles: vec![], keep: Some(&keep_all), budget: None }, &mut out)
            .unwrap();
        assert_eq!(out, lines[1..], "only lines in the time range");
    }

    #[test]
    fn damaged_chunks_are_errors() {
        let data = encode(&realistic(10));
        let mut out = Vec::new();
        assert!(decode(&data[..data.len() / 2], &mut out).is_err());
        assert!(decode(&data[..4], &mut out).is_err(), "cut inside the times");
        let mut extra = realistic(10);
        extra.push(LogLine { time_ns: 0, line: "x".into() });
        let mut longer = encode(&extra);
        longer[1] = 10; // claims ten lines, holds eleven
        assert_eq!(decode(&longer, &mut out), Err(LogChunkError::Trailing(2)));
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
            let _ = decode(&[&[COLUMNS], &bytes[..]].concat(), &mut out);
            let raw = { let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast()); z.write_all(&bytes).unwrap(); z.finish().unwrap() };
            let _ = decode(&raw, &mut out);
        }
    }
}
