//! One client connection, from its first bytes to its close: the TLS
//! handshake, the choice of HTTP server by the first bytes (figway's own
//! HTTP/1.1 server, `h1`, for plain HTTP/1; hyper-util's auto builder for
//! TLS, h2c and the undecided), the head deadline of a connection that never sends a
//! request, and the drain's graceful close; and what a connection holds
//! while it lives (its `max_connections` place, its count in
//! `figway_connections_active`). `serve` (in `mod.rs`) accepts and spawns
//! [`connection`]; this module knows nothing of the accept loop.
//!
//! The connection's future is its task, held by every idle connection:
//! rare paths (TLS handshake, the auto builder) are boxed and nothing is
//! kept twice, so a plain HTTP/1 connection's task stays ~1 KiB, and an
//! idle one holds no buffer (`tests/alloc.rs` bounds the whole: ~2.9 KiB).

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::sync::futures::Notified;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;
use tokio_rustls::TlsAcceptor;

use super::drain::Drain;
use crate::body::ClientBody;
use crate::codec::socket::Socket;
use crate::framing::{ConnFlags, Guarded};
use crate::proxy::ConnCtx;
use crate::state::Shared;
use crate::tls::ClientStream;

/// What a connection holds until it ends: its place under
/// `max_connections` and its count in the open-connections gauge.
pub(super) type Held = (OwnedSemaphorePermit, ActiveConnection);

/// How a connection's HTTP server says it ended badly.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What every connection of one listener shares: the settings, the HTTP
/// servers, the TLS acceptor and the drain. One `Arc` a connection rather
/// than four: each connection's task holds it for its whole life.
pub(super) struct Listening {
    pub(super) shared: Arc<Shared>,
    pub(super) http: Http,
    pub(super) tls: Option<TlsAcceptor>,
    pub(super) drain: Drain,
}

/// One client connection from accept to close: its first bytes
/// ([`first_bytes`]), the TLS handshake when there is one, then HTTP until
/// the peer leaves or the drain closes it ([`until_done`]). The whole
/// head, first bytes and handshake included, is due within
/// `header_read_timeout` of the accept (slowloris; a TLS client that sends
/// nothing is cut off then). `conn` is the connection's facts, made at
/// accept.
#[allow(
    clippy::manual_async_fn,
    reason = "by-value arguments kept once: see proxy/mod.rs, Futures"
)]
pub(super) fn connection(
    stream: TcpStream,
    conn: Arc<ConnCtx>,
    listening: Arc<Listening>,
    held: Held,
) -> impl Future<Output = ()> + Send {
    // An `async` block, not an `async fn`: an `async fn` keeps its
    // arguments twice for the connection's whole life (as given and as
    // moved into its body), and this future is each connection's task.
    // For the same reason nothing but the arguments and the plain HTTP/1
    // connection lives across its awaits.
    async move {
        let head_timeout = listening.shared.listen.header_read_timeout;
        let Some(first) = first_bytes(&stream, head_timeout).await else {
            return;
        };
        let ended = if first.http1 && listening.tls.is_none() {
            // Plain bytes that cannot begin the HTTP/2 preface: HTTP/1 for
            // certain, served by figway's own HTTP/1.1 server (`h1`).
            let left = head_timeout.saturating_sub(first.waited);
            let socket = Socket::new(stream);
            let served = std::pin::pin!(super::h1::serve(
                socket,
                &conn,
                &listening.shared.listen,
                &listening.drain,
                left
            ));
            let drained = std::pin::pin!(listening.drain.wake.notified());
            // The drain needs no call into the connection: it reads the
            // drain's flag itself whenever it is woken. No deadline here
            // either: `h1` times the first head with its own timer.
            until_done(
                served,
                drained,
                &conn.framing,
                None,
                &listening.drain,
                |_| {},
            )
            .await
            .map(|r| r.map_err(Into::into))
        } else {
            // Boxed: the TLS handshake and the auto builder's connection
            // (HTTP/1 or h2, undecided) are several KiB, and inline they
            // would size the task of every connection, plain HTTP/1 ones
            // included, that is the memory each idle connection holds.
            Box::pin(auto_connection(&listening, stream, &conn, first.waited)).await
        };
        match ended {
            None => {
                tracing::debug!(peer = %conn.peer_addr(), "no request within header_read_timeout; closed");
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, peer = %conn.peer_addr(), "client connection ended with an error");
            }
            Some(Ok(())) => {}
        }
        // Named here so that the block owns it: a variable an `async` block
        // never mentions is not captured, and would be dropped (freeing the
        // connection's place) as soon as the task is made.
        drop(held);
    }
}

