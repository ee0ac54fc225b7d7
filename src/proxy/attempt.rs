//! Phase 3, attempt: the body policy (held whole when a retry may have to
//! send it again), then attempts at targets of the chosen upstream until
//! one answers, a failure may not be retried, or the retry budget says no.
//! Each attempt goes through the upstream client (`upstream::client`).
//!
//! Retries (SPEC §4), decided in one place, [`next_request`]:
//! - connect failed: nothing was sent, so any request goes to another target;
//! - reset before the response head: only idempotent requests whose body
//!   was held whole (at most 64 KiB) are sent again;
//! - never after a timeout, never once a response byte arrived;
//! - at most `retries` per request, each one paid from the upstream's
//!   budget (20% of first attempts over 10 s, plus 10: `upstream::budget`).

use http::header::HeaderName;
use http::request::Parts;
use http::{HeaderMap, Method, Request, Response, Uri};
use hyper::body::Incoming;

use super::context::RequestCtx;
use crate::body::RequestBody;
use crate::clock;
use crate::error::ErrorKind;
use crate::keys;
use crate::upstream::balance::Tried;
use crate::upstream::client::{self, Failure};
use crate::upstream::TargetGuard;

/// The request body as the attempts will send it: held whole when the
/// request may be retried after a reset, else streamed.
pub async fn body(
    ctx: &mut RequestCtx,
    parts: &Parts,
    body: Incoming,
) -> Result<RequestBody, ErrorKind> {
    let Some(upstream) = ctx.upstream() else {
        return Err(ErrorKind::NoHealthyUpstream);
    };
    // An upstream of one target has nowhere else to retry: no copy then.
    let replayable = upstream.retries > 0
        && upstream.targets.len() > 1
        && is_idempotent(&parts.method, &parts.headers);
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

/// Attempts until one target answers; the answer's head and the connection
/// it came on (in `ctx.lease`) go back to the caller.
pub async fn send(
    ctx: &mut RequestCtx,
    parts: Parts,
    body: RequestBody,
) -> Result<Response<Incoming>, ErrorKind> {
    let snapshot = &ctx.snapshot;
    let Some(upstream) = ctx.upstream.map(|u| &snapshot.upstreams[u]) else {
        return Err(ErrorKind::NoHealthyUpstream);
    };
    let key = upstream
        .hash_key
        .as_ref()
        .and_then(|k| keys::key_hash(k, &parts.headers, ctx.client));
    // A copy of the head only when the body could be sent twice and a
    // retry is possible at all.
    let resend = match body.replay() {
        Some(copy) if upstream.retries > 0 && upstream.targets.len() > 1 => Some(Resend {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            body: copy,
        }),
        _ => None,
    };
    let mut request = Some(Request::from_parts(parts, body));
    let mut now = clock::now_ms();
    upstream.shared.budget.record_first(now / 1000);
    let mut tried = Tried::default();
    let mut last_error = ErrorKind::NoHealthyUpstream;
    loop {
        let Some(index) = upstream.pick(key, &tried, now) else {
            return Err(last_error);
        };
        if !tried.is_empty() {
            if !upstream.shared.budget.try_retry(now / 1000) {
                tracing::debug!(upstream = %upstream.name, "retry budget exhausted");
                return Err(last_error);
            }
            if let Some(route) = ctx.route {
                snapshot.routes[route]
                    .metrics_for(ctx.upstream.unwrap_or_default())
                    .retried();
            }
            ctx.retries += 1;
        }
        tried.push(index);
        let target = &upstream.targets[index];
        ctx.target = Some(TargetGuard::new(target.clone()));
        let Some(req) = request.take() else {
            return Err(last_error);
        };
        match client::send(upstream, target, req).await {
            Ok((response, lease)) => {
                // Outlier detection counts in milliseconds; the attempt's
                // start is close enough and saves a clock read.
                upstream.observe(index, response.status().is_server_error(), now);
                ctx.lease = Some(lease);
                return Ok(response);
            }
            Err(failure) => {
                last_error = failure.kind();
                now = clock::now_ms();
                if failure.is_upstreams_fault() {
                    upstream.observe(index, true, now);
                    upstream.metrics.error(last_error);
                }
                let may_retry = tried.len() <= upstream.retries as usize;
                request = next_request(failure, resend.as_ref(), may_retry);
                if request.is_none() {
                    return Err(last_error);
                }
            }
        }
    }
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
        // Nothing was sent: any request may go elsewhere.
        Failure::Connect(req) => Some(req),
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
        Failure::Timeout { .. } | Failure::ClientBody => None,
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
