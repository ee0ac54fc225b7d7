//! Between rewrite and attempt: the shadow copy (SPEC §4). When the route
//! has a shadow and admits this request, the rewritten head and a copy of
//! the body go to a task of their own (`shadow::run`); for a compare, the
//! primary's answer reaches that task through the slot left in the context.

use http::Request;

use super::context::RequestCtx;
use crate::body::{RequestBody, Tee};
use crate::shadow::{self, CompareSlot, Mirror};

pub fn start(ctx: &mut RequestCtx, request: &mut Request<RequestBody>) {
    let Some(route_index) = ctx.route else { return };
    let route = &ctx.snapshot.routes[route_index];
    let Some(shadow) = &route.shadow else { return };
    let Some(permit) = shadow.admit(request.method()) else {
        return;
    };
    let primary = shadow.spec.compare.then(|| {
        let (head, head_rx) = tokio::sync::oneshot::channel();
        let (tee, body_rx) = Tee::new(shadow.spec.max_body);
        ctx.compare = Some(CompareSlot { head, tee });
        (head_rx, body_rx)
    });
    let mirror = Mirror {
        method: request.method().clone(),
        uri: request.uri().clone(),
        // With the primary's x-request-id, so the two can be joined in logs.
        headers: request.headers().clone(),
        body: request.body_mut().mirror(shadow.spec.max_body),
        primary,
        permit,
    };
    let snapshot = ctx.snapshot.clone();
    tokio::spawn(async move {
        let route = &snapshot.routes[route_index];
        if let Some(shadow) = &route.shadow {
            let upstream = &snapshot.upstreams[shadow.spec.upstream];
            shadow::run(shadow, upstream, &route.name, mirror).await;
        }
    });
}
