//! The `[[routes]]` tables: prefix, host, methods, where the traffic goes
//! (`to`, or a weighted `split` with an optional `sticky` key), `fallback`,
//! `[routes.shadow]`, and path rewriting. Cross-references to upstreams are
//! checked here, against the names the upstream tables defined.

use std::collections::HashMap;

use http::Method;
use rustc_hash::FxHashSet;

use super::doc::{as_string, as_table, Problems, Table};
use super::fields::{key_source, read_methods_key};
use super::model::*;
use super::shadow::read_shadow;
use crate::path;

/// What makes two routes the same route to the router.
type MatchKey<'a> = (&'a str, Option<&'a HostPattern>, Option<&'a [Method]>);

pub(super) fn read_routes(
    root: &mut Table<'_, '_>,
    names: &HashMap<String, usize>,
    problems: &mut Problems,
) -> Vec<RouteSpec> {
    let mut routes: Vec<RouteSpec> = Vec::new();
    let Some(items) = root.array("routes", problems) else {
        return routes;
    };
    // Duplicates are found after the loop, by reference: no key is cloned.
    let mut read: Vec<(usize, std::ops::Range<usize>, RouteSpec)> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Some(mut t) = as_table(item, format!("routes[{i}]"), problems) else {
            continue;
        };
        if let Some(route) = read_route(&mut t, names, problems) {
            read.push((i, t.span.clone(), route));
        }
        t.finish(problems);
    }
    let mut seen_names: FxHashSet<&str> = FxHashSet::default();
    let mut seen_keys: FxHashSet<MatchKey<'_>> = FxHashSet::default();
    for (i, at, route) in &read {
        if !seen_names.insert(&route.name) {
            problems.add(
                at.clone(),
                format!("routes[{i}].name"),
                format!("duplicate route name {:?}", route.name),
            );
        }
        if !seen_keys.insert((&route.prefix, route.host.as_ref(), route.methods.as_deref())) {
            problems.add(
                at.clone(),
                format!("routes[{i}]"),
                "another route has the same prefix, host and methods",
            );
        }
    }
    routes.extend(read.into_iter().map(|(_, _, r)| r));
    routes
}

fn read_route(
    t: &mut Table<'_, '_>,
    names: &HashMap<String, usize>,
    problems: &mut Problems,
) -> Option<RouteSpec> {
    let prefix = t
        .required("prefix", problems)
        .and_then(|_| t.string("prefix", problems));
    let prefix = prefix.and_then(|p| match normalize_prefix(&p.value) {
        Ok(n) => Some(n),
        Err(e) => {
            problems.add(p.span, t.key_path("prefix"), e);
            None
        }
    });
    let name = t.string("name", problems);
    let host = t
        .string("host", problems)
        .and_then(|h| match host_pattern(&h.value) {
            Ok(p) => Some(p),
            Err(e) => {
                problems.add(h.span, t.key_path("host"), e);
                None
            }
        });
    let methods = read_methods(t, problems);
    let sides = read_sides(t, names, problems);
    let split = t.has("split");
    let own = |i: usize| {
        sides
            .as_ref()
            .is_some_and(|s| s.iter().any(|side| side.upstream == i))
    };
    let fallback = t
        .string("fallback", problems)
        .and_then(|f| match names.get(&f.value) {
            // A split may fall back to one of its own sides (the canary's
            // users go to the monolith side when the canary is down); a
            // plain route falling back to itself would change nothing.
            Some(i) if !split && own(*i) => {
                problems.add(
                    f.span,
                    t.key_path("fallback"),
                    "is the route's own upstream",
                );
                None
            }
            Some(i) => Some(*i),
            None => {
                problems.add(
                    f.span,
                    t.key_path("fallback"),
                    format!("unknown upstream {:?}", f.value),
                );
                None
            }
        });
    let sticky = t.parsed("sticky", problems, key_source);
    if sticky.is_some() && !split {
        problems.add(t.span.clone(), t.key_path("sticky"), "only used with split");
    }
    let shadow = t.table("shadow", problems).and_then(|mut s| {
        let spec = read_shadow(&mut s, names, &own, problems);
        s.finish(problems);
        spec
    });
    let strip_prefix = t.boolean("strip_prefix", problems).unwrap_or(false);
    let rewrite_prefix = t.string("rewrite_prefix", problems).and_then(|r| {
        if strip_prefix {
            problems.add(
                r.span,
                t.key_path("rewrite_prefix"),
                "cannot be combined with strip_prefix = true",
            );
            return None;
        }
        match path::normalize(&r.value) {
            Ok(n) if n == r.value.as_str() && !r.value.contains('?') => Some(r.value),
            _ => {
                problems.add(
                    r.span,
                    t.key_path("rewrite_prefix"),
                    "must be a normalised path starting with /",
                );
                None
            }
        }
    });
    let prefix = prefix?;
    Some(RouteSpec {
        name: name.map_or_else(|| prefix.clone(), |n| n.value),
        prefix,
        host,
        methods,
        sides: sides?,
        split,
        sticky,
        shadow,
        fallback,
        strip_prefix,
        rewrite_prefix,
    })
}

