//! The legacy inventory's cost per counted request (SPEC §11, goal: under
//! 300 ns): `Pair::record` as the proxy calls it once a legacy upstream
//! answered — normalise the path, fold it into its template in the
//! thread's buffer, lock this thread's summaries, count. Two cases on a
//! full summary of 200 entries (the default capacity):
//!
//! - `hit`: the template is kept already (the common case: a route's
//!   traffic is a few templates); 1,024 paths with different ids, all
//!   folding to 8 kept templates;
//! - `flood`: every request a template never seen (4,096 distinct paths
//!   cycled through a summary of 200, so each one evicts the least counted
//!   entry): the worst case a client can force.
//!
//! `fold` and `observe` measure the two halves apart. Paths are built
//! before the measured closure.

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use figway::config::InventorySpec;
use figway::inventory::{template, Inventory, Sketch};

const PREFIX: &str = "/api/orders";

fn hit_paths() -> Vec<String> {
    const TAILS: [&str; 8] = [
        "",
        "/items",
        "/items/9f1c2b7e4a5d6c8f",
        "/status",
        "/history",
        "/lines/7",
        "/invoice",
        "/shipments/123e4567-e89b-12d3-a456-426614174000",
    ];
    (0..1024)
        .map(|i| format!("{PREFIX}/{}{}", 100_000 + i, TAILS[i % TAILS.len()]))
        .collect()
}

fn flood_paths() -> Vec<String> {
    (0..4096)
        .map(|i| format!("{PREFIX}/report-{i:05}/export"))
        .collect()
}

fn record(c: &mut Criterion) {
    let mut group = c.benchmark_group("inventory");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let inventory = Inventory::default();
    inventory.configure(InventorySpec {
        enabled: true,
        capacity: 200,
    });

    let hit = inventory.pair("orders", "monolith").expect("enabled");
    // Full: 192 other templates, then the 8 the measured paths fold to.
    for i in 0..192 {
        hit.record(PREFIX, &format!("{PREFIX}/filler-{i}/x"), 0);
    }
    let paths = hit_paths();
    for p in &paths {
        hit.record(PREFIX, p, 0);
    }
    let mut i = 0;
    group.bench_function("record/hit", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            hit.record(PREFIX, black_box(&paths[i]), 0);
        })
    });

    let flood = inventory.pair("search", "monolith").expect("enabled");
    let paths = flood_paths();
    for p in &paths {
        flood.record(PREFIX, p, 0);
    }
    let mut i = 0;
    group.bench_function("record/flood", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            flood.record(PREFIX, black_box(&paths[i]), 0);
        })
    });

    let paths = hit_paths();
    let mut out = String::with_capacity(128);
    let mut i = 0;
    group.bench_function("fold", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            template::fold(black_box(&paths[i]), PREFIX, &mut out);
        })
    });

    let mut sketch = Sketch::new(200);
    let templates: Vec<String> = (0..4096)
        .map(|i| format!("{PREFIX}/report-{i:05}/export"))
        .collect();
    for t in &templates {
        sketch.observe(t, 0);
    }
    let mut i = 0;
    group.bench_function("observe/flood", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            sketch.observe(black_box(&templates[i]), 0);
        })
    });
    group.finish();
}

criterion_group!(benches, record);
criterion_main!(benches);
