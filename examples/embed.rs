//! An application that embeds figway (`figway::embed`): it loads a figway
//! config, wraps figway's service in tower layers of its own (a bearer-token
//! check answering 401 with JSON, and a response header saying who served),
//! and serves it with hyper on one tokio runtime, with figway's admin API
//! beside it.
//!
//! ```text
//! EMBED_TOKEN=s3cret cargo run --release --example embed -- figway.toml [LISTEN]
//! ```
//!
//! LISTEN defaults to the config's `[listen] address`; the admin API is on
//! `[admin] address`. The config file is watched and reloaded on change and
//! on SIGHUP, as with the binary. Then, with the config's upstreams running:
//!
//! ```text
//! curl -i http://127.0.0.1:8080/                                  # 401, JSON body
//! curl -i -H 'authorization: Bearer s3cret' http://127.0.0.1:8080/ # proxied by figway
//! curl -s http://127.0.0.1:9901/metrics | grep figway_requests_total
//! ```
//!
//! Ctrl-C (or SIGTERM) drains: `/readyz` turns 503, connections finish
//! their requests, WebSockets get `drain_timeout`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use figway::embed::{Figway, ResponseBody};
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower::{Layer, Service, ServiceBuilder};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(config), listen) = (args.next(), args.next()) else {
        eprintln!("usage: EMBED_TOKEN=TOKEN embed CONFIG [LISTEN]");
        return ExitCode::from(2);
    };
    let Some(token) = std::env::var("EMBED_TOKEN").ok().filter(|t| !t.is_empty()) else {
        eprintln!("embed: set EMBED_TOKEN to the bearer token clients must send");
        return ExitCode::from(2);
    };
    // The token as the whole header value it must equal, built once.
    let Ok(expected) = HeaderValue::try_from(format!("Bearer {token}")) else {
        eprintln!("embed: EMBED_TOKEN is not a valid header value");
        return ExitCode::from(2);
    };
    // Colour only on a terminal: files and pipes get plain text.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // One runtime, one thread: the binary's workers are each the same, so
    // the two cost the same per request but for what embedding adds
    // (docs/benchmarks.md, "Embedding"). figway's service runs on a
    // multi-thread runtime too.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("embed: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(serve(&config, listen, expected)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("embed: {e}");
            ExitCode::from(1)
        }
    }
}

async fn serve(
    config: &str,
    listen: Option<String>,
    expected: HeaderValue,
) -> Result<(), Box<dyn std::error::Error>> {
    let builder = Figway::load(config)?;
    let address: SocketAddr = match listen {
        Some(a) => a.parse()?,
        None => builder.config().listen.address,
    };
    let admin = figway::server::bind_exclusive(builder.config().admin.address)?;
    let figway = builder
        .watch_file(true)
        .reload_on_sighup(true)
        .admin(admin)
        .start()?;
    let listener = figway::server::bind_exclusive(address)?;
    tracing::info!(listen = %listener.local_addr()?, admin = ?figway.admin_address(), "embed serving");

    let http = figway.http_builder();
    let graceful = GracefulShutdown::new();
    let auth = RequireBearerLayer::new(expected);
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        // Under `[listen] max_connections`, as the binary: past it, new
        // connections wait in the kernel's backlog.
        let slot = tokio::select! {
            slot = figway.connection_slot() => slot,
            _ = &mut stop => break,
        };
        let Some(slot) = slot else { break };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let figway_service = figway.service(peer);
        // figway's smuggling guard over the connection's bytes (its limits
        // with a layer that answers some requests itself: `figway::embed`).
        let io = TokioIo::new(figway_service.guard(stream));
        let service = ServiceBuilder::new()
            .map_response(served_by)
            .layer(auth.clone())
            .service(figway_service);
        let conn = http
            .serve_connection_with_upgrades(io, TowerToHyperService::new(service))
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    let drain_timeout = figway.listen().drain_timeout;
    figway.start_draining();
    tracing::info!("draining");
    // HTTP connections (ours) and upgraded ones (figway's), side by side.
    let connections = tokio::time::timeout(drain_timeout, graceful.shutdown());
    let (closed, ()) = tokio::join!(connections, figway.shutdown(drain_timeout));
    if closed.is_err() {
        tracing::warn!("drain timeout reached; remaining connections cut");
    }
    Ok(())
}

/// The second layer: every answer says who served it.
fn served_by(mut response: Response<ResponseBody>) -> Response<ResponseBody> {
    static SERVED_BY: http::HeaderName = http::HeaderName::from_static("x-served-by");
    response
        .headers_mut()
        .insert(&SERVED_BY, HeaderValue::from_static("embed-example"));
    response
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

// === impl RequireBearer ===

/// Lets a request through to the inner service only with
/// `authorization: Bearer TOKEN`; others get 401 with a JSON body, and the
/// inner service (figway) never sees them.
#[derive(Clone)]
struct RequireBearerLayer {
    expected: Arc<HeaderValue>,
}

impl RequireBearerLayer {
    fn new(expected: HeaderValue) -> RequireBearerLayer {
        RequireBearerLayer {
            expected: Arc::new(expected),
        }
    }
}

impl<S> Layer<S> for RequireBearerLayer {
    type Service = RequireBearer<S>;

    fn layer(&self, inner: S) -> RequireBearer<S> {
        RequireBearer {
            inner,
            expected: self.expected.clone(),
        }
    }
}

#[derive(Clone)]
struct RequireBearer<S> {
    inner: S,
    expected: Arc<HeaderValue>,
}

impl<S> Service<Request<Incoming>> for RequireBearer<S>
where
    S: Service<Request<Incoming>, Response = Response<ResponseBody>, Error = Infallible>,
    // figway's future is boxed, hence Unpin; so no pin projection here.
    S::Future: Unpin,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = AuthFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        // A plain comparison is enough for an example; a real check would
        // compare in constant time, or verify a signed token.
        if req.headers().get(AUTHORIZATION) == Some(&*self.expected) {
            AuthFuture::Allowed(self.inner.call(req))
        } else {
            AuthFuture::Denied
        }
    }
}

/// The 401 answer, in figway's body type.
fn unauthorized() -> Response<ResponseBody> {
    let body = Bytes::from_static(
        b"{\"error\":\"unauthorized\",\"hint\":\"send authorization: Bearer <token>\"}\n",
    );
    let mut response = Response::new(ResponseBody::full(body));
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

enum AuthFuture<F> {
    Allowed(F),
    /// The 401 is built when polled, so the future stays small.
    Denied,
}

impl<F> Future for AuthFuture<F>
where
    F: Future<Output = Result<Response<ResponseBody>, Infallible>> + Unpin,
{
    type Output = Result<Response<ResponseBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut *self {
            AuthFuture::Allowed(inner) => Pin::new(inner).poll(cx),
            AuthFuture::Denied => Poll::Ready(Ok(unauthorized())),
        }
    }
}
