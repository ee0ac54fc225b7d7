//! The reload's log line: what a new config changed, written so that the
//! log reads as the history of a migration: each changed route says what
//! moved (`search: search 10→50, monolith 90→50`, `search: to
//! search→monolith`), not only that it changed.

use std::collections::{HashMap, HashSet};

use crate::state::{Route, Snapshot};

/// One line for the log that lets an operator read a migration's history:
/// `routes +[search] -[old] ~[orders]; orders: orders 10→50, monolith 90→50;
/// upstreams +[search]; weights orders/127.0.0.1:9001 3→5`.
/// Long lists are cut after `LISTED` names (and the details of changed
/// routes with them). Linear in the table size.
pub fn describe_changes(old: &Snapshot, new: &Snapshot) -> String {
    let before: HashMap<&str, &Route> = old.routes.iter().map(|r| (&*r.name, r)).collect();
    let (mut added, mut changed, mut details) = (Vec::new(), Vec::new(), Vec::new());
    for r in new.routes.iter() {
        let Some(was) = before.get(&*r.name) else {
            added.push(&*r.name);
            continue;
        };
        let what = route_changes(old, was, new, r);
        if !what.is_empty() {
            changed.push(&*r.name);
            if details.len() < LISTED {
                details.push(format!("{}: {}", r.name, what.join(", ")));
            }
        }
    }
    let now: HashSet<&str> = new.routes.iter().map(|r| &*r.name).collect();
    let removed: Vec<&str> = old
        .routes
        .iter()
        .map(|r| &*r.name)
        .filter(|n| !now.contains(n))
        .collect();
    let mut parts = Vec::new();
    let routes: Vec<String> = [list("+", &added), list("-", &removed), list("~", &changed)]
        .into_iter()
        .flatten()
        .collect();
    if !routes.is_empty() {
        parts.push(format!("routes {}", routes.join(" ")));
    }
    parts.extend(details);
    let old_upstreams: HashMap<&str, &crate::upstream::Upstream> =
        old.upstreams.iter().map(|u| (&*u.name, u)).collect();
    let (mut up_added, mut weights, mut targets) = (Vec::new(), Vec::new(), Vec::new());
    for u in new.upstreams.iter() {
        let Some(before) = old_upstreams.get(&*u.name) else {
            up_added.push(&*u.name);
            continue;
        };
        for (t, w) in u.targets.iter().zip(u.weights.iter()) {
            match before
                .targets
                .iter()
                .position(|o| o.authority == t.authority)
            {
                None => targets.push(format!("{}+{}", u.name, t.authority)),
                Some(i) if before.weights[i] != *w => weights.push(format!(
                    "{}/{} {}→{}",
                    u.name, t.authority, before.weights[i], w
                )),
                Some(_) => {}
            }
        }
        for t in before.targets.iter() {
            if !u.targets.iter().any(|n| n.authority == t.authority) {
                targets.push(format!("{}-{}", u.name, t.authority));
            }
        }
    }
    let kept: HashSet<&str> = new.upstreams.iter().map(|u| &*u.name).collect();
    let up_removed: Vec<&str> = old
        .upstreams
        .iter()
        .map(|u| &*u.name)
        .filter(|n| !kept.contains(n))
        .collect();
    let ups: Vec<String> = [list("+", &up_added), list("-", &up_removed)]
        .into_iter()
        .flatten()
        .collect();
    if !ups.is_empty() {
        parts.push(format!("upstreams {}", ups.join(" ")));
    }
    let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
    if let Some(t) = list("", &targets) {
        parts.push(format!("targets {t}"));
    }
    let weights: Vec<&str> = weights.iter().map(String::as_str).collect();
    if let Some(w) = list("", &weights) {
        parts.push(format!("weights {w}"));
    }
    if parts.is_empty() {
        "no routing change".to_string()
    } else {
        parts.join("; ")
    }
}

/// Names listed per kind of change before the rest is summed up.
const LISTED: usize = 20;

fn list(sign: &str, names: &[&str]) -> Option<String> {
    match names.len() {
        0 => None,
        n if n <= LISTED => Some(format!("{sign}[{}]", names.join(", "))),
        n => Some(format!(
            "{sign}[{}, and {} more]",
            names[..LISTED].join(", "),
            n - LISTED
        )),
    }
}

