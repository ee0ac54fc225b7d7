//! The connection watched while no head is being read: after an answer,
//! whether the next request can follow (a body the proxy left unread
//! thrown away or not); while the proxy works or an answer streams,
//! whether the client left.

use std::task::{Context, Poll};

use crate::codec::socket::{Socket, Unread};

/// After the answer: whether the connection can read its next request.
/// What is left of a body the proxy dropped is thrown away, with one more
/// read when it is not all here (hyper reads once too, then closes rather
/// than wait for a body nobody wants); a body still held (an h2c upload
/// past its answer) or broken ends the connection.
pub(super) fn body_done(socket: &Socket) -> bool {
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
pub(super) fn poll_gone(cx: &mut Context<'_>, socket: &Socket) -> Poll<bool> {
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
