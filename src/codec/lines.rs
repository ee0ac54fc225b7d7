//! An answer's header lines kept as the bytes figway's server writes them
//! (`name: value\r\n`, the name lowercase), for the common answer nothing
//! reads or edits between an HTTP/1.1 upstream and a client of figway's
//! own HTTP/1.1 server. Parsing those lines into a `HeaderMap` only to
//! write the map out again was ~1,500 instructions a small request (a map
//! entry and a shared reference to the head's buffer per line, then the
//! encoder's walk over the map; benches/instructions.sh). The upstream
//! client renders them (`upstream::h1::head`), `proxy::respond` adds its
//! `x-request-id`, `response::encode_lines` writes them behind the status
//! line. Where anything reads the answer's fields (route edits, a shadow
//! compare, a 101's hand-over, hyper's servers for TLS and HTTP/2), the
//! map is made instead, as before.

use std::cell::RefCell;

/// What a field name is to a response head's framing and to the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ContentLength,
    TransferEncoding,
    Connection,
    Date,
    /// One of the other hop-by-hop fields the proxy removes from every
    /// answer: `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`,
    /// `Upgrade` (as `headers::remove_hop_by_hop` lists them).
    HopByHop,
    /// `x-request-id`, which the proxy sets on every answer in place of
    /// the upstream's (SPEC §4).
    RequestId,
    Other,
}

/// The kind of a field name as `scan` gave it (a token, in any case).
pub fn kind(name: &[u8]) -> Kind {
    let is = |lower: &[u8]| super::same_name(name, lower);
    match name.len() {
        2 if name.eq_ignore_ascii_case(b"te") => Kind::HopByHop,
        4 if is(b"date") => Kind::Date,
        7 if is(b"trailer") || is(b"upgrade") => Kind::HopByHop,
        10 if is(b"connection") => Kind::Connection,
        10 if is(b"keep-alive") => Kind::HopByHop,
        12 if is(b"x-request-id") => Kind::RequestId,
        14 if is(b"content-length") => Kind::ContentLength,
        16 if is(b"proxy-connection") => Kind::HopByHop,
        17 if is(b"transfer-encoding") => Kind::TransferEncoding,
        _ => Kind::Other,
    }
}

/// The most bytes a spare buffer may hold to be kept for the next answer,
/// and how many a thread keeps (as `codec`'s spare maps).
const SPARE_CAPACITY: usize = 4 * 1024;
const SPARE_KEPT: usize = 32;

