//! Regression tests for the review fixes (SPEC §1, §2, §4, §5, §7): a
//! client's own `x-figway-shadow` never reaches the primary; `[admin]` may
//! not share `[listen]`'s port; `request_timeout` waits on a slow but moving
//! upload and then counts from its end, and counts from each request's
//! start on a kept upstream connection; chunked idempotent bodies are kept
//! for a retry; idle upstream connections close without traffic;
//! `protocol` is validated; counts are range-checked, not truncated; HTTP/2
//! cookie fields reach an HTTP/1.1 upstream as one header; `/routes` orders
//! wildcards as the router does; `explain --json` keeps its shape for a
//! request figway refuses; and a breaker refusal is counted at the upstream
//! whose breaker refused. Each test runs figway's real server (or binary)
//! over loopback against real upstreams.

mod support;
use support::rogue::{Misbehaviour, Rogue};
use support::*;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

// === helpers ===

/// `n` bytes that differ from position to position, so a truncated or
/// shifted body cannot pass for intact.
fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i % 251) as u8 ^ seed.wrapping_mul(31))
        .collect()
}

/// Polls `cond` every 10 ms until it holds or `limit` passes.
async fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn json_of(a: &Answer) -> Value {
    serde_json::from_slice(&a.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", a.text()))
}

/// A whole config with the given `[listen]` and `[admin]` addresses, extra
/// `[listen]` keys and a body (upstreams and routes).
fn full_config(listen: &str, listen_extra: &str, admin: &str, body: &str) -> String {
    format!(
        "[listen]\naddress = \"{listen}\"\n{listen_extra}\n[admin]\naddress = \"{admin}\"\n[log]\naccess_log = false\n{body}\n"
    )
}

/// One upstream `m` with a catch-all route, for validation tests.
const ONE_ROUTE: &str =
    "[upstreams.m]\ntargets = [\"http://127.0.0.1:8000\"]\n[[routes]]\nprefix = \"/\"\nto = \"m\"\n";

fn load(text: &str) -> Result<figway::config::Loaded, String> {
    figway::config::load_str(text, Path::new("figway.toml")).map_err(|e| e.to_string())
}

fn load_err(text: &str) -> String {
    match load(text) {
        Ok(_) => panic!("config accepted:\n{text}"),
        Err(e) => e,
    }
}

fn load_ok(text: &str) {
    if let Err(e) = load(text) {
        panic!("config rejected:\n{text}\n{e}");
    }
}

/// A request body fed frame by frame from a channel, ending when the
/// sender is dropped; its length is unknown, so HTTP/1.1 sends it chunked.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// Starts a POST to `path` whose body arrives in `chunks` frames, each
/// `gap` after the one before (the first `gap` after the head), on its own
/// task. Returns the answer and when it arrived, plus
/// when the last chunk was handed to the client (the upload's end).
async fn slow_upload(
    addr: SocketAddr,
    path: &str,
    chunks: &[Vec<u8>],
    gap: Duration,
) -> (Answer, Instant, Instant) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let req = Request::post(path)
        .header("host", "test.local")
        .body(
            ChannelBody(rx)
                .map_err(|never: Infallible| match never {})
                .boxed(),
        )
        .unwrap();
    let client = tokio::spawn(async move {
        let answer = send(addr, req).await;
        (answer, Instant::now())
    });
    for chunk in chunks {
        tokio::time::sleep(gap).await;
        // An answer that came early ends the request; the caller checks it.
        if tx.send(Bytes::from(chunk.clone())).await.is_err() {
            break;
        }
    }
    drop(tx);
    let upload_ended = Instant::now();
    let (answer, answered) = client.await.unwrap();
    (answer, answered, upload_ended)
}

// === raw upstreams ===

/// A hyper HTTP/1.1 upstream answering `ok` that counts the connections it
/// accepted and records when each one was closed by its peer.
struct ConnTracker {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    closed: Arc<Mutex<Vec<Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ConnTracker {
    async fn start() -> ConnTracker {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(Mutex::new(Vec::new()));
        let (acc, log) = (accepted.clone(), closed.clone());
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                acc.fetch_add(1, Ordering::SeqCst);
                let log = log.clone();
                conns.spawn(async move {
                    let svc = service_fn(|_req: Request<Incoming>| async {
                        Ok::<_, Infallible>(Response::new(full("ok")))
                    });
                    // Ends when the peer closes the (idle) connection.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                    log.lock().unwrap().push(Instant::now());
                });
            }
        });
        ConnTracker {
            addr,
            accepted,
            closed,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn closed(&self) -> Vec<Instant> {
        self.closed.lock().unwrap().clone()
    }
}

