//! The route table: a trie of path segments whose nodes hold the routes of one
//! prefix, split by host condition. Lookup walks the request path once, down
//! to the deepest node it reaches, then back up through parents until a
//! route's host and methods accept the request, so its cost depends on the
//! path's depth and the host's label count, never on how many routes exist.
//!
//! The maps use FxHash: keys come from the config, not from clients, and
//! hashing a path segment is most of a lookup's cost.
//!
//! Precedence (SPEC §3, §12): longest prefix; at equal prefixes exact host,
//! then wildcard (longer suffix first), then no host; between equally
//! specific hosts a route listing methods before one without; then a route
//! with match conditions before one without, more conditions first; config
//! order last. A route whose methods or conditions exclude the request falls
//! through to the next candidate. Conditions are only asked of the
//! candidates of the nodes a lookup visits, so they do not make lookups
//! grow with the table either.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use http::Method;

use crate::config::HostPattern;
use crate::matching::{Conditions, RequestFacts};

/// What the router needs to know of a route.
#[derive(Clone, Copy)]
pub struct RouteKey<'a> {
    pub prefix: &'a str,
    pub host: Option<&'a HostPattern>,
    pub methods: Option<&'a [Method]>,
    pub conditions: Option<&'a Arc<Conditions>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    /// Index of the route as given to [`Router::build`].
    pub route: usize,
    /// Bytes of the request path covered by the route's prefix.
    pub prefix_len: usize,
}

#[derive(Debug, Default)]
pub struct Router {
    nodes: Vec<Node>,
    /// Route indices in match order (see [`precedence`]), for `/routes`
    /// and `figway check`.
    order: Box<[usize]>,
    /// Whether any route names a host: when none does (the usual table
    /// behind one hostname), lookups skip the host's lower-casing.
    hosts: bool,
}

/// The match order (SPEC §3, §7, §12) as a sort key: longer prefix (in
/// bytes) first; at equal prefixes exact host, then wildcard (longer suffix
/// first), then no host; then routes listing methods before those without;
/// then more match conditions before fewer (none is fewest). A stable sort
/// by it leaves config order last. `build` orders each
/// node's candidates by it, so lookups and listings cannot disagree.
fn precedence(route: &RouteKey<'_>) -> impl Ord {
    let (host_rank, suffix) = match route.host {
        Some(HostPattern::Exact(_)) => (0u8, 0),
        Some(HostPattern::Wildcard(s)) => (1, s.len()),
        None => (2, 0),
    };
    (
        std::cmp::Reverse(route.prefix.len()),
        host_rank,
        std::cmp::Reverse(suffix),
        route.methods.is_none(),
        std::cmp::Reverse(route.conditions.map_or(0, |c| c.len())),
    )
}

#[derive(Debug, Default)]
struct Node {
    parent: Option<u32>,
    /// Length of `/a/b` for this node; the root is 0 so `/` strips nothing.
    prefix_len: usize,
    children: FxHashMap<Box<str>, u32>,
    exact: FxHashMap<Box<str>, Vec<Entry>>,
    /// Keyed by the suffix after `*.`.
    wildcard: FxHashMap<Box<str>, Vec<Entry>>,
    any_host: Vec<Entry>,
}

impl Node {
    fn has_routes(&self) -> bool {
        !(self.exact.is_empty() && self.wildcard.is_empty() && self.any_host.is_empty())
    }
}

#[derive(Debug)]
struct Entry {
    methods: Option<Box<[Method]>>,
    /// Shared with the route in the snapshot, which shows them.
    conditions: Option<Arc<Conditions>>,
    route: usize,
}

/// Longest host we lower-case on the stack; DNS names stop at 253 bytes.
const MAX_HOST: usize = 256;

