//! The immutable runtime form of one config file: the [`Snapshot`] a
//! request loads once and reads to its end, and its [`Route`]s. Built by
//! `compile`; swapped in whole by `reload`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::Method;

use prometheus::IntCounter;

use crate::config::{HeaderEdits, HostPattern, KeySource, Side};
use crate::inventory::Pair;
use crate::matching::Conditions;
use crate::metrics::{Metrics, RouteMetrics};
use crate::ramp::Ramp;
use crate::rate_limit::RateLimiter;
use crate::router::Router;
use crate::shadow::Shadow;
use crate::upstream::Upstream;

/// The immutable runtime form of one config file.
pub struct Snapshot {
    pub router: Router,
    /// In config order; the router's indices point here.
    pub routes: Box<[Route]>,
    pub upstreams: Box<[Upstream]>,
    /// Whether lines are written: the config says so and `RUST_LOG` lets
    /// `figway::access` through (decided here, not per request).
    pub access_log: bool,
    pub version: String,
    /// Requests that match no route count as route="", upstream="".
    pub no_route: Arc<RouteMetrics>,
}

pub struct Route {
    pub name: Box<str>,
    /// `name` as the access log's JSON writes it, rendered here once.
    pub log_name: Box<str>,
    pub prefix: Box<str>,
    pub host: Option<HostPattern>,
    pub methods: Option<Box<[Method]>>,
    /// `to` as a single side, or the `split` sides in config order.
    pub sides: Box<[Side]>,
    /// Whether the config said `split` rather than `to`.
    pub split: bool,
    /// End of each side's range in the sticky bucket space (see
    /// [`crate::sticky`]); a side of weight 0 has an empty range.
    pub bucket_ends: Box<[u64]>,
    pub total_weight: u64,
    pub sticky: Option<KeySource>,
    pub shadow: Option<Shadow>,
    /// `[routes.ramp]`: the split's layouts per step and its verdict; the
    /// side chosen by `decision` follows it instead of `bucket_ends`.
    pub ramp: Option<Box<Ramp>>,
    /// Index into `Snapshot::upstreams`; serves when the chosen side cannot.
    pub fallback: Option<usize>,
    /// Metric handles for each upstream the route can send to (its sides
    /// and fallback), by index into `Snapshot::upstreams`.
    pub metrics: Box<[(usize, Arc<RouteMetrics>)]>,
    /// The legacy inventory's pair for each legacy upstream the route can
    /// send to (sides and fallback), by index into `Snapshot::upstreams`;
    /// empty when none is legacy or the inventory is off.
    pub inventory: Box<[(usize, Arc<Pair>)]>,
    pub strip_prefix: bool,
    pub rewrite_prefix: Option<Box<str>>,
    /// `[routes.match]`, shared with the router, which checks them.
    pub conditions: Option<Arc<Conditions>>,
    /// `[routes.headers]`; boxed: most routes have none.
    pub headers: Option<Box<HeaderEdits>>,
    pub rate_limit: Option<RouteLimit>,
}

/// A route's rate limit with its counters, resolved at compile.
pub struct RouteLimit {
    /// Shared with the previous snapshot's route when a reload kept the
    /// route's name and its `rate_limit`: its buckets carry on.
    pub limiter: Arc<RateLimiter>,
    /// `figway_rate_limited_total{route}`.
    pub limited: IntCounter,
    /// Refused requests never reach an upstream: route=NAME, upstream="".
    pub metrics: Arc<RouteMetrics>,
}

impl Route {
    /// The handles for requests of this route that go to `upstream`.
    pub fn metrics_for(&self, upstream: usize) -> &Arc<RouteMetrics> {
        self.metrics
            .iter()
            .find(|(u, _)| *u == upstream)
            .map_or(&self.metrics[0].1, |(_, m)| m)
    }
}

impl Snapshot {
    /// The metrics exposition, with the gauges that describe this table.
    pub fn render_metrics(&self, metrics: &Metrics) -> String {
        metrics.render(|gauges| {
            gauges.access_log_dropped(crate::access_log::dropped());
            for u in self.upstreams.iter() {
                let in_flight = u.shared.in_flight.load(Ordering::Relaxed);
                gauges.upstream(&u.name, u.legacy, in_flight, u.targets.len());
                for t in u.targets.iter() {
                    gauges.target(&u.name, &t.authority, t.healthy.load(Ordering::Relaxed));
                }
            }
            for r in self.routes.iter() {
                if let Some(ramp) = &r.ramp {
                    let to = &self.upstreams[r.sides[ramp.spec.to].upstream].name;
                    gauges.ramp_percent(&r.name, to, ramp.status().percent);
                }
            }
        })
    }
}
