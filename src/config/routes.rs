//! The `[[routes]]` tables: prefix, host, methods, `[routes.match]` (read
//! in `matching`), where the traffic goes (`to`, or a weighted `split` with
//! an optional `sticky` key), `fallback`, `[routes.shadow]`, and path
//! rewriting. Cross-references to upstreams are
//! checked here, against the names the upstream tables defined.

use std::collections::HashMap;

use http::Method;
use rustc_hash::FxHashMap;

use std::ops::Range;

use super::doc::{as_string, as_table, At, Problems, Table};
use super::fields::{key_source, read_methods_key, upstream_index};
use super::matching::read_match;
use super::model::*;
use super::policies::{read_header_edits, read_rate_limit};
use super::ramp::read_ramp;
use super::shadow::read_shadow;
use crate::path;

/// What makes two routes the same route to the router.
type MatchKey<'a> = (
    &'a str,
    Option<&'a HostPattern>,
    Option<&'a [Method]>,
    Option<&'a MatchSpec>,
);

/// Where a route's identity is written, for the checks across routes: a
/// duplicate is reported at the second route's key, naming the first's line.
struct RouteAt {
    /// The `name` value; `None` when the route is named by its prefix.
    name: Option<Range<usize>>,
    prefix: Range<usize>,
    /// Whether `host`, `methods` and `match` were read as written: a broken one
    /// reads as "any", and comparing it would add a second, misleading
    /// error to the real one.
    matchable: bool,
}

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
    // A route whose sides are broken still takes part (its name and prefix
    // are known), so that every error is reported at once; it is never
    // returned, and its problem rejects the file.
    let mut read: Vec<(usize, RouteAt, RouteSpec, bool)> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Some(mut t) = as_table(item, format!("routes[{i}]"), problems) else {
            continue;
        };
        if let Some((at, route, complete)) = read_route(&mut t, names, problems) {
            read.push((i, at, route, complete));
        }
        t.finish(problems);
    }
    // Each name and match key maps to the route that used it first.
    let mut seen_names: FxHashMap<&str, (usize, &RouteAt)> = FxHashMap::default();
    let mut seen_keys: FxHashMap<MatchKey<'_>, (usize, &RouteAt)> = FxHashMap::default();
    for (i, at, route, _) in &read {
        if let Some(&(j, first)) = seen_names.get(route.name.as_str()) {
            let first_at = first.name.clone().unwrap_or_else(|| first.prefix.clone());
            match &at.name {
                Some(span) => problems.add_related(
                    span.clone(),
                    format!("routes[{i}].name"),
                    format!("duplicate route name {:?}", route.name),
                    "first",
                    first_at,
                ),
                // No `name` key to point at: the prefix gave the name.
                None => problems.add_related(
                    at.prefix.clone(),
                    format!("routes[{i}].name"),
                    format!(
                        "duplicate route name {:?}: a route without `name` is named by its \
                         prefix, as routes[{j}] is; give one of them a name",
                        route.name
                    ),
                    "first",
                    first_at,
                ),
            }
        } else {
            seen_names.insert(&route.name, (*i, at));
        }
        let key = (
            route.prefix.as_str(),
            route.host.as_ref(),
            route.methods.as_deref(),
            route.conditions.as_ref(),
        );
        if !at.matchable {
            continue;
        }
        if let Some(&(j, first)) = seen_keys.get(&key) {
            problems.add_related(
                at.prefix.clone(),
                format!("routes[{i}].prefix"),
                format!(
                    "same prefix, host, methods and match conditions as routes[{j}]: this \
                     route would never match"
                ),
                "first",
                first.prefix.clone(),
            );
        } else {
            seen_keys.insert(key, (*i, at));
        }
    }
    routes.extend(
        read.into_iter()
            .filter_map(|(_, _, r, complete)| complete.then_some(r)),
    );
    routes
}

