//! The `[upstreams.NAME]` tables: targets and weights, balancing, timeouts
//! and retries (inheriting `[defaults]`), the breaker, and the `health` and
//! `outlier` sub-tables. Routes refer to upstreams by the names collected
//! here.

use std::collections::HashMap;
use std::time::Duration;

use http::uri::Authority;

use super::doc::{as_string, as_table, Problems, Table};
use super::fields::{
    key_source, nonzero_duration, positive, read_dns_family, read_retries, read_timeouts,
    UpstreamDefaults,
};
use super::model::*;

/// The largest smooth round-robin schedule we precompute for one upstream.
pub const MAX_SCHEDULE: u64 = 65_536;

pub(super) fn read_upstreams(
    root: &mut Table<'_, '_>,
    defaults: &UpstreamDefaults,
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
        let protocol = match t.string("protocol", problems) {
            None => Protocol::Http1,
            Some(p) => match p.value.as_str() {
                "http1" => Protocol::Http1,
                "h2c" => Protocol::H2c,
                other => {
                    let hint = crate::suggest::did_you_mean(other, ["http1", "h2c"]);
                    problems.add(
                        p.span,
                        format!("{path}.protocol"),
                        format!("unknown protocol {other:?}{hint}: expected \"http1\" or \"h2c\""),
                    );
                    Protocol::Http1
                }
            },
        };
        let balance_at = t.string("balance", problems);
        let balance = match &balance_at {
            None => Balance::RoundRobin,
            Some(b) => match b.value.as_str() {
                "round_robin" => Balance::RoundRobin,
                "least_request" => Balance::LeastRequest,
                "hash" => Balance::Hash,
                other => {
                    let hint = crate::suggest::did_you_mean(
                        other,
                        ["round_robin", "least_request", "hash"],
                    );
                    problems.add(
                        b.span.clone(),
                        format!("{path}.balance"),
                        format!("unknown balance {other:?}{hint}: expected \"round_robin\", \"least_request\" or \"hash\""),
                    );
                    Balance::RoundRobin
                }
            },
        };
        let hash_key = t.parsed_at("hash_key", problems, key_source);
        match (balance, &hash_key, &balance_at) {
            // Missing: said at the `balance = "hash"` that asks for it.
            (Balance::Hash, None, Some(b)) if !t.has("hash_key") => problems.add(
                b.span.clone(),
                format!("{path}.hash_key"),
                "required when balance = \"hash\": add hash_key = \"header:NAME\", \
                 \"cookie:NAME\" or \"client_ip\"",
            ),
            (Balance::RoundRobin | Balance::LeastRequest, Some(k), _) => problems.add(
                k.span.clone(),
                format!("{path}.hash_key"),
                "only used with balance = \"hash\"",
            ),
            _ => {}
        }
        let hash_key = hash_key.map(|k| k.value);
        let timeouts = read_timeouts(&mut t, defaults.timeouts, problems);
        let retries = read_retries(&mut t, defaults.retries, problems);
        let resolve_interval = t
            .parsed("resolve_interval", problems, nonzero_duration)
            .unwrap_or(defaults.resolve_interval);
        let dns_family = read_dns_family(&mut t, problems).unwrap_or(defaults.dns_family);
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
            protocol,
            balance,
            hash_key,
            targets,
            timeouts,
            retries,
            max_in_flight,
            health,
            outlier,
            resolve_interval,
            dns_family,
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
    let unhealthy_after = count(t, "unhealthy_after", problems).unwrap_or(3);
    let healthy_after = count(t, "healthy_after", problems).unwrap_or(2);
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
        consecutive_failures: count(t, "consecutive_failures", problems).unwrap_or(5),
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

fn read_targets(t: &mut Table<'_, '_>, problems: &mut Problems) -> Vec<TargetSpec> {
    let path = t.key_path("targets");
    let Some(value) = t.required("targets", problems) else {
        return Vec::new();
    };
    let Some(items) = t.array("targets", problems) else {
        return Vec::new();
    };
    if items.is_empty() {
        problems.add(
            value.span(),
            path.clone(),
            "at least one target is required, such as \"http://127.0.0.1:8000\"",
        );
    }
    let mut targets: Vec<TargetSpec> = Vec::new();
    // Where each target's URL is written, for a duplicate.
    let mut url_spans: Vec<std::ops::Range<usize>> = Vec::new();
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
                let weight = positive(&mut tt, "weight", problems);
                let weight_span = tt.span_of(&["weight"]);
                tt.finish(problems);
                if let (Some(w), Some(span)) = (weight, weight_span) {
                    if u32::try_from(w).is_err() {
                        problems.add(span, format!("{item_path}.weight"), "weight too large");
                        continue;
                    }
                }
                (url, weight.unwrap_or(1))
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
        // Checked above, where the weight's span is known.
        let weight = u32::try_from(weight).unwrap_or(u32::MAX);
        match parse_target(&url.value) {
            Ok(Parsed {
                authority,
                name,
                port,
            }) => match targets.iter().position(|t| t.authority == authority) {
                Some(first) => problems.add_related(
                    url.span,
                    item_path,
                    format!("duplicate target {authority}: list each target once, with a weight"),
                    "first",
                    url_spans[first].clone(),
                ),
                None => {
                    url_spans.push(url.span);
                    targets.push(TargetSpec {
                        url: url.value,
                        authority,
                        name,
                        port,
                        weight,
                    });
                }
            },
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
            value.span(),
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
    parse_target(url).map(|p| p.authority)
}

/// A target URL taken apart.
struct Parsed {
    /// `host:port`, a name in lower case.
    authority: String,
    /// The host when it is a DNS name.
    name: Option<String>,
    port: u16,
}

fn parse_target(url: &str) -> Result<Parsed, String> {
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
    let host = authority.host();
    if host.is_empty() {
        return Err(format!("invalid target {url:?}: missing host"));
    }
    let Some(port) = authority.port_u16().filter(|p| *p != 0) else {
        return Err(format!(
            "invalid target {url:?}: expected http://host:port with a port"
        ));
    };
    let is_ip = host.parse::<std::net::Ipv4Addr>().is_ok()
        || host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok());
    if is_ip {
        return Ok(Parsed {
            authority: format!("{host}:{port}"),
            name: None,
            port,
        });
    }
    let name = host.to_ascii_lowercase();
    check_host_name(&name).map_err(|why| format!("invalid target {url:?}: {why}"))?;
    Ok(Parsed {
        authority: format!("{name}:{port}"),
        name: Some(name),
        port,
    })
}

/// A DNS name as hosts are named (RFC 1123): labels of letters, digits and
/// hyphens, 1 to 63 characters, not starting or ending with a hyphen, at
/// most 253 characters in all; a final dot (fully qualified, no search
/// list) is allowed. A last label of digits only is a mistyped IPv4
/// address, not a name.
fn check_host_name(name: &str) -> Result<(), String> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.is_empty() || bare.len() > 253 {
        return Err("a host name has 1 to 253 characters".into());
    }
    let mut last = "";
    for label in bare.split('.') {
        let ldh = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if label.is_empty() || label.len() > 63 || !ldh {
            return Err(format!(
                "bad host name label {label:?}: labels are 1 to 63 letters, digits or hyphens"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "bad host name label {label:?}: a label cannot start or end with a hyphen"
            ));
        }
        last = label;
    }
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not an IP address, nor a host name (the last label is all digits)".into());
    }
    Ok(())
}

/// A positive count that fits the `u32` counters it feeds.
fn count(t: &mut Table<'_, '_>, key: &'static str, problems: &mut Problems) -> Option<u32> {
    let n = t.integer(key, problems)?;
    match u32::try_from(n.value) {
        Ok(v) if v > 0 && v <= 1_000_000 => Some(v),
        _ => {
            problems.add(
                n.span,
                t.key_path(key),
                "must be an integer between 1 and 1000000",
            );
            None
        }
    }
}
