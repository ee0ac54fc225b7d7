//! Route policies over real sockets (SPEC §12, issue 15): `[routes.headers]`
//! edits seen by a recording upstream and by the client, figway's own
//! answers left alone, the shadow copy edited as the primary; and
//! `[routes.rate_limit]`: the 429 `rate_limited` answer with `retry-after`
//! that never reaches the upstream, refill, keys by client address, by
//! header (falling back to the address) and per route, buckets kept or
//! reset across reloads, the metrics, the gRPC answer, and `/routes`.
//! Validation errors for each rule are checked with their file:line:col.
//!
//! Timing: bursts use rates slow enough (one token in 10 s) that no token
//! can come back during a test, except the 5/s test, which asserts the
//! bucket's bound for the time the burst really took, and waits for the
//! refill it checks (a lower bound on time, never an upper one).

mod support;
use support::*;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use http::{Request, Response};

const FIVE_PER_SECOND: &str = "rate = 5\nburst = 5\n";

/// A route `api` on `/` to upstream `app` at `url`, with `policy` appended
/// to the route (sub-tables such as `[routes.rate_limit]`).
fn route(url: &str, policy: &str) -> String {
    config(&format!(
        "[upstreams.app]\ntargets = [\"{url}\"]\n\
         [[routes]]\nname = \"api\"\nprefix = \"/\"\nto = \"app\"\n{policy}"
    ))
}

/// As [`route`], trusting 127.0.0.1 as a proxy so that each request's
/// `x-forwarded-for` is its client address.
fn route_behind_proxy(url: &str, policy: &str) -> String {
    route(url, policy).replacen(
        "[listen]\naddress = \"127.0.0.1:0\"\n",
        "[listen]\naddress = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n",
        1,
    )
}

fn values<'a>(seen: &'a Seen, name: &str) -> Vec<&'a str> {
    seen.headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

// === header edits ===

#[tokio::test]
async fn request_edits_reach_the_upstream_removals_first() {
    let app = Backend::start("app").await;
    let f = Figway::start(&route(
        &app.url(),
        "[routes.headers]\n\
         request_remove = [\"x-debug\", \"x-source\"]\n\
         request_set = { \"x-source\" = \"figway\", \"x-new\" = \"yes\", \"x-forwarded-proto\" = \"https\" }\n",
    ))
    .await;
    let req = Request::get("/orders")
        .header("host", "shop.example")
        .header("x-debug", "1")
        .header("x-source", "client")
        .header("x-source", "again")
        .header("x-keep", "k")
        .body(full(""))
        .unwrap();
    let a = send(f.addr, req).await;
    assert_eq!(a.status, 200);
    let seen = app.last();
    assert!(seen.headers.get("x-debug").is_none(), "removed");
    // The client's two values are replaced by the one set.
    assert_eq!(values(&seen, "x-source"), ["figway"]);
    assert_eq!(values(&seen, "x-new"), ["yes"]);
    assert_eq!(values(&seen, "x-keep"), ["k"]);
    // Edits run after X-Forwarded-*: the set value replaces figway's own.
    assert_eq!(values(&seen, "x-forwarded-proto"), ["https"]);
    assert_eq!(values(&seen, "x-forwarded-host"), ["shop.example"]);
    assert_eq!(values(&seen, "host"), ["shop.example"]);
    assert_eq!(
        values(&seen, "x-request-id"),
        [a.header("x-request-id").unwrap()]
    );
}

