//! Heads on an upstream HTTP/1.1 connection: the request head as it is
//! written (and how its body is framed), and the response head as it is
//! parsed (and how its body is framed, RFC 9112 §6.3). Pure functions over
//! bytes: no I/O here, so the fuzz target and the unit tests drive them
//! directly.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::response;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};

/// The most header lines a response head may carry (hyper's client had
/// the same limit).
pub const MAX_HEADERS: usize = 100;

/// The most bytes a response head may take, status line to blank line
/// (hyper's client read at most about as much before giving up).
pub const MAX_HEAD: usize = 400 * 1024;

/// How a request body goes upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sending {
    /// No body bytes at all.
    Nothing,
    /// Exactly this many bytes, as the `Content-Length` says.
    Length(u64),
    /// Chunked: the length is not known ahead.
    Chunked,
}

/// How the request's body will be framed, with the header that says so
/// added or removed: a `Content-Length` the client sent (figway's server
/// checked it) or the body's exact size; else `chunked`, which HTTP/1.1
/// upstreams must read. `has_body` is false when nothing follows the head.
pub fn request_framing(headers: &mut HeaderMap, has_body: bool, exact: Option<u64>) -> Sending {
    // Hop-by-hop: the rewrite removed the client's; an edit that set one
    // would frame the body a way figway does not send it.
    crate::headers::remove(headers, &TRANSFER_ENCODING);
    if !has_body {
        return Sending::Nothing;
    }
    if let Length::Is(n) = content_length(headers) {
        return Sending::Length(n);
    }
    if let Some(n) = exact {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
        return Sending::Length(n);
    }
    headers.remove(CONTENT_LENGTH);
    headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    Sending::Chunked
}

/// Fields the caller adds to a request head after its map's, as they are
/// (`proxy::rewrite`: `X-Forwarded-*` written straight into the head).
pub type Added<'a> = &'a [(&'a HeaderName, &'a HeaderValue)];

/// Appends the request line and header section to `out`: the map's
/// fields, then `added`.
pub fn encode_request(
    method: &Method,
    uri: &http::Uri,
    headers: &HeaderMap,
    added: Added<'_>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    match uri.path_and_query() {
        Some(p) if !p.as_str().is_empty() => out.extend_from_slice(p.as_str().as_bytes()),
        _ => match uri.authority() {
            // CONNECT's authority form.
            Some(a) if method == Method::CONNECT => out.extend_from_slice(a.as_str().as_bytes()),
            _ => out.push(b'/'),
        },
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    encode_lines(headers, out);
    encode_lines(added.iter().copied(), out);
    out.extend_from_slice(b"\r\n");
}

/// Appends a field section (a head's headers, or a last chunk's trailers)
/// and the blank line that ends it.
pub fn encode_fields(fields: &HeaderMap, out: &mut Vec<u8>) {
    encode_lines(fields, out);
    out.extend_from_slice(b"\r\n");
}

fn encode_lines<'f>(
    fields: impl IntoIterator<Item = (&'f HeaderName, &'f HeaderValue)>,
    out: &mut Vec<u8>,
) {
    for (name, value) in fields {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// How a response's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: the answer to HEAD, 1xx, 204, 304.
    Empty,
    Length(u64),
    Chunked,
    /// Read until the upstream closes.
    Close,
}

/// A response head, parsed.
#[derive(Debug)]
pub struct Head {
    pub parts: response::Parts,
    pub framing: Framing,
    /// Whether the connection may carry another request once the body
    /// has been read: HTTP/1.1 without `Connection: close` (or 1.0 with
    /// `keep-alive`), delimited by a length or chunks, framed one way.
    pub reusable: bool,
}

/// Why a response head was refused; the attempt is an `upstream_reset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not HTTP/1.x as RFC 9112 writes it (httparse's verdict), or a
    /// header name or value `http` will not hold.
    Malformed,
    /// More than [`MAX_HEADERS`] lines or [`MAX_HEAD`] bytes.
    TooLarge,
    /// `Content-Length` not one decimal number.
    BadLength,
    /// A final transfer coding other than chunked, or any on HTTP/1.0:
    /// no client could decode the body once the hop-by-hop header that
    /// names the coding is gone.
    BadCoding,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::Malformed => "malformed response head",
            Refused::TooLarge => "response head too large",
            Refused::BadLength => "bad Content-Length",
            Refused::BadCoding => "transfer coding other than chunked, or any on HTTP/1.0",
        })
    }
}

