//! figway's own log (stderr) as an operator meets it, from the real binary:
//! JSON lines that a log tool can take apart (no key twice: tracing's own
//! `target` is the module, so events say `upstream_target`), health and
//! ejection lines that name their upstream, a warning that says why a
//! target cannot be reached (a name that does not resolve, a refused
//! port), rate-limited; colour only at a terminal; and the one start-up
//! line, in both formats, whose facts are checked against the config, the
//! sockets and `figway check`.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, Visitor};
use serde_json::{Map, Value};
use support::{full, get, refused_port, tempdir, Backend};

// === a JSON object that refuses duplicate keys ===

/// One log line as a JSON object whose top-level keys are all different.
/// serde_json (like most log tools) silently keeps the last of two equal
/// keys, so a plain parse cannot see the clash this test is about.
struct StrictObject(Map<String, Value>);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> Visitor<'de> for Keys {
            type Value = StrictObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictObject, A::Error> {
                let mut out = Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value: Value = map.next_value()?;
                    if out.insert(key.clone(), value).is_some() {
                        return Err(A::Error::custom(format!("duplicate key {key:?}")));
                    }
                }
                Ok(StrictObject(out))
            }
        }
        d.deserialize_map(Keys)
    }
}

/// `line` as a JSON object, failing the test on a key seen twice. A
/// `Value`, so that a missing key reads as null.
fn strict(line: &str) -> Value {
    match serde_json::from_str::<StrictObject>(line) {
        Ok(o) => Value::Object(o.0),
        Err(e) => panic!("not a JSON object with distinct keys ({e}): {line}"),
    }
}

