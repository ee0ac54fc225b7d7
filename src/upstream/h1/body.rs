//! A response body read from an upstream HTTP/1.1 connection by whoever
//! polls it (the client's connection task, or a shadow's task): framed by
//! its length, by chunks (RFC 9112 §7.1, extensions skipped, trailers
//! yielded as the last frame) or by the upstream's close. Data frames are
//! slices of the connection's read buffer, never copied.
//!
//! The connection goes back to its pool the moment the body's last byte
//! has been read from it, which for a small answer is before its first
//! frame is even polled; one read to its close, framed two ways, or with
//! bytes past its end is closed instead. Dropped before its end, the body
//! closes the connection: nothing else could read the rest.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::{Frame, SizeHint};

use super::conn::Conn;
use super::head::{Framing, MAX_HEAD, MAX_HEADERS};
use super::upload::Upload;
use crate::clock;
use crate::upstream::pool;
use crate::upstream::target::Target;

/// A chunk-size line longer than this (extensions included) is refused.
const MAX_CHUNK_LINE: usize = 4 * 1024;

/// Why a response body could not be read to its end. The client's
/// answer is then cut (its connection closed without the last chunk), so
/// that a truncated body is never taken for a whole one.
#[derive(Debug)]
pub enum BodyError {
    /// The upstream closed or reset the connection before the end.
    Io(std::io::Error),
    /// A chunk-size line, chunk end or trailer that is not HTTP/1.1.
    Chunked(&'static str),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Io(e) => write!(f, "upstream body: {e}"),
            BodyError::Chunked(why) => write!(f, "upstream body: bad chunked coding: {why}"),
        }
    }
}

impl std::error::Error for BodyError {}

pub struct Body {
    conn: Option<Box<Conn>>,
    state: State,
    /// Body bytes already in hand: a small answer read whole with its head.
    ready: Option<Bytes>,
    reusable: bool,
    /// The pool the connection goes back to.
    target: Arc<Target>,
    /// A failure found right behind data this poll returned: it waits
    /// one poll (`fail`). Boxed: rare, and the body is moved whole.
    failed: Option<Box<BodyError>>,
    /// Data went out since the last `Pending`.
    fresh: bool,
    /// The request's body, still uploading: the answer came first.
    upload: Option<Box<Upload>>,
}

enum State {
    Length(u64),
    Chunked(Chunk),
    Close,
    Done,
    /// A 101: the connection belongs to the tunnel that takes it.
    Switched,
}

enum Chunk {
    Size,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines (kept; boxed, as they are rare
    /// and the body is moved about whole), then a blank line.
    Trailers(Option<Box<HeaderMap>>, usize),
}

impl Body {
    pub(super) fn new(
        mut conn: Box<Conn>,
        framing: Framing,
        reusable: bool,
        target: Arc<Target>,
        upload: Option<Box<Upload>>,
    ) -> Body {
        let mut ready = None;
        let state = match framing {
            Framing::Empty => State::Done,
            // Read whole with its head: the connection is free already.
            Framing::Length(n) if conn.read.len() as u64 >= n => {
                ready = Some(conn.read.split_to(n as usize).freeze()).filter(|b| !b.is_empty());
                State::Done
            }
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(Chunk::Size),
            Framing::Close => State::Close,
        };
        let mut body = Body {
            conn: Some(conn),
            state,
            ready,
            reusable,
            target,
            failed: None,
            fresh: false,
            upload,
        };
        if let State::Done = body.state {
            body.finish();
        }
        body
    }

    /// The body of a 101: none, and the connection is the tunnel's.
    pub(super) fn switched(conn: Box<Conn>, target: Arc<Target>) -> Body {
        Body {
            conn: Some(conn),
            state: State::Switched,
            ready: None,
            reusable: false,
            target,
            failed: None,
            fresh: false,
            upload: None,
        }
    }

    /// The connection of a 101, for the tunnel.
    pub fn take_switched(&mut self) -> Option<Box<Conn>> {
        match self.state {
            State::Switched => self.conn.take(),
            _ => None,
        }
    }

