//! The legacy inventory (SPEC §11) over real loopback HTTP: what a legacy
//! upstream answered, by path template, read from `GET /inventory` on the
//! admin address of the real server (in-process, and the binary with two
//! workers whose summaries are merged when read).

mod support;
use support::*;

use std::collections::HashMap;

use http::{Method, Request, Response, StatusCode};
use serde_json::Value;

/// `GET /inventory?query` on the admin address, as JSON.
async fn inventory(admin: std::net::SocketAddr, query: &str) -> Value {
    let answer = get(admin, &format!("/inventory{query}"), &[]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.header("content-type"), Some("application/json"));
    serde_json::from_slice(&answer.body).unwrap()
}

/// The entry of `route` in an inventory (fails when absent).
fn route<'a>(inv: &'a Value, name: &str) -> &'a Value {
    inv["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == name)
        .unwrap_or_else(|| panic!("no route {name} in {inv:#}"))
}

/// A route's paths as template -> (requests, error_bound).
fn paths(route: &Value) -> HashMap<String, (u64, u64)> {
    route["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["template"].as_str().unwrap().to_string(),
                (
                    p["requests"].as_u64().unwrap(),
                    p["error_bound"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

fn names(inv: &Value) -> Vec<String> {
    inv["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}@{}",
                r["route"].as_str().unwrap(),
                r["upstream"].as_str().unwrap()
            )
        })
        .collect()
}

/// Sends `GET path` on one kept-alive connection, `n` times.
async fn hit(conn: &mut H1, method: Method, path: &str, n: usize) {
    for _ in 0..n {
        let req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header("host", "test.local")
            .body(full(""))
            .unwrap();
        let answer = conn.send(req).await;
        assert!(
            answer.header("x-figway-error").is_none(),
            "{path}: {answer:?}"
        );
    }
}

fn monolith_config(monolith: &Backend, inventory: &str) -> String {
    config(&format!(
        "{inventory}\n\
         [upstreams.monolith]\nlegacy = true\ntargets = [\"{}\"]\n\
         [[routes]]\nname = \"orders\"\nprefix = \"/api/orders\"\nto = \"monolith\"\n\
         [[routes]]\nname = \"rest\"\nprefix = \"/\"\nto = \"monolith\"\n",
        monolith.url()
    ))
}

#[tokio::test]
async fn templates_fold_ids_and_counts_are_exact_below_capacity() {
    let monolith = Backend::start("monolith").await;
    let fig = Figway::start(&monolith_config(&monolith, "")).await;
    let mut conn = H1::connect(fig.addr).await;
    hit(&mut conn, Method::GET, "/api/orders/42", 3).await;
    hit(&mut conn, Method::GET, "/api/orders/43?expand=items", 1).await;
    hit(&mut conn, Method::POST, "/api/orders/7", 2).await;
    hit(
        &mut conn,
        Method::GET,
        "/api/orders/42/items/9F1C2B7E4A5D6C8F0011",
        1,
    )
    .await;
    hit(
        &mut conn,
        Method::DELETE,
        "/api/orders/123e4567-e89b-12d3-a456-426614174000/items/5",
        1,
    )
    .await;
    hit(
        &mut conn,
        Method::GET,
        "/api/orders/by-token/aGVsbG8td29ybGQtaGk_x-y1",
        2,
    )
    .await;
    // Near misses stay literal: 15 hex digits, base64url without a digit.
    hit(&mut conn, Method::GET, "/api/orders/deadbeefcafe012", 1).await;
    hit(
        &mut conn,
        Method::GET,
        "/api/orders/by-token/abcdefghijklmnopqrstuvwxyz",
        1,
    )
    .await;
    // Dot segments are normalised first, as routing does.
    hit(&mut conn, Method::GET, "/api/orders/x/../44", 1).await;
    hit(&mut conn, Method::GET, "/users/7/profile", 2).await;

    let inv = inventory(fig.admin, "").await;
    assert!(
        rfc3339_unix(inv["since"].as_str().unwrap()).is_some(),
        "{inv:#}"
    );
    let orders = route(&inv, "orders");
    assert_eq!(orders["upstream"], "monolith");
    assert_eq!(orders["requests"], 13);
    let expected: HashMap<String, (u64, u64)> = [
        ("/api/orders/{id}", (7, 0)),
        ("/api/orders/{id}/items/{id}", (2, 0)),
        ("/api/orders/by-token/{id}", (2, 0)),
        ("/api/orders/deadbeefcafe012", (1, 0)),
        ("/api/orders/by-token/abcdefghijklmnopqrstuvwxyz", (1, 0)),
    ]
    .into_iter()
    .map(|(t, c)| (t.to_string(), c))
    .collect();
    assert_eq!(paths(orders), expected);
    // Sorted by requests, methods counted by name.
    let top = &orders["paths"][0];
    assert_eq!(top["template"], "/api/orders/{id}");
    assert_eq!(top["methods"], serde_json::json!({"GET": 5, "POST": 2}));
    let items = orders["paths"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["template"] == "/api/orders/{id}/items/{id}")
        .unwrap();
    assert_eq!(items["methods"], serde_json::json!({"GET": 1, "DELETE": 1}));
    // The root route keeps nothing literal but `/`.
    let rest = route(&inv, "rest");
    assert_eq!(rest["requests"], 2);
    assert_eq!(paths(rest)["/users/{id}/profile"], (2, 0));
    // Routes by requests, descending.
    assert_eq!(names(&inv), ["orders@monolith", "rest@monolith"]);
}

#[tokio::test]
async fn a_flood_of_templates_stays_within_capacity_and_the_top_within_its_bound() {
    let monolith = Backend::start("monolith").await;
    let fig = Figway::start(&monolith_config(&monolith, "[inventory]\ncapacity = 8")).await;
    let mut conn = H1::connect(fig.addr).await;
    let mut truth: HashMap<String, u64> = HashMap::new();
    // Three heavy templates, 60 requests each, among 60 one-off names,
    // interleaved. Space-Saving keeps every template above total/capacity
    // (240 / 8 = 30 requests).
    for i in 0..60 {
        for heavy in ["a", "b", "c"] {
            hit(
                &mut conn,
                Method::GET,
                &format!("/api/orders/{i}/{heavy}"),
                1,
            )
            .await;
            *truth
                .entry(format!("/api/orders/{{id}}/{heavy}"))
                .or_default() += 1;
        }
        let noise = format!("/api/orders/page-{i}");
        hit(&mut conn, Method::GET, &noise, 1).await;
        truth.insert(noise, 1);
    }
    let inv = inventory(fig.admin, "?route=orders").await;
    let orders = route(&inv, "orders");
    assert_eq!(
        orders["requests"], 240,
        "the true total, not the listed sum"
    );
    let kept = paths(orders);
    assert!(kept.len() <= 8, "{kept:#?}");
    for (template, (count, error)) in &kept {
        let t = truth[template];
        assert!(
            count - error <= t && t <= *count,
            "{template}: {count} - {error} vs {t}"
        );
    }
    let top: Vec<&str> = orders["paths"].as_array().unwrap()[..3]
        .iter()
        .map(|p| p["template"].as_str().unwrap())
        .collect();
    for heavy in ["a", "b", "c"] {
        let template = format!("/api/orders/{{id}}/{heavy}");
        assert!(top.contains(&template.as_str()), "{top:?}");
        let (count, error) = kept[&template];
        assert!(count - error <= 60 && 60 <= count, "{template}");
    }
}

#[tokio::test]
async fn only_what_a_legacy_upstream_answered_is_counted() {
    let monolith = Backend::with(|seen| async move {
        // Any status the upstream answers counts, 5xx included.
        let status = if seen.uri.path().ends_with("/boom") {
            500
        } else {
            200
        };
        Response::builder()
            .status(status)
            .body(full("monolith"))
            .unwrap()
    })
    .await;
    let users = Backend::start("users").await;
    let orders = Backend::start("orders").await;
    let refused = refused_port().await;
    let fig = Figway::start(&config(&format!(
        "[upstreams.monolith]\nlegacy = true\ntargets = [\"{m}\"]\n\
         [upstreams.gone]\nlegacy = true\ntargets = [\"http://{refused}\"]\n\
         [upstreams.users]\ntargets = [\"{u}\"]\n\
         [upstreams.orders]\ntargets = [\"{o}\"]\n\
         [upstreams.crashed]\ntargets = [\"http://{refused}\"]\n\
         [[routes]]\nname = \"users\"\nprefix = \"/users\"\n\
         split = [{{ to = \"users\", weight = 1 }}, {{ to = \"monolith\", weight = 1 }}]\n\
         [[routes]]\nname = \"orders\"\nprefix = \"/orders\"\nto = \"orders\"\n\
         [[routes]]\nname = \"search\"\nprefix = \"/search\"\nto = \"crashed\"\nfallback = \"monolith\"\n\
         [[routes]]\nname = \"dead\"\nprefix = \"/dead\"\nto = \"gone\"\n\
         [[routes]]\nname = \"legacy\"\nprefix = \"/legacy\"\nto = \"monolith\"\n",
        m = monolith.url(),
        u = users.url(),
        o = orders.url(),
    )))
    .await;
    let mut conn = H1::connect(fig.addr).await;
    hit(&mut conn, Method::GET, "/users/1", 40).await;
    hit(&mut conn, Method::GET, "/orders/1", 5).await;
    // Every connect to `crashed` fails: the legacy fallback answers.
    hit(&mut conn, Method::GET, "/search/9", 3).await;
    hit(&mut conn, Method::GET, "/legacy/boom", 2).await;
    // figway's own 502: nobody answered.
    for _ in 0..3 {
        let answer = get(fig.addr, "/dead/1", &[]).await;
        assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    }
    // figway's own 404: no route.
    let answer = get(fig.addr, "/nowhere", &[]).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);

    let inv = inventory(fig.admin, "").await;
    let split_legacy = monolith
        .seen()
        .iter()
        .filter(|s| s.uri.path().starts_with("/users"))
        .count() as u64;
    assert!(
        split_legacy > 0 && split_legacy < 40,
        "{split_legacy} of 40"
    );
    let users_route = route(&inv, "users");
    assert_eq!(users_route["upstream"], "monolith");
    assert_eq!(users_route["requests"], split_legacy);
    assert_eq!(paths(users_route)["/users/{id}"], (split_legacy, 0));
    let search = route(&inv, "search");
    assert_eq!(search["upstream"], "monolith");
    assert_eq!(search["requests"], 3);
    let legacy = route(&inv, "legacy");
    assert_eq!(paths(legacy)["/legacy/boom"], (2, 0));
    // The legacy upstream that never answered is listed, with nothing.
    let dead = route(&inv, "dead");
    assert_eq!(dead["upstream"], "gone");
    assert_eq!(dead["requests"], 0);
    assert_eq!(dead["paths"], serde_json::json!([]));
    // No pair for a route on a new service, nor for the split's new side.
    assert_eq!(
        names(&inv),
        [
            "users@monolith",
            "search@monolith",
            "legacy@monolith",
            "dead@gone"
        ]
    );
}

#[tokio::test]
async fn route_and_top_narrow_the_answer_and_a_bad_top_is_400() {
    let monolith = Backend::start("monolith").await;
    let fig = Figway::start(&monolith_config(&monolith, "")).await;
    let mut conn = H1::connect(fig.addr).await;
    hit(&mut conn, Method::GET, "/api/orders/1", 3).await;
    hit(&mut conn, Method::GET, "/api/orders/1/lines", 2).await;
    hit(&mut conn, Method::GET, "/api/orders/search", 1).await;
    hit(&mut conn, Method::GET, "/home", 1).await;

    let only = inventory(fig.admin, "?route=orders").await;
    assert_eq!(names(&only), ["orders@monolith"]);
    assert_eq!(only["routes"][0]["paths"].as_array().unwrap().len(), 3);
    let top = inventory(fig.admin, "?route=orders&top=2").await;
    let listed: Vec<&str> = top["routes"][0]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["template"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["/api/orders/{id}", "/api/orders/{id}/lines"]);
    assert_eq!(top["routes"][0]["requests"], 6, "the total is not cut");
    let both = inventory(fig.admin, "?top=1").await;
    assert_eq!(names(&both), ["orders@monolith", "rest@monolith"]);
    assert!(both["routes"].as_array().unwrap().iter().all(|r| r["paths"]
        .as_array()
        .unwrap()
        .len()
        == 1));
    let unknown = inventory(fig.admin, "?route=nope").await;
    assert_eq!(unknown["routes"], serde_json::json!([]));
    assert!(unknown["since"].is_string());

    for bad in ["0", "-1", "two", "", "1.5", "99999999999999999999999"] {
        let answer = get(fig.admin, &format!("/inventory?top={bad}"), &[]).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "top={bad}");
        assert_eq!(answer.header("content-type"), Some("application/json"));
        let body: Value = serde_json::from_slice(&answer.body).unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("positive integer"),
            "{body}"
        );
    }
    let post = send(
        fig.admin,
        Request::post("/inventory").body(full("")).unwrap(),
    )
    .await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
}

