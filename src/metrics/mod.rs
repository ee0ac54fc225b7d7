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
use std::sync::{Arc, Mutex};

use prometheus::core::Collector;
use prometheus::{
    Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

mod handles;

pub use handles::{RouteMetrics, UpstreamMetrics};

/// Bucket bounds of `figway_request_duration_seconds`: 1 ms to 30 s
/// (SPEC §8), dense where a proxy's latencies live.
pub const DURATION_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0,
];

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    upstream_info: IntGaugeVec,
    target_healthy: IntGaugeVec,
    upstream_in_flight: IntGaugeVec,
    upstream_endpoints: IntGaugeVec,
    dns_resolutions: IntCounterVec,
    upstream_errors: IntCounterVec,
    ejections: IntCounterVec,
    retries: IntCounterVec,
    fallbacks: IntCounterVec,
    shadow: IntCounterVec,
    ramp_percent: GaugeVec,
    ramp_failures: IntCounterVec,
    rate_limited: IntCounterVec,
    reloads: IntCounterVec,
    last_reload: Gauge,
    pub connections: IntGauge,
    access_log_dropped: IntCounter,
    /// Scrapes reset and refill the table gauges; one at a time.
    scrape: Mutex<()>,
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("{name}: {e}"));
    let _ = registry.register(Box::new(vec.clone()));
    vec
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let vec = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("{name}: {e}"));
    let _ = registry.register(Box::new(vec.clone()));
    vec
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new();
        let r = &registry;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "figway_request_duration_seconds",
                "Time from request head to the end of the response, by route and upstream.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["route", "upstream"],
        )
        .unwrap_or_else(|e| unreachable!("duration: {e}"));
        let _ = registry.register(Box::new(duration.clone()));
        let last_reload = Gauge::new(
            "figway_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load.",
        )
        .unwrap_or_else(|e| unreachable!("last_reload: {e}"));
        let _ = registry.register(Box::new(last_reload.clone()));
        let connections = IntGauge::new(
            "figway_connections_active",
            "Client connections open on the proxy listener.",
        )
        .unwrap_or_else(|e| unreachable!("connections: {e}"));
        let _ = registry.register(Box::new(connections.clone()));
        let access_log_dropped = IntCounter::new(
            "figway_access_log_dropped_total",
            "Access-log lines dropped because the writer fell behind.",
        )
        .unwrap_or_else(|e| unreachable!("access_log_dropped: {e}"));
        let _ = registry.register(Box::new(access_log_dropped.clone()));
        let ramp_percent = GaugeVec::new(
            Opts::new(
                "figway_ramp_percent",
                "The percent a ramp gives its upstream now, by route and upstream.",
            ),
            &["route", "upstream"],
        )
        .unwrap_or_else(|e| unreachable!("ramp_percent: {e}"));
        let _ = registry.register(Box::new(ramp_percent.clone()));
        Metrics {
            ramp_percent,
            ramp_failures: counter_vec(
                r,
                "figway_ramp_failures_total",
                "Ramps stopped by a failed gate, by route and gate (error_rate, p99).",
                &["route", "gate"],
            ),
            requests: counter_vec(
                r,
                "figway_requests_total",
                "Requests answered, by route, upstream and status code.",
                &["route", "upstream", "code"],
            ),
            duration,
            upstream_info: gauge_vec(
                r,
                "figway_upstream_info",
                "1 for each configured upstream; legacy marks the monolith.",
                &["upstream", "legacy"],
            ),
            target_healthy: gauge_vec(
                r,
                "figway_upstream_target_healthy",
                "1 while a target passes its health checks.",
                &["upstream", "target"],
            ),
            upstream_in_flight: gauge_vec(
                r,
                "figway_upstream_in_flight",
                "Requests in flight to an upstream.",
                &["upstream"],
            ),
            upstream_endpoints: gauge_vec(
                r,
                "figway_upstream_endpoints",
                "Endpoints of an upstream: its IP targets and the addresses its target names resolve to.",
                &["upstream"],
            ),
            dns_resolutions: counter_vec(
                r,
                "figway_dns_resolutions_total",
                "Lookups of target names, by upstream and result (ok, empty, error).",
                &["upstream", "result"],
            ),
            upstream_errors: counter_vec(
                r,
                "figway_upstream_errors_total",
                "Failed attempts and refusals, by upstream and x-figway-error kind.",
                &["upstream", "kind"],
            ),
            ejections: counter_vec(
                r,
                "figway_outlier_ejections_total",
                "Outlier ejections, by upstream and target.",
                &["upstream", "target"],
            ),
            retries: counter_vec(
                r,
                "figway_retries_total",
                "Retries, by route and upstream.",
                &["route", "upstream"],
            ),
            fallbacks: counter_vec(
                r,
                "figway_fallbacks_total",
                "Requests a route sent to its fallback, by route, from and to.",
                &["route", "from", "to"],
            ),
            shadow: counter_vec(
                r,
                "figway_shadow_requests_total",
                "Shadow outcomes, by route and result.",
                &["route", "result"],
            ),
            rate_limited: counter_vec(
                r,
                "figway_rate_limited_total",
                "Requests refused by a route's rate limit (429 rate_limited), by route.",
                &["route"],
            ),
            reloads: counter_vec(
                r,
                "figway_config_reloads_total",
                "Config reloads, by result.",
                &["result"],
            ),
            last_reload,
            connections,
            access_log_dropped,
            registry,
            scrape: Mutex::new(()),
        }
    }
}

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
