//! Targets by DNS name (SPEC §10): the lookups, and what they mean. A
//! target whose host is a name stands for every address the name resolves
//! to; this module asks (hickory-resolver, on tokio: `/etc/hosts` first,
//! then `/etc/resolv.conf`'s servers and search list, or the one server of
//! `[runtime] resolver`), and says what came back as an [`Answer`]:
//! addresses, nothing (NXDOMAIN, no record of the family) or a failure
//! (SERVFAIL, refusal, timeout). The two last differ on purpose: nothing
//! empties the target, a failure keeps its last good set.
//!
//! [`Sets`] holds the last good addresses of each [`Key`] (upstream, name,
//! family); `state` keeps one, fills it before a compile ([`resolve_all`],
//! bounded) and refreshes it every `resolve_interval` in the background;
//! `Upstream::with_endpoints` turns it into endpoints. Nothing here runs on
//! the request path, and no cache sits in the resolver: the sets are the
//! cache, so record TTLs shorter than `resolve_interval` do not make figway
//! query more often.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;

use crate::config::{Config, DnsFamily};

/// How long one query waits for a server before trying again, and how many
/// tries: a dead server costs a lookup at most about two seconds, which is
/// also the budget of a warm-up ([`WARM_UP`]).
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);
const QUERY_ATTEMPTS: usize = 2;

/// How long a start, a reload or `check` waits for the names it has not
/// resolved yet, all of them together (Envoy's cluster warming, bounded):
/// a name still unanswered then starts without endpoints and the
/// background fills it in.
pub const WARM_UP: Duration = Duration::from_secs(2);

/// One name to follow: an upstream's target host and the family its
/// upstream asks for. Per upstream, so that each upstream's names follow
/// its own `resolve_interval` and count under its own label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub upstream: String,
    pub name: String,
    pub family: DnsFamily,
}

/// The last good addresses of each name, sorted and without duplicates;
/// an empty list for a name that resolved to nothing (or failed before it
/// ever resolved).
pub type Sets = BTreeMap<Key, Arc<[IpAddr]>>;

/// The names `config`'s targets need, each with its upstream's
/// `resolve_interval`, in a stable order and each once.
pub fn keys(config: &Config) -> Vec<(Key, Duration)> {
    let mut out: BTreeMap<Key, Duration> = BTreeMap::new();
    for u in &config.upstreams {
        for t in &u.targets {
            if let Some(name) = &t.name {
                let key = Key {
                    upstream: u.name.clone(),
                    name: name.clone(),
                    family: u.dns_family,
                };
                out.insert(key, u.resolve_interval);
            }
        }
    }
    out.into_iter().collect()
}

/// What one lookup of a name found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The addresses, sorted, without duplicates; never empty.
    Addresses(Vec<IpAddr>),
    /// NXDOMAIN, or no record of the family asked for.
    Empty,
    /// SERVFAIL, a refusal, a timeout, no server reachable: nothing known.
    Error(String),
}

impl Answer {
    /// The `result` label of `figway_dns_resolutions_total`.
    pub fn result(&self) -> &'static str {
        match self {
            Answer::Addresses(_) => "ok",
            Answer::Empty => "empty",
            Answer::Error(_) => "error",
        }
    }

    /// The set this answer leaves for a name whose last good set is
    /// `last` (`None`: never resolved): a failure keeps it, and a name that
    /// has never resolved starts empty.
    pub fn next_set(&self, last: Option<&Arc<[IpAddr]>>) -> Arc<[IpAddr]> {
        match (self, last) {
            (Answer::Addresses(a), _) => a.as_slice().into(),
            (Answer::Empty, _) | (Answer::Error(_), None) => Arc::from([]),
            (Answer::Error(_), Some(last)) => last.clone(),
        }
    }
}

/// The outcome of one query of one record type.
enum Found {
    Addresses(Vec<IpAddr>),
    Empty,
    Error(String),
}

/// Sorts out a query's result. `NoRecordsFound` is hickory's word both for
/// a clean negative answer and, with `response_code` SERVFAIL, for a
/// server that failed; only NXDOMAIN and NOERROR-without-records are
/// "empty". Everything else (SERVFAIL, REFUSED, timeouts, I/O) is a
/// failure that must not empty the set.
fn classify(result: Result<Vec<IpAddr>, NetError>) -> Found {
    match result {
        Ok(a) if a.is_empty() => Found::Empty,
        Ok(a) => Found::Addresses(a),
        Err(e) => match no_records_code(&e) {
            Some(ResponseCode::NXDomain | ResponseCode::NoError) => Found::Empty,
            _ => Found::Error(e.to_string()),
        },
    }
}

/// The response code of a "no records found" error, if that is what `e` is.
fn no_records_code(e: &NetError) -> Option<ResponseCode> {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(no)) => Some(no.response_code),
        _ => None,
    }
}

