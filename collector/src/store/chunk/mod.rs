//! Compressed sample chunks of the time-series store: (i64 ms, f64) samples to compact BLOBs and back.
//! It must never change a single bit of any timestamp or value, and never panic on any input bytes.

// Format, version 1. Byte 0: high nibble 0xC, low nibble the value mode: 0..=9 means every value is
// an integer n with `n as f64 / 10^mode` equal to it bit for bit; 0xF means Gorilla XOR of the raw
// bits. Then the sample count (LEB128), then one MSB-first bit stream: the timestamps as an integer
// stream, the values (integer stream of the n, or XOR), zero padding to a whole byte.
//
// Integer stream x_0..x_{n-1}, shaped so that regular data costs next to nothing per sample:
//   var(zigzag x_0); if n > 1: var(g), 1 bit order, [order 2: var(zigzag q_1)], then residuals.
//   d_i = x_i - x_{i-1} (wrapping), g = gcd of the d_i (10 000 for 10 s scrapes, 4096 for memory
//   pages), q_i = d_i / g; order 1 codes r_i = q_i (random increments), order 2 codes
//   r_i = q_i - q_{i-1} (steady rates, timestamps). var(u) = 7 bits bit-length L, then L bits.
// Residuals: 2 bits kind, then
//   0 table:  2 bits c-1, c widths of 7 bits; each r: class i in unary (i ones, then a zero unless
//             i is the last class), then w_i bits of zigzag r. The widths are fitted to each chunk,
//             which is what beats Gorilla's fixed buckets on counters that rise irregularly.
//   1 sparse: var(m), 7 bits width w; m times: gap to the next nonzero r (in as many bits as the
//             residual count minus one needs), w bits of zigzag r.
//             (All zero but a rare scrape gap or counter step: ~0 bits per sample.)
//   2 varlen: each r is '0' for zero, else '1', 6 bits of len-1, len bits: the open chunk's code,
//             which needs no look at the data ahead.

/// Samples per chunk at which the store seals the open chunk: 40 minutes at a 10 s interval. Twice
/// Prometheus's 120, because each chunk is also a SQLite row whose keys and two index entries cost
/// about 60 bytes, a quarter of a sample's budget at 120.
pub const CHUNK_TARGET_SAMPLES: usize = 240;
/// Most samples one chunk may hold. `decode` refuses larger counts so that corrupt bytes cannot make
/// it produce unbounded output; the store seals at `CHUNK_TARGET_SAMPLES`, far below.
pub const MAX_CHUNK_SAMPLES: usize = 1 << 20;

const MAGIC: u8 = 0xC;
const MODE_XOR: u8 = 0xF;
const POW10: [f64; 10] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
const KIND_TABLE: u64 = 0;
const KIND_SPARSE: u64 = 1;
const KIND_VARLEN: u64 = 2;

/// Why bytes could not be decoded as a chunk.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ChunkError {
    #[error("chunk truncated: more data needed at bit {at}")]
    Truncated { at: usize },
    #[error("unknown chunk header byte {0:#04x}")]
    BadHeader(u8),
    #[error("chunk claims {0} samples, over the limit of 2^20")]
    TooManySamples(u64),
    #[error("corrupt chunk: {0}")]
    Corrupt(&'static str),
    #[error("chunk timestamps are not strictly increasing at sample {index}")]
    NotIncreasing { index: usize },
    #[error("{0} unexpected bytes after the last sample of the chunk")]
    TrailingBytes(usize),
}

mod bits;
mod intcode;

use bits::*;
use intcode::*;

/// Gorilla's value XOR as Prometheus does it: '0' same bits, '10' the changed bits fit the previous
/// window, '11' + 5 bits leading zeros + 6 bits length + the bits. Exact for any f64 bit pattern.
#[derive(Clone, Copy, Debug, Default)]
struct XorEnc {
    prev: u64,
    window: Option<(u32, u32)>,
    started: bool,
}

impl XorEnc {
    fn put(&mut self, w: &mut impl Sink, v: f64) {
        let b = v.to_bits();
        let x = b ^ self.prev;
        self.prev = b;
        if !self.started {
            self.started = true;
            return w.put(b, 64);
        }
        if x == 0 {
            return w.put(0, 1);
        }
        let (lead, trail) = (x.leading_zeros().min(31), x.trailing_zeros());
        match self.window {
            Some((l, t)) if lead >= l && trail >= t => {
                w.put(0b10, 2);
                w.put(x >> t, 64 - l - t);
            }
            _ => {
                let sig = 64 - lead - trail;
                w.put(0b11, 2);
                w.put(u64::from(lead), 5);
                w.put(u64::from(sig & 63), 6);
                w.put(x >> trail, sig);
                self.window = Some((lead, trail));
            }
        }
    }
}