/// Parses a response head off the front of `buf` (to a request with
/// `method`): `Ok(None)` while it is incomplete, the head with its bytes
/// taken out of `buf` once it is whole. Interim (1xx) heads other than
/// 101 come back too: the caller skips them. `room`: headers the caller
/// will add, which the map is sized for (growing it costs two allocations,
/// and hyper's server keeps the map of the last answer for the next
/// request, so a map larger than needed is memory every idle client
/// connection holds).
pub fn parse_response(
    buf: &mut BytesMut,
    method: &Method,
    room: usize,
) -> Result<Option<Head>, Refused> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let config = httparse::ParserConfig::default();
    let len = match config.parse_response_with_uninit_headers(&mut response, buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(Refused::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Refused::TooLarge),
        Err(_) => return Err(Refused::Malformed),
    };
    if len > MAX_HEAD {
        return Err(Refused::TooLarge);
    }
    let status = response
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(Refused::Malformed)?;
    let version = match response.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let reason = response
        .reason
        .filter(|r| !r.is_empty() && Some(*r) != status.canonical_reason());
    let reason = reason.map(|r| Bytes::copy_from_slice(r.as_bytes()));
    crate::codec::record_fields(buf.as_ptr(), response.headers);
    let head = buf.split_to(len).freeze();
    // The lines that say how the message is framed and whether the
    // connection lives on are read as they go into the map, and the
    // hop-by-hop ones (which the proxy removes from every answer) stay out
    // of it, but for a 101's (the tunnel's hand-over reads them): no map
    // lookups after, nothing inserted only to be removed.
    let mut lines = Lines::default();
    let keep_hop = status == StatusCode::SWITCHING_PROTOCOLS;
    let mut headers = crate::codec::fields(&head, room, Refused::Malformed, |name, value, _| {
        Ok(lines.note(name, value.as_bytes()) || keep_hop)
    })?;
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = status;
    parts.version = version;
    if let Some(reason) = reason {
        if let Ok(r) = hyper::ext::ReasonPhrase::try_from(reason) {
            parts.extensions.insert(r);
        }
    }
    let mut reusable = !lines.close && (version == Version::HTTP_11 || lines.keep);
    let framing = if method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::Empty
    } else if lines.coded {
        if version == Version::HTTP_10 || !lines.chunked {
            return Err(Refused::BadCoding);
        }
        // Transfer-Encoding wins (RFC 9112 §6.3); the length would reach
        // the client beside the decoded body and cut it short there. An
        // upstream that framed one message two ways serves no other.
        if lines.length != Length::None {
            headers.remove(CONTENT_LENGTH);
            reusable = false;
        }
        Framing::Chunked
    } else {
        match lines.length {
            Length::Is(n) => Framing::Length(n),
            Length::None => {
                reusable = false;
                Framing::Close
            }
            Length::Bad => return Err(Refused::BadLength),
        }
    };
    crate::codec::install(&mut parts.headers, headers);
    Ok(Some(Head {
        parts,
        framing,
        reusable,
    }))
}

/// What a response head's lines say about its framing and its connection
/// (RFC 9112 §6.3, §9.3), noted line by line as the map is filled.
#[derive(Default)]
struct Lines {
    /// `Connection` holds `close`, or `keep-alive`.
    close: bool,
    keep: bool,
    /// A `Transfer-Encoding` line came, and the last one's last coding
    /// is `chunked`.
    coded: bool,
    chunked: bool,
    length: Length,
}

/// Every `Content-Length` value (lines and comma-separated lists) as one
/// decimal number, or why not.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Length {
    #[default]
    None,
    Is(u64),
    /// Values that differ, or one that is not a number.
    Bad,
}

impl Length {
    /// The length so far, with one more `Content-Length` line.
    fn and(self, value: &[u8]) -> Length {
        value.split(|b| *b == b',').fold(self, |found, part| {
            match (found, decimal(part.trim_ascii())) {
                (Length::Bad, _) | (_, None) => Length::Bad,
                (Length::Is(f), Some(n)) if f != n => Length::Bad,
                (_, Some(n)) => Length::Is(n),
            }
        })
    }
}

/// Every `Content-Length` line of `headers`, as one length.
fn content_length(headers: &HeaderMap) -> Length {
    headers
        .get_all(CONTENT_LENGTH)
        .iter()
        .fold(Length::None, |length, v| length.and(v.as_bytes()))
}

impl Lines {
    /// Notes one line; false for a hop-by-hop line the map can go without:
    /// every one but a `Connection` that names another header, which the
    /// proxy's rewrite must see to remove that header too.
    fn note(&mut self, name: &HeaderName, value: &[u8]) -> bool {
        if *name == CONTENT_LENGTH {
            self.length = self.length.and(value);
            return true;
        }
        if *name == CONNECTION {
            let mut others = false;
            for token in value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                let close = token.eq_ignore_ascii_case(b"close");
                let keep = token.eq_ignore_ascii_case(b"keep-alive");
                self.close |= close;
                self.keep |= keep;
                others |= !(close
                    || keep
                    || token.is_empty()
                    || token.eq_ignore_ascii_case(b"upgrade")
                    || token.eq_ignore_ascii_case(b"te"));
            }
            return others;
        }
        if *name == TRANSFER_ENCODING {
            self.coded = true;
            self.chunked = value
                .rsplit(|b| *b == b',')
                .next()
                .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            return false;
        }
        !crate::headers::is_hop_by_hop(name)
    }
}

fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8], method: Method) -> Result<Option<Head>, Refused> {
        parse_response(&mut BytesMut::from(bytes), &method, 0)
    }

    #[test]
    fn a_length_frames_and_leaves_the_body_in_the_buffer() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"[..]);
        let head = parse_response(&mut buf, &Method::GET, 0).unwrap().unwrap();
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
}
