//! No smuggling (SPEC §4, RFC 9112 §6.1, §6.3), measured over real sockets.
//! Every request whose framing two parsers could read differently (both
//! `Content-Length` and `Transfer-Encoding`; a Transfer-Encoding other than
//! exactly `chunked`; a Content-Length that is not one plain number) is
//! written in one piece with a second request behind it, as a smuggler
//! would. figway must answer 400 with `Connection: close`, close the
//! connection, and forward nothing: the bytes after a head figway refused
//! are never read as a request. Some of these hyper's parser refuses itself
//! (a bare 400); the rest reach figway's service, and each case says which,
//! so that a change in hyper's parser shows up here.

mod support;
use support::*;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for figway to answer and close.
const WAIT: Duration = Duration::from_secs(3);

/// The request hidden behind each bad one.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: test.local\r\n\r\n";

fn route_to(url: &str) -> String {
    config(&format!(
        "[upstreams.m]\ntargets = [\"{url}\"]\n[[routes]]\nname = \"all\"\nprefix = \"/\"\nto = \"m\"\n"
    ))
}

/// One response as read off the wire.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn says_close(&self) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("connection"))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("close"))
    }
}

/// What one connection produced.
#[derive(Debug)]
struct Exchange {
    replies: Vec<Reply>,
    /// The peer closed with a FIN (read returned 0), within [`WAIT`].
    closed: bool,
    /// All bytes read, for failure messages.
    raw: String,
}

/// Writes `bytes` in one write on a fresh connection, then reads until
/// `want` whole responses have arrived and, when `until_close`, until the
/// peer closes; either way at most [`WAIT`].
async fn exchange(addr: SocketAddr, bytes: &[u8], want: usize, until_close: bool) -> Exchange {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut closed = false;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Err(_) | Ok(Err(_)) => break,
            Ok(Ok(0)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => out.extend_from_slice(&chunk[..n]),
        }
        if !until_close && parse_replies(&out).len() >= want {
            break;
        }
    }
    Exchange {
        replies: parse_replies(&out),
        closed,
        raw: String::from_utf8_lossy(&out).into_owned(),
    }
}

/// The whole responses in `bytes` (bodies framed by Content-Length, which
/// both figway's own answers and the test backend's carry).
fn parse_replies(mut bytes: &[u8]) -> Vec<Reply> {
    let mut replies = Vec::new();
    loop {
        let mut slots = [httparse::EMPTY_HEADER; 32];
        let mut res = httparse::Response::new(&mut slots);
        let Ok(httparse::Status::Complete(len)) = res.parse(bytes) else {
            return replies;
        };
        let reply = Reply {
            status: res.code.unwrap_or(0),
            headers: res
                .headers
                .iter()
                .map(|h| {
                    let value = String::from_utf8_lossy(h.value).into_owned();
                    (h.name.to_string(), value)
                })
                .collect(),
        };
        let body: usize = reply
            .header("content-length")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if bytes.len() < len + body {
            return replies;
        }
        bytes = &bytes[len + body..];
        replies.push(reply);
    }
}

/// Who answers a case's 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum By {
    /// hyper's parser rejects the head: a bare 400.
    Hyper,
    /// The request reaches figway's service: 400 `bad_request`.
    Figway,
}

/// Sends `head` and `rest` (its body, if any) with [`SMUGGLED`] behind
/// them in one write, and checks the whole contract.
async fn refused(by: By, head: &str, rest: &str) {
    let backend = Backend::start("mono").await;
    let f = Figway::start(&route_to(&backend.url())).await;
    let bytes = format!("{head}{rest}{SMUGGLED}");
    let ex = exchange(f.addr, bytes.as_bytes(), 1, true).await;
    let paths: Vec<String> = backend.seen().iter().map(|s| s.uri.to_string()).collect();
    assert!(paths.is_empty(), "the upstream received {paths:?}; {ex:?}");
    assert_eq!(ex.replies.len(), 1, "one answer expected; {ex:?}");
    let reply = &ex.replies[0];
    assert_eq!(reply.status, 400, "{ex:?}");
    assert!(reply.says_close(), "no `Connection: close`; {ex:?}");
    assert!(ex.closed, "figway left the connection open; {ex:?}");
    let answered_by = match reply.header("x-figway-error") {
        Some("bad_request") => By::Figway,
        Some(other) => panic!("x-figway-error {other}; {ex:?}"),
        None => By::Hyper,
    };
    assert_eq!(answered_by, by, "{}", ex.raw);
}

