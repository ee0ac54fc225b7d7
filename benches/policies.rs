//! What the route policies of SPEC §12 cost a request, each measured alone
//! with everything built outside the measured closure:
//!
//! - `rate_limit/route`: the check of a `key = "route"` limit (one atomic
//!   bucket: the clock read and a compare-and-swap), with a rate so high
//!   that every check is admitted, as on a route running below its limit;
//! - `rate_limit/route_2_threads`: the same from two threads at once, the
//!   time per check of each thread (it includes the threads' start);
//! - `rate_limit/client_ip_100k`: a `client_ip` limit already holding
//!   100,000 keys (its cap), each check for the next of 100,000 addresses,
//!   so nearly every lookup finds its key in a full map (hash, shard lock,
//!   LRU move; the <1% of keys whose shard was over its share are dropped
//!   and come back, each time dropping another);
//! - `rate_limit/header_100k`: the same with `key = "header:x-user"`;
//! - `rate_limit/refused`: a check that finds the route's bucket empty;
//! - `header_edits/none` and `/request_2_2`: a typical request head
//!   (8 headers) with no edits and with 2 removals and 2 sets, the head
//!   cloned in the batch setup, not measured.
//!
//! `cargo bench --bench policies`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use figway::config::{RateLimitKey, RateLimitSpec};
use figway::rate_limit::RateLimiter;
use http::{HeaderMap, HeaderName, HeaderValue};

fn limiter(key: RateLimitKey, rate: f64) -> RateLimiter {
    RateLimiter::new(&RateLimitSpec {
        rate,
        burst: 1_000_000,
        key,
    })
}

fn addresses(n: u32) -> Vec<IpAddr> {
    (0..n)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)))
        .collect()
}

fn rate_limit(c: &mut Criterion) {
    let mut g = c.benchmark_group("rate_limit");
    let client: IpAddr = "10.1.2.3".parse().unwrap();
    let empty = HeaderMap::new();

    let route = limiter(RateLimitKey::Route, 1e9);
    g.bench_function("route", |b| {
        b.iter(|| black_box(route.check(black_box(&empty), client)))
    });

    // Two threads on the one bucket at once: the time per check of each,
    // with the cache line moving between cores (the machine's 2 cores).
    g.bench_function("route_2_threads", |b| {
        b.iter_custom(|iters| {
            let started = std::time::Instant::now();
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| {
                        for _ in 0..iters {
                            black_box(route.check(black_box(&empty), client)).ok();
                        }
                    });
                }
            });
            started.elapsed()
        })
    });

    let keyed = limiter(RateLimitKey::ClientIp, 1e9);
    let clients = addresses(100_000);
    for ip in &clients {
        let _ = keyed.check(&empty, *ip);
    }
    // Each of the 64 shards holds its share of the cap, so a shard that
    // gets more than its share drops its oldest: a little under 100,000.
    assert!(
        (95_000..=100_000).contains(&keyed.keys()),
        "{}",
        keyed.keys()
    );
    let mut i = 0;
    g.bench_function("client_ip_100k", |b| {
        b.iter(|| {
            i = (i + 1) % clients.len();
            black_box(keyed.check(&empty, clients[i]))
        })
    });

    let by_header = limiter(RateLimitKey::Header(HeaderName::from_static("x-user")), 1e9);
    let heads: Vec<HeaderMap> = (0..100_000)
        .map(|n| {
            let mut h = HeaderMap::new();
            h.insert(
                "x-user",
                HeaderValue::from_str(&format!("user-{n}")).unwrap(),
            );
            h
        })
        .collect();
    for h in &heads {
        let _ = by_header.check(h, client);
    }
    let mut i = 0;
    g.bench_function("header_100k", |b| {
        b.iter(|| {
            i = (i + 1) % heads.len();
            black_box(by_header.check(&heads[i], client))
        })
    });

    let refusing = RateLimiter::new(&RateLimitSpec {
        rate: 1e-6,
        burst: 1,
        key: RateLimitKey::Route,
    });
    let _ = refusing.check(&empty, client);
    g.bench_function("refused", |b| {
        b.iter(|| black_box(refusing.check(black_box(&empty), client)))
    });
    g.finish();
}

/// A request head as browsers send it.
fn head() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "shop.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
        ),
        ("accept", "text/html,application/xhtml+xml"),
        ("accept-encoding", "gzip, deflate, br"),
        ("cookie", "session=abc123; theme=dark"),
        ("x-debug", "1"),
        ("x-forwarded-for", "203.0.113.7"),
        ("x-request-id", "3f1c2b7a-9d8e-4c1b-a2f3-0e9d8c7b6a51"),
    ] {
        h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    h
}

fn header_edits(c: &mut Criterion) {
    let text = "[listen]\naddress = \"127.0.0.1:0\"\n\
                [upstreams.app]\ntargets = [\"http://127.0.0.1:9\"]\n\
                [[routes]]\nprefix = \"/\"\nto = \"app\"\n\
                [routes.headers]\nrequest_remove = [\"x-debug\", \"cookie\"]\n\
                request_set = { \"x-source\" = \"figway\", \"x-tenant\" = \"shop-eu-1\" }\n";
    let loaded = figway::config::load_str(text, Path::new("bench.toml")).unwrap();
    let edits = loaded.config.routes[0].headers.clone().unwrap();
    let mut g = c.benchmark_group("header_edits");
    g.bench_function("none", |b| {
        b.iter_batched_ref(head, |h| black_box(h.len()), BatchSize::SmallInput)
    });
    g.bench_function("request_2_2", |b| {
        b.iter_batched_ref(
            head,
            |h| figway::headers::edit(h, &edits.request_remove, &edits.request_set),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, rate_limit, header_edits);
criterion_main!(benches);
