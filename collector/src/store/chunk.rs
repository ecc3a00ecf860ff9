//! The sample codec: one series' samples (ms timestamps, f64 values) packed into a chunk of bits.
//! Pure functions over bytes; decoding never panics on corrupt input, it returns `ChunkError`.
//!
//! Written here rather than taken from a crate: `tsz` is unmaintained, and `pco` carries tens of
//! bytes of metadata per chunk, which is most of a 120-sample chunk's budget (1.5 bytes/sample).
//!
//! Format: `[mode u8][count uvarint][mode params][bits...]`. Timestamps: the first as 64 bits, then
//! delta-of-delta in signed buckets (a regular 10 s grid costs one bit a sample). Values, by mode:
//! - `XOR`: Gorilla's XOR against the previous value (any f64, bit-exact, NaN payloads included);
//! - `INT_DELTA` / `INT_DOD`: every value is an integer n / 10^k (k in 0..=9, |n| < 2^53) exactly;
//!   deltas of n divided by their common factor (0 for a constant: no value bits at all), stored as deltas (steps, gauges) or
//!   delta-of-deltas (steady counters) in the same signed buckets.
//!
//! The open chunk (`ChunkAppender`) streams XOR, which needs no look-ahead; `seal` re-encodes with
//! whichever mode is smallest for the whole chunk.

/// Samples per sealed chunk, as Prometheus does.
pub const CHUNK_TARGET_SAMPLES: usize = 120;

