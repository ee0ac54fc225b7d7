//! Turns a validated [`Loaded`] config into the [`Snapshot`] the hot path
//! reads: the router trie, upstreams with their round-robin schedules and
//! targets from the registry (so health and pooled connections survive
//! reloads), and the metric handles of every (route, upstream) pair. Targets
//! given by name become one endpoint per address in the resolved sets handed
//! in ([`compile_with`]). After a reload or a change of addresses, [`forget`]
//! removes the metric series the new table no longer has.

use std::collections::HashMap;
use std::sync::Arc;

use prometheus::IntCounter;
use rustc_hash::FxHashMap;

use super::snapshot::{Route, RouteLimit, Snapshot};
use crate::config::{Config, Loaded, RouteSpec};
use crate::inventory::{Inventory, Pair};
use crate::matching::Conditions;
use crate::metrics::{Metrics, RouteMetrics};
use crate::ramp::Ramp;
use crate::rate_limit::RateLimiter;
use crate::router::{RouteKey, Router};
use crate::shadow::Shadow;
use crate::upstream::dns::Sets;
use crate::upstream::{Registry, Upstream};

/// The snapshot of `loaded` with no name resolved (targets given by name
/// have no endpoints): for tools and benches that do not resolve.
pub fn compile(loaded: &Loaded, registry: &Registry) -> Snapshot {
    compile_after(loaded, registry, None)
}

/// As [`compile`], reusing the metric handles of `previous` (see
/// [`compile_with`]).
pub fn compile_after(
    loaded: &Loaded,
    registry: &Registry,
    previous: Option<&Snapshot>,
) -> Snapshot {
    compile_with(loaded, registry, previous, &Sets::new())
}

/// The snapshot of `loaded`, its names' endpoints taken from `sets`,
/// reusing the metric handles of `previous` (the snapshot being replaced)
/// for the (route, upstream) pairs that stay: resolving 10,000 label sets
/// again is a good part of a reload's time.
pub fn compile_with(
    loaded: &Loaded,
    registry: &Registry,
    previous: Option<&Snapshot>,
    sets: &Sets,
) -> Snapshot {
    let config = &loaded.config;
    let mut kept: FxHashMap<(&str, &str), &Arc<RouteMetrics>> = FxHashMap::default();
    let mut kept_shadows: FxHashMap<&str, &[IntCounter; 4]> = FxHashMap::default();
    let mut kept_ramps: FxHashMap<&str, &Ramp> = FxHashMap::default();
    let mut kept_limits: FxHashMap<&str, &RouteLimit> = FxHashMap::default();
    for route in previous.map_or(&[][..], |p| &p.routes[..]) {
        if let Some(ramp) = &route.ramp {
            kept_ramps.insert(&route.name, ramp);
        }
        if let Some(limit) = &route.rate_limit {
            kept_limits.insert(&route.name, limit);
        }
        for (_, m) in route.metrics.iter() {
            kept.insert((&route.name, &m.upstream), m);
        }
        if let Some(shadow) = &route.shadow {
            kept_shadows.insert(&route.name, shadow.counters());
        }
    }
    let handles =
        |route: &str, upstream: &str, fallback: Option<&str>| match kept.get(&(route, upstream)) {
            Some(m) if m.falls_back_to(fallback) => Arc::clone(m),
            _ => registry.metrics.route(route, upstream, fallback),
        };
    let upstreams: Box<[Upstream]> = config
        .upstreams
        .iter()
        .map(|u| Upstream::with_endpoints(u, registry, sets))
        .collect();
    registry.sweep();
    registry.inventory.configure(config.inventory);
    let metrics = &registry.metrics;
    let name = |i: usize| config.upstreams[i].name.as_str();
    let routes: Box<[Route]> = config
        .routes
        .iter()
        .map(|r| Route {
            metrics: {
                let fallback = r.fallback.map(name);
                let mut pairs: Vec<(usize, _)> = r
                    .sides
                    .iter()
                    .map(|s| {
                        // A side that is itself the fallback never falls back.
                        let to = fallback.filter(|f| *f != name(s.upstream));
                        (s.upstream, handles(&r.name, name(s.upstream), to))
                    })
                    .collect();
                match r.fallback {
                    Some(f) if !pairs.iter().any(|(u, _)| *u == f) => {
                        pairs.push((f, handles(&r.name, name(f), None)))
                    }
                    _ => {}
                }
                pairs.into_boxed_slice()
            },
            inventory: inventory_pairs(r, config, &registry.inventory),
            name: r.name.as_str().into(),
            log_name: crate::access_log::json_string(&r.name),
            prefix: r.prefix.as_str().into(),
            host: r.host.clone(),
            methods: r.methods.as_ref().map(|m| m.clone().into_boxed_slice()),
            sides: r.sides.clone().into_boxed_slice(),
            split: r.split,
            bucket_ends: crate::sticky::bucket_ends(r.sides.iter().map(|s| s.weight)),
            total_weight: r.sides.iter().map(|s| u64::from(s.weight)).sum(),
            sticky: r.sticky.clone(),
            shadow: r.shadow.clone().map(|spec| {
                let counters = match kept_shadows.get(&*r.name) {
                    Some(c) => (*c).clone(),
                    None => metrics.shadow(&r.name),
                };
                Shadow::new(spec, counters)
            }),
            ramp: r.ramp.clone().map(|spec| {
                let split = r
                    .sides
                    .iter()
                    .map(|s| (Box::from(name(s.upstream)), s.weight))
                    .collect();
                Box::new(Ramp::new(
                    &r.name,
                    &r.sides,
                    split,
                    spec,
                    registry.wall.clone(),
                    kept_ramps.get(&*r.name).copied(),
                    || metrics.ramp_failures(&r.name),
                ))
            }),
            fallback: r.fallback,
            strip_prefix: r.strip_prefix,
            rewrite_prefix: r.rewrite_prefix.as_deref().map(Into::into),
            conditions: r
                .conditions
                .as_ref()
                .map(|spec| Arc::new(Conditions::compile(spec))),
            headers: r.headers.clone().map(Box::new),
            rate_limit: r.rate_limit.as_ref().map(|spec| {
                // The buckets carry on while the limit stays as it was; a
                // changed limit starts with full buckets (SPEC §12).
                match kept_limits.get(&*r.name) {
                    Some(kept) if kept.limiter.spec() == spec => RouteLimit {
                        limiter: Arc::clone(&kept.limiter),
                        limited: kept.limited.clone(),
                        metrics: Arc::clone(&kept.metrics),
                    },
                    _ => RouteLimit {
                        limiter: Arc::new(RateLimiter::new(spec)),
                        limited: metrics.rate_limited(&r.name),
                        metrics: handles(&r.name, "", None),
                    },
                }
            }),
        })
        .collect();
    let router = Router::build(routes.iter().map(|r| RouteKey {
        prefix: &r.prefix,
        host: r.host.as_ref(),
        methods: r.methods.as_deref(),
        conditions: r.conditions.as_ref(),
    }));
    Snapshot {
        router,
        routes,
        upstreams,
        access_log: crate::access_log::enabled(config.log.access_log),
        version: loaded.version.clone(),
        no_route: registry.metrics.route("", "", None),
    }
}

