//! h2c upstreams and gRPC over real sockets (SPEC §2 `protocol`, §4): a
//! plain hyper HTTP/2 server stands in for a gRPC service. A streaming call
//! goes both ways through figway with its trailers intact, `TE: trailers`
//! reaches h2c upstreams only, calls share one multiplexed upstream
//! connection, health checks speak h2c, and figway's own failures reach a
//! gRPC client as trailers-only answers with `grpc-status`.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{Backend, Figway};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A request or response body fed frame by frame from a channel.
struct ChannelBody(mpsc::Receiver<Frame<Bytes>>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|f| f.map(Ok))
    }
}

/// What the gRPC-like service saw.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    heads: Mutex<Vec<HeaderMap>>,
}

/// An h2c-only server: every call's request messages are echoed back as
/// they arrive, then trailers `grpc-status: 0`, `grpc-message: done`.
/// `/slow` answers after 2 s.
async fn grpc_service() -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let state = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            state.connections.fetch_add(1, Ordering::SeqCst);
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let state = state.clone();
                    async move {
                        state.heads.lock().unwrap().push(req.headers().clone());
                        if req.uri().path() == "/slow" {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                        let (tx, rx) = mpsc::channel(16);
                        let mut body = req.into_body();
                        tokio::spawn(async move {
                            while let Some(Ok(frame)) = body.frame().await {
                                if let Ok(data) = frame.into_data() {
                                    if tx.send(Frame::data(data)).await.is_err() {
                                        return;
                                    }
                                }
                            }
                            let mut trailers = HeaderMap::new();
                            trailers.insert("grpc-status", "0".parse().unwrap());
                            trailers.insert("grpc-message", "done".parse().unwrap());
                            let _ = tx.send(Frame::trailers(trailers)).await;
                        });
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", "application/grpc")
                                .body(ChannelBody(rx))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

fn config(upstream: &str, extra: &str) -> String {
    support::config(&format!(
        "[upstreams.svc]\ntargets = [\"{upstream}\"]\nprotocol = \"h2c\"\nrequest_timeout = \"300ms\"\n{extra}\
         [[routes]]\nprefix = \"/echo.Echo/\"\nto = \"svc\"\n\
         [[routes]]\nprefix = \"/slow\"\nto = \"svc\"\n"
    ))
}

/// An h2c client connection to figway (prior knowledge).
async fn h2_client<B>(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    send
}

fn grpc_request<B>(path: &str, body: B) -> Request<B> {
    Request::post(format!("http://shop.test{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body)
        .unwrap()
}

#[tokio::test]
async fn a_streaming_call_goes_both_ways_with_trailers_intact() {
    let (up, seen) = grpc_service().await;
    let f = Figway::start(&config(&format!("http://{up}"), "")).await;
    let mut client = h2_client(f.addr).await;

    let (tx, rx) = mpsc::channel(4);
    let res = client
        .send_request(grpc_request("/echo.Echo/Chat", ChannelBody(rx)))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.into_body();
    // Each message comes back before the next is sent: nothing is held.
    for msg in ["first", "second", "third"] {
        tx.send(Frame::data(Bytes::from(msg))).await.unwrap();
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("message not echoed while the call is open")
            .unwrap()
            .unwrap();
        assert_eq!(frame.into_data().unwrap(), msg);
    }
    drop(tx);
    let trailers = loop {
        let frame = body.frame().await.expect("no trailers").unwrap();
        if let Ok(t) = frame.into_trailers() {
            break t;
        }
    };
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "done");
    let head = seen.heads.lock().unwrap()[0].clone();
    assert_eq!(
        head["te"], "trailers",
        "TE: trailers must reach an h2c upstream"
    );
    assert_eq!(head["content-type"], "application/grpc");
    // Set as for an HTTP/1.1 upstream, whose head figway writes itself.
    assert_eq!(head["x-forwarded-for"], "127.0.0.1");
    assert_eq!(head["x-forwarded-proto"], "http");
    assert_eq!(head["x-forwarded-host"], "shop.test");
}

#[tokio::test]
async fn calls_share_one_upstream_connection() {
    let (up, seen) = grpc_service().await;
    let f = Figway::start(&config(&format!("http://{up}"), "")).await;
    let client = h2_client::<Empty<Bytes>>(f.addr).await;
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let res = client
                    .send_request(grpc_request(&format!("/echo.Echo/Unary{i}"), Empty::new()))
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200);
                res.into_body().collect().await.unwrap().trailers().cloned()
            })
        })
        .collect();
    for call in calls {
        let trailers = call.await.unwrap().expect("trailers lost");
        assert_eq!(trailers["grpc-status"], "0");
    }
    assert_eq!(seen.heads.lock().unwrap().len(), 20);
    assert_eq!(
        seen.connections.load(Ordering::SeqCst),
        1,
        "20 calls from one worker must share one h2c connection"
    );
}

