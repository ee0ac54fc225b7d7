//! Listeners and connections: binding (with SO_REUSEPORT so a new binary can
//! start beside an old one), the `max_connections` cap, TLS termination,
//! HTTP/1.1 and h2 (h2c on plain TCP) from clients through hyper-util's auto
//! builder, the admin server beside it, and the drain on shutdown.
//!
//! [`run`] takes bound listeners and a shutdown future, so tests and the CLI
//! bind wherever they like (port 0 in tests) and stop it how they like.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::framing::{ConnFlags, Guarded};
use crate::proxy::ConnCtx;
use crate::state::Shared;
use crate::tls::ClientStream;

/// Binds a listening socket with SO_REUSEPORT (SPEC §9).
pub fn bind(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.bind(address)?;
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
/// connections until `shutdown` resolves, then drains them. Each worker
/// thread of the binary runs one, on a listener of its own (SO_REUSEPORT);
/// they share the connection cap.
pub async fn serve(proxy: TcpListener, shared: Arc<Shared>, shutdown: impl Future<Output = ()>) {
    // Connection tasks, so that the drain can cut what outlives it.
    let mut connections = JoinSet::new();
    let builder = Arc::new(http_builder(&shared));
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
    let graceful = GracefulShutdown::new();
    let limit = shared.connection_slots.clone();
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
        let conn = Connection {
            shared: shared.clone(),
            builder: builder.clone(),
            tls: tls.clone(),
            watcher: graceful.watcher(),
        };
        connections.spawn(async move {
            conn.serve(stream, peer).await;
            drop((permit, active));
        });
    }
    drop(proxy);
    shared.draining.store(true, Ordering::SeqCst);
    let open = graceful.count();
    tracing::info!(connections = open, "draining");
    // Upgraded connections (WebSockets) left hyper with their 101; they
    // are waited for beside it and cut with the rest.
    let drained = async {
        graceful.shutdown().await;
        shared.tunnels.drained().await;
    };
    if tokio::time::timeout(shared.listen.drain_timeout, drained)
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
}

/// What serving one client connection needs, cloned per connection.
struct Connection {
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    tls: Option<TlsAcceptor>,
    watcher: Watcher,
}

impl Connection {
    /// The TLS handshake when there is one, then HTTP/1.1 or h2 until the
    /// client or the drain ends it. The handshake runs here, on the
    /// connection's own task, so a slow one holds up nobody else; it has
    /// `header_read_timeout` to finish (a client that connects and sends
    /// nothing is cut off), and the request head then has its own.
    async fn serve(self, stream: TcpStream, peer: SocketAddr) {
        let shared = self.shared;
        let stream = match &self.tls {
            None => ClientStream::Plain(stream),
            Some(acceptor) => {
                let deadline = shared.listen.header_read_timeout;
                match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => ClientStream::Tls(Box::new(s)),
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
        let io = Guarded::new(stream, flags.clone(), shared.listen.max_header_bytes);
        let ctx = Arc::new(ConnCtx::new(
            shared.clone(),
            peer,
            flags,
            self.tls.is_some(),
        ));
        let service = service_fn(move |req| crate::proxy::handle(req, ctx.clone()));
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service);
        if let Err(e) = self.watcher.watch(conn.into_owned()).await {
            tracing::debug!(error = %e, %peer, "client connection ended with an error");
        }
    }
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

fn http_builder(shared: &Shared) -> auto::Builder<TokioExecutor> {
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
struct ActiveConnection(prometheus::IntGauge);

impl ActiveConnection {
    fn new(gauge: &prometheus::IntGauge) -> ActiveConnection {
        gauge.inc();
        ActiveConnection(gauge.clone())
    }
}

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}
