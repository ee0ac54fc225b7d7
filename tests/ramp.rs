//! Ramps (SPEC §11): a split whose new side grows on a schedule and rolls
//! itself back when a gate fails. Real figway instances in-process, their
//! wall clocks moved by the test (`Shared::wall`), so that a ramp of hours
//! runs in a second; real backends that answer 200, 500 or slowly; the
//! gates judged by the real background task once a second. The binary for
//! the warn line, `figway check` and `figway explain`.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use serde_json::{json, Value};
use support::{config, full, get, Backend, Figway, LoggingFigway, H1};

/// Step 0's start in every in-process test: far from the real clock, so
/// only the test's own moves of the wall clock matter.
const START: &str = "2030-01-01T00:00:00Z";
const HOUR_MS: i64 = 3_600_000;

fn start_ms() -> i64 {
    (support::rfc3339_unix(START).unwrap() * 1000.0) as i64
}

/// `users` (the new service, side 0 at weight 0) and `monolith` (side 1,
/// 100), route `users` on /api/users, and `ramp` as its `[routes.ramp]`.
fn ramp_config(users: &Backend, monolith: &Backend, extra: &str, ramp: &str) -> String {
    config(&format!(
        "[upstreams.users]\ntargets = [\"{}\"]\n\
         [upstreams.monolith]\ntargets = [\"{}\"]\nlegacy = true\n\
         [[routes]]\nname = \"users\"\nprefix = \"/api/users\"\n\
         split = [{{ to = \"users\", weight = 0 }}, {{ to = \"monolith\", weight = 100 }}]\n\
         {extra}\n[routes.ramp]\n{ramp}\n",
        users.url(),
        monolith.url()
    ))
}

async fn answering(status: u16, name: &'static str) -> Backend {
    Backend::with(move |_| async move {
        Response::builder()
            .status(status)
            .header("x-backend", name)
            .body(full(name))
            .unwrap()
    })
    .await
}

async fn admin_json(admin: SocketAddr, path: &str) -> Value {
    let a = get(admin, path, &[]).await;
    assert_eq!(a.status, StatusCode::OK, "GET {path}: {}", a.text());
    serde_json::from_slice(&a.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", a.text()))
}

/// The value of the series of `name` whose labels include all of `labels`;
/// `None` when there is no such series.
async fn metric(admin: SocketAddr, name: &str, labels: &[&str]) -> Option<f64> {
    let text = get(admin, "/metrics", &[]).await.text();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .reduce(|a, b| a + b)
}

/// Sends `n` requests on one connection, `key(i)` as `x-user-id` when
/// given; the backend names that answered, in order.
async fn send_many(
    addr: SocketAddr,
    n: usize,
    key: Option<&(dyn Fn(usize) -> String + Sync)>,
) -> Vec<String> {
    let mut conn = H1::connect(addr).await;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut b = Request::get("/api/users/1").header("host", "test.local");
        if let Some(key) = key {
            b = b.header("x-user-id", key(i));
        }
        let a = conn.send(b.body(full("")).unwrap()).await;
        out.push(a.header("x-backend").unwrap_or("figway").to_string());
    }
    out
}