fn xor_all(vals: &[f64], w: &mut impl Sink) -> XorEnc {
    let mut x = XorEnc::default();
    vals.iter().for_each(|&v| x.put(w, v));
    x
}

fn decode_xor(r: &mut BitReader, n: usize, out: &mut Vec<f64>) -> Result<(), ChunkError> {
    if n == 0 {
        return Ok(());
    }
    let mut prev = r.read_wide(64)?;
    out.push(f64::from_bits(prev));
    let (mut lead, mut sig) = (u32::MAX, 0);
    for _ in 1..n {
        if r.read(1)? == 1 {
            if r.read(1)? == 1 {
                lead = r.read(5)? as u32;
                let s = r.read(6)? as u32;
                sig = if s == 0 { 64 } else { s };
                if lead + sig > 64 {
                    return Err(ChunkError::Corrupt("XOR window wider than 64 bits"));
                }
            } else if lead == u32::MAX {
                return Err(ChunkError::Corrupt("XOR reuses a window never set"));
            }
            prev ^= r.read_wide(sig)? << (64 - lead - sig);
        }
        out.push(f64::from_bits(prev));
    }
    Ok(())
}

/// `Some(n)` when `n as f64 / 10^k` gives back `v` bit for bit (so NaN, ±Inf and -0.0 never do).
fn scaled(v: f64, k: usize) -> Option<i64> {
    let p = POW10[k];
    let y = v * p;
    if y.is_nan() || y.abs() >= 9_007_199_254_740_992.0 {
        return None; // |n| must stay below 2^53, where i64 -> f64 is exact
    }
    let n = y as i64; // truncates; v * p may be off by an ulp, hence the neighbours
    [n, n + 1, n - 1].into_iter().find(|&c| (c as f64 / p).to_bits() == v.to_bits())
}

/// The smallest scale k >= `from` at which every value is an exact decimal, with the integers.
fn scale_all(vals: &[f64], from: usize) -> Option<(usize, Vec<i64>)> {
    let (mut k, mut ints) = (from, Vec::with_capacity(vals.len()));
    'scale: while k < POW10.len() {
        ints.clear();
        for &v in vals {
            match scaled(v, k) {
                Some(x) => ints.push(x),
                None => {
                    k = (k + 1..POW10.len()).find(|&j| scaled(v, j).is_some())?;
                    continue 'scale;
                }
            }
        }
        return Some((k, ints));
    }
    None
}

