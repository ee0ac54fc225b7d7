//! One client connection, from its first bytes to its close: the choice
//! of HTTP server by the first bytes (figway's own HTTP/1.1 server, `h1`,
//! for plain HTTP/1; hyper-util's auto builder, `auto`, for TLS, h2c and
//! the undecided), driven to its end by `until_done` (the drain's graceful
//! close, the head deadline); and what a connection holds while it lives
//! (its `max_connections` place, its count in
//! `figway_connections_active`). `serve` (in `mod.rs`) accepts and spawns
//! [`connection`]; this module knows nothing of the accept loop.
//!
//! The connection's future is its task, held by every idle connection:
//! rare paths (TLS handshake, the auto builder) are boxed and nothing is
//! kept twice, so a plain HTTP/1 connection's task stays ~1 KiB, and an
//! idle one holds no buffer (`tests/alloc.rs` bounds the whole: ~2.9 KiB).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use super::auto::Http;
use super::drain::Drain;
use super::until_done::until_done;
use crate::codec::socket::Socket;
use crate::proxy::ConnCtx;
use crate::state::Shared;

/// What a connection holds until it ends: its place under
/// `max_connections` and its count in the open-connections gauge.
pub(super) type Held = (OwnedSemaphorePermit, ActiveConnection);

/// What every connection of one listener shares: the settings, the auto
/// builder's servers with the TLS acceptor, and the drain. One `Arc` a connection rather
/// than four: each connection's task holds it for its whole life.
pub(super) struct Listening {
    pub(super) shared: Arc<Shared>,
    pub(super) http: Http,
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
        let ended = if first.http1 && listening.http.tls.is_none() {
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
            Box::pin(super::auto::connection(
                &listening.http,
                &listening.shared.listen,
                &listening.drain,
                stream,
                &conn,
                first.waited,
            ))
            .await
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
