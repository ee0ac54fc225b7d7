//! The handles the hot path holds, resolved when a snapshot is compiled:
//! one [`RouteMetrics`] per (route, upstream) pair (histogram, retry and
//! fallback counters, and a table of request counters by status code filled
//! on first use) and one [`UpstreamMetrics`] per upstream. Counting never
//! looks a label set up by string, except for rare status codes.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use prometheus::{Histogram, IntCounter, IntCounterVec};

use crate::error::ErrorKind;

/// Status codes whose counters sit in a fixed table; others go through a
/// small locked map (rare by definition).
const HOT_CODES: [u16; 32] = [
    200, 201, 202, 204, 206, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 408, 409, 410,
    412, 413, 415, 422, 429, 431, 499, 500, 501, 502, 503, 504, 505,
];

/// The handles for one (route, upstream) pair.
pub struct RouteMetrics {
    pub route: Box<str>,
    pub upstream: Box<str>,
    hot: [OnceLock<IntCounter>; HOT_CODES.len()],
    other: Mutex<HashMap<u16, IntCounter>>,
    requests: IntCounterVec,
    duration: Histogram,
    retries: IntCounter,
    /// The fallback's name and the counter of requests sent to it.
    fallback: Option<(Box<str>, IntCounter)>,
}

impl RouteMetrics {
    pub(super) fn new(
        (route, upstream): (&str, &str),
        requests: IntCounterVec,
        duration: Histogram,
        retries: IntCounter,
        fallback: Option<(&str, IntCounter)>,
    ) -> RouteMetrics {
        RouteMetrics {
            route: route.into(),
            upstream: upstream.into(),
            hot: Default::default(),
            other: Mutex::new(HashMap::new()),
            requests,
            duration,
            retries,
            fallback: fallback.map(|(to, c)| (to.into(), c)),
        }
    }

    /// Whether these handles count fallbacks to `to` (reusable as they are).
    pub fn falls_back_to(&self, to: Option<&str>) -> bool {
        self.fallback_name() == to
    }

    pub fn fallback_name(&self) -> Option<&str> {
        self.fallback.as_ref().map(|(t, _)| &**t)
    }

    /// One finished request: its status code and how long it took.
    pub fn observe(&self, code: u16, seconds: f64) {
        self.duration.observe(seconds);
        match HOT_CODES.binary_search(&code) {
            Ok(i) => self.hot[i].get_or_init(|| self.counter(code)).inc(),
            Err(_) => {
                let mut other = self.other.lock().unwrap_or_else(|e| e.into_inner());
                other
                    .entry(code)
                    .or_insert_with(|| self.counter(code))
                    .inc();
            }
        }
    }

    fn counter(&self, code: u16) -> IntCounter {
        let buf = itoa_u16(code);
        let code = std::str::from_utf8(&buf).unwrap_or("000");
        self.requests
            .with_label_values(&[&*self.route, &*self.upstream, code])
    }

    pub fn retried(&self) {
        self.retries.inc();
    }

    pub fn fell_back(&self) {
        if let Some((_, f)) = &self.fallback {
            f.inc();
        }
    }
}

/// Three ASCII digits of a status code, without allocating.
fn itoa_u16(code: u16) -> [u8; 3] {
    let code = code.min(999);
    [
        b'0' + (code / 100) as u8,
        b'0' + (code / 10 % 10) as u8,
        b'0' + (code % 10) as u8,
    ]
}

/// The kinds an upstream's attempts and refusals can fail with; their
/// counters exist from the moment the upstream does, at zero, so that the
/// first failure of each kind shows in `rate()` and `increase()`.
const UPSTREAM_KINDS: [ErrorKind; 5] = [
    ErrorKind::UpstreamConnect,
    ErrorKind::UpstreamReset,
    ErrorKind::UpstreamTimeout,
    ErrorKind::NoHealthyUpstream,
    ErrorKind::CircuitOpen,
];

/// The handles of one upstream.
pub struct UpstreamMetrics {
    name: Box<str>,
    errors: IntCounterVec,
    /// Parallel to [`UPSTREAM_KINDS`].
    by_kind: [IntCounter; 5],
    /// Parallel to the upstream's targets; zero until the first ejection.
    ejections: Box<[IntCounter]>,
}

impl UpstreamMetrics {
    pub(super) fn new(name: &str, errors: IntCounterVec, ejections: Box<[IntCounter]>) -> Self {
        UpstreamMetrics {
            name: name.into(),
            by_kind: UPSTREAM_KINDS.map(|k| errors.with_label_values(&[name, k.as_str()])),
            errors,
            ejections,
        }
    }

    pub fn error(&self, kind: ErrorKind) {
        if let Some(i) = UPSTREAM_KINDS.iter().position(|k| *k == kind) {
            self.by_kind[i].inc();
        }
    }

    /// Target `index` (in the upstream's target order) was ejected.
    pub fn ejected(&self, index: usize) {
        if let Some(c) = self.ejections.get(index) {
            c.inc();
        }
    }

    pub fn remove(&self) {
        for kind in UPSTREAM_KINDS {
            let _ = self
                .errors
                .remove_label_values(&[&*self.name, kind.as_str()]);
        }
    }
}
