//! figway's own HTTP/1.1 server codec, the client-facing half of
//! `docs/http1-codec.md`. It sits below `body`, `proxy` and `server` (the
//! request body the proxy forwards lives here), and imports none of them;
//! the connection loop that uses it is `server::h1`.
//!
//! [`request`] parses a request head with every refusal and framing rule
//! hyper's server applies; [`response`] writes the answer's head as
//! hyper's server writes it (status line, joined special lines, the body's
//! framing, `Date`, keep-alive); [`chunked`] decodes a chunked request body
//! with hyper's server's strict rules. Those three are pure functions over
//! bytes, so that unit tests and fuzz targets drive them directly, and
//! `tests/codec_differential.rs` holds them to hyper over loopback, case by
//! case and byte for byte. The parts with I/O: [`socket`], the client
//! socket the server and the request body share; [`client_body`], that
//! body; [`upgraded`], the socket handed to a tunnel after a 101;
//! [`lines`], an upstream's fields kept as the lines [`response`] writes,
//! for an answer nothing reads on its way (docs/http1-codec.md, session
//! 17). [`scan`] finds a head's lines, by `httparse`'s rules a word at a
//! time (session 18), for [`request`] and the upstream client. The field
//! rules below are shared with `framing`'s guard (lengths and codings) and
//! the upstream client (a response head's lines through [`fields`]).

pub mod chunked;
pub mod client_body;
pub mod lines;
pub mod request;
pub mod response;
pub mod scan;
pub mod socket;
pub mod upgraded;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

thread_local! {
    /// Where each header line of the head parsed last sits: a buffer the
    /// thread reuses, where an array for the most lines a head may have
    /// would be zeroed (3 KiB) for every message (the upstream client's
    /// first cut paid 3,200 instructions a request for that).
    static SPANS: std::cell::RefCell<Vec<[usize; 4]>> =
        std::cell::RefCell::new(Vec::with_capacity(100));
}

/// Scans the response head at the front of `buf` ([`scan::response`]),
/// noting where its field lines sit for [`fields`], [`each_field`] and
/// `HeadLines::render`.
pub fn scan_response(buf: &[u8], max: usize) -> Result<Option<(scan::Status, usize)>, scan::Error> {
    SPANS.with_borrow_mut(|spans| scan::response(buf, max, spans))
}

/// Scans the request head at the front of `buf` ([`scan::request`]),
/// noting where its field lines sit for [`fields`] and [`each_field`].
pub fn scan_request(
    buf: &[u8],
    max: usize,
) -> Result<Option<(scan::RequestLine, usize)>, scan::Error> {
    SPANS.with_borrow_mut(|spans| scan::request(buf, max, spans))
}

/// Each field line noted last, as its name and value out of `head` (the
/// buffer they were noted in).
pub fn each_field(head: &[u8], mut f: impl FnMut(&[u8], &[u8])) {
    SPANS.with_borrow(|spans| {
        for &[n0, n1, v0, v1] in spans {
            f(&head[n0..n1], &head[v0..v1]);
        }
    });
}

/// The lines [`scan_request`] or [`scan_response`] noted, out of `head`
/// (the buffer, frozen), into a map with `room` more slots; `keep` sees
/// each line first and says whether it goes in. A name or value `http`
/// refuses is `bad`.
pub fn fields<E: Copy>(
    head: &Bytes,
    room: usize,
    bad: E,
    mut keep: impl FnMut(&HeaderName, &HeaderValue, &mut HeaderMap) -> Result<bool, E>,
) -> Result<HeaderMap, E> {
    SPANS.with_borrow(|spans| {
        let mut headers = spare_map(spans.len() + room);
        for &[n0, n1, v0, v1] in spans {
            let name = name(&head[n0..n1]).map_err(|_| bad)?;
            // SAFETY (a contract of `http`'s, not of memory): the value is
            // one `scan` accepted, whose rule for value bytes (tab,
            // 0x20-0x7e, 0x80-0xff) is `http`'s own, so the check
            // `from_maybe_shared` would repeat byte by byte (~50
            // instructions a field) cannot fail. Debug builds check anyway.
            let value = unsafe { HeaderValue::from_maybe_shared_unchecked(head.slice(v0..v1)) };
            if keep(&name, &value, &mut headers)? {
                headers.append(name, value);
            }
        }
        Ok(headers)
    })
}

/// A field name `scan` accepted (a token, RFC 9110 §5.6.2), as a
/// `HeaderName`: the names most heads carry are matched as they come,
/// in any case, without `http`'s pass that lowercases the name into a
/// buffer before looking it up (~100 instructions a field, six or so
/// fields a request). Any other goes through `HeaderName::from_bytes`.
fn name(bytes: &[u8]) -> Result<HeaderName, http::header::InvalidHeaderName> {
    for (lower, name) in common_names(bytes.len()) {
        if same_name(bytes, lower) {
            return Ok(name.clone());
        }
    }
    HeaderName::from_bytes(bytes)
}

