//! The heads' parsing and writing, case by case.
use super::*;

const MAP: Form = Form {
    room: 0,
    lines: false,
};

fn parse(bytes: &[u8], method: Method) -> Result<Option<Head>, Refused> {
    parse_response(&mut BytesMut::from(bytes), &method, MAP)
}

#[test]
fn a_length_frames_and_leaves_the_body_in_the_buffer() {
    let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"[..]);
    let head = parse_response(&mut buf, &Method::GET, MAP)
        .unwrap()
        .unwrap();
    assert_eq!(head.framing, Framing::Length(5));
    assert!(head.reusable);
    assert_eq!(&buf[..], b"hello");
    assert_eq!(head.parts.headers["content-length"], "5");
}

#[test]
fn an_incomplete_head_waits_and_a_huge_one_is_refused() {
    assert!(parse(b"HTTP/1.1 200 OK\r\nX: y\r\n", Method::GET)
        .unwrap()
        .is_none());
    let mut big = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
    big.resize(MAX_HEAD + 1, b'a');
    assert_eq!(parse(&big, Method::GET).unwrap_err(), Refused::TooLarge);
}

#[test]
fn framing_follows_rfc_9112() {
    let f = |b: &[u8], m| parse(b, m).unwrap().unwrap();
    let h = f(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
        Method::HEAD,
    );
    assert_eq!((h.framing, h.reusable), (Framing::Empty, true));
    let h = f(b"HTTP/1.1 200 OK\r\n\r\n", Method::GET);
    assert_eq!((h.framing, h.reusable), (Framing::Close, false));
    let h = f(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
        Method::GET,
    );
    assert_eq!((h.framing, h.reusable), (Framing::Length(1), false));
    let h = f(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", Method::GET);
    assert_eq!((h.framing, h.reusable), (Framing::Length(1), false));
    let h = f(
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
        Method::GET,
    );
    assert_eq!((h.framing, h.reusable), (Framing::Length(1), true));
    let h = f(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        Method::GET,
    );
    assert_eq!((h.framing, h.reusable), (Framing::Chunked, false));
    assert!(!h.parts.headers.contains_key("content-length"));
    let h = f(
        b"HTTP/1.1 200 OK\r\nContent-Length: 4, 4\r\n\r\n",
        Method::GET,
    );
    assert_eq!(h.framing, Framing::Length(4));
    let h = f(
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 4\r\n\r\n",
        Method::GET,
    );
    assert_eq!(h.framing, Framing::Empty);
}

#[test]
fn faulty_framing_is_refused() {
    let e = |b: &[u8]| parse(b, Method::GET).unwrap_err();
    assert_eq!(
        e(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n"),
        Refused::BadLength
    );
    assert_eq!(
        e(b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n"),
        Refused::BadLength
    );
    assert_eq!(
        e(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n"),
        Refused::BadLength
    );
    assert_eq!(
        e(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
        Refused::BadCoding
    );
    assert_eq!(
        e(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
        Refused::BadCoding
    );
    assert_eq!(e(b"HTTP/1.1 OK\r\n\r\n"), Refused::Malformed);
    assert_eq!(
        e(b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"),
        Refused::Malformed
    );
}

#[test]
fn hop_by_hop_lines_stay_out_of_the_map_but_for_a_101() {
    let h = parse(
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\
          Transfer-Encoding: chunked\r\nTrailer: x\r\nUpgrade: h2c\r\nTE: trailers\r\n\
          Proxy-Connection: close\r\nX-Kept: 1\r\n\r\n",
        Method::GET,
    )
    .unwrap()
    .unwrap();
    let names: Vec<_> = h.parts.headers.keys().map(|n| n.as_str()).collect();
    assert_eq!(names, ["x-kept"]);
    assert_eq!((h.framing, h.reusable), (Framing::Chunked, true));
    // A `Connection` naming another header stays, for the proxy's
    // rewrite to remove that one too.
    let h = parse(
        b"HTTP/1.1 200 OK\r\nConnection: close, x-secret\r\nX-Secret: 1\r\n\
          Content-Length: 0\r\n\r\n",
        Method::GET,
    )
    .unwrap()
    .unwrap();
    assert_eq!(h.parts.headers["connection"], "close, x-secret");
    assert!(!h.reusable);
    let h = parse(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        Method::GET,
    )
    .unwrap()
    .unwrap();
    assert_eq!(h.parts.headers["upgrade"], "websocket");
    assert_eq!(h.parts.headers["connection"], "upgrade");
}

fn as_lines(bytes: &[u8], method: Method) -> Head {
    let form = Form {
        room: 0,
        lines: true,
    };
    parse_response(&mut BytesMut::from(bytes), &method, form)
        .unwrap()
        .unwrap()
}

#[test]
fn fields_come_as_lines_when_asked() {
    let h = as_lines(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive\r\n\
          X-A:1\r\nContent-Length: 2\r\nDate: D\r\nX-Request-Id: up\r\n\r\nok",
        Method::GET,
    );
    let lines = h.lines.as_ref().expect("lines");
    assert_eq!(
        lines.as_bytes(),
        b"content-type: text/plain\r\nx-a: 1\r\ncontent-length: 2\r\ndate: D\r\n"
    );
    assert!(lines.length && lines.date);
    assert!(h.parts.headers.is_empty());
    assert_eq!((h.framing, h.reusable), (Framing::Length(2), true));
    // A length said twice goes on once, as one number; none where no
    // body follows but for a HEAD's.
    let h = as_lines(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\n",
        Method::HEAD,
    );
    let lines = h.lines.as_ref().expect("lines");
    assert_eq!(lines.as_bytes(), b"content-length: 2\r\n");
    assert!(lines.length && !lines.date);
    for (head, method) in [
        (
            &b"HTTP/1.1 304 Not Modified\r\nContent-Length: 2\r\n\r\n"[..],
            Method::GET,
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", Method::GET),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::GET,
        ),
    ] {
        let h = as_lines(head, method);
        let lines = h.lines.as_ref().expect("lines");
        assert_eq!(lines.as_bytes(), b"", "{:?}", String::from_utf8_lossy(head));
        assert!(!lines.length);
    }
    // The map, for a 101 and for a `Connection` naming a field.
    let h = as_lines(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        Method::GET,
    );
    assert!(h.lines.is_none());
    assert_eq!(h.parts.headers["upgrade"], "websocket");
    let h = as_lines(
        b"HTTP/1.1 200 OK\r\nConnection: x-secret\r\nX-Secret: 1\r\nContent-Length: 0\r\n\r\n",
        Method::GET,
    );
    assert!(h.lines.is_none());
    assert_eq!(h.parts.headers["connection"], "x-secret");
}

#[test]
fn a_length_said_twice_goes_into_the_map_once() {
    let h = parse(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nX: y\r\nContent-Length: 2\r\n\r\n",
        Method::HEAD,
    )
    .unwrap()
    .unwrap();
    let lengths: Vec<_> = h.parts.headers.get_all(CONTENT_LENGTH).iter().collect();
    assert_eq!(lengths, ["2"]);
}

#[test]
fn a_reason_of_its_own_is_kept() {
    let h = parse(b"HTTP/1.1 200 Fine\r\n\r\n", Method::GET)
        .unwrap()
        .unwrap();
    let r = h
        .parts
        .extensions
        .get::<hyper::ext::ReasonPhrase>()
        .unwrap();
    assert_eq!(r.as_bytes(), b"Fine");
    let h = parse(b"HTTP/1.1 200 OK\r\n\r\n", Method::GET)
        .unwrap()
        .unwrap();
    assert!(h
        .parts
        .extensions
        .get::<hyper::ext::ReasonPhrase>()
        .is_none());
}

#[test]
fn the_request_head_is_framed_by_its_body() {
    let mut h = HeaderMap::new();
    assert_eq!(request_framing(&mut h, false, Some(0)), Sending::Nothing);
    assert!(h.is_empty());
    assert_eq!(request_framing(&mut h, true, Some(3)), Sending::Length(3));
    assert_eq!(h["content-length"], "3");
    let mut h = HeaderMap::new();
    h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    assert_eq!(request_framing(&mut h, true, None), Sending::Chunked);
    assert_eq!(h["transfer-encoding"], "chunked");
    let mut out = Vec::new();
    encode_request(&Method::GET, &"/a?b".parse().unwrap(), &h, &[], &mut out);
    assert_eq!(
        out,
        b"GET /a?b HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
    );
}

/// `Connection` said as one word alone takes its own short test; any case,
/// and in lists, it means the same.
#[test]
fn a_connection_word_alone_or_in_a_list_means_the_same() {
    let reusable = |head: &[u8]| {
        let h = parse(head, Method::GET).unwrap().unwrap();
        let head = String::from_utf8_lossy(head);
        assert!(!h.parts.headers.contains_key("connection"), "{head:?}");
        h.reusable
    };
    for (line, on_11, on_10) in [
        ("keep-alive", true, true),
        ("Keep-Alive", true, true),
        ("close", false, false),
        ("CLOSE", false, false),
        ("te, keep-alive", true, true),
        ("Close , keep-alive", false, false),
        ("upgrade", true, false),
    ] {
        for (version, expected) in [("1.1", on_11), ("1.0", on_10)] {
            let head =
                format!("HTTP/{version} 200 OK\r\nConnection: {line}\r\nContent-Length: 0\r\n\r\n");
            assert_eq!(reusable(head.as_bytes()), expected, "{head:?}");
        }
    }
    assert!(!crate::headers::names_others(b"keep-alive"));
    assert!(!crate::headers::names_others(b"Close"));
    assert!(crate::headers::names_others(b"keep-alive, x-secret"));
    assert!(crate::headers::names_others(b"x-secret"));
}
