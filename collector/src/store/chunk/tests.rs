//! Codec tests: exact round trips, sizes on realistic container series, corrupt input.

use super::*;
use proptest::prelude::*;
use std::hint::black_box;
use std::time::Instant;

const STALE: u64 = 0x7ff0_0000_0000_0002; // Prometheus stale marker

fn bits_of(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}
fn decoded(bytes: &[u8]) -> (Vec<i64>, Vec<f64>) {
    let (mut t, mut v) = (vec![], vec![]);
    decode(bytes, &mut t, &mut v).expect("valid chunk");
    (t, v)
}
fn appender(ts: &[i64], vs: &[f64]) -> ChunkAppender {
    let mut a = ChunkAppender::new();
    ts.iter().zip(vs).for_each(|(&t, &v)| a.push(t, v));
    a
}
fn every_10s(n: usize) -> Vec<i64> {
    (0..n as i64).map(|i| 1_790_000_000_000 + 10_000 * i).collect()
}

/// Every way out (snapshot, seal, encode, decode_into, a resumed appender) gives back the input.
fn assert_exact(ts: &[i64], vs: &[f64]) {
    let a = appender(ts, vs);
    assert_eq!((a.len(), a.first_ts(), a.last_ts()), (ts.len(), ts.first().copied(), ts.last().copied()));
    let sealed = a.seal();
    assert_eq!(sealed, encode(ts, vs), "encode is push-all-then-seal");
    for bytes in [a.snapshot(), sealed] {
        let (t, v) = decoded(&bytes);
        assert_eq!(t, ts);
        assert_eq!(bits_of(&v), bits_of(vs));
    }
    let (mut t, mut v) = (vec![7], vec![7.0]);
    a.decode_into(&mut t, &mut v);
    assert_eq!((&t[1..], bits_of(&v[1..])), (ts, bits_of(vs)), "decode_into appends");
    let half = ts.len() / 2;
    let mut b = ChunkAppender::from_snapshot(&appender(&ts[..half], &vs[..half]).snapshot()).expect("snapshot");
    ts[half..].iter().zip(&vs[half..]).for_each(|(&t, &v)| b.push(t, v));
    assert_eq!(b.snapshot(), a.snapshot(), "resumed appender continues where it left off");
}

#[test]
fn constant_gauge_costs_almost_nothing() {
    let ts = every_10s(120);
    let bytes = encode(&ts, &[536_870_912.0; 120]);
    eprintln!("constant gauge: {} bytes for 120 samples", bytes.len());
    assert!(bytes.len() <= 24, "{} bytes", bytes.len());
    assert_exact(&ts, &[536_870_912.0; 120]);
}

#[test]
fn stale_marker_survives_round_trip() {
    let ts = every_10s(120);
    let mut vs: Vec<f64> = (0..120).map(|i| f64::from(i * 3)).collect();
    vs[40] = f64::from_bits(STALE);
    vs[119] = f64::from_bits(STALE);
    assert_exact(&ts, &vs);
    assert_eq!(decoded(&encode(&ts, &vs)).1[40].to_bits(), STALE);
}

#[test]
fn value_that_breaks_scaled_mode_is_still_exact() {
    let ts = every_10s(120);
    let mut vs: Vec<f64> = (0..120).map(|i| (4096 * (1000 + i * i)) as f64).collect();
    vs[60] = 0.25; // needs 2 decimals: the head re-encodes at a larger scale
    assert_exact(&ts, &vs);
    vs[90] = std::f64::consts::PI; // no decimal fits: the head falls back to XOR
    assert_exact(&ts, &vs);
    assert_eq!(appender(&ts, &vs).snapshot()[0], 0xCF);
}

#[test]
fn snapshot_then_continue_equals_one_appender() {
    let ts = every_10s(120);
    let vs: Vec<f64> = (0..120).map(|i| if i < 70 { f64::from(i) } else { f64::from(i) / 8.0 }).collect();
    let whole = appender(&ts, &vs);
    for cut in [0, 1, 2, 69, 70, 71, 119, 120] {
        let mut a = ChunkAppender::from_snapshot(&appender(&ts[..cut], &vs[..cut]).snapshot()).expect("snapshot");
        ts[cut..].iter().zip(&vs[cut..]).for_each(|(&t, &v)| a.push(t, v));
        assert_eq!(a.snapshot(), whole.snapshot(), "cut at {cut}");
    }
}

