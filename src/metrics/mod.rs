//! Prometheus metrics (SPEC §8), exposed by the admin server at `/metrics`.
//!
//! Handles are resolved when a snapshot is compiled: every (route, upstream)
//! pair a route can send to gets a [`RouteMetrics`] with its histogram,
//! retry and fallback counters, and a table of request counters by status
//! code filled on first use; the hot path indexes that table and never looks
//! a label set up by string. Labels come from the config alone (route,
//! upstream, target, code, kind, result): no path, no client address.
//!
//! Gauges that describe the current table (upstream info, target health,
//! in-flight) are set from the snapshot at scrape time ([`Metrics::render`]
//! with [`TableGauges`]). When a reload removes routes or upstreams,
//! `state::compile::forget` works out which, and the `forget_*` methods here
//! remove their series, so dashboards stop showing what no longer exists.
//! This module knows nothing of snapshots.

use std::collections::HashSet;
use std::sync::Arc;

use prometheus::core::Collector;
use prometheus::{IntCounter, TextEncoder};

mod families;
mod handles;

pub use families::{Metrics, DURATION_BUCKETS};
pub use handles::{RouteMetrics, UpstreamMetrics};

impl Metrics {
    /// Handles for requests of `route` that go to `upstream`; `fallback` is
    /// the route's fallback, when it has one and `upstream` is not it.
    pub fn route(&self, route: &str, upstream: &str, fallback: Option<&str>) -> Arc<RouteMetrics> {
        Arc::new(RouteMetrics::new(
            (route, upstream),
            self.requests.clone(),
            self.duration.with_label_values(&[route, upstream]),
            self.retries.with_label_values(&[route, upstream]),
            fallback.map(|to| (to, self.fallbacks.with_label_values(&[route, upstream, to]))),
        ))
    }

    /// Handles for upstream `name` with targets `targets` (`host:port`).
    pub fn upstream(&self, name: &str, targets: &[&str]) -> UpstreamMetrics {
        UpstreamMetrics::new(
            name,
            self.upstream_errors.clone(),
            targets
                .iter()
                .map(|t| self.ejections.with_label_values(&[name, t]))
                .collect(),
        )
    }

    /// One counter per shadow outcome, in [`ShadowOutcome::ALL`] order.
    pub fn shadow(&self, route: &str) -> [IntCounter; 4] {
        ShadowOutcome::ALL.map(|o| self.shadow.with_label_values(&[route, o.as_str()]))
    }

    /// A ramp's failure counters, by gate in `ramp::Gate::ALL` order
    /// (`error_rate`, `p99`): both exist at 0 from the load.
    pub fn ramp_failures(&self, route: &str) -> [IntCounter; 2] {
        ["error_rate", "p99"].map(|gate| self.ramp_failures.with_label_values(&[route, gate]))
    }

    /// Removes a ramp's failure counters (its route, or its ramp, is gone).
    pub fn forget_ramp(&self, route: &str) {
        for gate in ["error_rate", "p99"] {
            let _ = self.ramp_failures.remove_label_values(&[route, gate]);
        }
    }

    /// The counter of `route`'s refusals by its rate limit, present (at
    /// zero) from the moment the limit is loaded.
    pub fn rate_limited(&self, route: &str) -> IntCounter {
        self.rate_limited.with_label_values(&[route])
    }

    /// Removes the refusal counter of a route whose rate limit is gone.
    pub fn forget_rate_limited(&self, route: &str) {
        let _ = self.rate_limited.remove_label_values(&[route]);
    }

    /// A reload's result; a success also moves the success timestamp.
    pub fn reloaded(&self, ok: bool) {
        self.reloads
            .with_label_values(&[if ok { "success" } else { "error" }])
            .inc();
        if ok {
            self.loaded_at_start();
        }
    }

