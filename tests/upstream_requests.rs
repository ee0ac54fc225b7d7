//! What figway's own HTTP/1.1 client (src/upstream/h1) writes upstream,
//! and how its per-thread pool (src/upstream/pool.rs) hands connections
//! out: request heads byte for byte, bodies framed by a length or by
//! chunks, uploads that the upstream answers early or interrupts with
//! `100 Continue`, and connections kept, reused and replaced. A raw TCP
//! upstream reads the request as figway wrote it (no HTTP library to
//! normalise it away) and counts the connections it accepted; a raw
//! client writes the client's side byte for byte.
//!
//! The tests run on `#[tokio::test]`'s one thread, where figway's pool
//! is the thread's own: every request sees every idle connection.

mod support;
use support::raw_client::{RawAnswer, RawClient};
use support::scripted::{Scripted, Then};
use support::*;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The longest a test waits for the upstream or figway before it fails.
const WAIT: Duration = Duration::from_secs(5);

// === a raw upstream that reads bodies ===

/// A raw upstream: every connection it accepts goes to `serve` as a
/// [`Peer`], numbered from 0 in the order they were accepted.
struct RawUpstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl RawUpstream {
    async fn start<F, Fut>(serve: F) -> RawUpstream
    where
        F: Fn(Peer) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let index = count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(Peer {
                    stream,
                    buf: Vec::new(),
                    index,
                }));
            }
        });
        RawUpstream {
            addr,
            accepted,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One connection accepted by a [`RawUpstream`].
struct Peer {
    stream: TcpStream,
    /// Read and not yet taken by a head or a body.
    buf: Vec<u8>,
    /// Which connection this is, from 0.
    index: usize,
}

impl Peer {
    /// Reads more bytes into `buf`; false at the connection's end.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next request head, request line to blank line inclusive, as
    /// figway wrote it; `None` when figway closed the connection first.
    async fn head(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..i + 4).collect();
                return Some(String::from_utf8_lossy(&head).into_owned());
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Exactly `n` body bytes (fewer if the connection ends first).
    async fn exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            if !self.fill().await {
                break;
            }
        }
        let n = n.min(self.buf.len());
        self.buf.drain(..n).collect()
    }

    /// One CRLF-terminated line, without its CRLF; a bare LF is an error
    /// (figway must write what RFC 9112 writes).
    async fn line(&mut self) -> Result<String, String> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..i + 1).collect();
                let line = String::from_utf8_lossy(&line).into_owned();
                return line
                    .strip_suffix("\r\n")
                    .map(str::to_string)
                    .ok_or_else(|| format!("line without CRLF: {line:?}"));
            }
            if !self.fill().await {
                return Err("connection closed inside chunked framing".into());
            }
        }
    }

    /// A chunked body, strictly decoded (RFC 9112 §7.1): its data and its
    /// trailer lines.
    async fn chunked(&mut self) -> Result<(Vec<u8>, Vec<String>), String> {
        let mut data = Vec::new();
        loop {
            let line = self.line().await?;
            let size = usize::from_str_radix(&line, 16)
                .map_err(|e| format!("bad chunk-size line {line:?} ({e})"))?;
            if size == 0 {
                let mut trailers = Vec::new();
                loop {
                    let line = self.line().await?;
                    if line.is_empty() {
                        return Ok((data, trailers));
                    }
                    trailers.push(line);
                }
            }
            let chunk = self.exact(size + 2).await;
            if chunk.len() < size + 2 || &chunk[size..] != b"\r\n" {
                return Err(format!("a {size}-byte chunk not followed by CRLF"));
            }
            data.extend_from_slice(&chunk[..size]);
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// Answers 200 with `body`.
    async fn ok(&mut self, body: &[u8]) {
        let mut answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Conn: {}\r\n\r\n",
            body.len(),
            self.index
        )
        .into_bytes();
        answer.extend_from_slice(body);
        self.write(&answer).await;
    }
}