async fn wait_for_state(admin: SocketAddr, state: &str, limit: Duration) -> (Value, Duration) {
    let begin = Instant::now();
    loop {
        let ramps = admin_json(admin, "/ramps").await;
        if ramps["users"]["state"] == state {
            return (ramps["users"].clone(), begin.elapsed());
        }
        assert!(
            begin.elapsed() < limit,
            "not {state} after {limit:?}: {ramps}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const FOUR_STEPS: &str = "to = \"users\"\nstart = \"2030-01-01T00:00:00Z\"\n\
     steps = [10, 25, 50, 100]\nhold = \"1h\"\n";

// === the schedule ===

/// Two instances with the same file, their clocks at the same moments:
/// before start, in each of the 4 steps and after the last. At each, 500
/// sticky keys go through both: they land on the same side on both, the
/// new side's share follows the step, and no key ever moves back to the
/// monolith as the percent grows. `/ramps` says where the schedule stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_steps_advance_on_schedule_and_two_instances_agree_on_every_key() {
    let users = Backend::start("users").await;
    let monolith = Backend::start("monolith").await;
    let toml = ramp_config(
        &users,
        &monolith,
        "sticky = \"header:x-user-id\"",
        FOUR_STEPS,
    );
    let (a, b) = (Figway::start(&toml).await, Figway::start(&toml).await);
    let key = |i: usize| format!("user-{i}");
    let moments = [
        // A second into each step: 500 requests take well under an hour.
        (start_ms() - HOUR_MS, "scheduled", 0.0, Value::Null),
        (start_ms() + 1000, "ramping", 10.0, json!(0)),
        (start_ms() + HOUR_MS + 1000, "ramping", 25.0, json!(1)),
        (start_ms() + 2 * HOUR_MS + 1000, "ramping", 50.0, json!(2)),
        (start_ms() + 3 * HOUR_MS + 1000, "ramping", 100.0, json!(3)),
        (start_ms() + 4 * HOUR_MS + 1000, "complete", 100.0, json!(3)),
    ];
    let mut before: Option<Vec<String>> = None;
    for (at, state, percent, step) in moments {
        a.shared.wall().set(at);
        b.shared.wall().set(at);
        let on_a = send_many(a.addr, 500, Some(&key)).await;
        let on_b = send_many(b.addr, 500, Some(&key)).await;
        assert_eq!(on_a, on_b, "the instances disagree at {state} {percent}%");
        let share = on_a.iter().filter(|s| *s == "users").count() as f64 / 5.0;
        assert!(
            (share - percent).abs() <= 5.0,
            "{percent}% in force, users got {share}%"
        );
        if let Some(before) = &before {
            for (i, (old, new)) in before.iter().zip(&on_a).enumerate() {
                assert!(
                    old == new || new == "users",
                    "key {i} moved back: {old} -> {new}"
                );
            }
        }
        before = Some(on_a);
        let ramp = &admin_json(a.admin, "/ramps").await["users"];
        assert_eq!(ramp["state"], state, "{ramp}");
        assert_eq!(ramp["percent"].as_f64(), Some(percent), "{ramp}");
        assert_eq!(ramp["step"], step, "{ramp}");
        assert_eq!(ramp["failure"], Value::Null);
    }
}

/// `/ramps`' fields, `next_step_at` through the schedule, `{}` without a
/// ramp; `/routes` shows the configured weights before `start` and the
/// weights in force as percentages after; `figway_ramp_percent` and both
/// failure counters exist from the load, and go when the section does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramps_routes_and_metrics_show_the_schedule() {
    let users = Backend::start("users").await;
    let monolith = Backend::start("monolith").await;
    let plain = Figway::start(&config(&format!(
        "[upstreams.monolith]\ntargets = [\"{}\"]\n[[routes]]\nprefix = \"/\"\nto = \"monolith\"\n",
        monolith.url()
    )))
    .await;
    assert_eq!(admin_json(plain.admin, "/ramps").await, json!({}));

    let toml = ramp_config(&users, &monolith, "", FOUR_STEPS);
    let fig = Figway::start_file(&toml).await;
    fig.shared.wall().set(start_ms() - 5000);
    let ramps = admin_json(fig.admin, "/ramps").await;
    assert_eq!(
        ramps,
        json!({"users": {
            "to": "users",
            "state": "scheduled",
            "percent": 0,
            "step": null,
            "next_step_at": START,
            "failure": null,
        }})
    );
    let split = &admin_json(fig.admin, "/routes").await[0]["split"];
    assert_eq!(
        split,
        &json!([{"to": "users", "weight": 0}, {"to": "monolith", "weight": 100}])
    );
    let percent = ["route=\"users\"", "upstream=\"users\""];
    assert_eq!(
        metric(fig.admin, "figway_ramp_percent", &percent).await,
        Some(0.0)
    );
    for gate in ["gate=\"error_rate\"", "gate=\"p99\""] {
        let labels = ["route=\"users\"", gate];
        assert_eq!(
            metric(fig.admin, "figway_ramp_failures_total", &labels).await,
            Some(0.0)
        );
    }

    fig.shared.wall().set(start_ms() + HOUR_MS + 1);
    let ramp = &admin_json(fig.admin, "/ramps").await["users"];
    assert_eq!(ramp["state"], "ramping");
    assert_eq!(
        (ramp["percent"].clone(), ramp["step"].clone()),
        (json!(25), json!(1))
    );
    assert_eq!(ramp["next_step_at"], "2030-01-01T02:00:00Z");
    let split = &admin_json(fig.admin, "/routes").await[0]["split"];
    assert_eq!(
        split,
        &json!([{"to": "users", "weight": 25}, {"to": "monolith", "weight": 75}])
    );
    assert_eq!(
        metric(fig.admin, "figway_ramp_percent", &percent).await,
        Some(25.0)
    );

    // The last step's next change is the end of its hold.
    fig.shared.wall().set(start_ms() + 3 * HOUR_MS + 1);
    let ramp = &admin_json(fig.admin, "/ramps").await["users"];
    assert_eq!(ramp["next_step_at"], "2030-01-01T04:00:00Z");
    fig.shared.wall().set(start_ms() + 4 * HOUR_MS);
    let ramp = &admin_json(fig.admin, "/ramps").await["users"];
    assert_eq!(
        (ramp["state"].clone(), ramp["next_step_at"].clone()),
        (json!("complete"), Value::Null)
    );

    // The section removed: no ramp, and its series go with it.
    let (without, _) = toml.split_once("[routes.ramp]").unwrap();
    fig.reload_ok(without).await;
    assert_eq!(admin_json(fig.admin, "/ramps").await, json!({}));
    assert_eq!(
        metric(fig.admin, "figway_ramp_percent", &percent).await,
        None
    );
    let labels = ["route=\"users\""];
    assert_eq!(
        metric(fig.admin, "figway_ramp_failures_total", &labels).await,
        None
    );
}

/// With three sides, the others share the rest by their weights, as
/// fractional percentages summing to 100.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_show_fractional_shares_of_three_sides() {
    let users = Backend::start("users").await;
    let monolith = Backend::start("monolith").await;
    let toml = config(&format!(
        "[upstreams.users]\ntargets = [\"{u}\"]\n[upstreams.monolith]\ntargets = [\"{m}\"]\n\
         [upstreams.old]\ntargets = [\"{m}\"]\n\
         [[routes]]\nname = \"users\"\nprefix = \"/api/users\"\n\
         split = [{{ to = \"monolith\", weight = 1 }}, {{ to = \"users\", weight = 0 }}, {{ to = \"old\", weight = 2 }}]\n\
         [routes.ramp]\n{FOUR_STEPS}",
        u = users.url(),
        m = monolith.url()
    ));
    let fig = Figway::start(&toml).await;
    fig.shared.wall().set(start_ms());
    let split = admin_json(fig.admin, "/routes").await[0]["split"].clone();
    let weights: Vec<f64> = (0..3)
        .map(|i| split[i]["weight"].as_f64().unwrap())
        .collect();
    assert_eq!(weights[1], 10.0);
    assert!(
        (weights[0] - 30.0).abs() < 1e-9 && (weights[2] - 60.0).abs() < 1e-9,
        "{split}"
    );
    fig.shared.wall().set(start_ms() + HOUR_MS);
    let split = admin_json(fig.admin, "/routes").await[0]["split"].clone();
    let weights: Vec<f64> = (0..3)
        .map(|i| split[i]["weight"].as_f64().unwrap())
        .collect();
    assert!(
        (weights[0] - 25.0).abs() < 1e-9 && (weights[2] - 50.0).abs() < 1e-9,
        "{split}"
    );
    assert!((weights.iter().sum::<f64>() - 100.0).abs() < 1e-9);
}

