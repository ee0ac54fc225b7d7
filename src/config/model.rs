//! The validated configuration: what the file means once every check passed.
//! Nothing here is optional that validation already settled, so compile and
//! the hot path never re-check the file.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use http::Method;

use crate::net::Cidr;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Listen,
    /// `listen.tls`, kept apart from [`Listen`]: the certificates are read
    /// again on every reload, while the rest of `[listen]` needs a restart.
    /// Empty for plain TCP.
    pub tls: Vec<super::tls::Certificate>,
    pub admin: Admin,
    pub runtime: Runtime,
    pub log: Log,
    pub upstreams: Vec<UpstreamSpec>,
    pub routes: Vec<RouteSpec>,
    pub inventory: InventorySpec,
}

/// `[inventory]`: the legacy inventory (SPEC §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InventorySpec {
    pub enabled: bool,
    /// Path templates kept per (route, legacy upstream) pair.
    pub capacity: usize,
}

impl Default for InventorySpec {
    fn default() -> Self {
        InventorySpec {
            enabled: true,
            capacity: 200,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Listen {
    pub address: SocketAddr,
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    pub drain_timeout: Duration,
    /// After SIGTERM/SIGINT, how long the listener keeps accepting while
    /// `/readyz` says 503, before the drain begins.
    pub drain_delay: Duration,
    pub trusted_proxies: Vec<Cidr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Admin {
    pub address: SocketAddr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Runtime {
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// `resolver`: the DNS server every target-name query goes to; `None`
    /// follows the system's `/etc/resolv.conf`.
    pub resolver: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    pub format: LogFormat,
    pub access_log: bool,
}

/// Per-upstream timeouts, after `[defaults]` inheritance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    pub connect: Duration,
    pub request: Duration,
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(1),
            request: Duration::from_secs(30),
            idle: Duration::from_secs(90),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Smooth weighted round robin, as nginx does.
    RoundRobin,
    /// Power of two choices over in-flight counts, weighted.
    LeastRequest,
    /// Consistent hashing of `hash_key`.
    Hash,
}

impl Balance {
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round_robin",
            Balance::LeastRequest => "least_request",
            Balance::Hash => "hash",
        }
    }
}

/// Where a request's key comes from (`hash_key`, later `sticky`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Header(http::HeaderName),
    Cookie(String),
    ClientIp,
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Header(h) => write!(f, "header:{h}"),
            KeySource::Cookie(c) => write!(f, "cookie:{c}"),
            KeySource::ClientIp => f.write_str("client_ip"),
        }
    }
}

/// `[upstreams.NAME.health]`: active checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSpec {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub unhealthy_after: u32,
    pub healthy_after: u32,
    /// Inclusive status range that counts as healthy.
    pub expect: (u16, u16),
}

/// `[upstreams.NAME.outlier]`: passive ejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierSpec {
    pub consecutive_failures: u32,
    pub eject_for: Duration,
    pub max_ejected_percent: u32,
}

#[derive(Debug, Clone)]
pub struct UpstreamSpec {
    pub name: String,
    pub legacy: bool,
    pub protocol: Protocol,
    pub balance: Balance,
    /// Set exactly when `balance` is `Hash`.
    pub hash_key: Option<KeySource>,
    pub targets: Vec<TargetSpec>,
    pub timeouts: Timeouts,
    /// Extra attempts after the first, each to another target.
    pub retries: u32,
    /// Circuit breaker: requests in flight beyond which we fail fast.
    pub max_in_flight: Option<usize>,
    pub health: Option<HealthSpec>,
    pub outlier: Option<OutlierSpec>,
    /// How often targets given by name are resolved again (SPEC §10).
    pub resolve_interval: Duration,
    /// Which addresses of a name become endpoints.
    pub dns_family: DnsFamily,
}

/// `dns_family`: which of a name's addresses become endpoints (SPEC §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DnsFamily {
    /// The A records, or the AAAA records when there is no A record.
    V4Preferred,
    /// The AAAA records, or the A records when there is no AAAA record.
    V6Preferred,
    /// Both.
    All,
    V4,
    V6,
}

impl DnsFamily {
    pub const NAMES: [&'static str; 5] = ["v4_preferred", "v6_preferred", "all", "v4", "v6"];

    pub fn as_str(self) -> &'static str {
        match self {
            DnsFamily::V4Preferred => "v4_preferred",
            DnsFamily::V6Preferred => "v6_preferred",
            DnsFamily::All => "all",
            DnsFamily::V4 => "v4",
            DnsFamily::V6 => "v6",
        }
    }

    pub fn parse(text: &str) -> Option<DnsFamily> {
        Some(match text {
            "v4_preferred" => DnsFamily::V4Preferred,
            "v6_preferred" => DnsFamily::V6Preferred,
            "all" => DnsFamily::All,
            "v4" => DnsFamily::V4,
            "v6" => DnsFamily::V6,
            _ => return None,
        })
    }
}

/// What an upstream speaks (SPEC §2 `protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    /// HTTP/2 with prior knowledge on plain TCP: gRPC services.
    H2c,
}

