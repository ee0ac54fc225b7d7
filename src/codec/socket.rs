//! A plain client connection's socket as figway's own HTTP/1.1 server and
//! the request body it hands the proxy share it, and that body.
//!
//! The connection loop (`server::h1`) reads request heads and writes
//! answers; the request's [`Body`] reads its own bytes from the socket when
//! the proxy polls it, possibly from another task (an h2c upstream's
//! connection task polls the body it sends). So the socket sits in an
//! `Arc` with a [`ReadSide`] behind a mutex: the read buffer, where the
//! current body stands, and whether `100 Continue` is still owed. Only one
//! of the two polls the socket's read readiness at a time (tokio keeps one
//! reader waker per socket): the body while it is being read, the loop the
//! rest of the time (between requests, and while the service runs once the
//! body has ended, to see the client leave). The lock is taken by one
//! task at a time in practice: uncontended, two atomic operations.
//!
//! The body's rules are hyper 1.12's server ones: a length-framed body is
//! exactly that many bytes, a chunked one is read by [`chunked::Decoder`];
//! the connection closing before the end is an error; `100 Continue` is
//! written when the body is first polled, only if the answer's head has
//! not gone yet.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use tokio::io::Interest;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::chunked::{self, Step};
use super::request::Framing;

/// Bytes a read asks the kernel for at least (hyper's first read size).
const READ_SIZE: usize = 8 * 1024;

/// What the server writes before a body the client holds back for it.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

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
    body: Reading,
    expect: Expect,
    /// The loop's task, woken when the body ends or is dropped (it then
    /// takes the socket's read readiness back).
    waiting: Option<Waker>,
    /// The body's task while it waits: woken when the loop takes over
    /// what the body was waiting for (a `100 Continue` the answer made
    /// moot, a body the connection gave up on), since the socket's one
    /// waker per direction may by then be the loop's.
    reader: Option<Waker>,
}

/// Where the current request's body stands.
#[derive(Debug)]
enum Reading {
    /// No body, or it ended: the loop reads.
    Idle,
    /// Being read by its [`Body`], which alone reads the socket meanwhile.
    Length(u64),
    Chunked(Box<chunked::Decoder>),
    /// Dropped before its end by the proxy: the loop reads what is left of
    /// it and throws it away (as hyper drains a dropped body), or closes
    /// the connection when it does not come.
    Abandoned(Remaining),
    /// Malformed, cut short, or given up on while its [`Body`] still
    /// lived: nothing more is read from this connection, and the body
    /// (if it still lives) ends in an error, never a clean end.
    Failed,
}

/// What is left of an abandoned body.
#[derive(Debug)]
enum Remaining {
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
    /// A body its [`Body`] still reads (an h2c upstream's connection task
    /// may hold it past the answer).
    Held,
    /// A body that broke: the connection cannot go on.
    Broken,
}

/// `100 Continue`, owed to a client that asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
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

    /// Starts the body of the request just parsed; `None` when it has none.
    pub fn body(self: &Arc<Socket>, framing: Framing, expect_continue: bool) -> Option<Body> {
        let mut side = self.side();
        side.body = match framing {
            Framing::Empty => return None,
            Framing::Length(n) => Reading::Length(n),
            Framing::Chunked => Reading::Chunked(Box::default()),
        };
        side.expect = if expect_continue {
            Expect::Owed(0)
        } else {
            Expect::None
        };
        Some(Body {
            socket: self.clone(),
        })
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
                read = self.stream.try_read_buf(&mut *buf)?;
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
        self.stream.try_read_buf(buf)
    }

    /// Writes some of `bufs` once the socket is writable.
    pub fn poll_write(
        &self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.stream.poll_write_ready(cx))?;
            let wrote = match bufs {
                [one] => self.stream.try_write(one),
                _ => self.stream.try_write_vectored(bufs),
            };
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
        let buf = std::mem::take(&mut self.buf);
        SPARE.with(|s| {
            let mut spare = s.borrow_mut();
            if spare.len() < MAX_SPARE {
                spare.push(buf);
            }
        });
    }

    /// Whether the loop may read: no [`Body`] is reading.
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

    /// The connection gives up on reading: a [`Body`] that still lives
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

    fn ended(&mut self, how: Reading) {
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

/// Why a client's request body could not be read to its end.
#[derive(Debug)]
pub enum BodyError {
    /// The connection ended before the body did.
    Incomplete,
    /// A chunked body broke its framing.
    Malformed(&'static str),
    Io(io::Error),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Incomplete => f.write_str("request body cut short"),
            BodyError::Malformed(why) => write!(f, "malformed chunked request body: {why}"),
            BodyError::Io(e) => write!(f, "reading the request body: {e}"),
        }
    }
}

