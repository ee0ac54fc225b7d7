//! Issue 14's safety fixes on the request path, over real loopback HTTP:
//!
//! - SPEC §5: a request whose every attempt failed to connect goes to the
//!   route's fallback once before the client gets a 502, counted in
//!   `figway_fallbacks_total`, with the fallback named as its upstream; any
//!   body qualifies (nothing was sent); a reset after sending or a response
//!   timeout does not fall back;
//! - a target that refuses connections stops getting attempts within a
//!   second without any `[outlier]` section (the built-in connect rule), and
//!   a `search` target killed under load costs no client a failed request;
//! - SPEC §2: a fallback naming the route's own upstream is allowed and
//!   changes nothing (no loop, no fallback counted).

mod support;
use support::*;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

// === a target that can be killed ===

/// A real hyper backend answering 200 with `x-backend: name`, whose
/// listener can be closed while traffic flows. Each answer closes its
/// connection (no keep-alive): a crash also cuts exchanges in flight, which
/// SPEC §5 rightly never replays (they may have had effects), so the test
/// isolates what it is about, connects that fail once the listener is gone.
struct Killable {
    addr: SocketAddr,
    served: Arc<AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

impl Killable {
    async fn start(name: &'static str) -> Killable {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(AtomicUsize::new(0));
        let count = served.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |_req: Request<Incoming>| {
                        count.fetch_add(1, Ordering::Relaxed);
                        async move {
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .header("x-backend", name)
                                    .body(full(name))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(false)
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Killable {
            addr,
            served,
            accept,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes the listener: from now on every connect is refused.
    async fn kill(&self) {
        self.accept.abort();
        while !self.accept.is_finished() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

// === helpers ===

fn two_upstreams(monolith: &str, search: &str, route: &str) -> String {
    config(&format!(
        "[upstreams.monolith]\nlegacy = true\ntargets = [\"{monolith}\"]\n\
         [upstreams.search]\ntargets = [\"{search}\"]\n{route}"
    ))
}

const SEARCH_WITH_FALLBACK: &str = "[[routes]]\nname = \"search\"\nprefix = \"/api/search\"\n\
     to = \"search\"\nfallback = \"monolith\"\n";

/// The value of the series of `name` whose labels include all of `labels`
/// (`key="value"` pairs), 0 when there is none.
async fn metric(admin: SocketAddr, name: &str, labels: &[&str]) -> f64 {
    let text = get(admin, "/metrics", &[]).await.text();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

async fn connect_errors(admin: SocketAddr) -> f64 {
    metric(
        admin,
        "figway_upstream_errors_total",
        &["upstream=\"search\"", "kind=\"upstream_connect\""],
    )
    .await
}

async fn fallbacks(admin: SocketAddr) -> f64 {
    metric(
        admin,
        "figway_fallbacks_total",
        &["route=\"search\"", "from=\"search\"", "to=\"monolith\""],
    )
    .await
}

// === the connect-failure fallback ===

/// One request at a dead target: the connect fails, and the monolith
/// answers it at once, before any ejection (one failure is below the
/// built-in rule's three), counted as a fallback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_connect_goes_to_the_fallback_once() {
    let monolith = Backend::start("monolith").await;
    let dead = refused_port().await;
    let f = Figway::start(&two_upstreams(
        &monolith.url(),
        &format!("http://{dead}"),
        SEARCH_WITH_FALLBACK,
    ))
    .await;
    let a = get(f.addr, "/api/search?q=1", &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.header("x-backend"), Some("monolith"));
    assert_eq!(monolith.count(), 1);
    assert_eq!(connect_errors(f.admin).await, 1.0);
    assert_eq!(fallbacks(f.admin).await, 1.0);
    // Counted under the upstream that served it.
    let served = metric(
        f.admin,
        "figway_requests_total",
        &["route=\"search\"", "upstream=\"monolith\"", "code=\"200\""],
    )
    .await;
    assert_eq!(served, 1.0);
}

/// A request an h2c upstream could not connect for reaches an HTTP/1.1
/// fallback with its `X-Forwarded-*` once each: the h2c attempt (which
/// puts them into hyper's map) hands the request back as it got it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_connect_failure_falls_back_with_forwarded_fields_once() {
    let monolith = Backend::start("monolith").await;
    let dead = refused_port().await;
    let f = Figway::start(&config(&format!(
        "[upstreams.monolith]\nlegacy = true\ntargets = [\"{}\"]\n\
         [upstreams.search]\nprotocol = \"h2c\"\ntargets = [\"http://{dead}\"]\n\
         {SEARCH_WITH_FALLBACK}",
        monolith.url()
    )))
    .await;
    let a = get(f.addr, "/api/search?q=1", &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.header("x-backend"), Some("monolith"));
    let seen = monolith.last();
    for name in ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"] {
        let values: Vec<_> = seen.headers.get_all(name).iter().collect();
        assert_eq!(values.len(), 1, "{name}: {values:?}");
    }
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
}

/// Nothing was sent when a connect fails, so the body is still unread: a
/// streamed POST far above the 64 KiB replay copy reaches the fallback
/// whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_streamed_body_reaches_the_fallback_whole() {
    let monolith = Backend::start("monolith").await;
    let dead = refused_port().await;
    let f = Figway::start(&two_upstreams(
        &monolith.url(),
        &format!("http://{dead}"),
        SEARCH_WITH_FALLBACK,
    ))
    .await;
    let total = 1 << 20;
    let req = Request::post("/api/search/index")
        .header("host", "test.local")
        .body(Generated::new(total, 16 * 1024).boxed())
        .unwrap();
    let a = send(f.addr, req).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.header("x-backend"), Some("monolith"));
    assert_eq!(monolith.last().body_len, total);
}

/// A connection that accepts the request and closes without an answer
/// (the request may have had effects) is a 502 `upstream_reset`, never
/// sent to the fallback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_after_sending_is_not_a_fallback() {
    use tokio::io::AsyncReadExt;
    let monolith = Backend::start("monolith").await;
    let rude = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rude_addr = rude.local_addr().unwrap();
    let _rude = tokio::spawn(async move {
        while let Ok((mut s, _)) = rude.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            drop(s);
        }
    });
    let f = Figway::start(&two_upstreams(
        &monolith.url(),
        &format!("http://{rude_addr}"),
        SEARCH_WITH_FALLBACK,
    ))
    .await;
    let a = get(f.addr, "/api/search", &[]).await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
    assert_eq!(a.header("x-figway-error"), Some("upstream_reset"));
    assert_eq!(monolith.count(), 0);
    assert_eq!(fallbacks(f.admin).await, 0.0);
}

/// No answer within `request_timeout` is a 504, never sent to the fallback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_timeout_is_not_a_fallback() {
    let monolith = Backend::start("monolith").await;
    let (hole, _task) = black_hole().await;
    let toml = config(&format!(
        "[upstreams.monolith]\nlegacy = true\ntargets = [\"{}\"]\n\
         [upstreams.search]\ntargets = [\"http://{hole}\"]\nrequest_timeout = \"200ms\"\n\
         {SEARCH_WITH_FALLBACK}",
        monolith.url()
    ));
    let f = Figway::start(&toml).await;
    let a = get(f.addr, "/api/search", &[]).await;
    assert_eq!(a.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(monolith.count(), 0);
    assert_eq!(fallbacks(f.admin).await, 0.0);
}

/// The access line of a request the fallback served names the fallback
/// as its upstream and its target.
#[test]
fn the_access_line_names_the_fallback() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let monolith = rt.block_on(Backend::start("monolith"));
    let dead = rt.block_on(refused_port());
    let toml = format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n\
         [log]\naccess_log = true\n\
         [upstreams.monolith]\nlegacy = true\ntargets = [\"{}\"]\n\
         [upstreams.search]\ntargets = [\"http://{dead}\"]\n{SEARCH_WITH_FALLBACK}",
        monolith.url()
    );
    let f = LoggingFigway::spawn(&toml);
    let a = rt.block_on(get(f.addr, "/api/search", &[]));
    assert_eq!(a.status, StatusCode::OK);
    let line: serde_json::Value = serde_json::from_str(&f.next_line()).unwrap();
    assert_eq!(line["route"], "search", "{line}");
    assert_eq!(line["upstream"], "monolith", "{line}");
    assert_eq!(line["target"], monolith.addr.to_string(), "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["error"], serde_json::Value::Null, "{line}");
}

// === a crash under load ===

/// The incident: one `search` target with `fallback = "monolith"`,
/// killed under load. Before, clients got 502 `upstream_connect` until
/// health checks noticed (~11 s); now no request fails (the connect
/// failures fall back), and without any `[outlier]` section the dead
/// target is ejected at once, so it stops getting attempts within a
/// second; its first ejection (1 s) ends and one short probe re-ejects it
/// for 2 s, still with no failed request.
///
/// One exception, which is not a connect failure: a connection the dead
/// target's kernel had already accepted into its listen backlog when the
/// listener closed is reset after figway sent the request on it ("closed
/// the connection before answering"). SPEC §5's fallback covers failed
/// connects only, so such a request, started before the kill, may fail;
/// every request started after it must not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_target_under_load_fails_no_request_and_stops_getting_attempts() {
    let monolith = Backend::start("monolith").await;
    let search = Killable::start("search").await;
    let f = Figway::start(&two_upstreams(
        &monolith.url(),
        &search.url(),
        SEARCH_WITH_FALLBACK,
    ))
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    // Each failed request: when it was sent, and what figway answered.
    let failed: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let ok = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, failed, ok, addr) = (stop.clone(), failed.clone(), ok.clone(), f.addr);
            tokio::spawn(async move {
                let mut conn = H1::connect(addr).await;
                while !stop.load(Ordering::Relaxed) {
                    let req = Request::get("/api/search?q=shoes")
                        .header("host", "test.local")
                        .body(full(""))
                        .unwrap();
                    let sent = Instant::now();
                    let a = conn.send(req).await;
                    if a.status == StatusCode::OK {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        let what = format!("{} {}", a.status, a.text());
                        eprintln!("failed: {what}");
                        failed.lock().unwrap().push((sent, what));
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        search.served.load(Ordering::Relaxed) > 0,
        "search got no traffic"
    );

    search.kill().await;
    let killed = Instant::now();
    let served_before = ok.load(Ordering::Relaxed);
    tokio::time::sleep_until((killed + Duration::from_millis(400)).into()).await;
    let early = connect_errors(f.admin).await;
    tokio::time::sleep_until((killed + Duration::from_millis(900)).into()).await;
    let late = connect_errors(f.admin).await;
    assert!(early >= 3.0, "the dead target was never attempted: {early}");
    assert_eq!(
        early, late,
        "the dead target still got attempts between 0.4 s and 0.9 s after it died"
    );
    let ejections = metric(
        f.admin,
        "figway_outlier_ejections_total",
        &["upstream=\"search\""],
    )
    .await;
    assert!(ejections >= 1.0, "no ejection counted");

    // Past the first ejection's end: the probe fails over too.
    tokio::time::sleep_until((killed + Duration::from_millis(1800)).into()).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let failed = std::mem::take(&mut *failed.lock().unwrap());
    let unexpected: Vec<_> = failed
        .iter()
        .filter(|(sent, what)| {
            !(*sent < killed && what.contains("closed the connection before answering"))
        })
        .collect();
    assert!(unexpected.is_empty(), "requests failed: {unexpected:?}");
    let after = ok.load(Ordering::Relaxed) - served_before;
    assert!(after > 100, "too little load after the kill: {after}");
    assert!(fallbacks(f.admin).await >= 1.0);
}

/// A request routed while its upstream had a target, that finds none left
/// when its attempts begin (ejected meanwhile by other requests' failed
/// connects), was never sent: it goes to the fallback like a failed
/// connect, not to a 503. Here the window is the wait for a replayable
/// body (a PUT to an upstream of two targets is held whole for a retry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_finds_no_target_left_goes_to_the_fallback() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let monolith = Backend::start("monolith").await;
    let (one, two) = (refused_port().await, refused_port().await);
    let f = Figway::start(&config(&format!(
        "[upstreams.monolith]\nlegacy = true\ntargets = [\"{}\"]\n\
         [upstreams.search]\ntargets = [\"http://{one}\", \"http://{two}\"]\n\
         {SEARCH_WITH_FALLBACK}",
        monolith.url()
    )))
    .await;
    // Routed to `search` now (both targets untried), then held while the
    // body is awaited.
    let mut held = tokio::net::TcpStream::connect(f.addr).await.unwrap();
    held.write_all(
        b"PUT /api/search/held HTTP/1.1\r\nhost: test.local\r\ncontent-length: 5\r\n\r\n",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Three failed connects on each target eject both.
    for _ in 0..3 {
        let a = get(f.addr, "/api/search?q=1", &[]).await;
        assert_eq!(a.header("x-backend"), Some("monolith"), "{}", a.text());
    }
    let ejections = metric(
        f.admin,
        "figway_outlier_ejections_total",
        &["upstream=\"search\""],
    )
    .await;
    assert_eq!(ejections, 2.0, "both targets ejected");
    held.write_all(b"hello").await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), held.read(&mut buf))
            .await
            .expect("no answer within 5 s")
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert!(answer.contains("x-backend: monolith"), "{answer}");
    assert_eq!(&monolith.last().body[..], b"hello");
}

