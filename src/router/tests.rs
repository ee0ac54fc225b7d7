//! Unit tests of `router`, in a file of their own so the module's
//! source reads as the code it is.

use super::*;

struct R(&'static str, Option<HostPattern>, Option<Vec<Method>>);

fn router(routes: &[R]) -> Router {
    Router::build(routes.iter().map(|r| RouteKey {
        prefix: r.0,
        host: r.1.as_ref(),
        methods: r.2.as_deref(),
        conditions: None,
    }))
}

fn exact(h: &str) -> Option<HostPattern> {
    Some(HostPattern::Exact(h.into()))
}
fn wild(h: &str) -> Option<HostPattern> {
    Some(HostPattern::Wildcard(h.into()))
}

fn get(r: &Router, host: Option<&str>, path: &str) -> Option<usize> {
    r.lookup(host, &Method::GET, path).map(|m| m.route)
}

#[test]
fn longest_prefix_on_segment_boundaries() {
    let r = router(&[
        R("/", None, None),
        R("/api", None, None),
        R("/api/orders", None, None),
    ]);
    assert_eq!(get(&r, None, "/api/orders"), Some(2));
    assert_eq!(get(&r, None, "/api/orders/"), Some(2));
    assert_eq!(get(&r, None, "/api/orders/42"), Some(2));
    assert_eq!(get(&r, None, "/api/ordersx"), Some(1));
    assert_eq!(get(&r, None, "/apix"), Some(0));
    assert_eq!(get(&r, None, "/"), Some(0));
    let m = r.lookup(None, &Method::GET, "/api/orders/42").unwrap();
    assert_eq!(m.prefix_len, "/api/orders".len());
    assert_eq!(r.lookup(None, &Method::GET, "/x").unwrap().prefix_len, 0);
}

#[test]
fn no_route() {
    let r = router(&[R("/api", None, None)]);
    assert_eq!(get(&r, None, "/"), None);
    assert_eq!(get(&r, None, "/apiary"), None);
}

#[test]
fn host_precedence() {
    let r = router(&[
        R("/", None, None),
        R("/", wild("example.com"), None),
        R("/", exact("shop.example.com"), None),
        R("/", wild("eu.example.com"), None),
    ]);
    assert_eq!(get(&r, Some("shop.example.com"), "/"), Some(2));
    assert_eq!(get(&r, Some("SHOP.Example.com:8080"), "/"), Some(2));
    assert_eq!(get(&r, Some("other.example.com"), "/"), Some(1));
    assert_eq!(get(&r, Some("a.b.example.com"), "/"), Some(1));
    assert_eq!(get(&r, Some("x.eu.example.com"), "/"), Some(3));
    assert_eq!(get(&r, Some("example.com"), "/"), Some(0));
    assert_eq!(get(&r, None, "/"), Some(0));
}

#[test]
fn longer_prefix_beats_host() {
    let r = router(&[R("/", exact("a.com"), None), R("/api", None, None)]);
    assert_eq!(get(&r, Some("a.com"), "/api/x"), Some(1));
}

#[test]
fn methods_fall_through() {
    let r = router(&[
        R("/api", None, None),
        R("/api/users", None, Some(vec![Method::GET, Method::HEAD])),
        R("/api/users", None, Some(vec![Method::DELETE])),
    ]);
    assert_eq!(
        r.lookup(None, &Method::GET, "/api/users/1").unwrap().route,
        1
    );
    assert_eq!(
        r.lookup(None, &Method::DELETE, "/api/users/1")
            .unwrap()
            .route,
        2
    );
    assert_eq!(
        r.lookup(None, &Method::POST, "/api/users/1").unwrap().route,
        0
    );
}

#[test]
fn methods_beat_no_methods_at_same_host() {
    let r = router(&[R("/a", None, None), R("/a", None, Some(vec![Method::GET]))]);
    assert_eq!(r.lookup(None, &Method::GET, "/a").unwrap().route, 1);
    assert_eq!(r.lookup(None, &Method::PUT, "/a").unwrap().route, 0);
}

#[test]
fn encoded_slash_is_one_segment() {
    let r = router(&[R("/a/b", None, None), R("/", None, None)]);
    assert_eq!(get(&r, None, "/a%2Fb"), Some(1));
    assert_eq!(get(&r, None, "/a/b"), Some(0));
}

/// `(prefix, methods, header conditions)`: the router's view of a route
/// with `[routes.match]` headers.
type Conditional = (&'static str, Option<Vec<Method>>, &'static [&'static str]);

fn with_conditions(routes: &[Conditional]) -> Router {
    let specs: Vec<Option<Arc<Conditions>>> = routes
        .iter()
        .map(|(_, _, headers)| {
            (!headers.is_empty()).then(|| {
                let spec = crate::config::MatchSpec {
                    headers: headers
                        .iter()
                        .map(|h| {
                            (
                                http::HeaderName::from_static(h),
                                crate::config::MatchValue::Present,
                            )
                        })
                        .collect(),
                    ..Default::default()
                };
                Arc::new(Conditions::compile(&spec))
            })
        })
        .collect();
    Router::build(routes.iter().zip(&specs).map(|((p, m, _), c)| RouteKey {
        prefix: p,
        host: None,
        methods: m.as_deref(),
        conditions: c.as_ref(),
    }))
}

fn get_with(r: &Router, method: Method, path: &str, headers: &[&'static str]) -> Option<usize> {
    let mut map = http::HeaderMap::new();
    for h in headers {
        map.insert(*h, http::HeaderValue::from_static("1"));
    }
    r.lookup_request(None, &method, path, &RequestFacts::new(&map, None))
        .map(|m| m.route)
}

#[test]
fn conditions_rank_after_methods_and_fall_through() {
    let r = with_conditions(&[
        ("/", None, &[]),
        ("/a", None, &[]),
        ("/a", None, &["x-one"]),
        ("/a", None, &["x-one", "x-two"]),
        ("/a", Some(vec![Method::GET]), &[]),
        ("/a/b", None, &["x-one"]),
    ]);
    assert_eq!(get_with(&r, Method::POST, "/a", &[]), Some(1));
    assert_eq!(get_with(&r, Method::POST, "/a", &["x-one"]), Some(2));
    assert_eq!(
        get_with(&r, Method::POST, "/a", &["x-one", "x-two"]),
        Some(3)
    );
    assert_eq!(
        get_with(&r, Method::GET, "/a", &["x-one", "x-two"]),
        Some(4)
    );
    assert_eq!(get_with(&r, Method::POST, "/a/b", &["x-one"]), Some(5));
    assert_eq!(get_with(&r, Method::POST, "/a/b", &["x-two"]), Some(1));
    // Routes with conditions never match a request without headers.
    assert_eq!(get(&r, None, "/a/b"), Some(4));
    assert_eq!(r.match_order(), [5, 4, 3, 2, 1, 0]);
    // Those passed over are noted in the order they were tried.
    let mut passed = Vec::new();
    let headers = http::HeaderMap::new();
    let facts = RequestFacts::new(&headers, None);
    let found = r.lookup_noting(None, &Method::POST, "/a/b", &facts, &mut |i| passed.push(i));
    assert_eq!(found.map(|m| m.route), Some(1));
    assert_eq!(passed, [5, 3, 2]);
}

#[test]
fn ipv6_host() {
    let r = router(&[R("/", exact("[::1]"), None)]);
    assert_eq!(get(&r, Some("[::1]:8080"), "/"), Some(0));
}
