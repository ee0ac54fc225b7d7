//! `figway demo` (SPEC §1, docs/demo.md): a stub monolith and the stub
//! services extracted from it on loopback, and figway in front of them
//! serving `config/demo.toml` through the real server ([`crate::server::run`])
//! with hot reload, so that a newcomer sees a split, a shadow compare and a
//! reload within a minute and without writing a backend. Once every piece
//! answers, it prints what runs where and curl lines to try
//! ([`banner`]); SIGINT or SIGTERM drains figway, stops the stubs, exit 0.
//!
//! [`source`] decides which file is served and on which ports; [`stub`] is
//! the stub server, shared with the examples and the tests.

pub mod banner;
pub mod source;
pub mod stub;

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::config::{self, LogFormat};
use crate::state::Shared;
use banner::StubPlace;
use source::{Source, DEFAULT_PORT, PORT_ENV};
use stub::Stub;

/// How long the pieces get to answer before the demo gives up.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// Runs the demo until SIGINT/SIGTERM (`shutdown`, the CLI's signal
/// future). `init_tracing` is the CLI's log set-up, so that the demo logs as
/// `figway run` does. Exit codes as `run`'s: 0 after a clean stop, 1 when
/// the config is invalid or a port cannot be bound, 2 for a bad port value.
pub fn main(
    port: Option<u16>,
    init_tracing: fn(LogFormat),
    shutdown: impl Future<Output = ()>,
) -> ExitCode {
    let base = match source::base_port(port, std::env::var_os(PORT_ENV)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("figway demo: {e}");
            return ExitCode::from(2);
        }
    };
    let cwd = std::env::current_dir().unwrap_or_else(|_| ".".into());
    let source = match source::prepare(base, &cwd, &std::env::temp_dir()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("figway demo: {e}");
            return ExitCode::from(1);
        }
    };
    // The file as served, read once more: a user's broken edit of
    // config/demo.toml is reported as `check` would.
    let loaded = match config::load(&source.path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            eprintln!(
                "figway demo: {} is not a valid config",
                source.path.display()
            );
            return ExitCode::from(1);
        }
    };
    let stubs = match stub_places(&loaded.config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("figway demo: {}: {e}", source.path.display());
            return ExitCode::from(1);
        }
    };
    init_tracing(loaded.config.log.format);
    // One thread is plenty for a demo's traffic; figway's request path is
    // the same on one worker as on many.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("figway demo: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(serve(&loaded, &source, &stubs, base, shutdown));
    crate::access_log::flush();
    code
}

/// One stub per target of every upstream, named after the upstream: the
/// demo runs what the file points at, so an upstream a user adds gets a stub
/// too.
fn stub_places(config: &config::Config) -> Result<Vec<StubPlace>, String> {
    let mut places = Vec::new();
    for upstream in &config.upstreams {
        for target in &upstream.targets {
            let address = target.authority.parse::<SocketAddr>().map_err(|_| {
                format!(
                    "upstreams.{}: the demo runs a stub at every target, and {} is not an ip:port",
                    upstream.name, target.url
                )
            })?;
            places.push(StubPlace {
                name: upstream.name.clone(),
                address,
                legacy: upstream.legacy,
            });
        }
    }
    Ok(places)
}

/// The stub each place runs: the legacy side says version 1.0, extracted
/// services 2.0, so that a shadow compare between them finds a difference.
fn stub_for(place: &StubPlace) -> Stub {
    let version = if place.legacy { "1.0" } else { "2.0" };
    Stub::new(&place.name).with_field("version", version)
}

async fn serve(
    loaded: &config::Loaded,
    source: &Source,
    places: &[StubPlace],
    base: u16,
    shutdown: impl Future<Output = ()>,
) -> ExitCode {
    let Some((proxy, admin, stub_listeners)) = bind_all(loaded, places, base).await else {
        return ExitCode::from(1);
    };
    let (stop_stubs, stubs_stopped) = watch::channel(false);
    let mut stub_tasks = Vec::new();
    for (place, listener) in places.iter().zip(stub_listeners) {
        let mut stopped = stubs_stopped.clone();
        let stop = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        stub_tasks.push(tokio::spawn(stub_for(place).serve(listener, stop)));
    }

    let shared = Shared::new(loaded);
    // Kept for as long as we serve: dropping it stops the watch.
    let _reloads = crate::reload::start(&shared, true, true);
    let (proxy_addr, admin_addr) = (local(&proxy), local(&admin));
    let (stop_figway, figway_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::server::run(
        proxy,
        admin,
        shared.clone(),
        async move {
            let _ = figway_stopped.await;
        },
    ));

    tokio::pin!(shutdown);
    let stubs_ready = places.iter().map(|p| (p.address, stub::HEALTH_PATH));
    let checks: Vec<(SocketAddr, &str)> = std::iter::once((admin_addr, "/readyz"))
        .chain(stubs_ready)
        .collect();
    let ready = tokio::select! {
        ready = tokio::time::timeout(READY_WITHIN, all_answer(&checks, proxy_addr)) => ready.is_ok(),
        () = &mut shutdown => {
            stop(stop_figway, server, stop_stubs, stub_tasks).await;
            return ExitCode::SUCCESS;
        }
    };
    if !ready {
        eprintln!(
            "figway demo: figway and the stubs did not all answer within {}s; stopping",
            READY_WITHIN.as_secs()
        );
        stop(stop_figway, server, stop_stubs, stub_tasks).await;
        return ExitCode::from(1);
    }
    let text = std::fs::read_to_string(&source.path).unwrap_or_default();
    let snapshot = shared.snapshot.load_full();
    let printed = banner::render(&banner::Facts {
        proxy: proxy_addr,
        admin: admin_addr,
        stubs: places,
        source,
        config_text: &text,
        snapshot: &snapshot,
    });
    let mut out = std::io::stdout().lock();
    if source.copied {
        let what = if source.from_repo && base != DEFAULT_PORT {
            format!("a copy of {} with ports from {base}", source::REPO_FILE)
        } else {
            "the demo config built into figway".to_string()
        };
        let _ = writeln!(out, "Serving {what}: {}\n", source.path.display());
    }
    // A closed stdout (piped into `head`) must not stop the demo.
    let _ = out.write_all(printed.as_bytes()).and_then(|()| out.flush());
    drop(out);

    shutdown.await;
    stop(stop_figway, server, stop_stubs, stub_tasks).await;
    ExitCode::SUCCESS
}

