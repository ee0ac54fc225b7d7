//! Shadow traffic (SPEC §4, `[routes.shadow]`): a sampled copy of a route's
//! requests goes to another upstream, on a task of its own, and its answer
//! is read, optionally compared with the primary's, and dropped. The client
//! never waits for it: the primary's bodies are copied (up to `max_body`)
//! as they stream past, and the copies reach the shadow task through
//! one-shot channels that never block the sender.
//!
//! Outcomes, counted per route: `match`, `mismatch` (logged once per
//! request, rate-limited), `error` (the shadow did not answer), `skipped`
//! (over `max_in_flight`, a body over `max_body`, the primary gone before
//! its answer was complete, or sent without `compare`). Requests not
//! sampled are not counted.

pub mod compare;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::BodyExt;
use prometheus::IntCounter;
use tokio::sync::oneshot;

use crate::body::{BodyCopy, RequestBody, Tee};
use crate::clock;
use crate::config::ShadowSpec;
pub use crate::headers::X_FIGWAY_SHADOW;
use crate::headers::X_REQUEST_ID;
pub use crate::metrics::ShadowOutcome as Outcome;
use crate::upstream::balance::Tried;
use crate::upstream::{client, Target, TargetGuard, Upstream};
use compare::Answer;

/// A route's shadow as compiled into a snapshot.
pub struct Shadow {
    pub spec: ShadowSpec,
    in_flight: Arc<AtomicUsize>,
    /// `figway_shadow_requests_total` per [`Outcome`], in `Outcome::ALL` order.
    counts: [IntCounter; 4],
    /// `second << 16 | lines` of mismatch lines logged this second.
    log_window: AtomicU64,
}

/// Mismatch lines per route per second; a broken service cannot flood the log.
const MISMATCH_LINES_PER_SECOND: u64 = 5;

impl Shadow {
    pub fn new(spec: ShadowSpec, counts: [IntCounter; 4]) -> Shadow {
        Shadow {
            spec,
            in_flight: Arc::new(AtomicUsize::new(0)),
            counts,
            log_window: AtomicU64::new(0),
        }
    }

    /// The outcome counters, for a recompiled route to keep.
    pub fn counters(&self) -> &[IntCounter; 4] {
        &self.counts
    }

    pub fn count(&self, outcome: Outcome) -> u64 {
        self.counts[outcome as usize].get()
    }

    fn record(&self, outcome: Outcome) {
        self.counts[outcome as usize].inc();
    }

    /// Whether `method` is one this shadow mirrors at all.
    pub fn mirrors(&self, method: &Method) -> bool {
        self.spec.methods.contains(method)
    }

    /// Decides whether this request is mirrored. `None`: not mirrored
    /// (not sampled, or over `max_in_flight`, which counts as skipped).
    pub fn admit(&self, method: &Method) -> Option<Permit> {
        if !self.mirrors(method) || !(self.spec.sample >= 1.0 || fastrand::f64() < self.spec.sample)
        {
            return None;
        }
        let before = self.in_flight.fetch_add(1, Ordering::Relaxed);
        let permit = Permit(self.in_flight.clone());
        if before >= self.spec.max_in_flight {
            self.record(Outcome::Skipped);
            return None;
        }
        Some(permit)
    }

    fn may_log(&self) -> bool {
        let second = clock::now_ms() / 1000;
        loop {
            let current = self.log_window.load(Ordering::Relaxed);
            let next = if current >> 16 == second {
                if current & 0xffff >= MISMATCH_LINES_PER_SECOND {
                    return false;
                }
                current + 1
            } else {
                second << 16 | 1
            };
            if self
                .log_window
                .compare_exchange(current, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                return true;
            }
        }
    }
}

