//! Targets by DNS name (SPEC §10, issue 13), black-box: the figway binary
//! with `[runtime] resolver` pointed at a DNS server the test runs on
//! loopback and changes while figway runs (tests/support/dns.rs), and real
//! backends on 127.0.0.1, 127.0.0.2, 127.0.0.3 and [::1] sharing one port.
//!
//! Checked: the test server itself; a name with two records balances over
//! both; a changed answer moves traffic under load with no failed request
//! and closes the old endpoint's pooled connections; SERVFAIL and silence
//! keep the last set; NXDOMAIN at start serves 503 `no_healthy_upstream` (or
//! the fallback) until the name appears; `localhost` through /etc/hosts;
//! `dns_family`; ejection and health of a surviving endpoint are kept;
//! `/upstreams` and the metrics; `figway check` warns; IP literals are never
//! resolved; truncated answers are asked again over TCP; `resolve_interval`
//! (per upstream, and not stretched by long TTLs); a reload re-resolves.
//!
//! Nothing waits a fixed time: every wait polls for what it expects, with a
//! deadline, and `resolve_interval` is 100ms where changes must be seen.

mod support;
use support::dns::*;
use support::*;

use std::collections::BTreeSet;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use http::{Request, Response, StatusCode};
use serde_json::Value;

/// How long anything that should happen within a few resolve intervals may
/// take before the test fails.
const WAIT: Duration = Duration::from_secs(5);

// === helpers ===

/// The binary on `toml`, started off the runtime's threads (the DNS server
/// the test runs must keep answering while figway starts).
async fn spawn(toml: String) -> FigwayProcess {
    tokio::task::spawn_blocking(move || FigwayProcess::spawn(&toml))
        .await
        .unwrap()
}

/// A config whose names are asked of `dns` every 100ms, around `body`
/// (upstreams and routes; no `[defaults]` of its own).
fn dns_config(dns: &DnsServer, body: &str) -> String {
    config(&format!(
        "{}\n[defaults]\nresolve_interval = \"100ms\"\nconnect_timeout = \"500ms\"\n{body}",
        dns.runtime_toml()
    ))
}

/// One upstream `svc` with one target `http://NAME:PORT`, and the route
/// `/` to it.
fn one_name(name: &str, port: u16) -> String {
    format!(
        r#"
[upstreams.svc]
targets = ["http://{name}:{port}"]

[[routes]]
prefix = "/"
to = "svc"
"#
    )
}

/// `ip:port` as SPEC §10 writes an endpoint's address (IPv6 in brackets).
fn endpoint(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

/// Polls `check` every 20ms until it returns Ok; panics with its last
/// complaint after `limit`.
async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what}: not within {limit:?}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

async fn upstreams(admin: SocketAddr) -> Value {
    let a = get(admin, "/upstreams", &[]).await;
    assert_eq!(a.status, StatusCode::OK, "GET /upstreams: {}", a.text());
    serde_json::from_slice(&a.body).unwrap()
}

/// The `address` of each target object of `upstream`, sorted.
fn addresses(all: &Value, upstream: &str) -> Vec<String> {
    let targets = all[upstream]["targets"]
        .as_array()
        .unwrap_or_else(|| panic!("no upstream {upstream:?} in /upstreams: {all}"));
    let mut out: Vec<String> = targets
        .iter()
        .map(|t| {
            t["address"]
                .as_str()
                .unwrap_or_else(|| panic!("target without \"address\": {t}"))
                .to_string()
        })
        .collect();
    out.sort();
    out
}

/// The target object of `upstream` whose address is `address`.
fn target<'a>(all: &'a Value, upstream: &str, address: &str) -> Option<&'a Value> {
    all[upstream]["targets"]
        .as_array()?
        .iter()
        .find(|t| t["address"] == address)
}

/// Waits until `/upstreams` lists exactly `want` (any order) for `upstream`.
async fn await_addresses(admin: SocketAddr, upstream: &str, want: &[String]) -> Value {
    let mut want = want.to_vec();
    want.sort();
    eventually(
        &format!("/upstreams: {upstream} at {want:?}"),
        WAIT,
        || async {
            let all = upstreams(admin).await;
            let have = addresses(&all, upstream);
            if have == want {
                Ok(all)
            } else {
                Err(format!("{have:?}"))
            }
        },
    )
    .await
}

async fn scrape(admin: SocketAddr) -> prometheus_parse::Scrape {
    let text = get(admin, "/metrics", &[]).await.text();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// The value of the one sample of `metric` with (at least) these labels.
fn sample(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{metric}: unexpected value {other:?}"),
        })
}

