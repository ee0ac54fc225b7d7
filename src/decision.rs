//! The routing decision for one request: which route, the path that goes
//! upstream, and which side of a split. The proxy and `figway explain` both
//! call [`decide`] and [`sticky_side`], so what explain prints is what the
//! proxy does. The host a request is routed by has one home too:
//! [`request_host`], used by routing, the forwarded `Host` and the access log.

use std::net::IpAddr;

use http::header::HOST;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Uri};

use crate::error::ErrorKind;
use crate::headers;
use crate::keys;
use crate::matching::RequestFacts;
use crate::path;
use crate::state::{Route, Snapshot};
use crate::sticky;

pub struct Decision<'s> {
    pub route_index: usize,
    pub route: &'s Route,
    /// The path and query that go upstream: normalised, with strip/rewrite
    /// applied, the query unchanged. `None`: the request's own, untouched
    /// (the common case, which then costs no allocation).
    pub path_forwarded: Option<PathAndQuery>,
}

impl Decision<'_> {
    /// The path and query that go upstream, as text (for `explain`).
    pub fn path_forwarded_str(&self, uri: &Uri) -> String {
        match &self.path_forwarded {
            Some(p) => p.as_str().to_string(),
            None => uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
        }
    }
}

/// The host a request is routed by: the authority of an absolute-form or
/// HTTP/2 request, which wins over any `Host` header (RFC 9112 §3.2.2),
/// else the `Host` header.
pub fn request_host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    uri.authority()
        .map(|a| a.as_str())
        .or_else(|| headers::find(headers, &HOST).and_then(|h| h.to_str().ok()))
}

/// [`request_host`] as a header value, for the `Host` that goes upstream
/// and the access log; the `Host` header itself is reused when it is the
/// routed host (no copy).
pub fn request_host_value(uri: &Uri, headers: &HeaderMap) -> Option<HeaderValue> {
    match uri.authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => headers::find(headers, &HOST).cloned(),
    }
}

pub fn decide<'s>(
    snapshot: &'s Snapshot,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Decision<'s>, ErrorKind> {
    decide_noting(snapshot, method, uri, headers, &mut |_| {})
}

/// As [`decide`], calling `passed_over` with each route whose match
/// conditions the request failed on its way to the decision (`explain`).
pub fn decide_noting<'s>(
    snapshot: &'s Snapshot,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    passed_over: &mut impl FnMut(usize),
) -> Result<Decision<'s>, ErrorKind> {
    let normalized = path::normalize(uri.path()).map_err(|_| ErrorKind::BadRequest)?;
    let request = RequestFacts::new(headers, uri.query());
    // Looked up (and checked as text) only for a table that routes by host.
    let host = match snapshot.router.matches_hosts() {
        true => request_host(uri, headers),
        false => None,
    };
    let found = snapshot
        .router
        .lookup_noting(host, method, &normalized, &request, passed_over)
        .ok_or(ErrorKind::NoRoute)?;
    let route = &snapshot.routes[found.route];
    let unchanged = matches!(normalized, std::borrow::Cow::Borrowed(_))
        && route.rewrite_prefix.is_none()
        && !route.strip_prefix;
    let path_forwarded = if unchanged && uri.path_and_query().is_some() {
        None
    } else {
        let text = forwarded_path(route, &normalized, found.prefix_len, uri.query());
        Some(PathAndQuery::try_from(text).map_err(|_| ErrorKind::BadRequest)?)
    };
    Ok(Decision {
        route_index: found.route,
        route,
        path_forwarded,
    })
}

/// The normalised path with the route's strip/rewrite applied, and the
/// query as it came.
fn forwarded_path(
    route: &Route,
    normalized: &str,
    prefix_len: usize,
    query: Option<&str>,
) -> String {
    let rest = &normalized[prefix_len..];
    let mut forwarded =
        String::with_capacity(normalized.len() + query.map_or(0, |q| q.len() + 1) + 16);
    match (&route.rewrite_prefix, route.strip_prefix) {
        (Some(new), _) => {
            // Joining "/v2/" and "/7" must not double the slash.
            if rest.starts_with('/') {
                forwarded.push_str(new.strip_suffix('/').unwrap_or(new));
            } else {
                forwarded.push_str(new);
            }
            forwarded.push_str(rest);
        }
        (None, true) => {
            if !rest.starts_with('/') {
                forwarded.push('/');
            }
            forwarded.push_str(rest);
        }
        (None, false) => forwarded.push_str(normalized),
    }
    if forwarded.is_empty() {
        forwarded.push('/');
    }
    if let Some(q) = query {
        forwarded.push('?');
        forwarded.push_str(q);
    }
    forwarded
}

/// The side a sticky key lands on (SPEC §3; see [`crate::sticky`]); on a
/// ramp, by the layout in force now (SPEC §11; see [`crate::ramp`]).
pub fn sticky_side(route: &Route, key: &[u8]) -> usize {
    let bucket = sticky::bucket(&route.name, key);
    match &route.ramp {
        Some(ramp) => ramp.layout_now().side(bucket),
        None => sticky::side_for_bucket(&route.bucket_ends, bucket),
    }
}

/// The side of the route this request goes to: by its sticky key when the
/// route has one and the request carries it, else at random by weight.
pub fn choose_side(route: &Route, headers: &HeaderMap, client: IpAddr) -> usize {
    if route.sides.len() == 1 {
        return 0;
    }
    if let Some(source) = &route.sticky {
        let mut buf = [0u8; 16];
        if let Some(key) = keys::key_value(source, headers, client, &mut buf) {
            return sticky_side(route, key);
        }
    }
    if let Some(ramp) = &route.ramp {
        // A uniformly random bucket: the shares in force, as for a key.
        return ramp.layout_now().side(fastrand::u64(..sticky::BUCKETS));
    }
    let mut pick = fastrand::u64(..route.total_weight.max(1));
    for (i, side) in route.sides.iter().enumerate() {
        let w = u64::from(side.weight);
        if pick < w {
            return i;
        }
        pick -= w;
    }
    route.sides.len() - 1
}
