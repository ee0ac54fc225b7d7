//! figway's own HTTP/1.1 server (`server::h1`), over real sockets: what its
//! connection loop decides that no other test's case reaches. `Expect:
//! 100-continue` (written when the body is first read, never once figway
//! has answered without it); a body figway left unread (skipped when it is
//! all buffered, so a pipelined request behind it is served; else the
//! connection closes); pipelined requests answered in order; a broken
//! chunked body ends the connection; the head timer over an idle keep-alive
//! connection; the `Date` of answers; large and streamed answers. Parse
//! refusals and framing are `tests/smuggling.rs` and
//! `tests/codec_differential.rs`; a client leaving is `request_path.rs`.

mod support;
use support::*;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::Response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long a test waits for bytes it expects.
const WAIT: Duration = Duration::from_secs(3);

/// One route, `/app`, to `url`; other paths have no route (404, answered
/// by figway without reading the request's body).
fn app_route(url: &str, listen_extra: &str) -> String {
    let base = config(&format!(
        "[upstreams.app]\ntargets = [\"{url}\"]\n\
         [[routes]]\nname = \"app\"\nprefix = \"/app\"\nto = \"app\"\n"
    ));
    if listen_extra.is_empty() {
        return base;
    }
    base.replacen("[listen]\n", &format!("[listen]\n{listen_extra}\n"), 1)
}

/// A backend that answers with the body it received.
async fn echo() -> Backend {
    Backend::with(|seen| async move { Response::new(full(seen.body)) }).await
}

/// An answer read off the wire (bodies framed by `Content-Length` or
/// chunked).
#[derive(Debug)]
struct Reply {
    head: String,
    status: u16,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A raw client connection.
struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        Raw {
            s: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
    }

    /// Reads more; false when the peer closed (or `WAIT` passed).
    async fn read_more(&mut self, until: Instant) -> bool {
        let mut chunk = [0u8; 16384];
        match tokio::time::timeout_at(until, self.s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            _ => false,
        }
    }

    /// The next whole answer, or `None` when the connection closed first.
    async fn answer(&mut self) -> Option<Reply> {
        let until = Instant::now() + WAIT;
        loop {
            if let Some((reply, used)) = parse_reply(&self.buf) {
                self.buf.drain(..used);
                return Some(reply);
            }
            if !self.read_more(until).await {
                return None;
            }
        }
    }

    /// Exactly `bytes` next on the wire.
    async fn expect(&mut self, bytes: &[u8]) {
        let until = Instant::now() + WAIT;
        while self.buf.len() < bytes.len() {
            if !self.read_more(until).await {
                break;
            }
        }
        assert!(
            self.buf.starts_with(bytes),
            "wanted {:?}, got {:?}",
            String::from_utf8_lossy(bytes),
            String::from_utf8_lossy(&self.buf)
        );
        self.buf.drain(..bytes.len());
    }

    /// Whether the peer closes (EOF) within `wait`, with nothing more sent.
    async fn closes_within(&mut self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        let mut chunk = [0u8; 1024];
        loop {
            match tokio::time::timeout_at(until, self.s.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return false,
            }
        }
    }
}

/// An answer off the front of `bytes`, and how many bytes it took.
fn parse_reply(bytes: &[u8]) -> Option<(Reply, usize)> {
    let mut slots = [httparse::EMPTY_HEADER; 32];
    let mut res = httparse::Response::new(&mut slots);
    let httparse::Status::Complete(len) = res.parse(bytes).ok()? else {
        return None;
    };
    let head = String::from_utf8_lossy(&bytes[..len]).into_owned();
    let status = res.code.unwrap_or(0);
    let reply = |body: Vec<u8>| Reply {
        head: head.clone(),
        status,
        body,
    };
    let chunked = res.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(h.value).contains("chunked")
    });
    if chunked {
        let mut at = len;
        let mut body = Vec::new();
        loop {
            let line_end = at + bytes[at..].windows(2).position(|w| w == b"\r\n")?;
            let size =
                usize::from_str_radix(std::str::from_utf8(&bytes[at..line_end]).ok()?, 16).ok()?;
            at = line_end + 2;
            if size == 0 {
                if bytes.len() < at + 2 {
                    return None;
                }
                return Some((reply(body), at + 2));
            }
            if bytes.len() < at + size + 2 {
                return None;
            }
            body.extend_from_slice(&bytes[at..at + size]);
            at += size + 2;
        }
    }
    let length: usize = res
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
        .unwrap_or(0);
    if bytes.len() < len + length {
        return None;
    }
    Some((reply(bytes[len..len + length].to_vec()), len + length))
}

