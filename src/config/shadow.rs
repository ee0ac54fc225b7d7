//! `[routes.shadow]`: where a route's mirrored copies go and how their
//! answers are compared (SPEC §2, §4).

use std::collections::HashMap;

use http::{HeaderName, Method};

use super::doc::{Problems, Table};
use super::fields::{positive, read_methods_key, upstream_index};
use super::model::ShadowSpec;
use super::units::parse_size;

pub(super) fn read_shadow(
    t: &mut Table<'_, '_>,
    names: &HashMap<String, usize>,
    own: &dyn Fn(usize) -> bool,
    problems: &mut Problems,
) -> Option<ShadowSpec> {
    let to = t
        .required("to", problems)
        .and_then(|_| t.string("to", problems));
    let upstream = to.and_then(|to| {
        let i = upstream_index(names, &to, || t.key_path("to"), problems)?;
        if own(i) {
            problems.add(
                to.span,
                t.key_path("to"),
                "a shadow cannot point at the route's own upstream: it would get every request twice",
            );
            return None;
        }
        Some(i)
    });
    let sample = match t.number("sample", problems) {
        Some(n) if (0.0..=1.0).contains(&n.value) => n.value,
        Some(n) => {
            problems.add(n.span, t.key_path("sample"), "must be between 0.0 and 1.0");
            1.0
        }
        None => 1.0,
    };
    let methods =
        read_methods_key(t, "methods", problems).unwrap_or_else(|| vec![Method::GET, Method::HEAD]);
    let compare = t.boolean("compare", problems).unwrap_or(false);
    let ignore_headers = t
        .strings("ignore_headers", problems)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|h| match HeaderName::from_bytes(h.value.as_bytes()) {
            Ok(name) => Some(name),
            Err(_) => {
                problems.add(
                    h.span,
                    t.key_path("ignore_headers"),
                    format!("invalid header name {:?}", h.value),
                );
                None
            }
        })
        .collect();
    let ignore_json = t
        .strings("ignore_json", problems)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            if p.value.is_empty() || p.value.starts_with('/') {
                Some(p.value)
            } else {
                problems.add(
                    p.span,
                    t.key_path("ignore_json"),
                    format!("invalid JSON Pointer {:?}: it starts with /", p.value),
                );
                None
            }
        })
        .collect();
    let max_body = t
        .parsed("max_body", problems, parse_size)
        .unwrap_or(1 << 20);
    let max_in_flight = positive(t, "max_in_flight", problems).unwrap_or(100);
    Some(ShadowSpec {
        upstream: upstream?,
        sample,
        methods,
        compare,
        ignore_headers,
        ignore_json,
        max_body,
        max_in_flight,
    })
}