/// What a reload changed in a route it kept (by name), each change as
/// `what old→new`; empty when nothing did. Upstreams are compared by name,
/// since indices move between configs.
fn route_changes(old: &Snapshot, was: &Route, new: &Snapshot, now: &Route) -> Vec<String> {
    let mut out = Vec::new();
    sides_changes(old, was, new, now, &mut out);
    let upstream = |s: &Snapshot, i: Option<usize>| i.map_or(NONE.into(), |i| name(s, i).into());
    change(
        &mut out,
        "fallback",
        upstream(old, was.fallback),
        upstream(new, now.fallback),
    );
    let sticky = |r: &Route| r.sticky.as_ref().map_or(NONE.into(), |k| k.to_string());
    change(&mut out, "sticky", sticky(was), sticky(now));
    let shadow =
        |s: &Snapshot, r: &Route| upstream(s, r.shadow.as_ref().map(|sh| sh.spec.upstream));
    change(&mut out, "shadow", shadow(old, was), shadow(new, now));
    if let (Some(a), Some(b)) = (&was.shadow, &now.shadow) {
        change(
            &mut out,
            "shadow sample",
            a.spec.sample.to_string(),
            b.spec.sample.to_string(),
        );
        // The rest of the section (compare, ignore lists, limits) in one
        // word: the file says the details.
        let rest = |spec: &crate::config::ShadowSpec| {
            let mut spec = spec.clone();
            spec.upstream = 0;
            spec.sample = 0.0;
            format!("{spec:?}")
        };
        if rest(&a.spec) != rest(&b.spec) {
            out.push("shadow settings".into());
        }
    }
    // A ramp whose section changed starts afresh (SPEC §11): say so.
    let ramp = |s: &Snapshot, r: &Route| {
        r.ramp.as_ref().map_or(NONE.into(), |ramp| {
            name(s, r.sides[ramp.spec.to].upstream).into()
        })
    };
    let (ramp_was, ramp_now) = (ramp(old, was), ramp(new, now));
    let restarted = ramp_was == ramp_now
        && matches!((&was.ramp, &now.ramp), (Some(a), Some(b)) if a.spec != b.spec);
    change(&mut out, "ramp", ramp_was, ramp_now);
    if restarted {
        out.push("ramp settings (a new ramp: its gates start afresh)".into());
    }
    change(
        &mut out,
        "prefix",
        was.prefix.to_string(),
        now.prefix.to_string(),
    );
    let host = |r: &Route| r.host.as_ref().map_or(NONE.into(), |h| h.to_string());
    change(&mut out, "host", host(was), host(now));
    let methods = |r: &Route| {
        r.methods.as_ref().map_or(NONE.into(), |m| {
            m.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(",")
        })
    };
    change(&mut out, "methods", methods(was), methods(now));
    change(
        &mut out,
        "strip_prefix",
        was.strip_prefix.to_string(),
        now.strip_prefix.to_string(),
    );
    let rewrite = |r: &Route| r.rewrite_prefix.as_deref().unwrap_or(NONE).to_string();
    change(&mut out, "rewrite_prefix", rewrite(was), rewrite(now));
    let limit = |r: &Route| {
        r.rate_limit.as_ref().map_or(NONE.into(), |l| {
            let spec = l.limiter.spec();
            format!("{}/s burst {} by {}", spec.rate, spec.burst, spec.key)
        })
    };
    change(&mut out, "rate_limit", limit(was), limit(now));
    // The edits in one word, as the shadow's settings: the file says them.
    if was.headers != now.headers {
        out.push("header edits".into());
    }
    out
}

/// Where a route sends its traffic: for a split that keeps its sides (same
/// upstreams, same order), each weight that moved (`search 10→50`);
/// otherwise the old and new form whole (`to monolith→search`,
/// `to monolith→split [search 1, monolith 99]`).
fn sides_changes(old: &Snapshot, was: &Route, new: &Snapshot, now: &Route, out: &mut Vec<String>) {
    let (a, b) = (side_names(old, was), side_names(new, now));
    match (was.split, now.split) {
        (false, false) => {
            if a != b {
                out.push(format!("to {}→{}", a.join(","), b.join(",")));
            }
        }
        (true, true) if a == b => {
            for ((n, x), y) in a.iter().zip(was.sides.iter()).zip(now.sides.iter()) {
                if x.weight != y.weight {
                    out.push(format!("{n} {}→{}", x.weight, y.weight));
                }
            }
        }
        _ => out.push(format!("{}→{}", sides_text(old, was), sides_text(new, now))),
    }
}

fn side_names<'s>(s: &'s Snapshot, r: &Route) -> Vec<&'s str> {
    r.sides.iter().map(|side| name(s, side.upstream)).collect()
}

/// `to monolith` or `split [search 1, monolith 99]`.
fn sides_text(s: &Snapshot, r: &Route) -> String {
    if !r.split {
        return r.sides.iter().fold("to".to_string(), |mut t, side| {
            t.push(' ');
            t.push_str(name(s, side.upstream));
            t
        });
    }
    let sides: Vec<String> = r
        .sides
        .iter()
        .map(|side| format!("{} {}", name(s, side.upstream), side.weight))
        .collect();
    format!("split [{}]", sides.join(", "))
}

/// `what old→new`, when they differ.
fn change(out: &mut Vec<String>, what: &str, old: String, new: String) {
    if old != new {
        out.push(format!("{what} {old}→{new}"));
    }
}

fn name(s: &Snapshot, i: usize) -> &str {
    &s.upstreams[i].name
}