const MODE_XOR: u8 = 1;
const MODE_INT_DELTA: u8 = 2;
const MODE_INT_DOD: u8 = 3;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ChunkError {
    #[error("chunk truncated at bit {at}")]
    Truncated { at: usize },
    #[error("unknown chunk mode {0}")]
    BadMode(u8),
    #[error("chunk header is malformed: {0}")]
    BadHeader(&'static str),
}

/// The open chunk of a series: appends stream into an XOR-coded bit string, so memory per sample is
/// close to its encoded size.
#[derive(Clone, Debug, Default)]
pub struct ChunkAppender {
    bits: BitWriter,
    n: usize,
    first_ts: i64,
    last_ts: i64,
    last_delta: i64,
    last_value: u64,
    leading: u32,
    trailing: u32,
}

impl ChunkAppender {
    pub fn new() -> Self {
        ChunkAppender { leading: u32::MAX, ..Default::default() }
    }

    /// Appends one sample; the caller guarantees `ts` is after the previous one.
    pub fn push(&mut self, ts: i64, v: f64) {
        let v = v.to_bits();
        match self.n {
            0 => {
                self.bits.put(ts as u64, 64);
                self.bits.put(v, 64);
                self.first_ts = ts;
            }
            _ => {
                let delta = ts.wrapping_sub(self.last_ts);
                put_signed(&mut self.bits, delta.wrapping_sub(self.last_delta));
                self.last_delta = delta;
                put_xor(&mut self.bits, self.last_value, v, &mut self.leading, &mut self.trailing);
            }
        }
        self.last_ts = ts;
        self.last_value = v;
        self.n += 1;
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

    /// The bytes of what was appended so far; `decode` reads them.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bits.bytes.len() + 6);
        out.push(MODE_XOR);
        put_uvarint(&mut out, self.n as u64);
        out.extend_from_slice(&self.bits.bytes);
        out
    }

    pub fn from_snapshot(bytes: &[u8]) -> Result<Self, ChunkError> {
        let (mut ts, mut vs) = (Vec::new(), Vec::new());
        decode(bytes, &mut ts, &mut vs)?;
        let mut a = ChunkAppender::new();
        for (t, v) in ts.into_iter().zip(vs) {
            a.push(t, v);
        }
        Ok(a)
    }

    /// The sealed chunk in its smallest encoding.
    pub fn seal(&self) -> Vec<u8> {
        let (mut ts, mut vs) = (Vec::with_capacity(self.n), Vec::with_capacity(self.n));
        self.decode_into(&mut ts, &mut vs);
        encode(&ts, &vs)
    }

    pub fn decode_into(&self, ts: &mut Vec<i64>, vals: &mut Vec<f64>) {
        decode_xor(&mut BitReader::new(&self.bits.bytes), self.n, ts, vals)
            .expect("an appender's own bits always decode");
    }
}

/// Encodes a whole chunk with the smallest mode. `ts` strictly increasing, same length as `vals`.
pub fn encode(ts: &[i64], vals: &[f64]) -> Vec<u8> {
    let n = ts.len().min(vals.len());
    let mut xor = ChunkAppender::new();
    for i in 0..n {
        xor.push(ts[i], vals[i]);
    }
    let mut best = xor.snapshot();
    if let Some((k, ints)) = scaled_integers(&vals[..n]) {
        for mode in [MODE_INT_DELTA, MODE_INT_DOD] {
            let candidate = encode_ints(mode, k, &ts[..n], &ints);
            if candidate.len() < best.len() {
                best = candidate;
            }
        }
    }
    best
}

/// Decodes any chunk `encode` or `ChunkAppender::snapshot` produced, appending to the vectors.
pub fn decode(bytes: &[u8], ts: &mut Vec<i64>, vals: &mut Vec<f64>) -> Result<(), ChunkError> {
    let (&mode, mut rest) = bytes.split_first().ok_or(ChunkError::BadHeader("empty"))?;
    let n = get_uvarint(&mut rest)?;
    // Every sample after the first costs at least one bit, so a larger count is corrupt: refuse it
    // before allocating for it.
    if n > rest.len() as u64 * 8 + 1 {
        return Err(ChunkError::BadHeader("sample count larger than the data"));
    }
    let n = n as usize;
    match mode {
        MODE_XOR => decode_xor(&mut BitReader::new(rest), n, ts, vals),
        MODE_INT_DELTA | MODE_INT_DOD => {
            let (&k, mut rest) = rest.split_first().ok_or(ChunkError::BadHeader("missing scale"))?;
            if k > 9 {
                return Err(ChunkError::BadHeader("scale above 9"));
            }
            let factor = get_uvarint(&mut rest)? as i64;
            let mut r = BitReader::new(rest);
            let start = ts.len();
            decode_ts(&mut r, n, ts)?;
            let scale = 10f64.powi(i32::from(k));
            let (mut prev, mut delta) = (0i64, 0i64);
            for i in 0..(ts.len() - start) {
                let x = match i {
                    0 => r.get(64)? as i64,
                    _ if factor == 0 => prev,
                    _ => {
                        let d = get_signed(&mut r)?.wrapping_mul(factor);
                        delta = if mode == MODE_INT_DOD { delta.wrapping_add(d) } else { d };
                        prev.wrapping_add(delta)
                    }
                };
                prev = x;
                vals.push(x as f64 / scale);
            }
            Ok(())
        }
        other => Err(ChunkError::BadMode(other)),
    }
}

fn decode_ts(r: &mut BitReader<'_>, n: usize, ts: &mut Vec<i64>) -> Result<(), ChunkError> {
    let (mut t, mut delta) = (0i64, 0i64);
    for i in 0..n {
        if i == 0 {
            t = r.get(64)? as i64;
        } else {
            delta = delta.wrapping_add(get_signed(r)?);
            t = t.wrapping_add(delta);
        }
        ts.push(t);
    }
    Ok(())
}

fn decode_xor(r: &mut BitReader<'_>, n: usize, ts: &mut Vec<i64>, vals: &mut Vec<f64>) -> Result<(), ChunkError> {
    let (mut t, mut delta, mut v) = (0i64, 0i64, 0u64);
    let (mut leading, mut meaningful) = (0u32, 64u32);
    for i in 0..n {
        if i == 0 {
            t = r.get(64)? as i64;
            v = r.get(64)?;
        } else {
            delta = delta.wrapping_add(get_signed(r)?);
            t = t.wrapping_add(delta);
            if r.get(1)? == 1 {
                if r.get(1)? == 1 {
                    leading = r.get(5)? as u32;
                    meaningful = r.get(6)? as u32 + 1;
                    if leading + meaningful > 64 {
                        return Err(ChunkError::BadHeader("XOR window beyond 64 bits"));
                    }
                }
                let bits = r.get(meaningful)?;
                v ^= bits << (64 - leading - meaningful);
            }
        }
        ts.push(t);
        vals.push(f64::from_bits(v));
    }
    Ok(())
}

/// Gorilla's value step: '0' for the same value; '10' + bits inside the previous window; '11' +
/// 5 bits leading zeros + 6 bits length-1 + the bits.
fn put_xor(w: &mut BitWriter, prev: u64, v: u64, leading: &mut u32, trailing: &mut u32) {
    let x = prev ^ v;
    if x == 0 {
        w.put(0, 1);
        return;
    }
    w.put(1, 1);
    let (l, t) = (x.leading_zeros().min(31), x.trailing_zeros());
    if *leading != u32::MAX && l >= *leading && t >= *trailing {
        w.put(0, 1);
        let meaningful = 64 - *leading - *trailing;
        w.put(x >> *trailing, meaningful);
    } else {
        *leading = l;
        *trailing = t;
        let meaningful = 64 - l - t;
        w.put(1, 1);
        w.put(u64::from(l), 5);
        w.put(u64::from(meaningful - 1), 6);
        w.put(x >> t, meaningful);
    }
}

/// The smallest k in 0..=9 with every value exactly n/10^k, |n| < 2^53, and the n's.
fn scaled_integers(vals: &[f64]) -> Option<(u8, Vec<i64>)> {
    const LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53
    'scale: for k in 0..=9u8 {
        let scale = 10f64.powi(i32::from(k));
        let mut ints = Vec::with_capacity(vals.len());
        for &v in vals {
            let n = (v * scale).round();
            // -0.0 and non-finite values have no integer form that decodes to the same bits.
            if !n.is_finite() || n.abs() >= LIMIT || (n / scale).to_bits() != v.to_bits() {
                continue 'scale;
            }
            ints.push(n as i64);
        }
        return Some((k, ints));
    }
    None
}

