//! Reads the spanned TOML document into a validated [`Config`], collecting
//! every problem (unknown keys, wrong types, bad values, dangling references,
//! duplicates) with the span it belongs to. This file holds the top level
//! and the process sections (`listen`, `admin`, `runtime`, `log`,
//! `defaults`); `upstreams.rs` and `routes.rs` read the rest. Defaults live
//! next to the key they belong to.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::doc::{as_string, as_table, Problems, Table, Value};
use super::fields::{nonzero_duration, read_dns_family, read_timeouts, UpstreamDefaults};
use super::model::*;
use super::tls::Certificate;
use super::units::parse_duration;
use crate::net::Cidr;

/// Reads the whole document. Returns the config only when no problem was found.
pub fn read(root: &mut Table<'_, '_>, base: &Path, problems: &mut Problems) -> Option<Config> {
    let before = problems.list.len();
    let (listen, tls) = read_listen(root, base, problems);
    let admin = read_admin(root, problems);
    let runtime = read_runtime(root, problems);
    let log = read_log(root, problems);
    let mut defaults = UpstreamDefaults::default();
    if let Some(mut t) = root.table("defaults", problems) {
        defaults.timeouts = read_timeouts(&mut t, defaults.timeouts, problems);
        defaults.retries = super::fields::read_retries(&mut t, defaults.retries, problems);
        if let Some(d) = t.parsed("resolve_interval", problems, nonzero_duration) {
            defaults.resolve_interval = d;
        }
        if let Some(f) = read_dns_family(&mut t, problems) {
            defaults.dns_family = f;
        }
        t.finish(problems);
    }
    let (upstreams, names) = super::upstreams::read_upstreams(root, &defaults, problems);
    let routes = super::routes::read_routes(root, &names, problems);
    let inventory = super::inventory::read_inventory(root, problems);
    if let (Some(l), a) = (&listen, &admin) {
        // Port 0 asks the kernel for a free port: two of those never clash.
        let overlap = l.address.port() != 0
            && l.address.port() == a.address.port()
            && (l.address.ip() == a.address.ip()
                || l.address.ip().is_unspecified()
                || a.address.ip().is_unspecified());
        if overlap {
            // Both sockets set SO_REUSEPORT, so the kernel would let them
            // share the port and hand client connections to the admin API.
            // Said at admin.address, or, when the admin address is the
            // default, at the listen.address that collides with it.
            match root.span_of(&["admin", "address"]) {
                Some(span) => problems.add(
                    span,
                    "admin.address",
                    format!(
                        "overlaps listen.address {}: the admin API needs a port of its own",
                        l.address
                    ),
                ),
                None => problems.add(
                    root.span_of(&["listen", "address"])
                        .unwrap_or_else(|| root.span.clone()),
                    "listen.address",
                    format!(
                        "overlaps the default admin.address {}: pick another port, or set \
                         [admin] address",
                        a.address
                    ),
                ),
            }
        }
    }
    if problems.list.len() > before {
        return None;
    }
    Some(Config {
        listen: listen?,
        tls,
        admin,
        runtime,
        log,
        upstreams,
        routes,
        inventory,
    })
}

