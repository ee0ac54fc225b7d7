//! Idle upstream HTTP/1.1 connections, kept per worker thread.
//!
//! Each thread holds its own LIFO stack of idle connections per target, in
//! a thread-local map: checkout pops the most recently used connection (the
//! one most likely still open), checkin pushes, both O(1), and no lock is
//! shared between workers. A task that moves between threads simply returns
//! its connection to the pool of the thread it ends on.
//!
//! Expiry is lazy: checkin drops the expired connections at the bottom of
//! the stack, checkout skips closed ones. A connection that nobody checks
//! out is closed by its own driver task once `idle_timeout` passes (see
//! `client.rs`), using the [`ConnState`] mark set here, so no sweeper has to
//! reach into other threads' pools.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use hyper::client::conn::http1::SendRequest;
use rustc_hash::FxHashMap;

use crate::body::RequestBody;

pub type Sender = SendRequest<RequestBody>;

/// Idle connections beyond this many per target and thread are closed
/// rather than kept.
const MAX_IDLE: usize = 512;

/// A connection as the pool and its driver task see it.
#[derive(Debug, Default)]
pub struct ConnState {
    /// `clock` milliseconds since which the connection sits idle in a pool;
    /// 0 while a request uses it.
    idle_since: AtomicU64,
    /// Streams open on a multiplexed (h2c) connection; it is idle when
    /// the last one ends.
    streams: AtomicUsize,
}

impl ConnState {
    /// A stream begins on a multiplexed connection.
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

/// An upstream connection: the handle that sends on it and its state.
pub struct Conn {
    pub sender: Sender,
    pub state: Arc<ConnState>,
}

struct Idle {
    conn: Conn,
}

thread_local! {
    /// Idle connections by target id, most recently used last.
    static IDLE: RefCell<FxHashMap<u64, VecDeque<Idle>>> = RefCell::new(FxHashMap::default());
}

/// The most recently used idle connection to `target` on this thread that
/// can take a request now. Closed ones are dropped on the way; one still
/// finishing its previous exchange stays for later.
pub fn checkout(target: u64, idle_timeout_ms: u64, now: u64) -> Option<Conn> {
    IDLE.with_borrow_mut(|map| {
        let stack = map.get_mut(&target)?;
        // Only the top few: the ones deeper down are older still.
        let mut i = stack.len();
        while i > 0 && stack.len() - i < 4 {
            i -= 1;
            let idle = &stack[i];
            let expired = idle
                .conn
                .state
                .idle_for(now)
                .is_some_and(|t| t >= idle_timeout_ms);
            if idle.conn.sender.is_closed() || expired {
                stack.remove(i);
                continue;
            }
            if idle.conn.sender.is_ready() {
                let idle = stack.remove(i)?;
                idle.conn.state.idle_since.store(0, Ordering::Relaxed);
                return Some(idle.conn);
            }
        }
        None
    })
}

/// Puts a connection whose exchange is complete back for reuse.
pub fn checkin(target: u64, idle_timeout_ms: u64, conn: Conn, now: u64) {
    if conn.sender.is_closed() {
        return;
    }
    conn.state.idle_since.store(now.max(1), Ordering::Relaxed);
    IDLE.with_borrow_mut(|map| {
        let stack = map.entry(target).or_default();
        while let Some(oldest) = stack.front() {
            let expired = oldest
                .conn
                .state
                .idle_for(now)
                .is_some_and(|t| t >= idle_timeout_ms);
            if !(expired || oldest.conn.sender.is_closed()) {
                break;
            }
            stack.pop_front();
        }
        if stack.len() < MAX_IDLE {
            stack.push_back(Idle { conn });
        }
    });
}

/// Idle connections to `target` held by this thread (tests and the admin
/// API's curiosity; not on the request path).
pub fn idle_here(target: u64) -> usize {
    IDLE.with_borrow(|map| map.get(&target).map_or(0, VecDeque::len))
}
