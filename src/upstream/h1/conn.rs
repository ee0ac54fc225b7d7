//! One upstream HTTP/1.1 connection as figway holds it: the socket and
//! the bytes read from it that no message has consumed yet. No task runs
//! it: the request's own task writes on it and reads from it, and while it
//! sits in a pool nothing does (the pool looks at it before reuse).

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// Reads start at this size and double, up to [`MAX_READ`], while each
/// fills what it was given: small answers cost a small buffer, large ones
/// few system calls.
const FIRST_READ: usize = 8 * 1024;
const MAX_READ: usize = 64 * 1024;

pub struct Conn {
    pub(super) io: TcpStream,
    /// Read and not yet consumed by a head or a body.
    pub(super) read: BytesMut,
    /// The request head being written.
    pub(super) write: Vec<u8>,
    read_size: usize,
    /// `clock` milliseconds since it sits idle in a pool.
    pub idle_since: u64,
    /// The wait for an answer's head, kept from one exchange to the next
    /// (`head_timer`); made at the first.
    timer: Option<Pin<Box<Sleep>>>,
}

impl Conn {
    /// Boxed for its whole life, pooled or in use: a request's futures
    /// and the answer's body, which every level of the request path moves
    /// on each request, then carry a pointer instead of ~100 bytes (one
    /// allocation a connection, not a request).
    pub fn new(io: TcpStream) -> Box<Conn> {
        Box::new(Conn {
            io,
            read: BytesMut::new(),
            write: Vec::new(),
            read_size: FIRST_READ,
            idle_since: 0,
            timer: None,
        })
    }

    /// The timer for an exchange's wait for its answer's head, due `limit`
    /// from now: the one the connection kept, its deadline moved on (one
    /// atomic update in tokio's timer while the deadline only moves later,
    /// as it does from one exchange to the next), or a new one. While the
    /// connection idles the timer stays in the runtime's wheel and may fire
    /// once, waking the task of its last exchange for nothing.
    pub(super) fn head_timer(&mut self, limit: Duration) -> Pin<Box<Sleep>> {
        let deadline = Instant::now() + limit;
        match self.timer.take() {
            Some(mut timer) => {
                timer.as_mut().reset(deadline);
                timer
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        }
    }

    /// Takes back the timer of the exchange that just got its head.
    pub(super) fn keep_timer(&mut self, timer: Pin<Box<Sleep>>) {
        self.timer = Some(timer);
    }

    /// Whether an idle connection can carry a request: the upstream has
    /// sent nothing since its last answer, not even its close. A look at
    /// the socket's readiness as the runtime last saw it; a system call
    /// only when that says readable, and then a close or stray bytes
    /// (never a valid answer to anything) both rule it out.
    pub fn is_usable(&self) -> bool {
        if !self.read.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Reads what the upstream sent into `read`: `Ok(0)` at its close.
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let room = self.read.capacity() - self.read.len();
        if room < self.read_size / 2 {
            self.read.reserve(self.read_size);
        }
        let room = self.read.capacity() - self.read.len();
        let n = ready!(pin!(self.io.read_buf(&mut self.read)).poll(cx))?;
        if n == room && self.read_size < MAX_READ {
            self.read_size *= 2;
        }
        Poll::Ready(Ok(n))
    }

    /// The socket and what was read past the last head, for a tunnel.
    pub fn into_io(self) -> (TcpStream, Bytes) {
        (self.io, self.read.freeze())
    }
}
