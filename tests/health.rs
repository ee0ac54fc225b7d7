//! Upstream health and failure handling (SPEC §5, issue 5) with real loopback
//! upstreams whose health endpoint and behaviour flip at run time: active
//! checks take a failing target out within interval × unhealthy_after and
//! bring it back after healthy_after good checks (and carry `user-agent:
//! figway-health`, `Host: host:port`, the configured path, and honour
//! `expect` and `timeout`); a route whose upstream has no healthy target is
//! served by its fallback, or answers 503 `no_healthy_upstream`; a target
//! answering 500s is ejected after `consecutive_failures`, comes back after
//! `eject_for`, and a repeat ejection lasts twice as long; no more than
//! `max_ejected_percent` of the targets is ever ejected; `max_in_flight`
//! fails fast with 503 `circuit_open` or goes to the fallback; `GET
//! /upstreams` has the exact SPEC §7 shape; health and ejection state survive
//! a reload; and the health, outlier, breaker and fallback keys are
//! validated.

mod support;
use support::*;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use figway::clock;
use http::{Response, StatusCode};
use serde_json::Value;

// === a backend that can be flipped at run time ===

/// A real backend whose `/health` answer and whose answer to everything else
/// (status, delay) are switched while the test runs.
struct Flip {
    name: &'static str,
    backend: Backend,
    /// Status `/health` answers.
    health: Arc<AtomicU16>,
    /// Milliseconds `/health` waits before answering.
    health_delay_ms: Arc<AtomicU64>,
    /// Status every other path answers.
    status: Arc<AtomicU16>,
    /// Milliseconds every other path waits before answering.
    delay_ms: Arc<AtomicU64>,
}

impl Flip {
    async fn start(name: &'static str) -> Flip {
        let health = Arc::new(AtomicU16::new(200));
        let health_delay_ms = Arc::new(AtomicU64::new(0));
        let status = Arc::new(AtomicU16::new(200));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (h, hd, s, d) = (
            health.clone(),
            health_delay_ms.clone(),
            status.clone(),
            delay_ms.clone(),
        );
        let backend = Backend::with(move |seen: Seen| {
            let (h, hd, s, d) = (h.clone(), hd.clone(), s.clone(), d.clone());
            async move {
                let is_health = seen.uri.path() == "/health";
                let (status, delay) = if is_health {
                    (h.load(Ordering::SeqCst), hd.load(Ordering::SeqCst))
                } else {
                    (s.load(Ordering::SeqCst), d.load(Ordering::SeqCst))
                };
                if delay > 0 {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                let mut b = Response::builder()
                    .status(StatusCode::from_u16(status).unwrap())
                    .header("x-backend", name);
                if status / 100 == 3 {
                    b = b.header("location", "/elsewhere");
                }
                b.body(full(name)).unwrap()
            }
        })
        .await;
        Flip {
            name,
            backend,
            health,
            health_delay_ms,
            status,
            delay_ms,
        }
    }

    fn url(&self) -> String {
        self.backend.url()
    }

    fn addr(&self) -> SocketAddr {
        self.backend.addr
    }

    fn set_health(&self, status: u16) {
        self.health.store(status, Ordering::SeqCst);
    }

    fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Requests figway's health checker sent (by user agent, so a check to
    /// the wrong path still counts as one).
    fn checks(&self) -> Vec<Seen> {
        self.backend.seen().into_iter().filter(is_check).collect()
    }

    /// Proxied requests (everything but health checks).
    fn traffic(&self) -> usize {
        self.backend.seen().iter().filter(|s| !is_check(s)).count()
    }
}

fn is_check(s: &Seen) -> bool {
    s.headers.get("user-agent").and_then(|v| v.to_str().ok()) == Some("figway-health")
}

// === helpers ===

async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Polls `cond` every 10 ms until it holds; panics with `what` after `limit`.
async fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out after {limit:?}: {what}");
        sleep_ms(10).await;
    }
}

async fn admin_json(admin: SocketAddr, path: &str) -> (Answer, Value) {
    let a = get(admin, path, &[]).await;
    assert_eq!(a.status, StatusCode::OK, "GET {path}: {}", a.text());
    let v = serde_json::from_slice(&a.body)
        .unwrap_or_else(|e| panic!("GET {path} is not JSON ({e}): {}", a.text()));
    (a, v)
}

async fn upstreams(admin: SocketAddr) -> Value {
    admin_json(admin, "/upstreams").await.1
}

/// The `/upstreams` entry of the target configured as `url`.
fn target<'a>(v: &'a Value, upstream: &str, url: &str) -> &'a Value {
    v[upstream]["targets"]
        .as_array()
        .unwrap_or_else(|| panic!("no upstream {upstream:?} in {v}"))
        .iter()
        .find(|t| t["url"] == url)
        .unwrap_or_else(|| panic!("no target {url:?} in upstream {upstream:?}: {v}"))
}

