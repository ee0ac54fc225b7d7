//! What `figway demo` prints once everything answers: what runs where, the
//! curl lines to try, and the line to edit to watch a hot reload. The lines
//! are built from the config being served, not written out by hand: the
//! canary's example users are found by the proxy's own sticky function (so
//! "alice lands on users" is true of this table), and the line to edit is
//! looked up in the file. Every curl line must work as printed
//! (`tests/demo.rs` runs them).

use std::fmt::Write;
use std::net::SocketAddr;

use crate::config::KeySource;
use crate::decision::sticky_side;
use crate::state::{Route, Snapshot};

use super::source::{split_line, Source};

/// One stub the demo runs.
#[derive(Debug, Clone)]
pub struct StubPlace {
    pub name: String,
    pub address: SocketAddr,
    pub legacy: bool,
}

/// The facts the banner is made of.
pub struct Facts<'a> {
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub stubs: &'a [StubPlace],
    pub source: &'a Source,
    /// The served file's text, to find the line to edit in.
    pub config_text: &'a str,
    pub snapshot: &'a Snapshot,
}

/// Names tried in turn as sticky keys until one lands on each side; readable
/// first, numbered after, so that any weights short of 0 find one.
const NAMES: [&str; 12] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "oscar",
];

/// The whole text, ending with a newline.
pub fn render(f: &Facts<'_>) -> String {
    let mut out = String::new();
    let proxy = format!("http://{}", f.proxy);
    let admin = format!("http://{}", f.admin);
    let _ = writeln!(
        out,
        "figway demo: a stub monolith and the services extracted from it, behind figway, on loopback.\n"
    );
    let _ = writeln!(
        out,
        "  {:<10}{:<28}figway: send requests here",
        "proxy", proxy
    );
    let _ = writeln!(
        out,
        "  {:<10}{:<28}figway's admin API and /metrics",
        "admin", admin
    );
    for stub in f.stubs {
        let what = if stub.legacy {
            "stub, the legacy monolith"
        } else {
            "stub, an extracted service"
        };
        let _ = writeln!(
            out,
            "  {:<10}{:<28}{what}",
            stub.name,
            format!("http://{}", stub.address)
        );
    }
    let shown = f.source.path.display().to_string();
    let _ = writeln!(
        out,
        "  {:<10}{shown}  (watched: save an edit and it reloads)",
        "config"
    );
    let _ = writeln!(
        out,
        "\nTry these (each answer names the service that served it, in its JSON and in x-served-by):\n"
    );
    let _ = writeln!(out, "  # Not carved out yet: the monolith answers");
    let _ = writeln!(out, "  curl -si {proxy}/api/orders/42\n");

    let canary = f.snapshot.routes.iter().find_map(|r| canary(f.snapshot, r));
    if let Some(c) = &canary {
        let landings: Vec<String> = c
            .keys
            .iter()
            .map(|(k, side)| format!("{k} lands on {side}"))
            .collect();
        let _ = writeln!(
            out,
            "  # A canary split ({}), sticky by {}: {}",
            c.weights,
            c.header,
            landings.join(", ")
        );
        for (key, _) in &c.keys {
            let _ = writeln!(out, "  curl -s -H '{}: {key}' {proxy}{}", c.header, c.path);
        }
        out.push('\n');
    }
    let shadowed = f
        .snapshot
        .routes
        .iter()
        .find(|r| r.shadow.as_ref().is_some_and(|s| s.spec.compare));
    if let (Some(route), Some(shadow)) = (shadowed, shadowed.and_then(|r| r.shadow.as_ref())) {
        let to = &f.snapshot.upstreams[shadow.spec.upstream].name;
        let _ = writeln!(
            out,
            "  # Shadowed: {} answers, {to} gets a copy, and the two answers are compared",
            f.snapshot.upstreams[route.sides[0].upstream].name
        );
        let _ = writeln!(
            out,
            "  curl -s '{proxy}{}?q=boots'",
            sub_path(&route.prefix, "")
        );
        let _ = writeln!(
            out,
            "  curl -s {admin}/metrics | grep figway_shadow_requests_total\n"
        );
    }
    let _ = writeln!(
        out,
        "  # The route table; the upstreams and their health; requests by route and upstream"
    );
    let _ = writeln!(out, "  curl -s {admin}/routes");
    let _ = writeln!(out, "  curl -s {admin}/upstreams");
    let _ = writeln!(
        out,
        "  curl -s {admin}/metrics | grep '^figway_requests_total'\n"
    );

    if let Some(c) = &canary {
        let at = match split_line(f.config_text, &c.route) {
            Some(line) => format!("{shown}:{line}"),
            None => shown.clone(),
        };
        let _ = writeln!(out, "Hot reload: edit {at} and save, for example to");
        let _ = writeln!(out, "  {}", c.reload_to);
        if let Some((key, _)) = c.keys.iter().find(|(_, side)| *side != c.reload_gains) {
            let _ = writeln!(
                out,
                "then run the {key} line again: it lands on {} now.",
                c.reload_gains
            );
        }
        if f.source.from_repo {
            let _ = writeln!(out, "To watch the shares move live, in another terminal:");
            let _ = writeln!(
                out,
                "  cargo run --example load_driver -- {proxy}{}",
                c.path
            );
        }
        out.push('\n');
    }
    let _ = writeln!(out, "Admin API: {admin}   Metrics: {admin}/metrics");
    let _ = writeln!(out, "Ctrl-C stops figway and the stubs.");
    out
}

