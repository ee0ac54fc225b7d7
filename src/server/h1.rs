//! figway's own HTTP/1.1 server connection, for plain (not TLS) client
//! connections: heads read and parsed by `codec::request`, the request
//! handed to `proxy::handle` with its body read from the socket as the
//! proxy polls it (`codec::socket::Body`), the answer's head written by
//! `codec::response` and its body by its framing, then the next request.
//! It keeps what hyper's server did for figway (`docs/http1-codec.md`,
//! "The server"), and drops what figway did not use: a request head is
//! parsed once (hyper's parse and the framing guard's second scan were
//! two), and no buffer is written through twice.
//!
//! One request at a time, in order (pipelined requests wait in the read
//! buffer until the answer before them is out). `header_read_timeout` runs
//! while each head is awaited, the idle wait between keep-alive requests
//! included, on one timer the connection resets. While the service runs
//! and the request body has ended, the socket is watched: the client
//! closing drops the service's future (logged `499`), bytes are kept for
//! the next request. A body the proxy left unread is skipped if it is all
//! buffered, else the connection closes. The drain (SPEC §9) closes an
//! idle connection at once and answers the request in progress with
//! `Connection: close`.

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Body as _, Frame};
use tokio::time::{Instant, Sleep};

use super::drain::Drain;
use crate::body::ClientBody;
use crate::codec::request::{self, Head, Refusal};
use crate::codec::response::{self, Asked, BodyLength, Encoding, Unwritable};
use crate::codec::socket::{OnUpgrade, Socket, Unread, Upgrade, Upgraded};
use crate::config::Listen;
use crate::proxy::{ConnCtx, ResponseBody};

/// Body bytes gathered behind the head (or behind each other) into one
/// write; a larger frame goes in a write of its own, uncopied.
const GATHER: usize = 16 * 1024;

thread_local! {
    /// The buffer answers' heads (and small bodies) are written from:
    /// taken for an answer and put back after, so that an idle connection
    /// holds none and a request allocates none.
    static OUT: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
    /// The `Date` of answers, formatted once a second (as hyper does).
    static DATE: std::cell::Cell<(u64, [u8; 29])> = const { std::cell::Cell::new((u64::MAX, [0; 29])) };
}

/// Serves HTTP/1.1 on `socket` until the client leaves, a request asks
/// for the connection to close, an error, or the drain. `left`: how long
/// the first head may still take (the rest of `header_read_timeout` since
/// the accept).
#[allow(
    clippy::manual_async_fn,
    reason = "by-value arguments kept once: see proxy/mod.rs, Futures"
)]
pub(super) fn serve<'a>(
    socket: Arc<Socket>,
    conn: &'a Arc<ConnCtx>,
    listen: &'a Listen,
    drain: &'a Drain,
    left: Duration,
) -> impl Future<Output = io::Result<()>> + Send + 'a {
    async move {
        let mut timer = Box::pin(tokio::time::sleep(left));
        let mut first = true;
        loop {
            if !first {
                let deadline = Instant::now() + listen.header_read_timeout;
                timer.as_mut().reset(deadline);
            }
            let read = poll_fn(|cx| {
                poll_head(
                    cx,
                    &socket,
                    listen.max_header_bytes,
                    timer.as_mut(),
                    drain,
                    first,
                )
            })
            .await;
            first = false;
            let head = match read {
                Read::Head(head) => head,
                Read::Refused(refusal) => return refuse(&socket, refusal).await,
                Read::Closed => return Ok(()),
            };
            match exchange(&socket, conn, drain, head).await? {
                Next::KeepAlive => {}
                Next::Close => {
                    close(&socket);
                    return Ok(());
                }
                Next::Upgraded => return Ok(()),
            }
        }
    }
}

/// What waiting for a head came to.
enum Read {
    Head(Box<Head>),
    Refused(Refusal),
    /// The client left, the head timed out, or the drain closed an idle
    /// connection: closed without an answer, as hyper does.
    Closed,
}

/// What follows an answer.
enum Next {
    KeepAlive,
    Close,
    /// The socket went to the tunnel with the 101.
    Upgraded,
}

