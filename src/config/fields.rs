//! Readers of the fields that several config sections share: timeouts,
//! retries, positive counts and request keys. The section readers
//! (`parse`, `upstreams`, `routes`) build on these, never on each other's
//! helpers, so the config modules stay layered.

use std::collections::HashMap;
use std::time::Duration;

use http::Method;

use super::doc::{At, Problems, Table};
use super::model::*;
use super::units::parse_duration;

/// What `[defaults]` hands every upstream that does not set its own.
pub(super) struct UpstreamDefaults {
    pub timeouts: Timeouts,
    pub retries: u32,
    pub resolve_interval: Duration,
    pub dns_family: DnsFamily,
}

impl Default for UpstreamDefaults {
    fn default() -> Self {
        UpstreamDefaults {
            timeouts: Timeouts::default(),
            retries: 1,
            resolve_interval: Duration::from_secs(5),
            dns_family: DnsFamily::V4Preferred,
        }
    }
}

/// `dns_family`, one of [`DnsFamily::NAMES`].
pub(super) fn read_dns_family(t: &mut Table<'_, '_>, problems: &mut Problems) -> Option<DnsFamily> {
    let f = t.string("dns_family", problems)?;
    match DnsFamily::parse(&f.value) {
        Some(family) => Some(family),
        None => {
            let hint = crate::suggest::did_you_mean(&f.value, DnsFamily::NAMES);
            problems.add(
                f.span,
                t.key_path("dns_family"),
                format!(
                    "unknown dns_family {:?}{hint}: expected \"v4_preferred\", \"v6_preferred\", \"all\", \"v4\" or \"v6\"",
                    f.value
                ),
            );
            None
        }
    }
}

pub(super) fn read_timeouts(
    t: &mut Table<'_, '_>,
    inherit: Timeouts,
    problems: &mut Problems,
) -> Timeouts {
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

pub(super) fn nonzero_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err("must be greater than zero".into()),
        d => Ok(d),
    }
}

pub(super) fn positive(
    t: &mut Table<'_, '_>,
    key: &'static str,
    problems: &mut Problems,
) -> Option<usize> {
    let n = t.integer(key, problems)?;
    if n.value <= 0 {
        problems.add(n.span, t.key_path(key), "must be a positive integer");
        return None;
    }
    Some(n.value as usize)
}

pub(super) fn read_retries(t: &mut Table<'_, '_>, inherit: u32, problems: &mut Problems) -> u32 {
    match t.integer("retries", problems) {
        Some(n) if (0..=10).contains(&n.value) => n.value as u32,
        Some(n) => {
            problems.add(n.span, t.key_path("retries"), "must be between 0 and 10");
            inherit
        }
        None => inherit,
    }
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

/// A list of HTTP methods under `key`: upper-case tokens, sorted, no
/// duplicates; an empty list is an error (leave the key out instead).
pub(super) fn read_methods_key(
    t: &mut Table<'_, '_>,
    key: &'static str,
    problems: &mut Problems,
) -> Option<Vec<Method>> {
    let list = t.strings(key, problems)?;
    if list.is_empty() {
        // At the empty list itself, not the table that holds it.
        let span = t.span_of(&[key]).unwrap_or_else(|| t.span.clone());
        problems.add(
            span,
            t.key_path(key),
            "list at least one method, or leave the key out to match all",
        );
        return None;
    }
    let mut methods = Vec::with_capacity(list.len());
    for m in list {
        let valid = !m.value.is_empty()
            && m.value
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_');
        match Method::from_bytes(m.value.as_bytes()) {
            Ok(method) if valid => methods.push(method),
            _ => problems.add(
                m.span,
                t.key_path(key),
                format!(
                    "invalid method {:?}: methods are upper-case tokens such as \"GET\"",
                    m.value
                ),
            ),
        }
    }
    methods.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    methods.dedup();
    Some(methods)
}

/// The index of the upstream `name` refers to (a route's `to`, a split
/// side, a `fallback`, a shadow's `to`), or an error at the name that
/// suggests the closest upstream when one is close. `names` maps each
/// upstream to its index in file order, which breaks ties between equally
/// close names the same way on every run.
pub(super) fn upstream_index(
    names: &HashMap<String, usize>,
    name: &At<String>,
    key: impl FnOnce() -> String,
    problems: &mut Problems,
) -> Option<usize> {
    if let Some(i) = names.get(&name.value) {
        return Some(*i);
    }
    let mut in_order: Vec<(&str, usize)> = names.iter().map(|(n, i)| (n.as_str(), *i)).collect();
    in_order.sort_unstable_by_key(|(_, i)| *i);
    let hint = crate::suggest::did_you_mean(&name.value, in_order.iter().map(|(n, _)| *n));
    problems.add(
        name.span.clone(),
        key(),
        format!("unknown upstream {:?}{hint}", name.value),
    );
    None
}
