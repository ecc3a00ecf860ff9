//! The statistics behind gate checks: counts against a limit (error lines, failed probes), canary
//! against baseline values (Mann-Whitney / Hodges-Lehmann, as Kayenta), and growth (a pooled slope).
//! Pure functions over numbers: no store, no clock.

/// Where a quantity stands against its limit: clearly above, clearly below, or not yet known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Above,
    Below,
    Unsure,
}

/// A one-sided normal quantile for the confidence bounds gates use.
pub struct Confidence {
    /// How sure a failure must be (z): gates are re-evaluated every interval, so each look is strict.
    pub fail_z: f64,
    /// How sure a pass must be: a regression that passes is worse than a clean release that waits.
    pub pass_z: f64,
}

pub const CONFIDENCE: Confidence = Confidence { fail_z: 3.0, pass_z: 2.5 };

/// Is the canary's rate of `hits` in `n` above `ratio` times the baseline's (`base_hits` in
/// `base_n`), or above `limit` without a baseline? The limit is never below `floor`: a rate that
/// small is not worth failing a release for. Rates are smoothed by half an event (Jeffreys) so
/// that zero counts still have a spread.
pub fn rate_against(
    hits: u64,
    n: u64,
    baseline: Option<(u64, u64)>,
    ratio: f64,
    limit: f64,
    floor: f64,
    c: &Confidence,
) -> RateVerdict {
    let smooth = |k: u64, n: u64| (k as f64 + 0.5) / (n as f64 + 1.0);
    let var = |k: u64, n: u64| {
        let p = smooth(k, n);
        p * (1.0 - p) / (n as f64 + 1.0)
    };
    let p = hits as f64 / n.max(1) as f64;
    let (allowed, allowed_var) = match baseline {
        Some((bk, bn)) => {
            let raw = ratio * smooth(bk, bn);
            if raw >= floor {
                (raw, ratio * ratio * var(bk, bn))
            } else {
                (floor, 0.0)
            }
        }
        None => (limit.max(floor), 0.0),
    };
    let se = (var(hits, n) + allowed_var).sqrt();
    let z = (smooth(hits, n) - allowed) / se;
    let side = if z > c.fail_z {
        Side::Above
    } else if z < -c.pass_z {
        Side::Below
    } else {
        Side::Unsure
    };
    RateVerdict { rate: p, allowed, z, side }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateVerdict {
    pub rate: f64,
    /// The rate above which the canary fails: `ratio` × baseline, or the limit.
    pub allowed: f64,
    pub z: f64,
    pub side: Side,
}

/// The canary's values against the baseline's: the Hodges-Lehmann estimate of the shift of
/// `ln(canary) - ln(baseline)` (a ratio of typical values) with its distribution-free confidence
/// bounds from the Mann-Whitney U distribution, compared with `ln(1 + tolerance)`. Values that are
/// not positive are shifted by a small epsilon so that idle (zero) CPU still compares.
pub fn shift_against(canary: &[f64], baseline: &[f64], tolerance: f64, c: &Confidence) -> ShiftVerdict {
    const EPS: f64 = 1e-9;
    let logs = |v: &[f64]| thin(v, 400).into_iter().map(|x| (x.max(0.0) + EPS).ln()).collect::<Vec<_>>();
    let (a, b) = (logs(canary), logs(baseline));
    let (n, m) = (a.len(), b.len());
    let mut diffs = Vec::with_capacity(n * m);
    for x in &a {
        for y in &b {
            diffs.push(x - y);
        }
    }
    diffs.sort_by(f64::total_cmp);
    let mid = median_sorted(&diffs);
    // The k-th smallest and largest pairwise difference bound the shift (normal approximation of
    // U's distribution; exact enough from about 8 values a side, which checks require anyway).
    let sd = ((n * m) as f64 * (n + m + 1) as f64 / 12.0).sqrt();
    let bound = |z: f64, upper: bool| -> f64 {
        let k = ((n * m) as f64 / 2.0 - z * sd).floor().max(0.0) as usize;
        let k = k.min(diffs.len().saturating_sub(1));
        if upper {
            diffs[diffs.len() - 1 - k]
        } else {
            diffs[k]
        }
    };
    let (lower, upper) = (bound(c.fail_z, false), bound(c.pass_z, true));
    let limit = (1.0 + tolerance).ln();
    let side = if lower > limit {
        Side::Above
    } else if upper < limit {
        Side::Below
    } else {
        Side::Unsure
    };
    ShiftVerdict { ratio: mid.exp(), lower: lower.exp(), upper: upper.exp(), side }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ShiftVerdict {
    /// Typical canary value over typical baseline value.
    pub ratio: f64,
    pub lower: f64,
    pub upper: f64,
    pub side: Side,
}

/// The common slope of several series (per second), each with its own level: least squares on
/// values centred per series, with its standard error. `series` are (t_seconds, value) points.
pub fn pooled_slope(series: &[Vec<(f64, f64)>]) -> Option<Slope> {
    let (mut sxy, mut sxx, mut points, mut groups) = (0.0, 0.0, 0usize, 0usize);
    // Each series with its mean time and mean value: (mean t, mean value, points).
    type Centred<'a> = (f64, f64, &'a [(f64, f64)]);
    let centred: Vec<Centred<'_>> = series
        .iter()
        .filter(|s| s.len() >= 2)
        .map(|s| {
            let n = s.len() as f64;
            let (mt, mv) = s.iter().fold((0.0, 0.0), |(a, b), (t, v)| (a + t / n, b + v / n));
            (mt, mv, s.as_slice())
        })
        .collect();
    for (mt, mv, s) in &centred {
        for (t, v) in s.iter() {
            sxy += (t - mt) * (v - mv);
            sxx += (t - mt) * (t - mt);
        }
        points += s.len();
        groups += 1;
    }
    if sxx <= 0.0 || points < groups + 3 {
        return None;
    }
    let slope = sxy / sxx;
    let mut rss = 0.0;
    for (mt, mv, s) in &centred {
        for (t, v) in s.iter() {
            let r = (v - mv) - slope * (t - mt);
            rss += r * r;
        }
    }
    let dof = (points - groups - 1) as f64;
    Some(Slope { per_s: slope, se: (rss / dof / sxx).sqrt(), points })
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Slope {
    pub per_s: f64,
    pub se: f64,
    pub points: usize,
}

pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    median_sorted(&v)
}

fn median_sorted(v: &[f64]) -> f64 {
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// At most `max` values, evenly spaced through `v`, so that pairwise work stays bounded.
fn thin(v: &[f64], max: usize) -> Vec<f64> {
    if v.len() <= max {
        return v.to_vec();
    }
    (0..max).map(|i| v[i * v.len() / max]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A deterministic spread of values around `centre` with relative noise `cv`.
    fn noisy(centre: f64, cv: f64, n: usize, seed: u64) -> Vec<f64> {
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                // Sum of 4 uniforms: close enough to normal for a test of the bounds.
                let mut s = 0.0;
                for _ in 0..4 {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    s += (x >> 11) as f64 / (1u64 << 53) as f64;
                }
                centre * (1.0 + cv * (s - 2.0) * 1.732)
            })
            .collect()
    }

    #[test]
    fn an_error_rate_twice_the_baseline_fails_and_the_same_rate_passes_given_enough_lines() {
        let c = CONFIDENCE;
        // 2% in both, 10,000 lines each: clearly below 1.5 × the baseline.
        let same = rate_against(200, 10_000, Some((200, 10_000)), 1.5, 0.05, 0.001, &c);
        assert_eq!(same.side, Side::Below, "{same:?}");
        // 4% against 2%: clearly above.
        let twice = rate_against(400, 10_000, Some((200, 10_000)), 1.5, 0.05, 0.001, &c);
        assert_eq!(twice.side, Side::Above, "{twice:?}");
        // 200 lines cannot tell either way.
        let few = rate_against(8, 200, Some((4, 200)), 1.5, 0.05, 0.001, &c);
        assert_eq!(few.side, Side::Unsure, "{few:?}");
    }

    #[test]
    fn without_a_baseline_the_rate_is_held_to_the_limit_and_a_tiny_rate_is_never_a_failure() {
        let c = CONFIDENCE;
        assert_eq!(rate_against(900, 10_000, None, 1.5, 0.05, 0.001, &c).side, Side::Above);
        assert_eq!(rate_against(100, 10_000, None, 1.5, 0.05, 0.001, &c).side, Side::Below);
        // Baseline without a single error, canary with one in 20,000: under the floor.
        assert_eq!(rate_against(1, 20_000, Some((0, 20_000)), 1.5, 0.05, 0.001, &c).side, Side::Below);
    }

    #[test]
    fn a_thirty_percent_shift_fails_and_noise_alone_passes() {
        let c = CONFIDENCE;
        let base = noisy(100.0, 0.1, 36, 1);
        let same = shift_against(&noisy(100.0, 0.1, 36, 2), &base, 0.2, &c);
        assert_eq!(same.side, Side::Below, "{same:?}");
        let slower = shift_against(&noisy(130.0, 0.1, 36, 3), &base, 0.1, &c);
        assert_eq!(slower.side, Side::Above, "{slower:?}");
        assert!((slower.ratio - 1.3).abs() < 0.08, "{slower:?}");
        let few = shift_against(&noisy(100.0, 0.3, 4, 4), &noisy(100.0, 0.3, 4, 5), 0.2, &c);
        assert_eq!(few.side, Side::Unsure, "{few:?}");
    }

    #[test]
    fn a_pooled_slope_finds_growth_under_each_series_own_level() {
        let grow = |level: f64, seed: u64| -> Vec<(f64, f64)> {
            noisy(1.0, 0.02, 30, seed)
                .into_iter()
                .enumerate()
                .map(|(i, e)| (i as f64 * 10.0, level * e + 2.0 * i as f64 * 10.0))
                .collect()
        };
        let s = pooled_slope(&[grow(1000.0, 1), grow(5000.0, 2), grow(3000.0, 3)]).unwrap();
        assert!((s.per_s - 2.0).abs() < 3.0 * s.se, "{s:?}");
        assert!(s.per_s / s.se > 5.0, "{s:?}");
        assert!(pooled_slope(&[vec![(0.0, 1.0)]]).is_none());
    }

    proptest! {
        #[test]
        fn bounds_hold_the_estimate_and_never_panic(
            a in proptest::collection::vec(0.0f64..1e6, 1..60),
            b in proptest::collection::vec(0.0f64..1e6, 1..60),
            tol in 0.0f64..2.0,
        ) {
            let v = shift_against(&a, &b, tol, &CONFIDENCE);
            prop_assert!(v.lower <= v.ratio * (1.0 + 1e-9) && v.ratio <= v.upper * (1.0 + 1e-9), "{v:?}");
        }

        #[test]
        fn rates_never_panic_and_more_hits_never_look_better(
            hits in 0u64..10_000, extra in 0u64..1000, n in 1u64..20_000, bk in 0u64..1000, bn in 1u64..20_000,
        ) {
            // Error rates up to a half, the range where a release is judged at all.
            let hits = hits.min(n / 2);
            let more = (hits + extra).min(n / 2);
            let base = Some((bk.min(bn / 3), bn));
            let a = rate_against(hits, n, base, 1.5, 0.05, 0.001, &CONFIDENCE);
            let b = rate_against(more, n, base, 1.5, 0.05, 0.001, &CONFIDENCE);
            prop_assert!(b.z >= a.z - 1e-9, "{a:?} {b:?}");
        }
    }
}