#[tokio::test]
async fn a_route_named_by_its_prefix_can_be_asked_for_escaped() {
    let monolith = Backend::start("monolith").await;
    let fig = Figway::start(&config(&format!(
        "[upstreams.monolith]\nlegacy = true\ntargets = [\"{}\"]\n\
         [[routes]]\nprefix = \"/api/orders\"\nto = \"monolith\"\n",
        monolith.url()
    )))
    .await;
    let mut conn = H1::connect(fig.addr).await;
    hit(&mut conn, Method::GET, "/api/orders/1", 1).await;
    for query in ["?route=/api/orders", "?route=%2Fapi%2Forders"] {
        let inv = inventory(fig.admin, query).await;
        assert_eq!(names(&inv), ["/api/orders@monolith"], "{query}");
    }
}

/// The config of the reload tests: `orders` under `name`, on the legacy
/// monolith, and `extra` appended.
fn reload_config(monolith: &Backend, name: &str, extra: &str) -> String {
    config(&format!(
        "[upstreams.monolith]\nlegacy = true\ntargets = [\"{}\"]\n\
         [[routes]]\nname = \"{name}\"\nprefix = \"/api/orders\"\nto = \"monolith\"\n{extra}",
        monolith.url()
    ))
}

#[tokio::test]
async fn counts_survive_a_reload_and_a_renamed_route_starts_empty() {
    let monolith = Backend::start("monolith").await;
    let fig = Figway::start_file(&reload_config(&monolith, "orders", "")).await;
    let mut conn = H1::connect(fig.addr).await;
    hit(&mut conn, Method::GET, "/api/orders/1", 4).await;
    let before = inventory(fig.admin, "").await;

    // Another route added, the orders route untouched: its counts go on.
    fig.reload_ok(&reload_config(
        &monolith,
        "orders",
        "[[routes]]\nname = \"rest\"\nprefix = \"/\"\nto = \"monolith\"\n",
    ))
    .await;
    hit(&mut conn, Method::GET, "/api/orders/2", 1).await;
    let after = inventory(fig.admin, "").await;
    assert_eq!(after["since"], before["since"]);
    assert_eq!(route(&after, "orders")["requests"], 5);
    assert_eq!(paths(route(&after, "orders"))["/api/orders/{id}"], (5, 0));
    assert_eq!(route(&after, "rest")["requests"], 0);

    // Renamed: the old name's entries are gone, the new one starts at 0.
    fig.reload_ok(&reload_config(&monolith, "orders-v2", ""))
        .await;
    let renamed = inventory(fig.admin, "").await;
    assert_eq!(names(&renamed), ["orders-v2@monolith"]);
    assert_eq!(route(&renamed, "orders-v2")["requests"], 0);
    hit(&mut conn, Method::GET, "/api/orders/3", 1).await;
    let renamed = inventory(fig.admin, "").await;
    assert_eq!(route(&renamed, "orders-v2")["requests"], 1);

    // Renamed back: no entries come back from before.
    fig.reload_ok(&reload_config(&monolith, "orders", "")).await;
    let back = inventory(fig.admin, "").await;
    assert_eq!(route(&back, "orders")["requests"], 0);
}

