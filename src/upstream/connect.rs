//! Opening upstream connections: a TCP connection to a target within
//! `connect_timeout` (each failure logged, rate-limited per target), and
//! for h2c the handshake and the connection's driver task, which closes it
//! once it has had no stream for `idle_timeout` or its target has left
//! every snapshot. An HTTP/1.1 connection needs neither: it is a socket
//! the request's task reads and writes (`h1`), and its pool looks after it
//! while idle. The client (`client.rs`) asks for a connection here when
//! its pool has none.

use std::future::Future;
use std::sync::{Arc, Weak};
use std::task::Poll;
use std::time::Duration;

use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::h1::conn::Conn;
use super::h2pool;
use super::h2pool::ConnState;
use super::Target;
use crate::clock;

/// A TCP connection to the target within `timeout`. Targets are addresses:
/// names are resolved ahead of time into one target per address (see
/// `dns`), never here on the way of a request.
async fn connect_tcp(target: &Target, timeout: Duration) -> Option<TcpStream> {
    let stream = match dial(&target.authority, timeout).await {
        Ok(s) => s,
        Err(why) => {
            connect_failed(target, &why);
            return None;
        }
    };
    // Small requests and responses must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    Some(stream)
}

/// Connects to `authority`, an `ip:port` (every target is an address since
/// SPEC §10: names become one target per address ahead of time), within
/// `timeout`; says which step failed, for the log line.
async fn dial(authority: &str, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let Ok(address) = authority.parse::<std::net::SocketAddr>() else {
        return Err(ConnectError::NotAnAddress);
    };
    match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(ConnectError::Io(e)),
        Err(_) => Err(ConnectError::Timeout(timeout)),
    }
}

/// Why a new connection to a target could not be made.
enum ConnectError {
    /// The target's authority is not an `ip:port` (compile makes every
    /// target one, so this would be a bug, said rather than panicked on).
    NotAnAddress,
    /// The connect failed (refused, unreachable, ...).
    Io(std::io::Error),
    /// `connect_timeout` ran out while connecting.
    Timeout(Duration),
    /// TCP connected, but h2c's settings exchange failed or timed out.
    Handshake(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::NotAnAddress => f.write_str("not an ip:port"),
            ConnectError::Io(e) => write!(f, "{e}"),
            ConnectError::Timeout(t) => write!(f, "no connection within connect_timeout ({t:?})"),
            ConnectError::Handshake(e) => write!(f, "handshake failed: {e}"),
        }
    }
}

/// Logs a failed connect at `warn`, at most once per target per
/// [`LogLimit::EVERY_MS`](super::log_limit::LogLimit::EVERY_MS) (a dead
/// target fails every request sent to it); the next line counts the ones
/// held back (`suppressed`), and those still show at `debug`. Every such
/// failure answers `502 upstream_connect` unless a retry succeeds, and
/// this line is the only place that says why.
fn connect_failed(target: &Target, why: &ConnectError) {
    let Some(suppressed) = target.connect_log.admit(clock::now_ms()) else {
        tracing::debug!(
            upstream = %target.upstream,
            upstream_target = %target.authority,
            error = %why,
            "upstream connect failed"
        );
        return;
    };
    tracing::warn!(
        upstream = %target.upstream,
        upstream_target = %target.authority,
        error = %why,
        suppressed,
        "cannot connect to an upstream target"
    );
}

/// Opens a new HTTP/1.1 connection to the target.
pub(super) async fn connect_http1(target: &Target, timeout: Duration) -> Option<Box<Conn>> {
    connect_tcp(target, timeout).await.map(Conn::new)
}

/// Opens the thread's h2c connection to the target and starts its driver.
pub(super) async fn connect_h2c(
    target: &Arc<Target>,
    timeout: Duration,
) -> Option<(h2pool::Sender, Arc<ConnState>)> {
    let stream = connect_tcp(target, timeout).await?;
    let handshake = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(TokioIo::new(stream));
    let (sender, connection) = match tokio::time::timeout(timeout, handshake).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            connect_failed(target, &ConnectError::Handshake(e.to_string()));
            return None;
        }
        Err(_) => {
            let why = format!("no HTTP/2 settings within connect_timeout ({timeout:?})");
            connect_failed(target, &ConnectError::Handshake(why));
            return None;
        }
    };
    let state = Arc::new(ConnState::default());
    tokio::spawn(drive(
        connection,
        state.clone(),
        Arc::downgrade(target),
        target.retired(),
    ));
    Some((sender, state))
}

/// Runs one h2c connection until it ends, or until it has had no stream
/// for its target's `idle_timeout`, or its target is gone (then an
/// idle connection closes at once, one in use once its exchange is over).
///
/// A wake-up of the connection (several per exchange) costs the
/// connection's own poll and two atomic loads: the idle timer and the
/// target's retirement are only looked into when the timer has fired or
/// the target has gone. The retirement `Notify` is polled once, to
/// register this task's waker (a spawned task's waker does not change), so
/// that a target leaving wakes its idle connections; a `select!` over the
/// three would poll the timer and take the `Notify`'s lock, which every
/// connection to the target shares, on every wake-up.
async fn drive(
    connection: impl Future<Output = hyper::Result<()>>,
    state: Arc<ConnState>,
    target: Weak<Target>,
    retired: Arc<tokio::sync::Notify>,
) {
    tokio::pin!(connection);
    let gone = retired.notified();
    tokio::pin!(gone);
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    let mut registered = false;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(ended) = connection.as_mut().poll(cx) {
            if let Err(e) = ended {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
            return Poll::Ready(());
        }
        if !registered {
            registered = true;
            let _ = gone.as_mut().poll(cx);
        } else if target.strong_count() > 0 && !timer.is_elapsed() {
            return Poll::Pending;
        }
        // The timer fired, the target left, or this is the first poll:
        // close the connection, or set the timer for the next look.
        loop {
            let idle = state.idle_for(clock::now_ms());
            let timeout = target.upgrade().map(|t| t.idle_timeout_ms());
            let wait = match (idle, timeout) {
                // No snapshot lists the target any more: an idle connection
                // closes; one still in use finishes its exchange first.
                (Some(_), None) => return Poll::Ready(()),
                (None, None) => Duration::from_millis(100),
                (Some(idle), Some(timeout)) if idle >= timeout => return Poll::Ready(()),
                (Some(idle), Some(timeout)) => Duration::from_millis(timeout - idle),
                (None, Some(timeout)) => Duration::from_millis(timeout.max(1)),
            };
            timer.as_mut().reset(tokio::time::Instant::now() + wait);
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    })
    .await
}
