//! The metric families figway exports (SPEC §8), each registered once
//! per process with its name, help and labels: the one list of what
//! `/metrics` can show. The methods that count, resolve handles and render
//! live beside, in `mod.rs`.

use std::sync::Mutex;

use prometheus::{
    Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry,
};

/// Bucket bounds of `figway_request_duration_seconds`: 1 ms to 30 s
/// (SPEC §8), dense where a proxy's latencies live.
pub const DURATION_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0,
];

pub struct Metrics {
    pub(super) registry: Registry,
    pub(super) requests: IntCounterVec,
    pub(super) duration: HistogramVec,
    pub(super) upstream_info: IntGaugeVec,
    pub(super) target_healthy: IntGaugeVec,
    pub(super) upstream_in_flight: IntGaugeVec,
    pub(super) upstream_endpoints: IntGaugeVec,
    pub(super) dns_resolutions: IntCounterVec,
    pub(super) upstream_errors: IntCounterVec,
    pub(super) ejections: IntCounterVec,
    pub(super) retries: IntCounterVec,
    pub(super) fallbacks: IntCounterVec,
    pub(super) shadow: IntCounterVec,
    pub(super) ramp_percent: GaugeVec,
    pub(super) ramp_failures: IntCounterVec,
    pub(super) rate_limited: IntCounterVec,
    pub(super) reloads: IntCounterVec,
    pub(super) last_reload: Gauge,
    pub connections: IntGauge,
    pub(super) access_log_dropped: IntCounter,
    /// Scrapes reset and refill the table gauges; one at a time.
    pub(super) scrape: Mutex<()>,
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
