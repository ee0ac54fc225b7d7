//! How a client connection's HTTP server is driven to its end, whichever
//! server it is (figway's own `h1`, or the auto builder's): the drain's
//! graceful close, and the head deadline of a connection that has not yet
//! had a request reach the service.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::futures::Notified;
use tokio::time::Sleep;

use super::drain::Drain;
use crate::framing::ConnFlags;

/// Drives `conn` to its end (`Some`), unless no request has reached the
/// service when `left` (if given) runs out (then `None`, and the connection is
/// dropped, closing it). Once the drain begins, gracefully (`shutdown`):
/// HTTP/1.1 finishes the request in progress (or the first, still
/// arriving) with `Connection: close` and closes when idle; h2 sends
/// GOAWAY and finishes its open streams.
///
/// The head deadline: hyper's own head timer starts only once the auto
/// builder knows the protocol, and nothing bounds that wait; a client that
/// completes a TLS handshake, or sends part of the h2 preface, and then
/// nothing, would hold its connection (and a `max_connections` place)
/// forever. One timer per connection, dropped (deregistered) once a
/// request has been seen, so later wake-ups poll the connection, read one
/// counter and one flag, and nothing else.
///
/// A hand-written future rather than an `async fn`: it lives in every
/// connection's task for the connection's whole life, and an `async fn`
/// keeps its arguments twice (as given and as moved into its body).
/// `drained` is the drain's `Notify` future, pinned by the caller.
pub(super) fn until_done<'a, 'd, C, E>(
    conn: Pin<&'a mut C>,
    drained: Pin<&'a mut Notified<'d>>,
    flags: &'a ConnFlags,
    left: Option<Duration>,
    drain: &'a Drain,
    shutdown: fn(Pin<&mut C>),
) -> UntilDone<'a, 'd, C>
where
    C: Future<Output = Result<(), E>>,
{
    UntilDone {
        conn,
        drained,
        flags,
        drain,
        shutdown,
        deadline: left.map(|left| Box::pin(tokio::time::sleep(left))),
        listening: false,
        draining: false,
    }
}

/// [`until_done`]'s future.
pub(super) struct UntilDone<'a, 'd, C> {
    conn: Pin<&'a mut C>,
    drained: Pin<&'a mut Notified<'d>>,
    flags: &'a ConnFlags,
    drain: &'a Drain,
    shutdown: fn(Pin<&mut C>),
    deadline: Option<Pin<Box<Sleep>>>,
    listening: bool,
    draining: bool,
}

impl<C, E> Future for UntilDone<'_, '_, C>
where
    C: Future<Output = Result<(), E>>,
{
    type Output = Option<Result<(), E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Every field is a pointer, a flag or boxed: the future is Unpin.
        let this = self.get_mut();
        let _now = crate::clock::PollScope::enter();
        // The connection is polled first, so by the time it hears of the
        // drain it has read the bytes `first_bytes` saw and, under the
        // auto builder, left its version sniffing, where a graceful
        // shutdown would drop it unanswered. (Only a client whose first
        // bytes are a strict prefix of the h2 preface can still be there.)
        if let Poll::Ready(ended) = this.conn.as_mut().poll(cx) {
            return Poll::Ready(Some(ended));
        }
        if !this.draining {
            if !this.listening {
                // Registers this task's waker once; the flag is read after,
                // so a drain that started before is seen, and one after
                // wakes this task.
                this.listening = true;
                let _ = this.drained.as_mut().poll(cx);
            }
            if this.drain.started() {
                this.draining = true;
                (this.shutdown)(this.conn.as_mut());
                if let Poll::Ready(ended) = this.conn.as_mut().poll(cx) {
                    return Poll::Ready(Some(ended));
                }
            }
        }
        if let Some(d) = this.deadline.as_mut() {
            if this.flags.requests() > 0 {
                this.deadline = None;
            } else if d.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
        }
        Poll::Pending
    }
}