/// How an absent value (no fallback, no sticky key, ...) reads.
const NONE: &str = "none";

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::describe_changes;
    use crate::state::{compile::compile, Snapshot};
    use crate::upstream::Registry;

    /// A snapshot of two upstreams, `monolith` and `search`, and `routes`.
    fn snapshot(routes: &str) -> Snapshot {
        let text = format!(
            "[listen]\naddress = \"127.0.0.1:0\"\n\
             [upstreams.monolith]\nlegacy = true\ntargets = [\"http://127.0.0.1:8000\"]\n\
             [upstreams.search]\ntargets = [\"http://127.0.0.1:9300\"]\n{routes}"
        );
        let loaded =
            crate::config::load_str(&text, Path::new("f.toml")).unwrap_or_else(|e| panic!("{e}"));
        compile(&loaded, &Registry::default())
    }

    fn changes(before: &str, after: &str) -> String {
        describe_changes(&snapshot(before), &snapshot(after))
    }

    const SPLIT_10: &str = "[[routes]]\nname = \"search\"\nprefix = \"/api/search\"\n\
        split = [{ to = \"search\", weight = 10 }, { to = \"monolith\", weight = 90 }]\n\
        sticky = \"header:x-user-id\"\nfallback = \"monolith\"\n";

    #[test]
    fn a_ramp_added_changed_or_removed_is_named() {
        let ramp = "[routes.ramp]\nto = \"search\"\nstart = \"2030-01-01T00:00:00Z\"\n\
                    steps = [10, 50]\nhold = \"1h\"\n";
        let with = format!("{SPLIT_10}{ramp}");
        assert_eq!(
            changes(SPLIT_10, &with),
            "routes ~[search]; search: ramp none→search"
        );
        let changed = with.replace("hold = \"1h\"", "hold = \"2h\"");
        assert_eq!(
            changes(&with, &changed),
            "routes ~[search]; search: ramp settings (a new ramp: its gates start afresh)"
        );
        assert_eq!(
            changes(&with, SPLIT_10),
            "routes ~[search]; search: ramp search→none"
        );
    }

    #[test]
    fn a_weight_change_says_which_weights_moved() {
        let after = SPLIT_10
            .replace("weight = 10 }", "weight = 50 }")
            .replace("90", "50");
        assert_eq!(
            changes(SPLIT_10, &after),
            "routes ~[search]; search: search 10→50, monolith 90→50"
        );
    }

    #[test]
    fn a_to_change_names_both_upstreams() {
        let to = |u: &str| {
            format!("[[routes]]\nname = \"search\"\nprefix = \"/api/search\"\nto = \"{u}\"\nfallback = \"monolith\"\n")
        };
        assert_eq!(
            changes(&to("search"), &to("monolith")),
            "routes ~[search]; search: to search→monolith"
        );
    }

    #[test]
    fn the_rollback_from_a_split_to_the_monolith_reads_whole() {
        let to = "[[routes]]\nname = \"search\"\nprefix = \"/api/search\"\nto = \"monolith\"\n";
        assert_eq!(
            changes(SPLIT_10, to),
            "routes ~[search]; search: split [search 10, monolith 90]→to monolith, \
             fallback monolith→none, sticky header:x-user-id→none"
        );
    }

    #[test]
    fn shadow_and_path_changes_are_named() {
        let before = "[[routes]]\nname = \"search\"\nprefix = \"/api/search\"\nto = \"monolith\"\n";
        let after = "[[routes]]\nname = \"search\"\nprefix = \"/api/find\"\nto = \"monolith\"\n\
                     strip_prefix = true\n[routes.shadow]\nto = \"search\"\nsample = 0.1\n";
        assert_eq!(
            changes(before, after),
            "routes ~[search]; search: shadow none→search, prefix /api/search→/api/find, \
             strip_prefix false→true"
        );
        let sampled = after.replace("0.1", "0.5");
        assert_eq!(
            changes(after, &sampled),
            "routes ~[search]; search: shadow sample 0.1→0.5"
        );
        let compared = format!("{sampled}compare = true\n");
        assert_eq!(
            changes(&sampled, &compared),
            "routes ~[search]; search: shadow settings"
        );
    }

    #[test]
    fn rate_limit_and_header_edit_changes_are_named() {
        let before = "[[routes]]\nname = \"search\"\nprefix = \"/api/search\"\nto = \"monolith\"\n";
        let limited = format!("{before}[routes.rate_limit]\nrate = 5\n");
        assert_eq!(
            changes(before, &limited),
            "routes ~[search]; search: rate_limit none→5/s burst 5 by client_ip"
        );
        let edited = format!("{limited}[routes.headers]\nresponse_remove = [\"server\"]\n");
        assert_eq!(
            changes(&limited, &edited),
            "routes ~[search]; search: header edits"
        );
        assert_eq!(changes(&edited, &edited), "no routing change");
    }

    #[test]
    fn an_unchanged_table_says_so_and_new_routes_are_listed() {
        assert_eq!(changes(SPLIT_10, SPLIT_10), "no routing change");
        let more =
            format!("{SPLIT_10}[[routes]]\nname = \"rest\"\nprefix = \"/\"\nto = \"monolith\"\n");
        assert_eq!(changes(SPLIT_10, &more), "routes +[rest]");
    }
}