/// Reads until a whole head is buffered (or refused), the client leaves,
/// or `timer` fires. `first`: the connection's first head, whose bytes
/// are known to be there (the drain lets it in; SPEC §9).
fn poll_head(
    cx: &mut Context<'_>,
    socket: &Socket,
    max_head: usize,
    timer: Pin<&mut Sleep>,
    drain: &Drain,
    first: bool,
) -> Poll<Read> {
    let mut side = socket.side();
    loop {
        if side.buf.is_empty() {
            if !first && drain.started() {
                return Poll::Ready(Read::Closed);
            }
        } else {
            match request::parse(&mut side.buf, max_head) {
                Ok(Some(head)) => return Poll::Ready(Read::Head(Box::new(head))),
                Ok(None) => {}
                Err(refusal) => return Poll::Ready(Read::Refused(refusal)),
            }
        }
        match socket.poll_fill(cx, &mut side.buf) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Read::Closed),
            Poll::Ready(Ok(_)) => {}
            Poll::Pending => {
                side.park_buffer();
                break;
            }
        }
    }
    drop(side);
    if timer.poll(cx).is_ready() {
        return Poll::Ready(Read::Closed);
    }
    Poll::Pending
}

/// A head hyper's parser would refuse: its status, with nothing else to
/// say, and the connection closes (hyper's answer, byte for byte).
async fn refuse(socket: &Socket, refusal: Refusal) -> io::Result<()> {
    let mut out = take_out();
    let mut parts = Response::new(()).into_parts().0;
    parts.status = refusal.status();
    let asked = Asked {
        method: &Method::GET,
        version: Version::HTTP_11,
        keep_alive: false,
    };
    let wrote = match response::encode(&mut parts, BodyLength::None, asked, &date(), &mut out) {
        Ok(_) => write_all(socket, &mut [IoSlice::new(&out)]).await,
        Err(_) => Ok(()),
    };
    put_out(out);
    close(socket);
    wrote
}

/// One request: handed to the proxy, its answer written.
async fn exchange(
    socket: &Arc<Socket>,
    conn: &Arc<ConnCtx>,
    drain: &Drain,
    head: Box<Head>,
) -> io::Result<Next> {
    let Head {
        mut parts,
        framing,
        keep_alive,
        expect_continue,
        wants_upgrade,
        conflict,
    } = *head;
    if conflict {
        conn.framing.conflict_next();
    }
    let method = parts.method.clone();
    let version = parts.version;
    let upgrade = wants_upgrade.then(|| {
        let (tx, rx) = OnUpgrade::new();
        parts.extensions.insert(rx);
        tx
    });
    let body = match socket.body(framing, expect_continue) {
        Some(body) => ClientBody::Own(body),
        None => ClientBody::Empty,
    };
    let service = crate::proxy::handle(Request::from_parts(parts, body), conn.clone());
    let Some(answer) = run(socket, service).await else {
        // The client left while the proxy worked: the request's future is
        // dropped here, which ends it as a client that went away.
        return Ok(Next::Close);
    };
    let asked = Asked {
        method: &method,
        version,
        keep_alive: keep_alive && !drain.started(),
    };
    let mut out = take_out();
    let next = write_answer(socket, answer, asked, upgrade, &mut out).await;
    put_out(out);
    let next = next?;
    if matches!(next, Next::KeepAlive) && !body_done(socket) {
        return Ok(Next::Close);
    }
    Ok(next)
}

/// After the answer: whether the connection can read its next request.
/// What is left of a body the proxy dropped is thrown away, with one more
/// read when it is not all here (hyper reads once too, then closes rather
/// than wait for a body nobody wants); a body still held (an h2c upload
/// past its answer) or broken ends the connection.
fn body_done(socket: &Socket) -> bool {
    let mut side = socket.side();
    let mut read = false;
    loop {
        match side.discard_unread() {
            Unread::Nothing => return true,
            Unread::More if !read => {
                read = true;
                if !matches!(socket.try_fill(&mut side.buf), Ok(n) if n > 0) {
                    return false;
                }
            }
            Unread::More | Unread::Broken => return false,
            Unread::Held => {
                side.give_up();
                return false;
            }
        }
    }
}

