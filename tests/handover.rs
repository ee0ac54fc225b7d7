//! The binary upgrade of SPEC §9 under load, measured (issue 11): figway A
//! (the real binary) serves a mixed load; figway B starts beside it with
//! `run --upgrade` on the same listen and admin addresses; as soon as B logs
//! `figway serving`, A gets SIGTERM and drains while the load goes on
//! against the shared address. Four kinds of load run throughout:
//!
//! 1. HTTP/1.1 keep-alive clients, each on one connection for as long as
//!    the server keeps it;
//! 2. clients opening a fresh connection for every request;
//! 3. h2c (prior knowledge) clients with several concurrent streams on one
//!    connection;
//! 4. WebSocket tunnels, opened before and during the hand-over, each
//!    echoing every 50 ms until the load stops.
//!
//! Kind 2 also comes in waves of simultaneous connections around the
//! SIGTERM, so that A's listeners close with connections still queued on
//! them: with `net.ipv4.tcp_migrate_req = 0` this test fails most runs
//! (connections reset), with 1 it must never fail.
//!
//! Every request of kinds 1–3 must be answered 200 (a connect error, a
//! reset, no answer within [`ANSWER_WAIT`] or another status is a
//! failure), every upgrade must get its 101 and every echo must come back;
//! A must exit 0 within its `drain_timeout`; and both A and B must have
//! served every kind (each figway routes to a backend of its own, whose
//! `x-backend` answer header names it).
//!
//! Retries, as real clients make them and no others:
//!
//! - A request that hyper hands back unsent (the connection was found
//!   closed before a byte of it was written) is sent again on a new
//!   connection, as a connection pool does. It never reached figway.
//! - RFC 9112 §9.3.1: an idempotent request sent on a *reused* keep-alive
//!   connection that closes before any response arrives is retried once
//!   more on a new connection (Go's `net/http`, browsers and curl do).
//!   This race is inherent to HTTP/1.1 keep-alive: A's drain closes idle
//!   connections at once (SPEC §9), and a client may have written its next
//!   request just as the close was on its way; nothing in the protocol
//!   lets the server tell the client it is about to close.
//! - RFC 9113 §8.7: an h2 stream refused by GOAWAY (above its last stream
//!   id) or with REFUSED_STREAM was not processed and is retried.
//!
//! A retry must never hide a lost request: every retried attempt carries an
//! `x-attempt` id, and the test fails if any of those reached a backend
//! (figway took the request, forwarded it and then lost the answer).
//! Requests on a fresh connection (kind 2) and tunnel handshakes (kind 4)
//! are never retried: a connection queued on A's listener when it closes
//! moves to B's with `net.ipv4.tcp_migrate_req = 1`, and one A accepted
//! gets its first request answered (SPEC §9).
//!
//! Run with `--nocapture` for a summary line: answers per kind and figway,
//! retries and their errors.
//!
//! The test sets `net.ipv4.tcp_migrate_req = 1` itself (it runs as root
//! here and in CI) and fails, naming the sysctl, when it cannot. It leaves
//! it at 1, the setting SPEC §9 asks for: restoring 0 could pull it from
//! under another run of this test on the same host.

mod support;
use support::ws::{echo_upstream, read_head};
use support::*;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

const MIGRATE_REQ: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

/// Load on A alone before B starts.
const LOAD_ON_A: Duration = Duration::from_secs(1);
/// Load after A's SIGTERM: through its drain and on B alone.
const LOAD_AFTER_SIGTERM: Duration = Duration::from_millis(1500);
/// A's `drain_timeout`: long enough that the tunnels opened on A are closed
/// by their clients (when the load stops) before A would cut them, so that
/// any tunnel ending early is a failure, not the drain's cut by design.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(8);
/// How long any one answer (or echo, or connect) may take before it counts
/// as never coming.
const ANSWER_WAIT: Duration = Duration::from_secs(5);
/// The pause between a client's requests: keeps the load dense around the
/// cut without starving the two figways of the machine's cores.
const PACE: Duration = Duration::from_millis(2);

