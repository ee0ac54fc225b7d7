//! Phase 4, respond: the answer's head as the client gets it. An upstream's
//! answer loses its hop-by-hop headers and goes out as HTTP/1.1 whatever the
//! upstream spoke (an HTTP/1.0 upstream must not downgrade the client's
//! connection); a failure becomes figway's own short answer with
//! `x-figway-error`. Either way the answer carries `x-request-id`, and a
//! shadow compare learns the head the client got. The route's response
//! edits (SPEC §12) apply to the upstream's answer only, after the compare
//! took its head: the compare weighs one upstream's answer against the
//! other's, and figway's edits are neither's.

use crate::upstream::client::UpstreamBody;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode, Version};

use super::context::RequestCtx;
use super::finish::{ResponseBody, Source};
use super::upgrade;
use crate::error::{ErrorKind, X_FIGWAY_ERROR};
use crate::headers::{self, X_REQUEST_ID};

pub fn respond(
    mut ctx: Box<RequestCtx>,
    outcome: Result<Response<UpstreamBody>, ErrorKind>,
) -> Response<ResponseBody> {
    let (mut parts, mut source) = head(&mut ctx, outcome);
    if ctx.error == Some(ErrorKind::RateLimited) {
        parts
            .headers
            .insert(RETRY_AFTER, HeaderValue::from(ctx.retry_after));
    }
    if let Some(slot) = ctx.compare.take() {
        // The shadow compares with what the client gets, figway's own error
        // answers included, but before figway adds its x-request-id: that
        // header is figway's, not the primary's.
        let _ = slot.head.send((parts.status, parts.headers.clone()));
        ctx.tee = Some(slot.tee);
    }
    if let (Source::Upstream(_), Some(route)) = (&source, ctx.route) {
        if let Some(e) = &ctx.snapshot.routes[route].headers {
            headers::edit(&mut parts.headers, &e.response_remove, &e.response_set);
        }
    }
    // Fields that came as lines (`codec::lines`; the attempt asked for them
    // only where neither a compare nor edits read the map) take it as one.
    let lines = match &mut source {
        Source::Upstream(body) => body.lines_mut(),
        Source::Full(_) => None,
    };
    match lines {
        Some(lines) => lines.push(X_REQUEST_ID.as_str().as_bytes(), ctx.request_id.as_bytes()),
        None => {
            parts
                .headers
                .insert(X_REQUEST_ID.clone(), ctx.request_id.clone());
        }
    }
    ctx.status = Some(parts.status.as_u16());
    if ctx.ramped {
        record_ramp(&ctx, parts.status);
    }
    match source {
        Source::Upstream(body)
            if parts.status == StatusCode::SWITCHING_PROTOCOLS && ctx.upgrade.is_some() =>
        {
            // The request goes on in the tunnel, and ends there.
            upgrade::splice(ctx, &mut parts, body);
            Response::from_parts(parts, ResponseBody::empty())
        }
        source => Response::from_parts(parts, ResponseBody::new(source, ctx)),
    }
}

/// The answer's head and where its body comes from: the upstream's, or
/// figway's own answer to the error (plain or gRPC), noted in `ctx`.
fn head(
    ctx: &mut RequestCtx,
    outcome: Result<Response<UpstreamBody>, ErrorKind>,
) -> (http::response::Parts, Source) {
    let outcome = match outcome {
        // A server must not switch to a protocol the client did not ask
        // for (RFC 9110 §15.2.2): after a 101 to a plain request, nothing
        // follows that the client could read, and the connection it came
        // on is in no state to serve again (dropped with the answer).
        Ok(r) if r.status() == StatusCode::SWITCHING_PROTOCOLS && ctx.upgrade.is_none() => {
            Err(ErrorKind::UpstreamReset)
        }
        other => other,
    };
    match outcome {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            headers::remove_hop_by_hop(&mut parts.headers);
            parts.version = Version::HTTP_11;
            (parts, Source::Upstream(body))
        }
        // A framing error is answered plain whatever the request claims:
        // its answer closes the connection (nothing after the head can be
        // trusted to be a request), which only the plain answer says.
        Err(kind) if ctx.grpc && kind != ErrorKind::BadFraming => {
            ctx.error = Some(kind);
            let (parts, body) = grpc_answer(kind).into_parts();
            (parts, Source::Full(body))
        }
        Err(kind) => {
            ctx.error = Some(kind);
            let (parts, body) = own_answer(kind).into_parts();
            (parts, Source::Full(Some(body)))
        }
    }
}

/// Counts the answer's head in the ramp's window: a 5xx, figway's own
/// failure (which a gRPC call gets as a 200), or an answer the fallback
/// gave because `to` could not, is a failure of `to` (SPEC §11).
fn record_ramp(ctx: &RequestCtx, status: StatusCode) {
    let Some(route) = ctx.route.map(|r| &ctx.snapshot.routes[r]) else {
        return;
    };
    if let Some(ramp) = route.ramp.as_deref() {
        let to = route.sides[ramp.spec.to].upstream;
        let failed = status.is_server_error()
            || ctx.error.is_some_and(|k| k.status().is_server_error())
            || ctx.upstream != Some(to);
        ramp.record(failed, ctx.start.elapsed());
    }
}

/// figway's own answer for `kind` to a gRPC request (SPEC §4): "trailers
/// only", as gRPC servers fail a call before any message: HTTP 200, no
/// body, `grpc-status` and `grpc-message` in the head (which, with no body,
/// goes out as one HEADERS frame ending the stream), `x-figway-error` too.
pub fn grpc_answer(kind: ErrorKind) -> Response<Option<Bytes>> {
    let mut response = Response::new(None);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(&GRPC_STATUS, HeaderValue::from_static(kind.grpc_status()));
    headers.insert(
        &GRPC_MESSAGE,
        HeaderValue::from_static(kind.message().trim_end()),
    );
    headers.insert(
        X_FIGWAY_ERROR.clone(),
        HeaderValue::from_static(kind.as_str()),
    );
    response
}

static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// figway's own answer for `kind` (SPEC §4): its status, `x-figway-error`
/// and a short text body.
pub fn own_answer(kind: ErrorKind) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from_static(kind.message().as_bytes()));
    *response.status_mut() = kind.status();
    let headers = response.headers_mut();
    headers.insert(
        X_FIGWAY_ERROR.clone(),
        HeaderValue::from_static(kind.as_str()),
    );
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    match kind {
        ErrorKind::MethodNotAllowed => {
            headers.insert(
                ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"),
            );
        }
        // With the framing in doubt, the bytes after this head may be the
        // rest of its body or a request smuggled behind it: none may be
        // read as a request (RFC 9112 §6.3). hyper closes the connection
        // after an answer that says so, without parsing another head.
        ErrorKind::BadFraming => {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        _ => {}
    }
    response
}
