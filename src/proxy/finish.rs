//! The end of a request, in one place. [`ResponseBody`] streams the answer
//! to the client carrying the request's [`RequestCtx`]; when the answer's
//! last byte is out, a shadow compare gets its copy (the upstream body put
//! its connection back in its pool as soon as it had read its last byte). When the context is dropped (the body was
//! sent, or the client left, or the drain cut it), its `Drop` counts the
//! request in the metrics and writes the access-log line; the in-flight
//! guards it holds are released with it.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{ready, Context, Poll};

use crate::upstream::client::{BodyError, UpstreamBody};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::context::RequestCtx;
use crate::access_log::{self, Line, Name};
use crate::codec::lines::HeadLines;
use crate::error::{ErrorKind, DRAIN_CUT};
use http::HeaderValue;

/// Where the answer's bytes come from.
// Unboxed as `UpstreamBody` is (see there).
#[allow(clippy::large_enum_variant)]
pub enum Source {
    /// figway's own answer.
    Full(Option<Bytes>),
    /// The upstream's body, streamed untouched.
    Upstream(UpstreamBody),
}

/// What figway sends back to the client: the answer's bytes and, with
/// them, the request they end.
pub struct ResponseBody {
    source: Source,
    /// `None` for a 101, whose request goes on in its tunnel.
    /// Boxed: hyper moves the answer several times on its way out, and
    /// the context is most of its size (about 500 bytes against 40).
    ctx: Option<Box<RequestCtx>>,
}

impl ResponseBody {
    pub fn new(source: Source, ctx: Box<RequestCtx>) -> ResponseBody {
        ResponseBody {
            source,
            ctx: Some(ctx),
        }
    }

    /// An answer no request rides on: an embedder's own, or a 101 whose
    /// request goes on in its tunnel.
    pub fn detached(source: Source) -> ResponseBody {
        ResponseBody { source, ctx: None }
    }

    /// A whole answer an application built itself, in the body type of
    /// figway's service, so that a layer around `embed::FigwayService` can
    /// answer (a 401, say) without calling figway. No request rides on it:
    /// figway neither counts nor logs it.
    pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
        ResponseBody::detached(Source::Full(Some(bytes.into())))
    }

    /// An empty answer, as [`ResponseBody::full`].
    pub fn empty() -> ResponseBody {
        ResponseBody::detached(Source::Full(None))
    }

    /// The upstream head's fields when they came as lines
    /// (`codec::lines`), for figway's own server to write.
    pub fn take_lines(&mut self) -> Option<HeadLines> {
        match &mut self.source {
            Source::Upstream(body) => body.take_lines(),
            Source::Full(_) => None,
        }
    }

    fn source_ended(&self) -> bool {
        match &self.source {
            Source::Full(b) => b.is_none(),
            Source::Upstream(body) => body.is_end_stream(),
        }
    }

    /// The answer is complete: a compare has the whole answer.
    fn ended(&mut self) {
        let Some(ctx) = self.ctx.as_mut() else {
            return;
        };
        ctx.complete = true;
        if let Some(tee) = ctx.tee.as_mut() {
            tee.finish();
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let frame = match &mut this.source {
            Source::Full(bytes) => bytes.take().map(|b| Ok(Frame::data(b))),
            Source::Upstream(body) => ready!(Pin::new(body).poll_frame(cx)),
        };
        let Some(ctx) = this.ctx.as_mut() else {
            return Poll::Ready(frame);
        };
        match &frame {
            Some(Ok(f)) => {
                if let Some(data) = f.data_ref() {
                    ctx.bytes_out += data.len() as u64;
                    if let Some(tee) = ctx.tee.as_mut() {
                        tee.push(data);
                    }
                }
                // Trailers are a body's last frame: after them hyper
                // polls no more, and `is_end_stream` need not say so.
                if f.is_trailers() || this.source_ended() {
                    this.ended();
                }
            }
            None => this.ended(),
            // A broken upstream body closed its connection itself.
            Some(Err(_)) => (),
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
        let complete = self.ctx.as_ref().is_none_or(|c| c.complete);
        if !complete && self.source_ended() {
            self.ended();
        }
    }
}

impl Drop for RequestCtx {
    fn drop(&mut self) {
        let cut = self.conn.shared.cutting.load(Ordering::Relaxed);
        let status = match self.status {
            Some(status) => {
                if cut && !self.complete {
                    self.error.get_or_insert(ErrorKind::DrainTimeout);
                }
                status
            }
            None if cut => {
                self.error = Some(ErrorKind::DrainTimeout);
                DRAIN_CUT.as_u16()
            }
            // Dropped before an answer: the client left (nginx's 499).
            None => 499,
        };
        let elapsed = crate::clock::fresh().saturating_duration_since(self.start);
        let snapshot = &self.snapshot;
        let route = self.route.map(|r| &snapshot.routes[r]);
        let metrics = match (route, self.upstream) {
            (Some(route), Some(upstream)) => route.metrics_for(upstream),
            // Refused by the route's rate limit, before any upstream.
            (Some(route), None) => route
                .rate_limit
                .as_ref()
                .map_or(&snapshot.no_route, |l| &l.metrics),
            _ => &snapshot.no_route,
        };
        metrics.observe(status, elapsed.as_secs_f64());
        let Some(log) = &self.log else { return };
        let bytes_in = self.bytes_in + self.upload.as_ref().map_or(0, |u| u.bytes());
        let mut text = [0; 46];
        let client = if self.client == self.conn.peer {
            self.conn.forwarded_for.as_bytes()
        } else {
            access_log::ip_text(self.client, &mut text)
        };
        access_log::write(&Line {
            format: self.conn.shared.log.format,
            end: crate::clock::wall_at(self.start + elapsed),
            request_id: self.request_id.as_bytes(),
            client,
            method: log.method.as_str(),
            path: log.uri.path(),
            host: log.host.as_ref().map(HeaderValue::as_bytes),
            route: route.map(|r| Name {
                text: &r.name,
                json: &r.log_name,
            }),
            upstream: self.upstream().map(|u| Name {
                text: &u.name,
                json: &u.log_name,
            }),
            target: self.target.as_ref().map(|t| &*t.target().authority),
            status,
            bytes_in,
            bytes_out: self.bytes_out,
            duration: elapsed,
            retries: self.retries,
            error: self.error.map(ErrorKind::as_str),
        });
    }
}