impl Router {
    pub fn build<'a>(routes: impl IntoIterator<Item = RouteKey<'a>>) -> Router {
        let mut router = Router {
            nodes: vec![Node::default()],
            order: Box::default(),
            hosts: false,
        };
        let routes: Vec<RouteKey<'a>> = routes.into_iter().collect();
        let mut order: Vec<usize> = (0..routes.len()).collect();
        order.sort_by_key(|i| precedence(&routes[*i]));
        router.order = order.into_boxed_slice();
        router.hosts = routes.iter().any(|r| r.host.is_some());
        for (index, route) in routes.iter().enumerate() {
            let node = router.insert_path(route.prefix);
            let entry = Entry {
                methods: route.methods.map(|m| m.to_vec().into_boxed_slice()),
                conditions: route.conditions.cloned(),
                route: index,
            };
            let node = &mut router.nodes[node];
            let list = match route.host {
                Some(HostPattern::Exact(h)) => node.exact.entry(h.as_str().into()).or_default(),
                Some(HostPattern::Wildcard(s)) => {
                    node.wildcard.entry(s.as_str().into()).or_default()
                }
                None => &mut node.any_host,
            };
            list.push(entry);
        }
        // Within one list prefix and host are equal: the precedence puts
        // routes listing methods first, then those with more conditions,
        // config order among the rest.
        for node in &mut router.nodes {
            let lists = node
                .exact
                .values_mut()
                .chain(node.wildcard.values_mut())
                .chain(std::iter::once(&mut node.any_host));
            for list in lists {
                list.sort_by_key(|e| precedence(&routes[e.route]));
            }
        }
        router
    }

    /// Route indices in match order.
    pub fn match_order(&self) -> &[usize] {
        &self.order
    }

    fn insert_path(&mut self, prefix: &str) -> usize {
        let mut node = 0usize;
        let mut len = 0;
        for segment in segments(prefix) {
            len += 1 + segment.len();
            node = match self.nodes[node].children.get(segment) {
                Some(child) => *child as usize,
                None => {
                    let child = self.nodes.len();
                    self.nodes.push(Node {
                        parent: Some(node as u32),
                        prefix_len: len,
                        ..Node::default()
                    });
                    self.nodes[node]
                        .children
                        .insert(segment.into(), child as u32);
                    child
                }
            };
        }
        node
    }

    /// `host` may carry a port and any case; `path` must be normalised.
    /// A request with no headers and no query: routes with conditions are
    /// passed over (for tools and benches; the proxy uses
    /// [`Router::lookup_request`]).
    pub fn lookup(&self, host: Option<&str>, method: &Method, path: &str) -> Option<Match> {
        let headers = http::HeaderMap::new();
        self.lookup_request(host, method, path, &RequestFacts::new(&headers, None))
    }

    /// As [`Router::lookup`], checking match conditions against `request`.
    pub fn lookup_request(
        &self,
        host: Option<&str>,
        method: &Method,
        path: &str,
        request: &RequestFacts<'_>,
    ) -> Option<Match> {
        self.lookup_noting(host, method, path, request, &mut |_| {})
    }

    /// As [`Router::lookup_request`], calling `passed_over` with each route
    /// whose prefix, host and methods accepted the request but whose
    /// conditions did not, in the order they were tried (for `explain`).
    pub fn lookup_noting(
        &self,
        host: Option<&str>,
        method: &Method,
        path: &str,
        request: &RequestFacts<'_>,
        passed_over: &mut impl FnMut(usize),
    ) -> Option<Match> {
        let mut buf = [0u8; MAX_HOST];
        let host = host
            .filter(|_| self.hosts)
            .and_then(|h| lower_host(h, &mut buf));
        let mut node = 0usize;
        for segment in segments(path) {
            match self.nodes[node].children.get(segment) {
                Some(child) => node = *child as usize,
                None => break,
            }
        }
        loop {
            let n = &self.nodes[node];
            if n.has_routes() {
                if let Some(route) = n.pick(host, method, request, passed_over) {
                    return Some(Match {
                        route,
                        prefix_len: n.prefix_len,
                    });
                }
            }
            node = n.parent? as usize;
        }
    }

    pub fn len_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Whether any route names a host: when none does, a lookup need not
    /// be told the request's.
    pub fn matches_hosts(&self) -> bool {
        self.hosts
    }
}

impl Node {
    fn pick(
        &self,
        host: Option<&str>,
        method: &Method,
        request: &RequestFacts<'_>,
        passed_over: &mut impl FnMut(usize),
    ) -> Option<usize> {
        let mut pick_in = |list: &[Entry]| pick_entry(list, method, request, passed_over);
        if let Some(host) = host {
            if let Some(route) = self.exact.get(host).and_then(|l| pick_in(l)) {
                return Some(route);
            }
            if !self.wildcard.is_empty() {
                // Suffixes after each dot, longest first: a.b.example.com
                // tries b.example.com, example.com, com.
                for (i, b) in host.bytes().enumerate() {
                    if b == b'.' {
                        if let Some(route) =
                            self.wildcard.get(&host[i + 1..]).and_then(|l| pick_in(l))
                        {
                            return Some(route);
                        }
                    }
                }
            }
        }
        pick_in(&self.any_host)
    }
}

/// The first entry of `list` (in precedence order) whose methods and
/// conditions accept the request.
fn pick_entry(
    list: &[Entry],
    method: &Method,
    request: &RequestFacts<'_>,
    passed_over: &mut impl FnMut(usize),
) -> Option<usize> {
    for e in list {
        if !e.methods.as_ref().is_none_or(|m| m.contains(method)) {
            continue;
        }
        match &e.conditions {
            Some(c) if !c.holds(request) => passed_over(e.route),
            _ => return Some(e.route),
        }
    }
    None
}

/// Path segments after the leading `/`; the root `/` has none.
fn segments(path: &str) -> impl Iterator<Item = &str> {
    let rest = path.strip_prefix('/').unwrap_or(path);
    let rest = if rest.is_empty() { None } else { Some(rest) };
    rest.into_iter().flat_map(|r| r.split('/'))
}

/// Strips the port and lower-cases, into `buf` without allocating when
/// there is an upper-case letter, else as it is.
fn lower_host<'b>(host: &'b str, buf: &'b mut [u8; MAX_HOST]) -> Option<&'b str> {
    let bytes = host.as_bytes();
    let name = if host.starts_with('[') {
        // [v6]:port
        &host[..bytes
            .iter()
            .position(|b| *b == b']')
            .map_or(host.len(), |i| i + 1)]
    } else {
        // Bytewise: a `str` pattern search costs several times more on
        // names this short.
        &host[..bytes.iter().rposition(|b| *b == b':').unwrap_or(host.len())]
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > MAX_HOST {
        return None;
    }
    if !name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Some(name);
    }
    let out = &mut buf[..name.len()];
    out.copy_from_slice(name.as_bytes());
    out.make_ascii_lowercase();
    std::str::from_utf8(out).ok()
}

#[cfg(test)]
mod tests;
