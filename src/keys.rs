//! Request keys for `hash_key` and `sticky`: a header's value, a cookie's
//! value, or the client address, hashed with the stable hash. The one
//! reading of `Cookie` headers ([`cookie_pairs`]) lives here; route match
//! conditions use it too.

use std::net::IpAddr;

use http::header::COOKIE;
use http::HeaderMap;

use crate::config::KeySource;
use crate::hash::stable_hash;

/// The key's raw value in this request, if it carries one.
pub fn key_value<'h>(
    source: &KeySource,
    headers: &'h HeaderMap,
    client: IpAddr,
    ip_buf: &'h mut [u8; 16],
) -> Option<&'h [u8]> {
    match source {
        KeySource::Header(name) => headers.get(name).map(|v| v.as_bytes()),
        KeySource::Cookie(name) => cookie(headers, name),
        KeySource::ClientIp => Some(match client.to_canonical() {
            IpAddr::V4(v4) => {
                ip_buf[..4].copy_from_slice(&v4.octets());
                &ip_buf[..4]
            }
            IpAddr::V6(v6) => {
                *ip_buf = v6.octets();
                &ip_buf[..]
            }
        }),
    }
}

/// The stable hash of the request's key, if it carries one.
pub fn key_hash(source: &KeySource, headers: &HeaderMap, client: IpAddr) -> Option<u64> {
    let mut buf = [0u8; 16];
    key_value(source, headers, client, &mut buf).map(stable_hash)
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    cookie_pairs(headers).find_map(|(n, v)| (n == name.as_bytes()).then_some(v))
}

/// Every `name=value` pair of the request's `Cookie` headers, in order:
/// one header or several (HTTP/2 clients may send a line per cookie); a
/// piece without `=` is no cookie.
pub fn cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers.get_all(COOKIE).into_iter().flat_map(|v| {
        v.as_bytes().split(|b| *b == b';').filter_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|b| *b == b'=')?;
            Some((&pair[..eq], &pair[eq + 1..]))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn cookies() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; uid=abc; b=2"));
        h.append(COOKIE, HeaderValue::from_static("c=3"));
        assert_eq!(cookie(&h, "uid"), Some(&b"abc"[..]));
        assert_eq!(cookie(&h, "c"), Some(&b"3"[..]));
        assert_eq!(cookie(&h, "u"), None);
    }

    #[test]
    fn client_ip_keys_ignore_v4_mapping() {
        let h = HeaderMap::new();
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            key_hash(&KeySource::ClientIp, &h, v4),
            key_hash(&KeySource::ClientIp, &h, mapped)
        );
    }
}
