//! Lifecycle (SPEC §1, §9) through the real binary over loopback sockets:
//! a second `figway run` on an address already in use is exit 1 naming it
//! (listen and admin alike), while `run --upgrade` joins the running one
//! and takes over when it drains; `[listen] drain_delay` keeps the
//! listener accepting after SIGTERM while `/readyz` says 503; and a
//! connection accepted before the drain but not yet given its request gets
//! that request answered, with `Connection: close`; and past
//! `max_connections` a new connection waits until one closes.

mod support;
use support::*;

use std::collections::BTreeSet;
use std::io::Read;
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_figway");

/// How long a test waits for any one thing before it fails.
const WAIT: Duration = Duration::from_secs(10);

/// Upstream `m` at `url` behind a catch-all route.
fn route_to(url: &str) -> String {
    format!("[upstreams.m]\ntargets = [\"{url}\"]\n[[routes]]\nprefix = \"/\"\nto = \"m\"\n")
}

/// A whole config on the given addresses, `listen_extra` added to `[listen]`.
fn config_at(listen: &str, admin: &str, listen_extra: &str, body: &str) -> String {
    format!(
        "[listen]\naddress = \"{listen}\"\n{listen_extra}\n[admin]\naddress = \"{admin}\"\n\
         [log]\naccess_log = false\n{body}"
    )
}

fn sigterm(pid: u32) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .expect("cannot run kill");
    assert!(status.success(), "kill -TERM {pid} failed");
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn refused(addr: SocketAddr) -> bool {
    match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
    }
}

