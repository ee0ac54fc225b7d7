//! A DNS server the test runs on loopback and steers while figway queries it
//! (SPEC §10): UDP on 127.0.0.1:PORT and TCP on the same port, answering
//! each name as the test last said (addresses, SERVFAIL, NXDOMAIN, or no
//! answer at all), and counting the queries per name and transport. Only the
//! subset a stub resolver needs: one question per message, A and AAAA
//! records, every other type an empty NOERROR. Messages are parsed and built
//! with `hickory-proto`, the crate figway's resolver is built on.
//!
//! Also here: backends listening on several loopback addresses with one
//! port, since a name's addresses become endpoints `ip:port` with the
//! target's port.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::Backend;

/// How the server answers one name.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// NOERROR with the A records (v4) or AAAA records (v6) of these
    /// addresses, whichever the question asks; an empty list (or a family
    /// with no address) is a NOERROR answer without records.
    Addrs(Vec<IpAddr>),
    /// RCODE 2: the server failed; a resolver should keep what it had.
    ServFail,
    /// RCODE 3: the name does not exist.
    NxDomain,
    /// No answer at all: the query times out.
    Silence,
}

/// Which transport a query came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

/// One query the server received.
#[derive(Debug, Clone)]
pub struct Query {
    /// Lowercase, without the trailing dot.
    pub name: String,
    pub kind: RecordType,
    pub transport: Transport,
    pub at: Instant,
}

#[derive(Default)]
struct Zone {
    replies: HashMap<String, Reply>,
    /// Names whose UDP answers are truncated (TC set, no records), so that
    /// the resolver must ask again over TCP.
    truncated: HashMap<String, bool>,
    ttl: u32,
    log: Vec<Query>,
}

/// The server; both sockets close when it is dropped.
pub struct DnsServer {
    /// UDP and TCP both listen here.
    pub addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

// === impl DnsServer ===

impl DnsServer {
    /// Starts on 127.0.0.1 with a port free for both UDP and TCP. Every name
    /// is NXDOMAIN until the test says otherwise; records carry a TTL of one
    /// second (see [`DnsServer::set_ttl`]).
    pub async fn start() -> DnsServer {
        let (udp, tcp) = bind_udp_and_tcp().await;
        let addr = udp.local_addr().unwrap();
        let zone = Arc::new(Mutex::new(Zone {
            ttl: 1,
            ..Zone::default()
        }));
        let udp_task = tokio::spawn(serve_udp(udp, zone.clone()));
        let tcp_task = tokio::spawn(serve_tcp(tcp, zone.clone()));
        DnsServer {
            addr,
            zone,
            tasks: vec![udp_task, tcp_task],
        }
    }

    /// `[runtime] resolver = "..."` for a figway config.
    pub fn runtime_toml(&self) -> String {
        format!("[runtime]\nresolver = \"{}\"\n", self.addr)
    }

    /// From now on `name` answers `reply`.
    pub fn answer(&self, name: &str, reply: Reply) {
        let mut zone = self.zone.lock().unwrap();
        zone.replies.insert(normalize(name), reply);
    }

    /// `name` answers these addresses (A and AAAA by family).
    pub fn set(&self, name: &str, addrs: &[IpAddr]) {
        self.answer(name, Reply::Addrs(addrs.to_vec()));
    }

    /// The TTL of the records from now on, in seconds.
    pub fn set_ttl(&self, seconds: u32) {
        self.zone.lock().unwrap().ttl = seconds;
    }

    /// UDP answers for `name` are truncated (TC, no records) while `on`.
    pub fn truncate_udp(&self, name: &str, on: bool) {
        let mut zone = self.zone.lock().unwrap();
        zone.truncated.insert(normalize(name), on);
    }

    /// Every query received so far, in order.
    pub fn log(&self) -> Vec<Query> {
        self.zone.lock().unwrap().log.clone()
    }

    /// How many queries (any type, any transport) asked for `name`.
    pub fn queries(&self, name: &str) -> usize {
        let name = normalize(name);
        let zone = self.zone.lock().unwrap();
        zone.log.iter().filter(|q| q.name == name).count()
    }

    /// How many queries arrived over `transport` for `name`.
    pub fn queries_over(&self, name: &str, transport: Transport) -> usize {
        let name = normalize(name);
        let zone = self.zone.lock().unwrap();
        zone.log
            .iter()
            .filter(|q| q.name == name && q.transport == transport)
            .count()
    }

    /// How many queries arrived at all.
    pub fn total_queries(&self) -> usize {
        self.zone.lock().unwrap().log.len()
    }