#[test]
fn strict_parse_sees_a_key_twice() {
    assert!(serde_json::from_str::<StrictObject>(r#"{"a":1,"b":{"a":2}}"#).is_ok());
    let twice = serde_json::from_str::<StrictObject>(r#"{"target":"x","a":1,"target":"y"}"#);
    assert!(twice.is_err());
}

// === the binary, its stderr collected ===

/// The real binary on a config file, every stderr line kept; killed when
/// dropped. Unlike `support::FigwayProcess` it waits for the start-up
/// line in either format.
struct Figway {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
    _dir: tempdir::Dir,
}

impl Figway {
    fn spawn(toml: &str, env: &[(&str, &str)]) -> Figway {
        let dir = tempdir::Dir::new();
        let path = dir.path().join("figway.toml");
        std::fs::write(&path, toml).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_figway"));
        command
            .arg("run")
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "info")
            .env_remove("NO_COLOR")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let keep = stderr.clone();
        std::thread::spawn(move || {
            for line in lines {
                let Ok(line) = line else { break };
                keep.lock().unwrap().push(line);
            }
        });
        Figway {
            child,
            stderr,
            _dir: dir,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// The first stderr line that satisfies `want`, waiting up to 10 s.
    async fn line(&self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(l) = self.lines().into_iter().find(|l| want(l)) {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} line on stderr within 10s; stderr:\n{}",
                self.lines().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The first JSON line whose `message` starts with `message`.
    async fn json_line(&self, message: &str) -> Value {
        let line = self
            .line(message, |l| {
                serde_json::from_str::<Value>(l)
                    .ok()
                    .and_then(|v| v["message"].as_str().map(|m| m.starts_with(message)))
                    .unwrap_or(false)
            })
            .await;
        strict(&line)
    }
}

impl Drop for Figway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(log_format: &str, body: &str) -> String {
    format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n\
         [log]\nformat = \"{log_format}\"\naccess_log = false\n{body}\n"
    )
}

fn authority(b: &Backend) -> String {
    b.addr.to_string()
}

// === no key twice; upstream and target named ===

#[tokio::test(flavor = "multi_thread")]
async fn health_and_ejection_lines_have_distinct_keys_and_name_their_upstream() {
    // Fails its health checks until told otherwise.
    let sick = Arc::new(AtomicBool::new(true));
    let flag = sick.clone();
    let checked = Backend::with(move |_| {
        let status = if flag.load(Ordering::Relaxed) {
            503
        } else {
            200
        };
        async move {
            http::Response::builder()
                .status(status)
                .body(full("health"))
                .unwrap()
        }
    })
    .await;
    // Answers 500 to everything: ejected by outlier detection.
    let failing = Backend::with(|_| async {
        http::Response::builder()
            .status(500)
            .body(full("boom"))
            .unwrap()
    })
    .await;
    let toml = config(
        "json",
        &format!(
            "[upstreams.orders]\nlegacy = true\ntargets = [\"{}\"]\n\
             [upstreams.orders.health]\npath = \"/health\"\ninterval = \"50ms\"\n\
             unhealthy_after = 1\nhealthy_after = 1\n\
             [upstreams.users]\ntargets = [\"{}\"]\nretries = 0\n\
             [upstreams.users.outlier]\nconsecutive_failures = 2\neject_for = \"30s\"\n\
             max_ejected_percent = 100\n\
             [[routes]]\nprefix = \"/users\"\nto = \"users\"\n\
             [[routes]]\nprefix = \"/\"\nto = \"orders\"\n",
            checked.url(),
            failing.url()
        ),
    );
    let f = Figway::spawn(&toml, &[]);
    let serving = f.json_line("figway serving").await;
    let proxy: SocketAddr = serving["listen"].as_str().unwrap().parse().unwrap();

    let unhealthy = f.json_line("target unhealthy").await;
    assert_eq!(unhealthy["level"], "WARN");
    assert_eq!(unhealthy["upstream"], "orders");
    assert_eq!(unhealthy["upstream_target"], authority(&checked).as_str());
    assert_eq!(unhealthy["path"], "/health");
    assert_eq!(unhealthy["last_error"], "status 503");
    // tracing's own `target` (the module) is the only `target`.
    assert_eq!(unhealthy["target"], "figway::upstream::health");

    sick.store(false, Ordering::Relaxed);
    let healthy = f.json_line("target healthy again").await;
    assert_eq!(healthy["upstream"], "orders");
    assert_eq!(healthy["upstream_target"], authority(&checked).as_str());

    for _ in 0..2 {
        assert_eq!(get(proxy, "/users/1", &[]).await.status, 500);
    }
    let ejected = f.json_line("target ejected").await;
    assert_eq!(ejected["level"], "WARN");
    assert_eq!(ejected["upstream"], "users");
    assert_eq!(ejected["upstream_target"], authority(&failing).as_str());
    assert!(ejected["ejected_for_ms"].as_u64().is_some(), "{ejected:?}");

    // Every line figway wrote, not only these, is JSON with distinct keys.
    for line in f.lines() {
        strict(&line);
    }
}

/// Every `tracing::` event in `src/` names its fields so that none is
/// one of the keys the JSON formatter writes itself (with
/// `flatten_event(true)` the event's fields sit beside them).
#[test]
fn no_event_field_clashes_with_a_key_of_the_json_formatter() {
    const RESERVED: &[&str] = &[
        "timestamp",
        "level",
        "target",
        "fields",
        "message",
        "span",
        "spans",
        "threadName",
        "threadId",
        "filename",
        "line_number",
    ];
    let mut clashes = Vec::new();
    let mut events = 0;
    for file in rust_files(std::path::Path::new("src")) {
        let text = std::fs::read_to_string(&file).unwrap();
        for level in ["trace", "debug", "info", "warn", "error"] {
            let open = format!("tracing::{level}!(");
            for (at, _) in text.match_indices(&open) {
                events += 1;
                let args = macro_args(&text[at + open.len()..]);
                for name in field_names(&args) {
                    if RESERVED.contains(&name.as_str()) {
                        let line = text[..at].lines().count() + 1;
                        clashes.push(format!("{}:{line}: field `{name}`", file.display()));
                    }
                }
            }
        }
    }
    assert!(
        events > 20,
        "found only {events} events: is the scan broken?"
    );
    assert!(clashes.is_empty(), "{}", clashes.join("\n"));
}

fn rust_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The top-level, comma-separated arguments of a macro call whose text
/// starts just after its `(`, up to the matching `)`.
fn macro_args(text: &str) -> Vec<String> {
    let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
    let (mut args, mut current) = (Vec::new(), String::new());
    for c in text.chars() {
        if in_str {
            current.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' if depth == 0 => break,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                args.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    args.push(current);
    args
}

/// The field names among a tracing macro's arguments: `name = value`,
/// `%name`, `?name` and `name` before the message's format string;
/// `target: "..."`-style directives are not fields.
fn field_names(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for arg in args {
        let arg = arg.trim();
        if arg.starts_with('"') || arg.starts_with("r#\"") {
            break;
        }
        let ident_end = arg
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(arg.len());
        let after = arg[ident_end..].trim_start();
        if after.starts_with(':') && !after.starts_with("::") {
            continue; // `target: ...`, `parent: ...`
        }
        let name = match arg.split_once('=') {
            Some((name, _)) if !arg.contains("==") => name,
            _ => arg,
        };
        let name = name.trim().trim_start_matches(['%', '?']).trim();
        if !name.is_empty() {
            out.push(name.to_string());
        }
    }
    out
}

#[test]
fn field_scan_self_check() {
    let args =
        macro_args(r#"upstream = %u.name, target = %t, ?delay, route, "x {}, y", a = 1) tail"#);
    assert_eq!(
        field_names(&args),
        ["upstream", "target", "delay", "route"],
        "{args:?}"
    );
    let args = macro_args(r#"target: "figway::access", level = f(a, b), "m")"#);
    assert_eq!(field_names(&args), ["level"]);
}

// === why a target cannot be reached ===

#[tokio::test(flavor = "multi_thread")]
async fn an_unresolvable_or_refusing_target_is_logged_once_with_why() {
    let refused = refused_port().await;
    let toml = config(
        "json",
        &format!(
            "[upstreams.ghost]\ntargets = [\"http://no-such-host.invalid:80\"]\nretries = 0\n\
             [upstreams.ghost.outlier]\nmax_ejected_percent = 0\n\
             [upstreams.closed]\nlegacy = true\ntargets = [\"http://{refused}\"]\nretries = 0\n\
             [upstreams.closed.outlier]\nmax_ejected_percent = 0\n\
             [[routes]]\nprefix = \"/ghost\"\nto = \"ghost\"\n\
             [[routes]]\nprefix = \"/\"\nto = \"closed\"\n"
        ),
    );
    let f = Figway::spawn(&toml, &[]);
    let serving = f.json_line("figway serving").await;
    let proxy: SocketAddr = serving["listen"].as_str().unwrap().parse().unwrap();
    // Ejection is off (`max_ejected_percent = 0`; without an `[outlier]`
    // table the built-in connect rule would eject the refusing target after
    // 3 failed connects), so that every request meets it and only the log
    // limit keeps the lines down.
    // A name that resolves to nothing is a target without endpoints (SPEC
    // §10): nothing to connect to, so 503, and the line is the lookup's.
    for (path, status, kind) in [
        ("/ghost/a", 503, "no_healthy_upstream"),
        ("/other", 502, "upstream_connect"),
    ] {
        for _ in 0..5 {
            let a = get(proxy, path, &[]).await;
            assert_eq!(a.status, status, "{path}: {}", a.text());
            assert_eq!(a.header("x-figway-error"), Some(kind));
        }
    }

    let resolve = f.json_line("cannot resolve").await;
    assert_eq!(resolve["level"], "WARN");
    assert_eq!(resolve["upstream"], "ghost");
    assert_eq!(resolve["host_name"], "no-such-host.invalid");
    assert_eq!(resolve["result"], "empty");

    let connect = f.json_line("cannot connect").await;
    assert_eq!(connect["level"], "WARN");
    assert_eq!(connect["upstream"], "closed");
    assert_eq!(connect["upstream_target"], refused.to_string().as_str());
    let error = connect["error"].as_str().unwrap_or("");
    assert!(error.contains("refused"), "{connect:?}");

    // Ten failed requests, two lines: one per name, one per target per
    // 10 s. Give the writer a moment to show any line too many.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = f.lines();
    let about = |what: &str| lines.iter().filter(|l| l.contains(what)).count();
    let ghost = r#""host_name":"no-such-host.invalid""#;
    assert_eq!(about(ghost), 1, "{}", lines.join("\n"));
    let closed = format!(r#""upstream_target":"{refused}""#);
    assert_eq!(about(&closed), 1, "{}", lines.join("\n"));
    for line in &lines {
        strict(line);
    }
}

// === colour ===

#[tokio::test(flavor = "multi_thread")]
async fn pretty_log_to_a_pipe_has_no_colour_codes() {
    let refused = refused_port().await;
    let toml = config(
        "pretty",
        &format!(
            "[upstreams.m]\nlegacy = true\ntargets = [\"http://{refused}\"]\n\
             [[routes]]\nprefix = \"/\"\nto = \"m\"\n"
        ),
    );
    let f = Figway::spawn(&toml, &[]);
    let serving = f.line("serving", |l| l.contains("figway serving on")).await;
    let proxy = pretty_serving(&serving).listen;
    // A warning too: levels are the coloured part of a line.
    assert_eq!(get(proxy, "/", &[]).await.status, 502);
    f.line("connect warning", |l| l.contains("cannot connect"))
        .await;
    for line in f.lines() {
        assert!(!line.contains('\u{1b}'), "escape code in a pipe: {line:?}");
    }
}

/// At a terminal (a pseudo-terminal from util-linux `script`) the level is
/// coloured, unless NO_COLOR is set. figway exits at once here: its listen
/// address is taken, and the error about it is the line looked at.
#[test]
fn pretty_log_at_a_terminal_is_coloured_unless_no_color() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` command to make a pseudo-terminal");
        return;
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let toml = format!(
        "[listen]\naddress = \"{}\"\n[admin]\naddress = \"127.0.0.1:0\"\n\
         [log]\nformat = \"pretty\"\n\
         [upstreams.m]\nlegacy = true\ntargets = [\"http://127.0.0.1:9\"]\n\
         [[routes]]\nprefix = \"/\"\nto = \"m\"\n",
        taken.local_addr().unwrap()
    );
    let dir = tempdir::Dir::new();
    let path = dir.path().join("figway.toml");
    std::fs::write(&path, toml).unwrap();
    let at_terminal = |no_color: Option<&str>| {
        let mut command = Command::new("script");
        command
            .args(["-q", "-e", "-c"])
            .arg(format!(
                "{} run --config {}",
                env!("CARGO_BIN_EXE_figway"),
                path.display()
            ))
            .arg("/dev/null")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null());
        if let Some(v) = no_color {
            command.env("NO_COLOR", v);
        }
        let out = command.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(text.contains("already in use"), "{text}");
        text
    };
    let coloured = at_terminal(None);
    assert!(
        coloured.contains("\u{1b}["),
        "no colour at a terminal: {coloured:?}"
    );
    let plain = at_terminal(Some("1"));
    assert!(
        !plain.contains("\u{1b}["),
        "colour despite NO_COLOR: {plain:?}"
    );
    // An empty NO_COLOR does not count (no-color.org).
    assert!(at_terminal(Some("")).contains("\u{1b}["));
}

// === the start-up line ===

/// Three routes over two upstreams, two workers: each number differs, so a
/// count in the wrong place shows.
async fn startup_config(format: &str) -> (String, Backend) {
    let b = Backend::start("m").await;
    let toml = config(
        format,
        &format!(
            "[runtime]\nworkers = 2\n\
             [upstreams.m]\nlegacy = true\ntargets = [\"{0}\"]\n\
             [upstreams.n]\ntargets = [\"{0}\"]\n\
             [[routes]]\nprefix = \"/a\"\nto = \"n\"\n\
             [[routes]]\nprefix = \"/b\"\nto = \"n\"\n\
             [[routes]]\nprefix = \"/\"\nto = \"m\"\n",
            b.url()
        ),
    );
    (toml, b)
}

/// The version `figway check` prints for `toml`.
fn checked_version(toml: &str) -> String {
    let dir = tempdir::Dir::new();
    let path = dir.path().join("figway.toml");
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_figway"))
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let version = text
        .split_once("(version ")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(v, _)| v.to_string());
    version.unwrap_or_else(|| panic!("no version in `figway check` output:\n{text}"))
}

/// Both addresses serve what the line says: the proxy proxies, the admin
/// API answers.
async fn assert_serving(proxy: SocketAddr, admin: SocketAddr) {
    let a = get(proxy, "/x", &[]).await;
    assert_eq!((a.status.as_u16(), a.text().as_str()), (200, "m"));
    assert_eq!(get(admin, "/healthz", &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn json_start_up_line_has_each_fact_as_a_field() {
    let (toml, _b) = startup_config("json").await;
    let f = Figway::spawn(&toml, &[]);
    let line = f.json_line("figway serving").await;
    assert_eq!(line["message"], "figway serving");
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["routes"], 3);
    assert_eq!(line["upstreams"], 2);
    assert_eq!(line["workers"], 2);
    assert_eq!(line["tls"], false);
    assert_eq!(line["version"], checked_version(&toml).as_str());
    let proxy: SocketAddr = line["listen"].as_str().unwrap().parse().unwrap();
    let admin: SocketAddr = line["admin"].as_str().unwrap().parse().unwrap();
    assert_ne!(proxy.port(), 0);
    assert_ne!(admin.port(), 0);
    assert_serving(proxy, admin).await;
}

/// The facts of a pretty start-up line:
/// `figway serving on A (admin B): N routes, M upstreams, config version V, W workers`.
struct Pretty {
    listen: SocketAddr,
    admin: SocketAddr,
    facts: BTreeMap<String, String>,
}

fn pretty_serving(line: &str) -> Pretty {
    fn bad<T>(line: &str) -> T {
        panic!("not a start-up line: {line:?}")
    }
    let fail = || bad(line);
    let (_, rest) = line.split_once("figway serving on ").unwrap_or_else(fail);
    let (listen, rest) = rest.split_once(" (admin ").unwrap_or_else(fail);
    let (admin, rest) = rest.split_once("): ").unwrap_or_else(fail);
    // "3 routes", "config version abc": the last word names the fact
    // ("version"), or the first word does ("3" of "routes").
    let mut facts = BTreeMap::new();
    for fact in rest.trim().split(", ") {
        let words: Vec<&str> = fact.split(' ').collect();
        match words.as_slice() {
            [n, what] => facts.insert(what.to_string(), n.to_string()),
            ["config", "version", v] => facts.insert("version".into(), v.to_string()),
            _ => bad(line),
        };
    }
    Pretty {
        listen: listen.parse().unwrap_or_else(|_| bad(line)),
        admin: admin.parse().unwrap_or_else(|_| bad(line)),
        facts,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pretty_start_up_line_is_one_sentence_with_each_fact() {
    let (toml, _b) = startup_config("pretty").await;
    let f = Figway::spawn(&toml, &[]);
    let line = f.line("serving", |l| l.contains("figway serving")).await;
    let pretty = pretty_serving(&line);
    let want: BTreeMap<String, String> = [
        ("routes", "3".to_string()),
        ("upstreams", "2".to_string()),
        ("workers", "2".to_string()),
        ("version", checked_version(&toml)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(pretty.facts, want, "{line}");
    // The facts are in the sentence, not repeated as `key=value` after it.
    assert!(!line.contains("listen="), "{line}");
    assert!(line.contains(" INFO "), "{line}");
    assert_serving(pretty.listen, pretty.admin).await;
}
