//! Strangler controls (SPEC §2, §3, §4; issue 6) end to end over loopback:
//! a weighted `split` keeps its share; a `sticky` key (header, cookie or
//! client address) always lands on one side, the same side on two figway
//! servers, on the real binary and after a restart of it; raising the new
//! side's weight by a reload only moves keys toward it; requests without
//! the key are split at random by weight. A shadow never delays or breaks the
//! client (a 2 s shadow, a dead shadow, `max_in_flight` full), receives the
//! request the primary received (method, rewritten path, query, headers with
//! the same `x-request-id`, body) plus `x-figway-shadow: 1`, and its answer
//! is compared and counted (`match`, `mismatch`, `error`, `skipped`); POST is
//! not mirrored by default; bodies over `max_body` count as skipped; a
//! mismatch is logged once. `figway explain --json` names the side the proxy
//! really uses, validation rejects what §2 forbids, `figway check` warns
//! about weight 0 and `sample = 0`, and `GET /routes` shows split, sticky and
//! shadow.
#![cfg(unix)]

mod support;
use support::*;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response};
use serde_json::{json, Value};

use figway::shadow::Outcome;

/// How long a test waits for a shadow task to settle its outcome.
const SHADOW_TIMEOUT: Duration = Duration::from_secs(5);
/// The latency a client may see when the shadow is slow or dead: far below
/// the shadow's own delay, with room for a loaded debug build.
const CLIENT_LATENCY_LIMIT: Duration = Duration::from_millis(300);
/// A fixed `Date` for backends whose answers must be byte-identical (hyper
/// adds the current one otherwise, which may tick between two answers).
const FIXED_DATE: &str = "Mon, 01 Jan 2024 00:00:00 GMT";

// === helpers: requests ===

fn request(
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Request<TestBody> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "test.local");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(full(body)).unwrap()
}

/// The backend (`x-backend`) that answered `GET path` with `headers`.
async fn side_of(conn: &mut H1, path: &str, headers: &[(&str, &str)]) -> String {
    let a = conn.send(request(Method::GET, path, headers, "")).await;
    assert_eq!(a.status, 200, "GET {path} {headers:?}: {}", a.text());
    a.header("x-backend")
        .unwrap_or_else(|| panic!("GET {path}: no x-backend header"))
        .to_string()
}

/// Sends `GET path` once per header list, over `conns` keep-alive
/// connections in parallel, and returns the backend of each answer in order.
async fn sides(
    addr: SocketAddr,
    path: &str,
    requests: Vec<Vec<(String, String)>>,
    conns: usize,
) -> Vec<String> {
    let total = requests.len();
    let per = total.div_ceil(conns.max(1)).max(1);
    let mut tasks = Vec::new();
    let mut requests = requests.into_iter().enumerate().collect::<Vec<_>>();
    while !requests.is_empty() {
        let chunk: Vec<_> = requests.drain(..per.min(requests.len())).collect();
        let path = path.to_string();
        tasks.push(tokio::spawn(async move {
            let mut conn = H1::connect(addr).await;
            let mut out = Vec::with_capacity(chunk.len());
            for (i, headers) in chunk {
                let h: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                out.push((i, side_of(&mut conn, &path, &h).await));
            }
            out
        }));
    }
    let mut all = vec![String::new(); total];
    for t in tasks {
        for (i, side) in t.await.unwrap() {
            all[i] = side;
        }
    }
    all
}

fn user_keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user-{i}")).collect()
}

fn header_requests(name: &str, keys: &[String]) -> Vec<Vec<(String, String)>> {
    keys.iter()
        .map(|k| vec![(name.to_string(), k.clone())])
        .collect()
}

/// Share of `side` in `sides`, in percent.
fn share(sides: &[String], side: &str) -> f64 {
    100.0 * sides.iter().filter(|s| *s == side).count() as f64 / sides.len() as f64
}

// === helpers: configs and servers ===

/// Two named backends, `new` and `old` (legacy), and the given routes.
fn split_config(new: &Backend, old: &Backend, routes: &str) -> String {
    config(&format!(
        "[upstreams.new]\ntargets = [\"{}\"]\n\
         [upstreams.old]\nlegacy = true\ntargets = [\"{}\"]\n{routes}",
        new.url(),
        old.url()
    ))
}

/// A split route named `name` on `prefix`, `new`:`old` = `weight`:`100 - weight`.
fn split_route(name: &str, prefix: &str, weight: u32, sticky: Option<&str>) -> String {
    let sticky = sticky.map_or(String::new(), |s| format!("sticky = \"{s}\"\n"));
    format!(
        "[[routes]]\nname = \"{name}\"\nprefix = \"{prefix}\"\n\
         split = [{{ to = \"new\", weight = {weight} }}, {{ to = \"old\", weight = {} }}]\n{sticky}",
        100 - weight
    )
}

fn route_index(shared: &figway::state::Shared, name: &str) -> usize {
    shared
        .snapshot
        .load()
        .routes
        .iter()
        .position(|r| &*r.name == name)
        .unwrap_or_else(|| panic!("no route {name:?}"))
}

/// The side the decision code itself gives `key` on route `name`.
fn decided_side(shared: &figway::state::Shared, name: &str, key: &[u8]) -> String {
    let snapshot = shared.snapshot.load();
    let route = &snapshot.routes[route_index(shared, name)];
    let side = figway::decision::sticky_side(route, key);
    snapshot.upstreams[route.sides[side].upstream]
        .name
        .to_string()
}

// === helpers: shadow ===

/// Outcome counts of route `name`: `[match, mismatch, error, skipped]`.
fn counts(shared: &figway::state::Shared, name: &str) -> [u64; 4] {
    let snapshot = shared.snapshot.load();
    let route = &snapshot.routes[route_index(shared, name)];
    let shadow = route
        .shadow
        .as_ref()
        .unwrap_or_else(|| panic!("route {name:?} has no shadow"));
    Outcome::ALL.map(|o| shadow.count(o))
}

