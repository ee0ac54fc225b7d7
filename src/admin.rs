//! The admin API on `[admin] address` (SPEC §7):
//!
//! - `GET /metrics`: Prometheus text format 0.0.4
//! - `GET /healthz`: 200 `{"status": "ok"}` while the process runs
//! - `GET /readyz`: 200 `{"status": "ok"}` when serving, 503
//!   `{"status": "draining"}` while draining
//! - `GET /config`: version (sha256 of the file), loaded_at, path, last_error
//! - `GET /routes`: the compiled table in match order
//! - `GET /upstreams`: each upstream's targets with health, ejection and
//!   in-flight counts
//! - `GET /ramps`: each ramp's state on this instance (SPEC §11)
//! - `GET /inventory`: the legacy inventory (SPEC §11); `?route=NAME`
//!   narrows to one route, `?top=N` (a positive integer, else 400) to N
//!   paths per route; other query keys are ignored
//! - `POST /reload`: reload the config file now; 200 `{"version"}` or 422
//!   `{"errors": [...]}`
//!
//! Every answer but `/metrics` is `application/json`, errors included:
//! unknown paths are 404 `{"error": "not found"}`, other methods on known
//! paths 405 `{"error": "method not allowed"}` with `allow`. Admin requests
//! are not proxied, not access-logged and do not count as client connections.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::clock;
use crate::reload;
use crate::state::{Route, Shared, Snapshot};

/// Serves the admin API until the task is dropped.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let builder = Arc::new(hyper_util::server::conn::auto::Builder::new(
        TokioExecutor::new(),
    ));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(answer(&req, &shared).await) }
            });
            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

async fn answer(req: &Request<Incoming>, shared: &Arc<Shared>) -> Response<Full<Bytes>> {
    let known = [
        "/metrics",
        "/healthz",
        "/readyz",
        "/config",
        "/routes",
        "/upstreams",
        "/ramps",
        "/inventory",
        "/reload",
    ];
    let path = req.uri().path();
    if !known.contains(&path) {
        return fixed_json(StatusCode::NOT_FOUND, NOT_FOUND);
    }
    if path == "/reload" {
        if req.method() != Method::POST {
            return method_not_allowed("POST");
        }
        return match reload::reload(shared, reload::Trigger::Admin).await {
            reload::Outcome::Applied { version } | reload::Outcome::Unchanged { version } => {
                json_response(&json!({ "version": version }))
            }
            reload::Outcome::Rejected { errors } => {
                let mut r = json_response(&json!({ "errors": errors }));
                *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
                r
            }
        };
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return method_not_allowed("GET, HEAD");
    }
    match path {
        "/healthz" => fixed_json(StatusCode::OK, STATUS_OK),
        "/readyz" if shared.draining.load(Ordering::Relaxed) => {
            fixed_json(StatusCode::SERVICE_UNAVAILABLE, STATUS_DRAINING)
        }
        "/readyz" => fixed_json(StatusCode::OK, STATUS_OK),
        "/config" => {
            let status = shared
                .status
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            json_response(&json!({
                "version": status.version,
                "loaded_at": crate::timefmt::rfc3339(status.loaded_at),
                "path": status.path.display().to_string(),
                "last_error": status.last_error,
            }))
        }
        "/upstreams" => json_response(&upstreams_json(&shared.snapshot.load())),
        "/ramps" => json_response(&ramps_json(&shared.snapshot.load())),
        "/inventory" => inventory(req.uri().query(), shared),
        "/metrics" => {
            let body = shared
                .snapshot
                .load()
                .render_metrics(&shared.registry.metrics);
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(prometheus::TEXT_FORMAT),
            );
            r
        }
        _ => json_response(&routes_json(&shared.snapshot.load())),
    }
}

pub fn upstreams_json(snapshot: &Snapshot) -> Value {
    let now = clock::now_ms();
    let mut out = serde_json::Map::new();
    for u in snapshot.upstreams.iter() {
        let targets: Vec<Value> = u
            .targets
            .iter()
            .zip(u.urls.iter().zip(u.weights.iter()))
            .map(|(t, (url, weight))| {
                let until = t.ejected_until.load(Ordering::Relaxed);
                json!({
                    "url": &**url,
                    "address": &*t.authority,
                    "weight": weight,
                    "healthy": t.healthy.load(Ordering::Relaxed),
                    "ejected_until": (until > now).then(|| crate::timefmt::rfc3339(clock::to_system(until))),
                    "in_flight": t.in_flight.load(Ordering::Relaxed),
                })
            })
            .collect();
        out.insert(
            u.name.to_string(),
            json!({
                "legacy": u.legacy,
                "balance": u.balance.as_str(),
                "in_flight": u.shared.in_flight.load(Ordering::Relaxed),
                "breaker_open": u.breaker_open(),
                "targets": targets,
            }),
        );
    }
    Value::Object(out)
}

/// `GET /ramps`: `{"<route>": {...}}` for every route with a ramp, `{}`
/// without.
pub fn ramps_json(snapshot: &Snapshot) -> Value {
    let mut out = serde_json::Map::new();
    for r in snapshot.routes.iter() {
        if let Some(ramp) = &r.ramp {
            let to = &snapshot.upstreams[r.sides[ramp.spec.to].upstream].name;
            out.insert(r.name.to_string(), ramp.json(to));
        }
    }
    Value::Object(out)
}