#[tokio::test]
async fn te_reaches_no_http1_upstream() {
    let b = Backend::start("plain").await;
    let f = Figway::start(&support::config(&format!(
        "[upstreams.web]\ntargets = [\"{}\"]\n[[routes]]\nprefix = \"/\"\nto = \"web\"\n",
        b.url()
    )))
    .await;
    let a = support::get(f.addr, "/x", &[("te", "trailers")]).await;
    assert_eq!(a.status, 200);
    assert!(
        b.last().headers.get("te").is_none(),
        "TE sent to an HTTP/1.1 upstream"
    );
}

#[tokio::test]
async fn health_checks_speak_h2c() {
    let (up, seen) = grpc_service().await;
    let f = Figway::start(&config(
        &format!("http://{up}"),
        "[upstreams.svc.health]\npath = \"/healthz\"\ninterval = \"50ms\"\nunhealthy_after = 1\n",
    ))
    .await;
    // An HTTP/1.1 check against this h2-only service would fail at once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let checks = seen
        .heads
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.get("user-agent").is_some_and(|v| v == "figway-health"))
        .count();
    assert!(
        checks >= 2,
        "health checks did not reach the service over h2c: {checks}"
    );
    let mut client = h2_client::<Empty<Bytes>>(f.addr).await;
    let res = client
        .send_request(grpc_request("/echo.Echo/Ping", Empty::new()))
        .await
        .unwrap();
    assert!(
        res.headers().get("x-figway-error").is_none(),
        "{:?}",
        res.headers()
    );
}

/// figway's own failure as a gRPC client sees it: the head only.
async fn grpc_failure(f: &Figway, path: &str) -> (String, String, String) {
    let mut client = h2_client::<Empty<Bytes>>(f.addr).await;
    let res = client
        .send_request(grpc_request(path, Empty::new()))
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "gRPC failures are HTTP 200");
    let h = res.headers().clone();
    assert_eq!(h["content-type"], "application/grpc");
    assert!(h.get("grpc-message").is_some());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(body.is_empty(), "a trailers-only answer has no body");
    let text = |n: &str| {
        h.get(n)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    (
        text("grpc-status"),
        text("x-figway-error"),
        text("grpc-message"),
    )
}

#[tokio::test]
async fn figways_own_failures_answer_grpc_calls_the_grpc_way() {
    let refused = support::refused_port().await;
    let f = Figway::start(&config(&format!("http://{refused}"), "")).await;
    let (status, kind, _) = grpc_failure(&f, "/echo.Echo/Down").await;
    assert_eq!((status.as_str(), kind.as_str()), ("14", "upstream_connect"));
    let (status, kind, _) = grpc_failure(&f, "/nowhere.Svc/Call").await;
    assert_eq!((status.as_str(), kind.as_str()), ("12", "no_route"));

    let (up, _) = grpc_service().await;
    let f = Figway::start(&config(&format!("http://{up}"), "")).await;
    let (status, kind, message) = grpc_failure(&f, "/slow").await;
    assert_eq!((status.as_str(), kind.as_str()), ("4", "upstream_timeout"));
    assert!(message.contains("did not answer in time"), "{message}");

    // A plain request to the same failure keeps the text answer.
    let plain = support::get(f.addr, "/nowhere", &[]).await;
    assert_eq!(plain.status, 404);
    assert!(plain.header("grpc-status").is_none());
}