// === the gates ===

/// `users` answers 500 to everything. Once it answered `min_requests` in
/// the window, the error-rate gate fails within 2 s: the instance rolls
/// back (users gets 0%, every request goes to the monolith), `/ramps` says
/// which gate, figure and limit, and the failure is counted. A reload that
/// leaves the section as it was keeps the rollback; one that changes the
/// section starts the ramp afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_side_is_rolled_back_and_stays_so_until_its_section_changes() {
    let users = answering(500, "users").await;
    let monolith = Backend::start("monolith").await;
    let section = "to = \"users\"\nstart = \"2030-01-01T00:00:00Z\"\nsteps = [50, 100]\n\
                   hold = \"1h\"\nmin_requests = 20\nmax_error_rate = 0.1\n";
    let toml = ramp_config(&users, &monolith, "", section);
    let fig = Figway::start_file(&toml).await;
    fig.shared.wall().set(start_ms() + 1000);
    // Until 20 reached users, nothing may fail; the 20th crosses the line.
    let mut sent_to_users = 0;
    while sent_to_users < 20 {
        let got = send_many(fig.addr, 1, None).await;
        sent_to_users += got.iter().filter(|s| *s == "users").count();
    }
    let crossed = Instant::now();
    let (ramp, _) = wait_for_state(fig.admin, "rolled_back", Duration::from_secs(3)).await;
    let took = crossed.elapsed();
    assert!(
        took <= Duration::from_secs(2),
        "rolled back {took:?} after the line"
    );
    assert_eq!(ramp["percent"], json!(0));
    assert_eq!(ramp["step"], json!(0));
    assert_eq!(ramp["next_step_at"], Value::Null);
    assert_eq!(ramp["failure"]["gate"], "error_rate");
    assert_eq!(ramp["failure"]["value"], json!(1.0));
    assert_eq!(ramp["failure"]["limit"], json!(0.1));
    assert!(support::rfc3339_unix(ramp["failure"]["at"].as_str().unwrap()).is_some());
    let labels = ["route=\"users\"", "gate=\"error_rate\""];
    assert_eq!(
        metric(fig.admin, "figway_ramp_failures_total", &labels).await,
        Some(1.0)
    );
    let percent = ["route=\"users\"", "upstream=\"users\""];
    assert_eq!(
        metric(fig.admin, "figway_ramp_percent", &percent).await,
        Some(0.0)
    );
    let seen_by_users = users.count();
    let after = send_many(fig.addr, 100, None).await;
    assert!(after.iter().all(|s| s == "monolith"), "{after:?}");
    assert_eq!(users.count(), seen_by_users);

    // Same section (reordered keys and a comment count for nothing), other
    // edits around it: still rolled back, even in the next step.
    let reordered = "# the same ramp\nmax_error_rate = 0.1\nmin_requests = 20\nhold = \"1h\"\n\
                     steps = [50, 100]\nstart = \"2030-01-01T00:00:00Z\"\nto = \"users\"\n";
    fig.reload_ok(&ramp_config(
        &users,
        &monolith,
        "strip_prefix = false",
        reordered,
    ))
    .await;
    fig.shared.wall().set(start_ms() + HOUR_MS + 1000);
    let ramp = &admin_json(fig.admin, "/ramps").await["users"];
    assert_eq!(ramp["state"], "rolled_back", "{ramp}");
    assert!(send_many(fig.addr, 50, None)
        .await
        .iter()
        .all(|s| s == "monolith"));
    assert_eq!(
        metric(fig.admin, "figway_ramp_failures_total", &labels).await,
        Some(1.0)
    );

    // A changed section is a new ramp: at 100% now, every request to users.
    let changed = section.replace("max_error_rate = 0.1", "max_error_rate = 0.5");
    fig.reload_ok(&ramp_config(&users, &monolith, "", &changed))
        .await;
    let ramp = &admin_json(fig.admin, "/ramps").await["users"];
    assert_eq!(ramp["state"], "ramping", "{ramp}");
    assert_eq!(ramp["failure"], Value::Null);
    assert!(send_many(fig.addr, 10, None)
        .await
        .iter()
        .all(|s| s == "users"));
}