impl Drop for ConnTracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// === 1. x-figway-shadow from a client ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_shadow_marker_never_reaches_the_primary() {
    let primary = Backend::start("primary").await;
    let shadow = Backend::start("shadow").await;
    let f = Figway::start(&config(&format!(
        r#"
[upstreams.primary]
legacy = true
targets = ["{}"]

[upstreams.shadow]
targets = ["{}"]

[[routes]]
name = "mirrored"
prefix = "/mirrored"
to = "primary"
[routes.shadow]
to = "shadow"

[[routes]]
name = "plain"
prefix = "/plain"
to = "primary"
"#,
        primary.url(),
        shadow.url()
    )))
    .await;

    // A route without a shadow.
    let a = get(f.addr, "/plain/x", &[("x-figway-shadow", "1")]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let seen = primary.last();
    assert_eq!(seen.uri.path(), "/plain/x");
    assert!(
        seen.headers.get("x-figway-shadow").is_none(),
        "the primary got the client's shadow marker: {:?}",
        seen.headers
    );

    // A route with a shadow: the primary still never sees the marker; the
    // shadow copy carries figway's own, once.
    let a = get(
        f.addr,
        "/mirrored/y",
        &[("x-figway-shadow", "1"), ("x-request-id", "req-shadow-1")],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.header("x-backend"), Some("primary"));
    let seen = primary.last();
    assert_eq!(seen.uri.path(), "/mirrored/y");
    assert!(
        seen.headers.get("x-figway-shadow").is_none(),
        "the primary got the client's shadow marker: {:?}",
        seen.headers
    );
    wait_for(Duration::from_secs(5), "the shadow copy", || {
        shadow.count() == 1
    })
    .await;
    let copy = shadow.last();
    assert_eq!(copy.uri.path(), "/mirrored/y");
    let marks: Vec<_> = copy.headers.get_all("x-figway-shadow").iter().collect();
    assert_eq!(marks, ["1"], "{:?}", copy.headers);
    assert_eq!(copy.headers["x-request-id"], "req-shadow-1");
    assert_eq!(primary.count(), 2);
}

// === 2. admin and listen on one port ===

#[test]
fn admin_address_may_not_overlap_listen_address() {
    // The same address and port.
    let e = load_err(&full_config(
        "127.0.0.1:18080",
        "",
        "127.0.0.1:18080",
        ONE_ROUTE,
    ));
    assert!(e.contains("admin.address"), "{e}");
    // A wildcard listener covers the loopback admin address, either way.
    let e = load_err(&full_config(
        "0.0.0.0:18081",
        "",
        "127.0.0.1:18081",
        ONE_ROUTE,
    ));
    assert!(e.contains("admin.address"), "{e}");
    let e = load_err(&full_config(
        "127.0.0.1:18082",
        "",
        "0.0.0.0:18082",
        ONE_ROUTE,
    ));
    assert!(e.contains("admin.address"), "{e}");
    // Port 0 on both asks the kernel for two free ports: no clash.
    load_ok(&full_config("127.0.0.1:0", "", "127.0.0.1:0", ONE_ROUTE));
    load_ok(&full_config("0.0.0.0:0", "", "127.0.0.1:0", ONE_ROUTE));
    // Different ports, or different specific addresses, are fine.
    load_ok(&full_config(
        "0.0.0.0:18083",
        "",
        "127.0.0.1:18084",
        ONE_ROUTE,
    ));
    load_ok(&full_config(
        "127.0.0.1:18085",
        "",
        "127.0.0.2:18085",
        ONE_ROUTE,
    ));
}

