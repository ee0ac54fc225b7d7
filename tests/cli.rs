//! The command line (SPEC §1, §2, §9) exercised through the real `figway`
//! binary: `check` reports every config mistake at once with file, line,
//! column and key path, prints the compiled route table and its warnings;
//! `explain` prints the proxy's own routing decision; bad command lines exit
//! 2; `figway PATH` serves and drains to exit 0 on SIGTERM; `run` exits 1
//! when its config is missing or its address is taken (see
//! `tests/lifecycle.rs` for a second figway and `--upgrade`).

mod support;
use support::*;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_figway");

/// What one run of the binary left behind.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Runs the binary with `args`, killing it if it has not exited within
/// `limit` (so a bug that makes it serve cannot hang the suite).
fn figway_within(args: &[&str], limit: Duration) -> Run {
    let mut child = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start the figway binary");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = match wait_within(&mut child, limit) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("figway {args:?} did not exit within {limit:?}");
        }
    };
    Run {
        status,
        stdout: out_thread.join().unwrap(),
        stderr: err_thread.join().unwrap(),
    }
}

fn figway(args: &[&str]) -> Run {
    figway_within(args, Duration::from_secs(20))
}

fn wait_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sigterm(pid: u32) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .expect("cannot run kill");
    assert!(status.success(), "kill -TERM {pid} failed");
}

/// A config file in its own temp dir.
struct ConfigFile {
    _dir: tempdir::Dir,
    path: PathBuf,
}

impl ConfigFile {
    fn new(text: &str) -> ConfigFile {
        let dir = tempdir::Dir::new();
        let path = dir.path().join("figway.toml");
        std::fs::write(&path, text).unwrap();
        ConfigFile { _dir: dir, path }
    }

    fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

/// One `FILE:LINE:COL: key.path: message` line.
#[derive(Debug, Clone)]
struct Diagnostic {
    line: usize,
    col: usize,
    key: String,
    message: String,
}

/// Every positioned error line that names `file`, in output order.
fn diagnostics(output: &str, file: &Path) -> Vec<Diagnostic> {
    let prefix = format!("{}:", file.display());
    output
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let mut parts = rest.splitn(3, ':');
            let line = parts.next()?.parse().ok()?;
            let col = parts.next()?.parse().ok()?;
            let rest = parts.next()?.strip_prefix(' ')?;
            let (key, message) = rest.split_once(": ")?;
            Some(Diagnostic {
                line,
                col,
                key: key.to_string(),
                message: message.to_string(),
            })
        })
        .collect()
}