thread_local! {
    /// Buffers of answers whose heads are written, for the next heads
    /// parsed on this thread: no allocation a request.
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An answer's header lines, ready to write.
#[derive(Debug)]
pub struct HeadLines {
    bytes: Vec<u8>,
    /// A `content-length` line is among them.
    pub length: bool,
    /// A `date` line is among them.
    pub date: bool,
}

impl HeadLines {
    /// No lines yet, in a buffer the thread had spare when it has one.
    pub fn new() -> HeadLines {
        let bytes = SPARE.with_borrow_mut(Vec::pop).unwrap_or_default();
        HeadLines {
            bytes,
            length: false,
            date: false,
        }
    }

    /// Appends whole lines, `name: value\r\n` each, their names
    /// lowercase.
    pub fn extend(&mut self, lines: &[u8]) {
        self.bytes.extend_from_slice(lines);
    }

    /// Appends one line; `name` is lowercase.
    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        self.bytes.extend_from_slice(name);
        self.bytes.extend_from_slice(b": ");
        self.bytes.extend_from_slice(value);
        self.bytes.extend_from_slice(b"\r\n");
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// What becomes of a head's `Content-Length` line among its lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthLine {
    Drop,
    /// The (one) line, as written.
    Keep,
    /// One line with this number: the length was repeated.
    As(u64),
}

impl HeadLines {
    /// The fields [`super::scan_response`] noted in `head` (the buffer they
    /// were parsed from) as lines: the names lowercased in place, then runs
    /// of kept lines already written `name: value\r\n` copied whole (most
    /// heads are one run, or a few where a hop-by-hop line sat), any other
    /// line rewritten so. Hop-by-hop fields and `x-request-id` stay out;
    /// `length` says what of `Content-Length`.
    pub fn render(head: &mut [u8], length: LengthLine) -> HeadLines {
        let mut lines = HeadLines::new();
        let mut run: Option<(usize, usize)> = None;
        super::SPANS.with_borrow(|spans| {
            for &[n0, n1, v0, v1] in spans {
                super::lowercase(&mut head[n0..n1]);
                let keep = match kind(&head[n0..n1]) {
                    Kind::ContentLength => match length {
                        LengthLine::As(n) if !lines.length => {
                            lines.flush(&mut run, head);
                            lines.push(b"content-length", itoa::Buffer::new().format(n).as_bytes());
                            lines.length = true;
                            continue;
                        }
                        LengthLine::Keep => {
                            lines.length = true;
                            true
                        }
                        _ => false,
                    },
                    Kind::Date => {
                        lines.date = true;
                        true
                    }
                    Kind::Other => true,
                    // The proxy adds its own (`proxy::respond`), as it
                    // replaces the upstream's in a map.
                    Kind::RequestId => false,
                    Kind::Connection | Kind::TransferEncoding | Kind::HopByHop => false,
                };
                if !keep {
                    continue;
                }
                let written = v0 == n1 + 2
                    && v1 > v0
                    && head[n1..v0] == *b": "
                    && head.get(v1..v1 + 2) == Some(b"\r\n");
                match run {
                    Some((start, end)) if written && end == n0 => run = Some((start, v1 + 2)),
                    _ => {
                        lines.flush(&mut run, head);
                        if written {
                            run = Some((n0, v1 + 2));
                        } else {
                            lines.push(&head[n0..n1], &head[v0..v1]);
                        }
                    }
                }
            }
        });
        lines.flush(&mut run, head);
        lines
    }

    /// Copies a run of lines out of `head`, ending it.
    fn flush(&mut self, run: &mut Option<(usize, usize)>, head: &[u8]) {
        if let Some((start, end)) = run.take() {
            self.extend(&head[start..end]);
        }
    }
}

impl Default for HeadLines {
    fn default() -> HeadLines {
        HeadLines::new()
    }
}

impl Drop for HeadLines {
    fn drop(&mut self) {
        let mut bytes = std::mem::take(&mut self.bytes);
        if bytes.capacity() == 0 || bytes.capacity() > SPARE_CAPACITY {
            return;
        }
        bytes.clear();
        super::keep_spare(&SPARE, bytes, SPARE_KEPT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_read_in_any_case() {
        for (name, want) in [
            ("Content-Length", Kind::ContentLength),
            ("TRANSFER-ENCODING", Kind::TransferEncoding),
            ("connection", Kind::Connection),
            ("Date", Kind::Date),
            ("Keep-Alive", Kind::HopByHop),
            ("Proxy-Connection", Kind::HopByHop),
            ("te", Kind::HopByHop),
            ("TE", Kind::HopByHop),
            ("Trailer", Kind::HopByHop),
            ("Upgrade", Kind::HopByHop),
            ("X-Request-ID", Kind::RequestId),
            ("Content-Type", Kind::Other),
            ("x-date", Kind::Other),
            ("tf", Kind::Other),
            ("content-lengtx", Kind::Other),
            ("Connectiom", Kind::Other),
        ] {
            assert_eq!(kind(name.as_bytes()), want, "{name}");
        }
    }

    #[test]
    fn the_kinds_hop_by_hop_are_the_ones_the_proxy_removes() {
        for header in crate::headers::hop_by_hop() {
            let name = header.as_str();
            assert!(
                matches!(
                    kind(name.as_bytes()),
                    Kind::HopByHop | Kind::Connection | Kind::TransferEncoding
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn lines_are_written_as_given() {
        let mut lines = HeadLines::new();
        lines.extend(b"content-type: text/plain\r\nx-a: 1\r\n");
        lines.push(b"server", b"up");
        lines.push(b"x-empty", b"");
        assert_eq!(
            lines.as_bytes(),
            b"content-type: text/plain\r\nx-a: 1\r\nserver: up\r\nx-empty: \r\n"
        );
    }

    #[test]
    fn buffers_go_back_to_the_thread() {
        let mut lines = HeadLines::new();
        lines.push(b"a", b"b");
        let ptr = lines.as_bytes().as_ptr();
        drop(lines);
        let again = HeadLines::new();
        assert!(again.as_bytes().is_empty());
        let mut again = again;
        again.push(b"c", b"d");
        assert_eq!(again.as_bytes().as_ptr(), ptr);
    }
}