fn ejected_count(v: &Value, upstream: &str) -> usize {
    v[upstream]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| !t["ejected_until"].is_null())
        .count()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Asserts `ejected_until` is an RFC 3339 time between `lo` and `hi` seconds
/// from now (whole-second timestamps are allowed a second of truncation).
fn assert_ejected_until(t: &Value, lo: f64, hi: f64) {
    let text = t["ejected_until"]
        .as_str()
        .unwrap_or_else(|| panic!("ejected_until should be an RFC 3339 string: {t}"));
    let at = rfc3339_unix(text).unwrap_or_else(|| panic!("not RFC 3339: {text:?}"));
    let delta = at - unix_now();
    assert!(
        delta >= lo - 1.0 && delta <= hi,
        "ejected_until {text:?} is {delta:.3}s from now, expected {lo}..{hi}s"
    );
}

/// `count` sequential GETs of `path`; each must be answered by one of
/// `flips` with the status that flip currently serves. Returns how many each
/// of `flips` received.
async fn spread(f: &Figway, path: &str, count: usize, flips: &[&Flip]) -> Vec<usize> {
    let before: Vec<usize> = flips.iter().map(|b| b.traffic()).collect();
    for _ in 0..count {
        let a = get(f.addr, path, &[]).await;
        let by = a.header("x-backend");
        let flip = flips
            .iter()
            .find(|b| Some(b.name) == by)
            .unwrap_or_else(|| panic!("GET {path}: {} from {by:?}: {}", a.status, a.text()));
        assert_eq!(
            a.status.as_u16(),
            flip.status.load(Ordering::SeqCst),
            "GET {path} answered by {}",
            flip.name
        );
    }
    flips
        .iter()
        .zip(before)
        .map(|(b, n)| b.traffic() - n)
        .collect()
}

/// The health config every active-check test uses.
const FAST_HEALTH: &str = r#"path = "/health"
interval = "100ms"
timeout = "100ms"
unhealthy_after = 2
healthy_after = 2"#;

/// interval × unhealthy_after (or healthy_after), plus a second of slack for
/// a busy two-core machine.
const HEALTH_LIMIT: Duration = Duration::from_millis(100 * 2 + 1000);