#[test]
fn special_floats_and_extreme_timestamps_round_trip() {
    let ts = [i64::MIN, i64::MIN + 1, -10_000, -1, 0, 1, 1 << 40, i64::MAX - 1, i64::MAX];
    let vs = [
        f64::NAN,
        -f64::NAN,
        f64::from_bits(0x7ff8_dead_beef_0001),
        -0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::from_bits(1),
        f64::MAX,
        f64::from_bits(STALE),
    ];
    assert_exact(&ts, &vs);
    assert_exact(&ts, &[-0.0; 9]);
    assert_exact(&ts[3..], &[0.1, 0.2, 0.3, 1e300, 1e-300, 0.0]);
}

#[test]
fn empty_chunk_round_trips() {
    assert_exact(&[], &[]);
    assert_eq!(ChunkAppender::new().first_ts(), None);
    assert_eq!(encode(&[], &[]), vec![0xC0, 0]);
}

#[test]
fn decimal_modes_divide_out_scale_and_common_factor() {
    let ts = every_10s(120);
    let mut n = 1_234_567_890_123i64;
    let cpu: Vec<f64> = (0..120)
        .map(|i| {
            n += 700_000_000 + (i * 7_919_731) % 50_000_000;
            n as f64 / 1e9
        })
        .collect();
    let ticks: Vec<f64> = (0..120).map(|i| f64::from(123_400 + i * i) / 100.0).collect();
    let pages: Vec<f64> = (0..120).map(|i| (4096 * (100_000 + (i * 37) % 91)) as f64).collect();
    for (vs, mode) in [(&cpu, 0xC9), (&ticks, 0xC2), (&pages, 0xC0)] {
        let bytes = encode(&ts, vs);
        assert_eq!(bytes[0], mode);
        assert_exact(&ts, vs);
    }
    assert!(encode(&ts, &pages).len() < 140, "steps cost ~7 bits each, not 12 more for the 4096");
}

#[test]
fn corrupt_input_gives_errors_and_leaves_vectors_alone() {
    let (mut t, mut v) = (vec![1], vec![1.0]);
    assert_eq!(decode(&[], &mut t, &mut v), Err(ChunkError::Truncated { at: 0 }));
    assert_eq!(decode(&[0x00, 0], &mut t, &mut v), Err(ChunkError::BadHeader(0)));
    assert_eq!(decode(&[0xCA, 0], &mut t, &mut v), Err(ChunkError::BadHeader(0xCA)));
    assert_eq!(decode(&[0xC0, 0xFF, 0xFF, 0x7F], &mut t, &mut v), Err(ChunkError::TooManySamples(2_097_151)));
    let mut good = encode(&every_10s(50), &[2.5; 50]);
    good.push(0);
    assert_eq!(decode(&good, &mut t, &mut v), Err(ChunkError::TrailingBytes(1)));
    assert!(matches!(decode(&good[..good.len() - 2], &mut t, &mut v), Err(ChunkError::Truncated { .. })));
    let backwards = encode(&[5, 3], &[1.0, 2.0]);
    assert_eq!(decode(&backwards, &mut t, &mut v), Err(ChunkError::NotIncreasing { index: 1 }));
    assert_eq!((t, v), (vec![1], vec![1.0]));
    assert!(ChunkAppender::from_snapshot(&[0xC3, 5, 1]).is_err());
}

fn timestamps(start: i64, gaps: &[u64]) -> Vec<i64> {
    let mut t = Some(start);
    let mut out = vec![];
    for &g in gaps {
        let Some(now) = t else { break };
        out.push(now);
        t = now.checked_add_unsigned(g);
    }
    out
}

fn gap() -> impl Strategy<Value = u64> {
    prop_oneof![4 => Just(10_000u64), 1 => 1u64..100_000, 1 => 1u64..=u64::MAX]
}