/// A DNS resolver for target names. Cheap to clone; lookups on any tokio
/// runtime (each clone's connections live on the runtime that opened them,
/// so a short-lived runtime gets a resolver of its own: see
/// [`resolve_blocking`]).
#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
    /// `/etc/hosts`, read once at start. A name it lists is answered from
    /// it alone, family by family (an address family it does not list for
    /// the name is "empty"), as glibc's `files` source does: hickory's own
    /// hosts handling would go on to DNS, or to its built-in RFC 6761
    /// answer for `localhost` (`::1`), for a family the file leaves out,
    /// and make an endpoint the system never named (SPEC §10: resolution
    /// follows `/etc/hosts`).
    hosts: Arc<Hosts>,
}

/// Names (lowercase, no trailing dot) and the addresses `/etc/hosts` gives
/// them, in file order.
type Hosts = std::collections::HashMap<String, Vec<IpAddr>>;

/// Parses a hosts file: `ADDRESS NAME [ALIAS...]` per line, `#` comments;
/// lines whose first word is not an address are skipped, as the C library
/// does.
fn parse_hosts(text: &str) -> Hosts {
    let mut hosts = Hosts::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let Some(Ok(ip)) = words.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        for name in words {
            let listed = hosts
                .entry(name.trim_end_matches('.').to_ascii_lowercase())
                .or_default();
            if !listed.contains(&ip) {
                listed.push(ip);
            }
        }
    }
    hosts
}

fn system_hosts() -> Hosts {
    match std::fs::read_to_string("/etc/hosts") {
        Ok(text) => parse_hosts(&text),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read /etc/hosts; target names go to DNS only");
            Hosts::new()
        }
    }
}

impl Resolver {
    /// The system's resolver (`/etc/resolv.conf`, `/etc/hosts`), or with
    /// `server`, that one server for every query (UDP, TCP on truncation;
    /// `/etc/hosts` still answers first, so `localhost` stays local).
    pub fn new(server: Option<SocketAddr>) -> Resolver {
        let provider = TokioRuntimeProvider::default();
        let mut builder = match server {
            Some(address) => {
                let (mut udp, mut tcp) = (ConnectionConfig::udp(), ConnectionConfig::tcp());
                udp.port = address.port();
                tcp.port = address.port();
                let server = NameServerConfig::new(address.ip(), true, vec![udp, tcp]);
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![server]),
                    provider,
                )
            }
            None => match TokioResolver::builder(provider) {
                Ok(b) => b,
                Err(e) => {
                    // No usable resolv.conf: names then resolve through
                    // /etc/hosts only, and the rest fail (keeping their
                    // sets) until a restart finds a configuration.
                    tracing::warn!(error = %e, "cannot read the system's DNS configuration; target names resolve through /etc/hosts only");
                    TokioResolver::builder_with_config(
                        ResolverConfig::from_name_servers(Vec::new()),
                        TokioRuntimeProvider::default(),
                    )
                }
            },
        };
        let options = builder.options_mut();
        options.timeout = QUERY_TIMEOUT;
        options.attempts = QUERY_ATTEMPTS;
        // figway keeps the last good set itself; a cache would only answer
        // from old data when asked for new.
        options.cache_size = 0;
        // /etc/hosts is ours to answer (see `hosts`).
        options.use_hosts_file = ResolveHosts::Never;
        let inner = match builder.build() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot build the DNS resolver; target names resolve through /etc/hosts only");
                let mut fallback = TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(Vec::new()),
                    TokioRuntimeProvider::default(),
                );
                fallback.options_mut().use_hosts_file = ResolveHosts::Never;
                fallback.options_mut().cache_size = 0;
                match fallback.build() {
                    Ok(r) => r,
                    // Building without servers or TLS does no I/O that can
                    // fail; should it, every lookup reports an error.
                    Err(_) => return Resolver::new_unusable(),
                }
            }
        };
        Resolver {
            inner,
            hosts: Arc::new(system_hosts()),
        }
    }

    /// A resolver whose every lookup fails; only when hickory cannot build
    /// one without servers (it does no I/O then, so in practice never).
    fn new_unusable() -> Resolver {
        let builder = TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(Vec::new()),
            TokioRuntimeProvider::default(),
        );
        match builder.build() {
            Ok(inner) => Resolver {
                inner,
                hosts: Arc::new(system_hosts()),
            },
            Err(e) => unreachable!("hickory cannot build an empty resolver: {e}"),
        }
    }

    /// One lookup of `name` for `family`, each record type asked on its
    /// own (hickory's combined strategies would call a SERVFAIL on A
    /// followed by an empty AAAA "empty", and drop a good set).
    pub async fn resolve(&self, name: &str, family: DnsFamily) -> Answer {
        let found = match family {
            DnsFamily::V4 => self.query(name, RecordType::A).await,
            DnsFamily::V6 => self.query(name, RecordType::AAAA).await,
            DnsFamily::V4Preferred => self.preferred(name, RecordType::A, RecordType::AAAA).await,
            DnsFamily::V6Preferred => self.preferred(name, RecordType::AAAA, RecordType::A).await,
            DnsFamily::All => {
                let (a, aaaa) = tokio::join!(
                    self.query(name, RecordType::A),
                    self.query(name, RecordType::AAAA)
                );
                match (a, aaaa) {
                    // Half an answer would drop the other family's
                    // endpoints: a failure of either keeps the last set.
                    (Found::Error(e), _) | (_, Found::Error(e)) => Found::Error(e),
                    (Found::Empty, Found::Empty) => Found::Empty,
                    (Found::Addresses(a), Found::Empty) | (Found::Empty, Found::Addresses(a)) => {
                        Found::Addresses(a)
                    }
                    (Found::Addresses(mut a), Found::Addresses(b)) => {
                        a.extend(b);
                        Found::Addresses(a)
                    }
                }
            }
        };
        match found {
            Found::Addresses(mut a) => {
                a.sort_unstable();
                a.dedup();
                Answer::Addresses(a)
            }
            Found::Empty => Answer::Empty,
            Found::Error(e) => Answer::Error(e),
        }
    }

    /// `first`'s records, or `second`'s when `first` has none; a failure
    /// of `first` is a failure (not a reason to switch families).
    async fn preferred(&self, name: &str, first: RecordType, second: RecordType) -> Found {
        match self.query(name, first).await {
            Found::Empty => self.query(name, second).await,
            found => found,
        }
    }

    async fn query(&self, name: &str, record_type: RecordType) -> Found {
        if let Some(listed) = self.hosts.get(name.trim_end_matches('.')) {
            let found: Vec<IpAddr> = listed
                .iter()
                .filter(|ip| (record_type == RecordType::A) == ip.is_ipv4())
                .copied()
                .collect();
            return if found.is_empty() {
                Found::Empty
            } else {
                Found::Addresses(found)
            };
        }
        let result = self.inner.lookup(name, record_type).await.map(|lookup| {
            lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) if record_type == RecordType::A => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) if record_type == RecordType::AAAA => Some(IpAddr::V6(a.0)),
                    // CNAMEs on the way, records of the other family.
                    _ => None,
                })
                .collect()
        });
        classify(result)
    }
}

