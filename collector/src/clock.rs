//! The collector's one reading of the wall clock, and how far behind it decisions look. Everything
//! else takes `now` as a value, so that it can be tested and replayed at any time.

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Nanoseconds since the Unix epoch (log line times).
pub fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// Decisions look at the store as of this long ago: samples stamped later may still be on their way
/// (an agent seals a batch every second), and a decision must rest on data that a replay finds.
pub const SETTLE_MS: i64 = 3_000;