/// A header's value in a head as [`Peer::head`] returns it.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// What the upstream read for one request.
#[derive(Debug)]
struct Received {
    /// Which upstream connection it came on ([`Peer::index`]).
    conn: usize,
    head: String,
    body: Vec<u8>,
    trailers: Vec<String>,
}

/// The next request the upstream reported, within [`WAIT`].
async fn next(rx: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("the upstream received no request in time")
        .expect("the upstream stopped")
}

/// An upstream that reads each request's body by its framing (length,
/// chunked, or none), reports it on the channel, and answers 200 echoing
/// the body, keeping the connection open.
async fn echo_upstream() -> (RawUpstream, mpsc::UnboundedReceiver<Received>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (echo_upstream_to(tx).await, rx)
}

/// [`echo_upstream`], reporting on a channel it may share with others.
async fn echo_upstream_to(tx: mpsc::UnboundedSender<Received>) -> RawUpstream {
    RawUpstream::start(move |mut peer| {
        let tx = tx.clone();
        async move {
            while let Some(head) = peer.head().await {
                let chunked = header(&head, "transfer-encoding")
                    .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
                let length = header(&head, "content-length").map(|v| v.parse::<usize>());
                let (body, trailers) = if chunked {
                    match peer.chunked().await {
                        Ok(b) => b,
                        Err(e) => panic!("badly chunked request body: {e}\n{head}"),
                    }
                } else if let Some(n) = length {
                    (
                        peer.exact(n.expect("a numeric content-length")).await,
                        Vec::new(),
                    )
                } else {
                    (Vec::new(), Vec::new())
                };
                peer.ok(&body).await;
                let _ = tx.send(Received {
                    conn: peer.index,
                    head,
                    body,
                    trailers,
                });
            }
        }
    })
    .await
}

// === figway and its client ===

/// figway with one catch-all route to `upstream`: no retries (a retry
/// would hide which connection answered, and a request body is streamed,
/// never held for a replay), and a request timeout short enough that a
/// request stuck on a wrong connection fails within a test's wait.
async fn figway_to(upstream: SocketAddr) -> Figway {
    Figway::start(&config(&format!(
        "[upstreams.m]\ntargets = [\"http://{upstream}\"]\nretries = 0\nrequest_timeout = \"3s\"\n\
         [[routes]]\nprefix = \"/\"\nto = \"m\"\n"
    )))
    .await
}

async fn answer(client: &mut RawClient, what: &str) -> RawAnswer {
    client
        .answer()
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

async fn get_on(client: &mut RawClient, path: &str) -> RawAnswer {
    client
        .send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .await
        .unwrap();
    answer(client, &format!("GET {path}")).await
}

/// An answer's body as text, for comparisons whose failure reads well.
fn text(a: &RawAnswer) -> String {
    String::from_utf8_lossy(&a.body).into_owned()
}

/// A body of `n` bytes repeating every 251 (a prime, so no power-of-two
/// piece lines up with it): a lost, doubled or reordered piece shows.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// Where two bodies first differ, for failure messages.
fn first_difference(a: &[u8], b: &[u8]) -> String {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => format!("first difference at byte {i}"),
        None => format!("lengths {} and {}", a.len(), b.len()),
    }
}

// === request heads ===