/// `on_failure = "hold"`: the percent in force stays, and the schedule no
/// longer advances on this instance, however late it gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_stops_the_schedule() {
    let users = answering(503, "users").await;
    let monolith = Backend::start("monolith").await;
    let section = "to = \"users\"\nstart = \"2030-01-01T00:00:00Z\"\nsteps = [50, 75, 100]\n\
                   hold = \"1h\"\nmin_requests = 10\nmax_error_rate = 0.5\non_failure = \"hold\"\n";
    let fig = Figway::start(&ramp_config(&users, &monolith, "", section)).await;
    fig.shared.wall().set(start_ms() + 1000);
    send_many(fig.addr, 60, None).await;
    let (ramp, _) = wait_for_state(fig.admin, "held", Duration::from_secs(3)).await;
    assert_eq!(
        (ramp["percent"].clone(), ramp["step"].clone()),
        (json!(50), json!(0))
    );
    assert_eq!(ramp["next_step_at"], Value::Null);
    fig.shared.wall().set(start_ms() + 5 * HOUR_MS);
    let ramp = &admin_json(fig.admin, "/ramps").await["users"];
    assert_eq!(
        (ramp["state"].clone(), ramp["percent"].clone()),
        (json!("held"), json!(50))
    );
    let got = send_many(fig.addr, 400, None).await;
    let share = got.iter().filter(|s| *s == "users").count();
    assert!(
        (120..=280).contains(&share),
        "held at 50%, users got {share} of 400"
    );
}