    /// Everything was read: the connection goes back to its pool unless it
    /// may not serve again or sent bytes past the end.
    fn finish(&mut self) {
        self.state = State::Done;
        if let Some(mut conn) = self.conn.take() {
            if self.reusable && self.upload.is_none() && conn.read.is_empty() {
                conn.idle_since = clock::now_ms();
                pool::checkin(&self.target, conn);
            }
        }
    }

    pub fn is_end_stream(&self) -> bool {
        self.ready.is_none() && matches!(self.state, State::Done | State::Switched)
    }

    pub fn size_hint(&self) -> SizeHint {
        let ready = self.ready.as_ref().map_or(0, |b| b.len() as u64);
        match self.state {
            State::Done | State::Switched => SizeHint::with_exact(ready),
            State::Length(n) => SizeHint::with_exact(ready + n),
            State::Chunked(_) | State::Close => {
                let mut h = SizeHint::new();
                h.set_lower(ready);
                h
            }
        }
    }

    pub fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if let Some(failed) = this.failed.take() {
            return Poll::Ready(Some(Err(*failed)));
        }
        let frame = this.next(cx);
        this.fresh = match &frame {
            Poll::Ready(Some(Ok(_))) => true,
            Poll::Pending => false,
            _ => this.fresh,
        };
        frame
    }

    /// A body error is the client's connection cut. hyper's server buffers
    /// the data frames it is given and writes them out only when the body
    /// has nothing more at once, and an error drops what it buffered: the
    /// client would see no answer at all where it should see how far the
    /// body got. So an error right behind data waits one poll.
    fn fail(
        &mut self,
        error: BodyError,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.conn = None;
        if self.fresh {
            self.failed = Some(Box::new(error));
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Some(Err(error)))
    }

    fn next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self;
        if let Some(ready) = this.ready.take() {
            return Poll::Ready(Some(Ok(Frame::data(ready))));
        }
        if let (Some(upload), Some(conn)) = (this.upload.as_mut(), this.conn.as_mut()) {
            match upload.poll(&mut conn.io, cx) {
                Poll::Pending => (),
                Poll::Ready(Ok(())) => this.upload = None,
                // The request broke off: the answer may still be whole,
                // the connection serves no other.
                Poll::Ready(Err(_)) => {
                    this.upload = None;
                    this.reusable = false;
                }
            }
        }
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match &mut this.state {
                State::Done | State::Switched => return Poll::Ready(None),
                State::Length(left) if !conn.read.is_empty() => {
                    let n = (*left).min(conn.read.len() as u64);
                    *left -= n;
                    let data = conn.read.split_to(n as usize).freeze();
                    if *left == 0 {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::Close if !conn.read.is_empty() => {
                    let data = conn.read.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::Chunked(chunk) => match decode(chunk, &mut conn.read) {
                    Err(why) => return this.fail(BodyError::Chunked(why), cx),
                    Ok(Step::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Step::End(trailers)) => {
                        this.finish();
                        return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
                    }
                    Ok(Step::More) => (),
                },
                State::Length(_) | State::Close => (),
            }
            match conn.poll_fill(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) if matches!(this.state, State::Close) => {
                    this.state = State::Done;
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(0)) => {
                    let cut = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
                    return this.fail(BodyError::Io(cut), cx);
                }
                Poll::Ready(Ok(_)) => (),
                Poll::Ready(Err(e)) => return this.fail(BodyError::Io(e), cx),
            }
        }
    }
}

/// The chunked decoder on its own (the fuzz target drives it).
pub struct Chunked(Chunk);

impl Default for Chunked {
    fn default() -> Chunked {
        Chunked(Chunk::Size)
    }
}

impl Chunked {
    /// Decodes what it can off the front of `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Step, &'static str> {
        decode(&mut self.0, buf)
    }
}

/// What the chunked decoder made of the bytes at hand.
#[derive(Debug, PartialEq)]
pub enum Step {
    Data(Bytes),
    /// The body ended, with its trailers if it had any.
    End(Option<HeaderMap>),
    /// Nothing yet: read more.
    More,
}

