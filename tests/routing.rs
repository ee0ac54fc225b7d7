//! Routing, end to end (SPEC §3, and the parts of §4 that decide where a
//! request goes): figway runs for real on port 0 in front of recording
//! backends, and every test asserts both on what the chosen backend actually
//! received (method, path and query, headers) and on what the client got back.
//! Covered: longest prefix on segment boundaries, host precedence (exact,
//! wildcard, none; case and port ignored), methods and their fall-through,
//! path normalisation (dot segments, percent-encoded unreserved characters,
//! `%2F` kept, climbing above the root refused), the query passed unchanged,
//! `strip_prefix` and `rewrite_prefix`, `no_route`, h2c and absolute-form
//! requests routed by their authority, and a 10,000-route table.

mod support;
use support::*;

use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, Request};

// === helpers ===

/// `[upstreams.NAME]` pointing at one backend.
fn upstream(name: &str, b: &Backend) -> String {
    format!("[upstreams.{name}]\ntargets = [\"{}\"]\n", b.url())
}

/// A `[[routes]]` entry; `extra` is more TOML lines (host, methods, ...).
fn route(name: &str, prefix: &str, to: &str, extra: &str) -> String {
    format!("[[routes]]\nname = \"{name}\"\nprefix = \"{prefix}\"\nto = \"{to}\"\n{extra}\n")
}

/// One request over HTTP/1.1 with exactly one `Host` header.
async fn call(addr: SocketAddr, method: &str, target: &str, host: &str) -> Answer {
    let req = Request::builder()
        .method(method)
        .uri(target)
        .header("host", host)
        .body(full(""))
        .unwrap();
    send(addr, req).await
}

async fn get_host(addr: SocketAddr, target: &str, host: &str) -> Answer {
    call(addr, "GET", target, host).await
}

/// What the backend saw as the request target, as it appeared on the wire
/// (origin-form: path and query).
fn target_of(s: &Seen) -> String {
    s.uri.to_string()
}

