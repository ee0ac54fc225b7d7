//! The request path's contract at its edges, over real loopback HTTP (SPEC
//! §2 `[log] access_log`, §4, §8, §9): a client keeps its HTTP/1.1
//! keep-alive connection whatever HTTP version the upstream speaks; a
//! request cut at `drain_timeout` is logged as a drain cut (status 444,
//! error `drain_timeout`), unlike a client that left (499); an
//! absolute-form request is logged with the host it was routed by; and the
//! access log never holds a request up: when its reader stalls, lines are
//! dropped and counted in `figway_access_log_dropped_total` instead.

mod support;
use support::raw_client::RawClient;
use support::scripted::{Scripted, Then};
use support::*;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use prometheus_parse::{Scrape, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// How long a test waits for any one thing before it fails.
const WAIT: Duration = Duration::from_secs(5);

/// The binary's config: listen and admin on port 0, the access log on, a
/// short drain, and `body` (upstreams and routes).
fn logging_config(body: &str) -> String {
    format!(
        "[listen]\naddress = \"127.0.0.1:0\"\ndrain_timeout = \"300ms\"\n\
         [admin]\naddress = \"127.0.0.1:0\"\n[log]\naccess_log = true\n{body}\n"
    )
}

/// One upstream `m` at `url` behind a catch-all route `all`.
fn route_all(url: &str) -> String {
    format!("[upstreams.m]\ntargets = [\"{url}\"]\n[[routes]]\nname = \"all\"\nprefix = \"/\"\nto = \"m\"\n")
}

/// Starts the binary without blocking the runtime's other tasks.
fn spawn_logging(toml: &str) -> LoggingFigway {
    tokio::task::block_in_place(|| LoggingFigway::spawn(toml))
}

fn parse_line(line: &str) -> serde_json::Value {
    serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("access-log line is not JSON ({e}): {line}"))
}

/// Polls `cond` every 10 ms; panics naming `what` after [`WAIT`].
async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < WAIT,
            "timed out after {WAIT:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Aborts the tasks when dropped, so a failing test leaves none behind.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

// === HTTP/1.0 upstreams ===