#[tokio::test]
async fn response_edits_reach_the_client() {
    let app = Backend::with(|_| async {
        Response::builder()
            .header("server", "monolith/1.0")
            .header("x-powered-by", "php")
            .header("strict-transport-security", "max-age=1")
            .header("x-keep", "k")
            .body(full("hi"))
            .unwrap()
    })
    .await;
    let f = Figway::start(&route(
        &app.url(),
        "[routes.headers]\n\
         response_remove = [\"Server\", \"x-powered-by\"]\n\
         response_set = { \"strict-transport-security\" = \"max-age=31536000\" }\n",
    ))
    .await;
    let a = get(f.addr, "/", &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.text(), "hi");
    assert!(a.headers.get("server").is_none());
    assert!(a.headers.get("x-powered-by").is_none());
    let hsts: Vec<_> = a
        .headers
        .get_all("strict-transport-security")
        .iter()
        .collect();
    assert_eq!(hsts, ["max-age=31536000"]);
    assert_eq!(a.header("x-keep"), Some("k"));
    assert!(a.header("x-request-id").is_some());
    // Request-side edits are not response edits, and the other way round.
    assert!(app
        .last()
        .headers
        .get("strict-transport-security")
        .is_none());
}

#[tokio::test]
async fn figways_own_answers_are_not_edited() {
    let gone = refused_port().await;
    let edits = "[routes.headers]\n\
                 response_remove = [\"content-type\", \"x-figway-error\"]\n\
                 response_set = { \"x-edited\" = \"yes\" }\n";
    let f = Figway::start(&route(&format!("http://{gone}"), edits)).await;
    let a = get(f.addr, "/", &[]).await;
    assert_eq!(a.status, 502);
    assert_eq!(a.header("x-figway-error"), Some("upstream_connect"));
    assert_eq!(a.header("content-type"), Some("text/plain; charset=utf-8"));
    assert!(a.headers.get("x-edited").is_none());
    // Nor is the 429 of a rate limit.
    let app = Backend::start("app").await;
    let f = Figway::start(&route(
        &app.url(),
        &format!("{edits}[routes.rate_limit]\nrate = 0.1\nburst = 1\nkey = \"route\"\n"),
    ))
    .await;
    assert_eq!(get(f.addr, "/", &[]).await.header("x-edited"), Some("yes"));
    let limited = get(f.addr, "/", &[]).await;
    assert_eq!(limited.status, 429);
    assert!(limited.headers.get("x-edited").is_none());
    assert_eq!(limited.header("x-figway-error"), Some("rate_limited"));
}

#[tokio::test]
async fn the_shadow_copy_gets_the_request_edits() {
    let app = Backend::start("app").await;
    let new = Backend::start("new").await;
    let toml = config(&format!(
        "[upstreams.app]\ntargets = [\"{}\"]\n[upstreams.new]\ntargets = [\"{}\"]\n\
         [[routes]]\nname = \"api\"\nprefix = \"/\"\nto = \"app\"\n\
         [routes.shadow]\nto = \"new\"\n\
         [routes.headers]\nrequest_remove = [\"x-debug\"]\nrequest_set = {{ \"x-source\" = \"figway\" }}\n",
        app.url(),
        new.url()
    ));
    let f = Figway::start(&toml).await;
    let a = get(f.addr, "/", &[("x-debug", "1"), ("x-source", "client")]).await;
    assert_eq!(a.status, 200);
    let started = Instant::now();
    while new.count() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no shadow copy"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for seen in [app.last(), new.last()] {
        assert!(seen.headers.get("x-debug").is_none());
        assert_eq!(values(&seen, "x-source"), ["figway"]);
    }
    assert_eq!(values(&new.last(), "x-figway-shadow"), ["1"]);
}

// === rate limits ===

