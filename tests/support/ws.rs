//! WebSocket-style tunnels over raw TCP, for the tests that send an
//! `Upgrade` through figway: an echo upstream that answers a WebSocket
//! upgrade with 101 and then echoes every byte, and [`read_head`], which
//! reads an HTTP head (either side's) byte by byte up to the blank line, so
//! that nothing of the tunnel that follows is consumed with it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The request heads an [`echo_upstream`] received, in arrival order, as
/// [`read_head`] returned them.
pub type Heads = Arc<Mutex<Vec<String>>>;

/// An upstream on 127.0.0.1:0. Per connection it reads one request head
/// and records it; if the head asks for `Upgrade: websocket` it answers
/// `101 Switching Protocols` (with a `Sec-WebSocket-Accept`, and
/// `x-served-by: NAME` when `name` is given) and then echoes every byte
/// until the client side closes; to anything else it answers
/// `400 Bad Request` with the body `no` and closes.
pub async fn echo_upstream(name: Option<&'static str>) -> (SocketAddr, Heads) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Heads::default();
    let seen = heads.clone();
    let served_by = name
        .map(|name| format!("x-served-by: {name}\r\n"))
        .unwrap_or_default();
    let switching = format!(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n{served_by}\r\n"
    );
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen.clone();
            let switching = switching.clone();
            tokio::spawn(async move {
                let head = read_head(&mut s).await;
                let upgrade = head.to_ascii_lowercase().contains("upgrade: websocket");
                seen.lock().unwrap().push(head);
                if !upgrade {
                    let _ = s
                        .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\nno")
                        .await;
                    return;
                }
                if s.write_all(switching.as_bytes()).await.is_err() {
                    return;
                }
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, heads)
}

/// Reads a head up to and including the blank line, one byte at a time so
/// that nothing after it is taken; stops early (returning what it has) if
/// the peer closes or the read fails.
pub async fn read_head_bytes<S: AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    head
}

/// [`read_head_bytes`] as text (invalid UTF-8 replaced).
pub async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> String {
    String::from_utf8_lossy(&read_head_bytes(s).await).into_owned()
}
