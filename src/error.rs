//! Why figway answers a request itself (SPEC §4). Every kind maps to its
//! status in one exhaustive match, so a new kind without a status does not
//! compile; the kind's name goes out in `x-figway-error` and into logs. The
//! answers themselves are built in `proxy::respond`.

use http::header::HeaderName;
use http::StatusCode;

pub static X_FIGWAY_ERROR: HeaderName = HeaderName::from_static("x-figway-error");

/// The status logged for requests cut at `drain_timeout` (nginx's 444).
pub const DRAIN_CUT: StatusCode = match StatusCode::from_u16(444) {
    Ok(s) => s,
    Err(_) => StatusCode::SERVICE_UNAVAILABLE,
};

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
    /// The request's body framing is ambiguous (both Content-Length and
    /// Transfer-Encoding, or a Transfer-Encoding other than `chunked`).
    /// Reported as `bad_request`; the answer closes the connection, since
    /// where this request ends, and so where the next begins, is unknown.
    BadFraming,
    /// CONNECT: figway is not a forward proxy. Reported as `bad_request`.
    MethodNotAllowed,
    NoRoute,
    /// Neither the route's upstream nor its fallback has a usable target.
    NoHealthyUpstream,
    /// The upstream's `max_in_flight` is reached and no fallback took over.
    CircuitOpen,
    /// The route's rate limit has no token for this request (SPEC §12).
    RateLimited,
    /// figway cut the request when its drain ran out of `drain_timeout`.
    /// Never an answer (the connection is closed); logged with status 444,
    /// nginx's "closed without response", so that dashboards tell a drain
    /// from a client that left (499).
    DrainTimeout,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 11] = [
        ErrorKind::UpstreamConnect,
        ErrorKind::UpstreamReset,
        ErrorKind::UpstreamTimeout,
        ErrorKind::BadRequest,
        ErrorKind::BadFraming,
        ErrorKind::MethodNotAllowed,
        ErrorKind::NoRoute,
        ErrorKind::NoHealthyUpstream,
        ErrorKind::CircuitOpen,
        ErrorKind::DrainTimeout,
        ErrorKind::RateLimited,
    ];

    /// Position in [`ErrorKind::ALL`], for per-kind tables.
    pub fn index(self) -> usize {
        match self {
            ErrorKind::UpstreamConnect => 0,
            ErrorKind::UpstreamReset => 1,
            ErrorKind::UpstreamTimeout => 2,
            ErrorKind::BadRequest => 3,
            ErrorKind::BadFraming => 4,
            ErrorKind::MethodNotAllowed => 5,
            ErrorKind::NoRoute => 6,
            ErrorKind::NoHealthyUpstream => 7,
            ErrorKind::CircuitOpen => 8,
            ErrorKind::DrainTimeout => 9,
            ErrorKind::RateLimited => 10,
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::UpstreamConnect | ErrorKind::UpstreamReset => StatusCode::BAD_GATEWAY,
            ErrorKind::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::BadRequest | ErrorKind::BadFraming => StatusCode::BAD_REQUEST,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::NoRoute => StatusCode::NOT_FOUND,
            ErrorKind::NoHealthyUpstream | ErrorKind::CircuitOpen => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorKind::DrainTimeout => DRAIN_CUT,
            ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The `grpc-status` a gRPC client gets instead (SPEC §4): 14
    /// UNAVAILABLE for every 502/503 kind, 4 DEADLINE_EXCEEDED for a
    /// timeout, 12 UNIMPLEMENTED for no route, 8 RESOURCE_EXHAUSTED for a
    /// rate limit; the rest as gRPC maps their
    /// HTTP statuses (400 → 13 INTERNAL).
    pub fn grpc_status(self) -> &'static str {
        match self {
            ErrorKind::UpstreamConnect
            | ErrorKind::UpstreamReset
            | ErrorKind::NoHealthyUpstream
            | ErrorKind::CircuitOpen
            | ErrorKind::DrainTimeout => "14",
            ErrorKind::UpstreamTimeout => "4",
            ErrorKind::NoRoute => "12",
            ErrorKind::RateLimited => "8",
            ErrorKind::BadRequest | ErrorKind::BadFraming | ErrorKind::MethodNotAllowed => "13",
        }
    }

    /// The `x-figway-error` value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::UpstreamConnect => "upstream_connect",
            ErrorKind::UpstreamReset => "upstream_reset",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::BadRequest | ErrorKind::BadFraming | ErrorKind::MethodNotAllowed => {
                "bad_request"
            }
            ErrorKind::NoRoute => "no_route",
            ErrorKind::NoHealthyUpstream => "no_healthy_upstream",
            ErrorKind::CircuitOpen => "circuit_open",
            ErrorKind::DrainTimeout => "drain_timeout",
            ErrorKind::RateLimited => "rate_limited",
        }
    }

    /// The short text body of figway's own answer.
    pub fn message(self) -> &'static str {
        match self {
            ErrorKind::UpstreamConnect => "bad gateway: could not connect to the upstream\n",
            ErrorKind::UpstreamReset => {
                "bad gateway: the upstream closed the connection before answering\n"
            }
            ErrorKind::UpstreamTimeout => "gateway timeout: the upstream did not answer in time\n",
            ErrorKind::BadRequest => "bad request\n",
            ErrorKind::BadFraming => "bad request: ambiguous message framing\n",
            ErrorKind::MethodNotAllowed => "method not allowed: figway is not a forward proxy\n",
            ErrorKind::NoRoute => "not found: no route matches this request\n",
            ErrorKind::NoHealthyUpstream => "service unavailable: no healthy upstream target\n",
            ErrorKind::CircuitOpen => {
                "service unavailable: too many requests in flight to the upstream\n"
            }
            ErrorKind::DrainTimeout => "",
            ErrorKind::RateLimited => "too many requests: the route's rate limit is reached\n",
        }
    }
}