#[tokio::test]
async fn a_changed_capacity_starts_counting_afresh() {
    let monolith = Backend::start("monolith").await;
    let fig = Figway::start_file(&reload_config(&monolith, "orders", "")).await;
    let mut conn = H1::connect(fig.addr).await;
    hit(&mut conn, Method::GET, "/api/orders/1", 3).await;
    let before = inventory(fig.admin, "").await;
    assert_eq!(route(&before, "orders")["requests"], 3);

    // The same section written out with its defaults changes nothing.
    fig.reload_ok(&reload_config(
        &monolith,
        "orders",
        "[inventory]\nenabled = true\ncapacity = 200\n",
    ))
    .await;
    assert_eq!(
        route(&inventory(fig.admin, "").await, "orders")["requests"],
        3
    );

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    fig.reload_ok(&reload_config(
        &monolith,
        "orders",
        "[inventory]\ncapacity = 2\n",
    ))
    .await;
    let fresh = inventory(fig.admin, "").await;
    assert_eq!(route(&fresh, "orders")["requests"], 0);
    let since = |v: &Value| rfc3339_unix(v["since"].as_str().unwrap()).unwrap();
    assert!(since(&fresh) > since(&before), "{fresh} {before}");
    for page in ["a", "b", "c", "a"] {
        hit(&mut conn, Method::GET, &format!("/api/orders/x/{page}"), 1).await;
    }
    let small = inventory(fig.admin, "").await;
    assert_eq!(route(&small, "orders")["requests"], 4);
    assert_eq!(
        route(&small, "orders")["paths"].as_array().unwrap().len(),
        2
    );
}

