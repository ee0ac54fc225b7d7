//! Test support: figway started for real (in-process on port 0, or the
//! binary as a child process), instrumented backends that record what they
//! received, and small HTTP clients. Everything runs over loopback TCP.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

pub mod dns;
pub mod raw_client;
pub mod rogue;
pub mod scripted;
pub mod ws;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

pub type TestBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

pub fn full(data: impl Into<Bytes>) -> TestBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

// === impl Figway (in-process) ===

/// figway's real server type on 127.0.0.1:0, stopped when dropped.
pub struct Figway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub shared: Arc<figway::state::Shared>,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
    /// The config file and its directory, for [`Figway::start_file`].
    file: Option<(PathBuf, tempdir::Dir)>,
}

impl Figway {
    /// `toml` is a whole config; its listen and admin addresses are ignored
    /// (the test binds port 0).
    pub async fn start(toml: &str) -> Figway {
        let loaded = figway::config::load_str(toml, Path::new("test.toml"))
            .unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
        Figway::serve(&loaded, None)
    }

    /// As [`Figway::start`], from a real config file, so that
    /// [`Figway::reload`] can rewrite and re-read it.
    pub async fn start_file(toml: &str) -> Figway {
        let dir = tempdir::Dir::new();
        let path = dir.path().join("figway.toml");
        std::fs::write(&path, toml).unwrap();
        let loaded =
            figway::config::load(&path).unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
        Figway::serve(&loaded, Some((path, dir)))
    }

    /// Writes `toml` over the config file and reloads it, as `POST /reload`
    /// would. Only for servers made by [`Figway::start_file`].
    pub async fn reload(&self, toml: &str) -> figway::reload::Outcome {
        let (path, _) = self.file.as_ref().expect("reload needs Figway::start_file");
        std::fs::write(path, toml).unwrap();
        figway::reload::reload(&self.shared, figway::reload::Trigger::Admin).await
    }

    /// [`Figway::reload`], which must be applied.
    pub async fn reload_ok(&self, toml: &str) {
        let outcome = self.reload(toml).await;
        assert!(
            matches!(outcome, figway::reload::Outcome::Applied { .. }),
            "reload not applied: {outcome:?}"
        );
    }

    fn serve(loaded: &figway::config::Loaded, file: Option<(PathBuf, tempdir::Dir)>) -> Figway {
        let proxy = figway::server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let admin = figway::server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = proxy.local_addr().unwrap();
        let admin_addr = admin.local_addr().unwrap();
        let shared = figway::state::Shared::new(loaded);
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(figway::server::run(
            proxy,
            admin,
            shared.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        Figway {
            addr,
            admin: admin_addr,
            shared,
            stop: Some(stop),
            done: Some(done),
            file,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Triggers the drain and waits for `run` to return.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
    }
}

impl Drop for Figway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A minimal config around upstream and route TOML: listen/admin on port 0,
/// access log off so test output stays readable.
pub fn config(body: &str) -> String {
    format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n[log]\naccess_log = false\n{body}\n"
    )
}

// === impl FigwayProcess (the binary) ===

/// The real `figway` binary, started on a config file with port 0; its
/// bound addresses are read from its startup log line.
pub struct FigwayProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempdir::Dir,
}

impl FigwayProcess {
    pub fn spawn(toml: &str) -> FigwayProcess {
        let dir = tempdir::Dir::new();
        let path = dir.path().join("figway.toml");
        std::fs::write(&path, toml).unwrap();
        FigwayProcess::spawn_at(&path, dir)
    }

    /// As [`FigwayProcess::spawn`], with `extra` arguments after
    /// `run --config PATH` (`--upgrade`).
    pub fn spawn_with(toml: &str, extra: &[&str]) -> FigwayProcess {
        let dir = tempdir::Dir::new();
        let path = dir.path().join("figway.toml");
        std::fs::write(&path, toml).unwrap();
        FigwayProcess::start(&path, dir, extra)
    }

    /// Runs the binary on a config the caller laid out (a symlink, say),
    /// keeping `dir` alive as long as the process.
    pub fn spawn_at(path: &Path, dir: tempdir::Dir) -> FigwayProcess {
        FigwayProcess::start(path, dir, &[])
    }

    fn start(path: &Path, dir: tempdir::Dir, extra: &[&str]) -> FigwayProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_figway"))
            .arg("run")
            .arg("--config")
            .arg(path)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (addr, admin, _) = await_serving(&mut child);
        FigwayProcess {
            child,
            addr,
            admin,
            dir,
        }
    }

