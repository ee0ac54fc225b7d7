//! Resource hygiene of the real binary (SPEC §4, §9): thousands of client
//! connections that come, make one exchange and leave (HTTP/1.1, TLS, h2c,
//! WebSocket) leave figway's open file descriptors where they were, and
//! clients that open a connection and never send a request are closed at
//! `header_read_timeout`, their descriptors with them. Descriptors are
//! counted in `/proc/PID/fd` of a `figway` child process, so the test
//! harness's own sockets do not blur the count.

mod support;

use std::any::Any;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use support::ws::{echo_upstream, read_head_bytes};
use support::{tempdir, Backend, FigwayProcess};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Connect/close cycles per protocol.
const CYCLES: usize = 2_000;
/// Cycles run side by side, so that 2,000 fit in a few seconds and
/// figway also sees connections overlap.
const TASKS: usize = 4;
/// Descriptors figway may have opened or closed lazily between the two
/// counts (a blocking-pool thread's, a log file reopened, ...).
const TOLERANCE: usize = 5;
/// Longer than the upstream `idle_timeout` below: pooled upstream
/// connections from the warm-up have closed by the first count.
const SETTLE: Duration = Duration::from_millis(800);
/// Client connections held open at once to show that the count sees them.
const HELD: usize = 16;

/// Something a finished cycle keeps alive (a client connection, held open
/// by [`Protocol::Held`] until dropped).
type Kept = Box<dyn Any + Send>;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("cannot list /proc/PID/fd")
        .count()
}

/// Polls until figway's descriptor count is back at `baseline` (or below),
/// for at most `limit`; the count last seen. The caller judges it with
/// [`TOLERANCE`], so that something opened lazily costs `limit`, not a
/// failure, while the usual case returns as soon as the last pooled
/// upstream connection has timed out.
async fn settled_fds(pid: u32, baseline: usize, limit: Duration) -> usize {
    let start = Instant::now();
    loop {
        let now = open_fds(pid);
        if now <= baseline || start.elapsed() >= limit {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A figway config (listen and admin on port 0) proxying everything to
/// `upstream`; `listen_extra` goes under `[listen]`. Two workers, so that
/// both workers' listeners and pools are exercised; a short upstream
/// `idle_timeout`, so that the pooled connections a burst leaves close soon
/// and a count can be taken without them.
fn config(upstream: SocketAddr, listen_extra: &str) -> String {
    format!(
        "[listen]\naddress = \"127.0.0.1:0\"\nheader_read_timeout = \"500ms\"\n{listen_extra}\n\
         [admin]\naddress = \"127.0.0.1:0\"\n[log]\naccess_log = false\n[runtime]\nworkers = 2\n\
         [upstreams.app]\ntargets = [\"http://{upstream}\"]\nidle_timeout = \"300ms\"\n\
         [[routes]]\nprefix = \"/\"\nto = \"app\"\n"
    )
}

fn spawn(toml: &str) -> FigwayProcess {
    tokio::task::block_in_place(|| FigwayProcess::spawn(toml))
}

// === the exchanges ===

async fn h1_get<T>(io: T, path: &str) -> Kept
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "shop.test")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = send.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "app");
    // Dropping the sender ends the client connection (and closes the socket).
    Box::new(send)
}

async fn h1_cycle(addr: SocketAddr) -> Kept {
    h1_get(TcpStream::connect(addr).await.unwrap(), "/h1").await
}

async fn h2c_cycle(addr: SocketAddr) -> Kept {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get("http://shop.test/h2c")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = send.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), http::Version::HTTP_2);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "app");
    Box::new(send)
}

async fn tls_cycle(addr: SocketAddr, tls: TlsConnector) -> Kept {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("shop.test").unwrap();
    let stream = tls.connect(name, tcp).await.unwrap();
    h1_get(stream, "/tls").await
}

const UPGRADE_REQUEST: &[u8] = b"GET /ws HTTP/1.1\r\nHost: shop.test\r\nConnection: Upgrade\r\n\
Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

async fn ws_cycle(addr: SocketAddr) -> Kept {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(UPGRADE_REQUEST).await.unwrap();
    let head = read_head_bytes(&mut s).await;
    assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
    s.write_all(b"ping").await.unwrap();
    let mut echoed = [0u8; 4];
    s.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"ping");
    Box::new(s)
}

// === TLS ===

/// A self-signed certificate for shop.test written to `dir`, and a client
/// that trusts it.
fn tls_setup(dir: &Path, alpn: &[&[u8]]) -> (String, TlsConnector) {
    let made = rcgen::generate_simple_self_signed(vec!["shop.test".to_string()]).unwrap();
    let cert = dir.join("shop.pem");
    let key = dir.join("shop.key");
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let listen = format!(
        "tls = {{ cert = \"{}\", key = \"{}\" }}",
        cert.display(),
        key.display()
    );
    (listen, connector(made.cert.der().clone(), alpn))
}

