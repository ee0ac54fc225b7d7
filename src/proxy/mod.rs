//! The request path, as phases over one per-request context, in the order
//! a request meets them (Pingora's `ProxyHttp` is the model):
//!
//! 1. [`route`]: refuse what must not be forwarded, find the route, pick the
//!    split side and the upstream (or its fallback), take its in-flight place;
//! 2. [`rewrite`]: the head as the upstream gets it (hop-by-hop, `Host`,
//!    `X-Forwarded-*`, the forwarded path);
//! 3. [`attempt`]: the body policy, the shadow copy ([`mirror`]), then
//!    attempts at targets with retries, through `upstream::client`; an
//!    answer from a legacy upstream is counted in the legacy inventory;
//! 4. [`respond`]: the answer's head, or figway's own error answer;
//! 5. [`finish`]: the answer streams back, and when it is over the one
//!    end-of-request step runs: pool return, compare copy, metrics, log line.
//!
//! An `Upgrade` request (WebSocket) takes the same phases; on the target's
//! 101, [`upgrade`] splices the two connections and the end-of-request step
//! runs when the tunnel closes.
//!
//! Futures: every future on this path is moved at least once (into the
//! box `handle` makes, into the state of the future awaiting it), and a
//! move copies the whole state machine, so each level's state counts as
//! many times as there are levels above it. The request (~260 bytes) is
//! therefore held once, by `handle`'s future, and lent down by `&mut`
//! (`Option<Request>`, `None` once sent and not to be sent again) to the
//! attempts, the upstream client and figway's HTTP/1.1 client, which
//! reads its head from where it lies and takes only its body once the
//! head is out. A connect that fails leaves it whole where it was lent
//! from, for another target or the fallback. Held by value at each level
//! it was ~1.3 KiB of every request's state (benches/instructions.sh:
//! -500 instructions a request, 3%). An `async fn` keeps each by-value
//! argument twice in its state (as passed, and as moved into its body),
//! so a function taking a large value is written
//! `fn … -> impl Future { async move { … } }`, which keeps it once. An
//! `async` block owns only what it names: a guard held for its drop alone
//! must be named inside it. What a value passed on to another future
//! leaves behind stays in the state too (the compiler does not reuse an
//! upvar's room), so work done before the first `.await` (routing,
//! encoding a head) is done before the `async` block is made, which then
//! holds only what it awaits with; a rare path's large future is boxed
//! where it is awaited; and no future's outcome is kept across a later
//! `.await` (a sync function settles it first). `handle`'s box holds
//! them all (~1.4 KiB; was ~4.7, then ~2.5).
//!
//! [`context`] holds the per-connection facts (computed once at accept) and
//! the per-request state the phases share. Nothing a client or an upstream
//! does can make this path panic or affect other requests: every failure is
//! an [`ErrorKind`] answer.

pub mod attempt;
pub mod context;
pub mod finish;
pub mod mirror;
pub mod respond;
pub mod rewrite;
pub mod route;
pub mod upgrade;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Request, Response};

use crate::body::{ClientBody, RequestBody};
use crate::config::{KeySource, Protocol};
use crate::decision;
use crate::error::ErrorKind;
use crate::headers;
use crate::inventory;
use crate::net;
use crate::recycle::Recycled;
use crate::upstream::client::UpstreamBody;
pub use context::{ConnCtx, LogFacts, RequestCtx};
pub use finish::ResponseBody;

/// Which server writes the answer to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// figway's own HTTP/1.1 server (`server::h1`): an upstream's fields
    /// may come as lines (`codec::lines`), which it writes as they are.
    Own,
    /// hyper's (TLS, HTTP/2, embedding), which writes a map.
    Hyper,
}

