//! node_exporter's `timex` collector: the kernel clock's discipline state (offset, frequency
//! adjustment, error bounds, PPS counters) as `adjtimex(2)` reads it, with node_exporter's units;
//! and the local time zone (`localtime_r(3)`) for the `time` collector.
//!
//! One of the two places in lookout with `unsafe` (the other is the agent's `mallopt` at start):
//! neither rustix nor std binds `adjtimex` or `localtime_r`, and both only read. Everything else
//! here is safe arithmetic on what they fill in.
#![allow(unsafe_code)]

use crate::model::Sample;

/// `adjtimex`'s return value when the clock is not synchronized.
const TIME_ERROR: i32 = 5;
/// `status` bit: offsets and jitter are in nanoseconds rather than microseconds.
const STA_NANO: i32 = 0x2000;
/// Frequencies are in parts per million with a 16-bit fraction (adjtimex(2), NOTES).
const PPM16: f64 = 1_000_000.0 * 65_536.0;

/// The fields node_exporter reports, as adjtimex fills them in.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timex {
    pub state: i32,
    pub status: i32,
    pub offset: i64,
    pub freq: i64,
    pub maxerror: i64,
    pub esterror: i64,
    pub constant: i64,
    pub tick: i64,
    pub ppsfreq: i64,
    pub jitter: i64,
    pub shift: i32,
    pub stabil: i64,
    pub jitcnt: i64,
    pub calcnt: i64,
    pub errcnt: i64,
    pub stbcnt: i64,
    pub tai: i32,
}

/// Reads the kernel's clock state; `None` if the call fails (a seccomp filter may refuse it).
// The casts widen C's `long`, which is 32 bits on 32-bit targets.
#[allow(clippy::unnecessary_cast)]
pub fn read() -> Option<Timex> {
    // SAFETY: `timex` is a plain C struct for which all-zero bytes are a valid value; `modes = 0`
    // asks adjtimex only to fill it in (it changes nothing), and the pointer is to our own local,
    // valid and exclusively borrowed for the call's duration.
    let (state, t) = unsafe {
        let mut t: libc::timex = std::mem::zeroed();
        t.modes = 0;
        (libc::adjtimex(&mut t), t)
    };
    (state >= 0).then_some(Timex {
        state,
        status: t.status,
        offset: t.offset as i64,
        freq: t.freq as i64,
        maxerror: t.maxerror as i64,
        esterror: t.esterror as i64,
        constant: t.constant as i64,
        tick: t.tick as i64,
        ppsfreq: t.ppsfreq as i64,
        jitter: t.jitter as i64,
        shift: t.shift,
        stabil: t.stabil as i64,
        jitcnt: t.jitcnt as i64,
        calcnt: t.calcnt as i64,
        errcnt: t.errcnt as i64,
        stbcnt: t.stbcnt as i64,
        tai: t.tai,
    })
}

/// The local time zone's abbreviation and offset east of UTC in seconds at `unix_s`, as the C
/// library resolves it (`TZ`, else `/etc/localtime`); `None` if it cannot.
pub fn zone(unix_s: i64) -> Option<(String, i64)> {
    let t: libc::time_t = unix_s;
    // SAFETY: `tm` is a plain C struct for which all-zero bytes are valid; `localtime_r` is the
    // reentrant form, writing only into our local. `tm_zone` then points at a NUL-terminated string
    // in the C library's static zone table (never freed), read at once and copied.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() || tm.tm_zone.is_null() {
            return None;
        }
        let name = std::ffi::CStr::from_ptr(tm.tm_zone).to_string_lossy().into_owned();
        Some((name, tm.tm_gmtoff))
    }
}

/// node_exporter's 17 families from one reading.
pub fn samples(t: &Timex, out: &mut Vec<Sample>) {
    let per_s = if t.status & STA_NANO != 0 { 1e9 } else { 1e6 };
    let f = |v: i64| v as f64;
    for (name, v) in [
        ("node_timex_sync_status", if t.state == TIME_ERROR { 0.0 } else { 1.0 }),
        ("node_timex_offset_seconds", f(t.offset) / per_s),
        ("node_timex_frequency_adjustment_ratio", 1.0 + f(t.freq) / PPM16),
        ("node_timex_maxerror_seconds", f(t.maxerror) / 1e6),
        ("node_timex_estimated_error_seconds", f(t.esterror) / 1e6),
        ("node_timex_status", f64::from(t.status)),
        ("node_timex_loop_time_constant", f(t.constant)),
        ("node_timex_tick_seconds", f(t.tick) / 1e6),
        ("node_timex_pps_frequency_hertz", f(t.ppsfreq) / PPM16),
        ("node_timex_pps_jitter_seconds", f(t.jitter) / per_s),
        ("node_timex_pps_shift_seconds", f64::from(t.shift)),
        ("node_timex_pps_stability_hertz", f(t.stabil) / PPM16),
        ("node_timex_pps_jitter_total", f(t.jitcnt)),
        ("node_timex_pps_calibration_total", f(t.calcnt)),
        ("node_timex_pps_error_total", f(t.errcnt)),
        ("node_timex_pps_stability_exceeded_total", f(t.stbcnt)),
        ("node_timex_tai_offset_seconds", f64::from(t.tai)),
    ] {
        out.push(Sample::new(name, v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_follow_node_exporter() {
        // A clock in microsecond mode, 2 ms off, 1 ppm fast, tick 10000 us, unsynchronized.
        let t = Timex {
            state: TIME_ERROR,
            status: 0x40,
            offset: 2000,
            freq: 65_536,
            tick: 10_000,
            esterror: 16,
            ..Default::default()
        };
        let mut out = Vec::new();
        samples(&t, &mut out);
        let v = |n: &str| out.iter().find(|s| s.name == n).unwrap().value;
        assert_eq!(out.len(), 17);
        assert_eq!(v("node_timex_sync_status"), 0.0);
        assert_eq!(v("node_timex_offset_seconds"), 0.002);
        assert_eq!(v("node_timex_frequency_adjustment_ratio"), 1.000001);
        assert_eq!(v("node_timex_tick_seconds"), 0.01);
        assert_eq!(v("node_timex_estimated_error_seconds"), 0.000016);
        // In nanosecond mode the offset is read in nanoseconds.
        let nano = Timex { status: STA_NANO, offset: 2_000_000, state: 0, ..Default::default() };
        out.clear();
        samples(&nano, &mut out);
        assert_eq!(out.iter().find(|s| s.name == "node_timex_offset_seconds").unwrap().value, 0.002);
        assert_eq!(out[0].value, 1.0);
    }

    #[test]
    fn the_local_zone_reads() {
        let (name, offset) = zone(1_700_000_000).expect("a zone, UTC at least");
        assert!(!name.is_empty());
        assert!(offset.abs() <= 14 * 3600, "{name} {offset}");
    }

    #[test]
    fn the_real_clock_reads() {
        let t = read().expect("adjtimex with modes = 0 needs no privilege");
        // Linux's tick is 1/USER_HZ s = 10000 us on every architecture the agent targets.
        assert_eq!(t.tick, 10_000);
    }
}
