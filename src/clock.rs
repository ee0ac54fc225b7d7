//! Milliseconds on tokio's clock since the first call, for state kept in
//! atomics (ejections, the retry budget). tokio's clock, not the system's,
//! so tests can pause and advance time and ejections never jump with NTP.
//!
//! And [`now`], the request path's reading of that clock: one per poll of
//! a connection's task ([`PollScope`]), as nginx reads the time once per
//! turn of its event loop. A request used to read it five times (its
//! start, the upstream head's deadline, the pooled connection's idle
//! stamp, its end, the next head's deadline), ~60 ns each on this VM's
//! clock source (benches/cpu_profile.sh); the reads in one poll are
//! microseconds apart. Now it reads it three times: once in the poll its
//! head arrives in, once in the poll its answer does, and at its end
//! ([`fresh`], so that its duration is its own).

use std::cell::Cell;
use std::sync::OnceLock;

use tokio::time::Instant;

static BASE: OnceLock<Instant> = OnceLock::new();

/// [`now`] in milliseconds.
pub fn now_ms() -> u64 {
    to_ms(now())
}

thread_local! {
    /// In a [`PollScope`]: `(true, the scope's reading once taken)`.
    static POLL: Cell<(bool, Option<Instant>)> = const { Cell::new((false, None)) };
}

/// Now on tokio's clock: in a [`PollScope`] the scope's first reading,
/// elsewhere the clock itself.
pub fn now() -> Instant {
    POLL.with(|poll| match poll.get() {
        (true, Some(read)) => read,
        (true, None) => {
            let read = Instant::now();
            poll.set((true, Some(read)));
            read
        }
        (false, _) => Instant::now(),
    })
}

/// Now on tokio's clock, read afresh: for a request's end, so that one
/// answered in the poll it arrived in still has a duration. In a
/// [`PollScope`] it becomes the scope's reading, for what follows (the
/// next head's deadline).
pub fn fresh() -> Instant {
    let read = Instant::now();
    POLL.with(|poll| {
        if poll.get().0 {
            poll.set((true, Some(read)));
        }
    });
    read
}

/// Whether `due` has passed, by `timer`, a timer set no later than `due`
/// ([`not_after`]): when it fires early it is moved on to `due`. Request paths move their
/// deadlines on with every request (the next head's, the upstream
/// answer's) and store them as plain instants; the timer is moved only
/// when it fires, once a timeout's length on a busy connection, where
/// moving it per request was an update of the runtime's timer each time
/// (~120 instructions, benches/instructions.sh).
pub fn passed(
    cx: &mut std::task::Context<'_>,
    mut timer: std::pin::Pin<&mut tokio::time::Sleep>,
    due: Instant,
) -> bool {
    loop {
        if std::future::Future::poll(timer.as_mut(), cx).is_pending() {
            return false;
        }
        if timer.deadline() >= due {
            return true;
        }
        timer.as_mut().reset(due);
    }
}

/// Brings `timer` forward to `due` when it is set later, as [`passed`]
/// requires: a deadline moves back when its limit was shortened (a reload
/// of `request_timeout`) since the timer was last set. Returns whether it
/// moved the timer.
pub fn not_after(timer: std::pin::Pin<&mut tokio::time::Sleep>, due: Instant) -> bool {
    if timer.deadline() <= due {
        return false;
    }
    timer.reset(due);
    true
}

/// The span of one poll of a connection's task, for [`now`]: made at the
/// poll's start, dropped at its end. A poll is bounded work (tokio's
/// budget; no blocking on the request path), so its reading is at most
/// microseconds old, well within what the readings serve: timeouts of a
/// second or more, the access log's durations in microseconds.
pub struct PollScope {
    outer: (bool, Option<Instant>),
}

impl PollScope {
    pub fn enter() -> PollScope {
        PollScope {
            outer: POLL.replace((true, None)),
        }
    }
}

impl Drop for PollScope {
    fn drop(&mut self) {
        POLL.set(self.outer);
    }
}

/// Nanoseconds on the same clock, for rates finer than a millisecond (the
/// rate limiter's buckets).
pub fn now_ns() -> u64 {
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(Instant::now().saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX)
}

