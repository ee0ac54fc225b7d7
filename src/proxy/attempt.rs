//! Phase 3, attempt: the body policy (held whole when a retry may have to
//! send it again), then attempts at targets of the chosen upstream until
//! one answers, a failure may not be retried, or the retry budget says no.
//! Each attempt goes through the upstream client (`upstream::client`).
//!
//! Retries (SPEC §4), decided in one place, `next_request`:
//! - connect failed: nothing was sent, so any request goes to another target;
//! - reset before the response head: only idempotent requests whose body
//!   was held whole (at most 64 KiB) are sent again;
//! - never after a timeout, never once a response byte arrived;
//! - at most `retries` per request, each one paid from the upstream's
//!   budget (20% of first attempts over 10 s, plus 10: `upstream::budget`).
//!
//! A request that every attempt failed to connect for was never sent: it
//! goes to the route's fallback once (`fall_back`, SPEC §5) before the
//! client gets a 502. Only the failure path pays for this.

use http::header::{HeaderName, HOST};
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri};

use super::context::{ConnCtx, RequestCtx};
use crate::body::{ClientBody, RequestBody};
use crate::clock;
use crate::error::ErrorKind;
use crate::headers::{self, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO};
use crate::keys;
use crate::upstream::balance::Tried;
use crate::upstream::client::{self, Failure, UpstreamBody};
use crate::upstream::{TargetGuard, Upstream};

/// The request body as the attempts will send it: held whole when the
/// request may be retried after a reset, else streamed.
pub async fn body(
    ctx: &mut RequestCtx,
    request: &Request<RequestBody>,
    body: ClientBody,
) -> Result<RequestBody, ErrorKind> {
    let Some(upstream) = ctx.upstream() else {
        return Err(ErrorKind::NoHealthyUpstream);
    };
    // An upstream of one target has nowhere else to retry: no copy then.
    let replayable = upstream.retries > 0
        && upstream.targets.len() > 1
        && is_idempotent(request.method(), request.headers());
    let (body, read, upload) = if replayable {
        RequestBody::buffered(body)
            .await
            .map_err(|_| ErrorKind::BadRequest)?
    } else {
        let (body, upload) = RequestBody::stream(body);
        (body, 0, upload)
    };
    ctx.bytes_in = read;
    ctx.upload = upload;
    Ok(body)
}

/// The head kept for sending the request again, when its body can be.
struct Resend {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: RequestBody,
}

/// Attempts until one target answers; the answer goes back to the caller. A request that every
/// attempt failed to connect for goes to the route's fallback once.
///
/// `request` is lent (proxy/mod.rs, Futures): `handle`'s future holds it,
/// and it is `None` once sent and not to be sent again.
pub async fn send(
    ctx: &mut RequestCtx,
    request: &mut Option<Request<RequestBody>>,
) -> Result<Response<UpstreamBody>, ErrorKind> {
    let Some(chosen) = ctx.upstream else {
        return Err(ErrorKind::NoHealthyUpstream);
    };
    let upstream = &ctx.snapshot.upstreams[chosen];
    // A copy of the head only when the body could be sent twice and a
    // retry is possible at all.
    // Boxed: ~250 bytes that most requests' state (moved whole on each)
    // would carry for nothing, for one allocation beside the copies.
    let resend = match &*request {
        Some(r) if upstream.retries > 0 && upstream.targets.len() > 1 => {
            r.body().replay().map(|copy| {
                Box::new(Resend {
                    method: r.method().clone(),
                    uri: r.uri().clone(),
                    headers: r.headers().clone(),
                    body: copy,
                })
            })
        }
        _ => None,
    };
    // The request's start is close enough to the first attempt's (the
    // route phase read it the same way), and saves a clock read.
    let now = ctx.start_ms;
    let kind = match attempts(ctx, chosen, request, resend.as_deref(), now).await {
        Ok(response) => return Ok(response),
        Err(kind) => kind,
    };
    // Boxed: the success path's future need not carry a second round of
    // attempts; the allocation is paid on this failure path only.
    match request {
        Some(_) => Box::pin(fall_back(ctx, chosen, request, resend.as_deref(), kind)).await,
        None => Err(kind),
    }
}

