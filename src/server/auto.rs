//! Client connections served by hyper-util's auto builder: TLS (HTTP/1
//! or h2 by ALPN, after the handshake), h2c, and first bytes that may yet
//! be the HTTP/2 preface; and the builder's settings, which an embedding
//! application shares (`embed::Figway::http_builder`). Plain HTTP/1
//! connections are figway's own server's (`h1`), chosen in `conn`.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::drain::Drain;
use crate::body::ClientBody;
use crate::framing::Guarded;
use crate::proxy::ConnCtx;
use crate::state::Shared;
use crate::tls::ClientStream;

/// How a connection's HTTP server says it ended badly.
pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A connection served by the auto builder: TLS (HTTP/1 or h2 by ALPN,
/// after the handshake), h2c, or first bytes that may yet be the HTTP/2
/// preface. `waited` is how long the first bytes took. A failed handshake
/// ends it as `Some(Ok(()))`: [`handshake`] has logged why.
pub(super) async fn connection(
    http: &Http,
    listen: &crate::config::Listen,
    drain: &Drain,
    stream: TcpStream,
    conn: &Arc<ConnCtx>,
    waited: Duration,
) -> Option<Result<(), BoxError>> {
    let (stream, waited) = match &http.tls {
        None => (ClientStream::Plain(stream), waited),
        Some(acceptor) => {
            let left = listen.header_read_timeout.saturating_sub(waited);
            let Some((stream, took)) = handshake(acceptor, stream, left, conn.peer_addr()).await
            else {
                return Some(Ok(()));
            };
            (stream, waited + took)
        }
    };
    let left = listen.header_read_timeout.saturating_sub(waited);
    let io = guarded(stream, conn, listen);
    let service_conn = conn.clone();
    let service = service_fn(move |req| {
        crate::proxy::handle(
            req.map(ClientBody::Hyper),
            service_conn.clone(),
            crate::proxy::Writer::Hyper,
        )
    });
    let builder = shortened(&http.builder, waited, left, |b, t| {
        b.http1().header_read_timeout(t);
    });
    let served = std::pin::pin!(builder
        .serve_connection_with_upgrades(io, service)
        .into_owned());
    let drained = std::pin::pin!(drain.wake.notified());
    super::until_done::until_done(served, drained, &conn.framing, Some(left), drain, |c| {
        c.graceful_shutdown()
    })
    .await
}

/// A connection's stream as either HTTP server reads it: behind the
/// framing guard, with `[listen]`'s head size.
fn guarded(
    stream: ClientStream,
    conn: &ConnCtx,
    listen: &crate::config::Listen,
) -> TokioIo<Guarded<ClientStream>> {
    TokioIo::new(Guarded::new(
        stream,
        conn.framing.clone(),
        listen.max_header_bytes,
    ))
}

/// The TLS handshake within `left`, and how long it took; `None` (logged
/// at debug) when it failed or ran out of time.
async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    left: Duration,
    peer: SocketAddr,
) -> Option<(ClientStream, Duration)> {
    let start = tokio::time::Instant::now();
    match tokio::time::timeout(left, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some((ClientStream::Tls(Box::new(s)), start.elapsed())),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, %peer, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// What a listener's TLS, h2c and undecided client connections are served
/// with (plain HTTP/1 ones are figway's own, `h1`): [`http_builder`]'s
/// settings, and the TLS acceptor when the listener has TLS (then every
/// connection comes here).
pub(super) struct Http {
    builder: auto::Builder<TokioExecutor>,
    pub(super) tls: Option<TlsAcceptor>,
}

impl Http {
    pub(super) fn new(shared: &Shared, tls: Option<TlsAcceptor>) -> Http {
        Http {
            builder: http_builder(shared),
            tls,
        }
    }
}

/// A first byte later than this shortens the connection's own
/// `header_read_timeout` by the wait, so that the whole head is still due
/// within `header_read_timeout` of the accept (slowloris). Sooner ones keep
/// the shared builder: the slack is too small to matter, and the common
/// connection pays no copy.
const SLOW_FIRST_BYTES: Duration = Duration::from_millis(100);

/// `builder`, or when the first bytes took [`SLOW_FIRST_BYTES`] or more a
/// copy whose head timeout is what is `left` of `header_read_timeout`.
fn shortened<B: Clone>(
    builder: &B,
    waited: Duration,
    left: Duration,
    set_head_timeout: impl FnOnce(&mut B, Duration),
) -> Cow<'_, B> {
    if waited < SLOW_FIRST_BYTES {
        return Cow::Borrowed(builder);
    }
    let mut shortened = builder.clone();
    set_head_timeout(&mut shortened, left);
    Cow::Owned(shortened)
}

/// The HTTP server settings of every client connection: `[listen]`'s head
/// timeout and size, and figway's h2 limits. Public so that an embedding
/// application can serve with the same (`embed::Figway::http_builder`).
pub fn http_builder(shared: &Shared) -> auto::Builder<TokioExecutor> {
    let listen = &shared.listen;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(listen.header_read_timeout)
        .max_buf_size(listen.max_header_bytes);
    // h2 limits, set here rather than left to hyper's defaults so that they
    // are documented where they apply (docs/configuration.md, "HTTP/2"):
    // 256 concurrent streams a connection (nginx: 128, Envoy: 2^31), 1 MiB
    // of window per stream and 4 MiB per connection, and the rapid-reset
    // guard (CVE-2023-44487): a client whose streams are reset before
    // figway has taken them up, more than 20 at a time, or whose streams
    // figway had to reset for errors more than 256 times, gets GOAWAY
    // (ENHANCE_YOUR_CALM) and loses only its own connection.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(listen.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(4 << 20)
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(256);
    builder
}
