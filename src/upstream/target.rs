//! One upstream server as every snapshot that lists it shares it: its
//! health flag, ejection deadline, outlier streak and in-flight count. The
//! [`Registry`](super::Registry) hands the same [`Target`] to each compile
//! that keeps it, so a reload forgets neither health nor ejections. Idle
//! connections are not here: they live in per-thread pools keyed by
//! [`Target::id`] (see `pool.rs`).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::log_limit::LogLimit;
use super::outlier::OutlierState;
use crate::config::HealthSpec;

/// Ids for the per-thread pools; never reused, so a pool entry cannot be
/// mistaken for a newer target's.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub struct Target {
    /// The upstream this target belongs to (the registry keeps one target
    /// per upstream and authority), so that log lines about the target can
    /// say which upstream it serves.
    pub upstream: Box<str>,
    /// `ip:port` for an endpoint of a name, `host:port` for an IP target:
    /// what we dial and what logs, metrics and the admin API call it.
    pub authority: Box<str>,
    /// The target's `host:port` as configured (the name, for an endpoint of
    /// one): the `Host` of its health checks. Set by each compile, as an
    /// address can move from one name to another.
    host: Mutex<Arc<str>>,
    /// Key of this target's idle connections in every thread's pool.
    pub id: u64,
    /// The upstream's `idle_timeout` in milliseconds; set by each compile.
    idle_timeout_ms: AtomicU64,
    /// Set by active health checks; true when the upstream has none.
    pub healthy: AtomicBool,
    /// Clock milliseconds (see [`crate::clock`]) until which the target is
    /// ejected.
    pub ejected_until: AtomicU64,
    /// Mirrors `outlier.consecutive` so a success can skip the lock.
    pub(super) failures: AtomicU32,
    pub(super) outlier: Mutex<OutlierState>,
    /// Attempts in flight to this target (least_request compares these).
    pub in_flight: AtomicUsize,
    pub(super) checker: Mutex<Option<Checker>>,
    /// Bumped whenever the checker is replaced or removed; a checker only
    /// writes `healthy` while it is still the current generation.
    pub(super) health_generation: AtomicU64,
    /// Limits the warnings about failed connects (a dead target fails
    /// every request); touched on the failure path only.
    pub connect_log: LogLimit,
    /// Woken when the target is dropped (no snapshot lists it any more), so
    /// the drivers of its h2c connections close them at once (idle HTTP/1.1
    /// connections are closed by their pool's sweep).
    retired: Arc<tokio::sync::Notify>,
}

impl Target {
    pub(super) fn new(upstream: &str, authority: &str) -> Target {
        Target {
            upstream: upstream.into(),
            authority: authority.into(),
            host: Mutex::new(authority.into()),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            idle_timeout_ms: AtomicU64::new(90_000),
            healthy: AtomicBool::new(true),
            ejected_until: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            outlier: Mutex::new(OutlierState::default()),
            in_flight: AtomicUsize::new(0),
            checker: Mutex::new(None),
            health_generation: AtomicU64::new(0),
            connect_log: LogLimit::default(),
            retired: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// What an h2c connection's driver waits on to learn the target is gone.
    pub(super) fn retired(&self) -> Arc<tokio::sync::Notify> {
        self.retired.clone()
    }

    pub fn is_ejected(&self, now: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now
    }

    /// Healthy and not ejected.
    pub fn available(&self, now: u64) -> bool {
        self.healthy.load(Ordering::Relaxed) && !self.is_ejected(now)
    }

    pub fn idle_timeout_ms(&self) -> u64 {
        self.idle_timeout_ms.load(Ordering::Relaxed)
    }

    /// The `Host` of health checks: the configured `host:port`.
    pub fn host(&self) -> Arc<str> {
        self.host.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(super) fn set_host(&self, host: &str) {
        let mut current = self.host.lock().unwrap_or_else(|e| e.into_inner());
        if **current != *host {
            *current = host.into();
        }
    }

    pub(super) fn set_idle_timeout(&self, timeout: Duration) {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.idle_timeout_ms.store(ms, Ordering::Relaxed);
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.retired.notify_waiters();
    }
}

/// Holds one attempt's place in a target's in-flight count.
pub struct TargetGuard(Arc<Target>);

impl TargetGuard {
    pub fn new(target: Arc<Target>) -> TargetGuard {
        target.in_flight.fetch_add(1, Ordering::Relaxed);
        TargetGuard(target)
    }

    pub fn target(&self) -> &Arc<Target> {
        &self.0
    }
}

impl Drop for TargetGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A target's running health checker; dropping it stops the task.
pub struct Checker {
    pub(super) spec: HealthSpec,
    pub(super) protocol: crate::config::Protocol,
    pub(super) task: tokio::task::AbortHandle,
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.task.abort();
    }
}
