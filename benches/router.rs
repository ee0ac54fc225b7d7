//! Route lookup cost against table size (SPEC §3: 10,000 routes must route as
//! fast as 10). Tables are built outside the measured closure; each bench
//! measures one lookup of a request path three segments deep, for a route in
//! the middle of the table, and one path that falls back to `/`.
//!
//! `router_match` (SPEC §12) does the same with match conditions: every
//! third service prefix also has a route with conditions (a header, a
//! cookie, or a query parameter and a header), and requests that meet them,
//! fail them (falling through to the plain route), or carry cookies and a
//! query to a prefix without conditions (which must cost nothing: they are
//! never parsed). Each lookup includes making the request's facts, as the
//! proxy does per request.

use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use figway::config::{HostPattern, MatchSpec, MatchValue};
use figway::matching::{Conditions, RequestFacts};
use figway::router::{RouteKey, Router};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

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
        conditions: None,
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

/// The conditions of the twin of service `i` (every third one has one).
fn conditions_for(i: usize) -> Option<MatchSpec> {
    let exact = |v: &str| MatchValue::Exact(v.to_string());
    let canary = || (HeaderName::from_static("x-canary"), exact("1"));
    match i % 9 {
        0 => Some(MatchSpec {
            headers: vec![canary()],
            ..MatchSpec::default()
        }),
        3 => Some(MatchSpec {
            cookies: vec![("beta".into(), exact("yes"))],
            ..MatchSpec::default()
        }),
        6 => Some(MatchSpec {
            headers: vec![canary()],
            query: vec![("preview".into(), MatchValue::Present)],
            ..MatchSpec::default()
        }),
        _ => None,
    }
}

/// [`table`] plus, for every third service, a route with conditions at
/// the same prefix and host (its twin without conditions stays behind it).
fn table_with_conditions(n: usize) -> (Vec<Spec>, Vec<Option<Arc<Conditions>>>) {
    let mut specs = table(n);
    let mut conditions: Vec<Option<Arc<Conditions>>> = specs.iter().map(|_| None).collect();
    for i in 1..n {
        if let Some(spec) = conditions_for(i) {
            specs.push(Spec {
                prefix: format!("/api/svc{i}"),
                host: (i % 5 == 0).then(|| HostPattern::Exact(format!("tenant{i}.example.com"))),
                methods: (i % 7 == 0).then(|| vec![Method::GET, Method::HEAD]),
            });
            conditions.push(Some(Arc::new(Conditions::compile(&spec))));
        }
    }
    (specs, conditions)
}

fn build_with(specs: &[Spec], conditions: &[Option<Arc<Conditions>>]) -> Router {
    Router::build(specs.iter().zip(conditions).map(|(s, c)| RouteKey {
        prefix: &s.prefix,
        host: s.host.as_ref(),
        methods: s.methods.as_deref(),
        conditions: c.as_ref(),
    }))
}

fn headers(list: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("shop.example.com:8080"));
    h.insert("user-agent", HeaderValue::from_static("bench/1.0"));
    h.insert("accept", HeaderValue::from_static("*/*"));
    for (n, v) in list {
        h.append(*n, HeaderValue::from_static(v));
    }
    h
}

fn lookup_with_conditions(c: &mut Criterion) {
    let mut group = c.benchmark_group("router_match");
    let cookies = "session=3f2a9c0d41e8; theme=dark; consent=1; beta=yes";
    for n in [10usize, 10_000] {
        let (specs, conditions) = table_with_conditions(n);
        let router = build_with(&specs, &conditions);
        // Services whose twins ask for a header (i % 9 == 0), a cookie
        // (3) and a header and a query parameter (6); and one without.
        let pick = |rest: usize| {
            (n / 2..n)
                .find(|i| i % 9 == rest && i % 5 != 0)
                .unwrap_or(rest)
        };
        let (header_svc, cookie_svc, both_svc) = (pick(0), pick(3), pick(6));
        let plain_svc = (n / 2..n).find(|i| i % 3 != 0 && i % 5 != 0).unwrap_or(1);
        let cases = [
            // Meets the header condition: the twin is taken.
            (
                "header_met",
                header_svc,
                headers(&[("x-canary", "1")]),
                None,
            ),
            // Fails it: the twin is passed over, the plain route taken.
            ("header_failed", header_svc, headers(&[]), None),
            // Cookies parsed (lazily, once) and met.
            (
                "cookie_met",
                cookie_svc,
                headers(&[("cookie", cookies)]),
                None,
            ),
            // Header, then the query parsed and met.
            (
                "header_and_query_met",
                both_svc,
                headers(&[("x-canary", "1")]),
                Some("utm_source=mail&preview=1&page=2"),
            ),
            // No conditions at this prefix: cookies and query never parsed.
            (
                "no_conditions_with_cookies_and_query",
                plain_svc,
                headers(&[("cookie", cookies)]),
                Some("utm_source=mail&preview=1&page=2"),
            ),
        ];
        for (name, svc, headers, query) in cases {
            let path = format!("/api/svc{svc}/items/42");
            let expect_twin = !name.ends_with("failed") && !name.starts_with("no_conditions");
            let found = router
                .lookup_request(
                    Some("shop.example.com"),
                    &Method::GET,
                    &path,
                    &RequestFacts::new(&headers, query),
                )
                .map(|m| m.route);
            // Twins come after the `n` plain routes.
            assert_eq!(found.map(|r| r >= n), Some(expect_twin), "{name} at {n}");
            group.bench_with_input(BenchmarkId::new(name, n), &path, |b, path| {
                b.iter(|| {
                    let facts = RequestFacts::new(black_box(&headers), black_box(query));
                    router.lookup_request(
                        black_box(Some("shop.example.com:8080")),
                        black_box(&Method::GET),
                        black_box(path),
                        &facts,
                    )
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, lookup, lookup_with_conditions);
criterion_main!(benches);