/// A deliberately slow side (300 ms to its head) fails `max_p99 = "100ms"`;
/// its error rate (none) is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_p99_gate_rolls_back_a_slow_side() {
    let users = Backend::with(|_| async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Response::builder()
            .header("x-backend", "users")
            .body(full("users"))
            .unwrap()
    })
    .await;
    let monolith = Backend::start("monolith").await;
    let section = "to = \"users\"\nstart = \"2030-01-01T00:00:00Z\"\nsteps = [100]\n\
                   hold = \"1h\"\nmin_requests = 12\nmax_error_rate = 0.5\nmax_p99 = \"100ms\"\n";
    let fig = Figway::start(&ramp_config(&users, &monolith, "", section)).await;
    fig.shared.wall().set(start_ms() + 1000);
    let sends: Vec<_> = (0..12)
        .map(|_| tokio::spawn(send_many(fig.addr, 1, None)))
        .collect();
    for s in sends {
        assert_eq!(s.await.unwrap(), ["users"]);
    }
    let (ramp, _) = wait_for_state(fig.admin, "rolled_back", Duration::from_secs(3)).await;
    assert_eq!(ramp["failure"]["gate"], "p99");
    let value = ramp["failure"]["value"].as_f64().unwrap();
    assert!((0.3..0.35).contains(&value), "{ramp}");
    assert_eq!(ramp["failure"]["limit"], json!(0.1));
    let labels = ["route=\"users\"", "gate=\"p99\""];
    assert_eq!(
        metric(fig.admin, "figway_ramp_failures_total", &labels).await,
        Some(1.0)
    );
}

/// Fewer answers than `min_requests` in the window: no gate is judged,
/// however bad they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_min_requests_no_gate_fires() {
    let users = answering(500, "users").await;
    let monolith = Backend::start("monolith").await;
    let section = "to = \"users\"\nstart = \"2030-01-01T00:00:00Z\"\nsteps = [100]\n\
                   hold = \"1h\"\nmin_requests = 30\nmax_error_rate = 0.01\n";
    let fig = Figway::start(&ramp_config(&users, &monolith, "", section)).await;
    fig.shared.wall().set(start_ms() + 1000);
    assert!(send_many(fig.addr, 29, None)
        .await
        .iter()
        .all(|s| s == "users"));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let ramp = &admin_json(fig.admin, "/ramps").await["users"];
    assert_eq!(ramp["state"], "ramping", "{ramp}");
    let labels = ["route=\"users\"", "gate=\"error_rate\""];
    assert_eq!(
        metric(fig.admin, "figway_ramp_failures_total", &labels).await,
        Some(0.0)
    );
    // The window slides: 29 answers a minute ago and one now are not 30.
    fig.shared.wall().advance(Duration::from_secs(61));
    send_many(fig.addr, 1, None).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        admin_json(fig.admin, "/ramps").await["users"]["state"],
        "ramping"
    );
}

/// Requests the split sent to `users` that its fallback then served (users
/// refuses connections) are failures of `users`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_the_fallback_gave_for_the_new_side_count_against_it() {
    let monolith = Backend::start("monolith").await;
    let refused = support::refused_port().await;
    let toml = config(&format!(
        "[upstreams.users]\ntargets = [\"http://{refused}\"]\n\
         [upstreams.monolith]\ntargets = [\"{}\"]\n\
         [[routes]]\nname = \"users\"\nprefix = \"/api/users\"\n\
         split = [{{ to = \"users\", weight = 0 }}, {{ to = \"monolith\", weight = 100 }}]\n\
         fallback = \"monolith\"\n[routes.ramp]\nto = \"users\"\nstart = \"{START}\"\n\
         steps = [100]\nhold = \"1h\"\nmin_requests = 10\nmax_error_rate = 0.5\n",
        monolith.url()
    ));
    let fig = Figway::start(&toml).await;
    fig.shared.wall().set(start_ms() + 1000);
    let got = send_many(fig.addr, 20, None).await;
    let answered: Vec<&str> = got.iter().map(String::as_str).collect();
    // Whatever answered (the fallback, or figway's 502), users failed them.
    assert!(answered.iter().all(|s| *s != "users"), "{answered:?}");
    let (ramp, _) = wait_for_state(fig.admin, "rolled_back", Duration::from_secs(3)).await;
    assert_eq!(ramp["failure"]["gate"], "error_rate");
}

// === the binary: the warn line, check and explain ===

