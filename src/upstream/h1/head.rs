//! Heads on an upstream HTTP/1.1 connection: the request head as it is
//! written (and how its body is framed), and the response head as it is
//! parsed (and how its body is framed, RFC 9112 §6.3), its fields into a
//! map or, for figway's own server, as the lines it writes
//! (`codec::lines`). Pure functions over
//! bytes: no I/O here, so the fuzz target and the unit tests drive them
//! directly.

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::response;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};

use crate::codec::lines::{self, HeadLines, Kind, LengthLine};
use crate::codec::scan;

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
    /// The fields as the lines figway's server writes, when the caller
    /// asked for them ([`Form::lines`]) and the head allows it; the map in
    /// `parts` is empty then.
    pub lines: Option<HeadLines>,
}

/// How the caller takes a response head's fields.
#[derive(Debug, Clone, Copy)]
pub struct Form {
    /// Fields the caller will add to the map, which is sized for them
    /// (growing it costs two allocations, and hyper's server keeps the map
    /// of the last answer for the next request, so a map larger than
    /// needed is memory every idle client connection holds).
    pub room: usize,
    /// As lines (`codec::lines`): nothing reads the fields before figway's
    /// own server writes them. A 101 (the tunnel's hand-over reads its
    /// fields) and a head whose `Connection` names another field (the
    /// proxy removes that one) come as a map all the same.
    pub lines: bool,
}
/// Why a response head was refused; the attempt is an `upstream_reset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not HTTP/1.x as RFC 9112 writes it (`codec::scan`'s verdict), or a
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
/// taken out of `buf` once it is whole, its fields as `form` asks. Interim
/// (1xx) heads other than 101 come back too: the caller skips them.
pub fn parse_response(
    buf: &mut BytesMut,
    method: &Method,
    form: Form,
) -> Result<Option<Head>, Refused> {
    let (line, len) = match crate::codec::scan_response(buf, MAX_HEADERS) {
        Ok(Some(found)) => found,
        Ok(None) if buf.len() >= MAX_HEAD => return Err(Refused::TooLarge),
        Ok(None) => return Ok(None),
        Err(scan::Error::TooMany) => return Err(Refused::TooLarge),
        Err(scan::Error::Malformed) => return Err(Refused::Malformed),
    };
    if len > MAX_HEAD {
        return Err(Refused::TooLarge);
    }
    let (status, version, reason) = status_line(&line, buf)?;
    // The lines that say how the message is framed and whether the
    // connection lives on are noted first; the hop-by-hop ones (which the
    // proxy removes from every answer) stay out of the answer's fields, but
    // for a 101's (the tunnel's hand-over reads them).
    let keep_hop = status == StatusCode::SWITCHING_PROTOCOLS;
    let mut notes = Notes::default();
    let mut as_lines = form.lines && !keep_hop;
    crate::codec::each_field(buf, |name, value| {
        let kind = lines::kind(name);
        // A `Connection` naming another field: the map, for the rewrite.
        as_lines &= !(notes.note(kind, value) && kind == Kind::Connection);
    });
    let (framing, reusable, drop_length) = frame(&notes, method, status, version)?;
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = status;
    parts.version = version;
    if let Some(reason) = reason {
        if let Ok(r) = hyper::ext::ReasonPhrase::try_from(reason) {
            parts.extensions.insert(r);
        }
    }
    let lines = if as_lines {
        // The length goes to the client where figway's server writes one
        // from a map (`codec::response`): in the answer to a HEAD (the
        // length of the body it stands for), or with a body of that length;
        // for an answer with no body the server writes `content-length: 0`
        // itself where one is due.
        let length = method == Method::HEAD || matches!(framing, Framing::Length(n) if n > 0);
        let length = match notes.length {
            Length::Is(_) if !length => LengthLine::Drop,
            Length::Is(n) if notes.listed => LengthLine::As(n),
            Length::Is(_) => LengthLine::Keep,
            Length::None | Length::Bad => LengthLine::Drop,
        };
        let lines = HeadLines::render(&mut buf[..len], length);
        let _ = buf.split_to(len);
        Some(lines)
    } else {
        let head = buf.split_to(len).freeze();
        let mut headers =
            crate::codec::fields(&head, form.room, Refused::Malformed, |name, value, _| {
                Ok(keep_hop || kept(name, value.as_bytes()))
            })?;
        // A length that is not one number reaches here only on an answer
        // with no body (the others were refused): it goes, as from lines.
        match notes.length {
            _ if drop_length => drop(headers.remove(CONTENT_LENGTH)),
            Length::Is(n) if notes.listed => {
                headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
            }
            Length::Bad => drop(headers.remove(CONTENT_LENGTH)),
            Length::Is(_) | Length::None => {}
        }
        crate::codec::install(&mut parts.headers, headers);
        None
    };
    Ok(Some(Head {
        parts,
        framing,
        reusable,
        lines,
    }))
}

