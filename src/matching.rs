//! Route match conditions at run time (SPEC §12): a route's compiled
//! [`Conditions`] and the [`RequestFacts`] they are checked against. The
//! router asks [`Conditions::holds`] only of the candidates at the prefix and
//! host a request reached, so routes without conditions cost nothing, and
//! the facts parse the request's cookies and query lazily: at most once per
//! request, and not at all when no candidate asks for them.
//!
//! A condition holds when any of the request's values under its name is
//! accepted: one of the header's field lines, one of the cookies of that
//! name (HTTP/2 clients send each cookie as a header line of its own), one
//! of the query parameters of that name. Query names and values are
//! compared form-decoded (`%xx`, `+` as space), as applications read them,
//! so `query = { q = "a b" }` matches `?q=a+b` and `?q=a%20b`.

use std::borrow::Cow;
use std::cell::OnceCell;

use http::{HeaderMap, HeaderName};
use serde_json::{json, Map, Value};

use crate::config::{MatchSpec, MatchValue};
use crate::keys;

/// A route's conditions, compiled once at load.
#[derive(Debug)]
pub struct Conditions {
    headers: Box<[(HeaderName, Expect)]>,
    cookies: Box<[(Box<[u8]>, Expect)]>,
    query: Box<[(Box<[u8]>, Expect)]>,
    /// As validated, for `/routes` and `explain`.
    spec: MatchSpec,
}

#[derive(Debug)]
enum Expect {
    Present,
    Exact(Box<[u8]>),
}

impl Expect {
    fn new(value: &MatchValue) -> Expect {
        match value {
            MatchValue::Present => Expect::Present,
            MatchValue::Exact(v) => Expect::Exact(v.as_bytes().into()),
        }
    }

    fn accepts(&self, value: &[u8]) -> bool {
        match self {
            Expect::Present => true,
            Expect::Exact(want) => **want == *value,
        }
    }
}

/// Which part of a request a condition reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Header,
    Cookie,
    Query,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Header => "header",
            Source::Cookie => "cookie",
            Source::Query => "query",
        }
    }
}

/// One condition judged against one request, for `explain`.
#[derive(Debug)]
pub struct Judged<'c> {
    pub source: Source,
    pub name: &'c str,
    pub expect: &'c MatchValue,
    /// The value that met the condition, else the first the request
    /// carried under that name (`None`: absent), as text.
    pub got: Option<String>,
    pub held: bool,
}

impl Conditions {
    pub fn compile(spec: &MatchSpec) -> Conditions {
        let bytes = |list: &[(String, MatchValue)]| -> Box<[(Box<[u8]>, Expect)]> {
            list.iter()
                .map(|(n, v)| (n.as_bytes().into(), Expect::new(v)))
                .collect()
        };
        Conditions {
            headers: spec
                .headers
                .iter()
                .map(|(n, v)| (n.clone(), Expect::new(v)))
                .collect(),
            cookies: bytes(&spec.cookies),
            query: bytes(&spec.query),
            spec: spec.clone(),
        }
    }

    /// Entries over all three tables; the router ranks by it.
    pub fn len(&self) -> usize {
        self.spec.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spec.is_empty()
    }

    pub fn spec(&self) -> &MatchSpec {
        &self.spec
    }

    /// Whether the request meets every condition. Headers first: they need
    /// no parsing, and a failed one spares the cookie and query parse.
    pub fn holds(&self, request: &RequestFacts<'_>) -> bool {
        self.headers
            .iter()
            .all(|(name, want)| request.headers(name).any(|v| want.accepts(v)))
            && self
                .cookies
                .iter()
                .all(|(name, want)| request.cookies(name).any(|v| want.accepts(v)))
            && self
                .query
                .iter()
                .all(|(name, want)| request.query(name).any(|v| want.accepts(v)))
    }

