//! Request smuggling guard (SPEC §4): a request carrying both
//! `Content-Length` and `Transfer-Encoding` is answered 400, and the
//! connection closed.
//!
//! hyper's parser resolves that conflict itself (chunked wins, the length is
//! dropped, keep-alive is turned off) before the service sees the request,
//! so the service cannot tell. This wrapper watches the bytes a client
//! connection reads, follows HTTP/1.1 message framing (heads, fixed-length
//! and chunked bodies) and notes which request on the connection had both
//! headers, whatever the length says (after Transfer-Encoding hyper skips a
//! Content-Length without reading it, so even `abc` must count); the proxy
//! answers that request 400 without forwarding it. No head after that one
//! is read as a request, so the guard stops there.
//!
//! The guard sits only on connections hyper serves (TLS, h2c, the
//! undecided): figway's own HTTP/1.1 server (`server::h1`) parses each head
//! once and notes the conflict itself ([`ConnFlags::conflict_next`]).
//!
//! It only observes: bytes pass to hyper unchanged. Anything it cannot follow
//! (the HTTP/2 preface, a header line it cannot read, an upgraded stream) turns it
//! off for the rest of the connection, and hyper's own handling applies.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::codec::{content_length, last_coding_is_chunked};

/// Shared between a connection's reader and the requests served on it.
#[derive(Debug)]
pub struct ConnFlags {
    /// Index of the first request head that had both framing headers.
    conflict: AtomicU64,
    /// Requests the service has seen on this connection.
    served: AtomicU64,
}

impl ConnFlags {
    pub fn new() -> Arc<ConnFlags> {
        Arc::new(ConnFlags {
            conflict: AtomicU64::new(u64::MAX),
            served: AtomicU64::new(0),
        })
    }

    /// Requests the service has seen on this connection so far.
    pub fn requests(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// The request about to reach the service had both framing headers:
    /// said by a parser that reads heads itself (figway's own server,
    /// `server::h1`), where this module's scanner is not in the way.
    pub fn conflict_next(&self) {
        let index = self.served.load(Ordering::Relaxed);
        self.conflict.fetch_min(index, Ordering::Relaxed);
    }

    /// Called once per request, in order: whether this request's head had
    /// both `Content-Length` and `Transfer-Encoding`.
    pub fn next_request_conflicts(&self) -> bool {
        let index = self.served.fetch_add(1, Ordering::Relaxed);
        self.conflict.load(Ordering::Relaxed) == index
    }
}

/// A client connection whose reads are followed by a [`Scanner`].
pub struct Guarded<IO> {
    io: IO,
    scanner: Scanner,
    flags: Arc<ConnFlags>,
}

impl<IO> Guarded<IO> {
    pub fn new(io: IO, flags: Arc<ConnFlags>, max_head: usize) -> Self {
        Guarded {
            io,
            scanner: Scanner::new(max_head),
            flags,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            if let Some(index) = this.scanner.feed(&buf.filled()[before..]) {
                // The earliest conflict wins: hyper closes the connection
                // after that request, so a later one never reaches the
                // service, and must not hide it.
                this.flags.conflict.fetch_min(index, Ordering::Relaxed);
            }
        }
        result
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Fixed(u64),
    ChunkSize { size: u64, ext: bool },
    ChunkData(u64),
    ChunkDataEnd,
    Trailer { line: usize },
    Off,
}

/// Follows HTTP/1.1 request framing over a byte stream.
pub struct Scanner {
    state: State,
    /// A head split across reads; empty in the common case.
    partial: Vec<u8>,
    heads: u64,
    max_head: usize,
}

impl Scanner {
    pub fn new(max_head: usize) -> Scanner {
        Scanner {
            state: State::Head,
            partial: Vec::new(),
            heads: 0,
            max_head,
        }
    }

    /// Consumes `bytes`; returns the index of the first head completed in
    /// them that had both framing headers.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Option<u64> {
        let mut conflict = None;
        while !bytes.is_empty() {
            match self.state {
                State::Off => return conflict,
                State::Head => {
                    let used = self.head(bytes, &mut conflict);
                    bytes = &bytes[used..];
                }
                State::Fixed(left) => {
                    let n = left.min(bytes.len() as u64);
                    bytes = &bytes[n as usize..];
                    self.state = if n == left {
                        State::Head
                    } else {
                        State::Fixed(left - n)
                    };
                }
                State::ChunkData(left) => {
                    let n = left.min(bytes.len() as u64);
                    bytes = &bytes[n as usize..];
                    self.state = if n == left {
                        State::ChunkDataEnd
                    } else {
                        State::ChunkData(left - n)
                    };
                }
                _ => {
                    self.state = self.chunk_byte(bytes[0]);
                    bytes = &bytes[1..];
                }
            }
        }
        conflict
    }

