//! Log error rates for `log_error_rate` probes: the log reader counts each watched container's
//! lines and the lines matching its pattern in one-second buckets; a probe reads a sliding window.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use regex::Regex;

struct Window {
    pattern: Regex,
    /// Buckets kept this long (seconds): the probe's window.
    keep_s: i64,
    /// (second, lines, matching lines), oldest first.
    buckets: VecDeque<(i64, u64, u64)>,
}

/// Container id → its counting window. Only registered containers pay for the pattern match.
#[derive(Default)]
pub struct ErrorRates {
    windows: Mutex<HashMap<String, Window>>,
}

impl std::fmt::Debug for ErrorRates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.windows.lock().map_or(0, |w| w.len());
        write!(f, "ErrorRates({n} containers)")
    }
}

impl ErrorRates {
    pub fn watch(&self, container_id: &str, pattern: Regex, window: std::time::Duration) {
        let keep_s = window.as_secs().max(1) as i64;
        let w = Window { pattern, keep_s, buckets: VecDeque::new() };
        self.windows.lock().expect("error rates poisoned").insert(container_id.to_string(), w);
    }

    pub fn forget(&self, container_id: &str) {
        self.windows.lock().expect("error rates poisoned").remove(container_id);
    }

    /// Counts lines (Docker time in ns, text) of a container, if it is watched.
    pub fn count<'a>(&self, container_id: &str, lines: impl Iterator<Item = (i64, &'a str)>) {
        let mut all = self.windows.lock().expect("error rates poisoned");
        let Some(w) = all.get_mut(container_id) else { return };
        for (time_ns, text) in lines {
            let sec = time_ns.div_euclid(1_000_000_000);
            let hit = u64::from(w.pattern.is_match(text));
            match w.buckets.iter_mut().rev().find(|b| b.0 == sec) {
                Some(b) => {
                    b.1 += 1;
                    b.2 += hit;
                }
                None => {
                    let at = w.buckets.iter().rposition(|b| b.0 < sec).map_or(0, |i| i + 1);
                    w.buckets.insert(at, (sec, 1, hit));
                }
            }
        }
        let newest = w.buckets.back().map_or(0, |b| b.0);
        while w.buckets.front().is_some_and(|b| b.0 < newest - w.keep_s) {
            w.buckets.pop_front();
        }
    }

    /// (lines, matching lines) written in the `window` seconds up to `now_ns`.
    pub fn rate(&self, container_id: &str, now_ns: i64, window: std::time::Duration) -> (u64, u64) {
        let all = self.windows.lock().expect("error rates poisoned");
        let Some(w) = all.get(container_id) else { return (0, 0) };
        let from = (now_ns - window.as_nanos() as i64).div_euclid(1_000_000_000);
        w.buckets.iter().filter(|b| b.0 >= from).fold((0, 0), |(t, m), b| (t + b.1, m + b.2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const S: i64 = 1_000_000_000;

    #[test]
    fn counts_matching_lines_over_a_sliding_window() {
        let r = ErrorRates::default();
        r.watch("c", Regex::new(r"(?i)\berror\b").unwrap(), Duration::from_secs(10));
        let lines: Vec<(i64, String)> = (0..100)
            .map(|i| (i64::from(i) * S / 5, if i % 5 == 0 { "ERROR x".into() } else { "ok".to_string() }))
            .collect();
        r.count("c", lines.iter().map(|(t, s)| (*t, s.as_str())));
        r.count("other", lines.iter().map(|(t, s)| (*t, s.as_str())));
        assert_eq!(r.rate("c", 20 * S, Duration::from_secs(10)), (50, 10), "the last 10 s of 20");
        assert_eq!(r.rate("c", 40 * S, Duration::from_secs(10)), (0, 0), "nothing written lately");
        assert_eq!(r.rate("other", 20 * S, Duration::from_secs(10)), (0, 0), "not watched, not counted");
        r.forget("c");
        r.count("c", lines.iter().map(|(t, s)| (*t, s.as_str())));
        assert_eq!(r.rate("c", 20 * S, Duration::from_secs(10)), (0, 0), "forgotten, not counted");
    }
}