/// Two requests in sequence on one client keep-alive connection through
/// figway to an HTTP/1.0 upstream answering `answer`: both come back as
/// HTTP/1.1 with body `hello`, neither closes the connection.
async fn client_stays_on_http11_keep_alive(answer: &'static [u8]) {
    // Like Python's `http.server`: one request per connection, then close.
    let upstream = Scripted::start(move |_| answer.to_vec(), Then::Close).await;
    let f = Figway::start(&config(&route_all(&format!("http://{}", upstream.addr)))).await;
    let mut client = RawClient::connect(f.addr).await;
    for (i, path) in ["/a", "/b"].into_iter().enumerate() {
        let n = i + 1;
        client
            .send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .await
            .unwrap_or_else(|e| panic!("request {n} on the kept-alive connection: {e}"));
        let a = client
            .answer()
            .await
            .unwrap_or_else(|e| panic!("response {n} on the kept-alive connection: {e}"));
        assert_eq!(
            a.version, 1,
            "response {n}: status line is HTTP/1.{} where the client spoke HTTP/1.1:\n{}",
            a.version, a.head
        );
        assert_eq!(a.status, 200, "response {n}:\n{}", a.head);
        assert_eq!(
            String::from_utf8_lossy(&a.body),
            "hello",
            "response {n} body:\n{}",
            a.head
        );
        assert!(
            !a.says_close(),
            "response {n} closes the client's keep-alive connection:\n{}",
            a.head
        );
        assert!(
            !a.close_delimited,
            "response {n} has a close-delimited body (neither Content-Length nor chunked), \
             so the client's connection ends with it:\n{}",
            a.head
        );
    }
    assert_eq!(
        upstream.accepted(),
        2,
        "the HTTP/1.0 upstream takes one request per connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_upstream_keeps_client_on_http11_keep_alive() {
    client_stays_on_http11_keep_alive(
        b"HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6 Python/3.11\r\n\
          Content-Type: text/plain\r\n\r\nhello",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_upstream_with_content_length_keeps_client_on_http11_keep_alive() {
    client_stays_on_http11_keep_alive(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello").await;
}

// === drain cuts and clients that leave ===

/// A backend that takes the request and answers only after 30 s.
async fn stalling_backend() -> Backend {
    Backend::with(|_| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Response::new(full("late"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_cut_at_drain_timeout_are_logged_as_drain_cuts() {
    let b = stalling_backend().await;
    let mut f = spawn_logging(&logging_config(&route_all(&b.url())));
    let client = tokio::spawn(raw(
        f.addr,
        b"GET /slow HTTP/1.1\r\nHost: t\r\nx-request-id: cut-1\r\n\r\n",
        Duration::from_secs(10),
    ));
    wait_until("the upstream to receive the request", || b.count() == 1).await;

    let exit = tokio::task::block_in_place(|| f.terminate(WAIT));
    let exit = exit.unwrap_or_else(|| {
        panic!(
            "figway still runs {WAIT:?} after SIGTERM with drain_timeout 300ms; stderr:\n{}",
            f.stderr_tail().join("\n")
        )
    });
    assert!(
        exit.success(),
        "figway exited with {exit} after SIGTERM; stderr:\n{}",
        f.stderr_tail().join("\n")
    );
    let lines = tokio::task::block_in_place(|| f.remaining_lines());
    let cut: Vec<_> = lines
        .iter()
        .map(|l| (l, parse_line(l)))
        .filter(|(_, v)| v["request_id"] == "cut-1")
        .collect();
    assert_eq!(
        cut.len(),
        1,
        "want exactly one access line for cut-1; stdout:\n{}",
        lines.join("\n")
    );
    let (line, v) = &cut[0];
    assert_eq!(
        v["status"], 444,
        "a request cut at drain_timeout before its head went out: {line}"
    );
    assert_eq!(
        v["error"], "drain_timeout",
        "a request cut at drain_timeout: {line}"
    );
    assert_eq!(v["route"], "all", "{line}");
    let got = tokio::time::timeout(WAIT, client)
        .await
        .expect("the client's connection still open after figway exited")
        .unwrap();
    assert!(
        !got.starts_with("HTTP/"),
        "a request logged 444 (closed without response) got a response: {got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_leaves_is_logged_499() {
    let b = stalling_backend().await;
    let f = spawn_logging(&logging_config(&route_all(&b.url())));
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\nx-request-id: leave-1\r\n\r\n")
        .await
        .unwrap();
    wait_until("the upstream to receive the request", || b.count() == 1).await;
    drop(s);

    let line = tokio::task::block_in_place(|| f.next_line());
    let v = parse_line(&line);
    assert_eq!(v["request_id"], "leave-1", "{line}");
    assert_eq!(v["status"], 499, "a client that left: {line}");
    assert!(v["error"].is_null(), "a client that left: {line}");
    assert_eq!(v["route"], "all", "{line}");
}

// === absolute form ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_request_is_logged_with_the_host_it_was_routed_by() {
    let routed = Backend::start("routed").await;
    let other = Backend::start("other").await;
    let f = spawn_logging(&logging_config(&format!(
        "[upstreams.m]\ntargets = [\"{}\"]\n[upstreams.o]\ntargets = [\"{}\"]\n\
         [[routes]]\nname = \"routed\"\nprefix = \"/\"\nhost = \"routed.example\"\nto = \"m\"\n\
         [[routes]]\nname = \"other\"\nprefix = \"/\"\nto = \"o\"\n",
        routed.url(),
        other.url()
    )));
    let mut client = RawClient::connect(f.addr).await;
    client
        .send(b"GET http://routed.example/x HTTP/1.1\r\nHost: other.example\r\nx-request-id: abs-1\r\n\r\n")
        .await
        .unwrap();
    let a = client.answer().await.unwrap();
    assert_eq!(a.status, 200, "{}", a.head);
    assert_eq!(
        String::from_utf8_lossy(&a.body),
        "routed",
        "answered by the wrong route:\n{}",
        a.head
    );
    assert_eq!(routed.count(), 1);
    assert_eq!(other.count(), 0);

    let line = tokio::task::block_in_place(|| f.next_line());
    let v = parse_line(&line);
    assert_eq!(v["request_id"], "abs-1", "{line}");
    assert_eq!(v["route"], "routed", "{line}");
    assert_eq!(v["path"], "/x", "{line}");
    assert_eq!(
        v["host"], "routed.example",
        "the log names a host other than the one the request was routed by: {line}"
    );
}

/// The connection's own peer is rendered once per connection; a client
/// address taken from a trusted proxy's `X-Forwarded-For` is rendered per
/// request. Both must reach the line as text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_names_the_client_a_trusted_proxy_forwarded() {
    let b = Backend::start("m").await;
    let toml = logging_config(&route_all(&b.url())).replace(
        "drain_timeout = \"300ms\"\n",
        "drain_timeout = \"300ms\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n",
    );
    let f = spawn_logging(&toml);
    for (id, xff) in [
        ("xff-v6", Some("198.51.100.9, 2001:db8::7")),
        ("xff-none", None),
    ] {
        let mut headers = vec![("x-request-id", id)];
        if let Some(xff) = xff {
            headers.push(("x-forwarded-for", xff));
        }
        assert_eq!(get(f.addr, "/", &headers).await.status, 200);
    }
    let mut by_id = std::collections::HashMap::new();
    for _ in 0..2 {
        let v = parse_line(&tokio::task::block_in_place(|| f.next_line()));
        by_id.insert(v["request_id"].as_str().unwrap_or("").to_string(), v);
    }
    assert_eq!(
        by_id["xff-v6"]["client"], "2001:db8::7",
        "{:?}",
        by_id["xff-v6"]
    );
    assert_eq!(
        by_id["xff-none"]["client"], "127.0.0.1",
        "{:?}",
        by_id["xff-none"]
    );
}

// === the access log stays off the request path ===

/// The value of the unlabelled metric `name` on `/metrics`, or None when it
/// is not listed; the second value is the exposition, for messages.
async fn metric(admin: SocketAddr, name: &str) -> (Option<f64>, String) {
    let a = tokio::time::timeout(WAIT, get(admin, "/metrics", &[]))
        .await
        .unwrap_or_else(|_| panic!("GET /metrics did not answer within {WAIT:?}"));
    assert_eq!(a.status, 200, "GET /metrics: {}", a.text());
    let text = a.text();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("/metrics does not parse ({e}):\n{text}"));
    let value = scrape
        .samples
        .iter()
        .find(|s| s.metric == name)
        .map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => panic!("{name} is not a plain number:\n{text}"),
        });
    (value, text)
}

const DROPPED: &str = "figway_access_log_dropped_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_dropped_counter_exists_at_zero() {
    let b = Backend::start("m").await;
    let f = spawn_logging(&logging_config(&route_all(&b.url())));
    let (value, text) = metric(f.admin, DROPPED).await;
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .collect();
    assert_eq!(
        value,
        Some(0.0),
        "{DROPPED} on a fresh figway; listed families: {families:?}"
    );
}

/// Small GETs on keep-alive connections while nobody reads figway's stdout:
/// every one is answered 200 and none stalls. Once the log is saturated (the
/// pipe and figway's own buffer are full, so lines are being dropped and
/// counted), `AFTER_DROPS` more answers show requests keep flowing past it
/// and the test stops; `REQUESTS` is the most it sends (20,000 take ~20 s
/// on a debug build, so stopping early keeps the test short).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_never_wait_on_a_stalled_access_log() {
    const REQUESTS: usize = 20_000;
    const AFTER_DROPS: usize = 2_000;
    const CONNECTIONS: usize = 8;
    /// No answer at all for this long: the request path is stuck.
    const STALL: Duration = Duration::from_secs(10);
    const TOTAL: Duration = Duration::from_secs(60);

    let b = Backend::start("fast").await;
    // Two workers, whatever the machine: what figway may buffer before it
    // drops lines grows with its threads, and REQUESTS must exceed it.
    let toml = logging_config(&format!("[runtime]\nworkers = 2\n{}", route_all(&b.url())));
    let f = tokio::task::block_in_place(|| LoggingFigway::spawn_unread(&toml));
    let sent = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Tasks(
        (0..CONNECTIONS)
            .map(|_| {
                let (sent, answered, stop) = (sent.clone(), answered.clone(), stop.clone());
                let addr = f.addr;
                tokio::spawn(async move {
                    let mut conn = H1::connect(addr).await;
                    while !stop.load(Ordering::Relaxed)
                        && sent.fetch_add(1, Ordering::Relaxed) < REQUESTS
                    {
                        let req = Request::get("/small")
                            .header("host", "t")
                            .body(full(""))
                            .unwrap();
                        let a = conn.send(req).await;
                        assert_eq!(a.status, 200, "{}", a.text());
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect(),
    );

    let start = Instant::now();
    let (mut last, mut last_progress) = (0, Instant::now());
    let mut last_scrape = Instant::now();
    let mut drops_began_at: Option<usize> = None;
    while !tasks.0.is_empty() {
        let n = answered.load(Ordering::Relaxed);
        // A task ends when it is told to stop or has sent its share; one
        // that panicked failed a request: say how.
        let mut i = 0;
        while i < tasks.0.len() {
            if tasks.0[i].is_finished() {
                if let Err(e) = tasks.0.swap_remove(i).await {
                    panic!("a client connection failed after {n} answers: {e}");
                }
            } else {
                i += 1;
            }
        }
        if drops_began_at.is_none() && last_scrape.elapsed() > Duration::from_millis(250) {
            last_scrape = Instant::now();
            // A figway stuck on its log may not answer /metrics either; the
            // stall check below reports that.
            if let Ok((Some(d), _)) =
                tokio::time::timeout(Duration::from_secs(1), metric(f.admin, DROPPED)).await
            {
                if d > 0.0 {
                    drops_began_at = Some(n);
                }
            }
        }
        if drops_began_at.is_some_and(|at| n >= at + AFTER_DROPS) {
            stop.store(true, Ordering::Relaxed);
        }
        if n > last {
            (last, last_progress) = (n, Instant::now());
        }
        assert!(
            last_progress.elapsed() < STALL,
            "requests stalled behind the unread access log: {n} answered, \
             none in the last {STALL:?}"
        );
        assert!(
            start.elapsed() < TOTAL,
            "only {n} of {REQUESTS} answered in {TOTAL:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let n = answered.load(Ordering::Relaxed);
    println!(
        "{n} requests with stdout unread in {:.1}s; drops counted from answer {drops_began_at:?}",
        start.elapsed().as_secs_f64()
    );

    let (dropped, _) = metric(f.admin, DROPPED).await;
    assert!(
        dropped.is_some_and(|d| d > 0.0),
        "{DROPPED} after {n} requests with stdout never read: {dropped:?}"
    );
    drop(f);
}

/// Context switches the thread of `pid` named `name` (as /proc shows it,
/// cut to 15 bytes) has made so far.
fn thread_switches(pid: u32, name: &str) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let task = tasks
        .filter_map(|t| t.ok())
        .find(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|n| n.trim() == name))?;
    let status = std::fs::read_to_string(task.path().join("status")).ok()?;
    let count = |key: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse().ok())
    };
    Some(count("voluntary_ctxt_switches:")? + count("nonvoluntary_ctxt_switches:")?)
}

/// With no requests the writer thread sleeps instead of waking every
/// 10 ms (30 times in this test's quiet 300 ms), and the next request's
/// line still comes out: the worker that queues it wakes the writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_proxys_log_writer_sleeps_and_wakes_for_the_next_line() {
    const WRITER: &str = "figway-access-l";
    let b = Backend::start("mono").await;
    let f = spawn_logging(&logging_config(&route_all(&b.url())));
    let f = &f;
    let get = |id: &'static str| async move {
        let mut client = RawClient::connect(f.addr).await;
        let req = format!("GET /idle HTTP/1.1\r\nHost: t\r\nx-request-id: {id}\r\n\r\n");
        client.send(req.as_bytes()).await.unwrap();
        let a = client.answer().await.unwrap();
        assert_eq!(a.status, 200, "{}", a.head);
        let line = tokio::task::block_in_place(|| f.next_line());
        assert_eq!(parse_line(&line)["request_id"], id, "{line}");
    };

    get("idle-1").await;
    // The tick after the line's finds nothing, and the writer sleeps.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pid = f.child.id();
    let before = thread_switches(pid, WRITER).expect("no access-log writer thread");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = thread_switches(pid, WRITER).expect("the writer thread is gone");
    assert!(
        after - before <= 2,
        "the log writer woke {} times in 300 ms with nothing to write",
        after - before
    );

    get("idle-2").await;
    get("idle-3").await;
}

/// Whether two threads (by thread id) share one descriptor table
/// (kcmp(2)): `None` when the kernel cannot say.
fn same_file_table(a: u32, b: u32) -> Option<bool> {
    const KCMP_FILES: libc::c_long = 2;
    // SAFETY: kcmp only compares two tasks' kernel objects; it reads and
    // writes no memory of this process.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            libc::c_long::from(a as i32),
            libc::c_long::from(b as i32),
            KCMP_FILES,
            0 as libc::c_long,
            0 as libc::c_long,
        )
    };
    (r >= 0).then_some(r == 0)
}

/// The worker (with one worker, the process's first thread) has its
/// descriptor table to itself, so the kernel skips a reference count on
/// the socket in each of its system calls (`sys::own_file_table`): the
/// config watcher's thread keeps the table it started with, the log
/// writer leaves for one of its own, and lines still reach stdout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_has_its_descriptor_table_to_itself() {
    let b = Backend::start("mono").await;
    // One worker: more share the first one's table (correct, not faster).
    let toml = format!("[runtime]\nworkers = 1\n{}", route_all(&b.url()));
    let f = spawn_logging(&logging_config(&toml));
    let mut client = RawClient::connect(f.addr).await;
    let mut get_logged = async |id: &str| {
        let req = format!("GET /own HTTP/1.1\r\nHost: t\r\nx-request-id: {id}\r\n\r\n");
        client.send(req.as_bytes()).await.unwrap();
        assert_eq!(client.answer().await.unwrap().status, 200);
        let line = tokio::task::block_in_place(|| f.next_line());
        assert_eq!(parse_line(&line)["request_id"], id, "{line}");
    };
    get_logged("own-1").await;
    let pid = f.child.id();
    let tasks = threads(pid);
    assert!(
        tasks.iter().any(|(_, n)| n == "figway-access-l"),
        "no log writer thread: {tasks:?}"
    );
    for (tid, name) in tasks.iter().filter(|(tid, _)| *tid != pid) {
        match same_file_table(pid, *tid) {
            Some(shared) => assert!(!shared, "thread {name} shares the worker's table"),
            None => eprintln!("kcmp(2) unavailable here: the tables cannot be compared"),
        }
    }
    // The writer, without tokio's signal pipe in its table, takes no
    // signal: SIGTERM (15), SIGHUP (1) and SIGINT (2) go to a thread that
    // can pass them on.
    let (writer, _) = tasks.iter().find(|(_, n)| n == "figway-access-l").unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{writer}/status")).unwrap();
    let blocked = status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .unwrap_or(0);
    for signal in [1, 2, 15] {
        assert!(
            blocked & (1 << (signal - 1)) != 0,
            "the log writer takes signal {signal}: SigBlk {blocked:x}"
        );
    }
    // The connection opened before the check still serves.
    get_logged("own-2").await;
}