/// Realistic series: a counter, gauge or constant at some scale, sometimes with one odd value.
fn realistic() -> impl Strategy<Value = (Vec<i64>, Vec<f64>)> {
    let odd = prop_oneof![
        Just(STALE),
        Just(0x7ff8_0000_0000_0001u64),
        Just((-0.0f64).to_bits()),
        Just(f64::INFINITY.to_bits()),
        Just(0.1f64.to_bits()),
        Just(std::f64::consts::E.to_bits()),
        any::<u64>()
    ];
    (0..4u8, 0..10usize, prop::collection::vec((gap(), 0u64..1 << 24), 1..250), prop::option::of((any::<usize>(), odd)))
        .prop_map(|(kind, k, steps, odd)| {
            let mut n = 1i64 << 40;
            let ts = timestamps(1_790_000_000_000, &steps.iter().map(|s| s.0).collect::<Vec<_>>());
            let mut vs: Vec<f64> = steps[..ts.len()]
                .iter()
                .enumerate()
                .map(|(i, &(_, inc))| {
                    n += match kind {
                        0 => inc as i64,
                        1 => inc as i64 - (1 << 23),
                        2 => 0,
                        _ => (i as i64 % 3) * 4096,
                    };
                    if kind == 3 {
                        n as f64
                    } else {
                        n as f64 / POW10[k]
                    }
                })
                .collect();
            if let Some((at, bits)) = odd {
                let len = vs.len();
                vs[at % len] = f64::from_bits(bits);
            }
            (ts, vs)
        })
}

proptest! {
    #[test]
    fn arbitrary_bits_and_timestamps_round_trip(start in any::<i64>(), s in prop::collection::vec((gap(), any::<u64>()), 0..300)) {
        let ts = timestamps(start, &s.iter().map(|p| p.0).collect::<Vec<_>>());
        let vs: Vec<f64> = s[..ts.len()].iter().map(|p| f64::from_bits(p.1)).collect();
        assert_exact(&ts, &vs);
    }

    #[test]
    fn realistic_series_round_trip((ts, vs) in realistic()) {
        assert_exact(&ts, &vs);
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(head in prop_oneof![any::<u8>(), 0xC0u8..=0xCF], tail in prop::collection::vec(any::<u8>(), 0..300)) {
        let (mut t, mut v) = (vec![], vec![]);
        let bytes: Vec<u8> = std::iter::once(head).chain(tail).collect();
        if decode(&bytes, &mut t, &mut v).is_ok() {
            prop_assert_eq!(t.len(), v.len());
        } else {
            prop_assert!(t.is_empty() && v.is_empty());
        }
        let _ = ChunkAppender::from_snapshot(&bytes);
    }

    #[test]
    fn decode_never_panics_on_truncated_or_flipped_chunks((ts, vs) in realistic(), flip in any::<u8>()) {
        let a = appender(&ts, &vs);
        for bytes in [a.snapshot(), a.seal()] {
            for cut in 0..bytes.len() {
                let (mut t, mut v) = (vec![], vec![]);
                prop_assert!(decode(&bytes[..cut], &mut t, &mut v).is_err(), "prefix of {} bytes decoded", cut);
            }
            for i in 0..bytes.len() {
                let mut bad = bytes.clone();
                bad[i] ^= flip | 1;
                let (mut t, mut v) = (vec![], vec![]);
                let _ = decode(&bad, &mut t, &mut v);
            }
        }
    }
}

/// xorshift64: deterministic test data without the rand crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64) < p * (1u64 << 53) as f64
    }
}

/// How one container metric moves each 10 s: counters rise by 1..=max steps of `unit` with
/// probability p (and reset on rare restarts), walks wander by up to ±max, constants stay.
enum Shape {
    Counter { p: f64, max: u64, unit: u64, div: f64 },
    Walk { p: f64, max: u64, unit: u64, start: u64 },
    Const(f64),
}