// === 3. request_timeout and slow uploads ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upload_is_not_cut_by_request_timeout() {
    let ok = Backend::start("ok").await;
    let hang = Backend::with(|_| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Response::new(full("too late"))
    })
    .await;
    let f = Figway::start(&config(&format!(
        r#"
[defaults]
request_timeout = "300ms"

[upstreams.ok]
legacy = true
targets = ["{}"]

[upstreams.hang]
targets = ["{}"]

[[routes]]
prefix = "/ok"
to = "ok"

[[routes]]
prefix = "/hang"
to = "hang"
"#,
        ok.url(),
        hang.url()
    )))
    .await;
    let chunks: Vec<Vec<u8>> = (0..6).map(|i| pattern(1000, i)).collect();
    let whole = chunks.concat();
    let gap = Duration::from_millis(150);

    // Six chunks 150 ms apart: some 900 ms of upload, well past the 300 ms
    // request_timeout, but never 300 ms without progress.
    let start = Instant::now();
    let (a, _, upload_ended) = slow_upload(f.addr, "/ok/upload", &chunks, gap).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert!(
        upload_ended - start >= Duration::from_millis(850),
        "the upload took only {:?}: the test proved nothing",
        upload_ended - start
    );
    assert_eq!(a.header("x-backend"), Some("ok"));
    let seen = ok.last();
    assert_eq!(seen.uri.path(), "/ok/upload");
    assert_eq!(seen.body_len, whole.len() as u64);
    assert_eq!(&seen.body[..], &whole[..], "the body arrived altered");

    // A backend that reads the whole body and never answers: 504, counted
    // from the end of the upload.
    let (a, answered, upload_ended) = slow_upload(f.addr, "/hang/upload", &chunks, gap).await;
    assert_eq!(a.status, StatusCode::GATEWAY_TIMEOUT, "{}", a.text());
    assert_eq!(a.header("x-figway-error"), Some("upstream_timeout"));
    let after = answered - upload_ended;
    assert!(
        after >= Duration::from_millis(250) && after <= Duration::from_secs(3),
        "504 came {after:?} after the upload ended (request_timeout 300ms)"
    );
    assert_eq!(hang.count(), 1);
    assert_eq!(&hang.last().body[..], &whole[..]);
}

/// `request_timeout` counts from each request's start on a pooled
/// upstream connection kept across many (its timer is moved on lazily,
/// when it fires: `clock::passed`): answers that each take a third of the
/// limit, one after another on the same connection for twice the limit,
/// are never cut; one that takes longer than the limit is, in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeout_counts_from_each_request_on_a_kept_connection() {
    let b = Backend::with(|seen| async move {
        let wait = if seen.uri.path() == "/slow" {
            2000
        } else {
            100
        };
        tokio::time::sleep(Duration::from_millis(wait)).await;
        Response::new(full("late or not"))
    })
    .await;
    let f = Figway::start(&config(&format!(
        "[upstreams.m]\ntargets = [\"{}\"]\nrequest_timeout = \"300ms\"\nretries = 0\n\
         [[routes]]\nprefix = \"/\"\nto = \"m\"\n",
        b.url()
    )))
    .await;
    let mut client = H1::connect(f.addr).await;
    let start = Instant::now();
    for i in 0..6 {
        let req = Request::get("/fast")
            .header("host", "t")
            .body(full(""))
            .unwrap();
        let a = client.send(req).await;
        assert_eq!(a.status, StatusCode::OK, "request {i}: {}", a.text());
    }
    assert!(
        start.elapsed() >= Duration::from_millis(600),
        "the requests took only {:?}: the test proved nothing",
        start.elapsed()
    );
    let kept = b.accepted();

    let asked = Instant::now();
    let req = Request::get("/slow")
        .header("host", "t")
        .body(full(""))
        .unwrap();
    let a = client.send(req).await;
    let took = asked.elapsed();
    assert_eq!(a.status, StatusCode::GATEWAY_TIMEOUT, "{}", a.text());
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(1500),
        "504 after {took:?} (request_timeout 300ms)"
    );
    assert_eq!(
        b.accepted(),
        kept,
        "the slow request went on a kept connection"
    );
}

