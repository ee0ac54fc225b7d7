//! Reads the spanned TOML document into a validated [`Config`], collecting
//! every problem (unknown keys, wrong types, bad values, dangling references,
//! duplicates) with the span it belongs to. Defaults live here, next to the
//! key they belong to.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use http::uri::Authority;

use super::doc::{as_string, as_table, Problems, Table, Value};
use super::model::*;
use super::units::parse_duration;
use crate::net::Cidr;

/// The largest smooth round-robin schedule we precompute for one upstream.
pub const MAX_SCHEDULE: u64 = 65_536;

/// Reads the whole document. Returns the config only when no problem was found.
pub fn read(root: &mut Table<'_, '_>, problems: &mut Problems) -> Option<Config> {
    let before = problems.list.len();
    let listen = read_listen(root, problems);
    let admin = read_admin(root, problems);
    let runtime = read_runtime(root, problems);
    let log = read_log(root, problems);
    let defaults = match root.table("defaults", problems) {
        Some(mut t) => {
            let d = read_timeouts(&mut t, Timeouts::default(), problems);
            let retries = read_retries(&mut t, 1, problems);
            t.finish(problems);
            (d, retries)
        }
        None => (Timeouts::default(), 1),
    };
    let (upstreams, names) = read_upstreams(root, defaults, problems);
    let routes = super::routes::read_routes(root, &names, problems);
    if problems.list.len() > before {
        return None;
    }
    Some(Config {
        listen: listen?,
        admin,
        runtime,
        log,
        upstreams,
        routes,
    })
}

fn read_listen(root: &mut Table<'_, '_>, problems: &mut Problems) -> Option<Listen> {
    let value = root.required("listen", problems)?;
    let mut t = as_table(value, "listen".into(), problems)?;
    let address = match t.required("address", problems) {
        Some(v) => socket_addr(v, &t.key_path("address"), problems),
        None => None,
    };
    let header_read_timeout = t
        .parsed("header_read_timeout", problems, parse_duration)
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
    let max_connections = positive(&mut t, "max_connections", problems).unwrap_or(10_000);
    let drain_timeout = t
        .parsed("drain_timeout", problems, parse_duration)
        .unwrap_or(Duration::from_secs(30));
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
    Some(Listen {
        address: address?,
        header_read_timeout,
        max_header_bytes,
        max_connections,
        drain_timeout,
        trusted_proxies,
    })
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
        return Runtime { workers: 0 };
    };
    let workers = match t.integer("workers", problems) {
        Some(n) if (0..=1024).contains(&n.value) => n.value as usize,
        Some(n) => {
            problems.add(n.span, "runtime.workers", "must be between 0 and 1024");
            0
        }
        None => 0,
    };
    t.finish(problems);
    Runtime { workers }
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
                format!("expected \"json\" or \"pretty\", found {other:?}"),
            ),
        }
    }
    if let Some(b) = t.boolean("access_log", problems) {
        log.access_log = b;
    }
    t.finish(problems);
    log
}

fn read_timeouts(t: &mut Table<'_, '_>, inherit: Timeouts, problems: &mut Problems) -> Timeouts {
    Timeouts {
        connect: t
            .parsed("connect_timeout", problems, nonzero_duration)
            .unwrap_or(inherit.connect),
        request: t
            .parsed("request_timeout", problems, nonzero_duration)
            .unwrap_or(inherit.request),
        idle: t
            .parsed("idle_timeout", problems, parse_duration)
            .unwrap_or(inherit.idle),
    }
}

fn nonzero_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err("must be greater than zero".into()),
        d => Ok(d),
    }
}

fn read_retries(t: &mut Table<'_, '_>, inherit: u32, problems: &mut Problems) -> u32 {
    match t.integer("retries", problems) {
        Some(n) if (0..=10).contains(&n.value) => n.value as u32,
        Some(n) => {
            problems.add(n.span, t.key_path("retries"), "must be between 0 and 10");
            inherit
        }
        None => inherit,
    }
}