fn container(rng: &mut Rng) -> Vec<(&'static str, Shape)> {
    use Shape::*;
    let load = 200_000_000 + rng.below(15_000_000_000); // CPU ns per 10 s: 2 % to 150 % of a core
    let ticks = load / 10_000_000; // USER_HZ = 100
    vec![
        ("cpu_usage_seconds", Counter { p: 1.0, max: load, unit: 1, div: 1e9 }),
        ("cpu_user_seconds", Counter { p: 1.0, max: ticks * 3 / 2, unit: 1, div: 100.0 }),
        ("cpu_system_seconds", Counter { p: 0.9, max: ticks / 2 + 1, unit: 1, div: 100.0 }),
        ("cpu_cfs_periods", Counter { p: 1.0, max: 1, unit: 100, div: 1.0 }),
        ("cpu_cfs_throttled_periods", Counter { p: 0.02, max: 10, unit: 1, div: 1.0 }),
        ("cpu_cfs_throttled_seconds", Counter { p: 0.02, max: 500_000_000, unit: 1, div: 1e9 }),
        ("memory_usage_bytes", Walk { p: 0.9, max: 300, unit: 4096, start: 60_000 }),
        ("memory_working_set_bytes", Walk { p: 0.9, max: 200, unit: 4096, start: 50_000 }),
        ("memory_rss", Walk { p: 0.5, max: 100, unit: 4096, start: 40_000 }),
        ("memory_cache", Walk { p: 0.1, max: 50, unit: 4096, start: 20_000 }),
        ("memory_mapped_file", Walk { p: 0.02, max: 10, unit: 4096, start: 2_000 }),
        ("spec_memory_limit_bytes", Const(536_870_912.0)),
        ("memory_swap", Const(0.0)),
        ("memory_failcnt", Const(0.0)),
        ("oom_events", Const(0.0)),
        ("processes", Walk { p: 0.05, max: 2, unit: 1, start: 20 }),
        ("spec_pids_limit", Const(4096.0)),
        ("network_receive_bytes", Counter { p: 0.95, max: 200_000, unit: 1, div: 1.0 }),
        ("network_transmit_bytes", Counter { p: 0.95, max: 100_000, unit: 1, div: 1.0 }),
        ("network_receive_packets", Counter { p: 0.95, max: 200, unit: 1, div: 1.0 }),
        ("network_transmit_packets", Counter { p: 0.95, max: 150, unit: 1, div: 1.0 }),
        ("network_receive_dropped", Counter { p: 0.001, max: 1, unit: 1, div: 1.0 }),
        ("fs_reads_bytes", Counter { p: 0.05, max: 64, unit: 4096, div: 1.0 }),
        ("fs_writes_bytes", Counter { p: 0.3, max: 256, unit: 4096, div: 1.0 }),
        ("fs_writes", Counter { p: 0.3, max: 20, unit: 1, div: 1.0 }),
    ]
}

/// (metric name, timestamps, values) chunks of 120 samples for `containers` containers.
fn realistic_mix(containers: usize, chunks: usize) -> Vec<(&'static str, Vec<i64>, Vec<f64>)> {
    let (mut rng, steps) = (Rng(0x9E37_79B9_7F4A_7C15), chunks * CHUNK_TARGET_SAMPLES);
    let mut out = vec![];
    for c in 0..containers {
        let mut t = 1_790_000_000_000 + 731 * c as i64;
        let ts: Vec<i64> = (0..steps)
            .map(|_| {
                t += 10_000 * if rng.chance(0.005) { 2 + rng.below(5) as i64 } else { 1 };
                t
            })
            .collect();
        for (name, shape) in container(&mut rng) {
            let mut n = match shape {
                Shape::Counter { max, .. } => rng.below(max * 5_000),
                Shape::Walk { start, .. } => start,
                _ => 0,
            };
            let vs: Vec<f64> = (0..steps)
                .map(|_| match shape {
                    Shape::Counter { p, max, unit, div } => {
                        if rng.chance(0.0005) {
                            n = 0
                        } else if rng.chance(p) {
                            n += 1 + rng.below(max)
                        }
                        (n * unit) as f64 / div
                    }
                    Shape::Walk { p, max, unit, .. } => {
                        if rng.chance(p) {
                            n = (n + rng.below(2 * max + 1)).saturating_sub(max)
                        }
                        (n * unit) as f64
                    }
                    Shape::Const(v) => v,
                })
                .collect();
            for (t, v) in ts.chunks(CHUNK_TARGET_SAMPLES).zip(vs.chunks(CHUNK_TARGET_SAMPLES)) {
                out.push((name, t.to_vec(), v.to_vec()));
            }
        }
    }
    out
}