/// Waits until route `name` has counted at least `total` outcomes, then
/// returns the counts.
async fn settled(shared: &figway::state::Shared, name: &str, total: u64) -> [u64; 4] {
    let deadline = Instant::now() + SHADOW_TIMEOUT;
    loop {
        let c = counts(shared, name);
        if c.iter().sum::<u64>() >= total {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "route {name:?}: {total} shadow outcome(s) not counted within {SHADOW_TIMEOUT:?}; \
             [match, mismatch, error, skipped] = {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `backend` has seen `n` requests.
async fn seen_at_least(backend: &Backend, n: usize) -> Vec<Seen> {
    let deadline = Instant::now() + SHADOW_TIMEOUT;
    loop {
        if backend.count() >= n {
            return backend.seen();
        }
        assert!(
            Instant::now() < deadline,
            "backend saw {} request(s), expected {n}",
            backend.count()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A backend answering `status` with `body` as `application/json`, a fixed
/// `Date`, after `delay`.
async fn json_backend(status: u16, body: &'static str, delay: Duration) -> Backend {
    Backend::with(move |_| async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .header("date", FIXED_DATE)
            .body(full(body))
            .unwrap()
    })
    .await
}

/// A backend answering 200 with `body` (and `x-backend: name`, a fixed
/// `Date`) after `delay`.
async fn body_backend(name: &'static str, body: Bytes, delay: Duration) -> Backend {
    Backend::with(move |_| {
        let body = body.clone();
        async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Response::builder()
                .header("x-backend", name)
                .header("date", FIXED_DATE)
                .body(full(body))
                .unwrap()
        }
    })
    .await
}

/// `primary` and `shadow` upstreams and the given route TOML.
fn shadow_config(primary: &str, shadow: &str, routes: &str) -> String {
    config(&format!(
        "[upstreams.primary]\nlegacy = true\ntargets = [\"{primary}\"]\n\
         [upstreams.shadow]\ntargets = [\"{shadow}\"]\n{routes}"
    ))
}

fn figway_bin(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_figway"))
        .args(args)
        .output()
        .unwrap()
}

// === 1. split by weight ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_90_split_gives_the_new_side_10_percent() {
    let (new, old) = (Backend::start("new").await, Backend::start("old").await);
    let f = Figway::start(&split_config(
        &new,
        &old,
        &split_route("users", "/api/users", 10, None),
    ))
    .await;
    let got = sides(f.addr, "/api/users/1", vec![Vec::new(); 3000], 4).await;
    let pct = share(&got, "new");
    assert!(
        (7.0..=13.0).contains(&pct),
        "new side got {pct:.2}% of 3000"
    );
    assert_eq!(new.count() + old.count(), 3000);
}

// === 2. sticky keys ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_keys_always_land_on_one_side() {
    let (new, old) = (Backend::start("new").await, Backend::start("old").await);
    let routes = [
        split_route("by-header", "/h", 10, Some("header:x-user-id")),
        split_route("by-cookie", "/c", 10, Some("cookie:uid")),
        split_route("by-ip", "/ip", 50, Some("client_ip")),
    ]
    .concat();
    let f = Figway::start(&split_config(&new, &old, &routes)).await;
    let keys = user_keys(500);

    // Header: each key three times, in three separate rounds.
    let mut rounds = Vec::new();
    for _ in 0..3 {
        rounds.push(sides(f.addr, "/h/x", header_requests("x-user-id", &keys), 4).await);
    }
    for (i, key) in keys.iter().enumerate() {
        let seen: Vec<&String> = rounds.iter().map(|r| &r[i]).collect();
        assert!(
            seen.iter().all(|s| *s == seen[0]),
            "header key {key} moved between sides: {seen:?}"
        );
        assert_eq!(
            *seen[0],
            decided_side(&f.shared, "by-header", key.as_bytes()),
            "key {key}: the proxy's side is not the decision code's"
        );
    }
    let pct = share(&rounds[0], "new");
    assert!((5.0..=15.0).contains(&pct), "by header: {pct:.1}% new");

    // Cookie: the same three rounds, the key among other cookies.
    let cookie_requests: Vec<Vec<(String, String)>> = keys
        .iter()
        .map(|k| vec![("cookie".to_string(), format!("a=1; uid={k}; z=2"))])
        .collect();
    let mut rounds = Vec::new();
    for _ in 0..3 {
        rounds.push(sides(f.addr, "/c/x", cookie_requests.clone(), 4).await);
    }
    for (i, key) in keys.iter().enumerate() {
        let seen: Vec<&String> = rounds.iter().map(|r| &r[i]).collect();
        assert!(
            seen.iter().all(|s| *s == seen[0]),
            "cookie key {key} moved between sides: {seen:?}"
        );
        assert_eq!(
            *seen[0],
            decided_side(&f.shared, "by-cookie", key.as_bytes())
        );
    }
    let pct = share(&rounds[0], "new");
    assert!((5.0..=15.0).contains(&pct), "by cookie: {pct:.1}% new");

    // client_ip: everything comes from 127.0.0.1, over fresh connections
    // (fresh source ports) too: one side, 50:50 notwithstanding.
    let mut got = sides(f.addr, "/ip/x", vec![Vec::new(); 60], 1).await;
    for _ in 0..20 {
        got.push(side_of(&mut H1::connect(f.addr).await, "/ip/x", &[]).await);
    }
    assert!(
        got.iter().all(|s| *s == got[0]),
        "client_ip 127.0.0.1 moved between sides: {} new of {}",
        got.iter().filter(|s| *s == "new").count(),
        got.len()
    );
    assert_eq!(got[0], decided_side(&f.shared, "by-ip", &[127, 0, 0, 1]));
}

// === 3. agreement between servers and across a restart ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_and_a_restarted_binary_agree_on_every_key() {
    let (new, old) = (Backend::start("new").await, Backend::start("old").await);
    let text = split_config(
        &new,
        &old,
        &split_route("users", "/api/users", 30, Some("header:x-user-id")),
    );
    let keys = user_keys(500);
    let requests = header_requests("x-user-id", &keys);

    let a = Figway::start(&text).await;
    let b = Figway::start(&text).await;
    let on_a = sides(a.addr, "/api/users/me", requests.clone(), 4).await;
    let on_b = sides(b.addr, "/api/users/me", requests.clone(), 4).await;
    let pct = share(&on_a, "new");
    assert!((25.0..=35.0).contains(&pct), "{pct:.1}% new");
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(on_a[i], on_b[i], "key {key}: server A and B disagree");
    }
    // A restart of an in-process server.
    b.shutdown().await;
    let c = Figway::start(&text).await;
    let on_c = sides(c.addr, "/api/users/me", requests.clone(), 4).await;
    assert_eq!(on_a, on_c, "a restarted server disagrees");

    // The real binary, a process of its own (no per-process seed may creep
    // in), then killed and started again.
    for run in 0..2 {
        let t = text.clone();
        let p = tokio::task::spawn_blocking(move || FigwayProcess::spawn(&t))
            .await
            .unwrap();
        let on_p = sides(p.addr, "/api/users/me", requests.clone(), 4).await;
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(on_a[i], on_p[i], "key {key}: binary run {run} disagrees");
        }
        drop(p);
    }
}

