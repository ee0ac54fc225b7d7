//! Phase 1, route: refuse what must not be forwarded (CONNECT, ambiguous
//! framing), find the route (`decision`), take a token from its rate limit
//! (SPEC §12), pick the split side, and settle
//! the upstream: the side's own, or the route's fallback when the side has
//! no usable target or its breaker is open (SPEC §5). The chosen upstream's
//! in-flight place is taken here and held until the answer ends.

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::request::Parts;
use http::{HeaderMap, Method};

use super::context::RequestCtx;
use crate::decision::{self, Decision};
use crate::error::ErrorKind;
use crate::state::{Route, Snapshot};
use crate::upstream::UpstreamGuard;

/// Routes the request and takes its place at the upstream. Returns the path
/// and query to forward (`None`: the request's own).
pub fn route(
    ctx: &mut RequestCtx,
    parts: &Parts,
) -> Result<Option<http::uri::PathAndQuery>, ErrorKind> {
    // Asked for every request, so the per-connection count stays aligned
    // with the heads the framing guard counted.
    if ctx.conn.framing.next_request_conflicts() {
        return Err(ErrorKind::BadFraming);
    }
    if parts.method == Method::CONNECT {
        return Err(ErrorKind::MethodNotAllowed);
    }
    check_framing(&parts.headers)?;
    let Decision {
        route_index,
        route,
        path_forwarded,
    } = decision::decide(&ctx.snapshot, &parts.method, &parts.uri, &parts.headers)?;
    if let Some(limit) = &route.rate_limit {
        // Before any upstream is chosen: a refused request takes no
        // in-flight place and nothing from a retry budget.
        if let Err(seconds) = limit.limiter.check(&parts.headers, ctx.client) {
            limit.limited.inc();
            ctx.route = Some(route_index);
            ctx.retry_after = u16::try_from(seconds).unwrap_or(u16::MAX);
            return Err(ErrorKind::RateLimited);
        }
    }
    let side_index = decision::choose_side(route, &parts.headers, ctx.client);
    // The ramp's gates judge what the split sent to `to`, whoever serves it.
    ctx.ramped = route.ramp.as_ref().is_some_and(|r| r.spec.to == side_index);
    let side = route.sides[side_index].upstream;
    // The request's start is "now" for ejections and breakers: read
    // microseconds ago, and a clock read a request cheaper.
    let chosen = choose_upstream(&ctx.snapshot, route, side, ctx.start_ms);
    ctx.route = Some(route_index);
    ctx.upstream = Some(side);
    let (upstream, guard) = chosen.map_err(|(kind, refused)| {
        ctx.snapshot.upstreams[refused].metrics.error(kind);
        kind
    })?;
    ctx.upstream = Some(upstream);
    ctx.upstream_guard = Some(guard);
    Ok(path_forwarded)
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

/// Refuses requests whose framing two parsers could read differently
/// (SPEC §4, no smuggling). hyper already rejects a final coding other than
/// chunked, and drops Content-Length when both are present (the framing
/// guard in `framing.rs` catches that case); this catches what hyper lets
/// through with chunked last, such as `gzip, chunked`, `chunked, chunked`
/// or two Transfer-Encoding lines. Either way the answer closes the
/// connection (see `respond::own_answer`).
fn check_framing(headers: &HeaderMap) -> Result<(), ErrorKind> {
    // Most requests have no body, or a length: one look.
    if !crate::headers::has(headers, &TRANSFER_ENCODING) {
        return Ok(());
    }
    let mut codings = headers.get_all(TRANSFER_ENCODING).iter();
    if let Some(first) = codings.next() {
        let chunked_only =
            first.as_bytes().eq_ignore_ascii_case(b"chunked") && codings.next().is_none();
        if !chunked_only || headers.contains_key(CONTENT_LENGTH) {
            return Err(ErrorKind::BadFraming);
        }
    }
    Ok(())
}