const KEEP_ALIVE_CLIENTS: usize = 6;
const FRESH_CLIENTS: usize = 4;
const H2_CLIENTS: usize = 2;
const H2_STREAMS: usize = 4;
/// Kind 2 waves around the SIGTERM (see [`bursts`]).
const BURST: usize = 32;
const BURST_EVERY: Duration = Duration::from_millis(20);
const BURSTS_FOR: Duration = Duration::from_millis(300);
const TUNNEL_EVERY: Duration = Duration::from_millis(200);
const ECHO_EVERY: Duration = Duration::from_millis(50);

/// What one kind of load saw.
#[derive(Default)]
struct Tally {
    by_a: AtomicUsize,
    by_b: AtomicUsize,
    /// Attempts retried under the rules in the header: their `x-attempt`
    /// and the error that made them retried.
    retried: Mutex<Vec<(String, String)>>,
    /// Requests hyper handed back unsent and that were sent again.
    resent: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn served(&self, by: Option<&str>, what: &str) {
        match by {
            Some("a") => {
                self.by_a.fetch_add(1, Ordering::Relaxed);
            }
            Some("b") => {
                self.by_b.fetch_add(1, Ordering::Relaxed);
            }
            other => self.fail(format!("{what}: served by {other:?}")),
        }
    }

    fn fail(&self, failure: String) {
        self.failures.lock().unwrap().push(failure);
    }

    fn retry(&self, attempt: &str, error: &hyper::Error) {
        self.retried
            .lock()
            .unwrap()
            .push((attempt.to_string(), format!("{error:?}")));
    }
}

struct Load {
    addr: SocketAddr,
    stop: AtomicBool,
    keep_alive: Tally,
    fresh: Tally,
    h2: Tally,
    tunnels: Tally,
    /// Echoes that came back through tunnels.
    echoes: AtomicUsize,
}

impl Load {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

fn request(addr: SocketAddr, id: &str, attempt: u32) -> Request<TestBody> {
    Request::get(format!("http://{addr}/r/{id}"))
        .header("x-attempt", format!("{id}.{attempt}"))
        .body(full(""))
        .unwrap()
}

/// Reads an answer's body and checks it is a 200 from either figway's
/// backend; `Err` with the reason otherwise.
async fn check_answer(
    res: Response<hyper::body::Incoming>,
    tally: &Tally,
    id: &str,
) -> Result<(), String> {
    let (parts, body) = res.into_parts();
    let body = tokio::time::timeout(ANSWER_WAIT, body.collect())
        .await
        .map_err(|_| format!("{id}: body not done within {ANSWER_WAIT:?}"))?
        .map_err(|e| format!("{id}: body: {e:?}"))?
        .to_bytes();
    if parts.status != 200 {
        return Err(format!(
            "{id}: {} {:?} {:?}",
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body)
        ));
    }
    let by = parts.headers.get("x-backend").and_then(|v| v.to_str().ok());
    tally.served(by, id);
    Ok(())
}

async fn connect(addr: SocketAddr, id: &str) -> Result<TcpStream, String> {
    match tokio::time::timeout(ANSWER_WAIT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(format!("{id}: connect: {e}")),
        Err(_) => Err(format!("{id}: connect took over {ANSWER_WAIT:?}")),
    }
}

type H1Sender = hyper::client::conn::http1::SendRequest<TestBody>;
type H2Sender = hyper::client::conn::http2::SendRequest<TestBody>;