/// The entries of [`COMMON_NAMES`] `len` bytes long.
fn common_names(len: usize) -> &'static [(&'static [u8], HeaderName)] {
    match len {
        4 => &COMMON_NAMES[0..4],
        6 => &COMMON_NAMES[4..8],
        7 => &COMMON_NAMES[8..11],
        10 => &COMMON_NAMES[11..14],
        12 => &COMMON_NAMES[14..15],
        13 => &COMMON_NAMES[15..19],
        14 => &COMMON_NAMES[19..20],
        15 => &COMMON_NAMES[20..22],
        16 => &COMMON_NAMES[22..23],
        17 => &COMMON_NAMES[23..24],
        _ => &[],
    }
}

/// The names [`name`] matches as they come, by length, each with its
/// lowercase bytes (`HeaderName::as_str` is a lookup of its own).
static COMMON_NAMES: [(&[u8], HeaderName); 24] = {
    use http::header::*;
    [
        (b"host", HOST),
        (b"date", DATE),
        (b"etag", ETAG),
        (b"vary", VARY),
        (b"server", SERVER),
        (b"accept", ACCEPT),
        (b"cookie", COOKIE),
        (b"origin", ORIGIN),
        (b"expires", EXPIRES),
        (b"upgrade", UPGRADE),
        (b"referer", REFERER),
        (b"connection", CONNECTION),
        (b"user-agent", USER_AGENT),
        (b"set-cookie", SET_COOKIE),
        (b"content-type", CONTENT_TYPE),
        (b"last-modified", LAST_MODIFIED),
        (b"cache-control", CACHE_CONTROL),
        (b"accept-ranges", ACCEPT_RANGES),
        (b"authorization", AUTHORIZATION),
        (b"content-length", CONTENT_LENGTH),
        (b"accept-encoding", ACCEPT_ENCODING),
        (b"accept-language", ACCEPT_LANGUAGE),
        (b"content-encoding", CONTENT_ENCODING),
        (b"transfer-encoding", TRANSFER_ENCODING),
    ]
};

/// Whether a token equals `lower` (a lowercase name of the same length)
/// in any case. Setting bit 0x20 lowercases a letter; of the bytes a token
/// may hold, no other becomes a letter or `-` by it (only `\r` would
/// become `-`, and a token has none), so a word at a time is enough.
fn same_name(token: &[u8], lower: &[u8]) -> bool {
    fn word(bytes: &[u8], at: usize) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(w)
    }
    fn half(bytes: &[u8], at: usize) -> u32 {
        let mut w = [0u8; 4];
        w.copy_from_slice(&bytes[at..at + 4]);
        u32::from_le_bytes(w)
    }
    const LOWER64: u64 = 0x2020_2020_2020_2020;
    const LOWER32: u32 = 0x2020_2020;
    let n = lower.len();
    if token.len() != n {
        return false;
    }
    if n < 8 {
        // 4 to 7 bytes: two words that overlap.
        return n >= 4
            && half(token, 0) | LOWER32 == half(lower, 0)
            && half(token, n - 4) | LOWER32 == half(lower, n - 4);
    }
    // Whole words, then the last eight bytes (overlapping the one before).
    let mut at = 0;
    while at + 8 <= n {
        if word(token, at) | LOWER64 != word(lower, at) {
            return false;
        }
        at += 8;
    }
    word(token, n - 8) | LOWER64 == word(lower, n - 8)
}

/// Lowercases a token (a field name) in place, a word at a time where
/// `make_ascii_lowercase` goes a byte at a time (~10 instructions a byte:
/// ~400 a request for an answer's names, benches/instructions.sh).
pub fn lowercase(token: &mut [u8]) {
    /// Sets bit 0x20 of the bytes of `w` that are `A`-`Z`: a byte's low
    /// seven bits plus 0x3f carry into its top bit from `A` up, plus 0x25
    /// from past `Z` up, and neither sum leaves the byte.
    fn lower(w: u64) -> u64 {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        let low = w & !HIGH;
        let from_a = low + ONES * 0x3f;
        let past_z = low + ONES * 0x25;
        w | ((from_a & !past_z & !w & HIGH) >> 2)
    }
    fn at(token: &mut [u8], i: usize, n: usize) {
        let mut w = [0u8; 8];
        w[..n].copy_from_slice(&token[i..i + n]);
        let w = lower(u64::from_le_bytes(w)).to_le_bytes();
        token[i..i + n].copy_from_slice(&w[..n]);
    }
    let n = token.len();
    if n < 8 {
        // 4 to 7 bytes: two words of four that overlap; fewer, byte by byte.
        if n >= 4 {
            at(token, 0, 4);
            at(token, n - 4, 4);
        } else {
            token.make_ascii_lowercase();
        }
        return;
    }
    // Whole words, then the last eight bytes (overlapping the one before:
    // lowercasing twice changes nothing).
    let mut i = 0;
    while i + 8 <= n {
        at(token, i, 8);
        i += 8;
    }
    at(token, n - 8, 8);
}

