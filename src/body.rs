//! Bodies on their way through the proxy. Both directions stream frame by
//! frame; nothing is collected. [`RequestBody`] counts what the client sent;
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

use crate::access_log::AccessRecord;
use crate::upstream::pool::Sender;
use crate::upstream::Target;

/// The client's request body, forwarded upstream.
pub struct RequestBody {
    inner: Incoming,
    /// Shared with the access-log record; `None` when nobody reads it.
    received: Option<Arc<AtomicU64>>,
}

impl RequestBody {
    pub fn new(inner: Incoming, received: Option<Arc<AtomicU64>>) -> Self {
        RequestBody { inner, received }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let (Some(Ok(f)), Some(received)) = (&frame, &self.received) {
            if let Some(data) = f.data_ref() {
                received.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
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
    record: Option<Box<AccessRecord>>,
}

impl ResponseBody {
    pub fn full(bytes: Bytes) -> Self {
        ResponseBody {
            source: Source::Full(Some(bytes)),
            reuse: None,
            record: None,
        }
    }

    pub fn upstream(body: Incoming, reuse: Reuse) -> Self {
        ResponseBody {
            source: Source::Upstream(body),
            reuse: Some(reuse),
            record: None,
        }
    }

    pub fn attach_record(&mut self, record: Box<AccessRecord>) {
        self.record = Some(record);
    }

    /// The upstream response is complete: its connection may serve again.
    fn release(&mut self) {
        if let Some(reuse) = self.reuse.take() {
            reuse.target.pool.checkin(reuse.sender);
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
                if let (Some(data), Some(record)) = (f.data_ref(), this.record.as_mut()) {
                    record.bytes_out += data.len() as u64;
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