    /// Waits until `name` has been asked more than `n` times; panics after
    /// `limit`.
    pub async fn await_queries(&self, name: &str, n: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let seen = self.queries(name);
            if seen > n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: {seen} queries after {limit:?}, want more than {n}; log: {:?}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Names compare lowercase and without the root's dot, as DNS does.
fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A UDP socket on 127.0.0.1:0 and a TCP listener on the same port (a
/// resolver retries a truncated answer over TCP at the same address).
async fn bind_udp_and_tcp() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = udp.local_addr().unwrap().port();
        if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)).await {
            return (udp, tcp);
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

/// The answer to `query` (wire format) and whether the server stays silent.
/// None: no answer (silence, or not a query we can parse).
fn respond(zone: &Mutex<Zone>, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    let question = request.queries.first()?.clone();
    let name = normalize(&question.name().to_ascii());
    let kind = question.query_type();
    let (reply, truncated, ttl) = {
        let mut zone = zone.lock().unwrap();
        zone.log.push(Query {
            name: name.clone(),
            kind,
            transport,
            at: Instant::now(),
        });
        let reply = zone.replies.get(&name).cloned().unwrap_or(Reply::NxDomain);
        let truncated = zone.truncated.get(&name).copied().unwrap_or(false);
        (reply, truncated, zone.ttl)
    };
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.metadata.authoritative = true;
    response.queries = request.queries.clone();
    match reply {
        Reply::Silence => return None,
        Reply::ServFail => response.metadata.response_code = ResponseCode::ServFail,
        Reply::NxDomain => response.metadata.response_code = ResponseCode::NXDomain,
        Reply::Addrs(_) if truncated && transport == Transport::Udp => {
            response.metadata.truncation = true;
        }
        Reply::Addrs(addrs) => {
            for ip in addrs {
                let data = match (ip, kind) {
                    (IpAddr::V4(v4), RecordType::A) => RData::A(A(v4)),
                    (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA(v6)),
                    _ => continue,
                };
                response.add_answer(Record::from_rdata(question.name().clone(), ttl, data));
            }
        }
    }
    debug_assert_eq!(response.metadata.message_type, MessageType::Response);
    response.to_vec().ok()
}

async fn serve_udp(socket: UdpSocket, zone: Arc<Mutex<Zone>>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        if let Some(answer) = respond(&zone, &buf[..n], Transport::Udp) {
            let _ = socket.send_to(&answer, peer).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, zone: Arc<Mutex<Zone>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(serve_tcp_connection(stream, zone.clone()));
    }
}

/// DNS over TCP: each message prefixed by its two-byte length (RFC 1035
/// 4.2.2); several queries may share a connection.
async fn serve_tcp_connection(mut stream: TcpStream, zone: Arc<Mutex<Zone>>) {
    loop {
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut query = vec![0u8; u16::from_be_bytes(len) as usize];
        if stream.read_exact(&mut query).await.is_err() {
            return;
        }
        let Some(answer) = respond(&zone, &query, Transport::Tcp) else {
            continue; // silence: the connection stays open, unanswered
        };
        let mut framed = (answer.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&answer);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}

// === a client for checking the server itself ===

/// Asks `server` one question over UDP; None if no answer within `wait`.
pub async fn ask_udp(
    server: SocketAddr,
    name: &str,
    kind: RecordType,
    wait: Duration,
) -> Option<Message> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&question(name, kind), server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(wait, socket.recv_from(&mut buf))
        .await
        .ok()?
        .unwrap();
    Some(Message::from_vec(&buf[..n]).unwrap())
}

/// Asks `server` one question over TCP; None if no answer within `wait`.
pub async fn ask_tcp(
    server: SocketAddr,
    name: &str,
    kind: RecordType,
    wait: Duration,
) -> Option<Message> {
    let mut stream = TcpStream::connect(server).await.unwrap();
    let query = question(name, kind);
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&query);
    stream.write_all(&framed).await.unwrap();
    let read = async {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.ok()?;
        let mut answer = vec![0u8; u16::from_be_bytes(len) as usize];
        stream.read_exact(&mut answer).await.ok()?;
        Some(answer)
    };
    let answer = tokio::time::timeout(wait, read).await.ok()??;
    Some(Message::from_vec(&answer).unwrap())
}

fn question(name: &str, kind: RecordType) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    let name = hickory_proto::rr::Name::from_ascii(name).unwrap();
    m.add_query(hickory_proto::op::Query::query(name, kind));
    m.to_vec().unwrap()
}

/// The addresses of the A and AAAA records in an answer.
pub fn answer_ips(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

// === backends on several loopback addresses ===

pub const V4_A: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
pub const V4_B: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
pub const V4_C: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
pub const V6_LOOPBACK: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// Whether this machine can listen on `ip` (127.0.0.2 and ::1 are not
/// everywhere: a container without IPv6, a BSD without the whole /8).
pub fn can_bind(ip: IpAddr) -> bool {
    std::net::TcpListener::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// Listeners on each of `ips`, all on the same port (a name's endpoints
/// share the target's port).
pub fn listeners_on_one_port(ips: &[IpAddr]) -> (u16, Vec<TcpListener>) {
    'attempt: for _ in 0..50 {
        let first = std::net::TcpListener::bind(SocketAddr::new(ips[0], 0)).unwrap();
        let port = first.local_addr().unwrap().port();
        let mut listeners = vec![first];
        for ip in &ips[1..] {
            match std::net::TcpListener::bind(SocketAddr::new(*ip, port)) {
                Ok(l) => listeners.push(l),
                Err(_) => continue 'attempt,
            }
        }
        let listeners = listeners
            .into_iter()
            .map(|l| {
                l.set_nonblocking(true).unwrap();
                TcpListener::from_std(l).unwrap()
            })
            .collect();
        return (port, listeners);
    }
    panic!("no port free on all of {ips:?}");
}

/// One [`Backend::start`] per address, all on the same port, each named
/// (body and `x-backend`) by its address.
pub fn backends_on_one_port(ips: &[IpAddr]) -> (u16, Vec<Backend>) {
    let (port, listeners) = listeners_on_one_port(ips);
    let backends = ips
        .iter()
        .zip(listeners)
        .map(|(ip, l)| Backend::start_on(l, &ip.to_string()))
        .collect();
    (port, backends)
}
