//! The answer on the wire: its head (`codec::response`) and its body by
//! the head's framing (a length, chunks, or to the close), small frames
//! gathered behind the head into one write and larger ones written as
//! they are; the upgrade's hand-over after a 101; the buffer answers are
//! written from and the `Date` they carry, both kept per thread.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::SystemTime;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body::{Body as _, Frame};

use super::watch::poll_gone;
use crate::codec::response::{self, Asked, BodyLength, Encoding, Unwritable};
use crate::codec::socket::{Socket, Unread};
use crate::codec::upgraded::{Upgrade, Upgraded};
use crate::proxy::ResponseBody;

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

/// What follows an answer.
pub(super) enum Next {
    KeepAlive,
    Close,
    /// The socket went to the tunnel with the 101.
    Upgraded,
}

/// What follows the answer's head, as `write_answer` decided before
/// writing anything.
enum Then {
    /// The body, by its framing; `keep_alive` as the head says.
    Body(Encoding, bool),
    /// The head alone, then the connection closes (hyper's 500 for a 1xx).
    Close,
    /// Nothing can be written that a client would read right.
    Nothing,
    /// A 101: the socket goes to the tunnel.
    Switch,
}

/// Writes the answer: its head, then its body by the head's framing. The
/// head is encoded before the future is made, so that the future holds the
/// body and not the whole answer beside it (it is moved on every request).
pub(super) fn write_answer<'a>(
    socket: &'a Arc<Socket>,
    answer: Response<ResponseBody>,
    asked: Asked<'_>,
    upgrade: Option<Upgrade>,
    out: &'a mut Vec<u8>,
) -> impl std::future::Future<Output = io::Result<Next>> + Send + 'a {
    let (mut parts, mut body) = answer.into_parts();
    let length = if body.is_end_stream() {
        BodyLength::None
    } else {
        body.size_hint()
            .exact()
            .map_or(BodyLength::Unknown, BodyLength::Known)
    };
    out.extend_from_slice(socket.side().answering());
    let encoded = match body.take_lines() {
        Some(lines) => response::encode_lines(&mut parts, &lines, length, asked, date, out),
        None => response::encode(&mut parts, length, asked, date, out),
    };
    let then = match encoded {
        Ok(_) if parts.status == StatusCode::SWITCHING_PROTOCOLS => Then::Switch,
        Ok(encoded) => Then::Body(encoded.encoding, encoded.keep_alive),
        Err(Unwritable::Informational) => {
            // hyper's answer to a service that answers 1xx: 500, closed.
            let mut parts = Response::new(()).into_parts().0;
            parts.status = StatusCode::INTERNAL_SERVER_ERROR;
            let asked = Asked {
                keep_alive: false,
                ..asked
            };
            match response::encode(&mut parts, BodyLength::None, asked, date, out) {
                Ok(_) => Then::Close,
                Err(_) => Then::Nothing,
            }
        }
        Err(Unwritable::Framing) => Then::Nothing,
    };
    crate::codec::give_back(std::mem::take(&mut parts.headers));
    async move {
        let (encoding, keep_alive) = match then {
            Then::Body(encoding, keep_alive) => (encoding, keep_alive),
            Then::Nothing => return Ok(Next::Close),
            Then::Close => {
                drop(body);
                write_all(socket, &mut [IoSlice::new(out)]).await?;
                return Ok(Next::Close);
            }
            Then::Switch => {
                write_all(socket, &mut [IoSlice::new(out)]).await?;
                drop(body);
                return Ok(switch(socket, upgrade));
            }
        };
        let complete = match encoding {
            // Nothing follows the head (`HEAD`, 204, 304, an empty body): the
            // body is dropped unpolled, as hyper drops it.
            Encoding::Length(0) => {
                drop(body);
                write_all(socket, &mut [IoSlice::new(out)]).await?;
                true
            }
            encoding => write_body(socket, &mut body, encoding, out).await?,
        };
        Ok(if complete && keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        })
    }
}

/// After a 101 is written: the socket goes to the tunnel, with nothing of
/// a request body. What is buffered of one goes nowhere: the tunnel gets
/// the bytes after it, or the connection closes when it is not all here.
fn switch(socket: &Arc<Socket>, upgrade: Option<Upgrade>) -> Next {
    let Some(upgrade) = upgrade else {
        return Next::Close;
    };
    if socket.side().discard_unread() != Unread::Nothing {
        return Next::Close;
    }
    let _ = upgrade.send(Upgraded::new(socket.clone()));
    Next::Upgraded
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
            Got::Gone | Got::Frame(Some(Err(_))) => return Ok(false),
            Got::Frame(None) => break,
            Got::Frame(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => data,
                // Trailers end the body. hyper writes only those the
                // answer names in `Trailer`, which figway removes
                // (hop-by-hop), so none are written.
                Err(_) => break,
            },
        };
        if let Some(left) = &mut left {
            // Longer than its `Content-Length`: hyper writes what is owed
            // and no more.
            data.truncate(data.len().min(usize::try_from(*left).unwrap_or(usize::MAX)));
            *left -= data.len() as u64;
        }
        put_data(socket, out, &data, chunked).await?;
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

/// One data frame, behind what `out` gathers: copied into it while the
/// two stay under [`GATHER`], else written with it, uncopied.
async fn put_data(
    socket: &Socket,
    out: &mut Vec<u8>,
    data: &[u8],
    chunked: bool,
) -> io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let mut size = [0u8; 18];
    let (size, tail): (&[u8], &[u8]) = if chunked {
        (chunk_size(data.len(), &mut size), b"\r\n")
    } else {
        (&[], &[])
    };
    out.extend_from_slice(size);
    if out.len() + data.len() <= GATHER {
        out.extend_from_slice(data);
        out.extend_from_slice(tail);
        return Ok(());
    }
    let mut bufs = [IoSlice::new(out), IoSlice::new(data), IoSlice::new(tail)];
    write_all(socket, &mut bufs).await?;
    out.clear();
    Ok(())
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
pub(super) async fn write_all(socket: &Socket, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
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

pub(super) fn take_out() -> Vec<u8> {
    OUT.with(|o| o.take())
}

pub(super) fn put_out(mut out: Vec<u8>) {
    // A buffer grown by a large gathered answer is not kept for every
    // later one.
    if out.capacity() <= 2 * GATHER {
        out.clear();
        OUT.with(|o| o.set(out));
    }
}

/// Today's `Date` value (IMF-fixdate), formatted at most once a second
/// per thread.
pub(super) fn date() -> [u8; 29] {
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
