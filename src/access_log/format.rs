//! What an access line says and how it reads (SPEC §2): the [`Line`], the
//! JSON object and the pretty line, JSON string escaping, and the timestamp.
//!
//! By hand, not with `write!`: `core::fmt` costs several times more per
//! line than copying bytes and rendering integers with `itoa`, and this
//! runs once per request.

use std::cell::RefCell;
use std::io::Write;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::LogFormat;

/// What one line says. Borrowed from the request's context: nothing is
/// copied to build it.
pub struct Line<'a> {
    pub format: LogFormat,
    /// When the request ended; the line shows when it started.
    pub end: SystemTime,
    pub request_id: &'a [u8],
    /// The client address as text.
    pub client: &'a [u8],
    /// A token (RFC 9110 §5.6.2, as httparse and `http` check it): nothing
    /// in it needs escaping.
    pub method: &'a str,
    pub path: &'a str,
    /// The header's bytes; shown only when they are visible ASCII (`null`
    /// otherwise, as `HeaderValue::to_str` decides).
    pub host: Option<&'a [u8]>,
    pub route: Option<Name<'a>>,
    pub upstream: Option<Name<'a>>,
    /// `host:port` as validated at load (letters, digits, `-`, `.`, `:`,
    /// an IP literal's brackets): nothing in it needs escaping.
    pub target: Option<&'a str>,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration: Duration,
    pub retries: u32,
    /// An [`crate::error::ErrorKind`]'s name: lowercase and `_`.
    pub error: Option<&'static str>,
}

/// A name from the config (a route's, an upstream's), with its JSON string
/// rendered when the config was compiled: names are free text, and
/// escaping them per line was ~100 instructions each.
#[derive(Clone, Copy)]
pub struct Name<'a> {
    pub text: &'a str,
    /// `text` as a JSON string, quotes included ([`json_string`]).
    pub json: &'a str,
}

/// `text` as a JSON string, quotes included, for [`Name::json`].
pub fn json_string(text: &str) -> Box<str> {
    let mut buf = Vec::with_capacity(text.len() + 2);
    self::text(&mut buf, text);
    // Escaping keeps UTF-8 UTF-8 (it only replaces ASCII bytes).
    String::from_utf8(buf)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
        .into_boxed_str()
}

thread_local! {
    /// The last rendered timestamp: (unix milliseconds, its text).
    static STAMP: RefCell<(u64, [u8; 24])> = const { RefCell::new((u64::MAX, [0; 24])) };
}

pub(super) fn json(buf: &mut Vec<u8>, l: &Line<'_>) {
    buf.extend_from_slice(b"{\"ts\":\"");
    stamp(buf, l.end, l.duration);
    buf.extend_from_slice(b"\",\"request_id\":");
    string(buf, l.request_id);
    buf.extend_from_slice(b",\"client\":\"");
    buf.extend_from_slice(l.client);
    buf.extend_from_slice(b"\",\"method\":\"");
    plain(buf, l.method);
    buf.extend_from_slice(b"\",\"path\":");
    text(buf, l.path);
    buf.extend_from_slice(b",\"host\":");
    match l.host {
        Some(host) if !any_needs_escape(host, true) => quoted(buf, host),
        Some(host) => match visible(host) {
            Some(t) => text(buf, t),
            None => buf.extend_from_slice(b"null"),
        },
        None => buf.extend_from_slice(b"null"),
    }
    for (key, name) in [
        (&b",\"route\":"[..], l.route),
        (b",\"upstream\":", l.upstream),
    ] {
        buf.extend_from_slice(key);
        buf.extend_from_slice(name.map_or("null", |n| n.json).as_bytes());
    }
    buf.extend_from_slice(b",\"target\":");
    plain_or_null(buf, l.target);
    buf.extend_from_slice(b",\"status\":");
    number(buf, l.status);
    buf.extend_from_slice(b",\"bytes_in\":");
    number(buf, l.bytes_in);
    buf.extend_from_slice(b",\"bytes_out\":");
    number(buf, l.bytes_out);
    buf.extend_from_slice(b",\"duration_ms\":");
    millis(buf, l.duration);
    buf.extend_from_slice(b",\"retries\":");
    number(buf, l.retries);
    buf.extend_from_slice(b",\"error\":");
    plain_or_null(buf, l.error);
    buf.push(b'}');
}

pub(super) fn pretty(buf: &mut Vec<u8>, l: &Line<'_>) {
    stamp(buf, l.end, l.duration);
    buf.push(b' ');
    number(buf, l.status);
    for part in [
        b" ",
        l.method.as_bytes(),
        b" ",
        l.host.and_then(visible).unwrap_or("").as_bytes(),
        l.path.as_bytes(),
        b" -> ",
        l.route.map_or("-", |n| n.text).as_bytes(),
        b" ",
        l.upstream.map_or("-", |n| n.text).as_bytes(),
        b"/",
        l.target.unwrap_or("-").as_bytes(),
        b" ",
    ] {
        buf.extend_from_slice(part);
    }
    if l.retries > 0 {
        buf.extend_from_slice(b"retries=");
        number(buf, l.retries);
        buf.push(b' ');
    }
    millis(buf, l.duration);
    buf.extend_from_slice(b"ms in=");
    number(buf, l.bytes_in);
    buf.extend_from_slice(b" out=");
    number(buf, l.bytes_out);
    buf.extend_from_slice(b" client=");
    buf.extend_from_slice(l.client);
    buf.extend_from_slice(b" id=");
    buf.extend_from_slice(l.request_id);
    if let Some(e) = l.error {
        buf.extend_from_slice(b" error=");
        buf.extend_from_slice(e.as_bytes());
    }
}