/// Size of the same samples in a Prometheus XOR (Gorilla) chunk.
fn gorilla_bytes(ts: &[i64], vs: &[f64]) -> usize {
    let varint = |u: u64| (bits(u).max(1) as usize).div_ceil(7) * 8;
    let fits = |d: i64, n: u32| -(1i64 << (n - 1)) < d && d <= 1 << (n - 1);
    let mut b = if ts.is_empty() { 0 } else { varint(zz(ts[0])) };
    if ts.len() > 1 {
        b += varint((ts[1] - ts[0]) as u64);
    }
    for w in ts.windows(3) {
        let dod = (w[2] - w[1]) - (w[1] - w[0]);
        b += match dod {
            0 => 1,
            d if fits(d, 14) => 16,
            d if fits(d, 17) => 20,
            d if fits(d, 20) => 24,
            _ => 68,
        };
    }
    let mut xor = BitCount(0);
    xor_all(vs, &mut xor);
    2 + (b + xor.0).div_ceil(8)
}

#[test]
fn realistic_container_mix_fits_budget() {
    let mix = realistic_mix(20, 4);
    let (mut ours, mut gorilla, mut samples, mut head) = (0, 0, 0, 0);
    let mut per_metric: Vec<(&str, usize, usize, usize)> = vec![];
    for (name, ts, vs) in &mix {
        let bytes = encode(ts, vs);
        let (t, v) = decoded(&bytes);
        assert_eq!((&t, bits_of(&v)), (ts, bits_of(vs)));
        let (o, g) = (bytes.len(), gorilla_bytes(ts, vs));
        head += appender(ts, vs).snapshot().len();
        (ours, gorilla, samples) = (ours + o, gorilla + g, samples + ts.len());
        match per_metric.iter_mut().find(|m| m.0 == *name) {
            Some(m) => (m.1, m.2, m.3) = (m.1 + o, m.2 + g, m.3 + ts.len()),
            None => per_metric.push((name, o, g, ts.len())),
        }
    }
    for (name, o, g, n) in &per_metric {
        eprintln!(
            "  {name:<28} ours {:>6.3}  gorilla {:>6.3} bytes/sample",
            *o as f64 / *n as f64,
            *g as f64 / *n as f64
        );
    }
    let (o, g, h) = (ours as f64 / samples as f64, gorilla as f64 / samples as f64, head as f64 / samples as f64);
    eprintln!(
        "realistic mix, {samples} samples in {} chunks: ours {o:.3} bytes/sample, plain Gorilla {g:.3}, open head {h:.3}",
        mix.len()
    );
    assert!(o <= 1.5, "{o} bytes/sample");
    assert!(o < g);
}

#[test]
fn codec_speed_on_realistic_mix() {
    let mix = realistic_mix(20, 4);
    let samples: usize = mix.iter().map(|c| c.1.len()).sum();
    let rate = |f: &mut dyn FnMut()| {
        let (start, mut reps) = (Instant::now(), 0);
        while reps < 3 || start.elapsed().as_secs_f64() < 0.5 {
            f();
            reps += 1;
        }
        (samples * reps) as f64 / start.elapsed().as_secs_f64() / 1e6
    };
    let enc = rate(&mut || mix.iter().for_each(|(_, t, v)| drop(black_box(encode(t, v)))));
    let push = rate(&mut || mix.iter().for_each(|(_, t, v)| drop(black_box(appender(t, v)))));
    let sealed: Vec<Vec<u8>> = mix.iter().map(|(_, t, v)| encode(t, v)).collect();
    let (mut t, mut v) = (Vec::with_capacity(200), Vec::with_capacity(200));
    let dec = rate(&mut || {
        sealed.iter().for_each(|b| {
            t.clear();
            v.clear();
            black_box(decode(b, &mut t, &mut v)).ok();
        })
    });
    eprintln!("realistic mix: encode {enc:.1} M samples/s, push (head) {push:.1} M/s, decode {dec:.1} M samples/s");
}