/// A body that does not say its length: the upstream sends it chunked.
struct NoLength(Generated);

impl http_body::Body for NoLength {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::pin::Pin::new(&mut self.0).poll_frame(cx)
    }
}

impl NoLength {
    fn boxed(self) -> TestBody {
        use http_body_util::BodyExt;
        self.map_err(|never| match never {}).boxed()
    }
}

// === Expect: 100-continue ===

#[tokio::test]
async fn a_client_that_expects_100_continue_gets_it_when_its_body_is_read() {
    let b = echo().await;
    let f = Figway::start(&app_route(&b.url(), "")).await;
    let mut c = Raw::connect(f.addr).await;
    c.send(b"POST /app/x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .await;
    // The body is not sent until the 100 comes: without it, this waits.
    c.expect(b"HTTP/1.1 100 Continue\r\n\r\n").await;
    c.send(b"hello").await;
    let a = c.answer().await.expect("an answer after the body");
    assert_eq!(a.status, 200, "{}", a.head);
    assert_eq!(a.body, b"hello");
    assert_eq!(b.last().body, Bytes::from_static(b"hello"));
    // The connection carries the next request.
    c.send(b"GET /app/y HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(c.answer().await.expect("a second answer").status, 200);
}

#[tokio::test]
async fn no_100_continue_once_figway_answered_without_the_body() {
    let b = echo().await;
    let f = Figway::start(&app_route(&b.url(), "")).await;
    let mut c = Raw::connect(f.addr).await;
    c.send(
        b"POST /nowhere HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .await;
    let a = c.answer().await.expect("figway's own answer");
    assert_eq!(a.status, 404, "{}", a.head);
    assert!(
        !a.head.starts_with("HTTP/1.1 100"),
        "a 100 Continue for a body nobody reads"
    );
    // The body was never sent, so it cannot be skipped: the connection
    // closes rather than wait for it.
    assert!(c.closes_within(WAIT).await, "left open: {:?}", c.buf);
    assert_eq!(b.count(), 0);
}

// === bodies figway leaves unread ===

#[tokio::test]
async fn an_unread_body_already_here_is_skipped_and_the_request_behind_it_served() {
    let b = echo().await;
    let f = Figway::start(&app_route(&b.url(), "")).await;
    let mut c = Raw::connect(f.addr).await;
    c.send(
        b"POST /nowhere HTTP/1.1\r\nHost: t\r\nContent-Length: 19\r\n\r\nGET /app/x HTTP/1.1\r\n\
          POST /nowhere HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nGET /\r\n0\r\n\r\n\
          GET /app/after HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .await;
    // The bodies (which look like a request head) are skipped, not read
    // as requests.
    assert_eq!(c.answer().await.expect("first").status, 404);
    assert_eq!(c.answer().await.expect("second").status, 404);
    let a = c.answer().await.expect("the request behind the bodies");
    assert_eq!(a.status, 200, "{}", a.head);
    assert_eq!(b.count(), 1);
    assert_eq!(b.last().uri.path(), "/app/after");
}

#[tokio::test]
async fn an_unread_body_still_coming_closes_the_connection_after_the_answer() {
    let b = echo().await;
    let f = Figway::start(&app_route(&b.url(), "")).await;
    let mut c = Raw::connect(f.addr).await;
    c.send(b"POST /nowhere HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly ten..")
        .await;
    let a = c.answer().await.expect("figway's own answer");
    assert_eq!(a.status, 404, "{}", a.head);
    assert!(
        c.closes_within(WAIT).await,
        "the connection waits for a body nobody wants"
    );
}

// === pipelining and broken bodies ===

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let b = Backend::with(|seen| async move {
        // The first request is the slow one: an answer out of order would
        // put the second's first.
        if seen.uri.path() == "/app/slow" {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Response::new(full(seen.uri.path().to_string()))
    })
    .await;
    let f = Figway::start(&app_route(&b.url(), "")).await;
    let mut c = Raw::connect(f.addr).await;
    c.send(
        b"GET /app/slow HTTP/1.1\r\nHost: t\r\n\r\nGET /app/fast HTTP/1.1\r\nHost: t\r\n\r\n\
          POST /app/body HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
    )
    .await;
    for want in ["/app/slow", "/app/fast", "/app/body"] {
        let a = c.answer().await.expect(want);
        assert_eq!(String::from_utf8_lossy(&a.body), want, "{}", a.head);
    }
}

#[tokio::test]
async fn a_broken_chunked_body_ends_the_connection() {
    let b = echo().await;
    let f = Figway::start(&app_route(&b.url(), "")).await;
    let mut c = Raw::connect(f.addr).await;
    // A chunk size that is not hex: whatever figway answers, nothing after
    // it on this connection may be read as a request.
    c.send(
        b"POST /app/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
          zz\r\nGET /app/smuggled HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .await;
    let first = c.answer().await;
    if let Some(a) = &first {
        assert_ne!(a.status, 200, "{}", a.head);
    }
    assert!(c.closes_within(WAIT).await, "left open");
    assert!(
        c.answer().await.is_none(),
        "a second answer on a connection whose body broke"
    );
    assert!(b.seen().iter().all(|s| s.uri.path() != "/app/smuggled"));
}

// === a client that leaves ===

/// A body that sends one frame and then nothing, ever: an event stream
/// gone quiet.
struct OneThenQuiet(bool);

impl http_body::Body for OneThenQuiet {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if std::mem::replace(&mut self.0, true) {
            return std::task::Poll::Pending;
        }
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(
            b"event: one\n\n",
        )))))
    }
}

