//! docs/migration.md, walked as an operator would, under load (issue 14):
//! every step and every rollback of the page is applied as an edit of the
//! config file (written next to it and renamed into place, which the file
//! watch sees) to a running figway in front of real hyper upstreams
//! `monolith` and `search` on loopback, while clients keep sending
//! requests. No request may fail, and after each edit the traffic goes
//! where the page says it goes.
//!
//! The TOML blocks below are the page's own: a test checks that the page's
//! ```toml blocks are exactly these, in this order, so that the page and
//! the edits tested here cannot drift apart. (The constants keep the step
//! numbers the page had before its dark-launch step; the page's step 1 is
//! `DARK_LAUNCH`, its step 2 `STEP1_SHADOW`, and so on.)
//!
//! The dark launch and "Let figway drive" (`[routes.match]`,
//! `[routes.ramp]`, `[inventory]`) are walked by a test of their own.

mod support;
use support::*;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, StatusCode};
use sha2::{Digest, Sha256};

// === the page's blocks ===

const STEP0: &str = r#"[upstreams.monolith]
legacy = true
targets = ["http://10.0.0.5:8000", "http://10.0.0.6:8000"]

[[routes]]
name = "search"
prefix = "/api/search"
to = "monolith"

[[routes]]
name = "legacy"
prefix = "/"
to = "monolith"
"#;

const DARK_LAUNCH: &str = r#"[upstreams.search]
targets = ["http://10.0.4.4:9300", "http://10.0.4.5:9300"]

[[routes]]
name = "search-staff"
prefix = "/api/search"
to = "search"
[routes.match]
headers = { "x-staff" = "1" }

[[routes]]
name = "search"
prefix = "/api/search"
to = "monolith"
"#;

const STEP1_SHADOW: &str = r#"[upstreams.search]
targets = ["http://10.0.4.4:9300", "http://10.0.4.5:9300"]
request_timeout = "2s"              # the shadow's deadline for the whole answer

[[routes]]
name = "search"
prefix = "/api/search"
to = "monolith"
[routes.shadow]
to = "search"
sample = 0.1
"#;

const ROLLBACK1_NO_SHADOW: &str = r#"[[routes]]
name = "search"
prefix = "/api/search"
to = "monolith"
"#;

const STEP2_COMPARE: &str = r#"[routes.shadow]
to = "search"
sample = 0.1
compare = true
ignore_headers = ["date", "server"]
ignore_json = ["/generated_at"]
"#;

const STEP3_CANARY: &str = r#"[upstreams.search]
targets = ["http://10.0.4.4:9300", "http://10.0.4.5:9300"]
request_timeout = "2s"
[upstreams.search.health]
path = "/health"
[upstreams.search.outlier]
consecutive_failures = 5

[[routes]]
name = "search"
prefix = "/api/search"
split = [{ to = "search", weight = 1 }, { to = "monolith", weight = 99 }]
sticky = "header:x-user-id"         # or "cookie:session", or "client_ip"
fallback = "monolith"
"#;

const ROLLBACK3_WEIGHT_0: &str =
    "split = [{ to = \"search\", weight = 0 }, { to = \"monolith\", weight = 99 }]\n";

const ROLLBACK_TO_MONOLITH: &str = r#"[[routes]]
name = "search"
prefix = "/api/search"
to = "monolith"
fallback = "monolith"
"#;

const STEP4_10: &str =
    "split = [{ to = \"search\", weight = 10 }, { to = \"monolith\", weight = 90 }]\n";

const STEP4_50: &str =
    "split = [{ to = \"search\", weight = 50 }, { to = \"monolith\", weight = 50 }]\n";

const STEP5_ALL: &str = r#"[[routes]]
name = "search"
prefix = "/api/search"
to = "search"
fallback = "monolith"
"#;

const ROLLBACK5_SPLIT: &str = r#"[[routes]]
name = "search"
prefix = "/api/search"
split = [{ to = "search", weight = 50 }, { to = "monolith", weight = 50 }]
sticky = "header:x-user-id"
fallback = "monolith"
"#;

const STEP6_NO_FALLBACK: &str = r#"[[routes]]
name = "search"
prefix = "/api/search"
to = "search"
"#;

// "Let figway drive".

