//! Request bodies on their way upstream, and bounded copies of bodies.
//!
//! [`RequestBody`] is what the upstream client sends: nothing, a body of at
//! most [`MAX_REPLAY`] bytes held whole so that a retry can send it again,
//! or the client's body streamed frame by frame. A streamed body reports its
//! progress through an [`Upload`] the proxy keeps (bytes for the access log,
//! the time of the last frame for `request_timeout`).
//!
//! [`Tee`] copies a body as it streams past, up to a limit, for a shadow
//! and its compare. This module sits below the upstream client, the proxy
//! and the shadow, and imports none of them.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::oneshot;

use crate::codec::client_body;

/// Why a client's body could not be read on: from hyper's server, or
/// from figway's own (`codec::socket`). Boxed: only a broken body pays.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// A client's request body as its server hands it over: hyper's (TLS,
/// HTTP/2, embedders) or figway's own HTTP/1.1 server's, which reads it
/// from the connection when polled.
#[derive(Debug)]
pub enum ClientBody {
    /// The request had no body.
    Empty,
    Hyper(Incoming),
    Own(client_body::Body),
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match self.get_mut() {
            ClientBody::Empty => Poll::Ready(None),
            ClientBody::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            ClientBody::Own(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Empty => true,
            ClientBody::Hyper(b) => b.is_end_stream(),
            ClientBody::Own(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Empty => SizeHint::with_exact(0),
            ClientBody::Hyper(b) => b.size_hint(),
            ClientBody::Own(b) => b.size_hint(),
        }
    }
}

/// Largest request body kept for a retry (SPEC §4).
pub const MAX_REPLAY: usize = 64 * 1024;

/// The client's request body as it goes upstream.
pub enum RequestBody {
    /// No body at all: most requests. Nothing to count or wait for.
    Empty,
    /// Held whole (at most [`MAX_REPLAY`] bytes); `None` once sent.
    Replay(Option<Bytes>),
    Stream(Box<Streamed>),
}

/// A body that streams from the client to the upstream.
pub struct Streamed {
    /// Bytes read ahead while deciding whether the body fits the replay
    /// buffer; sent before the rest.
    prefix: Option<Bytes>,
    /// Trailers read ahead with it; the body then ended.
    trailers: Option<http::HeaderMap>,
    upload: Arc<Upload>,
    inner: ClientBody,
    /// A copy for a shadow, when the request is mirrored.
    tee: Option<Tee>,
}

/// How far a streamed upload has got: shared between the body (which the
/// upstream connection consumes) and the proxy (which logs and times it).
#[derive(Debug, Default)]
pub struct Upload {
    bytes: AtomicU64,
    /// `clock` milliseconds of the last frame; 0 before the first.
    last_ms: AtomicU64,
    done: AtomicBool,
}

impl Upload {
    fn moved(&self, bytes: usize) {
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.last_ms
            .store(crate::clock::now_ms(), Ordering::Relaxed);
    }

    fn finished(&self) {
        self.moved(0);
        self.done.store(true, Ordering::Relaxed);
    }

    /// Bytes of the body sent on so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Clock milliseconds of the last movement, 0 before the first.
    pub fn last_ms(&self) -> u64 {
        self.last_ms.load(Ordering::Relaxed)
    }

    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Relaxed)
    }
}

impl RequestBody {
    /// The client's body as it comes: [`RequestBody::Empty`] when it has
    /// none, else streamed, with the [`Upload`] that follows it.
    pub fn stream(inner: ClientBody) -> (RequestBody, Option<Arc<Upload>>) {
        if inner.is_end_stream() {
            return (RequestBody::Empty, None);
        }
        let upload = Arc::new(Upload::default());
        let body = RequestBody::Stream(Box::new(Streamed {
            prefix: None,
            trailers: None,
            upload: upload.clone(),
            inner,
            tee: None,
        }));
        (body, Some(upload))
    }

    /// Reads the body if it fits in [`MAX_REPLAY`], so that it can be sent
    /// again; a larger one streams, starting with what was read. Returns the
    /// body, the bytes read here, and the [`Upload`] of a streamed body.
    pub async fn buffered(
        mut inner: ClientBody,
    ) -> Result<(RequestBody, u64, Option<Arc<Upload>>), Error> {
        if inner.is_end_stream() {
            return Ok((RequestBody::Empty, 0, None));
        }
        if inner.size_hint().lower() > MAX_REPLAY as u64 {
            let (body, upload) = RequestBody::stream(inner);
            return Ok((body, 0, upload));
        }
        let mut kept = BytesMut::new();
        // The end is when `frame()` says so: a chunked body's
        // `is_end_stream()` stays false until then.
        let mut ended = false;
        let mut trailers = None;
        while kept.len() <= MAX_REPLAY && !ended {
            match inner.frame().await {
                None => ended = true,
                Some(frame) => match frame?.into_data() {
                    Ok(data) => {
                        kept.extend_from_slice(&data);
                        ended = inner.is_end_stream();
                    }
                    // Trailers end a body; they go on, unreplayed.
                    Err(frame) => {
                        trailers = frame.into_trailers().ok();
                        ended = true;
                    }
                },
            }
        }
        let kept = kept.freeze();
        if ended && trailers.is_none() && kept.len() <= MAX_REPLAY {
            let read = kept.len() as u64;
            return Ok((
                RequestBody::Replay((!kept.is_empty()).then_some(kept)),
                read,
                None,
            ));
        }
        let upload = Arc::new(Upload::default());
        let body = RequestBody::Stream(Box::new(Streamed {
            prefix: Some(kept),
            trailers,
            upload: upload.clone(),
            inner,
            tee: None,
        }));
        // The read-ahead bytes are counted as they go upstream.
        Ok((body, 0, Some(upload)))
    }

