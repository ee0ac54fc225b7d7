//! `figway demo` end to end (SPEC §1, docs/demo.md): the real binary on
//! free loopback ports, each curl line it prints run with the real `curl`
//! exactly as printed (through `sh -c`, pipes included) and its answer
//! checked, the hot-reload edit it suggests made and seen to move traffic,
//! then SIGINT and a clean exit 0. Also: ports in use (exit 1, naming them
//! and how to pick others), `config/demo.toml` passing `figway check`, and
//! the stub server over a real socket. Every wait is bounded; a demo left
//! running is killed when its handle drops.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::tempdir::Dir;

/// Longest wait for anything the demo does (start, a reload, the drain).
const LIMIT: Duration = Duration::from_secs(30);

/// The banner's last line: the demo is ready once it is out.
const LAST_LINE: &str = "Ctrl-C stops figway and the stubs.";

// === impl Demo ===

/// A running `figway demo`; killed if still running when dropped.
struct Demo {
    child: Child,
    stdout: Receiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// How a demo is told its base port.
enum PortFrom {
    Flag,
    Env,
}

impl Demo {
    /// Starts `figway demo` in `cwd` with `TMPDIR=tmp`, its base port given
    /// as `how` says.
    fn spawn(base: u16, how: PortFrom, cwd: &Path, tmp: &Path) -> Demo {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_figway"));
        cmd.arg("demo")
            .current_dir(cwd)
            .env("TMPDIR", tmp)
            .env("RUST_LOG", "info")
            .env_remove("FIGWAY_DEMO_PORT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match how {
            PortFrom::Flag => cmd.arg("--port").arg(base.to_string()),
            PortFrom::Env => cmd.env("FIGWAY_DEMO_PORT", base.to_string()),
        };
        let mut child = cmd.spawn().expect("cannot start figway demo");
        let (tx, stdout) = mpsc::channel();
        let out = child.stdout.take().expect("stdout piped");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let keep = stderr.clone();
        let err = child.stderr.take().expect("stderr piped");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                keep.lock().unwrap().push(line);
            }
        });
        Demo {
            child,
            stdout,
            stderr,
        }
    }

    /// The printed lines up to the banner's last; `None` when the demo
    /// exited first (its stderr then says why).
    fn banner(&mut self) -> Option<Vec<String>> {
        let deadline = Instant::now() + LIMIT;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    let last = line == LAST_LINE;
                    lines.push(line);
                    if last {
                        return Some(lines);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "no banner within {LIMIT:?}; stdout so far:\n{}\nstderr:\n{}",
                        lines.join("\n"),
                        self.stderr()
                    )
                }
            }
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "figway demo still running after {LIMIT:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("cannot run kill");
        assert!(status.success());
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A base port whose five ports are free now. Another process may take one
/// before the demo binds it; [`start`] then tries another base.
fn free_base() -> u16 {
    loop {
        // Below Linux's ephemeral range (32768–60999 by default): a port
        // checked free here could otherwise be handed to another test's
        // `bind(:0)` or outgoing connection before the demo binds it.
        let base = fastrand::u16(20_000..32_000);
        let free = (base..base + 5).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
        if free {
            return base;
        }
    }
}

/// A demo that printed its banner, on free ports, and the banner.
fn start(how: fn() -> PortFrom, cwd: &Path, tmp: &Path) -> (Demo, u16, Vec<String>) {
    for _ in 0..3 {
        let base = free_base();
        let mut demo = Demo::spawn(base, how(), cwd, tmp);
        if let Some(banner) = demo.banner() {
            return (demo, base, banner);
        }
        let status = demo.wait_exit();
        let err = demo.stderr();
        assert!(
            err.contains("cannot listen"),
            "figway demo exited ({status}) before its banner:\n{err}"
        );
    }
    panic!("no free ports for the demo in three tries");
}

// === running printed lines ===

/// Runs `line` with `sh -c`, as a user pasting it would; bounded in time.
fn sh(line: &str) -> (ExitStatus, String) {
    let child = Command::new("sh")
        .arg("-c")
        .arg(line)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run sh");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(out)) => (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        ),
        Ok(Err(e)) => panic!("{line}: {e}"),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("{line}: no answer within 10s");
        }
    }
}

/// Runs a printed line, which must succeed; its output.
fn run(line: &str) -> String {
    let (status, out) = sh(line);
    assert!(
        status.success(),
        "printed line failed ({status}):\n$ {line}\n{out}"
    );
    out
}

