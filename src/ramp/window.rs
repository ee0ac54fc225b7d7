//! The sliding window a ramp's gates read (SPEC §11): `to`'s answers of
//! the last `window`, in a ring of per-second buckets of atomics. A request
//! costs O(1): one load of the bucket's epoch and three relaxed adds (its
//! count, its 5xx count, one latency bucket). The gates sum the buckets
//! once a second. No list of samples, no lock.
//!
//! The ring has [`SLOTS`] buckets; a window longer than that many seconds
//! gets buckets of `ceil(window / SLOTS)` seconds, so the window slides in
//! steps of that width (1 s for the default `1m`). A bucket is reused when
//! its second comes round again: the first request of the new second
//! claims it (compare-and-swap on its epoch, marked as being claimed),
//! zeroes it, then publishes the new epoch. A request of the same second
//! that sees the mark waits the few hundred stores the zeroing takes, so
//! none is lost: a gate of `min_requests` answers that all arrive in the
//! same instant (a burst through a slow side) still sees every one.
//!
//! Latencies go into a log-linear histogram (HdrHistogram's layout with
//! three bits of mantissa): eight buckets per power of two of microseconds,
//! so a p99 read from it is the top of its bucket, at most 12.5% above the
//! true figure, never below it.

use std::sync::atomic::{
    AtomicU32, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};
use std::time::Duration;

/// Buckets in the ring.
pub const SLOTS: usize = 60;
/// Histogram buckets: up to 2^30 µs (about 18 minutes); longer counts there.
const HIST: usize = 232;
/// Set in a slot's epoch while the request that claimed it zeroes it.
const CLAIMING: u64 = 1 << 63;

struct Slot {
    /// 1 + the bucket index (Unix seconds / width) it counts; 0: never used.
    epoch: AtomicU64,
    count: AtomicU32,
    errors: AtomicU32,
    latency: [AtomicU32; HIST],
}

impl Slot {
    fn new() -> Slot {
        Slot {
            epoch: AtomicU64::new(0),
            count: AtomicU32::new(0),
            errors: AtomicU32::new(0),
            latency: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }

    /// Makes the slot count bucket `epoch`, zeroing it if it counted an
    /// older one; false if it already counts a newer one.
    fn enter(&self, epoch: u64) -> bool {
        let mut spins = 0u32;
        loop {
            // Acquire: once the claimer's epoch is seen, so are its zeros,
            // and this request's adds land after them.
            let held = self.epoch.load(Acquire);
            if held == epoch {
                return true;
            }
            if held & CLAIMING != 0 {
                spins += 1;
                if spins.is_multiple_of(64) {
                    // The claimer was preempted mid-zeroing: let it run.
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
                continue;
            }
            if held > epoch {
                return false;
            }
            if self
                .epoch
                .compare_exchange(held, epoch | CLAIMING, Acquire, Relaxed)
                .is_ok()
            {
                self.count.store(0, Relaxed);
                self.errors.store(0, Relaxed);
                self.latency.iter().for_each(|b| b.store(0, Relaxed));
                self.epoch.store(epoch, Release);
                return true;
            }
        }
    }
}

pub struct Window {
    /// Seconds per bucket.
    width: u64,
    /// Buckets the window spans, the current one included.
    span: u64,
    slots: Box<[Slot]>,
}

/// What the window holds now.
#[derive(Debug, Clone, PartialEq)]
pub struct Totals {
    pub count: u64,
    pub errors: u64,
    latency: Vec<u64>,
}

impl Totals {
    /// 5xx answers over all answers (0 with none).
    pub fn error_rate(&self) -> f64 {
        self.errors as f64 / self.count.max(1) as f64
    }

    /// The 99th percentile latency: the top of the histogram bucket it
    /// falls in (zero with no answers).
    pub fn p99(&self) -> Duration {
        let total: u64 = self.latency.iter().sum();
        let rank = (total * 99).div_ceil(100).max(1);
        let mut seen = 0;
        for (i, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Duration::from_micros(upper_bound(i));
            }
        }
        Duration::ZERO
    }
}

impl Window {
    pub fn new(window: Duration) -> Window {
        let seconds = window.as_secs().max(1);
        let width = seconds.div_ceil(SLOTS as u64);
        Window {
            width,
            span: seconds.div_ceil(width),
            slots: (0..SLOTS).map(|_| Slot::new()).collect(),
        }
    }

    /// Counts one answer at Unix milliseconds `now_ms`.
    pub fn record(&self, now_ms: i64, error: bool, latency: Duration) {
        let epoch = self.epoch(now_ms) + 1;
        let slot = &self.slots[(epoch % SLOTS as u64) as usize];
        if !slot.enter(epoch) {
            // The clock went back past this bucket's reuse: not counted.
            return;
        }
        slot.count.fetch_add(1, Relaxed);
        if error {
            slot.errors.fetch_add(1, Relaxed);
        }
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        slot.latency[bucket(micros)].fetch_add(1, Relaxed);
    }