/// Waits until `metric{labels}` satisfies `ok`.
async fn await_metric(
    admin: SocketAddr,
    metric: &str,
    labels: &[(&str, &str)],
    ok: impl Fn(Option<f64>) -> bool,
) {
    eventually(&format!("{metric}{labels:?}"), WAIT, || async {
        let value = sample(&scrape(admin).await, metric, labels);
        if ok(value) {
            Ok(())
        } else {
            Err(format!("{value:?}"))
        }
    })
    .await
}

async fn admin_post(admin: SocketAddr, path: &str) -> Answer {
    let req = Request::post(path)
        .header("host", "admin")
        .body(full(""))
        .unwrap();
    send(admin, req).await
}

// === the test DNS server ===

#[tokio::test]
async fn the_test_dns_server_answers_as_the_test_says() {
    let dns = DnsServer::start().await;
    let wait = Duration::from_secs(2);
    dns.set("two.figway.test", &[V4_A, V4_B, V6_LOOPBACK]);

    let a = ask_udp(dns.addr, "two.figway.test.", RecordType::A, wait)
        .await
        .expect("an answer");
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert_eq!(answer_ips(&a), vec![V4_A, V4_B]);
    let aaaa = ask_udp(dns.addr, "TWO.figway.test.", RecordType::AAAA, wait)
        .await
        .unwrap();
    assert_eq!(answer_ips(&aaaa), vec![V6_LOOPBACK], "names are case-blind");
    let mx = ask_udp(dns.addr, "two.figway.test.", RecordType::MX, wait)
        .await
        .unwrap();
    assert_eq!(mx.metadata.response_code, ResponseCode::NoError);
    assert!(mx.answers.is_empty());

    let unknown = ask_udp(dns.addr, "nobody.figway.test.", RecordType::A, wait)
        .await
        .unwrap();
    assert_eq!(unknown.metadata.response_code, ResponseCode::NXDomain);
    dns.answer("two.figway.test", Reply::ServFail);
    let failed = ask_udp(dns.addr, "two.figway.test.", RecordType::A, wait)
        .await
        .unwrap();
    assert_eq!(failed.metadata.response_code, ResponseCode::ServFail);
    dns.answer("two.figway.test", Reply::Silence);
    let silent = ask_udp(
        dns.addr,
        "two.figway.test.",
        RecordType::A,
        Duration::from_millis(200),
    )
    .await;
    assert!(silent.is_none(), "silence answered: {silent:?}");

    // Truncated over UDP, whole over TCP on the same port.
    dns.set("big.figway.test", &[V4_C]);
    dns.truncate_udp("big.figway.test", true);
    let udp = ask_udp(dns.addr, "big.figway.test.", RecordType::A, wait)
        .await
        .unwrap();
    assert!(udp.metadata.truncation && udp.answers.is_empty());
    let tcp = ask_tcp(dns.addr, "big.figway.test.", RecordType::A, wait)
        .await
        .unwrap();
    assert!(!tcp.metadata.truncation);
    assert_eq!(answer_ips(&tcp), vec![V4_C]);

    assert_eq!(dns.queries("two.figway.test"), 5);
    assert_eq!(dns.queries("big.figway.test"), 2);
    assert_eq!(dns.queries_over("big.figway.test", Transport::Tcp), 1);
    assert_eq!(dns.total_queries(), 8);
}