/// Decodes chunked coding off the front of `buf` (RFC 9112 §7.1).
fn decode(chunk: &mut Chunk, buf: &mut BytesMut) -> Result<Step, &'static str> {
    loop {
        match chunk {
            Chunk::Size => {
                let Some(line) = take_line(buf, MAX_CHUNK_LINE)? else {
                    return Ok(Step::More);
                };
                let size = chunk_size(&line)?;
                *chunk = if size == 0 {
                    Chunk::Trailers(None, 0)
                } else {
                    Chunk::Data(size)
                };
            }
            Chunk::Data(left) => {
                if buf.is_empty() {
                    return Ok(Step::More);
                }
                let n = (*left).min(buf.len() as u64);
                *left -= n;
                let data = buf.split_to(n as usize).freeze();
                if *left == 0 {
                    *chunk = Chunk::DataEnd;
                }
                return Ok(Step::Data(data));
            }
            Chunk::DataEnd => match &buf[..] {
                [b'\r', b'\n', ..] => {
                    buf.advance(2);
                    *chunk = Chunk::Size;
                }
                [b'\n', ..] => {
                    buf.advance(1);
                    *chunk = Chunk::Size;
                }
                [] | [b'\r'] => return Ok(Step::More),
                _ => return Err("chunk data longer than its size"),
            },
            Chunk::Trailers(trailers, seen) => {
                let Some(line) = take_line(buf, MAX_HEAD.saturating_sub(*seen))? else {
                    return Ok(Step::More);
                };
                // The line and its terminator, CRLF or LF alike: counting
                // past the limit refuses the next line, never wraps.
                *seen += line.len() + 2;
                if *seen > MAX_HEAD {
                    return Err("trailers too large");
                }
                if line.is_empty() {
                    return Ok(Step::End(trailers.take().map(|t| *t)));
                }
                let (name, value) = trailer(&line)?;
                // As many lines as a head may have: `HeaderMap` panics
                // past its own limit (24,576 names), well inside 400 KiB.
                let map = trailers.get_or_insert_default();
                if map.len() >= MAX_HEADERS {
                    return Err("too many trailers");
                }
                map.try_append(name, value)
                    .map_err(|_| "too many trailers")?;
            }
        }
    }
}

/// One line off the front of `buf`, without its CRLF (or bare LF).
fn take_line(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, &'static str> {
    let Some(end) = memchr::memchr(b'\n', buf) else {
        return if buf.len() > max {
            Err("line too long")
        } else {
            Ok(None)
        };
    };
    if end > max {
        return Err("line too long");
    }
    let mut line = buf.split_to(end + 1).freeze();
    line.truncate(end);
    if line.last() == Some(&b'\r') {
        line.truncate(end - 1);
    }
    Ok(Some(line))
}

/// A chunk-size line: hex digits, optional whitespace, optional `;`
/// extensions (skipped).
fn chunk_size(line: &[u8]) -> Result<u64, &'static str> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err("no chunk size");
    }
    let rest = line[digits..].trim_ascii_start();
    if !(rest.is_empty() || rest[0] == b';') {
        return Err("bad chunk size");
    }
    line[..digits].iter().try_fold(0u64, |n, d| {
        let v = (*d as char).to_digit(16).unwrap_or(0);
        n.checked_mul(16)
            .and_then(|n| n.checked_add(u64::from(v)))
            .ok_or("chunk size too large")
    })
}

fn trailer(line: &Bytes) -> Result<(HeaderName, HeaderValue), &'static str> {
    let colon = memchr::memchr(b':', line).ok_or("trailer without a colon")?;
    let name = HeaderName::from_bytes(&line[..colon]).map_err(|_| "bad trailer name")?;
    let value = line.slice(colon + 1..);
    let trimmed = value.trim_ascii();
    let start = trimmed.as_ptr() as usize - value.as_ptr() as usize;
    let value = value.slice(start..start + trimmed.len());
    let value = HeaderValue::from_maybe_shared(value).map_err(|_| "bad trailer value")?;
    Ok((name, value))
}

#[cfg(test)]
mod tests;
