//! Load balancing and failure handling against real loopback upstreams
//! (SPEC §2 `balance`, `hash_key`, `retries`; SPEC §4 retries and error
//! kinds; issue 5): `least_request` steers traffic away from a slow target,
//! `hash` keeps every key on one target and moves only about 1/n of the keys
//! when a target is added, connect failures are retried for any method,
//! resets before the response head only for requests that are safe to repeat
//! and whose body was kept, never after a timeout, always on another target,
//! and never beyond the retry budget. Misbehaving upstreams are raw TCP
//! servers defined here that read a whole request and then reset, close or
//! go silent, counting what they read.

mod support;
use support::rogue::{Misbehaviour, Rogue};
use support::*;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};

// === helpers ===

/// One upstream `m` with the given target URLs and extra upstream keys, and
/// a catch-all route to it.
fn upstream_config(urls: &[String], extra: &str) -> String {
    let targets = urls
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    config(&format!(
        "[upstreams.m]\ntargets = [{targets}]\n{extra}\n[[routes]]\nname = \"all\"\nprefix = \"/\"\nto = \"m\"\n"
    ))
}

/// A backend answering 200 with `x-backend: name` after `delay`.
async fn named(name: &str, delay: Duration) -> Backend {
    let name = name.to_string();
    Backend::with(move |_| {
        let name = name.clone();
        async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Response::builder()
                .header("x-backend", name.as_str())
                .body(full(name))
                .unwrap()
        }
    })
    .await
}

/// `n` bytes that differ from position to position (and from `seed` to
/// `seed`), so a truncated, shifted or swapped body cannot pass for intact.
fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i % 251) as u8 ^ seed.wrapping_mul(31))
        .collect()
}

fn request(method: &str, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Request<TestBody> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "test.local");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(full(body)).unwrap()
}

/// The name of the backend that answered a GET with `headers` on `conn`.
async fn landed(conn: &mut H1, headers: &[(&str, &str)]) -> String {
    let answer = conn.send(request("GET", "/k", headers, Vec::new())).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    answer
        .header("x-backend")
        .expect("answer without x-backend")
        .to_string()
}

fn assert_error(answer: &Answer, status: StatusCode, kind: &str) {
    assert_eq!(answer.status, status, "body: {}", answer.text());
    assert_eq!(answer.header("x-figway-error"), Some(kind));
}

/// Sends the request `make` builds until one attempt reaches `rogue` (round
/// robin may start a request at the healthy target instead; such requests
/// must simply succeed there). Returns the answer of the request that reached
/// the rogue and how many requests `backend` received while it was served.
async fn until_rogue(
    addr: SocketAddr,
    rogue: &Rogue,
    backend: &Backend,
    make: impl Fn() -> Request<TestBody>,
) -> (Answer, usize) {
    for _ in 0..6 {
        let (rogue_before, backend_before) = (rogue.count(), backend.count());
        let answer = send(addr, make()).await;
        let (rogue_after, backend_after) = (rogue.count(), backend.count());
        if rogue_after > rogue_before {
            assert_eq!(
                rogue_after - rogue_before,
                1,
                "the misbehaving target read the request more than once"
            );
            return (answer, backend_after - backend_before);
        }
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        assert_eq!(backend_after - backend_before, 1);
    }
    panic!("six requests and none was sent to the misbehaving target first");
}