/// Serves one client request. Never fails: errors are answered.
///
/// The request's head is read, its context built and phases 1 and 2
/// (route, rewrite) run here, before the future is made: they do not
/// wait. The future holds the request (lent to phase 3 and its attempts:
/// see Futures above) and the boxed context. hyper keeps a slot the size of
/// this future for every client connection, idle ones included, and
/// writes the future into it on every request: as an `async fn` holding
/// the request (and the phases' state inline) it was 528 bytes, now it is
/// a pointer.
pub fn handle(
    req: Request<ClientBody>,
    conn: Arc<ConnCtx>,
    writer: Writer,
) -> impl Future<Output = Result<Response<ResponseBody>, Infallible>> + Send {
    // Boxed once here: the context rides in the answer's body, which hyper
    // moves several times.
    let mut ctx = Box::new(RequestCtx::new(conn, crate::clock::now()));
    ctx.own_writer = writer == Writer::Own;
    let (mut parts, body) = req.into_parts();
    ctx.request_id = headers::request_id(&mut parts.headers);
    ctx.upgrade = upgrade::requested(&mut parts);
    ctx.grpc = headers::is_grpc(&parts.headers);
    if ctx.conn.trusted {
        let trusted = &ctx.conn.shared.listen.trusted_proxies;
        ctx.client = net::client_address(trusted, ctx.conn.peer, &parts.headers);
    }
    if ctx.snapshot.access_log {
        ctx.log = Some(LogFacts {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            host: decision::request_host_value(&parts.uri, &parts.headers),
        });
    }
    let headed = route_and_rewrite(&mut ctx, &mut parts);
    // The body comes in phase 3.
    let mut request = Some(Request::from_parts(parts, RequestBody::Empty));
    let mut body = Some(body);
    // Boxed rather than the attempt's state (timers, a connect) in every
    // connection's slot; in a block the thread keeps for the next request
    // (`recycle`), ~1.4 KiB being past what malloc serves cheaply.
    // The answer is made in the box too: no second future around it to
    // hand the context and the outcome out to (20-40 instructions a
    // request of copies).
    Recycled::new(move || async move {
        // `headed` and `body` are borrowed, not moved: what a future moves
        // out stays in its state beside where it went (Futures, above).
        let outcome = match &headed {
            Ok(counted) => {
                let answer = forward(&mut ctx, &mut request, &mut body).await;
                if let (Ok(_), Some((path, method))) = (&answer, counted) {
                    count_in_inventory(&ctx, path.path(), *method);
                }
                answer
            }
            Err(kind) => Err(*kind),
        };
        Ok(respond::respond(ctx, outcome))
    })
}

/// The path as the client sent it and its method, for the legacy
/// inventory (SPEC §11).
type Counted = Option<(PathAndQuery, u8)>;

/// Phases 1 and 2: the route, then the head as the upstream gets it.
/// Returns what the legacy inventory counts once the upstream answers.
fn route_and_rewrite(ctx: &mut RequestCtx, parts: &mut Parts) -> Result<Counted, ErrorKind> {
    let path = route::route(ctx, parts)?;
    // The path as the client sent it, kept (a reference count, no copy)
    // only on a route with a legacy upstream: the inventory counts it once
    // that upstream has answered (SPEC §11).
    let counted = match ctx.route {
        Some(r) if !ctx.snapshot.routes[r].inventory.is_empty() => parts
            .uri
            .path_and_query()
            .map(|p| (p.clone(), inventory::method_index(&parts.method))),
        _ => None,
    };
    let h2c = ctx.upstream().is_some_and(|u| u.protocol == Protocol::H2c);
    let edits = ctx
        .route
        .and_then(|r| ctx.snapshot.routes[r].headers.as_deref());
    // What else reads the forwarded fields: a shadow copy, a hash key
    // (which may name one), the edits (rewrite looks at those).
    let direct = ctx
        .route
        .is_some_and(|r| ctx.snapshot.routes[r].shadow.is_none())
        && ctx
            .upstream()
            .is_some_and(|u| !matches!(u.hash_key, Some(KeySource::Header(_))));
    ctx.forwarded_direct = rewrite::request(&ctx.conn, parts, path, h2c, edits, direct);
    if let Some(pending) = &ctx.upgrade {
        upgrade::restore_request(&mut parts.headers, pending);
    }
    Ok(counted)
}

/// Phase 3, up to the upstream's answer head: the body policy, the shadow
/// copy, the attempts. `request` holds the rewritten head; its body,
/// taken from `body` (always `Some`), is set here.
async fn forward(
    ctx: &mut RequestCtx,
    request: &mut Option<Request<RequestBody>>,
    body: &mut Option<ClientBody>,
) -> Result<Response<UpstreamBody>, ErrorKind> {
    let (Some(head), Some(body)) = (request.as_mut(), body.take()) else {
        return Err(ErrorKind::NoHealthyUpstream);
    };
    *head.body_mut() = attempt::body(ctx, head, body).await?;
    mirror::start(ctx, head);
    attempt::send(ctx, request).await
}

/// Counts a request the upstream answered in the legacy inventory, when
/// that upstream (the side chosen, or the fallback that took over) is a
/// legacy one of the route.
fn count_in_inventory(ctx: &RequestCtx, path: &str, method: u8) {
    let (Some(r), Some(u)) = (ctx.route, ctx.upstream) else {
        return;
    };
    let route = &ctx.snapshot.routes[r];
    if let Some((_, pair)) = route.inventory.iter().find(|(at, _)| *at == u) {
        pair.record(&route.prefix, path, method);
    }
}

#[cfg(test)]
mod tests {
    /// hyper keeps a box the size of this future for every client
    /// connection; keep it small (see `handle`).
    #[test]
    fn the_request_future_held_per_connection_stays_small() {
        fn size<A, B, C, F: std::future::Future>(_: fn(A, B, C) -> F) -> usize {
            std::mem::size_of::<F>()
        }
        let bytes = size(super::handle);
        assert!(bytes <= 32, "handle's future is {bytes} bytes");
    }
}
