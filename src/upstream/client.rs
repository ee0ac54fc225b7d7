//! The upstream client: one attempt at one target. It takes a pooled
//! connection or opens one (within `connect_timeout`) — HTTP/1.1 from the
//! per-thread pool, or for `protocol = "h2c"` a stream on the thread's
//! shared HTTP/2 connection to the target (`h2pool`) — sends the request,
//! and waits for the response head (within `request_timeout`, counted from
//! the upload's last progress). The proxy and the shadow both send through
//! [`send`]; this module imports neither.
//!
//! A connection goes back to its pool only when its response body has been
//! read to the end ([`Lease::release`]); one abandoned midway is dropped,
//! which closes it. Each connection's driver task also closes it once it
//! has sat idle in a pool for `idle_timeout`, or once its target has left
//! every snapshot.

use std::future::Future;
use std::sync::{Arc, Weak};
use std::task::Poll;
use std::time::Duration;

use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response};
use http::{Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::h2pool;
use super::pool::{self, Conn, ConnState};
use super::{Target, Upstream};
use crate::body::{RequestBody, Upload};
use crate::clock;
use crate::config::Protocol;
use crate::error::ErrorKind;

/// Why one attempt failed, and what is left to retry with.
// The big variant hands the unsent request back for the next attempt; it is
// moved once per failed attempt, which a Box would not make cheaper.
#[allow(clippy::large_enum_variant)]
pub enum Failure {
    /// No connection; the request was never sent and comes back whole.
    Connect(Request<RequestBody>),
    /// The connection closed or reset before the response head.
    Reset,
    /// No response head within `request_timeout` (of the request's last
    /// upload progress). While the upload was unfinished, the client may as
    /// well be the slow one.
    Timeout { upload_unfinished: bool },
    /// The client's own body broke while it was being forwarded.
    ClientBody,
}

impl Failure {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Failure::Connect(_) => ErrorKind::UpstreamConnect,
            Failure::Reset => ErrorKind::UpstreamReset,
            Failure::Timeout { .. } => ErrorKind::UpstreamTimeout,
            Failure::ClientBody => ErrorKind::BadRequest,
        }
    }

    /// Whether the target is to blame (for outlier detection and the
    /// upstream's error counters): not when the client's upload broke or
    /// was still under way when time ran out.
    pub fn is_upstreams_fault(&self) -> bool {
        !matches!(
            self,
            Failure::ClientBody
                | Failure::Timeout {
                    upload_unfinished: true
                }
        )
    }
}

/// A connection lent to one exchange; give it back with [`Lease::release`]
/// once the response has been read to its end.
pub struct Lease(Lent);

enum Lent {
    Http1 {
        conn: Conn,
        target: Arc<Target>,
    },
    /// A stream on a shared h2c connection; it ends when this drops.
    H2 {
        _stream: Stream,
    },
}

impl Lease {
    pub fn release(self) {
        if let Lent::Http1 { conn, target } = self.0 {
            pool::checkin(target.id, target.idle_timeout_ms(), conn, clock::now_ms());
        }
    }
}

/// One open stream on an h2c connection, counted while it lives.
struct Stream(Arc<ConnState>);

impl Stream {
    fn new(state: Arc<ConnState>) -> Stream {
        state.stream_started();
        Stream(state)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.0.stream_ended(clock::now_ms());
    }
}

/// One attempt at one target: a pooled or new connection, the request, and
/// the response head within `request_timeout`.
pub async fn send(
    upstream: &Upstream,
    target: &Arc<Target>,
    request: Request<RequestBody>,
) -> Result<(Response<Incoming>, Lease), Failure> {
    match upstream.protocol {
        Protocol::Http1 => send_http1(upstream, target, request).await,
        Protocol::H2c => send_h2c(upstream, target, request).await,
    }
}

async fn send_http1(
    upstream: &Upstream,
    target: &Arc<Target>,
    request: Request<RequestBody>,
) -> Result<(Response<Incoming>, Lease), Failure> {
    let timeouts = upstream.timeouts;
    let pooled = pool::checkout(target.id, target.idle_timeout_ms(), clock::now_ms());
    let (mut conn, mut reused) = match pooled {
        Some(c) => (c, true),
        None => match connect_http1(target, timeouts.connect).await {
            Some(c) => (c, false),
            None => return Err(Failure::Connect(request)),
        },
    };
    let mut request = request;
    loop {
        let upload = request.body().upload().cloned();
        let attempt = head_within(
            timeouts.request,
            upload.as_deref(),
            conn.sender.try_send_request(request),
        )
        .await;
        match attempt {
            Err(()) => {
                return Err(Failure::Timeout {
                    upload_unfinished: upload.is_some_and(|u| !u.is_done()),
                })
            }
            Ok(Ok(response)) => {
                let lease = Lease(Lent::Http1 {
                    conn,
                    target: target.clone(),
                });
                return Ok((response, lease));
            }
            Ok(Err(mut e)) => match e.take_message() {
                // A pooled connection the upstream closed while it sat idle:
                // nothing was written, so a fresh connection may carry the
                // very same request. Not a retry: no target failed.
                Some(unsent) if reused => {
                    request = unsent;
                    conn = match connect_http1(target, timeouts.connect).await {
                        Some(c) => c,
                        None => return Err(Failure::Connect(request)),
                    };
                    reused = false;
                }
                Some(unsent) => return Err(Failure::Connect(unsent)),
                None => {
                    let error = e.into_error();
                    tracing::debug!(upstream = %target.upstream, upstream_target = %target.authority, error = %error, "upstream request failed");
                    return Err(if error.is_user() {
                        Failure::ClientBody
                    } else {
                        Failure::Reset
                    });
                }
            },
        }
    }
}