// === least_request ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_prefers_the_fast_target() {
    let slow = named("slow", Duration::from_millis(200)).await;
    let fast = named("fast", Duration::ZERO).await;
    let figway = Figway::start(&upstream_config(
        &[slow.url(), fast.url()],
        "balance = \"least_request\"",
    ))
    .await;

    let (clients, per_client) = (8, 25);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let addr = figway.addr;
        tasks.spawn(async move {
            let mut conn = H1::connect(addr).await;
            for _ in 0..per_client {
                landed(&mut conn, &[]).await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }

    let total = clients * per_client;
    assert_eq!(slow.count() + fast.count(), total);
    assert!(
        fast.count() * 100 > total * 75,
        "fast target got {} of {total} requests, slow {}",
        fast.count(),
        slow.count()
    );
}

// === hash ===

/// Which backend each of `keys` lands on, sending each `repeat` times and
/// asserting it lands on the same one every time.
async fn key_map(
    addr: SocketAddr,
    keys: &[String],
    repeat: usize,
    headers: impl Fn(&str) -> (&'static str, String),
) -> HashMap<String, String> {
    let mut conn = H1::connect(addr).await;
    let mut map = HashMap::new();
    for key in keys {
        let (name, value) = headers(key);
        let first = landed(&mut conn, &[(name, &value)]).await;
        for _ in 1..repeat {
            let again = landed(&mut conn, &[(name, &value)]).await;
            assert_eq!(again, first, "key {key} moved from {first} to {again}");
        }
        map.insert(key.clone(), first);
    }
    map
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_keeps_keys_on_one_target_and_moves_about_one_nth() {
    let backends = [
        named("t0", Duration::ZERO).await,
        named("t1", Duration::ZERO).await,
        named("t2", Duration::ZERO).await,
        named("t3", Duration::ZERO).await,
    ];
    let urls: Vec<String> = backends.iter().map(Backend::url).collect();
    let three = &urls[..3];
    let keys: Vec<String> = (0..200).map(|k| format!("user-{k}")).collect();
    let header = |k: &str| ("x-user-id", k.to_string());

    // header: every key sticks, and the keys spread over all three targets.
    let by_header = Figway::start(&upstream_config(
        three,
        "balance = \"hash\"\nhash_key = \"header:x-user-id\"",
    ))
    .await;
    let before = key_map(by_header.addr, &keys, 3, header).await;
    for name in ["t0", "t1", "t2"] {
        let share = before.values().filter(|t| *t == name).count();
        assert!(share >= 20, "{name} got only {share} of 200 keys");
    }

    // cookie: every key sticks, wherever it is among other cookies.
    let by_cookie = Figway::start(&upstream_config(
        three,
        "balance = \"hash\"\nhash_key = \"cookie:uid\"",
    ))
    .await;
    let cookies = key_map(by_cookie.addr, &keys, 3, |k| {
        ("cookie", format!("theme=dark; uid={k}; lang=en"))
    })
    .await;
    let distinct: std::collections::HashSet<&String> = cookies.values().collect();
    assert!(distinct.len() > 1, "every cookie key on one target");

    // client_ip: everything from 127.0.0.1 on one target, over new
    // connections (round robin would spread these over all three).
    let by_ip = Figway::start(&upstream_config(
        three,
        "balance = \"hash\"\nhash_key = \"client_ip\"",
    ))
    .await;
    let seen = targets_of_30_gets(by_ip.addr, "/ip").await;
    assert_eq!(seen.len(), 1, "client_ip requests spread over {seen:?}");

    // Adding a fourth target moves about a quarter of the keys, all of them
    // to the new target.
    let four = Figway::start(&upstream_config(
        &urls,
        "balance = \"hash\"\nhash_key = \"header:x-user-id\"",
    ))
    .await;
    let after = key_map(four.addr, &keys, 1, header).await;
    let moved: Vec<&String> = keys.iter().filter(|k| before[*k] != after[*k]).collect();
    for k in &moved {
        assert_eq!(
            after[*k], "t3",
            "key {k} moved from {} to {}, not to the new target",
            before[*k], after[*k]
        );
    }
    let percent = moved.len() * 100 / keys.len();
    assert!(
        (12..=40).contains(&percent),
        "{} of {} keys moved ({percent}%), expected about 25%",
        moved.len(),
        keys.len()
    );
}

/// A hash key may name a field figway sets itself: it is read from the
/// head as the upstream gets it, so `X-Forwarded-For` (the peer, for a
/// client that sent none) keeps one client on one target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_key_may_name_a_field_figway_sets() {
    let backends = [
        named("t0", Duration::ZERO).await,
        named("t1", Duration::ZERO).await,
        named("t2", Duration::ZERO).await,
    ];
    let urls: Vec<String> = backends.iter().map(Backend::url).collect();
    let f = Figway::start(&upstream_config(
        &urls,
        "balance = \"hash\"\nhash_key = \"header:x-forwarded-for\"",
    ))
    .await;
    let seen = targets_of_30_gets(f.addr, "/xff").await;
    assert_eq!(seen.len(), 1, "one client's requests spread over {seen:?}");
}

/// The targets (`x-backend`) that answered 30 plain GETs of `path`, each on
/// a new connection from 127.0.0.1.
async fn targets_of_30_gets(addr: SocketAddr, path: &str) -> std::collections::HashSet<String> {
    let mut seen = std::collections::HashSet::new();
    for _ in 0..30 {
        let answer = get(addr, path, &[]).await;
        assert_eq!(answer.status, StatusCode::OK);
        seen.insert(answer.header("x-backend").unwrap().to_string());
    }
    seen
}

// === retries ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_are_retried_for_get_and_post() {
    let dead = refused_port().await;
    let dead_url = format!("http://{dead}");

    // The port really refuses: alone, it is a connect error.
    let alone = Figway::start(&upstream_config(std::slice::from_ref(&dead_url), "")).await;
    assert_error(
        &get(alone.addr, "/", &[]).await,
        StatusCode::BAD_GATEWAY,
        "upstream_connect",
    );

    // Refusing target first, default `retries` (1). Round robin alternates,
    // so across several requests the dead target is tried first in many of
    // them; every one must still succeed via the live target.
    let live = named("live", Duration::ZERO).await;
    let figway = Figway::start(&upstream_config(&[dead_url, live.url()], "")).await;
    let rounds = 4u8;
    for i in 0..rounds {
        let answer = get(figway.addr, &format!("/get-{i}"), &[]).await;
        assert_eq!(answer.status, StatusCode::OK, "GET {i}: {}", answer.text());
        assert_eq!(answer.header("x-backend"), Some("live"));

        let body = pattern(10 * 1024, i);
        let answer = send(
            figway.addr,
            request("POST", &format!("/post-{i}"), &[], body.clone()),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "POST {i}: {}", answer.text());
        assert_eq!(answer.header("x-backend"), Some("live"));
    }

    // Each request arrived at the live target exactly once; POST bodies
    // intact.
    let seen = live.seen();
    assert_eq!(seen.len(), 2 * usize::from(rounds));
    for i in 0..rounds {
        let gets: Vec<&Seen> = seen
            .iter()
            .filter(|s| s.uri.path() == format!("/get-{i}"))
            .collect();
        assert_eq!(gets.len(), 1, "GET {i} arrived {} times", gets.len());
        assert_eq!(gets[0].method, http::Method::GET);

        let posts: Vec<&Seen> = seen
            .iter()
            .filter(|s| s.uri.path() == format!("/post-{i}"))
            .collect();
        assert_eq!(posts.len(), 1, "POST {i} arrived {} times", posts.len());
        assert_eq!(posts[0].method, http::Method::POST);
        assert_eq!(posts[0].body_len, 10 * 1024);
        assert!(
            posts[0].body == pattern(10 * 1024, i),
            "POST {i} body altered"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_after_reading_is_retried_only_when_safe() {
    let rogue = Rogue::start(Misbehaviour::Reset).await;
    let backend = named("good", Duration::ZERO).await;
    let figway = Figway::start(&upstream_config(&[rogue.url(), backend.url()], "")).await;
    let small = pattern(10 * 1024, 1);

    // POST without Idempotency-Key: sent once, never again.
    let (answer, at_backend) = until_rogue(figway.addr, &rogue, &backend, || {
        request("POST", "/no-key", &[], small.clone())
    })
    .await;
    assert_error(&answer, StatusCode::BAD_GATEWAY, "upstream_reset");
    assert_eq!(at_backend, 0, "a POST without Idempotency-Key was resent");
    assert_eq!(rogue.last().line, "POST /no-key");
    assert!(
        rogue.last().body == small,
        "the rogue read a different body"
    );

    // The same POST with Idempotency-Key: retried on the other target.
    let (answer, at_backend) = until_rogue(figway.addr, &rogue, &backend, || {
        request(
            "POST",
            "/keyed",
            &[("idempotency-key", "abc")],
            small.clone(),
        )
    })
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.header("x-backend"), Some("good"));
    assert_eq!(at_backend, 1);
    let last = backend.last();
    assert_eq!(last.method, http::Method::POST);
    assert_eq!(last.uri.path(), "/keyed");
    assert_eq!(
        last.headers.get("idempotency-key").map(|v| v.as_bytes()),
        Some(&b"abc"[..])
    );
    assert!(last.body == small, "retried POST body altered");

    // GET is idempotent: retried.
    let (answer, at_backend) = until_rogue(figway.addr, &rogue, &backend, || {
        request("GET", "/idempotent", &[], Vec::new())
    })
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(at_backend, 1);
    assert_eq!(backend.last().uri.path(), "/idempotent");

    // PUT is idempotent, but a 100 KiB body streams (more than the 64 KiB
    // kept for a replay): not retried.
    let big = pattern(100 * 1024, 2);
    let (answer, at_backend) = until_rogue(figway.addr, &rogue, &backend, || {
        request("PUT", "/big", &[], big.clone())
    })
    .await;
    assert_error(&answer, StatusCode::BAD_GATEWAY, "upstream_reset");
    assert_eq!(at_backend, 0, "a streamed PUT was resent");
    assert_eq!(rogue.last().line, "PUT /big");
    assert!(rogue.last().body == big, "the rogue read a different body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_retried_after_a_timeout() {
    let silent = Rogue::start(Misbehaviour::Silent).await;
    let backend = named("good", Duration::ZERO).await;
    let figway = Figway::start(&upstream_config(
        &[silent.url(), backend.url()],
        "request_timeout = \"300ms\"\nretries = 1",
    ))
    .await;

    let started = Instant::now();
    let (answer, at_backend) = until_rogue(figway.addr, &silent, &backend, || {
        request("GET", "/slow", &[], Vec::new())
    })
    .await;
    assert_error(&answer, StatusCode::GATEWAY_TIMEOUT, "upstream_timeout");
    assert_eq!(at_backend, 0, "a timed-out request was retried");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(silent.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_budget_stops_a_retry_storm() {
    let a = Rogue::start(Misbehaviour::Reset).await;
    let b = Rogue::start(Misbehaviour::Close).await;
    let figway = Figway::start(&upstream_config(&[a.url(), b.url()], "retries = 1")).await;

    let requests = 200usize;
    let started = Instant::now();
    let mut conn = H1::connect(figway.addr).await;
    for i in 0..requests {
        let answer = conn
            .send(request("GET", &format!("/storm-{i}"), &[], Vec::new()))
            .await;
        assert_error(&answer, StatusCode::BAD_GATEWAY, "upstream_reset");
    }
    let elapsed = started.elapsed();

    // Budget: 20% of first attempts plus a floor of 10 per 10 s. Without it
    // every request would be tried twice (400 attempts).
    let attempts = a.count() + b.count();
    let ceiling = requests + requests / 5 + 10 + 5;
    assert!(
        attempts <= ceiling,
        "{attempts} attempts for {requests} requests in {elapsed:?} (at most {ceiling})"
    );
    // Every request was tried once, and the budget did allow some retries.
    assert!(
        attempts >= requests + 10,
        "{attempts} attempts for {requests} requests: retries never happened"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_go_to_another_target_never_the_same() {
    let a = Rogue::start(Misbehaviour::Reset).await;
    let b = Rogue::start(Misbehaviour::Close).await;
    let figway = Figway::start(&upstream_config(&[a.url(), b.url()], "retries = 3")).await;

    let answer = get(figway.addr, "/twice", &[]).await;
    assert_error(&answer, StatusCode::BAD_GATEWAY, "upstream_reset");
    assert_eq!(
        (a.count(), b.count()),
        (1, 1),
        "with 2 targets and retries = 3, each target is tried exactly once"
    );
}