/// The status line's code, version, and reason when it is not the code's
/// canonical one (kept for the client, as hyper keeps it).
fn status_line(
    line: &scan::Status,
    buf: &[u8],
) -> Result<(StatusCode, Version, Option<Bytes>), Refused> {
    let status = StatusCode::from_u16(line.code).map_err(|_| Refused::Malformed)?;
    let version = match line.minor {
        0 => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let reason = &buf[line.reason.0..line.reason.1];
    let reason = (!reason.is_empty()
        && Some(reason) != status.canonical_reason().map(str::as_bytes))
    .then(|| Bytes::copy_from_slice(reason));
    Ok((status, version, reason))
}

/// What a response head's lines say about its framing and its connection
/// (RFC 9112 §6.3, §9.3), noted line by line.
#[derive(Default)]
struct Notes {
    /// `Connection` holds `close`, or `keep-alive`.
    close: bool,
    keep: bool,
    /// A `Transfer-Encoding` line came, and the last one's last coding
    /// is `chunked`.
    coded: bool,
    chunked: bool,
    length: Length,
    /// The length came in more than one line or as a list (all the same
    /// number, or `length` is `Bad`): it goes on as that one number, as a
    /// proxy must (RFC 9110 §8.6).
    listed: bool,
    length_lines: u8,
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

impl Notes {
    /// Notes one line; true for a `Connection` that names another field,
    /// which the proxy's rewrite must see to remove that field too.
    fn note(&mut self, kind: Kind, value: &[u8]) -> bool {
        match kind {
            Kind::ContentLength => {
                self.length = self.length.and(value);
                self.length_lines = self.length_lines.saturating_add(1);
                self.listed |= self.length_lines > 1 || value.contains(&b',');
            }
            // Most say one word alone (scan trimmed the value).
            Kind::Connection if value.eq_ignore_ascii_case(b"keep-alive") => self.keep = true,
            Kind::Connection if value.eq_ignore_ascii_case(b"close") => self.close = true,
            Kind::Connection => {
                for token in value.split(|b| *b == b',') {
                    let token = token.trim_ascii();
                    self.close |= token.eq_ignore_ascii_case(b"close");
                    self.keep |= token.eq_ignore_ascii_case(b"keep-alive");
                }
                return crate::headers::names_others(value);
            }
            Kind::TransferEncoding => {
                self.coded = true;
                self.chunked = value
                    .rsplit(|b| *b == b',')
                    .next()
                    .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            }
            Kind::Date | Kind::HopByHop | Kind::RequestId | Kind::Other => {}
        }
        false
    }
}

/// Whether a line goes into the answer's map: not the hop-by-hop ones, but
/// a `Connection` that names another field (see [`Notes::note`]).
fn kept(name: &HeaderName, value: &[u8]) -> bool {
    if *name == CONNECTION {
        return crate::headers::names_others(value);
    }
    !crate::headers::is_hop_by_hop(name)
}

/// The body's framing, whether the connection may serve again, and whether
/// the `Content-Length` lines are to go (a coding came too): RFC 9112 §6.3.
fn frame(
    notes: &Notes,
    method: &Method,
    status: StatusCode,
    version: Version,
) -> Result<(Framing, bool, bool), Refused> {
    let reusable = !notes.close && (version == Version::HTTP_11 || notes.keep);
    if method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((Framing::Empty, reusable, false));
    }
    if notes.coded {
        if version == Version::HTTP_10 || !notes.chunked {
            return Err(Refused::BadCoding);
        }
        // Transfer-Encoding wins (RFC 9112 §6.3); the length would reach
        // the client beside the decoded body and cut it short there. An
        // upstream that framed one message two ways serves no other.
        let both = notes.length != Length::None;
        return Ok((Framing::Chunked, reusable && !both, both));
    }
    match notes.length {
        Length::Is(n) => Ok((Framing::Length(n), reusable, false)),
        Length::None => Ok((Framing::Close, false, false)),
        Length::Bad => Err(Refused::BadLength),
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
mod tests;
