//! `[routes.headers]` and `[routes.rate_limit]` (SPEC §12): the per-route
//! policies that edit what figway forwards and limit how fast a route may be
//! asked. Header names and values are parsed here, once, so the request path
//! only clones them; the names figway itself must own (`host` and
//! `x-request-id` for removal, `x-request-id` for any set, the request's
//! `x-figway-shadow` marker, hop-by-hop and framing headers for any edit)
//! are refused with the place they were written.

use http::header::{self, HeaderName, HeaderValue};

use super::doc::{as_string, At, Problems, Table};
use super::model::{HeaderEdits, RateLimitKey, RateLimitSpec};

/// The most a rate may be: one token a nanosecond, the limiter's clock tick.
const MAX_RATE: f64 = 1e9;
/// The most a bucket may hold: far above any useful burst, and small
/// enough that a bucket's span in nanoseconds cannot overflow at sane rates.
const MAX_BURST: i64 = 1_000_000_000;

pub(super) fn read_header_edits(
    route: &mut Table<'_, '_>,
    problems: &mut Problems,
) -> Option<HeaderEdits> {
    let mut t = route.table("headers", problems)?;
    let edits = HeaderEdits {
        request_remove: read_removals(&mut t, "request_remove", Side::Request, problems),
        request_set: read_sets(&mut t, "request_set", Side::Request, problems),
        response_remove: read_removals(&mut t, "response_remove", Side::Response, problems),
        response_set: read_sets(&mut t, "response_set", Side::Response, problems),
    };
    t.finish(problems);
    Some(edits)
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Request,
    Response,
}

