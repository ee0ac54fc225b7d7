//! Where a 10,000-route reload spends its time: TOML parsing, figway's
//! validation, and compilation, each timed on its own. Run with
//! `cargo run --release --example reload_phases`; `benches/reload.rs`
//! measures the whole path from file write to table in service.

use std::fmt::Write;
use std::path::Path;
use std::time::Instant;

fn generate(n: usize) -> String {
    let mut s = String::from("[listen]\naddress = \"127.0.0.1:0\"\n[upstreams.legacy]\ntargets = [\"http://127.0.0.1:9000\"]\nlegacy = true\n");
    for u in 0..50 {
        let _ = writeln!(
            s,
            "[upstreams.svc{u}]\ntargets = [\"http://127.0.0.1:{}\", \"http://127.0.0.1:{}\"]",
            10_000 + 2 * u,
            10_001 + 2 * u
        );
    }
    s.push_str("[[routes]]\nname = \"legacy\"\nprefix = \"/\"\nto = \"legacy\"\n");
    for i in 1..n {
        let _ = write!(
            s,
            "[[routes]]\nname = \"r{i}\"\nprefix = \"/api/svc{i}\"\nto = \"svc{}\"\n",
            i % 50
        );
        if i % 5 == 0 {
            let _ = writeln!(s, "host = \"tenant{i}.example.com\"");
        }
        if i % 7 == 0 {
            s.push_str("methods = [\"GET\", \"HEAD\"]\n");
        }
    }
    s
}

fn main() {
    let text = generate(10_000);
    let registry = figway::upstream::Registry::default();
    let mut previous: Option<figway::state::Snapshot> = None;
    for round in 0..5 {
        let t = Instant::now();
        let (_doc, errors) = toml::de::DeTable::parse_recoverable(&text);
        assert!(errors.is_empty());
        let parse = t.elapsed();
        let t = Instant::now();
        let loaded = figway::config::load_str(&text, Path::new("figway.toml")).expect("valid");
        let load = t.elapsed();
        let t = Instant::now();
        // As a reload does: handles of routes that stay are reused.
        let snapshot = figway::state::compile::compile_after(&loaded, &registry, previous.as_ref());
        let compile = t.elapsed();
        let t = Instant::now();
        drop(previous.replace(snapshot));
        let drop_time = t.elapsed();
        println!(
            "round {round}: toml parse {:>6.1} ms | load_str (parse + validate) {:>6.1} ms | compile {:>6.1} ms | drop {:>5.1} ms",
            parse.as_secs_f64() * 1e3,
            load.as_secs_f64() * 1e3,
            compile.as_secs_f64() * 1e3,
            drop_time.as_secs_f64() * 1e3
        );
    }
}

#[allow(dead_code)]
fn metrics_only() {
    let m = figway::metrics::Metrics::default();
    for round in 0..3 {
        let t = Instant::now();
        let v: Vec<_> = (0..10_000)
            .map(|i| m.route(&format!("r{i}"), "svc", None))
            .collect();
        println!(
            "metrics.route x10k round {round}: {:.1} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
        drop(v);
    }
    let t = Instant::now();
    let names: Vec<String> = (0..10_000).map(|i| format!("/api/svc{i}")).collect();
    let r = figway::router::Router::build(names.iter().map(|p| figway::router::RouteKey {
        prefix: p,
        host: None,
        methods: None,
        conditions: None,
    }));
    println!(
        "router build x10k: {:.1} ms ({} nodes)",
        t.elapsed().as_secs_f64() * 1e3,
        r.len_nodes()
    );
}
