//! The wall clock, read the one way the hot path can afford.

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    // SystemTime, not chrono: this runs once per prediction
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