/// The failure is logged once at warn with the route, the gate, the figure
/// and the limit (the binary, its real clock: a ramp that started an hour
/// ago).
#[test]
fn a_failed_gate_is_logged_once_at_warn() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let users = rt.block_on(answering(500, "users"));
    let monolith = rt.block_on(Backend::start("monolith"));
    let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    let section = format!(
        "to = \"users\"\nstart = \"{}\"\nsteps = [100]\nhold = \"24h\"\n\
         min_requests = 5\nmax_error_rate = 0.2\n",
        figway::timefmt::rfc3339(an_hour_ago)
    );
    let fig = LoggingFigway::spawn(&ramp_config(&users, &monolith, "", &section));
    rt.block_on(async {
        send_many(fig.addr, 10, None).await;
        wait_for_state(fig.admin, "rolled_back", Duration::from_secs(3)).await;
        // Another second of judging: still one line.
        tokio::time::sleep(Duration::from_millis(1200)).await;
    });
    let warned: Vec<Value> = fig
        .stderr_tail()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.to_string().contains("ramp failed a gate"))
        .collect();
    assert_eq!(warned.len(), 1, "{:#?}", fig.stderr_tail());
    let line = warned[0].to_string();
    for want in [
        "\"WARN\"",
        "\"route\":\"users\"",
        "\"gate\":\"error_rate\"",
        "\"value\":1.0",
        "\"limit\":0.2",
    ] {
        assert!(line.contains(want), "{want} not in {line}");
    }
}

fn write_config(dir: &std::path::Path, toml: &str) -> std::path::PathBuf {
    let path = dir.join("figway.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn figway(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_figway"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A three-step ramp from 2020, a day per step: complete by now.
const PAST: &str = "to = \"users\"\nstart = \"2020-01-01T00:00:00+01:00\"\n\
     steps = [5, 30, 60]\nhold = \"24h\"\n";
/// The same in 2099: scheduled.
const FUTURE: &str = "to = \"users\"\nstart = \"2099-06-01T12:00:00Z\"\n\
     steps = [5, 30, 60]\nhold = \"24h\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prints_each_step_and_the_state_now() {
    let users = Backend::start("users").await;
    let monolith = Backend::start("monolith").await;
    let dir = support::tempdir::Dir::new();
    let path = write_config(dir.path(), &ramp_config(&users, &monolith, "", PAST));
    let (ok, out, err) = figway(&["check", path.to_str().unwrap()]);
    assert!(ok, "{err}");
    let expected = "ramp users: users in 3 steps of 86400s, state now: complete (60%)\n\
                    \x20 step 0:   5% from 2019-12-31T23:00:00Z\n\
                    \x20 step 1:  30% from 2020-01-01T23:00:00Z\n\
                    \x20 step 2:  60% from 2020-01-02T23:00:00Z\n\
                    \x20 complete at 2020-01-03T23:00:00Z\n";
    assert!(out.ends_with(expected), "{out}");
    let path = write_config(dir.path(), &ramp_config(&users, &monolith, "", FUTURE));
    let (ok, out, _) = figway(&["check", path.to_str().unwrap()]);
    assert!(ok);
    assert!(
        out.contains("state now: scheduled (0%)\n  step 0:   5% from 2099-06-01T12:00:00Z\n"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_the_weights_in_force_once_start_has_passed() {
    let users = Backend::start("users").await;
    let monolith = Backend::start("monolith").await;
    let dir = support::tempdir::Dir::new();
    let sticky = "sticky = \"header:x-user-id\"";
    let explain = |path: &std::path::Path| {
        let (ok, out, err) = figway(&[
            "explain",
            path.to_str().unwrap(),
            "GET",
            "/api/users/7",
            "-H",
            "x-user-id: 42",
            "--json",
        ]);
        assert!(ok, "{err}");
        serde_json::from_str::<Value>(&out).unwrap()
    };
    let path = write_config(dir.path(), &ramp_config(&users, &monolith, sticky, PAST));
    let v = explain(&path);
    assert_eq!(
        v["upstreams"],
        json!([{"name": "users", "weight": 60}, {"name": "monolith", "weight": 40}])
    );
    let chosen = v["sticky"]["chosen"].clone();
    let path = write_config(dir.path(), &ramp_config(&users, &monolith, sticky, FUTURE));
    let v = explain(&path);
    assert_eq!(
        v["upstreams"],
        json!([{"name": "users", "weight": 0}, {"name": "monolith", "weight": 100}])
    );
    // Scheduled: the configured weights, so key 42 is on the monolith.
    assert_eq!(v["sticky"]["chosen"], "monolith");
    assert!(chosen == "users" || chosen == "monolith");
}
