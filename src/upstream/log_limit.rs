//! A rate limit for log lines about one target: at most one line per
//! [`LogLimit::EVERY_MS`], and the lines held back in between are counted
//! and reported by the next line that goes out. A dead target fails every
//! request sent to it; without this, its warnings would outnumber the
//! access log.
//!
//! Lock-free and touched only on the failure path: a success costs nothing
//! (no load, no store), so the target's cache line stays as it was for the
//! other workers.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct LogLimit {
    /// Clock milliseconds ([`crate::clock`], never 0) of the last line
    /// written; 0 before the first.
    last_ms: AtomicU64,
    /// Lines held back since the last one written.
    suppressed: AtomicU64,
}

impl LogLimit {
    /// At most one line per target per this many milliseconds.
    pub const EVERY_MS: u64 = 10_000;

    /// Whether a line may be written at clock milliseconds `now`: `Some` of
    /// the number of lines held back since the previous one, or `None`
    /// (counted as held back). When workers race at the end of a period,
    /// exactly one wins the compare-exchange and writes.
    pub fn admit(&self, now: u64) -> Option<u64> {
        let last = self.last_ms.load(Ordering::Relaxed);
        let due = last == 0 || now >= last.saturating_add(Self::EVERY_MS);
        if due
            && self
                .last_ms
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::LogLimit;

    #[test]
    fn one_line_per_period_and_the_rest_counted() {
        let limit = LogLimit::default();
        assert_eq!(limit.admit(5), Some(0));
        assert_eq!(limit.admit(6), None);
        assert_eq!(limit.admit(5 + LogLimit::EVERY_MS - 1), None);
        // The next line says how many were held back, then the count restarts.
        assert_eq!(limit.admit(5 + LogLimit::EVERY_MS), Some(2));
        assert_eq!(limit.admit(6 + LogLimit::EVERY_MS), None);
        assert_eq!(limit.admit(5 + 3 * LogLimit::EVERY_MS), Some(1));
    }

    #[test]
    fn racing_threads_write_one_line_and_lose_no_count() {
        let limit = LogLimit::default();
        // (lines written, held-back lines they reported) per thread.
        let (written, reported) = std::thread::scope(|s| {
            let runs: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        let admitted: Vec<u64> = (0..100).filter_map(|_| limit.admit(42)).collect();
                        (admitted.len(), admitted.iter().sum::<u64>())
                    })
                })
                .collect();
            runs.into_iter()
                .map(|r| r.join().unwrap_or((0, 0)))
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
        });
        assert_eq!(written, 1);
        // Every one of the 799 others is reported, by that line (when it
        // was held back before the winner read the count) or by the next.
        let next = limit.admit(42 + LogLimit::EVERY_MS).unwrap_or(0);
        assert_eq!(reported + next, 799);
    }
}
