//! Route match conditions (SPEC §12 "Match"), end to end: figway runs for
//! real on port 0 in front of recording backends named after the route that
//! should get the request, and each test asserts which backend answered.
//! Covered: header, cookie and query conditions (exact, `*` = present, an
//! empty value counting as present), header names without case and values
//! with it, cookies over several `Cookie` lines (HTTP/1.1 and HTTP/2),
//! precedence (conditions beat none, more beat fewer, config order last,
//! methods before conditions), falling through to the next candidate, the
//! `explain` binary agreeing with the proxy, `/routes` and `check`, and the
//! validation errors with file:line:col.

mod support;
use support::*;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use http::{Method, Request};
use serde_json::{json, Value};

// === helpers ===

/// `[upstreams.NAME]` for each backend, named as the backend.
fn upstreams(backends: &[(&str, &Backend)]) -> String {
    backends
        .iter()
        .map(|(name, b)| format!("[upstreams.{name}]\ntargets = [\"{}\"]\n", b.url()))
        .collect()
}

/// A `[[routes]]` entry named as its upstream; `extra` is more TOML lines
/// (methods, a `[routes.match]` table, ...).
fn route(name: &str, prefix: &str, extra: &str) -> String {
    format!("[[routes]]\nname = \"{name}\"\nprefix = \"{prefix}\"\nto = \"{name}\"\n{extra}\n")
}

/// Backends named `names`, and figway in front of them with `routes`.
async fn start(names: &[&str], routes: &str) -> (Figway, Vec<Backend>) {
    let mut backends = Vec::new();
    for name in names {
        backends.push(Backend::start(name).await);
    }
    let named: Vec<(&str, &Backend)> = names.iter().copied().zip(backends.iter()).collect();
    let text = config(&format!("{}{routes}", upstreams(&named)));
    (Figway::start(&text).await, backends)
}

