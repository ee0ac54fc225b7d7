//! The upstream client: one attempt at one target. It takes a pooled
//! connection or opens one (within `connect_timeout`) — HTTP/1.1 from the
//! per-thread pool, or for `protocol = "h2c"` a stream on the thread's
//! shared HTTP/2 connection to the target (`h2pool`) — sends the request,
//! and waits for the response head (within `request_timeout`, counted from
//! the upload's last progress). The proxy and the shadow both send through
//! [`send`]; this module imports neither.
//!
//! HTTP/1.1 goes through figway's own client (`h1`): its body puts the
//! connection back in the pool once read to the end; one abandoned midway
//! is closed, and so is one whose answer was framed in doubt. An h2c
//! stream ends when its body is dropped.

use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response};
use http::{Uri, Version};
use hyper::body::Incoming;

use super::connect::{connect_h2c, connect_http1};
use super::h1;
pub use super::h1::head::Form;
use super::h2pool::{self, ConnState};
use super::head_timeout::HeadWithin;
use super::pool;
use super::{Target, Upstream};
use crate::body::RequestBody;
use crate::clock;
use crate::codec::lines::HeadLines;
use crate::config::Protocol;
use crate::error::ErrorKind;

/// Why one attempt failed, and what is left to retry with.
pub enum Failure {
    /// No connection; the request was never sent and is still whole
    /// where the caller lent it from.
    Connect,
    /// The connection closed or reset before the response head, or the
    /// head was one figway will not relay (`h1::head::Refused`).
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
            Failure::Connect => ErrorKind::UpstreamConnect,
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

/// An upstream's response body, as the proxy and the shadow read it.
// The HTTP/1.1 body holds its connection inline: a box would be an
// allocation per request to save copying ~200 bytes a few times.
#[allow(clippy::large_enum_variant)]
pub enum UpstreamBody {
    /// From figway's own HTTP/1.1 client: it puts its connection back in
    /// the pool itself once read to the end. `lines`: the head's fields
    /// when they came as lines (`h1::head::Form`), the answer's map empty.
    Http1 {
        body: h1::Body,
        lines: Option<HeadLines>,
    },
    /// A stream on a shared h2c connection, counted open while this lives.
    H2 { body: Incoming, _stream: Stream },
}

/// Why an upstream body could not be read to its end.
#[derive(Debug)]
pub enum BodyError {
    Http1(h1::BodyError),
    H2(hyper::Error),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Http1(e) => e.fmt(f),
            BodyError::H2(e) => write!(f, "upstream body: {e}"),
        }
    }
}

impl std::error::Error for BodyError {}

impl UpstreamBody {
    /// The head's fields, when they came as lines.
    pub fn lines_mut(&mut self) -> Option<&mut HeadLines> {
        match self {
            UpstreamBody::Http1 { lines, .. } => lines.as_mut(),
            UpstreamBody::H2 { .. } => None,
        }
    }

    /// The head's fields as lines, taken to be written.
    pub fn take_lines(&mut self) -> Option<HeadLines> {
        match self {
            UpstreamBody::Http1 { lines, .. } => lines.take(),
            UpstreamBody::H2 { .. } => None,
        }
    }

    /// The upstream connection of a 101, for the tunnel: the socket and
    /// the bytes read past the 101's head.
    pub fn take_switched(&mut self) -> Option<(tokio::net::TcpStream, bytes::Bytes)> {
        match self {
            UpstreamBody::Http1 { body, .. } => body.take_switched().map(|conn| (*conn).into_io()),
            UpstreamBody::H2 { .. } => None,
        }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = bytes::Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, BodyError>>> {
        match self.get_mut() {
            UpstreamBody::Http1 { body, .. } => Pin::new(body)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(BodyError::Http1))),
            UpstreamBody::H2 { body, .. } => Pin::new(body)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(BodyError::H2))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Http1 { body, .. } => body.is_end_stream(),
            UpstreamBody::H2 { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            UpstreamBody::Http1 { body, .. } => body.size_hint(),
            UpstreamBody::H2 { body, .. } => body.size_hint(),
        }
    }
}