#[tokio::test]
async fn a_burst_past_the_bucket_is_429_with_retry_after_and_tokens_refill() {
    let app = Backend::start("app").await;
    let f = Figway::start(&route(
        &app.url(),
        &format!("[routes.rate_limit]\n{FIVE_PER_SECOND}"),
    ))
    .await;
    let mut conn = H1::connect(f.addr).await;
    let request = || {
        Request::get("/")
            .header("host", "test.local")
            .body(full(""))
            .unwrap()
    };
    let started = Instant::now();
    let mut admitted = 0;
    let limited = loop {
        let a = conn.send(request()).await;
        match a.status.as_u16() {
            200 => admitted += 1,
            429 => break a,
            other => panic!("status {other}"),
        }
        assert!(admitted < 100, "never limited");
    };
    let took = started.elapsed().as_secs_f64();
    // A full bucket lets 5 through at once; at most 5 more a second after.
    assert!(admitted >= 5, "{admitted} admitted");
    assert!(
        f64::from(admitted) <= 5.0 + (took * 5.0).ceil(),
        "{admitted} admitted in {took}s"
    );
    assert_eq!(limited.header("x-figway-error"), Some("rate_limited"));
    assert_eq!(limited.header("retry-after"), Some("1"));
    assert!(limited.header("x-request-id").is_some());
    assert!(limited.text().starts_with("too many requests"));
    assert_eq!(app.count(), admitted as usize, "the 429 never reached it");
    // A token is back within 200 ms (one token at 5/s).
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(conn.send(request()).await.status, 200);
    assert_eq!(app.count(), admitted as usize + 1);
}

/// Sends `n` requests as client `addr` (by `x-forwarded-for`) with `extra`
/// headers; the statuses.
async fn statuses(f: &Figway, n: usize, client: &str, extra: &[(&str, &str)]) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        let mut headers = vec![("x-forwarded-for", client)];
        headers.extend_from_slice(extra);
        out.push(get(f.addr, "/", &headers).await.status.as_u16());
    }
    out
}

const SLOW: &str = "[routes.rate_limit]\nrate = 0.1\nburst = 2\n";

#[tokio::test]
async fn client_ip_keys_limit_each_client_address() {
    let app = Backend::start("app").await;
    let f = Figway::start(&route_behind_proxy(&app.url(), SLOW)).await;
    assert_eq!(statuses(&f, 3, "10.0.0.1", &[]).await, [200, 200, 429]);
    assert_eq!(statuses(&f, 3, "10.0.0.2", &[]).await, [200, 200, 429]);
    assert_eq!(app.count(), 4);
}

#[tokio::test]
async fn header_keys_limit_each_value_and_fall_back_to_the_client_address() {
    let app = Backend::start("app").await;
    let f = Figway::start(&route_behind_proxy(
        &app.url(),
        &format!("{SLOW}key = \"header:X-User\"\n"),
    ))
    .await;
    let alice = [("x-user", "alice")];
    let bob = [("x-user", "bob")];
    // One client address, two users: each has a bucket of its own.
    assert_eq!(statuses(&f, 3, "10.0.0.1", &alice).await, [200, 200, 429]);
    assert_eq!(statuses(&f, 3, "10.0.0.1", &bob).await, [200, 200, 429]);
    // A user's bucket follows the user, not the address.
    assert_eq!(statuses(&f, 1, "10.0.0.9", &alice).await, [429]);
    // Without the header, the client address is the key: apart from the
    // users', and one per address.
    assert_eq!(statuses(&f, 3, "10.0.0.1", &[]).await, [200, 200, 429]);
    assert_eq!(statuses(&f, 3, "10.0.0.2", &[]).await, [200, 200, 429]);
    assert_eq!(app.count(), 8);
    let keys = f.shared.snapshot.load().routes[0]
        .rate_limit
        .as_ref()
        .unwrap()
        .limiter
        .keys();
    assert_eq!(keys, 4);
}

#[tokio::test]
async fn the_route_key_is_one_bucket_for_every_client() {
    let app = Backend::start("app").await;
    let f = Figway::start(&route_behind_proxy(
        &app.url(),
        &format!("{SLOW}key = \"route\"\n"),
    ))
    .await;
    assert_eq!(statuses(&f, 1, "10.0.0.1", &[]).await, [200]);
    assert_eq!(statuses(&f, 1, "10.0.0.2", &[("x-user", "a")]).await, [200]);
    assert_eq!(statuses(&f, 2, "10.0.0.3", &[]).await, [429, 429]);
    assert_eq!(app.count(), 2);
}

