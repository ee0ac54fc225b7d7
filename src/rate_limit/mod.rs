//! `[routes.rate_limit]` at run time (SPEC §12): token buckets per key per
//! instance, checked right after routing. A bucket is GCRA's one number
//! ([`gcra`]). With `key = "route"` the route has one bucket, an atomic
//! that every worker updates by compare-and-swap: no lock. Per-key buckets
//! (`client_ip`, `header:NAME`) live in 64 shards, each a mutex over a small
//! LRU map (`lru`) picked by the key's hash, so workers meet on a lock
//! only when their keys share a shard, and the rate holds per instance
//! whichever worker serves a client (a map per worker would multiply it by
//! the number of workers). Keys are stored as seeded 64-bit hashes: no
//! allocation per key, about 60 bytes each (bucket, last use, list links
//! and the map's slot; some 6 MB for a route at the cap), and a client
//! cannot aim its key at another's bucket.
//!
//! Memory is bounded: at most [`MAX_KEYS`] keys per route (each shard holds
//! its share, the least recently used dropped first), and keys unused for a
//! minute are dropped (or, when the bucket takes longer than a minute to
//! fill again, once it would be full: dropping then gives nothing away). A
//! request sweeps the idle tail of its own shard, and once a second one
//! request sweeps every shard it can lock without waiting.

pub mod gcra;
mod lru;

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use http::HeaderMap;

use crate::clock;
use crate::config::{RateLimitKey, RateLimitSpec};
use gcra::{AtomicBucket, Rule};
use lru::Shard;

/// The most keys a route's limiter holds (SPEC §12).
pub const MAX_KEYS: usize = 100_000;
const SHARDS: usize = 64;
/// How long a key may go unused before it is dropped.
const IDLE_NS: u64 = 60_000_000_000;
/// How often one request sweeps every shard.
const SWEEP_EVERY_NS: u64 = 1_000_000_000;
/// Idle keys a request drops from its own shard: bounded work per request.
const DROP_PER_REQUEST: usize = 4;

/// A route's rate limit: its rule and its buckets.
pub struct RateLimiter {
    spec: RateLimitSpec,
    rule: Rule,
    buckets: Buckets,
}

enum Buckets {
    Route(AtomicBucket),
    Keyed(Keyed),
}

struct Keyed {
    /// Seeded per limiter (SipHash with random keys).
    hasher: std::collections::hash_map::RandomState,
    shards: Box<[Padded]>,
    /// Unused for this long, a key is dropped.
    idle: u64,
    last_sweep: AtomicU64,
}

/// A shard on its own cache line: workers on different shards never share.
#[repr(align(64))]
struct Padded(Mutex<Shard>);

impl RateLimiter {
    pub fn new(spec: &RateLimitSpec) -> RateLimiter {
        RateLimiter::with_max_keys(spec, MAX_KEYS)
    }

    /// As [`RateLimiter::new`], holding at most `max_keys` keys.
    pub fn with_max_keys(spec: &RateLimitSpec, max_keys: usize) -> RateLimiter {
        let rule = Rule::new(spec.rate, spec.burst);
        let buckets = match spec.key {
            RateLimitKey::Route => Buckets::Route(AtomicBucket::default()),
            RateLimitKey::ClientIp | RateLimitKey::Header(_) => {
                // The shares add up to `max_keys` exactly.
                let shards = (0..SHARDS)
                    .map(|i| {
                        let cap = max_keys / SHARDS + usize::from(i < max_keys % SHARDS);
                        Padded(Mutex::new(Shard::new(cap)))
                    })
                    .collect();
                Buckets::Keyed(Keyed {
                    hasher: Default::default(),
                    shards,
                    idle: IDLE_NS.max(rule.span),
                    last_sweep: AtomicU64::new(0),
                })
            }
        };
        RateLimiter {
            spec: spec.clone(),
            rule,
            buckets,
        }
    }

    pub fn spec(&self) -> &RateLimitSpec {
        &self.spec
    }

    /// Takes a token for this request now; `Err` holds the `retry-after`
    /// seconds (the wait for a token, rounded up).
    pub fn check(&self, headers: &HeaderMap, client: IpAddr) -> Result<(), u32> {
        let now = clock::now_ns();
        let admitted = match &self.buckets {
            Buckets::Route(bucket) => bucket.admit(self.rule, now),
            Buckets::Keyed(keyed) => {
                keyed.admit(keyed.key(&self.spec.key, headers, client), self.rule, now)
            }
        };
        admitted.map_err(retry_after)
    }

    /// [`RateLimiter::check`] for a key already hashed, at `now` (clock
    /// ns): for tests and benches. The route-wide bucket ignores `key`.
    pub fn check_key_at(&self, key: u64, now: u64) -> Result<(), u32> {
        let admitted = match &self.buckets {
            Buckets::Route(bucket) => bucket.admit(self.rule, now),
            Buckets::Keyed(keyed) => keyed.admit(key, self.rule, now),
        };
        admitted.map_err(retry_after)
    }

    /// How many keys hold a bucket now (1 for the route-wide bucket).
    pub fn keys(&self) -> usize {
        match &self.buckets {
            Buckets::Route(_) => 1,
            Buckets::Keyed(keyed) => keyed.shards.iter().map(|s| lock(&s.0).len()).sum(),
        }
    }
}

impl Keyed {
    /// The request's key hash: the header's value, or the client address
    /// (also when the header is missing). A tag byte keeps the two kinds
    /// of key apart.
    fn key(&self, key: &RateLimitKey, headers: &HeaderMap, client: IpAddr) -> u64 {
        let mut h = self.hasher.build_hasher();
        match key {
            RateLimitKey::Header(name) if headers.contains_key(name) => {
                h.write_u8(b'h');
                for value in headers.get_all(name) {
                    h.write(value.as_bytes());
                }
            }
            _ => {
                h.write_u8(b'a');
                match client.to_canonical() {
                    IpAddr::V4(v4) => h.write(&v4.octets()),
                    IpAddr::V6(v6) => h.write(&v6.octets()),
                }
            }
        }
        h.finish()
    }

    fn admit(&self, key: u64, rule: Rule, now: u64) -> Result<(), u64> {
        // The low bits pick the shard; the map inside uses them all.
        let shard = &self.shards[(key as usize) % SHARDS].0;
        let admitted = {
            let mut shard = lock(shard);
            shard.drop_idle(now.saturating_sub(self.idle), DROP_PER_REQUEST);
            shard.admit(key, rule, now)
        };
        self.maybe_sweep(now);
        admitted
    }

    /// Once a second, one request drops the idle keys of every shard it
    /// can lock without waiting, so that shards no request reaches let
    /// their keys go too.
    fn maybe_sweep(&self, now: u64) {
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now.saturating_sub(last) < SWEEP_EVERY_NS
            || self
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let before = now.saturating_sub(self.idle);
        for shard in self.shards.iter() {
            if let Ok(mut shard) = shard.0.try_lock() {
                shard.drop_idle(before, usize::MAX);
            }
        }
    }
}

/// A shard's lock; a panic elsewhere cannot leave a bucket half-written
/// (each update is one assignment), so a poisoned lock is still good.
fn lock(m: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whole seconds until a token, rounded up, at least 1.
fn retry_after(wait_ns: u64) -> u32 {
    u32::try_from(wait_ns.div_ceil(1_000_000_000))
        .unwrap_or(u32::MAX)
        .max(1)
}

#[cfg(test)]
mod tests;