#[tokio::test]
async fn disabled_counts_nothing_and_says_so() {
    let monolith = Backend::start("monolith").await;
    let fig = Figway::start_file(&reload_config(
        &monolith,
        "orders",
        "[inventory]\nenabled = false\n",
    ))
    .await;
    let mut conn = H1::connect(fig.addr).await;
    hit(&mut conn, Method::GET, "/api/orders/1", 2).await;
    let off = inventory(fig.admin, "").await;
    assert_eq!(off, serde_json::json!({"since": null, "routes": []}));
    // Nothing is kept on the routes either: no request pays for it.
    let snapshot = fig.shared.snapshot.load();
    assert!(snapshot.routes.iter().all(|r| r.inventory.is_empty()));

    // Turned on by a reload: counting starts then.
    fig.reload_ok(&reload_config(&monolith, "orders", "")).await;
    hit(&mut conn, Method::GET, "/api/orders/1", 1).await;
    let on = inventory(fig.admin, "").await;
    assert!(on["since"].is_string());
    assert_eq!(route(&on, "orders")["requests"], 1);

    // And off again: the counts are gone.
    fig.reload_ok(&reload_config(
        &monolith,
        "orders",
        "[inventory]\nenabled = false\n",
    ))
    .await;
    let off = inventory(fig.admin, "").await;
    assert_eq!(off, serde_json::json!({"since": null, "routes": []}));
}

