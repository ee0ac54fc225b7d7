//! Listeners and connections: binding (exclusive, or with SO_REUSEPORT
//! beside the listeners already there, so a new binary can start beside an
//! old one), the `max_connections` cap, TLS termination, HTTP from clients
//! (a plain connection whose first bytes cannot begin the h2 preface goes
//! straight to hyper's HTTP/1 connection; h2c, TLS with ALPN and the
//! undecided go through hyper-util's auto builder), the admin server beside
//! it, and on shutdown `drain_delay` then the drain (SPEC §9), upgraded
//! connections included.
//!
//! [`run`] takes bound listeners and a shutdown future, so tests and the CLI
//! bind wherever they like (port 0 in tests) and stop it how they like.

use std::borrow::Cow;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::framing::{ConnFlags, Guarded};
use crate::proxy::ConnCtx;
use crate::state::Shared;
use crate::tls::ClientStream;

/// Binds a listening socket with SO_REUSEPORT (SPEC §9), beside any
/// listener on `address` that set it too: this process's other workers, and
/// under `run --upgrade` the figway being replaced.
pub fn bind(address: SocketAddr) -> io::Result<TcpListener> {
    bind_as(address, true)
}

/// As [`bind`], but fails with `AddrInUse` when any socket already holds
/// `address` (SPEC §9: a second figway started by mistake must not share the
/// listener and split traffic between two route tables).
pub fn bind_exclusive(address: SocketAddr) -> io::Result<TcpListener> {
    bind_as(address, false)
}

fn bind_as(address: SocketAddr, join: bool) -> io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Lets a restart bind over its predecessor's TIME_WAIT connections; it
    // never lets two sockets listen on one address.
    socket.set_reuseaddr(true)?;
    // Exclusive: the bind itself is the check, so it is race-free. Without
    // SO_REUSEPORT on this socket, Linux refuses an address any listener
    // holds (sharing needs the flag on both sides), whoever that is. A probe
    // bind followed by a real one would leave a gap in which two figways
    // starting together both pass. The flag set after the bind, before
    // listen, still makes the socket one others can join (Linux checks the
    // bound socket's flag when the next one binds and forms the group at
    // listen): the workers, and later a `run --upgrade`.
    #[cfg(unix)]
    if join {
        socket.set_reuseport(true)?;
    }
    socket.bind(address)?;
    #[cfg(unix)]
    if !join {
        socket.set_reuseport(true)?;
    }
    #[cfg(not(unix))]
    let _ = join;
    socket.listen(4096)
}

/// Serves the proxy on `proxy` and the admin API on `admin` until `shutdown`
/// resolves, then drains: stops accepting, turns `/readyz` to 503, lets
/// requests in flight finish for up to `drain_timeout`, and returns.
pub async fn run(
    proxy: TcpListener,
    admin: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()>,
) {
    run_with_workers(proxy, admin, shared, shutdown, async {}).await;
}

/// [`run`] as the first of several workers: the admin API keeps answering
/// until `others_drained` resolves too (the other workers' drains), so
/// `/readyz` says 503 and `/metrics` answers for as long as any request is
/// in flight anywhere in the process.
pub async fn run_with_workers(
    proxy: TcpListener,
    admin: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()>,
    others_drained: impl Future<Output = ()>,
) {
    let admin_task = tokio::spawn(crate::admin::serve(admin, shared.clone()));
    let trimmer = tokio::spawn(trim_after_crowds(shared.clone()));
    serve(proxy, shared, shutdown).await;
    others_drained.await;
    admin_task.abort();
    trimmer.abort();
}

