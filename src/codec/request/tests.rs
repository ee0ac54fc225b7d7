//! Unit tests of `codec::request`, in a file of their own so the module's
//! source reads as the code it is.

use super::*;

const LIMIT: usize = 16 * 1024;

fn parse_all(bytes: &[u8]) -> Result<Option<Head>, Refusal> {
    parse(&mut BytesMut::from(bytes), LIMIT)
}

fn head(bytes: &str) -> Head {
    match parse_all(bytes.as_bytes()) {
        Ok(Some(h)) => h,
        other => panic!("{bytes:?}: {other:?}"),
    }
}

fn refused(bytes: &str) -> Refusal {
    match parse_all(bytes.as_bytes()) {
        Err(r) => r,
        other => panic!("{bytes:?} was not refused: {other:?}"),
    }
}

/// The verdict on a head is the same however its bytes came: a byte
/// past the limit that would rule the head malformed is never looked
/// at, so the head fills the limit either way (fuzz h1_request's
/// crash-547e5b52: 400 whole, 431 byte by byte).
#[test]
fn a_byte_past_the_limit_changes_no_verdict() {
    let mut bytes = b"T* /".to_vec();
    bytes.resize(64, b'a');
    bytes.push(0x04);
    let whole = parse(&mut BytesMut::from(&bytes[..]), 64);
    assert!(matches!(whole, Err(Refusal::TooLarge)), "{whole:?}");
    let mut fed = BytesMut::new();
    for b in &bytes {
        fed.extend_from_slice(&[*b]);
        match parse(&mut fed, 64) {
            Ok(None) => continue,
            Err(Refusal::TooLarge) => return,
            other => panic!("{} bytes: {other:?}", fed.len()),
        }
    }
    panic!("no verdict");
}

const POST: &str = "POST /upload HTTP/1.1\r\nHost: test.local\r\n";
const POST10: &str = "POST /upload HTTP/1.0\r\nHost: test.local\r\n";

#[test]
fn a_plain_get_keeps_its_parts_and_the_rest_of_the_buffer() {
    let mut buf =
        BytesMut::from(&b"\r\nGET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\n\r\nNEXT"[..]);
    let h = parse(&mut buf, LIMIT).unwrap().unwrap();
    assert_eq!(&buf[..], b"NEXT");
    assert_eq!(h.parts.method, Method::GET);
    assert_eq!(h.parts.uri, "/a?b=1");
    assert_eq!(h.parts.version, Version::HTTP_11);
    assert_eq!(h.parts.headers["host"], "x");
    let xa: Vec<_> = h.parts.headers.get_all("x-a").iter().collect();
    assert_eq!(xa, ["1", "2"]);
    assert_eq!(h.framing, Framing::Empty);
    assert!(h.keep_alive && !h.expect_continue && !h.wants_upgrade && !h.conflict);
}

#[test]
fn incomplete_heads_wait_at_every_split_and_agree_when_whole() {
    let whole = format!("{POST}Content-Length: 5\r\nExpect: 100-continue\r\n\r\nhello");
    let end = whole.len() - 5;
    for cut in 0..end {
        let mut buf = BytesMut::from(&whole.as_bytes()[..cut]);
        assert!(matches!(parse(&mut buf, LIMIT), Ok(None)), "cut at {cut}");
        assert_eq!(buf.len(), cut, "nothing consumed at {cut}");
    }
    let h = head(&whole);
    assert_eq!(h.framing, Framing::Length(5));
    assert!(h.expect_continue);
}

#[test]
fn limits_answer_431_and_414() {
    let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(LIMIT));
    assert_eq!(refused(&long), Refusal::TooLarge);
    // Incomplete but already past the limit.
    assert_eq!(refused(&long[..LIMIT + 10]), Refusal::TooLarge);
    let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: 1\r\n")).collect();
    assert_eq!(
        refused(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
        Refusal::TooLarge
    );
    let target = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_TARGET));
    let got = parse(&mut BytesMut::from(target.as_bytes()), 1 << 20);
    assert_eq!(got.unwrap_err(), Refusal::TargetTooLong);
    assert_eq!(Refusal::TargetTooLong.status(), 414);
    assert_eq!(Refusal::TooLarge.status(), 431);
}