    /// Every condition with what the request carried for it, in the order
    /// `/routes` lists them (headers, cookies, query; each by name).
    pub fn judge<'c>(&'c self, request: &RequestFacts<'_>) -> Vec<Judged<'c>> {
        fn one<'c, 'v>(
            source: Source,
            name: &'c str,
            expect: &'c MatchValue,
            want: &Expect,
            values: impl Iterator<Item = &'v [u8]>,
        ) -> Judged<'c> {
            let mut first = None;
            let mut met = None;
            for v in values {
                first.get_or_insert(v);
                if want.accepts(v) {
                    met = Some(v);
                    break;
                }
            }
            Judged {
                source,
                name,
                expect,
                got: met
                    .or(first)
                    .map(|v| String::from_utf8_lossy(v).into_owned()),
                held: met.is_some(),
            }
        }
        let mut out = Vec::with_capacity(self.len());
        for ((name, expect), (header, want)) in self.spec.headers.iter().zip(&*self.headers) {
            out.push(one(
                Source::Header,
                name.as_str(),
                expect,
                want,
                request.headers(header),
            ));
        }
        for ((name, expect), (raw, want)) in self.spec.cookies.iter().zip(&*self.cookies) {
            out.push(one(
                Source::Cookie,
                name,
                expect,
                want,
                request.cookies(raw),
            ));
        }
        for ((name, expect), (raw, want)) in self.spec.query.iter().zip(&*self.query) {
            out.push(one(Source::Query, name, expect, want, request.query(raw)));
        }
        out
    }
}

/// `{"headers": {...}, "cookies": {...}, "query": {...}}`, `"*"` for
/// present: how `/routes` and `explain` show a route's conditions.
pub fn to_json(spec: &MatchSpec) -> Value {
    fn table<N: AsRef<str>>(list: &[(N, MatchValue)]) -> Value {
        Value::Object(
            list.iter()
                .map(|(n, v)| (n.as_ref().to_string(), json!(v.to_string())))
                .collect::<Map<String, Value>>(),
        )
    }
    json!({
        "headers": table(&spec.headers),
        "cookies": table(&spec.cookies),
        "query": table(&spec.query),
    })
}

/// The parts of one request that conditions read. Built per request for
/// free (two references); what needs parsing is parsed on first use.
pub struct RequestFacts<'r> {
    header_map: &'r HeaderMap,
    raw_query: Option<&'r str>,
    cookie_pairs: OnceCell<Vec<(&'r [u8], &'r [u8])>>,
    query_pairs: OnceCell<Vec<QueryPair<'r>>>,
}

/// A query parameter's name and value, form-decoded (borrowed from the
/// request unless decoding changed them).
type QueryPair<'r> = (Cow<'r, [u8]>, Cow<'r, [u8]>);

impl<'r> RequestFacts<'r> {
    pub fn new(headers: &'r HeaderMap, query: Option<&'r str>) -> RequestFacts<'r> {
        RequestFacts {
            header_map: headers,
            raw_query: query,
            cookie_pairs: OnceCell::new(),
            query_pairs: OnceCell::new(),
        }
    }

    fn headers<'s>(&'s self, name: &HeaderName) -> impl Iterator<Item = &'s [u8]> + 's {
        self.header_map
            .get_all(name)
            .into_iter()
            .map(|v| v.as_bytes())
    }

    fn cookies<'s>(&'s self, name: &'s [u8]) -> impl Iterator<Item = &'s [u8]> + 's {
        self.cookie_pairs
            .get_or_init(|| keys::cookie_pairs(self.header_map).collect())
            .iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    fn query<'s>(&'s self, name: &'s [u8]) -> impl Iterator<Item = &'s [u8]> + 's {
        self.query_pairs
            .get_or_init(|| self.raw_query.map(query_pairs).unwrap_or_default())
            .iter()
            .filter(move |(n, _)| **n == *name)
            .map(|(_, v)| &**v)
    }
}