/// A connection served by the auto builder: TLS (HTTP/1 or h2 by ALPN,
/// after the handshake), h2c, or first bytes that may yet be the HTTP/2
/// preface. `waited` is how long the first bytes took. A failed handshake
/// ends it as `Some(Ok(()))`: [`handshake`] has logged why.
async fn auto_connection(
    listening: &Listening,
    stream: TcpStream,
    conn: &Arc<ConnCtx>,
    waited: Duration,
) -> Option<Result<(), BoxError>> {
    let listen = &listening.shared.listen;
    let (stream, waited) = match &listening.tls {
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
    let builder = shortened(&listening.http.auto, waited, left, |b, t| {
        b.http1().header_read_timeout(t);
    });
    let served = std::pin::pin!(builder
        .serve_connection_with_upgrades(io, service)
        .into_owned());
    let drained = std::pin::pin!(listening.drain.wake.notified());
    until_done(
        served,
        drained,
        &conn.framing,
        Some(left),
        &listening.drain,
        |c| c.graceful_shutdown(),
    )
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

/// The HTTP server settings of the binary's TLS, h2c and undecided
/// client connections (plain HTTP/1 ones are figway's own, `h1`):
/// [`http_builder`]'s.
pub(super) struct Http {
    auto: auto::Builder<TokioExecutor>,
}

impl Http {
    pub(super) fn new(shared: &Shared) -> Http {
        Http {
            auto: http_builder(shared),
        }
    }
}

/// Drives `conn` to its end (`Some`), unless no request has reached the
/// service when `left` (if given) runs out (then `None`, and the connection is
/// dropped, closing it). Once the drain begins, gracefully (`shutdown`):
/// HTTP/1.1 finishes the request in progress (or the first, still
/// arriving) with `Connection: close` and closes when idle; h2 sends
/// GOAWAY and finishes its open streams.
///
/// The head deadline: hyper's own head timer starts only once the auto
/// builder knows the protocol, and nothing bounds that wait; a client that
/// completes a TLS handshake, or sends part of the h2 preface, and then
/// nothing, would hold its connection (and a `max_connections` place)
/// forever. One timer per connection, dropped (deregistered) once a
/// request has been seen, so later wake-ups poll the connection, read one
/// counter and one flag, and nothing else.
///
/// A hand-written future rather than an `async fn`: it lives in every
/// connection's task for the connection's whole life, and an `async fn`
/// keeps its arguments twice (as given and as moved into its body).
/// `drained` is the drain's `Notify` future, pinned by the caller.
fn until_done<'a, 'd, C, E>(
    conn: Pin<&'a mut C>,
    drained: Pin<&'a mut Notified<'d>>,
    flags: &'a ConnFlags,
    left: Option<Duration>,
    drain: &'a Drain,
    shutdown: fn(Pin<&mut C>),
) -> UntilDone<'a, 'd, C>
where
    C: Future<Output = Result<(), E>>,
{
    UntilDone {
        conn,
        drained,
        flags,
        drain,
        shutdown,
        deadline: left.map(|left| Box::pin(tokio::time::sleep(left))),
        listening: false,
        draining: false,
    }
}

/// [`until_done`]'s future.
struct UntilDone<'a, 'd, C> {
    conn: Pin<&'a mut C>,
    drained: Pin<&'a mut Notified<'d>>,
    flags: &'a ConnFlags,
    drain: &'a Drain,
    shutdown: fn(Pin<&mut C>),
    deadline: Option<Pin<Box<Sleep>>>,
    listening: bool,
    draining: bool,
}

impl<C, E> Future for UntilDone<'_, '_, C>
where
    C: Future<Output = Result<(), E>>,
{
    type Output = Option<Result<(), E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Every field is a pointer, a flag or boxed: the future is Unpin.
        let this = self.get_mut();
        // The connection is polled first, so by the time it hears of the
        // drain it has read the bytes `first_bytes` saw and, under the
        // auto builder, left its version sniffing, where a graceful
        // shutdown would drop it unanswered. (Only a client whose first
        // bytes are a strict prefix of the h2 preface can still be there.)
        if let Poll::Ready(ended) = this.conn.as_mut().poll(cx) {
            return Poll::Ready(Some(ended));
        }
        if !this.draining {
            if !this.listening {
                // Registers this task's waker once; the flag is read after,
                // so a drain that started before is seen, and one after
                // wakes this task.
                this.listening = true;
                let _ = this.drained.as_mut().poll(cx);
            }
            if this.drain.started() {
                this.draining = true;
                (this.shutdown)(this.conn.as_mut());
                if let Poll::Ready(ended) = this.conn.as_mut().poll(cx) {
                    return Poll::Ready(Some(ended));
                }
            }
        }
        if let Some(d) = this.deadline.as_mut() {
            if this.flags.requests() > 0 {
                this.deadline = None;
            } else if d.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
        }
        Poll::Pending
    }
}

/// What a new connection's first bytes said, and how long they took.
struct FirstBytes {
    waited: Duration,
    /// They cannot begin the HTTP/2 preface, so a plain connection is
    /// HTTP/1 (method names never begin `PRI * HTTP/2.0`).
    http1: bool,
}

/// The client preface of HTTP/2 over cleartext (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Waits until a new connection's first bytes have arrived; None when it
/// closed or `deadline` passed first.
///
/// SPEC §9: a connection accepted but not yet given its first request is
/// not idle. Until bytes arrive, hyper would treat it as idle and close it
/// on graceful shutdown (the auto builder cancels its version sniffing).
/// So the HTTP connection is only made, and only comes under the drain,
/// once there is something to read; the drain then lets that request in
/// and answers it with `Connection: close`. A peek rather than
/// `readable()`: tokio marks an accepted socket readable before any event
/// (so its first read need not wait for the driver), which `readable()`
/// would report as bytes. The cost is one `recv(MSG_PEEK)` per connection,
/// nothing per request; with the bytes already there (the usual case) the
/// timeout's timer is never registered.
async fn first_bytes(stream: &TcpStream, deadline: Duration) -> Option<FirstBytes> {
    let start = tokio::time::Instant::now();
    let mut bytes = [0u8; H2_PREFACE.len()];
    match tokio::time::timeout(deadline, stream.peek(&mut bytes)).await {
        Ok(Ok(n)) if n > 0 => Some(FirstBytes {
            waited: start.elapsed(),
            http1: !H2_PREFACE.starts_with(&bytes[..n]),
        }),
        _ => None,
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

/// Counts a client connection in `figway_connections_active` while it lives.
pub struct ActiveConnection(prometheus::IntGauge);

impl ActiveConnection {
    pub fn new(gauge: &prometheus::IntGauge) -> ActiveConnection {
        gauge.inc();
        ActiveConnection(gauge.clone())
    }
}

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}
