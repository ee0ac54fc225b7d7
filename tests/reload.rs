//! Hot reload (SPEC §6, issue 4) against the real binary, so its file
//! watcher, SIGHUP handler and `POST /reload` are the ones in production: a
//! background load runs while the config is replaced 36 times through every
//! trigger (in-place write, rename, Kubernetes `..data` symlink swap, SIGHUP,
//! POST /reload) and the route table flips between two backends, with no
//! request failing; keep-alive client connections survive a reload; invalid
//! files (a dangling upstream, a syntax error) leave the old table serving and
//! are reported with `figway.toml:LINE:COL`; an explicit trigger reloads an
//! unchanged file; pooled upstream connections are kept; a `[listen]` change
//! keeps the old listener; and each reload logs one line naming what changed.
#![cfg(unix)]

mod support;
use support::*;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};

/// How long one reload may take to show in `/config` before a test fails.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(5);

// === helpers ===

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn json_of(a: &Answer) -> Value {
    serde_json::from_slice(&a.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&a.body)))
}

async fn config_status(admin: SocketAddr) -> Value {
    let a = get(admin, "/config", &[]).await;
    assert_eq!(a.status, 200, "GET /config: {}", a.text());
    json_of(&a)
}

async fn post_reload(admin: SocketAddr) -> Answer {
    send(
        admin,
        Request::post("/reload")
            .header("host", "admin.local")
            .body(full(""))
            .unwrap(),
    )
    .await
}

fn sighup(pid: u32) {
    let status = Command::new("kill")
        .arg("-HUP")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -HUP {pid} failed");
}