/// Which backend answered `GET target` with `headers` (over HTTP/1.1).
async fn who(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> String {
    let a = get(addr, target, headers).await;
    answered_by(&a)
}

fn answered_by(a: &Answer) -> String {
    match a.header("x-backend") {
        Some(name) => name.to_string(),
        None => format!("figway {} ({})", a.status, a.text().trim()),
    }
}

/// `METHOD target` with the head written byte for byte, so header names
/// keep the case the test gives them (hyper's client lower-cases).
async fn who_raw(addr: SocketAddr, method: &str, target: &str, head_lines: &str) -> String {
    let bytes = format!(
        "{method} {target} HTTP/1.1\r\nHost: test.local\r\n{head_lines}Connection: close\r\n\r\n"
    );
    let out = raw(addr, bytes.as_bytes(), std::time::Duration::from_secs(5)).await;
    out.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("x-backend")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_else(|| format!("no x-backend in {out:?}"))
}

async fn who_with_method(
    addr: SocketAddr,
    method: Method,
    target: &str,
    headers: &[(&str, &str)],
) -> String {
    let mut b = Request::builder()
        .method(method)
        .uri(target)
        .header("host", "test.local");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    answered_by(&send(addr, b.body(full("")).unwrap()).await)
}

/// The config's problems as `line:col: key: message` lines (file name cut).
fn problems(routes: &str) -> Vec<String> {
    let text = config(&format!(
        "[upstreams.monolith]\ntargets = [\"http://127.0.0.1:1\"]\n{routes}"
    ));
    match figway::config::load_str(&text, Path::new("m.toml")) {
        Ok(_) => Vec::new(),
        Err(e) => e
            .messages
            .iter()
            .filter_map(|m| m.strip_prefix("m.toml:").map(str::to_string))
            .collect(),
    }
}

/// The one problem of `routes`, which must start with `position: key`.
#[track_caller]
fn one_problem(routes: &str, at: &str) -> String {
    let found = problems(routes);
    assert_eq!(
        found.len(),
        1,
        "expected one problem at {at}, got {found:#?}"
    );
    assert!(
        found[0].starts_with(at),
        "expected {at}, got {:?}",
        found[0]
    );
    found[0].clone()
}

// Config lines before the routes in `problems`: 8 (listen, admin, log,
// the upstream), so the first route's `[[routes]]` is line 9.
const FIRST_ROUTE_LINE: usize = 9;

// === headers ===

#[tokio::test]
async fn header_condition_exact_and_case_rules() {
    let routes = format!(
        "{}{}",
        route(
            "beta",
            "/api/orders",
            "[routes.match]\nheaders = { \"X-Canary\" = \"yes\" }"
        ),
        route("orders", "/api/orders", "")
    );
    let (f, _b) = start(&["beta", "orders"], &routes).await;
    assert_eq!(who(f.addr, "/api/orders/1", &[]).await, "orders");
    assert_eq!(
        who(f.addr, "/api/orders/1", &[("x-canary", "yes")]).await,
        "beta"
    );
    // Values are case-sensitive, and exact.
    assert_eq!(
        who(f.addr, "/api/orders/1", &[("x-canary", "Yes")]).await,
        "orders"
    );
    assert_eq!(
        who(f.addr, "/api/orders/1", &[("x-canary", "yess")]).await,
        "orders"
    );
    assert_eq!(
        who(f.addr, "/api/orders/1", &[("x-canary", "")]).await,
        "orders"
    );
    // Names are not, on the wire either.
    assert_eq!(
        who_raw(f.addr, "GET", "/api/orders/1", "X-CANARY: yes\r\n").await,
        "beta"
    );
    // Any of several field lines may meet it.
    assert_eq!(
        who_raw(
            f.addr,
            "GET",
            "/api/orders/1",
            "x-canary: no\r\nx-canary: yes\r\n"
        )
        .await,
        "beta"
    );
}

#[tokio::test]
async fn header_star_means_present_even_empty() {
    let routes = format!(
        "{}{}",
        route(
            "team",
            "/",
            "[routes.match]\nheaders = { \"x-team\" = \"*\" }"
        ),
        route("monolith", "/", "")
    );
    let (f, _b) = start(&["team", "monolith"], &routes).await;
    assert_eq!(who(f.addr, "/x", &[]).await, "monolith");
    assert_eq!(who(f.addr, "/x", &[("x-team", "payments")]).await, "team");
    assert_eq!(who_raw(f.addr, "GET", "/x", "X-Team:\r\n").await, "team");
    assert_eq!(who(f.addr, "/x", &[("x-teams", "a")]).await, "monolith");
}

#[tokio::test]
async fn exact_empty_header_value_matches_only_empty() {
    let routes = format!(
        "{}{}",
        route(
            "empty",
            "/",
            "[routes.match]\nheaders = { \"x-flag\" = \"\" }"
        ),
        route("monolith", "/", "")
    );
    let (f, _b) = start(&["empty", "monolith"], &routes).await;
    assert_eq!(who_raw(f.addr, "GET", "/", "x-flag:\r\n").await, "empty");
    assert_eq!(who(f.addr, "/", &[("x-flag", "1")]).await, "monolith");
    assert_eq!(who(f.addr, "/", &[]).await, "monolith");
}

// === cookies ===

#[tokio::test]
async fn cookie_conditions_over_one_or_several_cookie_lines() {
    let routes = format!(
        "{}{}{}",
        route("beta", "/", "[routes.match]\ncookies = { beta = \"yes\" }"),
        route("session", "/", "[routes.match]\ncookies = { sid = \"*\" }"),
        route("monolith", "/", "")
    );
    let (f, _b) = start(&["beta", "session", "monolith"], &routes).await;
    assert_eq!(who(f.addr, "/", &[]).await, "monolith");
    assert_eq!(who(f.addr, "/", &[("cookie", "beta=yes")]).await, "beta");
    assert_eq!(
        who(f.addr, "/", &[("cookie", "a=1; beta=yes; b=2")]).await,
        "beta"
    );
    assert_eq!(
        who(f.addr, "/", &[("cookie", "beta=Yes")]).await,
        "monolith"
    );
    assert_eq!(
        who(f.addr, "/", &[("cookie", "xbeta=yes")]).await,
        "monolith"
    );
    assert_eq!(who(f.addr, "/", &[("cookie", "beta")]).await, "monolith");
    // `*`: present, an empty value too.
    assert_eq!(who(f.addr, "/", &[("cookie", "sid=")]).await, "session");
    assert_eq!(who(f.addr, "/", &[("cookie", "sid=abc")]).await, "session");
    // Several Cookie lines (HTTP/1.1 clients should not, some do).
    assert_eq!(
        who_raw(f.addr, "GET", "/", "Cookie: a=1\r\nCookie: beta=yes\r\n").await,
        "beta"
    );
    // HTTP/2 clients send each cookie as a line of its own (RFC 9113 §8.2.3).
    let req = Request::get(f.url("/"))
        .header("cookie", "a=1")
        .header("cookie", "beta=yes")
        .body(full(""))
        .unwrap();
    assert_eq!(answered_by(&send_h2(f.addr, req).await), "beta");
}

// === query ===

#[tokio::test]
async fn query_conditions_exact_present_and_decoded() {
    let routes = format!(
        "{}{}{}",
        route(
            "preview",
            "/",
            "[routes.match]\nquery = { preview = \"1\" }"
        ),
        route(
            "debug",
            "/",
            "[routes.match]\nquery = { debug = \"*\", who = \"a b\" }"
        ),
        route("monolith", "/", "")
    );
    let (f, b) = start(&["preview", "debug", "monolith"], &routes).await;
    assert_eq!(who(f.addr, "/p", &[]).await, "monolith");
    assert_eq!(who(f.addr, "/p?preview=1", &[]).await, "preview");
    assert_eq!(who(f.addr, "/p?x=2&preview=1&y", &[]).await, "preview");
    assert_eq!(who(f.addr, "/p?preview=10", &[]).await, "monolith");
    assert_eq!(who(f.addr, "/p?preview", &[]).await, "monolith");
    assert_eq!(who(f.addr, "/p?Preview=1", &[]).await, "monolith");
    // `*` with no value or an empty one; values form-decoded.
    assert_eq!(who(f.addr, "/p?debug&who=a+b", &[]).await, "debug");
    assert_eq!(who(f.addr, "/p?debug=&who=a%20b", &[]).await, "debug");
    assert_eq!(who(f.addr, "/p?debug=1&who=ab", &[]).await, "monolith");
    // The query still goes upstream as it came.
    assert_eq!(b[1].last().uri.to_string(), "/p?debug=&who=a%20b");
}

// === precedence ===

#[tokio::test]
async fn conditions_beat_an_equal_route_without_and_more_beat_fewer() {
    // Written in the order least specific first: the file's order must
    // not decide, only the tie between equal counts.
    let routes = format!(
        "{}{}{}{}{}",
        route("plain", "/api", ""),
        route(
            "one",
            "/api",
            "[routes.match]\nheaders = { \"x-canary\" = \"1\" }"
        ),
        route(
            "two",
            "/api",
            "[routes.match]\nheaders = { \"x-canary\" = \"1\" }\ncookies = { beta = \"yes\" }"
        ),
        route("tie-first", "/api", "[routes.match]\nquery = { a = \"1\" }"),
        route(
            "tie-second",
            "/api",
            "[routes.match]\nquery = { b = \"1\" }"
        ),
    );
    let (f, _b) = start(&["plain", "one", "two", "tie-first", "tie-second"], &routes).await;
    assert_eq!(who(f.addr, "/api/x", &[]).await, "plain");
    assert_eq!(who(f.addr, "/api/x", &[("x-canary", "1")]).await, "one");
    let both = [("x-canary", "1"), ("cookie", "beta=yes")];
    assert_eq!(who(f.addr, "/api/x", &both).await, "two");
    // Two conditions beat one however the three tables split them.
    assert_eq!(who(f.addr, "/api/x?a=1", &both).await, "two");
    // Equal counts: config order.
    assert_eq!(who(f.addr, "/api/x?a=1&b=1", &[]).await, "tie-first");
    assert_eq!(who(f.addr, "/api/x?b=1", &[]).await, "tie-second");
    // One condition each, header and query: still config order ("one" first).
    assert_eq!(who(f.addr, "/api/x?a=1", &[("x-canary", "1")]).await, "one");
}

#[tokio::test]
async fn longer_prefix_and_host_still_come_first() {
    let routes = format!(
        "{}{}{}",
        route(
            "root-beta",
            "/",
            "[routes.match]\nheaders = { \"x-canary\" = \"1\" }"
        ),
        route("api", "/api", ""),
        route("host", "/api", "host = \"shop.example.com\"")
    );
    let (f, _b) = start(&["root-beta", "api", "host"], &routes).await;
    // A condition does not lift a shorter prefix over a longer one.
    assert_eq!(who(f.addr, "/api/x", &[("x-canary", "1")]).await, "api");
    assert_eq!(
        who(f.addr, "/other", &[("x-canary", "1")]).await,
        "root-beta"
    );
    let req = Request::get("/api/x")
        .header("host", "shop.example.com")
        .header("x-canary", "1")
        .body(full(""))
        .unwrap();
    assert_eq!(answered_by(&send(f.addr, req).await), "host");
}

#[tokio::test]
async fn methods_rank_before_conditions_and_both_fall_through() {
    let routes = format!(
        "{}{}{}{}",
        route("reads", "/a", "methods = [\"GET\"]"),
        route(
            "canary",
            "/a",
            "[routes.match]\nheaders = { \"x-canary\" = \"1\" }"
        ),
        route(
            "canary-reads",
            "/a",
            "methods = [\"GET\"]\n[routes.match]\nheaders = { \"x-canary\" = \"1\" }"
        ),
        route("monolith", "/", "")
    );
    let (f, _b) = start(&["reads", "canary", "canary-reads", "monolith"], &routes).await;
    let canary = [("x-canary", "1")];
    assert_eq!(
        who_with_method(f.addr, Method::GET, "/a", &canary).await,
        "canary-reads"
    );
    assert_eq!(
        who_with_method(f.addr, Method::GET, "/a", &[]).await,
        "reads"
    );
    // Methods rank first: a GET route without conditions beats a route
    // with conditions but no methods.
    assert_eq!(
        who_with_method(f.addr, Method::POST, "/a", &canary).await,
        "canary"
    );
    assert_eq!(
        who_with_method(f.addr, Method::POST, "/a", &[]).await,
        "monolith"
    );
}

// === fall-through ===

#[tokio::test]
async fn failing_conditions_fall_through_to_a_shorter_prefix() {
    let routes = format!(
        "{}{}{}",
        route(
            "beta",
            "/api/orders",
            "[routes.match]\ncookies = { beta = \"yes\" }"
        ),
        route("api", "/api", ""),
        route("monolith", "/", "")
    );
    let (f, _b) = start(&["beta", "api", "monolith"], &routes).await;
    assert_eq!(
        who(f.addr, "/api/orders/7", &[("cookie", "beta=yes")]).await,
        "beta"
    );
    assert_eq!(
        who(f.addr, "/api/orders/7", &[("cookie", "beta=no")]).await,
        "api"
    );
    assert_eq!(who(f.addr, "/api/orders/7", &[]).await, "api");
}

#[tokio::test]
async fn failing_conditions_with_nothing_behind_is_no_route() {
    let routes = route(
        "beta",
        "/api",
        "[routes.match]\nheaders = { \"x-canary\" = \"1\" }",
    );
    let (f, _b) = start(&["beta"], &routes).await;
    assert_eq!(who(f.addr, "/api", &[("x-canary", "1")]).await, "beta");
    let a = get(f.addr, "/api", &[]).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.header("x-figway-error"), Some("no_route"));
}

