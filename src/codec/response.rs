//! The answer's head as figway's own HTTP/1.1 server will write it: status
//! line, header lines, the framing of its body and whether the connection
//! stays open after it. The rules are hyper 1.12's server ones
//! (`proto/h1/role.rs` `Server::encode`, `proto/h1/conn.rs`
//! `enforce_version`), listed in `docs/http1-codec.md` ("The server"), so
//! that a client sees the same bytes whichever server wrote them
//! (`tests/codec_differential.rs` compares the two byte for byte).

use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRAILER, TRANSFER_ENCODING};
use http::response::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};

use super::lines::HeadLines;
use super::{content_length, has_token, last_coding_is_chunked};

/// What the answer's body says of its length before it is polled (hyper's
/// `BodyLength`, with `None` for a body that is already at its end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    /// Ended before anything was polled: no body at all.
    None,
    Known(u64),
    Unknown,
}

/// How the body is written after the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Exactly this many bytes (0: nothing follows the head).
    Length(u64),
    /// Chunks, then a zero-size chunk (and trailers).
    Chunked,
    /// Raw bytes until the connection closes (HTTP/1.0 with no length).
    CloseDelimited,
}

/// The head written: how its body follows, and whether the connection may
/// carry another request after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoded {
    pub encoding: Encoding,
    pub keep_alive: bool,
}

/// An answer the server cannot write as asked: hyper answers a 1xx with a
/// 500, and for the framing cases writes nothing and closes the
/// connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unwritable {
    /// A 1xx other than 101: the service gives one answer, not interim ones.
    Informational,
    /// Two framing headers at odds (a length after a coding or another
    /// length, a length that is not a number while the body's is unknown).
    Framing,
}

/// The request facts an answer's head depends on.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    pub method: &'a Method,
    pub version: Version,
    /// The connection may stay open, as far as the request said.
    pub keep_alive: bool,
}

/// Appends the answer's head to `out`: `parts` (its headers are taken),
/// `body` as its body reports itself, `date` what gives the `Date` value to
/// add when the answer has none (29 bytes, cached per second by the
/// caller): asked only then, as most upstreams send their own and the
/// clock read is ~45 ns on a VM's clock source (`benches/cpu_profile.sh`).
/// On error nothing is appended.
pub fn encode(
    parts: &mut Parts,
    body: BodyLength,
    asked: Asked<'_>,
    date: impl FnOnce() -> [u8; 29],
    out: &mut Vec<u8>,
) -> Result<Encoded, Unwritable> {
    encode_head(parts, None, body, asked, date, out)
}

/// As [`encode`], for an answer whose fields are `lines` (`codec::lines`:
/// an upstream's, rendered as this encoder writes fields, without the
/// hop-by-hop ones, a `content-length` among them only where this encoder
/// would have written it) and whatever `parts`' map holds after them.
pub fn encode_lines(
    parts: &mut Parts,
    lines: &HeadLines,
    body: BodyLength,
    asked: Asked<'_>,
    date: impl FnOnce() -> [u8; 29],
    out: &mut Vec<u8>,
) -> Result<Encoded, Unwritable> {
    encode_head(parts, Some(lines), body, asked, date, out)
}

fn encode_head(
    parts: &mut Parts,
    lines: Option<&HeadLines>,
    body: BodyLength,
    asked: Asked<'_>,
    date: impl FnOnce() -> [u8; 29],
    out: &mut Vec<u8>,
) -> Result<Encoded, Unwritable> {
    let status = parts.status;
    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
        return Err(Unwritable::Informational);
    }
    let shape = Shape::new(parts, asked);
    if let (Some(value), None) = (shape.connection, lines) {
        parts
            .headers
            .append(CONNECTION, HeaderValue::from_static(value));
    }
    let start = out.len();
    status_line(status, shape.version, parts, out);
    let mut fields = Fields::new(shape, body, out);
    if let Some(lines) = lines {
        fields.lines(lines);
    }
    // Drained in place, the map left empty for the next answer's headers
    // (hyper keeps the map): taken out and put back, a default map was
    // made and dropped per answer.
    let mut current = None;
    for (name, value) in parts.headers.drain() {
        if let Some(name) = name {
            fields.close_line();
            current = Some(name);
        }
        let Some(name) = current.as_ref() else {
            continue;
        };
        if let Err(e) = fields.field(name, &value) {
            fields.out.truncate(start);
            return Err(e);
        }
    }
    Ok(fields.finish(date))
}

