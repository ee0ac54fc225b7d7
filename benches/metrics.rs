//! What the Prometheus metrics cost (issue 7), in nanoseconds. The hot path
//! records one request with `RouteMetrics::observe(code, seconds)`: the
//! status counter of its (route, upstream) and one duration histogram
//! observation. The handles are resolved once outside the measured closure,
//! as a compiled route table holds them (`Metrics::route("orders",
//! "orders", None)`); the bench measures `observe(200, 0.0042)` (a common
//! status, a fixed-table counter), `observe(418, 0.0042)` (a rare status,
//! the locked-map path), and, off the hot path, `Metrics::render` of a
//! snapshot of 50 routes and 3 upstreams (compiled from a config string with
//! `config::load_str` and `state::compile::compile`, every route having
//! counted a 200 and a 404), which is what one scrape of `/metrics` costs.
//! `cargo bench --bench metrics`.

use std::path::Path;
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use figway::metrics::Metrics;
use figway::upstream::Registry;

const ROUTES: usize = 50;

/// 50 routes over three upstreams (the legacy monolith and two services).
fn config() -> String {
    let mut toml = String::from(
        "[listen]\naddress = \"127.0.0.1:0\"\n[log]\naccess_log = false\n\
         [upstreams.monolith]\nlegacy = true\n\
         targets = [\"http://10.0.0.1:8080\", \"http://10.0.0.2:8080\"]\n\
         [upstreams.orders]\ntargets = [\"http://10.0.1.1:8080\", \"http://10.0.1.2:8080\"]\n\
         [upstreams.users]\ntargets = [\"http://10.0.2.1:8080\"]\n",
    );
    for i in 0..ROUTES {
        let to = ["monolith", "orders", "users"][i % 3];
        toml.push_str(&format!(
            "[[routes]]\nname = \"route{i}\"\nprefix = \"/api/r{i}\"\nto = \"{to}\"\n"
        ));
    }
    toml
}

fn observe(c: &mut Criterion) {
    let mut group = c.benchmark_group("metrics");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));

    let metrics = Metrics::default();
    let route = metrics.route("orders", "orders", None);
    group.bench_function("observe_200", |b| {
        b.iter(|| route.observe(black_box(200), black_box(0.0042)))
    });
    group.bench_function("observe_418_rare_code", |b| {
        b.iter(|| route.observe(black_box(418), black_box(0.0042)))
    });

    let registry = Registry::default();
    let loaded = figway::config::load_str(&config(), Path::new("bench.toml"))
        .unwrap_or_else(|e| panic!("bench config invalid:\n{e}"));
    let snapshot = figway::state::compile::compile(&loaded, &registry);
    assert_eq!(snapshot.routes.len(), ROUTES);
    registry.metrics.loaded_at_start();
    for r in snapshot.routes.iter() {
        for (_, m) in r.metrics.iter() {
            m.observe(200, 0.012);
            m.observe(404, 0.003);
        }
    }
    let size = snapshot.render_metrics(&registry.metrics).len();
    group.bench_function(format!("render_{ROUTES}_routes_{size}_bytes"), |b| {
        b.iter(|| black_box(black_box(&snapshot).render_metrics(&registry.metrics)))
    });
    group.finish();
}

criterion_group!(benches, observe);
criterion_main!(benches);
