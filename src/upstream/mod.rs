//! Upstreams as the hot path sees them. A compiled [`Upstream`] (targets,
//! weights, balancing tables, limits) lives in one snapshot. [`Target`]s
//! (health, ejection, in-flight counts) and [`UpstreamShared`] (the breaker's
//! in-flight count, the retry budget) outlive snapshots: the [`Registry`]
//! hands the same ones to every snapshot that keeps them, so a reload
//! forgets neither health nor ejections, and pooled connections (kept per
//! thread by target id, see [`pool`]) stay usable.
//!
//! A target given by DNS name is as many endpoints as it has addresses
//! ([`Upstream::with_endpoints`], from the sets `dns` keeps); each endpoint
//! is a [`Target`] of its own, keyed by (upstream, `ip:port`), so its
//! health, ejection, in-flight count and pooled connections outlive the
//! answers that keep it, as an IP target's outlive reloads.
//!
//! Layers inside: `log_limit`, `target`, `outlier`, `balance`, `budget`,
//! `pool`, `dns` and `head_timeout` know nothing of this file; this file
//! compiles upstreams from them; `h1` (figway's HTTP/1.1 client), `client`
//! (one attempt at one target, over `h1` or h2c) and `health` (active
//! checks) build on it.
//!
//! Nothing here takes a lock on the way to a pick; the outlier mutex is
//! taken only after a failure, or after a success that ends a failure streak.

pub mod balance;
pub mod budget;
pub mod client;
mod connect;
pub mod dns;
pub mod h1;
pub mod h2pool;
mod head_timeout;
pub mod health;
pub mod log_limit;
pub mod outlier;
pub mod pool;
pub mod target;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use balance::{Ring, Tried};
pub use target::{Target, TargetGuard};

use crate::config::{
    Balance, HealthSpec, KeySource, OutlierSpec, Protocol, TargetSpec, Timeouts, UpstreamSpec,
};

/// Per-upstream state that outlives snapshots.
#[derive(Default)]
pub struct UpstreamShared {
    /// Requests in flight to the upstream; the breaker compares it with
    /// `max_in_flight`.
    pub in_flight: AtomicUsize,
    pub budget: budget::RetryBudget,
    /// Held while an ejection is decided, so two targets failing at once
    /// cannot both pass the `max_ejected_percent` check. Failure path only.
    ejecting: Mutex<()>,
}

/// Holds one request's place in an upstream's in-flight count.
pub struct UpstreamGuard(Arc<UpstreamShared>);

impl Drop for UpstreamGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An upstream as compiled into one snapshot.
pub struct Upstream {
    pub name: Box<str>,
    /// `name` as the access log's JSON writes it, rendered here once.
    pub log_name: Box<str>,
    pub legacy: bool,
    pub protocol: Protocol,
    pub balance: Balance,
    pub hash_key: Option<KeySource>,
    /// The endpoints: one per IP target, one per address of a target given
    /// by name (none while the name resolves to nothing).
    pub targets: Box<[Arc<Target>]>,
    /// The target URL each endpoint comes from, as configured, for the
    /// admin API; parallel to `targets`.
    pub urls: Box<[Box<str>]>,
    pub weights: Box<[u32]>,
    pub timeouts: Timeouts,
    pub retries: u32,
    pub max_in_flight: Option<usize>,
    pub health: Option<HealthSpec>,
    pub outlier: Option<OutlierSpec>,
    pub shared: Arc<UpstreamShared>,
    pub metrics: crate::metrics::UpstreamMetrics,
    schedule: Box<[u16]>,
    ring: Ring,
    cursor: AtomicUsize,
}

impl Upstream {
    /// The upstream with its IP targets only: names count as not resolved
    /// (no endpoints). For benches and tools that never resolve.
    pub fn new(spec: &UpstreamSpec, registry: &Registry) -> Upstream {
        Upstream::with_endpoints(spec, registry, &dns::Sets::new())
    }