fn read_upstreams(
    root: &mut Table<'_, '_>,
    (defaults, default_retries): (Timeouts, u32),
    problems: &mut Problems,
) -> (Vec<UpstreamSpec>, HashMap<String, usize>) {
    let mut upstreams = Vec::new();
    let mut names = HashMap::new();
    let Some(value) = root.required("upstreams", problems) else {
        return (upstreams, names);
    };
    let Some(mut table) = as_table(value, "upstreams".into(), problems) else {
        return (upstreams, names);
    };
    let entries = table.entries();
    if entries.is_empty() {
        problems.add(
            table.span.clone(),
            "upstreams",
            "at least one upstream is required",
        );
    }
    for (name, value) in entries {
        let path = format!("upstreams.{}", name.value);
        // Even a broken upstream is registered, so routes naming it do not
        // pile a second, misleading error on top of the real one.
        names.insert(name.value.clone(), upstreams.len());
        let Some(mut t) = as_table(value, path.clone(), problems) else {
            continue;
        };
        let legacy = t.boolean("legacy", problems).unwrap_or(false);
        let balance = match t.string("balance", problems) {
            None => Balance::RoundRobin,
            Some(b) => match b.value.as_str() {
                "round_robin" => Balance::RoundRobin,
                "least_request" => Balance::LeastRequest,
                "hash" => Balance::Hash,
                other => {
                    problems.add(
                        b.span,
                        format!("{path}.balance"),
                        format!("unknown balance {other:?}: expected \"round_robin\", \"least_request\" or \"hash\""),
                    );
                    Balance::RoundRobin
                }
            },
        };
        let hash_key = t.parsed("hash_key", problems, key_source);
        match (balance, &hash_key) {
            (Balance::Hash, None) => problems.add(
                t.span.clone(),
                format!("{path}.hash_key"),
                "required when balance = \"hash\"",
            ),
            (Balance::RoundRobin | Balance::LeastRequest, Some(_)) => problems.add(
                t.span.clone(),
                format!("{path}.hash_key"),
                "only used with balance = \"hash\"",
            ),
            _ => {}
        }
        let timeouts = read_timeouts(&mut t, defaults, problems);
        let retries = read_retries(&mut t, default_retries, problems);
        let max_in_flight = positive(&mut t, "max_in_flight", problems);
        let health = t.table("health", problems).and_then(|mut h| {
            let spec = read_health(&mut h, problems);
            h.finish(problems);
            spec
        });
        let outlier = t.table("outlier", problems).map(|mut o| {
            let spec = read_outlier(&mut o, problems);
            o.finish(problems);
            spec
        });
        let targets = read_targets(&mut t, problems);
        t.finish(problems);
        upstreams.push(UpstreamSpec {
            name: name.value,
            legacy,
            balance,
            hash_key,
            targets,
            timeouts,
            retries,
            max_in_flight,
            health,
            outlier,
        });
    }
    (upstreams, names)
}

fn read_health(t: &mut Table<'_, '_>, problems: &mut Problems) -> Option<HealthSpec> {
    let path = t
        .required("path", problems)
        .and_then(|_| t.string("path", problems));
    let path = path.and_then(|p| {
        if p.value.starts_with('/') && p.value.parse::<http::uri::PathAndQuery>().is_ok() {
            Some(p.value)
        } else {
            problems.add(p.span, t.key_path("path"), "must be a path starting with /");
            None
        }
    });
    let interval = t
        .parsed("interval", problems, nonzero_duration)
        .unwrap_or(Duration::from_secs(5));
    let timeout = t
        .parsed("timeout", problems, nonzero_duration)
        .unwrap_or(Duration::from_secs(1));
    let unhealthy_after = positive(t, "unhealthy_after", problems).unwrap_or(3) as u32;
    let healthy_after = positive(t, "healthy_after", problems).unwrap_or(2) as u32;
    let expect = t
        .parsed("expect", problems, status_range)
        .unwrap_or((200, 399));
    Some(HealthSpec {
        path: path?,
        interval,
        timeout,
        unhealthy_after,
        healthy_after,
        expect,
    })
}

fn read_outlier(t: &mut Table<'_, '_>, problems: &mut Problems) -> OutlierSpec {
    let max_ejected_percent = match t.integer("max_ejected_percent", problems) {
        Some(n) if (0..=100).contains(&n.value) => n.value as u32,
        Some(n) => {
            problems.add(
                n.span,
                t.key_path("max_ejected_percent"),
                "must be between 0 and 100",
            );
            50
        }
        None => 50,
    };
    OutlierSpec {
        consecutive_failures: positive(t, "consecutive_failures", problems).unwrap_or(5) as u32,
        eject_for: t
            .parsed("eject_for", problems, nonzero_duration)
            .unwrap_or(Duration::from_secs(30)),
        max_ejected_percent,
    }
}