/// One open stream on an h2c connection, counted while it lives.
pub struct Stream(Arc<ConnState>);

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
/// the response head within `request_timeout`. `form`: how the caller
/// takes the head's fields (an h2c answer's come in a map, whatever it
/// asks). `now`: `clock`
/// milliseconds as the caller read them to pick the target (a pooled
/// connection idle past its time is not taken). `added`: fields to send
/// after the request's own (`h1::head::Added`).
///
/// The request is lent: on `Failure::Connect` it is left whole (the
/// caller may send it elsewhere); once sent, what is left of it is a husk
/// (its body gone to the upstream). Lent rather than moved in and handed
/// back, the request is held once, by the caller, not by every future
/// on the way down (proxy/mod.rs, Futures).
pub fn send<'a>(
    upstream: &'a Upstream,
    target: &'a Arc<Target>,
    request: &'a mut Request<RequestBody>,
    form: Form,
    now: u64,
    added: h1::head::Added<'a>,
) -> Attempt<
    impl std::future::Future<Output = Result<Response<UpstreamBody>, Failure>> + Send + 'a,
    impl std::future::Future<Output = Result<Response<UpstreamBody>, Failure>> + Send + 'a,
> {
    match upstream.protocol {
        Protocol::Http1 => Attempt::Http1 {
            attempt: send_http1(upstream, target, request, form, now, added),
        },
        Protocol::H2c => Attempt::H2c {
            attempt: send_h2c(upstream, target, request, added),
        },
    }
}

