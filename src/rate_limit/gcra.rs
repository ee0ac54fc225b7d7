//! The token bucket as one number: GCRA (the generic cell rate algorithm)
//! keeps a bucket's whole state in its "theoretical arrival time", the
//! moment the bucket would be full again. A bucket of `burst` tokens refilled
//! one token per `interval` admits a request at `now` when taking a token
//! leaves that moment at most `burst × interval` ahead of `now`. One `u64`
//! per bucket means the route-wide bucket is a single atomic updated by a
//! compare-and-swap (no lock between workers), and a per-key bucket costs
//! 8 bytes of state. Times are nanoseconds on `crate::clock`.

use std::sync::atomic::{AtomicU64, Ordering};

/// A bucket's rules: one token every `interval` ns, at most `span` ns of
/// tokens (`burst × interval`) ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub interval: u64,
    pub span: u64,
}

impl Rule {
    pub fn new(rate: f64, burst: u32) -> Rule {
        // `as` saturates: a tiny rate gives a huge interval, never a wrap.
        let interval = ((1e9 / rate) as u64).max(1);
        Rule {
            interval,
            span: interval.saturating_mul(u64::from(burst.max(1))),
        }
    }

    /// Takes a token from the bucket whose full-again time is `tat`: the new
    /// full-again time, or how many ns until a token would be there. A new
    /// bucket (`tat` 0, or any time past) is full.
    pub fn admit(self, tat: u64, now: u64) -> Result<u64, u64> {
        let next = tat.max(now).saturating_add(self.interval);
        let ahead = next - now;
        if ahead <= self.span {
            Ok(next)
        } else {
            Err(ahead - self.span)
        }
    }
}

/// One bucket shared by every worker: its full-again time in an atomic.
#[derive(Debug, Default)]
#[repr(align(64))] // its own cache line: workers write it on every request
pub struct AtomicBucket {
    tat: AtomicU64,
}

impl AtomicBucket {
    pub fn admit(&self, rule: Rule, now: u64) -> Result<(), u64> {
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let next = rule.admit(tat, now)?;
            // Relaxed: the bucket guards no other memory, only its count.
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(seen) => tat = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_full_bucket_lets_burst_through_then_refills_at_rate() {
        let rule = Rule::new(5.0, 5);
        let now = 10 * S;
        let mut tat = 0;
        for _ in 0..5 {
            tat = rule.admit(tat, now).unwrap();
        }
        // The sixth waits one interval, 200 ms.
        assert_eq!(rule.admit(tat, now), Err(S / 5));
        assert_eq!(rule.admit(tat, now + S / 5 - 1), Err(1));
        tat = rule.admit(tat, now + S / 5).unwrap();
        assert!(rule.admit(tat, now + S / 5).is_err());
        // A second later the bucket is full again, never fuller.
        let later = now + S / 5 + S;
        for _ in 0..5 {
            tat = rule.admit(tat, later).unwrap();
        }
        assert!(rule.admit(tat, later).is_err());
    }

    #[test]
    fn fractional_rates_and_the_default_burst_of_one() {
        let rule = Rule::new(0.5, 1);
        let tat = rule.admit(0, S).unwrap();
        assert_eq!(rule.admit(tat, S), Err(2 * S));
        assert!(rule.admit(tat, 3 * S).is_ok());
    }

    #[test]
    fn extreme_rules_saturate_instead_of_wrapping() {
        let slow = Rule::new(1e-12, 1_000_000_000);
        assert_eq!(slow.span, u64::MAX);
        assert!(slow.admit(0, 1).is_ok());
        let fast = Rule::new(1e9, 1);
        assert_eq!(fast.interval, 1);
        let tat = fast.admit(0, 5).unwrap();
        assert_eq!(fast.admit(tat, 5), Err(1));
    }

    #[test]
    fn the_atomic_bucket_admits_exactly_burst_across_threads() {
        let bucket = AtomicBucket::default();
        let rule = Rule::new(1.0, 1000);
        let admitted = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..500 {
                        if bucket.admit(rule, S).is_ok() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.load(Ordering::Relaxed), 1000);
    }
}
