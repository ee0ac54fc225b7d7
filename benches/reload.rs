//! Hot reload cost with 10,000 routes (issue 4's target: file change to new
//! table in service in under 100 ms). `compile_10k` measures parsing,
//! validating and compiling a generated 10,000-route config (the text is made
//! outside the measured closure). `file_to_service_10k` runs the real reload
//! path: a `Shared` built from a file on disk, `reload::watch` on it inside a
//! tokio runtime, and each iteration writes the file (in place, alternating
//! between two 10,000-route tables that differ in 1% of their routes, a big
//! migration edit, or in every route, the worst case in which every metric
//! series is new) and measures until the
//! snapshot in service carries the new file's sha256, polling every 1 ms. The
//! watcher's quiet period for coalescing event bursts is part of that figure;
//! the rest of the previous reload (it keeps the reload lock while it logs
//! what changed) is waited out untimed, so each iteration is one change.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion, SamplingMode};
use figway::state::Shared;
use sha2::{Digest, Sha256};

const ROUTES: usize = 10_000;
const UPSTREAMS: usize = 50;

/// A config shaped like a real migration table: a legacy catch-all, `n - 1`
/// service prefixes two segments deep (every fifth with a host, every
/// seventh with methods) spread over 50 upstreams of two targets each;
/// `shift` moves every `every`-th route to another upstream, so two shifts
/// make two different tables.
fn generate(n: usize, shift: usize, every: usize) -> String {
    use std::fmt::Write;
    let mut s = String::from(
        "[listen]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n[log]\naccess_log = false\n\n[upstreams.legacy]\ntargets = [\"http://127.0.0.1:9000\"]\nlegacy = true\n",
    );
    for u in 0..UPSTREAMS {
        let _ = writeln!(
            s,
            "[upstreams.svc{u}]\ntargets = [\"http://127.0.0.1:{}\", \"http://127.0.0.1:{}\"]",
            10_000 + 2 * u,
            10_001 + 2 * u
        );
    }
    s.push_str("\n[[routes]]\nname = \"legacy\"\nprefix = \"/\"\nto = \"legacy\"\n");
    for i in 1..n {
        let _ = write!(
            s,
            "\n[[routes]]\nname = \"r{i}\"\nprefix = \"/api/svc{i}\"\nto = \"svc{}\"\n",
            (i + if i % every == 0 { shift } else { 0 }) % UPSTREAMS
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

fn sha256_hex(text: &str) -> String {
    figway::config::hex(&Sha256::digest(text.as_bytes()))
}

fn compile_10k(c: &mut Criterion) {
    let text = generate(ROUTES, 0, 1);
    let path = Path::new("figway.toml");
    let registry = figway::upstream::Registry::default();
    let loaded = figway::config::load_str(&text, path).expect("generated config is valid");
    assert_eq!(loaded.config.routes.len(), ROUTES);
    c.bench_function("compile_10k", |b| {
        b.iter(|| {
            let loaded = figway::config::load_str(black_box(&text), path).unwrap();
            figway::state::compile::compile(&loaded, &registry)
        })
    });
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn file_to_service_10k(c: &mut Criterion) {
    // A migration edit moves a few routes; 1% of 10,000 is a big one.
    file_to_service(c, "one_percent_of_routes_moved", 100);
    // Every route to another upstream: every metric series is new.
    file_to_service(c, "every_route_moved", 1);
}

fn file_to_service(c: &mut Criterion, name: &str, every: usize) {
    let dir = TempDir(std::env::temp_dir().join(format!(
        "figway-bench-reload-{}-{:x}",
        std::process::id(),
        fastrand::u64(..)
    )));
    std::fs::create_dir_all(&dir.0).unwrap();
    let path = dir.0.join("figway.toml");
    let tables = [generate(ROUTES, 1, every), generate(ROUTES, 2, every)];
    let versions = [sha256_hex(&tables[0]), sha256_hex(&tables[1])];
    std::fs::write(&path, &tables[1]).unwrap();

    let loaded = figway::config::load(&path).expect("generated config is valid");
    let shared: Arc<Shared> = Shared::new(&loaded);
    assert_eq!(shared.snapshot.load().version, versions[1]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let watcher = {
        let _in_runtime = runtime.enter();
        figway::reload::watch(shared.clone()).expect("cannot watch the config directory")
    };

    let mut next = 0;
    let mut group = c.benchmark_group("file_to_service_10k");
    // Each iteration also waits, untimed, for its reload to finish (see
    // below): one fixed iteration count per sample keeps the run short.
    group
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(2));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (text, version) = (&tables[next], &versions[next]);
                next = 1 - next;
                let start = Instant::now();
                std::fs::write(&path, text).unwrap();
                while shared.snapshot.load().version != *version {
                    assert!(
                        start.elapsed() < Duration::from_secs(10),
                        "the new table never came into service"
                    );
                    std::thread::sleep(Duration::from_millis(1));
                }
                total += start.elapsed();
                // Untimed: the reload that swapped the table in still holds
                // the reload lock (it logs what changed); let it finish, and
                // let the write's trailing events settle, so the next
                // iteration measures one change on its own.
                runtime.block_on(async { drop(shared.reload_lock.lock().await) });
                std::thread::sleep(Duration::from_millis(50));
                runtime.block_on(async { drop(shared.reload_lock.lock().await) });
            }
            total
        })
    });
    group.finish();
    drop(watcher);
    drop(runtime);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    targets = compile_10k, file_to_service_10k
}
criterion_main!(benches);
