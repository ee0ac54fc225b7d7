//! A plain client connection's socket, as figway's own HTTP/1.1 server
//! (`server::h1`) and the request body it hands the proxy
//! ([`super::client_body`]) share it.
//!
//! The connection loop reads request heads and writes answers; the
//! request's body reads its own bytes from the socket when the proxy polls
//! it, possibly from another task (an h2c upstream's connection task polls
//! the body it sends). So the socket sits in an `Arc` with a [`ReadSide`]
//! behind a mutex: the read buffer, where the current body stands, and
//! whether `100 Continue` is still owed. Only one of the two polls the
//! socket's read readiness at a time (tokio keeps one reader waker per
//! socket): the body while it is being read, the loop the rest of the time
//! (between requests, and while the service runs once the body has ended,
//! to see the client leave). The lock is taken by one task at a time in
//! practice: uncontended, two atomic operations. Idle connections lend
//! their read buffers to the thread's spares.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Waker};

use bytes::{Buf, BytesMut};
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::chunked::{self, Step};

/// Bytes a read asks the kernel for at least (hyper's first read size).
const READ_SIZE: usize = 8 * 1024;

/// What the server writes before a body the client holds back for it.
pub(super) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A client connection's socket and what its reader keeps between reads.
#[derive(Debug)]
pub struct Socket {
    stream: TcpStream,
    side: Mutex<ReadSide>,
}

/// The read side of a connection: bytes read and not yet taken, and the
/// body being read.
#[derive(Debug)]
pub struct ReadSide {
    /// Read and not yet taken: the rest of a head, a body's bytes, the
    /// next (pipelined) request. Empty, and holding no memory, while the
    /// connection is idle.
    pub buf: BytesMut,
    pub(super) body: Reading,
    pub(super) expect: Expect,
    /// The loop's task, woken when the body ends or is dropped (it then
    /// takes the socket's read readiness back).
    waiting: Option<Waker>,
    /// The body's task while it waits: woken when the loop takes over
    /// what the body was waiting for (a `100 Continue` the answer made
    /// moot, a body the connection gave up on), since the socket's one
    /// waker per direction may by then be the loop's.
    pub(super) reader: Option<Waker>,
    /// Which request's body the state above is: a body that outlives its
    /// request (an h2 upstream's task can hold one after it ended) must
    /// not act on the next one's.
    pub(super) request: u64,
}

/// Where the current request's body stands.
#[derive(Debug)]
pub(super) enum Reading {
    /// No body, or it ended: the loop reads.
    Idle,
    /// Being read by its [`Body`](super::client_body::Body), which alone reads the socket meanwhile.
    Length(u64),
    Chunked(Box<chunked::Decoder>),
    /// Dropped before its end by the proxy: the loop reads what is left of
    /// it and throws it away (as hyper drains a dropped body), or closes
    /// the connection when it does not come.
    Abandoned(Remaining),
    /// Malformed, cut short, or given up on while its [`Body`](super::client_body::Body) still
    /// lived: nothing more is read from this connection, and the body
    /// (if it still lives) ends in an error, never a clean end.
    Failed,
}

/// What is left of an abandoned body.
#[derive(Debug)]
pub(super) enum Remaining {
    Length(u64),
    Chunked(Box<chunked::Decoder>),
}

/// What is left unread of the current request's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unread {
    /// Nothing: the next bytes are the next request's.
    Nothing,
    /// Some of a dropped body, not yet here.
    More,
    /// A body its [`Body`](super::client_body::Body) still reads (an h2c upstream's connection task
    /// may hold it past the answer).
    Held,
    /// A body that broke: the connection cannot go on.
    Broken,
}

/// `100 Continue`, owed to a client that asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    None,
    /// Owed, this many bytes of it written.
    Owed(usize),
}

