//! Listeners and connections: binding (exclusive, or with SO_REUSEPORT
//! beside the listeners already there, so a new binary can start beside an
//! old one), the `max_connections` cap, TLS termination, HTTP from clients
//! (a plain connection whose first bytes cannot begin the h2 preface goes
//! to figway's own HTTP/1.1 server, `h1`; h2c, TLS with ALPN and the
//! undecided go through hyper-util's auto builder), the admin server beside
//! it, and on shutdown `drain_delay` then the drain (SPEC §9), upgraded
//! connections included.
//!
//! [`run`] takes bound listeners and a shutdown future, so tests and the CLI
//! bind wherever they like (port 0 in tests) and stop it how they like.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinSet;

use crate::state::Shared;

mod auto;
mod conn;
mod drain;
mod h1;
mod until_done;

use auto::Http;
use conn::{connection, Listening};
use drain::Drain;

use crate::framing::ConnFlags;
use crate::proxy::ConnCtx;
pub use auto::http_builder;
pub use conn::ActiveConnection;

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
    let listening = Arc::new(Listening {
        shared: shared.clone(),
        http: Http::new(&shared, tls),
        drain: Drain::new(),
    });
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
        let conn = Arc::new(ConnCtx::new(
            shared.clone(),
            peer,
            ConnFlags::new(),
            listening.http.tls.is_some(),
        ));
        // Spawned as it is, not inside an `async` block that awaits it:
        // such a block keeps the future twice (its capture and its await),
        // and the task's size is what every idle connection holds.
        connections.spawn(connection(
            stream,
            conn,
            listening.clone(),
            (permit, active),
        ));
    }
    drop(proxy);
    drain_connections(&shared, &listening.drain, connections).await;
}

/// The drain (SPEC §9), once the listener is closed: every connection is
/// told ([`Drain::start`]) and finishes its request in progress, for up to
/// `drain_timeout`; what is still open then is cut, and logged as cut.
async fn drain_connections(shared: &Shared, drain: &Drain, mut connections: JoinSet<()>) {
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
