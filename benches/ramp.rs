//! A ramp's cost on the request path (SPEC §11): the side choice on a ramp
//! route against a plain split of the same weights (`decision::choose_side`
//! with and without a sticky key: the ramp adds one wall-clock read, one
//! atomic load and its layout's binary search), and the window record of an
//! answer the split sent to `to` (`Ramp::record`: one clock read and three
//! relaxed adds). Both routes are compiled from a config string through the
//! public API outside the measured closures; the ramp's clock is set inside
//! its schedule, so the layout is a step's, not the configured one's.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use figway::decision::choose_side;
use figway::state::compile::compile;
use figway::upstream::Registry;
use http::{HeaderMap, HeaderValue};

/// Two routes of the same three-way split: `plain`, and `ramped` with a
/// ramp on its `users` side; `sticky` picks the sticky variants.
fn config(sticky: bool) -> String {
    let sticky = if sticky {
        "sticky = \"header:x-user-id\"\n"
    } else {
        ""
    };
    format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n[log]\naccess_log = false\n\
         [upstreams.users]\ntargets = [\"http://10.0.0.1:80\"]\n\
         [upstreams.monolith]\ntargets = [\"http://10.0.0.2:80\"]\n\
         [upstreams.old]\ntargets = [\"http://10.0.0.3:80\"]\n\
         [[routes]]\nname = \"plain\"\nprefix = \"/plain\"\n{sticky}\
         split = [{{ to = \"users\", weight = 25 }}, {{ to = \"monolith\", weight = 50 }}, {{ to = \"old\", weight = 25 }}]\n\
         [[routes]]\nname = \"ramped\"\nprefix = \"/ramped\"\n{sticky}\
         split = [{{ to = \"users\", weight = 0 }}, {{ to = \"monolith\", weight = 50 }}, {{ to = \"old\", weight = 25 }}]\n\
         [routes.ramp]\nto = \"users\"\nstart = \"2030-01-01T00:00:00Z\"\n\
         steps = [1, 5, 25, 50, 100]\nhold = \"1h\"\nmax_error_rate = 0.05\nmax_p99 = \"800ms\"\n"
    )
}

fn side_choice(c: &mut Criterion) {
    let mut group = c.benchmark_group("ramp_side");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    let client: IpAddr = [10, 1, 2, 3].into();
    for sticky in [false, true] {
        let loaded = figway::config::load_str(&config(sticky), Path::new("bench.toml"))
            .unwrap_or_else(|e| panic!("bench config invalid:\n{e}"));
        let registry = Registry::default();
        // Step 2 (25%) of the ramp.
        registry.wall.set(1_893_456_000_000 + 2 * 3_600_000 + 1);
        let snapshot = compile(&loaded, &registry);
        let mut headers = HeaderMap::new();
        if sticky {
            headers.insert("x-user-id", HeaderValue::from_static("user-4711"));
        }
        let kind = if sticky { "sticky" } else { "random" };
        for route in snapshot.routes.iter() {
            assert_eq!(route.ramp.is_some(), &*route.name == "ramped");
            group.bench_function(format!("{}_{kind}", route.name), |b| {
                b.iter(|| choose_side(black_box(route), black_box(&headers), client))
            });
        }
    }
    group.finish();
}

fn window_record(c: &mut Criterion) {
    let loaded = figway::config::load_str(&config(false), Path::new("bench.toml"))
        .unwrap_or_else(|e| panic!("bench config invalid:\n{e}"));
    let registry = Registry::default();
    let snapshot = compile(&loaded, &registry);
    let ramp = snapshot.routes[1].ramp.as_ref().expect("a ramp");
    let mut group = c.benchmark_group("ramp_window");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    let mut i = 0u32;
    group.bench_function("record", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let latency = Duration::from_micros(u64::from(i & 0xffff));
            ramp.record(black_box(i.is_multiple_of(50)), black_box(latency))
        })
    });
    group.finish();
}

criterion_group!(benches, side_choice, window_record);
criterion_main!(benches);