fn encode_ints(mode: u8, k: u8, ts: &[i64], ints: &[i64]) -> Vec<u8> {
    let diffs: Vec<i64> = ints
        .windows(2)
        .map(|w| w[1].wrapping_sub(w[0]))
        .scan(0i64, |prev_delta, d| {
            let out = if mode == MODE_INT_DOD { d.wrapping_sub(*prev_delta) } else { d };
            *prev_delta = d;
            Some(out)
        })
        .collect();
    // A factor of 0 says every diff is zero (a constant), so none is written.
    let factor = diffs.iter().fold(0u64, |g, d| gcd(g, d.unsigned_abs()));
    let factor = i64::try_from(factor).unwrap_or(1);
    let mut out = vec![mode];
    put_uvarint(&mut out, ts.len() as u64);
    out.push(k);
    put_uvarint(&mut out, factor as u64);
    let mut w = BitWriter::default();
    let mut delta = 0i64;
    for (i, &t) in ts.iter().enumerate() {
        if i == 0 {
            w.put(t as u64, 64);
        } else {
            let d = t.wrapping_sub(ts[i - 1]);
            put_signed(&mut w, d.wrapping_sub(delta));
            delta = d;
        }
    }
    if let Some(&first) = ints.first() {
        w.put(first as u64, 64);
    }
    if factor != 0 {
        for d in diffs {
            put_signed(&mut w, d / factor);
        }
    }
    out.extend_from_slice(&w.bytes);
    out
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Signed integers in buckets: '0' zero, '10'+7 bits, '110'+14, '1110'+20, '11110'+32, '11111'+64.
fn put_signed(w: &mut BitWriter, v: i64) {
    let fits = |bits: u32| v >= -(1i64 << (bits - 1)) && v < (1i64 << (bits - 1));
    match v {
        0 => w.put(0, 1),
        _ if fits(7) => {
            w.put(0b10, 2);
            w.put(v as u64 & 0x7f, 7);
        }
        _ if fits(14) => {
            w.put(0b110, 3);
            w.put(v as u64 & 0x3fff, 14);
        }
        _ if fits(20) => {
            w.put(0b1110, 4);
            w.put(v as u64 & 0xf_ffff, 20);
        }
        _ if fits(32) => {
            w.put(0b11110, 5);
            w.put(v as u64 & 0xffff_ffff, 32);
        }
        _ => {
            w.put(0b11111, 5);
            w.put(v as u64, 64);
        }
    }
}

fn get_signed(r: &mut BitReader<'_>) -> Result<i64, ChunkError> {
    let mut ones = 0;
    while ones < 5 && r.get(1)? == 1 {
        ones += 1;
    }
    let bits = [0u32, 7, 14, 20, 32, 64][ones];
    if bits == 0 {
        return Ok(0);
    }
    let raw = r.get(bits)?;
    // Sign-extend from `bits`.
    Ok(if bits == 64 { raw as i64 } else { ((raw << (64 - bits)) as i64) >> (64 - bits) })
}

#[derive(Clone, Debug, Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits used in the last byte (0 = the last byte is full or there is none).
    used: u32,
}

impl BitWriter {
    /// Appends the low `n` bits of `v`, most significant first.
    fn put(&mut self, v: u64, mut n: u32) {
        while n > 0 {
            if self.used == 0 {
                self.bytes.push(0);
            }
            let free = 8 - self.used;
            let take = free.min(n);
            let chunk = ((v >> (n - take)) & ((1u64 << take) - 1)) as u8;
            let last = self.bytes.last_mut().expect("a byte was pushed above");
            *last |= chunk << (free - take);
            self.used = (self.used + take) % 8;
            n -= take;
        }
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        BitReader { bytes, pos: 0 }
    }

    fn get(&mut self, mut n: u32) -> Result<u64, ChunkError> {
        if self.pos + n as usize > self.bytes.len() * 8 {
            return Err(ChunkError::Truncated { at: self.pos });
        }
        let mut v = 0u64;
        while n > 0 {
            let byte = self.bytes[self.pos / 8];
            let offset = (self.pos % 8) as u32;
            let take = (8 - offset).min(n);
            let bits = (byte >> (8 - offset - take)) & ((1u16 << take) - 1) as u8;
            v = (v << take) | u64::from(bits);
            self.pos += take as usize;
            n -= take;
        }
        Ok(v)
    }
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_uvarint(buf: &mut &[u8]) -> Result<u64, ChunkError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first().ok_or(ChunkError::BadHeader("truncated varint"))?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err(ChunkError::BadHeader("varint longer than 10 bytes"))
}

#[cfg(test)]
#[path = "chunk_tests.rs"]
mod tests;
