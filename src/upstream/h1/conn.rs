//! One upstream HTTP/1.1 connection as figway holds it: the socket and
//! the bytes read from it that no message has consumed yet. No task runs
//! it: the request's own task writes on it and reads from it, and while it
//! sits in a pool nothing does (the pool looks at it before reuse).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::Interest;
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

    /// The timer for an exchange's wait for its answer's head, and the
    /// deadline, `limit` from now: the timer the connection kept, set no
    /// later than that and moved on only when it fires (`clock::passed`),
    /// or a new one. While the connection idles the timer stays in the
    /// runtime's wheel and may fire once, waking the task of its last
    /// exchange for nothing.
    pub(super) fn head_timer(&mut self, limit: Duration) -> (Pin<Box<Sleep>>, Instant) {
        let due = crate::clock::now() + limit;
        let mut timer = self
            .timer
            .take()
            .unwrap_or_else(|| Box::pin(tokio::time::sleep_until(due)));
        crate::clock::not_after(timer.as_mut(), due);
        (timer, due)
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
        loop {
            ready!(self.io.poll_read_ready(cx))?;
            let mut n = 0;
            // A read shorter than asked for emptied the socket: its
            // readiness is cleared (a `WouldBlock` out of `try_io`), as
            // tokio's own `poll_read` does (`codec::socket` does the same).
            let got = self.io.try_io(Interest::READABLE, || {
                n = crate::sys::recv(&self.io, &mut self.read)?;
                if n > 0 && n < room {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(n)
            });
            match got {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && n == 0 => continue,
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Poll::Ready(Err(e)),
                _ => {}
            }
            if n == room && self.read_size < MAX_READ {
                self.read_size *= 2;
            }
            return Poll::Ready(Ok(n));
        }
    }

    /// Writes all of `bytes` (a request head, and a small body with it).
    /// A `poll_fn`, not an `async fn`: it keeps no readiness future in the
    /// state of the exchange that awaits it.
    pub(super) fn write_all<'a>(
        &'a self,
        mut bytes: &'a [u8],
    ) -> impl Future<Output = io::Result<()>> + Send + 'a {
        std::future::poll_fn(move |cx| {
            while !bytes.is_empty() {
                ready!(self.io.poll_write_ready(cx))?;
                let bufs = [io::IoSlice::new(bytes)];
                match self
                    .io
                    .try_io(Interest::WRITABLE, || crate::sys::send(&self.io, &bufs))
                {
                    Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Ok(n) => bytes = &bytes[n..],
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            Poll::Ready(Ok(()))
        })
    }

    /// The socket and what was read past the last head, for a tunnel.
    pub fn into_io(self) -> (TcpStream, Bytes) {
        (self.io, self.read.freeze())
    }
}
