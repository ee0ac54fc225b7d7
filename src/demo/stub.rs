//! A stub upstream for `figway demo`, the examples and the tests: a small
//! hyper HTTP/1.1 server that answers every request with JSON saying who
//! answered (`{"service":"monolith","method":"GET","path":"/api/users/7",
//! "query":null,"version":"1.0"}`) and an `x-served-by` header, so that a
//! split, a fallback or a hot reload is visible in any answer. `GET /health`
//! answers 200 for figway's active health checks. Constant fields set with
//! [`Stub::with_field`] are how one service answers slightly differently
//! from another (the demo's extracted `search` says `"version": "2.0"`
//! where the monolith says `"1.0"`, so a shadow compare counts a mismatch).
//!
//! It is deliberately not instrumented: tests that must see what a backend
//! received use `tests/support`'s `Backend`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// The header every stub answer carries: the stub's name.
pub const SERVED_BY: &str = "x-served-by";

/// The path figway's health checks ask for (`[upstreams.NAME.health] path`).
pub const HEALTH_PATH: &str = "/health";

/// One stub service: its name and the constant fields of its answers.
#[derive(Debug, Clone)]
pub struct Stub {
    name: Arc<str>,
    /// Built once: every answer is this object plus the request's facts.
    fields: Map<String, Value>,
    /// The name as a header value, checked once (a name that is not a valid
    /// header value just goes without the header).
    served_by: Option<HeaderValue>,
}

impl Stub {
    pub fn new(name: &str) -> Stub {
        Stub {
            name: name.into(),
            fields: Map::new(),
            served_by: HeaderValue::from_str(name).ok(),
        }
    }

    /// Adds a constant field to every answer (and to `/health`).
    pub fn with_field(mut self, key: &str, value: impl Into<Value>) -> Stub {
        self.fields.insert(key.to_string(), value.into());
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The answer to one request head; pure, so it is tested without sockets.
    pub fn answer<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        let uri = req.uri();
        let health = uri.path() == HEALTH_PATH;
        let body = Body {
            service: &self.name,
            status: health.then_some("ok"),
            method: (!health).then(|| req.method().as_str()),
            path: (!health).then(|| uri.path()),
            query: (!health).then(|| uri.query()),
            fields: &self.fields,
        };
        // Serialising borrowed strings and JSON values cannot fail.
        let mut text = serde_json::to_string(&body).unwrap_or_default();
        text.push('\n'); // so that `curl` leaves the prompt on a line of its own
        let mut response = Response::new(Full::new(Bytes::from(text)));
        *response.status_mut() = StatusCode::OK;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(v) = &self.served_by {
            headers.insert(SERVED_BY, v.clone());
        }
        response
    }

    /// Serves on `listener` until `shutdown` resolves; connections still
    /// open then are closed (a stub has nothing in flight worth waiting for:
    /// figway drains before the demo stops its stubs).
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let stub = Arc::new(self);
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    // Out of file descriptors, say: the next accept may work.
                    Err(e) => {
                        tracing::debug!(stub = %stub.name, error = %e, "stub accept failed");
                        continue;
                    }
                },
                Some(_) = connections.join_next() => continue,
                _ = &mut shutdown => break,
            };
            let stub = stub.clone();
            connections.spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let answer = stub.answer(&req);
                    async move { Ok::<_, Infallible>(answer) }
                });
                // A client that goes away mid-request is no error worth a line.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }
}

/// An answer's JSON, in this key order: who answered first.
#[derive(Serialize)]
struct Body<'a> {
    service: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    /// `Some(None)` is a request without a query: `"query": null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<Option<&'a str>>,
    #[serde(flatten)]
    fields: &'a Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn json(response: Response<Full<Bytes>>) -> Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn says_who_answered_and_what_was_asked() {
        let stub = Stub::new("monolith").with_field("version", "1.0");
        let req = Request::get("/api/users/7?x=1").body(()).unwrap();
        let response = stub.answer(&req);
        assert_eq!(response.headers()[SERVED_BY], "monolith");
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            "{\"service\":\"monolith\",\"method\":\"GET\",\"path\":\"/api/users/7\",\"query\":\"x=1\",\"version\":\"1.0\"}\n"
        );
    }

    #[tokio::test]
    async fn health_is_200_with_the_name() {
        let response = Stub::new("users").answer(&Request::get(HEALTH_PATH).body(()).unwrap());
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            json(response).await,
            serde_json::json!({"service": "users", "status": "ok"})
        );
    }
}