/// `figway check` on `text`: asserts exit 1 and returns the diagnostics.
fn check_invalid(text: &str) -> (Vec<Diagnostic>, Run) {
    let file = ConfigFile::new(text);
    let run = figway(&["check", file.path()]);
    assert_eq!(
        run.code(),
        Some(1),
        "check should reject the config\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    let all = format!("{}{}", run.stdout, run.stderr);
    (diagnostics(&all, &file.path), run)
}

/// Asserts that `check` rejects `text` with an error at `key` (or an item
/// of it, `key[1]`), and that every error line is well formed.
fn assert_rejected_at(text: &str, key: &str) -> Diagnostic {
    let (diags, run) = check_invalid(text);
    assert!(
        !diags.is_empty(),
        "no FILE:LINE:COL: key: message line in\n{}",
        run.stderr
    );
    for d in &diags {
        assert!(d.line >= 1 && d.col >= 1, "{d:?}");
        assert!(!d.message.is_empty(), "{d:?}");
    }
    diags
        .iter()
        .find(|d| {
            d.key == key
                || d.key
                    .strip_prefix(key)
                    .is_some_and(|rest| rest.starts_with('['))
        })
        .cloned()
        .unwrap_or_else(|| panic!("no error at key {key:?}; got {diags:#?}"))
}

/// A valid config header: listen and admin on port 0, one legacy upstream.
fn base(rest: &str) -> String {
    format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n\n\
         [upstreams.monolith]\nlegacy = true\ntargets = [\"http://127.0.0.1:8000\"]\n\n{rest}"
    )
}

// === check: errors ===

#[test]
fn check_reports_every_mistake_with_file_line_column_and_key() {
    let text = r#"[listen]
address = "127.0.0.1:0"
drain_timeout = "30 parsecs"
colour = "blue"

[upstreams.monolith]
legacy = true
targets = ["http://127.0.0.1:8000"]

[[routes]]
name = "legacy"
prefix = "/"
to = "monolith"

[[routes]]
name = "orders"
prefix = "/api/orders"
to = "order"
"#;
    let file = ConfigFile::new(text);
    let run = figway(&["check", file.path()]);
    assert_eq!(run.code(), Some(1), "stderr:\n{}", run.stderr);
    let all = format!("{}{}", run.stdout, run.stderr);
    let diags = diagnostics(&all, &file.path);
    let found: Vec<(usize, usize, &str)> = diags
        .iter()
        .map(|d| (d.line, d.col, d.key.as_str()))
        .collect();
    assert_eq!(
        found,
        vec![
            (3, 17, "listen.drain_timeout"),
            (4, 1, "listen.colour"),
            (18, 6, "routes[1].to"),
        ],
        "output:\n{all}"
    );
    assert!(diags[0].message.contains("30 parsecs"), "{:?}", diags[0]);
    assert!(diags[1].message.contains("unknown key"), "{:?}", diags[1]);
    assert_eq!(diags[2].message, "unknown upstream \"order\"");
    // The exact line the SPEC shows, with this file's name and position.
    let expected = format!(
        "{}:18:6: routes[1].to: unknown upstream \"order\"",
        file.path.display()
    );
    assert!(
        all.lines().any(|l| l == expected),
        "no line {expected:?} in\n{all}"
    );
}

#[test]
fn check_reports_a_syntax_error_with_its_position() {
    let text = "[listen]\naddress = \"127.0.0.1:0\"\n[upstreams.monolith\ntargets = []\n";
    let (diags, run) = check_invalid(text);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(!diags.is_empty(), "no FILE:LINE:COL line in\n{all}");
    assert_eq!(diags[0].line, 3, "{diags:?}");
    assert!(diags[0].col >= 1, "{diags:?}");
    assert!(all.contains("syntax error"), "{all}");
}

#[test]
fn check_rejects_duplicate_route_names() {
    let d = assert_rejected_at(
        &base(
            "[[routes]]\nname = \"api\"\nprefix = \"/a\"\nto = \"monolith\"\n\
             [[routes]]\nname = \"api\"\nprefix = \"/b\"\nto = \"monolith\"\n",
        ),
        "routes[1].name",
    );
    // At the second route's name value, not its [[routes]] header (line
    // 14), naming where the first one is.
    assert_eq!((d.line, d.col), (15, 8), "{d:?}");
    assert_eq!(d.message, "duplicate route name \"api\" (first at line 11)");
}

#[test]
fn check_rejects_two_routes_with_the_same_prefix_host_and_methods() {
    let d = assert_rejected_at(
        &base(
            "[[routes]]\nname = \"one\"\nprefix = \"/api\"\nhost = \"shop.example.com\"\n\
             methods = [\"GET\", \"HEAD\"]\nto = \"monolith\"\n\
             [[routes]]\nname = \"two\"\nprefix = \"/api/\"\nhost = \"SHOP.example.com\"\n\
             methods = [\"HEAD\", \"GET\"]\nto = \"monolith\"\n",
        ),
        "routes[1].prefix",
    );
    assert_eq!((d.line, d.col), (18, 10), "{d:?}");
    assert!(d.message.ends_with("(first at line 12)"), "{d:?}");
}

#[test]
fn check_reports_all_zero_split_weights_at_the_split_key() {
    let d = assert_rejected_at(
        &base(
            "[upstreams.users]\ntargets = [\"http://127.0.0.1:9001\"]\n\
             [[routes]]\nname = \"users\"\nprefix = \"/api/users\"\n\
             split = [{ to = \"users\", weight = 0 }, { to = \"monolith\", weight = 0 }]\n",
        ),
        "routes[0].split",
    );
    // Line 12 is `[[routes]]`; the split is on line 15.
    assert_eq!((d.line, d.col), (15, 9), "{d:?}");
    assert!(d.message.contains("all split weights are zero"), "{d:?}");
}

/// Issue 12: every error at once, each at its key or value, each unknown
/// name or key with the closest valid one when one is close.
#[test]
fn check_prints_every_error_with_its_suggestion() {
    let text = r#"[listen]
address = "127.0.0.1:0"
drain_timout = "5s"

[upstreams.monolith]
legacy = true
targets = ["http://127.0.0.1:8000"]

[upstreams.orders]
targets = ["http://127.0.0.1:9001"]

[[routes]]
name = "orders"
prefix = "/api/orders"
to = "order"
strip_prefx = true

[[routes]]
name = "orders"
prefix = "/api/users"
split = [{ to = "orders", weight = 0 }, { to = "monolit", weight = 10 }]
fallback = "ordes"
"#;
    let file = ConfigFile::new(text);
    let run = figway(&["check", file.path()]);
    assert_eq!(
        run.code(),
        Some(1),
        "stderr:
{}",
        run.stderr
    );
    let name = file.path.display();
    let expected = [
        format!("{name}:3:1: listen.drain_timout: unknown key (did you mean \"drain_timeout\"?)"),
        format!("{name}:15:6: routes[0].to: unknown upstream \"order\" (did you mean \"orders\"?)"),
        format!("{name}:16:1: routes[0].strip_prefx: unknown key (did you mean \"strip_prefix\"?)"),
        format!("{name}:19:8: routes[1].name: duplicate route name \"orders\" (first at line 13)"),
        format!(
            "{name}:21:48: routes[1].split[1].to: unknown upstream \"monolit\" \
             (did you mean \"monolith\"?)"
        ),
        format!(
            "{name}:22:12: routes[1].fallback: unknown upstream \"ordes\" \
             (did you mean \"orders\"?)"
        ),
        format!("{name}: 6 error(s)"),
    ];
    let got: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(got, expected, "stderr:\n{}", run.stderr);
}

#[test]
fn check_allows_the_same_prefix_with_different_methods() {
    let file = ConfigFile::new(&base(
        "[[routes]]\nname = \"one\"\nprefix = \"/api\"\nmethods = [\"GET\"]\nto = \"monolith\"\n\
         [[routes]]\nname = \"two\"\nprefix = \"/api\"\nto = \"monolith\"\n",
    ));
    let run = figway(&["check", file.path()]);
    assert_eq!(run.code(), Some(0), "stderr:\n{}", run.stderr);
}

#[test]
fn check_rejects_an_https_target() {
    let text = "[listen]\naddress = \"127.0.0.1:0\"\n[upstreams.m]\nlegacy = true\n\
                targets = [\"https://127.0.0.1:8443\"]\n[[routes]]\nprefix = \"/\"\nto = \"m\"\n";
    let d = assert_rejected_at(text, "upstreams.m.targets[0]");
    assert_eq!((d.line, d.col), (5, 12), "{d:?}");
}

#[test]
fn check_rejects_a_target_with_a_path() {
    let text = "[listen]\naddress = \"127.0.0.1:0\"\n[upstreams.m]\nlegacy = true\n\
                targets = [\"http://127.0.0.1:8000/api\"]\n[[routes]]\nprefix = \"/\"\nto = \"m\"\n";
    let d = assert_rejected_at(text, "upstreams.m.targets[0]");
    assert_eq!((d.line, d.col), (5, 12), "{d:?}");
}

#[test]
fn check_rejects_a_target_weight_of_zero() {
    let text = "[listen]\naddress = \"127.0.0.1:0\"\n[upstreams.m]\nlegacy = true\n\
                targets = [{ url = \"http://127.0.0.1:8000\", weight = 0 }]\n\
                [[routes]]\nprefix = \"/\"\nto = \"m\"\n";
    let d = assert_rejected_at(text, "upstreams.m.targets[0].weight");
    assert_eq!(d.line, 5, "{d:?}");
}

#[test]
fn check_rejects_a_listen_section_without_address() {
    let text = "[listen]\ndrain_timeout = \"5s\"\n[upstreams.m]\nlegacy = true\n\
                targets = [\"http://127.0.0.1:8000\"]\n[[routes]]\nprefix = \"/\"\nto = \"m\"\n";
    assert_rejected_at(text, "listen.address");
}

#[test]
fn check_rejects_a_route_without_to() {
    let d = assert_rejected_at(
        &base("[[routes]]\nname = \"nowhere\"\nprefix = \"/api\"\n"),
        "routes[0].to",
    );
    assert!(d.message.contains("missing"), "{d:?}");
}

#[test]
fn check_rejects_strip_prefix_with_rewrite_prefix() {
    let d = assert_rejected_at(
        &base(
            "[[routes]]\nprefix = \"/api\"\nto = \"monolith\"\nstrip_prefix = true\n\
             rewrite_prefix = \"/v2\"\n",
        ),
        "routes[0].rewrite_prefix",
    );
    assert_eq!((d.line, d.col), (14, 18), "{d:?}");
}

#[test]
fn check_rejects_an_invalid_host() {
    let d = assert_rejected_at(
        &base("[[routes]]\nprefix = \"/api\"\nhost = \"shop example.com\"\nto = \"monolith\"\n"),
        "routes[0].host",
    );
    assert_eq!((d.line, d.col), (12, 8), "{d:?}");
}

#[test]
fn check_rejects_an_invalid_method() {
    let d = assert_rejected_at(
        &base(
            "[[routes]]\nprefix = \"/api\"\nmethods = [\"GET\", \"get me\"]\nto = \"monolith\"\n",
        ),
        "routes[0].methods",
    );
    assert_eq!((d.line, d.col), (12, 19), "{d:?}");
    assert!(d.message.contains("get me"), "{d:?}");
}

// === check: success and warnings ===

/// Route names from the compiled table `check` prints, in printed order.
fn table_route_names(stdout: &str) -> Vec<String> {
    let mut lines = stdout.lines().skip_while(|l| !l.starts_with("ROUTE"));
    assert!(lines.next().is_some(), "no ROUTE header in\n{stdout}");
    lines
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn check_prints_the_route_table_in_match_order_and_warns() {
    let text = r#"[listen]
address = "127.0.0.1:0"

[upstreams.monolith]
targets = ["http://127.0.0.1:8000"]

[upstreams.orders]
targets = ["http://127.0.0.1:9001"]

[upstreams.search]
targets = ["http://127.0.0.1:9002"]

[[routes]]
name = "legacy"
prefix = "/"
to = "monolith"

[[routes]]
name = "api"
prefix = "/api"
to = "monolith"

[[routes]]
name = "orders"
prefix = "/api/orders"
to = "orders"
"#;
    let file = ConfigFile::new(text);
    let run = figway(&["check", file.path()]);
    assert_eq!(run.code(), Some(0), "stderr:\n{}", run.stderr);
    assert_eq!(
        table_route_names(&run.stdout),
        ["orders", "api", "legacy"],
        "stdout:\n{}",
        run.stdout
    );
    let all = format!("{}{}", run.stdout, run.stderr);
    let warnings: Vec<&str> = all.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 2, "warnings: {warnings:#?}");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("search") && !w.contains("legacy")),
        "no unused-upstream warning naming search: {warnings:#?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("legacy")),
        "no missing-legacy warning: {warnings:#?}"
    );
}