/// Binds every address the demo needs before serving any, so that a port
/// in use stops the demo at once with every clash named. `None` after
/// saying why.
async fn bind_all(
    loaded: &config::Loaded,
    places: &[StubPlace],
    base: u16,
) -> Option<(TcpListener, TcpListener, Vec<TcpListener>)> {
    let config = &loaded.config;
    let mut failed = Vec::new();
    let mut note = |address: SocketAddr, role: String, e: std::io::Error| {
        failed.push(match e.kind() {
            std::io::ErrorKind::AddrInUse => format!("{address} (the {role}) is already in use"),
            _ => format!("cannot listen on {address} (the {role}): {e}"),
        });
    };
    // Exclusive, as `figway run` binds: a figway already on the port must
    // not quietly share it with the demo.
    let proxy = crate::server::bind_exclusive(config.listen.address)
        .map_err(|e| {
            note(
                config.listen.address,
                "figway proxy, listen.address".into(),
                e,
            )
        })
        .ok();
    let admin = crate::server::bind_exclusive(config.admin.address)
        .map_err(|e| {
            note(
                config.admin.address,
                "figway admin API, admin.address".into(),
                e,
            )
        })
        .ok();
    let mut stubs = Vec::new();
    for place in places {
        match TcpListener::bind(place.address).await {
            Ok(l) => stubs.push(l),
            Err(e) => note(place.address, format!("{} stub", place.name), e),
        }
    }
    match (proxy, admin) {
        (Some(p), Some(a)) if failed.is_empty() => Some((p, a, stubs)),
        _ => {
            for line in &failed {
                eprintln!("figway demo: {line}");
            }
            let suggestion = free_base(base).await;
            eprintln!(
                "figway demo: the demo listens on {} consecutive ports from {base} (proxy, admin, then one \
                 per stub); pick another base with `figway demo --port {suggestion}` or \
                 `{PORT_ENV}={suggestion} figway demo`",
                places.len() + 2
            );
            None
        }
    }
}

/// A base port whose demo block is free right now, to suggest; a guess
/// that may be taken by the time the user tries it, so only a suggestion.
async fn free_base(taken: u16) -> u16 {
    for candidate in [18080u16, 28080, 38080, 48080, 58080] {
        if candidate == taken {
            continue;
        }
        let mut free = true;
        for port in candidate..candidate + 5 {
            if TcpListener::bind(("127.0.0.1", port)).await.is_err() {
                free = false;
                break;
            }
        }
        if free {
            return candidate;
        }
    }
    18080
}

fn local(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// Waits until the proxy accepts connections and every `(address, path)`
/// answers 200.
async fn all_answer(checks: &[(SocketAddr, &str)], proxy: SocketAddr) {
    loop {
        let mut all = TcpStream::connect(proxy).await.is_ok();
        for (address, path) in checks {
            all = all && answers_200(*address, path).await;
        }
        if all {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One GET over a fresh HTTP/1.1 connection; any failure is "not yet".
async fn answers_200(address: SocketAddr, path: &str) -> bool {
    let attempt = async {
        let stream = TcpStream::connect(address).await.ok()?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(conn);
        let request = Request::get(path)
            .header(http::header::HOST, address.to_string())
            .body(Empty::<Bytes>::new())
            .ok()?;
        let response = sender.send_request(request).await.ok()?;
        Some(response.status() == StatusCode::OK)
    };
    tokio::time::timeout(Duration::from_secs(1), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Drains figway first (requests in flight still reach their stubs), then
/// stops the stubs.
async fn stop(
    stop_figway: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
    stop_stubs: watch::Sender<bool>,
    stubs: Vec<tokio::task::JoinHandle<()>>,
) {
    let _ = stop_figway.send(());
    let _ = server.await;
    let _ = stop_stubs.send(true);
    for task in stubs {
        let _ = task.await;
    }
    tracing::info!("figway demo stopped");
}
