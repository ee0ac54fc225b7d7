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
mod tests;