#[tokio::test]
async fn many_distinct_keys_each_get_a_bucket() {
    // The cap (100,000 keys, least recently used dropped first) is checked
    // on the limiter itself (src/rate_limit/tests.rs); here keys are
    // counted as requests make them.
    let app = Backend::start("app").await;
    let f = Figway::start(&route(
        &app.url(),
        "[routes.rate_limit]\nrate = 0.1\nburst = 1\nkey = \"header:x-user\"\n",
    ))
    .await;
    let mut conn = H1::connect(f.addr).await;
    for i in 0..300 {
        let req = Request::get("/")
            .header("host", "test.local")
            .header("x-user", format!("user-{i}"))
            .body(full(""))
            .unwrap();
        assert_eq!(conn.send(req).await.status, 200, "user {i}");
    }
    let snapshot = f.shared.snapshot.load();
    let limit = snapshot.routes[0].rate_limit.as_ref().unwrap();
    assert_eq!(limit.limiter.keys(), 300);
    assert_eq!(app.count(), 300);
}

#[tokio::test]
async fn a_reload_keeps_the_buckets_and_a_changed_limit_resets_them() {
    let app = Backend::start("app").await;
    let limit = "[routes.rate_limit]\nrate = 0.1\nburst = 2\nkey = \"route\"\n";
    let f = Figway::start_file(&route(&app.url(), limit)).await;
    assert_eq!(statuses(&f, 3, "10.0.0.1", &[]).await, [200, 200, 429]);
    // Another route added, this one's limit as it was: still empty.
    let more = format!(
        "{}[[routes]]\nname = \"other\"\nprefix = \"/other\"\nto = \"app\"\n",
        route(&app.url(), limit)
    );
    f.reload_ok(&more).await;
    assert_eq!(statuses(&f, 1, "10.0.0.1", &[]).await, [429]);
    // The same limit written differently (the default key spelled out
    // elsewhere) is still the same limit.
    let reordered = more.replace(
        limit,
        "[routes.rate_limit]\nkey = \"route\"\nburst = 2\nrate = 0.1\n",
    );
    f.reload_ok(&reordered).await;
    assert_eq!(statuses(&f, 1, "10.0.0.1", &[]).await, [429]);
    // A changed limit starts full.
    f.reload_ok(&more.replace("burst = 2", "burst = 3")).await;
    assert_eq!(statuses(&f, 4, "10.0.0.1", &[]).await, [200, 200, 200, 429]);
    // A renamed route is another route: its buckets start full.
    let renamed = more
        .replace("burst = 2", "burst = 3")
        .replace("name = \"api\"", "name = \"api2\"");
    f.reload_ok(&renamed).await;
    assert_eq!(statuses(&f, 1, "10.0.0.1", &[]).await, [200]);
    assert_eq!(app.count(), 2 + 3 + 1);
}

async fn scrape(admin: SocketAddr) -> prometheus_parse::Scrape {
    let text = get(admin, "/metrics", &[]).await.text();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// The value of the sample of `metric` with exactly these labels.
fn sample(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == metric
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{metric}: unexpected value {other:?}"),
        })
}