fn number(buf: &mut Vec<u8>, n: impl itoa::Integer) {
    buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Milliseconds with three decimals (microsecond precision).
fn millis(buf: &mut Vec<u8>, d: Duration) {
    // In u64 (585,000 years of microseconds): `as_micros` is a u128, and
    // its division by 1000 a call to `__udivti3`.
    let micros = d
        .as_secs()
        .saturating_mul(1_000_000)
        .saturating_add(u64::from(d.subsec_micros()));
    number(buf, micros / 1000);
    let frac = (micros % 1000) as u16;
    buf.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

/// Renders an address for a line; the connection's own peer is rendered
/// once per connection instead (`ConnCtx::forwarded_for`).
pub fn ip_text(ip: IpAddr, out: &mut [u8; 46]) -> &[u8] {
    let mut cursor = std::io::Cursor::new(&mut out[..]);
    // 46 bytes hold the longest IPv6 text (45), so this cannot fail.
    let _ = write!(cursor, "{ip}");
    let len = cursor.position() as usize;
    &out[..len]
}

/// A JSON string: quoted, with `"`, `\` and control bytes escaped, and any
/// byte that is not UTF-8 replaced (header values may carry obs-text).
fn string(buf: &mut Vec<u8>, value: &[u8]) {
    // Plain ASCII (an id figway made, nearly every client's) needs neither
    // the UTF-8 check nor escaping.
    if !any_needs_escape(value, true) {
        return quoted(buf, value);
    }
    match std::str::from_utf8(value) {
        Ok(t) => text(buf, t),
        Err(_) => text(buf, &String::from_utf8_lossy(value)),
    }
}

/// A header value as text when it is visible ASCII (`HeaderValue::to_str`'s
/// rule: printable ASCII and tab).
fn visible(value: &[u8]) -> Option<&str> {
    let ok = value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b));
    if ok {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// Bytes known to need no escaping, quoted.
fn quoted(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.push(b'"');
    buf.extend_from_slice(bytes);
    buf.push(b'"');
}

/// `text` as a JSON string (it needs no escaping: [`plain`]), or `null`.
fn plain_or_null(buf: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(t) => {
            buf.push(b'"');
            plain(buf, t);
            buf.push(b'"');
        }
        None => buf.extend_from_slice(b"null"),
    }
}

/// Text that by where it comes from needs no escaping (a method token, a
/// validated authority, an error kind's name). Checked in debug builds.
fn plain(buf: &mut Vec<u8>, text: &str) {
    debug_assert!(!any_needs_escape(text.as_bytes(), false), "{text:?}");
    buf.extend_from_slice(text.as_bytes());
}

fn text(buf: &mut Vec<u8>, t: &str) {
    buf.push(b'"');
    escape(buf, t);
    buf.push(b'"');
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Whether any byte of `bytes` needs escaping (with `non_ascii`, or is not
/// ASCII), eight at a time: a byte-at-a-time scan was the largest part of
/// a line's cost.
fn any_needs_escape(bytes: &[u8], non_ascii: bool) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // The high bit of each byte of the result is set where `word`'s byte
    // is below `n` (n <= 0x80; a byte >= 0x80 never sets it because of
    // the `!word`), the classic "has less than" bit trick.
    fn below(word: u64, n: u8) -> u64 {
        word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS
    }
    fn equal(word: u64, b: u8) -> u64 {
        below(word ^ (ONES * u64::from(b)), 1)
    }
    let high = if non_ascii { HIGHS } else { 0 };
    let flagged = |word: &[u8]| {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(word);
        let word = u64::from_ne_bytes(eight);
        below(word, 0x20) | equal(word, b'"') | equal(word, b'\\') | (word & high) != 0
    };
    if bytes.len() < 8 {
        // Copying a short tail into a padded word was a call to memcpy.
        return bytes
            .iter()
            .any(|&b| needs_escape(b) || (non_ascii && b >= 0x80));
    }
    let mut chunks = bytes.chunks_exact(8);
    if chunks.any(flagged) {
        return true;
    }
    // The tail as the last eight bytes, overlapping the last whole word.
    !chunks.remainder().is_empty() && flagged(&bytes[bytes.len() - 8..])
}

fn escape(buf: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    // Nearly every value is plain: one pass to see it, one copy.
    if !any_needs_escape(bytes, false) {
        buf.extend_from_slice(bytes);
        return;
    }
    let mut start = 0;
    for (i, b) in bytes.iter().copied().enumerate() {
        if !needs_escape(b) {
            continue;
        }
        buf.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                buf.extend_from_slice(b"\\u00");
                buf.push(HEX[usize::from(b >> 4)]);
                buf.push(HEX[usize::from(b & 15)]);
            }
        }
        start = i + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
}

/// The request's start as RFC 3339 with milliseconds, rendered once per
/// millisecond per thread.
fn stamp(buf: &mut Vec<u8>, end: SystemTime, duration: Duration) {
    // Nanoseconds in u64 (until 2554): the start is an integer
    // subtraction, not a `SystemTime` one, and milliseconds a division by
    // a constant (`as_millis` is a u128, its division a call).
    let nanos = |d: Duration| {
        d.as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(d.subsec_nanos()))
    };
    let end = end.duration_since(UNIX_EPOCH).map_or(0, nanos);
    let ms = end.saturating_sub(nanos(duration)) / 1_000_000;
    STAMP.with_borrow_mut(|(last, text)| {
        if *last != ms {
            crate::timefmt::rfc3339_millis_into(UNIX_EPOCH + Duration::from_millis(ms), text);
            *last = ms;
        }
        buf.extend_from_slice(&text[..]);
    });
}

#[cfg(test)]
mod tests;