// === endpoints per address ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_with_two_records_balances_over_both() {
    let dns = DnsServer::start().await;
    let (port, b) = backends_on_one_port(&[V4_A, V4_B]);
    dns.set("two.figway.test", &[V4_A, V4_B]);
    let fig = spawn(dns_config(&dns, &one_name("two.figway.test", port))).await;

    let all = await_addresses(
        fig.admin,
        "svc",
        &[endpoint(V4_A, port), endpoint(V4_B, port)],
    )
    .await;
    for t in all["svc"]["targets"].as_array().unwrap() {
        assert_eq!(
            t["url"],
            format!("http://two.figway.test:{port}"),
            "url as configured: {t}"
        );
        assert_eq!(t["weight"], 1, "{t}");
        assert_eq!(t["healthy"], true, "{t}");
    }

    for _ in 0..20 {
        let a = get(fig.addr, "/", &[]).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    }
    let (on_a, on_b) = (b[0].count(), b[1].count());
    assert_eq!(on_a + on_b, 20);
    assert!(
        (8..=12).contains(&on_a),
        "round robin over two endpoints: {on_a} on 127.0.0.1, {on_b} on 127.0.0.2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_answer_moves_traffic_under_load_and_closes_the_old_connections() {
    let dns = DnsServer::start().await;
    let (port, b) = backends_on_one_port(&[V4_A, V4_B]);
    let (old, new) = (&b[0], &b[1]);
    dns.set("moving.figway.test", &[V4_A]);
    // idle_timeout far beyond the test: the old connections must close
    // because their endpoint left, not because they idled out.
    let toml = config(&format!(
        "{}\n[defaults]\nresolve_interval = \"100ms\"\nidle_timeout = \"5m\"\n{}",
        dns.runtime_toml(),
        one_name("moving.figway.test", port)
    ));
    let fig = spawn(toml).await;
    await_addresses(fig.admin, "svc", &[endpoint(V4_A, port)]).await;

    // Four clients on keep-alive connections, one request after another.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, failures, addr) = (stop.clone(), failures.clone(), fig.addr);
        clients.push(tokio::spawn(async move {
            let mut conn = H1::connect(addr).await;
            let mut sent = 0u32;
            while !stop.load(Ordering::SeqCst) {
                let req = Request::get("/load")
                    .header("host", "test.local")
                    .body(full(""))
                    .unwrap();
                let a = conn.send(req).await;
                sent += 1;
                if a.status != StatusCode::OK {
                    failures.lock().unwrap().push(format!(
                        "{} {:?} {}",
                        a.status,
                        a.header("x-figway-error"),
                        a.text()
                    ));
                }
            }
            sent
        }));
    }

    eventually("load on the old endpoint", WAIT, || async {
        match (old.count(), old.open_connections()) {
            (n, open) if n >= 50 && open > 0 => Ok(()),
            other => Err(format!("(requests, open connections) = {other:?}")),
        }
    })
    .await;

    dns.set("moving.figway.test", &[V4_B]);
    eventually("traffic on the new endpoint", WAIT, || async {
        match new.count() {
            n if n >= 50 => Ok(()),
            n => Err(format!("{n} requests on 127.0.0.2")),
        }
    })
    .await;
    eventually(
        "the old endpoint's pooled connections closed",
        WAIT,
        || async {
            match old.open_connections() {
                0 => Ok(()),
                n => Err(format!("{n} still open to 127.0.0.1")),
            }
        },
    )
    .await;

    // From now on the old endpoint sees nothing: no request, no connection.
    let (old_requests, old_accepted) = (old.count(), old.accepted());
    let new_requests = new.count();
    eventually("more load on the new endpoint", WAIT, || async {
        match new.count() - new_requests {
            n if n >= 100 => Ok(()),
            n => Err(format!("{n} more")),
        }
    })
    .await;
    assert_eq!(old.count(), old_requests, "requests to a departed endpoint");
    assert_eq!(
        old.accepted(),
        old_accepted,
        "connections to a departed endpoint"
    );

    stop.store(true, Ordering::SeqCst);
    let mut sent = 0;
    for c in clients {
        sent += c.await.expect("a client failed (request error)");
    }
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    await_addresses(fig.admin, "svc", &[endpoint(V4_B, port)]).await;
}