#[test]
fn check_prints_no_warning_for_a_clean_config() {
    let text = base(
        "[upstreams.orders]\ntargets = [\"http://127.0.0.1:9001\"]\n\
         [[routes]]\nprefix = \"/api/orders\"\nto = \"orders\"\n\
         [[routes]]\nprefix = \"/\"\nto = \"monolith\"\n",
    );
    let file = ConfigFile::new(&text);
    let run = figway(&["check", file.path()]);
    assert_eq!(run.code(), Some(0), "stderr:\n{}", run.stderr);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        !all.lines().any(|l| l.contains("warning")),
        "unexpected warning in\n{all}"
    );
    // Unnamed routes are named by their prefix.
    assert_eq!(table_route_names(&run.stdout), ["/api/orders", "/"]);
}

// === explain ===

const EXPLAIN_CONFIG: &str = r#"[listen]
address = "127.0.0.1:0"

[upstreams.monolith]
legacy = true
targets = ["http://127.0.0.1:8000"]

[upstreams.users]
targets = ["http://127.0.0.1:9001"]

[[routes]]
name = "users"
prefix = "/api/users"
host = "shop.example.com"
methods = ["GET", "HEAD"]
to = "users"

[[routes]]
name = "legacy"
prefix = "/"
to = "monolith"
"#;

