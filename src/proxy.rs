//! The request path: load the snapshot once, decide the route, pick a
//! target, forward over a pooled connection, stream the answer back. Every
//! failure becomes an [`ErrorKind`] answer here; nothing a client or an
//! upstream does can make this function panic or affect other requests.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::header::{HeaderName, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri, Version};
use hyper::body::Incoming;

use crate::access_log::{self, AccessRecord, Completion};
use crate::body::{Progress, RequestBody, ResponseBody, Reuse};
use crate::decision::{choose_side, decide};
use crate::error::ErrorKind;
use crate::framing::ConnFlags;
use crate::headers::{self, X_REQUEST_ID};
use crate::keys;
use crate::net;
use crate::shadow::{CompareSlot, Mirror, Tee, X_FIGWAY_SHADOW};
use crate::state::{Route, Shared, Snapshot};
use crate::upstream::balance::Tried;
use crate::upstream::pool::{self, Sender};
use crate::upstream::{clock, Target, TargetGuard, Upstream, UpstreamGuard};

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
    let record = access_log::enabled(&snapshot).then(|| {
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
    // Until a route is found, the request counts as route="", upstream="";
    // dropped before an answer (the client left), it counts as 499.
    let mut done = Completion {
        metrics: snapshot.no_route.clone(),
        start,
        status: 499,
        record,
    };
    // Checked first and for every request, so the per-connection request
    // count stays aligned with the heads the framing guard counted.
    let mut compare: Option<CompareSlot> = None;
    let outcome = if framing.next_request_conflicts() {
        Err(ErrorKind::BadRequest)
    } else {
        forward(
            &snapshot,
            parts,
            body,
            peer,
            client,
            &mut done,
            &mut compare,
        )
        .await
    };
    let mut response = match outcome {
        Ok(r) => r,
        Err(kind) => {
            if let Some(r) = done.record.as_mut() {
                r.error = Some(kind);
            }
            kind.response()
        }
    };
    if let Some(slot) = compare {
        // The shadow compares with what the client gets, figway's own error
        // answers included, but before figway adds its x-request-id: that
        // header is figway's, not the primary's.
        let _ = slot
            .head
            .send((response.status(), response.headers().clone()));
        response.body_mut().attach_tee(slot.tee);
    }
    response
        .headers_mut()
        .insert(X_REQUEST_ID.clone(), request_id);
    done.status = response.status().as_u16();
    response.body_mut().attach_completion(done);
    Ok(response)
}

async fn forward(
    snapshot: &Arc<Snapshot>,
    mut parts: Parts,
    body: Incoming,
    peer: IpAddr,
    client: IpAddr,
    done: &mut Completion,
    compare: &mut Option<CompareSlot>,
) -> Result<Response<ResponseBody>, ErrorKind> {
    if parts.method == Method::CONNECT {
        return Err(ErrorKind::MethodNotAllowed);
    }
    check_framing(&parts.headers)?;
    let decision = decide(snapshot, &parts.method, &parts.uri, &parts.headers)?;
    let route = decision.route;
    let side_upstream = route.sides[choose_side(route, &parts.headers, client)].upstream;
    done.metrics = route.metrics_for(side_upstream).clone();
    if let Some(r) = done.record.as_mut() {
        r.route = Some(decision.route_index);
        r.upstream = Some(side_upstream);
    }
    let now = clock::now_ms();
    let (upstream_index, upstream_guard) = choose_upstream(snapshot, route, side_upstream, now)
        .map_err(|(kind, refused)| {
            snapshot.upstreams[refused].metrics.error(kind);
            kind
        })?;
    let upstream = &snapshot.upstreams[upstream_index];
    if upstream_index != side_upstream {
        done.metrics = route.metrics_for(upstream_index).clone();
        if let Some(r) = done.record.as_mut() {
            r.upstream = Some(upstream_index);
        }
    }

    // Host passes through. An HTTP/2 or absolute-form request carries it in
    // the URI, which wins over any Host header (RFC 9112 §3.2.2): the
    // upstream must hear of the host the request was routed by.
    let host = match parts.uri.authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => parts.headers.get(HOST).cloned(),
    };
    headers::remove_hop_by_hop(&mut parts.headers);
    // Only figway marks a request as a shadow copy: a client's own marker
    // would make the new service skip the side effects of a real request.
    parts.headers.remove(&X_FIGWAY_SHADOW);
    if parts.version == Version::HTTP_2 {
        headers::join_cookies(&mut parts.headers);
    }
    let trusted = net::is_trusted(&snapshot.trusted_proxies, peer);
    headers::set_forwarded(&mut parts.headers, peer, trusted, host.as_ref(), "http");
    if let Some(h) = host {
        parts.headers.insert(HOST, h);
    }
    parts.uri = Uri::try_from(decision.path_forwarded).map_err(|_| ErrorKind::BadRequest)?;
    parts.version = Version::HTTP_11;

    let key = upstream
        .hash_key
        .as_ref()
        .and_then(|k| keys::key_hash(k, &parts.headers, client));
    let bytes_in = done.record.as_ref().map(|r| r.bytes_in.clone());
    // Only a request that may be sent twice keeps its body (SPEC §4).
    // An upstream of one target has nowhere else to retry: no copy then.
    let idempotent = upstream.retries > 0
        && upstream.targets.len() > 1
        && is_idempotent(&parts.method, &parts.headers);
    let mut body = if idempotent {
        RequestBody::buffered(body, bytes_in)
            .await
            .map_err(|_| ErrorKind::BadRequest)?
    } else {
        RequestBody::stream(body, bytes_in)
    };
    if let Some(shadow) = &route.shadow {
        if let Some(permit) = shadow.admit(&parts.method) {
            let primary = shadow.spec.compare.then(|| {
                let (head, head_rx) = tokio::sync::oneshot::channel();
                let (tee, body_rx) = Tee::new(shadow.spec.max_body);
                *compare = Some(CompareSlot { head, tee });
                (head_rx, body_rx)
            });
            let mirror = Mirror {
                route: decision.route_index,
                method: parts.method.clone(),
                uri: parts.uri.clone(),
                headers: parts.headers.clone(),
                body: body.mirror(shadow.spec.max_body),
                primary,
                permit,
            };
            tokio::spawn(crate::shadow::run(snapshot.clone(), mirror));
        }
    }
    // The head is kept for a resend only when the body can be resent too.
    let resend = body.replay().map(|copy| {
        (
            parts.method.clone(),
            parts.uri.clone(),
            parts.headers.clone(),
            copy,
        )
    });
    let mut request = Some(Request::from_parts(parts, body));
    upstream.shared.budget.record_first(now / 1000);

    let mut tried = Tried::default();
    let mut last_error = ErrorKind::NoHealthyUpstream;
    loop {
        let now = clock::now_ms();
        let Some(index) = upstream.pick(key, &tried, now) else {
            return Err(last_error);
        };
        let is_retry = !tried.is_empty();
        if is_retry {
            if !upstream.shared.budget.try_retry(now / 1000) {
                tracing::debug!(upstream = %upstream.name, "retry budget exhausted");
                return Err(last_error);
            }
            done.metrics.retried();
            if let Some(r) = done.record.as_mut() {
                r.retries += 1;
            }
        }
        tried.push(index);
        let target = &upstream.targets[index];
        if let Some(r) = done.record.as_mut() {
            r.target = Some(target.clone());
        }
        let Some(req) = request.take() else {
            return Err(last_error);
        };
        let target_guard = TargetGuard::new(target.clone());
        match send(upstream, target, req).await {
            Ok((response, reuse)) => {
                upstream.observe(index, response.status().is_server_error(), clock::now_ms());
                let (mut parts, body) = response.into_parts();
                headers::remove_hop_by_hop(&mut parts.headers);
                let body = ResponseBody::upstream(body, reuse, (upstream_guard, target_guard));
                return Ok(Response::from_parts(parts, body));
            }
            Err(failure) => {
                last_error = failure.kind();
                let upstreams_fault = !matches!(
                    failure,
                    Failure::ClientBody
                        | Failure::Timeout {
                            upload_unfinished: true
                        }
                );
                if upstreams_fault {
                    upstream.observe(index, true, clock::now_ms());
                    upstream.metrics.error(last_error);
                }
                let may_retry = tried.len() <= upstream.retries as usize;
                request = match failure {
                    // Nothing was sent: any request may go elsewhere.
                    Failure::Connect(req) if may_retry => Some(req),
                    // Sent, but no answer began: only what is safe to repeat
                    // and was kept whole.
                    Failure::Reset => match (&resend, may_retry) {
                        (Some((method, uri, headers, body)), true) => body.replay().map(|body| {
                            let mut r = Request::new(body);
                            *r.method_mut() = method.clone();
                            *r.uri_mut() = uri.clone();
                            *r.headers_mut() = headers.clone();
                            r
                        }),
                        _ => None,
                    },
                    _ => None,
                };
                if request.is_none() {
                    return Err(last_error);
                }
            }
        }
    }
}

