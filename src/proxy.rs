//! The request path: load the snapshot once, decide the route, pick a
//! target, forward over a pooled connection, stream the answer back. Every
//! failure becomes an [`ErrorKind`] answer here; nothing a client or an
//! upstream does can make this function panic or affect other requests.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri, Version};
use hyper::body::Incoming;

use crate::access_log::{self, AccessRecord};
use crate::body::{RequestBody, ResponseBody, Reuse};
use crate::decision::decide;
use crate::error::ErrorKind;
use crate::framing::ConnFlags;
use crate::headers::{self, X_REQUEST_ID};
use crate::net;
use crate::state::{Shared, Snapshot};
use crate::upstream::pool::{self, Sender};
use crate::upstream::{Target, Upstream};

/// Serves one client request. Never fails: errors are answered.
pub async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    framing: Arc<ConnFlags>,
    shared: Arc<Shared>,
) -> Result<Response<ResponseBody>, Infallible> {
    let start = Instant::now();
    let snapshot = shared.snapshot.load_full();
    let (mut parts, body) = req.into_parts();
    let request_id = headers::request_id(&mut parts.headers);
    let peer = peer.ip().to_canonical();
    let client = net::client_address(&snapshot.trusted_proxies, peer, &parts.headers);
    let mut record = access_log::enabled(&snapshot).then(|| {
        Box::new(AccessRecord {
            format: shared.log.format,
            start,
            ts: SystemTime::now(),
            request_id: request_id.clone(),
            client,
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            host: parts.headers.get(HOST).cloned(),
            snapshot: snapshot.clone(),
            route: None,
            upstream: None,
            target: None,
            status: 499,
            bytes_in: Arc::new(AtomicU64::new(0)),
            bytes_out: 0,
            retries: 0,
            error: None,
        })
    });
    // Checked first and for every request, so the per-connection request
    // count stays aligned with the heads the framing guard counted.
    let outcome = if framing.next_request_conflicts() {
        Err(ErrorKind::BadRequest)
    } else {
        forward(&snapshot, parts, body, peer, &mut record).await
    };
    let mut response = match outcome {
        Ok(r) => r,
        Err(kind) => {
            if let Some(r) = record.as_mut() {
                r.error = Some(kind);
            }
            kind.response()
        }
    };
    response
        .headers_mut()
        .insert(X_REQUEST_ID.clone(), request_id);
    if let Some(mut r) = record {
        r.status = response.status().as_u16();
        response.body_mut().attach_record(r);
    }
    Ok(response)
}

async fn forward(
    snapshot: &Arc<Snapshot>,
    mut parts: Parts,
    body: Incoming,
    peer: IpAddr,
    record: &mut Option<Box<AccessRecord>>,
) -> Result<Response<ResponseBody>, ErrorKind> {
    if parts.method == Method::CONNECT {
        return Err(ErrorKind::MethodNotAllowed);
    }
    check_framing(&parts.headers)?;
    let decision = decide(snapshot, &parts.method, &parts.uri, &parts.headers)?;
    let upstream = decision.upstream;
    let target = upstream.pick();
    if let Some(r) = record.as_mut() {
        r.route = Some(decision.route_index);
        r.upstream = Some(decision.upstream_index);
        r.target = Some(target.clone());
    }

    // Host passes through. An HTTP/2 or absolute-form request carries it in
    // the URI, which wins over any Host header (RFC 9112 §3.2.2): the
    // upstream must hear of the host the request was routed by.
    let host = match parts.uri.authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => parts.headers.get(HOST).cloned(),
    };
    headers::remove_hop_by_hop(&mut parts.headers);
    let trusted = net::is_trusted(&snapshot.trusted_proxies, peer);
    headers::set_forwarded(&mut parts.headers, peer, trusted, host.as_ref(), "http");
    if let Some(h) = host {
        parts.headers.insert(HOST, h);
    }
    parts.uri = Uri::try_from(decision.path_forwarded).map_err(|_| ErrorKind::BadRequest)?;
    parts.version = Version::HTTP_11;
    let bytes_in = record.as_ref().map(|r| r.bytes_in.clone());
    let request = Request::from_parts(parts, RequestBody::new(body, bytes_in));
    send(upstream, target, request).await
}

/// Refuses requests whose framing two parsers could read differently
/// (SPEC §4, no smuggling). hyper already rejects a final coding other than
/// chunked, and drops Content-Length when both are present (the framing
/// guard in `framing.rs` catches that case); this catches what hyper lets
/// through, such as `gzip, chunked`.
fn check_framing(headers: &HeaderMap) -> Result<(), ErrorKind> {
    let mut codings = headers.get_all(TRANSFER_ENCODING).iter();
    if let Some(first) = codings.next() {
        let chunked_only =
            first.as_bytes().eq_ignore_ascii_case(b"chunked") && codings.next().is_none();
        if !chunked_only || headers.contains_key(CONTENT_LENGTH) {
            return Err(ErrorKind::BadRequest);
        }
    }
    Ok(())
}

/// One attempt at one target: a pooled or new connection, the request, and
/// the response head within `request_timeout`.
async fn send(
    upstream: &Upstream,
    target: &Arc<Target>,
    request: Request<RequestBody>,
) -> Result<Response<ResponseBody>, ErrorKind> {
    let timeouts = upstream.timeouts;
    let (mut sender, mut reused) = match target.pool.checkout(timeouts.idle) {
        Some(s) => (s, true),
        None => (connect(target, upstream).await?, false),
    };
    let mut request = request;
    loop {
        let attempt =
            tokio::time::timeout(timeouts.request, sender.try_send_request(request)).await;
        match attempt {
            Err(_) => return Err(ErrorKind::UpstreamTimeout),
            Ok(Ok(response)) => {
                let (mut parts, body) = response.into_parts();
                headers::remove_hop_by_hop(&mut parts.headers);
                let reuse = Reuse {
                    sender,
                    target: target.clone(),
                };
                return Ok(Response::from_parts(
                    parts,
                    ResponseBody::upstream(body, reuse),
                ));
            }
            Ok(Err(mut e)) => match e.take_message() {
                // A pooled connection the upstream closed while it sat idle:
                // nothing was written, so a fresh connection may carry the
                // very same request.
                Some(unsent) if reused => {
                    request = unsent;
                    sender = connect(target, upstream).await?;
                    reused = false;
                }
                _ => {
                    let error = e.into_error();
                    tracing::debug!(target = %target.authority, error = %error, "upstream request failed");
                    return Err(if error.is_user() {
                        ErrorKind::BadRequest
                    } else {
                        ErrorKind::UpstreamReset
                    });
                }
            },
        }
    }
}

async fn connect(target: &Target, upstream: &Upstream) -> Result<Sender, ErrorKind> {
    pool::connect(&target.authority, upstream.timeouts.connect)
        .await
        .map_err(|e| {
            tracing::debug!(target = %target.authority, error = %e, "upstream connect failed");
            ErrorKind::UpstreamConnect
        })
}
