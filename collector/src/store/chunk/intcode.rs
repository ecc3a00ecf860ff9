//! Integer streams of the chunk codec: gcd-scaled first/second-order differences with residuals in
//! a per-chunk fitted table, a sparse list, or a streaming length code.

use super::bits::*;
use super::*;

/// Class i of c is coded as i ones and a closing zero, which the last class does without.
pub(super) fn code_len(i: u32, c: u32) -> u32 {
    (i + 1).min(c - 1)
}

/// A fitted prefix code: class i (code of `code_len(i)` bits) carries `w[i]` payload bits.
#[derive(Clone, Copy, Debug)]
pub(super) struct Table {
    pub(super) c: u32,
    pub(super) w: [u32; 4],
    pick: [u8; 65], // cheapest class for each payload bit length
}

impl Table {
    pub(super) fn new(widths: &[u32]) -> Table {
        let mut t = Table { c: widths.len() as u32, w: [0; 4], pick: [0; 65] };
        t.w[..widths.len()].copy_from_slice(widths);
        for len in 0..=64 {
            let fits = (0..t.c).filter(|&i| t.w[i as usize] >= len);
            if let Some(i) = fits.min_by_key(|&i| code_len(i, t.c) + t.w[i as usize]) {
                t.pick[len as usize] = i as u8;
            }
        }
        t
    }
    pub(super) fn put(&self, w: &mut BitWriter, u: u64) {
        let i = u32::from(self.pick[bits(u) as usize]);
        let len = code_len(i, self.c);
        w.write(((1u64 << i) - 1) << (len - i), len);
        w.write(u, self.w[i as usize]);
    }
}

/// Searches widths for the table code: each present bit length goes to the narrowest class that
/// holds it, the busiest classes get the shortest codes. Returns the table and its cost in bits.
pub(super) fn best_table(hist: &[u64; 65], maxw: u32) -> (Table, u64) {
    let mut cum = [0u64; 66];
    for l in 0..65 {
        cum[l + 1] = cum[l] + hist[l];
    }
    // Candidate widths: lengths present below the widest, thinned so the search stays under 100 tries.
    let mut cand: Vec<u32> = (0..maxw).filter(|&l| hist[l as usize] > 0).collect();
    if cand.len() > 8 {
        let step = cand.len().div_ceil(8);
        cand = cand.into_iter().step_by(step).collect();
    }
    let mut best = (u64::MAX, [0u32; 4], 0usize);
    let mut try_set = |ws: &[u32]| {
        let (mut cls, mut lo, mut cost) = ([(0u64, 0u32); 4], 0usize, 2 + 7 * ws.len() as u64);
        for (j, &w) in ws.iter().enumerate() {
            let count = cum[w as usize + 1] - cum[lo];
            cls[j] = (count, w);
            cost += count * u64::from(w);
            lo = w as usize + 1;
        }
        let s = ws.len();
        cls[..s].sort_unstable_by_key(|c| std::cmp::Reverse(c.0));
        cost += (0..s).map(|r| cls[r].0 * u64::from(code_len(r as u32, s as u32))).sum::<u64>();
        if cost < best.0 {
            best = (cost, [cls[0].1, cls[1].1, cls[2].1, cls[3].1], s);
        }
    };
    try_set(&[maxw]);
    for i in 0..cand.len() {
        try_set(&[cand[i], maxw]);
        for j in i + 1..cand.len() {
            try_set(&[cand[i], cand[j], maxw]);
            for l in j + 1..cand.len() {
                try_set(&[cand[i], cand[j], cand[l], maxw]);
            }
        }
    }
    (Table::new(&best.1[..best.2]), best.0)
}

pub(super) enum Resid {
    Table(Table),
    Sparse { m: u64, w: u32 },
    Varlen,
}