// === a fallback naming the route's own upstream ===

/// `to = "monolith"` with `fallback = "monolith"` (migration.md's
/// rollback): serves the monolith; with the monolith down, one 502, no
/// loop, no fallback counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_to_the_routes_own_upstream_changes_nothing() {
    let monolith = Backend::start("monolith").await;
    let search = Backend::start("search").await;
    let route = "[[routes]]\nname = \"search\"\nprefix = \"/api/search\"\n\
                 to = \"monolith\"\nfallback = \"monolith\"\n";
    let f = Figway::start(&two_upstreams(&monolith.url(), &search.url(), route)).await;
    let a = get(f.addr, "/api/search", &[]).await;
    assert_eq!(a.header("x-backend"), Some("monolith"));

    let dead = refused_port().await;
    let f = Figway::start(&two_upstreams(
        &format!("http://{dead}"),
        &search.url(),
        route,
    ))
    .await;
    let a = get(f.addr, "/api/search", &[]).await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
    assert_eq!(a.header("x-figway-error"), Some("upstream_connect"));
    let tried = metric(
        f.admin,
        "figway_upstream_errors_total",
        &["upstream=\"monolith\"", "kind=\"upstream_connect\""],
    )
    .await;
    assert_eq!(tried, 1.0, "one attempt, no loop");
    let counted = metric(f.admin, "figway_fallbacks_total", &["route=\"search\""]).await;
    assert_eq!(counted, 0.0);
    assert_eq!(search.count(), 0);
}

/// A split side that is also the fallback never falls back to itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_side_that_is_the_fallback_does_not_fall_back_to_itself() {
    let search = Backend::start("search").await;
    let dead = refused_port().await;
    let route = "[[routes]]\nname = \"search\"\nprefix = \"/api/search\"\n\
                 split = [{ to = \"search\", weight = 0 }, { to = \"monolith\", weight = 1 }]\n\
                 fallback = \"monolith\"\n";
    let f = Figway::start(&two_upstreams(
        &format!("http://{dead}"),
        &search.url(),
        route,
    ))
    .await;
    let a = get(f.addr, "/api/search", &[]).await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
    let counted = metric(f.admin, "figway_fallbacks_total", &["route=\"search\""]).await;
    assert_eq!(counted, 0.0);
    assert_eq!(search.count(), 0);
}