/// Looks up every key at once, all within `budget`; a key still without
/// an answer then gets [`Answer::Error`]. Results in `keys` order.
pub async fn resolve_all(resolver: &Resolver, keys: &[Key], budget: Duration) -> Vec<Answer> {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, key) in keys.iter().enumerate() {
        let (resolver, name, family) = (resolver.clone(), key.name.clone(), key.family);
        tasks.spawn(async move { (i, resolver.resolve(&name, family).await) });
    }
    let late = || Answer::Error(format!("no answer within {budget:?}"));
    let mut answers: Vec<Answer> = keys.iter().map(|_| late()).collect();
    let deadline = tokio::time::Instant::now() + budget;
    while let Ok(Some(done)) = tokio::time::timeout_at(deadline, tasks.join_next()).await {
        if let Ok((i, answer)) = done {
            if let Some(slot) = answers.get_mut(i) {
                *slot = answer;
            }
        }
    }
    // Dropping the set aborts the lookups still running.
    answers
}

/// [`resolve_all`] for a caller that cannot wait on a future (start-up,
/// `figway check`): on a thread of its own with a runtime and a resolver
/// of its own, so that it works on any runtime (a current-thread one
/// included, which a blocking wait inside would stall) or none.
pub fn resolve_blocking(server: Option<SocketAddr>, keys: &[Key], budget: Duration) -> Vec<Answer> {
    if keys.is_empty() {
        return Vec::new();
    }
    let owned = keys.to_vec();
    let spawned = std::thread::Builder::new()
        .name("figway-dns-warm-up".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let resolver = Resolver::new(server);
                Ok::<_, String>(resolve_all(&resolver, &owned, budget).await)
            })
        });
    let failed = |why: String| keys.iter().map(|_| Answer::Error(why.clone())).collect();
    match spawned {
        Ok(handle) => match handle.join() {
            Ok(Ok(answers)) => answers,
            Ok(Err(why)) => failed(format!("cannot start the resolver's runtime: {why}")),
            Err(_) => failed("the resolver's thread panicked".into()),
        },
        Err(e) => failed(format!("cannot start the resolver's thread: {e}")),
    }
}

#[cfg(test)]
mod tests;
