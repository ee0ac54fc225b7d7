//! Prometheus metrics (SPEC §7 `GET /metrics`, SPEC §8, issue 7), checked
//! end to end: real traffic through real figway servers on loopback, then a
//! scrape of `/metrics` on the admin address, read with a Prometheus
//! exposition parser (the `prometheus-parse` crate), never by matching
//! strings against values. The tests check the content type and the `# TYPE`
//! lines; every §8 metric the traffic produces with its type and exact label
//! set; that counts match the traffic sent (status codes per route and
//! upstream, no-route requests as `route="", upstream=""`, histogram counts
//! and bucket bounds from 1 ms to 30 s, upstream info and target health,
//! in-flight, connect errors, retries, fallbacks, outlier ejections, shadow
//! outcomes, config reloads and the last-success timestamp, client
//! connections); that no label holds a path or a client address; that the
//! series of routes and upstreams removed by a reload disappear while those
//! of routes that stay keep counting; and that admin requests are not
//! counted.

mod support;
use support::*;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{Response, StatusCode};
use prometheus_parse::{LineInfo, Sample, SampleType, Scrape, Value};

// === the SPEC §8 contract ===

/// Every metric of SPEC §8: name, type and label names.
const SPEC: [(&str, SampleType, &[&str]); 16] = [
    // SPEC §10, targets by DNS name.
    (
        "figway_upstream_endpoints",
        SampleType::Gauge,
        &["upstream"],
    ),
    (
        "figway_dns_resolutions_total",
        SampleType::Counter,
        &["upstream", "result"],
    ),
    (
        "figway_requests_total",
        SampleType::Counter,
        &["route", "upstream", "code"],
    ),
    (
        "figway_request_duration_seconds",
        SampleType::Histogram,
        &["route", "upstream"],
    ),
    (
        "figway_upstream_info",
        SampleType::Gauge,
        &["upstream", "legacy"],
    ),
    (
        "figway_upstream_target_healthy",
        SampleType::Gauge,
        &["upstream", "target"],
    ),
    (
        "figway_upstream_in_flight",
        SampleType::Gauge,
        &["upstream"],
    ),
    (
        "figway_upstream_errors_total",
        SampleType::Counter,
        &["upstream", "kind"],
    ),
    (
        "figway_outlier_ejections_total",
        SampleType::Counter,
        &["upstream", "target"],
    ),
    (
        "figway_retries_total",
        SampleType::Counter,
        &["route", "upstream"],
    ),
    (
        "figway_fallbacks_total",
        SampleType::Counter,
        &["route", "from", "to"],
    ),
    (
        "figway_shadow_requests_total",
        SampleType::Counter,
        &["route", "result"],
    ),
    (
        "figway_config_reloads_total",
        SampleType::Counter,
        &["result"],
    ),
    (
        "figway_config_last_reload_success_timestamp_seconds",
        SampleType::Gauge,
        &[],
    ),
    ("figway_connections_active", SampleType::Gauge, &[]),
    ("figway_access_log_dropped_total", SampleType::Counter, &[]),
];

const REQUESTS: &str = "figway_requests_total";
const DURATION: &str = "figway_request_duration_seconds";
const INFO: &str = "figway_upstream_info";
const HEALTHY: &str = "figway_upstream_target_healthy";
const IN_FLIGHT: &str = "figway_upstream_in_flight";
const ERRORS: &str = "figway_upstream_errors_total";
const EJECTIONS: &str = "figway_outlier_ejections_total";
const RETRIES: &str = "figway_retries_total";
const FALLBACKS: &str = "figway_fallbacks_total";
const SHADOW: &str = "figway_shadow_requests_total";
const RELOADS: &str = "figway_config_reloads_total";
const LAST_RELOAD: &str = "figway_config_last_reload_success_timestamp_seconds";
const CONNECTIONS: &str = "figway_connections_active";

/// How long a test waits for something recorded asynchronously (a request
/// is counted when its response body is dropped, shadows and health checks
/// run on their own tasks) on a busy two-core machine.
const SETTLE: Duration = Duration::from_secs(5);

// === scraping ===

/// One scrape of `/metrics`: the raw answer and the parsed exposition.
struct Scraped {
    content_type: Option<String>,
    text: String,
    scrape: Scrape,
}

async fn scrape_full(admin: SocketAddr) -> Scraped {
    let a = get(admin, "/metrics", &[]).await;
    assert_eq!(a.status, StatusCode::OK, "GET /metrics: {}", a.text());
    let text = a.text();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("/metrics does not parse ({e}):\n{text}"));
    check_contract(&scrape, &text);
    Scraped {
        content_type: a.header("content-type").map(str::to_string),
        text,
        scrape,
    }
}

async fn scrape(admin: SocketAddr) -> Scrape {
    scrape_full(admin).await.scrape
}