/// Attempts at the targets of `snapshot.upstreams[u]` until one answers, a
/// failure may not be retried, or the retry budget says no. On failure,
/// `request` is left holding the request only when every attempt failed
/// to connect: it was never sent, its body untouched, so it may still go
/// elsewhere whole. On success it holds the sent request's husk. `now`: `clock` milliseconds at the first attempt.
async fn attempts(
    ctx: &mut RequestCtx,
    u: usize,
    request: &mut Option<Request<RequestBody>>,
    resend: Option<&Resend>,
    mut now: u64,
) -> Result<Response<UpstreamBody>, ErrorKind> {
    let snapshot = &ctx.snapshot;
    let upstream = &snapshot.upstreams[u];
    let key = upstream.hash_key.as_ref().and_then(|k| {
        let headers = request.as_ref().map(|r| r.headers())?;
        keys::key_hash(k, headers, ctx.client)
    });
    let form = form(ctx);
    let host = match (ctx.forwarded_direct, request.as_ref()) {
        (true, Some(r)) => headers::find(r.headers(), &HOST).cloned(),
        _ => None,
    };
    let (fields, n) = forwarded(ctx.forwarded_direct, &ctx.conn, host.as_ref());
    let added = &fields[..n];
    upstream.shared.budget.record_first(now / 1000);
    let mut tried = Tried::default();
    let mut last_error = ErrorKind::NoHealthyUpstream;
    // Whether some attempt got as far as sending: then the request in hand
    // (if any) is a replay, and the failure not one to fall back on.
    let mut sent = false;
    while let Some(index) = upstream.pick(key, &tried, now) {
        if !tried.is_empty() {
            if !upstream.shared.budget.try_retry(now / 1000) {
                tracing::debug!(upstream = %upstream.name, "retry budget exhausted");
                break;
            }
            if let Some(route) = ctx.route {
                snapshot.routes[route].metrics_for(u).retried();
            }
            ctx.retries += 1;
        }
        tried.push(index);
        let target = &upstream.targets[index];
        ctx.target = Some(TargetGuard::new(target.clone()));
        let Some(req) = request.as_mut() else {
            break;
        };
        match client::send(upstream, target, req, form, now, added).await {
            Ok(response) => {
                // Outlier detection counts in milliseconds; the attempt's
                // start is close enough and saves a clock read.
                upstream.observe(index, response.status().is_server_error(), now);
                return Ok(response);
            }
            Err(failure) => {
                last_error = failure.kind();
                now = clock::now_ms();
                count_failure(upstream, index, &failure, now);
                let may_retry = tried.len() <= upstream.retries as usize;
                // Nothing was sent on a failed connect: the request is
                // still whole in `request`, for another target or, at the
                // end, the fallback. Else what is left there is a husk.
                if !matches!(failure, Failure::Connect) {
                    sent = true;
                    *request = next_request(failure, resend, may_retry);
                }
                if request.is_none() || !may_retry {
                    break;
                }
            }
        }
    }
    // Every attempt failed to connect, or no target was left to try (one
    // ejected between the route phase's look and the pick: another
    // request's failed connect): nothing was sent, so the request may
    // still go to the fallback, as the route phase would have sent it.
    if sent {
        *request = None;
    }
    Err(last_error)
}

/// The form the answer's head is wanted in. Room for what respond adds to
/// it: its x-request-id and the route's response edits. Its fields come as
/// lines (`codec::lines`) when nothing reads them on the way to figway's
/// own server: no edits, no shadow compare.
fn form(ctx: &RequestCtx) -> client::Form {
    let edits = ctx
        .route
        .and_then(|r| ctx.snapshot.routes[r].headers.as_deref());
    client::Form {
        room: 1 + edits.map_or(0, |e| e.response_set.len()),
        lines: ctx.own_writer
            && edits.is_none_or(|e| e.response_remove.is_empty() && e.response_set.is_empty())
            && ctx.compare.is_none(),
    }
}

