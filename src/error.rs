//! The answers figway gives itself when it cannot or will not forward a
//! request (SPEC §4). Every kind maps to its status in one exhaustive match,
//! so a new kind without a status does not compile; the kind's name goes out
//! in `x-figway-error` and into logs.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};

use crate::body::ResponseBody;

pub static X_FIGWAY_ERROR: HeaderName = HeaderName::from_static("x-figway-error");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Connecting to the target failed (refused, unreachable, timed out).
    UpstreamConnect,
    /// The connection closed or reset before the response head.
    UpstreamReset,
    /// No response head within `request_timeout`.
    UpstreamTimeout,
    /// The request itself is unacceptable (path above root, bad escapes).
    BadRequest,
    /// CONNECT: figway is not a forward proxy. Reported as `bad_request`.
    MethodNotAllowed,
    NoRoute,
    /// Neither the route's upstream nor its fallback has a usable target.
    NoHealthyUpstream,
    /// The upstream's `max_in_flight` is reached and no fallback took over.
    CircuitOpen,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::UpstreamConnect,
        ErrorKind::UpstreamReset,
        ErrorKind::UpstreamTimeout,
        ErrorKind::BadRequest,
        ErrorKind::MethodNotAllowed,
        ErrorKind::NoRoute,
        ErrorKind::NoHealthyUpstream,
        ErrorKind::CircuitOpen,
    ];

    /// Position in [`ErrorKind::ALL`], for per-kind tables.
    pub fn index(self) -> usize {
        match self {
            ErrorKind::UpstreamConnect => 0,
            ErrorKind::UpstreamReset => 1,
            ErrorKind::UpstreamTimeout => 2,
            ErrorKind::BadRequest => 3,
            ErrorKind::MethodNotAllowed => 4,
            ErrorKind::NoRoute => 5,
            ErrorKind::NoHealthyUpstream => 6,
            ErrorKind::CircuitOpen => 7,
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::UpstreamConnect | ErrorKind::UpstreamReset => StatusCode::BAD_GATEWAY,
            ErrorKind::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::NoRoute => StatusCode::NOT_FOUND,
            ErrorKind::NoHealthyUpstream | ErrorKind::CircuitOpen => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The `x-figway-error` value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::UpstreamConnect => "upstream_connect",
            ErrorKind::UpstreamReset => "upstream_reset",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::BadRequest | ErrorKind::MethodNotAllowed => "bad_request",
            ErrorKind::NoRoute => "no_route",
            ErrorKind::NoHealthyUpstream => "no_healthy_upstream",
            ErrorKind::CircuitOpen => "circuit_open",
        }
    }

    fn body(self) -> &'static str {
        match self {
            ErrorKind::UpstreamConnect => "bad gateway: could not connect to the upstream\n",
            ErrorKind::UpstreamReset => {
                "bad gateway: the upstream closed the connection before answering\n"
            }
            ErrorKind::UpstreamTimeout => "gateway timeout: the upstream did not answer in time\n",
            ErrorKind::BadRequest => "bad request\n",
            ErrorKind::MethodNotAllowed => "method not allowed: figway is not a forward proxy\n",
            ErrorKind::NoRoute => "not found: no route matches this request\n",
            ErrorKind::NoHealthyUpstream => "service unavailable: no healthy upstream target\n",
            ErrorKind::CircuitOpen => {
                "service unavailable: too many requests in flight to the upstream\n"
            }
        }
    }

    pub fn response(self) -> Response<ResponseBody> {
        let mut response = Response::new(ResponseBody::full(Bytes::from_static(
            self.body().as_bytes(),
        )));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            X_FIGWAY_ERROR.clone(),
            HeaderValue::from_static(self.as_str()),
        );
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if self == ErrorKind::MethodNotAllowed {
            headers.insert(
                http::header::ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"),
            );
        }
        response
    }
}