/// `"200-399"` or `"204"`.
fn status_range(text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("invalid status range {text:?}: expected \"200-399\" or a single status");
    let (lo, hi) = text.split_once('-').unwrap_or((text, text));
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// `header:NAME`, `cookie:NAME` or `client_ip`.
pub(super) fn key_source(text: &str) -> Result<KeySource, String> {
    let bad = || {
        format!("invalid key {text:?}: expected \"header:NAME\", \"cookie:NAME\" or \"client_ip\"")
    };
    if text == "client_ip" {
        return Ok(KeySource::ClientIp);
    }
    match text.split_once(':') {
        Some(("header", name)) => http::HeaderName::from_bytes(name.as_bytes())
            .map(KeySource::Header)
            .map_err(|_| bad()),
        Some(("cookie", name)) if !name.is_empty() && !name.contains([';', '=', ' ']) => {
            Ok(KeySource::Cookie(name.to_string()))
        }
        _ => Err(bad()),
    }
}

fn read_targets(t: &mut Table<'_, '_>, problems: &mut Problems) -> Vec<TargetSpec> {
    let path = t.key_path("targets");
    let Some(items) = t
        .required("targets", problems)
        .and_then(|_| t.array("targets", problems))
    else {
        return Vec::new();
    };
    if items.is_empty() {
        problems.add(
            t.span.clone(),
            path.clone(),
            "at least one target is required",
        );
    }
    let mut targets: Vec<TargetSpec> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        let (url, weight) = match item.get_ref() {
            toml::de::DeValue::String(_) => (as_string(item, &item_path, problems), 1),
            toml::de::DeValue::Table(_) => {
                let Some(mut tt) = as_table(item, item_path.clone(), problems) else {
                    continue;
                };
                let url = tt
                    .required("url", problems)
                    .and_then(|_| tt.string("url", problems));
                let weight = positive(&mut tt, "weight", problems).unwrap_or(1);
                tt.finish(problems);
                (url, weight)
            }
            _ => {
                problems.add(
                    item.span(),
                    item_path,
                    "expected a URL string or a table { url, weight }",
                );
                continue;
            }
        };
        let Some(url) = url else { continue };
        let Ok(weight) = u32::try_from(weight) else {
            problems.add(
                item.span(),
                format!("{item_path}.weight"),
                "weight too large",
            );
            continue;
        };
        match target_authority(&url.value) {
            Ok(authority) if targets.iter().any(|t| t.authority == authority) => {
                problems.add(url.span, item_path, format!("duplicate target {authority}"));
            }
            Ok(authority) => targets.push(TargetSpec {
                url: url.value,
                authority,
                weight,
            }),
            Err(e) => problems.add(url.span, item_path, e),
        }
    }
    let gcd = targets.iter().fold(0, |g, t| gcd(g, u64::from(t.weight)));
    let total: u64 = targets
        .iter()
        .map(|t| u64::from(t.weight) / gcd.max(1))
        .sum();
    if total > MAX_SCHEDULE {
        problems.add(
            t.span.clone(),
            path,
            format!("target weights too fine-grained: their sum divided by their greatest common divisor is {total}, at most {MAX_SCHEDULE} is supported"),
        );
    }
    targets
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// `http://host:port` → `host:port`.
pub fn target_authority(url: &str) -> Result<String, String> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!("invalid target {url:?}: expected http://host:port"));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#', '@']) {
        return Err(format!(
            "invalid target {url:?}: no path, query or user info allowed"
        ));
    }
    let authority: Authority = rest
        .parse()
        .map_err(|_| format!("invalid target {url:?}: bad host or port"))?;
    if authority.host().is_empty() {
        return Err(format!("invalid target {url:?}: missing host"));
    }
    let Some(port) = authority.port_u16().filter(|p| *p != 0) else {
        return Err(format!(
            "invalid target {url:?}: expected http://host:port with a port"
        ));
    };
    Ok(format!("{}:{port}", authority.host()))
}

pub(super) fn positive(t: &mut Table<'_, '_>, key: &str, problems: &mut Problems) -> Option<usize> {
    let n = t.integer(key, problems)?;
    if n.value <= 0 {
        problems.add(n.span, t.key_path(key), "must be a positive integer");
        return None;
    }
    Some(n.value as usize)
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
