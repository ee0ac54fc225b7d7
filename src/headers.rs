//! Header rewriting between client and upstream (SPEC §4): hop-by-hop
//! removal, `X-Forwarded-*`, `x-request-id`. The names that never change are
//! built once as statics.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Marks figway's shadow copies (SPEC §4); only figway sets it.
pub static X_FIGWAY_SHADOW: HeaderName = HeaderName::from_static("x-figway-shadow");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1),
/// plus the legacy `Keep-Alive` and `Proxy-Connection`.
pub fn hop_by_hop() -> [&'static HeaderName; 7] {
    [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
    ]
}

/// Maps of at most this many fields are scanned by [`find`].
const SCAN_UP_TO: usize = 7;

/// A field's first value, as `HeaderMap::get`, found by comparing names
/// in a map of a few fields (a request's usually are) instead of hashing
/// the name and probing. The request path asks about some names (`Host`,
/// `Upgrade`, `Content-Type`, names it removes) most requests never carry
/// or carry first; all its lookups together cost ~150 instructions a
/// request less so (benches/instructions.sh), though `HeaderMap::iter` is
/// not cheap either (~20 instructions a field).
pub fn find<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h HeaderValue> {
    if headers.len() > SCAN_UP_TO {
        return headers.get(name);
    }
    headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
}

/// Whether the map has a `name` field, as `HeaderMap::contains_key`: for
/// the names a request path asks about and seldom finds (`Upgrade`,
/// `Transfer-Encoding`, the shadow marker), a walk over the map's names
/// alone, a few instructions a name where [`find`]'s walk over fields and
/// values is ~20 (benches/instructions.sh: ~70 a question, ~15 now).
#[inline]
pub fn has(headers: &HeaderMap, name: &HeaderName) -> bool {
    if headers.len() > SCAN_UP_TO {
        return headers.contains_key(name);
    }
    headers.keys().any(|n| n == name)
}

/// Removes every `name` field, looking first (a removal is a lookup too).
pub fn remove(headers: &mut HeaderMap, name: &HeaderName) {
    if has(headers, name) {
        headers.remove(name);
    }
}

/// A route's header edits (SPEC §12): removals first, then sets, which
/// replace any value already there. Names and values were parsed at load;
/// a set clones them, which is a reference count, not a copy.
pub fn edit(headers: &mut HeaderMap, remove: &[HeaderName], set: &[(HeaderName, HeaderValue)]) {
    for name in remove {
        headers.remove(name);
    }
    for (name, value) in set {
        headers.insert(name, value.clone());
    }
}

/// Whether `name` is one of the hop-by-hop headers figway always drops.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    // The seven are 2, 7, 10, 16 or 17 bytes long: most names skip the
    // comparisons.
    matches!(name.as_str().len(), 2 | 7 | 10 | 16 | 17) && hop_by_hop().contains(&name)
}

/// Whether a `Connection` value names a field beyond the hop-by-hop ones
/// removed anyway (`close`, `keep-alive`, `upgrade`, `te`).
pub fn names_others(connection: &[u8]) -> bool {
    // Most say one word alone: its own test skips the split and trim
    // (~150 instructions an answer; benches/instructions.sh).
    if connection.eq_ignore_ascii_case(b"keep-alive") || connection.eq_ignore_ascii_case(b"close") {
        return false;
    }
    connection.split(|b| *b == b',').any(|t| {
        let t = t.trim_ascii();
        !(t.is_empty()
            || t.eq_ignore_ascii_case(b"keep-alive")
            || t.eq_ignore_ascii_case(b"close")
            || t.eq_ignore_ascii_case(b"upgrade")
            || t.eq_ignore_ascii_case(b"te"))
    })
}