fn read_removals(
    t: &mut Table<'_, '_>,
    key: &'static str,
    side: Side,
    problems: &mut Problems,
) -> Vec<HeaderName> {
    let Some(list) = t.strings(key, problems) else {
        return Vec::new();
    };
    let mut names: Vec<HeaderName> = Vec::with_capacity(list.len());
    for (i, item) in list.into_iter().enumerate() {
        let path = format!("{}[{i}]", t.key_path(key));
        let Some(name) = editable_name(&item, &path, problems) else {
            continue;
        };
        // The upstream must learn where the request is for, and the request
        // id joins the client, figway and both sides in every log.
        if side == Side::Request && name == crate::headers::X_FIGWAY_SHADOW {
            problems.add(item.span, path, shadow_marker_message());
            continue;
        }
        if side == Side::Request && (name == header::HOST || name == crate::headers::X_REQUEST_ID) {
            problems.add(
                item.span,
                path,
                format!("cannot remove {name:?}: every request carries it upstream (SPEC §4)"),
            );
            continue;
        }
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

fn shadow_marker_message() -> &'static str {
    "cannot edit \"x-figway-shadow\": figway alone marks its shadow copies (SPEC §4)"
}

fn read_sets(
    t: &mut Table<'_, '_>,
    key: &'static str,
    side: Side,
    problems: &mut Problems,
) -> Vec<(HeaderName, HeaderValue)> {
    let Some(mut table) = t.table(key, problems) else {
        return Vec::new();
    };
    let mut sets: Vec<(HeaderName, HeaderValue)> = Vec::new();
    let mut spans: Vec<std::ops::Range<usize>> = Vec::new();
    for (name, value) in table.entries() {
        let path = table.key_path(&name.value);
        let parsed = editable_name(&name, &path, problems);
        let value =
            as_string(value, &path, problems).and_then(|v| match HeaderValue::from_str(&v.value) {
                Ok(value) => Some(shared(value)),
                Err(_) => {
                    problems.add(
                        v.span,
                        path.clone(),
                        "invalid header value: control characters (such as a newline) are not \
                         allowed",
                    );
                    None
                }
            });
        let Some(parsed) = parsed else { continue };
        if let Some(first) = sets.iter().position(|(n, _)| *n == parsed) {
            problems.add_related(
                name.span,
                path,
                format!("{parsed:?} is set twice (header names are case-insensitive)"),
                "first",
                spans[first].clone(),
            );
            continue;
        }
        if side == Side::Request && parsed == crate::headers::X_FIGWAY_SHADOW {
            problems.add(name.span, path, shadow_marker_message());
            continue;
        }
        if parsed == crate::headers::X_REQUEST_ID {
            problems.add(
                name.span,
                path,
                "cannot set \"x-request-id\": figway passes the client's or makes one (SPEC §4)",
            );
            continue;
        }
        if let Some(value) = value {
            sets.push((shared(parsed), value));
            spans.push(name.span);
        }
    }
    table.finish(problems);
    sets
}

/// A header name an edit may name: valid, and not one whose handling is
/// figway's (the connection's hop-by-hop headers and the message framing,
/// which a proxy must rewrite itself or break the exchange).
fn editable_name(text: &At<String>, path: &str, problems: &mut Problems) -> Option<HeaderName> {
    let Ok(name) = HeaderName::from_bytes(text.value.as_bytes()) else {
        problems.add(
            text.span.clone(),
            path,
            format!("invalid header name {:?}", text.value),
        );
        return None;
    };
    let owned = crate::headers::is_hop_by_hop(&name) || name == header::CONTENT_LENGTH;
    if owned {
        problems.add(
            text.span.clone(),
            path,
            format!(
                "{name:?} is figway's to handle (hop-by-hop or framing, SPEC §4): it cannot \
                 be edited"
            ),
        );
        return None;
    }
    Some(name)
}

/// `value` (a header name or value) with its bytes in shared storage: one
/// parsed from text owns a buffer that its first clone moves into a shared
/// one, an allocation; done here, every clone on the request path is only a
/// reference count.
fn shared<T: Clone>(value: T) -> T {
    let copy = value.clone();
    drop(value);
    copy
}

pub(super) fn read_rate_limit(
    route: &mut Table<'_, '_>,
    problems: &mut Problems,
) -> Option<RateLimitSpec> {
    let mut t = route.table("rate_limit", problems)?;
    let rate = t
        .required("rate", problems)
        .and_then(|_| t.number("rate", problems));
    let rate = rate.and_then(|r| {
        if r.value > 0.0 && r.value <= MAX_RATE {
            Some(r.value)
        } else {
            problems.add(
                r.span,
                t.key_path("rate"),
                "must be a number of requests per second above 0 (fractions allowed) and at \
                 most 1000000000",
            );
            None
        }
    });
    let burst = t.integer("burst", problems).and_then(|b| {
        if (1..=MAX_BURST).contains(&b.value) {
            Some(b.value as u32)
        } else {
            problems.add(
                b.span,
                t.key_path("burst"),
                "must be an integer between 1 and 1000000000",
            );
            None
        }
    });
    let burst_ok = burst.is_some() || !t.has("burst");
    let key = match t.string("key", problems) {
        None => Some(RateLimitKey::ClientIp),
        Some(k) => match rate_limit_key(&k.value) {
            Ok(key) => Some(key),
            Err(e) => {
                problems.add(k.span, t.key_path("key"), e);
                None
            }
        },
    };
    t.finish(problems);
    let rate = rate?;
    // Whole requests: a rate of 2.5 lets 2 through at once, never 0.
    let burst = match burst {
        Some(b) => b,
        None if burst_ok => (rate.floor() as u32).max(1),
        None => return None,
    };
    Some(RateLimitSpec {
        rate,
        burst,
        key: key?,
    })
}

/// `client_ip`, `header:NAME` or `route`.
fn rate_limit_key(text: &str) -> Result<RateLimitKey, String> {
    let bad = || {
        let hint = crate::suggest::did_you_mean(text, ["client_ip", "route"]);
        format!("invalid key {text:?}{hint}: expected \"client_ip\", \"header:NAME\" or \"route\"")
    };
    match text {
        "client_ip" => Ok(RateLimitKey::ClientIp),
        "route" => Ok(RateLimitKey::Route),
        _ => match text.split_once(':') {
            Some(("header", name)) => HeaderName::from_bytes(name.as_bytes())
                .map(RateLimitKey::Header)
                .map_err(|_| format!("invalid header name {name:?} in key {text:?}")),
            _ => Err(bad()),
        },
    }
}
