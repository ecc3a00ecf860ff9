//! The head log's record format: the samples one batch added, so that the open chunks in memory
//! can be rebuilt after a crash. Pure functions over bytes; a corrupt record is an error, never a panic.

use super::index::SeriesId;

/// Appends one series' samples to a record: varint id, varint count, then per sample a zigzag varint
/// delta of the timestamp (from the previous one, the first from 0) and the value's 8 bytes.
pub fn put_series(out: &mut Vec<u8>, id: SeriesId, ts: &[i64], values: &[f64]) {
    put_uvarint(out, u64::from(id));
    put_uvarint(out, ts.len() as u64);
    let mut prev = 0i64;
    for (t, v) in ts.iter().zip(values) {
        put_uvarint(out, zigzag(t.wrapping_sub(prev)));
        prev = *t;
        out.extend_from_slice(&v.to_bits().to_le_bytes());
    }
}

/// Calls `f(id, ts, value)` for every sample of a record, in order.
pub fn for_each_sample(mut buf: &[u8], mut f: impl FnMut(SeriesId, i64, f64)) -> Result<(), &'static str> {
    while !buf.is_empty() {
        let id = u32::try_from(get_uvarint(&mut buf)?).map_err(|_| "series id out of range")?;
        let n = get_uvarint(&mut buf)?;
        let mut prev = 0i64;
        for _ in 0..n {
            let t = prev.wrapping_add(unzigzag(get_uvarint(&mut buf)?));
            prev = t;
            let (bytes, rest) = buf.split_first_chunk::<8>().ok_or("truncated value")?;
            buf = rest;
            f(id, t, f64::from_bits(u64::from_le_bytes(*bytes)));
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

pub(super) fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(super) fn get_uvarint(buf: &mut &[u8]) -> Result<u64, &'static str> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first().ok_or("truncated varint")?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn record_round_trips(series in proptest::collection::vec((1u32..1000, proptest::collection::vec((any::<i64>(), any::<u64>()), 0..20)), 0..10)) {
            let mut buf = Vec::new();
            let mut want = Vec::new();
            for (id, samples) in &series {
                let ts: Vec<i64> = samples.iter().map(|s| s.0).collect();
                let vs: Vec<f64> = samples.iter().map(|s| f64::from_bits(s.1)).collect();
                put_series(&mut buf, *id, &ts, &vs);
                want.extend(samples.iter().map(|s| (*id, s.0, s.1)));
            }
            let mut got = Vec::new();
            for_each_sample(&buf, |id, t, v| got.push((id, t, v.to_bits()))).unwrap();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = for_each_sample(&bytes, |_, _, _| {});
        }
    }
}