/// Drops hop-by-hop headers, including every header `Connection` names.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the message's few names notes which of the seven it
    // carries (most carry none, a response often only `Connection`), so
    // only those are hashed for removal.
    let hop = hop_by_hop();
    let mut present = 0u8;
    for name in headers.keys() {
        // The seven are 2, 7, 10, 16 or 17 bytes long: other names (most
        // of a message's) skip the seven comparisons.
        if !matches!(name.as_str().len(), 2 | 7 | 10 | 16 | 17) {
            continue;
        }
        if let Some(i) = hop.iter().position(|h| *h == name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    // `Connection: keep-alive` / `close` name nothing beyond the static list
    // below; only other tokens are worth collecting (and allocating for).
    let named = headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| names_others(v.as_bytes()));
    if named {
        // Collected first: the names borrow the header map we remove from.
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for (i, name) in hop.into_iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

/// Whether the request is a gRPC call (`application/grpc`, `+proto` and
/// the like).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    // Most requests carry no body, so no type: a look at the names first.
    has(headers, &header::CONTENT_TYPE)
        && find(headers, &header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Whether `TE` lists `trailers` (gRPC clients send `TE: trailers`).
pub fn te_trailers(headers: &HeaderMap) -> bool {
    headers.get_all(header::TE).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"))
    })
}

/// The client's `x-request-id` when it sent a usable one, else a fresh
/// 32-hex-digit id. Either way the header is set on `headers`.
pub fn request_id(headers: &mut HeaderMap) -> HeaderValue {
    // One lookup for both the read and the write.
    match headers.entry(&X_REQUEST_ID) {
        header::Entry::Occupied(mut o) => {
            let id = o.get();
            if !id.is_empty() && id.len() <= 200 {
                return id.clone();
            }
            let id = fresh_request_id();
            o.insert(id.clone());
            id
        }
        header::Entry::Vacant(v) => v.insert(fresh_request_id()).clone(),
    }
}

/// Fresh request ids are rendered this many at a time into one buffer that
/// each id slices: an allocation per 128 requests instead of two each, and
/// clones of an id are reference counts, never copies.
const IDS_PER_SLAB: usize = 128;

thread_local! {
    static ID_SLAB: std::cell::RefCell<(bytes::Bytes, usize)> =
        const { std::cell::RefCell::new((bytes::Bytes::new(), IDS_PER_SLAB)) };
}

fn fresh_request_id() -> HeaderValue {
    // Each byte's two hex digits at once: a digit at a time over a u128
    // was ~190 instructions an id.
    const HEX_PAIRS: [[u8; 2]; 256] = {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut pairs = [[0u8; 2]; 256];
        let mut b = 0;
        while b < 256 {
            pairs[b] = [HEX[b >> 4], HEX[b & 15]];
            b += 1;
        }
        pairs
    };
    ID_SLAB.with_borrow_mut(|(slab, next)| {
        if *next == IDS_PER_SLAB {
            let mut ids = vec![0u8; 32 * IDS_PER_SLAB];
            for id in ids.chunks_exact_mut(32) {
                let random = fastrand::u128(..).to_be_bytes();
                for (digits, byte) in id.chunks_exact_mut(2).zip(random) {
                    digits.copy_from_slice(&HEX_PAIRS[usize::from(byte)]);
                }
            }
            *slab = bytes::Bytes::from_owner(ids);
            *next = 0;
        }
        let id = slab.slice(*next * 32..(*next + 1) * 32);
        *next += 1;
        // SAFETY (a contract of `http`'s, not of memory): hex digits are
        // valid header value bytes; `from_maybe_shared` would check all 32
        // again. Debug builds check anyway.
        unsafe { HeaderValue::from_maybe_shared_unchecked(id) }
    })
}

/// The `X-Forwarded-For` list the upstream gets: the incoming entries, then
/// `peer` (already rendered once per connection).
pub fn append_forwarded_for<'a>(
    incoming: impl IntoIterator<Item = &'a HeaderValue>,
    peer: &HeaderValue,
) -> HeaderValue {
    let mut list: Vec<u8> = Vec::with_capacity(64);
    for v in incoming {
        let v = v.as_bytes().trim_ascii();
        if v.is_empty() {
            continue;
        }
        list.extend_from_slice(v);
        list.extend_from_slice(b", ");
    }
    list.extend_from_slice(peer.as_bytes());
    HeaderValue::from_bytes(&list).unwrap_or_else(|_| peer.clone())
}