    fn chunk_byte(&self, b: u8) -> State {
        match self.state {
            State::ChunkSize { size, ext: false } => match b {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => match size.checked_mul(16) {
                    Some(s) => State::ChunkSize {
                        size: s + u64::from((b as char).to_digit(16).unwrap_or(0)),
                        ext: false,
                    },
                    None => State::Off,
                },
                b';' | b' ' | b'\t' => State::ChunkSize { size, ext: true },
                b'\r' => State::ChunkSize { size, ext: true },
                b'\n' => end_of_size_line(size),
                _ => State::Off,
            },
            State::ChunkSize { size, ext: true } => match b {
                b'\n' => end_of_size_line(size),
                _ => self.state,
            },
            State::ChunkDataEnd => match b {
                b'\r' => State::ChunkDataEnd,
                b'\n' => State::ChunkSize {
                    size: 0,
                    ext: false,
                },
                _ => State::Off,
            },
            State::Trailer { line } => match b {
                b'\r' => State::Trailer { line },
                b'\n' if line == 0 => State::Head,
                b'\n' => State::Trailer { line: 0 },
                _ => State::Trailer { line: line + 1 },
            },
            other => other,
        }
    }

    /// Looks for the end of a head in `bytes` (after any partial head kept
    /// from earlier reads); returns how many bytes of `bytes` it used.
    fn head(&mut self, bytes: &[u8], conflict: &mut Option<u64>) -> usize {
        if self.partial.is_empty() {
            // Empty lines before a request line are allowed (RFC 9112 §2.2).
            let skip = bytes
                .iter()
                .take_while(|b| **b == b'\r' || **b == b'\n')
                .count();
            if skip > 0 {
                return skip;
            }
            match scan(bytes) {
                Scan::Head(end, framing) if end <= self.max_head => {
                    self.framed(framing, conflict);
                    return end;
                }
                // A head past the limit turns it off as an incomplete one
                // does below, or the verdict would depend on how the head
                // was split across reads; hyper answers 431 either way.
                Scan::Head(..) | Scan::Off => {
                    self.state = State::Off;
                    return bytes.len();
                }
                Scan::Incomplete => {}
            }
        }
        let had = self.partial.len();
        self.partial.extend_from_slice(bytes);
        match scan(&self.partial) {
            Scan::Head(end, framing) if end <= self.max_head => {
                self.partial = Vec::new();
                self.framed(framing, conflict);
                end - had
            }
            Scan::Head(..) | Scan::Off => {
                self.state = State::Off;
                self.partial = Vec::new();
                bytes.len()
            }
            Scan::Incomplete => {
                if self.partial.len() > self.max_head {
                    // hyper answers 431; nothing more to follow.
                    self.state = State::Off;
                    self.partial = Vec::new();
                }
                bytes.len()
            }
        }
    }

    /// Moves past a complete head to what its framing headers say follows.
    fn framed(&mut self, f: Framing, conflict: &mut Option<u64>) {
        let index = self.heads;
        self.heads += 1;
        self.state = match (f.te, f.chunked, f.length) {
            // Answered 400 and the connection closed (hyper also stops
            // keep-alive for it): nothing after it is a request. Stopping
            // here also keeps a later conflict from overwriting this one
            // before the service has asked about it.
            (true, _, Length::Is(_) | Length::Invalid) => {
                *conflict = Some(index);
                State::Off
            }
            (true, true, Length::Absent) => State::ChunkSize {
                size: 0,
                ext: false,
            },
            // hyper rejects a final coding other than chunked, and a length
            // that is not one number, and closes.
            (true, false, Length::Absent) | (false, _, Length::Invalid) => State::Off,
            (false, _, Length::Absent | Length::Is(0)) => State::Head,
            (false, _, Length::Is(n)) => State::Fixed(n),
        };
    }
}

/// The framing headers of one head.
struct Framing {
    length: Length,
    te: bool,
    chunked: bool,
}

/// What a head's Content-Length lines say.
#[derive(Clone, Copy)]
enum Length {
    Absent,
    /// Every line is the same plain decimal number.
    Is(u64),
    /// Not a number (`+5`, `-1`, `1, 2`), or lines that differ.
    Invalid,
}

enum Scan {
    /// No blank line yet.
    Incomplete,
    /// Something this guard does not follow (see the module doc).
    Off,
    /// The head's length, blank line included, and its framing.
    Head(usize, Framing),
}

/// Finds the end of a head and reads its two framing headers in one pass
/// over its lines (`memchr` finds the line ends). Only lines that could be
/// `Content-Length` or `Transfer-Encoding` are looked into: hyper parses
/// the head for real, and a line it rejects closes the connection, so no
/// other line can change what comes next on it.
fn scan(bytes: &[u8]) -> Scan {
    if bytes.starts_with(b"PRI * HTTP/2.0") {
        return Scan::Off;
    }
    let mut framing = Framing {
        length: Length::Absent,
        te: false,
        chunked: false,
    };
    let mut lines = memchr::memchr_iter(b'\n', bytes);
    // The request line.
    let Some(first) = lines.next() else {
        return Scan::Incomplete;
    };
    let mut start = first + 1;
    for end in lines {
        let line = &bytes[start..end];
        start = end + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(first) = line.first() else {
            return Scan::Head(start, framing);
        };
        if !matches!(first | 0x20, b'c' | b't') {
            continue;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            return Scan::Off;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            framing.length = match (framing.length, content_length(value)) {
                (Length::Absent, Some(n)) => Length::Is(n),
                (Length::Is(was), Some(n)) if was == n => Length::Is(n),
                _ => Length::Invalid,
            };
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            framing.te = true;
            framing.chunked = last_coding_is_chunked(value);
        }
    }
    Scan::Incomplete
}

fn end_of_size_line(size: u64) -> State {
    if size == 0 {
        State::Trailer { line: 0 }
    } else {
        State::ChunkData(size)
    }
}

#[cfg(test)]
mod tests;
