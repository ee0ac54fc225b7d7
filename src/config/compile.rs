//! Turns a validated [`Loaded`] config into the [`Snapshot`] the hot path
//! reads: the router trie, upstreams with their round-robin schedules and
//! targets from the registry (so pools survive reloads).

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
    let routes: Box<[Route]> = config
        .routes
        .iter()
        .map(|r| Route {
            name: r.name.as_str().into(),
            prefix: r.prefix.as_str().into(),
            host: r.host.clone(),
            methods: r.methods.as_ref().map(|m| m.clone().into_boxed_slice()),
            sides: r.sides.clone().into_boxed_slice(),
            split: r.split,
            bucket_ends: crate::decision::bucket_ends(&r.sides),
            total_weight: r.sides.iter().map(|s| u64::from(s.weight)).sum(),
            sticky: r.sticky.clone(),
            shadow: r.shadow.clone().map(Shadow::new),
            fallback: r.fallback,
            fallbacks: Default::default(),
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
    }
}
