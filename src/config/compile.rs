//! Turns a validated [`Loaded`] config into the [`Snapshot`] the hot path
//! reads: the router trie, upstreams with their round-robin schedules and
//! targets from the registry (so pools survive reloads), and the metric
//! handles of every (route, upstream) pair.

use std::sync::Arc;

use prometheus::IntCounter;
use rustc_hash::FxHashMap;

use crate::config::Loaded;
use crate::metrics::RouteMetrics;
use crate::router::{RouteKey, Router};
use crate::shadow::Shadow;
use crate::state::{Route, Snapshot};
use crate::upstream::{Registry, Upstream};

pub fn compile(loaded: &Loaded, registry: &Registry) -> Snapshot {
    compile_after(loaded, registry, None)
}

/// As [`compile`], reusing the metric handles of `previous` (the snapshot
/// being replaced) for the (route, upstream) pairs that stay: resolving
/// 10,000 label sets again is a good part of a reload's time.
pub fn compile_after(
    loaded: &Loaded,
    registry: &Registry,
    previous: Option<&Snapshot>,
) -> Snapshot {
    let config = &loaded.config;
    let mut kept: FxHashMap<(&str, &str), &Arc<RouteMetrics>> = FxHashMap::default();
    let mut kept_shadows: FxHashMap<&str, &[IntCounter; 4]> = FxHashMap::default();
    for route in previous.map_or(&[][..], |p| &p.routes[..]) {
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
        .map(|u| Upstream::new(u, registry))
        .collect();
    registry.sweep();
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
            name: r.name.as_str().into(),
            prefix: r.prefix.as_str().into(),
            host: r.host.clone(),
            methods: r.methods.as_ref().map(|m| m.clone().into_boxed_slice()),
            sides: r.sides.clone().into_boxed_slice(),
            split: r.split,
            bucket_ends: crate::decision::bucket_ends(&r.sides),
            total_weight: r.sides.iter().map(|s| u64::from(s.weight)).sum(),
            sticky: r.sticky.clone(),
            shadow: r.shadow.clone().map(|spec| {
                let counters = match kept_shadows.get(&*r.name) {
                    Some(c) => (*c).clone(),
                    None => metrics.shadow(&r.name),
                };
                Shadow::new(spec, counters)
            }),
            fallback: r.fallback,
            strip_prefix: r.strip_prefix,
            rewrite_prefix: r.rewrite_prefix.as_deref().map(Into::into),
        })
        .collect();
    let router = Router::build(routes.iter().map(|r| RouteKey {
        prefix: &r.prefix,
        host: r.host.as_ref(),
        methods: r.methods.as_deref(),
    }));
    Snapshot {
        router,
        routes,
        upstreams,
        trusted_proxies: config.listen.trusted_proxies.clone().into_boxed_slice(),
        access_log: config.log.access_log,
        version: loaded.version.clone(),
        no_route: registry.metrics.route("", "", None),
    }
}
