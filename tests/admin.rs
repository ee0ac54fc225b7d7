//! The admin API (SPEC §7) and the drain (SPEC §9): `/healthz`, `/readyz`,
//! `/config` (version is the sha256 of the file, loaded_at RFC 3339),
//! `/routes` in match order with every key present, 404 and 405 on the
//! admin port, and a SIGTERM to the real binary that turns `/readyz` to 503,
//! refuses new connections, lets the request in flight finish and exits 0.

mod support;
use support::*;

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::Request;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn json_of(a: &Answer) -> Value {
    serde_json::from_slice(&a.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&a.body)))
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whole Unix seconds of an RFC 3339 time (the parser lives in support).
fn rfc3339_unix(s: &str) -> Option<i64> {
    support::rfc3339_unix(s).map(|t| t.floor() as i64)
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn rfc3339_parser_self_check() {
    assert_eq!(rfc3339_unix("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(rfc3339_unix("2000-02-29T00:00:00Z"), Some(951_782_400));
    assert_eq!(
        rfc3339_unix("2026-11-23T18:57:00.123Z"),
        Some(1_795_460_220)
    );
    assert_eq!(
        rfc3339_unix("2026-11-23T19:57:00+01:00"),
        Some(1_795_460_220)
    );
    assert_eq!(rfc3339_unix("2026-11-23 18:57:00"), None);
    assert_eq!(rfc3339_unix("1795460220"), None);
}

async fn simple() -> (Backend, Figway, String) {
    let b = Backend::start("mono").await;
    let text = config(&format!(
        "[upstreams.monolith]\nlegacy = true\ntargets = [\"{}\"]\n\
         [[routes]]\nname = \"legacy\"\nprefix = \"/\"\nto = \"monolith\"\n",
        b.url()
    ));
    let f = Figway::start(&text).await;
    (b, f, text)
}

/// Every admin answer but `/metrics` is JSON (README), probes included.
fn assert_json(a: &Answer, want: Value) {
    assert_eq!(
        a.header("content-type"),
        Some("application/json"),
        "{}",
        a.text()
    );
    assert_eq!(json_of(a), want);
}

#[tokio::test]
async fn healthz_and_readyz_answer_200_in_json() {
    let (_b, f, _) = simple().await;
    let a = get(f.admin, "/healthz", &[]).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_json(&a, json!({"status": "ok"}));
    let a = get(f.admin, "/readyz", &[]).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_json(&a, json!({"status": "ok"}));
}

#[tokio::test]
async fn unknown_admin_path_is_404() {
    let (b, f, _) = simple().await;
    for path in ["/nope", "/", "/healthz/extra", "/route"] {
        let a = get(f.admin, path, &[]).await;
        assert_eq!(a.status, 404, "{path}: {}", a.text());
        assert_json(&a, json!({"error": "not found"}));
    }
    // The admin port never proxies.
    assert_eq!(b.count(), 0);
}

#[tokio::test]
async fn post_to_healthz_is_405() {
    let (_b, f, _) = simple().await;
    let req = Request::post("/healthz")
        .header("host", "admin.local")
        .body(full("x"))
        .unwrap();
    let a = send(f.admin, req).await;
    assert_eq!(a.status, 405, "{}", a.text());
    assert_eq!(a.header("allow"), Some("GET, HEAD"));
    assert_json(&a, json!({"error": "method not allowed"}));
}

#[tokio::test]
async fn config_reports_version_loaded_at_path_and_last_error() {
    let (_b, f, text) = simple().await;
    let a = get(f.admin, "/config", &[]).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let ct = a.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("application/json"), "content-type {ct:?}");
    let v = json_of(&a);
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["last_error", "loaded_at", "path", "version"], "{v}");
    assert_eq!(v["version"], sha256_hex(&text), "{v}");
    let version = v["version"].as_str().unwrap();
    assert_eq!(version.len(), 64);
    assert!(version
        .bytes()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
    let loaded_at = v["loaded_at"].as_str().expect("loaded_at is a string");
    let t = rfc3339_unix(loaded_at).unwrap_or_else(|| panic!("not RFC 3339: {loaded_at:?}"));
    assert!(
        (t - now_unix()).abs() <= 120,
        "loaded_at {loaded_at} is not about now"
    );
    assert_eq!(v["path"], "test.toml", "{v}");
    assert!(v["last_error"].is_null(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_of_the_binary_names_its_file_and_hashes_its_bytes() {
    let text = config(
        "[upstreams.monolith]\nlegacy = true\ntargets = [\"http://127.0.0.1:9\"]\n\
         [[routes]]\nprefix = \"/\"\nto = \"monolith\"\n",
    );
    let p = tokio::task::block_in_place(|| FigwayProcess::spawn(&text));
    let a = get(p.admin, "/config", &[]).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = json_of(&a);
    assert_eq!(v["version"], sha256_hex(&text), "{v}");
    let path = v["path"].as_str().expect("path is a string");
    assert!(path.ends_with("figway.toml"), "{v}");
    assert_eq!(
        std::fs::read_to_string(path).ok().as_deref(),
        Some(text.as_str()),
        "path {path:?} is not the served file"
    );
    assert!(
        rfc3339_unix(v["loaded_at"].as_str().unwrap()).is_some(),
        "{v}"
    );
    assert!(v["last_error"].is_null(), "{v}");
}

#[tokio::test]
async fn routes_lists_every_route_in_match_order_with_every_key() {
    let b = Backend::start("x").await;
    let text = config(&format!(
        r#"[upstreams.a]
legacy = true
targets = ["{url}"]
[upstreams.b]
targets = ["{url}"]

[[routes]]
name = "root"
prefix = "/"
to = "a"

[[routes]]
name = "api-any"
prefix = "/api"
to = "a"

[[routes]]
name = "api-get"
prefix = "/api"
methods = ["GET"]
to = "b"

[[routes]]
name = "api-wild"
prefix = "/api"
host = "*.example.com"
to = "a"

[[routes]]
name = "api-exact"
prefix = "/api"
host = "shop.example.com"
to = "b"

[[routes]]
name = "users"
prefix = "/api/users"
rewrite_prefix = "/v2/users"
to = "b"

[[routes]]
name = "orders"
prefix = "/api/orders"
strip_prefix = true
to = "a"

[[routes]]
name = "api-exact-get"
prefix = "/api"
host = "shop.example.com"
methods = ["GET", "POST"]
to = "a"
"#,
        url = b.url()
    ));
    let f = Figway::start(&text).await;
    let a = get(f.admin, "/routes", &[]).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let ct = a.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("application/json"), "content-type {ct:?}");
    let v = json_of(&a);
    let routes = v.as_array().unwrap_or_else(|| panic!("not an array: {v}"));
    let names: Vec<&str> = routes.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "orders",
            "users",
            "api-exact-get",
            "api-exact",
            "api-wild",
            "api-get",
            "api-any",
            "root"
        ]
    );
    let mut expected_keys = vec![
        "fallback",
        "headers",
        "host",
        "match",
        "methods",
        "name",
        "prefix",
        "rate_limit",
        "rewrite_prefix",
        "shadow",
        "split",
        "sticky",
        "strip_prefix",
        "to",
    ];
    expected_keys.sort();
    for r in routes {
        let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, expected_keys, "{r}");
        assert!(r["to"].is_string(), "{r}");
        assert!(r["split"].is_null(), "{r}");
        assert!(r["sticky"].is_null(), "{r}");
        assert!(r["fallback"].is_null(), "{r}");
        assert!(r["shadow"].is_null(), "{r}");
        assert!(r["headers"].is_null(), "{r}");
        assert!(r["rate_limit"].is_null(), "{r}");
    }
    let by_name = |n: &str| routes.iter().find(|r| r["name"] == n).unwrap().clone();
    assert_eq!(
        by_name("root"),
        json!({
            "name": "root", "prefix": "/", "host": null, "methods": null, "to": "a",
            "split": null, "sticky": null, "fallback": null, "shadow": null,
            "strip_prefix": false, "rewrite_prefix": null, "match": null, "headers": null,
            "rate_limit": null,
        })
    );
    assert_eq!(
        by_name("users"),
        json!({
            "name": "users", "prefix": "/api/users", "host": null, "methods": null, "to": "b",
            "split": null, "sticky": null, "fallback": null, "shadow": null,
            "strip_prefix": false, "rewrite_prefix": "/v2/users", "match": null,
            "headers": null, "rate_limit": null,
        })
    );
    assert_eq!(by_name("orders")["strip_prefix"], true);
    assert_eq!(by_name("orders")["rewrite_prefix"], Value::Null);
    assert_eq!(by_name("api-exact")["host"], "shop.example.com");
    assert_eq!(by_name("api-wild")["host"], "*.example.com");
    assert_eq!(by_name("api-get")["methods"], json!(["GET"]));
    assert_eq!(by_name("api-exact-get")["methods"], json!(["GET", "POST"]));
}

// === drain ===

fn sigterm(pid: u32) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .expect("cannot run kill");
    assert!(status.success(), "kill -TERM {pid} failed");
}