/// A GET reaches the upstream in origin form with the client's headers in
/// order, `Host` as the client sent it, the `X-Forwarded-*` figway adds,
/// and no framing header: a bodiless request gets neither a
/// `Content-Length` nor a `Transfer-Encoding`.
#[tokio::test]
async fn a_get_arrives_byte_for_byte_with_forwarded_headers_and_no_framing() {
    let (up, mut rx) = echo_upstream().await;
    let f = figway_to(up.addr).await;
    let mut client = RawClient::connect(f.addr).await;
    client
        .send(
            b"GET /path?q HTTP/1.1\r\nHost: example.test\r\nUser-Agent: raw/1\r\n\
              Accept: */*\r\nX-Request-Id: fixed-id\r\n\r\n",
        )
        .await
        .unwrap();
    let a = answer(&mut client, "GET /path?q").await;
    assert_eq!(a.status, 200, "{}", a.head);
    let seen = next(&mut rx).await;
    assert_eq!(
        seen.head,
        "GET /path?q HTTP/1.1\r\nhost: example.test\r\nuser-agent: raw/1\r\naccept: */*\r\n\
         x-request-id: fixed-id\r\nx-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\n\
         x-forwarded-host: example.test\r\n\r\n",
        "the request head as the upstream read it"
    );
    assert_eq!(
        header(&seen.head, "transfer-encoding"),
        None,
        "{}",
        seen.head
    );
    assert_eq!(header(&seen.head, "content-length"), None, "{}", seen.head);
}

// === request bodies ===