pub fn to_ms(t: Instant) -> u64 {
    let base = *BASE.get_or_init(Instant::now);
    let d = t.saturating_duration_since(base);
    // In u64 (`as_millis` is a u128 and its division a call); never 0,
    // which `ejected_until` uses for "never ejected".
    d.as_secs()
        .saturating_mul(1000)
        .saturating_add(u64::from(d.subsec_millis()))
        .saturating_add(1)
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

/// The wall clock a ramp's schedule reads (SPEC §11): Unix milliseconds,
/// `SystemTime::now()` plus an offset that only tests move. A schedule is
/// written in calendar time and every instance of a fleet must agree on
/// it, so it cannot follow tokio's clock (which starts at the process's
/// start and pauses in tests); yet a test must run a ramp of hours in a
/// second. The offset is the smallest thing that gives both: real runs
/// never touch it, in-process tests call [`Wall::advance`] or
/// [`Wall::set`] on the instance's clock (`Shared::wall`). One relaxed
/// atomic load on top of the system clock's read.
#[derive(Debug, Default)]
pub struct Wall {
    offset_ms: std::sync::atomic::AtomicI64,
}

impl Wall {
    /// Unix milliseconds now, as this clock reads.
    pub fn now_ms(&self) -> i64 {
        let system = match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
        };
        system.saturating_add(self.offset_ms.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Moves this clock forward by `by` (tests).
    pub fn advance(&self, by: std::time::Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms
            .fetch_add(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Sets this clock so that it reads `unix_ms` now (tests).
    pub fn set(&self, unix_ms: i64) {
        let now = self.now_ms();
        self.offset_ms
            .fetch_add(unix_ms - now, std::sync::atomic::Ordering::Relaxed);
    }
}

thread_local! {
    /// This thread's last reading of the wall clock, with the instant (on
    /// tokio's clock) it was taken at: see [`wall_at`].
    static WALL: std::cell::Cell<Option<(Instant, std::time::SystemTime)>> =
        const { std::cell::Cell::new(None) };
}

/// How long a reading of the wall clock stands in for it in [`wall_at`].
const WALL_READ_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The wall-clock time at `at`, an instant read just now on tokio's
/// clock: this thread's last reading of the wall clock moved on by the
/// time since, the wall clock read again once that reading is a second
/// old, so a step of the system clock shows within a second and a slew
/// (at most 0.05% under NTP) is off by under a millisecond. For the
/// access log's time stamp: a second `clock_gettime` a request is ~45 ns
/// on a VM's clock source (`benches/cpu_profile.sh`), the log's
/// resolution is a millisecond.
pub fn wall_at(at: Instant) -> std::time::SystemTime {
    WALL.with(|wall| {
        if let Some((then, read)) = wall.get() {
            if let Some(since) = at.checked_duration_since(then) {
                if since < WALL_READ_EVERY {
                    if let Some(t) = read.checked_add(since) {
                        return t;
                    }
                }
            }
        }
        let read = std::time::SystemTime::now();
        wall.set(Some((at, read)));
        read
    })
}

/// A Unix-milliseconds time as a `SystemTime`, for the RFC 3339 formatter.
pub fn unix_ms_to_system(ms: i64) -> std::time::SystemTime {
    let magnitude = std::time::Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        std::time::UNIX_EPOCH + magnitude
    } else {
        std::time::UNIX_EPOCH - magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    /// In a poll's scope the clock is read once; outside it, every time;
    /// the next scope reads it afresh.
    #[tokio::test(start_paused = true)]
    async fn one_reading_per_poll_scope() {
        let wait = || tokio::time::advance(Duration::from_millis(2));
        let outside = now();
        wait().await;
        assert!(now() > outside, "outside a scope the clock is read");
        let first = now();
        {
            let _scope = PollScope::enter();
            assert_eq!(now(), first);
            wait().await;
            assert_eq!(now(), first, "one reading per scope");
        }
        assert!(now() > first, "the scope's reading ends with it");
        let _scope = PollScope::enter();
        let second = now();
        assert!(second > first, "a new scope reads the clock again");
        wait().await;
        let end = fresh();
        assert!(end > second, "fresh reads the clock");
        assert_eq!(now(), end, "and is the scope's reading after");
    }

    /// A timer set later than a deadline is brought forward to it; one set
    /// no later is left alone, and `passed` moves it on when it fires early.
    #[tokio::test(start_paused = true)]
    async fn timers_are_never_later_than_their_deadline() {
        let start = Instant::now();
        let mut timer = std::pin::pin!(tokio::time::sleep(Duration::from_secs(10)));
        let due = start + Duration::from_secs(1);
        assert!(not_after(timer.as_mut(), due), "later: brought forward");
        assert_eq!(timer.deadline(), due);
        assert!(!not_after(timer.as_mut(), due + Duration::from_secs(5)));
        assert_eq!(timer.deadline(), due, "earlier: left alone");

        let later = due + Duration::from_secs(5);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!passed(&mut cx, timer.as_mut(), later), "fired early");
        assert_eq!(timer.deadline(), later, "and moved on");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(passed(&mut cx, timer.as_mut(), later));
    }

    /// Within a second of a reading, the wall clock is that reading moved
    /// on by tokio's clock; past it, the wall clock is read again.
    #[tokio::test(start_paused = true)]
    async fn wall_time_follows_a_reading_for_a_second_then_reads_again() {
        let start = Instant::now();
        let read = wall_at(start);
        let real = SystemTime::now();
        assert!(real.duration_since(read).unwrap_or_default() < Duration::from_secs(1));

        // tokio's clock moves, the system's barely: the reading moves on.
        tokio::time::advance(Duration::from_millis(400)).await;
        assert_eq!(wall_at(Instant::now()), read + Duration::from_millis(400));
        // An instant from before the reading: the wall clock is read.
        let earlier = wall_at(start - Duration::from_millis(1));
        assert!(earlier >= read, "a fresh reading, not one moved back");

        // A second on, the wall clock is read again: far from reading +
        // the hour tokio's paused clock skipped.
        tokio::time::advance(Duration::from_secs(3600)).await;
        let again = wall_at(Instant::now());
        let real = SystemTime::now();
        assert!(again <= real && real.duration_since(again).unwrap() < Duration::from_secs(1));
    }
}