/// How many residuals have each bit length (of their zigzag form).
pub(super) fn histogram(res: &[i64]) -> [u64; 65] {
    // Four interleaved counts: equal neighbours would otherwise serialize on one counter.
    let mut h4 = [[0u32; 65]; 4];
    for (i, &r) in res.iter().enumerate() {
        h4[i & 3][bits(zz(r)) as usize] += 1;
    }
    std::array::from_fn(|l| h4.iter().map(|h| u64::from(h[l])).sum())
}

pub(super) fn varlen_cost(hist: &[u64; 65]) -> u64 {
    2 + hist[0] + (1..=64).map(|l| hist[l] * (7 + l as u64)).sum::<u64>()
}

/// Picks the cheapest residual coding for `n` residuals with this histogram.
pub(super) fn plan_resid(hist: &[u64; 65], n: usize) -> Resid {
    let maxw = (0..=64u32).rev().find(|&l| hist[l as usize] > 0).unwrap_or(0);
    let nz = n as u64 - hist[0];
    let gap = u64::from(bits(n.saturating_sub(1) as u64));
    let (sparse, varlen) = (2 + var_len(nz) + 7 + nz * (gap + u64::from(maxw)), varlen_cost(hist));
    let (table, tcost) = best_table(hist, maxw);
    if tcost + 2 <= sparse.min(varlen) {
        Resid::Table(table)
    } else if sparse <= varlen {
        Resid::Sparse { m: nz, w: maxw }
    } else {
        Resid::Varlen
    }
}

pub(super) fn put_varlen(w: &mut BitWriter, u: u64) {
    if u == 0 {
        w.write(0, 1);
    } else {
        w.write(64 | u64::from(bits(u) - 1), 7);
        w.write(u, bits(u));
    }
}

pub(super) fn write_resid(w: &mut BitWriter, plan: &Resid, res: &[i64]) {
    match plan {
        Resid::Table(t) => {
            w.write(KIND_TABLE, 2);
            w.write(u64::from(t.c - 1), 2);
            t.w[..t.c as usize].iter().for_each(|&x| w.write(u64::from(x), 7));
            res.iter().for_each(|&r| t.put(w, zz(r)));
        }
        Resid::Sparse { m, w: width } => {
            w.write(KIND_SPARSE, 2);
            w.write_var(*m);
            w.write(u64::from(*width), 7);
            let gb = bits(res.len().saturating_sub(1) as u64);
            let mut next = 0;
            for (i, &r) in res.iter().enumerate().filter(|p| *p.1 != 0) {
                w.write((i - next) as u64, gb);
                w.write(zz(r), *width);
                next = i + 1;
            }
        }
        Resid::Varlen => {
            w.write(KIND_VARLEN, 2);
            res.iter().for_each(|&r| put_varlen(w, zz(r)));
        }
    }
}

pub(super) fn read_resid(r: &mut BitReader, n: usize, mut f: impl FnMut(i64)) -> Result<(), ChunkError> {
    match r.read(2)? {
        KIND_TABLE => {
            let c = r.read(2)? as u32 + 1;
            let mut w = [0u32; 4];
            for x in &mut w[..c as usize] {
                *x = r.read_width()?;
            }
            for _ in 0..n {
                let mut i = 0;
                while i + 1 < c && r.read(1)? == 1 {
                    i += 1;
                }
                f(unzz(r.read_wide(w[i as usize])?));
            }
        }
        KIND_SPARSE => {
            let m = r.read_var()?;
            if m > n as u64 {
                return Err(ChunkError::Corrupt("more exceptions than samples"));
            }
            let (width, gb) = (r.read_width()?, bits(n.saturating_sub(1) as u64));
            let mut next = 0;
            for _ in 0..m {
                let at = next + r.read(gb)? as usize;
                if at >= n {
                    return Err(ChunkError::Corrupt("exception past the last sample"));
                }
                (next..at).for_each(|_| f(0));
                f(unzz(r.read_wide(width)?));
                next = at + 1;
            }
            (next..n).for_each(|_| f(0));
        }
        KIND_VARLEN => {
            for _ in 0..n {
                let u = if r.read(1)? == 0 {
                    0
                } else {
                    let len = r.read(6)? as u32 + 1;
                    r.read_wide(len)?
                };
                f(unzz(u));
            }
        }
        _ => return Err(ChunkError::Corrupt("unknown residual kind")),
    }
    Ok(())
}