#[tokio::test]
async fn refusals_are_counted_as_429_without_an_upstream() {
    let app = Backend::start("app").await;
    let toml = config(&format!(
        "[upstreams.app]\ntargets = [\"{}\"]\n\
         [[routes]]\nname = \"api\"\nprefix = \"/\"\nto = \"app\"\n\
         [routes.rate_limit]\nrate = 0.1\nburst = 2\nkey = \"route\"\n\
         [[routes]]\nname = \"quiet\"\nprefix = \"/quiet\"\nto = \"app\"\n\
         [routes.rate_limit]\nrate = 1\n\
         [[routes]]\nname = \"free\"\nprefix = \"/free\"\nto = \"app\"\n",
        app.url()
    ));
    let f = Figway::start_file(&toml).await;
    for _ in 0..5 {
        get(f.addr, "/", &[]).await;
    }
    let s = scrape(f.admin).await;
    let limited = "figway_rate_limited_total";
    assert_eq!(sample(&s, limited, &[("route", "api")]), Some(3.0));
    // Present at zero from the load, for a limited route with no refusal.
    assert_eq!(sample(&s, limited, &[("route", "quiet")]), Some(0.0));
    assert_eq!(sample(&s, limited, &[("route", "free")]), None);
    let requests = "figway_requests_total";
    let code = |upstream: &'static str, code: &'static str| {
        sample(
            &s,
            requests,
            &[("route", "api"), ("upstream", upstream), ("code", code)],
        )
    };
    assert_eq!(code("", "429"), Some(3.0));
    assert_eq!(code("app", "200"), Some(2.0));
    assert_eq!(code("app", "429"), None);
    assert!(
        !s.samples
            .iter()
            .any(|x| x.metric == "figway_upstream_errors_total"
                && x.labels.get("kind") == Some("rate_limited")),
        "not an upstream error"
    );
    // A reload without the limit removes its series.
    f.reload_ok(&toml.replace("[routes.rate_limit]\nrate = 1\n", ""))
        .await;
    let s = scrape(f.admin).await;
    assert_eq!(sample(&s, limited, &[("route", "quiet")]), None);
    assert_eq!(sample(&s, limited, &[("route", "api")]), Some(3.0));
}

#[tokio::test]
async fn a_grpc_call_over_the_limit_gets_resource_exhausted() {
    let app = Backend::start("app").await;
    let f = Figway::start(&route(
        &app.url(),
        "[routes.rate_limit]\nrate = 0.1\nburst = 1\nkey = \"route\"\n",
    ))
    .await;
    assert_eq!(get(f.addr, "/", &[]).await.status, 200);
    let call = Request::post("http://test.local/pkg.Service/Method")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(full(""))
        .unwrap();
    let a = send_h2(f.addr, call).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("grpc-status"), Some("8"));
    assert_eq!(a.header("content-type"), Some("application/grpc"));
    assert_eq!(a.header("x-figway-error"), Some("rate_limited"));
    assert!(a.body.is_empty());
    assert_eq!(app.count(), 1);
}

#[tokio::test]
async fn routes_shows_the_edits_and_the_limit_with_defaults() {
    let app = Backend::start("app").await;
    let toml = config(&format!(
        "[upstreams.app]\ntargets = [\"{}\"]\n\
         [[routes]]\nname = \"api\"\nprefix = \"/\"\nto = \"app\"\n\
         [routes.headers]\nrequest_remove = [\"X-Debug\"]\nresponse_set = {{ \"x-a\" = \"1\" }}\n\
         [routes.rate_limit]\nrate = 2.5\n\
         [[routes]]\nname = \"plain\"\nprefix = \"/plain\"\nto = \"app\"\n",
        app.url()
    ));
    let f = Figway::start(&toml).await;
    let routes: serde_json::Value =
        serde_json::from_slice(&get(f.admin, "/routes", &[]).await.body).unwrap();
    let by_name = |n: &str| {
        routes
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == n)
            .unwrap()
            .clone()
    };
    let api = by_name("api");
    assert_eq!(
        api["headers"],
        serde_json::json!({
            "request_remove": ["x-debug"],
            "request_set": {},
            "response_remove": [],
            "response_set": {"x-a": "1"},
        })
    );
    // burst defaults to the whole requests of one second's rate.
    assert_eq!(
        api["rate_limit"],
        serde_json::json!({"rate": 2.5, "burst": 2, "key": "client_ip"})
    );
    let plain = by_name("plain");
    assert!(plain["headers"].is_null());
    assert!(plain["rate_limit"].is_null());
}

// === validation ===

