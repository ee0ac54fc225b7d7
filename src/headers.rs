//! Header rewriting between client and upstream (SPEC §4): hop-by-hop
//! removal, `X-Forwarded-*`, `x-request-id`. The names that never change are
//! built once as statics.

use std::fmt::Write as _;
use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1),
/// plus the legacy `Keep-Alive` and `Proxy-Connection`.
fn hop_by_hop() -> [&'static HeaderName; 7] {
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

/// Drops hop-by-hop headers, including every header `Connection` names.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // `Connection: keep-alive` / `close` name nothing beyond the static list
    // below; only other tokens are worth collecting (and allocating for).
    let names_others = headers.get_all(header::CONNECTION).iter().any(|v| {
        v.as_bytes().split(|b| *b == b',').any(|t| {
            let t = t.trim_ascii();
            !(t.is_empty()
                || t.eq_ignore_ascii_case(b"keep-alive")
                || t.eq_ignore_ascii_case(b"close")
                || t.eq_ignore_ascii_case(b"upgrade")
                || t.eq_ignore_ascii_case(b"te"))
        })
    });
    if names_others {
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
    for name in hop_by_hop() {
        headers.remove(name);
    }
}

/// The client's `x-request-id` when it sent a usable one, else a fresh
/// 32-hex-digit id. Either way the header is set on `headers`.
pub fn request_id(headers: &mut HeaderMap) -> HeaderValue {
    if let Some(id) = headers.get(&X_REQUEST_ID) {
        if !id.is_empty() && id.len() <= 200 {
            return id.clone();
        }
    }
    let id = fresh_request_id();
    headers.insert(X_REQUEST_ID.clone(), id.clone());
    id
}

fn fresh_request_id() -> HeaderValue {
    let mut s = String::with_capacity(32);
    let _ = write!(s, "{:032x}", fastrand::u128(..));
    HeaderValue::try_from(s).unwrap_or(HeaderValue::from_static("0"))
}

/// Sets `X-Forwarded-For` (incoming list + socket peer, as nginx's
/// `$proxy_add_x_forwarded_for`), and `X-Forwarded-Proto`/`-Host`, which a
/// trusted proxy may have set already and anybody else may not.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    peer: IpAddr,
    peer_trusted: bool,
    host: Option<&HeaderValue>,
    proto: &'static str,
) {
    let peer = peer.to_canonical();
    let mut list = String::new();
    for v in headers.get_all(&X_FORWARDED_FOR) {
        if let Ok(v) = v.to_str() {
            if !list.is_empty() {
                list.push_str(", ");
            }
            list.push_str(v.trim());
        }
    }
    if !list.is_empty() {
        list.push_str(", ");
    }
    let _ = write!(list, "{peer}");
    if let Ok(v) = HeaderValue::try_from(list) {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    if !(peer_trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    }
    if !(peer_trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        match host {
            Some(h) => headers.insert(X_FORWARDED_HOST.clone(), h.clone()),
            None => headers.remove(&X_FORWARDED_HOST),
        };
    }
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
    fn forwarded_appends_peer() {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("1.1.1.1"));
        h.append("x-forwarded-for", HeaderValue::from_static("2.2.2.2"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let host = HeaderValue::from_static("shop.example.com");
        set_forwarded(
            &mut h,
            "3.3.3.3".parse().unwrap(),
            false,
            Some(&host),
            "http",
        );
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 3.3.3.3");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "shop.example.com");
        let mut h2 = HeaderMap::new();
        h2.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        set_forwarded(&mut h2, "3.3.3.3".parse().unwrap(), true, None, "http");
        assert_eq!(h2["x-forwarded-proto"], "https");
        assert_eq!(h2["x-forwarded-for"], "3.3.3.3");
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
        assert_eq!(h[&X_REQUEST_ID], id);
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc"));
        assert_eq!(request_id(&mut h), "abc");
    }
}