    /// The answers of the window ending at Unix milliseconds `now_ms`.
    pub fn totals(&self, now_ms: i64) -> Totals {
        let newest = self.epoch(now_ms) + 1;
        let oldest = newest.saturating_sub(self.span - 1).max(1);
        let mut totals = Totals {
            count: 0,
            errors: 0,
            latency: vec![0; HIST],
        };
        for slot in self.slots.iter() {
            let epoch = slot.epoch.load(Relaxed);
            if (oldest..=newest).contains(&epoch) {
                totals.count += u64::from(slot.count.load(Relaxed));
                totals.errors += u64::from(slot.errors.load(Relaxed));
                for (t, b) in totals.latency.iter_mut().zip(slot.latency.iter()) {
                    *t += u64::from(b.load(Relaxed));
                }
            }
        }
        totals
    }

    fn epoch(&self, now_ms: i64) -> u64 {
        u64::try_from(now_ms.max(0) / 1000).unwrap_or(0) / self.width
    }
}

/// The histogram bucket of `micros`: exact below 8, then eight buckets
/// per power of two.
fn bucket(micros: u64) -> usize {
    if micros < 8 {
        return micros as usize;
    }
    let exponent = 63 - u64::from(micros.leading_zeros());
    if exponent > 30 {
        return HIST - 1;
    }
    let mantissa = (micros >> (exponent - 3)) & 7;
    ((exponent - 2) * 8 + mantissa) as usize
}

/// The first microsecond past bucket `i`.
fn upper_bound(i: usize) -> u64 {
    if i < 8 {
        return i as u64 + 1;
    }
    let (exponent, mantissa) = (i as u64 / 8 + 2, i as u64 % 8);
    (8 + mantissa + 1) << (exponent - 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_the_range_in_order_within_an_eighth() {
        let mut last = 0;
        for micros in (0..100_000u64).chain([1 << 29, (1 << 31) - 1, u64::MAX]) {
            let b = bucket(micros);
            assert!(b >= last && b < HIST, "{micros}");
            last = b;
            if micros < 1 << 31 {
                let top = upper_bound(b);
                assert!(
                    top > micros && (top - micros) * 8 <= micros.max(8),
                    "{micros}: {top}"
                );
            }
        }
    }

    #[test]
    fn counts_errors_and_the_p99_over_the_window() {
        let w = Window::new(Duration::from_secs(60));
        let t = 1_000_000_000;
        for i in 0..1000 {
            let slow = i % 100 == 0;
            let latency = Duration::from_millis(if slow { 900 } else { 10 });
            w.record(t + i, i % 10 == 0, latency);
        }
        let totals = w.totals(t + 999);
        assert_eq!((totals.count, totals.errors), (1000, 100));
        assert_eq!(totals.error_rate(), 0.1);
        // 10 of 1000 at 900 ms: the 990th answer is still at 10 ms.
        let p99 = totals.p99();
        assert!(
            p99 >= Duration::from_millis(10) && p99 < Duration::from_micros(11_300),
            "{p99:?}"
        );
        w.record(t + 1, false, Duration::from_millis(900));
        assert!(w.totals(t + 999).p99() >= Duration::from_millis(900));
    }

    #[test]
    fn answers_leave_the_window_as_it_slides() {
        let w = Window::new(Duration::from_secs(10));
        let t = 1_000_000_000;
        w.record(t, true, Duration::ZERO);
        w.record(t + 5_000, false, Duration::ZERO);
        assert_eq!(w.totals(t + 9_999).count, 2);
        assert_eq!(w.totals(t + 10_000).count, 1);
        assert_eq!(w.totals(t + 15_000).count, 0);
        // A minute later the same slot serves again, zeroed.
        w.record(t + 60_000, false, Duration::ZERO);
        let reused = w.totals(t + 60_000);
        assert_eq!((reused.count, reused.errors), (1, 0));
    }

    /// Four threads all start a new second at once, round after round:
    /// every answer is counted (the claim used to lose racing ones).
    #[test]
    fn requests_racing_a_bucket_claim_are_all_counted() {
        use std::sync::Barrier;
        const THREADS: usize = 4;
        const EACH: u32 = 10;
        let w = Window::new(Duration::from_secs(10));
        let barrier = Barrier::new(THREADS + 1);
        let t = 1_000_000_000;
        std::thread::scope(|scope| {
            for _ in 0..THREADS {
                scope.spawn(|| {
                    for round in 0..2000 {
                        barrier.wait();
                        for _ in 0..EACH {
                            w.record(t + round * 1000, false, Duration::ZERO);
                        }
                        barrier.wait();
                    }
                });
            }
            // Asserted after the scope: a panic here would leave the
            // threads waiting at the barrier.
            let mut lost = Vec::new();
            for round in 0..2000 {
                barrier.wait();
                barrier.wait();
                let got = w.totals(t + round * 1000).count;
                // The bucket of this second, and those of the nine before.
                let want = u64::from(EACH) * THREADS as u64 * (round as u64 + 1).min(10);
                if got != want {
                    lost.push((round, want - got));
                }
            }
            assert_eq!(lost, [], "(round, answers lost)");
        });
    }

    #[test]
    fn a_long_window_has_wider_buckets() {
        let w = Window::new(Duration::from_secs(3600));
        assert_eq!((w.width, w.span), (60, 60));
        let t = 1_000_000_000;
        w.record(t, false, Duration::ZERO);
        assert_eq!(w.totals(t + 3_000_000).count, 1);
        assert_eq!(w.totals(t + 3_660_000).count, 0);
    }
}
