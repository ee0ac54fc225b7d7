//! The client's side of a connection its request upgraded (a WebSocket
//! after its 101), handed by the connection loop to the proxy's tunnel.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::socket::Socket;

/// The client's side of an upgraded connection (a WebSocket after its
/// 101): the socket, with the bytes the client sent past its request head
/// read first.
#[derive(Debug)]
pub struct Upgraded {
    socket: Arc<Socket>,
    early: Bytes,
}

/// Where the proxy's tunnel (`proxy::upgrade`) gets the client's
/// connection once the connection loop has written the 101: carried in the
/// request's extensions as hyper's `OnUpgrade` is (which is why it is
/// `Clone`, as extensions must be; the connection goes to one of them).
#[derive(Debug, Clone)]
pub struct OnUpgrade(Arc<Mutex<Option<tokio::sync::oneshot::Receiver<Upgraded>>>>);

/// The connection loop's end of an [`OnUpgrade`].
pub type Upgrade = tokio::sync::oneshot::Sender<Upgraded>;

impl OnUpgrade {
    pub fn new() -> (Upgrade, OnUpgrade) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (tx, OnUpgrade(Arc::new(Mutex::new(Some(rx)))))
    }

    /// The client's connection, once the 101 is out; `None` when the
    /// connection ended without one (or another copy took it).
    pub async fn connection(self) -> Option<Upgraded> {
        let rx = self.0.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        rx.await.ok()
    }
}

impl Upgraded {
    pub fn new(socket: Arc<Socket>) -> Upgraded {
        let early = std::mem::take(&mut socket.side().buf).freeze();
        Upgraded { socket, early }
    }
}

impl AsyncRead for Upgraded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.early.is_empty() {
            let n = self.early.len().min(buf.remaining());
            buf.put_slice(&self.early.split_to(n));
            return Poll::Ready(Ok(()));
        }
        loop {
            ready!(self.socket.stream().poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match self.socket.stream().try_read(unfilled) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.socket.poll_write(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Half-close: the peer sees the end of what the other side sent.
        let _ = socket2::SockRef::from(self.socket.stream()).shutdown(std::net::Shutdown::Write);
        Poll::Ready(Ok(()))
    }
}