// === workers: one runtime and one listener per worker ===

/// The binary's threads, (thread id, name), from /proc.
fn threads(pid: u32) -> Vec<(u32, String)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| {
            let tid = t.file_name().to_str()?.parse().ok()?;
            let name = std::fs::read_to_string(t.path().join("comm")).ok()?;
            Some((tid, name.trim().to_string()))
        })
        .collect()
}

/// Names of the binary's threads, from /proc.
fn thread_names(pid: u32) -> Vec<String> {
    threads(pid).into_iter().map(|(_, name)| name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_worker_serves_on_its_own_listener_and_all_drain_on_sigterm() {
    let b = Backend::start("mono").await;
    let toml = format!("[runtime]\nworkers = 3\n{}", route_all(&b.url()));
    let mut f = spawn_logging(&logging_config(&toml));
    let pid = f.child.id();
    // A thread takes its name as it starts, just after "figway serving".
    wait_until("threads figway-worker-1 and -2", || {
        let names = thread_names(pid);
        ["figway-worker-1", "figway-worker-2"]
            .iter()
            .all(|w| names.iter().any(|n| n == w))
    })
    .await;
    // Three listeners on one port: the kernel spreads new connections over
    // them, and every one is answered whichever worker took it.
    let mut answers = Vec::new();
    for i in 0..60 {
        let addr = f.addr;
        answers.push(tokio::spawn(async move {
            get(addr, &format!("/w/{i}"), &[]).await.status
        }));
    }
    for a in answers {
        assert_eq!(a.await.unwrap(), 200);
    }
    let status = tokio::task::block_in_place(|| f.terminate(WAIT));
    assert!(
        status.is_some_and(|s| s.success()),
        "figway with three workers did not drain and exit 0: {status:?}\n{}",
        f.stderr_tail().join("\n")
    );
    let lines = tokio::task::block_in_place(|| f.remaining_lines());
    let served = lines
        .iter()
        .map(|l| parse_line(l))
        .filter(|v| v["status"] == 200)
        .count();
    assert_eq!(
        served,
        60,
        "access lines after the drain:\n{}",
        lines.join("\n")
    );
}

// === memory comes back after a crowd of connections leaves ===

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_returns_after_many_idle_connections_close() {
    const CROWD: usize = 3000;
    let b = Backend::start("mono").await;
    let toml = format!("[runtime]\nworkers = 1\n{}", route_all(&b.url()));
    let f = spawn_logging(&logging_config(&toml));
    let pid = f.child.id();
    // Warm: pools, buffers and counters exist before the baseline.
    for _ in 0..50 {
        assert_eq!(get(f.addr, "/warm", &[]).await.status, 200);
    }
    let before = rss_kib(pid);
    let mut crowd = Vec::with_capacity(CROWD);
    for _ in 0..CROWD {
        let mut s = TcpStream::connect(f.addr).await.unwrap();
        s.write_all(b"GET /idle HTTP/1.1\r\nhost: t\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
        crowd.push(s);
    }
    let held = rss_kib(pid);
    drop(crowd);
    // The server notices within 2 s that the crowd left, and trims.
    let start = Instant::now();
    let mut after = rss_kib(pid);
    while after > before + 12 * 1024 && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        after = rss_kib(pid);
    }
    assert!(
        after <= before + 12 * 1024,
        "RSS {before} KiB before {CROWD} idle connections, {held} KiB with them, \
         {after} KiB 10 s after they closed"
    );
}