fn explain_json(config: &str, args: &[&str]) -> Value {
    let file = ConfigFile::new(config);
    let mut all = vec!["explain", file.path()];
    all.extend_from_slice(args);
    all.push("--json");
    let run = figway(&all);
    assert_eq!(run.code(), Some(0), "stderr:\n{}", run.stderr);
    let objects: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(objects.len(), 1, "expected one JSON line:\n{}", run.stdout);
    serde_json::from_str(objects[0]).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", run.stdout))
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

#[test]
fn explain_json_prints_the_spec_object() {
    let v = explain_json(
        EXPLAIN_CONFIG,
        &["GET", "http://shop.example.com/api/users/7?x=1"],
    );
    assert_eq!(
        keys(&v),
        [
            "fallback",
            "passed_over",
            "path_forwarded",
            "route",
            "shadow",
            "sticky",
            "upstreams"
        ],
        "{v}"
    );
    // `match` and `passed_over`: SPEC §12 (tests/route_match.rs).
    assert_eq!(
        keys(&v["route"]),
        ["host", "match", "methods", "name", "prefix"]
    );
    assert_eq!(
        v["route"],
        serde_json::json!({
            "name": "users",
            "prefix": "/api/users",
            "host": "shop.example.com",
            "methods": ["GET", "HEAD"],
            "match": null,
        })
    );
    assert_eq!(v["passed_over"], serde_json::json!([]), "{v}");
    assert_eq!(v["path_forwarded"], "/api/users/7?x=1");
    assert_eq!(
        v["upstreams"],
        serde_json::json!([{"name": "users", "weight": 1}])
    );
    assert!(v["sticky"].is_null(), "{v}");
    assert!(v["fallback"].is_null(), "{v}");
    assert!(v["shadow"].is_null(), "{v}");
}

#[test]
fn explain_uses_the_host_header_for_a_path_only_url() {
    let v = explain_json(
        EXPLAIN_CONFIG,
        &["GET", "/api/users/7", "-H", "Host: shop.example.com"],
    );
    assert_eq!(v["route"]["name"], "users", "{v}");
    assert_eq!(v["path_forwarded"], "/api/users/7");
    // Without it, the host route does not match.
    let v = explain_json(EXPLAIN_CONFIG, &["GET", "/api/users/7"]);
    assert_eq!(v["route"]["name"], "legacy", "{v}");
    assert_eq!(v["upstreams"][0]["name"], "monolith", "{v}");
    // And a method the host route does not list falls through.
    let v = explain_json(
        EXPLAIN_CONFIG,
        &["POST", "/api/users/7", "-H", "Host: shop.example.com"],
    );
    assert_eq!(v["route"]["name"], "legacy", "{v}");
}

#[test]
fn explain_without_a_matching_route_prints_null() {
    let config = "[listen]\naddress = \"127.0.0.1:0\"\n[upstreams.m]\nlegacy = true\n\
                  targets = [\"http://127.0.0.1:8000\"]\n[[routes]]\nprefix = \"/api\"\nto = \"m\"\n";
    let v = explain_json(config, &["GET", "http://shop.example.com/other?x=1"]);
    for key in [
        "route",
        "path_forwarded",
        "upstreams",
        "sticky",
        "fallback",
        "shadow",
        "passed_over",
    ] {
        assert!(v.get(key).is_some(), "missing key {key}: {v}");
    }
    assert!(v["route"].is_null(), "{v}");
    assert_eq!(v["upstreams"], serde_json::json!([]), "{v}");
}

#[test]
fn explain_text_is_aligned_and_names_route_and_path() {
    let file = ConfigFile::new(EXPLAIN_CONFIG);
    let run = figway(&[
        "explain",
        file.path(),
        "GET",
        "http://shop.example.com/api/users/7?x=1",
    ]);
    assert_eq!(run.code(), Some(0), "stderr:\n{}", run.stderr);
    let out = &run.stdout;
    assert!(out.contains("users"), "{out}");
    assert!(out.contains("/api/users/7?x=1"), "{out}");
    assert!(
        serde_json::from_str::<Value>(out.trim()).is_err(),
        "text output should not be JSON: {out}"
    );
    // Every line is `label  value`, with the values in one column.
    let columns: Vec<usize> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let gap = l
                .find("  ")
                .unwrap_or_else(|| panic!("no aligned gap in {l:?}:\n{out}"));
            gap + l[gap..].len() - l[gap..].trim_start().len()
        })
        .collect();
    assert!(columns.len() >= 3, "{out}");
    assert!(
        columns.windows(2).all(|w| w[0] == w[1]),
        "values not aligned ({columns:?}):\n{out}"
    );
    let route_line = out
        .lines()
        .find(|l| l.starts_with("route"))
        .unwrap_or_else(|| panic!("no route line:\n{out}"));
    assert!(route_line.trim_end().ends_with("users"), "{route_line:?}");
}