// === 1. active health checks ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_health_checks_take_a_target_out_and_recovery_brings_it_back() {
    let a = Flip::start("a").await;
    let b = Flip::start("b").await;
    let f = Figway::start(&config(&format!(
        r#"
[upstreams.svc]
targets = ["{}", "{}"]
[upstreams.svc.health]
{FAST_HEALTH}

[[routes]]
prefix = "/"
to = "svc"
"#,
        a.url(),
        b.url()
    )))
    .await;

    // The checkers run against both targets, with the documented request.
    wait_for(Duration::from_secs(3), "two checks on each target", || {
        a.checks().len() >= 2 && b.checks().len() >= 2
    })
    .await;
    for flip in [&a, &b] {
        for check in flip.checks() {
            assert_eq!(check.method, http::Method::GET);
            assert_eq!(check.uri.path(), "/health", "check on {}", flip.name);
            assert_eq!(
                check.headers.get("host").unwrap(),
                &format!("127.0.0.1:{}", flip.addr().port()),
                "Host of a check on {}",
                flip.name
            );
            assert_eq!(check.headers.get("user-agent").unwrap(), "figway-health");
        }
    }
    // Both healthy: round robin reaches both.
    let before = spread(&f, "/work", 4, &[&a, &b]).await;
    assert!(
        before[0] > 0 && before[1] > 0,
        "both targets should get traffic: {before:?}"
    );

    // a fails its checks: it stops getting traffic within the limit.
    a.set_health(503);
    let flipped = Instant::now();
    loop {
        let got = spread(&f, "/work", 4, &[&a, &b]).await;
        if got[0] == 0 {
            break;
        }
        assert!(
            flipped.elapsed() < HEALTH_LIMIT,
            "a still gets traffic {:?} after its checks started failing",
            flipped.elapsed()
        );
        sleep_ms(20).await;
    }
    let out_after = flipped.elapsed();
    // ... and stays out, while every request is still served by b.
    let got = spread(&f, "/work", 20, &[&a, &b]).await;
    assert_eq!(got, vec![0, 20], "an unhealthy target got traffic");
    let v = upstreams(f.admin).await;
    assert_eq!(target(&v, "svc", &a.url())["healthy"], false, "{v}");
    assert_eq!(target(&v, "svc", &b.url())["healthy"], true, "{v}");

    // a recovers: it gets traffic again within the limit.
    a.set_health(200);
    let recovered = Instant::now();
    loop {
        let got = spread(&f, "/work", 4, &[&a, &b]).await;
        if got[0] > 0 {
            break;
        }
        assert!(
            recovered.elapsed() < HEALTH_LIMIT,
            "a gets no traffic {:?} after its checks pass again",
            recovered.elapsed()
        );
        sleep_ms(20).await;
    }
    let back_after = recovered.elapsed();
    let v = upstreams(f.admin).await;
    assert_eq!(target(&v, "svc", &a.url())["healthy"], true, "{v}");
    let got = spread(&f, "/work", 10, &[&a, &b]).await;
    assert!(
        got[0] >= 4 && got[1] >= 4,
        "traffic not shared again: {got:?}"
    );
    eprintln!("out after {out_after:?}, back after {back_after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_and_timeout_decide_what_a_good_check_is() {
    // One backend whose /health answers 302, one whose /health is too slow.
    let redirecting = Flip::start("redirecting").await;
    redirecting.set_health(302);
    let slow = Flip::start("slow").await;
    slow.health_delay_ms.store(400, Ordering::SeqCst);
    let f = Figway::start(&config(&format!(
        r#"
[upstreams.strict]
targets = ["{r}"]
[upstreams.strict.health]
{FAST_HEALTH}
expect = "200-299"

[upstreams.lenient]
targets = ["{r}"]
[upstreams.lenient.health]
{FAST_HEALTH}

[upstreams.slowcheck]
targets = ["{s}"]
[upstreams.slowcheck.health]
{FAST_HEALTH}

[[routes]]
prefix = "/strict"
to = "strict"
[[routes]]
prefix = "/lenient"
to = "lenient"
[[routes]]
prefix = "/slow"
to = "slowcheck"
"#,
        r = redirecting.url(),
        s = slow.url()
    )))
    .await;

    let start = Instant::now();
    // expect = "200-299": a 302 is a failed check; the only target goes out.
    loop {
        let a = get(f.addr, "/strict/x", &[]).await;
        if a.status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(a.header("x-figway-error"), Some("no_healthy_upstream"));
            break;
        }
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        assert!(
            start.elapsed() < HEALTH_LIMIT,
            "a target answering 302 to expect = \"200-299\" still gets traffic after {:?}",
            start.elapsed()
        );
        sleep_ms(20).await;
    }
    // A check slower than `timeout` fails too.
    loop {
        let a = get(f.addr, "/slow/x", &[]).await;
        if a.status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(a.header("x-figway-error"), Some("no_healthy_upstream"));
            break;
        }
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        assert!(
            start.elapsed() < HEALTH_LIMIT + Duration::from_millis(400),
            "a target whose checks time out still gets traffic after {:?}",
            start.elapsed()
        );
        sleep_ms(20).await;
    }
    // The default expect (200-399) takes the same 302 as healthy, even after
    // many checks.
    wait_for(
        Duration::from_secs(3),
        "five checks on the 302 backend",
        || redirecting.checks().len() >= 5,
    )
    .await;
    for _ in 0..5 {
        let a = get(f.addr, "/lenient/x", &[]).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        assert_eq!(a.header("x-backend"), Some("redirecting"));
    }
    let v = upstreams(f.admin).await;
    assert_eq!(target(&v, "strict", &redirecting.url())["healthy"], false);
    assert_eq!(target(&v, "lenient", &redirecting.url())["healthy"], true);
    assert_eq!(target(&v, "slowcheck", &slow.url())["healthy"], false);
}