    /// Peak resident memory of the process so far, in KiB (Linux).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for FigwayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the child's stderr up to its "figway serving" line and returns the
/// proxy and admin addresses it names. The rest of stderr keeps being read
/// (so the child never blocks on a full pipe) into the returned tail, the
/// last [`STDERR_TAIL`] lines, for failure messages.
fn await_serving(child: &mut Child) -> (SocketAddr, SocketAddr, Arc<Mutex<Vec<String>>>) {
    let stderr = child.stderr.take().expect("stderr must be piped");
    let mut lines = BufReader::new(stderr).lines();
    let mut before = Vec::new();
    let (addr, admin) = loop {
        let Some(Ok(line)) = lines.next() else {
            panic!(
                "figway exited before serving; stderr:\n{}",
                before.join("\n")
            );
        };
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            if v["message"] == "figway serving" {
                break (
                    v["listen"].as_str().unwrap().parse().unwrap(),
                    v["admin"].as_str().unwrap().parse().unwrap(),
                );
            }
        }
        before.push(line);
    };
    let tail = Arc::new(Mutex::new(before));
    let keep = tail.clone();
    std::thread::spawn(move || {
        for line in lines {
            let Ok(line) = line else { break };
            let mut t = keep.lock().unwrap();
            if t.len() == STDERR_TAIL {
                t.remove(0);
            }
            t.push(line);
        }
    });
    (addr, admin, tail)
}

/// How many of the child's last stderr lines [`LoggingFigway`] keeps.
pub const STDERR_TAIL: usize = 200;

// === impl LoggingFigway (the binary, access log on stdout) ===

/// The real `figway` binary with stdout piped: its access-log lines arrive,
/// one `String` each, on [`LoggingFigway::lines`]. It can be stopped with
/// SIGTERM as an orchestrator would, and is killed when dropped.
pub struct LoggingFigway {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// stdout, line by line; disconnected once the child closed stdout.
    pub lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// stdout held open but never read ([`LoggingFigway::spawn_unread`]).
    _unread: Option<ChildStdout>,
    _dir: tempdir::Dir,
}

impl LoggingFigway {
    /// Starts the binary on `toml` (listen and admin on port 0, say) and
    /// reads its stdout in a thread.
    pub fn spawn(toml: &str) -> LoggingFigway {
        LoggingFigway::start(toml, true)
    }

    /// As [`LoggingFigway::spawn`], but nobody ever reads stdout: the pipe
    /// fills (64 KiB on Linux) and stays full, as when the log shipper
    /// behind figway stalls. [`LoggingFigway::lines`] stays empty.
    pub fn spawn_unread(toml: &str) -> LoggingFigway {
        LoggingFigway::start(toml, false)
    }

    fn start(toml: &str, read: bool) -> LoggingFigway {
        let dir = tempdir::Dir::new();
        let path = dir.path().join("figway.toml");
        std::fs::write(&path, toml).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_figway"))
            .arg("run")
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let unread = if read {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            None
        } else {
            Some(stdout)
        };
        let (addr, admin, stderr) = await_serving(&mut child);
        LoggingFigway {
            child,
            addr,
            admin,
            lines,
            stderr,
            _unread: unread,
            _dir: dir,
        }
    }

    /// The next stdout line; panics after 10 s without one.
    pub fn next_line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(10))
            .expect("no access-log line on stdout within 10s")
    }

    /// The stdout lines not yet taken, up to the child closing stdout (its
    /// exit) or 5 s without a line, whichever comes first.
    pub fn remaining_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            out.push(line);
        }
        out
    }

    /// The last [`STDERR_TAIL`] lines of stderr (figway's own log).
    pub fn stderr_tail(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM, as an orchestrator stopping figway would.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// Waits up to `limit` for the child to exit; None if it still runs.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// [`LoggingFigway::sigterm`], then [`LoggingFigway::wait_exit`].
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        self.sigterm();
        self.wait_exit(limit)
    }
}

impl Drop for LoggingFigway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub mod tempdir {
    use std::path::{Path, PathBuf};