thread_local! {
    /// Header maps whose head has been written, kept for the next heads
    /// parsed on this thread: a map is two allocations (and as many frees),
    /// and every proxied request parses two heads, the client's and the
    /// upstream's.
    static SPARE_MAPS: std::cell::RefCell<Vec<HeaderMap>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Spare maps a thread keeps, and the most headers one may hold to be
/// kept: enough for every request in flight on a busy worker to find one,
/// without keeping the map of a rare huge head.
const SPARE_MAPS_KEPT: usize = 32;
const SPARE_MAP_CAPACITY: usize = 128;

/// An empty header map with room for `capacity` fields: a spare one when
/// the thread has one.
fn spare_map(capacity: usize) -> HeaderMap {
    match SPARE_MAPS.with_borrow_mut(Vec::pop) {
        Some(mut map) => {
            // A map of at most `SPARE_MAP_CAPACITY` and a head of at most
            // `max_header_bytes` lines: within `http`'s limit.
            let _ = map.try_reserve(capacity);
            map
        }
        None => HeaderMap::with_capacity(capacity),
    }
}

/// Puts a parsed head's `map` into `slot`, the map of parts just made by
/// `Request::new` / `Response::new` (`http` builds parts only so): that
/// map never allocated, and dropping it still ran ~60 instructions of drop
/// glue, twice a request.
pub fn install(slot: &mut HeaderMap, map: HeaderMap) {
    let made = std::mem::replace(slot, map);
    if made.capacity() == 0 {
        // `HeaderMap::new` does not allocate: nothing to free.
        std::mem::forget(made);
    }
}

/// Gives back a map whose head has been written, emptied, for the thread's
/// next head. Its values share the buffer they were parsed from: emptied
/// here, the map keeps none of it.
pub fn give_back(mut map: HeaderMap) {
    if map.capacity() == 0 {
        // Never allocated (an answer whose fields came as lines): nothing
        // to keep, and its drop glue is ~60 instructions of nothing.
        std::mem::forget(map);
        return;
    }
    if map.capacity() > SPARE_MAP_CAPACITY {
        return;
    }
    map.clear();
    keep_spare(&SPARE_MAPS, map, SPARE_MAPS_KEPT);
}

/// Puts `item` among the thread's `spares` for the next one who needs one,
/// unless it keeps `kept` already (then it is dropped). The one home of
/// the thread's spare lists: header maps (here), read buffers (`socket`),
/// answers' lines (`lines`). `try_with`: a thread being torn down just
/// drops it.
pub fn keep_spare<T: 'static>(
    spares: &'static std::thread::LocalKey<std::cell::RefCell<Vec<T>>>,
    item: T,
    kept: usize,
) {
    let _ = spares.try_with(|spares| {
        let mut spares = spares.borrow_mut();
        if spares.len() < kept {
            spares.push(item);
        }
    });
}

/// A `Content-Length` value as hyper reads one: ASCII digits only (no
/// sign, no list, no space inside), within u64. The one home of that rule
/// for client requests and figway's answers (`framing`'s guard uses it
/// too).
pub fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, b| match b {
        b'0'..=b'9' => n.checked_mul(10)?.checked_add(u64::from(b - b'0')),
        _ => None,
    })
}

/// Whether a comma-separated list (a `Connection` value) holds `token`,
/// case-insensitively. A value with a byte outside visible ASCII and tab
/// holds no token at all: hyper reads these values as `str` and skips one
/// that is not (so `keep-alive, \x80` keeps no connection open).
pub fn has_token(value: &[u8], token: &[u8]) -> bool {
    is_text(value)
        && value
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Whether the last coding of one `Transfer-Encoding` line is `chunked`
/// (each line decides anew, as in hyper; a line that is not text, see
/// [`has_token`], is not chunked).
pub fn last_coding_is_chunked(value: &[u8]) -> bool {
    is_text(value)
        && value
            .rsplit(|b| *b == b',')
            .next()
            .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// What `HeaderValue::to_str` accepts: visible ASCII, space and tab.
fn is_text(value: &[u8]) -> bool {
    value
        .iter()
        .all(|b| *b == b'\t' || (b' '..=b'~').contains(b))
}

#[cfg(test)]
mod tests;