impl Socket {
    pub fn new(stream: TcpStream) -> Arc<Socket> {
        Arc::new(Socket {
            stream,
            side: Mutex::new(ReadSide {
                buf: BytesMut::new(),
                body: Reading::Idle,
                expect: Expect::None,
                waiting: None,
                reader: None,
                request: 0,
            }),
        })
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// The read side. A poisoned lock (a panic while it was held) leaves
    /// a buffer that is still bytes: taken as it is.
    pub fn side(&self) -> MutexGuard<'_, ReadSide> {
        self.side.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads into `buf` once the socket is readable: `Ok(0)` at the end.
    /// Whoever calls it must be the one reader (see the module doc).
    pub fn poll_fill(&self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        if buf.capacity() == 0 {
            *buf = SPARE.with(|s| s.borrow_mut().pop()).unwrap_or_default();
        }
        if buf.capacity() - buf.len() < READ_SIZE / 2 {
            buf.reserve(READ_SIZE);
        }
        loop {
            ready!(self.stream.poll_read_ready(cx))?;
            let spare = buf.capacity() - buf.len();
            let mut read = 0;
            // A read shorter than asked for emptied the socket: its
            // readiness is cleared (a `WouldBlock` out of `try_io`), as
            // tokio's own `poll_read` does, so that the next wait goes to
            // epoll rather than to a `recv` that finds nothing (one system
            // call a request).
            let got = self.stream.try_io(Interest::READABLE, || {
                read = crate::sys::recv(&self.stream, buf)?;
                if read > 0 && read < spare {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(read)
            });
            match got {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && read > 0 => {
                    return Poll::Ready(Ok(read))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                got => return Poll::Ready(got),
            }
        }
    }

    /// Reads what is there without waiting: `Ok(0)` at the end, a
    /// `WouldBlock` error when nothing is.
    pub fn try_fill(&self, buf: &mut BytesMut) -> io::Result<usize> {
        if buf.capacity() - buf.len() < READ_SIZE / 2 {
            buf.reserve(READ_SIZE);
        }
        self.stream
            .try_io(Interest::READABLE, || crate::sys::recv(&self.stream, buf))
    }

    /// Writes some of `bufs` once the socket is writable.
    pub fn poll_write(
        &self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.stream.poll_write_ready(cx))?;
            let wrote = self
                .stream
                .try_io(Interest::WRITABLE, || crate::sys::send(&self.stream, bufs));
            match wrote {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                wrote => return Poll::Ready(wrote),
            }
        }
    }
}

thread_local! {
    /// Read buffers of connections waiting idle for their next request,
    /// lent to the next connection of this thread that reads: an idle
    /// keep-alive connection holds no buffer (nginx's way), and a busy one
    /// gets its buffer back without an allocation.
    static SPARE: std::cell::RefCell<Vec<BytesMut>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Buffers a thread keeps spare at most (8 KiB each).
const MAX_SPARE: usize = 64;

impl ReadSide {
    /// The connection waits idle with nothing buffered: its read buffer
    /// goes to the thread's spares (or is freed), to be taken back by
    /// whichever connection reads next.
    pub fn park_buffer(&mut self) {
        if !self.buf.is_empty() || self.buf.capacity() == 0 {
            return;
        }
        let mut buf = std::mem::take(&mut self.buf);
        // Back to the start of its allocation (no allocation when nothing
        // else holds it, the usual case once the request is over), so that
        // its capacity is the whole of it: one grown by a large head is
        // freed rather than lent.
        buf.reserve(READ_SIZE);
        if buf.capacity() > 4 * READ_SIZE {
            return;
        }
        super::keep_spare(&SPARE, buf, MAX_SPARE);
    }

    /// Whether the loop may read: no [`Body`](super::client_body::Body) is reading.
    pub fn loop_reads(&self) -> bool {
        matches!(self.body, Reading::Idle | Reading::Abandoned(_))
    }

    /// Throws away what is buffered of a body the proxy dropped, and says
    /// what is left of the current body.
    pub fn discard_unread(&mut self) -> Unread {
        let left = match &mut self.body {
            Reading::Idle => return Unread::Nothing,
            Reading::Length(_) | Reading::Chunked(_) => return Unread::Held,
            Reading::Failed => return Unread::Broken,
            Reading::Abandoned(left) => left,
        };
        let done = match left {
            Remaining::Length(n) => {
                let k = (*n).min(self.buf.len() as u64);
                self.buf.advance(k as usize);
                *n -= k;
                Ok(*n == 0)
            }
            Remaining::Chunked(decoder) => skip_chunked(decoder, &mut self.buf),
        };
        match done {
            Ok(true) => {
                self.body = Reading::Idle;
                Unread::Nothing
            }
            Ok(false) => Unread::More,
            Err(()) => {
                self.body = Reading::Failed;
                Unread::Broken
            }
        }
    }

    /// The connection gives up on reading: a [`Body`](super::client_body::Body) that still lives
    /// (an h2c upload) ends in an error rather than waiting on a socket
    /// nobody will feed, or reading the next request's bytes.
    pub fn give_up(&mut self) {
        if matches!(self.body, Reading::Length(_) | Reading::Chunked(_)) {
            self.body = Reading::Failed;
            if let Some(w) = self.reader.take() {
                w.wake();
            }
        }
    }

    /// Has the loop's task woken when the body ends or is dropped.
    pub fn wake_on_body_end(&mut self, waker: &Waker) {
        match &self.waiting {
            Some(w) if w.will_wake(waker) => {}
            _ => self.waiting = Some(waker.clone()),
        }
    }

    /// The answer's head is about to be written: `100 Continue` is no
    /// longer owed. Returns the part of it already begun and not finished,
    /// which must go out before the head.
    pub fn answering(&mut self) -> &'static [u8] {
        let rest = match self.expect {
            Expect::Owed(at) if at > 0 => &CONTINUE[at..],
            _ => &[],
        };
        if self.expect != Expect::None {
            self.expect = Expect::None;
            // A body waiting to write the 100 may wait on a waker the
            // answer's writes replace: it goes on to read.
            if let Some(w) = self.reader.take() {
                w.wake();
            }
        }
        rest
    }

    pub(super) fn ended(&mut self, how: Reading) {
        self.body = how;
        if let Some(w) = self.waiting.take() {
            w.wake();
        }
    }
}

/// Decodes a chunked body off `buf` and drops it: `Ok(true)` at its end,
/// `Ok(false)` when more must come, `Err` when it is malformed.
fn skip_chunked(decoder: &mut chunked::Decoder, buf: &mut BytesMut) -> Result<bool, ()> {
    loop {
        match decoder.decode(buf) {
            Ok(Step::Data(_)) => {}
            Ok(Step::End(_)) => return Ok(true),
            Ok(Step::More) => return Ok(false),
            Err(_) => return Err(()),
        }
    }
}