/// Every error message for `rest` appended to a route on `/` (which ends
/// on line 9, so `rest` starts on line 10).
fn errors(rest: &str) -> Vec<String> {
    let text = format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n\
         [upstreams.app]\ntargets = [\"http://127.0.0.1:9\"]\n\
         [[routes]]\nname = \"api\"\nprefix = \"/\"\nto = \"app\"\n\
         # policies\n{rest}"
    );
    match figway::config::load_str(&text, Path::new("f.toml")) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.messages,
    }
}

/// Asserts the one error of `rest`, at `line:col` and `key`, mentions `text`.
#[track_caller]
fn rejects(rest: &str, line: usize, col: usize, key: &str, text: &str) {
    let all = errors(rest);
    let prefix = format!("f.toml:{line}:{col}: {key}: ");
    assert!(
        all.len() == 1 && all[0].starts_with(&prefix) && all[0].contains(text),
        "expected one error {prefix}...{text}...; got {all:#?}"
    );
}

#[test]
fn header_edit_errors_point_at_the_name_or_value() {
    let h = "[routes.headers]\n";
    rejects(
        &format!("{h}request_remove = [\"x-a\", \"host\"]\n"),
        11,
        26,
        "routes[0].headers.request_remove[1]",
        "cannot remove \"host\"",
    );
    rejects(
        &format!("{h}request_remove = [\"X-Request-Id\"]\n"),
        11,
        19,
        "routes[0].headers.request_remove[0]",
        "cannot remove \"x-request-id\"",
    );
    rejects(
        &format!("{h}request_remove = [\"bad name\"]\n"),
        11,
        19,
        "routes[0].headers.request_remove[0]",
        "invalid header name \"bad name\"",
    );
    rejects(
        &format!("{h}response_set = {{ \"x-a\" = \"line\\nbreak\" }}\n"),
        11,
        26,
        "routes[0].headers.response_set.x-a",
        "invalid header value",
    );
    rejects(
        &format!("{h}request_set = {{ \"a b\" = \"1\" }}\n"),
        11,
        17,
        "routes[0].headers.request_set.a b",
        "invalid header name",
    );
    for hop in [
        "connection",
        "Transfer-Encoding",
        "upgrade",
        "te",
        "keep-alive",
        "content-length",
    ] {
        rejects(
            &format!("{h}response_remove = [\"{hop}\"]\n"),
            11,
            20,
            "routes[0].headers.response_remove[0]",
            "cannot be edited",
        );
    }
    rejects(
        &format!("{h}request_set = {{ \"connection\" = \"close\" }}\n"),
        11,
        17,
        "routes[0].headers.request_set.connection",
        "cannot be edited",
    );
    rejects(
        &format!("{h}request_set = {{ \"x-figway-shadow\" = \"1\" }}\n"),
        11,
        17,
        "routes[0].headers.request_set.x-figway-shadow",
        "figway alone marks its shadow copies",
    );
    rejects(
        &format!("{h}request_set = {{ \"x-request-id\" = \"1\" }}\n"),
        11,
        17,
        "routes[0].headers.request_set.x-request-id",
        "cannot set \"x-request-id\"",
    );
    rejects(
        &format!("{h}response_set = {{ \"X-A\" = \"1\", \"x-a\" = \"2\" }}\n"),
        11,
        31,
        "routes[0].headers.response_set.x-a",
        "set twice (header names are case-insensitive) (first at column 18)",
    );
    rejects(
        &format!("{h}request_sets = {{ \"x-a\" = \"1\" }}\n"),
        11,
        1,
        "routes[0].headers.request_sets",
        "unknown key (did you mean \"request_set\"?)",
    );
    rejects(
        &format!("{h}request_remove = \"x-a\"\n"),
        11,
        18,
        "routes[0].headers.request_remove",
        "expected an array",
    );
}

