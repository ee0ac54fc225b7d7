//! Comparing a shadow's answer with the primary's (SPEC §4): status, then
//! headers (minus hop-by-hop, framing and `ignore_headers`), then the body:
//! as JSON values when the primary says it is JSON, with the `ignore_json`
//! pointers removed first, else byte for byte. The result is the first
//! place they differ, phrased for a log line: `status 200 != 500`,
//! `header content-type`, `body /items/3/price: 10 != 12`.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, StatusCode};
use serde_json::Value;

use crate::config::ShadowSpec;

/// One side's answer, with its body read whole (at most `max_body`).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// `None` when the answers match, else the first difference.
pub fn first_difference(spec: &ShadowSpec, primary: &Answer, shadow: &Answer) -> Option<String> {
    if primary.status != shadow.status {
        return Some(format!(
            "status {} != {}",
            primary.status.as_u16(),
            shadow.status.as_u16()
        ));
    }
    if let Some(name) = header_difference(spec, &primary.headers, &shadow.headers) {
        return Some(format!("header {name}"));
    }
    body_difference(spec, primary, shadow).map(|d| format!("body {d}"))
}

fn header_difference(spec: &ShadowSpec, a: &HeaderMap, b: &HeaderMap) -> Option<HeaderName> {
    let skip = |name: &HeaderName| {
        name == CONTENT_LENGTH
            || name == TRANSFER_ENCODING
            || HOP_BY_HOP.contains(&name.as_str())
            || spec.ignore_headers.contains(name)
    };
    let mut names: Vec<&HeaderName> = a.keys().chain(b.keys()).filter(|n| !skip(n)).collect();
    names.sort_by(|x, y| x.as_str().cmp(y.as_str()));
    names.dedup();
    names
        .into_iter()
        .find(|name| !a.get_all(*name).iter().eq(b.get_all(*name).iter()))
        .cloned()
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|mime| mime == "application/json" || mime.ends_with("+json"))
}

fn body_difference(spec: &ShadowSpec, primary: &Answer, shadow: &Answer) -> Option<String> {
    if is_json(&primary.headers) {
        let parsed = (
            serde_json::from_slice::<Value>(&primary.body),
            serde_json::from_slice::<Value>(&shadow.body),
        );
        if let (Ok(mut a), Ok(mut b)) = parsed {
            for pointer in &spec.ignore_json {
                remove_pointer(&mut a, pointer);
                remove_pointer(&mut b, pointer);
            }
            return json_difference(&a, &b, &mut String::new());
        }
        // Not both JSON after all: fall through to bytes.
    }
    if primary.body == shadow.body {
        return None;
    }
    let at = primary
        .body
        .iter()
        .zip(shadow.body.iter())
        .position(|(x, y)| x != y);
    Some(match at {
        Some(i) => format!("byte {i}"),
        None => format!("length {} != {}", primary.body.len(), shadow.body.len()),
    })
}

/// Removes what `pointer` (RFC 6901) names: a member from its object, or an
/// array element replaced by null so the other indices keep their meaning.
fn remove_pointer(value: &mut Value, pointer: &str) {
    if pointer.is_empty() {
        *value = Value::Null;
        return;
    }
    let (parent, last) = match pointer.rfind('/') {
        Some(i) => (&pointer[..i], &pointer[i + 1..]),
        None => return,
    };
    let key = last.replace("~1", "/").replace("~0", "~");
    match value.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.remove(&key);
        }
        Some(Value::Array(items)) => {
            if let Some(item) = key.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                *item = Value::Null;
            }
        }
        _ => {}
    }
}