/// A reload that shortens `request_timeout` holds on the upstream
/// connections kept from before it: the timer such a connection kept was
/// set for the longer limit, and is brought forward, not left to fire
/// late. One thread (a current-thread runtime), so the kept connection
/// is in the pool the next request takes from.
#[tokio::test]
async fn a_shortened_request_timeout_holds_on_a_kept_connection() {
    let b = Backend::with(|seen| async move {
        if seen.uri.path() == "/slow" {
            tokio::time::sleep(Duration::from_millis(2000)).await;
        }
        Response::new(full("answer"))
    })
    .await;
    let with_limit = |limit: &str| {
        config(&format!(
            "[upstreams.m]\ntargets = [\"{}\"]\nrequest_timeout = \"{limit}\"\nretries = 0\n\
             [[routes]]\nprefix = \"/\"\nto = \"m\"\n",
            b.url()
        ))
    };
    let f = Figway::start_file(&with_limit("10s")).await;
    let mut client = H1::connect(f.addr).await;
    let req = Request::get("/fast")
        .header("host", "t")
        .body(full(""))
        .unwrap();
    assert_eq!(client.send(req).await.status, StatusCode::OK);
    let kept = b.accepted();

    f.reload_ok(&with_limit("300ms")).await;
    let asked = Instant::now();
    let req = Request::get("/slow")
        .header("host", "t")
        .body(full(""))
        .unwrap();
    let a = client.send(req).await;
    let took = asked.elapsed();
    assert_eq!(
        b.accepted(),
        kept,
        "the slow request went on the kept connection"
    );
    assert_eq!(
        a.status,
        StatusCode::GATEWAY_TIMEOUT,
        "after {took:?}: {}",
        a.text()
    );
    assert!(
        took < Duration::from_millis(1500),
        "504 after {took:?} (request_timeout 300ms since the reload)"
    );
}

// === 4. chunked idempotent bodies are retried ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_idempotent_body_is_retried_on_another_target() {
    let rogue = Rogue::start(Misbehaviour::Reset).await;
    let good = Backend::start("good").await;
    let f = Figway::start(&config(&format!(
        "[upstreams.m]\ntargets = [\"{}\", \"{}\"]\nretries = 1\n[[routes]]\nprefix = \"/\"\nto = \"m\"\n",
        rogue.url(),
        good.url()
    )))
    .await;
    let body = pattern(10 * 1024, 7);
    let mut wire =
        b"PUT /doc HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for piece in body.chunks(1024) {
        wire.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        wire.extend_from_slice(piece);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");

    // Round robin alternates: within a few requests one starts at the
    // resetting target.
    for attempt in 0..6 {
        let (rogue_before, good_before) = (rogue.count(), good.count());
        let text = raw(f.addr, &wire, Duration::from_secs(5)).await;
        assert!(
            text.starts_with("HTTP/1.1 200"),
            "attempt {attempt}: {text:?}"
        );
        assert_eq!(good.count(), good_before + 1, "attempt {attempt}");
        let seen = good.last();
        assert_eq!(seen.method, "PUT");
        assert_eq!(seen.uri.path(), "/doc");
        assert_eq!(seen.body_len, body.len() as u64);
        assert_eq!(
            &seen.body[..],
            &body[..],
            "the retried body arrived altered"
        );
        if rogue.count() > rogue_before {
            assert_eq!(rogue.count(), rogue_before + 1);
            let read = rogue.last();
            assert_eq!(read.line, "PUT /doc");
            assert_eq!(read.body, body, "the resetting target read another body");
            return;
        }
    }
    panic!("six requests and none was sent to the resetting target first");
}