// === 4. ramp by reload ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_the_weight_by_reload_keeps_every_new_side_key() {
    let (new, old) = (Backend::start("new").await, Backend::start("old").await);
    let at = |w: u32| {
        split_config(
            &new,
            &old,
            &split_route("users", "/api/users", w, Some("header:x-user-id")),
        )
    };
    let f = Figway::start_file(&at(10)).await;
    let keys = user_keys(2000);
    let requests = header_requests("x-user-id", &keys);
    let before = sides(f.addr, "/api/users/me", requests.clone(), 4).await;
    let pct = share(&before, "new");
    assert!((7.0..=13.0).contains(&pct), "at 10: {pct:.1}% new");

    f.reload_ok(&at(30)).await;
    let weights: Vec<u32> = f.shared.snapshot.load().routes[0]
        .sides
        .iter()
        .map(|s| s.weight)
        .collect();
    assert_eq!(weights, [30, 70], "the reload did not apply");
    let after = sides(f.addr, "/api/users/me", requests, 4).await;
    for (i, key) in keys.iter().enumerate() {
        if before[i] == "new" {
            assert_eq!(after[i], "new", "key {key} left the new side at 30%");
        }
    }
    let pct = share(&after, "new");
    assert!((26.0..=34.0).contains(&pct), "at 30: {pct:.1}% new");
}

// === 5. requests without the key ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_the_sticky_key_split_at_random_by_weight() {
    let (new, old) = (Backend::start("new").await, Backend::start("old").await);
    let f = Figway::start(&split_config(
        &new,
        &old,
        &split_route("users", "/api/users", 30, Some("header:x-user-id")),
    ))
    .await;
    let got = sides(f.addr, "/api/users/1", vec![Vec::new(); 2000], 4).await;
    let pct = share(&got, "new");
    assert!((26.0..=34.0).contains(&pct), "keyless: {pct:.1}% new");
    // Another header is no key either.
    let other = vec![vec![("x-other-id".to_string(), "7".to_string())]; 400];
    let got = sides(f.addr, "/api/users/1", other, 2).await;
    let n = got.iter().filter(|s| *s == "new").count();
    assert!(
        (60..=180).contains(&n),
        "keyless (other header): {n} of 400 new"
    );
}

