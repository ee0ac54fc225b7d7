//! `figway explain` (SPEC §1): which route and upstream a request would
//! get, as one JSON object (`--json`) or the table rendering of it. The
//! decision is the proxy's own (`decision::decide_noting`, the sticky
//! side from `decision::sticky_side`), made on the compiled table, so
//! what explain prints is what the proxy does; routes passed over for a
//! failed `[routes.match]` condition are listed with what failed. A
//! malformed method, URL or header is a bad command line (exit 2).

use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use serde_json::{json, Value};

use crate::config::{self, KeySource};
use crate::decision::{decide_noting, Decision};
use crate::matching::RequestFacts;
use crate::state::{Route, Snapshot};

/// The request `explain` asks about, from its command line.
struct Asked {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    client: Option<IpAddr>,
}

pub(super) fn explain(
    path: &Path,
    method: &str,
    url: &str,
    raw_headers: &[String],
    client: Option<IpAddr>,
    as_json: bool,
) -> ExitCode {
    let asked = match parse_request(method, url, raw_headers, client) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("error: {msg}");
            return ExitCode::from(2);
        }
    };
    let snapshot = match compiled_table(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut passed_over = Vec::new();
    let decision = decide_noting(
        &snapshot,
        &asked.method,
        &asked.uri,
        &asked.headers,
        &mut |i| passed_over.push(i),
    );
    let passed_over = passed_over_json(&snapshot, &passed_over, &asked);
    let out = match &decision {
        Ok(d) => chosen_json(&snapshot, d, &asked, passed_over),
        Err(_) => unrouted_json(passed_over),
    };
    // The object keeps SPEC §1's shape; a request figway would refuse
    // outright is said on stderr.
    if let Err(kind @ crate::error::ErrorKind::BadRequest) = decision {
        eprintln!(
            "note: figway answers this request itself: 400 {}",
            kind.as_str()
        );
    }
    if as_json {
        outln!("{out}");
    } else {
        out!("{}", crate::table::render_explain(&out));
    }
    ExitCode::SUCCESS
}

/// The route table as the proxy would compile it from the config at
/// `path`; an invalid config is said on stderr and is exit 1.
fn compiled_table(path: &Path) -> Result<Arc<Snapshot>, ExitCode> {
    let loaded = match config::load(path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return Err(ExitCode::from(1));
        }
    };
    Ok(Arc::new(crate::state::compile::compile(
        &loaded,
        &crate::upstream::Registry::default(),
    )))
}

/// The method, URL and `Name: value` headers of the command line, or what
/// is wrong with the first that does not parse.
fn parse_request(
    method: &str,
    url: &str,
    raw_headers: &[String],
    client: Option<IpAddr>,
) -> Result<Asked, String> {
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Err(format!("invalid method {method:?}"));
    };
    let Ok(uri) = url.parse::<Uri>() else {
        return Err(format!("invalid URL {url:?}"));
    };
    let mut headers = HeaderMap::new();
    for h in raw_headers {
        let Some((name, value)) = h.split_once(':') else {
            return Err(format!("invalid header {h:?}: expected 'Name: value'"));
        };
        match (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value.trim()),
        ) {
            (Ok(n), Ok(v)) => {
                headers.append(n, v);
            }
            _ => return Err(format!("invalid header {h:?}")),
        }
    }
    Ok(Asked {
        method,
        uri,
        headers,
        client,
    })
}

/// `passed_over`: each route (by index) the request would have taken but
/// for a `[routes.match]` condition, with the conditions that failed.
fn passed_over_json(snapshot: &Snapshot, indices: &[usize], asked: &Asked) -> Vec<Value> {
    let request = RequestFacts::new(&asked.headers, asked.uri.query());
    indices
        .iter()
        .map(|i| &snapshot.routes[*i])
        .map(|r| {
            let failed: Vec<_> = r
                .conditions
                .iter()
                .flat_map(|c| c.judge(&request))
                .filter(|j| !j.held)
                .map(|j| {
                    json!({
                        "source": j.source.as_str(),
                        "name": j.name,
                        "expect": j.expect.to_string(),
                        "got": j.got,
                    })
                })
                .collect();
            json!({"name": &*r.name, "failed": failed})
        })
        .collect()
}

/// The object for a request a route takes.
fn chosen_json(
    snapshot: &Snapshot,
    d: &Decision<'_>,
    asked: &Asked,
    passed_over: Vec<Value>,
) -> Value {
    let route = d.route;
    let name = |i: usize| &*snapshot.upstreams[i].name;
    let shadow = route
        .shadow
        .as_ref()
        .filter(|sh| sh.mirrors(&asked.method))
        .map(|sh| json!({"to": name(sh.spec.upstream), "sample": sh.spec.sample}));
    json!({
        "route": {
            "name": &*route.name,
            "prefix": &*route.prefix,
            "host": route.host.as_ref().map(|h| h.to_string()),
            "methods": route.methods.as_ref().map(|m| m.iter().map(|m| m.as_str()).collect::<Vec<_>>()),
            // Every condition held, or the route was not chosen.
            "match": route.conditions.as_ref().map(|c| crate::matching::to_json(c.spec())),
        },
        "path_forwarded": d.path_forwarded_str(&asked.uri),
        "upstreams": crate::admin::split_weights(snapshot, route).into_iter().map(|(to, weight)| json!({"name": &*to, "weight": weight})).collect::<Vec<_>>(),
        "sticky": sticky_json(snapshot, route, asked),
        "fallback": route.fallback.map(name),
        "shadow": shadow,
        "passed_over": passed_over,
    })
}

/// `sticky`: the route's sticky key, its value in this request and the
/// upstream that value chooses, by the same key and bucket functions the
/// proxy uses; without `--client`, a client_ip key counts as absent.
fn sticky_json(snapshot: &Snapshot, route: &Route, asked: &Asked) -> Option<Value> {
    let source = route.sticky.as_ref()?;
    let mut buf = [0u8; 16];
    let value = match (source, asked.client) {
        (KeySource::ClientIp, None) => None,
        (_, c) => crate::keys::key_value(
            source,
            &asked.headers,
            c.unwrap_or(IpAddr::from([0, 0, 0, 0])),
            &mut buf,
        )
        .map(|v| v.to_vec()),
    };
    let chosen = value.as_ref().map(|v| {
        let side = crate::decision::sticky_side(route, v);
        &*snapshot.upstreams[route.sides[side].upstream].name
    });
    // The side comes from the bytes the proxy hashes; a client address is
    // shown as the address those bytes encode (a v4-mapped v6 one as v4,
    // as it is hashed), not as them.
    let shown = match (source, asked.client) {
        (KeySource::ClientIp, Some(c)) => value.as_ref().map(|_| c.to_canonical().to_string()),
        _ => value.map(|v| String::from_utf8_lossy(&v).into_owned()),
    };
    Some(json!({
        "key": source.to_string(),
        "value": shown,
        "chosen": chosen,
    }))
}

/// The object for a request no route takes: SPEC §1's shape, empty.
fn unrouted_json(passed_over: Vec<Value>) -> Value {
    json!({
        "route": null,
        "path_forwarded": null,
        "upstreams": [],
        "sticky": null,
        "fallback": null,
        "shadow": null,
        "passed_over": passed_over,
    })
}