fn read_route(
    t: &mut Table<'_, '_>,
    names: &HashMap<String, usize>,
    problems: &mut Problems,
) -> Option<(RouteAt, RouteSpec, bool)> {
    let prefix = t
        .required("prefix", problems)
        .and_then(|_| t.string("prefix", problems));
    let prefix = prefix.and_then(|p| match normalize_prefix(&p.value) {
        Ok(n) => Some(At {
            value: n,
            span: p.span,
        }),
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
    // A fallback may name one of the route's own upstreams: a split's
    // canary users go to the monolith side when the canary is down, and a
    // `to` route falling back to itself changes nothing but is allowed
    // (with a warning, in `config::warnings`), so that moving a route back
    // to the monolith is always one valid edit (SPEC §2).
    let fallback = t
        .string("fallback", problems)
        .and_then(|f| upstream_index(names, &f, || t.key_path("fallback"), problems));
    let sticky = t.parsed_at("sticky", problems, key_source);
    if let (Some(s), false) = (&sticky, split) {
        problems.add(
            s.span.clone(),
            t.key_path("sticky"),
            "only used with split: a route with `to` sends every request to one upstream",
        );
    }
    let sticky = sticky.map(|s| s.value);
    let shadow = t.table("shadow", problems).and_then(|mut s| {
        let spec = read_shadow(&mut s, names, &own, problems);
        s.finish(problems);
        spec
    });
    let ramp = t.table("ramp", problems).and_then(|mut r| {
        let upstream_name = |i: usize| {
            names
                .iter()
                .find(|(_, at)| **at == i)
                .map(|(n, _)| n.clone())
        };
        let spec = read_ramp(&mut r, sides.as_deref(), split, &upstream_name, problems);
        r.finish(problems);
        spec
    });
    let conditions = t.table("match", problems).and_then(|mut m| {
        let spec = read_match(&mut m, problems);
        m.finish(problems);
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
    let headers = read_header_edits(t, problems);
    let rate_limit = read_rate_limit(t, problems);
    let prefix = prefix?;
    let complete = sides.is_some();
    let at = RouteAt {
        name: name.as_ref().map(|n| n.span.clone()),
        prefix: prefix.span,
        matchable: (host.is_some() || !t.has("host"))
            && (methods.is_some() || !t.has("methods"))
            && (conditions.is_some() || !t.has("match")),
    };
    let prefix = prefix.value;
    let route = RouteSpec {
        name: name.map_or_else(|| prefix.clone(), |n| n.value),
        prefix,
        host,
        methods,
        sides: sides.unwrap_or_default(),
        split,
        sticky,
        shadow,
        ramp,
        fallback,
        strip_prefix,
        rewrite_prefix,
        conditions,
        headers,
        rate_limit,
    };
    Some((at, route, complete))
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
            let upstream = upstream_index(names, &name, || key, problems)?;
            Some(vec![Side {
                upstream,
                weight: 1,
            }])
        }
        (None, Some(value)) => {
            let path = t.key_path("split");
            let items = t.array("split", problems)?;
            if items.is_empty() {
                problems.add(
                    value.span(),
                    path,
                    "list at least one side, such as { to = \"NAME\", weight = 1 }",
                );
                return None;
            }
            let mut sides = Vec::new();
            // Where each side's `to` is written, for a repeated upstream.
            let mut side_spans: Vec<Range<usize>> = Vec::new();
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
                let upstream = to.as_ref().and_then(|to| {
                    upstream_index(names, to, || format!("{item_path}.to"), problems)
                });
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
                match (upstream, weight, to) {
                    (Some(upstream), Some(weight), Some(to)) => {
                        if let Some(first) =
                            sides.iter().position(|s: &Side| s.upstream == upstream)
                        {
                            problems.add_related(
                                to.span.clone(),
                                format!("{item_path}.to"),
                                format!(
                                    "upstream {:?} listed twice in one split: give it one side \
                                     with the sum of the weights",
                                    to.value
                                ),
                                "first",
                                side_spans[first].clone(),
                            );
                            ok = false;
                        }
                        sides.push(Side { upstream, weight });
                        side_spans.push(to.span);
                    }
                    _ => ok = false,
                }
            }
            if ok && sides.iter().all(|s| s.weight == 0) {
                problems.add(
                    value.span(),
                    path,
                    "all split weights are zero: give at least one side a positive weight",
                );
                return None;
            }
            ok.then_some(sides)
        }
    }
}
