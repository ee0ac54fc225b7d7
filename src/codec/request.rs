//! A client's request head, scanned (`codec::scan`, `httparse`'s rules)
//! and taken into `http` parts, with
//! what the connection needs to know of it: how its body is framed, whether
//! the connection stays open after it, whether it expects `100 Continue`,
//! whether it may upgrade. The rules and refusals are hyper 1.12's server
//! ones (`proto/h1/role.rs`, `Server::parse`), listed in
//! `docs/http1-codec.md` ("The server"), so that swapping servers changes
//! nothing a client sees; on top of hyper, a head carrying both
//! `Content-Length` and `Transfer-Encoding` is marked ([`Head::conflict`])
//! so that figway answers it 400 and closes (SPEC §4), where hyper
//! silently drops the length.

use bytes::BytesMut;
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING, UPGRADE};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version};

use super::{
    content_length, each_field, fields, has_token, last_coding_is_chunked, scan, scan_request,
};

/// The most header lines a request head may carry (hyper's default).
pub const MAX_HEADERS: usize = 100;

/// The longest request target (hyper's limit: `u16::MAX - 1`).
pub const MAX_TARGET: usize = u16::MAX as usize - 1;

/// Header slots the map keeps free for what the proxy adds to a request
/// (`X-Forwarded-For`, `-Proto`, `-Host`, `X-Request-Id`, a route's
/// edits), so that adding them does not grow it.
const ROOM: usize = 6;

/// A request head the client may not send; the connection answers it with
/// [`Refusal::status`] and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A malformed request line or header line, a bad method or target,
    /// or framing that cannot be followed: 400.
    Malformed,
    /// The target is longer than [`MAX_TARGET`]: 414.
    TargetTooLong,
    /// The head is longer than the limit, or has more than
    /// [`MAX_HEADERS`] lines: 431.
    TooLarge,
}

impl Refusal {
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::Malformed => StatusCode::BAD_REQUEST,
            Refusal::TargetTooLong => StatusCode::URI_TOO_LONG,
            Refusal::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        }
    }
}

/// How the request's body is framed (RFC 9112 §6.3, for requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: neither header, or a length of 0.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked, ending with a zero-size chunk and trailers.
    Chunked,
}

/// A parsed request head.
#[derive(Debug)]
pub struct Head {
    pub parts: Parts,
    pub framing: Framing,
    /// The connection may carry another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for `100 Continue` (or the
    /// answer) before it sends the body.
    pub expect_continue: bool,
    /// `Upgrade` on HTTP/1.1, or `CONNECT`: the answer may take over the
    /// connection.
    pub wants_upgrade: bool,
    /// Both `Content-Length` and `Transfer-Encoding`: figway refuses it
    /// (SPEC §4); the body is still framed as chunked, and nothing after
    /// it is read.
    pub conflict: bool,
}

/// Parses a request head off the front of `buf`: `Ok(None)` while it is
/// incomplete (and within `max_head` bytes), the head with its bytes taken
/// out of `buf` once it is whole. Blank lines before the request line are
/// skipped (RFC 9112 §2.2).
pub fn parse(buf: &mut BytesMut, max_head: usize) -> Result<Option<Head>, Refusal> {
    // Only the first `max_head` bytes are looked at: what lies past the
    // limit cannot change the verdict, so it is the same however the bytes
    // arrived (a malformed byte past the limit is still 431, as it is when
    // the head comes in pieces: with one byte more in view, a head that
    // filled the limit was 400 when that byte came with it, 431 when it
    // came later).
    let window = &buf[..buf.len().min(max_head)];
    let (line, len) = match scan_request(window, MAX_HEADERS) {
        Ok(Some(found)) => found,
        // A partial head that already fills the limit cannot end within it
        // (hyper answers 431 then too, rather than wait for one more byte).
        Ok(None) if window.len() >= max_head => return Err(Refusal::TooLarge),
        Ok(None) => return Ok(None),
        Err(scan::Error::TooMany) => return Err(Refusal::TooLarge),
        Err(scan::Error::Malformed) => return Err(Refusal::Malformed),
    };
    if len > max_head {
        return Err(Refusal::TooLarge);
    }
    let (target_at, target_end) = line.target;
    if target_end - target_at > MAX_TARGET {
        return Err(Refusal::TargetTooLong);
    }
    let method =
        Method::from_bytes(&buf[line.method.0..line.method.1]).map_err(|_| Refusal::Malformed)?;
    // hyper's order: a header name of 64 KiB or more is 431 before the
    // target is read as a URI.
    let mut long_name = false;
    each_field(buf, |name, _| {
        long_name |= name.len() > usize::from(u16::MAX);
    });
    if long_name {
        return Err(Refusal::TooLarge);
    }
    let http11 = line.minor == 1;
    let head = buf.split_to(len).freeze();
    let uri = Uri::from_maybe_shared(head.slice(target_at..target_end))
        .map_err(|_| Refusal::Malformed)?;

    let mut facts = Facts::new(http11, method == Method::CONNECT);
    let headers = fields(&head, ROOM, Refusal::Malformed, |name, value, headers| {
        facts.see(name, value, headers)
    })?;
    let framing = facts.framing()?;
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = if http11 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    super::install(&mut parts.headers, headers);
    Ok(Some(Head {
        parts,
        framing,
        keep_alive: facts.keep_alive && !facts.conflict(),
        // hyper sends no `100 Continue` to HTTP/1.0, nor for no body.
        expect_continue: facts.expect_continue && http11 && framing != Framing::Empty,
        wants_upgrade: facts.wants_upgrade,
        conflict: facts.conflict(),
    }))
}

