//! `figway run` (SPEC §1, §9): load the config, bind the proxy and admin
//! addresses, start the workers, log the one line that says figway serves,
//! serve until SIGTERM or SIGINT, drain, and end with the access log
//! flushed. The tracing setup and the shutdown signal live here too, and
//! `figway demo` borrows both, so that the demo logs and stops as `run`
//! does.

use std::path::Path;
use std::process::ExitCode;

use tokio::net::TcpListener;

use super::workers;
use crate::config::{self, LogFormat};
use crate::state::Shared;

pub(super) fn run(path: &Path, upgrade: bool) -> ExitCode {
    let loaded = match config::load(path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    init_tracing(loaded.config.log.format);
    let workers = workers::count(&loaded.config.runtime);
    // This thread's runtime is the first worker (see `workers` for why
    // each worker has a current-thread runtime of its own).
    let runtime = match workers::current_thread_runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(code) = runtime.block_on(serve(&loaded, workers, upgrade)) {
        return code;
    }
    // Lines of requests that ended in the drain, cut ones included.
    crate::access_log::flush();
    tracing::info!("figway stopped");
    ExitCode::SUCCESS
}

/// Serves as the first of `workers` workers, which also runs the admin
/// API, reloads, health checks and signals, until a signal has come and
/// every worker has drained. Err: the exit code of an address that could
/// not be bound, already said.
async fn serve(loaded: &config::Loaded, workers: usize, upgrade: bool) -> Result<(), ExitCode> {
    let shared = Shared::new(loaded);
    // Kept alive for as long as we serve; dropping it stops the watch.
    let _reloads = crate::reload::start(&shared, true, true);
    // This thread's descriptor table its own (`sys::own_file_table`): after
    // the config watcher's thread has started with the old one (the
    // watcher wakes it through descriptors both tables then hold), and
    // before any socket is open, so that the watcher's table keeps no
    // copy of one (a listener closed here would go on queueing
    // connections there). No task has run yet. Threads started from here
    // on share this table (other workers, tokio's blocking pool) or leave
    // it at once (the access-log writer).
    crate::sys::own_file_table();
    let (proxy, admin) = bind_both(loaded, upgrade)?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let others = workers::spawn_others(&proxy, workers, &shared, &stopped);
    announce(loaded, &proxy, &admin, others.len() + 1, upgrade);
    let shutdown = async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    };
    // The other workers drain beside this one; the admin API answers
    // until they are done.
    let others_drained = workers::join(others);
    crate::server::run_with_workers(proxy, admin, shared, shutdown, others_drained).await;
    Ok(())
}

/// The proxy's listener and the admin API's. A failure is exit 1, said
/// twice: as a log line for whatever collects the log, and as plain text
/// on stderr for the person who ran the command.
fn bind_both(
    loaded: &config::Loaded,
    upgrade: bool,
) -> Result<(TcpListener, TcpListener), ExitCode> {
    let config = &loaded.config;
    let bound =
        bind_configured(loaded, "listen.address", config.listen.address, upgrade).and_then(|p| {
            bind_configured(loaded, "admin.address", config.admin.address, upgrade).map(|a| (p, a))
        });
    bound.map_err(|e| {
        tracing::error!("{e}");
        eprintln!("{e}");
        ExitCode::from(1)
    })
}

/// Binds the address config key `key` names (SPEC §9). Without `--upgrade`
/// an address anyone already holds is refused, so that a second figway
/// started by mistake cannot quietly take half the traffic with another
/// route table. With it, both the listener and the admin API join the old
/// figway's sockets: the admin address is shared too, because the upgrade
/// keeps it (scrapers and probes need no new address) and the old figway
/// must keep answering on it while it drains; during the overlap the
/// kernel hands each admin connection to one of the two.
///
/// A failure is said like a config error, at the `file:line:col` of the
/// key (from `loaded`), since editing that key is one way to fix it; a key
/// the file leaves out is named with the file alone and called the default.
fn bind_configured(
    loaded: &config::Loaded,
    key: &str,
    address: std::net::SocketAddr,
    upgrade: bool,
) -> Result<TcpListener, String> {
    let bound = if upgrade {
        crate::server::bind(address)
    } else {
        crate::server::bind_exclusive(address)
    };
    let (at, default) = match loaded.position(key) {
        Some(position) => (position.to_string(), ""),
        None => (
            loaded.path.display().to_string(),
            " (the default: the file does not set it)",
        ),
    };
    bound.map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse if !upgrade => format!(
            "{at}: {key}: {address}{default} is already in use (by another figway? to replace \
             a running figway, start the new one with figway run --upgrade)"
        ),
        _ => format!("{at}: {key}: cannot bind {address}{default}: {e}"),
    })
}