/// What the request and the answer's status decide before a field is
/// written.
#[derive(Clone, Copy)]
struct Shape {
    /// The answer's version as written: an HTTP/1.0 client gets HTTP/1.0.
    version: Version,
    /// The `Connection` value figway adds (lines carry none, being
    /// hop-by-hop: only the map may).
    connection: Option<&'static str>,
    /// The connection ends after this answer.
    last: bool,
    /// The framing is settled already (a 2xx to CONNECT: the tunnel's
    /// bytes follow the head): a framing header is at odds with it.
    framed: bool,
    /// The request was a HEAD.
    head: bool,
    /// No body for these: a 101's bytes after the head are the new
    /// protocol's, a 2xx to CONNECT's the tunnel's.
    bodiless: bool,
}

impl Shape {
    fn new(parts: &Parts, asked: Asked<'_>) -> Shape {
        let status = parts.status;
        let mut keep_alive = asked.keep_alive;
        let mut version = parts.version;
        let mut connection = None;
        if asked.version == Version::HTTP_10 {
            // An HTTP/1.0 client gets HTTP/1.0, kept open only when both it
            // and the answer want it.
            if !has_token_in(&parts.headers, b"keep-alive") {
                if version == Version::HTTP_10 {
                    keep_alive = false;
                } else if version == Version::HTTP_11 && keep_alive {
                    connection = Some("keep-alive");
                }
            }
            version = Version::HTTP_10;
        } else if !keep_alive && !has_token_in(&parts.headers, b"close") {
            connection = Some("close");
        }
        let connect_ok = asked.method == Method::CONNECT && status.is_success();
        let (last, framed) = if status == StatusCode::SWITCHING_PROTOCOLS {
            (true, false)
        } else if connect_ok {
            (true, true)
        } else {
            (!keep_alive, false)
        };
        Shape {
            version,
            connection,
            last,
            framed,
            head: asked.method == Method::HEAD,
            bodiless: status.is_informational()
                || connect_ok
                || matches!(status.as_u16(), 204 | 304),
        }
    }

    fn http10(&self) -> bool {
        self.version == Version::HTTP_10
    }

    fn can_chunk(&self) -> bool {
        !self.head && !self.bodiless
    }
}

/// The header lines as they are written, and what they said of the
/// framing so far.
struct Fields<'o> {
    out: &'o mut Vec<u8>,
    shape: Shape,
    body: BodyLength,
    encoding: Encoding,
    /// The last field's value says the connection ends.
    last: bool,
    /// A framing line is written (or settled by the status).
    wrote_len: bool,
    wrote_date: bool,
    /// The first `Content-Length` of a body of unknown length.
    length_seen: Option<u64>,
    /// Special names go on one line, their values joined with ", "; this
    /// is set while that line is being written. Other names take a line
    /// per value, in the map's order, as hyper writes them.
    line_open: bool,
    /// The open coding line's last coding is not `chunked`.
    add_chunked: bool,
}