// === failed lookups and names that do not resolve ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servfail_and_silence_keep_serving_on_the_last_set() {
    let dns = DnsServer::start().await;
    let (port, b) = backends_on_one_port(&[V4_A]);
    dns.set("flaky.figway.test", &[V4_A]);
    let fig = spawn(dns_config(&dns, &one_name("flaky.figway.test", port))).await;
    await_addresses(fig.admin, "svc", &[endpoint(V4_A, port)]).await;

    dns.answer("flaky.figway.test", Reply::ServFail);
    // Three lookups after the switch, all failed.
    dns.await_queries(
        "flaky.figway.test",
        dns.queries("flaky.figway.test") + 3,
        WAIT,
    )
    .await;
    await_metric(
        fig.admin,
        "figway_dns_resolutions_total",
        &[("upstream", "svc"), ("result", "error")],
        |v| v.unwrap_or(0.0) >= 1.0,
    )
    .await;
    assert_eq!(
        addresses(&upstreams(fig.admin).await, "svc"),
        vec![endpoint(V4_A, port)],
        "SERVFAIL keeps the last good set"
    );
    for _ in 0..10 {
        let a = get(fig.addr, "/", &[]).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    }
    assert_eq!(b[0].count(), 10);

    // A server that does not answer: a lookup is pending, and requests
    // are served meanwhile on the last set.
    dns.answer("flaky.figway.test", Reply::Silence);
    dns.await_queries("flaky.figway.test", dns.queries("flaky.figway.test"), WAIT)
        .await;
    for _ in 0..10 {
        let started = Instant::now();
        let a = get(fig.addr, "/", &[]).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a request waited on a lookup: {:?}",
            started.elapsed()
        );
    }
    assert_eq!(b[0].count(), 20);
    assert_eq!(
        addresses(&upstreams(fig.admin).await, "svc"),
        vec![endpoint(V4_A, port)],
        "an unanswered lookup keeps the last good set"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nxdomain_at_start_answers_503_until_the_name_appears() {
    let dns = DnsServer::start().await;
    let (port, b) = backends_on_one_port(&[V4_A]);
    dns.answer("later.figway.test", Reply::NxDomain);
    // Starting at all is the first assertion: spawn panics if figway exits.
    let fig = spawn(dns_config(&dns, &one_name("later.figway.test", port))).await;

    dns.await_queries("later.figway.test", 0, WAIT).await;
    await_metric(
        fig.admin,
        "figway_dns_resolutions_total",
        &[("upstream", "svc"), ("result", "empty")],
        |v| v.unwrap_or(0.0) >= 1.0,
    )
    .await;
    let a = get(fig.addr, "/", &[]).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text());
    assert_eq!(a.header("x-figway-error"), Some("no_healthy_upstream"));
    assert_eq!(
        addresses(&upstreams(fig.admin).await, "svc"),
        Vec::<String>::new()
    );

    dns.set("later.figway.test", &[V4_A]);
    eventually("traffic once the name resolves", WAIT, || async {
        let a = get(fig.addr, "/", &[]).await;
        match a.status {
            StatusCode::OK => Ok(()),
            s => Err(format!("{s} {:?}", a.header("x-figway-error"))),
        }
    })
    .await;
    assert_eq!(b[0].count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nxdomain_at_start_is_served_by_the_fallback_until_the_name_appears() {
    let dns = DnsServer::start().await;
    let (port, b) = backends_on_one_port(&[V4_A]);
    let monolith = Backend::start("monolith").await;
    dns.answer("later.figway.test", Reply::NxDomain);
    let fig = spawn(dns_config(
        &dns,
        &format!(
            r#"
[upstreams.monolith]
legacy = true
targets = ["{}"]

[upstreams.svc]
targets = ["http://later.figway.test:{port}"]

[[routes]]
prefix = "/"
to = "svc"
fallback = "monolith"
"#,
            monolith.url()
        ),
    ))
    .await;

    dns.await_queries("later.figway.test", 0, WAIT).await;
    let a = get(fig.addr, "/", &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.header("x-backend"), Some("monolith"));

    dns.set("later.figway.test", &[V4_A]);
    eventually("the service once its name resolves", WAIT, || async {
        let a = get(fig.addr, "/", &[]).await;
        match a.header("x-backend") {
            Some("127.0.0.1") => Ok(()),
            other => Err(format!("{} from {other:?}", a.status)),
        }
    })
    .await;
    assert_eq!(b[0].count(), 1);
}

// === which addresses ===

/// The addresses /etc/hosts lists for `name`, in file order.
fn hosts_file_addresses(name: &str) -> Vec<IpAddr> {
    let text = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap();
        let mut fields = line.split_whitespace();
        let Some(Ok(ip)) = fields.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        if fields.any(|n| n.eq_ignore_ascii_case(name)) && !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localhost_resolves_through_etc_hosts() {
    let listed = hosts_file_addresses("localhost");
    assert!(!listed.is_empty(), "/etc/hosts lists no localhost");
    let listed_v4: Vec<IpAddr> = listed.iter().copied().filter(IpAddr::is_ipv4).collect();
    // v4_preferred: the IPv4 addresses, or the IPv6 ones when there is none.
    let preferred = if listed_v4.is_empty() {
        listed.clone()
    } else {
        listed_v4
    };
    let bindable: Vec<IpAddr> = listed.iter().copied().filter(|ip| can_bind(*ip)).collect();
    let (port, b) = backends_on_one_port(&bindable);
    // No [runtime] resolver: the system's configuration, /etc/hosts first.
    let fig = spawn(config(&format!(
        r#"
[defaults]
resolve_interval = "100ms"

[upstreams.default_family]
targets = ["http://localhost:{port}"]

[upstreams.all_families]
targets = ["http://localhost:{port}"]
dns_family = "all"

[[routes]]
prefix = "/default"
to = "default_family"

[[routes]]
prefix = "/all"
to = "all_families"
"#
    )))
    .await;

    let want: Vec<String> = preferred.iter().map(|ip| endpoint(*ip, port)).collect();
    await_addresses(fig.admin, "default_family", &want).await;
    // "all": every address /etc/hosts lists for localhost, and no other
    // (here /etc/hosts may list 127.0.0.1 alone, without ::1).
    //
    let want_all: Vec<String> = listed.iter().map(|ip| endpoint(*ip, port)).collect();
    await_addresses(fig.admin, "all_families", &want_all).await;

    let a = get(fig.addr, "/default", &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(b.iter().map(Backend::count).sum::<usize>(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_family_chooses_which_addresses_become_endpoints() {
    if !can_bind(V6_LOOPBACK) {
        eprintln!("skipped: no IPv6 loopback on this machine");
        return;
    }
    let dns = DnsServer::start().await;
    let (port, b) = backends_on_one_port(&[V4_A, V6_LOOPBACK]);
    dns.set("dual.figway.test", &[V4_A, V6_LOOPBACK]);
    dns.set("v4only.figway.test", &[V4_A]);
    dns.set("v6only.figway.test", &[V6_LOOPBACK]);
    let v4 = endpoint(V4_A, port);
    let v6 = endpoint(V6_LOOPBACK, port);
    assert_eq!(v6, format!("[::1]:{port}"));
    // (upstream, dns_family or None for the [defaults] one, name, endpoints)
    let cases: Vec<(&str, Option<&str>, &str, Vec<String>)> = vec![
        ("pref4_dual", Some("v4_preferred"), "dual", vec![v4.clone()]),
        (
            "pref4_v6only",
            Some("v4_preferred"),
            "v6only",
            vec![v6.clone()],
        ),
        ("pref6_dual", Some("v6_preferred"), "dual", vec![v6.clone()]),
        (
            "pref6_v4only",
            Some("v6_preferred"),
            "v4only",
            vec![v4.clone()],
        ),
        (
            "all_dual",
            Some("all"),
            "dual",
            vec![v4.clone(), v6.clone()],
        ),
        ("all_v4only", Some("all"), "v4only", vec![v4.clone()]),
        ("v4_dual", Some("v4"), "dual", vec![v4.clone()]),
        ("v4_v6only", Some("v4"), "v6only", vec![]),
        ("v6_dual", Some("v6"), "dual", vec![v6.clone()]),
        ("v6_v4only", Some("v6"), "v4only", vec![]),
        ("inherited_dual", None, "dual", vec![v6.clone()]),
    ];
    let mut body = String::new();
    for (upstream, family, name, _) in &cases {
        body += &format!(
            "\n[upstreams.{upstream}]\ntargets = [\"http://{name}.figway.test:{port}\"]\n"
        );
        if let Some(family) = family {
            body += &format!("dns_family = \"{family}\"\n");
        }
    }
    for (upstream, ..) in &cases {
        body += &format!("\n[[routes]]\nprefix = \"/{upstream}\"\nto = \"{upstream}\"\n");
    }
    let toml = config(&format!(
        "{}\n[defaults]\nresolve_interval = \"100ms\"\ndns_family = \"v6_preferred\"\n{body}",
        dns.runtime_toml()
    ));
    let fig = spawn(toml).await;

    let want: Vec<(String, Vec<String>)> = cases
        .iter()
        .map(|(u, _, _, w)| {
            let mut w = w.clone();
            w.sort();
            (u.to_string(), w)
        })
        .collect();
    eventually("every upstream at its family's addresses", WAIT, || async {
        let all = upstreams(fig.admin).await;
        let wrong: Vec<String> = want
            .iter()
            .filter_map(|(u, w)| {
                let have = addresses(&all, u);
                (&have != w).then(|| format!("{u}: {have:?}, want {w:?}"))
            })
            .collect();
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("; "))
        }
    })
    .await;

    // Traffic reaches the IPv6 endpoint, and an upstream with no address of
    // its family answers 503.
    let a = get(fig.addr, "/v6_dual", &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.header("x-backend"), Some("::1"));
    assert_eq!(b[1].count(), 1);
    let a = get(fig.addr, "/v4_v6only", &[]).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text());
    assert_eq!(a.header("x-figway-error"), Some("no_healthy_upstream"));
}

// === state of surviving endpoints ===

/// A backend on `listener` answering `/health` with the status in `health`
/// and everything else with the status in `status`.
fn switchable(
    listener: tokio::net::TcpListener,
    name: &'static str,
) -> (Backend, Arc<AtomicU16>, Arc<AtomicU16>) {
    let health = Arc::new(AtomicU16::new(200));
    let status = Arc::new(AtomicU16::new(200));
    let (h, s) = (health.clone(), status.clone());
    let backend = Backend::with_on(listener, move |seen: Seen| {
        let code = if seen.uri.path() == "/health" {
            h.load(Ordering::SeqCst)
        } else {
            s.load(Ordering::SeqCst)
        };
        async move {
            Response::builder()
                .status(code)
                .header("x-backend", name)
                .body(full(name))
                .unwrap()
        }
    });
    (backend, health, status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_surviving_endpoint_keeps_its_ejection_across_re_resolution() {
    let dns = DnsServer::start().await;
    let (port, listeners) = listeners_on_one_port(&[V4_A, V4_B, V4_C]);
    let mut l = listeners.into_iter();
    let (a, _, _) = switchable(l.next().unwrap(), "a");
    let (b, _, b_status) = switchable(l.next().unwrap(), "b");
    let (c, _, _) = switchable(l.next().unwrap(), "c");
    b_status.store(500, Ordering::SeqCst);
    dns.set("ej.figway.test", &[V4_A, V4_B]);
    let fig = spawn(dns_config(
        &dns,
        &format!(
            r#"
[upstreams.svc]
targets = ["http://ej.figway.test:{port}"]
retries = 0
[upstreams.svc.outlier]
consecutive_failures = 1
eject_for = "60s"
max_ejected_percent = 50

[[routes]]
prefix = "/"
to = "svc"
"#
        ),
    ))
    .await;
    let (ea, eb, ec) = (
        endpoint(V4_A, port),
        endpoint(V4_B, port),
        endpoint(V4_C, port),
    );
    await_addresses(fig.admin, "svc", &[ea.clone(), eb.clone()]).await;

    // Round robin reaches b within two requests; its 500 ejects it.
    for _ in 0..2 {
        get(fig.addr, "/", &[]).await;
    }
    assert_eq!(b.count(), 1);
    let all = upstreams(fig.admin).await;
    let ejected_until = target(&all, "svc", &eb).unwrap()["ejected_until"].clone();
    assert!(ejected_until.is_string(), "b not ejected: {all}");

    dns.set("ej.figway.test", &[V4_A, V4_B, V4_C]);
    let all = await_addresses(fig.admin, "svc", &[ea.clone(), eb.clone(), ec.clone()]).await;
    assert_eq!(
        target(&all, "svc", &eb).unwrap()["ejected_until"],
        ejected_until,
        "b's ejection after re-resolution: {all}"
    );
    for _ in 0..20 {
        let r = get(fig.addr, "/", &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    assert_eq!(
        b.count(),
        1,
        "an ejected endpoint got traffic after re-resolution"
    );
    assert!(
        a.count() > 0 && c.count() > 0,
        "a {} c {}",
        a.count(),
        c.count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_surviving_endpoint_keeps_its_health_across_re_resolution() {
    let dns = DnsServer::start().await;
    let (port, listeners) = listeners_on_one_port(&[V4_A, V4_B, V4_C]);
    let mut l = listeners.into_iter();
    let (a, _, _) = switchable(l.next().unwrap(), "a");
    let (b, b_health, _) = switchable(l.next().unwrap(), "b");
    let (c, _, _) = switchable(l.next().unwrap(), "c");
    b_health.store(503, Ordering::SeqCst);
    dns.set("hc.figway.test", &[V4_A, V4_B]);
    // One check per endpoint at start, the next an hour later: after b
    // fails its first, nothing but kept state can keep it out. Three
    // passes to come back, so a checker restarted on re-resolution (one
    // more check at once) does not bring it back either.
    let fig = spawn(dns_config(
        &dns,
        &format!(
            r#"
[upstreams.svc]
targets = ["http://hc.figway.test:{port}"]
[upstreams.svc.health]
path = "/health"
interval = "1h"
timeout = "1s"
unhealthy_after = 1
healthy_after = 3

[[routes]]
prefix = "/"
to = "svc"
"#
        ),
    ))
    .await;
    let (ea, eb, ec) = (
        endpoint(V4_A, port),
        endpoint(V4_B, port),
        endpoint(V4_C, port),
    );
    await_addresses(fig.admin, "svc", &[ea.clone(), eb.clone()]).await;
    eventually("b unhealthy", WAIT, || async {
        let all = upstreams(fig.admin).await;
        match target(&all, "svc", &eb).map(|t| t["healthy"].clone()) {
            Some(Value::Bool(false)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // b is fine now, but figway has no reason to think so for an hour.
    b_health.store(200, Ordering::SeqCst);

    dns.set("hc.figway.test", &[V4_A, V4_B, V4_C]);
    let all = await_addresses(fig.admin, "svc", &[ea.clone(), eb.clone(), ec.clone()]).await;
    assert_eq!(
        target(&all, "svc", &eb).unwrap()["healthy"],
        false,
        "b's health after re-resolution: {all}"
    );
    let before = b
        .seen()
        .iter()
        .filter(|s| s.uri.path() != "/health")
        .count();
    assert_eq!(before, 0);
    for _ in 0..20 {
        let r = get(fig.addr, "/", &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let proxied = |x: &Backend| {
        x.seen()
            .iter()
            .filter(|s| s.uri.path() != "/health")
            .count()
    };
    assert_eq!(
        proxied(&b),
        0,
        "an unhealthy endpoint got traffic after re-resolution"
    );
    assert!(
        proxied(&a) > 0 && proxied(&c) > 0,
        "a {} c {}",
        proxied(&a),
        proxied(&c)
    );
}

// === admin and metrics ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_resolutions_and_endpoints() {
    let dns = DnsServer::start().await;
    let (port, _b) = backends_on_one_port(&[V4_A, V4_B]);
    let literal = Backend::start("literal").await;
    dns.set("m.figway.test", &[V4_A, V4_B]);
    let fig = spawn(dns_config(
        &dns,
        &format!(
            r#"
[upstreams.svc]
targets = ["http://m.figway.test:{port}"]
[upstreams.svc.health]
path = "/health"
interval = "100ms"

[upstreams.literal]
targets = ["{}"]

[[routes]]
prefix = "/literal"
to = "literal"

[[routes]]
prefix = "/"
to = "svc"
"#,
            literal.url()
        ),
    ))
    .await;
    let (ea, eb) = (endpoint(V4_A, port), endpoint(V4_B, port));
    let all = await_addresses(fig.admin, "svc", &[ea.clone(), eb.clone()]).await;
    assert_eq!(
        addresses(&all, "literal"),
        vec![literal.addr.to_string()],
        "an IP target's address is its own authority"
    );

    let endpoints = |u: &'static str| vec![("upstream", u)];
    await_metric(
        fig.admin,
        "figway_upstream_endpoints",
        &endpoints("svc"),
        |v| v == Some(2.0),
    )
    .await;
    await_metric(
        fig.admin,
        "figway_upstream_endpoints",
        &endpoints("literal"),
        |v| v == Some(1.0),
    )
    .await;
    await_metric(
        fig.admin,
        "figway_dns_resolutions_total",
        &[("upstream", "svc"), ("result", "ok")],
        |v| v.unwrap_or(0.0) >= 1.0,
    )
    .await;
    for e in [&ea, &eb] {
        await_metric(
            fig.admin,
            "figway_upstream_target_healthy",
            &[("upstream", "svc"), ("target", e.as_str())],
            |v| v == Some(1.0),
        )
        .await;
    }

    // b leaves the answer: its series goes.
    dns.set("m.figway.test", &[V4_A]);
    await_metric(
        fig.admin,
        "figway_upstream_endpoints",
        &endpoints("svc"),
        |v| v == Some(1.0),
    )
    .await;
    await_metric(
        fig.admin,
        "figway_upstream_target_healthy",
        &[("upstream", "svc"), ("target", eb.as_str())],
        |v| v.is_none(),
    )
    .await;

    // A failed lookup counts as an error and keeps the endpoint.
    dns.answer("m.figway.test", Reply::ServFail);
    await_metric(
        fig.admin,
        "figway_dns_resolutions_total",
        &[("upstream", "svc"), ("result", "error")],
        |v| v.unwrap_or(0.0) >= 1.0,
    )
    .await;
    let s = scrape(fig.admin).await;
    assert_eq!(
        sample(&s, "figway_upstream_endpoints", &endpoints("svc")),
        Some(1.0)
    );

    // NXDOMAIN counts as empty and leaves no endpoint.
    dns.answer("m.figway.test", Reply::NxDomain);
    await_metric(
        fig.admin,
        "figway_dns_resolutions_total",
        &[("upstream", "svc"), ("result", "empty")],
        |v| v.unwrap_or(0.0) >= 1.0,
    )
    .await;
    await_metric(
        fig.admin,
        "figway_upstream_endpoints",
        &endpoints("svc"),
        |v| v == Some(0.0),
    )
    .await;
    await_addresses(fig.admin, "svc", &[]).await;
}

// === figway check ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_warns_about_a_name_that_does_not_resolve_and_exits_0() {
    let dns = DnsServer::start().await;
    dns.set("here.figway.test", &[V4_A]);
    dns.answer("gone.figway.test", Reply::NxDomain);
    dns.answer("broken.figway.test", Reply::ServFail);
    let dir = tempdir::Dir::new();
    let path = dir.path().join("figway.toml");
    std::fs::write(
        &path,
        dns_config(
            &dns,
            r#"
[upstreams.monolith]
legacy = true
targets = ["http://here.figway.test:8000"]

[upstreams.gone]
targets = ["http://gone.figway.test:8000"]

[upstreams.broken]
targets = ["http://broken.figway.test:8000"]

[[routes]]
prefix = "/gone"
to = "gone"

[[routes]]
prefix = "/broken"
to = "broken"

[[routes]]
prefix = "/"
to = "monolith"
"#,
        ),
    )
    .unwrap();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_figway"))
        .arg("check")
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), child)
        .await
        .expect("figway check did not exit within 20s")
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    let warnings: Vec<&str> = text.lines().filter(|l| l.starts_with("warning:")).collect();
    for name in ["gone.figway.test", "broken.figway.test"] {
        assert!(
            warnings.iter().any(|w| w.contains(name)),
            "no warning: line for {name}:\n{text}"
        );
    }
    assert!(
        !warnings.iter().any(|w| w.contains("here.figway.test")),
        "a warning for a name that resolves:\n{text}"
    );
    assert!(
        dns.queries("gone.figway.test") > 0,
        "check did not ask the configured resolver"
    );
}

// === what is asked, how, and when ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_literal_targets_are_never_resolved() {
    let dns = DnsServer::start().await;
    let (port, _b) = backends_on_one_port(&[V4_A]);
    let literal = Backend::start("literal").await;
    dns.set("named.figway.test", &[V4_A]);
    let fig = spawn(dns_config(
        &dns,
        &format!(
            r#"
[upstreams.literal]
targets = ["{}", "http://[::1]:{port}"]

[upstreams.named]
targets = ["http://named.figway.test:{port}"]

[[routes]]
prefix = "/literal"
to = "literal"

[[routes]]
prefix = "/"
to = "named"
"#,
            literal.url()
        ),
    ))
    .await;
    // Several resolve intervals have passed once the name was asked 5 times.
    dns.await_queries("named.figway.test", 5, WAIT).await;
    let asked: BTreeSet<String> = dns.log().into_iter().map(|q| q.name).collect();
    assert_eq!(
        asked,
        BTreeSet::from(["named.figway.test".to_string()]),
        "only the name is asked"
    );
    let a = get(fig.addr, "/literal", &[]).await;
    assert_eq!(a.header("x-backend"), Some("literal"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_answer_is_asked_again_over_tcp() {
    let dns = DnsServer::start().await;
    let (port, _b) = backends_on_one_port(&[V4_A]);
    dns.set("big.figway.test", &[V4_A]);
    dns.truncate_udp("big.figway.test", true);
    let fig = spawn(dns_config(&dns, &one_name("big.figway.test", port))).await;
    await_addresses(fig.admin, "svc", &[endpoint(V4_A, port)]).await;
    assert!(dns.queries_over("big.figway.test", Transport::Tcp) > 0);
    let a = get(fig.addr, "/", &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_interval_is_per_upstream_and_long_ttls_do_not_stretch_it() {
    let dns = DnsServer::start().await;
    let (port, _b) = backends_on_one_port(&[V4_A, V4_B]);
    dns.set_ttl(3600);
    dns.set("fast.figway.test", &[V4_A]);
    dns.set("slow.figway.test", &[V4_A]);
    let fig = spawn(config(&format!(
        r#"{}
[defaults]
resolve_interval = "1h"

[upstreams.fast]
targets = ["http://fast.figway.test:{port}"]
resolve_interval = "100ms"

[upstreams.slow]
targets = ["http://slow.figway.test:{port}"]

[[routes]]
prefix = "/fast"
to = "fast"

[[routes]]
prefix = "/"
to = "slow"
"#,
        dns.runtime_toml()
    )))
    .await;
    await_addresses(fig.admin, "fast", &[endpoint(V4_A, port)]).await;
    await_addresses(fig.admin, "slow", &[endpoint(V4_A, port)]).await;

    // An hour's TTL, yet fast is asked again every 100ms ...
    dns.await_queries("fast.figway.test", 5, WAIT).await;
    dns.set("fast.figway.test", &[V4_B]);
    await_addresses(fig.admin, "fast", &[endpoint(V4_B, port)]).await;
    // ... while slow, on the [defaults] hour, was asked at load only (one
    // A query, and at most one AAAA for v4_preferred).
    let slow = dns.queries("slow.figway.test");
    assert!(
        (1..=2).contains(&slow),
        "slow.figway.test asked {slow} times"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_resolves_again() {
    let dns = DnsServer::start().await;
    let (port, _b) = backends_on_one_port(&[V4_A, V4_B]);
    dns.set("re.figway.test", &[V4_A]);
    let toml = config(&format!(
        "{}\n[defaults]\nresolve_interval = \"1h\"\n{}",
        dns.runtime_toml(),
        one_name("re.figway.test", port)
    ));
    let fig = spawn(toml.clone()).await;
    await_addresses(fig.admin, "svc", &[endpoint(V4_A, port)]).await;

    dns.set("re.figway.test", &[V4_B]);
    // SPEC §10: names are resolved on every reload; a reload has the names
    // it keeps looked up again at once (resolve_interval is an hour here).
    let a = admin_post(fig.admin, "/reload").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    await_addresses(fig.admin, "svc", &[endpoint(V4_B, port)]).await;
    let a = get(fig.addr, "/", &[]).await;
    assert_eq!(a.header("x-backend"), Some("127.0.0.2"));
}