/// Scrapes until `cond` holds (what is recorded asynchronously settles),
/// then returns that scrape; panics with the exposition after [`SETTLE`].
async fn scrape_until(admin: SocketAddr, what: &str, cond: impl Fn(&Scrape) -> bool) -> Scrape {
    let start = Instant::now();
    loop {
        let s = scrape_full(admin).await;
        if cond(&s.scrape) {
            return s.scrape;
        }
        assert!(
            start.elapsed() < SETTLE,
            "timed out after {SETTLE:?} waiting for: {what}\n{}",
            s.text
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The SPEC §8 family a sample belongs to (`_count` and `_sum` of the
/// histogram, which the parser leaves untyped, belong to the histogram).
fn family(metric: &str) -> &str {
    for suffix in ["_count", "_sum"] {
        if let Some(base) = metric.strip_suffix(suffix) {
            if base == DURATION {
                return base;
            }
        }
    }
    metric
}

fn spec_of(name: &str) -> Option<&'static (&'static str, SampleType, &'static [&'static str])> {
    SPEC.iter().find(|(n, _, _)| *n == name)
}

/// Every sample of every scrape: a SPEC §8 name, of its type, with exactly
/// its labels.
fn check_contract(scrape: &Scrape, text: &str) {
    for s in &scrape.samples {
        let name = family(&s.metric);
        let Some((_, ty, labels)) = spec_of(name) else {
            panic!(
                "sample {}{{{}}} is not a SPEC §8 metric\n{text}",
                s.metric, s.labels
            );
        };
        let type_ok = match (&s.value, ty) {
            (Value::Counter(_), SampleType::Counter) => true,
            (Value::Gauge(_), SampleType::Gauge) => true,
            (Value::Histogram(_), SampleType::Histogram) => true,
            // The parser types `_count` and `_sum` of a histogram as untyped.
            (Value::Untyped(_), SampleType::Histogram) => s.metric != name,
            _ => false,
        };
        assert!(
            type_ok,
            "{}{{{}}}: value {:?}, SPEC §8 says {ty:?}",
            s.metric, s.labels, s.value
        );
        let have: BTreeSet<&str> = s.labels.keys().map(String::as_str).collect();
        let want: BTreeSet<&str> = labels.iter().copied().collect();
        assert_eq!(
            have, want,
            "{}{{{}}}: label names differ from SPEC §8",
            s.metric, s.labels
        );
    }
}

fn labels_are(s: &Sample, want: &[(&str, &str)]) -> bool {
    s.labels.len() == want.len() && want.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
}

fn has_labels(s: &Sample, want: &[(&str, &str)]) -> bool {
    want.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
}

fn scalar(s: &Sample) -> f64 {
    match s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
        ref other => panic!("{}: not a scalar: {other:?}", s.metric),
    }
}

/// The value of the series `name{labels}` (exactly those labels), if any.
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<&Sample> = s
        .samples
        .iter()
        .filter(|x| x.metric == name && labels_are(x, labels))
        .collect();
    assert!(found.len() <= 1, "{name}{labels:?} appears twice");
    found.first().map(|x| scalar(x))
}

/// Like [`value`], but the series must exist.
fn must(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(s, name, labels).unwrap_or_else(|| {
        panic!(
            "no series {name}{labels:?}; {name} has: {:?}",
            series(s, name)
        )
    })
}

/// Sum of the series of `name` whose labels include `labels`.
fn total(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name && has_labels(x, labels))
        .map(scalar)
        .sum()
}

/// The series of `name` as `labels -> value`, for comparisons and messages.
fn series(s: &Scrape, name: &str) -> BTreeMap<String, f64> {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .map(|x| (x.labels.to_string(), scalar(x)))
        .collect()
}