impl<'o> Fields<'o> {
    fn new(shape: Shape, body: BodyLength, out: &'o mut Vec<u8>) -> Fields<'o> {
        Fields {
            out,
            shape,
            body,
            encoding: Encoding::Length(0),
            last: shape.last,
            wrote_len: shape.framed,
            wrote_date: false,
            length_seen: None,
            line_open: false,
            add_chunked: false,
        }
    }

    /// An upstream's fields, already rendered (`codec::lines`).
    fn lines(&mut self, lines: &HeadLines) {
        self.out.extend_from_slice(lines.as_bytes());
        if let Some(value) = self.shape.connection {
            self.out.extend_from_slice(b"connection: ");
            self.out.extend_from_slice(value.as_bytes());
            self.out.extend_from_slice(b"\r\n");
        }
        self.wrote_date = lines.date;
        if lines.length {
            // Trusted to match the body's own length, as a map's is.
            self.wrote_len = true;
            if let BodyLength::Known(n) = self.body {
                self.encoding = Encoding::Length(n);
            }
        }
    }

    /// One value of the map's, under `name` (the same name as the last
    /// value's while `line_open`).
    fn field(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<(), Unwritable> {
        let framing = name == CONTENT_LENGTH || name == TRANSFER_ENCODING;
        if framing && self.wrote_len && !self.line_open {
            return Err(Unwritable::Framing);
        }
        if name == CONTENT_LENGTH {
            return self.content_length(name, value);
        }
        if name == TRANSFER_ENCODING {
            if self.shape.http10() || !self.shape.can_chunk() {
                return Ok(());
            }
            self.wrote_len = true;
            self.add_chunked = !last_coding_is_chunked(value.as_bytes());
            if self.join(b"transfer-encoding") {
                self.encoding = Encoding::Chunked;
            }
            self.out.extend_from_slice(value.as_bytes());
        } else if name == CONNECTION || name == TRAILER {
            if name == CONNECTION && has_token(value.as_bytes(), b"close") {
                self.last = true;
            }
            if name == TRAILER && (self.shape.http10() || !self.shape.can_chunk()) {
                return Ok(());
            }
            self.join(name.as_str().as_bytes());
            self.out.extend_from_slice(value.as_bytes());
        } else {
            self.wrote_date |= name == DATE;
            plain(name, value, self.out);
        }
        Ok(())
    }

    fn content_length(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<(), Unwritable> {
        match self.body {
            // Trusted to match the body's own length, as in hyper; later
            // values are dropped.
            BodyLength::Known(n) => {
                if !self.line_open {
                    self.encoding = Encoding::Length(n);
                    self.length_line(value);
                }
            }
            BodyLength::Unknown => {
                let n = content_length(value.as_bytes()).ok_or(Unwritable::Framing)?;
                match self.length_seen {
                    Some(was) if was != n => return Err(Unwritable::Framing),
                    Some(_) => {}
                    None => {
                        self.encoding = Encoding::Length(n);
                        self.length_seen = Some(n);
                        self.length_line(value);
                    }
                }
            }
            // A HEAD answer keeps the length of the body it stands for.
            BodyLength::None if self.shape.head => {
                self.wrote_len = true;
                plain(name, value, self.out);
            }
            BodyLength::None => {}
        }
        Ok(())
    }

    fn length_line(&mut self, value: &HeaderValue) {
        self.out.extend_from_slice(b"content-length: ");
        self.out.extend_from_slice(value.as_bytes());
        self.wrote_len = true;
        self.line_open = true;
    }

    /// Opens the line of a special name, or joins the open one with ", ";
    /// true when it opened.
    fn join(&mut self, name: &[u8]) -> bool {
        if self.line_open {
            self.out.extend_from_slice(b", ");
            return false;
        }
        self.out.extend_from_slice(name);
        self.out.extend_from_slice(b": ");
        self.line_open = true;
        true
    }

    /// Ends the line of a special name, if one is being written; a coding
    /// line whose last coding is not `chunked` gets it added. (hyper keeps
    /// that flag past the coding's line and adds `, chunked` to the next
    /// special line too; figway's answers never carry `Transfer-Encoding`,
    /// which the proxy removes as hop-by-hop, so the difference never
    /// shows.)
    fn close_line(&mut self) {
        if std::mem::take(&mut self.line_open) {
            if std::mem::take(&mut self.add_chunked) {
                self.out.extend_from_slice(b", chunked");
            }
            self.out.extend_from_slice(b"\r\n");
        }
    }

    /// The framing the fields left unsaid, `Date` if none came, the blank
    /// line.
    fn finish(mut self, date: impl FnOnce() -> [u8; 29]) -> Encoded {
        self.close_line();
        let shape = self.shape;
        let out = &mut *self.out;
        if !self.wrote_len {
            self.encoding = match self.body {
                BodyLength::Unknown if shape.http10() || !shape.can_chunk() => {
                    Encoding::CloseDelimited
                }
                BodyLength::Unknown => {
                    out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                    Encoding::Chunked
                }
                BodyLength::None | BodyLength::Known(0) => {
                    if !shape.bodiless && !shape.head {
                        out.extend_from_slice(b"content-length: 0\r\n");
                    }
                    Encoding::Length(0)
                }
                BodyLength::Known(_) if shape.bodiless => Encoding::Length(0),
                BodyLength::Known(n) => {
                    out.extend_from_slice(b"content-length: ");
                    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                    out.extend_from_slice(b"\r\n");
                    Encoding::Length(n)
                }
            };
        }
        if shape.head || shape.bodiless {
            self.encoding = Encoding::Length(0);
        }
        if !self.wrote_date {
            out.extend_from_slice(b"date: ");
            out.extend_from_slice(&date());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        Encoded {
            encoding: self.encoding,
            keep_alive: !self.last && self.encoding != Encoding::CloseDelimited,
        }
    }
}

fn plain(name: &HeaderName, value: &HeaderValue, out: &mut Vec<u8>) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn status_line(status: StatusCode, version: Version, parts: &Parts, out: &mut Vec<u8>) {
    let reason = parts.extensions.get::<hyper::ext::ReasonPhrase>();
    if version == Version::HTTP_11 && status == StatusCode::OK && reason.is_none() {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        return;
    }
    out.extend_from_slice(if version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    match reason {
        Some(r) => out.extend_from_slice(r.as_bytes()),
        None => out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes()),
    }
    out.extend_from_slice(b"\r\n");
}

fn has_token_in(headers: &HeaderMap, token: &[u8]) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .any(|v| has_token(v.as_bytes(), token))
}

#[cfg(test)]
mod tests;