    /// A fresh directory under the system temp dir, removed on drop.
    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new() -> Dir {
            let p = std::env::temp_dir().join(format!(
                "figway-test-{}-{:x}",
                std::process::id(),
                fastrand::u64(..)
            ));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

// === impl Backend ===

/// What a backend received: the head, the body's length, and its first MiB.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body_len: u64,
    pub body: Bytes,
}

type Handler =
    Arc<dyn Fn(Seen) -> Pin<Box<dyn Future<Output = Response<TestBody>> + Send>> + Send + Sync>;

/// A real hyper HTTP/1.1 server on 127.0.0.1:0 that records every request.
pub struct Backend {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Connections accepted so far, and those still open: how a test sees
    /// figway's pooled connections to this backend come and go.
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

/// Decrements a backend's open-connection count however its connection
/// task ends (closed, failed, or aborted with the backend).
struct OpenConnection(Arc<AtomicUsize>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Backend {
    /// Answers 200 with body `name` and header `x-backend: name`.
    pub async fn start(name: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Backend::start_on(listener, name)
    }

    /// As [`Backend::start`], on a listener the test bound (another
    /// loopback address, a given port).
    pub fn start_on(listener: TcpListener, name: &str) -> Backend {
        let name = name.to_string();
        Backend::with_on(listener, move |_| {
            let name = name.clone();
            async move {
                Response::builder()
                    .header("x-backend", name.as_str())
                    .body(full(name))
                    .unwrap()
            }
        })
    }

    /// As [`Backend::with`], on a listener the test bound.
    pub fn with_on<F, Fut>(listener: TcpListener, handler: F) -> Backend
    where
        F: Fn(Seen) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<TestBody>> + Send + 'static,
    {
        Backend::serve(listener, Arc::new(move |s| Box::pin(handler(s))))
    }

    /// Answers with `handler`, which sees the request after its body was read.
    pub async fn with<F, Fut>(handler: F) -> Backend
    where
        F: Fn(Seen) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<TestBody>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Backend::serve(listener, Arc::new(move |s| Box::pin(handler(s))))
    }

    fn serve(listener: TcpListener, handler: Handler) -> Backend {
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (accepted_count, open_count) = (accepted.clone(), open.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                accepted_count.fetch_add(1, Ordering::SeqCst);
                open_count.fetch_add(1, Ordering::SeqCst);
                let guard = OpenConnection(open_count.clone());
                let handler = handler.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let _guard = guard;
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let handler = handler.clone();
                        let log = log.clone();
                        async move {
                            let (parts, mut body) = req.into_parts();
                            let mut len = 0u64;
                            let mut kept = Vec::new();
                            while let Some(frame) = body.frame().await {
                                let Ok(frame) = frame else { break };
                                if let Some(d) = frame.data_ref() {
                                    len += d.len() as u64;
                                    if kept.len() < 1 << 20 {
                                        kept.extend_from_slice(
                                            &d[..d.len().min((1 << 20) - kept.len())],
                                        );
                                    }
                                }
                            }
                            let seen = Seen {
                                method: parts.method,
                                uri: parts.uri,
                                headers: parts.headers,
                                body_len: len,
                                body: Bytes::from(kept),
                            };
                            log.lock().unwrap().push(seen.clone());
                            Ok::<_, Infallible>(handler(seen).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Backend {
            addr,
            seen,
            accepted,
            open,
            task,
        }
    }

    /// Connections accepted since the backend started.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections open now (accepted and not yet closed by either side).
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("backend saw no request")
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A loopback port where a connect is refused: bound, never listening,
/// and held for the rest of the test process. A port merely freed could
/// be taken by another test's listener meanwhile (tests run in parallel),
/// and a connect meant to be refused would reach that server instead.
pub async fn refused_port() -> SocketAddr {
    static HELD: Mutex<Vec<socket2::Socket>> = Mutex::new(Vec::new());
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any.into()).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    HELD.lock().unwrap().push(socket);
    addr
}

/// A loopback port nothing is bound to now (it may be taken later): for
/// a test that needs figway itself free to bind it.
pub async fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

/// A listener that accepts connections and never answers.
pub async fn black_hole() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    (addr, task)
}

// === clients ===

/// A collected response.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends one request over a new HTTP/1.1 connection and collects the answer.
pub async fn send(addr: SocketAddr, req: Request<TestBody>) -> Answer {
    let mut conn = H1::connect(addr).await;
    conn.send(req).await
}

/// `GET path` with the given headers.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut b = Request::get(path).header("host", "test.local");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(addr, b.body(full("")).unwrap()).await
}

/// An HTTP/1.1 client connection that can be reused for several requests.
pub struct H1 {
    sender: hyper::client::conn::http1::SendRequest<TestBody>,
}

impl H1 {
    pub async fn connect(addr: SocketAddr) -> H1 {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        H1 { sender }
    }

    pub async fn send(&mut self, req: Request<TestBody>) -> Answer {
        self.sender.ready().await.unwrap();
        let res = self.sender.send_request(req).await.unwrap();
        let (parts, body) = res.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// One request over HTTP/2 with prior knowledge (h2c).
pub async fn send_h2(addr: SocketAddr, req: Request<TestBody>) -> Answer {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let res = sender.send_request(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// Writes raw bytes on a new connection and reads until the peer closes or
/// `wait` passes; for requests a well-behaved client cannot send.
pub async fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

// === bodies ===

/// A body of `total` zero bytes made on the fly in `chunk`-sized frames, so a
/// test can send or serve 50 MiB without holding it.
pub struct Generated {
    left: u64,
    chunk: Bytes,
}

impl Generated {
    pub fn new(total: u64, chunk: usize) -> Generated {
        Generated {
            left: total,
            chunk: Bytes::from(vec![b'x'; chunk]),
        }
    }

    pub fn boxed(self) -> TestBody {
        self.map_err(|never: Infallible| match never {}).boxed()
    }
}

impl Body for Generated {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = (self.chunk.len() as u64).min(self.left) as usize;
        self.left -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

// === time ===

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` into Unix seconds; None if
/// the text is not RFC 3339.
pub fn rfc3339_unix(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac_secs = 0.0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        frac_secs = format!("0.{}", &frac[..digits]).parse().ok()?;
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            let oh: i64 = rest[1..3].parse().ok()?;
            let om: i64 = rest[4..6].parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
    };
    // Howard Hinnant's days_from_civil.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + sec - offset) as f64 + frac_secs)
}