fn host_of(s: &Seen) -> String {
    s.headers
        .get("host")
        .map(|h| h.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// Asserts the answer came from backend `name` (Backend::start answers with
/// its name as body and `x-backend`).
#[track_caller]
fn assert_from(a: &Answer, name: &str) {
    assert_eq!(a.status, 200, "answer: {a:?}");
    assert_eq!(a.header("x-backend"), Some(name), "answer: {a:?}");
    assert_eq!(a.text(), name);
}

/// A response read off a raw connection.
#[derive(Debug)]
struct RawAnswer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl RawAnswer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `METHOD target HTTP/1.1` byte for byte (no client-side
/// normalisation of the target), with `Connection: close`, and parses the
/// answer.
async fn raw_request(addr: SocketAddr, method: &str, target: &str, host: &str) -> RawAnswer {
    let bytes = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let out = raw(addr, bytes.as_bytes(), Duration::from_secs(5)).await;
    let (head, body) = out
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete response head in {out:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    RawAnswer {
        status,
        headers,
        body: body.to_string(),
    }
}

// === prefixes ===

#[tokio::test]
async fn longest_prefix_wins() {
    let root = Backend::start("root").await;
    let api = Backend::start("api").await;
    let orders = Backend::start("orders").await;
    let f = Figway::start(&config(&format!(
        "{}{}{}{}{}{}",
        upstream("root", &root),
        upstream("api", &api),
        upstream("orders", &orders),
        // Deliberately not in prefix order: config order must not matter.
        route("orders", "/api/orders", "orders", ""),
        route("root", "/", "root", ""),
        route("api", "/api", "api", ""),
    )))
    .await;

    let a = get_host(f.addr, "/api/orders/42", "test.local").await;
    assert_from(&a, "orders");
    assert_eq!(target_of(&orders.last()), "/api/orders/42");
    assert_eq!(orders.last().method, Method::GET);

    let a = get_host(f.addr, "/api/users/1", "test.local").await;
    assert_from(&a, "api");
    assert_eq!(target_of(&api.last()), "/api/users/1");

    let a = get_host(f.addr, "/static/app.js", "test.local").await;
    assert_from(&a, "root");
    assert_eq!(target_of(&root.last()), "/static/app.js");

    let a = get_host(f.addr, "/", "test.local").await;
    assert_from(&a, "root");
    assert_eq!(target_of(&root.last()), "/");

    assert_eq!(
        (root.count(), api.count(), orders.count()),
        (2, 1, 1),
        "each request reached exactly one backend"
    );
}

#[tokio::test]
async fn prefix_matches_on_segment_boundaries() {
    let root = Backend::start("root").await;
    let api = Backend::start("api").await;
    let orders = Backend::start("orders").await;
    let f = Figway::start(&config(&format!(
        "{}{}{}{}{}{}",
        upstream("root", &root),
        upstream("api", &api),
        upstream("orders", &orders),
        route("root", "/", "root", ""),
        route("api", "/api", "api", ""),
        route("orders", "/api/orders", "orders", ""),
    )))
    .await;

    for path in ["/api/orders", "/api/orders/", "/api/orders/42"] {
        let a = get_host(f.addr, path, "test.local").await;
        assert_from(&a, "orders");
        assert_eq!(target_of(&orders.last()), path);
    }
    assert_eq!(orders.count(), 3);

    let a = get_host(f.addr, "/api/ordersx", "test.local").await;
    assert_from(&a, "api");
    assert_eq!(target_of(&api.last()), "/api/ordersx");

    let a = get_host(f.addr, "/apix/orders", "test.local").await;
    assert_from(&a, "root");
    assert_eq!(target_of(&root.last()), "/apix/orders");

    assert_eq!(orders.count(), 3, "/api/ordersx must not reach orders");
}

// === hosts ===

#[tokio::test]
async fn exact_host_beats_wildcard_beats_no_host() {
    let exact = Backend::start("exact").await;
    let wild = Backend::start("wild").await;
    let any = Backend::start("any").await;
    let f = Figway::start(&config(&format!(
        "{}{}{}{}{}{}",
        upstream("exact", &exact),
        upstream("wild", &wild),
        upstream("any", &any),
        // The least specific first: precedence must not come from order.
        route("any", "/api", "any", ""),
        route("wild", "/api", "wild", "host = \"*.example.com\""),
        route("exact", "/api", "exact", "host = \"shop.example.com\""),
    )))
    .await;

    let a = get_host(f.addr, "/api/x", "shop.example.com").await;
    assert_from(&a, "exact");
    assert_eq!(target_of(&exact.last()), "/api/x");
    assert_eq!(host_of(&exact.last()), "shop.example.com");

    let a = get_host(f.addr, "/api/x", "blog.example.com").await;
    assert_from(&a, "wild");
    assert_eq!(host_of(&wild.last()), "blog.example.com");

    let a = get_host(f.addr, "/api/x", "other.test").await;
    assert_from(&a, "any");
    assert_eq!(host_of(&any.last()), "other.test");

    assert_eq!((exact.count(), wild.count(), any.count()), (1, 1, 1));
}

#[tokio::test]
async fn wildcard_host_matches_any_depth_but_not_the_bare_domain() {
    let wild = Backend::start("wild").await;
    let any = Backend::start("any").await;
    let f = Figway::start(&config(&format!(
        "{}{}{}{}",
        upstream("wild", &wild),
        upstream("any", &any),
        route("wild", "/", "wild", "host = \"*.example.com\""),
        route("any", "/", "any", ""),
    )))
    .await;

    let a = get_host(f.addr, "/p", "a.example.com").await;
    assert_from(&a, "wild");
    assert_eq!(host_of(&wild.last()), "a.example.com");

    let a = get_host(f.addr, "/p", "a.b.example.com").await;
    assert_from(&a, "wild");
    assert_eq!(host_of(&wild.last()), "a.b.example.com");

    let a = get_host(f.addr, "/p", "example.com").await;
    assert_from(&a, "any");
    assert_eq!(host_of(&any.last()), "example.com");

    // A suffix match is by whole labels, not by string.
    let a = get_host(f.addr, "/p", "badexample.com").await;
    assert_from(&a, "any");

    assert_eq!((wild.count(), any.count()), (2, 2));
}

#[tokio::test]
async fn host_is_case_insensitive_and_port_is_ignored() {
    let shop = Backend::start("shop").await;
    let wild = Backend::start("wild").await;
    let any = Backend::start("any").await;
    let f = Figway::start(&config(&format!(
        "{}{}{}{}{}{}",
        upstream("shop", &shop),
        upstream("wild", &wild),
        upstream("any", &any),
        route("shop", "/", "shop", "host = \"shop.example.com\""),
        // Config hosts are case-insensitive too.
        route("wild", "/", "wild", "host = \"*.Example.ORG\""),
        route("any", "/", "any", ""),
    )))
    .await;

    let a = get_host(f.addr, "/cart", "SHOP.example.com:8080").await;
    assert_from(&a, "shop");
    assert_eq!(target_of(&shop.last()), "/cart");
    // Host passes through as the client sent it.
    assert_eq!(host_of(&shop.last()), "SHOP.example.com:8080");

    let a = get_host(f.addr, "/cart", "Shop.Example.Com").await;
    assert_from(&a, "shop");

    let a = get_host(f.addr, "/cart", "shop.example.com:443").await;
    assert_from(&a, "shop");

    let a = get_host(f.addr, "/cart", "WWW.example.org:8443").await;
    assert_from(&a, "wild");

    let a = get_host(f.addr, "/cart", "shop.example.net:8080").await;
    assert_from(&a, "any");

    assert_eq!((shop.count(), wild.count(), any.count()), (3, 1, 1));
}

#[tokio::test]
async fn longer_prefix_without_host_beats_shorter_prefix_with_host() {
    let shop = Backend::start("shop").await;
    let api = Backend::start("api").await;
    let f = Figway::start(&config(&format!(
        "{}{}{}{}",
        upstream("shop", &shop),
        upstream("api", &api),
        route("shop", "/", "shop", "host = \"shop.example.com\""),
        route("api", "/api", "api", ""),
    )))
    .await;

    let a = get_host(f.addr, "/api/x", "shop.example.com").await;
    assert_from(&a, "api");
    assert_eq!(target_of(&api.last()), "/api/x");
    assert_eq!(host_of(&api.last()), "shop.example.com");

    let a = get_host(f.addr, "/home", "shop.example.com").await;
    assert_from(&a, "shop");
    assert_eq!(target_of(&shop.last()), "/home");

    assert_eq!((shop.count(), api.count()), (1, 1));
}

// === methods ===

#[tokio::test]
async fn methods_route_takes_its_methods_and_others_fall_through() {
    let root = Backend::start("root").await;
    let api = Backend::start("api").await;
    let users = Backend::start("users").await;
    let f = Figway::start(&config(&format!(
        "{}{}{}{}{}{}",
        upstream("root", &root),
        upstream("api", &api),
        upstream("users", &users),
        route("root", "/", "root", ""),
        route("api", "/api", "api", ""),
        route(
            "users",
            "/api/users",
            "users",
            "methods = [\"GET\", \"HEAD\"]"
        ),
    )))
    .await;

    let a = get_host(f.addr, "/api/users/1", "test.local").await;
    assert_from(&a, "users");
    assert_eq!(users.last().method, Method::GET);
    assert_eq!(target_of(&users.last()), "/api/users/1");

    let a = call(f.addr, "HEAD", "/api/users/1", "test.local").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-backend"), Some("users"));
    assert!(a.body.is_empty(), "HEAD answer has no body");
    assert_eq!(users.last().method, Method::HEAD);
    assert_eq!(users.count(), 2);

    // POST is not listed: falls through to the next-longest match, /api.
    let req = Request::post("/api/users/1?x=1")
        .header("host", "test.local")
        .header("content-type", "application/json")
        .body(full("{\"name\":\"ann\"}"))
        .unwrap();
    let a = send(f.addr, req).await;
    assert_from(&a, "api");
    let seen = api.last();
    assert_eq!(seen.method, Method::POST);
    assert_eq!(target_of(&seen), "/api/users/1?x=1");
    assert_eq!(seen.headers["content-type"], "application/json");
    assert_eq!(&seen.body[..], b"{\"name\":\"ann\"}");

    let a = call(f.addr, "DELETE", "/api/users/1", "test.local").await;
    assert_from(&a, "api");
    assert_eq!(api.last().method, Method::DELETE);

    assert_eq!((root.count(), api.count(), users.count()), (0, 2, 2));
}

#[tokio::test]
async fn route_listing_methods_beats_one_without_at_same_prefix() {
    let any = Backend::start("any").await;
    let get_only = Backend::start("get_only").await;
    let root = Backend::start("root").await;
    let shop = Backend::start("shop").await;
    let f = Figway::start(&config(&format!(
        "{}{}{}{}{}{}{}{}{}",
        upstream("any", &any),
        upstream("get_only", &get_only),
        upstream("root", &root),
        upstream("shop", &shop),
        // The route without methods comes first in the config.
        route("orders_any", "/api/orders", "any", ""),
        route(
            "orders_get",
            "/api/orders",
            "get_only",
            "methods = [\"GET\"]"
        ),
        route("root", "/", "root", ""),
        // Host specificity decides before methods do.
        route("x_get", "/x", "get_only", "methods = [\"GET\"]"),
        route("x_shop", "/x", "shop", "host = \"shop.example.com\""),
    )))
    .await;

    let a = get_host(f.addr, "/api/orders/1", "test.local").await;
    assert_from(&a, "get_only");
    assert_eq!(target_of(&get_only.last()), "/api/orders/1");

    let a = call(f.addr, "PUT", "/api/orders/1", "test.local").await;
    assert_from(&a, "any");
    assert_eq!(any.last().method, Method::PUT);
    assert_eq!(target_of(&any.last()), "/api/orders/1");

    let a = get_host(f.addr, "/x/1", "shop.example.com").await;
    assert_from(&a, "shop");
    assert_eq!(target_of(&shop.last()), "/x/1");

    let a = get_host(f.addr, "/x/1", "other.example.com").await;
    assert_from(&a, "get_only");
    assert_eq!(target_of(&get_only.last()), "/x/1");

    let a = call(f.addr, "POST", "/x/1", "other.example.com").await;
    assert_from(&a, "root");
    assert_eq!(root.last().method, Method::POST);

    assert_eq!(
        (any.count(), get_only.count(), root.count(), shop.count()),
        (1, 2, 1, 1)
    );
}

// === normalisation ===

#[tokio::test]
async fn dot_segments_are_removed_before_routing_and_forwarded_normalised() {
    let orders = Backend::start("orders").await;
    let users = Backend::start("users").await;
    let root = Backend::start("root").await;
    let f = Figway::start(&config(&format!(
        "{}{}{}{}{}{}",
        upstream("orders", &orders),
        upstream("users", &users),
        upstream("root", &root),
        route("orders", "/api/orders", "orders", ""),
        route("users", "/api/users", "users", ""),
        route("root", "/", "root", ""),
    )))
    .await;

    // Raw bytes: the target reaches figway exactly as written.
    let a = raw_request(f.addr, "GET", "/api/orders/../users/1", "test.local").await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("x-backend"), Some("users"));
    assert_eq!(target_of(&users.last()), "/api/users/1");

    let a = raw_request(f.addr, "GET", "/api/./orders/./42?q=./..", "test.local").await;
    assert_eq!(a.header("x-backend"), Some("orders"), "{a:?}");
    assert_eq!(target_of(&orders.last()), "/api/orders/42?q=./..");

    // hyper's client sends the target as given too (http::Uri keeps dots).
    let a = get_host(f.addr, "/api/users/x/../2", "test.local").await;
    assert_from(&a, "users");
    assert_eq!(target_of(&users.last()), "/api/users/2");

    assert_eq!((orders.count(), users.count(), root.count()), (1, 2, 0));
}

#[tokio::test]
async fn percent_encoded_unreserved_characters_are_decoded() {
    let users = Backend::start("users").await;
    let root = Backend::start("root").await;
    let f = Figway::start(&config(&format!(
        "{}{}{}{}",
        upstream("users", &users),
        upstream("root", &root),
        route("users", "/api/users", "users", ""),
        route("root", "/", "root", ""),
    )))
    .await;

    let a = get_host(f.addr, "/%61pi/users/1", "test.local").await;
    assert_from(&a, "users");
    assert_eq!(target_of(&users.last()), "/api/users/1");

    let a = get_host(f.addr, "/api/%75%73%65%72%73/%7ean", "test.local").await;
    assert_from(&a, "users");
    assert_eq!(target_of(&users.last()), "/api/users/~an");

    // %2e%2e is `..` once decoded, and then removed as a dot segment.
    let a = raw_request(f.addr, "GET", "/api/x/%2e%2e/users/3", "test.local").await;
    assert_eq!(a.header("x-backend"), Some("users"), "{a:?}");
    assert_eq!(target_of(&users.last()), "/api/users/3");

    assert_eq!((users.count(), root.count()), (3, 0));
}

#[tokio::test]
async fn climbing_above_the_root_is_bad_request() {
    let root = Backend::start("root").await;
    let f = Figway::start(&config(&format!(
        "{}{}",
        upstream("root", &root),
        route("root", "/", "root", ""),
    )))
    .await;

    for target in [
        "/../etc",
        "/api/%2e%2e/%2e%2e/x",
        "/..",
        "/a/../../b",
        "/%2E%2E/etc/passwd",
    ] {
        let a = raw_request(f.addr, "GET", target, "test.local").await;
        assert_eq!(a.status, 400, "{target}: {a:?}");
        assert_eq!(
            a.header("x-figway-error"),
            Some("bad_request"),
            "{target}: {a:?}"
        );
        assert!(!a.body.is_empty(), "a short text body: {a:?}");
    }
    assert_eq!(root.count(), 0, "nothing above the root reaches a backend");

    // The same connection kind still works for a sane path.
    let a = raw_request(f.addr, "GET", "/etc", "test.local").await;
    assert_eq!(a.status, 200);
    assert_eq!(target_of(&root.last()), "/etc");
}

#[tokio::test]
async fn encoded_slash_stays_encoded_and_does_not_split_a_segment() {
    let orders = Backend::start("orders").await;
    let api = Backend::start("api").await;
    let root = Backend::start("root").await;
    let f = Figway::start(&config(&format!(
        "{}{}{}{}{}{}",
        upstream("orders", &orders),
        upstream("api", &api),
        upstream("root", &root),
        route("orders", "/api/orders", "orders", ""),
        route("api", "/api", "api", ""),
        route("root", "/", "root", ""),
    )))
    .await;

    let a = get_host(f.addr, "/api%2Forders", "test.local").await;
    assert_from(&a, "root");
    assert_eq!(target_of(&root.last()), "/api%2Forders");

    let a = get_host(f.addr, "/api/orders%2F42", "test.local").await;
    assert_from(&a, "api");
    assert_eq!(target_of(&api.last()), "/api/orders%2F42");

    // Lower-case escape: still one segment, still encoded (hex case may be
    // normalised, the byte may not be decoded).
    let a = get_host(f.addr, "/api%2forders/1", "test.local").await;
    assert_from(&a, "root");
    assert!(
        target_of(&root.last()).eq_ignore_ascii_case("/api%2forders/1"),
        "got {}",
        target_of(&root.last())
    );

    // Dots between encoded slashes are not dot segments.
    let a = raw_request(f.addr, "GET", "/api/orders/a%2F..%2F..%2Fb", "test.local").await;
    assert_eq!(a.header("x-backend"), Some("orders"), "{a:?}");
    assert_eq!(target_of(&orders.last()), "/api/orders/a%2F..%2F..%2Fb");

    assert_eq!((orders.count(), api.count(), root.count()), (1, 1, 2));
}

#[tokio::test]
async fn query_string_is_forwarded_unchanged() {
    let api = Backend::start("api").await;
    let f = Figway::start(&config(&format!(
        "{}{}",
        upstream("api", &api),
        route("api", "/api", "api", ""),
    )))
    .await;

    for target in [
        "/api/x?a=1&b=%2F&c",
        "/api/x?%61=%2e%2e&next=/a/../b&sp=a+b&e=%7E",
        "/api/x?q=a?b=c&&=",
        "/api/x?",
    ] {
        let a = get_host(f.addr, target, "test.local").await;
        assert_from(&a, "api");
        assert_eq!(target_of(&api.last()), target);
    }

    // The path is normalised, the query is not.
    let a = raw_request(f.addr, "GET", "/api/./y/../x?p=%2e/../%2F", "test.local").await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(target_of(&api.last()), "/api/x?p=%2e/../%2F");
    assert_eq!(api.count(), 5);
}

// === strip and rewrite ===

#[tokio::test]
async fn strip_prefix_removes_the_prefix() {
    let users = Backend::start("users").await;
    let f = Figway::start(&config(&format!(
        "{}{}",
        upstream("users", &users),
        route("users", "/api/users", "users", "strip_prefix = true"),
    )))
    .await;

    for (sent, forwarded) in [
        ("/api/users/7", "/7"),
        ("/api/users", "/"),
        ("/api/users/", "/"),
        ("/api/users/7/orders?x=1&y=%2F", "/7/orders?x=1&y=%2F"),
        ("/api/users?x=1", "/?x=1"),
    ] {
        let a = get_host(f.addr, sent, "test.local").await;
        assert_from(&a, "users");
        assert_eq!(target_of(&users.last()), forwarded, "for {sent}");
    }
    assert_eq!(users.count(), 5);
}

#[tokio::test]
async fn rewrite_prefix_replaces_the_prefix() {
    let users = Backend::start("users").await;
    let f = Figway::start(&config(&format!(
        "{}{}",
        upstream("users", &users),
        route(
            "users",
            "/api/users",
            "users",
            "rewrite_prefix = \"/v2/users\""
        ),
    )))
    .await;

    for (sent, forwarded) in [
        ("/api/users/7", "/v2/users/7"),
        ("/api/users", "/v2/users"),
        ("/api/users/", "/v2/users/"),
        ("/api/users/7?q=%2F&r", "/v2/users/7?q=%2F&r"),
    ] {
        let a = get_host(f.addr, sent, "test.local").await;
        assert_from(&a, "users");
        assert_eq!(target_of(&users.last()), forwarded, "for {sent}");
    }
    assert_eq!(users.count(), 4);
}

#[tokio::test]
async fn rewrite_prefix_with_trailing_slash_does_not_double_slashes() {
    let v2 = Backend::start("v2").await;
    let root = Backend::start("root").await;
    let f = Figway::start(&config(&format!(
        "{}{}{}{}",
        upstream("v2", &v2),
        upstream("root", &root),
        route("items", "/api/items", "v2", "rewrite_prefix = \"/v2/\""),
        route("root", "/old", "root", "rewrite_prefix = \"/\""),
    )))
    .await;

    let a = get_host(f.addr, "/api/items/7", "test.local").await;
    assert_from(&a, "v2");
    assert_eq!(target_of(&v2.last()), "/v2/7");

    let a = get_host(f.addr, "/api/items/7/parts?x=1", "test.local").await;
    assert_from(&a, "v2");
    assert_eq!(target_of(&v2.last()), "/v2/7/parts?x=1");

    for sent in ["/api/items", "/api/items/"] {
        let a = get_host(f.addr, sent, "test.local").await;
        assert_from(&a, "v2");
        let t = target_of(&v2.last());
        assert!(
            t == "/v2/" || t == "/v2",
            "{sent} forwarded as {t}, expected /v2/"
        );
    }

    // Rewriting to the root: `/` + `/7` is `/7`.
    let a = get_host(f.addr, "/old/7", "test.local").await;
    assert_from(&a, "root");
    assert_eq!(target_of(&root.last()), "/7");
    let a = get_host(f.addr, "/old", "test.local").await;
    assert_from(&a, "root");
    assert_eq!(target_of(&root.last()), "/");

    assert_eq!((v2.count(), root.count()), (4, 2));
}

// === no route ===

#[tokio::test]
async fn no_route_is_404_and_no_backend_is_contacted() {
    let api = Backend::start("api").await;
    let shop = Backend::start("shop").await;
    let f = Figway::start(&config(&format!(
        "{}{}{}{}{}",
        upstream("api", &api),
        upstream("shop", &shop),
        route("api", "/api", "api", "methods = [\"GET\"]"),
        route("shop", "/shop", "shop", "host = \"shop.example.com\""),
        route("shop_wild", "/wild", "shop", "host = \"*.example.com\""),
    )))
    .await;

    for (method, target, host) in [
        ("GET", "/", "test.local"),
        ("GET", "/apiary", "test.local"),
        ("GET", "/other/api", "test.local"),
        ("POST", "/api/x", "test.local"),
        ("GET", "/shop/cart", "other.example.com"),
        ("GET", "/wild/x", "example.com"),
    ] {
        let a = call(f.addr, method, target, host).await;
        assert_eq!(a.status, 404, "{method} {target} host {host}: {a:?}");
        assert_eq!(a.header("x-figway-error"), Some("no_route"));
        assert!(a.header("x-backend").is_none());
    }
    assert_eq!(api.count(), 0);
    assert_eq!(shop.count(), 0);

    // And the routes themselves do work.
    assert_from(&get_host(f.addr, "/api/x", "test.local").await, "api");
    assert_from(
        &get_host(f.addr, "/shop/cart", "shop.example.com").await,
        "shop",
    );
}

// === HTTP/2 and absolute-form ===

#[tokio::test]
async fn h2c_request_is_routed_by_its_authority() {
    let shop = Backend::start("shop").await;
    let mono = Backend::start("mono").await;
    let f = Figway::start(&config(&format!(
        "{}{}{}{}",
        upstream("shop", &shop),
        upstream("mono", &mono),
        route("shop", "/api", "shop", "host = \"shop.example.com\""),
        route("mono", "/", "mono", ""),
    )))
    .await;

    let req = Request::get("http://shop.example.com/api/x?q=1")
        .body(full(""))
        .unwrap();
    let a = send_h2(f.addr, req).await;
    assert_from(&a, "shop");
    let seen = shop.last();
    assert_eq!(seen.method, Method::GET);
    // The HTTP/1.1 upstream gets origin-form and a Host header.
    assert_eq!(target_of(&seen), "/api/x?q=1");
    assert_eq!(host_of(&seen), "shop.example.com");
    assert_eq!(seen.headers.get_all("host").iter().count(), 1);

    let req = Request::get("http://other.example.com/api/x")
        .body(full(""))
        .unwrap();
    let a = send_h2(f.addr, req).await;
    assert_from(&a, "mono");
    assert_eq!(target_of(&mono.last()), "/api/x");
    assert_eq!(host_of(&mono.last()), "other.example.com");

    // :authority compares like Host: case and port do not matter.
    let req = Request::get("http://SHOP.Example.com:8080/api/z")
        .body(full(""))
        .unwrap();
    let a = send_h2(f.addr, req).await;
    assert_from(&a, "shop");
    assert_eq!(target_of(&shop.last()), "/api/z");
    assert!(host_of(&shop.last()).eq_ignore_ascii_case("shop.example.com:8080"));

    assert_eq!((shop.count(), mono.count()), (2, 1));
}

#[tokio::test]
async fn absolute_form_is_routed_by_path_and_host_never_to_the_named_host() {
    let shop = Backend::start("shop").await;
    let mono = Backend::start("mono").await;
    // Listening, but in no route: an absolute-form target naming it must not
    // make figway act as a forward proxy towards it.
    let bystander = Backend::start("bystander").await;
    let f = Figway::start(&config(&format!(
        "{}{}{}{}",
        upstream("shop", &shop),
        upstream("mono", &mono),
        route("shop", "/api", "shop", "host = \"shop.example.com\""),
        route("mono", "/", "mono", ""),
    )))
    .await;

    let a = raw_request(
        f.addr,
        "GET",
        "http://shop.example.com/api/x?q=1",
        "shop.example.com",
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("x-backend"), Some("shop"));
    let seen = shop.last();
    assert_eq!(target_of(&seen), "/api/x?q=1", "origin-form upstream");
    assert_eq!(host_of(&seen), "shop.example.com");

    let named = bystander.addr.to_string();
    let a = raw_request(f.addr, "GET", &format!("http://{named}/api/x"), &named).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("x-backend"), Some("mono"));
    assert_eq!(target_of(&mono.last()), "/api/x");
    assert_eq!(bystander.count(), 0, "never forwarded to the named host");

    assert_eq!((shop.count(), mono.count()), (1, 1));
}

/// RFC 9112 §3.2.2: for an absolute-form target the Host header is ignored
/// and a proxy forwarding it must generate Host from the target. figway
/// routes by the target's authority, so the upstream must see that same
/// host, not the one in the header, or routing and upstream disagree.
#[tokio::test]
async fn absolute_form_routes_by_authority_and_forwards_it_as_host() {
    let shop = Backend::start("shop").await;
    let mono = Backend::start("mono").await;
    let f = Figway::start(&config(&format!(
        "{}{}{}{}",
        upstream("shop", &shop),
        upstream("mono", &mono),
        route("shop", "/api", "shop", "host = \"shop.example.com\""),
        route("mono", "/", "mono", ""),
    )))
    .await;

    let a = raw_request(
        f.addr,
        "GET",
        "http://shop.example.com/api/y",
        "elsewhere.test",
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        a.header("x-backend"),
        Some("shop"),
        "routed by the authority"
    );
    let seen = shop.last();
    assert_eq!(target_of(&seen), "/api/y");
    assert_eq!(
        host_of(&seen),
        "shop.example.com",
        "upstream Host must be the host the request was routed by"
    );
    assert_eq!(mono.count(), 0);
}

// === scale ===

#[tokio::test]
async fn ten_thousand_routes_still_route_correctly() {
    let backends = [
        Backend::start("u0").await,
        Backend::start("u1").await,
        Backend::start("u2").await,
    ];
    let mono = Backend::start("mono").await;
    let shop = Backend::start("shop").await;
    let mut body = String::new();
    for (i, b) in backends.iter().enumerate() {
        body.push_str(&upstream(&format!("u{i}"), b));
    }
    body.push_str(&upstream("mono", &mono));
    body.push_str(&upstream("shop", &shop));
    // 9,998 generated routes, a host route and a catch-all: 10,000.
    const N: usize = 9_998;
    for i in 0..N {
        let extra = if i % 2 == 1 {
            "strip_prefix = true"
        } else {
            ""
        };
        body.push_str(&route(
            &format!("r{i}"),
            &format!("/t{i}/x"),
            &format!("u{}", i % 3),
            extra,
        ));
    }
    body.push_str(&route(
        "shop7",
        "/t7/x",
        "shop",
        "host = \"shop.example.com\"",
    ));
    body.push_str(&route("mono", "/", "mono", ""));
    let f = Figway::start(&config(&body)).await;
    assert_eq!(f.shared.snapshot.load().routes.len(), 10_000);

    for (i, rest) in [
        (0usize, "/a"),
        (1, "/b?c=1"),
        (4_242, ""),
        (5_003, "/q?z=%2F"),
        (N - 1, "/deep/er"),
    ] {
        let sent = format!("/t{i}/x{rest}");
        let a = get_host(f.addr, &sent, "test.local").await;
        let b = &backends[i % 3];
        assert_from(&a, &format!("u{}", i % 3));
        let expected = if i % 2 == 1 {
            if rest.is_empty() || rest.starts_with('?') {
                format!("/{rest}")
            } else {
                rest.to_string()
            }
        } else {
            sent.clone()
        };
        assert_eq!(target_of(&b.last()), expected, "for {sent}");
    }

    let a = get_host(f.addr, "/t7/x/1", "shop.example.com").await;
    assert_from(&a, "shop");
    let a = get_host(f.addr, "/t7/x/1", "test.local").await;
    assert_from(&a, "u1");

    for sent in ["/t1/y", &format!("/t{N}/x"), "/t12x/x", "/x/t1"] {
        let a = get_host(f.addr, sent, "test.local").await;
        assert_from(&a, "mono");
        assert_eq!(target_of(&mono.last()), sent);
    }
    assert_eq!(shop.count(), 1);
    assert_eq!(mono.count(), 4);
}
