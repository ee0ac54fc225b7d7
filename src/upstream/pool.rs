//! Upstream HTTP/1.1 connections, kept alive and reused. Each target owns a
//! LIFO stack of idle connections: the most recently used one is the most
//! likely to still be open, and the ones at the bottom age out.
//!
//! A connection goes back on the stack only when its response body has been
//! read to the end (see `body::ResponseBody`); one abandoned midway is dropped,
//! which closes it. The stack's lock is held for a push or a pop, never across
//! an await, and only requests to this target take it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::RequestBody;

pub type Sender = SendRequest<RequestBody>;

/// Idle connections beyond this many per target are closed rather than kept.
const MAX_IDLE: usize = 512;

#[derive(Default)]
pub struct Pool {
    idle: Mutex<Vec<Idle>>,
}

struct Idle {
    sender: Sender,
    since: Instant,
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
    /// The most recent idle connection that is still usable. Connections idle
    /// longer than `idle_timeout` are closed on the way.
    pub fn checkout(&self, idle_timeout: Duration) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(entry) = idle.pop() {
            if entry.since.elapsed() > idle_timeout {
                // Everything below is older still.
                idle.clear();
                return None;
            }
            if entry.sender.is_ready() && !entry.sender.is_closed() {
                return Some(entry.sender);
            }
        }
        None
    }

    pub fn checkin(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
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
