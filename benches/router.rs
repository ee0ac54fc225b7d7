//! Route lookup cost against table size (SPEC §3: 10,000 routes must route as
//! fast as 10). Tables are built outside the measured closure; each bench
//! measures one lookup of a request path three segments deep, for a route in
//! the middle of the table, and one path that falls back to `/`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use figway::config::HostPattern;
use figway::router::{RouteKey, Router};
use http::Method;

struct Spec {
    prefix: String,
    host: Option<HostPattern>,
    methods: Option<Vec<Method>>,
}

/// `n` routes shaped like a real table: service prefixes two segments deep,
/// every fifth with a host, every seventh with methods, and a root route.
fn table(n: usize) -> Vec<Spec> {
    let mut specs: Vec<Spec> = (1..n)
        .map(|i| Spec {
            prefix: format!("/api/svc{i}"),
            host: (i % 5 == 0).then(|| HostPattern::Exact(format!("tenant{i}.example.com"))),
            methods: (i % 7 == 0).then(|| vec![Method::GET, Method::HEAD]),
        })
        .collect();
    specs.push(Spec {
        prefix: "/".into(),
        host: None,
        methods: None,
    });
    specs
}

fn build(specs: &[Spec]) -> Router {
    Router::build(specs.iter().map(|s| RouteKey {
        prefix: &s.prefix,
        host: s.host.as_ref(),
        methods: s.methods.as_deref(),
    }))
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("router_lookup");
    for n in [10usize, 1_000, 10_000] {
        let specs = table(n);
        let router = build(&specs);
        let mid = n / 2 + 1;
        let hit = format!("/api/svc{mid}/items/42");
        assert!(router
            .lookup(Some("shop.example.com"), &Method::GET, &hit)
            .is_some());
        group.bench_with_input(BenchmarkId::new("hit", n), &hit, |b, path| {
            b.iter(|| {
                router.lookup(
                    black_box(Some("shop.example.com:8080")),
                    black_box(&Method::GET),
                    black_box(path),
                )
            })
        });
        group.bench_with_input(
            BenchmarkId::new("fallback_root", n),
            "/static/app.js",
            |b, path| {
                b.iter(|| {
                    router.lookup(
                        black_box(Some("shop.example.com")),
                        black_box(&Method::GET),
                        black_box(path),
                    )
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
