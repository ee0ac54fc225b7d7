//! Multiplexed h2c connections to `protocol = "h2c"` upstreams (gRPC
//! services): one connection per target and worker thread, shared by every
//! request to that target on the thread, instead of a pool of one-stream
//! connections. Like the HTTP/1.1 pool it is thread-local (no lock between
//! workers); its connections close when their driver finds them idle past
//! `idle_timeout` or their target gone (`connect::drive`), with the stream
//! count kept in their [`ConnState`].

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use hyper::client::conn::http2::SendRequest;
use rustc_hash::FxHashMap;
use tokio::sync::OnceCell;

use crate::body::RequestBody;

pub type Sender = SendRequest<RequestBody>;

/// An h2c connection as its streams and its driver task see it.
#[derive(Debug, Default)]
pub struct ConnState {
    /// `clock` milliseconds since which the connection has had no stream
    /// open; 0 while one is.
    idle_since: AtomicU64,
    /// Streams open on the connection; it is idle when the last one ends.
    streams: AtomicUsize,
}

impl ConnState {
    /// A stream begins on the connection.
    pub fn stream_started(&self) {
        self.streams.fetch_add(1, Ordering::AcqRel);
        self.idle_since.store(0, Ordering::Relaxed);
    }

    /// A stream ended at `now`; the last one leaves the connection idle.
    pub fn stream_ended(&self, now: u64) {
        if self.streams.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle_since.store(now.max(1), Ordering::Relaxed);
        }
    }

    /// Milliseconds of idleness at `now`, or `None` while in use.
    pub fn idle_for(&self, now: u64) -> Option<u64> {
        match self.idle_since.load(Ordering::Relaxed) {
            0 => None,
            since => Some(now.saturating_sub(since)),
        }
    }
}

/// A target's connection on this thread, or the one being opened: calls
/// that arrive while it is being opened wait for it rather than each
/// opening their own.
pub type Slot = Arc<OnceCell<(Sender, Arc<ConnState>)>>;

thread_local! {
    static OPEN: RefCell<FxHashMap<u64, Slot>> = RefCell::new(FxHashMap::default());
}

/// The thread's slot for `target`: the open connection, the one being
/// opened, or a fresh empty slot when the last connection has closed.
pub fn slot(target: u64) -> Slot {
    OPEN.with_borrow_mut(|map| {
        let slot = map.entry(target).or_default();
        if slot.get().is_some_and(|(sender, _)| sender.is_closed()) {
            *slot = Slot::default();
        }
        slot.clone()
    })
}