const CLIENT_IP_CONFIG: &str = r#"[listen]
address = "127.0.0.1:0"

[upstreams.old]
legacy = true
targets = ["http://127.0.0.1:8000"]

[upstreams.new]
targets = ["http://127.0.0.1:9001"]

[[routes]]
name = "by-ip"
prefix = "/"
split = [{ to = "new", weight = 50 }, { to = "old", weight = 50 }]
sticky = "client_ip"
"#;

/// A client_ip sticky value is shown as the address (it used to be its
/// bytes: `"\n\u0000\u0000\u0001"` for 10.0.0.1), v4 and v6, in JSON
/// and text; the side is unchanged by how the value is shown (the agreement
/// with the proxy is in tests/strangler.rs).
#[test]
fn explain_shows_a_client_ip_key_as_the_address() {
    for (client, shown) in [
        ("10.0.0.1", "10.0.0.1"),
        ("2001:db8::7", "2001:db8::7"),
        // Hashed as the v4 address it maps, so shown as it too.
        ("::ffff:10.0.0.1", "10.0.0.1"),
    ] {
        let v = explain_json(CLIENT_IP_CONFIG, &["GET", "/x", "--client", client]);
        assert_eq!(v["sticky"]["key"], "client_ip", "{v}");
        assert_eq!(v["sticky"]["value"], shown, "{client}: {v}");
        assert!(v["sticky"]["chosen"].is_string(), "{v}");
        let file = ConfigFile::new(CLIENT_IP_CONFIG);
        let run = figway(&["explain", file.path(), "GET", "/x", "--client", client]);
        assert_eq!(run.code(), Some(0), "stderr:\n{}", run.stderr);
        let sticky = run
            .stdout
            .lines()
            .find(|l| l.starts_with("sticky"))
            .unwrap_or_else(|| panic!("no sticky line:\n{}", run.stdout));
        let expected = format!(
            "client_ip = {shown} -> {}",
            v["sticky"]["chosen"].as_str().unwrap_or_default()
        );
        assert!(
            sticky.ends_with(&expected),
            "{sticky:?}, expected {expected:?}"
        );
    }
    // A v4 address and its v4-mapped form land on the same side.
    let a = explain_json(CLIENT_IP_CONFIG, &["GET", "/x", "--client", "10.0.0.1"]);
    let b = explain_json(
        CLIENT_IP_CONFIG,
        &["GET", "/x", "--client", "::ffff:10.0.0.1"],
    );
    assert_eq!(a["sticky"]["chosen"], b["sticky"]["chosen"]);
    // Without --client there is no value and no side.
    let v = explain_json(CLIENT_IP_CONFIG, &["GET", "/x"]);
    assert!(
        v["sticky"]["value"].is_null() && v["sticky"]["chosen"].is_null(),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_forwards_the_same_path_as_the_proxy() {
    let backend = Backend::start("users").await;
    let routes = format!(
        "[upstreams.users]\nlegacy = true\ntargets = [\"{}\"]\n\
         [[routes]]\nname = \"users\"\nprefix = \"/api/users\"\nrewrite_prefix = \"/v2/users\"\nto = \"users\"\n\
         [[routes]]\nname = \"orders\"\nprefix = \"/api/orders/\"\nstrip_prefix = true\nto = \"users\"\n",
        backend.url()
    );
    let text = config(&routes);
    let f = Figway::start(&text).await;
    let cases = [
        ("/api/users/7?x=1", "/v2/users/7?x=1"),
        ("/api/users", "/v2/users"),
        ("/api/./users/%37/../8?q=%2F", "/v2/users/8?q=%2F"),
        ("/api/orders/42?y", "/42?y"),
        ("/api/orders", "/"),
    ];
    for (path, expected) in cases {
        let v = tokio::task::spawn_blocking({
            let text = text.clone();
            let path = path.to_string();
            move || explain_json(&text, &["GET", &path])
        })
        .await
        .unwrap();
        let a = get(f.addr, path, &[]).await;
        assert_eq!(a.status, 200, "{path}: {}", a.text());
        let proxied = backend.last().uri.to_string();
        assert_eq!(
            v["path_forwarded"], proxied,
            "{path}: explain and proxy disagree"
        );
        assert_eq!(proxied, expected, "{path}");
    }
}

// === command line ===

#[test]
fn version_prints_the_version() {
    let run = figway(&["--version"]);
    assert_eq!(run.code(), Some(0), "stderr:\n{}", run.stderr);
    assert!(
        run.stdout.contains(env!("CARGO_PKG_VERSION")),
        "stdout: {}",
        run.stdout
    );
}

#[test]
fn an_unknown_flag_is_exit_2() {
    let run = figway(&["--no-such-flag"]);
    assert_eq!(run.code(), Some(2), "stderr:\n{}", run.stderr);
    let file = ConfigFile::new(EXPLAIN_CONFIG);
    let run = figway(&["check", file.path(), "--no-such-flag"]);
    assert_eq!(run.code(), Some(2), "stderr:\n{}", run.stderr);
}

/// `figway chekc tour.toml`: a word close to a subcommand followed by more
/// arguments is a mistyped subcommand, not a config path (which takes no
/// further arguments).
#[test]
fn a_mistyped_subcommand_is_exit_2_suggesting_the_command() {
    let file = ConfigFile::new(EXPLAIN_CONFIG);
    for (typo, command) in [("chekc", "check"), ("explian", "explain"), ("rnu", "run")] {
        let run = figway(&[typo, file.path()]);
        assert_eq!(run.code(), Some(2), "{typo}: stderr:\n{}", run.stderr);
        let first = run.stderr.lines().next().unwrap_or_default();
        assert_eq!(
            first,
            format!("error: \"{typo}\" is not a command (did you mean \"{command}\"?)"),
            "stderr:\n{}",
            run.stderr
        );
        assert!(
            run.stderr.contains(&format!("Usage: figway {command}")),
            "stderr:\n{}",
            run.stderr
        );
    }
    // Not close to any command: the config-path shorthand's own message.
    let run = figway(&["tour.toml", file.path()]);
    assert_eq!(run.code(), Some(2), "stderr:\n{}", run.stderr);
    assert!(
        run.stderr.contains("\"tour.toml\" is not a command")
            && run.stderr.contains("takes no further arguments")
            && !run.stderr.contains("did you mean"),
        "stderr:\n{}",
        run.stderr
    );
}

/// `figway chek` alone: no such file, and close to `check`, so it is said as
/// a typo (exit 2) rather than as a missing config named `chek`; a file of
/// that name is still served as SPEC §1's `figway PATH` says.
#[test]
fn a_lone_word_close_to_a_command_is_a_typo_unless_such_a_file_exists() {
    let dir = tempdir::Dir::new();
    let in_dir = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = in_dir(&["chek"]);
    assert_eq!(code, Some(2), "stderr:\n{stderr}");
    assert!(
        stderr.starts_with(
            "error: \"chek\" is not a command, nor a config file (did you mean \"check\"?)"
        ),
        "stderr:\n{stderr}"
    );
    // A word close to nothing is a config path that cannot be read: exit 1.
    let (code, stderr) = in_dir(&["tour.toml"]);
    assert_eq!(code, Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains("tour.toml: cannot read config"),
        "stderr:\n{stderr}"
    );
    // A file named `chek` is a config path: here an invalid one, so exit 1
    // with its own error.
    std::fs::write(dir.path().join("chek"), "[listen]\n").unwrap();
    let (code, stderr) = in_dir(&["chek"]);
    assert_eq!(code, Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains("chek:1:1: listen.address"),
        "stderr:\n{stderr}"
    );
}

#[test]
fn explain_with_a_missing_argument_is_exit_2() {
    let file = ConfigFile::new(EXPLAIN_CONFIG);
    let run = figway(&["explain", file.path(), "GET"]);
    assert_eq!(run.code(), Some(2), "stderr:\n{}", run.stderr);
    let run = figway(&["explain"]);
    assert_eq!(run.code(), Some(2), "stderr:\n{}", run.stderr);
}

// === serving ===

/// Reads the child's stderr until the startup line; returns the bound
/// addresses and keeps draining stderr so the child never blocks on it.
fn wait_serving(child: &mut Child) -> (SocketAddr, SocketAddr) {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if sent {
                continue;
            }
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v["message"] == "figway serving" {
                    let parse = |k: &str| v[k].as_str().and_then(|s| s.parse::<SocketAddr>().ok());
                    let _ = tx.send((parse("listen"), parse("admin")));
                    sent = true;
                }
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok((Some(listen), Some(admin))) => (listen, admin),
        Ok(other) => panic!("startup line without listen/admin addresses: {other:?}"),
        Err(_) => {
            let _ = child.kill();
            panic!("no \"figway serving\" line on stderr");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_config_path_serves_and_exits_0_on_sigterm() {
    let backend = Backend::start("mono").await;
    let file = ConfigFile::new(&config(&format!(
        "[upstreams.m]\nlegacy = true\ntargets = [\"{}\"]\n[[routes]]\nprefix = \"/\"\nto = \"m\"\n",
        backend.url()
    )));
    let mut child = Command::new(BIN)
        .arg(&file.path)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (listen, admin) = tokio::task::block_in_place(|| wait_serving(&mut child));
    let a = get(listen, "/hello", &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.text(), "mono");
    assert_eq!(backend.last().uri.path(), "/hello");
    assert_eq!(get(admin, "/healthz", &[]).await.status, 200);

    let status = tokio::task::block_in_place(|| {
        sigterm(child.id());
        wait_within(&mut child, Duration::from_secs(15))
    });
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("figway did not exit within 15 s of SIGTERM");
    };
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn run_with_a_missing_config_file_is_exit_1() {
    let dir = tempdir::Dir::new();
    let missing = dir.path().join("nope.toml");
    let run = figway(&["run", "--config", missing.to_str().unwrap()]);
    assert_eq!(run.code(), Some(1), "stderr:\n{}", run.stderr);
    assert!(run.stderr.contains("nope.toml"), "stderr:\n{}", run.stderr);
}

#[test]
fn run_on_a_taken_address_is_exit_1_naming_it() {
    // A plain listener, without SO_REUSEPORT, so figway cannot share it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let file = ConfigFile::new(&format!(
        "[listen]\naddress = \"{address}\"\n[admin]\naddress = \"127.0.0.1:0\"\n\
         [upstreams.m]\nlegacy = true\ntargets = [\"http://127.0.0.1:8000\"]\n\
         [[routes]]\nprefix = \"/\"\nto = \"m\"\n"
    ));
    let run = figway_within(&["run", "--config", file.path()], Duration::from_secs(15));
    assert_eq!(run.code(), Some(1), "stderr:\n{}", run.stderr);
    // Said like a config error: at the key that names the address.
    let expected = format!(
        "{}:2:11: listen.address: {address} is already in use (by another figway? to replace \
         a running figway, start the new one with figway run --upgrade)",
        file.path.display()
    );
    assert!(
        run.stderr.lines().any(|l| l == expected),
        "no line {expected:?} in\n{}",
        run.stderr
    );
    drop(taken);
}

#[test]
fn run_on_a_taken_admin_address_is_exit_1_at_its_key() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let file = ConfigFile::new(&format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n\n[admin]\naddress   =   \"{address}\"\n\
         [upstreams.m]\nlegacy = true\ntargets = [\"http://127.0.0.1:8000\"]\n\
         [[routes]]\nprefix = \"/\"\nto = \"m\"\n"
    ));
    let run = figway_within(&["run", "--config", file.path()], Duration::from_secs(15));
    assert_eq!(run.code(), Some(1), "stderr:\n{}", run.stderr);
    let prefix = format!(
        "{}:5:15: admin.address: {address} is already in use",
        file.path.display()
    );
    assert!(
        run.stderr.lines().any(|l| l.starts_with(&prefix)),
        "no line starting {prefix:?} in\n{}",
        run.stderr
    );
    drop(taken);
}