/// A route's split as `/routes` and `explain` show it: each side's
/// upstream and weight; once a ramp's `start` has passed, the weights in
/// force as percentages (SPEC §11).
pub fn split_weights(snapshot: &Snapshot, route: &Route) -> Vec<(Box<str>, Value)> {
    let in_force = route.ramp.as_ref().and_then(|r| r.shares_now());
    route
        .sides
        .iter()
        .enumerate()
        .map(|(i, side)| {
            let weight = match &in_force {
                Some(shares) => crate::ramp::number(shares[i]),
                None => json!(side.weight),
            };
            (snapshot.upstreams[side.upstream].name.clone(), weight)
        })
        .collect()
}

/// `GET /inventory`: the pairs of the table in service, narrowed by
/// `?route=` and cut by `?top=`.
fn inventory(query: Option<&str>, shared: &Shared) -> Response<Full<Bytes>> {
    let mut route: Option<String> = None;
    let mut top = None;
    for param in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        match key {
            "route" => route = Some(percent_decoded(value)),
            "top" => match value.parse::<usize>() {
                Ok(n) if n > 0 => top = Some(n),
                _ => {
                    let mut r = json_response(&json!({
                        "error": format!("top: expected a positive integer, found {:?}", percent_decoded(value)),
                    }));
                    *r.status_mut() = StatusCode::BAD_REQUEST;
                    return r;
                }
            },
            _ => {}
        }
    }
    let snapshot = shared.snapshot.load();
    let pairs = snapshot
        .routes
        .iter()
        .filter(|r| route.as_deref().is_none_or(|name| *r.name == *name))
        .flat_map(|r| {
            r.inventory
                .iter()
                .map(|(u, pair)| (&*r.name, &*snapshot.upstreams[*u].name, &**pair))
        });
    json_response(&shared.registry.inventory.report(pairs, top))
}

/// A query value with its `%XX` escapes decoded (route names default to
/// their prefix, whose `/` a client may have escaped); an invalid escape
/// stays as it is, and bytes that are not UTF-8 become U+FFFD.
fn percent_decoded(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit() => {
                std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            }
            _ => None,
        };
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Routes in the order the router tries them (its precedence rule).
pub fn match_order(snapshot: &Snapshot) -> impl Iterator<Item = &Route> {
    snapshot
        .router
        .match_order()
        .iter()
        .map(|i| &snapshot.routes[*i])
}

pub fn routes_json(snapshot: &Snapshot) -> Value {
    let routes: Vec<Value> = match_order(snapshot)
        .map(|r| {
            json!({
                "name": &*r.name,
                "prefix": &*r.prefix,
                "host": r.host.as_ref().map(|h| h.to_string()),
                "methods": r.methods.as_ref().map(|m| m.iter().map(|m| m.as_str()).collect::<Vec<_>>()),
                "to": (!r.split).then(|| &*snapshot.upstreams[r.sides[0].upstream].name),
                "split": r.split.then(|| split_weights(snapshot, r).into_iter().map(|(to, weight)| json!({
                    "to": &*to,
                    "weight": weight,
                })).collect::<Vec<_>>()),
                "sticky": r.sticky.as_ref().map(|k| k.to_string()),
                "fallback": r.fallback.map(|f| &*snapshot.upstreams[f].name),
                "shadow": r.shadow.as_ref().map(|sh| json!({
                    "to": &*snapshot.upstreams[sh.spec.upstream].name,
                    "sample": sh.spec.sample,
                    "compare": sh.spec.compare,
                })),
                "strip_prefix": r.strip_prefix,
                "rewrite_prefix": r.rewrite_prefix.as_deref(),
                "match": r.conditions.as_ref().map(|c| crate::matching::to_json(c.spec())),
                "headers": r.headers.as_deref().map(header_edits_json),
                "rate_limit": r.rate_limit.as_ref().map(|l| {
                    let spec = l.limiter.spec();
                    json!({"rate": spec.rate, "burst": spec.burst, "key": spec.key.to_string()})
                }),
            })
        })
        .collect();
    Value::Array(routes)
}

/// `[routes.headers]` as written, every list present (empty when unset).
fn header_edits_json(e: &crate::config::HeaderEdits) -> Value {
    fn names(list: &[http::HeaderName]) -> Vec<&str> {
        list.iter().map(|n| n.as_str()).collect()
    }
    let sets = |list: &[(http::HeaderName, HeaderValue)]| {
        list.iter()
            .map(|(n, v)| {
                let text = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (n.as_str().to_string(), Value::String(text))
            })
            .collect::<serde_json::Map<_, _>>()
    };
    json!({
        "request_remove": names(&e.request_remove),
        "request_set": sets(&e.request_set),
        "response_remove": names(&e.response_remove),
        "response_set": sets(&e.response_set),
    })
}

// Fixed answers, written out once: probes call `/healthz` and `/readyz`
// every few seconds, for ever. `status` is "ok" whenever the probe passes.
const STATUS_OK: &str = "{\"status\": \"ok\"}\n";
const STATUS_DRAINING: &str = "{\"status\": \"draining\"}\n";
const NOT_FOUND: &str = "{\"error\": \"not found\"}\n";
const NOT_ALLOWED: &str = "{\"error\": \"method not allowed\"}\n";

fn fixed_json(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// 405 with the methods the path takes (`allow` is required on a 405).
fn method_not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut r = fixed_json(StatusCode::METHOD_NOT_ALLOWED, NOT_ALLOWED);
    r.headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static(allow));
    r
}

fn json_response(value: &Value) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}
