//! The command line (SPEC §1): `run` (with `--upgrade` to join the
//! addresses a running figway holds), `check`, `explain`, `demo` (in
//! [`crate::demo`]), and `figway PATH`
//! as a shorthand for `run --config PATH`. Exit codes: 0 ok, 1 invalid
//! config or cannot bind (an address already in use included), 2 bad
//! command line (clap's own code for usage errors).
//!
//! `figway WORD` serves WORD as a config path (SPEC §1), so a mistyped
//! subcommand reaches us as a config path. When WORD is close to a
//! subcommand (the edit distance of [`crate::suggest`]) it is taken as a
//! typo, exit 2 with the suggestion, when more arguments follow
//! (`figway chekc tour.toml`: a config path takes none) or when no file of
//! that name exists (`figway chek`: "cannot read config chek" would send
//! the user looking for a file). A file that exists is always served, even
//! one named `chek`: the SPEC's shorthand keeps working for any name.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, Parser, Subcommand};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use serde_json::json;

use crate::config::{self, LogFormat};
use crate::decision::decide_noting;
use crate::matching::RequestFacts;
use crate::state::Shared;

#[derive(Parser, Debug)]
#[command(
    name = "figway",
    version,
    about = "A strangler-fig edge proxy: move traffic off a monolith, route by route"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve with the given config. An address already in use is exit 1.
    Run {
        #[arg(long, short, default_value = "figway.toml")]
        config: PathBuf,
        /// Join the listen and admin addresses a running figway holds
        /// (SO_REUSEPORT) instead of refusing them: start the new binary
        /// with this, wait for it to serve, then SIGTERM the old one.
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate a config and print its compiled route table.
    Check { path: PathBuf },
    /// Show which route and upstream a request would get. The URL's query
    /// and the -H headers (cookies too) meet the routes' [routes.match]
    /// conditions as the proxy's would; routes passed over for a failed
    /// condition are listed with what failed.
    Explain {
        path: PathBuf,
        method: String,
        url: String,
        /// A request header, `Name: value`; repeatable. Cookies are a
        /// header too: -H 'cookie: beta=yes; theme=dark'.
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// The client address (for client_ip keys).
        #[arg(long)]
        client: Option<IpAddr>,
        #[arg(long)]
        json: bool,
    },
    /// Start a stub monolith and two stub services on loopback, serve
    /// config/demo.toml in front of them, and print curl lines to try.
    Demo {
        /// First of the consecutive ports the demo listens on: proxy, admin,
        /// then one per stub [env: FIGWAY_DEMO_PORT] [default: 8080]
        #[arg(long)]
        port: Option<u16>,
    },
    #[command(external_subcommand)]
    ConfigPath(Vec<OsString>),
}

/// `print!` for `check` and `explain`, whose output is often piped: a
/// reader that went away (`figway check | head -1`) ends the command
/// quietly with success, where `print!` panics on EPIPE (Rust ignores
/// SIGPIPE). The exit status is settled before anything is printed: an
/// invalid config has already failed, on stderr.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if write!(std::io::stdout().lock(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

/// [`out!`] with a newline.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout().lock(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => run(Path::new("figway.toml"), false),
        Some(Command::Run { config, upgrade }) => run(&config, upgrade),
        Some(Command::Check { path }) => check(&path),
        Some(Command::Explain {
            path,
            method,
            url,
            headers,
            client,
            json,
        }) => explain(&path, &method, &url, &headers, client, json),
        Some(Command::Demo { port }) => crate::demo::main(port, init_tracing, shutdown_signal()),
        Some(Command::ConfigPath(args)) => config_path_or_typo(&args),
    }
}

