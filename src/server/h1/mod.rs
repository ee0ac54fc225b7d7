//! figway's own HTTP/1.1 server connection, for plain (not TLS) client
//! connections: heads read and parsed by `codec::request`, the request
//! handed to `proxy::handle` with its body read from the socket as the
//! proxy polls it (`codec::client_body`), the answer's head written by
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

mod answer;
mod watch;

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Method, Request, Response, Version};
use tokio::time::{Instant, Sleep};

use super::drain::Drain;
use crate::body::ClientBody;
use crate::codec::client_body::Body;
use crate::codec::request::{self, Head, Refusal};
use crate::codec::response::{self, Asked, BodyLength};
use crate::codec::socket::Socket;
use crate::codec::upgraded::OnUpgrade;
use crate::config::Listen;
use crate::proxy::{ConnCtx, ResponseBody};
use answer::{date, put_out, take_out, write_all, write_answer, Next};
use watch::{body_done, poll_gone};

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
        let mut timer = HeadTimer::new(left);
        let mut first = true;
        loop {
            if !first {
                timer.set(crate::clock::now() + listen.header_read_timeout);
            }
            let read = poll_fn(|cx| {
                poll_head(
                    cx,
                    &socket,
                    listen.max_header_bytes,
                    &mut timer,
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

/// The deadline of the head awaited, `header_read_timeout` after the last
/// answer (the first head's: after the accept). The timer is set no
/// later than `due` and moved on only when it fires (`clock::passed`).
struct HeadTimer {
    timer: Pin<Box<Sleep>>,
    due: Instant,
    /// This task polled the timer since it was last moved on, and it had
    /// not fired: the waker it holds is this task's.
    armed: bool,
}

impl HeadTimer {
    fn new(left: Duration) -> HeadTimer {
        let timer = Box::pin(tokio::time::sleep(left));
        HeadTimer {
            due: timer.deadline(),
            timer,
            armed: false,
        }
    }

    /// The next head's deadline.
    fn set(&mut self, due: Instant) {
        self.due = due;
        if crate::clock::not_after(self.timer.as_mut(), due) {
            self.armed = false;
        }
    }

    /// Whether `due` has passed. An armed timer that has not fired is not
    /// polled again: that would only register the same waker again (~120
    /// instructions a request, benches/instructions.sh).
    fn passed(&mut self, cx: &mut Context<'_>) -> bool {
        if self.armed && !self.timer.is_elapsed() {
            return false;
        }
        let passed = crate::clock::passed(cx, self.timer.as_mut(), self.due);
        self.armed = !passed;
        passed
    }
}

/// What waiting for a head came to.
#[allow(
    clippy::large_enum_variant,
    reason = "moved once into the exchange; boxing the head cost an allocation a request"
)]
enum Read {
    Head(Head),
    Refused(Refusal),
    /// The client left, the head timed out, or the drain closed an idle
    /// connection: closed without an answer, as hyper does.
    Closed,
}

/// Reads until a whole head is buffered (or refused), the client leaves,
/// or `timer`'s deadline passes. `first`: the connection's first head,
/// whose bytes are known to be there (the drain lets it in; SPEC §9).
fn poll_head(
    cx: &mut Context<'_>,
    socket: &Socket,
    max_head: usize,
    timer: &mut HeadTimer,
    drain: &Drain,
    first: bool,
) -> Poll<Read> {
    let mut side = socket.side();
    loop {
        // The drain closes a connection between requests at once, with
        // part of a next head or a pipelined one buffered too (as hyper:
        // a connection is idle until a head is whole).
        if !first && drain.started() {
            return Poll::Ready(Read::Closed);
        }
        if !side.buf.is_empty() {
            match request::parse(&mut side.buf, max_head) {
                Ok(Some(head)) => return Poll::Ready(Read::Head(head)),
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
    if timer.passed(cx) {
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
    let wrote = match response::encode(&mut parts, BodyLength::None, asked, date, &mut out) {
        Ok(_) => write_all(socket, &mut [IoSlice::new(&out)]).await,
        Err(_) => Ok(()),
    };
    put_out(out);
    close(socket);
    wrote
}

/// One request: handed to the proxy, its answer written. The head comes
/// by value, not boxed (an allocation a request); the request is built and
/// handed to the proxy before the future is made, so that the future holds
/// only what the answer needs (it is moved on every request, and the head
/// kept in it twice over was ~450 bytes of it).
fn exchange<'a>(
    socket: &'a Arc<Socket>,
    conn: &'a Arc<ConnCtx>,
    drain: &'a Drain,
    head: Head,
) -> impl Future<Output = io::Result<Next>> + Send + 'a {
    let Head {
        mut parts,
        framing,
        keep_alive,
        expect_continue,
        wants_upgrade,
        conflict,
    } = head;
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
    let body = match Body::start(socket, framing, expect_continue) {
        Some(body) => ClientBody::Own(body),
        None => ClientBody::Empty,
    };
    let service = crate::proxy::handle(
        Request::from_parts(parts, body),
        conn.clone(),
        crate::proxy::Writer::Own,
    );
    async move {
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
        let next = match next {
            Ok(next) => next,
            Err(e) => {
                close(socket);
                return Err(e);
            }
        };
        if matches!(next, Next::KeepAlive) && !body_done(socket) {
            return Ok(Next::Close);
        }
        Ok(next)
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

/// Ends the connection's sending side, so the client sees the end after
/// the last answer (the socket itself closes when its last holder lets go).
fn close(socket: &Socket) {
    socket.side().give_up();
    let _ = socket2::SockRef::from(socket.stream()).shutdown(std::net::Shutdown::Write);
}