#[tokio::test]
async fn a_client_that_leaves_a_quiet_stream_releases_its_upstream() {
    use http_body_util::BodyExt;
    let b = Backend::with(|_| async move {
        Response::new(OneThenQuiet(false).map_err(|never| match never {}).boxed())
    })
    .await;
    let f = Figway::start(&app_route(&b.url(), "")).await;
    let mut c = Raw::connect(f.addr).await;
    c.send(b"GET /app/events HTTP/1.1\r\nHost: t\r\n\r\n").await;
    let until = Instant::now() + WAIT;
    while !String::from_utf8_lossy(&c.buf).contains("event: one") {
        assert!(c.read_more(until).await, "no first event");
    }
    assert_eq!(b.open_connections(), 1);
    drop(c);
    // Nothing more comes from the upstream, so no write fails: only
    // watching the client's socket sees it go.
    let until = Instant::now() + WAIT;
    while b.open_connections() > 0 {
        assert!(
            Instant::now() < until,
            "the upstream stream is still held after the client left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// === the head timer over keep-alive ===

#[tokio::test]
async fn an_idle_keep_alive_connection_closes_at_header_read_timeout() {
    let b = Backend::start("app").await;
    let f = Figway::start(&app_route(&b.url(), "header_read_timeout = \"400ms\"")).await;
    let mut c = Raw::connect(f.addr).await;
    // Past the first head's deadline (counted from the accept), so the
    // timer must have been set again for the idle wait.
    for i in 0..3 {
        c.send(b"GET /app/x HTTP/1.1\r\nHost: t\r\n\r\n").await;
        assert_eq!(c.answer().await.expect("answer").status, 200, "request {i}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let answered = Instant::now();
    assert!(c.closes_within(WAIT).await, "idle connection left open");
    let idle = answered.elapsed();
    assert!(
        idle >= Duration::from_millis(150),
        "closed {idle:?} after the answer, before header_read_timeout (400ms, 200ms of it waited before)"
    );
}

#[tokio::test]
async fn a_head_that_trickles_in_is_cut_at_header_read_timeout() {
    let b = Backend::start("app").await;
    let f = Figway::start(&app_route(&b.url(), "header_read_timeout = \"300ms\"")).await;
    let mut c = Raw::connect(f.addr).await;
    c.send(b"GET /app/x HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(c.answer().await.expect("answer").status, 200);
    let started = Instant::now();
    // A byte every 100 ms never completes the head.
    let cut = loop {
        if c.s.write_all(b"X").await.is_err() {
            break true;
        }
        if c.closes_within(Duration::from_millis(100)).await {
            break true;
        }
        if started.elapsed() > WAIT {
            break false;
        }
    };
    assert!(cut, "a head trickling in was never cut");
    assert_eq!(b.count(), 1);
}

// === answers ===

#[tokio::test]
async fn answers_carry_the_date() {
    let b = Backend::start("app").await;
    let f = Figway::start(&app_route(&b.url(), "")).await;
    let mut c = Raw::connect(f.addr).await;
    c.send(b"GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n").await;
    let a = c.answer().await.expect("answer");
    let date = a.header("date").expect("a Date on figway's own answer");
    let when = httpdate::parse_http_date(date).expect("an IMF-fixdate");
    let off = SystemTime::now()
        .duration_since(when)
        .unwrap_or_else(|e| e.duration());
    assert!(off < Duration::from_secs(5), "Date {date} is {off:?} off");
}

#[tokio::test]
async fn large_and_streamed_answers_arrive_whole() {
    let big = Bytes::from(
        (0..300_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let served = big.clone();
    let b = Backend::with(move |seen| {
        let served = served.clone();
        async move {
            if seen.uri.path() == "/app/stream" {
                // No length: chunked to an HTTP/1.1 client, to the close
                // for an HTTP/1.0 one.
                return Response::new(NoLength(Generated::new(1_000_000, 7_000)).boxed());
            }
            Response::new(full(served))
        }
    })
    .await;
    let f = Figway::start(&app_route(&b.url(), "")).await;
    let mut c = Raw::connect(f.addr).await;
    c.send(b"GET /app/big HTTP/1.1\r\nHost: t\r\n\r\nGET /app/stream HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    let a = c.answer().await.expect("big");
    assert_eq!(a.header("content-length"), Some("300000"), "{}", a.head);
    assert!(a.body == big, "the large answer's bytes changed");
    let a = c.answer().await.expect("streamed");
    assert_eq!(a.header("transfer-encoding"), Some("chunked"), "{}", a.head);
    assert_eq!(a.body.len(), 1_000_000);
    assert!(a.body.iter().all(|b| *b == b'x'));

    let got = raw(f.addr, b"GET /app/stream HTTP/1.0\r\nHost: t\r\n\r\n", WAIT).await;
    let (head, body) = got.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    assert_eq!(body.len(), 1_000_000, "read to the close");
}

// === whatever a client sends ===

/// Pieces a client's bytes are made of: well-formed and broken heads,
/// bodies, framing headers at odds, stray line ends.
const PIECES: &[&[u8]] = &[
    b"GET /app/x HTTP/1.1\r\nHost: t\r\n\r\n",
    b"POST /app/x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /app/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"3\r\nabc\r\n",
    b"0\r\n\r\n",
    b"zz\r\n",
    b"Content-Length: 7\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Expect: 100-continue\r\n",
    b"Connection: close\r\n",
    b"GET /nowhere HTTP/1.0\r\n\r\n",
    b"\r\n",
    b"\n",
    b"GET /app/\x00 HTTP/1.1\r\n",
    b"HTTP/1.1 200 OK\r\n",
    b"POST /app/x HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    b"GET /app/x HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
    b"\xff\xfe",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_bytes_a_client_sends_leave_figway_serving() {
    let b = echo().await;
    let f = Figway::start(&app_route(&b.url(), "header_read_timeout = \"300ms\"")).await;
    let mut rng = fastrand::Rng::with_seed(12);
    let mut clients = Vec::new();
    for _ in 0..200 {
        let mut bytes = Vec::new();
        for _ in 0..rng.usize(1..8) {
            bytes.extend_from_slice(PIECES[rng.usize(..PIECES.len())]);
        }
        // Cut anywhere, sent in up to three writes.
        bytes.truncate(rng.usize(1..=bytes.len()));
        let cuts = [rng.usize(..=bytes.len()), rng.usize(..=bytes.len())];
        let addr = f.addr;
        clients.push(tokio::spawn(async move {
            let Ok(mut s) = TcpStream::connect(addr).await else {
                return;
            };
            let (a, c) = (cuts[0].min(cuts[1]), cuts[0].max(cuts[1]));
            for part in [&bytes[..a], &bytes[a..c], &bytes[c..]] {
                if s.write_all(part).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let mut sink = [0u8; 4096];
            let until = Instant::now() + Duration::from_secs(2);
            while let Ok(Ok(n)) = tokio::time::timeout_at(until, s.read(&mut sink)).await {
                if n == 0 {
                    break;
                }
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    // Still serving, and every connection it kept for those is gone.
    let a = get(f.addr, "/app/after", &[]).await;
    assert_eq!(a.status, 200);
    let until = Instant::now() + WAIT;
    loop {
        let open = f.shared.registry.metrics.connections.get();
        if open <= 1 {
            break;
        }
        assert!(
            Instant::now() < until,
            "{open} client connections still open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