// === 2. fallback ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_targets_down_goes_to_the_fallback_or_503() {
    let monolith = Backend::start("monolith").await;
    let a = Flip::start("a").await;
    let b = Flip::start("b").await;
    let f = Figway::start(&config(&format!(
        r#"
[upstreams.monolith]
legacy = true
targets = ["{}"]

[upstreams.svc]
targets = ["{}", "{}"]
[upstreams.svc.health]
{FAST_HEALTH}

[[routes]]
name = "with"
prefix = "/with"
to = "svc"
fallback = "monolith"

[[routes]]
name = "without"
prefix = "/without"
to = "svc"
"#,
        monolith.url(),
        a.url(),
        b.url()
    )))
    .await;

    // Healthy: both routes are served by svc, the monolith sees nothing.
    for path in ["/with/1", "/without/1"] {
        let r = get(f.addr, path, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text());
        assert!(matches!(r.header("x-backend"), Some("a" | "b")), "{path}");
    }
    assert_eq!(monolith.count(), 0);

    // Every target of svc fails its checks.
    a.set_health(503);
    b.set_health(503);
    let flipped = Instant::now();
    loop {
        let r = get(f.addr, "/without/2", &[]).await;
        if r.status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(r.header("x-figway-error"), Some("no_healthy_upstream"));
            break;
        }
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert!(
            flipped.elapsed() < HEALTH_LIMIT,
            "svc still serves {:?} after all its checks fail",
            flipped.elapsed()
        );
        sleep_ms(20).await;
    }
    wait_for(HEALTH_LIMIT, "both targets unhealthy", || {
        f.shared.snapshot.load().upstreams.iter().all(|u| {
            &*u.name != "svc" || u.targets.iter().all(|t| !t.healthy.load(Ordering::Relaxed))
        })
    })
    .await;
    let (a_before, b_before) = (a.traffic(), b.traffic());
    for i in 0..5 {
        // No fallback: 503 no_healthy_upstream, every time.
        let r = get(f.addr, &format!("/without/{i}"), &[]).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.header("x-figway-error"), Some("no_healthy_upstream"));
        // With one: the monolith serves.
        let path = format!("/with/fb{i}");
        let r = get(f.addr, &path, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text());
        assert_eq!(r.header("x-backend"), Some("monolith"), "{path}");
        assert_eq!(r.text(), "monolith");
        assert!(r.header("x-figway-error").is_none());
        assert_eq!(monolith.last().uri.path(), path);
    }
    assert_eq!(monolith.count(), 5);
    assert_eq!((a.traffic(), b.traffic()), (a_before, b_before));

    // svc recovers: the route goes back to it.
    a.set_health(200);
    b.set_health(200);
    let recovered = Instant::now();
    loop {
        let r = get(f.addr, "/with/back", &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        if r.header("x-backend") != Some("monolith") {
            break;
        }
        assert!(
            recovered.elapsed() < HEALTH_LIMIT,
            "still on the fallback {:?} after svc recovered",
            recovered.elapsed()
        );
        sleep_ms(20).await;
    }
}

// === 3. outlier ejection ===

/// When the request that ejected a target was sent and answered, on the
/// clock figway's ejections use (see `figway::upstream::clock`).
struct Ejection {
    sent: Instant,
    sent_ms: u64,
    answered_ms: u64,
}

/// GETs `/work` until `flip` has received `n` proxied requests. Every
/// answer is checked: 500 from the failing target, 200 from the others.
async fn drive_until(f: &Figway, flip: &Flip, n: usize, limit: Duration) -> Ejection {
    let start = Instant::now();
    loop {
        let sent = Instant::now();
        let sent_ms = clock::now_ms();
        let r = get(f.addr, "/work", &[]).await;
        let answered_ms = clock::now_ms();
        if r.header("x-backend") == Some(flip.name) {
            assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
        } else {
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        }
        if flip.traffic() >= n {
            assert_eq!(
                flip.traffic(),
                n,
                "{} got more than {n} requests",
                flip.name
            );
            return Ejection {
                sent,
                sent_ms,
                answered_ms,
            };
        }
        assert!(
            start.elapsed() < limit,
            "{} got only {} of {n} requests in {limit:?}",
            flip.name,
            flip.traffic()
        );
    }
}

/// The live `ejected_until` (clock ms) of `flip` in `upstream`.
fn ejected_until_ms(f: &Figway, upstream: &str, flip: &Flip) -> u64 {
    let snapshot = f.shared.snapshot.load();
    let u = snapshot
        .upstreams
        .iter()
        .find(|u| &*u.name == upstream)
        .unwrap();
    let authority = flip.addr().to_string();
    let t = u
        .targets
        .iter()
        .find(|t| *t.authority == *authority)
        .unwrap();
    t.ejected_until.load(Ordering::SeqCst)
}

/// The ejection began while the request of `e` was in flight and lasts
/// exactly `ms`.
fn assert_ejected_for(f: &Figway, flip: &Flip, e: &Ejection, ms: u64) {
    let until = ejected_until_ms(f, "svc", flip);
    assert!(
        until >= e.sent_ms + ms && until <= e.answered_ms + ms,
        "{} ejected until {until}, expected {ms} ms after a failure between {} and {}",
        flip.name,
        e.sent_ms,
        e.answered_ms
    );
}

/// Sends two requests while the ejection of `out` that began after `since`
/// and lasts at least `ejected_for` is certainly still on: `out` must get
/// neither. Returns false, checking nothing, when the requests ended too
/// late for that certainty (a very busy machine).
async fn probe_ejected(
    f: &Figway,
    out: &Flip,
    other: &Flip,
    since: Instant,
    ejected_for: Duration,
) -> bool {
    let got = spread(f, "/work", 2, &[out, other]).await;
    let at = since.elapsed();
    if at + Duration::from_millis(5) >= ejected_for {
        return false;
    }
    assert_eq!(
        got,
        vec![0, 2],
        "{} got traffic {at:?} into an ejection of {ejected_for:?}",
        out.name
    );
    true
}