#[test]
fn header_edits_that_are_allowed() {
    // Setting Host (as nginx's proxy_set_header Host) and a removal of a
    // name that is then set are fine; so is removing x-request-id from
    // nothing but the response side's sets... which is refused: checked above.
    let text = config(
        "[upstreams.app]\ntargets = [\"http://127.0.0.1:9\"]\n\
         [[routes]]\nprefix = \"/\"\nto = \"app\"\n\
         [routes.headers]\nrequest_remove = [\"x-a\", \"x-a\"]\n\
         request_set = { \"host\" = \"backend.internal\", \"x-a\" = \"\" }\n\
         response_remove = [\"x-request-id-not\"]\n",
    );
    let loaded = figway::config::load_str(&text, Path::new("f.toml")).unwrap();
    let edits = loaded.config.routes[0].headers.clone().unwrap();
    assert_eq!(edits.request_remove.len(), 1, "duplicates folded");
    assert_eq!(edits.request_set.len(), 2);
}

#[test]
fn rate_limit_errors_point_at_the_value() {
    let r = "[routes.rate_limit]\n";
    rejects(
        &format!("{r}burst = 3\n"),
        10,
        1,
        "routes[0].rate_limit.rate",
        "missing required key",
    );
    for (rate, col) in [("0", 8), ("-1", 8), ("0.0", 8), ("2e9", 8)] {
        rejects(
            &format!("{r}rate = {rate}\n"),
            11,
            col,
            "routes[0].rate_limit.rate",
            "above 0",
        );
    }
    rejects(
        &format!("{r}rate = \"fast\"\n"),
        11,
        8,
        "routes[0].rate_limit.rate",
        "expected a number",
    );
    rejects(
        &format!("{r}rate = 1\nburst = 0\n"),
        12,
        9,
        "routes[0].rate_limit.burst",
        "between 1 and",
    );
    rejects(
        &format!("{r}rate = 1\nburst = 1.5\n"),
        12,
        9,
        "routes[0].rate_limit.burst",
        "expected an integer",
    );
    rejects(
        &format!("{r}rate = 1\nkey = \"cookie:sid\"\n"),
        12,
        7,
        "routes[0].rate_limit.key",
        "expected \"client_ip\", \"header:NAME\" or \"route\"",
    );
    rejects(
        &format!("{r}rate = 1\nkey = \"rout\"\n"),
        12,
        7,
        "routes[0].rate_limit.key",
        "did you mean \"route\"?",
    );
    rejects(
        &format!("{r}rate = 1\nkey = \"header:a b\"\n"),
        12,
        7,
        "routes[0].rate_limit.key",
        "invalid header name \"a b\"",
    );
    rejects(
        &format!("{r}rate = 1\nbursts = 2\n"),
        12,
        1,
        "routes[0].rate_limit.bursts",
        "unknown key (did you mean \"burst\"?)",
    );
    rejects(
        "rate_limit = 5\n",
        10,
        14,
        "routes[0].rate_limit",
        "expected a table",
    );
}

#[test]
fn rate_limit_defaults() {
    let load = |limit: &str| {
        let text = config(&format!(
            "[upstreams.app]\ntargets = [\"http://127.0.0.1:9\"]\n\
             [[routes]]\nprefix = \"/\"\nto = \"app\"\n[routes.rate_limit]\n{limit}"
        ));
        let loaded = figway::config::load_str(&text, Path::new("f.toml")).unwrap();
        loaded.config.routes[0].rate_limit.clone().unwrap()
    };
    let l = load("rate = 100\n");
    assert_eq!(
        (l.rate, l.burst, l.key.to_string()),
        (100.0, 100, "client_ip".into())
    );
    let l = load("rate = 0.2\n");
    assert_eq!(l.burst, 1, "at least one");
    let l = load("rate = 2.9\nkey = \"header:X-Api-Key\"\n");
    assert_eq!((l.burst, l.key.to_string()), (2, "header:x-api-key".into()));
}
