//! The routing decision for one request: which route, which upstream, and
//! the path that goes upstream. `proxy` and `figway explain` both call
//! [`decide`], so what explain prints is what the proxy does.

use http::header::HOST;
use http::{HeaderMap, Method, Uri};

use crate::error::ErrorKind;
use crate::path;
use crate::state::{Route, Snapshot};
use crate::upstream::Upstream;

pub struct Decision<'s> {
    pub route_index: usize,
    pub route: &'s Route,
    pub upstream_index: usize,
    pub upstream: &'s Upstream,
    /// Normalised, with strip/rewrite applied, and the query unchanged.
    pub path_forwarded: String,
}

/// The host a request is routed by: the authority of an absolute-form or
/// HTTP/2 request, else the `Host` header.
pub fn request_host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    uri.authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get(HOST).and_then(|h| h.to_str().ok()))
}

pub fn decide<'s>(
    snapshot: &'s Snapshot,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Decision<'s>, ErrorKind> {
    let normalized = path::normalize(uri.path()).map_err(|_| ErrorKind::BadRequest)?;
    let host = request_host(uri, headers);
    let found = snapshot
        .router
        .lookup(host, method, &normalized)
        .ok_or(ErrorKind::NoRoute)?;
    let route = &snapshot.routes[found.route];
    let rest = &normalized[found.prefix_len..];
    let query = uri.query();
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
        (None, false) => forwarded.push_str(&normalized),
    }
    if forwarded.is_empty() {
        forwarded.push('/');
    }
    if let Some(q) = query {
        forwarded.push('?');
        forwarded.push_str(q);
    }
    Ok(Decision {
        route_index: found.route,
        route,
        upstream_index: route.upstream,
        upstream: &snapshot.upstreams[route.upstream],
        path_forwarded: forwarded,
    })
}