const DRIVE_RAMP: &str = r#"[[routes]]
name = "search"
prefix = "/api/search"
split = [{ to = "search", weight = 0 }, { to = "monolith", weight = 100 }]
sticky = "header:x-user-id"
fallback = "monolith"
[routes.ramp]
to = "search"
start = "2026-12-07T09:00:00Z"
steps = [1, 10, 50, 100]
hold = "30m"
window = "5m"
min_requests = 200
max_error_rate = 0.01
max_p99 = "500ms"
"#;

const DRIVE_STOP: &str = r#"[[routes]]
name = "search"
prefix = "/api/search"
split = [{ to = "search", weight = 0 }, { to = "monolith", weight = 100 }]
sticky = "header:x-user-id"
fallback = "monolith"
"#;

const DRIVE_RESUME: &str = r#"[routes.ramp]
to = "search"
start = "2026-12-08T09:00:00Z"
steps = [1, 10, 50, 100]
hold = "30m"
window = "5m"
min_requests = 200
max_error_rate = 0.01
max_p99 = "500ms"
"#;

const DRIVE_NEXT_ROUTE: &str = r#"[[routes]]
name = "reviews"
prefix = "/api/reviews"
to = "monolith"
"#;

/// The page's ```toml blocks in page order.
const PAGE: [&str; 18] = [
    STEP0,
    DARK_LAUNCH,
    STEP1_SHADOW,
    ROLLBACK1_NO_SHADOW,
    STEP2_COMPARE,
    STEP3_CANARY,
    ROLLBACK3_WEIGHT_0,
    ROLLBACK_TO_MONOLITH,
    STEP4_10,
    STEP4_50,
    STEP5_ALL,
    ROLLBACK_TO_MONOLITH,
    ROLLBACK5_SPLIT,
    STEP6_NO_FALLBACK,
    DRIVE_RAMP,
    DRIVE_STOP,
    DRIVE_RESUME,
    DRIVE_NEXT_ROUTE,
];