/// GETs `/work` every 20 ms until `flip` gets a request; returns how long
/// after `since` that was.
async fn until_back(f: &Figway, flip: &Flip, since: Instant, limit: Duration) -> Duration {
    let before = flip.traffic();
    loop {
        let r = get(f.addr, "/work", &[]).await;
        assert!(
            r.status == StatusCode::OK || r.status == StatusCode::INTERNAL_SERVER_ERROR,
            "{} {}",
            r.status,
            r.text()
        );
        if flip.traffic() > before {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < limit,
            "{} still ejected {:?} later",
            flip.name,
            since.elapsed()
        );
        sleep_ms(20).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_answering_500s_is_ejected_and_comes_back_with_doubling() {
    let a = Flip::start("a").await;
    let b = Flip::start("b").await;
    a.set_status(500);
    let f = Figway::start(&config(&format!(
        r#"
[upstreams.svc]
targets = ["{}", "{}"]
[upstreams.svc.outlier]
consecutive_failures = 3
eject_for = "500ms"
max_ejected_percent = 50

[[routes]]
prefix = "/"
to = "svc"
"#,
        a.url(),
        b.url()
    )))
    .await;

    // Three 500s from a (b's successes in between do not reset a's count)
    // eject it for eject_for.
    let first = drive_until(&f, &a, 3, Duration::from_secs(5)).await;
    assert_ejected_for(&f, &a, &first, 500);
    let v = upstreams(f.admin).await;
    if first.sent.elapsed() < Duration::from_millis(450) {
        assert_ejected_until(target(&v, "svc", &a.url()), 0.0, 1.0);
    }
    assert!(
        target(&v, "svc", &b.url())["ejected_until"].is_null(),
        "{v}"
    );
    assert_eq!(target(&v, "svc", &a.url())["healthy"], true, "{v}");
    // Ejected: everything goes to b.
    let limit = Duration::from_millis(500);
    let mut probes = 0;
    while probes < 5 && probe_ejected(&f, &a, &b, first.sent, limit).await {
        probes += 1;
    }
    assert!(probes > 0, "the machine is too slow to see the ejection");

    // Back after eject_for (500 ms), not before.
    let back = until_back(&f, &a, first.sent, Duration::from_millis(500 + 1000)).await;
    assert!(
        back >= Duration::from_millis(495),
        "first ejection lasted only {back:?}, eject_for is 500ms"
    );
    let v = upstreams(f.admin).await;
    assert!(
        target(&v, "svc", &a.url())["ejected_until"].is_null(),
        "{v}"
    );

    // a keeps failing: three more 500s eject it again, for twice as long.
    let second = drive_until(&f, &a, 6, Duration::from_secs(5)).await;
    assert_ejected_for(&f, &a, &second, 1000);
    // Still out ~700 ms later, when a first-length ejection would be over.
    let limit = Duration::from_millis(1000);
    let mut latest = Duration::ZERO;
    while second.sent.elapsed() < Duration::from_millis(750) {
        let v = upstreams(f.admin).await;
        let at = second.sent.elapsed();
        if at < Duration::from_millis(995) {
            assert!(
                !target(&v, "svc", &a.url())["ejected_until"].is_null(),
                "second ejection over after {at:?}: {v}"
            );
        }
        let started = second.sent.elapsed();
        if probe_ejected(&f, &a, &b, second.sent, limit).await {
            latest = started;
        }
        sleep_ms(20).await;
    }
    assert!(
        latest >= Duration::from_millis(550),
        "no probe late enough in the second ejection (last at {latest:?})"
    );
    let back_again = until_back(&f, &a, second.sent, Duration::from_millis(2000)).await;
    assert!(back_again >= Duration::from_millis(995), "{back_again:?}");
    eprintln!("first ejection {back:?}, second {back_again:?}");
}

// === 4. max_ejected_percent ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_ejected_percent_keeps_a_target_in_service() {
    let a = Flip::start("a").await;
    let b = Flip::start("b").await;
    a.set_status(500);
    b.set_status(500);
    let f = Figway::start(&config(&format!(
        r#"
[upstreams.svc]
targets = ["{}", "{}"]
[upstreams.svc.outlier]
consecutive_failures = 3
eject_for = "5s"
max_ejected_percent = 50

[[routes]]
prefix = "/"
to = "svc"
"#,
        a.url(),
        b.url()
    )))
    .await;

    // One by one: after each request, at most one target is ejected, and
    // every request reaches a target (a 500 from it, never a 503).
    let mut most = 0;
    for i in 0..20 {
        let r = get(f.addr, "/work", &[]).await;
        assert_eq!(
            r.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "request {i}: {}",
            r.text()
        );
        assert!(r.header("x-figway-error").is_none(), "request {i}");
        let v = upstreams(f.admin).await;
        let n = ejected_count(&v, "svc");
        assert!(n <= 1, "request {i}: both targets ejected: {v}");
        most = most.max(n);
    }
    assert_eq!(most, 1, "one target should have been ejected");

    // In bursts of concurrent requests too.
    for wave in 0..5 {
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let addr = f.addr;
                tokio::spawn(async move { get(addr, "/work", &[]).await })
            })
            .collect();
        for t in tasks {
            let r = t.await.unwrap();
            assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "wave {wave}");
        }
        let v = upstreams(f.admin).await;
        assert!(ejected_count(&v, "svc") <= 1, "wave {wave}: {v}");
    }
}

