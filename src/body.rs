//! Bodies on their way through the proxy. Both directions stream frame by
//! frame; the one exception is a request body of at most 64 KiB that may
//! have to be sent again by a retry. [`RequestBody`] counts what the client sent;
//! [`ResponseBody`] counts what goes back, returns the upstream connection to
//! its pool once the response has been read to its end, and carries the
//! request's access-log record so the line is written when the exchange is
//! really over (its `Drop` writes it).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::access_log::Completion;
use crate::shadow::{BodySource, Tee};
use crate::upstream::pool::Sender;
use crate::upstream::{Target, TargetGuard, UpstreamGuard};

/// The client's request body as it goes upstream: streamed, or held whole
/// (at most [`MAX_REPLAY`] bytes) so that a retry can send it again.
pub enum RequestBody {
    Stream {
        /// Bytes read ahead while deciding whether the body fits the replay
        /// buffer; sent before the rest.
        prefix: Option<Bytes>,
        /// Trailers read ahead with it; the body then ended.
        trailers: Option<Box<http::HeaderMap>>,
        /// How far the upload has got, for `request_timeout` to wait on a
        /// slow but moving upload rather than cut it.
        progress: Arc<Progress>,
        inner: Incoming,
        /// Shared with the access-log record; `None` when nobody reads it.
        received: Option<Arc<AtomicU64>>,
        /// A copy for a shadow, when the request is mirrored.
        tee: Option<Tee>,
    },
    Replay(Option<Bytes>),
}

/// Largest request body kept for a retry (SPEC §4).
pub const MAX_REPLAY: usize = 64 * 1024;

impl RequestBody {
    pub fn stream(inner: Incoming, received: Option<Arc<AtomicU64>>) -> Self {
        RequestBody::Stream {
            prefix: None,
            trailers: None,
            progress: Arc::default(),
            inner,
            received,
            tee: None,
        }
    }

    /// Reads the body if it fits in [`MAX_REPLAY`]; a larger one streams,
    /// starting with what was read.
    pub async fn buffered(
        mut inner: Incoming,
        received: Option<Arc<AtomicU64>>,
    ) -> Result<Self, hyper::Error> {
        use http_body_util::BodyExt;
        if inner.is_end_stream() {
            return Ok(RequestBody::Replay(None));
        }
        if inner.size_hint().lower() > MAX_REPLAY as u64 {
            return Ok(RequestBody::stream(inner, received));
        }
        let mut kept = bytes::BytesMut::new();
        // The end is when `frame()` says so: a chunked body's
        // `is_end_stream()` stays false until then.
        let mut ended = false;
        let mut trailers = None;
        while kept.len() <= MAX_REPLAY && !ended {
            match inner.frame().await {
                None => ended = true,
                Some(frame) => match frame?.into_data() {
                    Ok(data) => {
                        if let Some(r) = &received {
                            r.fetch_add(data.len() as u64, Ordering::Relaxed);
                        }
                        kept.extend_from_slice(&data);
                        ended = inner.is_end_stream();
                    }
                    // Trailers end a body; they go on, unreplayed.
                    Err(frame) => {
                        trailers = frame.into_trailers().ok().map(Box::new);
                        ended = true;
                    }
                },
            }
        }
        let kept = kept.freeze();
        if ended && trailers.is_none() && kept.len() <= MAX_REPLAY {
            return Ok(RequestBody::Replay((!kept.is_empty()).then_some(kept)));
        }
        Ok(RequestBody::Stream {
            prefix: Some(kept),
            trailers,
            progress: Arc::default(),
            inner,
            received,
            tee: None,
        })
    }

    /// Where a shadow gets this body: at once when it is held whole, else a
    /// copy of at most `limit` bytes taken as it streams upstream.
    pub fn mirror(&mut self, limit: u64) -> BodySource {
        match self {
            RequestBody::Replay(b) => {
                let body = b.clone().unwrap_or_default();
                if body.len() as u64 > limit {
                    let (mut tee, rx) = Tee::new(0);
                    tee.push(&body);
                    tee.finish();
                    return BodySource::Pending(rx);
                }
                BodySource::Known(body)
            }
            RequestBody::Stream {
                prefix, inner, tee, ..
            } => {
                let (mut copy, rx) = Tee::new(limit);
                if let Some(p) = prefix {
                    copy.push(p);
                }
                if inner.is_end_stream() {
                    copy.finish();
                } else {
                    *tee = Some(copy);
                }
                BodySource::Pending(rx)
            }
        }
    }

    /// How far a streamed upload has got; `None` when the body is held
    /// whole (it goes out at once).
    pub fn progress(&self) -> Option<Arc<Progress>> {
        match self {
            RequestBody::Stream {
                progress,
                inner,
                prefix,
                trailers,
                ..
            } => {
                if inner.is_end_stream() && prefix.is_none() && trailers.is_none() {
                    return None;
                }
                Some(progress.clone())
            }
            RequestBody::Replay(_) => None,
        }
    }