/// The series of `name` that have counted something: upstream error and
/// ejection counters exist at zero from the start, so that the first event
/// shows in `rate()`.
fn counted(s: &Scrape, name: &str) -> BTreeMap<String, f64> {
    series(s, name)
        .into_iter()
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

/// `labels` written as the parser prints them (sorted, `k="v"`).
fn key(labels: &[(&str, &str)]) -> String {
    let sorted: BTreeMap<&str, &str> = labels.iter().copied().collect();
    sorted
        .iter()
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect::<Vec<_>>()
        .join(",")
}

/// The duration histogram of (route, upstream): `(le, cumulative count)`
/// in exposition order.
fn histogram(s: &Scrape, route: &str, upstream: &str) -> Option<Vec<(f64, f64)>> {
    let want = [("route", route), ("upstream", upstream)];
    s.samples
        .iter()
        .find(|x| x.metric == DURATION && labels_are(x, &want))
        .map(|x| match &x.value {
            Value::Histogram(b) => b.iter().map(|h| (h.less_than, h.count)).collect(),
            other => panic!("{DURATION}: not a histogram: {other:?}"),
        })
}

/// Observations in the duration histogram of (route, upstream): its `+Inf`
/// bucket, which must agree with its `_count` sample.
fn observed(s: &Scrape, route: &str, upstream: &str) -> Option<f64> {
    let buckets = histogram(s, route, upstream)?;
    let inf = buckets
        .iter()
        .find(|(le, _)| le.is_infinite())
        .unwrap_or_else(|| panic!("{DURATION}{{{route},{upstream}}} has no +Inf bucket"))
        .1;
    let count = must(
        s,
        &format!("{DURATION}_count"),
        &[("route", route), ("upstream", upstream)],
    );
    assert_eq!(
        inf, count,
        "+Inf bucket and _count of ({route}, {upstream})"
    );
    Some(inf)
}

fn names_of(s: &Scrape) -> BTreeSet<String> {
    s.samples
        .iter()
        .map(|x| family(&x.metric).to_string())
        .collect()
}

// === traffic ===

async fn send_n(addr: SocketAddr, path: &str, n: usize, status: u16) {
    for _ in 0..n {
        let a = get(addr, path, &[]).await;
        assert_eq!(a.status, status, "GET {path}: {}", a.text());
    }
}

/// A backend answering 200 with `name` (and `x-backend: name`); paths that
/// contain `missing` get 404, `/health` gets `health`.
async fn app(name: &'static str, health: u16) -> Backend {
    Backend::with(move |seen: Seen| async move {
        let status = if seen.uri.path() == "/health" {
            health
        } else if seen.uri.path().contains("missing") {
            404
        } else {
            200
        };
        Response::builder()
            .status(status)
            .header("x-backend", name)
            .body(full(name))
            .unwrap()
    })
    .await
}

/// A backend that always answers `status`.
async fn answering(status: u16) -> Backend {
    Backend::with(
        move |_| async move { Response::builder().status(status).body(full("x")).unwrap() },
    )
    .await
}

/// A backend that answers like a well-behaved service: the same body and
/// headers for the same request, echoing `x-request-id`, with a fixed Date.
async fn deterministic() -> Backend {
    Backend::with(|seen: Seen| async move {
        let mut b = Response::builder()
            .header("content-type", "text/plain")
            .header("date", "Mon, 01 Jan 2024 00:00:00 GMT")
            .header("x-backend", "orders");
        if let Some(id) = seen.headers.get("x-request-id") {
            b = b.header("x-request-id", id);
        }
        b.body(full(format!("order {}", seen.uri.path()))).unwrap()
    })
    .await
}

// === 1. the exposition ===

/// A config whose traffic makes every SPEC §8 family appear: a retry, a
/// connect error and an ejection (one refusing target of two, ejected at
/// its first failure), a fallback and a shadow (their series exist from
/// the start, at zero), requests and durations, the gauges, and a lookup
/// (the shadow target is given by name).
fn everything_config(good: &Backend, refused: SocketAddr, shadow: &Backend) -> String {
    config(&format!(
        r#"
[upstreams.orders]
targets = ["{good}", "http://{refused}"]
[upstreams.orders.outlier]
consecutive_failures = 1
max_ejected_percent = 50
[upstreams.orders_v2]
targets = ["http://localhost:{shadow_port}"]
[upstreams.monolith]
legacy = true
targets = ["{good}"]

[[routes]]
name = "orders"
prefix = "/api/orders"
to = "orders"
fallback = "monolith"
[routes.shadow]
to = "orders_v2"
"#,
        good = good.url(),
        // By name, so that the lookup counter (SPEC §10) has a series.
        shadow_port = shadow.addr.port(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposition_is_text_format_0_0_4_with_the_full_spec_names_in_type_lines() {
    let good = app("orders", 200).await;
    let shadow = app("orders", 200).await;
    let f = Figway::start(&everything_config(&good, refused_port().await, &shadow)).await;
    send_n(f.addr, "/api/orders/1", 4, 200).await;
    scrape_until(f.admin, "every SPEC §8 family present", |s| {
        names_of(s).len() == SPEC.len()
    })
    .await;

    let scraped = scrape_full(f.admin).await;
    assert_eq!(
        scraped.content_type.as_deref(),
        Some("text/plain; version=0.0.4"),
        "Content-Type of /metrics"
    );
    let mut typed: BTreeMap<String, SampleType> = BTreeMap::new();
    let mut helped: BTreeSet<String> = BTreeSet::new();
    for line in scraped.text.lines() {
        match LineInfo::parse(line) {
            LineInfo::Type {
                metric_name,
                metric_alias,
                sample_type,
            } => {
                let name = metric_alias.unwrap_or(metric_name);
                assert!(
                    typed.insert(name.clone(), sample_type).is_none(),
                    "two # TYPE lines for {name}"
                );
            }
            LineInfo::Doc { metric_name, .. } => {
                helped.insert(metric_name.to_string());
            }
            _ => {}
        }
    }
    let want: BTreeMap<String, SampleType> =
        SPEC.iter().map(|(n, t, _)| (n.to_string(), *t)).collect();
    assert_eq!(
        typed, want,
        "# TYPE lines: names and types must be exactly SPEC §8"
    );
    let want_names: BTreeSet<String> = want.keys().cloned().collect();
    assert_eq!(helped, want_names, "# HELP lines");
    // Every sample's family was announced by a # TYPE line of its own name.
    assert_eq!(names_of(&scraped.scrape), want_names);
}

// === 2. counts match the traffic ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_types_and_labels_match_a_known_mix_of_traffic() {
    let orders = app("orders", 200).await;
    let monolith = app("monolith", 200).await;
    let refused = refused_port().await;
    let f = Figway::start(&config(&format!(
        r#"
[upstreams.orders]
targets = ["{}"]
[upstreams.monolith]
legacy = true
targets = ["{}"]
[upstreams.dead]
targets = ["http://{refused}"]

[[routes]]
name = "orders"
prefix = "/api/orders"
to = "orders"

[[routes]]
name = "shop"
prefix = "/shop"
to = "monolith"

[[routes]]
name = "broken"
prefix = "/api/broken"
to = "dead"
"#,
        orders.url(),
        monolith.url()
    )))
    .await;

    send_n(f.addr, "/api/orders/42", 7, 200).await;
    send_n(f.addr, "/api/orders/missing", 3, 404).await;
    send_n(f.addr, "/nowhere", 1, 404).await;
    send_n(f.addr, "/api/ordersx/1", 1, 404).await;
    send_n(f.addr, "/api/broken/1", 1, 502).await;
    send_n(f.addr, "/shop/cart", 2, 200).await;
    const SENT: f64 = 15.0;
    let s = scrape_until(f.admin, "all 15 requests counted", |s| {
        total(s, REQUESTS, &[]) >= SENT
    })
    .await;

    // figway_requests_total{route, upstream, code}: exactly these series.
    let want: BTreeMap<String, f64> = [
        (
            key(&[("route", "orders"), ("upstream", "orders"), ("code", "200")]),
            7.0,
        ),
        (
            key(&[("route", "orders"), ("upstream", "orders"), ("code", "404")]),
            3.0,
        ),
        (
            key(&[("route", ""), ("upstream", ""), ("code", "404")]),
            2.0,
        ),
        (
            key(&[("route", "broken"), ("upstream", "dead"), ("code", "502")]),
            1.0,
        ),
        (
            key(&[("route", "shop"), ("upstream", "monolith"), ("code", "200")]),
            2.0,
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(series(&s, REQUESTS), want, "{REQUESTS}");

    // figway_request_duration_seconds{route, upstream}: one observation per
    // request, buckets from 1 ms to 30 s.
    for (route, upstream, n) in [
        ("orders", "orders", 10.0),
        ("", "", 2.0),
        ("broken", "dead", 1.0),
        ("shop", "monolith", 2.0),
    ] {
        assert_eq!(
            observed(&s, route, upstream),
            Some(n),
            "{DURATION}{{route={route:?}, upstream={upstream:?}}} count"
        );
        let buckets = histogram(&s, route, upstream).unwrap();
        let bounds: Vec<f64> = buckets
            .iter()
            .map(|(le, _)| *le)
            .filter(|le| le.is_finite())
            .collect();
        assert_eq!(
            bounds.first(),
            Some(&0.001),
            "lowest bucket bound: {bounds:?}"
        );
        assert_eq!(
            bounds.last(),
            Some(&30.0),
            "highest finite bucket bound: {bounds:?}"
        );
        assert!(
            bounds.windows(2).all(|w| w[0] < w[1]),
            "bucket bounds increase: {bounds:?}"
        );
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "buckets are cumulative: {buckets:?}"
        );
        let sum = must(
            &s,
            &format!("{DURATION}_sum"),
            &[("route", route), ("upstream", upstream)],
        );
        assert!(
            sum > 0.0 && sum < 5.0 * n,
            "{DURATION}_sum of ({route}, {upstream}) = {sum}"
        );
    }
    let pairs: BTreeSet<String> = s
        .samples
        .iter()
        .filter(|x| x.metric == DURATION)
        .map(|x| x.labels.to_string())
        .collect();
    let want_pairs: BTreeSet<String> = [
        key(&[("route", "orders"), ("upstream", "orders")]),
        key(&[("route", ""), ("upstream", "")]),
        key(&[("route", "broken"), ("upstream", "dead")]),
        key(&[("route", "shop"), ("upstream", "monolith")]),
    ]
    .into_iter()
    .collect();
    assert_eq!(pairs, want_pairs, "{DURATION} series");

    // figway_upstream_info{upstream, legacy} = 1.
    let want: BTreeMap<String, f64> = [
        (key(&[("upstream", "orders"), ("legacy", "false")]), 1.0),
        (key(&[("upstream", "monolith"), ("legacy", "true")]), 1.0),
        (key(&[("upstream", "dead"), ("legacy", "false")]), 1.0),
    ]
    .into_iter()
    .collect();
    assert_eq!(series(&s, INFO), want, "{INFO}");

    // figway_upstream_target_healthy{upstream, target}: target is host:port.
    let want: BTreeMap<String, f64> = [
        (
            key(&[("upstream", "orders"), ("target", &orders.addr.to_string())]),
            1.0,
        ),
        (
            key(&[
                ("upstream", "monolith"),
                ("target", &monolith.addr.to_string()),
            ]),
            1.0,
        ),
        (
            key(&[("upstream", "dead"), ("target", &refused.to_string())]),
            1.0,
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(series(&s, HEALTHY), want, "{HEALTHY}");

    // figway_upstream_in_flight{upstream}: nothing in flight now.
    let want: BTreeMap<String, f64> = ["orders", "monolith", "dead"]
        .into_iter()
        .map(|u| (key(&[("upstream", u)]), 0.0))
        .collect();
    assert_eq!(series(&s, IN_FLIGHT), want, "{IN_FLIGHT}");

    // figway_upstream_errors_total{upstream, kind}: the refused connect.
    let want: BTreeMap<String, f64> = [(
        key(&[("upstream", "dead"), ("kind", "upstream_connect")]),
        1.0,
    )]
    .into_iter()
    .collect();
    assert_eq!(counted(&s, ERRORS), want, "{ERRORS}");
    // Every failure kind of every upstream exists from the start, at zero.
    for upstream in ["orders", "dead", "monolith"] {
        for kind in [
            "upstream_connect",
            "upstream_reset",
            "upstream_timeout",
            "no_healthy_upstream",
            "circuit_open",
        ] {
            assert!(
                value(&s, ERRORS, &[("upstream", upstream), ("kind", kind)]).is_some(),
                "{ERRORS}{{{upstream},{kind}}} missing"
            );
        }
    }

    // No retries: the only failing upstream has a single target.
    assert_eq!(
        total(&s, RETRIES, &[]),
        0.0,
        "{RETRIES}: {:?}",
        series(&s, RETRIES)
    );
    for (route, upstream) in [
        ("orders", "orders"),
        ("shop", "monolith"),
        ("broken", "dead"),
    ] {
        assert_eq!(
            value(&s, RETRIES, &[("route", route), ("upstream", upstream)]),
            Some(0.0),
            "{RETRIES}{{{route}, {upstream}}} exists at 0 from the start"
        );
    }
    assert_eq!(
        total(&s, EJECTIONS, &[]),
        0.0,
        "no outlier detection configured"
    );
    assert_eq!(total(&s, FALLBACKS, &[]), 0.0, "no fallback configured");

    // Reloads: none yet; both results exist at 0; the first load set the
    // timestamp.
    assert_eq!(must(&s, RELOADS, &[("result", "success")]), 0.0);
    assert_eq!(must(&s, RELOADS, &[("result", "error")]), 0.0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let ts = must(&s, LAST_RELOAD, &[]);
    assert!(
        (now - 60.0..=now + 1.0).contains(&ts),
        "{LAST_RELOAD} = {ts}, now {now}"
    );

    // Client connections of `get` are closed once answered.
    scrape_until(f.admin, "no client connection left open", |s| {
        value(s, CONNECTIONS, &[]) == Some(0.0)
    })
    .await;

    // Nothing trickles in afterwards: the counts were exact, not a lower
    // bound reached on the way to something larger.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let again = scrape(f.admin).await;
    assert_eq!(series(&again, REQUESTS), series(&s, REQUESTS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_in_flight_counts_requests_being_served() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let held = gate.clone();
    let slow = Backend::with(move |_| {
        let held = held.clone();
        async move {
            held.acquire().await.unwrap().forget();
            Response::builder().body(full("late")).unwrap()
        }
    })
    .await;
    let f = Figway::start(&config(&format!(
        "[upstreams.orders]\ntargets = [\"{}\"]\n\
         [[routes]]\nname = \"orders\"\nprefix = \"/\"\nto = \"orders\"\n",
        slow.url()
    )))
    .await;
    let addr = f.addr;
    let pending: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async move { get(addr, "/slow", &[]).await.status }))
        .collect();
    scrape_until(f.admin, "two requests in flight to orders", |s| {
        value(s, IN_FLIGHT, &[("upstream", "orders")]) == Some(2.0)
    })
    .await;
    gate.add_permits(2);
    for p in pending {
        assert_eq!(p.await.unwrap(), 200);
    }
    let s = scrape_until(f.admin, "both requests counted", |s| {
        total(s, REQUESTS, &[]) >= 2.0
    })
    .await;
    assert_eq!(must(&s, IN_FLIGHT, &[("upstream", "orders")]), 0.0);
    assert_eq!(
        must(
            &s,
            REQUESTS,
            &[("route", "orders"), ("upstream", "orders"), ("code", "200")]
        ),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_connect_failure_counts_one_retry_and_one_connect_error() {
    let good = app("orders", 200).await;
    let refused = refused_port().await;
    let f = Figway::start(&config(&format!(
        r#"
[upstreams.orders]
targets = ["http://{refused}", "{}"]
retries = 1

[[routes]]
name = "orders"
prefix = "/api/orders"
to = "orders"
"#,
        good.url()
    )))
    .await;
    const N: usize = 4;
    send_n(f.addr, "/api/orders/1", N, 200).await;
    let s = scrape_until(f.admin, "all requests counted", |s| {
        total(s, REQUESTS, &[]) >= N as f64
    })
    .await;
    assert_eq!(
        series(&s, REQUESTS),
        [(
            key(&[("route", "orders"), ("upstream", "orders"), ("code", "200")]),
            N as f64
        )]
        .into_iter()
        .collect(),
        "every request was answered 200 after its retry"
    );
    let retries = must(&s, RETRIES, &[("route", "orders"), ("upstream", "orders")]);
    let connect = must(
        &s,
        ERRORS,
        &[("upstream", "orders"), ("kind", "upstream_connect")],
    );
    // Round robin over two targets: the refusing one is tried first for at
    // least one of the requests; each of its refusals was retried once.
    assert!(retries >= 1.0, "{RETRIES} = {retries}");
    assert_eq!(
        retries, connect,
        "each refused connect is retried once: {RETRIES} vs {ERRORS}"
    );
    assert_eq!(good.count(), N, "every request reached the good target");
    assert_eq!(counted(&s, ERRORS).len(), 1, "{:?}", counted(&s, ERRORS));
    assert_eq!(
        total(&s, RETRIES, &[]),
        retries,
        "{:?}",
        series(&s, RETRIES)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_served_by_the_fallback_count_as_fallbacks() {
    let orders = app("orders", 503).await;
    let monolith = app("monolith", 200).await;
    let f = Figway::start(&config(&format!(
        r#"
[upstreams.orders]
targets = ["{}"]
[upstreams.orders.health]
path = "/health"
interval = "50ms"
timeout = "500ms"
unhealthy_after = 1
healthy_after = 1
[upstreams.monolith]
legacy = true
targets = ["{}"]

[[routes]]
name = "orders"
prefix = "/api/orders"
to = "orders"
fallback = "monolith"
"#,
        orders.url(),
        monolith.url()
    )))
    .await;
    let target = orders.addr.to_string();
    let s = scrape_until(f.admin, "the orders target unhealthy", |s| {
        value(s, HEALTHY, &[("upstream", "orders"), ("target", &target)]) == Some(0.0)
    })
    .await;
    assert_eq!(
        must(
            &s,
            HEALTHY,
            &[
                ("upstream", "monolith"),
                ("target", &monolith.addr.to_string())
            ]
        ),
        1.0
    );
    // The fallback's series exists from the start, at zero.
    assert_eq!(
        must(
            &s,
            FALLBACKS,
            &[("route", "orders"), ("from", "orders"), ("to", "monolith")]
        ),
        0.0
    );

    for _ in 0..3 {
        let a = get(f.addr, "/api/orders/7", &[]).await;
        assert_eq!(a.status, 200);
        assert_eq!(
            a.header("x-backend"),
            Some("monolith"),
            "served by the fallback"
        );
    }
    let s = scrape_until(f.admin, "three requests counted", |s| {
        total(s, REQUESTS, &[]) >= 3.0
    })
    .await;
    assert_eq!(
        series(&s, FALLBACKS),
        [(
            key(&[("route", "orders"), ("from", "orders"), ("to", "monolith")]),
            3.0
        )]
        .into_iter()
        .collect(),
        "{FALLBACKS}"
    );
    // Counted as served by the upstream that answered.
    assert_eq!(
        series(&s, REQUESTS),
        [(
            key(&[
                ("route", "orders"),
                ("upstream", "monolith"),
                ("code", "200")
            ]),
            3.0
        )]
        .into_iter()
        .collect(),
        "{REQUESTS}"
    );
    assert_eq!(observed(&s, "orders", "monolith"), Some(3.0));
    assert_eq!(observed(&s, "orders", "orders"), Some(0.0));
    assert_eq!(total(&s, ERRORS, &[]), 0.0, "a fallback is not an error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outlier_ejection_is_counted_per_target() {
    let a = answering(500).await;
    let b = answering(500).await;
    let f = Figway::start(&config(&format!(
        r#"
[upstreams.orders]
targets = ["{}", "{}"]
[upstreams.orders.outlier]
consecutive_failures = 2
eject_for = "30s"
max_ejected_percent = 50

[[routes]]
name = "orders"
prefix = "/api/orders"
to = "orders"
"#,
        a.url(),
        b.url()
    )))
    .await;
    let s = scrape(f.admin).await;
    assert_eq!(total(&s, EJECTIONS, &[]), 0.0, "nothing ejected yet");

    const N: usize = 6;
    send_n(f.addr, "/api/orders/1", N, 500).await;
    let s = scrape_until(f.admin, "all requests counted", |s| {
        total(s, REQUESTS, &[]) >= N as f64
    })
    .await;
    assert_eq!(
        must(
            &s,
            REQUESTS,
            &[("route", "orders"), ("upstream", "orders"), ("code", "500")]
        ),
        N as f64
    );
    // Both targets fail; max_ejected_percent = 50 of two lets one out.
    let ejections = counted(&s, EJECTIONS);
    assert_eq!(ejections.len(), 1, "one target ejected: {ejections:?}");
    assert_eq!(
        series(&s, EJECTIONS).len(),
        2,
        "both targets have a counter"
    );
    let ejected = s
        .samples
        .iter()
        .find(|x| x.metric == EJECTIONS && scalar(x) > 0.0)
        .unwrap()
        .clone();
    assert_eq!(scalar(&ejected), 1.0);
    assert_eq!(ejected.labels.get("upstream"), Some("orders"));
    let target = ejected.labels.get("target").unwrap().to_string();
    assert!(
        [a.addr.to_string(), b.addr.to_string()].contains(&target),
        "target label {target:?} is one of the targets' host:port"
    );
    // The same target the admin API shows as ejected.
    let up = get(f.admin, "/upstreams", &[]).await;
    let v: serde_json::Value = serde_json::from_slice(&up.body).unwrap();
    let out: Vec<String> = v["orders"]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| !t["ejected_until"].is_null())
        .map(|t| {
            t["url"]
                .as_str()
                .unwrap()
                .trim_start_matches("http://")
                .to_string()
        })
        .collect();
    assert_eq!(out, vec![target], "/upstreams: {v}");
    // A 5xx answer is passed through: not an upstream error kind.
    assert_eq!(total(&s, ERRORS, &[]), 0.0, "{:?}", series(&s, ERRORS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identical_shadow_counts_as_match() {
    let primary = deterministic().await;
    let twin = deterministic().await;
    let f = Figway::start(&config(&format!(
        r#"
[upstreams.orders]
targets = ["{}"]
[upstreams.orders_v2]
targets = ["{}"]

[[routes]]
name = "orders"
prefix = "/api/orders"
to = "orders"
[routes.shadow]
to = "orders_v2"
compare = true
"#,
        primary.url(),
        twin.url()
    )))
    .await;
    let s = scrape(f.admin).await;
    let zero: BTreeMap<String, f64> = ["match", "mismatch", "error", "skipped"]
        .into_iter()
        .map(|r| (key(&[("route", "orders"), ("result", r)]), 0.0))
        .collect();
    assert_eq!(
        series(&s, SHADOW),
        zero,
        "every result exists from the start"
    );

    const N: usize = 3;
    for i in 0..N {
        let a = get(f.addr, &format!("/api/orders/{i}"), &[]).await;
        assert_eq!(a.status, 200);
    }
    let s = scrape_until(f.admin, "three shadow outcomes", |s| {
        total(s, SHADOW, &[]) >= N as f64
    })
    .await;
    let want: BTreeMap<String, f64> = [
        ("match", N as f64),
        ("mismatch", 0.0),
        ("error", 0.0),
        ("skipped", 0.0),
    ]
    .into_iter()
    .map(|(r, n)| (key(&[("route", "orders"), ("result", r)]), n))
    .collect();
    assert_eq!(series(&s, SHADOW), want, "{SHADOW}");
    // Shadow traffic is not client traffic.
    assert_eq!(
        total(&s, REQUESTS, &[]),
        N as f64,
        "{:?}",
        series(&s, REQUESTS)
    );
}

// === reloads ===

fn reload_config(backend: &Backend, extra_route: bool) -> String {
    let extra = if extra_route {
        "[[routes]]\nname = \"extra\"\nprefix = \"/extra\"\nto = \"monolith\"\n"
    } else {
        ""
    };
    config(&format!(
        "[upstreams.monolith]\nlegacy = true\ntargets = [\"{}\"]\n\
         [[routes]]\nname = \"shop\"\nprefix = \"/shop\"\nto = \"monolith\"\n{extra}",
        backend.url()
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_are_counted_by_result_and_a_success_moves_the_timestamp() {
    let monolith = app("monolith", 200).await;
    let f = Figway::start_file(&reload_config(&monolith, false)).await;
    let s = scrape(f.admin).await;
    assert_eq!(must(&s, RELOADS, &[("result", "success")]), 0.0);
    assert_eq!(must(&s, RELOADS, &[("result", "error")]), 0.0);
    let t0 = must(&s, LAST_RELOAD, &[]);

    tokio::time::sleep(Duration::from_millis(50)).await;
    f.reload_ok(&reload_config(&monolith, true)).await;
    let s = scrape(f.admin).await;
    assert_eq!(must(&s, RELOADS, &[("result", "success")]), 1.0);
    assert_eq!(must(&s, RELOADS, &[("result", "error")]), 0.0);
    let t1 = must(&s, LAST_RELOAD, &[]);
    assert!(
        t1 > t0 && t1 - t0 < 60.0,
        "a good reload moves {LAST_RELOAD}: {t0} -> {t1}"
    );

    tokio::time::sleep(Duration::from_millis(50)).await;
    // A route to an upstream that does not exist.
    let bad = reload_config(&monolith, true).replace("to = \"monolith\"", "to = \"nope\"");
    let outcome = f.reload(&bad).await;
    assert!(
        matches!(outcome, figway::reload::Outcome::Rejected { .. }),
        "reload of an invalid file: {outcome:?}"
    );
    let s = scrape(f.admin).await;
    assert_eq!(must(&s, RELOADS, &[("result", "success")]), 1.0);
    assert_eq!(must(&s, RELOADS, &[("result", "error")]), 1.0);
    assert_eq!(
        must(&s, LAST_RELOAD, &[]),
        t1,
        "a rejected reload leaves {LAST_RELOAD} alone"
    );
    // The rejected file changed nothing: the route still serves and counts.
    send_n(f.addr, "/shop/1", 1, 200).await;
    scrape_until(f.admin, "the request counted", |s| {
        value(
            s,
            REQUESTS,
            &[("route", "shop"), ("upstream", "monolith"), ("code", "200")],
        ) == Some(1.0)
    })
    .await;
}

/// Route "orders" to upstream "orders" (a good and a refusing target, with
/// outlier detection: a retry, a connect error and an ejection), a fallback
/// and a shadow; route "shop" to the legacy "monolith". Without `orders`,
/// only "shop" and "monolith" remain.
fn removal_config(good: &Backend, refused: SocketAddr, with_orders: bool, extra: bool) -> String {
    let mut toml = format!(
        "[upstreams.monolith]\nlegacy = true\ntargets = [\"{}\"]\n\
         [[routes]]\nname = \"shop\"\nprefix = \"/shop\"\nto = \"monolith\"\n",
        good.url()
    );
    if extra {
        toml.push_str("[[routes]]\nname = \"extra\"\nprefix = \"/extra\"\nto = \"monolith\"\n");
    }
    if with_orders {
        toml.push_str(&format!(
            r#"
[upstreams.orders]
targets = ["{good}", "http://{refused}"]
[upstreams.orders.outlier]
consecutive_failures = 1
max_ejected_percent = 50
[upstreams.orders_v2]
targets = ["{good}"]

[[routes]]
name = "orders"
prefix = "/api/orders"
to = "orders"
fallback = "monolith"
[routes.shadow]
to = "orders_v2"
"#,
            good = good.url()
        ));
    }
    config(&toml)
}

/// Label values that name the removed route or upstreams, with their series.
fn mentions_of_orders(s: &Scrape) -> Vec<String> {
    s.samples
        .iter()
        .filter(|x| x.labels.values().any(|v| v == "orders" || v == "orders_v2"))
        .map(|x| format!("{}{{{}}}", x.metric, x.labels))
        .collect()
}

/// Traffic to both routes; checks that orders' series exist.
async fn orders_and_shop_traffic(f: &Figway) {
    send_n(f.addr, "/api/orders/1", 4, 200).await;
    send_n(f.addr, "/shop/1", 3, 200).await;
    let s = scrape_until(f.admin, "7 requests, the shadows, the ejection", |s| {
        total(s, REQUESTS, &[]) >= 7.0
            && total(s, SHADOW, &[]) >= 4.0
            && total(s, EJECTIONS, &[]) >= 1.0
    })
    .await;
    for name in [
        REQUESTS, DURATION, INFO, HEALTHY, IN_FLIGHT, ERRORS, EJECTIONS, RETRIES, FALLBACKS, SHADOW,
    ] {
        assert!(
            s.samples
                .iter()
                .any(|x| family(&x.metric) == name && x.labels.values().any(|v| v == "orders")),
            "before the reload, {name} has an orders series: {:?}",
            mentions_of_orders(&s)
        );
    }
    assert_eq!(
        must(
            &s,
            REQUESTS,
            &[("route", "shop"), ("upstream", "monolith"), ("code", "200")]
        ),
        3.0
    );
}

/// After orders was removed: nothing names it, and shop keeps counting from
/// its 3 requests.
async fn orders_gone_and_shop_counts_on(f: &Figway) {
    let s = scrape(f.admin).await;
    assert_eq!(
        mentions_of_orders(&s),
        Vec::<String>::new(),
        "series of the removed route and upstreams"
    );
    let shop = [("route", "shop"), ("upstream", "monolith"), ("code", "200")];
    assert_eq!(must(&s, REQUESTS, &shop), 3.0, "not reset by the reload");
    assert_eq!(observed(&s, "shop", "monolith"), Some(3.0));
    send_n(f.addr, "/shop/2", 2, 200).await;
    let s = scrape_until(f.admin, "shop's 2 new requests", |s| {
        total(s, REQUESTS, &[("route", "shop")]) >= 5.0
    })
    .await;
    assert_eq!(must(&s, REQUESTS, &shop), 5.0, "keeps counting");
    assert_eq!(observed(&s, "shop", "monolith"), Some(5.0));
    assert_eq!(mentions_of_orders(&s), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_of_a_removed_route_and_upstream_disappear_and_kept_ones_keep_counting() {
    let good = app("good", 200).await;
    let refused = refused_port().await;
    let f = Figway::start_file(&removal_config(&good, refused, true, false)).await;
    orders_and_shop_traffic(&f).await;
    f.reload_ok(&removal_config(&good, refused, false, false))
        .await;
    orders_gone_and_shop_counts_on(&f).await;
}

/// The same, with an unrelated reload between the traffic and the removal:
/// series recorded under an earlier table must disappear too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_recorded_before_an_earlier_reload_disappear_too() {
    let good = app("good", 200).await;
    let refused = refused_port().await;
    let f = Figway::start_file(&removal_config(&good, refused, true, false)).await;
    orders_and_shop_traffic(&f).await;
    f.reload_ok(&removal_config(&good, refused, true, true))
        .await;
    f.reload_ok(&removal_config(&good, refused, false, true))
        .await;
    orders_gone_and_shop_counts_on(&f).await;
}

// === connections, labels, admin ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_active_counts_open_client_connections_only() {
    let backend = app("orders", 200).await;
    let f = Figway::start(&config(&format!(
        "[upstreams.orders]\ntargets = [\"{}\"]\n\
         [[routes]]\nname = \"orders\"\nprefix = \"/\"\nto = \"orders\"\n",
        backend.url()
    )))
    .await;
    // Admin connections (this scrape's own included) do not count.
    let _admin_conn = H1::connect(f.admin).await;
    let s = scrape(f.admin).await;
    assert_eq!(must(&s, CONNECTIONS, &[]), 0.0);

    let mut first = H1::connect(f.addr).await;
    for _ in 0..2 {
        let a = first
            .send(
                http::Request::get("/a")
                    .header("host", "test.local")
                    .body(full(""))
                    .unwrap(),
            )
            .await;
        assert_eq!(a.status, 200);
    }
    let s = scrape(f.admin).await;
    assert_eq!(must(&s, CONNECTIONS, &[]), 1.0, "one keep-alive connection");

    let mut second = H1::connect(f.addr).await;
    let a = second
        .send(
            http::Request::get("/b")
                .header("host", "test.local")
                .body(full(""))
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, 200);
    let s = scrape(f.admin).await;
    assert_eq!(must(&s, CONNECTIONS, &[]), 2.0, "two connections");

    drop(second);
    scrape_until(f.admin, "one connection after the second closed", |s| {
        value(s, CONNECTIONS, &[]) == Some(1.0)
    })
    .await;
    assert!(!first.is_closed());
    drop(first);
    scrape_until(f.admin, "no connection after both closed", |s| {
        value(s, CONNECTIONS, &[]) == Some(0.0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_label_holds_a_path_or_a_client_address() {
    let good = app("orders", 200).await;
    let shadow = app("orders", 200).await;
    let refused = refused_port().await;
    let f = Figway::start(&everything_config(&good, refused, &shadow)).await;
    let paths = [
        "/api/orders/secret-42?token=abc",
        "/api/orders/missing/7",
        "/private/area",
        "/api/ordersx",
    ];
    for path in paths {
        for xff in ["", "10.9.8.7"] {
            let headers: Vec<(&str, &str)> = if xff.is_empty() {
                vec![]
            } else {
                vec![("x-forwarded-for", xff), ("x-real-ip", xff)]
            };
            let a = get(f.addr, path, &headers).await;
            assert!(a.status.as_u16() < 500, "GET {path}: {}", a.status);
        }
    }
    let s = scrape_until(f.admin, "8 requests counted", |s| {
        total(s, REQUESTS, &[]) >= 8.0
    })
    .await;
    let targets: BTreeSet<String> = [
        good.addr.to_string(),
        shadow.addr.to_string(),
        refused.to_string(),
    ]
    .into_iter()
    .collect();
    let allowed_keys = [
        "route", "upstream", "code", "legacy", "target", "kind", "result", "from", "to",
    ];
    let mut checked = 0;
    for x in &s.samples {
        for (k, v) in x.labels.iter() {
            checked += 1;
            let series = format!("{}{{{}}}", x.metric, x.labels);
            assert!(allowed_keys.contains(&k.as_str()), "label {k} in {series}");
            assert!(!v.starts_with('/'), "a path in {series}");
            for word in ["secret", "token", "private", "missing", "ordersx", "?"] {
                assert!(!v.contains(word), "part of a request path in {series}");
            }
            assert!(
                !v.contains("10.9.8.7"),
                "a forwarded client address in {series}"
            );
            if v.contains("127.0.0.1") {
                assert_eq!(k, "target", "an address outside a target label: {series}");
                assert!(
                    targets.contains(v),
                    "{v} is not a configured target: {series}"
                );
            }
            if k == "target" {
                assert!(
                    targets.contains(v),
                    "{v} is not a configured target: {series}"
                );
            }
        }
    }
    assert!(checked > 20, "only {checked} labels scanned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_requests_are_not_counted() {
    let backend = app("orders", 200).await;
    let f = Figway::start(&config(&format!(
        "[upstreams.orders]\ntargets = [\"{}\"]\n\
         [[routes]]\nname = \"orders\"\nprefix = \"/api/orders\"\nto = \"orders\"\n",
        backend.url()
    )))
    .await;
    for path in [
        "/metrics",
        "/healthz",
        "/readyz",
        "/config",
        "/routes",
        "/upstreams",
        "/metrics",
        "/no-such-admin-path",
        "/api/orders/1",
    ] {
        let _ = get(f.admin, path, &[]).await;
    }
    let _ = get(f.admin, "/reload", &[]).await; // 405
    tokio::time::sleep(Duration::from_millis(100)).await;
    let s = scrape(f.admin).await;
    assert_eq!(
        total(&s, REQUESTS, &[]),
        0.0,
        "admin requests counted: {:?}",
        series(&s, REQUESTS)
    );
    for x in s.samples.iter().filter(|x| x.metric == DURATION) {
        let route = x.labels.get("route").unwrap();
        let upstream = x.labels.get("upstream").unwrap();
        assert_eq!(
            observed(&s, route, upstream),
            Some(0.0),
            "{DURATION}{{{}}}",
            x.labels
        );
    }
    assert_eq!(must(&s, CONNECTIONS, &[]), 0.0);

    send_n(f.addr, "/api/orders/1", 1, 200).await;
    let s = scrape_until(f.admin, "the proxied request counted", |s| {
        total(s, REQUESTS, &[]) >= 1.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let s2 = scrape(f.admin).await;
    assert_eq!(series(&s, REQUESTS), series(&s2, REQUESTS));
    assert_eq!(
        series(&s2, REQUESTS),
        [(
            key(&[("route", "orders"), ("upstream", "orders"), ("code", "200")]),
            1.0
        )]
        .into_iter()
        .collect(),
        "only the proxied request; the scrapes around it are not counted"
    );
}
