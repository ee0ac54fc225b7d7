//! Multiplexed h2c connections to `protocol = "h2c"` upstreams (gRPC
//! services): one connection per target and worker thread, shared by every
//! request to that target on the thread, instead of a pool of one-stream
//! connections. Like the HTTP/1.1 pool it is thread-local (no lock between
//! workers); its connections close when their driver finds them idle past
//! `idle_timeout` or their target gone (`client::drive`), with the stream
//! count kept in their [`ConnState`].

use std::cell::RefCell;
use std::sync::Arc;

use hyper::client::conn::http2::SendRequest;
use rustc_hash::FxHashMap;
use tokio::sync::OnceCell;

use super::pool::ConnState;
use crate::body::RequestBody;

pub type Sender = SendRequest<RequestBody>;

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
