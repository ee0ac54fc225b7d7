//! The two contexts the phases share. [`ConnCtx`] holds the facts of a
//! client connection, computed once at accept: the canonical peer address,
//! whether it is a trusted proxy, the `X-Forwarded-For` entry it adds, and
//! the framing guard's flags. [`RequestCtx`] is one request's state from its
//! head to the end of its answer: the snapshot it runs on, what was decided
//! (route, upstream, target), what happened (retries, error, status, bytes)
//! and the guards it holds. It travels inside the response body, and its
//! `Drop` (in `finish.rs`) is the one end-of-request step.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::time::Instant;

use http::{HeaderValue, Method, Uri};

use crate::body::{Tee, Upload};
use crate::error::ErrorKind;
use crate::framing::ConnFlags;
use crate::net;
use crate::shadow::CompareSlot;
use crate::state::{Shared, Snapshot};
use crate::upstream::{TargetGuard, Upstream, UpstreamGuard};

/// One client connection's facts.
pub struct ConnCtx {
    pub shared: Arc<Shared>,
    /// The socket peer, IPv4-mapped addresses made plain.
    pub peer: IpAddr,
    /// The socket peer's port, for the connection's logs.
    pub port: u16,
    /// Whether the peer is in `trusted_proxies` (a `[listen]` setting, so
    /// fixed for the life of the process and of this connection).
    pub trusted: bool,
    /// The peer as the entry `X-Forwarded-For` gets appended.
    pub forwarded_for: HeaderValue,
    /// Which request on this connection had both framing headers.
    pub framing: Arc<ConnFlags>,
    /// Whether the client came over TLS (`X-Forwarded-Proto: https`).
    pub tls: bool,
}

impl ConnCtx {
    pub fn new(
        shared: Arc<Shared>,
        peer: SocketAddr,
        framing: Arc<ConnFlags>,
        tls: bool,
    ) -> ConnCtx {
        let port = peer.port();
        let peer = peer.ip().to_canonical();
        let trusted = net::is_trusted(&shared.listen.trusted_proxies, peer);
        let forwarded_for = HeaderValue::try_from(peer.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        ConnCtx {
            shared,
            peer,
            port,
            trusted,
            forwarded_for,
            framing,
            tls,
        }
    }
}

impl ConnCtx {
    /// The socket peer as the connection's logs give it.
    pub fn peer_addr(&self) -> SocketAddr {
        SocketAddr::new(self.peer, self.port)
    }
}

/// One request, from its head to the end of its answer.
pub struct RequestCtx {
    pub conn: Arc<ConnCtx>,
    /// Loaded once: the request finishes on this table whatever reloads do.
    pub snapshot: Arc<Snapshot>,
    /// On tokio's clock, as `clock`'s milliseconds are: the route phase
    /// reads its "now" off it rather than the clock again.
    pub start: Instant,
    /// `start` in `clock` milliseconds, for the phases that pick by it
    /// (route, attempt): converted once.
    pub start_ms: u64,
    pub request_id: HeaderValue,
    /// The client address for keys and the log (SPEC §3).
    pub client: IpAddr,
    /// Index into the snapshot's routes, once one matched.
    pub route: Option<usize>,
    /// The upstream serving the request (the fallback, when it took over).
    pub upstream: Option<usize>,
    /// The place in the upstream's in-flight count (breaker, `/upstreams`).
    pub upstream_guard: Option<UpstreamGuard>,
    /// The target of the last attempt, holding its in-flight count.
    pub target: Option<TargetGuard>,
    pub retries: u32,
    /// Why figway answered itself, or cut the answer.
    pub error: Option<ErrorKind>,
    /// The status sent to the client; `None` until the answer's head exists
    /// (a request dropped before is a client that left, or a drain cut).
    pub status: Option<u16>,
    /// Body bytes read from the client before the upstream took over
    /// (a body held for replay), plus what `upload` counts after.
    pub bytes_in: u64,
    pub upload: Option<Arc<Upload>>,
    pub bytes_out: u64,
    /// Whether the answer's body was sent to its end.
    pub complete: bool,
    /// The primary's side of a shadow compare: its head is sent when the
    /// answer is known, its body copied by `tee` as it streams.
    pub compare: Option<CompareSlot>,
    pub tee: Option<Tee>,
    /// What the access log needs of the request head; `None` when the log
    /// is off, so nothing is kept for it.
    pub log: Option<LogFacts>,
    /// A `Connection: upgrade` request's client side, until the target
    /// answers (`upgrade`). Boxed: rare, and every request's context (and
    /// hyper's per-connection slot) would carry its size.
    pub upgrade: Option<Box<Pending>>,
    /// A gRPC call (`content-type: application/grpc...`): figway's own
    /// failures are answered the gRPC way.
    pub grpc: bool,
    /// The split sent this request to its ramp's `to` side: its answer
    /// counts in the ramp's window (SPEC §11).
    pub ramped: bool,
    /// Seconds until the route's rate limit has a token, for the
    /// `retry-after` of a `rate_limited` answer; a u16 (at most ~18 h)
    /// because every idle client connection carries this context's size
    /// (see `handle`), and a u32 pushed it past the bound its test holds.
    pub retry_after: u16,
    /// `X-Forwarded-*` are the attempt's to write into the upstream head,
    /// not in the request's map (`rewrite`).
    pub forwarded_direct: bool,
    /// figway's own server writes the answer (`Writer::Own`).
    pub own_writer: bool,
}

/// An upgrade the client asked for, until the target answers.
pub struct Pending {
    /// The client side: resolves once the 101 has gone to it.
    pub client: ClientUpgrade,
    /// The client's `Upgrade` value.
    pub protocol: HeaderValue,
}

/// The client connection once its 101 is written, from whichever server
/// serves it.
pub enum ClientUpgrade {
    Hyper(hyper::upgrade::OnUpgrade),
    Own(crate::codec::upgraded::OnUpgrade),
}

/// The parts of the request head the access log shows, kept from before
/// the head is rewritten and sent.
pub struct LogFacts {
    pub method: Method,
    /// The path as the client sent it.
    pub uri: Uri,
    /// The host the request was routed by.
    pub host: Option<HeaderValue>,
}

impl RequestCtx {
    pub fn new(conn: Arc<ConnCtx>, start: Instant) -> RequestCtx {
        let snapshot = conn.shared.snapshot.load_full();
        let client = conn.peer;
        RequestCtx {
            conn,
            snapshot,
            start,
            start_ms: crate::clock::to_ms(start),
            request_id: HeaderValue::from_static(""),
            client,
            route: None,
            upstream: None,
            upstream_guard: None,
            target: None,
            retries: 0,
            error: None,
            status: None,
            bytes_in: 0,
            upload: None,
            bytes_out: 0,
            complete: false,
            compare: None,
            tee: None,
            log: None,
            upgrade: None,
            grpc: false,
            ramped: false,
            retry_after: 0,
            forwarded_direct: false,
            own_writer: false,
        }
    }

    /// The upstream chosen for this request, once chosen.
    pub fn upstream(&self) -> Option<&Upstream> {
        self.upstream.map(|u| &self.snapshot.upstreams[u])
    }
}