/// `request_timeout` runs from the last progress of the request body, not
/// from the start: a large upload that keeps moving is not cut, and the
/// wait for the head is measured from its last byte (SPEC §2: per attempt,
/// until the response head arrives).
async fn head_within<F: std::future::Future>(
    limit: Duration,
    upload: Option<&Upload>,
    response: F,
) -> Result<F::Output, ()> {
    let Some(upload) = upload else {
        return tokio::time::timeout(limit, response).await.map_err(|_| ());
    };
    tokio::pin!(response);
    let limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
    let start = clock::now_ms();
    loop {
        let due = upload.last_ms().max(start).saturating_add(limit_ms);
        let now = clock::now_ms();
        if now >= due {
            return Err(());
        }
        if let Ok(out) = tokio::time::timeout(Duration::from_millis(due - now), &mut response).await
        {
            return Ok(out);
        }
    }
}

/// One attempt on a target's shared h2c connection (opened when the
/// thread has none). The request goes out as HTTP/2: its `Host` becomes the
/// `:authority` (the target's own when it has none).
async fn send_h2c(
    upstream: &Upstream,
    target: &Arc<Target>,
    mut request: Request<RequestBody>,
) -> Result<(Response<Incoming>, Lease), Failure> {
    let timeouts = upstream.timeouts;
    let slot = h2pool::slot(target.id);
    let open = slot
        .get_or_try_init(|| async { connect_h2c(target, timeouts.connect).await.ok_or(()) })
        .await;
    let (mut sender, state) = match open {
        Ok((sender, state)) => (sender.clone(), state.clone()),
        Err(()) => return Err(Failure::Connect(request)),
    };
    let authority = request
        .headers_mut()
        .remove(HOST)
        .and_then(|h| Authority::try_from(h.as_bytes()).ok())
        .or_else(|| Authority::try_from(&*target.authority).ok());
    let mut uri = std::mem::take(request.uri_mut()).into_parts();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = authority;
    if uri.path_and_query.is_none() {
        uri.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    match Uri::from_parts(uri) {
        Ok(u) => *request.uri_mut() = u,
        // Unreachable with an authority from a valid header or target.
        Err(_) => return Err(Failure::Connect(request)),
    }
    *request.version_mut() = Version::HTTP_2;
    let stream = Stream::new(state);
    let upload = request.body().upload().cloned();
    let attempt = head_within(
        timeouts.request,
        upload.as_deref(),
        sender.send_request(request),
    )
    .await;
    match attempt {
        Err(()) => Err(Failure::Timeout {
            upload_unfinished: upload.is_some_and(|u| !u.is_done()),
        }),
        Ok(Ok(response)) => Ok((response, Lease(Lent::H2 { _stream: stream }))),
        Ok(Err(error)) => {
            tracing::debug!(upstream = %target.upstream, upstream_target = %target.authority, error = %error, "h2c request failed");
            Err(if error.is_user() {
                Failure::ClientBody
            } else {
                Failure::Reset
            })
        }
    }
}

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
    /// TCP connected, but the HTTP handshake failed or timed out (h2c's
    /// settings exchange; HTTP/1.1's handshake does no I/O).
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

/// Opens a new HTTP/1.1 connection to the target and starts its driver.
async fn connect_http1(target: &Arc<Target>, timeout: Duration) -> Option<Conn> {
    let stream = connect_tcp(target, timeout).await?;
    let (sender, connection) = match http1::Builder::new().handshake(TokioIo::new(stream)).await {
        Ok(h) => h,
        Err(e) => {
            connect_failed(target, &ConnectError::Handshake(e.to_string()));
            return None;
        }
    };
    let state = Arc::new(ConnState::default());
    let retired = target.retired();
    // Upgradeable, so that a 101 hands the connection to the proxy's
    // tunnel (which never returns it to a pool); a plain exchange is
    // unaffected.
    tokio::spawn(drive(
        connection.with_upgrades(),
        state.clone(),
        Arc::downgrade(target),
        retired,
    ));
    Some(Conn { sender, state })
}

/// Opens the thread's h2c connection to the target and starts its driver.
async fn connect_h2c(
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

/// Runs one upstream connection until it ends, or until it has sat idle in
/// a pool for its target's `idle_timeout`, or its target is gone (then an
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
    // hyper's upgradeable connection, a type it does not name.
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