/// The inventory's pairs of `route`: one per legacy upstream it can send
/// to, its sides' and its fallback's, each once.
fn inventory_pairs(
    route: &RouteSpec,
    config: &Config,
    inventory: &Inventory,
) -> Box<[(usize, Arc<Pair>)]> {
    let mut pairs: Vec<(usize, Arc<Pair>)> = Vec::new();
    for u in route.sides.iter().map(|s| s.upstream).chain(route.fallback) {
        let upstream = &config.upstreams[u];
        if !upstream.legacy || pairs.iter().any(|(seen, _)| *seen == u) {
            continue;
        }
        if let Some(pair) = inventory.pair(&route.name, &upstream.name) {
            pairs.push((u, pair));
        }
    }
    pairs.into_boxed_slice()
}

/// Removes the series of routes, route/upstream pairs, shadows, upstreams
/// and targets that `old` had and `new` has not.
pub fn forget(metrics: &Metrics, old: &Snapshot, new: &Snapshot) {
    // Indexed once: a 10,000-route table must not cost 10,000² lookups.
    let new_routes: HashMap<&str, &Route> = new.routes.iter().map(|r| (&*r.name, r)).collect();
    let mut gone: Vec<&RouteMetrics> = Vec::new();
    for route in old.routes.iter() {
        let kept = new_routes.get(&*route.name);
        for m in route.metrics.iter().map(|(_, m)| m) {
            let successor = kept.and_then(|k| {
                k.metrics
                    .iter()
                    .find(|(_, n)| n.upstream == m.upstream)
                    .map(|(_, n)| n)
            });
            match successor {
                None => gone.push(m),
                Some(n) if n.fallback_name() != m.fallback_name() => metrics.forget_fallback(m),
                Some(_) => {}
            }
        }
        if route.shadow.is_some() && kept.is_none_or(|k| k.shadow.is_none()) {
            metrics.forget_shadow(&route.name);
        }
        if route.ramp.is_some() && kept.is_none_or(|k| k.ramp.is_none()) {
            metrics.forget_ramp(&route.name);
        }
        if let Some(limit) = &route.rate_limit {
            if kept.is_none_or(|k| k.rate_limit.is_none()) {
                metrics.forget_rate_limited(&route.name);
                gone.push(&limit.metrics);
            }
        }
    }
    metrics.forget_pairs(&gone);
    let new_upstreams: HashMap<&str, &Upstream> =
        new.upstreams.iter().map(|u| (&*u.name, u)).collect();
    for u in old.upstreams.iter() {
        let kept = new_upstreams.get(&*u.name);
        if kept.is_none() {
            u.metrics.remove();
            metrics.forget_dns(&u.name);
        }
        for t in u.targets.iter() {
            if !kept.is_some_and(|k| k.targets.iter().any(|n| n.authority == t.authority)) {
                metrics.forget_target(&u.name, &t.authority);
            }
        }
    }
}