/// One test per case: name, who answers, the head and what follows it.
macro_rules! refused {
    ($($name:ident: $by:ident, $head:expr, $rest:expr;)*) => {$(
        #[tokio::test]
        async fn $name() {
            refused(By::$by, $head, $rest).await;
        }
    )*};
}

const POST: &str = "POST /upload HTTP/1.1\r\nHost: test.local\r\n";
const POST10: &str = "POST /upload HTTP/1.0\r\nHost: test.local\r\n";

refused! {
    // Both Content-Length and Transfer-Encoding: hyper keeps the chunked
    // reading, so only figway's framing guard sees the length.
    content_length_then_chunked: Figway,
        &format!("{POST}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"), "0\r\n\r\n";
    chunked_then_content_length: Figway,
        &format!("{POST}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"), "0\r\n\r\n";
    // After Transfer-Encoding hyper skips a Content-Length without reading
    // it, so even one that is not a number must not hide the conflict.
    chunked_then_content_length_not_a_number: Figway,
        &format!("{POST}Transfer-Encoding: chunked\r\nContent-Length: abc\r\n\r\n"), "0\r\n\r\n";
    chunked_then_content_length_list: Figway,
        &format!("{POST}Transfer-Encoding: chunked\r\nContent-Length: 1, 2\r\n\r\n"), "0\r\n\r\n";
    chunked_then_content_length_plus: Figway,
        &format!("{POST}Transfer-Encoding: chunked\r\nContent-Length: +5\r\n\r\n"), "0\r\n\r\n";
    // The request behind is itself CL+TE: the guard, which reads ahead of
    // the service, must still flag the first one.
    content_length_and_chunked_twice: Figway,
        &format!("{POST}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
        &format!("0\r\n\r\n{POST}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    // Chunked last but not alone: hyper reads it as chunked.
    gzip_then_chunked: Figway,
        &format!("{POST}Transfer-Encoding: gzip, chunked\r\n\r\n"), "0\r\n\r\n";
    chunked_chunked: Figway,
        &format!("{POST}Transfer-Encoding: chunked, chunked\r\n\r\n"), "0\r\n\r\n";
    chunked_on_two_lines: Figway,
        &format!("{POST}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"), "0\r\n\r\n";
    identity_line_then_chunked_line: Figway,
        &format!("{POST}Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n"), "0\r\n\r\n";
    empty_coding_then_chunked: Figway,
        &format!("{POST}Transfer-Encoding: , chunked\r\n\r\n"), "0\r\n\r\n";
    // A request calling itself gRPC still gets the plain 400 that closes:
    // the gRPC form of figway's errors has no `Connection: close`.
    grpc_gzip_then_chunked: Figway,
        &format!("{POST}Content-Type: application/grpc\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), "0\r\n\r\n";
    grpc_content_length_then_chunked: Figway,
        &format!("{POST}Content-Type: application/grpc\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"), "0\r\n\r\n";
    // A final coding other than chunked: hyper refuses the head.
    identity: Hyper,
        &format!("{POST}Transfer-Encoding: identity\r\n\r\n"), "0\r\n\r\n";
    xchunked: Hyper,
        &format!("{POST}Transfer-Encoding: xchunked\r\n\r\n"), "0\r\n\r\n";
    chunked_then_gzip: Hyper,
        &format!("{POST}Transfer-Encoding: chunked, gzip\r\n\r\n"), "0\r\n\r\n";
    chunked_line_then_identity_line: Hyper,
        &format!("{POST}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n"), "0\r\n\r\n";
    chunked_on_http10: Hyper,
        &format!("{POST10}Transfer-Encoding: chunked\r\n\r\n"), "0\r\n\r\n";
    content_length_and_chunked_on_http10: Hyper,
        &format!("{POST10}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"), "0\r\n\r\n";
    // Content-Length that is not one plain number.
    content_lengths_differ: Hyper,
        &format!("{POST}Content-Length: 5\r\nContent-Length: 6\r\n\r\n"), "hello";
    content_length_list: Hyper,
        &format!("{POST}Content-Length: 1, 2\r\n\r\n"), "h";
    content_length_same_list: Hyper,
        &format!("{POST}Content-Length: 5, 5\r\n\r\n"), "hello";
    content_length_not_a_number: Hyper,
        &format!("{POST}Content-Length: abc\r\n\r\n"), "hello";
    content_length_negative: Hyper,
        &format!("{POST}Content-Length: -5\r\n\r\n"), "hello";
    content_length_plus: Hyper,
        &format!("{POST}Content-Length: +5\r\n\r\n"), "hello";
    content_length_not_a_number_then_chunked: Hyper,
        &format!("{POST}Content-Length: abc\r\nTransfer-Encoding: chunked\r\n\r\n"), "0\r\n\r\n";
}

/// Good requests keep their keep-alive: a chunked request and one
/// pipelined behind it, in one write, are both served on one connection.
#[tokio::test]
async fn chunked_request_and_a_pipelined_one_are_both_served() {
    let backend = Backend::start("mono").await;
    let f = Figway::start(&route_to(&backend.url())).await;
    let bytes = format!(
        "{POST}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n\
         GET /next HTTP/1.1\r\nHost: test.local\r\n\r\n"
    );
    let ex = exchange(f.addr, bytes.as_bytes(), 2, false).await;
    let statuses: Vec<u16> = ex.replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200], "{ex:?}");
    assert!(ex.replies.iter().all(|r| !r.says_close()), "{ex:?}");
    assert!(!ex.closed, "figway closed a good connection; {ex:?}");
    let seen = backend.seen();
    let paths: Vec<String> = seen.iter().map(|s| s.uri.to_string()).collect();
    assert_eq!(paths, ["/upload", "/next"]);
    assert_eq!(&seen[0].body[..], b"hello");
}

/// Same with a Content-Length body that looks like a smuggled request:
/// it is body, forwarded as such, and the request behind it is served.
#[tokio::test]
async fn length_body_and_a_pipelined_request_are_both_served() {
    let backend = Backend::start("mono").await;
    let f = Figway::start(&route_to(&backend.url())).await;
    let body = format!("{POST}Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
    let bytes = format!(
        "{POST}Content-Length: {}\r\n\r\n{body}GET /next HTTP/1.1\r\nHost: test.local\r\n\r\n",
        body.len()
    );
    let ex = exchange(f.addr, bytes.as_bytes(), 2, false).await;
    let statuses: Vec<u16> = ex.replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200], "{ex:?}");
    assert!(!ex.closed, "figway closed a good connection; {ex:?}");
    let seen = backend.seen();
    let paths: Vec<String> = seen.iter().map(|s| s.uri.to_string()).collect();
    assert_eq!(paths, ["/upload", "/next"]);
    assert_eq!(&seen[0].body[..], body.as_bytes());
}

/// A refused request whose body is still coming: figway answers and closes
/// at once, without waiting for (or reading) the rest of the body.
#[tokio::test]
async fn refused_request_with_its_body_still_coming_is_closed_at_once() {
    let backend = Backend::start("mono").await;
    let f = Figway::start(&route_to(&backend.url())).await;
    let bytes = format!("{POST}Transfer-Encoding: gzip, chunked\r\n\r\n64\r\n0123456789");
    let ex = exchange(f.addr, bytes.as_bytes(), 1, true).await;
    assert_eq!(ex.replies.len(), 1, "{ex:?}");
    assert_eq!(ex.replies[0].status, 400, "{ex:?}");
    assert!(ex.replies[0].says_close(), "{ex:?}");
    assert!(ex.closed, "figway waited for the rest of the body; {ex:?}");
    assert_eq!(backend.count(), 0);
}