/// Found writing the fuzz target: fed whole, a bad line past the limit
/// was 400; fed in pieces the limit came first, 431. Only the first
/// `limit + 1` bytes count now, so both are 431.
#[test]
fn a_bad_line_past_the_limit_is_431_however_it_arrives() {
    let bytes = format!(
        "GET / HTTP/1.1\r\nX: {}\r\nBad Name: 1\r\n\r\n",
        "a".repeat(100)
    );
    let whole = parse(&mut BytesMut::from(bytes.as_bytes()), 64);
    assert_eq!(whole.unwrap_err(), Refusal::TooLarge);
    let mut buf = BytesMut::new();
    let mut verdict = None;
    for b in bytes.bytes() {
        buf.extend_from_slice(&[b]);
        if let Err(r) = parse(&mut buf, 64) {
            verdict = Some(r);
            break;
        }
    }
    assert_eq!(verdict, Some(Refusal::TooLarge));
}

/// Found by review against hyper's source: each of these is 431 there.
#[test]
fn hyper_s_other_431s() {
    // A partial head that fills the limit: no waiting for one more byte.
    let partial = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(64));
    assert_eq!(
        parse(&mut BytesMut::from(&partial.as_bytes()[..64]), 64).unwrap_err(),
        Refusal::TooLarge
    );
    // A complete head of exactly the limit is fine.
    let exact = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(64 - 23));
    assert_eq!(exact.len(), 64);
    assert!(parse(&mut BytesMut::from(exact.as_bytes()), 64)
        .unwrap()
        .is_some());
    // The two largest lengths, which hyper keeps for its own use.
    for n in [u64::MAX, u64::MAX - 1] {
        assert_eq!(
            refused(&format!("{POST}Content-Length: {n}\r\n\r\n")),
            Refusal::TooLarge
        );
    }
    assert_eq!(
        head(&format!("{POST}Content-Length: {}\r\n\r\n", u64::MAX - 2)).framing,
        Framing::Length(u64::MAX - 2)
    );
    // A header name of 64 KiB.
    let name = "n".repeat(1 << 16);
    let long = format!("GET / HTTP/1.1\r\n{name}: 1\r\n\r\n");
    let got = parse(&mut BytesMut::from(long.as_bytes()), 1 << 20);
    assert_eq!(got.unwrap_err(), Refusal::TooLarge);
}

/// Values that are not text carry no tokens, as hyper reads them.
#[test]
fn connection_and_coding_values_that_are_not_text() {
    assert!(!head("GET / HTTP/1.0\r\nConnection: keep-alive, \u{80}\r\n\r\n").keep_alive);
    assert!(head("GET / HTTP/1.1\r\nConnection: close, \u{80}\r\n\r\n").keep_alive);
    assert_eq!(
        refused(&format!("{POST}Transfer-Encoding: \u{80}, chunked\r\n\r\n")),
        Refusal::Malformed
    );
}

#[test]
fn malformed_heads_answer_400() {
    for bad in [
        "GET / HTTP/1.1\r\nBad Name: 1\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "G(T / HTTP/1.1\r\n\r\n",
        "GET /\x7f HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
        "GET / HTTP/1.1\r\n folded: 1\r\n\r\n",
    ] {
        assert_eq!(refused(bad), Refusal::Malformed, "{bad:?}");
    }
    assert_eq!(Refusal::Malformed.status(), 400);
}

/// The cases `tests/smuggling.rs` sends end to end that hyper refuses
/// with a bare 400 (`By::Hyper` there).
#[test]
fn framing_hyper_refuses_is_refused() {
    for (rest, why) in [
        ("Transfer-Encoding: identity\r\n", "identity"),
        ("Transfer-Encoding: xchunked\r\n", "xchunked"),
        ("Transfer-Encoding: chunked, gzip\r\n", "chunked then gzip"),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
            "chunked line then identity line",
        ),
        (
            "Content-Length: 5\r\nContent-Length: 6\r\n",
            "lengths differ",
        ),
        ("Content-Length: 1, 2\r\n", "length list"),
        ("Content-Length: 5, 5\r\n", "same length list"),
        ("Content-Length: abc\r\n", "not a number"),
        ("Content-Length: -5\r\n", "negative"),
        ("Content-Length: +5\r\n", "plus"),
        ("Content-Length: 18446744073709551616\r\n", "past u64"),
        (
            "Content-Length: abc\r\nTransfer-Encoding: chunked\r\n",
            "bad length before chunked",
        ),
    ] {
        assert_eq!(
            refused(&format!("{POST}{rest}\r\n")),
            Refusal::Malformed,
            "{why}"
        );
    }
    for rest in [
        "Transfer-Encoding: chunked\r\n",
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
    ] {
        assert_eq!(
            refused(&format!("{POST10}{rest}\r\n")),
            Refusal::Malformed,
            "HTTP/1.0 {rest:?}"
        );
    }
}