/// Watches the connection while the proxy works or an answer streams:
/// `Ready(true)` when the client closed it (its request is dropped, as
/// hyper drops it), `Ready(false)` when there is nothing more to watch
/// for (the next request's bytes came, or a body broke). Reads only when
/// no body is reading (one reader at a time); what comes of a body the
/// proxy dropped is thrown away as it comes, as hyper drains it.
fn poll_gone(cx: &mut Context<'_>, socket: &Socket) -> Poll<bool> {
    let mut guard = socket.side();
    let side = &mut *guard;
    loop {
        match side.discard_unread() {
            Unread::Held => {
                side.wake_on_body_end(cx.waker());
                return Poll::Pending;
            }
            Unread::Broken => return Poll::Ready(false),
            // The next request, pipelined: kept, and nothing more read
            // until this answer is out.
            Unread::Nothing if !side.buf.is_empty() => return Poll::Ready(false),
            Unread::Nothing | Unread::More => {}
        }
        match socket.poll_fill(cx, &mut side.buf) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(true),
            Poll::Ready(Ok(_)) => {}
            Poll::Pending => return Poll::Pending,
        }
    }
}

/// Drives the proxy's future to its answer while watching the connection
/// once the request body has ended: `None` when the client closed it.
async fn run<F>(socket: &Socket, service: F) -> Option<Response<ResponseBody>>
where
    F: Future<Output = Result<Response<ResponseBody>, std::convert::Infallible>>,
{
    let mut service = pin!(service);
    let mut watching = true;
    poll_fn(|cx| {
        if let Poll::Ready(answer) = service.as_mut().poll(cx) {
            let Ok(answer) = answer;
            return Poll::Ready(Some(answer));
        }
        if watching {
            match poll_gone(cx, socket) {
                Poll::Ready(true) => return Poll::Ready(None),
                Poll::Ready(false) => watching = false,
                Poll::Pending => {}
            }
        }
        Poll::Pending
    })
    .await
}

/// Writes the answer: its head, then its body by the head's framing.
async fn write_answer(
    socket: &Arc<Socket>,
    answer: Response<ResponseBody>,
    asked: Asked<'_>,
    upgrade: Option<Upgrade>,
    out: &mut Vec<u8>,
) -> io::Result<Next> {
    let (mut parts, mut body) = answer.into_parts();
    let length = if body.is_end_stream() {
        BodyLength::None
    } else {
        body.size_hint()
            .exact()
            .map_or(BodyLength::Unknown, BodyLength::Known)
    };
    out.extend_from_slice(socket.side().answering());
    let encoded = match response::encode(&mut parts, length, asked, &date(), out) {
        Ok(encoded) => encoded,
        Err(Unwritable::Informational) => {
            // hyper's answer to a service that answers 1xx: 500, closed.
            drop(body);
            let mut parts = Response::new(()).into_parts().0;
            parts.status = StatusCode::INTERNAL_SERVER_ERROR;
            let asked = Asked {
                keep_alive: false,
                ..asked
            };
            if response::encode(&mut parts, BodyLength::None, asked, &date(), out).is_ok() {
                write_all(socket, &mut [IoSlice::new(out)]).await?;
            }
            return Ok(Next::Close);
        }
        // Nothing can be written that a client would read right.
        Err(Unwritable::Framing) => return Ok(Next::Close),
    };
    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
        write_all(socket, &mut [IoSlice::new(out)]).await?;
        drop(body);
        let Some(upgrade) = upgrade else {
            return Ok(Next::Close);
        };
        let _ = upgrade.send(Upgraded::new(socket.clone()));
        return Ok(Next::Upgraded);
    }
    let complete = match encoded.encoding {
        // Nothing follows the head (`HEAD`, 204, 304, an empty body): the
        // body is dropped unpolled, as hyper drops it.
        Encoding::Length(0) => {
            drop(body);
            write_all(socket, &mut [IoSlice::new(out)]).await?;
            true
        }
        encoding => write_body(socket, &mut body, encoding, out).await?,
    };
    Ok(if complete && encoded.keep_alive {
        Next::KeepAlive
    } else {
        Next::Close
    })
}

/// What polling the answer's body gave, or that what is gathered must go
/// out before waiting for more, or that the client left.
enum Got {
    Frame(Option<Result<Frame<Bytes>, crate::upstream::client::BodyError>>),
    Flush,
    Gone,
}