/// A prefix must be a normalised absolute path; its trailing slash is
/// dropped because matching is by whole segments anyway (`/api/` ≡ `/api`).
fn normalize_prefix(prefix: &str) -> Result<String, String> {
    if prefix.contains(['?', '#']) {
        return Err("a prefix is a path: no query or fragment".into());
    }
    match path::normalize(prefix) {
        Ok(n) if n == prefix => {
            let trimmed = prefix.trim_end_matches('/');
            Ok(if trimmed.is_empty() {
                "/".into()
            } else {
                trimmed.into()
            })
        }
        Ok(n) => Err(format!("prefix is not normalised: write {n:?}")),
        Err(e) => Err(format!("invalid prefix: {}", e.message())),
    }
}

fn host_pattern(host: &str) -> Result<HostPattern, String> {
    let lower = host.to_ascii_lowercase();
    let (wild, name) = match lower.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, lower.as_str()),
    };
    let valid = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    let ipv6 = !wild
        && name.starts_with('[')
        && name.ends_with(']')
        && name[1..name.len() - 1]
            .parse::<std::net::Ipv6Addr>()
            .is_ok();
    if !(valid || ipv6) {
        return Err(format!("invalid host {host:?}: expected a name like \"shop.example.com\" or \"*.example.com\" (no port)"));
    }
    Ok(if wild {
        HostPattern::Wildcard(name.to_string())
    } else {
        HostPattern::Exact(name.to_string())
    })
}

fn read_methods(t: &mut Table<'_, '_>, problems: &mut Problems) -> Option<Vec<Method>> {
    read_methods_key(t, "methods", problems)
}

/// `to = "NAME"` or `split = [{ to, weight }, ...]`: exactly one of them.
fn read_sides(
    t: &mut Table<'_, '_>,
    names: &HashMap<String, usize>,
    problems: &mut Problems,
) -> Option<Vec<Side>> {
    let to = t.get("to");
    let split = t.get("split");
    let lookup = |name: &super::doc::At<String>, key: String, problems: &mut Problems| match names
        .get(&name.value)
    {
        Some(i) => Some(*i),
        None => {
            problems.add(
                name.span.clone(),
                key,
                format!("unknown upstream {:?}", name.value),
            );
            None
        }
    };
    match (to, split) {
        (None, None) => {
            problems.add(
                t.span.clone(),
                t.key_path("to"),
                "missing required key: a route needs `to` or `split`",
            );
            None
        }
        (Some(_), Some(s)) => {
            problems.add(
                s.span(),
                t.key_path("split"),
                "a route has `to` or `split`, not both",
            );
            None
        }
        (Some(v), None) => {
            let key = t.key_path("to");
            let name = as_string(v, &key, problems)?;
            let upstream = lookup(&name, key, problems)?;
            Some(vec![Side {
                upstream,
                weight: 1,
            }])
        }
        (None, Some(_)) => {
            let path = t.key_path("split");
            let items = t.array("split", problems)?;
            if items.is_empty() {
                problems.add(t.span.clone(), path, "list at least one side");
                return None;
            }
            let mut sides = Vec::new();
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                let Some(mut side) = as_table(item, item_path.clone(), problems) else {
                    ok = false;
                    continue;
                };
                let to = side
                    .required("to", problems)
                    .and_then(|_| side.string("to", problems));
                let weight = side
                    .required("weight", problems)
                    .and_then(|_| side.integer("weight", problems));
                side.finish(problems);
                let upstream = to.and_then(|to| lookup(&to, format!("{item_path}.to"), problems));
                let weight = match weight {
                    Some(w) if (0..=1_000_000).contains(&w.value) => Some(w.value as u32),
                    Some(w) => {
                        problems.add(
                            w.span,
                            format!("{item_path}.weight"),
                            "must be an integer between 0 and 1000000",
                        );
                        None
                    }
                    None => None,
                };
                match (upstream, weight) {
                    (Some(upstream), Some(weight)) => {
                        if sides.iter().any(|s: &Side| s.upstream == upstream) {
                            problems.add(
                                item.span(),
                                format!("{item_path}.to"),
                                "upstream listed twice in one split",
                            );
                            ok = false;
                        }
                        sides.push(Side { upstream, weight });
                    }
                    _ => ok = false,
                }
            }
            if ok && sides.iter().all(|s| s.weight == 0) {
                problems.add(t.span.clone(), path, "all split weights are zero");
                return None;
            }
            ok.then_some(sides)
        }
    }
}
