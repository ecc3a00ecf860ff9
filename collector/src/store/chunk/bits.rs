//! Bit-level plumbing of the chunk codec: MSB-first writer and reader, zigzag, bit lengths.
//! No format decisions here; `intcode` and `mod` decide what the bits mean.

use super::ChunkError;

pub(super) fn zz(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}
pub(super) fn unzz(u: u64) -> i64 {
    (u >> 1) as i64 ^ -((u & 1) as i64)
}
pub(super) fn bits(u: u64) -> u32 {
    64 - u.leading_zeros()
}
pub(super) fn mask(n: u32) -> u64 {
    u64::MAX.checked_shr(64 - n).unwrap_or(0)
}
pub(super) fn var_len(u: u64) -> u64 {
    7 + u64::from(bits(u))
}

/// Where bits go: a `BitWriter`, or a `BitCount` to price an encoding without writing it.
pub(super) trait Sink {
    fn put(&mut self, v: u64, n: u32);
}
pub(super) struct BitCount(pub(super) usize);
impl Sink for BitCount {
    fn put(&mut self, _: u64, n: u32) {
        self.0 += n as usize;
    }
}
impl Sink for BitWriter {
    fn put(&mut self, v: u64, n: u32) {
        self.write(v, n);
    }
}

/// MSB-first bit writer. Bits gather in a u64 and leave as 32-bit words, so a write is a shift and
/// an or; the open chunk keeps these (about the encoded size) instead of 16 bytes per sample.
#[derive(Clone, Debug, Default)]
pub(super) struct BitWriter {
    pub(super) buf: Vec<u8>,
    pub(super) acc: u64,
    pub(super) fill: u32,
}

impl BitWriter {
    /// Writes the low `n` (0..=64) bits of `v`.
    pub(super) fn write(&mut self, v: u64, n: u32) {
        let v = v & mask(n);
        if n > 32 {
            self.put32(v >> 32, n - 32);
            self.put32(v & 0xFFFF_FFFF, 32);
        } else {
            self.put32(v, n);
        }
    }
    pub(super) fn put32(&mut self, v: u64, n: u32) {
        self.acc = (self.acc << n) | v; // fill < 32 before, so fill + n < 64
        self.fill += n;
        if self.fill >= 32 {
            self.fill -= 32;
            self.buf.extend_from_slice(&((self.acc >> self.fill) as u32).to_be_bytes());
        }
    }
    pub(super) fn write_var(&mut self, u: u64) {
        self.write(u64::from(bits(u)), 7);
        self.write(u, bits(u));
    }
    pub(super) fn with_capacity(bytes: usize) -> Self {
        BitWriter { buf: Vec::with_capacity(bytes), ..Default::default() }
    }
    pub(super) fn bit_len(&self) -> usize {
        self.buf.len() * 8 + self.fill as usize
    }
    /// Appends every bit of `o` (not byte aligned: streams are packed back to back).
    pub(super) fn extend(&mut self, o: &BitWriter) {
        let words = o.buf.chunks_exact(4);
        let rest = words.remainder();
        for c in words {
            self.write(u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]])), 32);
        }
        for &b in rest {
            self.write(u64::from(b), 8);
        }
        self.write(o.acc, o.fill);
    }
    pub(super) fn into_bytes(mut self) -> Vec<u8> {
        let mut f = self.fill;
        while f >= 8 {
            f -= 8;
            self.buf.push((self.acc >> f) as u8);
        }
        if f > 0 {
            self.buf.push((self.acc << (8 - f)) as u8);
        }
        self.buf
    }
}

/// MSB-first bit reader; `acc` holds `avail` bits left-aligned and is refilled 7 bytes at a time.
pub(super) struct BitReader<'a> {
    pub(super) data: &'a [u8],
    pub(super) pos: usize,
    pub(super) acc: u64,
    pub(super) avail: u32,
    base: usize, // bit offset of `data` in the chunk, for error messages
}

impl<'a> BitReader<'a> {
    pub(super) fn new(data: &'a [u8], base: usize) -> Self {
        BitReader { data, pos: 0, acc: 0, avail: 0, base }
    }
    pub(super) fn consumed(&self) -> usize {
        self.pos * 8 - self.avail as usize
    }
    pub(super) fn refill(&mut self) {
        if let Some(b) = self.data.get(self.pos..self.pos + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(b);
            // Bits past the 7 bytes counted are the right next bits too; or-ing them again is harmless.
            self.acc |= u64::from_be_bytes(w) >> self.avail;
            let take = (63 - self.avail) / 8;
            self.pos += take as usize;
            self.avail += take * 8;
        } else {
            while self.avail <= 56 {
                let Some(&b) = self.data.get(self.pos) else { break };
                self.acc |= u64::from(b) << (56 - self.avail);
                self.avail += 8;
                self.pos += 1;
            }
        }
    }
    /// Reads `n` (0..=56) bits.
    #[inline]
    pub(super) fn read(&mut self, n: u32) -> Result<u64, ChunkError> {
        if n == 0 {
            return Ok(0);
        }
        if self.avail < n {
            self.refill();
            if self.avail < n {
                return Err(ChunkError::Truncated { at: self.base + self.consumed() });
            }
        }
        let v = self.acc >> (64 - n);
        self.acc <<= n;
        self.avail -= n;
        Ok(v)
    }
    pub(super) fn read_wide(&mut self, n: u32) -> Result<u64, ChunkError> {
        if n <= 56 {
            return self.read(n);
        }
        let hi = self.read(n - 32)?;
        Ok(hi << 32 | self.read(32)?)
    }
    pub(super) fn read_width(&mut self) -> Result<u32, ChunkError> {
        match self.read(7)? as u32 {
            w @ 0..=64 => Ok(w),
            _ => Err(ChunkError::Corrupt("bit width over 64")),
        }
    }
    pub(super) fn read_var(&mut self) -> Result<u64, ChunkError> {
        let l = self.read_width()?;
        self.read_wide(l)
    }
}
