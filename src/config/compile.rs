//! Turns a validated [`Loaded`] config into the [`Snapshot`] the hot path
//! reads: the router trie, upstreams with their round-robin schedules and
//! targets from the registry (so pools survive reloads), and the metric
//! handles of every (route, upstream) pair.

use crate::config::Loaded;
use crate::router::{RouteKey, Router};
use crate::shadow::Shadow;
use crate::state::{Route, Snapshot};
use crate::upstream::{Registry, Upstream};

pub fn compile(loaded: &Loaded, registry: &Registry) -> Snapshot {
    let config = &loaded.config;
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
                let mut handles: Vec<(usize, _)> = r
                    .sides
                    .iter()
                    .map(|s| {
                        (
                            s.upstream,
                            metrics.route(&r.name, name(s.upstream), fallback),
                        )
                    })
                    .collect();
                if let Some(f) = r.fallback {
                    handles.push((f, metrics.route(&r.name, name(f), None)));
                }
                handles.into_boxed_slice()
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
            shadow: r
                .shadow
                .clone()
                .map(|spec| Shadow::new(spec, metrics.shadow(&r.name))),
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