    /// A copy for one more attempt, when the body is held whole.
    pub fn replay(&self) -> Option<RequestBody> {
        match self {
            RequestBody::Replay(b) => Some(RequestBody::Replay(b.clone())),
            RequestBody::Stream { .. } => None,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut *self {
            RequestBody::Replay(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            RequestBody::Stream {
                prefix,
                trailers,
                progress,
                inner,
                received,
                tee,
            } => {
                if let Some(p) = prefix.take().filter(|p| !p.is_empty()) {
                    progress.moved();
                    return Poll::Ready(Some(Ok(Frame::data(p))));
                }
                if let Some(t) = trailers.take() {
                    if let Some(tee) = tee {
                        tee.finish();
                    }
                    progress.finished();
                    return Poll::Ready(Some(Ok(Frame::trailers(*t))));
                }
                let frame = ready!(Pin::new(&mut *inner).poll_frame(cx));
                match &frame {
                    None | Some(Err(_)) => progress.finished(),
                    Some(Ok(_)) => progress.moved(),
                }
                if inner.is_end_stream() {
                    progress.finished();
                }
                if let Some(Ok(f)) = &frame {
                    if let Some(data) = f.data_ref() {
                        if let Some(received) = received {
                            received.fetch_add(data.len() as u64, Ordering::Relaxed);
                        }
                        if let Some(tee) = tee {
                            tee.push(data);
                        }
                    }
                }
                if frame.is_none() || inner.is_end_stream() {
                    if let Some(tee) = tee {
                        tee.finish();
                    }
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Replay(b) => b.is_none(),
            RequestBody::Stream {
                prefix,
                trailers,
                inner,
                ..
            } => {
                prefix.as_ref().is_none_or(|p| p.is_empty())
                    && trailers.is_none()
                    && inner.is_end_stream()
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Replay(b) => {
                SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64))
            }
            RequestBody::Stream { prefix, inner, .. } => {
                let extra = prefix.as_ref().map_or(0, |p| p.len() as u64);
                let h = inner.size_hint();
                let mut out = SizeHint::new();
                out.set_lower(h.lower() + extra);
                if let Some(u) = h.upper() {
                    out.set_upper(u + extra);
                }
                out
            }
        }
    }
}

/// When a request body last moved toward the upstream, and whether it has
/// ended.
#[derive(Debug, Default)]
pub struct Progress {
    /// `upstream::clock` milliseconds of the last frame; 0 before the first.
    last_ms: AtomicU64,
    done: std::sync::atomic::AtomicBool,
}

impl Progress {
    fn moved(&self) {
        self.last_ms
            .store(crate::upstream::clock::now_ms(), Ordering::Relaxed);
    }

    fn finished(&self) {
        self.moved();
        self.done.store(true, Ordering::Relaxed);
    }

    /// Clock milliseconds of the last movement, 0 before the first.
    pub fn last_ms(&self) -> u64 {
        self.last_ms.load(Ordering::Relaxed)
    }

    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Relaxed)
    }
}

/// A connection waiting for its response to be read before it can be reused.
pub struct Reuse {
    pub sender: Sender,
    pub target: Arc<Target>,
}

enum Source {
    Full(Option<Bytes>),
    Upstream(Incoming),
}

/// What figway sends back to the client.
pub struct ResponseBody {
    source: Source,
    reuse: Option<Reuse>,
    completion: Option<Completion>,
    /// The request counts as in flight (breaker, least_request) until its
    /// answer has been sent, so these go when the body does.
    _in_flight: Option<(UpstreamGuard, TargetGuard)>,
    /// A copy of the answer for a shadow compare.
    tee: Option<Tee>,
}

impl ResponseBody {
    pub fn full(bytes: Bytes) -> Self {
        ResponseBody {
            source: Source::Full(Some(bytes)),
            reuse: None,
            completion: None,
            _in_flight: None,
            tee: None,
        }
    }

    pub fn upstream(body: Incoming, reuse: Reuse, in_flight: (UpstreamGuard, TargetGuard)) -> Self {
        ResponseBody {
            source: Source::Upstream(body),
            reuse: Some(reuse),
            completion: None,
            _in_flight: Some(in_flight),
            tee: None,
        }
    }

    pub fn attach_completion(&mut self, completion: Completion) {
        self.completion = Some(completion);
    }

    pub fn attach_tee(&mut self, tee: Tee) {
        self.tee = Some(tee);
    }

    /// The upstream response is complete: its connection may serve again,
    /// and a compare has the whole answer.
    fn release(&mut self) {
        if let Some(reuse) = self.reuse.take() {
            reuse.target.pool.checkin(reuse.sender);
        }
        if let Some(tee) = self.tee.as_mut() {
            tee.finish();
        }
    }

    fn source_ended(&self) -> bool {
        match &self.source {
            Source::Full(b) => b.is_none(),
            Source::Upstream(body) => body.is_end_stream(),
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let frame = match &mut this.source {
            Source::Full(bytes) => bytes.take().map(|b| Ok(Frame::data(b))),
            Source::Upstream(body) => ready!(Pin::new(body).poll_frame(cx)),
        };
        match &frame {
            Some(Ok(f)) => {
                if let Some(data) = f.data_ref() {
                    if let Some(record) = this.completion.as_mut().and_then(|c| c.record.as_mut()) {
                        record.bytes_out += data.len() as u64;
                    }
                    if let Some(tee) = this.tee.as_mut() {
                        tee.push(data);
                    }
                }
                if this.source_ended() {
                    this.release();
                }
            }
            None => this.release(),
            // A broken upstream body: the connection is not reusable.
            Some(Err(_)) => this.reuse = None,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.source_ended()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Source::Full(None) => SizeHint::with_exact(0),
            Source::Upstream(body) => body.size_hint(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // HEAD and 204/304 answers are never polled; they are still complete.
        if self.source_ended() {
            self.release();
        }
    }
}
