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
//!
//! Here: the arguments, and which command they name. Each command has a
//! file of its own: `serve` (`run`: load, bind, start the workers, serve
//! until a signal, drain), `workers` (the worker threads beside the
//! first), `check` and `explain`.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

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

// After the macros above: a `macro_rules!` is seen by the modules declared
// below it.
mod check;
mod explain;
mod serve;
mod workers;

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

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => serve::run(Path::new("figway.toml"), false),
        Some(Command::Run { config, upgrade }) => serve::run(&config, upgrade),
        Some(Command::Check { path }) => check::check(&path),
        Some(Command::Explain {
            path,
            method,
            url,
            headers,
            client,
            json,
        }) => explain::explain(&path, &method, &url, &headers, client, json),
        Some(Command::Demo { port }) => {
            crate::demo::main(port, serve::init_tracing, serve::shutdown_signal())
        }
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
        ([path], None) => serve::run(Path::new(path), false),
        ([path], Some(_)) if Path::new(path).exists() => serve::run(Path::new(path), false),
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
