//! `figway::embed` over real loopback sockets: figway's service inside an
//! application's own hyper server, behind the application's tower auth
//! layer, in front of real hyper upstreams. Authorized requests are proxied
//! with figway's rewriting (X-Forwarded-For from the peer the application
//! passed, x-request-id), unauthorized ones get the application's 401 and
//! never reach an upstream, figway's own errors pass through, metrics count
//! what figway served, reloads through the API change routing, WebSocket
//! upgrades pass, the optional smuggling guard and connection cap work.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use figway::embed::{Figway, FigwayService, ResponseBody};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use support::ws::{echo_upstream, read_head};
use support::{config, get, Backend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::{Service, ServiceBuilder, ServiceExt};

const TOKEN: &str = "Bearer t0ken";

/// The peer address the application hands figway, instead of the socket's
/// (127.0.0.1), so that the tests can tell it is the one figway uses.
const PEER: &str = "203.0.113.7:40000";

fn routes_to(upstream: &Backend) -> String {
    config(&format!(
        "[upstreams.app]\ntargets = [\"{}\"]\n[[routes]]\nprefix = \"/\"\nto = \"app\"\n",
        upstream.url()
    ))
}

/// The application's auth layer: `authorization: Bearer t0ken` or a JSON
/// 401 that figway never sees.
fn require_token<S>(
    inner: S,
) -> impl Service<
    Request<Incoming>,
    Response = Response<ResponseBody>,
    Error = Infallible,
    Future: Send,
> + Clone
       + Send
where
    S: Service<Request<Incoming>, Response = Response<ResponseBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    tower::service_fn(move |req: Request<Incoming>| {
        let inner = inner.clone();
        async move {
            if req
                .headers()
                .get("authorization")
                .is_some_and(|v| v == TOKEN)
            {
                inner.oneshot(req).await
            } else {
                let mut answer = Response::new(ResponseBody::full(Bytes::from_static(
                    b"{\"error\":\"unauthorized\"}",
                )));
                *answer.status_mut() = StatusCode::UNAUTHORIZED;
                answer.headers_mut().insert(
                    "content-type",
                    http::HeaderValue::from_static("application/json"),
                );
                Ok(answer)
            }
        }
    })
}

/// The application's server: hyper-util's auto builder (figway's
/// settings), one figway service per connection behind the auth layer,
/// the IO under figway's smuggling guard.
async fn serve_app(figway: Arc<Figway>) -> SocketAddr {
    serve_app_guarded(figway, true).await
}

/// As [`serve_app`], with or without the guard.
async fn serve_app_guarded(figway: Arc<Figway>, guard: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let http = figway.http_builder();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let figway_service: FigwayService = figway.service(PEER.parse().unwrap());
            let service = ServiceBuilder::new()
                .layer(tower::layer::layer_fn(require_token))
                .service(figway_service.clone());
            let service = TowerToHyperService::new(service);
            let http = http.clone();
            if guard {
                let io = TokioIo::new(figway_service.guard(stream));
                tokio::spawn(async move {
                    let _ = http.serve_connection_with_upgrades(io, service).await;
                });
            } else {
                let io = TokioIo::new(stream);
                tokio::spawn(async move {
                    let _ = http.serve_connection_with_upgrades(io, service).await;
                });
            }
        }
    });
    addr
}

/// Started from a config string, with the admin API on port 0.
async fn start(toml: &str) -> (Arc<Figway>, SocketAddr) {
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let figway = Figway::load_str(toml, "embed.toml")
        .unwrap_or_else(|e| panic!("{e}"))
        .admin(admin)
        .start()
        .unwrap();
    let figway = Arc::new(figway);
    let addr = serve_app(figway.clone()).await;
    (figway, addr)
}

fn requests_total(metrics: &str, code: &str) -> f64 {
    let scrape = prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("/metrics does not parse ({e}):\n{metrics}"));
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == "figway_requests_total" && s.labels.get("code") == Some(code))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("unexpected value {other:?}"),
        })
        .sum()
}

