//! What figway does with each way an upstream can frame a response (RFC
//! 9112 §6.3), and with responses framed wrongly: the body the client gets,
//! whether the client's keep-alive connection survives, and whether the
//! upstream connection goes back to the pool. A raw TCP upstream writes each
//! response byte for byte; a raw client reads figway's answer as sent.
//!
//! The rule for a badly framed response: the client never gets bytes that
//! could be read as part of another response, and the upstream connection
//! it came on is never used again (a response-splitting upstream must not
//! poison the pool). These are the cases an HTTP/1 client of figway's own
//! must answer the same way (docs/http1-codec.md).

mod support;
use support::raw_client::{RawAnswer, RawClient};
use support::scripted::{Scripted, Then};
use support::*;

use std::time::Duration;

/// figway with one catch-all route to `upstream`, no retries (a retry
/// would hide which connection answered).
async fn figway_to(upstream: &Scripted) -> Figway {
    Figway::start(&config(&format!(
        "[upstreams.m]\ntargets = [\"http://{}\"]\nretries = 0\n\
         [[routes]]\nprefix = \"/\"\nto = \"m\"\n",
        upstream.addr
    )))
    .await
}

async fn request(client: &mut RawClient, method: &str, path: &str) {
    client
        .send(format!("{method} {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .await
        .unwrap();
}

/// `GET path` on the client's connection, and figway's whole answer.
async fn get_on(client: &mut RawClient, path: &str) -> RawAnswer {
    request(client, "GET", path).await;
    client
        .answer()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// Two GETs on one client connection, a moment apart (so that the first
/// exchange's upstream connection is back in its pool); both answers.
async fn two_gets(f: &Figway) -> (RawAnswer, RawAnswer) {
    let mut client = RawClient::connect(f.addr).await;
    let first = get_on(&mut client, "/one").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = get_on(&mut client, "/two").await;
    (first, second)
}

fn body(a: &RawAnswer) -> String {
    String::from_utf8_lossy(&a.body).into_owned()
}

// === well-framed responses ===

#[tokio::test]
async fn a_length_delimited_body_is_relayed_and_its_connection_reused() {
    let up = Scripted::start(
        |_| b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
        Then::KeepOpen,
    )
    .await;
    let f = figway_to(&up).await;
    let (a, b) = two_gets(&f).await;
    for x in [&a, &b] {
        assert_eq!((x.status, body(x).as_str()), (200, "hello"), "{}", x.head);
    }
    assert_eq!(up.accepted(), 1, "the second request took a new connection");
}

#[tokio::test]
async fn a_chunked_body_with_extensions_and_trailers_is_decoded_and_its_connection_reused() {
    let up = Scripted::start(
        |_| {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nx-checksum: 1\r\n\r\n"
                .to_vec()
        },
        Then::KeepOpen,
    )
    .await;
    let f = figway_to(&up).await;
    let (a, b) = two_gets(&f).await;
    for x in [&a, &b] {
        assert_eq!(
            (x.status, body(x).as_str()),
            (200, "hello world"),
            "{}",
            x.head
        );
    }
    assert_eq!(up.accepted(), 1, "the second request took a new connection");
}

#[tokio::test]
async fn a_close_delimited_body_is_relayed_whole_and_the_client_keeps_its_connection() {
    // Neither Content-Length nor chunked: the body ends with the
    // connection, which therefore serves one response only.
    let up = Scripted::start(|_| b"HTTP/1.1 200 OK\r\n\r\nhello".to_vec(), Then::Close).await;
    let f = figway_to(&up).await;
    let (a, b) = two_gets(&f).await;
    for x in [&a, &b] {
        assert_eq!((x.status, body(x).as_str()), (200, "hello"), "{}", x.head);
        assert!(
            !x.close_delimited && !x.says_close(),
            "figway passed the close-delimited framing on to its client:\n{}",
            x.head
        );
    }
    assert_eq!(up.accepted(), 2);
}

#[tokio::test]
async fn connection_close_from_the_upstream_is_never_reused_even_if_it_stays_open() {
    let up = Scripted::start(
        |_| b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello".to_vec(),
        Then::KeepOpen,
    )
    .await;
    let f = figway_to(&up).await;
    let (a, b) = two_gets(&f).await;
    for x in [&a, &b] {
        assert_eq!((x.status, body(x).as_str()), (200, "hello"), "{}", x.head);
        assert!(!x.says_close(), "hop-by-hop close reached the client");
    }
    assert_eq!(up.accepted(), 2);
}

#[tokio::test]
async fn bodiless_answers_ignore_their_length_and_leave_the_connection_in_step() {
    // 204 and 304 never have a body, nor does the answer to HEAD, whatever
    // Content-Length says; reading one would take the next answer's bytes.
    let up = Scripted::start(
        |line| {
            let answer: &[u8] = if line.starts_with("HEAD") {
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
            } else if line.contains("/nothing") {
                b"HTTP/1.1 204 No Content\r\n\r\n"
            } else if line.contains("/same") {
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
            };
            answer.to_vec()
        },
        Then::KeepOpen,
    )
    .await;
    let f = figway_to(&up).await;
    let mut client = RawClient::connect(f.addr).await;
    for (method, path, status) in [
        ("HEAD", "/page", 200),
        ("GET", "/nothing", 204),
        ("GET", "/same", 304),
    ] {
        request(&mut client, method, path).await;
        let a = client.head().await.unwrap();
        assert_eq!(a.status, status, "{method} {path}:\n{}", a.head);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let a = get_on(&mut client, "/page").await;
        assert_eq!(
            (a.status, body(&a).as_str()),
            (200, "hello"),
            "the GET after {method} {path}:\n{}",
            a.head
        );
    }
    assert_eq!(up.accepted(), 1, "a bodiless answer cost its connection");
}

#[tokio::test]
async fn interim_responses_are_skipped_and_the_final_one_relayed() {
    let up = Scripted::start(
        |_| {
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
                .to_vec()
        },
        Then::KeepOpen,
    )
    .await;
    let f = figway_to(&up).await;
    let (a, b) = two_gets(&f).await;
    for x in [&a, &b] {
        assert_eq!((x.status, body(x).as_str()), (200, "hello"), "{}", x.head);
    }
    assert_eq!(up.accepted(), 1);
}

#[tokio::test]
async fn bare_lf_line_endings_from_an_old_upstream_are_accepted() {
    let up = Scripted::start(
        |_| b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello".to_vec(),
        Then::KeepOpen,
    )
    .await;
    let f = figway_to(&up).await;
    let mut client = RawClient::connect(f.addr).await;
    let a = get_on(&mut client, "/").await;
    assert_eq!((a.status, body(&a).as_str()), (200, "hello"), "{}", a.head);
}

// === badly framed responses ===

/// Sends `GET /` through figway to an upstream answering `answer`, then a
/// second GET on the same client connection if figway kept it open: one
/// answer when figway closed the client's connection after the first, two
/// when it did not.
async fn through(
    answer: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static,
    then: Then,
) -> (Scripted, Vec<RawAnswer>) {
    let up = Scripted::start(answer, then).await;
    let f = figway_to(&up).await;
    let mut client = RawClient::connect(f.addr).await;
    request(&mut client, "GET", "/one").await;
    let mut answers = Vec::new();
    let first = match client.answer().await {
        Ok(a) => a,
        Err(e) => panic!("no whole answer from figway: {e}"),
    };
    answers.push(first);
    if client.closed_within(Duration::from_millis(100)).await {
        return (up, answers);
    }
    assert!(
        client.leftover().is_empty(),
        "figway sent bytes past the answer's end: {:?}",
        String::from_utf8_lossy(client.leftover())
    );
    let second = get_on(&mut client, "/two").await;
    answers.push(second);
    (up, answers)
}

#[tokio::test]
async fn differing_content_lengths_are_a_bad_gateway() {
    let (_up, answers) = through(
        |_| b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello".to_vec(),
        Then::KeepOpen,
    )
    .await;
    for a in &answers {
        assert_eq!(a.status, 502, "{}", a.head);
    }
}

#[tokio::test]
async fn a_non_numeric_content_length_is_a_bad_gateway() {
    let (_up, answers) = through(
        |_| b"HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello".to_vec(),
        Then::KeepOpen,
    )
    .await;
    assert_eq!(answers[0].status, 502, "{}", answers[0].head);
}

#[tokio::test]
async fn an_unparsable_status_line_is_a_bad_gateway() {
    let (_up, answers) = through(|_| b"HTTP/1.1 OK\r\n\r\n".to_vec(), Then::KeepOpen).await;
    assert_eq!(answers[0].status, 502, "{}", answers[0].head);
}

#[tokio::test]
async fn an_obs_folded_header_is_a_bad_gateway() {
    let (_up, answers) = through(
        |_| b"HTTP/1.1 200 OK\r\nX-Long: a\r\n  b\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
        Then::KeepOpen,
    )
    .await;
    assert_eq!(answers[0].status, 502, "{}", answers[0].head);
}

#[tokio::test]
async fn both_length_and_chunked_never_split_the_answer_or_reuse_the_connection() {
    // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length, and an
    // intermediary removes the length before it forwards the message. Were
    // the 3 to reach the client, it would cut the body short there and
    // take the rest for the next response.
    let (up, answers) = through(
        |_| {
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n0\r\n\r\n"
                .to_vec()
        },
        Then::KeepOpen,
    )
    .await;
    assert_eq!(answers.len(), 2, "figway closed the client's connection");
    for a in &answers {
        assert_eq!(
            (a.status, body(a).as_str()),
            (200, "hello"),
            "the length reached the client with the decoded body:\n{}",
            a.head
        );
        assert_eq!(a.header("content-length"), None, "{}", a.head);
    }
    assert_eq!(
        up.accepted(),
        2,
        "a connection that sent both framings was used again"
    );
}

#[tokio::test]
async fn bytes_past_a_response_never_become_the_next_answer() {
    // The upstream writes more than its Content-Length: what follows is not
    // a response to anything, and must not be taken for the next one.
    let up = Scripted::start(
        |line| {
            if line.contains("/one") {
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled"
                    .to_vec()
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond".to_vec()
            }
        },
        Then::KeepOpen,
    )
    .await;
    let f = figway_to(&up).await;
    let (a, b) = two_gets(&f).await;
    assert_eq!((a.status, body(&a).as_str()), (200, "hello"), "{}", a.head);
    assert_ne!(
        body(&b),
        "smuggled",
        "the extra bytes answered the next request"
    );
    assert_eq!((b.status, body(&b).as_str()), (200, "second"), "{}", b.head);
    assert_eq!(
        up.accepted(),
        2,
        "the connection with stray bytes was used again"
    );
}

/// Sends `GET /` through figway to an upstream answering `answer`, whose
/// body breaks off; the client must find its connection closed inside the
/// body (`why` in the reader's error), not a complete answer.
async fn cut_short(
    answer: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static,
    then: Then,
    why: &str,
) {
    let up = Scripted::start(answer, then).await;
    let f = figway_to(&up).await;
    let mut client = RawClient::connect(f.addr).await;
    request(&mut client, "GET", "/").await;
    match client.answer().await {
        Err(e) => assert!(e.contains(why), "{e}"),
        Ok(a) => panic!(
            "the broken answer reached the client as complete: {}{:?}",
            a.head,
            String::from_utf8_lossy(&a.body)
        ),
    }
}

#[tokio::test]
async fn a_body_cut_short_closes_the_client_connection_instead_of_ending_the_answer() {
    // The length promises 10 bytes, 5 come, then the connection closes: the
    // client must not see a complete 5-byte answer.
    cut_short(
        |_| b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello".to_vec(),
        Then::Close,
        "closed after 5 of 10",
    )
    .await;
}

#[tokio::test]
async fn a_bad_chunk_size_closes_the_client_connection_instead_of_ending_the_answer() {
    cut_short(
        |_| b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n".to_vec(),
        Then::KeepOpen,
        "closed",
    )
    .await;
}

#[tokio::test]
async fn a_transfer_coding_other_than_chunked_is_a_bad_gateway() {
    // The body would reach the client still gzip-coded, without the
    // hop-by-hop header that says so.
    let (_up, answers) = through(
        |_| b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nnot really gzip".to_vec(),
        Then::Close,
    )
    .await;
    assert_eq!(answers[0].status, 502, "{}", answers[0].head);
    assert_eq!(
        answers[0].header("x-figway-error"),
        Some("upstream_reset"),
        "{}",
        answers[0].head
    );
}

#[tokio::test]
async fn an_http10_answer_with_transfer_encoding_is_a_bad_gateway() {
    // HTTP/1.0 has no chunked coding: the framing is faulty (RFC 9112 §6.1).
    let (_up, answers) = through(
        |_| {
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec()
        },
        Then::Close,
    )
    .await;
    assert_eq!(answers[0].status, 502, "{}", answers[0].head);
}

#[tokio::test]
async fn an_answer_with_trailers_is_still_compared_with_its_shadow() {
    // The client's answer ends at its trailers; an answer not seen to end
    // has no whole body to weigh, and its compare is not a match.
    let chunked_with_trailers = |_: &str| {
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n0\r\nx-checksum: 1\r\n\r\n"
            .to_vec()
    };
    let primary = Scripted::start(chunked_with_trailers, Then::KeepOpen).await;
    let shadow = Scripted::start(chunked_with_trailers, Then::KeepOpen).await;
    let f = Figway::start(&config(&format!(
        "[upstreams.primary]\nlegacy = true\ntargets = [\"http://{}\"]\n\
         [upstreams.shadow]\ntargets = [\"http://{}\"]\n\
         [[routes]]\nname = \"r\"\nprefix = \"/\"\nto = \"primary\"\n\
         [routes.shadow]\nto = \"shadow\"\ncompare = true\nignore_headers = [\"x-request-id\"]\n",
        primary.addr, shadow.addr
    )))
    .await;
    let mut client = RawClient::connect(f.addr).await;
    let a = get_on(&mut client, "/").await;
    assert_eq!((a.status, body(&a).as_str()), (200, "hello"), "{}", a.head);
    let route = || {
        let snapshot = f.shared.snapshot.load();
        let shadow = snapshot.routes[0]
            .shadow
            .as_ref()
            .expect("the route's shadow");
        figway::shadow::Outcome::ALL.map(|o| shadow.count(o))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while route().iter().sum::<u64>() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the compare never counted: [match, mismatch, error, skipped] = {:?}",
            route()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(route(), [1, 0, 0, 0], "[match, mismatch, error, skipped]");
}

#[tokio::test]
async fn switching_protocols_to_a_request_that_asked_for_no_upgrade_is_a_bad_gateway() {
    // RFC 9110 §15.2.2: a server must not switch to a protocol the client
    // did not name. Passed on, the 101 left the client on a connection
    // that would never carry another byte.
    let (up, answers) = through(
        |_| {
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
                .to_vec()
        },
        Then::KeepOpen,
    )
    .await;
    assert_eq!(answers.len(), 2, "figway closed the client's connection");
    for a in &answers {
        assert_eq!(a.status, 502, "{}", a.head);
        assert_eq!(
            a.header("x-figway-error"),
            Some("upstream_reset"),
            "{}",
            a.head
        );
    }
    assert_eq!(up.accepted(), 2, "the switched connection was used again");
}

/// `HEAD /` answered with `head_answer` (the upstream answers GET with
/// `hello`), then `GET /` on the same client connection a moment later:
/// the upstream, and the GET's answer.
async fn head_then_get(head_answer: &'static [u8]) -> (Scripted, RawAnswer) {
    let up = Scripted::start(
        move |line| {
            if line.starts_with("HEAD") {
                head_answer.to_vec()
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec()
            }
        },
        Then::KeepOpen,
    )
    .await;
    let f = figway_to(&up).await;
    let mut client = RawClient::connect(f.addr).await;
    request(&mut client, "HEAD", "/").await;
    let a = client.head().await.unwrap();
    assert_eq!(a.status, 200, "{}", a.head);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let a = get_on(&mut client, "/").await;
    assert_eq!((a.status, body(&a).as_str()), (200, "hello"), "{}", a.head);
    (up, a)
}

#[tokio::test]
async fn a_bodiless_answer_is_framed_by_no_header() {
    // The answer to HEAD names the coding GET would get; it has no body to
    // decode, so the coding is no reason to refuse it or its connection.
    let (up, _) = head_then_get(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n").await;
    assert_eq!(up.accepted(), 1);
}

#[tokio::test]
async fn a_chunk_size_past_u64_closes_the_client_connection_instead_of_ending_the_answer() {
    cut_short(
        |_| {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n\
              10000000000000000\r\n"
                .to_vec()
        },
        Then::KeepOpen,
        "closed",
    )
    .await;
}

#[tokio::test]
async fn a_response_head_past_a_megabyte_is_a_bad_gateway() {
    let (_up, answers) = through(
        |_| {
            let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..64 {
                head.extend_from_slice(format!("x-big-{i}: ").as_bytes());
                head.extend(std::iter::repeat_n(b'a', 16 * 1024));
                head.extend_from_slice(b"\r\n");
            }
            head.extend_from_slice(b"Content-Length: 5\r\n\r\nhello");
            head
        },
        Then::KeepOpen,
    )
    .await;
    assert_eq!(
        answers[0].status,
        502,
        "{}",
        &answers[0].head[..80.min(answers[0].head.len())]
    );
}

#[tokio::test]
async fn a_body_sent_with_the_answer_to_head_never_becomes_the_next_answer() {
    // The answer to HEAD has no body: bytes sent after its head are stray,
    // and the connection they came on must not carry the next request.
    let (up, get) = head_then_get(
        b"HTTP/1.1 200 OK\r\nContent-Length: 28\r\n\r\nHTTP/1.1 200 OK\r\nX-Stray: 1\r\n\r\n",
    )
    .await;
    assert_eq!(
        get.header("x-stray"),
        None,
        "the stray bytes answered the GET"
    );
    assert_eq!(up.accepted(), 2);
}