/// Says that figway serves, once every worker has started: the start-up
/// line, then what `figway check` warns about (the operator may never have
/// run check on this file), then, under `--upgrade`, whether queued
/// connections survive the old figway's exit.
fn announce(
    loaded: &config::Loaded,
    proxy: &TcpListener,
    admin: &TcpListener,
    workers: usize,
    upgrade: bool,
) {
    let config = &loaded.config;
    // The bound addresses, not the configured ones: with port 0 (tests,
    // scripts) this line is how the caller learns where figway listens.
    let local = |l: &TcpListener| l.local_addr().map(|a| a.to_string()).unwrap_or_default();
    log_serving(&Serving {
        format: config.log.format,
        listen: &local(proxy),
        tls: !config.tls.is_empty(),
        admin: &local(admin),
        version: &loaded.version,
        routes: config.routes.len(),
        upstreams: config.upstreams.len(),
        workers,
    });
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    if upgrade {
        warn_without_migrate_req();
    }
}

/// The facts of the start-up line.
struct Serving<'a> {
    format: LogFormat,
    listen: &'a str,
    tls: bool,
    admin: &'a str,
    version: &'a str,
    routes: usize,
    upstreams: usize,
    workers: usize,
}

/// The one line `run` logs once it serves: where (proxy and admin), what
/// (routes, upstreams, the config version `figway check` and `/config`
/// show) and with how many workers. In JSON each fact is a field and the
/// message stays `figway serving`, which scripts and tests wait for; in
/// pretty, a person reads one sentence, so the facts are in the message
/// and not repeated as `key=value` after it.
fn log_serving(s: &Serving<'_>) {
    match s.format {
        LogFormat::Json => tracing::info!(
            listen = s.listen,
            tls = s.tls,
            admin = s.admin,
            version = s.version,
            routes = s.routes,
            upstreams = s.upstreams,
            workers = s.workers,
            "figway serving"
        ),
        LogFormat::Pretty => {
            let counted = |n: usize, what: &str| match n {
                1 => format!("1 {what}"),
                n => format!("{n} {what}s"),
            };
            tracing::info!(
                "figway serving on {}{} (admin {}): {}, {}, config version {}, {}",
                s.listen,
                if s.tls { " with TLS" } else { "" },
                s.admin,
                counted(s.routes, "route"),
                counted(s.upstreams, "upstream"),
                s.version,
                counted(s.workers, "worker"),
            )
        }
    }
}

/// SPEC §9: zero-downtime upgrades start the new binary beside the old
/// one on the same port (SO_REUSEPORT). Without `tcp_migrate_req`, the
/// connections still waiting in the old listener's backlog when it closes
/// are reset instead of moved to the new one. Said under `--upgrade` only:
/// on an ordinary start nobody shares the listener, so there is nothing to
/// migrate.
fn warn_without_migrate_req() {
    if let Ok(v) = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req") {
        if v.trim() == "0" {
            tracing::warn!(
                "net.ipv4.tcp_migrate_req = 0: during a binary upgrade, connections queued on the old \
                 listener are reset when it closes; set it to 1 (sysctl -w net.ipv4.tcp_migrate_req=1)"
            );
        }
    }
}

pub(super) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: draining"),
                    _ = int.recv() => tracing::info!("SIGINT: draining"),
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub(super) fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour is for a person at a terminal: in a file, a pipe or journald
    // the escape codes are noise that breaks grep. NO_COLOR (no-color.org:
    // set and not empty) turns it off at a terminal too.
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal() && !no_color)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}