/// The binary with two workers, each a runtime on its own thread with its
/// own summaries: `GET /inventory` merges them. Forty connections, each
/// handed to a worker by the kernel (SO_REUSEPORT), so both count some.
#[tokio::test]
async fn two_workers_summaries_merge_into_exact_counts() {
    let monolith = Backend::start("monolith").await;
    let toml = format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n\
         [log]\naccess_log = false\n[runtime]\nworkers = 2\n\
         [upstreams.monolith]\nlegacy = true\ntargets = [\"{}\"]\n\
         [[routes]]\nname = \"orders\"\nprefix = \"/api/orders\"\nto = \"monolith\"\n",
        monolith.url()
    );
    let fig = FigwayProcess::spawn(&toml);
    for i in 0..40 {
        // A new connection each: the kernel spreads them over the workers.
        let answer = get(fig.addr, &format!("/api/orders/{i}"), &[]).await;
        assert_eq!(answer.status, StatusCode::OK);
        let answer = get(fig.addr, "/api/orders/new", &[]).await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    let inv = inventory(fig.admin, "").await;
    let orders = route(&inv, "orders");
    assert_eq!(orders["requests"], 80);
    let expected: HashMap<String, (u64, u64)> = [
        ("/api/orders/{id}".to_string(), (40, 0)),
        ("/api/orders/new".to_string(), (40, 0)),
    ]
    .into_iter()
    .collect();
    assert_eq!(paths(orders), expected);
}
