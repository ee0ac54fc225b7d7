//! Upgraded connections (WebSockets and other `Upgrade`s) open in the
//! process. After its 101 an upgraded connection has left hyper, and with
//! it the graceful-shutdown watch, so the drain waits for these here and
//! cuts them when `drain_timeout` runs out (SPEC §9).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{watch, Notify};

#[derive(Debug)]
pub struct Tunnels {
    open: AtomicUsize,
    closed: Notify,
    cut: watch::Sender<bool>,
}

impl Default for Tunnels {
    fn default() -> Tunnels {
        Tunnels {
            open: AtomicUsize::new(0),
            closed: Notify::new(),
            cut: watch::Sender::new(false),
        }
    }
}

/// One open tunnel; closing it is dropping this.
pub struct Open(Arc<Tunnels>);

impl Drop for Open {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.closed.notify_waiters();
        }
    }
}

impl Tunnels {
    pub fn open(self: &Arc<Self>) -> Open {
        self.open.fetch_add(1, Ordering::AcqRel);
        Open(self.clone())
    }

    pub fn count(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Resolves when no tunnel is open.
    pub async fn drained(&self) {
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            // Registered before the count is read, so a close in between
            // is not missed.
            closed.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            closed.await;
        }
    }

    /// Resolves once [`Tunnels::cut_all`] was called.
    pub async fn cut(&self) {
        let mut cut = self.cut.subscribe();
        let _ = cut.wait_for(|c| *c).await;
    }

    /// Ends every tunnel: the drain ran out of time.
    pub fn cut_all(&self) {
        self.cut.send_replace(true);
    }
}