#[tokio::test]
async fn a_reload_adds_and_removes_conditions() {
    let beta = Backend::start("beta").await;
    let orders = Backend::start("orders").await;
    let ups = upstreams(&[("beta", &beta), ("orders", &orders)]);
    let before = config(&format!("{ups}{}", route("orders", "/", "")));
    let f = Figway::start_file(&before).await;
    assert_eq!(who(f.addr, "/", &[("x-canary", "1")]).await, "orders");
    let after = config(&format!(
        "{ups}{}{}",
        route(
            "beta",
            "/",
            "[routes.match]\nheaders = { \"x-canary\" = \"1\" }"
        ),
        route("orders", "/", "")
    ));
    f.reload_ok(&after).await;
    assert_eq!(who(f.addr, "/", &[("x-canary", "1")]).await, "beta");
    assert_eq!(who(f.addr, "/", &[]).await, "orders");
    f.reload_ok(&before).await;
    assert_eq!(who(f.addr, "/", &[("x-canary", "1")]).await, "orders");
}

// === /routes and check ===

#[tokio::test]
async fn routes_endpoint_shows_match_in_match_order() {
    let routes = format!(
        "{}{}{}",
        route("plain", "/api", ""),
        route(
            "one",
            "/api",
            "[routes.match]\nheaders = { \"X-Canary\" = \"1\" }"
        ),
        route(
            "two",
            "/api",
            "[routes.match]\ncookies = { beta = \"*\" }\nquery = { preview = \"1\" }"
        ),
    );
    let (f, _b) = start(&["plain", "one", "two"], &routes).await;
    let a = get(f.admin, "/routes", &[]).await;
    let v: Value = serde_json::from_slice(&a.body).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["two", "one", "plain"]);
    assert_eq!(
        v[0]["match"],
        json!({"headers": {}, "cookies": {"beta": "*"}, "query": {"preview": "1"}})
    );
    assert_eq!(
        v[1]["match"],
        json!({"headers": {"x-canary": "1"}, "cookies": {}, "query": {}})
    );
    assert!(v[2].get("match").is_some_and(Value::is_null), "{}", v[2]);
}