/// What the header lines say, read in order as hyper reads them (order
/// matters: a bad `Content-Length` before `Transfer-Encoding` is refused,
/// one after it is ignored).
struct Facts {
    http11: bool,
    keep_alive: bool,
    saw_close: bool,
    expect_continue: bool,
    wants_upgrade: bool,
    length: Option<u64>,
    saw_length: bool,
    saw_coding: bool,
    chunked: bool,
}

impl Facts {
    fn new(http11: bool, connect: bool) -> Facts {
        Facts {
            http11,
            keep_alive: http11,
            saw_close: false,
            expect_continue: false,
            wants_upgrade: connect,
            length: None,
            saw_length: false,
            saw_coding: false,
            chunked: false,
        }
    }

    /// Takes in one header line; false when the line is not kept (a
    /// repeated or overridden `Content-Length`).
    fn see(
        &mut self,
        name: &HeaderName,
        value: &HeaderValue,
        headers: &mut HeaderMap,
    ) -> Result<bool, Refusal> {
        if name == TRANSFER_ENCODING {
            if !self.http11 {
                return Err(Refusal::Malformed);
            }
            self.saw_coding = true;
            if self.length.take().is_some() {
                headers.remove(CONTENT_LENGTH);
            }
            self.chunked = last_coding_is_chunked(value.as_bytes());
        } else if name == CONTENT_LENGTH {
            self.saw_length = true;
            if self.saw_coding {
                return Ok(false);
            }
            let n = content_length(value.as_bytes()).ok_or(Refusal::Malformed)?;
            // hyper keeps the two largest values for its own use and
            // answers them 431.
            if n > u64::MAX - 2 {
                return Err(Refusal::TooLarge);
            }
            match self.length {
                Some(was) if was != n => return Err(Refusal::Malformed),
                Some(_) => return Ok(false),
                None => self.length = Some(n),
            }
        } else if name == CONNECTION {
            if self.saw_close || has_token(value.as_bytes(), b"close") {
                self.saw_close = true;
                self.keep_alive = false;
            } else if !self.keep_alive {
                self.keep_alive = has_token(value.as_bytes(), b"keep-alive");
            }
        } else if name == EXPECT {
            self.expect_continue = value.as_bytes().eq_ignore_ascii_case(b"100-continue");
        } else if name == UPGRADE {
            self.wants_upgrade = self.http11;
        }
        Ok(true)
    }

    fn conflict(&self) -> bool {
        self.saw_coding && self.saw_length
    }

    fn framing(&self) -> Result<Framing, Refusal> {
        if self.saw_coding {
            return if self.chunked {
                Ok(Framing::Chunked)
            } else {
                Err(Refusal::Malformed)
            };
        }
        Ok(match self.length {
            None | Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
        })
    }
}

#[cfg(test)]
mod tests {
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
        let mut buf = BytesMut::from(
            &b"\r\nGET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\n\r\nNEXT"[..],
        );
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
}