/// A body the client framed by its length goes with that length, its
/// bytes exactly, and nothing after them: the connection stays in step
/// for the next request.
#[tokio::test]
async fn a_content_length_body_arrives_with_its_length_and_exact_bytes() {
    let (up, mut rx) = echo_upstream().await;
    let f = figway_to(up.addr).await;
    let mut client = RawClient::connect(f.addr).await;
    let body = b"hello\r\n\x00world";
    let mut request = format!(
        "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    client.send(&request).await.unwrap();
    let a = answer(&mut client, "POST /upload").await;
    assert_eq!(
        (a.status, text(&a)),
        (200, String::from_utf8_lossy(body).into_owned()),
        "{}",
        a.head
    );
    let seen = next(&mut rx).await;
    assert_eq!(
        header(&seen.head, "content-length"),
        Some(body.len().to_string().as_str()),
        "{}",
        seen.head
    );
    assert_eq!(
        header(&seen.head, "transfer-encoding"),
        None,
        "{}",
        seen.head
    );
    assert_eq!(seen.body, body, "the body as the upstream read it");
    let a = get_on(&mut client, "/after").await;
    assert_eq!(a.status, 200, "{}", a.head);
    let after = next(&mut rx).await;
    assert!(
        after.head.starts_with("GET /after HTTP/1.1\r\n"),
        "the next request on the connection did not start where the body ended: {:?}",
        after.head
    );
    assert_eq!(
        (after.conn, up.accepted()),
        (seen.conn, 1),
        "the connection was not reused"
    );
}

/// A body the client sent chunked (length unknown ahead) goes upstream
/// chunked, without a `Content-Length`, its data whole; the last chunk
/// ends it, so the connection carries the next request.
#[tokio::test]
async fn a_chunked_client_body_arrives_chunked_and_whole() {
    let (up, mut rx) = echo_upstream().await;
    let f = figway_to(up.addr).await;
    let mut client = RawClient::connect(f.addr).await;
    client
        .send(
            b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n",
        )
        .await
        .unwrap();
    let a = answer(&mut client, "POST /upload").await;
    assert_eq!(
        (a.status, text(&a).as_str()),
        (200, "hello world"),
        "{}",
        a.head
    );
    let seen = next(&mut rx).await;
    assert_eq!(
        header(&seen.head, "transfer-encoding"),
        Some("chunked"),
        "{}",
        seen.head
    );
    assert_eq!(header(&seen.head, "content-length"), None, "{}", seen.head);
    assert_eq!(seen.body, b"hello world");
    assert!(seen.trailers.is_empty(), "{:?}", seen.trailers);
    let a = get_on(&mut client, "/after").await;
    assert_eq!(a.status, 200, "{}", a.head);
    assert_eq!(up.accepted(), 1, "the connection was not reused");
}

/// The client's trailers end its body but do not go upstream (as with
/// hyper's client): they would carry past every rule figway applies to the
/// head (`X-Forwarded-*`, the shadow marker, a route's removals) to an
/// upstream that may merge them into it. The body before them arrives
/// whole, and the connection stays in step.
#[tokio::test]
async fn a_chunked_client_body_with_trailers_arrives_whole_without_them() {
    let (up, mut rx) = echo_upstream().await;
    let f = figway_to(up.addr).await;
    let mut client = RawClient::connect(f.addr).await;
    client
        .send(
            b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\
              Trailer: x-checksum\r\n\r\n\
              5\r\nhello\r\n6\r\n world\r\n0\r\nx-checksum: 42\r\n\
              x-forwarded-for: 203.0.113.9\r\n\r\n",
        )
        .await
        .unwrap();
    let a = answer(&mut client, "POST /upload").await;
    assert_eq!(
        (a.status, text(&a).as_str()),
        (200, "hello world"),
        "{}",
        a.head
    );
    let seen = next(&mut rx).await;
    assert_eq!(
        header(&seen.head, "transfer-encoding"),
        Some("chunked"),
        "{}",
        seen.head
    );
    assert_eq!(seen.body, b"hello world");
    assert!(
        seen.trailers.is_empty(),
        "the client's trailers reached the upstream: {:?}",
        seen.trailers
    );
    let a = get_on(&mut client, "/after").await;
    assert_eq!(a.status, 200, "{}", a.head);
    assert_eq!(up.accepted(), 1, "the connection was not reused");
}

/// A body figway holds whole so that a retry could send it again (an
/// idempotent request, `retries` > 0, two targets) goes with the length
/// figway counted, even when the client sent it chunked: the upstream
/// gets a `Content-Length` and no `Transfer-Encoding`, and no trailer
/// section to read.
#[tokio::test]
async fn a_body_held_for_a_replay_goes_with_a_content_length() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let one = echo_upstream_to(tx.clone()).await;
    let two = echo_upstream_to(tx).await;
    let f = Figway::start(&config(&format!(
        "[upstreams.m]\ntargets = [\"http://{}\", \"http://{}\"]\nretries = 1\n\
         request_timeout = \"3s\"\n[[routes]]\nprefix = \"/\"\nto = \"m\"\n",
        one.addr, two.addr
    )))
    .await;
    let mut client = RawClient::connect(f.addr).await;
    client
        .send(
            b"PUT /doc HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        )
        .await
        .unwrap();
    let a = answer(&mut client, "PUT /doc").await;
    assert_eq!(
        (a.status, text(&a).as_str()),
        (200, "hello world"),
        "{}",
        a.head
    );
    let seen = next(&mut rx).await;
    assert_eq!(
        (
            header(&seen.head, "content-length"),
            header(&seen.head, "transfer-encoding")
        ),
        (Some("11"), None),
        "{}",
        seen.head
    );
    assert_eq!(seen.body, b"hello world");
}

/// A 4 MiB upload, far more than any socket buffer holds at once, streams
/// through whole and in order before the upstream answers.
#[tokio::test]
async fn a_large_streamed_upload_arrives_whole() {
    const SIZE: usize = 4 << 20;
    let (up, mut rx) = echo_upstream().await;
    let f = figway_to(up.addr).await;
    let mut client = RawClient::connect(f.addr).await;
    let body = pattern(SIZE);
    let mut request =
        format!("PUT /big HTTP/1.1\r\nHost: t\r\nContent-Length: {SIZE}\r\n\r\n").into_bytes();
    request.extend_from_slice(&body);
    client.send(&request).await.unwrap();
    let a = answer(&mut client, "PUT /big").await;
    assert_eq!(a.status, 200, "{}", a.head);
    let seen = next(&mut rx).await;
    assert_eq!(
        header(&seen.head, "content-length"),
        Some(SIZE.to_string().as_str()),
        "{}",
        seen.head
    );
    assert!(
        seen.body == body,
        "the upload arrived damaged: {}",
        first_difference(&seen.body, &body)
    );
    assert!(
        a.body == body,
        "the echo came back damaged: {}",
        first_difference(&a.body, &body)
    );
}

/// A 4 MiB upload of unknown length, sent by the client in 64 KiB chunks,
/// goes upstream chunked and arrives whole: every chunk figway frames has
/// its size line and CRLF.
#[tokio::test]
async fn a_large_chunked_upload_arrives_whole_and_correctly_framed() {
    const SIZE: usize = 4 << 20;
    let (up, mut rx) = echo_upstream().await;
    let f = figway_to(up.addr).await;
    let mut client = RawClient::connect(f.addr).await;
    let body = pattern(SIZE);
    let mut request =
        b"PUT /big HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in body.chunks(64 * 1024) {
        request.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        request.extend_from_slice(piece);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    client.send(&request).await.unwrap();
    let a = answer(&mut client, "PUT /big").await;
    assert_eq!(a.status, 200, "{}", a.head);
    let seen = next(&mut rx).await;
    assert_eq!(
        header(&seen.head, "transfer-encoding"),
        Some("chunked"),
        "{}",
        seen.head
    );
    assert!(
        seen.body == body,
        "the upload arrived damaged: {}",
        first_difference(&seen.body, &body)
    );
}

// === answers during the upload ===

/// POSTs a `size`-byte body to figway, the client writing on for as long
/// as figway reads, and returns the head of figway's answer as soon as it
/// arrives (the client then stops writing).
async fn upload_and_read_head(figway: SocketAddr, size: usize) -> String {
    let stream = TcpStream::connect(figway).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        let head = format!("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {size}\r\n\r\n");
        if write.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let piece = pattern(64 * 1024);
        for _ in 0..size / piece.len() {
            // figway may stop reading or close: the client just stops.
            if write.write_all(&piece).await.is_err() {
                return;
            }
        }
    });
    let mut got = Vec::new();
    let head_end = tokio::time::timeout(WAIT, async {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok(i + 4);
            }
            match read.read(&mut chunk).await {
                Ok(0) => return Err("figway closed before an answer".to_string()),
                Err(e) => return Err(format!("reading the answer failed: {e}")),
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .expect("no answer to the upload in time")
    .unwrap_or_else(|e| panic!("{e}; got {:?}", String::from_utf8_lossy(&got)));
    writer.abort();
    String::from_utf8_lossy(&got[..head_end]).into_owned()
}

/// An upstream that refuses an upload from its head alone answers `413`
/// without reading the body, and keeps its side open (as a server that
/// meant to drain or linger would). The client, still writing 16 MiB,
/// gets that 413, not an error of figway's; and since the upstream would
/// read the unsent rest of the body as its next request, that connection
/// carries no other: the next request opens a new one, although the 413
/// said nothing of closing.
#[tokio::test]
async fn an_early_answer_ends_the_upload_and_its_connection_is_not_reused() {
    let up = RawUpstream::start(|mut peer| async move {
        while let Some(head) = peer.head().await {
            if head.starts_with("POST") {
                peer.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\n\r\ntoo large")
                    .await;
                // Neither reads nor closes: figway must give the connection up.
                std::future::pending::<()>().await;
            }
            peer.ok(b"after").await;
        }
    })
    .await;
    let f = figway_to(up.addr).await;
    let head = upload_and_read_head(f.addr, 16 << 20).await;
    assert!(
        head.starts_with("HTTP/1.1 413"),
        "the upstream's early answer did not reach the client:\n{head}"
    );
    let mut client = RawClient::connect(f.addr).await;
    let a = get_on(&mut client, "/after").await;
    assert_eq!((a.status, text(&a).as_str()), (200, "after"), "{}", a.head);
    assert_eq!(
        (a.header("x-conn"), up.accepted()),
        (Some("1"), 2),
        "the request after the early answer went on the upload's connection"
    );
}

/// An upstream that answers `413` from the head alone and closes at once,
/// its receive buffer full of the unread body (so its kernel resets the
/// connection): figway's next write fails, and the answer it has read or
/// is about to read must still be the client's, not a `502`.
#[tokio::test]
async fn an_early_answer_from_an_upstream_that_closes_at_once_reaches_the_client() {
    let up = RawUpstream::start(|mut peer| async move {
        if peer.head().await.is_some() {
            peer.write(
                b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\n\
                  Connection: close\r\n\r\ntoo large",
            )
            .await;
        }
    })
    .await;
    let f = figway_to(up.addr).await;
    let head = upload_and_read_head(f.addr, 16 << 20).await;
    assert!(
        head.starts_with("HTTP/1.1 413"),
        "the upstream's early answer did not reach the client:\n{head}"
    );
}

/// An upstream that sends `100 Continue` while the body is still coming
/// (the client holds back its second half until the 100 went out) gets
/// the whole body, and the client gets the final answer, not the 100.
/// The connection stays in step: the next request goes on it.
#[tokio::test]
async fn a_100_continue_mid_upload_is_skipped_and_the_final_answer_relayed() {
    let continued = Arc::new(tokio::sync::Notify::new());
    let sent = continued.clone();
    let up = RawUpstream::start(move |mut peer| {
        let sent = sent.clone();
        async move {
            while let Some(head) = peer.head().await {
                let Some(n) = header(&head, "content-length") else {
                    peer.ok(b"no body").await;
                    continue;
                };
                peer.write(b"HTTP/1.1 100 Continue\r\n\r\n").await;
                sent.notify_one();
                let body = peer.exact(n.parse().unwrap()).await;
                peer.ok(&body).await;
            }
        }
    })
    .await;
    let f = figway_to(up.addr).await;
    let mut client = RawClient::connect(f.addr).await;
    client
        .send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello")
        .await
        .unwrap();
    tokio::time::timeout(WAIT, continued.notified())
        .await
        .expect("the upstream never got the request head");
    client.send(b" world").await.unwrap();
    let a = answer(&mut client, "POST /upload").await;
    assert_eq!(
        (a.status, text(&a).as_str()),
        (200, "hello world"),
        "{}",
        a.head
    );
    let a = get_on(&mut client, "/after").await;
    assert_eq!(
        (a.status, text(&a).as_str()),
        (200, "no body"),
        "{}",
        a.head
    );
    assert_eq!(up.accepted(), 1, "the connection was not reused");
}

// === the pool ===

/// An upstream that closes its keep-alive connection (a FIN, nothing
/// said) while it idles in the pool: the next request takes a fresh
/// connection, with no error for the client. The close comes 20 ms after
/// the answer, after the connection went back to the pool and the pool's
/// sweep first looked at it, so it is the check at checkout that must
/// catch it.
#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_replaced_without_an_error() {
    let up = RawUpstream::start(|mut peer| async move {
        if peer.head().await.is_some() {
            peer.ok(b"ok").await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = peer.stream.shutdown().await;
        }
    })
    .await;
    let f = figway_to(up.addr).await;
    let mut client = RawClient::connect(f.addr).await;
    let a = get_on(&mut client, "/one").await;
    assert_eq!((a.status, text(&a).as_str()), (200, "ok"), "{}", a.head);
    // Time for the upstream's FIN to arrive and the runtime to see it.
    tokio::time::sleep(Duration::from_millis(60)).await;
    let a = get_on(&mut client, "/two").await;
    assert_eq!(
        (a.status, text(&a).as_str()),
        (200, "ok"),
        "the closed connection was used:\n{}",
        a.head
    );
    assert_eq!(up.accepted(), 2);
}