// === explain ===

/// `figway explain PATH args... --json` on `text`, as JSON.
fn explain(text: &str, args: &[&str]) -> Value {
    let out = run_binary(text, "explain", &[args, &["--json"]].concat());
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// Runs the binary's `command` on `text` written to a file; its stdout
/// (exit 0 required).
fn run_binary(text: &str, command: &str, args: &[&str]) -> String {
    let dir = tempdir::Dir::new();
    let path = dir.path().join("figway.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_figway"))
        .arg(command)
        .arg(&path)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{command} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_agrees_with_the_proxy() {
    let names = ["two", "header", "cookie", "query", "api", "monolith"];
    let mut backends = Vec::new();
    for name in names {
        backends.push(Backend::start(name).await);
    }
    let named: Vec<(&str, &Backend)> = names.iter().copied().zip(backends.iter()).collect();
    let text = config(&format!(
        "{}{}{}{}{}{}{}",
        upstreams(&named),
        route(
            "two",
            "/api",
            "[routes.match]\nheaders = { \"x-canary\" = \"1\" }\ncookies = { beta = \"yes\" }"
        ),
        route(
            "header",
            "/api",
            "[routes.match]\nheaders = { \"x-canary\" = \"1\" }"
        ),
        route(
            "cookie",
            "/api",
            "[routes.match]\ncookies = { beta = \"*\" }"
        ),
        route(
            "query",
            "/api",
            "[routes.match]\nquery = { preview = \"1\" }"
        ),
        route("api", "/api", "methods = [\"POST\"]"),
        route("monolith", "/", ""),
    ));
    let f = Figway::start(&text).await;
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("/api/x", &[]),
        ("/api/x", &[("x-canary", "1")]),
        ("/api/x", &[("x-canary", "1"), ("cookie", "a=1; beta=yes")]),
        ("/api/x", &[("x-canary", "2"), ("cookie", "beta=no")]),
        ("/api/x?preview=1", &[]),
        ("/api/x?preview=1", &[("X-Canary", "1")]),
        ("/api/x?preview=2", &[("cookie", "beta=")]),
        ("/elsewhere?preview=1", &[("x-canary", "1")]),
    ];
    for (target, headers) in cases {
        let proxied = who(f.addr, target, headers).await;
        let mut args = vec!["GET".to_string(), target.to_string()];
        for (n, v) in *headers {
            args.push("-H".into());
            args.push(format!("{n}: {v}"));
        }
        let text = text.clone();
        let v = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            explain(&text, &args)
        })
        .await
        .unwrap();
        assert_eq!(
            v["route"]["name"], proxied,
            "{target} {headers:?}: explain and the proxy disagree: {v}"
        );
    }
}

