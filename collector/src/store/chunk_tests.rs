//! Codec tests: exact round trips for every f64, sizes on realistic container series, corrupt input.

use super::*;
use proptest::prelude::*;

fn round_trip(ts: &[i64], vs: &[f64]) -> Vec<u8> {
    let bytes = encode(ts, vs);
    let (mut t2, mut v2) = (Vec::new(), Vec::new());
    decode(&bytes, &mut t2, &mut v2).expect("own output decodes");
    assert_eq!(t2, ts);
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&v2), bits(vs));
    bytes
}

fn grid(n: usize) -> Vec<i64> {
    (0..n as i64).map(|i| 1_700_000_000_000 + i * 10_000).collect()
}

#[test]
fn constant_gauge_costs_almost_nothing() {
    let bytes = round_trip(&grid(120), &[536_870_912.0; 120]);
    assert!(bytes.len() <= 40, "{} bytes for a constant", bytes.len());
}

#[test]
fn a_long_constant_chunk_decodes() {
    round_trip(&grid(5000), &vec![7.0; 5000]);
}

#[test]
fn stale_marker_and_odd_floats_survive_round_trip() {
    let vals = [
        1.0,
        f64::from_bits(0x7ff0_0000_0000_0002),
        -0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        f64::MIN_POSITIVE,
        3.5,
    ];
    round_trip(&grid(vals.len()), &vals);
}

#[test]
fn value_that_breaks_scaled_mode_is_still_exact() {
    let mut vals: Vec<f64> = (0..100).map(|i| i as f64 * 0.25).collect();
    vals.push(std::f64::consts::PI);
    vals.push(-0.0);
    round_trip(&grid(vals.len()), &vals);
}

#[test]
fn cpu_seconds_with_nanosecond_precision_use_scaled_integers() {
    let mut ns = 123_456_789_012u64;
    let vals: Vec<f64> = (0..120)
        .map(|i| {
            ns += 50_000_000 + (i * 7919 % 1000) as u64 * 1000;
            ns as f64 / 1e9
        })
        .collect();
    let bytes = round_trip(&grid(120), &vals);
    assert!(matches!(bytes[0], MODE_INT_DELTA | MODE_INT_DOD), "mode {}", bytes[0]);
}

#[test]
fn snapshot_then_continue_equals_one_appender() {
    let (ts, vs): (Vec<i64>, Vec<f64>) = (0..50).map(|i| (i * 1000 + (i % 3), (i as f64).sqrt())).unzip();
    let mut one = ChunkAppender::new();
    for (t, v) in ts.iter().zip(&vs) {
        one.push(*t, *v);
    }
    let mut first = ChunkAppender::new();
    for (t, v) in ts[..20].iter().zip(&vs[..20]) {
        first.push(*t, *v);
    }
    let mut resumed = ChunkAppender::from_snapshot(&first.snapshot()).unwrap();
    for (t, v) in ts[20..].iter().zip(&vs[20..]) {
        resumed.push(*t, *v);
    }
    assert_eq!(resumed.snapshot(), one.snapshot());
    assert_eq!((resumed.first_ts(), resumed.last_ts(), resumed.len()), (Some(0), Some(49_001), 50));
}

#[test]
fn corrupt_bytes_are_errors() {
    let (mut t, mut v) = (Vec::new(), Vec::new());
    assert!(decode(&[], &mut t, &mut v).is_err());
    assert!(decode(&[9, 1], &mut t, &mut v).is_err());
    assert!(decode(&[MODE_XOR, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2], &mut t, &mut v).is_err());
    let good = encode(&grid(10), &[1.5; 10]);
    for cut in 0..good.len() {
        let (mut t, mut v) = (Vec::new(), Vec::new());
        assert!(decode(&good[..cut], &mut t, &mut v).is_err(), "truncation at {cut} accepted");
    }
}

/// Realistic container series: what the agent sends for an ordinary container every 10 s.
#[test]
fn realistic_container_series_take_under_one_and_a_half_bytes_per_sample() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let (mut bytes, mut samples, mut xor_bytes) = (0usize, 0usize, 0usize);
    for _container in 0..20 {
        let rate = 0.002 + rnd() * rnd() * 0.5;
        let mut series: Vec<Vec<f64>> = vec![Vec::new(); 16];
        let (mut cpu_ns, mut user, mut sys, mut mem, mut rx, mut tx, mut wr) =
            (rnd() * 1e12, 1e4, 1e3, 20_000i64, 1e8, 1e8, 1e7);
        for i in 0..720 {
            let busy = rate * (0.7 + 0.6 * rnd());
            cpu_ns = (cpu_ns + busy * 1e10).round();
            user += (busy * 900.0).floor();
            sys += (busy * 100.0).floor();
            if rnd() < 0.3 {
                mem += (rnd() * 200.0) as i64 - 100;
            }
            rx += (rnd() * rate * 1e6).floor();
            tx += (rnd() * rate * 5e5).floor();
            if rnd() < 0.2 {
                wr += 4096.0 * (rnd() * 16.0).floor();
            }
            let vals = [
                cpu_ns / 1e9,
                user / 100.0,
                sys / 100.0,
                (mem * 4096) as f64,
                (mem * 4096 * 4 / 5) as f64,
                (mem * 4096 * 7 / 10) as f64,
                268_435_456.0,
                0.0,
                0.0,
                0.0,
                wr,
                rx,
                tx,
                3.0,
                1_700_000_000.0 + i as f64 * 10.0,
                1_699_999_000.0,
            ];
            for (s, v) in series.iter_mut().zip(vals) {
                s.push(v);
            }
        }
        let ts = grid(720);
        for s in &series {
            for (t, v) in ts.chunks(CHUNK_TARGET_SAMPLES).zip(s.chunks(CHUNK_TARGET_SAMPLES)) {
                bytes += round_trip(t, v).len();
                let mut a = ChunkAppender::new();
                t.iter().zip(v).for_each(|(t, v)| a.push(*t, *v));
                xor_bytes += a.snapshot().len();
                samples += t.len();
            }
        }
    }
    let per = bytes as f64 / samples as f64;
    eprintln!(
        "realistic mix: {per:.3} bytes/sample (plain Gorilla XOR on the same data: {:.3})",
        xor_bytes as f64 / samples as f64
    );
    assert!(per <= 1.5, "{per} bytes/sample");
}

proptest! {
    #[test]
    fn any_floats_and_increasing_times_round_trip(start in any::<i64>(), steps in proptest::collection::vec((1i64..1_000_000_000, any::<u64>()), 0..200)) {
        let mut t = start / 2;
        let (mut ts, mut vs) = (Vec::new(), Vec::new());
        for (d, bits) in steps {
            t = t.saturating_add(d);
            if ts.last() == Some(&t) { break; }
            ts.push(t);
            vs.push(f64::from_bits(bits));
        }
        round_trip(&ts, &vs);
    }

    #[test]
    fn integer_like_series_round_trip(start in -1_000_000i64..1_000_000, deltas in proptest::collection::vec(-5000i64..5000, 0..200), k in 0u8..4) {
        let mut x = start;
        let vs: Vec<f64> = deltas.iter().map(|d| { x += d * 4096; x as f64 / 10f64.powi(i32::from(k)) }).collect();
        round_trip(&grid(vs.len()), &vs);
    }

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let (mut t, mut v) = (Vec::new(), Vec::new());
        let _ = decode(&bytes, &mut t, &mut v);
    }
}
