//! Upstreams as the hot path sees them: a compiled [`Upstream`] (its targets,
//! weights and precomputed schedule) that lives in one snapshot, and
//! [`Target`]s (the connection pool and, later, health) that outlive
//! snapshots. The [`Registry`] hands the same `Target` to every snapshot that
//! keeps the target, so a reload does not throw pooled connections away.

pub mod balance;
pub mod pool;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::config::{Balance, Timeouts, UpstreamSpec};

/// One upstream server; shared by every snapshot that lists it.
pub struct Target {
    /// `host:port`: what we dial and what logs and metrics call it.
    pub authority: Box<str>,
    pub pool: pool::Pool,
}

/// An upstream as compiled into one snapshot.
pub struct Upstream {
    pub name: Box<str>,
    pub legacy: bool,
    pub balance: Balance,
    pub targets: Box<[Arc<Target>]>,
    /// As configured, for the admin API; parallel to `targets`.
    pub urls: Box<[Box<str>]>,
    pub weights: Box<[u32]>,
    pub timeouts: Timeouts,
    schedule: Box<[u16]>,
    cursor: AtomicUsize,
}

impl Upstream {
    pub fn new(spec: &UpstreamSpec, registry: &Registry) -> Upstream {
        let weights: Box<[u32]> = spec.targets.iter().map(|t| t.weight).collect();
        Upstream {
            name: spec.name.as_str().into(),
            legacy: spec.legacy,
            balance: spec.balance,
            targets: spec
                .targets
                .iter()
                .map(|t| registry.target(&spec.name, &t.authority))
                .collect(),
            urls: spec.targets.iter().map(|t| t.url.as_str().into()).collect(),
            schedule: balance::smooth_schedule(&weights),
            weights,
            timeouts: spec.timeouts,
            cursor: AtomicUsize::new(0),
        }
    }

    /// The next target in the smooth weighted round-robin cycle.
    pub fn pick(&self) -> &Arc<Target> {
        let n = self.cursor.fetch_add(1, Ordering::Relaxed);
        let slot = self.schedule[n % self.schedule.len()];
        &self.targets[usize::from(slot)]
    }
}

/// Targets by (upstream, authority), held weakly: a target lives as long as
/// some snapshot uses it, and is found again by the next compile.
#[derive(Default)]
pub struct Registry {
    targets: Mutex<HashMap<(String, String), Weak<Target>>>,
}

impl Registry {
    pub fn target(&self, upstream: &str, authority: &str) -> Arc<Target> {
        let mut map = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        let key = (upstream.to_string(), authority.to_string());
        if let Some(t) = map.get(&key).and_then(Weak::upgrade) {
            return t;
        }
        let target = Arc::new(Target {
            authority: authority.into(),
            pool: pool::Pool::default(),
        });
        map.insert(key, Arc::downgrade(&target));
        target
    }

    /// Forgets targets no snapshot holds any more.
    pub fn sweep(&self) {
        let mut map = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, t| t.strong_count() > 0);
    }
}