/// The JSON body of a stub's answer (the last line that is an object).
fn body(out: &str) -> Value {
    let json = out
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON in:\n{out}"));
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

fn service(out: &str) -> String {
    body(out)["service"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Re-runs `line` until `ok` holds of its output; the last output if never.
fn until(line: &str, ok: impl Fn(&str) -> bool) -> Result<String, String> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let out = run(line);
        if ok(&out) {
            return Ok(out);
        }
        if Instant::now() > deadline {
            return Err(out);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn curl_lines(banner: &[String]) -> Vec<String> {
    banner
        .iter()
        .map(|l| l.trim())
        .filter(|l| l.starts_with("curl "))
        .map(String::from)
        .collect()
}

// === the tests ===

#[test]
fn every_printed_curl_line_works_and_a_hot_reload_moves_traffic() {
    // An empty working directory: no config/demo.toml, so the embedded
    // copy is written under TMPDIR and served from there.
    let cwd = Dir::new();
    let tmp = Dir::new();
    let (mut demo, base, banner) = start(|| PortFrom::Flag, cwd.path(), tmp.path());
    let text = banner.join("\n");
    let proxy = format!("http://127.0.0.1:{base}");
    let admin = format!("http://127.0.0.1:{}", base + 1);
    let copy = tmp
        .path()
        .join(format!("figway-demo-{base}"))
        .join("demo.toml");
    assert!(
        text.contains(&format!(
            "Serving the demo config built into figway: {}",
            copy.display()
        )),
        "{text}"
    );
    for (name, offset) in [("monolith", 2), ("users", 3), ("search", 4)] {
        assert!(
            text.contains(&format!("{name:<10}http://127.0.0.1:{}", base + offset)),
            "{text}"
        );
    }
    assert!(
        text.contains(&format!("Admin API: {admin}"))
            && text.contains(&format!("Metrics: {admin}/metrics")),
        "{text}"
    );

    let lines = curl_lines(&banner);
    assert_eq!(lines.len(), 8, "{text}");
    for line in &lines {
        assert!(
            line.contains(&proxy) || line.contains(&admin),
            "{line} goes elsewhere"
        );
    }

    // A route the monolith still owns, headers shown.
    let out = run(&lines[0]);
    assert!(out.contains("x-served-by: monolith"), "{out}");
    assert_eq!(service(&out), "monolith");
    assert_eq!(body(&out)["path"], "/api/orders/42");

    // The canary: two users, two sides, as the comment above them says.
    let claim = banner
        .iter()
        .find(|l| l.contains("# A canary split"))
        .expect("a canary comment");
    let (_, landings) = claim.rsplit_once(": ").unwrap();
    let mut sides = Vec::new();
    for landing in landings.split(", ") {
        let (key, side) = landing.split_once(" lands on ").unwrap();
        let line = lines
            .iter()
            .find(|l| l.contains(&format!("x-user-id: {key}'")))
            .unwrap();
        // Sticky: the same side every time.
        for _ in 0..3 {
            assert_eq!(service(&run(line)), side, "{line}");
        }
        sides.push(side.to_string());
    }
    sides.sort();
    assert_eq!(sides, ["monolith", "users"]);

    // The shadow: the monolith answers; the compare shows up as a mismatch.
    let search = lines.iter().find(|l| l.contains("/api/search")).unwrap();
    let out = run(search);
    assert_eq!(
        (service(&out).as_str(), &body(&out)["query"]),
        ("monolith", &Value::from("q=boots"))
    );
    let compare = lines
        .iter()
        .find(|l| l.contains("figway_shadow_requests_total"))
        .unwrap();
    until(compare, |out| {
        out.lines().any(|l| {
            l.starts_with("figway_shadow_requests_total{result=\"mismatch\",route=\"search\"}")
                && !l.ends_with(" 0")
        })
    })
    .unwrap_or_else(|out| panic!("no mismatch counted:\n{out}"));

    // The admin views.
    let routes: Value = serde_json::from_str(&run(&lines[5])).unwrap();
    let names: Vec<&str> = routes
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["search", "users", "legacy"]);
    let upstreams: Value = serde_json::from_str(&run(&lines[6])).unwrap();
    for name in ["monolith", "users", "search"] {
        assert_eq!(
            upstreams[name]["targets"][0]["healthy"], true,
            "{upstreams}"
        );
    }
    let requests = run(&lines[7]);
    for upstream in ["monolith", "users"] {
        assert!(
            requests.contains(&format!("upstream=\"{upstream}\"")),
            "{requests}"
        );
    }

    // The hot reload, exactly as the banner says.
    let at = banner
        .iter()
        .position(|l| l.starts_with("Hot reload: edit "))
        .expect("a hot-reload hint");
    let target = banner[at]
        .trim_start_matches("Hot reload: edit ")
        .split(' ')
        .next()
        .unwrap();
    let (file, line_no) = target.rsplit_once(':').unwrap();
    assert_eq!(Path::new(file), copy);
    let replacement = banner[at + 1].trim();
    let then = &banner[at + 2];
    let key = then
        .trim_start_matches("then run the ")
        .split(' ')
        .next()
        .unwrap();
    let gains = then
        .split("lands on ")
        .nth(1)
        .unwrap()
        .trim_end_matches(" now.");
    let line_no: usize = line_no.parse().unwrap();
    let config = std::fs::read_to_string(file).unwrap();
    let mut edited: Vec<&str> = config.lines().collect();
    assert!(
        edited[line_no - 1].starts_with("split = "),
        "{file}:{line_no} is {:?}",
        edited[line_no - 1]
    );
    edited[line_no - 1] = replacement;
    std::fs::write(PathBuf::from(file), edited.join("\n") + "\n").unwrap();
    let line = lines
        .iter()
        .find(|l| l.contains(&format!("x-user-id: {key}'")))
        .unwrap();
    until(line, |out| service(out) == gains).unwrap_or_else(|out| {
        panic!(
            "{key} still not on {gains} after the edit:\n{out}\n{}",
            demo.stderr()
        )
    });

    // Ctrl-C: a clean stop.
    demo.signal("INT");
    let status = demo.wait_exit();
    assert_eq!(status.code(), Some(0), "stderr:\n{}", demo.stderr());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", base + 2)).is_err(),
        "the monolith stub outlived the demo"
    );
}

#[test]
fn ports_in_use_are_named_with_how_to_pick_others() {
    let cwd = Dir::new();
    let tmp = Dir::new();
    let base = free_base();
    let _proxy = std::net::TcpListener::bind(("127.0.0.1", base)).unwrap();
    let _users = std::net::TcpListener::bind(("127.0.0.1", base + 3)).unwrap();
    let mut demo = Demo::spawn(base, PortFrom::Env, cwd.path(), tmp.path());
    let status = demo.wait_exit();
    let err = demo.stderr();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "127.0.0.1:{base} (the figway proxy, listen.address) is already in use"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "127.0.0.1:{} (the users stub) is already in use",
            base + 3
        )),
        "{err}"
    );
    assert!(
        err.contains("figway demo --port ") && err.contains("FIGWAY_DEMO_PORT="),
        "{err}"
    );
}