/// HTTP/2 clients may split `cookie` into several fields; an HTTP/1.1
/// upstream must get them as one, joined by `; ` (RFC 9113 §8.2.3).
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    let (Some(_), Some(_)) = (values.next(), values.next()) else {
        return;
    };
    let joined = headers
        .get_all(header::COOKIE)
        .iter()
        .map(|v| v.as_bytes())
        .collect::<Vec<_>>()
        .join(&b"; "[..]);
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_and_has_answer_as_get_and_contains_key_in_small_and_large_maps() {
        for fields in [0, 1, 3, SCAN_UP_TO, SCAN_UP_TO + 1, 40] {
            let mut h = HeaderMap::new();
            for i in 0..fields {
                h.append(
                    format!("x-{i}").parse::<HeaderName>().unwrap(),
                    HeaderValue::from(i),
                );
            }
            h.append(header::HOST, HeaderValue::from_static("first"));
            h.append(header::HOST, HeaderValue::from_static("second"));
            for name in [
                header::HOST,
                header::UPGRADE,
                HeaderName::from_static("x-0"),
                HeaderName::from_static("x-2"),
                HeaderName::from_static("x-99"),
            ] {
                assert_eq!(find(&h, &name), h.get(&name), "{fields} fields, {name}");
                assert_eq!(
                    has(&h, &name),
                    h.contains_key(&name),
                    "{fields} fields, {name}"
                );
            }
            remove(&mut h, &header::HOST);
            remove(&mut h, &header::UPGRADE);
            assert!(!h.contains_key(header::HOST));
            assert_eq!(h.len(), fields);
        }
    }

    /// `remove_hop_by_hop` compares only names of these lengths.
    #[test]
    fn every_hop_by_hop_name_has_a_length_the_filter_lets_through() {
        for name in hop_by_hop() {
            let len = name.as_str().len();
            assert!(matches!(len, 2 | 7 | 10 | 16 | 17), "{name}: {len}");
            let mut h = HeaderMap::new();
            h.insert(name.clone(), HeaderValue::from_static("1"));
            remove_hop_by_hop(&mut h);
            assert!(h.is_empty(), "{name} kept");
        }
    }

    #[test]
    fn hop_by_hop_and_connection_named() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("upgrade", HeaderValue::from_static("h2c"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn messages_without_hop_by_hop_headers_are_left_alone() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("a"));
        h.append("x-kept", HeaderValue::from_static("1"));
        h.append("x-kept", HeaderValue::from_static("2"));
        let before = h.clone();
        remove_hop_by_hop(&mut h);
        assert_eq!(h, before);
    }

    #[test]
    fn forwarded_appends_peer() {
        let peer = HeaderValue::from_static("3.3.3.3");
        let a = HeaderValue::from_static("1.1.1.1");
        let b = HeaderValue::from_static(" 2.2.2.2 ");
        assert_eq!(
            append_forwarded_for([&a, &b], &peer),
            "1.1.1.1, 2.2.2.2, 3.3.3.3"
        );
        assert_eq!(append_forwarded_for([], &peer), "3.3.3.3");
    }

    #[test]
    fn cookies_from_h2_are_joined() {
        let mut h = HeaderMap::new();
        h.append("cookie", HeaderValue::from_static("a=1"));
        h.append("cookie", HeaderValue::from_static("b=2"));
        join_cookies(&mut h);
        assert_eq!(h.get_all("cookie").iter().count(), 1);
        assert_eq!(h["cookie"], "a=1; b=2");
    }

    #[test]
    fn request_ids() {
        let mut h = HeaderMap::new();
        let id = request_id(&mut h);
        assert_eq!(id.len(), 32);
        // Ids from one slab and across slabs are distinct hex strings.
        let ids: std::collections::HashSet<HeaderValue> =
            (0..300).map(|_| fresh_request_id()).collect();
        assert_eq!(ids.len(), 300);
        assert!(ids
            .iter()
            .all(|i| i.len() == 32 && i.as_bytes().iter().all(u8::is_ascii_hexdigit)));
        assert_eq!(h[&X_REQUEST_ID], id);
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc"));
        assert_eq!(request_id(&mut h), "abc");
    }
}
