//! Upstream HTTP/1.1 connections, kept alive and reused. Each target owns a
//! LIFO stack of idle connections: the most recently used one is the most
//! likely to still be open, and the ones at the bottom age out.
//!
//! A connection goes back on the stack only when its response body has been
//! read to the end (see `body::ResponseBody`); one abandoned midway is dropped,
//! which closes it. The stack's lock is held for a push or a pop, never across
//! an await, and only requests to this target take it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::RequestBody;

pub type Sender = SendRequest<RequestBody>;

/// Idle connections beyond this many per target are closed rather than kept.
const MAX_IDLE: usize = 512;

pub struct Pool {
    idle: Mutex<Vec<Idle>>,
    /// The upstream's `idle_timeout` in milliseconds; set by each compile.
    idle_timeout_ms: AtomicU64,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            idle: Mutex::new(Vec::new()),
            idle_timeout_ms: AtomicU64::new(90_000),
        }
    }
}

struct Idle {
    sender: Sender,
    since: Instant,
}

/// The stack is oldest first: the expired ones are a prefix.
fn evict_expired(idle: &mut Vec<Idle>, idle_timeout: Duration) {
    let keep_from = idle.partition_point(|entry| entry.since.elapsed() > idle_timeout);
    idle.drain(..keep_from);
}

#[derive(Debug)]
pub enum ConnectError {
    Timeout,
    Io(std::io::Error),
    Handshake(hyper::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Timeout => f.write_str("connect timed out"),
            ConnectError::Io(e) => write!(f, "connect failed: {e}"),
            ConnectError::Handshake(e) => write!(f, "handshake failed: {e}"),
        }
    }
}

impl Pool {
    /// The most recent idle connection that is ready for a request.
    /// Connections idle longer than `idle_timeout`, or closed by the
    /// upstream, are dropped on the way; one that is open but not ready yet
    /// (its previous response has only just ended) stays for later.
    pub fn checkout(&self) -> Option<Sender> {
        let idle_timeout = self.idle_timeout();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        evict_expired(&mut idle, idle_timeout);
        idle.retain(|entry| !entry.sender.is_closed());
        let ready = idle.iter().rposition(|entry| entry.sender.is_ready())?;
        Some(idle.remove(ready).sender)
    }

    pub fn checkin(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let idle_timeout = self.idle_timeout();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        evict_expired(&mut idle, idle_timeout);
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Closes the connections idle longer than `idle_timeout`, for the
    /// sweeper that runs while no request touches the pool.
    pub fn sweep(&self) {
        let idle_timeout = self.idle_timeout();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        evict_expired(&mut idle, idle_timeout);
        idle.retain(|entry| !entry.sender.is_closed());
    }

    pub fn set_idle_timeout(&self, timeout: Duration) {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.idle_timeout_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms.load(Ordering::Relaxed))
    }

    pub fn idle_count(&self) -> usize {
        self.idle.lock().map_or(0, |i| i.len())
    }
}

/// Opens a new connection to `authority` (`host:port`; names are resolved
/// here, on each new connection).
pub async fn connect(authority: &str, timeout: Duration) -> Result<Sender, ConnectError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(authority)).await {
        Err(_) => return Err(ConnectError::Timeout),
        Ok(Err(e)) => return Err(ConnectError::Io(e)),
        Ok(Ok(s)) => s,
    };
    // Small requests and responses must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(ConnectError::Handshake)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}
