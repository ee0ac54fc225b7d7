//! Unit tests of `codec::response`, in a file of their own so the module's
//! source reads as the code it is.

use super::*;

const DATE: [u8; 29] = *b"Thu, 01 Jan 1970 00:00:00 GMT";

type Lines = &'static [(&'static str, &'static str)];

fn answer(status: u16, headers: &[(&'static str, &'static str)]) -> Parts {
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = StatusCode::from_u16(status).unwrap();
    for (n, v) in headers {
        parts.headers.append(*n, HeaderValue::from_static(v));
    }
    parts
}

fn get() -> Asked<'static> {
    static GET: Method = Method::GET;
    Asked {
        method: &GET,
        version: Version::HTTP_11,
        keep_alive: true,
    }
}

/// Answers hyper refuses to write (it sends a 500 instead): nothing
/// of them is appended.
#[test]
fn unwritable_answers_append_nothing() {
    let cases: [(u16, Lines, BodyLength, Unwritable); 5] = [
        (100, &[], BodyLength::None, Unwritable::Informational),
        (
            103,
            &[("link", "</a>")],
            BodyLength::None,
            Unwritable::Informational,
        ),
        (
            200,
            &[("content-length", "x")],
            BodyLength::Unknown,
            Unwritable::Framing,
        ),
        (
            200,
            &[("content-length", "4"), ("content-length", "5")],
            BodyLength::Unknown,
            Unwritable::Framing,
        ),
        (
            200,
            &[("transfer-encoding", "chunked"), ("content-length", "4")],
            BodyLength::Known(4),
            Unwritable::Framing,
        ),
    ];
    for (status, headers, body, want) in cases {
        let mut out = b"kept".to_vec();
        let got = encode(&mut answer(status, headers), body, get(), || DATE, &mut out);
        assert_eq!(got, Err(want), "{status} {headers:?}");
        assert_eq!(out, b"kept", "{status} {headers:?}");
    }
}

/// A 101 ends HTTP on the connection: whatever follows is the
/// upgraded protocol's.
#[test]
fn switching_protocols_is_the_last_answer() {
    let mut out = Vec::new();
    let mut parts = answer(101, &[("connection", "upgrade"), ("upgrade", "websocket")]);
    let got = encode(&mut parts, BodyLength::None, get(), || DATE, &mut out).unwrap();
    assert!(!got.keep_alive);
    assert_eq!(got.encoding, Encoding::Length(0));
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\n\
             upgrade: websocket\r\ndate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n"
    );
}

/// A 2xx to CONNECT carries neither length nor body: the tunnel
/// follows.
#[test]
fn a_connect_success_has_no_framing() {
    static CONNECT: Method = Method::CONNECT;
    let asked = Asked {
        method: &CONNECT,
        ..get()
    };
    let mut out = Vec::new();
    let got = encode(
        &mut answer(200, &[]),
        BodyLength::Unknown,
        asked,
        || DATE,
        &mut out,
    );
    assert_eq!(
        got,
        Ok(Encoded {
            encoding: Encoding::Length(0),
            keep_alive: false
        })
    );
    assert!(!String::from_utf8(out).unwrap().contains("length"));
}

/// The upstream's own `Date` passes through, and then the clock is not
/// asked; without one the answer gets figway's.
#[test]
fn the_date_is_asked_for_only_when_the_answer_has_none() {
    let mut out = Vec::new();
    let mut parts = answer(200, &[("date", "Fri, 02 Jan 1970 00:00:00 GMT")]);
    let no_clock = || -> [u8; 29] { panic!("the clock was read for an answer with a Date") };
    encode(&mut parts, BodyLength::Known(0), get(), no_clock, &mut out).unwrap();
    let head = String::from_utf8(out).unwrap();
    assert!(head.contains("date: Fri, 02 Jan 1970"), "{head}");
    assert!(!head.contains("Thu, 01 Jan"), "{head}");

    let mut out = Vec::new();
    let mut asked = 0;
    let clock = || {
        asked += 1;
        DATE
    };
    encode(
        &mut answer(200, &[]),
        BodyLength::Known(0),
        get(),
        clock,
        &mut out,
    )
    .unwrap();
    assert_eq!(asked, 1);
    assert!(String::from_utf8(out)
        .unwrap()
        .contains("date: Thu, 01 Jan 1970"));
}

/// The map is handed back empty, for the next answer to reuse.
#[test]
fn the_header_map_is_left_empty_with_its_room() {
    let mut parts = answer(200, &[("x-a", "1"), ("x-b", "2")]);
    let room = parts.headers.capacity();
    encode(
        &mut parts,
        BodyLength::Known(0),
        get(),
        || DATE,
        &mut Vec::new(),
    )
    .unwrap();
    assert!(parts.headers.is_empty());
    assert_eq!(parts.headers.capacity(), room);
}