/// A place under the shadow's `max_in_flight`, released when dropped.
pub struct Permit(Arc<AtomicUsize>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The primary's side of a compare: its answer head goes out as soon as it
/// is known, its body through the tee as it streams to the client.
pub struct CompareSlot {
    pub head: oneshot::Sender<(StatusCode, HeaderMap)>,
    pub tee: Tee,
}

/// Where the shadow task receives the primary's answer head and body copy.
pub type PrimaryReceivers = (
    oneshot::Receiver<(StatusCode, HeaderMap)>,
    oneshot::Receiver<Option<Bytes>>,
);

/// Everything the shadow task needs, taken from the primary's request.
pub struct Mirror {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: BodyCopy,
    /// The primary's answer head and body, when comparing.
    pub primary: Option<PrimaryReceivers>,
    pub permit: Permit,
}

/// Sends the copy to `upstream` and settles its outcome. Runs on its own
/// task (the proxy spawns it); nothing here can touch the client's exchange.
pub async fn run(shadow: &Shadow, upstream: &Upstream, route: &str, mirror: Mirror) {
    let outcome = exchange(shadow, upstream, route, mirror).await;
    shadow.record(outcome);
}

/// The shadow's outcome: its copy of the request sent, its answer read
/// and, when comparing, judged against the primary's.
async fn exchange(shadow: &Shadow, upstream: &Upstream, route: &str, mirror: Mirror) -> Outcome {
    let Mirror {
        method,
        uri,
        mut headers,
        body,
        primary,
        permit,
    } = mirror;
    let _permit = permit;
    // Larger than max_body, or the client gave up mid-body: no copy.
    let Some(body) = body_copy(body).await else {
        return Outcome::Skipped;
    };
    headers.insert(X_FIGWAY_SHADOW.clone(), HeaderValue::from_static("1"));
    let request_id = headers.get(&X_REQUEST_ID).cloned();
    let Some(index) = upstream.pick(None, &Tried::default(), clock::now_ms()) else {
        return Outcome::Error;
    };
    let target = &upstream.targets[index];
    let _guard = TargetGuard::new(target.clone());
    let request = shadow_request(method, uri, headers, body);
    let Some((status, shadow_headers, shadow_body)) =
        send_and_read(shadow, upstream, target, request).await
    else {
        return Outcome::Error;
    };
    let Some(primary) = primary else {
        return Outcome::Skipped;
    };
    let Some(shadow_body) = shadow_body else {
        return Outcome::Skipped;
    };
    let Some(primary) = primary_answer(primary).await else {
        return Outcome::Skipped;
    };
    let theirs = Answer {
        status,
        headers: shadow_headers,
        body: shadow_body,
    };
    judge(
        shadow,
        upstream,
        route,
        request_id.as_ref(),
        &primary,
        &theirs,
    )
}

/// The request body's copy, once the client has sent all of it; `None`
/// when there is none to send.
async fn body_copy(body: BodyCopy) -> Option<Bytes> {
    match body {
        BodyCopy::Known(b) => Some(b),
        BodyCopy::TooLarge => None,
        BodyCopy::Pending(rx) => rx.await.ok().flatten(),
    }
}

fn shadow_request(
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Request<RequestBody> {
    let body = match body.is_empty() {
        true => RequestBody::Empty,
        false => RequestBody::Replay(Some(body)),
    };
    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    request
}

/// Sends `request` to `target` and reads the whole answer: its status,
/// headers and body copy (`None`: over `max_body`). `None`: no answer in
/// time, or a failed exchange.
async fn send_and_read(
    shadow: &Shadow,
    upstream: &Upstream,
    target: &Arc<Target>,
    mut request: Request<RequestBody>,
) -> Option<(StatusCode, HeaderMap, Option<Bytes>)> {
    // One deadline for the whole exchange, head and body: a slow shadow
    // holds only its own task and its place under max_in_flight.
    let answer = tokio::time::timeout(upstream.timeouts.request, async {
        // The shadow reads the answer's fields: a map, with no room to add.
        let map = client::Form {
            room: 0,
            lines: false,
        };
        let response = client::send(upstream, target, &mut request, map, clock::now_ms(), &[])
            .await
            .map_err(|_| ())?;
        let (parts, mut body) = response.into_parts();
        let (mut tee, copy) = Tee::new(shadow.spec.max_body);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| ())?;
            if let Some(data) = frame.data_ref() {
                tee.push(data);
            }
        }
        tee.finish();
        let copy = copy.await.ok().flatten();
        Ok::<_, ()>((parts.status, parts.headers, copy))
    })
    .await;
    answer.ok()?.ok()
}

/// The primary's answer, once it has streamed to the client; `None` when
/// the primary is gone before its answer was complete or its body was over
/// `max_body`.
async fn primary_answer((head_rx, body_rx): PrimaryReceivers) -> Option<Answer> {
    let (Ok((status, headers)), Ok(Some(body))) = (head_rx.await, body_rx.await) else {
        return None;
    };
    Some(Answer {
        status,
        headers,
        body,
    })
}

/// `match` or `mismatch`; a mismatch is logged with its first difference,
/// under the per-route rate limit.
fn judge(
    shadow: &Shadow,
    upstream: &Upstream,
    route: &str,
    request_id: Option<&HeaderValue>,
    primary: &Answer,
    theirs: &Answer,
) -> Outcome {
    match compare::first_difference(&shadow.spec, primary, theirs) {
        None => Outcome::Match,
        Some(difference) => {
            if shadow.may_log() {
                tracing::warn!(
                    route,
                    request_id = request_id.and_then(|v| v.to_str().ok()).unwrap_or("-"),
                    shadow = %upstream.name,
                    difference = %difference,
                    "shadow mismatch"
                );
            }
            Outcome::Mismatch
        }
    }
}
