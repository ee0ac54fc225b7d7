//! Targets by DNS name as endpoints (SPEC §10, issue 13), with what this
//! machine resolves without a DNS server of the test's own: `localhost`
//! through `/etc/hosts` (127.0.0.1; with `dns_family = "all"`, every
//! address the file lists for it and no other), and `.invalid` names, which
//! never resolve (RFC 6761). Covered: the endpoint's `address` in `GET
//! /upstreams` and its `ip:port` as the metrics' `target`, the
//! `figway_upstream_endpoints` gauge and `figway_dns_resolutions_total`, a
//! name that does not resolve (start succeeds, 503 `no_healthy_upstream`
//! or the fallback, `check` warns), a reload adding a name, and the
//! endpoint state shared by a name and the IP it resolves to. Answers that
//! change under load are tests/dns.rs's, with a DNS server of its own.

mod support;
use support::*;

use std::time::Duration;

use http::StatusCode;
use serde_json::Value;

async fn upstreams(f: &Figway) -> Value {
    let a = get(f.admin, "/upstreams", &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    serde_json::from_slice(&a.body).expect("JSON")
}

async fn metrics(f: &Figway) -> String {
    get(f.admin, "/metrics", &[]).await.text()
}

/// The value of the series whose name and labels start `prefix`
/// (`figway_upstream_endpoints{upstream="orders"}`), if there is one.
fn series(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localhost_resolves_through_etc_hosts_to_one_endpoint() {
    let orders = Backend::start("orders").await;
    let port = orders.addr.port();
    let f = Figway::start(&config(&format!(
        r#"
[upstreams.orders]
targets = ["http://localhost:{port}"]
[[routes]]
prefix = "/"
to = "orders"
"#
    )))
    .await;
    let r = get(f.addr, "/x", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-backend"), Some("orders"));

    let v = upstreams(&f).await;
    let targets = v["orders"]["targets"].as_array().expect("targets");
    assert_eq!(targets.len(), 1, "{v}");
    assert_eq!(targets[0]["address"], format!("127.0.0.1:{port}"), "{v}");
    assert_eq!(targets[0]["url"], format!("http://localhost:{port}"), "{v}");

    let m = metrics(&f).await;
    assert_eq!(
        series(&m, r#"figway_upstream_endpoints{upstream="orders"}"#),
        Some(1.0),
        "{m}"
    );
    assert!(
        series(
            &m,
            r#"figway_dns_resolutions_total{result="ok",upstream="orders"}"#
        )
        .is_some_and(|n| n >= 1.0),
        "{m}"
    );
    let target_label =
        format!(r#"figway_upstream_target_healthy{{target="127.0.0.1:{port}",upstream="orders"}}"#);
    assert_eq!(series(&m, &target_label), Some(1.0), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_family_all_makes_every_address_etc_hosts_lists_an_endpoint() {
    // What /etc/hosts lists for localhost, and no other address: on a
    // machine whose file has `127.0.0.1 localhost` alone, no [::1]
    // endpoint (the resolver's built-in RFC 6761 answer is not used).
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let mut listed: Vec<std::net::IpAddr> = hosts
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let ip = words.next()?.parse().ok()?;
            words
                .any(|w| w.eq_ignore_ascii_case("localhost"))
                .then_some(ip)
        })
        .collect();
    listed.sort();
    listed.dedup();
    let orders = Backend::start("orders").await;
    let port = orders.addr.port();
    let f = Figway::start(&config(&format!(
        r#"
[upstreams.orders]
targets = ["http://localhost:{port}"]
dns_family = "all"
[[routes]]
prefix = "/"
to = "orders"
"#
    )))
    .await;
    let v = upstreams(&f).await;
    let mut addresses: Vec<String> = v["orders"]["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|t| t["address"].as_str().unwrap_or("").to_string())
        .collect();
    addresses.sort();
    let mut want: Vec<String> = listed
        .iter()
        .map(|ip| std::net::SocketAddr::new(*ip, port).to_string())
        .collect();
    want.sort();
    assert_eq!(addresses, want, "{v}");
    let m = metrics(&f).await;
    assert_eq!(
        series(&m, r#"figway_upstream_endpoints{upstream="orders"}"#),
        Some(want.len() as f64),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_does_not_resolve_starts_empty_and_answers_503_or_falls_back() {
    let monolith = Backend::start("monolith").await;
    let started = std::time::Instant::now();
    let f = Figway::start(&config(&format!(
        r#"
[upstreams.monolith]
legacy = true
targets = ["{}"]
[upstreams.orders]
targets = ["http://orders.figway-test.invalid:8080"]
[upstreams.users]
targets = [{{ url = "http://users.figway-test.invalid:8080", weight = 2 }}]
balance = "least_request"
[upstreams.carts]
targets = ["http://carts.figway-test.invalid:8080"]
balance = "hash"
hash_key = "header:x-user"

[[routes]]
prefix = "/orders"
to = "orders"
[[routes]]
prefix = "/users"
to = "users"
[[routes]]
prefix = "/carts"
to = "carts"
fallback = "monolith"
[[routes]]
prefix = "/"
to = "monolith"
"#,
        monolith.url()
    )))
    .await;
    // NXDOMAIN is an answer, not a wait.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    for path in ["/orders/1", "/users/1"] {
        let r = get(f.addr, path, &[("x-user", "7")]).await;
        assert_eq!(
            r.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}: {}",
            r.text()
        );
        assert_eq!(
            r.header("x-figway-error"),
            Some("no_healthy_upstream"),
            "{path}"
        );
    }
    let r = get(f.addr, "/carts/1", &[("x-user", "7")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-backend"), Some("monolith"));

    let v = upstreams(&f).await;
    assert_eq!(v["orders"]["targets"], serde_json::json!([]), "{v}");
    let m = metrics(&f).await;
    assert_eq!(
        series(&m, r#"figway_upstream_endpoints{upstream="orders"}"#),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        series(&m, r#"figway_upstream_endpoints{upstream="monolith"}"#),
        Some(1.0),
        "{m}"
    );
    assert!(
        series(
            &m,
            r#"figway_dns_resolutions_total{result="empty",upstream="orders"}"#
        )
        .is_some_and(|n| n >= 1.0),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_adds_a_name_resolves_it_before_the_swap() {
    let monolith = Backend::start("monolith").await;
    let orders = Backend::start("orders").await;
    let base = format!(
        r#"
[upstreams.monolith]
legacy = true
targets = ["{}"]
[[routes]]
prefix = "/"
to = "monolith"
"#,
        monolith.url()
    );
    let f = Figway::start_file(&config(&base)).await;
    let with_orders = format!(
        r#"{base}
[upstreams.orders]
targets = ["http://localhost:{}"]
[[routes]]
prefix = "/orders"
to = "orders"
"#,
        orders.addr.port()
    );
    f.reload_ok(&config(&with_orders)).await;
    // At once: the name resolved before the new table went in.
    let r = get(f.addr, "/orders/1", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-backend"), Some("orders"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_and_the_ip_it_resolves_to_are_one_endpoint() {
    let orders = Backend::start("orders").await;
    let port = orders.addr.port();
    let f = Figway::start(&config(&format!(
        r#"
[upstreams.orders]
targets = [{{ url = "http://127.0.0.1:{port}", weight = 3 }}, "http://localhost:{port}"]
[[routes]]
prefix = "/"
to = "orders"
"#
    )))
    .await;
    let v = upstreams(&f).await;
    let targets = v["orders"]["targets"].as_array().expect("targets");
    assert_eq!(targets.len(), 1, "{v}");
    assert_eq!(targets[0]["weight"], 3, "the first target's weight: {v}");
    assert_eq!(targets[0]["url"], format!("http://127.0.0.1:{port}"), "{v}");
}

#[test]
fn check_warns_about_a_name_that_does_not_resolve_and_passes() {
    let dir = std::env::temp_dir().join(format!("figway-endpoints-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("figway.toml");
    std::fs::write(
        &path,
        config(
            r#"
[upstreams.monolith]
legacy = true
targets = ["http://localhost:8000", "http://monolith.figway-test.invalid:8000"]
[[routes]]
prefix = "/"
to = "monolith"
"#,
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_figway"))
        .arg("check")
        .arg(&path)
        .output()
        .expect("run figway check");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stdout}");
    assert!(
        warnings[0].starts_with(
            "warning: upstreams.monolith.targets[1]: monolith.figway-test.invalid does not resolve now"
        ),
        "{stdout}"
    );
}