#[tokio::test]
async fn authorized_requests_are_proxied_with_figways_rewriting() {
    let app = Backend::start("app").await;
    let (_figway, addr) = start(&routes_to(&app)).await;

    let answer = get(addr, "/orders/7?x=1", &[("authorization", TOKEN)]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.text(), "app");
    let seen = app.last();
    assert_eq!(seen.uri.path_and_query().unwrap().as_str(), "/orders/7?x=1");
    // The peer the application passed, not the socket's.
    assert_eq!(
        seen.headers["x-forwarded-for"], "203.0.113.7",
        "{:?}",
        seen.headers
    );
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    let id = seen.headers["x-request-id"].to_str().unwrap();
    assert!(!id.is_empty());
    assert_eq!(answer.header("x-request-id"), Some(id));
    // The application's token goes on as any header (the app may strip it).
    assert_eq!(seen.headers["authorization"], TOKEN);
}

#[tokio::test]
async fn unauthorized_requests_get_401_and_never_reach_the_upstream() {
    let app = Backend::start("app").await;
    let (figway, addr) = start(&routes_to(&app)).await;

    let answer = get(addr, "/", &[]).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.text(), "{\"error\":\"unauthorized\"}");
    let wrong = get(addr, "/", &[("authorization", "Bearer nope")]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.count(), 0);
    // Answered by the application: not figway's to count.
    let admin = figway.admin_address().unwrap();
    let metrics = get(admin, "/metrics", &[]).await.text();
    assert_eq!(requests_total(&metrics, "401"), 0.0, "{metrics}");
}

#[tokio::test]
async fn figways_own_errors_pass_through_the_layers() {
    let refused = support::refused_port().await;
    let toml = config(&format!(
        "[upstreams.gone]\ntargets = [\"http://{refused}\"]\n[[routes]]\nprefix = \"/api\"\nto = \"gone\"\n"
    ));
    let (_figway, addr) = start(&toml).await;

    let answer = get(addr, "/api/x", &[("authorization", TOKEN)]).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{}", answer.text());
    assert_eq!(answer.header("x-figway-error"), Some("upstream_connect"));
    let answer = get(addr, "/elsewhere", &[("authorization", TOKEN)]).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.header("x-figway-error"), Some("no_route"));
}