impl std::error::Error for BodyError {}

/// A client's request body, read from its connection as it is polled.
#[derive(Debug)]
pub struct Body {
    socket: Arc<Socket>,
}

impl Body {
    /// Writes what is owed of `100 Continue` before the first read.
    fn poll_continue(&self, cx: &mut Context<'_>, side: &mut ReadSide) -> Poll<io::Result<()>> {
        while let Expect::Owed(at) = side.expect {
            let n = ready!(self
                .socket
                .poll_write(cx, &[io::IoSlice::new(&CONTINUE[at..])]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            side.expect = if at + n == CONTINUE.len() {
                Expect::None
            } else {
                Expect::Owed(at + n)
            };
        }
        Poll::Ready(Ok(()))
    }

    fn fail(side: &mut ReadSide, e: BodyError) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        side.ended(Reading::Failed);
        Poll::Ready(Some(Err(e)))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let mut guard = self.socket.side();
        let side = &mut *guard;
        let polled = self.poll_body(cx, side);
        if polled.is_pending() {
            match &side.reader {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => side.reader = Some(cx.waker().clone()),
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        // A body the connection gave up on is not at its end: polled, it
        // says why.
        matches!(self.socket.side().body, Reading::Idle)
    }

    fn size_hint(&self) -> SizeHint {
        match self.socket.side().body {
            Reading::Length(n) => SizeHint::with_exact(n),
            Reading::Idle => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

impl Body {
    fn poll_body(
        &self,
        cx: &mut Context<'_>,
        side: &mut ReadSide,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match side.body {
            Reading::Length(_) | Reading::Chunked(_) => {}
            Reading::Failed => return Poll::Ready(Some(Err(BodyError::Incomplete))),
            Reading::Idle | Reading::Abandoned(_) => return Poll::Ready(None),
        }
        if let Err(e) = ready!(self.poll_continue(cx, side)) {
            return Body::fail(side, BodyError::Io(e));
        }
        loop {
            match &mut side.body {
                Reading::Length(left) if !side.buf.is_empty() => {
                    let n = (*left).min(side.buf.len() as u64);
                    *left -= n;
                    let data = side.buf.split_to(n as usize).freeze();
                    if *left == 0 {
                        side.ended(Reading::Idle);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Reading::Chunked(decoder) if !side.buf.is_empty() => {
                    match decoder.decode(&mut side.buf) {
                        Ok(Step::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                        Ok(Step::End(trailers)) => {
                            side.ended(Reading::Idle);
                            return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
                        }
                        Ok(Step::More) => {}
                        Err(chunked::Malformed(why)) => {
                            return Body::fail(side, BodyError::Malformed(why))
                        }
                    }
                }
                Reading::Length(_) | Reading::Chunked(_) => {}
                Reading::Failed => return Poll::Ready(Some(Err(BodyError::Incomplete))),
                Reading::Idle | Reading::Abandoned(_) => return Poll::Ready(None),
            }
            match ready!(self.socket.poll_fill(cx, &mut side.buf)) {
                Ok(0) => return Body::fail(side, BodyError::Incomplete),
                Ok(_) => {}
                Err(e) => return Body::fail(side, BodyError::Io(e)),
            }
        }
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        let mut side = self.socket.side();
        side.reader = None;
        let body = std::mem::replace(&mut side.body, Reading::Idle);
        let left = match body {
            Reading::Length(n) => Reading::Abandoned(Remaining::Length(n)),
            Reading::Chunked(d) => Reading::Abandoned(Remaining::Chunked(d)),
            other => other,
        };
        side.ended(left);
    }
}

/// The client's side of an upgraded connection (a WebSocket after its
/// 101): the socket, with the bytes the client sent past its request head
/// read first.
#[derive(Debug)]
pub struct Upgraded {
    socket: Arc<Socket>,
    early: Bytes,
}

/// Where the proxy's tunnel (`proxy::upgrade`) gets the client's
/// connection once the connection loop has written the 101: carried in the
/// request's extensions as hyper's `OnUpgrade` is (which is why it is
/// `Clone`, as extensions must be; the connection goes to one of them).
#[derive(Debug, Clone)]
pub struct OnUpgrade(Arc<Mutex<Option<tokio::sync::oneshot::Receiver<Upgraded>>>>);

/// The connection loop's end of an [`OnUpgrade`].
pub type Upgrade = tokio::sync::oneshot::Sender<Upgraded>;

impl OnUpgrade {
    pub fn new() -> (Upgrade, OnUpgrade) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (tx, OnUpgrade(Arc::new(Mutex::new(Some(rx)))))
    }

    /// The client's connection, once the 101 is out; `None` when the
    /// connection ended without one (or another copy took it).
    pub async fn connection(self) -> Option<Upgraded> {
        let rx = self.0.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        rx.await.ok()
    }
}

impl Upgraded {
    pub fn new(socket: Arc<Socket>) -> Upgraded {
        let early = std::mem::take(&mut socket.side().buf).freeze();
        Upgraded { socket, early }
    }
}

impl AsyncRead for Upgraded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.early.is_empty() {
            let n = self.early.len().min(buf.remaining());
            buf.put_slice(&self.early.split_to(n));
            return Poll::Ready(Ok(()));
        }
        loop {
            ready!(self.socket.stream.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match self.socket.stream.try_read(unfilled) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.socket.poll_write(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Half-close: the peer sees the end of what the other side sent.
        let _ = socket2::SockRef::from(&self.socket.stream).shutdown(std::net::Shutdown::Write);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use http_body_util::BodyExt;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;

    /// A socket for the server's side of a loopback connection, and the
    /// client's end.
    async fn pair() -> (Arc<Socket>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Socket::new(server), client)
    }

    #[tokio::test]
    async fn a_body_the_connection_gave_up_on_errs_and_is_not_at_its_end() {
        let (socket, mut client) = pair().await;
        let mut body = socket.body(Framing::Length(10), false).unwrap();
        client.write_all(b"abc").await.unwrap();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "abc");
        socket.side().give_up();
        assert!(!http_body::Body::is_end_stream(&body));
        assert!(matches!(
            body.frame().await,
            Some(Err(BodyError::Incomplete))
        ));
        // Nothing after it is read as the connection's.
        client
            .write_all(b"defghijGET / HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        assert!(matches!(socket.side().discard_unread(), Unread::Broken));
    }

    #[tokio::test]
    async fn a_dropped_body_is_thrown_away_up_to_its_end_and_no_further() {
        let (socket, mut client) = pair().await;
        let body = socket.body(Framing::Chunked, false).unwrap();
        drop(body);
        client
            .write_all(b"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let got = poll_fn(|cx| {
            let mut side = socket.side();
            loop {
                match side.discard_unread() {
                    Unread::More => {}
                    other => return Poll::Ready(other),
                }
                let side = &mut *side;
                match ready!(socket.poll_fill(cx, &mut side.buf)) {
                    Ok(n) if n > 0 => {}
                    _ => return Poll::Ready(Unread::Broken),
                }
            }
        })
        .await;
        assert_eq!(got, Unread::Nothing);
        assert_eq!(&socket.side().buf[..], b"GET / HTTP/1.1\r\n\r\n");
    }

    #[tokio::test]
    async fn continue_goes_before_the_first_read_and_not_after_the_answer() {
        let (socket, mut client) = pair().await;
        let mut body = socket.body(Framing::Length(2), true).unwrap();
        client.write_all(b"hi").await.unwrap();
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            "hi"
        );
        let mut got = [0u8; CONTINUE.len()];
        tokio::io::AsyncReadExt::read_exact(&mut client, &mut got)
            .await
            .unwrap();
        assert_eq!(&got[..], CONTINUE);

        let body = socket.body(Framing::Length(2), true).unwrap();
        assert_eq!(socket.side().answering(), b"", "nothing of it written");
        drop(body);
        let mut any = [0u8; 1];
        assert!(
            client.try_read(&mut any).is_err(),
            "a 100 Continue after the answer began"
        );
    }
}