#[derive(Debug, Clone)]
pub struct TargetSpec {
    /// As written in the file; shown by the admin API.
    pub url: String,
    /// `host:port` as configured: for an IP target what we connect to and
    /// what metrics and logs call it; for a name, the `Host` of its health
    /// checks (its endpoints are called by their `ip:port`).
    pub authority: String,
    /// The host when it is a DNS name (lower case, as written otherwise);
    /// `None` for an IP literal, which is never resolved.
    pub name: Option<String>,
    pub port: u16,
    pub weight: u32,
}

/// A route's host condition. Hosts are stored lower-case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    Exact(String),
    /// `*.example.com`, stored as `example.com`: any depth of subdomain.
    Wildcard(String),
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// One side of a route: an upstream and its share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Side {
    /// Index into `Config::upstreams`.
    pub upstream: usize,
    pub weight: u32,
}

/// `[routes.shadow]`: a mirrored copy of the route's requests.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowSpec {
    /// Index into `Config::upstreams`.
    pub upstream: usize,
    /// Share of requests mirrored, 0.0 to 1.0.
    pub sample: f64,
    pub methods: Vec<Method>,
    pub compare: bool,
    /// Lower-case names left out of the header comparison.
    pub ignore_headers: Vec<http::HeaderName>,
    /// JSON Pointers removed from both bodies before comparing.
    pub ignore_json: Vec<String>,
    pub max_body: u64,
    pub max_in_flight: usize,
}

#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub name: String,
    /// Normalised, without a trailing slash (except the root `/`).
    pub prefix: String,
    pub host: Option<HostPattern>,
    /// Sorted and de-duplicated; `None` matches every method.
    pub methods: Option<Vec<Method>>,
    /// `to` as one side of weight 1, or the `split` sides in config order.
    pub sides: Vec<Side>,
    /// Whether the file said `split` (the admin API shows `to` or `split`).
    pub split: bool,
    pub sticky: Option<KeySource>,
    pub shadow: Option<ShadowSpec>,
    /// `[routes.ramp]`: the split's schedule (SPEC §11).
    pub ramp: Option<super::schedule::RampSpec>,
    /// Serves when the chosen side has no available target or its breaker
    /// is open.
    pub fallback: Option<usize>,
    pub strip_prefix: bool,
    pub rewrite_prefix: Option<String>,
    /// `[routes.match]`: conditions every request of the route meets.
    pub conditions: Option<MatchSpec>,
    /// `[routes.headers]`: edits of what figway forwards (SPEC §12).
    pub headers: Option<HeaderEdits>,
    /// `[routes.rate_limit]` (SPEC §12).
    pub rate_limit: Option<RateLimitSpec>,
}

/// `[routes.match]` (SPEC §12). Each list is sorted by name and holds a
/// name once, so two routes with the same conditions compare equal
/// whatever order their files wrote them in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MatchSpec {
    pub headers: Vec<(http::HeaderName, MatchValue)>,
    pub cookies: Vec<(String, MatchValue)>,
    pub query: Vec<(String, MatchValue)>,
}

impl MatchSpec {
    /// Entries over all three tables: between two routes with conditions,
    /// the one with more wins.
    pub fn len(&self) -> usize {
        self.headers.len() + self.cookies.len() + self.query.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `header:x-canary=1, cookie:beta=*`: the conditions on one line, for
/// `figway check`'s table. A value with a space, comma or quote is quoted.
impl fmt::Display for MatchSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers = self.headers.iter().map(|(n, v)| ("header", n.as_str(), v));
        let cookies = self.cookies.iter().map(|(n, v)| ("cookie", n.as_str(), v));
        let query = self.query.iter().map(|(n, v)| ("query", n.as_str(), v));
        for (i, (source, name, value)) in headers.chain(cookies).chain(query).enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            match value {
                MatchValue::Exact(v) if v.is_empty() || v.contains([' ', ',', '"']) => {
                    write!(f, "{sep}{source}:{name}={v:?}")?
                }
                v => write!(f, "{sep}{source}:{name}={v}")?,
            }
        }
        Ok(())
    }
}

/// What a condition asks of a header, cookie or query parameter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MatchValue {
    /// `"*"`: present, with any value (an empty one too).
    Present,
    /// Exactly this value, case-sensitive.
    Exact(String),
}

impl fmt::Display for MatchValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MatchValue::Present => f.write_str("*"),
            MatchValue::Exact(v) => f.write_str(v),
        }
    }
}

/// `[routes.headers]`, validated: names and values parsed once, at load.
/// Each list keeps file order; removals apply before sets.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HeaderEdits {
    pub request_remove: Vec<http::HeaderName>,
    pub request_set: Vec<(http::HeaderName, http::HeaderValue)>,
    pub response_remove: Vec<http::HeaderName>,
    pub response_set: Vec<(http::HeaderName, http::HeaderValue)>,
}

/// `[routes.rate_limit]`, with its defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitSpec {
    /// Tokens per second, > 0.
    pub rate: f64,
    /// Bucket size, >= 1.
    pub burst: u32,
    pub key: RateLimitKey,
}

/// Whose bucket a request takes its token from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateLimitKey {
    /// One bucket for the whole route.
    Route,
    ClientIp,
    /// The header's value; a request without it counts as its client address.
    Header(http::HeaderName),
}

impl fmt::Display for RateLimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateLimitKey::Route => f.write_str("route"),
            RateLimitKey::ClientIp => f.write_str("client_ip"),
            RateLimitKey::Header(h) => write!(f, "header:{h}"),
        }
    }
}