/// Both framing headers: parsed (figway answers it 400 itself, SPEC §4),
/// marked, chunked, the length dropped, the connection not kept.
#[test]
fn both_framing_headers_are_marked_whatever_the_length_says() {
    for rest in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: abc\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 1, 2\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: +5\r\n",
    ] {
        let h = head(&format!("{POST}{rest}\r\n"));
        assert!(h.conflict, "{rest:?}");
        assert!(!h.keep_alive, "{rest:?}");
        assert_eq!(h.framing, Framing::Chunked, "{rest:?}");
        assert!(!h.parts.headers.contains_key(CONTENT_LENGTH), "{rest:?}");
    }
}

/// Codings hyper reads as chunked (figway's route phase refuses all
/// but a plain `chunked` later, with its own 400).
#[test]
fn chunked_last_is_chunked() {
    for rest in [
        "Transfer-Encoding: chunked\r\n",
        "Transfer-Encoding: gzip, chunked\r\n",
        "Transfer-Encoding: chunked, chunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: , chunked\r\n",
        "Transfer-Encoding: CHUNKED\r\n",
    ] {
        let h = head(&format!("{POST}{rest}\r\n"));
        assert_eq!(h.framing, Framing::Chunked, "{rest:?}");
        assert!(!h.conflict && h.keep_alive, "{rest:?}");
    }
}

#[test]
fn lengths_frame_the_body() {
    assert_eq!(
        head(&format!("{POST}Content-Length: 0\r\n\r\n")).framing,
        Framing::Empty
    );
    let same = head(&format!(
        "{POST}Content-Length: 7\r\nContent-Length: 7\r\n\r\n"
    ));
    assert_eq!(same.framing, Framing::Length(7));
    // The repeated line is not kept: one length goes on.
    assert_eq!(same.parts.headers.get_all(CONTENT_LENGTH).iter().count(), 1);
    let padded = head(&format!("{POST}Content-Length:   0012 \r\n\r\n"));
    assert_eq!(padded.framing, Framing::Length(12));
}

#[test]
fn keep_alive_follows_the_version_and_connection_lines() {
    let cases = [
        ("GET / HTTP/1.1\r\n\r\n", true),
        ("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false),
        (
            "GET / HTTP/1.1\r\nConnection: Keep-Alive, CLOSE\r\n\r\n",
            false,
        ),
        ("GET / HTTP/1.0\r\n\r\n", false),
        ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
        // A close on any line wins over a later keep-alive.
        (
            "GET / HTTP/1.0\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n",
            false,
        ),
        (
            "GET / HTTP/1.1\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n",
            false,
        ),
    ];
    for (bytes, keep) in cases {
        assert_eq!(head(bytes).keep_alive, keep, "{bytes:?}");
    }
    assert_eq!(
        head("GET / HTTP/1.0\r\n\r\n").parts.version,
        Version::HTTP_10
    );
}

#[test]
fn expectations_and_upgrades() {
    let expect = |rest: &str| head(&format!("{rest}\r\n")).expect_continue;
    assert!(expect(
        "POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n"
    ));
    assert!(expect(
        "POST / HTTP/1.1\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n"
    ));
    assert!(!expect(
        "POST / HTTP/1.1\r\nExpect: 100-continue, x\r\nContent-Length: 1\r\n"
    ));
    // As hyper: none to HTTP/1.0, none for a request without a body.
    assert!(!expect(
        "POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n"
    ));
    assert!(!expect("POST / HTTP/1.1\r\nExpect: 100-continue\r\n"));
    assert!(!expect(
        "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n"
    ));
    let ws = "GET /ws HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
    assert!(head(ws).wants_upgrade);
    let ws10 = "GET /ws HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
    assert!(!head(ws10).wants_upgrade);
    let connect = head("CONNECT example.com:443 HTTP/1.1\r\n\r\n");
    assert!(connect.wants_upgrade);
    assert_eq!(
        connect.parts.uri.authority().map(|a| a.as_str()),
        Some("example.com:443")
    );
}

#[test]
fn absolute_form_targets_keep_their_authority() {
    let h = head("GET http://other.example/p?q HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(h.parts.uri.host(), Some("other.example"));
    assert_eq!(
        h.parts.uri.path_and_query().map(|p| p.as_str()),
        Some("/p?q")
    );
}