    /// The upstream with one endpoint per IP target and per address of each
    /// name in `sets`, each with its target's weight. An address that two
    /// targets share (a name and an IP target, two names) is one endpoint,
    /// the first target's: one address, one health and one pool.
    pub fn with_endpoints(spec: &UpstreamSpec, registry: &Registry, sets: &dns::Sets) -> Upstream {
        let endpoints = endpoints(spec, sets);
        let weights: Box<[u32]> = endpoints.iter().map(|e| e.target.weight).collect();
        let authorities: Vec<&str> = endpoints.iter().map(|e| e.address.as_str()).collect();
        Upstream {
            name: spec.name.as_str().into(),
            log_name: crate::access_log::json_string(&spec.name),
            legacy: spec.legacy,
            protocol: spec.protocol,
            balance: spec.balance,
            hash_key: spec.hash_key.clone(),
            targets: endpoints
                .iter()
                .map(|e| {
                    let target = registry.target(&spec.name, &e.address);
                    target.set_idle_timeout(spec.timeouts.idle);
                    target.set_host(&e.target.authority);
                    target
                })
                .collect(),
            urls: endpoints
                .iter()
                .map(|e| e.target.url.as_str().into())
                .collect(),
            schedule: balance::smooth_schedule(&weights),
            ring: match spec.balance {
                Balance::Hash => Ring::new(&authorities, &weights),
                _ => Ring::default(),
            },
            weights,
            timeouts: spec.timeouts,
            retries: spec.retries,
            max_in_flight: spec.max_in_flight,
            health: spec.health.clone(),
            outlier: spec.outlier,
            shared: registry.upstream(&spec.name),
            metrics: registry.metrics.upstream(&spec.name, &authorities),
            cursor: AtomicUsize::new(0),
        }
    }

    /// A target for this request: not tried yet, healthy, not ejected.
    /// `key` is the hashed `hash_key` of the request, for `balance = "hash"`;
    /// without one, hash falls back to round robin.
    pub fn pick(&self, key: Option<u64>, tried: &Tried, now: u64) -> Option<usize> {
        let ok = |i: usize| !tried.contains(i) && self.targets[i].available(now);
        match (self.balance, key) {
            (Balance::LeastRequest, _) => balance::pick_least_request(
                &self.weights,
                |i| self.targets[i].in_flight.load(Ordering::Relaxed),
                ok,
            ),
            (Balance::Hash, Some(hash)) => self.ring.pick(hash, ok),
            (Balance::RoundRobin | Balance::Hash, _) => {
                let counter = self.cursor.fetch_add(1, Ordering::Relaxed);
                balance::pick_round_robin(&self.schedule, counter, self.targets.len(), ok)
            }
        }
    }

    pub fn has_available(&self, now: u64) -> bool {
        self.targets.iter().any(|t| t.available(now))
    }

    pub fn breaker_open(&self) -> bool {
        self.max_in_flight
            .is_some_and(|max| self.shared.in_flight.load(Ordering::Relaxed) >= max)
    }

    /// Takes a place in the upstream's in-flight count, unless the breaker
    /// (`max_in_flight`) is open.
    pub fn enter(&self) -> Option<UpstreamGuard> {
        let before = self.shared.in_flight.fetch_add(1, Ordering::Relaxed);
        let guard = UpstreamGuard(self.shared.clone());
        match self.max_in_flight {
            Some(max) if before >= max => None,
            _ => Some(guard),
        }
    }

    /// Feeds passive outlier detection with the outcome of one attempt that
    /// connected (its failures: resets, timeouts, 5xx). Connect failures go
    /// to [`Upstream::observe_connect_failure`].
    pub fn observe(&self, target: usize, failed: bool, now: u64) {
        match &self.outlier {
            Some(spec) if failed => self.eject_on_streak(target, spec, now),
            // A success, or, without an `[outlier]` section, any answer at
            // all: the target accepts connections, which ends a streak of
            // connect failures. One relaxed load when there is no streak.
            _ => {
                let t = &self.targets[target];
                if t.failures.load(Ordering::Relaxed) != 0 {
                    let mut state = t.outlier.lock().unwrap_or_else(|e| e.into_inner());
                    outlier::observe_success(&mut state);
                    t.failures.store(0, Ordering::Relaxed);
                }
            }
        }
    }