/// The route's upstream, or its fallback when the upstream has no usable
/// target or its breaker is open (SPEC §5). The guard holds the request's
/// place in the chosen upstream's in-flight count.
/// On failure, the error and the upstream that refused (counted there).
fn choose_upstream(
    snapshot: &Snapshot,
    route: &Route,
    chosen: usize,
    now: u64,
) -> Result<(usize, UpstreamGuard), (ErrorKind, usize)> {
    let primary = &snapshot.upstreams[chosen];
    let reason = if !primary.has_available(now) {
        ErrorKind::NoHealthyUpstream
    } else {
        match primary.enter() {
            Some(guard) => return Ok((chosen, guard)),
            None => ErrorKind::CircuitOpen,
        }
    };
    let Some(fallback) = route.fallback.filter(|f| *f != chosen) else {
        return Err((reason, chosen));
    };
    let standby = &snapshot.upstreams[fallback];
    if !standby.has_available(now) {
        return Err((ErrorKind::NoHealthyUpstream, fallback));
    }
    let guard = standby.enter().ok_or((ErrorKind::CircuitOpen, fallback))?;
    route.metrics_for(chosen).fell_back();
    tracing::debug!(route = %route.name, from = %primary.name, to = %standby.name, reason = reason.as_str(), "fallback");
    Ok((fallback, guard))
}