/// Writes the answer's body behind the head in `out`; false when it
/// broke off (an upstream error, a length it did not keep to): the
/// connection must close, the client seeing a body cut short.
async fn write_body(
    socket: &Socket,
    body: &mut ResponseBody,
    encoding: Encoding,
    out: &mut Vec<u8>,
) -> io::Result<bool> {
    let mut left = match encoding {
        Encoding::Length(n) => Some(n),
        _ => None,
    };
    let chunked = encoding == Encoding::Chunked;
    // While the answer waits on its upstream, the socket is watched as it
    // was while the proxy worked: a client that leaves ends it.
    let mut watching = true;
    loop {
        let got = poll_fn(|cx| match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(Got::Frame(frame)),
            Poll::Pending if !out.is_empty() => Poll::Ready(Got::Flush),
            Poll::Pending if watching => match poll_gone(cx, socket) {
                Poll::Ready(true) => Poll::Ready(Got::Gone),
                Poll::Ready(false) => {
                    watching = false;
                    Poll::Pending
                }
                Poll::Pending => Poll::Pending,
            },
            Poll::Pending => Poll::Pending,
        })
        .await;
        let mut data = match got {
            Got::Flush => {
                write_all(socket, &mut [IoSlice::new(out)]).await?;
                out.clear();
                continue;
            }
            Got::Gone => return Ok(false),
            Got::Frame(None) => break,
            Got::Frame(Some(Err(_))) => return Ok(false),
            Got::Frame(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => data,
                // Trailers end the body. hyper writes only those the
                // answer names in `Trailer`, which figway removes
                // (hop-by-hop), so none are written.
                Err(_) => break,
            },
        };
        if data.is_empty() {
            continue;
        }
        if let Some(left) = &mut left {
            // Longer than its `Content-Length`: hyper writes what is owed
            // and no more.
            if data.len() as u64 > *left {
                data.truncate(*left as usize);
            }
            *left -= data.len() as u64;
        }
        let mut size = [0u8; 18];
        let size = if chunked {
            chunk_size(data.len(), &mut size)
        } else {
            &[][..]
        };
        let tail: &[u8] = if chunked { b"\r\n" } else { b"" };
        if out.len() + data.len() <= GATHER {
            out.extend_from_slice(size);
            out.extend_from_slice(&data);
            out.extend_from_slice(tail);
        } else {
            out.extend_from_slice(size);
            write_all(
                socket,
                &mut [IoSlice::new(out), IoSlice::new(&data), IoSlice::new(tail)],
            )
            .await?;
            out.clear();
        }
        // As hyper: the body is done when it says so after a frame, or
        // when its length is written (it is not polled again).
        if left == Some(0) || body.is_end_stream() {
            break;
        }
    }
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    write_all(socket, &mut [IoSlice::new(out)]).await?;
    // A body shorter than its `Content-Length`: the client waits for the
    // rest, so the connection must close for it to see the end.
    Ok(left.is_none_or(|left| left == 0))
}

/// A chunk's size line, hex.
fn chunk_size(n: usize, buf: &mut [u8; 18]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut at = 16;
    let mut n = n;
    loop {
        at -= 1;
        buf[at] = HEX[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    buf[16] = b'\r';
    buf[17] = b'\n';
    &buf[at..]
}

/// Writes all of `bufs`.
async fn write_all(socket: &Socket, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    let mut left: usize = bufs.iter().map(|b| b.len()).sum();
    while left > 0 {
        let n = poll_fn(|cx| socket.poll_write(cx, bufs)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        left -= n;
        IoSlice::advance_slices(&mut bufs, n);
    }
    Ok(())
}

/// Ends the connection's sending side, so the client sees the end after
/// the last answer (the socket itself closes when its last holder lets go).
fn close(socket: &Socket) {
    socket.side().give_up();
    let _ = socket2::SockRef::from(socket.stream()).shutdown(std::net::Shutdown::Write);
}

fn take_out() -> Vec<u8> {
    OUT.with(|o| o.take())
}

fn put_out(mut out: Vec<u8>) {
    // A buffer grown by a large gathered answer is not kept for every
    // later one.
    if out.capacity() <= 2 * GATHER {
        out.clear();
        OUT.with(|o| o.set(out));
    }
}

/// Today's `Date` value (IMF-fixdate), formatted at most once a second
/// per thread.
fn date() -> [u8; 29] {
    let now = SystemTime::now();
    let second = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|cell| {
        let (at, text) = cell.get();
        if at == second {
            return text;
        }
        let mut text = [0u8; 29];
        let formatted = httpdate::fmt_http_date(now);
        if formatted.len() == text.len() {
            text.copy_from_slice(formatted.as_bytes());
        }
        cell.set((second, text));
        text
    })
}