    /// Feeds passive outlier detection with a failed connect (refused,
    /// `connect_timeout`, a name that does not resolve). The upstream's
    /// `[outlier]` rule counts it like any failure; without one, the
    /// built-in [`outlier::CONNECT_FAILURES`] rule ejects a target that
    /// cannot be reached, so that it stops getting traffic at once.
    pub fn observe_connect_failure(&self, target: usize, now: u64) {
        let spec = self.outlier.as_ref().unwrap_or(&outlier::CONNECT_FAILURES);
        self.eject_on_streak(target, spec, now);
    }

    /// One more failure in the target's streak; ejects it when `spec` says.
    fn eject_on_streak(&self, target: usize, spec: &OutlierSpec, now: u64) {
        let t = &self.targets[target];
        let _one_at_a_time = self
            .shared
            .ejecting
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let ejected = self.targets.iter().filter(|o| o.is_ejected(now)).count();
        let mut state = t.outlier.lock().unwrap_or_else(|e| e.into_inner());
        if t.is_ejected(now) {
            // Failures of requests that started before the ejection.
            return;
        }
        let until = outlier::observe_failure(&mut state, spec, now, ejected, self.targets.len());
        t.failures.store(state.consecutive, Ordering::Relaxed);
        if let Some(until) = until {
            t.ejected_until.store(until, Ordering::Relaxed);
            self.metrics.ejected(target);
            tracing::warn!(
                upstream = %self.name,
                upstream_target = %t.authority,
                ejected_for_ms = until - now,
                "target ejected after {} consecutive failures",
                spec.consecutive_failures
            );
        }
    }
}

/// One endpoint before it becomes a [`Target`]: its address and the
/// configured target it comes from.
struct Endpoint<'a> {
    /// `ip:port` (`[v6]:port`), or an IP target's own authority.
    address: String,
    target: &'a TargetSpec,
}

/// The endpoints of `spec`'s targets, in target order (a name's addresses
/// in their sorted order), each address once.
fn endpoints<'a>(spec: &'a UpstreamSpec, sets: &dns::Sets) -> Vec<Endpoint<'a>> {
    let mut out: Vec<Endpoint<'a>> = Vec::with_capacity(spec.targets.len());
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    for target in &spec.targets {
        let addresses: Vec<String> = match &target.name {
            None => vec![target.authority.clone()],
            Some(name) => {
                let key = dns::Key {
                    upstream: spec.name.clone(),
                    name: name.clone(),
                    family: spec.dns_family,
                };
                sets.get(&key).map_or_else(Vec::new, |set| {
                    set.iter()
                        .map(|ip| SocketAddr::new(*ip, target.port).to_string())
                        .collect()
                })
            }
        };
        for address in addresses {
            if seen.insert(address.clone()) {
                out.push(Endpoint { address, target });
            }
        }
    }
    out
}

/// Targets by (upstream, authority) and upstream state by name, held
/// weakly: they live as long as some snapshot uses them, and are found again
/// by the next compile.
#[derive(Default)]
pub struct Registry {
    targets: Mutex<HashMap<(String, String), Weak<Target>>>,
    upstreams: Mutex<HashMap<String, Weak<UpstreamShared>>>,
    /// The Prometheus metrics whose handles compiled snapshots hold.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The wall clock ramps read (`clock::Wall`): here so that every
    /// snapshot compiled for one process shares it, and a test moves it.
    pub wall: Arc<crate::clock::Wall>,
    /// The legacy inventory, whose pairs compiled snapshots hold.
    pub inventory: crate::inventory::Inventory,
}

impl Registry {
    pub fn target(&self, upstream: &str, authority: &str) -> Arc<Target> {
        let mut map = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        let key = (upstream.to_string(), authority.to_string());
        if let Some(t) = map.get(&key).and_then(Weak::upgrade) {
            return t;
        }
        let target = Arc::new(Target::new(upstream, authority));
        map.insert(key, Arc::downgrade(&target));
        target
    }

    pub fn upstream(&self, name: &str) -> Arc<UpstreamShared> {
        let mut map = self.upstreams.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(u) = map.get(name).and_then(Weak::upgrade) {
            return u;
        }
        let shared = Arc::new(UpstreamShared::default());
        map.insert(name.to_string(), Arc::downgrade(&shared));
        shared
    }

    /// Forgets what no snapshot holds any more.
    pub fn sweep(&self) {
        self.targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, t| t.strong_count() > 0);
        self.upstreams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, u| u.strong_count() > 0);
    }
}