async fn h1_connect(addr: SocketAddr, id: &str) -> Result<H1Sender, String> {
    let stream = connect(addr, id).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{id}: handshake: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Kind 1: one keep-alive connection, replaced only when the server closes
/// it (`Connection: close`, or closed while idle).
async fn keep_alive_client(load: Arc<Load>, client: usize) {
    let tally = &load.keep_alive;
    // The connection and how many answers it has carried (reused if > 0).
    let mut conn: Option<(H1Sender, usize)> = None;
    let mut n = 0;
    while !load.stopped() {
        n += 1;
        let id = format!("ka{client}-{n}");
        let mut attempt = 0;
        loop {
            attempt += 1;
            if attempt > 5 {
                tally.fail(format!(
                    "{id}: still unanswered after {} attempts",
                    attempt - 1
                ));
                break;
            }
            if conn.as_ref().is_none_or(|(s, _)| s.is_closed()) {
                match h1_connect(load.addr, &id).await {
                    Ok(s) => conn = Some((s, 0)),
                    Err(e) => {
                        tally.fail(e);
                        break;
                    }
                }
            }
            let (sender, used) = conn.as_mut().unwrap();
            let reused = *used > 0;
            // A connection the server closed while it sat idle shows up
            // here, before anything is written: a pool drops it and takes
            // another.
            if sender.ready().await.is_err() {
                conn = None;
                tally.resent.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let sent = sender.try_send_request(request(load.addr, &id, attempt));
            match tokio::time::timeout(ANSWER_WAIT, sent).await {
                Err(_) => {
                    tally.fail(format!("{id}: no answer within {ANSWER_WAIT:?}"));
                    conn = None;
                    break;
                }
                Ok(Ok(res)) => {
                    let closes = res
                        .headers()
                        .get("connection")
                        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                    if let Err(e) = check_answer(res, tally, &id).await {
                        tally.fail(e);
                    }
                    if closes {
                        conn = None;
                    } else if let Some((_, used)) = conn.as_mut() {
                        *used += 1;
                    }
                    break;
                }
                Ok(Err(mut e)) => {
                    conn = None;
                    if e.take_message().is_some() {
                        tally.resent.fetch_add(1, Ordering::Relaxed);
                    } else if reused {
                        tally.retry(&format!("{id}.{attempt}"), e.error());
                    } else {
                        tally.fail(format!("{id}: on a new connection: {:?}", e.into_error()));
                        break;
                    }
                }
            }
        }
        tokio::time::sleep(PACE).await;
    }
}

/// Kind 2: a new connection for every request, never retried.
async fn fresh_client(load: Arc<Load>, client: usize) {
    let mut n = 0;
    while !load.stopped() {
        n += 1;
        fresh_request(&*load, format!("fresh{client}-{n}")).await;
        tokio::time::sleep(PACE).await;
    }
}

/// Kind 2 in waves of [`BURST`] connections at once, from just before A's
/// SIGTERM through the start of its drain: the steady clients above keep
/// A's accept queue empty nearly always, so without these the moment A's
/// listeners close with connections still queued on them (which
/// `tcp_migrate_req` hands to B's) would hardly ever be tested.
async fn bursts(load: Arc<Load>) {
    let mut wave = 0;
    let mut requests = JoinSet::new();
    let start = Instant::now();
    while start.elapsed() < BURSTS_FOR && !load.stopped() {
        wave += 1;
        for i in 0..BURST {
            requests.spawn(fresh_request(load.clone(), format!("burst{wave}-{i}")));
        }
        tokio::time::sleep(BURST_EVERY).await;
    }
    while requests.join_next().await.is_some() {}
}

/// One request on a connection of its own, recorded under kind 2.
async fn fresh_request(load: impl std::ops::Deref<Target = Load>, id: String) {
    let tally = &load.fresh;
    let answered = async {
        let mut sender = h1_connect(load.addr, &id).await?;
        let res =
            tokio::time::timeout(ANSWER_WAIT, sender.send_request(request(load.addr, &id, 1)))
                .await
                .map_err(|_| format!("{id}: no answer within {ANSWER_WAIT:?}"))?
                .map_err(|e| format!("{id}: {e:?}"))?;
        check_answer(res, tally, &id).await
    };
    if let Err(e) = answered.await {
        tally.fail(e);
    }
}

/// Whether an h2 stream failed without being processed (RFC 9113 §8.7):
/// reset with REFUSED_STREAM, or failed by the peer's GOAWAY, which h2
/// does only to streams above the GOAWAY's last stream id. (Seen here:
/// hyper's graceful shutdown sends GOAWAY twice, the second with the last
/// stream it took, and a stream the client opened while that was on its
/// way is refused.) Read from the error's Debug text, since `h2` is no
/// dependency of ours; a stream wrongly taken as unprocessed would still
/// be caught by the test's check that no retried attempt reached a backend.
fn unprocessed_h2(e: &hyper::Error) -> bool {
    let text = format!("{e:?}");
    text.contains("REFUSED_STREAM") || (text.contains("GoAway(") && text.contains("Remote"))
}

/// Kind 3: one h2c connection at a time, [`H2_STREAMS`] requests at once on
/// it; a new connection once the old one is closed (GOAWAY).
async fn h2_client(load: Arc<Load>, client: usize) {
    let tally = &load.h2;
    let mut n = 0;
    // Requests to send again, with their next attempt number.
    let mut pending: Vec<(String, u32)> = Vec::new();
    while !load.stopped() {
        let label = format!("h2-{client}-conn");
        let sender = async {
            let stream = connect(load.addr, &label).await?;
            let (sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .map_err(|e| format!("{label}: handshake: {e}"))?;
            tokio::spawn(conn);
            Ok::<H2Sender, String>(sender)
        };
        let sender = match sender.await {
            Ok(s) => s,
            Err(e) => {
                tally.fail(e);
                tokio::time::sleep(PACE).await;
                continue;
            }
        };
        while !load.stopped() && !sender.is_closed() {
            let mut batch = std::mem::take(&mut pending);
            while batch.len() < H2_STREAMS {
                n += 1;
                batch.push((format!("h2-{client}-{n}"), 1));
            }
            let mut streams = JoinSet::new();
            for (id, attempt) in batch {
                let mut sender = sender.clone();
                let addr = load.addr;
                streams.spawn(async move {
                    let sent = sender.try_send_request(request(addr, &id, attempt));
                    let res = tokio::time::timeout(ANSWER_WAIT, sent).await;
                    (id, attempt, res)
                });
            }
            while let Some(done) = streams.join_next().await {
                let (id, attempt, res) = done.unwrap();
                match res {
                    Err(_) => tally.fail(format!("{id}: no answer within {ANSWER_WAIT:?}")),
                    Ok(Ok(res)) => {
                        if let Err(e) = check_answer(res, tally, &id).await {
                            tally.fail(e);
                        }
                    }
                    Ok(Err(mut e)) => {
                        if e.take_message().is_some() {
                            tally.resent.fetch_add(1, Ordering::Relaxed);
                            pending.push((id, attempt + 1));
                        } else if unprocessed_h2(e.error()) && attempt < 5 {
                            tally.retry(&format!("{id}.{attempt}"), e.error());
                            pending.push((id, attempt + 1));
                        } else {
                            tally.fail(format!("{id}: {:?}", e.into_error()));
                        }
                    }
                }
            }
            tokio::time::sleep(PACE).await;
        }
    }
}

/// The head of a tunnel's upgrade request, `x-attempt` naming it.
fn upgrade_request(id: &str) -> String {
    format!(
        "GET /ws/{id} HTTP/1.1\r\nHost: shop.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         x-attempt: {id}.1\r\n\r\n"
    )
}

/// Kind 4: one tunnel, echoing every [`ECHO_EVERY`] until the load stops,
/// then closed by this side.
async fn tunnel(load: Arc<Load>, k: usize) {
    let tally = &load.tunnels;
    let id = format!("ws{k}");
    let opened = async {
        let mut s = connect(load.addr, &id).await?;
        s.write_all(upgrade_request(&id).as_bytes())
            .await
            .map_err(|e| format!("{id}: writing the upgrade: {e}"))?;
        let head = tokio::time::timeout(ANSWER_WAIT, read_head(&mut s))
            .await
            .map_err(|_| format!("{id}: no answer to the upgrade within {ANSWER_WAIT:?}"))?;
        if !head.starts_with("HTTP/1.1 101") {
            return Err(format!("{id}: upgrade answered {head:?}"));
        }
        let by = head
            .lines()
            .find_map(|l| l.strip_prefix("x-served-by: "))
            .map(str::to_string);
        Ok((s, by))
    };
    let (mut s, by) = match opened.await {
        Ok(o) => o,
        Err(e) => return tally.fail(e),
    };
    tally.served(by.as_deref(), &id);
    let mut i = 0;
    while !load.stopped() {
        i += 1;
        let text = format!("{id}-echo-{i};");
        let echoed = async {
            s.write_all(text.as_bytes()).await?;
            let mut got = vec![0u8; text.len()];
            s.read_exact(&mut got).await?;
            Ok::<_, std::io::Error>(got)
        };
        match tokio::time::timeout(ANSWER_WAIT, echoed).await {
            Ok(Ok(got)) if got == text.as_bytes() => {
                load.echoes.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Ok(got)) => {
                return tally.fail(format!(
                    "{id} on {by:?}: sent {text:?}, echoed {:?}",
                    String::from_utf8_lossy(&got)
                ))
            }
            Ok(Err(e)) => return tally.fail(format!("{id} on {by:?}: echo {i}: {e}")),
            Err(_) => return tally.fail(format!("{id} on {by:?}: echo {i} never came back")),
        }
        tokio::time::sleep(ECHO_EVERY).await;
    }
}

/// A whole figway config: two workers (so each figway has two listeners in
/// the SO_REUSEPORT group, as in production), `/ws` to the echo upstream
/// and everything else to `app`.
fn figway_config(listen: &str, admin: &str, app: &Backend, ws: SocketAddr) -> String {
    format!(
        "[listen]\naddress = \"{listen}\"\ndrain_timeout = \"{}s\"\n\
         [admin]\naddress = \"{admin}\"\n[log]\naccess_log = false\n[runtime]\nworkers = 2\n\
         [upstreams.app]\ntargets = [\"{}\"]\n[upstreams.ws]\ntargets = [\"http://{ws}\"]\n\
         [[routes]]\nprefix = \"/ws\"\nto = \"ws\"\n[[routes]]\nprefix = \"/\"\nto = \"app\"\n",
        DRAIN_TIMEOUT.as_secs(),
        app.url()
    )
}

/// SPEC §9: without it, connections queued on A's listeners when they close
/// are reset instead of moved to B's, and the test would measure that.
fn enable_tcp_migrate_req() {
    let read = || std::fs::read_to_string(MIGRATE_REQ).map(|v| v.trim().to_string());
    if read().is_ok_and(|v| v == "1") {
        return;
    }
    if let Err(e) = std::fs::write(MIGRATE_REQ, "1") {
        panic!(
            "this test needs net.ipv4.tcp_migrate_req = 1 (SPEC §9; Linux 5.14+) and cannot set \
             it: writing {MIGRATE_REQ}: {e}. Run it as root, or set it first with \
             `sysctl -w net.ipv4.tcp_migrate_req=1`."
        );
    }
    let now = read();
    assert!(
        now.as_ref().is_ok_and(|v| v == "1"),
        "net.ipv4.tcp_migrate_req is {now:?} after writing 1 to {MIGRATE_REQ}"
    );
}

fn sigterm(pid: u32) {
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .expect("cannot run kill");
    assert!(status.success(), "kill -TERM {pid} failed");
}

fn report(name: &str, t: &Tally) -> String {
    let retried = t.retried.lock().unwrap();
    let reasons: std::collections::BTreeSet<&str> =
        retried.iter().map(|(_, why)| why.as_str()).collect();
    format!(
        "{name}: by A {}, by B {}, resent unsent {}, retried {} {reasons:?}, failed {}",
        t.by_a.load(Ordering::Relaxed),
        t.by_b.load(Ordering::Relaxed),
        t.resent.load(Ordering::Relaxed),
        retried.len(),
        t.failures.lock().unwrap().len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_under_mixed_load_drops_nothing() {
    enable_tcp_migrate_req();
    let app_a = Backend::start("a").await;
    let app_b = Backend::start("b").await;
    let (ws_a, _) = echo_upstream(Some("a")).await;
    let (ws_b, _) = echo_upstream(Some("b")).await;
    let a_config = figway_config("127.0.0.1:0", "127.0.0.1:0", &app_a, ws_a);
    let mut a = tokio::task::block_in_place(|| FigwayProcess::spawn(&a_config));

    let load = Arc::new(Load {
        addr: a.addr,
        stop: AtomicBool::new(false),
        keep_alive: Tally::default(),
        fresh: Tally::default(),
        h2: Tally::default(),
        tunnels: Tally::default(),
        echoes: AtomicUsize::new(0),
    });
    let mut clients = JoinSet::new();
    for c in 0..KEEP_ALIVE_CLIENTS {
        clients.spawn(keep_alive_client(load.clone(), c));
    }
    for c in 0..FRESH_CLIENTS {
        clients.spawn(fresh_client(load.clone(), c));
    }
    for c in 0..H2_CLIENTS {
        clients.spawn(h2_client(load.clone(), c));
    }
    // Tunnels open all along: on A before B starts, on either while both
    // listen, through A's drain and on B after.
    let opener = {
        let load = load.clone();
        tokio::spawn(async move {
            let mut tunnels = JoinSet::new();
            let mut k = 0;
            while !load.stopped() {
                k += 1;
                tunnels.spawn(tunnel(load.clone(), k));
                tokio::time::sleep(TUNNEL_EVERY).await;
            }
            while tunnels.join_next().await.is_some() {}
        })
    };

    tokio::time::sleep(LOAD_ON_A).await;
    // B joins A's addresses; FigwayProcess::spawn_with returns once its
    // `figway serving` line is out (README: with the admin address shared,
    // a /readyz 200 could come from A).
    let b_config = figway_config(&a.addr.to_string(), &a.admin.to_string(), &app_b, ws_b);
    let b = tokio::task::block_in_place(|| FigwayProcess::spawn_with(&b_config, &["--upgrade"]));
    assert_eq!((b.addr, b.admin), (a.addr, a.admin));
    let waves = tokio::spawn(bursts(load.clone()));
    tokio::time::sleep(BURST_EVERY).await;
    let terminated = Instant::now();
    sigterm(a.child.id());
    tokio::time::sleep(LOAD_AFTER_SIGTERM).await;
    load.stop.store(true, Ordering::Relaxed);
    while clients.join_next().await.is_some() {}
    waves.await.unwrap();
    opener.await.unwrap();

    // A's last tunnels closed with the load; it must be gone well before
    // its drain_timeout would have cut anything.
    let mut exited: Option<(ExitStatus, Duration)> = None;
    while terminated.elapsed() < DRAIN_TIMEOUT + Duration::from_secs(2) {
        if let Some(status) = a.child.try_wait().unwrap() {
            exited = Some((status, terminated.elapsed()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let kinds = [
        ("1 keep-alive", &load.keep_alive),
        ("2 fresh connection", &load.fresh),
        ("3 h2c", &load.h2),
        ("4 websocket", &load.tunnels),
    ];
    let summary: Vec<String> = kinds.iter().map(|(n, t)| report(n, t)).collect();
    println!(
        "hand-over: {}; echoes {}; A exited {exited:?} after SIGTERM",
        summary.join("; "),
        load.echoes.load(Ordering::Relaxed)
    );

    let mut problems = Vec::new();
    for (name, t) in kinds {
        for f in t.failures.lock().unwrap().iter().take(20) {
            problems.push(format!("kind {name}: {f}"));
        }
        if t.by_a.load(Ordering::Relaxed) == 0 || t.by_b.load(Ordering::Relaxed) == 0 {
            problems.push(format!(
                "kind {name}: not served by both: {}",
                report(name, t)
            ));
        }
    }
    // A retry is only a retry if the first attempt was never processed.
    let reached: HashSet<String> = app_a
        .seen()
        .into_iter()
        .chain(app_b.seen())
        .filter_map(|s| {
            let v = s.headers.get("x-attempt")?;
            Some(v.to_str().ok()?.to_string())
        })
        .collect();
    for (name, t) in kinds {
        for (attempt, _) in t.retried.lock().unwrap().iter() {
            if reached.contains(attempt) {
                problems.push(format!(
                    "kind {name}: attempt {attempt} was retried, but it had reached a backend \
                     (taken by figway, its answer lost)"
                ));
            }
        }
    }
    match exited {
        Some((status, after)) if status.success() && after <= DRAIN_TIMEOUT => {}
        other => problems.push(format!(
            "A did not exit 0 within its drain_timeout {DRAIN_TIMEOUT:?}: {other:?}"
        )),
    }
    assert!(
        problems.is_empty(),
        "{}\n{}",
        summary.join("\n"),
        problems.join("\n")
    );
}