fn json_difference(a: &Value, b: &Value, path: &mut String) -> Option<String> {
    let here = |path: &String| {
        if path.is_empty() {
            "/".to_string()
        } else {
            path.clone()
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let len = path.len();
                path.push('/');
                path.push_str(&k.replace('~', "~0").replace('/', "~1"));
                let found = match (x.get(k), y.get(k)) {
                    (Some(p), Some(s)) => json_difference(p, s, path),
                    (Some(p), None) => Some(format!("{path}: {} != (absent)", short(p))),
                    (None, Some(s)) => Some(format!("{path}: (absent) != {}", short(s))),
                    (None, None) => None,
                };
                path.truncate(len);
                if found.is_some() {
                    return found;
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) => {
            for (i, (p, s)) in x.iter().zip(y.iter()).enumerate() {
                let len = path.len();
                path.push('/');
                path.push_str(&i.to_string());
                let found = json_difference(p, s, path);
                path.truncate(len);
                if found.is_some() {
                    return found;
                }
            }
            (x.len() != y.len())
                .then(|| format!("{}: length {} != {}", here(path), x.len(), y.len()))
        }
        (p, s) if p == s => None,
        (p, s) => Some(format!("{}: {} != {}", here(path), short(p), short(s))),
    }
}

/// A value for a log line: scalars as they are, containers summarised.
fn short(v: &Value) -> String {
    match v {
        Value::Object(m) => format!("{{{} keys}}", m.len()),
        Value::Array(a) => format!("[{} items]", a.len()),
        other => {
            let s = other.to_string();
            if s.len() > 80 {
                format!(
                    "{}...",
                    &s[..s
                        .char_indices()
                        .take(77)
                        .last()
                        .map_or(0, |(i, c)| i + c.len_utf8())]
                )
            } else {
                s
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn spec(ignore_headers: &[&'static str], ignore_json: &[&str]) -> ShadowSpec {
        ShadowSpec {
            upstream: 0,
            sample: 1.0,
            methods: vec![http::Method::GET],
            compare: true,
            ignore_headers: ignore_headers
                .iter()
                .map(|h| HeaderName::from_static(h))
                .collect(),
            ignore_json: ignore_json.iter().map(|p| p.to_string()).collect(),
            max_body: 1 << 20,
            max_in_flight: 10,
        }
    }

    fn json(status: u16, body: &str) -> Answer {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn json_by_value_not_by_bytes() {
        let s = spec(&[], &[]);
        assert_eq!(
            first_difference(
                &s,
                &json(200, r#"{"a":1,"b":[1,2]}"#),
                &json(200, r#"{ "b": [1, 2], "a": 1 }"#)
            ),
            None
        );
    }

    #[test]
    fn first_differing_place_is_named() {
        let s = spec(&[], &[]);
        let p = json(
            200,
            r#"{"items":[{"price":10},{"price":10},{"price":10},{"price":10}]}"#,
        );
        let q = json(
            200,
            r#"{"items":[{"price":10},{"price":10},{"price":10},{"price":12}]}"#,
        );
        assert_eq!(
            first_difference(&s, &p, &q).unwrap(),
            "body /items/3/price: 10 != 12"
        );
        assert_eq!(
            first_difference(&s, &json(200, "{}"), &json(500, "{}")).unwrap(),
            "status 200 != 500"
        );
    }

    #[test]
    fn ignored_pointers_and_headers() {
        let s = spec(&["date"], &["/generated_at", "/items/0"]);
        let mut p = json(200, r#"{"generated_at":"t1","items":[1,2]}"#);
        let mut q = json(200, r#"{"generated_at":"t2","items":[9,2]}"#);
        p.headers.insert("date", HeaderValue::from_static("Mon"));
        q.headers.insert("date", HeaderValue::from_static("Tue"));
        assert_eq!(first_difference(&s, &p, &q), None);
        q.headers.insert("x-extra", HeaderValue::from_static("1"));
        assert_eq!(first_difference(&s, &p, &q).unwrap(), "header x-extra");
    }

    #[test]
    fn other_bodies_byte_for_byte() {
        let s = spec(&[], &[]);
        let a = Answer {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from_static(b"hello"),
        };
        let mut b = a.clone();
        b.body = Bytes::from_static(b"help!");
        assert_eq!(first_difference(&s, &a, &b).unwrap(), "body byte 3");
        b.body = Bytes::from_static(b"hello world");
        assert_eq!(first_difference(&s, &a, &b).unwrap(), "body length 5 != 11");
        assert_eq!(first_difference(&s, &a, &a), None);
    }
}