#[test]
fn explain_shows_the_conditions_that_held_and_the_routes_passed_over() {
    let text = config(&format!(
        "[upstreams.beta]\ntargets = [\"http://127.0.0.1:9001\"]\n\
         [upstreams.monolith]\ntargets = [\"http://127.0.0.1:9002\"]\n{}{}{}",
        "[[routes]]\nname = \"both\"\nprefix = \"/api\"\nto = \"beta\"\n\
         [routes.match]\nheaders = { \"x-canary\" = \"1\" }\ncookies = { beta = \"yes\" }\n",
        "[[routes]]\nname = \"preview\"\nprefix = \"/api\"\nto = \"beta\"\n\
         [routes.match]\nquery = { preview = \"*\" }\n",
        "[[routes]]\nname = \"legacy\"\nprefix = \"/\"\nto = \"monolith\"\n",
    ));
    let v = explain(
        &text,
        &[
            "GET",
            "/api/x?preview",
            "-H",
            "x-canary: 1",
            "-H",
            "cookie: beta=no",
        ],
    );
    assert_eq!(v["route"]["name"], "preview", "{v}");
    assert_eq!(
        v["route"]["match"],
        json!({"headers": {}, "cookies": {}, "query": {"preview": "*"}})
    );
    assert_eq!(
        v["passed_over"],
        json!([{"name": "both", "failed": [
            {"source": "cookie", "name": "beta", "expect": "yes", "got": "no"}
        ]}])
    );
    // Nothing held: down to the root, both passed over, absent values null.
    let v = explain(&text, &["GET", "/api/x"]);
    assert_eq!(v["route"]["name"], "legacy", "{v}");
    assert!(v["route"]["match"].is_null(), "{v}");
    assert_eq!(
        v["passed_over"],
        json!([
            {"name": "both", "failed": [
                {"source": "header", "name": "x-canary", "expect": "1", "got": null},
                {"source": "cookie", "name": "beta", "expect": "yes", "got": null}
            ]},
            {"name": "preview", "failed": [
                {"source": "query", "name": "preview", "expect": "*", "got": null}
            ]}
        ])
    );
    // Without --json, the same facts in words.
    let out = run_binary(
        &text,
        "explain",
        &[
            "GET",
            "/api/x?preview",
            "-H",
            "X-Canary: 1",
            "-H",
            "cookie: beta=no",
        ],
    );
    let line = |label: &str| {
        out.lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no {label} line in\n{out}"))
            .to_string()
    };
    assert!(line("match").ends_with("query preview present"), "{out}");
    assert!(
        line("passed over").ends_with("both: cookie beta is \"no\", not \"yes\""),
        "{out}"
    );
    let out = run_binary(
        &text,
        "explain",
        &["GET", "/api/x", "-H", "cookie: beta=yes"],
    );
    assert!(out.contains("both: header x-canary absent"), "{out}");
}