/// Binary gcd: 64-bit division costs ~40 cycles, and a chunk would need one per sample.
pub(super) fn gcd(a: u64, mut b: u64) -> u64 {
    if a == 0 || b == 0 {
        return a | b;
    }
    let shift = (a | b).trailing_zeros();
    let mut a = a >> a.trailing_zeros();
    while b != 0 {
        b >>= b.trailing_zeros();
        if a > b {
            (a, b) = (b, a);
        }
        b -= a;
    }
    a << shift
}

/// Encodes an integer stream with the cheaper of order 1 and order 2 (see the format above).
pub(super) fn encode_ints(w: &mut BitWriter, xs: &[i64]) {
    let Some(&x0) = xs.first() else { return };
    w.write_var(zz(x0));
    if xs.len() == 1 {
        return;
    }
    let mut q: Vec<i64> = xs.windows(2).map(|p| p[1].wrapping_sub(p[0])).collect();
    let mut g = 0;
    for d in q.iter().map(|d| d.unsigned_abs()) {
        if d != g {
            g = gcd(g, d);
        }
        if g == 1 {
            break;
        }
    }
    let g = if g == 0 || g > i64::MAX as u64 { 1 } else { g };
    // g divides every delta exactly, so dividing is shifting out its twos and multiplying by the
    // inverse of its odd part mod 2^64 (Newton: each step doubles the correct low bits, 3 -> 96).
    let (shift, odd) = (g.trailing_zeros(), g >> g.trailing_zeros());
    let inv = (0..5).fold(odd, |x, _| x.wrapping_mul(2u64.wrapping_sub(odd.wrapping_mul(x)))) as i64;
    q.iter_mut().for_each(|d| *d = (*d >> shift).wrapping_mul(inv));
    let r2: Vec<i64> = q.windows(2).map(|p| p[1].wrapping_sub(p[0])).collect();
    let (h1, h2) = (histogram(&q), histogram(&r2));
    // Choosing the order by its varlen price agrees with the full search on nearly all data, and
    // the width search is the costliest part of sealing.
    let order2 = varlen_cost(&h2) + var_len(zz(q[0])) < varlen_cost(&h1);
    let (res, hist) = if order2 { (&r2, &h2) } else { (&q, &h1) };
    w.write_var(g);
    w.write(u64::from(order2), 1);
    if order2 {
        w.write_var(zz(q[0]));
    }
    write_resid(w, &plan_resid(hist, res.len()), res);
}

pub(super) fn decode_ints(r: &mut BitReader, n: usize, mut emit: impl FnMut(i64)) -> Result<(), ChunkError> {
    if n == 0 {
        return Ok(());
    }
    let mut x = unzz(r.read_var()?);
    emit(x);
    if n == 1 {
        return Ok(());
    }
    let g = match r.read_var()? {
        g @ 1..=0x7FFF_FFFF_FFFF_FFFF => g as i64,
        _ => return Err(ChunkError::Corrupt("common factor out of range")),
    };
    let order2 = r.read(1)? == 1;
    let (mut q, mut left) = (0i64, n - 1);
    if order2 {
        q = unzz(r.read_var()?);
        x = x.wrapping_add(q.wrapping_mul(g));
        emit(x);
        left -= 1;
    }
    read_resid(r, left, |e| {
        q = if order2 { q.wrapping_add(e) } else { e };
        x = x.wrapping_add(q.wrapping_mul(g));
        emit(x);
    })
}