pin_project_lite::pin_project! {
    /// The future of [`send`]: one protocol's attempt or the other's. An
    /// enum, not an `async` block choosing between them: that block kept the
    /// request it hands on beside the attempt holding it, and was one more
    /// level of state to move on every request.
    #[project = AttemptProj]
    pub enum Attempt<A, B> {
        Http1 { #[pin] attempt: A },
        H2c { #[pin] attempt: B },
    }
}

impl<A, B, T> std::future::Future for Attempt<A, B>
where
    A: std::future::Future<Output = T>,
    B: std::future::Future<Output = T>,
{
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.project() {
            AttemptProj::Http1 { attempt } => attempt.poll(cx),
            AttemptProj::H2c { attempt } => attempt.poll(cx),
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
    request: &'a mut Request<RequestBody>,
    form: Form,
    now: u64,
    added: h1::head::Added<'a>,
) -> impl std::future::Future<Output = Result<Response<UpstreamBody>, Failure>> + Send + 'a {
    async move {
        let timeouts = upstream.timeouts;
        let (mut conn, mut reused) = match pool::checkout(target, now) {
            Some(c) => (c, true),
            None => match connect_http1(target, timeouts.connect).await {
                Some(c) => (c, false),
                None => return Err(Failure::Connect),
            },
        };
        loop {
            let attempt =
                h1::send(conn, request, target.clone(), form, timeouts.request, added).await;
            if let ControlFlow::Break(done) = settle_http1(attempt, reused, target) {
                return done;
            }
            conn = match connect_http1(target, timeouts.connect).await {
                Some(c) => c,
                None => return Err(Failure::Connect),
            };
            reused = false;
        }
    }
}

/// What one HTTP/1.1 exchange came to: the attempt's outcome, or
/// (`Continue`) a request left unsent by a pooled connection the upstream
/// closed while it sat idle, to go again on a fresh connection.
/// A function of its own so that nothing of the outcome is kept in the
/// attempt's state across that connect.
fn settle_http1(
    attempt: Result<h1::Answer, h1::Error>,
    reused: bool,
    target: &Target,
) -> ControlFlow<Result<Response<UpstreamBody>, Failure>> {
    let error = match attempt {
        Ok((parts, lines, body)) => {
            let body = UpstreamBody::Http1 { body, lines };
            return ControlFlow::Break(Ok(Response::from_parts(parts, body)));
        }
        Err(error) => error,
    };
    ControlFlow::Break(Err(match error {
        // No request reached a pooled connection the upstream had closed,
        // so a fresh connection may carry the very same one. Not a retry:
        // no target failed.
        h1::Error::Unsent if reused => return ControlFlow::Continue(()),
        // A fresh connection that failed before the request head was whole
        // is a failed connect: nothing was sent, so the request may go to
        // another target or the fallback.
        h1::Error::Unsent => {
            tracing::debug!(upstream = %target.upstream, upstream_target = %target.authority, "new upstream connection failed before the request was sent");
            Failure::Connect
        }
        h1::Error::ClientBody => Failure::ClientBody,
        h1::Error::Timeout { upload_unfinished } => Failure::Timeout { upload_unfinished },
        error => {
            tracing::debug!(upstream = %target.upstream, upstream_target = %target.authority, error = %error, "upstream request failed");
            Failure::Reset
        }
    }))
}

/// One attempt on a target's shared h2c connection (opened when the
/// thread has none). The request goes out as HTTP/2: its `Host` becomes the
/// `:authority` (the target's own when it has none).
#[allow(
    clippy::manual_async_fn,
    reason = "by-value arguments kept once: see proxy/mod.rs, Futures"
)]
fn send_h2c<'a>(
    upstream: &'a Upstream,
    target: &'a Arc<Target>,
    lent: &'a mut Request<RequestBody>,
    added: h1::head::Added<'a>,
) -> impl std::future::Future<Output = Result<Response<UpstreamBody>, Failure>> + Send + 'a {
    async move {
        let timeouts = upstream.timeouts;
        let slot = h2pool::slot(target.id);
        // The opening future (~1 KiB) boxed, and only when the thread has no
        // connection yet: inline it would weigh on every request's state.
        let open = match slot.get() {
            Some(open) => Ok(open),
            None => {
                Box::pin(slot.get_or_try_init(|| async {
                    connect_h2c(target, timeouts.connect).await.ok_or(())
                }))
                .await
            }
        };
        let (mut sender, state) = match open {
            Ok((sender, state)) => (sender.clone(), state.clone()),
            Err(()) => return Err(Failure::Connect),
        };
        // Prepared by a function of its own: kept here as a local, the
        // request and its URI would stay in this future's state beside
        // the send that owns them.
        let Some((request, upload)) = as_h2(lent, target, added) else {
            // Unreachable with an authority from a valid header or target.
            return Err(Failure::Connect);
        };
        let stream = Stream::new(state);
        let mut timer = std::pin::pin!(tokio::time::sleep(timeouts.request));
        let due = timer.deadline();
        let attempt = HeadWithin::new(
            timeouts.request,
            upload.as_deref(),
            (timer.as_mut(), due),
            sender.send_request(request),
        )
        .await;
        match attempt {
            Err(()) => Err(Failure::Timeout {
                upload_unfinished: upload.is_some_and(|u| !u.is_done()),
            }),
            Ok(Ok(response)) => Ok(response.map(|body| UpstreamBody::H2 {
                body,
                _stream: stream,
            })),
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
}

/// The lent request, taken (an attempt past the last failure that leaves
/// it unsent for another) and made an HTTP/2 one: its `Host` becomes the
/// URI's authority (the target's own when it has none). hyper's client
/// sends what the map holds: the added fields go into it (another attempt
/// gets `added` again; an HTTP/1.1 one writes them after the map's, so
/// they would go twice). With it, its upload's progress, if it streams.
/// `None`, with the request left whole, when no URI can be made of it.
fn as_h2(
    lent: &mut Request<RequestBody>,
    target: &Target,
    added: h1::head::Added<'_>,
) -> Option<(Request<RequestBody>, Option<Arc<crate::body::Upload>>)> {
    let authority = lent
        .headers()
        .get(HOST)
        .and_then(|h| Authority::try_from(h.as_bytes()).ok())
        .or_else(|| Authority::try_from(&*target.authority).ok());
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = authority;
    uri.path_and_query = Some(
        lent.uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    );
    let uri = Uri::from_parts(uri).ok()?;
    let mut request = std::mem::replace(lent, Request::new(RequestBody::Empty));
    request.headers_mut().remove(HOST);
    for (name, value) in added {
        request.headers_mut().insert(*name, (*value).clone());
    }
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_2;
    let upload = request.body().upload().cloned();
    Some((request, upload))
}