    /// The first load is a successful load too, though not a reload: the
    /// timestamp starts at process start and both counters exist at zero.
    pub fn loaded_at_start(&self) {
        for result in ["success", "error"] {
            let _ = self.reloads.with_label_values(&[result]);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_reload.set(now);
    }

    /// The text exposition; `fill` sets the gauges that describe the
    /// current table (upstream info, target health, in-flight) first.
    pub fn render(&self, fill: impl FnOnce(&TableGauges)) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        self.upstream_info.reset();
        self.target_healthy.reset();
        self.upstream_in_flight.reset();
        self.upstream_endpoints.reset();
        self.ramp_percent.reset();
        fill(&TableGauges(self));
        let mut out = String::new();
        let _ = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out);
        out
    }

    /// Removes the series of (route, upstream) pairs that a reload
    /// dropped: their histograms, retry and fallback counters, and request
    /// counters of every code they ever counted (read off the series that
    /// exist, so codes counted under earlier snapshots go too).
    pub fn forget_pairs(&self, gone: &[&RouteMetrics]) {
        if gone.is_empty() {
            return;
        }
        let mut pairs: HashSet<(&str, &str)> = HashSet::new();
        for m in gone {
            let (route, upstream) = (&*m.route, &*m.upstream);
            let _ = self.duration.remove_label_values(&[route, upstream]);
            let _ = self.retries.remove_label_values(&[route, upstream]);
            self.forget_fallback(m);
            pairs.insert((route, upstream));
        }
        let family = Collector::collect(&self.requests);
        for series in family.iter().flat_map(|f| f.get_metric()) {
            let label = |name: &str| {
                series
                    .get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map_or("", |l| l.value())
            };
            if pairs.contains(&(label("route"), label("upstream"))) {
                let _ = self.requests.remove_label_values(&[
                    label("route"),
                    label("upstream"),
                    label("code"),
                ]);
            }
        }
    }

    /// Removes the fallback counter of a pair whose fallback changed.
    pub fn forget_fallback(&self, pair: &RouteMetrics) {
        if let Some(to) = pair.fallback_name() {
            let _ = self
                .fallbacks
                .remove_label_values(&[&*pair.route, &*pair.upstream, to]);
        }
    }

    /// Removes a route's shadow outcome counters.
    pub fn forget_shadow(&self, route: &str) {
        for o in ShadowOutcome::ALL {
            let _ = self.shadow.remove_label_values(&[route, o.as_str()]);
        }
    }

    /// One lookup of one of `upstream`'s target names; `result` is `ok`,
    /// `empty` or `error`.
    pub fn dns_resolved(&self, upstream: &str, result: &str) {
        self.dns_resolutions
            .with_label_values(&[upstream, result])
            .inc();
    }

    /// Removes the lookup counters of an upstream that is gone.
    pub fn forget_dns(&self, upstream: &str) {
        for result in ["ok", "empty", "error"] {
            let _ = self
                .dns_resolutions
                .remove_label_values(&[upstream, result]);
        }
    }

    /// Removes the ejection counter of one target of an upstream.
    pub fn forget_target(&self, upstream: &str, target: &str) {
        let _ = self.ejections.remove_label_values(&[upstream, target]);
    }
}

/// The gauges a scrape sets from the current table.
pub struct TableGauges<'m>(&'m Metrics);

impl TableGauges<'_> {
    /// Brings `figway_access_log_dropped_total` up to the access log's own
    /// count (kept by the log, which knows nothing of metrics).
    pub fn access_log_dropped(&self, total: u64) {
        let counter = &self.0.access_log_dropped;
        let counted = counter.get();
        if total > counted {
            counter.inc_by(total - counted);
        }
    }

    pub fn upstream(&self, name: &str, legacy: bool, in_flight: usize, endpoints: usize) {
        let m = self.0;
        m.upstream_endpoints
            .with_label_values(&[name])
            .set(i64::try_from(endpoints).unwrap_or(i64::MAX));
        m.upstream_info
            .with_label_values(&[name, if legacy { "true" } else { "false" }])
            .set(1);
        m.upstream_in_flight
            .with_label_values(&[name])
            .set(i64::try_from(in_flight).unwrap_or(i64::MAX));
    }

    /// `figway_ramp_percent`: the percent a ramp gives `upstream` now.
    pub fn ramp_percent(&self, route: &str, upstream: &str, percent: f64) {
        self.0
            .ramp_percent
            .with_label_values(&[route, upstream])
            .set(percent);
    }

    pub fn target(&self, upstream: &str, target: &str, healthy: bool) {
        self.0
            .target_healthy
            .with_label_values(&[upstream, target])
            .set(i64::from(healthy));
    }
}

/// What became of one shadow request (SPEC §4), the `result` label of
/// `figway_shadow_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShadowOutcome {
    Match,
    Mismatch,
    Error,
    Skipped,
}

impl ShadowOutcome {
    pub const ALL: [ShadowOutcome; 4] = [
        ShadowOutcome::Match,
        ShadowOutcome::Mismatch,
        ShadowOutcome::Error,
        ShadowOutcome::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ShadowOutcome::Match => "match",
            ShadowOutcome::Mismatch => "mismatch",
            ShadowOutcome::Error => "error",
            ShadowOutcome::Skipped => "skipped",
        }
    }
}
