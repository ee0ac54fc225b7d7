//! Milliseconds on tokio's clock since the first call, for state kept in
//! atomics (ejections, the retry budget). tokio's clock, not the system's,
//! so tests can pause and advance time and ejections never jump with NTP.

use std::sync::OnceLock;

use tokio::time::Instant;

static BASE: OnceLock<Instant> = OnceLock::new();

pub fn now_ms() -> u64 {
    to_ms(Instant::now())
}

/// Nanoseconds on the same clock, for rates finer than a millisecond (the
/// rate limiter's buckets).
pub fn now_ns() -> u64 {
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(Instant::now().saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX)
}

pub fn to_ms(t: Instant) -> u64 {
    let base = *BASE.get_or_init(Instant::now);
    // Never 0, which `ejected_until` uses for "never ejected".
    u64::try_from(t.saturating_duration_since(base).as_millis()).unwrap_or(u64::MAX) + 1
}

/// The wall-clock time of clock milliseconds `ms`, for the admin API.
pub fn to_system(ms: u64) -> std::time::SystemTime {
    let now = now_ms();
    let wall = std::time::SystemTime::now();
    if ms >= now {
        wall + std::time::Duration::from_millis(ms - now)
    } else {
        wall - std::time::Duration::from_millis(now - ms)
    }
}