fn assemble(mode: u8, n: usize, ts: &BitWriter, vals: &BitWriter) -> Vec<u8> {
    let mut out = BitWriter { buf: Vec::with_capacity(8 + (ts.bit_len() + vals.bit_len()) / 8), ..Default::default() };
    out.buf.push(MAGIC << 4 | mode);
    let mut n = n;
    while n >= 0x80 {
        out.buf.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.buf.push(n as u8);
    out.extend(ts);
    out.extend(vals);
    out.into_bytes()
}

/// The open chunk's values: decimal-scaled integers while one scale fits them all, else XOR.
#[derive(Clone, Debug)]
enum ValMode {
    Int { k: usize, last: i64 },
    Xor(XorEnc),
}

/// Appendable open chunk kept in memory (the store's head). Memory per sample should be close to the encoded size, not 16 bytes.
///
/// Timestamps stream as order-2 deltas, values as order-1 deltas of decimal-scaled integers, both
/// with the `varlen` code, so each push writes a few bits and `snapshot` is a valid chunk.
#[derive(Clone, Debug)]
pub struct ChunkAppender {
    n: usize,
    first_ts: i64,
    last_ts: i64,
    last_dt: i64,
    ts_bits: BitWriter,
    vals: ValMode,
    val_bits: BitWriter,
}

impl Default for ChunkAppender {
    fn default() -> Self {
        Self::new()
    }
}

/// Streams integer `x` as sample `idx` of an order-1, g = 1, varlen integer stream.
fn push_int(w: &mut BitWriter, idx: usize, last: i64, x: i64) {
    if idx == 0 {
        return w.write_var(zz(x));
    }
    if idx == 1 {
        w.write_var(1);
        w.write(0, 1);
        w.write(KIND_VARLEN, 2);
    }
    put_varlen(w, zz(x.wrapping_sub(last)));
}

impl ChunkAppender {
    pub fn new() -> Self {
        ChunkAppender {
            n: 0,
            first_ts: 0,
            last_ts: 0,
            last_dt: 0,
            ts_bits: BitWriter::default(),
            vals: ValMode::Int { k: 0, last: 0 },
            val_bits: BitWriter::default(),
        }
    }

    /// Appends one sample. Precondition (checked by the caller): ts strictly greater than the last one. Never panics for any f64 (NaN with any payload, ±Inf, -0.0).
    ///
    /// A chunk holds at most `MAX_CHUNK_SAMPLES`; the store seals long before.
    pub fn push(&mut self, ts: i64, v: f64) {
        let dt = ts.wrapping_sub(self.last_ts);
        let w = &mut self.ts_bits;
        match self.n {
            0 => {
                w.write_var(zz(ts));
                self.first_ts = ts;
            }
            1 => {
                w.write_var(1); // g = 1, order 2, first delta, varlen residuals
                w.write(1, 1);
                w.write_var(zz(dt));
                w.write(KIND_VARLEN, 2);
            }
            _ => put_varlen(w, zz(dt.wrapping_sub(self.last_dt))),
        }
        (self.last_ts, self.last_dt) = (ts, dt);
        self.push_value(v);
        self.n += 1;
    }

    fn push_value(&mut self, v: f64) {
        match &mut self.vals {
            ValMode::Int { k, last } => {
                if let Some(x) = scaled(v, *k) {
                    push_int(&mut self.val_bits, self.n, *last, x);
                    *last = x;
                    return;
                }
            }
            ValMode::Xor(x) => return x.put(&mut self.val_bits, v),
        }
        // v needs more decimals than the scale so far (or is no decimal at all): re-encode the
        // values with the smallest larger scale that fits them all, else XOR. The scale only grows,
        // so a chunk re-encodes at most 10 times plus once into XOR.
        let from = if let ValMode::Int { k, .. } = self.vals { k + 1 } else { 0 };
        let mut all = Vec::with_capacity(self.n + 1);
        let decoded = self.decode_values(&mut all);
        debug_assert!(decoded.is_ok(), "own value stream must decode: {decoded:?}");
        all.push(v);
        let mut w = BitWriter::default();
        self.vals = match scale_all(&all, from) {
            Some((k, ints)) => {
                let mut last = 0;
                for (i, &x) in ints.iter().enumerate() {
                    push_int(&mut w, i, last, x);
                    last = x;
                }
                ValMode::Int { k, last }
            }
            None => ValMode::Xor(xor_all(&all, &mut w)),
        };
        self.val_bits = w;
    }

    fn decode_values(&self, out: &mut Vec<f64>) -> Result<(), ChunkError> {
        let bytes = self.val_bits.clone().into_bytes();
        let mut r = BitReader::new(&bytes, 0);
        match self.vals {
            ValMode::Int { k, .. } => decode_ints(&mut r, self.n, |x| out.push(x as f64 / POW10[k])),
            ValMode::Xor(_) => decode_xor(&mut r, self.n, out),
        }
    }

    pub fn len(&self) -> usize {
        self.n
    }
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
    pub fn first_ts(&self) -> Option<i64> {
        (self.n > 0).then_some(self.first_ts)
    }
    pub fn last_ts(&self) -> Option<i64> {
        (self.n > 0).then_some(self.last_ts)
    }

    /// Encoded bytes of what was appended so far (usable for a durable snapshot of the head; decodes with `decode`).
    pub fn snapshot(&self) -> Vec<u8> {
        let mode = match self.vals {
            ValMode::Int { k, .. } => k as u8,
            ValMode::Xor(_) => MODE_XOR,
        };
        assemble(mode, self.n, &self.ts_bits, &self.val_bits)
    }

    /// Rebuilds an appender from a snapshot, so that pushing continues where it left off.
    ///
    /// Replays the samples: the appender's state is a function of what was pushed, so the result
    /// is the appender that took them in the first place (and any valid chunk is accepted).
    pub fn from_snapshot(bytes: &[u8]) -> Result<Self, ChunkError> {
        let (mut ts, mut vals) = (Vec::new(), Vec::new());
        decode(bytes, &mut ts, &mut vals)?;
        let mut a = Self::new();
        ts.iter().zip(&vals).for_each(|(&t, &v)| a.push(t, v));
        Ok(a)
    }

    /// Final, best encoding of the sealed chunk: may re-encode with whatever mode compresses this data best.
    pub fn seal(&self) -> Vec<u8> {
        let (mut ts, mut vals) = (Vec::with_capacity(self.n), Vec::with_capacity(self.n));
        self.decode_into(&mut ts, &mut vals);
        encode(&ts, &vals)
    }

    /// Decodes everything appended so far into the two vectors (appends to them).
    pub fn decode_into(&self, ts: &mut Vec<i64>, vals: &mut Vec<f64>) {
        let decoded = decode(&self.snapshot(), ts, vals);
        debug_assert!(decoded.is_ok(), "own snapshot must decode (pushes out of order?): {decoded:?}");
    }
}

/// Decodes any bytes produced by `snapshot` or `seal` (appends to the vectors). Never panics on any input: corrupt or truncated bytes give a ChunkError.
///
/// On error the vectors are left as they were.
pub fn decode(bytes: &[u8], ts: &mut Vec<i64>, vals: &mut Vec<f64>) -> Result<(), ChunkError> {
    let (t0, v0) = (ts.len(), vals.len());
    let res = decode_inner(bytes, ts, vals);
    if res.is_err() {
        ts.truncate(t0);
        vals.truncate(v0);
    }
    res
}

fn decode_inner(bytes: &[u8], ts: &mut Vec<i64>, vals: &mut Vec<f64>) -> Result<(), ChunkError> {
    let (&head, rest) = bytes.split_first().ok_or(ChunkError::Truncated { at: 0 })?;
    let mode = head & 0xF;
    if head >> 4 != MAGIC || (mode > 9 && mode != MODE_XOR) {
        return Err(ChunkError::BadHeader(head));
    }
    let (mut n, mut used) = (0u64, 0);
    loop {
        let b = *rest.get(used).ok_or(ChunkError::Truncated { at: 8 * (1 + used) })?;
        n |= u64::from(b & 0x7F) << (7 * used);
        used += 1;
        if b & 0x80 == 0 {
            break;
        }
        if used == 3 {
            return Err(ChunkError::TooManySamples(n)); // 3 bytes hold every count up to the limit
        }
    }
    if n > MAX_CHUNK_SAMPLES as u64 {
        return Err(ChunkError::TooManySamples(n));
    }
    let n = n as usize;
    let data = rest.get(used..).unwrap_or_default();
    let mut r = BitReader::new(data, 8 * (1 + used));
    let t0 = ts.len();
    ts.reserve(n.min(4096)); // a corrupt count must not reserve much
    vals.reserve(n.min(4096));
    decode_ints(&mut r, n, |t| ts.push(t))?;
    if let Some(i) = ts[t0..].windows(2).position(|p| p[1] <= p[0]) {
        return Err(ChunkError::NotIncreasing { index: i + 1 });
    }
    if mode == MODE_XOR {
        decode_xor(&mut r, n, vals)?;
    } else {
        let p = POW10[mode as usize];
        decode_ints(&mut r, n, |x| vals.push(x as f64 / p))?;
    }
    match data.len().saturating_sub(r.consumed().div_ceil(8)) {
        0 => Ok(()),
        extra => Err(ChunkError::TrailingBytes(extra)),
    }
}

/// One-shot helper: encode a whole slice with the best mode (same as pushing all then `seal`).
///
/// Encodes the first `min(ts.len(), vals.len())` samples. Values take the smaller of the
/// decimal-scaled integer stream (when every value is an exact decimal) and Gorilla XOR.
pub fn encode(ts: &[i64], vals: &[f64]) -> Vec<u8> {
    let n = ts.len().min(vals.len());
    let (ts, vals) = (&ts[..n], &vals[..n]);
    let mut tw = BitWriter::with_capacity(n / 4 + 16);
    encode_ints(&mut tw, ts);
    let mut xor_bits = BitCount(0);
    xor_all(vals, &mut xor_bits); // price XOR first: writing it is rarely needed
    if let Some((k, ints)) = scale_all(vals, 0) {
        let mut iw = BitWriter::with_capacity(n * 2);
        encode_ints(&mut iw, &ints);
        if iw.bit_len() <= xor_bits.0 {
            return assemble(k as u8, n, &tw, &iw);
        }
    }
    let mut xw = BitWriter::with_capacity(xor_bits.0 / 8 + 1);
    xor_all(vals, &mut xw);
    assemble(MODE_XOR, n, &tw, &xw)
}

#[cfg(test)]
mod tests;