/// The proxy side of [`run`] on one listener: accepts and serves client
/// connections until `shutdown` resolves and `drain_delay` has passed, then
/// drains them. Each worker thread of the binary runs one, on a listener of
/// its own (SO_REUSEPORT); they share the connection cap.
pub async fn serve(proxy: TcpListener, shared: Arc<Shared>, shutdown: impl Future<Output = ()>) {
    // Connection tasks, so that the drain can wait for them and cut what
    // outlives it.
    let mut connections = JoinSet::new();
    let http = Arc::new(Http::new(&shared));
    let tls = match &shared.tls {
        Some(certs) => match crate::tls::acceptor(certs.clone()) {
            Ok(a) => Some(a),
            Err(e) => {
                tracing::error!(error = %e, "cannot set up TLS; not serving");
                return;
            }
        },
        None => None,
    };
    let drain = Arc::new(Drain::new());
    let limit = shared.connection_slots.clone();
    let shutdown = stop_accepting(&shared, shutdown);
    tokio::pin!(shutdown);
    loop {
        // Finished connection tasks are reaped as they end, while waiting
        // for a permit or a connection: a task's memory (sized for the
        // connection's future) is only freed once its handle goes, and
        // after a crowd leaves nobody may connect again for a long while.
        // Past the cap we stop calling accept; new connections wait in the
        // kernel's backlog rather than being taken and then starved.
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            Some(_) = connections.join_next() => continue,
            _ = &mut shutdown => break,
        };
        let accepted = loop {
            tokio::select! {
                accepted = proxy.accept() => break Some(accepted),
                Some(_) = connections.join_next() => {}
                _ = &mut shutdown => break None,
            }
        };
        let (stream, peer) = match accepted {
            None => break,
            Some(Ok(a)) => a,
            Some(Err(e)) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let active = ActiveConnection::new(&shared.registry.metrics.connections);
        let served = connection(
            stream,
            peer,
            shared.clone(),
            http.clone(),
            tls.clone(),
            drain.clone(),
        );
        connections.spawn(async move {
            served.await;
            drop((permit, active));
        });
    }
    drop(proxy);
    shared.draining.store(true, Ordering::SeqCst);
    tracing::info!(connections = connections.len(), "draining");
    drain.start();
    // Upgraded connections (WebSockets) left their connection task with
    // their 101; they are waited for beside it and cut with the rest.
    let tunnels = shared.tunnels.clone();
    let all_closed = async {
        while connections.join_next().await.is_some() {}
        tunnels.drained().await;
    };
    if tokio::time::timeout(shared.listen.drain_timeout, all_closed)
        .await
        .is_err()
    {
        tracing::warn!(timeout = ?shared.listen.drain_timeout, "drain timeout reached; cutting remaining connections");
        // Requests dropped from here on are logged as drain cuts, not as
        // clients that left.
        shared.cutting.store(true, Ordering::SeqCst);
        shared.tunnels.cut_all();
        connections.abort_all();
    }
    while connections.join_next().await.is_some() {}
    // Cut tunnels end on their own tasks, logging as they go: waited for
    // (briefly), so the process does not exit before their lines.
    let _ = tokio::time::timeout(Duration::from_secs(1), shared.tunnels.drained()).await;
}

/// One client connection from accept to close: its first bytes
/// ([`first_bytes`]), the TLS handshake when there is one, then HTTP until
/// the peer leaves or the drain closes it ([`until_done`]). The whole
/// head, first bytes and handshake included, is due within
/// `header_read_timeout` of the accept (slowloris; a TLS client that sends
/// nothing is cut off then).
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    http: Arc<Http>,
    tls: Option<TlsAcceptor>,
    drain: Arc<Drain>,
) {
    let header_read_timeout = shared.listen.header_read_timeout;
    let Some(first) = first_bytes(&stream, header_read_timeout).await else {
        return;
    };
    let (stream, waited) = match &tls {
        None => (ClientStream::Plain(stream), first.waited),
        Some(acceptor) => {
            let start = tokio::time::Instant::now();
            let left = header_read_timeout.saturating_sub(first.waited);
            match tokio::time::timeout(left, acceptor.accept(stream)).await {
                Ok(Ok(s)) => (
                    ClientStream::Tls(Box::new(s)),
                    first.waited + start.elapsed(),
                ),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, %peer, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            }
        }
    };
    let flags = ConnFlags::new();
    let io = TokioIo::new(Guarded::new(
        stream,
        flags.clone(),
        shared.listen.max_header_bytes,
    ));
    let conn_ctx = Arc::new(ConnCtx::new(
        shared.clone(),
        peer,
        flags.clone(),
        tls.is_some(),
    ));
    let service = service_fn(move |req| crate::proxy::handle(req, conn_ctx.clone()));
    let left = header_read_timeout.saturating_sub(waited);
    let ended = if first.http1 && tls.is_none() {
        // Plain bytes that cannot begin the HTTP/2 preface: HTTP/1 for
        // certain, served by hyper's HTTP/1 connection directly rather than
        // through the auto builder's version sniffing, which would wrap
        // every read of the connection for the sake of its first bytes.
        let builder = shortened(&http.http1, waited, left, |b, t| {
            b.header_read_timeout(t);
        });
        let conn = builder.serve_connection(io, service).with_upgrades();
        until_done(conn, &flags, left, &drain, |c| c.graceful_shutdown())
            .await
            .map(|r| r.map_err(Into::into))
    } else {
        let builder = shortened(&http.auto, waited, left, |b, t| {
            b.http1().header_read_timeout(t);
        });
        let conn = builder
            .serve_connection_with_upgrades(io, service)
            .into_owned();
        until_done(conn, &flags, left, &drain, |c| c.graceful_shutdown()).await
    };
    let ended: Option<Result<(), Box<dyn std::error::Error + Send + Sync>>> = ended;
    match ended {
        None => tracing::debug!(%peer, "no request within header_read_timeout; closed"),
        Some(Err(e)) => {
            tracing::debug!(error = %e, %peer, "client connection ended with an error");
        }
        Some(Ok(())) => {}
    }
}

