//! What figway's whole request path costs, in wall time per request: one
//! small GET proxied in-process (`figway::server::run` on port 0, one route,
//! access log off) to a hyper 1.x upstream answering `hello`, sent over a
//! kept-alive `hyper::client::conn::http1` connection and read to the end
//! of its body (`proxy/get_small`). `direct/get_small` sends the same GET
//! straight to the upstream, so figway's overhead is the difference
//! between the two. Client, figway and upstream share one `current_thread`
//! runtime, built with the servers and the connections outside the measured
//! closure, so a request's time is the CPU of all three plus two loopback
//! hops (one for `direct`), with no cross-thread wake-ups in it.
//! `proxy/get_small_access_log` is `proxy/get_small` with the access log on
//! (a tracing subscriber that enables `figway::access` and discards what it
//! is given). It runs in a child process of this binary whose stdout is
//! piped back, because figway writes its access lines to stdout, where
//! criterion writes its report: the parent drops the access lines and
//! passes the rest on. `cargo bench --bench proxy`.

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, Criterion};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

/// Set in the child process that runs `proxy/get_small_access_log`.
const ACCESS_LOG_CHILD: &str = "FIGWAY_BENCH_ACCESS_LOG_CHILD";

/// A hyper HTTP/1.1 server on 127.0.0.1:0 answering every request `hello`.
async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// Starts figway on the current runtime, as `Figway::start` does in the
/// tests; it serves until the runtime is dropped.
async fn figway(upstream: SocketAddr, access_log: bool) -> SocketAddr {
    let toml = format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n\
         [log]\naccess_log = {access_log}\n\
         [upstreams.app]\ntargets = [\"http://{upstream}\"]\n\
         [[routes]]\nprefix = \"/\"\nto = \"app\"\n"
    );
    let loaded = figway::config::load_str(&toml, Path::new("bench.toml"))
        .unwrap_or_else(|e| panic!("bench config invalid:\n{e}"));
    let proxy = figway::server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let admin = figway::server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = proxy.local_addr().unwrap();
    let shared = figway::state::Shared::new(&loaded);
    tokio::spawn(figway::server::run(
        proxy,
        admin,
        shared,
        std::future::pending::<()>(),
    ));
    addr
}

/// A kept-alive HTTP/1.1 client connection to `addr`.
async fn connect(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// `GET /`, read to the end of its body.
async fn get(sender: &mut SendRequest<Empty<Bytes>>) {
    let req = Request::get("/")
        .header("host", "bench.local")
        .body(Empty::new())
        .unwrap();
    sender.ready().await.unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"hello");
}

/// A single-threaded runtime with the upstream, and figway in front of it
/// unless `through` is None; returns the connection to send on.
fn setup(through: Option<bool>) -> (Runtime, SendRequest<Empty<Bytes>>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sender = runtime.block_on(async {
        let mut target = upstream().await;
        if let Some(access_log) = through {
            target = figway(target, access_log).await;
        }
        let mut sender = connect(target).await;
        // Opens figway's pooled upstream connection before any sample.
        get(&mut sender).await;
        sender
    });
    (runtime, sender)
}

/// Benchmarks `group/name`: sequential GETs over one connection.
fn bench_get(c: &mut Criterion, group: &str, name: &str, through: Option<bool>) {
    let (runtime, mut sender) = setup(through);
    let mut group = c.benchmark_group(group);
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    get(&mut sender).await;
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

fn direct(c: &mut Criterion) {
    bench_get(c, "direct", "get_small", None);
}

fn proxy(c: &mut Criterion) {
    bench_get(c, "proxy", "get_small", Some(false));
}

/// Runs in the child. The access log is written only when a subscriber
/// enables `figway::access` at INFO; this one enables it and writes what it
/// is given nowhere (the access lines go to stdout on their own).
fn proxy_access_log(c: &mut Criterion) {
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .with_max_level(tracing::Level::INFO)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    assert!(tracing::enabled!(target: "figway::access", tracing::Level::INFO));
    bench_get(c, "proxy", "get_small_access_log", Some(true));
}

/// Runs this binary again, with the same arguments, for the access-log
/// bench, passing its stdout on without the access lines.
fn access_log_in_child() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(std::env::args_os().skip(1))
        .env(ACCESS_LOG_CHILD, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut from_child = BufReader::new(child.stdout.take().unwrap());
    let stdout = std::io::stdout();
    let mut line = Vec::new();
    let (mut dropped, mut read) = (0u64, 0u64);
    loop {
        line.clear();
        match from_child.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => read += 1,
        }
        // An access line may follow criterion's text on the same line when
        // that text did not end in a newline: keep the text.
        match line.windows(7).position(|w| w == b"{\"ts\":\"") {
            Some(at) => {
                dropped += 1;
                if at > 0 {
                    let _ = stdout.lock().write_all(&line[..at]);
                }
            }
            None => {
                let _ = stdout.lock().write_all(&line);
            }
        }
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "the access-log bench failed: {status}");
    eprintln!(
        "(access-log bench: {dropped} of its {read} output lines were access lines, left out)"
    );
}

criterion_group!(benches, direct, proxy);
criterion_group!(access_log_benches, proxy_access_log);

fn main() {
    if std::env::var_os(ACCESS_LOG_CHILD).is_some() {
        access_log_benches();
    } else {
        benches();
        access_log_in_child();
    }
    Criterion::default().configure_from_args().final_summary();
}