// === 5. circuit breaker ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_in_flight_fails_fast_or_falls_back() {
    let monolith = Backend::start("monolith").await;
    let slow = Flip::start("slow").await;
    slow.delay_ms.store(500, Ordering::SeqCst);
    let f = Figway::start(&config(&format!(
        r#"
[upstreams.monolith]
legacy = true
targets = ["{}"]

[upstreams.slow]
targets = ["{}"]
max_in_flight = 2

[[routes]]
name = "nofb"
prefix = "/nofb"
to = "slow"

[[routes]]
name = "fb"
prefix = "/fb"
to = "slow"
fallback = "monolith"
"#,
        monolith.url(),
        slow.url()
    )))
    .await;

    let v = upstreams(f.admin).await;
    assert_eq!(v["slow"]["breaker_open"], false, "{v}");

    // Two slow requests fill the upstream.
    let held: Vec<_> = (0..2)
        .map(|i| {
            let addr = f.addr;
            tokio::spawn(async move { get(addr, &format!("/nofb/held{i}"), &[]).await })
        })
        .collect();
    wait_for(
        Duration::from_secs(2),
        "two requests at the slow backend",
        || slow.traffic() == 2,
    )
    .await;
    let v = upstreams(f.admin).await;
    assert_eq!(v["slow"]["in_flight"], 2, "{v}");
    assert_eq!(v["slow"]["breaker_open"], true, "{v}");

    // A third fails fast...
    let start = Instant::now();
    let r = get(f.addr, "/nofb/third", &[]).await;
    let took = start.elapsed();
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert_eq!(r.header("x-figway-error"), Some("circuit_open"));
    assert!(
        took < Duration::from_millis(250),
        "circuit_open took {took:?}"
    );
    // ... or, on a route with a fallback, is served by the fallback.
    let start = Instant::now();
    let r = get(f.addr, "/fb/third", &[]).await;
    let took = start.elapsed();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-backend"), Some("monolith"));
    assert_eq!(monolith.last().uri.path(), "/fb/third");
    assert!(took < Duration::from_millis(250), "fallback took {took:?}");
    assert_eq!(slow.traffic(), 2, "the slow upstream got a third request");
    // Both were answered while the two slow ones were still in flight.
    assert!(
        held.iter().all(|t| !t.is_finished()),
        "the slow requests ended before the checks: the test proved nothing"
    );

    for t in held {
        let r = t.await.unwrap();
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.header("x-backend"), Some("slow"));
    }
    // Closed again once they are done.
    let start = Instant::now();
    loop {
        let v = upstreams(f.admin).await;
        if v["slow"]["in_flight"] == 0 && v["slow"]["breaker_open"] == false {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(2), "{v}");
        sleep_ms(10).await;
    }
    let r = get(f.addr, "/fb/after", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-backend"), Some("slow"));
}