#[tokio::test]
async fn metrics_count_the_requests_figway_served() {
    let app = Backend::start("app").await;
    let (figway, addr) = start(&routes_to(&app)).await;

    for _ in 0..3 {
        let answer = get(addr, "/", &[("authorization", TOKEN)]).await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    let _ = get(addr, "/", &[]).await;
    let admin = figway.admin_address().unwrap();
    // Counted when the answer's body ends, which may trail the client's
    // read by a moment.
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = get(admin, "/metrics", &[]).await.text();
        if requests_total(&metrics, "200") == 3.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(requests_total(&metrics, "200"), 3.0, "{metrics}");
    assert_eq!(requests_total(&metrics, "401"), 0.0, "{metrics}");
}

#[tokio::test]
async fn a_reload_through_the_api_changes_routing() {
    let old = Backend::start("old").await;
    let new = Backend::start("new").await;
    let (figway, addr) = start(&routes_to(&old)).await;
    assert_eq!(
        get(addr, "/", &[("authorization", TOKEN)]).await.text(),
        "old"
    );

    let outcome = figway.reload_str(routes_to(&new)).await;
    assert!(
        matches!(outcome, figway::embed::Outcome::Applied { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        get(addr, "/", &[("authorization", TOKEN)]).await.text(),
        "new"
    );

    // An invalid config changes nothing.
    let outcome = figway.reload_str("[listen]\n").await;
    assert!(
        matches!(outcome, figway::embed::Outcome::Rejected { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        get(addr, "/", &[("authorization", TOKEN)]).await.text(),
        "new"
    );
}

#[tokio::test]
async fn a_config_file_reloads_when_the_application_asks() {
    let old = Backend::start("old").await;
    let new = Backend::start("new").await;
    let dir = std::env::temp_dir().join(format!("figway-embed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("figway.toml");
    std::fs::write(&path, routes_to(&old)).unwrap();
    let figway = Arc::new(Figway::load(&path).unwrap().start().unwrap());
    let addr = serve_app(figway.clone()).await;
    assert_eq!(
        get(addr, "/", &[("authorization", TOKEN)]).await.text(),
        "old"
    );

    std::fs::write(&path, routes_to(&new)).unwrap();
    let outcome = figway.reload().await;
    assert!(
        matches!(outcome, figway::embed::Outcome::Applied { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        get(addr, "/", &[("authorization", TOKEN)]).await.text(),
        "new"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn websocket_upgrades_pass_through() {
    let (upstream, _) = echo_upstream(None).await;
    let toml = config(&format!(
        "[upstreams.ws]\ntargets = [\"http://{upstream}\"]\n[[routes]]\nprefix = \"/\"\nto = \"ws\"\n"
    ));
    let (_figway, addr) = start(&toml).await;

    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: shop.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
              Authorization: Bearer t0ken\r\n\r\n",
        )
        .await
        .unwrap();
    let head = read_head(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    client.write_all(b"ping through the tunnel").await.unwrap();
    let mut echoed = [0u8; 23];
    tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut echoed))
        .await
        .expect("no echo through the tunnel")
        .unwrap();
    assert_eq!(&echoed, b"ping through the tunnel");
}

const CONFLICTING: &[u8] = b"POST / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer t0ken\r\n\
Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";

#[tokio::test]
async fn the_smuggling_guard_answers_conflicting_framing() {
    let app = Backend::start("app").await;
    let (_figway, addr) = start(&routes_to(&app)).await;

    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(CONFLICTING).await.unwrap();
    let head = read_head(&mut client).await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 400"), "{head}");
    assert!(head.contains("x-figway-error: bad_request"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(app.count(), 0);
}

/// The contrast: without the guard, hyper settles the conflict itself
/// (chunked wins) and the request goes on.
#[tokio::test]
async fn without_the_guard_hyper_frames_the_request() {
    let app = Backend::start("app").await;
    let toml = routes_to(&app);
    let figway = Arc::new(
        Figway::load_str(&toml, "embed.toml")
            .unwrap()
            .start()
            .unwrap(),
    );
    let addr = serve_app_guarded(figway, false).await;

    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(CONFLICTING).await.unwrap();
    let head = read_head(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(app.count(), 1);
}

#[tokio::test]
async fn connection_slots_hold_to_max_connections() {
    let app = Backend::start("app").await;
    let toml = routes_to(&app).replace("[listen]\n", "[listen]\nmax_connections = 1\n");
    let figway = Figway::load_str(&toml, "embed.toml")
        .unwrap()
        .start()
        .unwrap();
    let first = figway.connection_slot().await.expect("a slot");
    let waiting = tokio::time::timeout(Duration::from_millis(100), figway.connection_slot()).await;
    assert!(waiting.is_err(), "a second slot past max_connections = 1");
    drop(first);
    let second = tokio::time::timeout(Duration::from_secs(1), figway.connection_slot()).await;
    assert!(matches!(second, Ok(Some(_))));
}

#[tokio::test]
async fn a_text_config_cannot_be_watched() {
    let app = Backend::start("app").await;
    let refused = Figway::load_str(&routes_to(&app), "embed.toml")
        .unwrap()
        .watch_file(true)
        .start();
    assert!(refused.is_err());
}

#[test]
fn start_needs_a_runtime() {
    let toml = config(
        "[upstreams.app]\ntargets = [\"http://127.0.0.1:9\"]\n[[routes]]\nprefix = \"/\"\nto = \"app\"\n",
    );
    let started = Figway::load_str(&toml, "embed.toml").unwrap().start();
    assert!(started.is_err());
}

#[test]
fn config_errors_name_the_place() {
    let Err(e) = Figway::load_str("[listen]\naddress = 7\n", "embed.toml") else {
        panic!("an invalid config was accepted");
    };
    assert!(e.to_string().contains("embed.toml:"), "{e}");
}