// === 6. the client never waits for the shadow ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_shadow_does_not_delay_the_client() {
    let body = Bytes::from(vec![b'p'; 32 * 1024]);
    let primary = body_backend("primary", body.clone(), Duration::ZERO).await;
    let shadow = body_backend("shadow", body.clone(), Duration::from_secs(2)).await;
    let routes = "[[routes]]\nname = \"plain\"\nprefix = \"/plain\"\nto = \"primary\"\n\
                  [routes.shadow]\nto = \"shadow\"\nsample = 1.0\n\
                  [[routes]]\nname = \"compared\"\nprefix = \"/compared\"\nto = \"primary\"\n\
                  [routes.shadow]\nto = \"shadow\"\nsample = 1.0\ncompare = true\n";
    let f = Figway::start(&shadow_config(&primary.url(), &shadow.url(), routes)).await;
    let mut conn = H1::connect(f.addr).await;
    let mut mirrored = 0;
    for path in ["/plain/a", "/compared/a", "/plain/b", "/compared/b"] {
        for _ in 0..2 {
            let started = Instant::now();
            let a = conn.send(request(Method::GET, path, &[], "")).await;
            let took = started.elapsed();
            assert_eq!(a.status, 200);
            assert_eq!(a.body, body, "GET {path}: body changed");
            assert!(
                took < CLIENT_LATENCY_LIMIT,
                "GET {path} took {took:?} with a 2 s shadow"
            );
            mirrored += 1;
        }
    }
    // The shadow really was sent each of those requests (it is sleeping on
    // them now).
    let seen = seen_at_least(&shadow, mirrored).await;
    assert_eq!(seen.len(), mirrored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_shadow_changes_nothing_for_the_client() {
    let body = Bytes::from((0..64 * 1024).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let primary = body_backend("primary", body.clone(), Duration::ZERO).await;
    let dead = refused_port().await;
    let routes = "[[routes]]\nname = \"dead\"\nprefix = \"/\"\nto = \"primary\"\n\
                  [routes.shadow]\nto = \"shadow\"\nsample = 1.0\ncompare = true\n";
    let f = Figway::start(&shadow_config(
        &primary.url(),
        &format!("http://{dead}"),
        routes,
    ))
    .await;
    let mut conn = H1::connect(f.addr).await;
    for i in 0..5 {
        let started = Instant::now();
        let a = conn
            .send(request(Method::GET, &format!("/x/{i}"), &[], ""))
            .await;
        let took = started.elapsed();
        assert_eq!(a.status, 200, "{}", a.text());
        assert_eq!(a.header("x-backend"), Some("primary"));
        assert_eq!(a.body, body, "request {i}: body changed");
        assert!(a.header("x-figway-error").is_none());
        assert!(took < CLIENT_LATENCY_LIMIT, "request {i} took {took:?}");
    }
    let c = settled(&f.shared, "dead", 5).await;
    assert_eq!(c, [0, 0, 5, 0], "[match, mismatch, error, skipped]");
}

// === 7. what the shadow receives ===

/// A request, and what both upstreams must receive for it.
struct MirrorCase {
    request: Request<TestBody>,
    method: Method,
    /// Path and query upstream, after strip/rewrite.
    path: &'static str,
    body: Bytes,
    /// The client's own `x-request-id`, when it sends one.
    id: Option<&'static str>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shadow_receives_the_primarys_request_marked_as_shadow() {
    let primary = Backend::start("primary").await;
    let shadow = Backend::start("shadow").await;
    let routes = "[[routes]]\nname = \"api\"\nprefix = \"/api\"\nrewrite_prefix = \"/v2\"\nto = \"primary\"\n\
                  [routes.shadow]\nto = \"shadow\"\nmethods = [\"GET\", \"POST\"]\n\
                  [[routes]]\nname = \"stripped\"\nprefix = \"/strip\"\nstrip_prefix = true\nto = \"primary\"\n\
                  [routes.shadow]\nto = \"shadow\"\n";
    let f = Figway::start(&shadow_config(&primary.url(), &shadow.url(), routes)).await;
    let post_body = Bytes::from((0..3000).map(|i| (i % 256) as u8).collect::<Vec<u8>>());
    let cases = [
        MirrorCase {
            request: request(
                Method::GET,
                "/api/items/7?q=a%20b&page=2",
                &[("x-custom", "one"), ("authorization", "Bearer t0k")],
                "",
            ),
            method: Method::GET,
            path: "/v2/items/7?q=a%20b&page=2",
            body: Bytes::new(),
            id: None,
        },
        MirrorCase {
            request: request(
                Method::POST,
                "/api/orders?dry=1",
                &[
                    ("content-type", "application/octet-stream"),
                    ("x-request-id", "client-chosen-id-42"),
                    ("x-custom", "two"),
                ],
                post_body.clone(),
            ),
            method: Method::POST,
            path: "/v2/orders?dry=1",
            body: post_body.clone(),
            id: Some("client-chosen-id-42"),
        },
        MirrorCase {
            request: request(
                Method::GET,
                "/strip/a/b?x=1",
                &[("accept", "text/plain")],
                "",
            ),
            method: Method::GET,
            path: "/a/b?x=1",
            body: Bytes::new(),
            id: None,
        },
    ];
    for (n, case) in cases.into_iter().enumerate() {
        let MirrorCase {
            request: req,
            method,
            path,
            body,
            id,
        } = case;
        let a = send(f.addr, req).await;
        assert_eq!(a.status, 200, "case {n}: {}", a.text());
        assert_eq!(a.header("x-backend"), Some("primary"));
        let p = primary.last();
        let s = seen_at_least(&shadow, n + 1).await.pop().unwrap();
        assert_eq!(p.method, method, "case {n}: primary method");
        assert_eq!(s.method, method, "case {n}: shadow method");
        assert_eq!(p.uri.to_string(), path, "case {n}: primary path");
        assert_eq!(s.uri.to_string(), path, "case {n}: shadow path");
        assert_eq!(p.body, body, "case {n}: primary body");
        assert_eq!(s.body, body, "case {n}: shadow body");
        assert_eq!(s.body_len, body.len() as u64);
        assert!(
            !p.headers.contains_key("x-figway-shadow"),
            "case {n}: the primary got x-figway-shadow"
        );
        assert_eq!(
            s.headers.get("x-figway-shadow").map(|v| v.as_bytes()),
            Some(&b"1"[..]),
            "case {n}: shadow headers {:?}",
            s.headers
        );
        let pid = p.headers.get("x-request-id").expect("primary x-request-id");
        assert_eq!(s.headers.get("x-request-id"), Some(pid), "case {n}");
        assert_eq!(
            a.header("x-request-id").map(str::as_bytes),
            Some(pid.as_bytes())
        );
        if let Some(id) = id {
            assert_eq!(pid, id, "case {n}: the client's own id");
        }
        let mut without_mark = s.headers.clone();
        without_mark.remove("x-figway-shadow");
        assert_eq!(
            without_mark, p.headers,
            "case {n}: headers differ between primary and shadow"
        );
    }
}

// === 8. compare ===

const DOC: &str =
    r#"{"id":7,"name":"widget","price":10,"generated_at":"2024-01-01T00:00:00Z","tags":["a","b"]}"#;
const DOC_PRICE_CHANGED: &str =
    r#"{"id":7,"name":"widget","price":12,"generated_at":"2024-01-01T00:00:00Z","tags":["a","b"]}"#;
const DOC_GENERATED_CHANGED: &str =
    r#"{"id":7,"name":"widget","price":10,"generated_at":"2025-06-30T12:00:00Z","tags":["a","b"]}"#;
const DOC_REORDERED: &str = "{\n  \"tags\": [ \"a\", \"b\" ],\n  \"generated_at\": \"2024-01-01T00:00:00Z\",\n  \"price\": 10,\n  \"name\": \"widget\",\n  \"id\": 7\n}\n";

/// One route `name` on `/name`, primary answering `DOC`, shadow answering
/// `shadow` (status, body; `None`: a refused port), both as JSON with the
/// same `Date`; returns its outcome counts after `n` requests, and the
/// differences figway logged for the route (for failure messages).
async fn compare_case(
    name: &str,
    shadow: Option<(u16, &'static str)>,
    extra: &str,
    n: u64,
) -> ([u64; 4], Vec<String>) {
    captured();
    let primary = json_backend(200, DOC, Duration::ZERO).await;
    let (shadow_url, _backend) = match shadow {
        Some((status, body)) => {
            let b = json_backend(status, body, Duration::ZERO).await;
            (b.url(), Some(b))
        }
        None => (format!("http://{}", refused_port().await), None),
    };
    let routes = format!(
        "[[routes]]\nname = \"{name}\"\nprefix = \"/{name}\"\nto = \"primary\"\n\
         [routes.shadow]\nto = \"shadow\"\ncompare = true\n{extra}"
    );
    let f = Figway::start(&shadow_config(&primary.url(), &shadow_url, &routes)).await;
    let mut conn = H1::connect(f.addr).await;
    for i in 0..n {
        let a = conn
            .send(request(Method::GET, &format!("/{name}/{i}"), &[], ""))
            .await;
        assert_eq!(a.status, 200, "{name}: the client got {}", a.status);
        assert_eq!(a.text(), DOC, "{name}: the client got the shadow's body?");
    }
    let c = settled(&f.shared, name, n).await;
    // Nothing else trickles in.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(counts(&f.shared, name), c);
    (c, logged_differences(name))
}

/// Leaves `x-request-id` out of the compare: figway sets it on the answer
/// the client gets (the primary's side of the compare) and these shadows do
/// not echo it. Tests about something else than headers use it, so that
/// they test only what they are named for.
const IGNORE_ID: &str = "ignore_headers = [\"x-request-id\"]\n";

/// With the defaults (no `ignore_headers`): two upstreams giving the very
/// same answer, `Date` included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_answers_count_as_match() {
    let (c, logged) = compare_case("same", Some((200, DOC)), "", 3).await;
    assert_eq!(
        c,
        [3, 0, 0, 0],
        "[match, mismatch, error, skipped]; logged: {logged:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_json_field_counts_as_mismatch() {
    let (c, logged) = compare_case("changed", Some((200, DOC_PRICE_CHANGED)), IGNORE_ID, 3).await;
    assert_eq!(
        c,
        [0, 3, 0, 0],
        "[match, mismatch, error, skipped]; logged: {logged:?}"
    );
    assert!(
        logged.iter().all(|d| d == "body /price: 10 != 12") && !logged.is_empty(),
        "logged: {logged:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_only_under_an_ignored_pointer_counts_as_match() {
    let (c, logged) = compare_case(
        "ignored",
        Some((200, DOC_GENERATED_CHANGED)),
        "ignore_json = [\"/generated_at\"]\nignore_headers = [\"x-request-id\"]\n",
        3,
    )
    .await;
    assert_eq!(
        c,
        [3, 0, 0, 0],
        "[match, mismatch, error, skipped]; logged: {logged:?}"
    );
    // The same answers without the pointer: mismatch, so the match above is
    // the pointer's doing.
    let (c, logged) = compare_case(
        "not-ignored",
        Some((200, DOC_GENERATED_CHANGED)),
        IGNORE_ID,
        1,
    )
    .await;
    assert_eq!(
        c,
        [0, 1, 0, 0],
        "[match, mismatch, error, skipped]; logged: {logged:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_order_and_whitespace_do_not_count() {
    let (c, logged) = compare_case("reordered", Some((200, DOC_REORDERED)), IGNORE_ID, 3).await;
    assert_eq!(
        c,
        [3, 0, 0, 0],
        "[match, mismatch, error, skipped]; logged: {logged:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_answering_500_counts_as_mismatch() {
    let (c, logged) = compare_case("status", Some((500, DOC)), IGNORE_ID, 2).await;
    assert_eq!(
        c,
        [0, 2, 0, 0],
        "[match, mismatch, error, skipped]; logged: {logged:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_shadow_counts_as_error() {
    let (c, logged) = compare_case("unreachable", None, IGNORE_ID, 2).await;
    assert_eq!(
        c,
        [0, 0, 2, 0],
        "[match, mismatch, error, skipped]; logged: {logged:?}"
    );
}

// === 9. methods and sampling ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_is_not_mirrored_by_default() {
    let primary = json_backend(200, DOC, Duration::ZERO).await;
    let shadow = json_backend(200, DOC, Duration::ZERO).await;
    let routes = "[[routes]]\nname = \"default-methods\"\nprefix = \"/\"\nto = \"primary\"\n\
                  [routes.shadow]\nto = \"shadow\"\ncompare = true\n";
    let f = Figway::start(&shadow_config(&primary.url(), &shadow.url(), routes)).await;
    for i in 0..3 {
        let a = send(
            f.addr,
            request(Method::POST, &format!("/orders/{i}"), &[], "{\"qty\":1}"),
        )
        .await;
        assert_eq!(a.status, 200);
    }
    assert_eq!(primary.count(), 3);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(shadow.count(), 0, "POST was mirrored: {:?}", shadow.seen());
    assert_eq!(counts(&f.shared, "default-methods"), [0; 4]);

    // GET and HEAD are (the defaults), so the shadow does work.
    let a = send(f.addr, request(Method::GET, "/orders/1", &[], "")).await;
    assert_eq!(a.status, 200);
    let a = send(f.addr, request(Method::HEAD, "/orders/1", &[], "")).await;
    assert_eq!(a.status, 200);
    let seen = seen_at_least(&shadow, 2).await;
    let methods: Vec<&Method> = seen.iter().map(|s| &s.method).collect();
    assert!(
        methods.contains(&&Method::GET) && methods.contains(&&Method::HEAD),
        "{methods:?}"
    );
    settled(&f.shared, "default-methods", 2).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(shadow.count(), 2, "{:?}", shadow.seen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_mirrors_its_share_and_unsampled_requests_are_not_counted() {
    let primary = json_backend(200, DOC, Duration::ZERO).await;
    let shadow = json_backend(200, DOC, Duration::ZERO).await;
    let routes = "[[routes]]\nname = \"quarter\"\nprefix = \"/q\"\nto = \"primary\"\n\
                  [routes.shadow]\nto = \"shadow\"\nsample = 0.25\ncompare = true\n\
                  ignore_headers = [\"x-request-id\"]\n\
                  [[routes]]\nname = \"none\"\nprefix = \"/n\"\nto = \"primary\"\n\
                  [routes.shadow]\nto = \"shadow\"\nsample = 0.0\ncompare = true\n";
    let f = Figway::start(&shadow_config(&primary.url(), &shadow.url(), routes)).await;
    get_many(f.addr, "/n/x", 100).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(shadow.count(), 0, "sample = 0 mirrored");
    assert_eq!(counts(&f.shared, "none"), [0; 4]);

    get_many(f.addr, "/q/x", 400).await;
    // Let every mirrored request settle: the shadow's count stops moving.
    let mut last = usize::MAX;
    while shadow.count() != last {
        last = shadow.count();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mirrored = shadow.count() as u64;
    assert!(
        (60..=140).contains(&mirrored),
        "sample 0.25 mirrored {mirrored} of 400"
    );
    let c = settled(&f.shared, "quarter", mirrored).await;
    assert_eq!(c, [mirrored, 0, 0, 0], "[match, mismatch, error, skipped]");
}

/// `n` GETs of `path` over one connection, each 200.
async fn get_many(addr: SocketAddr, path: &str, n: usize) {
    let mut conn = H1::connect(addr).await;
    for _ in 0..n {
        let a = conn.send(request(Method::GET, path, &[], "")).await;
        assert_eq!(a.status, 200, "{}", a.text());
    }
}

// === 10. max_body ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_over_max_body_are_sent_but_counted_as_skipped() {
    let big = Bytes::from(vec![b'x'; 4096]);
    let small = Bytes::from(vec![b'x'; 100]);
    let (b1, s1) = (big.clone(), small.clone());
    let primary = Backend::with(move |seen| {
        let body = if seen.uri.path().ends_with("/big") {
            b1.clone()
        } else {
            s1.clone()
        };
        async move {
            Response::builder()
                .header("date", FIXED_DATE)
                .body(full(body))
                .unwrap()
        }
    })
    .await;
    let (b2, s2) = (big.clone(), small.clone());
    let shadow = Backend::with(move |seen| {
        let p = seen.uri.path();
        let body = if p.ends_with("/big") || p.ends_with("/shadow-big") {
            b2.clone()
        } else {
            s2.clone()
        };
        async move {
            Response::builder()
                .header("date", FIXED_DATE)
                .body(full(body))
                .unwrap()
        }
    })
    .await;
    let routes = "[[routes]]\nname = \"limited\"\nprefix = \"/\"\nto = \"primary\"\n\
                  [routes.shadow]\nto = \"shadow\"\ncompare = true\nmax_body = \"1KiB\"\n\
                  ignore_headers = [\"x-request-id\"]\n";
    let f = Figway::start(&shadow_config(&primary.url(), &shadow.url(), routes)).await;

    // Both answers 4 KiB: the client gets all of it, the shadow was sent,
    // nothing is compared.
    let a = send(f.addr, request(Method::GET, "/r/big", &[], "")).await;
    assert_eq!(a.body, big);
    assert_eq!(settled(&f.shared, "limited", 1).await, [0, 0, 0, 1]);
    assert_eq!(seen_at_least(&shadow, 1).await.len(), 1);

    // Only the shadow's answer over the limit: skipped as well.
    let a = send(f.addr, request(Method::GET, "/r/shadow-big", &[], "")).await;
    assert_eq!(a.body, small);
    assert_eq!(settled(&f.shared, "limited", 2).await, [0, 0, 0, 2]);

    // Both under it: compared (and equal).
    let a = send(f.addr, request(Method::GET, "/r/small", &[], "")).await;
    assert_eq!(a.body, small);
    assert_eq!(settled(&f.shared, "limited", 3).await, [1, 0, 0, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_over_max_body_is_not_mirrored_and_counted_as_skipped() {
    let primary = json_backend(200, DOC, Duration::ZERO).await;
    let shadow = json_backend(200, DOC, Duration::ZERO).await;
    let routes = "[[routes]]\nname = \"posts\"\nprefix = \"/\"\nto = \"primary\"\n\
                  [routes.shadow]\nto = \"shadow\"\nmethods = [\"POST\"]\ncompare = true\n\
                  max_body = \"1KiB\"\nignore_headers = [\"x-request-id\"]\n";
    let f = Figway::start(&shadow_config(&primary.url(), &shadow.url(), routes)).await;

    let big = Bytes::from(vec![b'b'; 4096]);
    let a = send(f.addr, request(Method::POST, "/orders", &[], big.clone())).await;
    assert_eq!(a.status, 200);
    assert_eq!(primary.last().body, big, "the primary got the whole body");
    assert_eq!(settled(&f.shared, "posts", 1).await, [0, 0, 0, 1]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(shadow.count(), 0, "a 4 KiB body was mirrored past 1 KiB");

    // A body under the limit is mirrored, whole.
    let small = Bytes::from(vec![b's'; 500]);
    let a = send(f.addr, request(Method::POST, "/orders", &[], small.clone())).await;
    assert_eq!(a.status, 200);
    let seen = seen_at_least(&shadow, 1).await;
    assert_eq!(seen[0].body, small);
    assert_eq!(settled(&f.shared, "posts", 2).await, [1, 0, 0, 1]);
}

// === 11. max_in_flight ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadows_beyond_max_in_flight_are_skipped_never_queued() {
    let primary = json_backend(200, DOC, Duration::ZERO).await;
    let shadow = json_backend(200, DOC, Duration::from_millis(1500)).await;
    let routes = "[[routes]]\nname = \"narrow\"\nprefix = \"/\"\nto = \"primary\"\n\
                  [routes.shadow]\nto = \"shadow\"\ncompare = true\nmax_in_flight = 1\n\
                  ignore_headers = [\"x-request-id\"]\n";
    let f = Figway::start(&shadow_config(&primary.url(), &shadow.url(), routes)).await;

    // The first takes the one place...
    let started = Instant::now();
    let a = send(f.addr, request(Method::GET, "/first", &[], "")).await;
    assert_eq!(a.status, 200);
    assert!(started.elapsed() < CLIENT_LATENCY_LIMIT);
    seen_at_least(&shadow, 1).await;
    // ...and five concurrent ones find it taken.
    let clients: Vec<_> = (0..5)
        .map(|i| {
            let addr = f.addr;
            tokio::spawn(async move {
                let started = Instant::now();
                let a = send(addr, request(Method::GET, &format!("/c/{i}"), &[], "")).await;
                (a.status, started.elapsed())
            })
        })
        .collect();
    for c in clients {
        let (status, took) = c.await.unwrap();
        assert_eq!(status, 200);
        assert!(took < CLIENT_LATENCY_LIMIT, "a client waited {took:?}");
    }
    assert_eq!(counts(&f.shared, "narrow"), [0, 0, 0, 5]);
    // Never queued: when the first shadow is done, no others follow it.
    assert_eq!(settled(&f.shared, "narrow", 6).await, [1, 0, 0, 5]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(shadow.count(), 1, "skipped shadows were sent later");
    // The place is free again.
    let a = send(f.addr, request(Method::GET, "/again", &[], "")).await;
    assert_eq!(a.status, 200);
    assert_eq!(seen_at_least(&shadow, 2).await.len(), 2);
}

// === 12. the mismatch log line ===

#[derive(Clone, Default)]
struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogCapture;
    fn make_writer(&'a self) -> LogCapture {
        self.clone()
    }
}

/// JSON log lines at WARN and above from this test binary, process-wide.
fn captured() -> &'static LogCapture {
    static CAPTURE: OnceLock<LogCapture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = LogCapture::default();
        let _ = tracing_subscriber::fmt()
            .with_writer(capture.clone())
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .json()
            .flatten_event(true)
            .try_init();
        capture
    })
}

fn mismatch_lines(request_id_prefix: &str) -> Vec<Value> {
    let bytes = captured().0.lock().unwrap().clone();
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| {
            v["message"] == "shadow mismatch"
                && v["request_id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with(request_id_prefix))
        })
        .collect()
}

/// The `difference` of every mismatch line logged for route `route`.
fn logged_differences(route: &str) -> Vec<String> {
    let bytes = captured().0.lock().unwrap().clone();
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "shadow mismatch" && v["route"] == route)
        .map(|v| v["difference"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mismatch_is_logged_once_with_route_request_id_and_difference() {
    captured();
    let primary = json_backend(200, DOC, Duration::ZERO).await;
    let shadow = json_backend(200, DOC_PRICE_CHANGED, Duration::ZERO).await;
    let routes = "[[routes]]\nname = \"logged\"\nprefix = \"/\"\nto = \"primary\"\n\
                  [routes.shadow]\nto = \"shadow\"\ncompare = true\n\
                  ignore_headers = [\"x-request-id\"]\n";
    let f = Figway::start(&shadow_config(&primary.url(), &shadow.url(), routes)).await;
    let a = get(f.addr, "/item", &[("x-request-id", "log-once-1")]).await;
    assert_eq!(a.status, 200);
    assert_eq!(settled(&f.shared, "logged", 1).await, [0, 1, 0, 0]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let lines = mismatch_lines("log-once-1");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["route"], "logged", "{}", lines[0]);
    assert_eq!(
        lines[0]["difference"], "body /price: 10 != 12",
        "{}",
        lines[0]
    );

    // A burst of mismatches: rate-limited, not one line each.
    let started = Instant::now();
    let mut conn = H1::connect(f.addr).await;
    for i in 0..40 {
        let id = format!("log-burst-{i}");
        let a = conn
            .send(request(Method::GET, "/item", &[("x-request-id", &id)], ""))
            .await;
        assert_eq!(a.status, 200);
    }
    settled(&f.shared, "logged", 41).await;
    let seconds = started.elapsed().as_secs() + 2;
    let lines = mismatch_lines("log-burst-");
    assert!(!lines.is_empty());
    assert!(
        (lines.len() as u64) <= 5 * seconds,
        "{} lines for 40 mismatches in about {seconds} s",
        lines.len()
    );
}

// === 13. explain ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_json_shows_weights_the_real_sticky_side_and_the_shadow() {
    let (new, old) = (Backend::start("new").await, Backend::start("old").await);
    let shadow = Backend::start("shadow").await;
    let text = config(&format!(
        "[upstreams.new]\ntargets = [\"{}\"]\n\
         [upstreams.old]\nlegacy = true\ntargets = [\"{}\"]\n\
         [upstreams.shadow]\ntargets = [\"{}\"]\n\
         {}\
         [[routes]]\nname = \"search\"\nprefix = \"/api/search\"\nto = \"old\"\n\
         [routes.shadow]\nto = \"shadow\"\nsample = 0.5\n",
        new.url(),
        old.url(),
        shadow.url(),
        split_route("users", "/api/users", 10, Some("header:x-user-id")),
    ));
    let dir = tempdir::Dir::new();
    let path = dir.path().join("figway.toml");
    std::fs::write(&path, &text).unwrap();
    let path = path.to_str().unwrap().to_string();
    let explain = move |args: &[&str]| -> Value {
        let mut all = vec!["explain", path.as_str()];
        all.extend_from_slice(args);
        all.push("--json");
        let out = figway_bin(&all);
        assert!(
            out.status.success(),
            "explain {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
    };
    let f = Figway::start(&text).await;
    let mut conn = H1::connect(f.addr).await;
    let mut chosen_sides = Vec::new();
    for key in user_keys(40) {
        let header = format!("x-user-id: {key}");
        let v = explain(&["GET", "http://test.local/api/users/7", "-H", &header]);
        assert_eq!(v["route"]["name"], "users", "{v}");
        assert_eq!(
            v["upstreams"],
            json!([{"name": "new", "weight": 10}, {"name": "old", "weight": 90}])
        );
        assert_eq!(v["sticky"]["key"], "header:x-user-id", "{v}");
        assert_eq!(v["sticky"]["value"], key.as_str(), "{v}");
        let real = side_of(&mut conn, "/api/users/7", &[("x-user-id", &key)]).await;
        assert_eq!(
            v["sticky"]["chosen"], real,
            "key {key}: explain says {}, the proxy used {real}",
            v["sticky"]["chosen"]
        );
        assert!(v["shadow"].is_null(), "{v}");
        chosen_sides.push(real);
    }
    assert!(
        chosen_sides.iter().any(|s| s == "new") && chosen_sides.iter().any(|s| s == "old"),
        "40 keys all on one side: {chosen_sides:?}"
    );

    // Without the header: the key is known, its value and side are not.
    let v = explain(&["GET", "http://test.local/api/users/7"]);
    assert_eq!(
        v["sticky"],
        json!({"key": "header:x-user-id", "value": null, "chosen": null}),
        "{v}"
    );

    // A mirrored method names the shadow and its sample; another does not.
    let v = explain(&["GET", "http://test.local/api/search?q=x"]);
    assert_eq!(v["shadow"], json!({"to": "shadow", "sample": 0.5}), "{v}");
    assert_eq!(v["upstreams"], json!([{"name": "old", "weight": 1}]));
    assert!(v["sticky"].is_null(), "{v}");
    let v = explain(&["POST", "http://test.local/api/search"]);
    assert_eq!(v["route"]["name"], "search", "{v}");
    assert!(v["shadow"].is_null(), "POST is not mirrored: {v}");
}

/// A client_ip sticky key: explain shows the address, not its bytes, and
/// names the side the proxy really uses for it, for v4 and v6 clients alike
/// (given to the proxy by X-Forwarded-For from a trusted peer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_a_client_ip_key_as_the_address_and_the_proxys_side() {
    let (new, old) = (Backend::start("new").await, Backend::start("old").await);
    let text = split_config(
        &new,
        &old,
        &split_route("by-ip", "/ip", 50, Some("client_ip")),
    )
    .replacen(
        "[admin]",
        "trusted_proxies = [\"127.0.0.1/32\"]\n[admin]",
        1,
    );
    let dir = tempdir::Dir::new();
    let path = dir.path().join("figway.toml");
    std::fs::write(&path, &text).unwrap();
    let path = path.to_str().unwrap().to_string();
    let f = Figway::start(&text).await;
    let mut conn = H1::connect(f.addr).await;
    let clients: Vec<String> = (1..=20)
        .map(|n| format!("10.0.0.{n}"))
        .chain((1..=20).map(|n| format!("2001:db8::{n:x}")))
        .collect();
    let mut chosen_sides = Vec::new();
    for client in &clients {
        let out = figway_bin(&[
            "explain",
            &path,
            "GET",
            "http://test.local/ip/x",
            "--client",
            client,
            "--json",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["sticky"]["value"], client.as_str(), "{v}");
        let real = side_of(&mut conn, "/ip/x", &[("x-forwarded-for", client)]).await;
        assert_eq!(
            v["sticky"]["chosen"], real,
            "client {client}: explain says {}, the proxy used {real}",
            v["sticky"]["chosen"]
        );
        chosen_sides.push(real);
    }
    assert!(
        chosen_sides.iter().any(|s| s == "new") && chosen_sides.iter().any(|s| s == "old"),
        "40 clients all on one side: {chosen_sides:?}"
    );
}

// === 14. validation ===

fn validation_base(routes: &str) -> String {
    format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n\
         [upstreams.new]\ntargets = [\"http://127.0.0.1:9001\"]\n\
         [upstreams.old]\nlegacy = true\ntargets = [\"http://127.0.0.1:9002\"]\n\
         [upstreams.shadow]\ntargets = [\"http://127.0.0.1:9003\"]\n{routes}"
    )
}

fn rejected(routes: &str) -> String {
    match figway::config::load_str(&validation_base(routes), Path::new("v.toml")) {
        Ok(_) => panic!("accepted:\n{routes}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn validation_rejects_what_split_sticky_and_shadow_forbid() {
    let ok = |routes: &str| {
        figway::config::load_str(&validation_base(routes), Path::new("v.toml"))
            .unwrap_or_else(|e| panic!("rejected:\n{routes}\n{e}"));
    };
    ok("[[routes]]\nprefix = \"/\"\nsplit = [{ to = \"new\", weight = 0 }, { to = \"old\", weight = 1 }]\n\
        sticky = \"cookie:uid\"\n[routes.shadow]\nto = \"shadow\"\nsample = 0.0\n");

    let cases: [(&str, &str, &str); 9] = [
        (
            "both to and split",
            "[[routes]]\nprefix = \"/\"\nto = \"old\"\nsplit = [{ to = \"new\", weight = 1 }]\n",
            "routes[0].split",
        ),
        (
            "neither to nor split",
            "[[routes]]\nprefix = \"/\"\n",
            "routes[0].to",
        ),
        (
            "all weights zero",
            "[[routes]]\nprefix = \"/\"\nsplit = [{ to = \"new\", weight = 0 }, { to = \"old\", weight = 0 }]\n",
            "routes[0].split",
        ),
        (
            "negative weight",
            "[[routes]]\nprefix = \"/\"\nsplit = [{ to = \"new\", weight = -1 }, { to = \"old\", weight = 90 }]\n",
            "routes[0].split[0].weight",
        ),
        (
            "fractional weight",
            "[[routes]]\nprefix = \"/\"\nsplit = [{ to = \"new\", weight = 0.5 }, { to = \"old\", weight = 90 }]\n",
            "routes[0].split[0].weight",
        ),
        (
            "sticky without split",
            "[[routes]]\nprefix = \"/\"\nto = \"old\"\nsticky = \"header:x-user-id\"\n",
            "routes[0].sticky",
        ),
        (
            "shadow at the route's own upstream",
            "[[routes]]\nprefix = \"/\"\nto = \"old\"\n[routes.shadow]\nto = \"old\"\n",
            "routes[0].shadow.to",
        ),
        (
            "shadow at a side of the route's split",
            "[[routes]]\nprefix = \"/\"\nsplit = [{ to = \"new\", weight = 1 }, { to = \"old\", weight = 9 }]\n\
             [routes.shadow]\nto = \"new\"\n",
            "routes[0].shadow.to",
        ),
        (
            "sample above 1",
            "[[routes]]\nprefix = \"/\"\nto = \"old\"\n[routes.shadow]\nto = \"shadow\"\nsample = 1.5\n",
            "routes[0].shadow.sample",
        ),
    ];
    for (what, routes, key) in cases {
        let e = rejected(routes);
        assert!(
            e.contains(&format!("{key}:")) && e.contains("v.toml:"),
            "{what}: expected an error at `{key}`, got:\n{e}"
        );
    }
}

#[test]
fn check_warns_about_a_zero_weight_side_and_a_zero_sample() {
    let dir = tempdir::Dir::new();
    let path = dir.path().join("figway.toml");
    std::fs::write(
        &path,
        validation_base(
            "[[routes]]\nname = \"users\"\nprefix = \"/users\"\n\
             split = [{ to = \"new\", weight = 0 }, { to = \"old\", weight = 100 }]\n\
             [[routes]]\nname = \"search\"\nprefix = \"/search\"\nto = \"old\"\n\
             [routes.shadow]\nto = \"shadow\"\nsample = 0\n",
        ),
    )
    .unwrap();
    let out = figway_bin(&["check", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("routes[0].split[0]") && w.contains("weight 0")),
        "no weight-0 warning: {warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("routes[1].shadow.sample")),
        "no sample-0 warning: {warnings:?}"
    );
}

// === 15. GET /routes ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_shows_split_sticky_and_shadow() {
    let (new, old) = (Backend::start("new").await, Backend::start("old").await);
    let shadow = Backend::start("shadow").await;
    let text = config(&format!(
        "[upstreams.new]\ntargets = [\"{}\"]\n\
         [upstreams.old]\nlegacy = true\ntargets = [\"{}\"]\n\
         [upstreams.shadow]\ntargets = [\"{}\"]\n\
         {}\
         [[routes]]\nname = \"search\"\nprefix = \"/api/search\"\nto = \"old\"\n\
         [routes.shadow]\nto = \"shadow\"\nsample = 0.25\ncompare = true\n",
        new.url(),
        old.url(),
        shadow.url(),
        split_route("users", "/api/users", 10, Some("header:x-user-id")),
    ));
    let f = Figway::start(&text).await;
    let a = get(f.admin, "/routes", &[]).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v: Value = serde_json::from_slice(&a.body).unwrap();
    let by_name = |name: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no route {name} in {v}"))
            .clone()
    };
    let users = by_name("users");
    assert_eq!(
        users["split"],
        json!([{"to": "new", "weight": 10}, {"to": "old", "weight": 90}]),
        "{users}"
    );
    assert!(users["to"].is_null(), "{users}");
    assert_eq!(users["sticky"], "header:x-user-id", "{users}");
    assert!(users["shadow"].is_null(), "{users}");
    let search = by_name("search");
    assert_eq!(search["to"], "old", "{search}");
    assert!(search["split"].is_null(), "{search}");
    assert!(search["sticky"].is_null(), "{search}");
    assert_eq!(
        search["shadow"],
        json!({"to": "shadow", "sample": 0.25, "compare": true}),
        "{search}"
    );
}

// === fallback of a canary split ===

/// A canary split may fall back to its own monolith side: while the new
/// service has no healthy target, its users are served by the monolith
/// rather than answered 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_split_falls_back_to_its_monolith_side() {
    let new = Backend::with(|seen| async move {
        let status = if seen.uri.path() == "/health" {
            503
        } else {
            200
        };
        Response::builder()
            .status(status)
            .header("x-backend", "new")
            .body(full("new"))
            .unwrap()
    })
    .await;
    let old = Backend::start("old").await;
    let f = Figway::start(&config(&format!(
        r#"
[upstreams.new]
targets = ["{}"]
[upstreams.new.health]
path = "/health"
interval = "50ms"
unhealthy_after = 1
[upstreams.old]
legacy = true
targets = ["{}"]
[[routes]]
name = "canary"
prefix = "/"
split = [{{ to = "new", weight = 50 }}, {{ to = "old", weight = 50 }}]
fallback = "old"
"#,
        new.url(),
        old.url()
    )))
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while f.shared.snapshot.load().upstreams[0].targets[0]
        .healthy
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        assert!(Instant::now() < deadline, "new never turned unhealthy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..40 {
        let a = get(f.addr, "/x", &[]).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.header("x-backend"), Some("old"));
    }
    let proxied = new
        .seen()
        .iter()
        .filter(|s| s.uri.path() != "/health")
        .count();
    assert_eq!(proxied, 0, "the unhealthy canary side got traffic");
}
