//! The drain's signal to the connections of one `serve` (SPEC §9), read
//! by hyper's connections (through `conn`'s `UntilDone`) and by figway's
//! own HTTP/1.1 server (`h1`) alike.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// The drain's signal to the connections of one `serve`: a flag each
/// connection reads when it wakes (a load), and a `Notify` that wakes the
/// idle ones, each registered once per connection. A `watch` channel's
/// `wait_for` would take the channel's lock on every wake-up of every
/// connection, that is several times a request.
pub(super) struct Drain {
    started: AtomicBool,
    pub(super) wake: Notify,
}

impl Drain {
    pub(super) fn new() -> Drain {
        Drain {
            started: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    /// Whether the drain has begun: no connection is kept alive after it.
    pub(super) fn started(&self) -> bool {
        self.started.load(Ordering::SeqCst)
    }

    pub(super) fn start(&self) {
        self.started.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
    }
}
