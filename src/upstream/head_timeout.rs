//! The wait for an upstream's response head within the upstream's
//! `request_timeout` (SPEC §2: per attempt, until the response head
//! arrives), one rule for both protocols: [`HeadWithin`] wraps what an
//! attempt awaits (the request's write, the head's arrival) with a
//! deadline the attempt set once. With an upload (a body still streaming from the
//! client) the limit runs from the upload's last progress: a large upload
//! that keeps moving is not cut, and the wait for the head is measured from
//! its last byte.
//!
//! The timer is the caller's, lent: an HTTP/1.1 connection keeps one for
//! its whole life (`h1::conn::Conn::head_timer`) and each exchange hands
//! its deadline beside it, the timer set no later than that and moved on
//! only when it fires (`clock::passed`); a timer made and dropped per
//! request was a registration and a removal in the runtime's timer wheel
//! each time (~600 instructions, benches/instructions.sh), one moved on
//! per request an update of it (~120).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::body::Upload;
use crate::clock;

pin_project_lite::pin_project! {
    /// `inner` unless `due` passes first (and the upload, if any, has not
    /// moved within `limit` since): then `Err(())`. `timer` is set no
    /// later than `due`.
    ///
    /// Written by hand rather than `tokio::time::timeout` or an `async fn`
    /// looping over it: this future is part of every request's state, and
    /// each of the futures awaiting it holds and moves it whole.
    pub struct HeadWithin<'a, F> {
        #[pin]
        inner: F,
        timer: Pin<&'a mut Sleep>,
        due: Instant,
        limit: Duration,
        upload: Option<&'a Upload>,
    }
}

impl<'a, F: Future> HeadWithin<'a, F> {
    pub fn new(
        limit: Duration,
        upload: Option<&'a Upload>,
        (timer, due): (Pin<&'a mut Sleep>, Instant),
        inner: F,
    ) -> Self {
        HeadWithin {
            inner,
            timer,
            due,
            limit,
            upload,
        }
    }
}

impl<F: Future> Future for HeadWithin<'_, F> {
    type Output = Result<F::Output, ()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.inner.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        loop {
            if !clock::passed(cx, this.timer.as_mut(), *this.due) {
                return Poll::Pending;
            }
            // The deadline was set from the attempt's start, or from an
            // upload's progress as last seen; the limit runs out only
            // `limit` after the latest of them.
            let Some(upload) = this.upload else {
                return Poll::Ready(Err(()));
            };
            let limit_ms = u64::try_from(this.limit.as_millis()).unwrap_or(u64::MAX);
            let due = upload.last_ms().saturating_add(limit_ms);
            let now = clock::now_ms();
            if now >= due {
                return Poll::Ready(Err(()));
            }
            *this.due = clock::now() + Duration::from_millis(due - now);
        }
    }
}
