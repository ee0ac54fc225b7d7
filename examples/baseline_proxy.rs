//! The floor figway's request path is measured against: the smallest
//! reverse proxy on the same crates (hyper http1 server and client
//! connections in a per-thread LIFO pool, a current-thread tokio runtime,
//! SO_NODELAY, a header-read and an upstream timeout, hop-by-hop
//! `Connection` dropped), with none of figway's
//! features. Comparing its CPU per request with figway's on the same machine
//! separates the cost of figway's own code from the cost of the hyper/tokio
//! design both share.
//!
//! `cargo run --release --example baseline_proxy -- LISTEN UPSTREAM`
//! (e.g. `127.0.0.1:8080 127.0.0.1:8000`).

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http::header::CONNECTION;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};

type Body = UnsyncBoxBody<bytes::Bytes, hyper::Error>;

thread_local! {
    static POOL: RefCell<Vec<SendRequest<Incoming>>> = const { RefCell::new(Vec::new()) };
}

/// Returns the connection to the pool when the response body has ended.
struct Returning {
    inner: Incoming,
    sender: Option<SendRequest<Incoming>>,
}

impl http_body::Body for Returning {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, hyper::Error>>> {
        let frame = std::task::ready!(std::pin::Pin::new(&mut self.inner).poll_frame(cx));
        if frame.is_none() || self.inner.is_end_stream() {
            if let Some(s) = self.sender.take() {
                POOL.with_borrow_mut(|p| p.push(s));
            }
        }
        std::task::Poll::Ready(frame)
    }
}

async fn connect(upstream: SocketAddr) -> Option<SendRequest<Incoming>> {
    let stream = TcpStream::connect(upstream).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::task::spawn_local(conn);
    Some(sender)
}

async fn proxy(mut req: Request<Incoming>, upstream: SocketAddr) -> Response<Body> {
    req.headers_mut().remove(CONNECTION);
    let pooled = POOL.with_borrow_mut(|p| p.pop());
    let mut sender = match pooled {
        Some(s) if s.is_ready() => s,
        _ => match connect(upstream).await {
            Some(s) => s,
            None => return bad_gateway(),
        },
    };
    let answer = tokio::time::timeout(Duration::from_secs(30), sender.send_request(req)).await;
    match answer {
        Ok(Ok(response)) => {
            let (mut parts, inner) = response.into_parts();
            parts.headers.remove(CONNECTION);
            let body = Returning {
                inner,
                sender: Some(sender),
            };
            Response::from_parts(parts, body.boxed_unsync())
        }
        _ => bad_gateway(),
    }
}

fn bad_gateway() -> Response<Body> {
    let body = Full::new(bytes::Bytes::from_static(b"bad gateway\n"))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::BAD_GATEWAY;
    r
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(upstream)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: baseline_proxy LISTEN_ADDR UPSTREAM_ADDR");
        std::process::exit(2);
    };
    let (Ok(listen), Ok(upstream)) = (listen.parse::<SocketAddr>(), upstream.parse()) else {
        eprintln!("addresses are ip:port");
        std::process::exit(2);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listener = TcpListener::bind(listen)
            .await
            .unwrap_or_else(|e| panic!("bind {listen}: {e}"));
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let service =
                service_fn(
                    move |req| async move { Ok::<_, Infallible>(proxy(req, upstream).await) },
                );
            tokio::task::spawn_local(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}