/// Methods that mean the same when sent twice (RFC 9110 §9.2.2), or any
/// request whose client vouches for it with `Idempotency-Key`.
fn is_idempotent(method: &Method, headers: &HeaderMap) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    ) || headers.contains_key(&IDEMPOTENCY_KEY)
}

static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Why one attempt failed, and what is left to retry with.
// The big variant hands the unsent request back for the next attempt; it is
// moved once per failed attempt, which a Box would not make cheaper.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Failure {
    /// No connection; the request was never sent and comes back whole.
    Connect(Request<RequestBody>),
    /// The connection closed or reset before the response head.
    Reset,
    /// No response head within `request_timeout` (of the request's last
    /// upload progress). While the upload was unfinished, the client may as
    /// well be the slow one.
    Timeout { upload_unfinished: bool },
    /// The client's own body broke while it was being forwarded.
    ClientBody,
}

impl Failure {
    fn kind(&self) -> ErrorKind {
        match self {
            Failure::Connect(_) => ErrorKind::UpstreamConnect,
            Failure::Reset => ErrorKind::UpstreamReset,
            Failure::Timeout { .. } => ErrorKind::UpstreamTimeout,
            Failure::ClientBody => ErrorKind::BadRequest,
        }
    }
}

/// One attempt at one target: a pooled or new connection, the request, and
/// the response head within `request_timeout`.
pub(crate) async fn send(
    upstream: &Upstream,
    target: &Arc<Target>,
    request: Request<RequestBody>,
) -> Result<(Response<Incoming>, Reuse), Failure> {
    let timeouts = upstream.timeouts;
    let (mut sender, mut reused) = match target.pool.checkout() {
        Some(s) => (s, true),
        None => match connect(target, upstream).await {
            Ok(s) => (s, false),
            Err(()) => return Err(Failure::Connect(request)),
        },
    };
    let mut request = request;
    loop {
        let progress = request.body().progress();
        let attempt = head_within(
            timeouts.request,
            progress.as_deref(),
            sender.try_send_request(request),
        )
        .await;
        match attempt {
            Err(()) => {
                return Err(Failure::Timeout {
                    upload_unfinished: progress.is_some_and(|p| !p.is_done()),
                })
            }
            Ok(Ok(response)) => {
                let reuse = Reuse {
                    sender,
                    target: target.clone(),
                };
                return Ok((response, reuse));
            }
            Ok(Err(mut e)) => match e.take_message() {
                // A pooled connection the upstream closed while it sat idle:
                // nothing was written, so a fresh connection may carry the
                // very same request. Not a retry: no target failed.
                Some(unsent) if reused => {
                    request = unsent;
                    sender = match connect(target, upstream).await {
                        Ok(s) => s,
                        Err(()) => return Err(Failure::Connect(request)),
                    };
                    reused = false;
                }
                Some(unsent) => return Err(Failure::Connect(unsent)),
                None => {
                    let error = e.into_error();
                    tracing::debug!(target = %target.authority, error = %error, "upstream request failed");
                    return Err(if error.is_user() {
                        Failure::ClientBody
                    } else {
                        Failure::Reset
                    });
                }
            },
        }
    }
}

/// `request_timeout` runs from the last progress of the request body, not
/// from the start: a large upload that keeps moving is not cut, and the
/// wait for the head is measured from its last byte (SPEC §2: per attempt,
/// until the response head arrives).
async fn head_within<F: std::future::Future>(
    limit: Duration,
    progress: Option<&Progress>,
    response: F,
) -> Result<F::Output, ()> {
    let Some(progress) = progress else {
        return tokio::time::timeout(limit, response).await.map_err(|_| ());
    };
    tokio::pin!(response);
    let limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
    let start = clock::now_ms();
    loop {
        let due = progress.last_ms().max(start).saturating_add(limit_ms);
        let now = clock::now_ms();
        if now >= due {
            return Err(());
        }
        if let Ok(out) = tokio::time::timeout(Duration::from_millis(due - now), &mut response).await
        {
            return Ok(out);
        }
    }
}

async fn connect(target: &Target, upstream: &Upstream) -> Result<Sender, ()> {
    pool::connect(&target.authority, upstream.timeouts.connect)
        .await
        .map_err(|e| {
            tracing::debug!(target = %target.authority, error = %e, "upstream connect failed");
        })
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