/// `a=1&b&c=x+y` as form-decoded (name, value) pairs; a parameter without
/// `=` has an empty value, empty pieces (`a=1&&b`) are skipped.
fn query_pairs(query: &str) -> Vec<QueryPair<'_>> {
    query
        .as_bytes()
        .split(|b| *b == b'&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (name, value) = match piece.iter().position(|b| *b == b'=') {
                Some(eq) => (&piece[..eq], &piece[eq + 1..]),
                None => (piece, &b""[..]),
            };
            (form_decode(name), form_decode(value))
        })
        .collect()
}

/// `+` as space and `%xx` decoded; a `%` not followed by two hex digits is
/// kept as written, as browsers and most frameworks do.
fn form_decode(raw: &[u8]) -> Cow<'_, [u8]> {
    if !raw.iter().any(|b| *b == b'%' || *b == b'+') {
        return Cow::Borrowed(raw);
    }
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                raw.get(i + 1).and_then(|b| hex(*b)),
                raw.get(i + 2).and_then(|b| hex(*b)),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn spec(
        headers: &[(&str, &str)],
        cookies: &[(&str, &str)],
        query: &[(&str, &str)],
    ) -> MatchSpec {
        let value = |v: &str| match v {
            "*" => MatchValue::Present,
            v => MatchValue::Exact(v.to_string()),
        };
        MatchSpec {
            headers: headers
                .iter()
                .map(|(n, v)| (HeaderName::from_bytes(n.as_bytes()).unwrap(), value(v)))
                .collect(),
            cookies: cookies
                .iter()
                .map(|(n, v)| (n.to_string(), value(v)))
                .collect(),
            query: query
                .iter()
                .map(|(n, v)| (n.to_string(), value(v)))
                .collect(),
        }
    }

    fn headers(list: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in list {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn query_is_form_decoded() {
        let pairs = query_pairs("a=1&&b&c=x+y%2Fz&d=%zz&e=%4");
        let text: Vec<(String, String)> = pairs
            .iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect();
        assert_eq!(
            text,
            [
                ("a".into(), "1".into()),
                ("b".into(), "".into()),
                ("c".into(), "x y/z".into()),
                ("d".into(), "%zz".into()),
                ("e".into(), "%4".into()),
            ]
        );
        assert!(matches!(form_decode(b"plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn any_value_under_the_name_may_meet_it() {
        let c = Conditions::compile(&spec(&[("x-team", "b")], &[("beta", "yes")], &[("v", "2")]));
        let h = headers(&[
            ("x-team", "a"),
            ("x-team", "b"),
            ("cookie", "beta=no"),
            ("cookie", "beta=yes"),
        ]);
        assert!(c.holds(&RequestFacts::new(&h, Some("v=1&v=2"))));
        assert!(!c.holds(&RequestFacts::new(&h, Some("v=1"))));
        assert!(!c.holds(&RequestFacts::new(&h, None)));
    }

    #[test]
    fn judge_says_what_the_request_carried() {
        let c = Conditions::compile(&spec(&[("x-canary", "1")], &[("beta", "*")], &[]));
        let h = headers(&[("x-canary", "0")]);
        let judged = c.judge(&RequestFacts::new(&h, None));
        assert_eq!(judged.len(), 2);
        assert_eq!(judged[0].got.as_deref(), Some("0"));
        assert!(!judged[0].held);
        assert_eq!(judged[1].got, None);
        assert!(!judged[1].held);
    }

    #[test]
    fn unparsed_until_asked() {
        let c = Conditions::compile(&spec(
            &[("x-canary", "1")],
            &[("beta", "yes")],
            &[("q", "*")],
        ));
        let h = headers(&[("cookie", "beta=yes")]);
        let facts = RequestFacts::new(&h, Some("q"));
        // The header fails first: neither cookies nor query are parsed.
        assert!(!c.holds(&facts));
        assert!(facts.cookie_pairs.get().is_none() && facts.query_pairs.get().is_none());
    }
}