/// Polls `/config` until `ok` holds; panics with the last answer on timeout.
async fn wait_config(admin: SocketAddr, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let v = config_status(admin).await;
        if ok(&v) {
            return v;
        }
        if start.elapsed() > RELOAD_TIMEOUT {
            panic!("timed out after {RELOAD_TIMEOUT:?} waiting for {what}; /config: {v}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `/config` reports `version` with no error.
async fn wait_version(admin: SocketAddr, version: &str) -> Value {
    wait_config(admin, &format!("version {version}"), |v| {
        v["version"] == version && v["last_error"].is_null()
    })
    .await
}

/// Opens the existing file with truncate and writes it, as `echo >` and most
/// editors' "write in place" do: a watcher may see the empty file first.
fn write_in_place(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Writes a temporary file next to `path` and renames it over `path`, as
/// editors and `mv` save.
fn write_by_rename(path: &Path, text: &str) {
    let tmp = path.with_file_name(".figway.toml.swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path)
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false)
}

/// Lays out a Kubernetes ConfigMap volume: `dir/figway.toml ->
/// ..data/figway.toml`, `..data -> ..2026_11_23_0`. Returns the config path.
fn k8s_layout(dir: &Path, text: &str) -> PathBuf {
    let ts = dir.join("..2026_11_23_0");
    std::fs::create_dir(&ts).unwrap();
    std::fs::write(ts.join("figway.toml"), text).unwrap();
    std::os::unix::fs::symlink("..2026_11_23_0", dir.join("..data")).unwrap();
    let path = dir.join("figway.toml");
    std::os::unix::fs::symlink("..data/figway.toml", &path).unwrap();
    path
}

/// What kubelet's atomic writer does on a ConfigMap update: write the new
/// files into a fresh timestamped directory, point `..data_tmp` at it, rename
/// `..data_tmp` over `..data` (one atomic step), make sure the user-visible
/// `figway.toml -> ..data/figway.toml` link exists, and remove the old
/// directory.
fn k8s_swap(dir: &Path, n: usize, text: &str) {
    let name = format!("..2026_11_23_{n}");
    let ts = dir.join(&name);
    std::fs::create_dir(&ts).unwrap();
    std::fs::write(ts.join("figway.toml"), text).unwrap();
    let data = dir.join("..data");
    let old = std::fs::read_link(&data).ok();
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(&name, &tmp).unwrap();
    std::fs::rename(&tmp, &data).unwrap();
    let user = dir.join("figway.toml");
    if !is_symlink(&user) {
        // An earlier step replaced the link by a regular file; put the
        // ConfigMap layout back, atomically.
        let link_tmp = dir.join("figway.toml.link");
        std::os::unix::fs::symlink("..data/figway.toml", &link_tmp).unwrap();
        std::fs::rename(&link_tmp, &user).unwrap();
    }
    if let Some(old) = old {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
}

/// Two upstreams `a` and `b`; the root route goes to `to`. `tag` makes each
/// written file (and so its version) unique.
fn two_backends(a: &Backend, b: &Backend, to: &str, tag: &str) -> String {
    config(&format!(
        "# {tag}\n[upstreams.a]\ntargets = [\"{}\"]\nlegacy = true\n[upstreams.b]\ntargets = [\"{}\"]\n[[routes]]\nname = \"root\"\nprefix = \"/\"\nto = \"{to}\"\n",
        a.url(),
        b.url()
    ))
}

async fn spawn_figway(text: &str) -> FigwayProcess {
    tokio::task::block_in_place(|| FigwayProcess::spawn(text))
}

async fn body_at(addr: SocketAddr, path: &str) -> String {
    let a = get(addr, path, &[]).await;
    assert_eq!(a.status, 200, "GET {path}: {} {}", a.status, a.text());
    a.text()
}

// === background load ===

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// How a load client uses its connection.
#[derive(Debug, Clone, Copy)]
enum Conn {
    /// One keep-alive connection for the whole run; it closing is a failure.
    KeepAlive,
    /// A new connection every so many requests.
    Reconnect(usize),
    /// A new connection for every request.
    Fresh,
}

/// Pause between one client's requests: keeps the load at a few thousand
/// requests over the few seconds a test runs.
const PACE: Duration = Duration::from_millis(1);
/// Hard bound on one client's requests, whatever happens.
const MAX_PER_CLIENT: usize = 5_000;

#[derive(Default)]
struct Load {
    ok: AtomicUsize,
    failed: AtomicUsize,
    server_errors: AtomicUsize,
    saw_a: AtomicUsize,
    saw_b: AtomicUsize,
    errors: Mutex<Vec<String>>,
}

impl Load {
    fn total(&self) -> usize {
        self.ok.load(Ordering::SeqCst) + self.failed.load(Ordering::SeqCst)
    }

    fn fail(&self, why: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        let mut errors = self.errors.lock().unwrap();
        if errors.len() < 20 {
            errors.push(why);
        }
    }

    fn record(&self, status: StatusCode, body: &[u8]) {
        if status.is_server_error() {
            self.server_errors.fetch_add(1, Ordering::SeqCst);
        }
        match (status, body) {
            (StatusCode::OK, b"a") => {
                self.saw_a.fetch_add(1, Ordering::SeqCst);
                self.ok.fetch_add(1, Ordering::SeqCst);
            }
            (StatusCode::OK, b"b") => {
                self.saw_b.fetch_add(1, Ordering::SeqCst);
                self.ok.fetch_add(1, Ordering::SeqCst);
            }
            _ => self.fail(format!(
                "answer {status} {:?}",
                String::from_utf8_lossy(body)
            )),
        }
    }

    /// Asserts zero failures and zero 5xx.
    fn assert_clean(&self) {
        let errors = self.errors.lock().unwrap();
        assert_eq!(
            self.failed.load(Ordering::SeqCst),
            0,
            "failed requests out of {}; first errors: {errors:#?}",
            self.total()
        );
        assert_eq!(self.server_errors.load(Ordering::SeqCst), 0, "5xx answers");
    }
}

async fn open(addr: SocketAddr) -> Result<Sender, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn request(sender: &mut Sender) -> Result<(StatusCode, Bytes), String> {
    sender
        .ready()
        .await
        .map_err(|e| format!("connection not ready: {e}"))?;
    let req = Request::get("/")
        .header("host", "test.local")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = res.status();
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body failed: {e}"))?
        .to_bytes();
    Ok((status, body))
}

async fn load_client(addr: SocketAddr, mode: Conn, stop: Arc<AtomicBool>, load: Arc<Load>) {
    let mut sender: Option<Sender> = None;
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) && n < MAX_PER_CLIENT {
        let reuse = match mode {
            Conn::KeepAlive => true,
            Conn::Reconnect(k) => n % k != 0,
            Conn::Fresh => false,
        };
        if !reuse {
            sender = None;
        }
        if sender.as_ref().is_some_and(|s| s.is_closed()) {
            load.fail(format!(
                "{mode:?}: figway closed an idle keep-alive connection"
            ));
            sender = None;
        }
        if sender.is_none() {
            match open(addr).await {
                Ok(s) => sender = Some(s),
                Err(e) => {
                    load.fail(format!("{mode:?}: {e}"));
                    n += 1;
                    tokio::time::sleep(PACE).await;
                    continue;
                }
            }
        }
        match request(sender.as_mut().unwrap()).await {
            Ok((status, body)) => load.record(status, &body),
            Err(e) => {
                load.fail(format!("{mode:?}: {e}"));
                sender = None;
            }
        }
        n += 1;
        tokio::time::sleep(PACE).await;
    }
}

struct Running {
    stop: Arc<AtomicBool>,
    load: Arc<Load>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

fn start_load(addr: SocketAddr, modes: &[Conn]) -> Running {
    let stop = Arc::new(AtomicBool::new(false));
    let load = Arc::new(Load::default());
    let clients = modes
        .iter()
        .map(|&mode| tokio::spawn(load_client(addr, mode, stop.clone(), load.clone())))
        .collect();
    Running {
        stop,
        load,
        clients,
    }
}

impl Running {
    /// Waits until the clients complete `more` requests, so a step is known
    /// to have run under load.
    async fn wait_for(&self, more: usize) {
        let target = self.load.total() + more;
        let start = Instant::now();
        while self.load.total() < target {
            assert!(
                start.elapsed() < RELOAD_TIMEOUT,
                "load stalled at {} requests",
                self.load.total()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn finish(self) -> Arc<Load> {
        self.stop.store(true, Ordering::SeqCst);
        for c in self.clients {
            c.await.expect("load client panicked");
        }
        self.load
    }
}

// === 1. replacements under load ===

#[derive(Debug, Clone, Copy)]
enum Replace {
    SymlinkSwap,
    Rename,
    InPlace,
    InPlaceThenSighup,
    InPlaceThenPost,
}

const ROTATION: [Replace; 6] = [
    Replace::SymlinkSwap,
    Replace::SymlinkSwap,
    Replace::Rename,
    Replace::InPlace,
    Replace::InPlaceThenSighup,
    Replace::InPlaceThenPost,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn config_replaced_36_times_under_load_fails_no_request() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let dir = tempdir::Dir::new();
    let first = two_backends(&a, &b, "a", "start");
    let path = k8s_layout(dir.path(), &first);
    let dir_path = dir.path().to_path_buf();
    let f = tokio::task::block_in_place(|| FigwayProcess::spawn_at(&path, dir));
    let pid = f.child.id();
    assert_eq!(config_status(f.admin).await["version"], sha256_hex(&first));
    assert_eq!(body_at(f.addr, "/").await, "a");

    let running = start_load(
        f.addr,
        &[
            Conn::KeepAlive,
            Conn::KeepAlive,
            Conn::Reconnect(25),
            Conn::Fresh,
        ],
    );
    running.wait_for(20).await;

    let steps = 36;
    for step in 1..=steps {
        let kind = ROTATION[(step - 1) % ROTATION.len()];
        let to = if step % 2 == 1 { "b" } else { "a" };
        let text = two_backends(&a, &b, to, &format!("step {step} {kind:?}"));
        let version = sha256_hex(&text);
        match kind {
            Replace::SymlinkSwap => k8s_swap(&dir_path, step, &text),
            Replace::Rename => {
                assert!(is_symlink(&path), "step {step}: expected the k8s layout");
                write_by_rename(&path, &text);
            }
            Replace::InPlace => write_in_place(&path, &text),
            Replace::InPlaceThenSighup => {
                write_in_place(&path, &text);
                sighup(pid);
            }
            Replace::InPlaceThenPost => {
                write_in_place(&path, &text);
                let r = post_reload(f.admin).await;
                assert_eq!(r.status, 200, "step {step}: POST /reload: {}", r.text());
                assert_eq!(json_of(&r)["version"], version, "step {step}");
            }
        }
        wait_version(f.admin, &version).await;
        assert_eq!(
            body_at(f.addr, "/").await,
            to,
            "step {step} ({kind:?}): the new table routes / to {to}"
        );
        // Let the load run on the new table before the next replacement.
        running.wait_for(75).await;
    }

    let load = running.finish().await;
    let total = load.total();
    println!(
        "{steps} reloads under load: {total} requests, {} to a, {} to b",
        load.saw_a.load(Ordering::SeqCst),
        load.saw_b.load(Ordering::SeqCst)
    );
    load.assert_clean();
    assert!(total >= 2_500, "only {total} requests ran");
    assert!(
        load.saw_a.load(Ordering::SeqCst) > 0,
        "table A never served"
    );
    assert!(
        load.saw_b.load(Ordering::SeqCst) > 0,
        "table B never served"
    );
    assert!(config_status(f.admin).await["last_error"].is_null());
}

// === 2. keep-alive connections ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connection_survives_reloads() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let first = two_backends(&a, &b, "a", "start");
    let f = spawn_figway(&first).await;
    let path = f.dir.path().join("figway.toml");
    let pid = f.child.id();

    let mut conn = H1::connect(f.addr).await;
    let req = || {
        Request::get("/")
            .header("host", "test.local")
            .body(full(""))
            .unwrap()
    };
    assert_eq!(conn.send(req()).await.text(), "a");

    let triggers = ["rename", "sighup", "post"];
    for (i, trigger) in triggers.iter().enumerate() {
        let to = if i % 2 == 0 { "b" } else { "a" };
        let text = two_backends(&a, &b, to, &format!("keep-alive {trigger}"));
        match *trigger {
            "rename" => write_by_rename(&path, &text),
            "sighup" => {
                write_in_place(&path, &text);
                sighup(pid);
            }
            _ => {
                write_in_place(&path, &text);
                assert_eq!(post_reload(f.admin).await.status, 200);
            }
        }
        wait_version(f.admin, &sha256_hex(&text)).await;
        // Give a close, if figway sent one, time to reach the client.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !conn.is_closed(),
            "the keep-alive connection was closed by a reload ({trigger})"
        );
        let answer = conn.send(req()).await;
        assert_eq!(answer.status, 200, "after reload by {trigger}");
        assert_eq!(
            answer.text(),
            to,
            "same connection, routed by the new table after reload by {trigger}"
        );
    }
}

// === 3. invalid files ===

/// 1-based number of the first line equal to `line`.
fn line_of(text: &str, line: &str) -> usize {
    text.lines()
        .position(|l| l == line)
        .unwrap_or_else(|| panic!("no line {line:?} in\n{text}"))
        + 1
}

/// Writes `bad`, checks the old version keeps serving with the error shown
/// (`figway.toml:LINE:COL: ...` containing `what`), and that POST /reload
/// answers 422 with it.
async fn reject_bad_file(f: &FigwayProcess, bad: &str, at: &str, what: &str, old: &str) {
    let path = f.dir.path().join("figway.toml");
    let old_version = sha256_hex(old);
    write_in_place(&path, bad);
    let status = wait_config(f.admin, &format!("last_error with {at}"), |v| {
        v["last_error"]
            .as_str()
            .is_some_and(|e| e.contains(at) && e.contains(what))
    })
    .await;
    assert_eq!(
        status["version"], old_version,
        "a rejected file must not change the version: {status}"
    );
    assert_eq!(
        body_at(f.addr, "/").await,
        "a",
        "the old table keeps serving"
    );

    let r = post_reload(f.admin).await;
    assert_eq!(
        r.status,
        422,
        "POST /reload on an invalid file: {}",
        r.text()
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = json_of(&r);
    let errors = v["errors"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert!(
        errors.iter().any(|e| e
            .as_str()
            .is_some_and(|e| e.contains(at) && e.contains(what))),
        "422 errors should list {at} {what}: {v}"
    );
    let status = config_status(f.admin).await;
    assert_eq!(status["version"], old_version, "{status}");
    assert!(
        status["last_error"]
            .as_str()
            .is_some_and(|e| e.contains(at)),
        "{status}"
    );
    assert_eq!(body_at(f.addr, "/").await, "a");
}

/// Writes the good `text` (by the watcher only), waits for it, then checks
/// POST /reload on it answers 200 with its version.
async fn accept_fixed_file(f: &FigwayProcess, text: &str, to: &str) {
    let path = f.dir.path().join("figway.toml");
    let version = sha256_hex(text);
    write_by_rename(&path, text);
    let status = wait_version(f.admin, &version).await;
    assert!(status["last_error"].is_null(), "{status}");
    assert_eq!(body_at(f.addr, "/").await, to);
    let r = post_reload(f.admin).await;
    assert_eq!(r.status, 200, "POST /reload on a valid file: {}", r.text());
    assert_eq!(json_of(&r)["version"], version);
    assert!(config_status(f.admin).await["last_error"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_file_mid_load_keeps_old_table_and_reports_position() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let good_a = two_backends(&a, &b, "a", "good a");
    let f = spawn_figway(&good_a).await;
    let running = start_load(f.addr, &[Conn::KeepAlive, Conn::KeepAlive, Conn::Fresh]);
    running.wait_for(20).await;

    // A route pointing at an upstream that does not exist: the error points
    // at the value, column 6 of `to = "nowhere"`.
    let dangling = two_backends(&a, &b, "nowhere", "dangling upstream");
    let line = line_of(&dangling, "to = \"nowhere\"");
    reject_bad_file(
        &f,
        &dangling,
        &format!("figway.toml:{line}:6: "),
        "unknown upstream \"nowhere\"",
        &good_a,
    )
    .await;
    running.wait_for(10).await;
    let good_b = two_backends(&a, &b, "b", "good b");
    accept_fixed_file(&f, &good_b, "b").await;
    running.wait_for(10).await;

    // A syntax error: `prefix "/"` lacks its `=`, expected at column 8.
    let good_a2 = two_backends(&a, &b, "a", "good a again");
    let syntax = good_a2.replace("prefix = \"/\"", "prefix \"/\"");
    let line = line_of(&syntax, "prefix \"/\"");
    // The old table is now B; reject_bad_file checks that "a" keeps serving,
    // so go back to A first.
    accept_fixed_file(&f, &good_a2, "a").await;
    reject_bad_file(
        &f,
        &syntax,
        &format!("figway.toml:{line}:8: "),
        "syntax error",
        &good_a2,
    )
    .await;
    running.wait_for(10).await;
    let good_b2 = two_backends(&a, &b, "b", "good b again");
    accept_fixed_file(&f, &good_b2, "b").await;
    running.wait_for(10).await;

    let load = running.finish().await;
    load.assert_clean();
    assert!(load.saw_a.load(Ordering::SeqCst) > 0);
    assert!(load.saw_b.load(Ordering::SeqCst) > 0);
}

// === 4. explicit triggers on an unchanged file ===

/// `YYYY-MM-DDTHH:MM:SS` of an RFC 3339 UTC timestamp: compares in time order.
fn seconds_of(loaded_at: &Value) -> String {
    let s = loaded_at.as_str().expect("loaded_at is a string");
    assert!(
        s.len() >= 20 && s.ends_with('Z') && s.as_bytes()[10] == b'T',
        "not RFC 3339 UTC: {s}"
    );
    s[..19].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_triggers_reload_an_unchanged_file() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let text = two_backends(&a, &b, "a", "unchanged");
    let version = sha256_hex(&text);
    let f = spawn_figway(&text).await;
    let before = config_status(f.admin).await;
    assert_eq!(before["version"], version);
    let t0 = seconds_of(&before["loaded_at"]);

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let r = post_reload(f.admin).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(json_of(&r)["version"], version);
    let after_post = config_status(f.admin).await;
    assert_eq!(after_post["version"], version);
    assert!(after_post["last_error"].is_null());
    let t1 = seconds_of(&after_post["loaded_at"]);
    assert!(
        t1 > t0,
        "POST /reload on an unchanged file must reload: loaded_at {t0} -> {t1}"
    );

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    sighup(f.child.id());
    let after_hup = wait_config(f.admin, "loaded_at to move after SIGHUP", |v| {
        seconds_of(&v["loaded_at"]) > t1
    })
    .await;
    assert_eq!(after_hup["version"], version);
    assert_eq!(body_at(f.addr, "/").await, "a");
}

// === 5. upstream pools ===

/// An HTTP/1.1 backend that counts the TCP connections it accepts.
async fn counting_backend() -> (SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(
                        b"m",
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, accepted, task)
}

/// 20 sequential requests, then 5 rounds of 6 concurrent ones (so the
/// proxy's pool holds several connections a dropped pool would reopen).
async fn traffic(addr: SocketAddr) {
    for _ in 0..20 {
        assert_eq!(body_at(addr, "/").await, "m");
    }
    for _ in 0..5 {
        let round: Vec<_> = (0..6)
            .map(|_| tokio::spawn(async move { body_at(addr, "/").await }))
            .collect();
        for r in round {
            assert_eq!(r.await.unwrap(), "m");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_upstream_connections_survive_a_reload() {
    let (m, accepted, _task) = counting_backend().await;
    let other = Backend::start("other").await;
    // One worker: upstream pools are per worker thread, and which worker
    // a connection lands on is the kernel's and tokio's choice; with one,
    // the count of upstream connections measures pooling alone.
    let table = |other_prefix: &str| {
        config(&format!(
            "[runtime]\nworkers = 1\n[upstreams.m]\ntargets = [\"http://{m}\"]\nlegacy = true\n[upstreams.o]\ntargets = [\"{}\"]\n[[routes]]\nname = \"root\"\nprefix = \"/\"\nto = \"m\"\n[[routes]]\nname = \"other\"\nprefix = \"{other_prefix}\"\nto = \"o\"\n",
            other.url()
        ))
    };
    let first = table("/other");
    let f = spawn_figway(&first).await;
    let path = f.dir.path().join("figway.toml");

    traffic(f.addr).await;
    let warm = accepted.load(Ordering::SeqCst);
    assert!(
        (1..=12).contains(&warm),
        "50 requests, at most 6 at a time, opened {warm} upstream connections: no pooling?"
    );
    // Control: the same traffic again without a reload.
    traffic(f.addr).await;
    let steady = accepted.load(Ordering::SeqCst);
    assert!(
        steady - warm <= 2,
        "without a reload the pool should serve: {warm} -> {steady} connections"
    );

    let second = table("/elsewhere");
    write_in_place(&path, &second);
    assert_eq!(post_reload(f.admin).await.status, 200);
    wait_version(f.admin, &sha256_hex(&second)).await;
    assert_eq!(body_at(f.addr, "/elsewhere/x").await, "other");

    traffic(f.addr).await;
    let after = accepted.load(Ordering::SeqCst);
    println!("upstream connections: warm {warm}, steady {steady}, after reload {after}");
    assert!(
        after - steady <= 2,
        "the reload threw the pool away: {steady} upstream connections before, {after} after"
    );
}

// === 6. [listen] needs a restart ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_change_keeps_the_old_listener() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let first = two_backends(&a, &b, "a", "listen");
    let f = spawn_figway(&first).await;
    let path = f.dir.path().join("figway.toml");

    // Free, not held: a reload that wrongly bound it must be able to.
    let free = free_port().await;
    let second = two_backends(&a, &b, "b", "listen moved").replacen(
        "address = \"127.0.0.1:0\"",
        &format!("address = \"{free}\""),
        1,
    );
    assert!(second.starts_with(&format!("[listen]\naddress = \"{free}\"")));
    write_by_rename(&path, &second);
    wait_version(f.admin, &sha256_hex(&second)).await;

    // The routes changed, the listener did not.
    assert_eq!(body_at(f.addr, "/").await, "b", "old address still serves");
    assert!(
        TcpStream::connect(free).await.is_err(),
        "a reload must not bind the new listen address"
    );
}

// === 7. the reload log line ===

/// The binary with its stderr lines delivered on a channel; killed on drop.
struct Logged {
    child: Child,
    lines: mpsc::Receiver<String>,
    _dir: tempdir::Dir,
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Logged {
    fn next_json(&self, until: Instant) -> Option<Value> {
        loop {
            let left = until.checked_duration_since(Instant::now())?;
            let line = self.lines.recv_timeout(left).ok()?;
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                return Some(v);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_logs_what_changed() {
    let a = Backend::start("a").await;
    let routes = |extra: &str| {
        config(&format!(
            "[upstreams.a]\ntargets = [\"{}\"]\nlegacy = true\n[[routes]]\nname = \"root\"\nprefix = \"/\"\nto = \"a\"\n{extra}",
            a.url()
        ))
    };
    let first = routes("[[routes]]\nname = \"old\"\nprefix = \"/old\"\nto = \"a\"\n");
    let second = routes("[[routes]]\nname = \"extra\"\nprefix = \"/extra\"\nto = \"a\"\n");

    let dir = tempdir::Dir::new();
    let path = dir.path().join("figway.toml");
    std::fs::write(&path, &first).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_figway"))
        .arg("run")
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let p = Logged {
        child,
        lines: rx,
        _dir: dir,
    };

    let deadline = Instant::now() + Duration::from_secs(20);
    let admin: SocketAddr = loop {
        let v = p.next_json(deadline).expect("no 'figway serving' line");
        if v["message"] == "figway serving" {
            break v["admin"].as_str().unwrap().parse().unwrap();
        }
    };

    write_by_rename(&path, &second);
    let version = sha256_hex(&second);
    wait_version(admin, &version).await;

    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        let v = p
            .next_json(deadline)
            .expect("no 'config reloaded' line for the new version");
        if v["message"] == "config reloaded" && v["version"] == version {
            break v;
        }
    };
    let changes = line["changes"]
        .as_str()
        .unwrap_or_else(|| panic!("no changes field: {line}"));
    assert!(changes.contains("+[extra]"), "added route missing: {line}");
    assert!(changes.contains("-[old]"), "removed route missing: {line}");
    assert_eq!(line["trigger"], "file", "{line}");
    // Rounded to a tenth of a millisecond, not the float's 17 digits.
    let took = line["took_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("no took_ms number: {line}"));
    assert_eq!((took * 10.0).round() / 10.0, took, "{line}");
}

/// A config that is a symlink into a subdirectory (`figway.toml ->
/// conf/current.toml`, laid out by hand rather than by Kubernetes): an
/// in-place edit of the target is seen, though the non-recursive watch on
/// the config's own directory cannot see inside `conf/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_place_edit_behind_a_symlink_into_a_subdirectory_is_seen() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let dir = support::tempdir::Dir::new();
    std::fs::create_dir(dir.path().join("conf")).unwrap();
    let target = dir.path().join("conf/current.toml");
    std::fs::write(&target, two_backends(&a, &b, "a", "first")).unwrap();
    let link = dir.path().join("figway.toml");
    std::os::unix::fs::symlink("conf/current.toml", &link).unwrap();
    let f = tokio::task::block_in_place(|| FigwayProcess::spawn_at(&link, dir));
    assert_eq!(body_at(f.addr, "/").await, "a");
    let next = two_backends(&a, &b, "b", "second");
    write_in_place(&target, &next);
    wait_version(f.admin, &sha256_hex(&next)).await;
    assert_eq!(body_at(f.addr, "/").await, "b");
}