// === 6. GET /upstreams ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_endpoint_has_the_documented_shape() {
    let mono = Backend::start("monolith").await;
    let o1 = Backend::start("o1").await;
    let o2 = Backend::start("o2").await;
    let o2_url = format!("http://localhost:{}", o2.addr.port());
    let f = Figway::start(&config(&format!(
        r#"
[upstreams.monolith]
legacy = true
targets = ["{}"]

[upstreams.orders]
balance = "least_request"
max_in_flight = 10
targets = [{{ url = "{}", weight = 3 }}, {{ url = "{o2_url}", weight = 1 }}]

[[routes]]
prefix = "/api/orders"
to = "orders"
[[routes]]
prefix = "/"
to = "monolith"
"#,
        mono.url(),
        o1.url()
    )))
    .await;

    let (answer, v) = admin_json(f.admin, "/upstreams").await;
    let ct = answer.header("content-type").unwrap_or("");
    assert!(ct.starts_with("application/json"), "content-type {ct:?}");

    let obj = v.as_object().expect("an object keyed by upstream name");
    let mut names: Vec<&str> = obj.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["monolith", "orders"]);
    for (name, u) in obj {
        let mut keys: Vec<&str> = u.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["balance", "breaker_open", "in_flight", "legacy", "targets"],
            "{name}"
        );
        for t in u["targets"].as_array().unwrap() {
            let mut keys: Vec<&str> = t.as_object().unwrap().keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(
                keys,
                [
                    "address",
                    "ejected_until",
                    "healthy",
                    "in_flight",
                    "url",
                    "weight"
                ],
                "{name}: {t}"
            );
        }
    }
    let expected = serde_json::json!({
        "monolith": {
            "legacy": true,
            "balance": "round_robin",
            "in_flight": 0,
            "breaker_open": false,
            "targets": [
                {"url": mono.url(), "address": mono.addr.to_string(), "weight": 1, "healthy": true, "ejected_until": null, "in_flight": 0}
            ]
        },
        "orders": {
            "legacy": false,
            "balance": "least_request",
            "in_flight": 0,
            "breaker_open": false,
            "targets": [
                {"url": o1.url(), "address": o1.addr.to_string(), "weight": 3, "healthy": true, "ejected_until": null, "in_flight": 0},
                // A name: its endpoint's address, from /etc/hosts (SPEC §10).
                {"url": o2_url, "address": o2.addr.to_string(), "weight": 1, "healthy": true, "ejected_until": null, "in_flight": 0}
            ]
        }
    });
    assert_eq!(v, expected);

    // A near miss is the admin API's 404.
    let r = get(f.admin, "/upstreams/orders", &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

// === 7. health state survives a reload ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_ejection_survive_a_reload() {
    let a = Flip::start("a").await;
    let b = Flip::start("b").await;
    let c = Flip::start("c").await;
    let d = Flip::start("d").await;
    let extra = Backend::start("extra").await;
    let base = format!(
        r#"
[upstreams.checked]
targets = ["{}", "{}"]
[upstreams.checked.health]
{FAST_HEALTH}

[upstreams.passive]
targets = ["{}", "{}"]
[upstreams.passive.outlier]
consecutive_failures = 3
eject_for = "10s"
max_ejected_percent = 50

[upstreams.extra]
targets = ["{}"]

[[routes]]
prefix = "/h"
to = "checked"
[[routes]]
prefix = "/o"
to = "passive"
"#,
        a.url(),
        b.url(),
        c.url(),
        d.url(),
        extra.url()
    );
    let s = Figway::start_file(&config(&base)).await;

    // a fails its checks and goes out.
    a.set_health(503);
    wait_for(HEALTH_LIMIT, "checks on a", || a.checks().len() >= 2).await;
    let start = Instant::now();
    loop {
        let v = upstreams(s.admin).await;
        if target(&v, "checked", &a.url())["healthy"] == false {
            break;
        }
        assert!(
            start.elapsed() < HEALTH_LIMIT,
            "a never turned unhealthy: {v}"
        );
        sleep_ms(20).await;
    }
    // c answers 500s and is ejected (for 10 s).
    c.set_status(500);
    for _ in 0..20 {
        let r = get(s.addr, "/o/x", &[]).await;
        assert!(r.status.is_success() || r.status.is_server_error());
        if c.traffic() == 3 {
            break;
        }
    }
    assert_eq!(c.traffic(), 3);
    let v = upstreams(s.admin).await;
    assert!(
        !target(&v, "passive", &c.url())["ejected_until"].is_null(),
        "{v}"
    );
    assert_ejected_until(target(&v, "passive", &c.url()), 8.0, 10.5);

    // Reload: same upstreams, one more route.
    let with_extra = format!("{base}\n[[routes]]\nprefix = \"/extra\"\nto = \"extra\"\n");
    s.reload_ok(&config(&with_extra)).await;
    // The reload is in service...
    let r = get(s.addr, "/extra/1", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-backend"), Some("extra"));
    // ... and right after it, a is still unhealthy and c still ejected.
    let v = upstreams(s.admin).await;
    assert_eq!(target(&v, "checked", &a.url())["healthy"], false, "{v}");
    assert_eq!(target(&v, "checked", &b.url())["healthy"], true, "{v}");
    // Still the ejection of before the reload (10 s), not a fresh state.
    assert_ejected_until(target(&v, "passive", &c.url()), 8.0, 10.5);
    let (a_before, c_before) = (a.traffic(), c.traffic());
    for i in 0..10 {
        let r = get(s.addr, &format!("/h/{i}"), &[]).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("x-backend"), Some("b"), "request {i} after reload");
        let r = get(s.addr, &format!("/o/{i}"), &[]).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("x-backend"), Some("d"), "request {i} after reload");
    }
    assert_eq!((a.traffic(), c.traffic()), (a_before, c_before));
    let v = upstreams(s.admin).await;
    assert_eq!(target(&v, "checked", &a.url())["healthy"], false, "{v}");

    // A reload that changes the [health] table restarts the checkers, but
    // the targets keep their state.
    let retuned = with_extra.replace("timeout = \"100ms\"", "timeout = \"150ms\"");
    assert_ne!(retuned, with_extra);
    s.reload_ok(&config(&retuned)).await;
    let v = upstreams(s.admin).await;
    assert_eq!(target(&v, "checked", &a.url())["healthy"], false, "{v}");
    assert_ejected_until(target(&v, "passive", &c.url()), 7.5, 10.5);
    let a_before = a.traffic();
    for i in 0..6 {
        let r = get(s.addr, &format!("/h/{i}"), &[]).await;
        assert_eq!(r.header("x-backend"), Some("b"), "request {i} after reload");
    }
    assert_eq!(a.traffic(), a_before);

    // The checks still run after the reloads: a recovers.
    a.set_health(200);
    let start = Instant::now();
    loop {
        let v = upstreams(s.admin).await;
        if target(&v, "checked", &a.url())["healthy"] == true {
            break;
        }
        assert!(
            start.elapsed() < HEALTH_LIMIT,
            "a did not recover after the reload: {v}"
        );
        sleep_ms(20).await;
    }
    s.shutdown().await;
}

