//! The reload's log line: what a new config changed, written so that the
//! log reads as the history of a migration.

use std::collections::{HashMap, HashSet};

use crate::state::Snapshot;

/// One line for the log that lets an operator read a migration's history:
/// `routes +[search] -[old] ~[orders]; upstreams +[search]; weights orders/127.0.0.1:9001 3->5`.
/// Long lists are cut after [`LISTED`] names. Linear in the table size.
pub fn describe_changes(old: &Snapshot, new: &Snapshot) -> String {
    let before: HashMap<&str, String> = old
        .routes
        .iter()
        .map(|r| (&*r.name, route_desc(old, r)))
        .collect();
    let (mut added, mut changed) = (Vec::new(), Vec::new());
    for r in new.routes.iter() {
        match before.get(&*r.name) {
            None => added.push(&*r.name),
            Some(desc) if *desc != route_desc(new, r) => changed.push(&*r.name),
            Some(_) => {}
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
                    "{}/{} {}->{}",
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

/// Everything about a route that a reload can change, as one comparable
/// string (upstreams by name, since indices move between configs).
fn route_desc(s: &Snapshot, r: &crate::state::Route) -> String {
    let name = |i: usize| &*s.upstreams[i].name;
    format!(
        "{} {:?} {:?} {} {} {:?} sticky={:?} fallback={:?} shadow={:?}",
        r.prefix,
        r.host,
        r.methods,
        r.sides
            .iter()
            .map(|side| format!("{}:{}", name(side.upstream), side.weight))
            .collect::<Vec<_>>()
            .join(","),
        r.strip_prefix,
        r.rewrite_prefix,
        r.sticky.as_ref().map(|k| k.to_string()),
        r.fallback.map(name),
        r.shadow.as_ref().map(|sh| {
            let mut spec = sh.spec.clone();
            spec.upstream = usize::MAX;
            (name(sh.spec.upstream), format!("{spec:?}"))
        }),
    )
}