fn read_listen(
    root: &mut Table<'_, '_>,
    base: &Path,
    problems: &mut Problems,
) -> (Option<Listen>, Vec<Certificate>) {
    let Some(value) = root.required("listen", problems) else {
        return (None, Vec::new());
    };
    let Some(mut t) = as_table(value, "listen".into(), problems) else {
        return (None, Vec::new());
    };
    let tls = super::tls::read_tls(&mut t, base, problems);
    let address = match t.required("address", problems) {
        Some(v) => socket_addr(v, &t.key_path("address"), problems),
        None => None,
    };
    let header_read_timeout = t
        .parsed("header_read_timeout", problems, nonzero_duration)
        .unwrap_or(Duration::from_secs(10));
    let max_header_bytes = match t.integer("max_header_bytes", problems) {
        Some(n) if (8192..=1 << 24).contains(&n.value) => n.value as usize,
        Some(n) => {
            problems.add(
                n.span,
                t.key_path("max_header_bytes"),
                "must be between 8192 and 16777216",
            );
            65536
        }
        None => 65536,
    };
    let max_connections = match t.integer("max_connections", problems) {
        Some(n) if (1..=1_000_000).contains(&n.value) => n.value as usize,
        Some(n) => {
            problems.add(
                n.span,
                t.key_path("max_connections"),
                "must be between 1 and 1000000",
            );
            10_000
        }
        None => 10_000,
    };
    let drain_timeout = t
        .parsed("drain_timeout", problems, parse_duration)
        .unwrap_or(Duration::from_secs(30));
    let drain_delay = t
        .parsed("drain_delay", problems, parse_duration)
        .unwrap_or(Duration::ZERO);
    let trusted_proxies = match t.strings("trusted_proxies", problems) {
        Some(list) => list
            .into_iter()
            .enumerate()
            .filter_map(|(i, s)| match s.value.parse::<Cidr>() {
                Ok(c) => Some(c),
                Err(e) => {
                    problems.add(s.span, format!("listen.trusted_proxies[{i}]"), e);
                    None
                }
            })
            .collect(),
        None => Vec::new(),
    };
    t.finish(problems);
    let listen = address.map(|address| Listen {
        address,
        header_read_timeout,
        max_header_bytes,
        max_connections,
        drain_timeout,
        drain_delay,
        trusted_proxies,
    });
    (listen, tls)
}

fn read_admin(root: &mut Table<'_, '_>, problems: &mut Problems) -> Admin {
    let default = SocketAddr::from(([127, 0, 0, 1], 9901));
    let Some(mut t) = root.table("admin", problems) else {
        return Admin { address: default };
    };
    let address = t
        .get("address")
        .and_then(|v| socket_addr(v, "admin.address", problems))
        .unwrap_or(default);
    t.finish(problems);
    Admin { address }
}

fn read_runtime(root: &mut Table<'_, '_>, problems: &mut Problems) -> Runtime {
    let Some(mut t) = root.table("runtime", problems) else {
        return Runtime {
            workers: 0,
            resolver: None,
        };
    };
    let workers = match t.integer("workers", problems) {
        Some(n) if (0..=1024).contains(&n.value) => n.value as usize,
        Some(n) => {
            problems.add(n.span, "runtime.workers", "must be between 0 and 1024");
            0
        }
        None => 0,
    };
    // An address, not a name: the resolver cannot be found by resolving.
    let resolver = t
        .get("resolver")
        .and_then(|v| socket_addr(v, "runtime.resolver", problems));
    t.finish(problems);
    Runtime { workers, resolver }
}

fn read_log(root: &mut Table<'_, '_>, problems: &mut Problems) -> Log {
    let mut log = Log {
        format: LogFormat::Json,
        access_log: true,
    };
    let Some(mut t) = root.table("log", problems) else {
        return log;
    };
    if let Some(f) = t.string("format", problems) {
        match f.value.as_str() {
            "json" => log.format = LogFormat::Json,
            "pretty" => log.format = LogFormat::Pretty,
            other => problems.add(
                f.span,
                "log.format",
                format!(
                    "expected \"json\" or \"pretty\", found {other:?}{}",
                    crate::suggest::did_you_mean(other, ["json", "pretty"])
                ),
            ),
        }
    }
    if let Some(b) = t.boolean("access_log", problems) {
        log.access_log = b;
    }
    t.finish(problems);
    log
}

fn socket_addr(value: &Value<'_>, path: &str, problems: &mut Problems) -> Option<SocketAddr> {
    let s = as_string(value, path, problems)?;
    match s.value.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            problems.add(
                s.span,
                path,
                format!(
                    "invalid address {:?}: expected IP:PORT such as \"0.0.0.0:8080\"",
                    s.value
                ),
            );
            None
        }
    }
}