// === 8. validation ===

fn load_err(body: &str) -> String {
    match figway::config::load_str(&config(body), std::path::Path::new("figway.toml")) {
        Ok(_) => panic!("config accepted:\n{body}"),
        Err(e) => e.to_string(),
    }
}

fn load_ok(body: &str) {
    if let Err(e) = figway::config::load_str(&config(body), std::path::Path::new("figway.toml")) {
        panic!("config rejected:\n{body}\n{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_outlier_breaker_and_fallback_keys_are_validated() {
    const MONO: &str = "[upstreams.monolith]\ntargets = [\"http://127.0.0.1:8000\"]\n";
    const SVC: &str = "[upstreams.svc]\ntargets = [\"http://127.0.0.1:9001\"]\n";
    const ROUTE: &str = "[[routes]]\nprefix = \"/\"\nto = \"svc\"\n";

    // The valid forms, so the errors below are about the one key.
    load_ok(&format!(
        "{MONO}{SVC}balance = \"hash\"\nhash_key = \"header:x-user-id\"\nmax_in_flight = 5\n\
         [upstreams.svc.health]\npath = \"/health\"\n\
         [upstreams.svc.outlier]\nmax_ejected_percent = 100\n\
         [[routes]]\nprefix = \"/\"\nto = \"svc\"\nfallback = \"monolith\"\n"
    ));

    let e = load_err(&format!("{SVC}balance = \"hash\"\n{ROUTE}"));
    assert!(e.contains("upstreams.svc.hash_key"), "{e}");
    assert!(e.starts_with("figway.toml:"), "{e}");

    let e = load_err(&format!(
        "{SVC}[[routes]]\nprefix = \"/\"\nto = \"svc\"\nfallback = \"nope\"\n"
    ));
    assert!(e.contains("routes[0].fallback"), "{e}");
    assert!(e.contains("\"nope\""), "{e}");

    let e = load_err(&format!(
        "{SVC}[[routes]]\nprefix = \"/\"\nto = \"svc\"\nfallback = \"svc\"\n"
    ));
    assert!(e.contains("routes[0].fallback"), "{e}");

    let e = load_err(&format!(
        "{SVC}[upstreams.svc.health]\ninterval = \"1s\"\n{ROUTE}"
    ));
    assert!(e.contains("upstreams.svc.health.path"), "{e}");

    let e = load_err(&format!(
        "{SVC}[upstreams.svc.outlier]\nmax_ejected_percent = 150\n{ROUTE}"
    ));
    assert!(
        e.contains("upstreams.svc.outlier.max_ejected_percent"),
        "{e}"
    );

    // All reported at once.
    let e = load_err(&format!(
        "{SVC}balance = \"hash\"\n[upstreams.svc.outlier]\nmax_ejected_percent = 150\n\
         [[routes]]\nprefix = \"/\"\nto = \"svc\"\nfallback = \"svc\"\n"
    ));
    for key in [
        "upstreams.svc.hash_key",
        "upstreams.svc.outlier.max_ejected_percent",
        "routes[0].fallback",
    ] {
        assert!(e.contains(key), "{key} missing from:\n{e}");
    }
}