/// Sequential requests on one client connection take turns on one
/// upstream connection: each goes back to the pool once its answer was
/// read, before the next request comes.
#[tokio::test]
async fn sequential_requests_reuse_one_upstream_connection() {
    let up = Scripted::start(
        |_| b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        Then::KeepOpen,
    )
    .await;
    let f = figway_to(up.addr).await;
    let mut client = RawClient::connect(f.addr).await;
    for path in ["/one", "/two", "/three"] {
        let a = get_on(&mut client, path).await;
        assert_eq!((a.status, text(&a).as_str()), (200, "ok"), "{}", a.head);
    }
    assert_eq!(up.accepted(), 1, "a request took a new upstream connection");
}

/// Two requests in flight at once need two connections; once both are
/// back in the pool, two more at once take one each, and no third is
/// opened.
#[tokio::test]
async fn concurrent_requests_open_one_connection_each_and_both_are_reused() {
    let up = RawUpstream::start(|mut peer| async move {
        while peer.head().await.is_some() {
            // Slow enough that the two requests of a round overlap.
            tokio::time::sleep(Duration::from_millis(150)).await;
            let index = peer.index.to_string();
            peer.ok(index.as_bytes()).await;
        }
    })
    .await;
    let f = figway_to(up.addr).await;
    let mut a = RawClient::connect(f.addr).await;
    let mut b = RawClient::connect(f.addr).await;
    let mut rounds = Vec::new();
    for round in ["/first", "/second"] {
        let (x, y) = tokio::join!(get_on(&mut a, round), get_on(&mut b, round));
        for r in [&x, &y] {
            assert_eq!(r.status, 200, "{round}: {}", r.head);
        }
        let mut conns = [x.body, y.body].map(|b| String::from_utf8_lossy(&b).into_owned());
        conns.sort();
        rounds.push(conns);
        assert_eq!(up.accepted(), 2, "after the {round} round");
    }
    assert_eq!(
        rounds,
        [["0", "1"], ["0", "1"]],
        "the upstream connections each round's two requests went on"
    );
}