#[test]
fn explain_help_documents_headers_and_cookies() {
    let out = Command::new(env!("CARGO_BIN_EXE_figway"))
        .args(["explain", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("[routes.match]"), "{help}");
    assert!(help.contains("cookie: "), "{help}");
}

#[test]
fn check_prints_the_conditions_in_the_table() {
    let text = config(
        "[upstreams.beta]\ntargets = [\"http://127.0.0.1:9001\"]\n\
         [upstreams.monolith]\ntargets = [\"http://127.0.0.1:9002\"]\n\
         [[routes]]\nname = \"beta\"\nprefix = \"/\"\nto = \"beta\"\n\
         [routes.match]\nheaders = { \"X-Canary\" = \"1\" }\nquery = { q = \"a b\" }\n\
         [[routes]]\nname = \"legacy\"\nprefix = \"/\"\nto = \"monolith\"\n",
    );
    let out = run_binary(&text, "check", &[]);
    let header = out.lines().find(|l| l.starts_with("ROUTE")).unwrap();
    assert!(header.contains("MATCH"), "{out}");
    let beta = out.lines().find(|l| l.starts_with("beta")).unwrap();
    assert!(beta.contains("header:x-canary=1, query:q=\"a b\""), "{out}");
}

// === validation ===

fn with_match(table: &str) -> String {
    format!("[[routes]]\nprefix = \"/\"\nto = \"monolith\"\n[routes.match]\n{table}\n")
}

#[test]
fn bad_header_names_and_values_are_errors_at_their_place() {
    let line = FIRST_ROUTE_LINE + 4;
    let p = one_problem(
        &with_match("headers = { \"x canary\" = \"1\" }"),
        &format!("{line}:13: routes[0].match.headers.x canary: invalid header name"),
    );
    assert!(p.contains("\"x canary\""), "{p}");
    let p = one_problem(
        &with_match("headers = { host = \"a.com\" }"),
        &format!("{line}:13: routes[0].match.headers.host:"),
    );
    assert!(p.contains("`host` key"), "{p}");
    let p = one_problem(
        &with_match("headers = { \"x-a\" = \" 1\" }"),
        &format!("{line}:21: routes[0].match.headers.x-a:"),
    );
    assert!(p.contains("would never match"), "{p}");
    one_problem(
        &with_match("headers = { \"x-a\" = \"a\\u0001b\" }"),
        &format!("{line}:21: routes[0].match.headers.x-a: invalid header value"),
    );
    let p = one_problem(
        &with_match("headers = { \"x-a\" = 1 }"),
        &format!("{line}:21: routes[0].match.headers.x-a: expected a string"),
    );
    assert!(p.contains("found an integer"), "{p}");
    // The same header twice, in two cases.
    let p = one_problem(
        &with_match("headers = { \"X-Canary\" = \"1\", \"x-canary\" = \"2\" }"),
        &format!("{line}:31: routes[0].match.headers.x-canary:"),
    );
    assert!(
        p.contains("case-insensitive") && p.contains("first at column 13"),
        "{p}"
    );
}

#[test]
fn bad_cookie_and_query_names_and_values_are_errors() {
    let line = FIRST_ROUTE_LINE + 4;
    let p = one_problem(
        &with_match("cookies = { \"\" = \"1\" }"),
        &format!("{line}:13: routes[0].match.cookies.: invalid cookie name"),
    );
    assert!(p.contains("at least one character"), "{p}");
    one_problem(
        &with_match("cookies = { \"a=b\" = \"1\" }"),
        &format!("{line}:13: routes[0].match.cookies.a=b: invalid cookie name"),
    );
    let p = one_problem(
        &with_match("cookies = { beta = \"a;b\" }"),
        &format!("{line}:20: routes[0].match.cookies.beta:"),
    );
    assert!(p.contains("would never match"), "{p}");
    one_problem(
        &with_match("query = { \"\" = \"1\" }"),
        &format!("{line}:11: routes[0].match.query.:"),
    );
}

#[test]
fn empty_match_tables_and_unknown_keys_are_errors() {
    let line = FIRST_ROUTE_LINE + 3;
    let p = one_problem(
        &with_match(""),
        &format!("{line}:1: routes[0].match: no condition"),
    );
    assert!(p.contains("remove [routes.match]"), "{p}");
    let p = one_problem(
        &with_match("headers = {}"),
        &format!(
            "{}:11: routes[0].match.headers: list at least one",
            line + 1
        ),
    );
    assert!(p.contains("leave `headers` out"), "{p}");
    let p = one_problem(
        &with_match("header = { \"x-a\" = \"1\" }"),
        &format!("{}:1: routes[0].match.header: unknown key", line + 1),
    );
    assert!(p.contains("headers"), "did you mean: {p}");
    one_problem(
        "[[routes]]\nprefix = \"/\"\nto = \"monolith\"\nmatch = \"x-canary\"\n",
        &format!("{line}:9: routes[0].match: expected a table"),
    );
}

#[test]
fn duplicate_routes_compare_conditions_as_sets() {
    let a = "[[routes]]\nname = \"a\"\nprefix = \"/api\"\nto = \"monolith\"\n[routes.match]\n\
             headers = { \"x-a\" = \"1\", \"X-B\" = \"*\" }\ncookies = { c = \"1\" }\n";
    // The same conditions, written in another order and case.
    let b = "[[routes]]\nname = \"b\"\nprefix = \"/api\"\nto = \"monolith\"\n[routes.match]\n\
             cookies = { c = \"1\" }\nheaders = { \"x-b\" = \"*\", \"X-A\" = \"1\" }\n";
    let p = one_problem(
        &format!("{a}{b}"),
        &format!("{}:10: routes[1].prefix:", FIRST_ROUTE_LINE + 7 + 2),
    );
    assert!(
        p.contains("same prefix, host, methods and match conditions as routes[0]"),
        "{p}"
    );
    assert!(
        p.contains(&format!("first at line {}", FIRST_ROUTE_LINE + 2)),
        "{p}"
    );
    // Another value, another table, or one condition more: distinct routes.
    for other in [
        "headers = { \"x-a\" = \"2\", \"x-b\" = \"*\" }\ncookies = { c = \"1\" }\n",
        "headers = { \"x-a\" = \"1\", \"x-b\" = \"*\" }\nquery = { c = \"1\" }\n",
        "headers = { \"x-a\" = \"1\", \"x-b\" = \"*\" }\ncookies = { c = \"1\", d = \"1\" }\n",
    ] {
        let b = format!(
            "[[routes]]\nname = \"b\"\nprefix = \"/api\"\nto = \"monolith\"\n[routes.match]\n{other}"
        );
        assert_eq!(
            problems(&format!("{a}{b}")),
            Vec::<String>::new(),
            "{other}"
        );
    }
    // A route with conditions and one without are distinct too.
    let plain = "[[routes]]\nname = \"p\"\nprefix = \"/api\"\nto = \"monolith\"\n";
    assert_eq!(problems(&format!("{a}{plain}")), Vec::<String>::new());
}

#[test]
fn a_broken_match_table_adds_no_duplicate_error() {
    let a = "[[routes]]\nname = \"a\"\nprefix = \"/api\"\nto = \"monolith\"\n[routes.match]\n\
             headers = { \"x a\" = \"1\" }\n";
    let b = "[[routes]]\nname = \"b\"\nprefix = \"/api\"\nto = \"monolith\"\n[routes.match]\n\
             headers = { \"x b\" = \"1\" }\n";
    let found = problems(&format!("{a}{b}"));
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found.iter().all(|p| p.contains("invalid header name")),
        "{found:#?}"
    );
}