/// Runs `figway run --config FILE extra...` on `toml`, expecting it to exit
/// on its own: its exit code and stderr.
fn run_to_exit(toml: &str, extra: &[&str]) -> (Option<i32>, String) {
    let dir = tempdir::Dir::new();
    let path = dir.path().join("figway.toml");
    std::fs::write(&path, toml).unwrap();
    let mut child = Command::new(BIN)
        .arg("run")
        .arg("--config")
        .arg(&path)
        .args(extra)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = wait_exit(&mut child, Duration::from_secs(15));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stderr = reader.join().unwrap();
    let Some(status) = status else {
        panic!("figway still runs 15 s after start; stderr:\n{stderr}");
    };
    (status.code(), stderr)
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `figway_connections_active` as the admin API reports it.
async fn connections_active(admin: SocketAddr) -> i64 {
    let text = get(admin, "/metrics", &[]).await.text();
    text.lines()
        .find_map(|l| l.strip_prefix("figway_connections_active "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1)
}

// === a second figway on a taken address ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_figway_on_the_listen_address_is_exit_1_naming_address_and_key() {
    let b = Backend::start("first").await;
    let first = tokio::task::block_in_place(|| FigwayProcess::spawn(&config(&route_to(&b.url()))));
    let second = config_at(
        &first.addr.to_string(),
        "127.0.0.1:0",
        "",
        &route_to(&b.url()),
    );
    let (code, stderr) = tokio::task::block_in_place(|| run_to_exit(&second, &[]));
    assert_eq!(code, Some(1), "stderr:\n{stderr}");
    // Like a config error: file:line:col of the key, the key, the address.
    let said = format!(
        "figway.toml:2:11: listen.address: {} is already in use",
        first.addr
    );
    assert!(
        stderr.lines().any(|l| l.contains(&said)),
        "stderr does not say {said:?}:\n{stderr}"
    );
    assert!(
        stderr.contains("--upgrade"),
        "no hint at --upgrade:\n{stderr}"
    );
    // The first one keeps the listener to itself.
    for _ in 0..10 {
        assert_eq!(get(first.addr, "/", &[]).await.text(), "first");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_figway_on_the_admin_address_is_exit_1_naming_address_and_key() {
    let b = Backend::start("first").await;
    let first = tokio::task::block_in_place(|| FigwayProcess::spawn(&config(&route_to(&b.url()))));
    let second = config_at(
        "127.0.0.1:0",
        &first.admin.to_string(),
        "",
        &route_to(&b.url()),
    );
    let (code, stderr) = tokio::task::block_in_place(|| run_to_exit(&second, &[]));
    assert_eq!(code, Some(1), "stderr:\n{stderr}");
    // `[admin]` is on line 4 of config_at's file, its address on line 5.
    let said = format!(
        "figway.toml:5:11: admin.address: {} is already in use",
        first.admin
    );
    assert!(
        stderr.lines().any(|l| l.contains(&said)),
        "stderr does not say {said:?}:\n{stderr}"
    );
    assert!(
        stderr.contains("--upgrade"),
        "no hint at --upgrade:\n{stderr}"
    );
    assert_eq!(get(first.admin, "/readyz", &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_joins_the_running_figway_and_serves_alone_once_it_drained() {
    let old_backend = Backend::start("old").await;
    let new_backend = Backend::start("new").await;
    let mut old = tokio::task::block_in_place(|| {
        FigwayProcess::spawn(&config(&route_to(&old_backend.url())))
    });
    let new_config = config_at(
        &old.addr.to_string(),
        &old.admin.to_string(),
        "",
        &route_to(&new_backend.url()),
    );
    let new =
        tokio::task::block_in_place(|| FigwayProcess::spawn_with(&new_config, &["--upgrade"]));
    assert_eq!((new.addr, new.admin), (old.addr, old.admin));

    // Both listen: the kernel spreads new connections over the two.
    let mut answered = BTreeSet::new();
    for _ in 0..200 {
        let a = get(old.addr, "/", &[]).await;
        assert_eq!(a.status, 200, "{}", a.text());
        answered.insert(a.text());
        if answered.len() == 2 {
            break;
        }
    }
    assert_eq!(
        answered,
        BTreeSet::from(["new".to_string(), "old".to_string()]),
        "200 connections did not reach both figways"
    );

    // The old one drains and exits; the new one serves on.
    let status = tokio::task::block_in_place(|| {
        sigterm(old.child.id());
        wait_exit(&mut old.child, WAIT)
    });
    assert!(
        status.is_some_and(|s| s.success()),
        "the old figway did not drain and exit 0: {status:?}"
    );
    for i in 0..20 {
        let a = get(new.addr, &format!("/after/{i}"), &[]).await;
        assert_eq!(a.status, 200, "{}", a.text());
        assert_eq!(a.text(), "new");
    }
    assert_eq!(get(new.admin, "/readyz", &[]).await.status, 200);
}

// === drain_delay ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_delay_keeps_accepting_while_readyz_says_503() {
    const DELAY: Duration = Duration::from_secs(1);
    let b = Backend::start("mono").await;
    let toml = config_at(
        "127.0.0.1:0",
        "127.0.0.1:0",
        "drain_delay = \"1s\"\ndrain_timeout = \"2s\"",
        &route_to(&b.url()),
    );
    let mut f = tokio::task::block_in_place(|| FigwayProcess::spawn(&toml));
    let mut kept = H1::connect(f.addr).await;
    let a = kept
        .send(Request::get("/before").body(full("")).unwrap())
        .await;
    assert_eq!(a.status, 200);

    let sent = Instant::now();
    sigterm(f.child.id());
    // /readyz turns 503 at once, not after the delay.
    loop {
        let a = get(f.admin, "/readyz", &[]).await;
        if a.status == 503 {
            break;
        }
        assert!(
            sent.elapsed() < DELAY / 2,
            "/readyz still {} {:?} after SIGTERM",
            a.status,
            sent.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // New connections are still accepted and served...
    let a = get(f.addr, "/during", &[]).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.text(), "mono");
    // ...and keep-alive ones keep going as before.
    let a = kept
        .send(Request::get("/kept").body(full("")).unwrap())
        .await;
    assert_eq!(a.status, 200);
    assert_ne!(a.header("connection"), Some("close"));
    assert!(
        sent.elapsed() < DELAY,
        "the checks took longer than drain_delay: {:?}",
        sent.elapsed()
    );
    // Then the listener closes, not before the delay has passed.
    while !tokio::task::block_in_place(|| refused(f.addr)) {
        assert!(
            sent.elapsed() < DELAY + WAIT,
            "new connections still accepted {:?} after SIGTERM",
            sent.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        sent.elapsed() >= DELAY,
        "the listener closed {:?} after SIGTERM, within drain_delay",
        sent.elapsed()
    );
    let status = tokio::task::block_in_place(|| wait_exit(&mut f.child, WAIT));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

#[test]
fn invalid_drain_delay_is_reported_with_file_line_and_column() {
    let dir = tempdir::Dir::new();
    let path = dir.path().join("figway.toml");
    std::fs::write(
        &path,
        "[listen]\naddress = \"127.0.0.1:0\"\ndrain_delay = \"soon\"\n\
         [upstreams.m]\ntargets = [\"http://127.0.0.1:9\"]\n\
         [[routes]]\nprefix = \"/\"\nto = \"m\"\n",
    )
    .unwrap();
    let out = Command::new(BIN).arg("check").arg(&path).output().unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{all}");
    let want = format!(
        "{}:3:15: listen.drain_delay: invalid duration",
        path.display()
    );
    assert!(all.contains(&want), "want {want:?} in:\n{all}");
}

// === the drain and connections not yet given a request ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_accepted_before_the_drain_gets_its_first_request_answered_with_close() {
    let b = Backend::start("mono").await;
    let toml = config_at(
        "127.0.0.1:0",
        "127.0.0.1:0",
        "drain_timeout = \"5s\"",
        &route_to(&b.url()),
    );
    let mut f = tokio::task::block_in_place(|| FigwayProcess::spawn(&toml));
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    // Accepted by figway, not merely queued by the kernel.
    let deadline = Instant::now() + WAIT;
    while connections_active(f.admin).await != 1 {
        assert!(
            Instant::now() < deadline,
            "figway never took the connection"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sigterm(f.child.id());
    // The drain has begun once the listener is closed.
    let deadline = Instant::now() + WAIT;
    while !tokio::task::block_in_place(|| refused(f.addr)) {
        assert!(Instant::now() < deadline, "the listener never closed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    s.write_all(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(
        read.is_ok(),
        "no EOF after the answer within {WAIT:?}: {text:?}"
    );
    assert!(text.starts_with("HTTP/1.1 200"), "{text:?}");
    assert!(
        text.to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{text:?}"
    );
    assert!(text.ends_with("mono"), "{text:?}");
    assert_eq!(b.last().uri.path(), "/first");
    let status = tokio::task::block_in_place(|| wait_exit(&mut f.child, WAIT));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_still_close_at_once_on_drain() {
    let b = Backend::start("mono").await;
    let toml = config_at(
        "127.0.0.1:0",
        "127.0.0.1:0",
        "drain_timeout = \"20s\"",
        &route_to(&b.url()),
    );
    let mut f = tokio::task::block_in_place(|| FigwayProcess::spawn(&toml));
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    s.write_all(b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let sent = Instant::now();
    sigterm(f.child.id());
    // The idle connection is closed by the drain, and figway exits long
    // before drain_timeout.
    let n = tokio::time::timeout(WAIT, s.read(&mut buf))
        .await
        .expect("the idle connection stayed open through the drain")
        .unwrap_or(0);
    assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&buf[..n]));
    let status = tokio::task::block_in_place(|| wait_exit(&mut f.child, WAIT));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(sent.elapsed() < WAIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_stream_open_at_the_drain_finishes_and_the_connection_gets_goaway() {
    let b = Backend::with(|_| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Response::new(full("slow done"))
    })
    .await;
    let toml = config_at(
        "127.0.0.1:0",
        "127.0.0.1:0",
        "drain_timeout = \"10s\"",
        &route_to(&b.url()),
    );
    let mut f = tokio::task::block_in_place(|| FigwayProcess::spawn(&toml));
    let stream = TcpStream::connect(f.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = Request::get(format!("http://{}/slow", f.addr))
        .body(full(""))
        .unwrap();
    let response = tokio::spawn(async move {
        let res = sender.send_request(req).await.unwrap();
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, body, sender)
    });
    wait_until("the backend to hold the request", || b.count() == 1).await;
    sigterm(f.child.id());
    let (status, body, mut sender) = tokio::time::timeout(WAIT, response)
        .await
        .expect("the open stream did not finish")
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"slow done");
    // GOAWAY: the connection ends and takes no new stream.
    tokio::time::timeout(WAIT, conn)
        .await
        .expect("the h2 connection stayed open after the drain")
        .unwrap()
        .ok();
    let again = Request::get(format!("http://{}/again", f.addr))
        .body(full(""))
        .unwrap();
    assert!(sender.send_request(again).await.is_err());
    let status = tokio::task::block_in_place(|| wait_exit(&mut f.child, WAIT));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

// === header_read_timeout counts from the accept ===

/// Reads until EOF (or `WAIT`); what came and when EOF came.
async fn read_to_eof(s: &mut TcpStream) -> (String, Instant) {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
    (String::from_utf8_lossy(&out).into_owned(), Instant::now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_sends_is_closed_at_header_read_timeout() {
    let b = Backend::start("mono").await;
    let f = Figway::start(&config_at(
        "127.0.0.1:0",
        "127.0.0.1:0",
        "header_read_timeout = \"500ms\"",
        &route_to(&b.url()),
    ))
    .await;
    let connected = Instant::now();
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    let (got, eof) = read_to_eof(&mut s).await;
    let after = eof - connected;
    assert!(
        after >= Duration::from_millis(450) && after < Duration::from_secs(3),
        "closed {after:?} after connect: {got:?}"
    );
    assert!(!got.starts_with("HTTP/1.1 200"), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_begun_late_is_still_due_within_header_read_timeout_of_the_accept() {
    let b = Backend::start("mono").await;
    let f = Figway::start(&config_at(
        "127.0.0.1:0",
        "127.0.0.1:0",
        "header_read_timeout = \"1s\"",
        &route_to(&b.url()),
    ))
    .await;
    let connected = Instant::now();
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Begun, never finished: a slowloris.
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").await.unwrap();
    let (got, eof) = read_to_eof(&mut s).await;
    let after = eof - connected;
    // 1 s from the accept, not 1 s from the first byte (1.7 s).
    assert!(
        after >= Duration::from_millis(950) && after < Duration::from_millis(1450),
        "closed {after:?} after connect: {got:?}"
    );
    assert!(!got.starts_with("HTTP/1.1 200"), "{got:?}");
    assert_eq!(b.count(), 0);
}

// === max_connections ===

/// A keep-alive client connection that has had one `GET /` answered and
/// stays open.
async fn open_after_one_request(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = read_answer_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    stream
}

/// Sends `GET /` on `stream` and reads until the end of the answer's head
/// (the backend's bodies are short and come in the same read).
async fn read_answer_head(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .expect("no answer")
            .unwrap();
        assert!(n > 0, "closed without an answer");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// SPEC §1 `max_connections`: at the limit figway stops accepting, and a
/// new connection waits (in the kernel's backlog) until one of the open
/// ones closes; the open ones are served meanwhile, and counted in
/// `figway_connections_active`. (A connection's place is held by its
/// task: dropped early, the cap would let every connection in.)
#[tokio::test]
async fn past_max_connections_a_new_connection_waits_until_one_closes() {
    let b = Backend::start("m").await;
    let toml = config(&route_to(&b.url())).replace("[listen]\n", "[listen]\nmax_connections = 2\n");
    let f = Figway::start(&toml).await;
    let first = open_after_one_request(f.addr).await;
    let mut second = open_after_one_request(f.addr).await;
    assert_eq!(connections_active(f.admin).await, 2);
    // The kernel completes the handshake; figway does not take it.
    let mut third = TcpStream::connect(f.addr).await.unwrap();
    third
        .write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(300), third.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "a third connection was served past max_connections = 2"
    );
    // The connections in place are still served.
    let head = read_answer_head(&mut second).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    drop(first);
    let n = tokio::time::timeout(WAIT, third.read(&mut buf))
        .await
        .expect("the waiting connection was not served once a place freed")
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    f.shutdown().await;
}