/// The HTTP server settings of the binary's client connections: hyper's
/// HTTP/1 connection for plain connections that are HTTP/1 from their
/// first bytes, the auto builder (HTTP/1 or h2, by preface or ALPN) for
/// the rest. Both carry the same settings ([`http_builder`]).
struct Http {
    http1: hyper::server::conn::http1::Builder,
    auto: auto::Builder<TokioExecutor>,
}

impl Http {
    fn new(shared: &Shared) -> Http {
        let listen = &shared.listen;
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(listen.header_read_timeout)
            .max_buf_size(listen.max_header_bytes);
        Http {
            http1,
            auto: http_builder(shared),
        }
    }
}

/// The drain's signal to the connections of one `serve`: a flag each
/// connection reads when it wakes (a load), and a `Notify` that wakes the
/// idle ones, each registered once per connection. A `watch` channel's
/// `wait_for` would take the channel's lock on every wake-up of every
/// connection, that is several times a request.
struct Drain {
    started: AtomicBool,
    wake: Notify,
}

impl Drain {
    fn new() -> Drain {
        Drain {
            started: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    fn start(&self) {
        self.started.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
    }
}

/// Drives `conn` to its end (`Some`), unless no request has reached the
/// service when `left` runs out (then `None`, and the connection is
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
async fn until_done<C, E>(
    conn: C,
    flags: &ConnFlags,
    left: Duration,
    drain: &Drain,
    shutdown: fn(Pin<&mut C>),
) -> Option<Result<(), E>>
where
    C: Future<Output = Result<(), E>>,
{
    tokio::pin!(conn);
    let mut deadline = Some(Box::pin(tokio::time::sleep(left)));
    let drained = drain.wake.notified();
    tokio::pin!(drained);
    let mut listening = false;
    let mut draining = false;
    std::future::poll_fn(|cx| {
        // The connection is polled first, so by the time it hears of the
        // drain it has read the bytes `first_bytes` saw and, under the
        // auto builder, left its version sniffing, where a graceful
        // shutdown would drop it unanswered. (Only a client whose first
        // bytes are a strict prefix of the h2 preface can still be there.)
        if let Poll::Ready(ended) = conn.as_mut().poll(cx) {
            return Poll::Ready(Some(ended));
        }
        if !draining {
            if !listening {
                // Registers this task's waker once; the flag is read after,
                // so a drain that started before is seen, and one after
                // wakes this task.
                listening = true;
                let _ = drained.as_mut().poll(cx);
            }
            if drain.started.load(Ordering::SeqCst) {
                draining = true;
                shutdown(conn.as_mut());
                if let Poll::Ready(ended) = conn.as_mut().poll(cx) {
                    return Poll::Ready(Some(ended));
                }
            }
        }
        if let Some(d) = deadline.as_mut() {
            if flags.requests() > 0 {
                deadline = None;
            } else if d.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
        }
        Poll::Pending
    })
    .await
}

/// SPEC §9 `drain_delay`: once `signal` resolves, `/readyz` says 503 at
/// once, but the listener keeps accepting (and connections keep their
/// keep-alive) for `drain_delay` more, so that load balancers take this
/// instance out of rotation before it refuses anything.
async fn stop_accepting(shared: &Shared, signal: impl Future<Output = ()>) {
    signal.await;
    shared.draining.store(true, Ordering::SeqCst);
    let delay = shared.listen.drain_delay;
    if !delay.is_zero() {
        tracing::info!(
            ?delay,
            "readyz says 503; accepting until drain_delay passes"
        );
        tokio::time::sleep(delay).await;
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

/// Returns freed memory to the OS once many connections have closed (see
/// `trim`): checked every two seconds, off the request path.
async fn trim_after_crowds(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut peak = 0;
    let max = shared.listen.max_connections;
    loop {
        tick.tick().await;
        let open = max.saturating_sub(shared.connection_slots.available_permits());
        peak = peak.max(open);
        if crate::trim::worth_trimming(peak, open) {
            peak = open;
            let _ = tokio::task::spawn_blocking(crate::trim::release_free_memory).await;
        }
    }
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
