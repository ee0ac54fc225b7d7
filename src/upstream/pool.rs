//! Idle upstream HTTP/1.1 connections, kept per worker thread.
//!
//! Each thread holds its own LIFO stack of idle connections per target:
//! checkout pops the most recently used connection (the one most likely
//! still open), checkin pushes, both O(1). A task that moves between
//! threads simply returns its connection to the pool of the thread it ends
//! on.
//!
//! No task runs an idle connection, so the pool looks after them itself:
//! checkout skips those that expired or that the upstream closed (or sent
//! stray bytes on: [`Conn::is_usable`]), checkin drops the expired ones at
//! the bottom of the stack, and a sweep task per thread, running only
//! while the thread has idle connections, closes the ones past
//! `idle_timeout`, closed by their upstream, or to a target no snapshot
//! lists any more. The thread's pool sits behind a `Mutex` only that
//! thread and its sweep ever take: no lock is shared between workers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use rustc_hash::FxHashMap;

use super::h1::conn::Conn;
use super::target::Target;
use crate::clock;

/// Idle connections beyond this many per target and thread are closed
/// rather than kept.
const MAX_IDLE: usize = 512;

/// The longest a sweep sleeps: how late a closed or retired connection may
/// be noticed when no `idle_timeout` is due sooner.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Pool {
    stacks: FxHashMap<u64, Stack>,
    sweeping: bool,
}

struct Stack {
    target: Weak<Target>,
    /// Most recently used last.
    idle: VecDeque<Box<Conn>>,
}

type Shared = Arc<Mutex<Pool>>;

thread_local! {
    static POOL: Shared = Shared::default();
}

fn lock(pool: &Mutex<Pool>) -> MutexGuard<'_, Pool> {
    // A panic while holding it left at worst a connection too many.
    pool.lock().unwrap_or_else(|e| e.into_inner())
}

fn expired(conn: &Conn, now: u64, timeout: u64) -> bool {
    now.saturating_sub(conn.idle_since) >= timeout
}

/// The most recently used idle connection to `target` on this thread
/// that can take a request now; the dead ones on the way are closed.
pub fn checkout(target: &Target, now: u64) -> Option<Box<Conn>> {
    let timeout = target.idle_timeout_ms();
    POOL.with(|pool| {
        let mut pool = lock(pool);
        let stack = pool.stacks.get_mut(&target.id)?;
        while let Some(conn) = stack.idle.pop_back() {
            if expired(&conn, now, timeout) {
                // The ones below are older still.
                stack.idle.clear();
                return None;
            }
            if conn.is_usable() {
                return Some(conn);
            }
        }
        None
    })
}

/// Puts a connection whose exchange is complete back for reuse.
pub fn checkin(target: &Arc<Target>, conn: Box<Conn>) {
    let timeout = target.idle_timeout_ms();
    let now = conn.idle_since;
    POOL.with(|shared| {
        let mut pool = lock(shared);
        let stack = pool.stacks.entry(target.id).or_insert_with(|| Stack {
            target: Arc::downgrade(target),
            idle: VecDeque::new(),
        });
        while stack
            .idle
            .front()
            .is_some_and(|oldest| expired(oldest, now, timeout))
        {
            stack.idle.pop_front();
        }
        if stack.idle.len() < MAX_IDLE {
            stack.idle.push_back(conn);
        }
        if !pool.sweeping {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                pool.sweeping = true;
                runtime.spawn(sweep(shared.clone()));
            }
        }
    });
}

/// Clears the pool's `sweeping` mark if its sweep is dropped unfinished
/// (its runtime shut down), so that a later runtime on the thread starts
/// another.
struct Sweeping(Option<Shared>);

impl Drop for Sweeping {
    fn drop(&mut self) {
        if let Some(pool) = self.0.take() {
            lock(&pool).sweeping = false;
        }
    }
}

/// Closes what a pool no longer should hold, as long as it holds anything.
async fn sweep(pool: Shared) {
    let mut mark = Sweeping(Some(pool.clone()));
    loop {
        let wait = {
            let mut pool = lock(&pool);
            let now = clock::now_ms();
            let mut next = SWEEP_EVERY;
            pool.stacks.retain(|_, stack| {
                let Some(target) = stack.target.upgrade() else {
                    return false;
                };
                let timeout = target.idle_timeout_ms();
                stack
                    .idle
                    .retain(|c| !expired(c, now, timeout) && c.is_usable());
                if let Some(oldest) = stack.idle.front() {
                    let left = timeout.saturating_sub(now.saturating_sub(oldest.idle_since));
                    next = next.min(Duration::from_millis(left.max(1)));
                }
                !stack.idle.is_empty()
            });
            if pool.stacks.is_empty() {
                // Under the lock, so a checkin sees either this sweep's
                // connections swept or no sweep running.
                pool.sweeping = false;
                mark.0 = None;
                return;
            }
            next
        };
        tokio::time::sleep(wait).await;
    }
}
