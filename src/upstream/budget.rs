//! The retry budget (SPEC §4): an upstream may retry at most 20% of its
//! first attempts over the last 10 seconds, plus a floor of 10 retries per
//! 10 seconds so that a quiet upstream can still retry at all.
//!
//! The arithmetic: with `f` first attempts and `r` retries counted in the
//! window, one more retry is allowed while `r + 1 <= f / 5 + 10`. At 1,000
//! requests/s that is at most 2,010 retries per 10 s, so a fleet-wide
//! outage adds at most a fifth to the load instead of multiplying it.
//!
//! Counts live in ten one-second buckets of atomics; a bucket is reset
//! when its second comes round again. Resets can race with increments and
//! lose a count now and then, which a budget tolerates; nothing here locks.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

const WINDOW: u64 = 10;
const FLOOR: u32 = 10;
const PERCENT: u32 = 20;

#[derive(Default)]
struct Bucket {
    second: AtomicU64,
    firsts: AtomicU32,
    retries: AtomicU32,
}

#[derive(Default)]
pub struct RetryBudget {
    buckets: [Bucket; WINDOW as usize],
}

impl RetryBudget {
    fn bucket(&self, now_s: u64) -> &Bucket {
        let b = &self.buckets[(now_s % WINDOW) as usize];
        let seen = b.second.load(Ordering::Relaxed);
        if seen != now_s
            && b.second
                .compare_exchange(seen, now_s, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            b.firsts.store(0, Ordering::Relaxed);
            b.retries.store(0, Ordering::Relaxed);
        }
        b
    }

    /// Counts one first attempt at `now_s` (seconds on any monotonic clock).
    pub fn record_first(&self, now_s: u64) {
        self.bucket(now_s).firsts.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a retry fits the budget now; if it does, it is counted.
    pub fn try_retry(&self, now_s: u64) -> bool {
        let current = self.bucket(now_s);
        let (mut firsts, mut retries) = (0u32, 0u32);
        for b in &self.buckets {
            let s = b.second.load(Ordering::Relaxed);
            if s + WINDOW > now_s && s <= now_s {
                firsts = firsts.saturating_add(b.firsts.load(Ordering::Relaxed));
                retries = retries.saturating_add(b.retries.load(Ordering::Relaxed));
            }
        }
        if retries + 1 > firsts * PERCENT / 100 + FLOOR {
            return false;
        }
        current.retries.fetch_add(1, Ordering::Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_of_ten_per_window() {
        let b = RetryBudget::default();
        let allowed = (0..50).filter(|_| b.try_retry(100)).count();
        assert_eq!(allowed, 10);
    }

    #[test]
    fn twenty_percent_of_first_attempts() {
        let b = RetryBudget::default();
        for _ in 0..1000 {
            b.record_first(100);
        }
        let allowed = (0..1000).filter(|_| b.try_retry(100)).count();
        assert_eq!(allowed, 200 + 10);
    }

    #[test]
    fn window_slides() {
        let b = RetryBudget::default();
        assert_eq!((0..20).filter(|_| b.try_retry(100)).count(), 10);
        assert!(!b.try_retry(109));
        // Ten seconds on, the retries of second 100 have left the window.
        assert_eq!((0..20).filter(|_| b.try_retry(110)).count(), 10);
    }
}
