//! What shadow traffic costs the primary path (issue 6): an in-process
//! figway (`figway::server::run` on listeners bound to port 0, one worker
//! thread, access log off) with two routes to the same small-JSON primary
//! backend, `/plain` without a shadow and `/shadowed` with
//! `[routes.shadow] to = "shadow", compare = true` to a second, equally fast
//! backend. Per route: 2,000 warm-up requests, then 20,000 sequential
//! requests over one keep-alive connection, each timed from send to the
//! last body byte; CPU is read from `/proc/self/task/*/schedstat` (ns per
//! thread) before and after, once every shadow has settled, for figway's
//! own threads (named `figway-worker`) and for the whole process (which
//! also runs the client and both backends, so it includes the shadow
//! backend's work). Each measurement runs three times, the routes
//! alternating, so the noise shows. `cargo bench --bench shadow`;
//! `FIGWAY_BENCH_REQUESTS` changes N.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use figway::shadow::Outcome;

const WARM_UP: usize = 2_000;
const REQUESTS: usize = 20_000;
const RUNS: usize = 3;
const BODY: &str = r#"{"id":7,"name":"widget","price":10,"tags":["a","b"]}"#;
/// Thread name prefix of figway's runtime (at most 15 bytes show in `comm`).
const FIGWAY_THREADS: &str = "figway-worker";

/// A tiny HTTP/1.1 server answering every request with `BODY` as JSON.
async fn backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(BODY.as_bytes())))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn config(primary: SocketAddr, shadow: SocketAddr) -> String {
    format!(
        r#"[listen]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
[log]
access_log = false
[upstreams.primary]
legacy = true
targets = ["http://{primary}"]
[upstreams.shadow]
targets = ["http://{shadow}"]
[[routes]]
name = "plain"
prefix = "/plain"
to = "primary"
[[routes]]
name = "shadowed"
prefix = "/shadowed"
to = "primary"
[routes.shadow]
to = "shadow"
compare = true
ignore_headers = ["date", "x-request-id"]
"#
    )
}

/// Starts figway on the current runtime, like `Figway::start` in the tests.
async fn start_figway(toml: &str) -> (SocketAddr, Arc<figway::state::Shared>) {
    let loaded = figway::config::load_str(toml, Path::new("bench.toml"))
        .unwrap_or_else(|e| panic!("bench config invalid:\n{e}"));
    let proxy = figway::server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let admin = figway::server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = proxy.local_addr().unwrap();
    let shared = figway::state::Shared::new(&loaded);
    tokio::spawn(figway::server::run(
        proxy,
        admin,
        shared.clone(),
        std::future::pending::<()>(),
    ));
    (addr, shared)
}

/// CPU time (ns) of this process's threads, all of them or those whose
/// name starts with `prefix`, from `/proc/self/task/*/schedstat`.
fn cpu_ns(prefix: Option<&str>) -> u64 {
    let mut total = 0;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        if let Some(prefix) = prefix {
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            if !comm.trim_end().starts_with(prefix) {
                continue;
            }
        }
        let stat = std::fs::read_to_string(dir.join("schedstat")).unwrap_or_default();
        total += stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

/// One request and its whole answer.
async fn one(sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>, path: &str) {
    let req = Request::get(path)
        .header("host", "bench.local")
        .body(Empty::<Bytes>::new())
        .unwrap();
    sender.ready().await.unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), BODY.len());
}

struct Run {
    route: &'static str,
    run: usize,
    requests: usize,
    mean_us: f64,
    p50_us: f64,
    p99_us: f64,
    figway_cpu_us: f64,
    process_cpu_us: f64,
}

/// Total shadow outcomes counted on route `name` so far.
fn shadow_total(shared: &figway::state::Shared, name: &str) -> u64 {
    let snapshot = shared.snapshot.load();
    snapshot
        .routes
        .iter()
        .find(|r| &*r.name == name)
        .and_then(|r| r.shadow.as_ref())
        .map_or(0, |s| Outcome::ALL.iter().map(|o| s.count(*o)).sum())
}

async fn measure(
    addr: SocketAddr,
    shared: &figway::state::Shared,
    route: &'static str,
    run: usize,
    n: usize,
) -> Run {
    let stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let path = format!("/{route}/items/7");
    for _ in 0..WARM_UP {
        one(&mut sender, &path).await;
    }
    let shadows_before = shadow_total(shared, route);
    let (figway_before, process_before) = (cpu_ns(Some(FIGWAY_THREADS)), cpu_ns(None));
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        one(&mut sender, &path).await;
        latencies.push(started.elapsed());
    }
    // The shadows of these requests are part of their cost: wait until
    // every one has settled before reading the CPU.
    if route == "shadowed" {
        let deadline = Instant::now() + Duration::from_secs(30);
        while shadow_total(shared, route) < shadows_before + n as u64 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let (figway_after, process_after) = (cpu_ns(Some(FIGWAY_THREADS)), cpu_ns(None));
    latencies.sort();
    let us = |d: Duration| d.as_nanos() as f64 / 1_000.0;
    let total: Duration = latencies.iter().sum();
    Run {
        route,
        run,
        requests: n,
        mean_us: us(total) / n as f64,
        p50_us: us(latencies[n * 50 / 100]),
        p99_us: us(latencies[n * 99 / 100]),
        figway_cpu_us: (figway_after - figway_before) as f64 / 1_000.0 / n as f64,
        process_cpu_us: (process_after - process_before) as f64 / 1_000.0 / n as f64,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; no other arguments are taken.
    let n = std::env::var("FIGWAY_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(REQUESTS);
    let backends = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-backend")
        .enable_all()
        .build()
        .unwrap();
    let (primary, shadow) = backends.block_on(async { (backend().await, backend().await) });
    let proxy = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(FIGWAY_THREADS)
        .enable_all()
        .build()
        .unwrap();
    let (addr, shared) = proxy.block_on(start_figway(&config(primary, shadow)));
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let mut runs = Vec::new();
    for run in 1..=RUNS {
        for route in ["plain", "shadowed"] {
            let r = client.block_on(measure(addr, &shared, route, run, n));
            runs.push(r);
        }
    }

    println!(
        "shadow cost: {n} sequential requests per run over one keep-alive connection, \
         after {WARM_UP} warm-up; figway on 1 worker thread"
    );
    println!(
        "{:<9} {:>3} {:>8} {:>9} {:>9} {:>9} {:>17} {:>18}",
        "route",
        "run",
        "requests",
        "mean µs",
        "p50 µs",
        "p99 µs",
        "CPU µs/req figway",
        "CPU µs/req process"
    );
    for r in &runs {
        println!(
            "{:<9} {:>3} {:>8} {:>9.1} {:>9.1} {:>9.1} {:>17.1} {:>18.1}",
            r.route,
            r.run,
            r.requests,
            r.mean_us,
            r.p50_us,
            r.p99_us,
            r.figway_cpu_us,
            r.process_cpu_us
        );
    }
    let snapshot = shared.snapshot.load();
    if let Some(sh) = snapshot.routes.iter().find_map(|r| r.shadow.as_ref()) {
        println!(
            "shadowed route outcomes: match {}, mismatch {}, error {}, skipped {}",
            sh.count(Outcome::Match),
            sh.count(Outcome::Mismatch),
            sh.count(Outcome::Error),
            sh.count(Outcome::Skipped)
        );
    }
}