fn connect_refused(addr: SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_exits_0() {
    const SLOW: Duration = Duration::from_secs(3);
    let backend = Backend::with(|_| async {
        tokio::time::sleep(SLOW).await;
        http::Response::builder().body(full("slow done")).unwrap()
    })
    .await;
    let text = config(&format!(
        "[upstreams.m]\nlegacy = true\ntargets = [\"{}\"]\n\
         [[routes]]\nprefix = \"/\"\nto = \"m\"\n",
        backend.url()
    ));
    let mut p = tokio::task::block_in_place(|| FigwayProcess::spawn(&text));
    assert_eq!(get(p.admin, "/readyz", &[]).await.status, 200);

    let addr = p.addr;
    let in_flight = tokio::spawn(async move { get(addr, "/slow", &[]).await });
    // Wait until the backend holds the request, so it is truly in flight.
    let deadline = Instant::now() + Duration::from_secs(5);
    while backend.count() == 0 {
        assert!(
            Instant::now() < deadline,
            "the request never reached the backend"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sent_at = Instant::now();
    sigterm(p.child.id());

    // /readyz turns 503 while the admin API keeps answering.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let a = get(p.admin, "/readyz", &[]).await;
        if a.status == 503 {
            assert_json(&a, json!({"status": "draining"}));
            break;
        }
        assert_eq!(a.status, 200, "{}", a.text());
        assert!(Instant::now() < deadline, "/readyz never turned 503");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !in_flight.is_finished(),
        "the in-flight request ended before /readyz turned 503"
    );
    assert_eq!(get(p.admin, "/healthz", &[]).await.status, 200);

    // New connections to the proxy port are refused after a moment.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !tokio::task::block_in_place(|| connect_refused(addr)) {
        assert!(
            Instant::now() < deadline,
            "new connections are still accepted while draining"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !in_flight.is_finished() || sent_at.elapsed() >= SLOW - Duration::from_millis(500),
        "the in-flight request ended early"
    );

    // The request in flight completes.
    let a = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("in-flight request did not finish")
        .unwrap();
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.text(), "slow done");

    // And the process exits 0.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = p.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "figway did not exit after draining"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0), "{status:?}");
}