    /// Where a shadow gets this body: at once when it is held whole, else a
    /// copy of at most `limit` bytes taken as it streams upstream.
    pub fn mirror(&mut self, limit: u64) -> BodyCopy {
        match self {
            RequestBody::Empty => BodyCopy::Known(Bytes::new()),
            RequestBody::Replay(b) => {
                let body = b.clone().unwrap_or_default();
                if body.len() as u64 > limit {
                    return BodyCopy::TooLarge;
                }
                BodyCopy::Known(body)
            }
            RequestBody::Stream(s) => {
                let (mut copy, rx) = Tee::new(limit);
                if let Some(p) = &s.prefix {
                    copy.push(p);
                }
                if s.inner.is_end_stream() && s.trailers.is_none() {
                    copy.finish();
                } else {
                    s.tee = Some(copy);
                }
                BodyCopy::Pending(rx)
            }
        }
    }

    /// How far a streamed upload has got; `None` when there is nothing left
    /// to upload after the head (no body, or one held whole).
    pub fn upload(&self) -> Option<&Arc<Upload>> {
        match self {
            RequestBody::Stream(s) => Some(&s.upload),
            _ => None,
        }
    }

    /// A copy for one more attempt, when the body can be sent again.
    pub fn replay(&self) -> Option<RequestBody> {
        match self {
            RequestBody::Empty => Some(RequestBody::Empty),
            RequestBody::Replay(b) => Some(RequestBody::Replay(b.clone())),
            RequestBody::Stream(_) => None,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match &mut *self {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::Replay(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            RequestBody::Stream(s) => s.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Replay(b) => b.is_none(),
            RequestBody::Stream(s) => {
                s.prefix.as_ref().is_none_or(|p| p.is_empty())
                    && s.trailers.is_none()
                    && s.inner.is_end_stream()
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Replay(b) => {
                SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64))
            }
            RequestBody::Stream(s) => {
                let extra = s.prefix.as_ref().map_or(0, |p| p.len() as u64);
                let h = s.inner.size_hint();
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

impl Streamed {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if let Some(p) = self.prefix.take().filter(|p| !p.is_empty()) {
            self.upload.moved(p.len());
            return Poll::Ready(Some(Ok(Frame::data(p))));
        }
        if let Some(t) = self.trailers.take() {
            self.end();
            return Poll::Ready(Some(Ok(Frame::trailers(t))));
        }
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                let data = f.data_ref().map_or(&[][..], |d| &d[..]);
                self.upload.moved(data.len());
                if let Some(tee) = &mut self.tee {
                    tee.push(data);
                }
                if self.inner.is_end_stream() {
                    self.end();
                }
            }
            None => self.end(),
            // The client's body broke: the copy never completes.
            Some(Err(_)) => {
                self.tee = None;
                self.upload.finished();
            }
        }
        Poll::Ready(frame)
    }

    fn end(&mut self) {
        if let Some(tee) = &mut self.tee {
            tee.finish();
        }
        self.upload.finished();
    }
}

/// Where a copy of a body will come from.
pub enum BodyCopy {
    Known(Bytes),
    /// Held whole but larger than the copy's limit.
    TooLarge,
    /// Taken as the body streams; `None` when it outgrew the limit, and an
    /// error when the body never completed.
    Pending(oneshot::Receiver<Option<Bytes>>),
}

/// Copies a body as it streams past, up to a limit; the copy (or `None`
/// when the body was larger) is sent when the body ends. Dropped before the
/// end, it sends nothing and the receiver learns the body never completed.
pub struct Tee {
    buf: BytesMut,
    limit: u64,
    over: bool,
    done: Option<oneshot::Sender<Option<Bytes>>>,
}

impl Tee {
    pub fn new(limit: u64) -> (Tee, oneshot::Receiver<Option<Bytes>>) {
        let (tx, rx) = oneshot::channel();
        let tee = Tee {
            buf: BytesMut::new(),
            limit,
            over: false,
            done: Some(tx),
        };
        (tee, rx)
    }

    pub fn push(&mut self, data: &[u8]) {
        if self.over {
            return;
        }
        if self.buf.len() as u64 + data.len() as u64 > self.limit {
            self.over = true;
            self.buf = BytesMut::new();
        } else {
            self.buf.extend_from_slice(data);
        }
    }

    pub fn finish(&mut self) {
        if let Some(done) = self.done.take() {
            let copy = (!self.over).then(|| std::mem::take(&mut self.buf).freeze());
            let _ = done.send(copy);
        }
    }
}
