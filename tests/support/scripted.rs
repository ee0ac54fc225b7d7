//! A raw upstream that answers with bytes a test scripts, for answers no
//! HTTP library would write (bad framing, HTTP/1.0, stray bytes).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the scripted upstream does after writing an answer.
#[derive(Clone, Copy, PartialEq)]
pub enum Then {
    /// Reads the next request on the same connection.
    KeepOpen,
    /// Closes the connection (FIN).
    Close,
}

/// A raw upstream: for every request head it reads (the requests it is
/// for have no body), it writes `answer(request line)` and then does `then`.
/// It counts the connections it accepted.
pub struct Scripted {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Scripted {
    pub async fn start(
        answer: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static,
        then: Then,
    ) -> Scripted {
        let answer = Arc::new(answer);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let end = loop {
                            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break i + 4;
                            }
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end);
                        let line = head.lines().next().unwrap_or("").to_string();
                        if s.write_all(&answer(&line)).await.is_err() {
                            return;
                        }
                        if then == Then::Close {
                            let _ = s.shutdown().await;
                            return;
                        }
                    }
                });
            }
        });
        Scripted {
            addr,
            accepted,
            task,
        }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}
