//! `[routes.match]`: the conditions a request must meet for a route to take
//! it (SPEC §12): `headers`, `cookies` and `query`, each a table of name →
//! value, where `"*"` means present. Names are checked here, once, so that
//! a condition the router holds can match some request: a header name that
//! is no header name, a cookie value with a `;` in it or a header value
//! with surrounding spaces would silently never match, and is an error
//! instead. The lists come out sorted by name, so routes compare as sets.

use http::{HeaderName, HeaderValue};

use super::doc::{as_string, At, Problems, Table};
use super::model::{MatchSpec, MatchValue};

pub(super) fn read_match(t: &mut Table<'_, '_>, problems: &mut Problems) -> Option<MatchSpec> {
    let before = problems.list.len();
    let headers = read_conditions(t, "headers", header_name, header_value, problems);
    let cookies = read_conditions(t, "cookies", cookie_name, cookie_value, problems);
    let query = read_conditions(t, "query", query_name, |_| Ok(()), problems);
    let spec = MatchSpec {
        headers,
        cookies,
        query,
    };
    if t.is_empty() {
        // An empty table would match every request yet rank above a route
        // without one: almost certainly a condition forgotten. (A table
        // with only unknown keys gets its "unknown key" error instead.)
        problems.add(
            t.span.clone(),
            t.path.clone(),
            "no condition: list at least one under headers, cookies or query, or remove \
             [routes.match]",
        );
    }
    (problems.list.len() == before).then_some(spec)
}

/// One table of name → value under `key`, sorted by name; each name once
/// (after `name` normalised it: header names are lower-cased).
fn read_conditions<N: PartialEq + AsRef<str>>(
    t: &mut Table<'_, '_>,
    key: &'static str,
    name: impl Fn(&str) -> Result<N, String>,
    value: impl Fn(&str) -> Result<(), String>,
    problems: &mut Problems,
) -> Vec<(N, MatchValue)> {
    let Some(mut table) = t.table(key, problems) else {
        return Vec::new();
    };
    let entries = table.entries();
    if entries.is_empty() {
        problems.add(
            table.span.clone(),
            table.path.clone(),
            format!("list at least one condition, or leave `{key}` out"),
        );
    }
    // Each name with where it was first written, for a repeated one.
    let mut read: Vec<(N, MatchValue, At<String>)> = Vec::with_capacity(entries.len());
    for (written, raw) in entries {
        let path = table.key_path(&written.value);
        let parsed = match name(&written.value) {
            Ok(n) => Some(n),
            Err(e) => {
                problems.add(written.span.clone(), path.clone(), e);
                None
            }
        };
        let wanted = as_string(raw, &path, problems).and_then(|v| match v.value.as_str() {
            "*" => Some(MatchValue::Present),
            text => match value(text) {
                Ok(()) => Some(MatchValue::Exact(v.value)),
                Err(e) => {
                    problems.add(v.span, path.clone(), e);
                    None
                }
            },
        });
        let Some(parsed) = parsed else { continue };
        // TOML itself refuses a key written twice; only header names,
        // compared without case, can meet here.
        if let Some((_, _, first)) = read.iter().find(|(n, _, _)| *n == parsed) {
            problems.add_related(
                written.span.clone(),
                path,
                format!(
                    "{:?} is listed twice, as {:?} too: header names are case-insensitive",
                    written.value, first.value
                ),
                "first",
                first.span.clone(),
            );
            continue;
        }
        if let Some(wanted) = wanted {
            read.push((parsed, wanted, written));
        }
    }
    table.finish(problems);
    let mut out: Vec<(N, MatchValue)> = read.into_iter().map(|(n, v, _)| (n, v)).collect();
    out.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
    out
}

fn header_name(name: &str) -> Result<HeaderName, String> {
    let parsed = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("invalid header name {name:?}"))?;
    if parsed == http::header::HOST {
        // An HTTP/2 request carries its host as :authority, not as a
        // header: the route's `host` key covers both.
        return Err("match the host with the route's `host` key, not a header condition".into());
    }
    Ok(parsed)
}

fn header_value(value: &str) -> Result<(), String> {
    if HeaderValue::from_str(value).is_err() {
        return Err(format!(
            "invalid header value {value:?}: control characters never arrive in a header"
        ));
    }
    if value.starts_with([' ', '\t']) || value.ends_with([' ', '\t']) {
        return Err(format!(
            "header value {value:?} would never match: a header's value arrives without \
             leading or trailing whitespace"
        ));
    }
    Ok(())
}

/// Cookie names are what a `Cookie` header can carry before its `=`.
fn cookie_name(name: &str) -> Result<String, String> {
    let bad = |b: u8| b.is_ascii_control() || b" ;=,\t\"".contains(&b);
    if name.is_empty() || name.bytes().any(bad) {
        return Err(format!(
            "invalid cookie name {name:?}: a name is at least one character, without spaces, \
             quotes, control characters, `;`, `,` or `=`"
        ));
    }
    Ok(name.to_string())
}

fn cookie_value(value: &str) -> Result<(), String> {
    let bad = |b: u8| b.is_ascii_control() || b == b';';
    if value.bytes().any(bad) || value.starts_with(' ') || value.ends_with(' ') {
        return Err(format!(
            "cookie value {value:?} would never match: `;` ends a cookie, control characters \
             never arrive, and a cookie's value arrives without leading or trailing spaces"
        ));
    }
    Ok(())
}

fn query_name(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("a query parameter name is at least one character".into());
    }
    Ok(name.to_string())
}
