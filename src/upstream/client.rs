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
//! which closes it, and so is one whose response was framed two ways
//! (`response_framing`). Each connection's driver task (`connect.rs`, where
//! connections are opened) also closes it once it has sat idle in a pool
//! for `idle_timeout`, or once its target has left every snapshot.

use std::sync::Arc;
use std::time::Duration;

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response};
use http::{Uri, Version};
use hyper::body::{Body as _, Incoming};

use super::connect::{connect_h2c, connect_http1};
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
        /// False when the response's framing was in doubt: the
        /// connection then serves no other request.
        reuse: bool,
    },
    /// A stream on a shared h2c connection; it ends when this drops.
    H2 { _stream: Stream },
}

impl Lease {
    pub fn release(self) {
        if let Lent::Http1 {
            conn,
            target,
            reuse: true,
        } = self.0
        {
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
#[allow(
    clippy::manual_async_fn,
    reason = "by-value arguments kept once: see proxy/mod.rs, Futures"
)]
pub fn send<'a>(
    upstream: &'a Upstream,
    target: &'a Arc<Target>,
    request: Request<RequestBody>,
) -> impl std::future::Future<Output = Result<(Response<Incoming>, Lease), Failure>> + Send + 'a {
    async move {
        match upstream.protocol {
            Protocol::Http1 => send_http1(upstream, target, request).await,
            Protocol::H2c => send_h2c(upstream, target, request).await,
        }
    }
}

#[allow(
    clippy::manual_async_fn,
    reason = "by-value arguments kept once: see proxy/mod.rs, Futures"
)]
fn send_http1<'a>(
    upstream: &'a Upstream,
    target: &'a Arc<Target>,
    mut request: Request<RequestBody>,
) -> impl std::future::Future<Output = Result<(Response<Incoming>, Lease), Failure>> + Send + 'a {
    async move {
        let timeouts = upstream.timeouts;
        let pooled = pool::checkout(target.id, target.idle_timeout_ms(), clock::now_ms());
        let (mut conn, mut reused) = match pooled {
            Some(c) => (c, true),
            None => match connect_http1(target, timeouts.connect).await {
                Some(c) => (c, false),
                None => return Err(Failure::Connect(request)),
            },
        };
        loop {
            let upload = request.body().upload().cloned();
            let attempt = await_head!(
                timeouts.request,
                upload.as_deref(),
                conn.sender.try_send_request(request)
            );
            match attempt {
                Err(()) => {
                    return Err(Failure::Timeout {
                        upload_unfinished: upload.is_some_and(|u| !u.is_done()),
                    })
                }
                Ok(Ok(mut response)) => {
                    let Some(reuse) = response_framing(&mut response) else {
                        tracing::debug!(upstream = %target.upstream, upstream_target = %target.authority, "upstream response with a transfer coding other than chunked");
                        return Err(Failure::Reset);
                    };
                    let lease = Lease(Lent::Http1 {
                        conn,
                        target: target.clone(),
                        reuse,
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
}

/// What an HTTP/1.1 response head hyper accepted says of its framing, past
/// what hyper checks (RFC 9112 §6.3); `Some(reusable)`, or `None` for a
/// response figway cannot relay faithfully.
///
/// - `Transfer-Encoding` with `Content-Length`: the coding wins and hyper
///   reads the body as chunked, but the length would go on to the client
///   with the decoded body (`Transfer-Encoding` is hop-by-hop, the length
///   is not) and cut it short there, the rest read as the next response.
///   The length is removed, as an intermediary must (nginx 1.22 does the
///   same), and since the upstream framed one message two ways its
///   connection is not reused.
/// - A final coding other than `chunked` (`gzip` alone, say): hyper reads
///   the body to the connection's close, still coded, and without the
///   hop-by-hop header that names the coding no client could decode it
///   (nginx 1.22 passes it on so). Here it is an `upstream_reset`.
///
/// Answers without a body (to `HEAD`, 204, 304) are framed by no header
/// and pass as they are. Only responses with `Transfer-Encoding` pay more
/// than its lookup.
fn response_framing(response: &mut Response<Incoming>) -> Option<bool> {
    if !response.headers().contains_key(TRANSFER_ENCODING) || response.body().is_end_stream() {
        return Some(true);
    }
    let headers = response.headers_mut();
    let last = headers.get_all(TRANSFER_ENCODING).iter().next_back()?;
    let chunked = last
        .as_bytes()
        .rsplit(|b| *b == b',')
        .next()
        .is_some_and(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"));
    if !chunked {
        return None;
    }
    Some(headers.remove(CONTENT_LENGTH).is_none())
}

/// Awaits `$response` (an attempt's response head) within `$limit`, the
/// upstream's `request_timeout` (SPEC §2: per attempt, until the response
/// head arrives); `Err(())` when it ran out. With an `$upload` (a body
/// still streaming from the client) the limit runs from the upload's last
/// progress ([`head_within`]); without one it is a plain timeout. A macro
/// so that the common case builds its timeout around the request's future
/// where it is awaited: through an `async fn` that future (a few hundred
/// bytes), the timeout around it and the function's own state were moved
/// again on every request (benches/instructions.sh, log off: 39,283 ->
/// 38,556 and 38,610 instructions a request).
macro_rules! await_head {
    ($limit:expr, $upload:expr, $response:expr) => {
        match $upload {
            None => tokio::time::timeout($limit, $response)
                .await
                .map_err(|_| ()),
            Some(upload) => head_within($limit, upload, $response).await,
        }
    };
}
use await_head;

/// `request_timeout` while the request body is still uploading runs from
/// its last progress, not from the start: a large upload that keeps moving
/// is not cut, and the wait for the head is measured from its last byte.
async fn head_within<F: std::future::Future>(
    limit: Duration,
    upload: &Upload,
    response: F,
) -> Result<F::Output, ()> {
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
    let attempt = await_head!(
        timeouts.request,
        upload.as_deref(),
        sender.send_request(request)
    );
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