fn page_blocks() -> Vec<String> {
    let page =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/migration.md")).unwrap();
    page.split("```toml\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn the_page_has_exactly_the_blocks_this_test_applies() {
    let blocks = page_blocks();
    assert_eq!(
        blocks.len(),
        PAGE.len(),
        "docs/migration.md has {} toml blocks, this test knows {}",
        blocks.len(),
        PAGE.len()
    );
    for (i, (on_page, here)) in blocks.iter().zip(PAGE).enumerate() {
        assert_eq!(on_page, here, "block {i} of docs/migration.md changed");
    }
}

// === the config files of each step ===

/// The page's config with its example addresses replaced by the test's
/// backends.
struct Files {
    monolith: [String; 2],
    search: [String; 2],
}

impl Files {
    fn real(&self, block: &str) -> String {
        block
            .replace("http://10.0.0.5:8000", &self.monolith[0])
            .replace("http://10.0.0.6:8000", &self.monolith[1])
            .replace("http://10.0.4.4:9300", &self.search[0])
            .replace("http://10.0.4.5:9300", &self.search[1])
    }

    /// Step 0: the whole page block.
    fn step0(&self) -> String {
        config(&self.real(STEP0))
    }

    /// A file of step 0's monolith and `legacy` route, then `block` (the
    /// `search` upstream and route; last, so that its `[routes.shadow]`
    /// belongs to it).
    fn with(&self, block: &str) -> String {
        let legacy_route = "[[routes]]\nname = \"legacy\"\nprefix = \"/\"\nto = \"monolith\"\n";
        let monolith = STEP0.split("\n\n").next().unwrap_or_default();
        config(&format!(
            "{}\n\n{legacy_route}\n{}",
            self.real(monolith),
            self.real(block)
        ))
    }
}

/// `file` with the `search` route (the file's last table) replaced.
fn route_replaced(file: &str, route: &str) -> String {
    let at = file
        .find("[[routes]]\nname = \"search\"")
        .expect("no search route");
    format!("{}{route}", &file[..at])
}

/// `file` with its `split = ...` line replaced by `line`.
fn split_replaced(file: &str, line: &str) -> String {
    let mut out = String::new();
    for l in file.lines() {
        if l.starts_with("split = ") {
            out.push_str(line);
        } else {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// `file` with the `[routes.shadow]` table (the file's last) replaced.
fn shadow_replaced(file: &str, shadow: &str) -> String {
    let at = file.find("[routes.shadow]").expect("no shadow table");
    format!("{}{shadow}", &file[..at])
}

/// `file` with the `[routes.ramp]` table (the file's last) replaced.
fn ramp_replaced(file: &str, ramp: &str) -> String {
    let at = file.find("[routes.ramp]").expect("no ramp table");
    format!("{}{ramp}", &file[..at])
}

/// The page's ramp `start` moved to `from_now` (negative: in the past),
/// so that the schedule is where the test wants it on today's clock.
fn ramp_start(block: &str, page_start: &str, from_now: i64) -> String {
    let now = std::time::SystemTime::now();
    let at = if from_now < 0 {
        now - Duration::from_secs(from_now.unsigned_abs())
    } else {
        now + Duration::from_secs(from_now as u64)
    };
    let line = format!("start = \"{page_start}\"");
    assert!(block.contains(&line), "no {line} in the block");
    block.replace(
        &line,
        &format!("start = \"{}\"", figway::timefmt::rfc3339(at)),
    )
}

// === load and probes ===

/// Clients that keep sending requests until stopped, over keep-alive
/// connections: `GET /api/search` with a random user, and now and then
/// `GET /` (the `legacy` route). Anything but a 200 is a failure.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let clients = (0..clients)
            .map(|c| {
                let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
                tokio::spawn(async move {
                    let mut conn = H1::connect(addr).await;
                    let mut n: u64 = c as u64;
                    while !stop.load(Ordering::Relaxed) {
                        n = n
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let user = (n >> 33) % 10_000;
                        let path = if n.is_multiple_of(5) {
                            "/"
                        } else {
                            "/api/search?q=shoes"
                        };
                        let req = Request::get(path)
                            .header("host", "shop.example.com")
                            .header("x-user-id", user.to_string())
                            .body(full(""))
                            .unwrap();
                        let a = conn.send(req).await;
                        sent.fetch_add(1, Ordering::Relaxed);
                        // Steady load, not a flood: the probes and the
                        // reloads share two cores with it.
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        if a.status != StatusCode::OK {
                            failed.fetch_add(1, Ordering::Relaxed);
                            eprintln!("load: {path} user {user}: {} {}", a.status, a.text());
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            sent,
            failed,
            clients,
        }
    }

    async fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for c in self.clients {
            c.await.expect("a load client's connection broke");
        }
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// Which backend answered `GET /api/search` for each of `users` (over four
/// connections at once); every answer must be a 200.
async fn sides(addr: SocketAddr, users: std::ops::Range<u32>) -> HashMap<u32, String> {
    let probes: Vec<_> = (0..4)
        .map(|lane| {
            let users = users.clone().filter(move |u| u % 4 == lane);
            tokio::spawn(async move {
                let mut conn = H1::connect(addr).await;
                let mut out = Vec::new();
                for user in users {
                    let req = Request::get("/api/search?q=probe")
                        .header("host", "shop.example.com")
                        .header("x-user-id", user.to_string())
                        .body(full(""))
                        .unwrap();
                    let a = conn.send(req).await;
                    assert_eq!(a.status, StatusCode::OK, "user {user}: {}", a.text());
                    out.push((user, a.header("x-backend").unwrap_or("?").to_string()));
                }
                out
            })
        })
        .collect();
    let mut out = HashMap::new();
    for p in probes {
        out.extend(p.await.expect("a probe failed"));
    }
    out
}

/// The share of `sides` answered by `search`.
fn search_share(sides: &HashMap<u32, String>) -> f64 {
    let on = sides.values().filter(|b| *b == "search").count();
    on as f64 / sides.len() as f64
}

const USERS: std::ops::Range<u32> = 0..400;

/// Writes `text` next to the config file and renames it into place, as
/// the page's "Applying a step" does, then waits until figway serves it.
/// The page's `figway check` is checked too: `warnings` (substrings) are
/// exactly the warnings expected, beyond an unused `search` upstream.
async fn apply(f: &Figway, text: &str, warnings: &[&str]) {
    let path = f.shared.config_path();
    let checked = figway::config::load_str(text, std::path::Path::new("next.toml"))
        .unwrap_or_else(|e| panic!("figway check fails:\n{e}\n{text}"));
    let unexpected: Vec<&String> = checked
        .warnings
        .iter()
        .filter(|w| !w.contains("not used by any route"))
        .filter(|w| !warnings.iter().any(|want| w.contains(want)))
        .collect();
    assert!(
        unexpected.is_empty(),
        "unexpected warnings: {unexpected:#?}"
    );
    for want in warnings {
        assert!(
            checked.warnings.iter().any(|w| w.contains(want)),
            "no warning containing {want:?}: {:#?}",
            checked.warnings
        );
    }
    let version = figway::config::hex(&Sha256::digest(text.as_bytes()));
    let next = path.with_file_name("next.toml");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, &path).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.shared.snapshot.load().version != version {
        assert!(Instant::now() < deadline, "the edit was never applied");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status: serde_json::Value =
        serde_json::from_slice(&get(f.admin, "/config", &[]).await.body).unwrap();
    assert!(status["last_error"].is_null(), "edit rejected: {status}");
}

// === the walk ===

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_step_and_rollback_of_the_page_fails_no_request_under_load() {
    let monolith = [
        Backend::start("monolith").await,
        Backend::start("monolith").await,
    ];
    let search = [
        Backend::start("search").await,
        Backend::start("search").await,
    ];
    let files = Files {
        monolith: [monolith[0].url(), monolith[1].url()],
        search: [search[0].url(), search[1].url()],
    };
    let f = Figway::start_file(&files.step0()).await;
    // The running binary watches its file; so does this server.
    let _watch = figway::reload::start(&f.shared, true, false);
    let load = Load::start(f.addr, 4);
    let all_monolith = |sides: &HashMap<u32, String>, step: &str| {
        assert_eq!(search_share(sides), 0.0, "{step}: search answered");
        assert!(sides.values().all(|b| b == "monolith"), "{step}: {sides:?}");
    };
    let shadows = || {
        search
            .iter()
            .flat_map(|s| s.seen())
            .filter(|s| s.headers.contains_key("x-figway-shadow"))
            .count()
    };

    // 0. Before.
    all_monolith(&sides(f.addr, USERS).await, "0");

    // 1. Shadow: clients still get the monolith; search gets copies.
    let step1 = files.with(STEP1_SHADOW);
    apply(&f, &step1, &[]).await;
    all_monolith(&sides(f.addr, USERS).await, "1");
    assert!(shadows() > 0, "1: no shadow reached search");

    // Rollback 1: the table removed, the route as in step 0.
    apply(&f, &route_replaced(&step1, ROLLBACK1_NO_SHADOW), &[]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mirrored = shadows();
    all_monolith(&sides(f.addr, USERS).await, "rollback 1");
    assert_eq!(shadows(), mirrored, "rollback 1: shadows still sent");

    // 2. Compare; its rollback is compare = false.
    let step2 = shadow_replaced(&step1, STEP2_COMPARE);
    apply(&f, &step2, &[]).await;
    all_monolith(&sides(f.addr, USERS).await, "2");
    apply(&f, &step2.replace("compare = true", "compare = false"), &[]).await;
    all_monolith(&sides(f.addr, USERS).await, "rollback 2");

    // 3. The 1% canary: the page's users 2 (search) and 42 (monolith).
    let step3 = files.with(STEP3_CANARY);
    apply(&f, &step3, &[]).await;
    let at1 = sides(f.addr, USERS).await;
    assert_eq!(at1[&2], "search", "3: user 2");
    assert_eq!(at1[&42], "monolith", "3: user 42");
    assert!(search_share(&at1) < 0.05, "3: {}", search_share(&at1));

    // Rollback 3, both ways: weight 0, or `to = "monolith"` keeping the
    // fallback (valid since issue 14, with a warning).
    apply(
        &f,
        &split_replaced(&step3, ROLLBACK3_WEIGHT_0),
        &["weight 0"],
    )
    .await;
    all_monolith(&sides(f.addr, USERS).await, "rollback 3 (weight 0)");
    apply(&f, &step3, &[]).await;
    apply(
        &f,
        &route_replaced(&step3, ROLLBACK_TO_MONOLITH),
        &["own upstream"],
    )
    .await;
    all_monolith(&sides(f.addr, USERS).await, "rollback 3 (to monolith)");

    // 4. 10%, then 50%: users only ever move towards search.
    let step4_10 = split_replaced(&step3, STEP4_10);
    apply(&f, &step4_10, &[]).await;
    let at10 = sides(f.addr, USERS).await;
    let share = search_share(&at10);
    assert!((0.05..0.16).contains(&share), "4 (10%): {share}");
    let step4_50 = split_replaced(&step3, STEP4_50);
    apply(&f, &step4_50, &[]).await;
    let at50 = sides(f.addr, USERS).await;
    let share = search_share(&at50);
    assert!((0.4..0.6).contains(&share), "4 (50%): {share}");
    assert_eq!(at50[&2], "search", "4: user 2");
    assert_eq!(at50[&42], "monolith", "4: user 42 moves only at 64%");
    for (user, side) in &at10 {
        if side == "search" {
            assert_eq!(at50[user], "search", "4: user {user} moved back");
        }
    }

    // Rollback 4: back to 10% puts every user where they were at 10%;
    // weight 0 sends everyone back.
    apply(&f, &step4_10, &[]).await;
    assert_eq!(sides(f.addr, USERS).await, at10, "rollback 4 (10%)");
    apply(
        &f,
        &split_replaced(&step3, ROLLBACK3_WEIGHT_0),
        &["weight 0"],
    )
    .await;
    all_monolith(&sides(f.addr, USERS).await, "rollback 4 (weight 0)");

    // 5. 100% search, the monolith as fallback.
    apply(&f, &step4_50, &[]).await;
    let step5 = route_replaced(&step3, STEP5_ALL);
    apply(&f, &step5, &[]).await;
    let all = sides(f.addr, USERS).await;
    assert!(all.values().all(|b| b == "search"), "5: {all:?}");

    // Rollback 5: to the monolith (one edit, the fallback kept) ...
    apply(
        &f,
        &route_replaced(&step5, ROLLBACK_TO_MONOLITH),
        &["own upstream"],
    )
    .await;
    all_monolith(&sides(f.addr, USERS).await, "rollback 5 (to monolith)");
    // ... or to the 50/50 split, every user on the side they had there.
    apply(&f, &step5, &[]).await;
    apply(&f, &route_replaced(&step5, ROLLBACK5_SPLIT), &[]).await;
    assert_eq!(sides(f.addr, USERS).await, at50, "rollback 5 (50/50)");

    // 6. The fallback dropped: search alone.
    apply(&f, &step5, &[]).await;
    apply(&f, &route_replaced(&step5, STEP6_NO_FALLBACK), &[]).await;
    let all = sides(f.addr, USERS).await;
    assert!(all.values().all(|b| b == "search"), "6: {all:?}");

    let (sent, failed) = load.finish().await;
    assert_eq!(failed, 0, "{failed} of {sent} requests failed");
    assert!(sent > 500, "too little load: {sent} requests");
}

// === the dark launch and "Let figway drive" ===

/// Which backend answers `GET /api/search` with these headers.
async fn side_with(addr: SocketAddr, headers: &[(&str, &str)]) -> String {
    let a = get(addr, "/api/search?q=staff", headers).await;
    assert_eq!(a.status, StatusCode::OK, "{headers:?}: {}", a.text());
    a.header("x-backend").unwrap_or("?").to_string()
}

async fn ramps(f: &Figway) -> serde_json::Value {
    serde_json::from_slice(&get(f.admin, "/ramps", &[]).await.body).expect("/ramps is JSON")
}

/// The page's step 1 (dark launch) and its rollback, then "Let figway
/// drive": the ramp under way, stopped by hand, resumed by a changed
/// section, and the next route picked from the inventory; under load, no
/// request failing. A gate's rollback is not driven here: it needs a
/// failing side for a whole window, which the ramp's own tests do with an
/// injected clock; what the page says of it (`/ramps`, the metric, the
/// log line) is what those tests check.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dark_launch_and_the_drive_steps_of_the_page_fail_no_request_under_load() {
    let monolith = [
        Backend::start("monolith").await,
        Backend::start("monolith").await,
    ];
    let search = [
        Backend::start("search").await,
        Backend::start("search").await,
    ];
    let files = Files {
        monolith: [monolith[0].url(), monolith[1].url()],
        search: [search[0].url(), search[1].url()],
    };
    let f = Figway::start_file(&files.step0()).await;
    let _watch = figway::reload::start(&f.shared, true, false);
    let load = Load::start(f.addr, 4);
    let all_monolith = |sides: &HashMap<u32, String>, step: &str| {
        assert!(sides.values().all(|b| b == "monolith"), "{step}: {sides:?}");
    };

    // 1. Dark launch: x-staff: 1 on search, any other request on the
    // monolith (the load's clients, another value, no header).
    let dark = files.with(DARK_LAUNCH);
    apply(&f, &dark, &[]).await;
    assert_eq!(side_with(f.addr, &[("x-staff", "1")]).await, "search");
    assert_eq!(side_with(f.addr, &[("x-staff", "yes")]).await, "monolith");
    assert_eq!(side_with(f.addr, &[]).await, "monolith");
    all_monolith(&sides(f.addr, USERS).await, "1");

    // Its rollback: the staff route deleted, the file as in step 0.
    apply(&f, &files.step0(), &[]).await;
    assert_eq!(side_with(f.addr, &[("x-staff", "1")]).await, "monolith");

    // The ramp, started 40 minutes ago with 30-minute steps: step 1, 10%.
    let upstream = STEP3_CANARY.split("\n\n").next().unwrap_or_default();
    let ramp = ramp_start(DRIVE_RAMP, "2026-12-07T09:00:00Z", -40 * 60);
    let drive = files.with(&format!("{upstream}\n\n{ramp}"));
    // No weight-0 warning: `to` at 0 is how a ramp starts.
    apply(&f, &drive, &[]).await;
    let r = ramps(&f).await;
    assert_eq!(r["search"]["to"], "search", "{r}");
    assert_eq!(r["search"]["state"], "ramping", "{r}");
    assert_eq!(r["search"]["percent"].as_f64(), Some(10.0), "{r}");
    assert_eq!(r["search"]["step"], 1, "{r}");
    assert!(r["search"]["failure"].is_null(), "{r}");
    let at10 = sides(f.addr, USERS).await;
    let share = search_share(&at10);
    assert!((0.05..0.16).contains(&share), "ramp at 10%: {share}");

    // Stopped by hand: the ramp table deleted, the configured 0/100 again.
    apply(&f, &route_replaced(&drive, DRIVE_STOP), &["weight 0"]).await;
    assert_eq!(ramps(&f).await, serde_json::json!({}));
    all_monolith(&sides(f.addr, USERS).await, "ramp stopped");

    // Resumed by a changed section: the page's new start, here an hour
    // ahead, so the ramp is scheduled and the configured weights hold.
    apply(&f, &drive, &[]).await;
    let resume = ramp_start(DRIVE_RESUME, "2026-12-08T09:00:00Z", 3600);
    apply(&f, &ramp_replaced(&drive, &resume), &[]).await;
    let r = ramps(&f).await;
    assert_eq!(r["search"]["state"], "scheduled", "{r}");
    assert_eq!(r["search"]["percent"].as_f64(), Some(0.0), "{r}");
    assert!(r["search"]["step"].is_null(), "{r}");
    all_monolith(&sides(f.addr, USERS).await, "ramp scheduled again");

    // The next route: on the monolith under its own name, counted by the
    // inventory with its ids folded.
    let next = files.with(&format!("{ROLLBACK1_NO_SHADOW}\n{DRIVE_NEXT_ROUTE}"));
    apply(&f, &next, &[]).await;
    for id in ["7", "8", "9"] {
        let a = get(f.addr, &format!("/api/reviews/{id}"), &[]).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.header("x-backend"), Some("monolith"));
    }
    let inventory: serde_json::Value =
        serde_json::from_slice(&get(f.admin, "/inventory?route=reviews", &[]).await.body)
            .expect("/inventory is JSON");
    let routes = inventory["routes"].as_array().expect("routes");
    assert_eq!(routes.len(), 1, "{inventory}");
    assert_eq!(routes[0]["upstream"], "monolith", "{inventory}");
    assert_eq!(routes[0]["requests"].as_u64(), Some(3), "{inventory}");
    assert_eq!(
        routes[0]["paths"][0]["template"], "/api/reviews/{id}",
        "{inventory}"
    );

    let (sent, failed) = load.finish().await;
    assert_eq!(failed, 0, "{failed} of {sent} requests failed");
}
