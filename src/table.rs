//! Plain-text renderings for the terminal: the compiled route table that
//! `figway check` prints and the facts `figway explain` prints without
//! `--json`. Columns are aligned to their widest cell.

use serde_json::Value;

use crate::state::Snapshot;

/// One row per route in match order, then one line per upstream.
pub fn render_routes(snapshot: &Snapshot) -> String {
    let mut rows = vec![vec![
        "ROUTE".to_string(),
        "PREFIX".into(),
        "HOST".into(),
        "METHODS".into(),
        "MATCH".into(),
        "TO".into(),
        "FORWARDS".into(),
    ]];
    let ordered = snapshot
        .router
        .match_order()
        .iter()
        .map(|i| &snapshot.routes[*i]);
    for r in ordered {
        let forwards = match (&r.rewrite_prefix, r.strip_prefix) {
            (Some(p), _) => format!("{} -> {p}", r.prefix),
            (None, true) => format!("{} -> /", r.prefix),
            (None, false) => "unchanged".into(),
        };
        rows.push(vec![
            r.name.to_string(),
            r.prefix.to_string(),
            r.host.as_ref().map_or("*".into(), |h| h.to_string()),
            r.methods.as_ref().map_or("*".into(), |m| {
                m.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(",")
            }),
            r.conditions
                .as_ref()
                .map_or("*".into(), |c| c.spec().to_string()),
            if r.split {
                r.sides
                    .iter()
                    .map(|side| {
                        format!("{}:{}", snapshot.upstreams[side.upstream].name, side.weight)
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            } else {
                snapshot.upstreams[r.sides[0].upstream].name.to_string()
            },
            forwards,
        ]);
    }
    let mut out = align(&rows);
    out.push('\n');
    for u in snapshot.upstreams.iter() {
        let targets: Vec<String> = u
            .targets
            .iter()
            .zip(u.weights.iter())
            .map(|(t, w)| format!("{} (weight {w})", t.authority))
            .collect();
        out.push_str(&format!(
            "upstream {}{}: {} [{}]\n",
            u.name,
            if u.legacy { " (legacy)" } else { "" },
            u.balance.as_str(),
            targets.join(", ")
        ));
    }
    out
}

/// `explain` without `--json`: the same facts, one per line.
pub fn render_explain(v: &Value) -> String {
    let s = |v: &Value| match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut rows = Vec::new();
    match &v["route"] {
        Value::Null => {
            rows.push(vec!["route".to_string(), "none".into()]);
            if let Some(e) = v.get("error") {
                rows.push(vec![
                    "answer".into(),
                    format!("figway answers itself: {}", s(e)),
                ]);
            }
        }
        route => {
            rows.push(vec!["route".into(), s(&route["name"])]);
            rows.push(vec!["prefix".into(), s(&route["prefix"])]);
            rows.push(vec!["host".into(), s(&route["host"])]);
            rows.push(vec!["methods".into(), s(&route["methods"])]);
            rows.push(vec!["match".into(), conditions_text(&route["match"])]);
            rows.push(vec!["path_forwarded".into(), s(&v["path_forwarded"])]);
            if let Value::Array(ups) = &v["upstreams"] {
                for u in ups {
                    rows.push(vec![
                        "upstream".into(),
                        format!("{} (weight {})", s(&u["name"]), s(&u["weight"])),
                    ]);
                }
            }
            // Objects in words, not as JSON text.
            let sticky = match &v["sticky"] {
                Value::Null => "-".to_string(),
                // explain knows a client address only from --client.
                st if st["value"].is_null() && st["key"] == "client_ip" => {
                    "client_ip (give --client IP to see its side)".to_string()
                }
                st if st["value"].is_null() => format!(
                    "{} (absent from the request: split at random by weight)",
                    s(&st["key"])
                ),
                st => format!(
                    "{} = {} -> {}",
                    s(&st["key"]),
                    s(&st["value"]),
                    s(&st["chosen"])
                ),
            };
            let shadow = match &v["shadow"] {
                Value::Null => "-".to_string(),
                sh => format!("{} (sample {})", s(&sh["to"]), s(&sh["sample"])),
            };
            rows.push(vec!["sticky".into(), sticky]);
            rows.push(vec!["fallback".into(), s(&v["fallback"])]);
            rows.push(vec!["shadow".into(), shadow]);
        }
    }
    if let Value::Array(passed) = &v["passed_over"] {
        for p in passed {
            rows.push(vec!["passed over".into(), passed_over_text(p)]);
        }
    }
    align(&rows)
}

/// A route's `match` object in words: `header x-canary = "1", cookie beta
/// present`; `-` without conditions.
fn conditions_text(m: &Value) -> String {
    let mut parts = Vec::new();
    for (table, source) in [
        ("headers", "header"),
        ("cookies", "cookie"),
        ("query", "query"),
    ] {
        if let Value::Object(entries) = &m[table] {
            for (name, want) in entries {
                parts.push(match want.as_str() {
                    Some("*") => format!("{source} {name} present"),
                    _ => format!("{source} {name} = {want}"),
                });
            }
        }
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

/// One route passed over for its conditions: its name and what failed,
/// `orders-beta: header x-canary is "0", not "1"`.
fn passed_over_text(p: &Value) -> String {
    let failed: Vec<String> = match &p["failed"] {
        Value::Array(list) => list
            .iter()
            .map(|f| {
                let what = format!(
                    "{} {}",
                    f["source"].as_str().unwrap_or_default(),
                    f["name"].as_str().unwrap_or_default()
                );
                match (&f["got"], f["expect"].as_str()) {
                    (Value::Null, _) => format!("{what} absent"),
                    (got, Some(want)) => format!("{what} is {got}, not {want:?}"),
                    (got, None) => format!("{what} is {got}"),
                }
            })
            .collect(),
        _ => Vec::new(),
    };
    format!(
        "{}: {}",
        p["name"].as_str().unwrap_or_default(),
        failed.join(", ")
    )
}

fn align(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < row.len() {
                line.push_str(&" ".repeat(widths[c] - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