/// Reads from `s` into `seen` until `want` appears in it (within 3 s).
async fn read_until(s: &mut TcpStream, seen: &mut Vec<u8>, want: &[u8]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while !seen.windows(want.len()).any(|w| w == want) {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no {:?} within 3 s; got {:?}",
                    String::from_utf8_lossy(want),
                    String::from_utf8_lossy(seen)
                )
            })
            .unwrap();
        assert!(n > 0, "closed; got {:?}", String::from_utf8_lossy(seen));
        seen.extend_from_slice(&buf[..n]);
    }
}

/// An upstream that answers as soon as it has the request head and then
/// echoes the body as it arrives (full-duplex HTTP/1.1, as a streaming
/// transcoder does): the answer reaches the client while the upload goes
/// on, and the upload reaches the upstream after the answer began.
#[tokio::test]
async fn an_upstream_that_answers_while_it_reads_gets_the_rest_of_the_body() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        read_until(&mut s, &mut seen, b"\r\n\r\n").await;
        s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        // Echo the chunk's data, then end when the body ends.
        seen.clear();
        read_until(&mut s, &mut seen, b"hello\r\n").await;
        s.write_all(b"5\r\nhello\r\n").await.unwrap();
        read_until(&mut s, &mut seen, b"0\r\n\r\n").await;
        s.write_all(b"0\r\n\r\n").await.unwrap();
        let _ = s.read(&mut [0u8; 64]).await;
    });
    let f = figway_to(addr).await;
    let mut client = TcpStream::connect(f.addr).await.unwrap();
    client
        .write_all(b"POST /duplex HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    read_until(&mut client, &mut got, b"\r\n\r\n").await;
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    client.write_all(b"5\r\nhello\r\n").await.unwrap();
    read_until(&mut client, &mut got, b"hello").await;
    client.write_all(b"0\r\n\r\n").await.unwrap();
    read_until(&mut client, &mut got, b"0\r\n\r\n").await;
}