/// The stderr lines of `figway ARGS` up to a moment after its startup line
/// (a warning at start follows that line at once); then it is killed.
fn startup_lines(args: &[&str]) -> Vec<String> {
    let mut child = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The first quiet half second after the startup line ends the wait.
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(line) => lines.push(line),
            Err(_) if lines.iter().any(|l| l.contains("figway serving")) => break,
            Err(_) => {}
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        lines.iter().any(|l| l.contains("figway serving")),
        "{lines:#?}"
    );
    lines
}

/// SPEC §9: with `net.ipv4.tcp_migrate_req = 0`, `run --upgrade` warns that
/// the old figway's queued connections will be reset when it closes its
/// listener; with 1 it says nothing. An ordinary start shares no listener,
/// so it never warns. The test follows whatever this kernel is set to.
#[test]
fn warns_about_tcp_migrate_req_off_under_upgrade_only() {
    let Ok(setting) = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req") else {
        return; // Not Linux 5.14+: nothing to warn about.
    };
    let file = ConfigFile::new(&config(
        "[upstreams.m]\nlegacy = true\ntargets = [\"http://127.0.0.1:9\"]\n[[routes]]\nprefix = \"/\"\nto = \"m\"\n",
    ));
    let warned = |lines: &[String]| {
        lines
            .iter()
            .any(|l| l.contains("tcp_migrate_req") && l.contains("WARN"))
    };
    let plain = startup_lines(&[file.path()]);
    assert!(!warned(&plain), "warned on an ordinary start: {plain:#?}");
    let upgrade = startup_lines(&["run", "--config", file.path(), "--upgrade"]);
    assert_eq!(
        warned(&upgrade),
        setting.trim() == "0",
        "setting {setting:?}, stderr {upgrade:#?}"
    );
}

/// The README's first command runs figway on config/example.toml: it must
/// stay valid, without warnings, as the code and the schema move on.
#[test]
fn the_example_config_is_valid_and_warning_free() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml");
    let run = figway(&["check", example]);
    assert_eq!(run.code(), Some(0), "stderr:\n{}", run.stderr);
    assert!(!run.stdout.contains("warning:"), "stdout:\n{}", run.stdout);
}

/// `figway check FILE | head -1` and the like: when the reader of stdout
/// has gone, check and explain end quietly with their status, rather than
/// panicking on EPIPE (Rust ignores SIGPIPE, so `print!` would).
#[test]
fn check_and_explain_end_quietly_when_stdout_is_closed() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
    let example = example.to_str().unwrap();
    for args in [
        vec!["check", example],
        vec!["explain", example, "GET", "http://example.com/"],
    ] {
        // The read end is closed before figway starts: its first write fails.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(BIN)
            .args(&args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(out.status.success(), "{args:?}: {:?} {stderr}", out.status);
    }
}