/// A request every attempt at the route's upstream `from` failed to
/// connect for goes to the route's fallback once (SPEC §5), so that a
/// crashed service is covered from its first failed connect, not only
/// once health checks or ejection notice. Any body qualifies, streamed
/// ones included: a failed connect leaves the request unsent where it was
/// lent from, its body unread. Counted in `figway_fallbacks_total`; the access line and
/// `figway_requests_total` then name the fallback (`ctx.upstream`). The
/// fallback takes it only as it would any request, with a usable target
/// and room under its breaker; else the client gets the original failure.
async fn fall_back(
    ctx: &mut RequestCtx,
    from: usize,
    request: &mut Option<Request<RequestBody>>,
    resend: Option<&Resend>,
    kind: ErrorKind,
) -> Result<Response<UpstreamBody>, ErrorKind> {
    let snapshot = &ctx.snapshot;
    let Some(route) = ctx.route.map(|r| &snapshot.routes[r]) else {
        return Err(kind);
    };
    // A route whose fallback is the upstream that just failed (a `to`
    // naming itself, or a split side that is the fallback) has nowhere
    // else to go.
    let Some(to) = route.fallback.filter(|f| *f != from) else {
        return Err(kind);
    };
    let standby = &snapshot.upstreams[to];
    if !standby.has_available(clock::now_ms()) {
        return Err(kind);
    }
    let Some(guard) = standby.enter() else {
        return Err(kind);
    };
    route.metrics_for(from).fell_back();
    tracing::debug!(route = %route.name, from = %snapshot.upstreams[from].name, to = %standby.name, reason = kind.as_str(), "fallback");
    ctx.upstream = Some(to);
    ctx.upstream_guard = Some(guard);
    attempts(ctx, to, request, resend, clock::now_ms()).await
}

/// Counts a failed attempt against its target (outlier detection, the
/// upstream's error counter) when the target is to blame.
fn count_failure(upstream: &Upstream, index: usize, failure: &Failure, now: u64) {
    if let Failure::Connect = failure {
        upstream.observe_connect_failure(index, now);
    } else if failure.is_upstreams_fault() {
        upstream.observe(index, true, now);
    } else {
        return;
    }
    upstream.metrics.error(failure.kind());
}

/// The `X-Forwarded-*` fields (SPEC §4) as `rewrite::forwarded` would set
/// them on a request that carried none, for the attempts to write straight
/// into the upstream head (`rewrite`, `RequestCtx::forwarded_direct`): the
/// peer, the listener's scheme, the host when there is one; and how many
/// of them to write (none unless `direct`).
fn forwarded<'a>(
    direct: bool,
    conn: &'a ConnCtx,
    host: Option<&'a HeaderValue>,
) -> ([(&'static HeaderName, &'a HeaderValue); 3], usize) {
    static HTTP: HeaderValue = HeaderValue::from_static("http");
    static HTTPS: HeaderValue = HeaderValue::from_static("https");
    let proto = if conn.tls { &HTTPS } else { &HTTP };
    let fields = [
        (&X_FORWARDED_FOR, &conn.forwarded_for),
        (&X_FORWARDED_PROTO, proto),
        (&X_FORWARDED_HOST, host.unwrap_or(proto)),
    ];
    let n = match (direct, host) {
        (false, _) => 0,
        (true, None) => 2,
        (true, Some(_)) => 3,
    };
    (fields, n)
}

/// What the next attempt sends after `failure`, if there may be one.
fn next_request(
    failure: Failure,
    resend: Option<&Resend>,
    may_retry: bool,
) -> Option<Request<RequestBody>> {
    if !may_retry {
        return None;
    }
    match failure {
        // Sent, but no answer began: only what is safe to repeat and was
        // kept whole.
        Failure::Reset => resend.and_then(|r| {
            let body = r.body.replay()?;
            let mut req = Request::new(body);
            *req.method_mut() = r.method.clone();
            *req.uri_mut() = r.uri.clone();
            *req.headers_mut() = r.headers.clone();
            Some(req)
        }),
        // A failed connect left the request whole: `attempts` keeps it.
        Failure::Connect | Failure::Timeout { .. } | Failure::ClientBody => None,
    }
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