#[test]
fn sigterm_stops_the_demo_cleanly_too() {
    let cwd = Dir::new();
    let tmp = Dir::new();
    let (mut demo, _, _) = start(|| PortFrom::Env, cwd.path(), tmp.path());
    demo.signal("TERM");
    assert_eq!(demo.wait_exit().code(), Some(0), "{}", demo.stderr());
}

#[test]
fn a_bad_port_value_is_a_usage_error() {
    let cwd = Dir::new();
    let out = Command::new(env!("CARGO_BIN_EXE_figway"))
        .args(["demo"])
        .current_dir(cwd.path())
        .env("FIGWAY_DEMO_PORT", "80a")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("FIGWAY_DEMO_PORT=\"80a\" is not a port number"));
}

#[test]
fn the_demo_config_passes_check_without_warnings() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_figway"))
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("warning:"), "{stdout}");
}

#[tokio::test]
async fn the_stub_says_who_answered_over_a_socket() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stub = figway::demo::stub::Stub::new("orders").with_field("version", "2.0");
    let task = tokio::spawn(stub.serve(listener, async {
        let _ = stopped.await;
    }));

    let answer = support::get(addr, "/api/orders/42?full=1", &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("x-served-by"), Some("orders"));
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let json: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"service": "orders", "method": "GET", "path": "/api/orders/42", "query": "full=1", "version": "2.0"})
    );
    let health = support::get(addr, "/health", &[]).await;
    assert_eq!(health.status, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&health.body).unwrap()["status"],
        "ok"
    );

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}