// === 5. idle upstream connections close without traffic ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_upstream_connections_close_without_traffic() {
    let b = ConnTracker::start().await;
    let f = Figway::start(&config(&format!(
        "[upstreams.m]\ntargets = [\"http://{}\"]\nidle_timeout = \"200ms\"\n[[routes]]\nprefix = \"/\"\nto = \"m\"\n",
        b.addr
    )))
    .await;
    let a = get(f.addr, "/first", &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let answered = Instant::now();
    assert_eq!(b.accepted(), 1);
    // Pooled, not closed with the response.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        b.closed().is_empty(),
        "figway closed the upstream connection at once"
    );

    // No traffic at all: figway still closes it once idle_timeout passes.
    wait_for(
        Duration::from_secs(3),
        "figway to close the idle upstream connection",
        || !b.closed().is_empty(),
    )
    .await;
    let closed_after = b.closed()[0] - answered;
    assert!(
        closed_after >= Duration::from_millis(150),
        "closed {closed_after:?} after the response, before idle_timeout"
    );
    assert_eq!(b.accepted(), 1);

    // The next request opens a new connection.
    let a = get(f.addr, "/second", &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(b.accepted(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_to_a_removed_target_close_at_once() {
    let gone = ConnTracker::start().await;
    let stays = ConnTracker::start().await;
    let table = |target: SocketAddr| {
        config(&format!(
            "[upstreams.m]\ntargets = [\"http://{target}\"]\n[[routes]]\nprefix = \"/\"\nto = \"m\"\n"
        ))
    };
    let f = Figway::start_file(&table(gone.addr)).await;
    let a = get(f.addr, "/first", &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(gone.accepted(), 1);
    // Long enough for the connection's driver to have settled into its
    // idle_timeout wait.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        gone.closed().is_empty(),
        "closed with its response, not pooled"
    );

    // The target leaves the table: its idle connection closes now, not
    // after the default 90 s idle_timeout.
    f.reload_ok(&table(stays.addr)).await;
    wait_for(
        Duration::from_secs(3),
        "figway to close the pooled connection to the removed target",
        || !gone.closed().is_empty(),
    )
    .await;
    let a = get(f.addr, "/second", &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(stays.accepted(), 1);
}

// === 6. protocol ===

#[test]
fn upstream_protocol_is_validated() {
    let with = |protocol: &str| {
        config(&format!(
            "[upstreams.m]\ntargets = [\"http://127.0.0.1:8000\"]\nprotocol = \"{protocol}\"\n[[routes]]\nprefix = \"/\"\nto = \"m\"\n"
        ))
    };
    load_ok(&with("http1"));
    load_ok(&with("h2c"));
    let e = load_err(&with("spdy"));
    assert!(e.contains("upstreams.m.protocol"), "{e}");
    assert!(e.contains("expected \"http1\" or \"h2c\""), "{e}");
}

// === 7. range checks ===

#[test]
fn out_of_range_numbers_are_rejected_not_truncated() {
    let health = |n: &str| {
        config(&format!(
            "[upstreams.m]\ntargets = [\"http://127.0.0.1:8000\"]\n[upstreams.m.health]\npath = \"/health\"\nunhealthy_after = {n}\n[[routes]]\nprefix = \"/\"\nto = \"m\"\n"
        ))
    };
    load_ok(&health("3"));
    // 2^32 would wrap to 0 as a u32.
    let e = load_err(&health("4294967296"));
    assert!(e.contains("upstreams.m.health.unhealthy_after"), "{e}");

    let listen = |extra: &str| full_config("127.0.0.1:0", extra, "127.0.0.1:0", ONE_ROUTE);
    load_ok(&listen("max_connections = 1000"));
    let e = load_err(&listen("max_connections = 2000000"));
    assert!(e.contains("listen.max_connections"), "{e}");

    load_ok(&listen("header_read_timeout = \"1s\""));
    let e = load_err(&listen("header_read_timeout = \"0s\""));
    assert!(e.contains("listen.header_read_timeout"), "{e}");
}

// === 8. HTTP/2 cookies ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_cookie_fields_reach_http1_upstream_as_one_header() {
    let b = Backend::start("mono").await;
    let f = Figway::start(&config(&format!(
        "[upstreams.m]\ntargets = [\"{}\"]\n[[routes]]\nprefix = \"/\"\nto = \"m\"\n",
        b.url()
    )))
    .await;
    let mut req = Request::get("http://test.local/cookies")
        .body(full(""))
        .unwrap();
    req.headers_mut().append("cookie", "a=1".parse().unwrap());
    req.headers_mut().append("cookie", "b=2".parse().unwrap());
    let a = send_h2(f.addr, req).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let seen = b.last();
    assert_eq!(seen.uri.path(), "/cookies");
    let cookies: Vec<_> = seen.headers.get_all("cookie").iter().collect();
    assert_eq!(cookies, ["a=1; b=2"], "{:?}", seen.headers);
}

// === 9. /routes orders wildcards as the router does ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_list_longer_wildcard_suffix_first() {
    let wide = Backend::start("wide").await;
    let eu = Backend::start("eu").await;
    let upstreams = format!(
        "[upstreams.wide]\ntargets = [\"{}\"]\n[upstreams.eu]\ntargets = [\"{}\"]\n",
        wide.url(),
        eu.url()
    );
    let wide_route =
        "[[routes]]\nname = \"wide\"\nprefix = \"/api\"\nhost = \"*.example.com\"\nto = \"wide\"\n";
    let eu_route =
        "[[routes]]\nname = \"eu\"\nprefix = \"/api\"\nhost = \"*.eu.example.com\"\nto = \"eu\"\n";
    for (order, routes) in [
        ("wide first", format!("{wide_route}{eu_route}")),
        ("eu first", format!("{eu_route}{wide_route}")),
    ] {
        let f = Figway::start(&config(&format!("{upstreams}{routes}"))).await;
        let a = get(f.admin, "/routes", &[]).await;
        assert_eq!(a.status, StatusCode::OK, "{order}: {}", a.text());
        let v = json_of(&a);
        let names: Vec<&str> = v
            .as_array()
            .unwrap_or_else(|| panic!("not an array: {v}"))
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["eu", "wide"], "{order}: {v}");

        // The router agrees: the longer suffix wins for x.eu.example.com,
        // the other still serves the rest of example.com.
        for (host, want) in [
            ("x.eu.example.com", "eu"),
            ("a.b.eu.example.com", "eu"),
            ("x.example.com", "wide"),
        ] {
            let req = Request::get("/api/thing")
                .header("host", host)
                .body(full(""))
                .unwrap();
            let a = send(f.addr, req).await;
            assert_eq!(a.status, StatusCode::OK, "{order}, {host}: {}", a.text());
            assert_eq!(a.header("x-backend"), Some(want), "{order}, {host}");
        }
    }
}

// === 10. explain --json for a request figway refuses ===

#[test]
fn explain_json_keeps_its_shape_for_a_path_above_the_root() {
    let dir = tempdir::Dir::new();
    let path = dir.path().join("figway.toml");
    std::fs::write(
        &path,
        "[listen]\naddress = \"127.0.0.1:0\"\n[upstreams.m]\nlegacy = true\n\
         targets = [\"http://127.0.0.1:8000\"]\n[[routes]]\nprefix = \"/\"\nto = \"m\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_figway"))
        .arg("explain")
        .arg(&path)
        .args(["GET", "/a/../../etc/passwd", "--json"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one JSON line:\n{stdout}");
    let v: Value =
        serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"));
    let mut keys: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "fallback",
            "passed_over",
            "path_forwarded",
            "route",
            "shadow",
            "sticky",
            "upstreams"
        ],
        "{v}"
    );
    assert!(v["route"].is_null(), "{v}");
    assert_eq!(v["upstreams"], serde_json::json!([]), "{v}");
    assert!(
        stderr.contains("bad_request"),
        "no note on stderr that figway refuses the request:\n{stderr}"
    );
}

