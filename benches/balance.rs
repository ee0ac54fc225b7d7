//! Target selection cost (issue 5): one `Upstream::pick` for `round_robin`,
//! `least_request` and `hash` with 2, 16 and 256 targets, all healthy,
//! nothing tried yet. Each upstream is compiled from a config string through
//! the public API (`config::load_str`, then `Upstream::new`) outside the
//! measured closure; `hash` cycles through 1,024 key hashes computed
//! beforehand, so the figure is the ring lookup alone and not always the
//! same ring position.

use std::path::Path;
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use figway::clock;
use figway::upstream::balance::Tried;
use figway::upstream::{Registry, Upstream};

const ALGORITHMS: [&str; 3] = ["round_robin", "least_request", "hash"];
const SIZES: [usize; 3] = [2, 16, 256];
/// Precomputed key hashes `hash` cycles through (a power of two).
const KEYS: usize = 1024;

/// A config with one upstream of `n` targets balanced by `algorithm`, and a
/// route to it.
fn config(algorithm: &str, n: usize) -> String {
    let targets = (0..n)
        .map(|i| format!("\"http://10.0.{}.{}:8080\"", i / 250, i % 250 + 1))
        .collect::<Vec<_>>()
        .join(", ");
    let hash_key = if algorithm == "hash" {
        "hash_key = \"header:x-user-id\"\n"
    } else {
        ""
    };
    format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n[log]\naccess_log = false\n\
         [upstreams.svc]\ntargets = [{targets}]\nbalance = \"{algorithm}\"\n{hash_key}\
         [[routes]]\nprefix = \"/\"\nto = \"svc\"\n"
    )
}

fn upstream(algorithm: &str, n: usize, registry: &Registry) -> Upstream {
    let loaded = figway::config::load_str(&config(algorithm, n), Path::new("bench.toml"))
        .unwrap_or_else(|e| panic!("bench config invalid:\n{e}"));
    Upstream::new(&loaded.config.upstreams[0], registry)
}

fn pick(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    let registry = Registry::default();
    let keys: Vec<u64> = (0..KEYS)
        .map(|k| figway::hash::stable_hash(format!("user-{k}").as_bytes()))
        .collect();
    let tried = Tried::default();
    let now = clock::now_ms();
    for algorithm in ALGORITHMS {
        for n in SIZES {
            let upstream = upstream(algorithm, n, &registry);
            assert_eq!(upstream.targets.len(), n);
            assert!(upstream.pick(Some(keys[0]), &tried, now).is_some());
            let hashed = algorithm == "hash";
            group.bench_with_input(BenchmarkId::new(algorithm, n), &n, |b, _| {
                let mut i = 0usize;
                b.iter(|| {
                    i = i.wrapping_add(1);
                    let key = hashed.then(|| keys[i & (KEYS - 1)]);
                    upstream.pick(black_box(key), black_box(&tried), black_box(now))
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, pick);
criterion_main!(benches);