/// `figway WORD [MORE...]`: serves WORD as a config path, unless it reads
/// as a mistyped subcommand (see the module doc for the rule).
fn config_path_or_typo(args: &[OsString]) -> ExitCode {
    let mut cli = Cli::command();
    // Built, so that the subcommands' usage lines start with `figway`.
    cli.build();
    let word = args
        .first()
        .map(|w| w.to_string_lossy())
        .unwrap_or_default();
    let typo = crate::suggest::closest(&word, cli.get_subcommands().map(|c| c.get_name()))
        .map(str::to_string);
    let mut usage = |message: String, command: Option<&str>| {
        let usage = match command.and_then(|c| cli.find_subcommand_mut(c)) {
            Some(sub) => sub.render_usage(),
            None => cli.render_usage(),
        };
        eprintln!("error: {message}\n\n{usage}\n\nFor more information, try 'figway --help'.");
        ExitCode::from(2)
    };
    match (args, typo.as_deref()) {
        ([path], None) => run(Path::new(path), false),
        ([path], Some(_)) if Path::new(path).exists() => run(Path::new(path), false),
        ([_], Some(command)) => usage(
            format!("{word:?} is not a command, nor a config file (did you mean {command:?}?)"),
            Some(command),
        ),
        (_, Some(command)) => usage(
            format!("{word:?} is not a command (did you mean {command:?}?)"),
            Some(command),
        ),
        (_, None) => usage(
            format!(
                "{word:?} is not a command, and a config path (figway PATH) takes no further \
                 arguments"
            ),
            None,
        ),
    }
}