// === 11. errors counted at the upstream that refused ===

fn counter(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{metric}: unexpected value {other:?}"),
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_open_is_counted_at_the_fallback_that_refused() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let held = gate.clone();
    let mono = Backend::with(move |_| {
        let held = held.clone();
        async move {
            held.acquire().await.unwrap().forget();
            Response::builder()
                .header("x-backend", "mono")
                .body(full("mono"))
                .unwrap()
        }
    })
    .await;
    let dead = refused_port().await;
    let f = Figway::start(&config(&format!(
        r#"
[upstreams.mono]
legacy = true
targets = ["{}"]
max_in_flight = 1

[upstreams.svc]
targets = ["http://{dead}"]
[upstreams.svc.health]
path = "/health"
interval = "100ms"
timeout = "200ms"
unhealthy_after = 1

[[routes]]
name = "moved"
prefix = "/"
to = "svc"
fallback = "mono"
"#,
        mono.url()
    )))
    .await;

    // svc's one target turns unhealthy after its first check.
    let start = Instant::now();
    loop {
        let v = json_of(&get(f.admin, "/upstreams", &[]).await);
        if v["svc"]["targets"][0]["healthy"] == false {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // One request falls back to mono and holds its only place.
    let addr = f.addr;
    let first = tokio::spawn(async move { get(addr, "/held", &[]).await });
    wait_for(Duration::from_secs(5), "the held request at mono", || {
        mono.count() == 1
    })
    .await;

    // The next finds svc without a healthy target and mono's breaker open.
    let a = get(f.addr, "/refused", &[]).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text());
    assert_eq!(a.header("x-figway-error"), Some("circuit_open"));

    let text = get(f.admin, "/metrics", &[]).await.text();
    let s = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("/metrics does not parse ({e}):\n{text}"));
    let errors = "figway_upstream_errors_total";
    assert_eq!(
        counter(
            &s,
            errors,
            &[("upstream", "mono"), ("kind", "circuit_open")]
        ),
        1.0,
        "circuit_open not counted at mono, whose breaker refused:\n{text}"
    );
    assert_eq!(
        counter(&s, errors, &[("upstream", "svc"), ("kind", "circuit_open")]),
        0.0,
        "circuit_open counted at svc, whose breaker never refused:\n{text}"
    );

    gate.add_permits(1);
    let a = first.await.unwrap();
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.header("x-backend"), Some("mono"));
}