/// A sticky split keyed by a header, as the banner shows it.
struct Canary {
    route: String,
    header: String,
    path: String,
    /// `users 10 / monolith 90`.
    weights: String,
    /// An example key per side that has one, with the side's upstream.
    keys: Vec<(String, String)>,
    /// A `split = ...` line that moves all traffic to one side, and that side.
    reload_to: String,
    reload_gains: String,
}

fn canary(snapshot: &Snapshot, route: &Route) -> Option<Canary> {
    let Some(KeySource::Header(header)) = &route.sticky else {
        return None;
    };
    if !route.split || route.sides.len() < 2 {
        return None;
    }
    let name = |side: usize| {
        snapshot.upstreams[route.sides[side].upstream]
            .name
            .to_string()
    };
    let candidates = NAMES
        .iter()
        .map(|n| n.to_string())
        .chain((1..10_000).map(|i| format!("user-{i}")));
    let mut keys: Vec<Option<String>> = vec![None; route.sides.len()];
    for key in candidates {
        let side = sticky_side(route, key.as_bytes());
        if keys[side].is_none() {
            keys[side] = Some(key);
            if keys
                .iter()
                .zip(route.sides.iter())
                .all(|(k, s)| k.is_some() || s.weight == 0)
            {
                break;
            }
        }
    }
    let keys = keys
        .into_iter()
        .enumerate()
        .filter_map(|(side, key)| key.map(|k| (k, name(side))))
        .collect();
    let weights = (0..route.sides.len())
        .map(|i| format!("{} {}", name(i), route.sides[i].weight))
        .collect::<Vec<_>>()
        .join(" / ");
    // All to the first side, unless it has it all already: then all to the last.
    let first_has_all = route.sides[0].weight as u64 == route.total_weight;
    let gains = if first_has_all {
        route.sides.len() - 1
    } else {
        0
    };
    let sides = (0..route.sides.len())
        .map(|i| {
            format!(
                "{{ to = \"{}\", weight = {} }}",
                name(i),
                if i == gains { 100 } else { 0 }
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    Some(Canary {
        route: route.name.to_string(),
        header: header.to_string(),
        path: sub_path(&route.prefix, "7"),
        weights,
        keys,
        reload_to: format!("split = [{sides}]"),
        reload_gains: name(gains),
    })
}

/// A path under `prefix`: `/api/users` + `7` is `/api/users/7`.
fn sub_path(prefix: &str, rest: &str) -> String {
    let base = prefix.trim_end_matches('/');
    match rest {
        "" if base.is_empty() => "/".to_string(),
        "" => base.to_string(),
        _ => format!("{base}/{rest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_paths_join_on_one_slash() {
        assert_eq!(sub_path("/api/users", "7"), "/api/users/7");
        assert_eq!(sub_path("/api/users/", "7"), "/api/users/7");
        assert_eq!(sub_path("/", "7"), "/7");
        assert_eq!(sub_path("/", ""), "/");
        assert_eq!(sub_path("/api/search", ""), "/api/search");
    }
}