fn connector(root: CertificateDer<'static>, alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

// === the check ===

/// Runs `cycle` `n` times over [`TASKS`] concurrent tasks, dropping what
/// each keeps at once; returns the largest descriptor count seen meanwhile.
async fn run_cycles<F, Fut>(pid: u32, n: usize, cycle: F) -> usize
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Kept> + Send,
{
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (done, peak) = (done.clone(), peak.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(open_fds(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let cycle = cycle.clone();
            tokio::spawn(async move {
                for _ in (t..n).step_by(TASKS) {
                    let kept = tokio::time::timeout(Duration::from_secs(5), cycle())
                        .await
                        .expect("a cycle took over 5s");
                    drop(kept);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    peak.load(Ordering::Relaxed)
}

/// The hygiene check for one protocol: after a warm-up (lazily opened
/// things, pooled upstream connections, then let go), [`HELD`] connections
/// held open must show in the count (or the count would prove nothing),
/// and after [`CYCLES`] connect/close cycles the count must come back.
async fn hygiene<F, Fut>(protocol: &str, f: &FigwayProcess, fds_per_conn: usize, cycle: F)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Kept> + Send,
{
    let pid = f.child.id();
    run_cycles(pid, TASKS * 4, cycle.clone()).await;
    tokio::time::sleep(SETTLE).await;
    let baseline = open_fds(pid);

    let mut held = Vec::new();
    for _ in 0..HELD {
        held.push(cycle().await);
    }
    let with_held = open_fds(pid);
    assert!(
        with_held >= baseline + HELD * fds_per_conn,
        "{protocol}: {HELD} open connections, but figway's descriptors went only \
         from {baseline} to {with_held}"
    );
    drop(held);

    let start = Instant::now();
    let peak = run_cycles(pid, CYCLES, cycle).await;
    let took = start.elapsed();
    let after = settled_fds(pid, baseline, Duration::from_secs(3)).await;
    let settled = start.elapsed() - took;
    eprintln!(
        "{protocol}: {CYCLES} cycles in {took:?}; fds {baseline} before, {with_held} with \
         {HELD} held, peak {peak} during, {after} after (settled in {settled:?})"
    );
    assert!(
        after.abs_diff(baseline) <= TOLERANCE,
        "{protocol}: figway had {baseline} descriptors before {CYCLES} connect/close \
         cycles and still {after} 3s after them (peak {peak})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_connections_leave_no_descriptors_behind() {
    let b = Backend::start("app").await;
    let f = spawn(&config(b.addr, ""));
    let addr = f.addr;
    // Client socket and pooled upstream connection, at least the first.
    hygiene("HTTP/1.1", &f, 1, move || h1_cycle(addr)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connections_leave_no_descriptors_behind() {
    let b = Backend::start("app").await;
    let dir = tempdir::Dir::new();
    let (listen, tls) = tls_setup(dir.path(), &[b"http/1.1"]);
    let f = spawn(&config(b.addr, &listen));
    let addr = f.addr;
    hygiene("TLS", &f, 1, move || tls_cycle(addr, tls.clone())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_connections_leave_no_descriptors_behind() {
    let b = Backend::start("app").await;
    let f = spawn(&config(b.addr, ""));
    let addr = f.addr;
    hygiene("h2c", &f, 1, move || h2c_cycle(addr)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_tunnels_leave_no_descriptors_behind() {
    let (up, _) = echo_upstream(None).await;
    let f = spawn(&config(up, ""));
    let addr = f.addr;
    // A tunnel holds two: the client's socket and its own upstream one.
    hygiene("WebSocket", &f, 2, move || ws_cycle(addr)).await;
}

/// Reads until the peer closes; how long after `since` that was, or None
/// if it stayed open for `limit`.
async fn closed_after<S: AsyncRead + Unpin>(
    s: &mut S,
    since: Instant,
    limit: Duration,
) -> Option<Duration> {
    let mut buf = [0u8; 256];
    let until = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(until, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(since.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// A TLS figway (`header_read_timeout` 500ms) after a warm-up and the
/// settle, with its descriptor count then.
async fn tls_figway(b: &Backend, dir: &Path) -> (FigwayProcess, TlsConnector, usize) {
    let (listen, tls) = tls_setup(dir, &[b"http/1.1"]);
    let f = spawn(&config(b.addr, &listen));
    let (pid, addr) = (f.child.id(), f.addr);
    {
        let tls = tls.clone();
        run_cycles(pid, TASKS, move || tls_cycle(addr, tls.clone())).await;
    }
    tokio::time::sleep(SETTLE).await;
    let baseline = open_fds(pid);
    (f, tls, baseline)
}

/// Polls until figway holds at least `want` descriptors (the clients just
/// opened were accepted); the count reached.
async fn accepted_fds(pid: u32, want: usize) -> usize {
    let start = Instant::now();
    let mut now = open_fds(pid);
    while now < want && start.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(10)).await;
        now = open_fds(pid);
    }
    now
}

/// Each of `clients` is closed by figway at `header_read_timeout` (500ms)
/// of its accept, not before, and within 3s of `since`.
async fn all_cut_off<S: AsyncRead + Unpin>(what: &str, clients: &mut [S], since: Instant) {
    for (i, s) in clients.iter_mut().enumerate() {
        let after = closed_after(s, since, Duration::from_secs(3))
            .await
            .unwrap_or_else(|| panic!("{what} {i}: still open 3s after it connected"));
        assert!(
            after >= Duration::from_millis(400),
            "{what} {i}: cut too early, {after:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_tls_clients_are_closed_at_header_read_timeout_with_their_descriptors() {
    let b = Backend::start("app").await;
    let dir = tempdir::Dir::new();
    let (f, _, baseline) = tls_figway(&b, dir.path()).await;
    let (pid, addr) = (f.child.id(), f.addr);

    let start = Instant::now();
    // Connected, no ClientHello.
    let mut silent = Vec::new();
    // A ClientHello begun and never finished: the handshake stalls.
    let mut stalled = Vec::new();
    for _ in 0..HELD {
        silent.push(TcpStream::connect(addr).await.unwrap());
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
            .await
            .unwrap();
        stalled.push(s);
    }
    let held = accepted_fds(pid, baseline + 2 * HELD).await;
    assert!(
        held >= baseline + 2 * HELD,
        "{} silent connections, but figway's descriptors went only from {baseline} to {held}",
        2 * HELD
    );
    all_cut_off("silent TCP client", &mut silent, start).await;
    all_cut_off("stalled ClientHello", &mut stalled, start).await;
    let cut = start.elapsed();
    let after = settled_fds(pid, baseline, Duration::from_secs(3)).await;
    eprintln!(
        "silent TLS: fds {baseline} before, {held} with {} silent clients, {after} after \
         they were cut off (all within {cut:?})",
        2 * HELD
    );
    assert!(
        after.abs_diff(baseline) <= TOLERANCE,
        "silent clients closed, but figway's descriptors went from {baseline} to {after}"
    );
    assert_eq!(b.count(), TASKS, "a silent client reached the upstream");
}

/// SPEC §2: `header_read_timeout` covers the whole head, TLS handshake
/// included. A client that completes the handshake and then sends nothing
/// is not cut off today: after the handshake, hyper-util's auto builder
/// waits for the bytes that tell HTTP/1.1 from h2 with no deadline, and
/// the HTTP/1.1 `header_read_timeout` only starts once it has decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_clients_silent_after_the_handshake_are_closed_at_header_read_timeout() {
    let b = Backend::start("app").await;
    let dir = tempdir::Dir::new();
    let (f, tls, baseline) = tls_figway(&b, dir.path()).await;
    let (pid, addr) = (f.child.id(), f.addr);

    let start = Instant::now();
    let name = ServerName::try_from("shop.test").unwrap();
    let mut shook = Vec::new();
    for _ in 0..HELD {
        let tcp = TcpStream::connect(addr).await.unwrap();
        shook.push(tls.connect(name.clone(), tcp).await.unwrap());
    }
    let held = accepted_fds(pid, baseline + HELD).await;
    assert!(held >= baseline + HELD, "{baseline} -> {held}");
    all_cut_off("TLS client silent after its handshake", &mut shook, start).await;
    let after = settled_fds(pid, baseline, Duration::from_secs(3)).await;
    assert!(
        after.abs_diff(baseline) <= TOLERANCE,
        "silent clients closed, but figway's descriptors went from {baseline} to {after}"
    );
}

/// A plain client that sends the start of the h2 preface and stops leaves
/// hyper-util's protocol sniff waiting: it too is closed at
/// `header_read_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_silent_inside_the_h2_preface_are_closed_at_header_read_timeout() {
    let b = Backend::start("app").await;
    let f = spawn(&config(b.addr, ""));
    let start = Instant::now();
    let mut partial = Vec::new();
    for _ in 0..HELD {
        let mut s = TcpStream::connect(f.addr).await.unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        partial.push(s);
    }
    all_cut_off("client silent inside the h2 preface", &mut partial, start).await;
    assert_eq!(b.count(), 0);
}
