//! Phase 2, rewrite: the request head as the upstream gets it (SPEC §4).
//! Hop-by-hop headers go, the client's shadow marker goes, HTTP/2 cookie
//! fields are joined, `Host` carries the host the request was routed by,
//! `X-Forwarded-*` are set, the path is the forwarded one, the version
//! is HTTP/1.1 whatever the client spoke, and last the route's
//! `[routes.headers]` request edits apply (SPEC §12), so they see and may
//! replace what figway set. The shadow copy is taken after this phase: it
//! gets the edited head, as the primary does.
//!
//! When nothing after this phase reads them (no edits, no shadow copy, no
//! hash key from a header) and the client sent none of them, the
//! `X-Forwarded-*` fields are not put in the map at all: the attempt
//! writes them straight into the upstream head (`attempt::forwarded`).
//! Inserting three names the map has no slot for cost ~750 instructions a
//! request, a thirtieth of the whole (benches/instructions.sh).

use http::header::{Entry, HOST, TE};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderValue, Uri, Version};

use super::context::ConnCtx;
use crate::config::HeaderEdits;
use crate::headers::{self, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO};
use crate::shadow::X_FIGWAY_SHADOW;

/// Headers figway may add: the map grows once, not once per insert.
const ADDED: usize = 4;

/// `h2c`: the upstream speaks h2c, the one kind that gets `TE: trailers`
/// (SPEC §4; gRPC needs it, HTTP/1.1 upstreams must not see TE at all).
/// `direct`: nothing but the upstream head reads `X-Forwarded-*` after
/// this phase but the edits (the caller has looked at the rest). Returns
/// whether they were left for the attempt to write (see above).
pub fn request(
    conn: &ConnCtx,
    parts: &mut Parts,
    path: Option<PathAndQuery>,
    h2c: bool,
    edits: Option<&HeaderEdits>,
    direct: bool,
) -> bool {
    let headers = &mut parts.headers;
    headers.reserve(ADDED);
    let trailers = h2c && headers::te_trailers(headers);
    headers::remove_hop_by_hop(headers);
    if trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
    // Only figway marks a request as a shadow copy: a client's own marker
    // would make the new service skip the side effects of a real request.
    headers::remove(headers, &X_FIGWAY_SHADOW);
    if parts.version == Version::HTTP_2 {
        headers::join_cookies(headers);
    }
    // An HTTP/2 or absolute-form request carries its host in the URI, and
    // that is the host it was routed by (`decision::request_host`): the
    // upstream hears of the same one. Otherwise `Host` passes through.
    if let Some(authority) = parts.uri.authority() {
        if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
            headers.insert(HOST, v);
        }
    }
    let direct = direct && edits.is_none() && !carries_forwarded(headers);
    if !direct {
        forwarded(conn, headers);
    }
    if let Some(e) = edits {
        headers::edit(headers, &e.request_remove, &e.request_set);
    }
    // Origin form upstream: the path and query only.
    match path {
        Some(p) => parts.uri = Uri::from(p),
        None if parts.uri.scheme().is_some() || parts.uri.authority().is_some() => {
            let p = parts.uri.path_and_query().cloned();
            parts.uri = p.map_or_else(|| Uri::from_static("/"), Uri::from);
        }
        None => {}
    }
    parts.version = Version::HTTP_11;
    direct
}

/// Whether the client sent any `X-Forwarded-*` field figway sets.
fn carries_forwarded(headers: &http::HeaderMap) -> bool {
    headers
        .keys()
        .any(|n| *n == X_FORWARDED_FOR || *n == X_FORWARDED_PROTO || *n == X_FORWARDED_HOST)
}

/// `X-Forwarded-For` gets the peer appended (as nginx's
/// `$proxy_add_x_forwarded_for`); `X-Forwarded-Proto` and `-Host` are set,
/// unless a trusted proxy set them already.
fn forwarded(conn: &ConnCtx, headers: &mut http::HeaderMap) {
    let peer = &conn.forwarded_for;
    // One lookup for both the read and the write.
    match headers.entry(&X_FORWARDED_FOR) {
        // The common case: the per-connection value as it is.
        Entry::Vacant(v) => {
            v.insert(peer.clone());
        }
        Entry::Occupied(mut o) => {
            let value = headers::append_forwarded_for(o.iter(), peer);
            o.insert(value);
        }
    }
    if !(conn.trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        let proto = if conn.tls { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    }
    if !(conn.trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        match headers::find(headers, &HOST).cloned() {
            Some(h) => headers.insert(X_FORWARDED_HOST.clone(), h),
            None => headers.remove(&X_FORWARDED_HOST),
        };
    }
}
