//! An upstream's answer reaches the client the same whichever way its
//! fields travel through figway: as lines (`codec::lines`: an HTTP/1.1
//! upstream, a plain route, figway's own HTTP/1.1 server) or through a
//! header map (here a route whose response edits remove a field no answer
//! carries, which takes the map path and changes nothing). Each upstream
//! head below, every way an HTTP/1.1 upstream may write one, goes both ways
//! for clients speaking HTTP/1.1 (kept open or closing) and HTTP/1.0, and
//! the client gets the same bytes. The one difference, by design: lines
//! keep the upstream's order of one name's fields among other names'.

mod support;
use support::raw_client::{RawAnswer, RawClient};
use support::scripted::{Scripted, Then};
use support::*;

/// Upstream answers by name: the request's last path segment picks one.
const ANSWERS: &[(&str, &[u8])] = &[
    (
        "plain",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\
          Date: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\nhello",
    ),
    (
        "spacing",
        b"HTTP/1.1 200 OK\r\nX-A:1\r\nx-b:   two  \r\nSERVER: up\r\nX-Empty:\r\n\
          X-Tab:\tt\r\nContent-Length: 2\r\nDate: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\nok",
    ),
    (
        "hop-by-hop",
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-Kept: 1\r\n\
          Proxy-Connection: x\r\nTE: trailers\r\nTrailer: x-t\r\nUpgrade: h2c\r\nX-Also: 2\r\n\
          Content-Length: 2\r\nDate: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\nok",
    ),
    (
        "names-another",
        b"HTTP/1.1 200 OK\r\nX-Secret: 1\r\nConnection: close, X-Secret\r\nX-Kept: 1\r\n\
          Content-Length: 2\r\nDate: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\nok",
    ),
    (
        "chunked",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Kept: 1\r\n\
          Date: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ),
    (
        "chunked-and-length",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\
          Date: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ),
    (
        "empty",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Kept: 1\r\n\
          Date: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\n",
    ),
    (
        "two-lengths",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Kept: 1\r\nContent-Length: 2\r\n\
          Date: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\nok",
    ),
    (
        "length-list",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\
          Date: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\nok",
    ),
    (
        "conflicting-lengths",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\
          Date: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\nok",
    ),
    (
        "not-modified-bad-length",
        b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nDate: Tue, 01 Dec 2026 00:00:00 GMT\r\n\
          Content-Length: 2\r\nContent-Length: x\r\n\r\n",
    ),
    (
        "not-modified",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 4\r\nETag: \"x\"\r\n\
          Date: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\n",
    ),
    (
        "no-content",
        b"HTTP/1.1 204 No Content\r\nX-Kept: 1\r\nDate: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\n",
    ),
    (
        "created",
        b"HTTP/1.1 201 Created\r\nLocation: /x\r\nContent-Length: 2\r\n\
          Date: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\nok",
    ),
    (
        "reason",
        b"HTTP/1.1 200 Fine Thanks\r\nContent-Length: 2\r\n\
          Date: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\nok",
    ),
    ("no-date", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    (
        "its-own-request-id",
        b"HTTP/1.1 200 OK\r\nX-Request-Id: upstream\r\nContent-Length: 2\r\n\
          Date: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\nok",
    ),
    (
        "bare-lf",
        b"HTTP/1.1 200 OK\nX-Kept: 1\nContent-Length: 2\n\
          Date: Tue, 01 Dec 2026 00:00:00 GMT\n\nok",
    ),
    (
        "http10-close",
        b"HTTP/1.0 200 OK\r\nX-Kept: 1\r\nDate: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\nto the end",
    ),
];

/// The ways a client asks: the request line's version and its own
/// `Connection`, if any.
const CLIENTS: &[(&str, &str)] = &[
    ("HTTP/1.1", ""),
    ("HTTP/1.1", "Connection: close\r\n"),
    ("HTTP/1.0", ""),
    ("HTTP/1.0", "Connection: keep-alive\r\n"),
];

fn answer_for(line: &str) -> Vec<u8> {
    let path = line.split(' ').nth(1).unwrap_or("");
    let name = path.rsplit('/').next().unwrap_or("");
    ANSWERS.iter().find(|(n, _)| *n == name).map_or_else(
        || b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        |(_, a)| a.to_vec(),
    )
}

/// figway with the two routes to `upstream`: `/lines` plain, `/map` with a
/// response edit that changes nothing.
async fn figway(upstream: &Scripted) -> Figway {
    Figway::start(&config(&format!(
        "[upstreams.m]\ntargets = [\"http://{}\"]\nretries = 0\n\
         [[routes]]\nprefix = \"/lines\"\nto = \"m\"\n\
         [[routes]]\nprefix = \"/map\"\nto = \"m\"\n\
         [routes.headers]\nresponse_remove = [\"x-never-sent\"]\n",
        upstream.addr
    )))
    .await
}

/// One request on a fresh connection, and the answer's head and body.
async fn ask(f: &Figway, method: &str, path: &str, client: (&str, &str)) -> RawAnswer {
    let mut c = RawClient::connect(f.addr).await;
    let (version, connection) = client;
    c.send(
        format!("{method} {path} {version}\r\nHost: t\r\nX-Request-Id: fixed\r\n{connection}\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let bodiless =
        method == "HEAD" || path.contains("not-modified") || path.ends_with("no-content");
    let read = if bodiless {
        c.head().await
    } else {
        c.answer().await
    };
    read.unwrap_or_else(|e| panic!("{method} {path} {version}: {e}"))
}

/// The head with its `date` line's value blanked (figway's own clock, for
/// an upstream that sent none, may tick between the two requests) and
/// without its `x-request-id`: figway's, which a map puts where the
/// upstream had its own and lines put last (checked apart).
fn compared(head: &str) -> String {
    head.lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("x-request-id:"))
        .map(|l| {
            if l.to_ascii_lowercase().starts_with("date:") {
                "date: -"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn request_ids(a: &RawAnswer) -> Vec<&str> {
    a.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("x-request-id"))
        .map(|(_, v)| v.as_str())
        .collect()
}

#[tokio::test]
async fn every_answer_is_written_the_same_as_lines_and_through_a_map() {
    let up = Scripted::start(answer_for, Then::Close).await;
    let f = figway(&up).await;
    for (name, _) in ANSWERS {
        for client in CLIENTS {
            for method in ["GET", "HEAD"] {
                let lines = ask(&f, method, &format!("/lines/{name}"), *client).await;
                let map = ask(&f, method, &format!("/map/{name}"), *client).await;
                let what = format!("{method} {name} {client:?}");
                assert_eq!(compared(&lines.head), compared(&map.head), "{what}");
                assert_eq!(lines.body, map.body, "{what}");
                assert_eq!(request_ids(&lines), ["fixed"], "{what}\n{}", lines.head);
                assert_eq!(request_ids(&map), ["fixed"], "{what}\n{}", map.head);
                assert!(
                    lines.header("date").is_some(),
                    "{what}: no date\n{}",
                    lines.head
                );
            }
        }
    }
}

#[tokio::test]
async fn lines_are_lowercase_without_hop_by_hop_fields_in_the_upstreams_order() {
    let up = Scripted::start(
        |_| {
            b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nConnection: keep-alive\r\nX-Mid: 1\r\n\
              Keep-Alive: timeout=5\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\n\
              Date: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\nok"
                .to_vec()
        },
        Then::KeepOpen,
    )
    .await;
    let f = figway(&up).await;
    let a = ask(&f, "GET", "/lines/x", ("HTTP/1.1", "")).await;
    let names: Vec<_> = a.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "set-cookie",
            "x-mid",
            "set-cookie",
            "content-length",
            "date",
            "x-request-id"
        ],
        "{}",
        a.head
    );
    assert_eq!(a.head.lines().next(), Some("HTTP/1.1 200 OK"));
    // Through a map, one name's fields go together, at its first place.
    let m = ask(&f, "GET", "/map/x", ("HTTP/1.1", "")).await;
    let names: Vec<_> = m.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "set-cookie",
            "set-cookie",
            "x-mid",
            "content-length",
            "date",
            "x-request-id"
        ],
        "{}",
        m.head
    );
    // The client's connection and the upstream's both lived on.
    let mut c = RawClient::connect(f.addr).await;
    for _ in 0..3 {
        c.send(b"GET /lines/x HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let a = c.answer().await.unwrap();
        assert_eq!((a.status, a.body.as_slice()), (200, &b"ok"[..]));
    }
    assert_eq!(up.accepted(), 1);
}

/// A client hyper's server serves (here h2c, with prior knowledge) gets the
/// answer through a map: its fields all there, hop-by-hop ones gone.
#[tokio::test]
async fn a_client_of_hypers_server_gets_the_fields_through_a_map() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let up = Scripted::start(answer_for, Then::KeepOpen).await;
    let f = figway(&up).await;
    let tcp = tokio::net::TcpStream::connect(f.addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("http://t/lines/hop-by-hop")
        .header("x-request-id", "fixed")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let res = send.send_request(req).await.unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    let names: Vec<_> = res.headers().keys().map(|n| n.as_str()).collect();
    assert_eq!(
        names,
        ["x-kept", "x-also", "content-length", "date", "x-request-id"],
        "{:?}",
        res.headers()
    );
    assert_eq!(res.headers()["x-request-id"], "fixed");
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "ok");
}