fn run(path: &Path, upgrade: bool) -> ExitCode {
    let loaded = match config::load(path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    init_tracing(loaded.config.log.format);
    // Each worker is a current-thread runtime on a thread of its own with a
    // listener of its own (SO_REUSEPORT: the kernel spreads connections over
    // them), measured ~25% cheaper per request than tokio's work-stealing
    // runtime (docs/benchmarks.md). The first worker, on this thread, also
    // runs the admin API, reloads, health checks and signals.
    let workers = match loaded.config.runtime.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let served = runtime.block_on(async {
        let config = &loaded.config;
        let bound = bind_configured(&loaded, "listen.address", config.listen.address, upgrade)
            .and_then(|p| {
                bind_configured(&loaded, "admin.address", config.admin.address, upgrade)
                    .map(|a| (p, a))
            });
        let (proxy, admin) = match bound {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("{e}");
                return Err(ExitCode::from(1));
            }
        };
        let shared = Shared::new(&loaded);
        // Kept alive for as long as we serve; dropping it stops the watch.
        let _reloads = crate::reload::start(&shared, true, true);
        // The bound addresses, not the configured ones: with port 0 (tests,
        // scripts) this line is how the caller learns where figway listens.
        let local =
            |l: &tokio::net::TcpListener| l.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let others = match proxy.local_addr() {
            Ok(address) => (1..workers)
                .filter_map(|i| spawn_worker(i, address, shared.clone(), stopped.clone()))
                .collect(),
            Err(_) => Vec::new(),
        };
        log_serving(&Serving {
            format: config.log.format,
            listen: &local(&proxy),
            tls: !config.tls.is_empty(),
            admin: &local(&admin),
            version: &loaded.version,
            routes: config.routes.len(),
            upstreams: config.upstreams.len(),
            workers: others.len() + 1,
        });
        // What `figway check` warns about, in the log too: the operator
        // may never have run check on this file.
        for w in &loaded.warnings {
            tracing::warn!("{w}");
        }
        if upgrade {
            warn_without_migrate_req();
        }
        let shutdown = async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        };
        // The other workers drain beside this one; the admin API answers
        // until they are done.
        let others_drained = async move {
            for worker in others {
                let _ = tokio::task::spawn_blocking(move || worker.join()).await;
            }
        };
        crate::server::run_with_workers(proxy, admin, shared, shutdown, others_drained).await;
        Ok(())
    });
    if let Err(code) = served {
        return code;
    }
    // Lines of requests that ended in the drain, cut ones included.
    crate::access_log::flush();
    tracing::info!("figway stopped");
    ExitCode::SUCCESS
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
) -> Result<tokio::net::TcpListener, String> {
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

/// Starts worker `index`: its own current-thread runtime and its own
/// listener on `address`, serving until `stopped` turns true.
fn spawn_worker(
    index: usize,
    address: std::net::SocketAddr,
    shared: Arc<Shared>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Option<std::thread::JoinHandle<()>> {
    let spawned = std::thread::Builder::new()
        .name(format!("figway-worker-{index}"))
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, worker = index, "cannot start a worker runtime");
                    return;
                }
            };
            runtime.block_on(async move {
                let listener = match crate::server::bind(address) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, worker = index, "worker cannot bind the listen address");
                        return;
                    }
                };
                let shutdown = async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                crate::server::serve(listener, shared, shutdown).await;
            });
        });
    match spawned {
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::error!(error = %e, worker = index, "cannot start a worker thread");
            None
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

async fn shutdown_signal() {
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

fn init_tracing(format: LogFormat) {
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

/// `warning:` lines for the target names whose lookup (`answers`, parallel
/// to `keys`) found no address.
fn unresolved_warnings(
    config: &config::Config,
    keys: &[crate::upstream::dns::Key],
    answers: &[crate::upstream::dns::Answer],
) -> Vec<String> {
    use crate::upstream::dns::Answer;
    let mut out = Vec::new();
    for u in &config.upstreams {
        for (i, t) in u.targets.iter().enumerate() {
            let Some(name) = &t.name else { continue };
            let answer = keys
                .iter()
                .position(|k| k.upstream == u.name && k.name == *name)
                .and_then(|at| answers.get(at));
            let why = match answer {
                Some(Answer::Addresses(_)) => continue,
                Some(Answer::Empty) => format!(
                    "no such name, or no {} address",
                    match u.dns_family {
                        crate::config::DnsFamily::V4 => "IPv4",
                        crate::config::DnsFamily::V6 => "IPv6",
                        _ => "IPv4 or IPv6",
                    }
                ),
                Some(Answer::Error(e)) => e.clone(),
                None => "not looked up".to_string(),
            };
            out.push(format!(
                "warning: upstreams.{}.targets[{i}]: {name} does not resolve now ({why}); \
                 the target has no endpoints until it does",
                u.name
            ));
        }
    }
    out
}

fn check(path: &Path) -> ExitCode {
    let loaded = match config::load(path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("{}: {} error(s)", path.display(), e.messages.len());
            return ExitCode::from(1);
        }
    };
    for w in &loaded.warnings {
        outln!("{w}");
    }
    // Names are looked up as a start would (bounded); one that does not
    // resolve now is worth a warning, not a failed check: it may well
    // resolve where figway runs.
    let keys: Vec<_> = crate::upstream::dns::keys(&loaded.config)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let answers = crate::upstream::dns::resolve_blocking(
        loaded.config.runtime.resolver,
        &keys,
        crate::upstream::dns::WARM_UP,
    );
    let mut sets = crate::upstream::dns::Sets::new();
    for (key, answer) in keys.iter().zip(&answers) {
        sets.insert(key.clone(), answer.next_set(None));
    }
    for line in unresolved_warnings(&loaded.config, &keys, &answers) {
        outln!("{line}");
    }
    let registry = crate::upstream::Registry::default();
    let snapshot = crate::state::compile::compile_with(&loaded, &registry, None, &sets);
    outln!("{}: ok (version {})", path.display(), loaded.version);
    out!("{}", crate::table::render_routes(&snapshot));
    for r in snapshot.routes.iter() {
        if let Some(ramp) = &r.ramp {
            let to = &snapshot.upstreams[r.sides[ramp.spec.to].upstream].name;
            out!("{}", ramp.schedule_text(&r.name, to));
        }
    }
    ExitCode::SUCCESS
}

fn explain(
    path: &Path,
    method: &str,
    url: &str,
    raw_headers: &[String],
    client: Option<IpAddr>,
    as_json: bool,
) -> ExitCode {
    let usage = |msg: String| {
        eprintln!("error: {msg}");
        ExitCode::from(2)
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return usage(format!("invalid method {method:?}"));
    };
    let Ok(uri) = url.parse::<Uri>() else {
        return usage(format!("invalid URL {url:?}"));
    };
    let mut headers = HeaderMap::new();
    for h in raw_headers {
        let Some((name, value)) = h.split_once(':') else {
            return usage(format!("invalid header {h:?}: expected 'Name: value'"));
        };
        match (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value.trim()),
        ) {
            (Ok(n), Ok(v)) => {
                headers.append(n, v);
            }
            _ => return usage(format!("invalid header {h:?}")),
        }
    }
    let loaded = match config::load(path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let snapshot = Arc::new(crate::state::compile::compile(
        &loaded,
        &crate::upstream::Registry::default(),
    ));
    let mut passed_over = Vec::new();
    let decision = decide_noting(&snapshot, &method, &uri, &headers, &mut |i| {
        passed_over.push(i)
    });
    let request = RequestFacts::new(&headers, uri.query());
    let passed_over: Vec<_> = passed_over
        .iter()
        .map(|i| &snapshot.routes[*i])
        .map(|r| {
            let failed: Vec<_> = r
                .conditions
                .iter()
                .flat_map(|c| c.judge(&request))
                .filter(|j| !j.held)
                .map(|j| {
                    json!({
                        "source": j.source.as_str(),
                        "name": j.name,
                        "expect": j.expect.to_string(),
                        "got": j.got,
                    })
                })
                .collect();
            json!({"name": &*r.name, "failed": failed})
        })
        .collect();
    let out = match &decision {
        Ok(d) => {
            let route = d.route;
            let name = |i: usize| &*snapshot.upstreams[i].name;
            // The same key and bucket functions the proxy uses; without
            // `--client`, a client_ip key counts as absent.
            let sticky = route.sticky.as_ref().map(|source| {
                let mut buf = [0u8; 16];
                let value = match (source, client) {
                    (crate::config::KeySource::ClientIp, None) => None,
                    (_, c) => crate::keys::key_value(
                        source,
                        &headers,
                        c.unwrap_or(IpAddr::from([0, 0, 0, 0])),
                        &mut buf,
                    )
                    .map(|v| v.to_vec()),
                };
                let chosen = value
                    .as_ref()
                    .map(|v| name(route.sides[crate::decision::sticky_side(route, v)].upstream));
                // The side comes from the bytes the proxy hashes; a client
                // address is shown as the address those bytes encode (a
                // v4-mapped v6 one as v4, as it is hashed), not as them.
                let shown = match (source, client) {
                    (crate::config::KeySource::ClientIp, Some(c)) => {
                        value.as_ref().map(|_| c.to_canonical().to_string())
                    }
                    _ => value.map(|v| String::from_utf8_lossy(&v).into_owned()),
                };
                json!({
                    "key": source.to_string(),
                    "value": shown,
                    "chosen": chosen,
                })
            });
            let shadow = route
                .shadow
                .as_ref()
                .filter(|sh| sh.mirrors(&method))
                .map(|sh| json!({"to": name(sh.spec.upstream), "sample": sh.spec.sample}));
            json!({
                "route": {
                    "name": &*route.name,
                    "prefix": &*route.prefix,
                    "host": route.host.as_ref().map(|h| h.to_string()),
                    "methods": route.methods.as_ref().map(|m| m.iter().map(|m| m.as_str()).collect::<Vec<_>>()),
                    // Every condition held, or the route was not chosen.
                    "match": route.conditions.as_ref().map(|c| crate::matching::to_json(c.spec())),
                },
                "path_forwarded": d.path_forwarded_str(&uri),
                "upstreams": crate::admin::split_weights(&snapshot, route).into_iter().map(|(to, weight)| json!({"name": &*to, "weight": weight})).collect::<Vec<_>>(),
                "sticky": sticky,
                "fallback": route.fallback.map(name),
                "shadow": shadow,
                "passed_over": passed_over,
            })
        }
        Err(_) => json!({
            "route": null,
            "path_forwarded": null,
            "upstreams": [],
            "sticky": null,
            "fallback": null,
            "shadow": null,
            "passed_over": passed_over,
        }),
    };
    // The object keeps SPEC §1's shape; a request figway would refuse
    // outright is said on stderr.
    if let Err(kind @ crate::error::ErrorKind::BadRequest) = decision {
        eprintln!(
            "note: figway answers this request itself: 400 {}",
            kind.as_str()
        );
    }
    if as_json {
        outln!("{out}");
    } else {
        out!("{}", crate::table::render_explain(&out));
    }
    ExitCode::SUCCESS
}
