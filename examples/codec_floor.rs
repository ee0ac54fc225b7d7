//! A second floor for the request path, below `baseline_proxy.rs`: the
//! same minimal reverse proxy (current-thread tokio runtime, per-thread
//! LIFO pool of upstream connections, SO_NODELAY, a header-read and an
//! upstream timeout, hop-by-hop `Connection` dropped both ways) with
//! HTTP/1.1 parsed and written by hand over `httparse` instead of hyper.
//! One task per client connection does the whole exchange: it reads the
//! request head, writes it to a pooled upstream connection, reads the
//! response head and copies the body back, with no channel, oneshot or
//! second task between the two sides.
//!
//! It exists to measure what a codec of figway's own could save against
//! hyper's (`benches/instructions.sh`, row `codec-floor`; docs/benchmarks.md,
//! "What an HTTP/1 codec of figway's own would buy"). It is not a proxy to
//! run: it serves only what that benchmark sends (requests without a body,
//! responses framed by `Content-Length`) and answers anything else with a
//! 501 or by closing the connection.
//!
//! `cargo run --release --example codec_floor -- LISTEN UPSTREAM`
//! (e.g. `127.0.0.1:8080 127.0.0.1:8000`).

use std::cell::RefCell;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BUF: usize = 8192;
const HEADERS: usize = 64;

/// An upstream connection and the bytes read from it past the last
/// response (none, with a well-behaved upstream).
struct Upstream {
    stream: TcpStream,
    buf: Vec<u8>,
}

thread_local! {
    static POOL: RefCell<Vec<Upstream>> = const { RefCell::new(Vec::new()) };
}

/// What a head's bytes came to: the head's length, and what was built from
/// it; `Partial` while more bytes are needed.
enum Head<T> {
    Partial,
    Complete(usize, T),
}

/// Reads into `buf` until `parse` finds a whole head in it (each head is
/// parsed once, when its bytes are all there, as a codec would).
async fn read_head<T>(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    mut parse: impl FnMut(&[u8]) -> Option<Head<T>>,
) -> Option<(usize, T)> {
    loop {
        if !buf.is_empty() {
            match parse(buf)? {
                Head::Complete(n, built) => return Some((n, built)),
                Head::Partial if buf.len() >= BUF => return None,
                Head::Partial => {}
            }
        }
        // Into the spare capacity, unzeroed: `resize` would clear 8 KiB
        // per read.
        buf.reserve(BUF - buf.len());
        let n = stream.read_buf(buf).await.ok()?;
        if n == 0 {
            return None;
        }
    }
}

/// Parses a request head and writes it as the upstream request into `out`;
/// `None` for a request with a body (not served here) or a bad one.
fn upstream_head(buf: &[u8], out: &mut Vec<u8>) -> Option<Head<bool>> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(n) = req.parse(buf).ok()? else {
        return Some(Head::Partial);
    };
    out.clear();
    out.extend_from_slice(req.method?.as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.path?.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            continue;
        }
        if h.name.eq_ignore_ascii_case("content-length")
            || h.name.eq_ignore_ascii_case("transfer-encoding")
        {
            return None;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Some(Head::Complete(n, true))
}

/// Parses a response head and writes it for the client into `out`; the
/// body's length. `None` for a response not framed by `Content-Length`.
fn client_head(buf: &[u8], out: &mut Vec<u8>) -> Option<Head<usize>> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(n) = res.parse(buf).ok()? else {
        return Some(Head::Partial);
    };
    let mut length = None;
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(res.code?).as_bytes());
    out.push(b' ');
    out.extend_from_slice(res.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in res.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") || h.name.eq_ignore_ascii_case("keep-alive") {
            continue;
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(h.value).ok()?.parse().ok();
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Some(Head::Complete(n, length?))
}

async fn connect(upstream: SocketAddr) -> Option<Upstream> {
    let stream = TcpStream::connect(upstream).await.ok()?;
    let _ = stream.set_nodelay(true);
    Some(Upstream {
        stream,
        buf: Vec::with_capacity(BUF),
    })
}

/// One exchange with the upstream: the response head for the client in
/// `head`, and the body written after it. `None` when the connection
/// cannot go on.
async fn exchange(
    client: &mut TcpStream,
    up: &mut Upstream,
    request: &[u8],
    head: &mut Vec<u8>,
) -> Option<()> {
    up.stream.write_all(request).await.ok()?;
    let (n, length) = read_head(&mut up.stream, &mut up.buf, |b| client_head(b, head)).await?;
    let have = (up.buf.len() - n).min(length);
    let mut parts = [IoSlice::new(head), IoSlice::new(&up.buf[n..n + have])];
    let mut slices = &mut parts[..];
    while !slices.is_empty() {
        let written = client.write_vectored(slices).await.ok()?;
        if written == 0 {
            return None;
        }
        IoSlice::advance_slices(&mut slices, written);
    }
    up.buf.drain(..n + have);
    let mut left = length - have;
    while left > 0 {
        up.buf.clear();
        let r = (&mut up.stream)
            .take(left as u64)
            .read_buf(&mut up.buf)
            .await
            .ok()?;
        if r == 0 {
            return None;
        }
        client.write_all(&up.buf).await.ok()?;
        left -= r;
    }
    up.buf.clear();
    Some(())
}

async fn serve(mut client: TcpStream, upstream: SocketAddr) -> Option<()> {
    let mut buf = Vec::with_capacity(BUF);
    let mut request = Vec::with_capacity(BUF);
    let mut head = Vec::with_capacity(BUF);
    loop {
        let head_read = read_head(&mut client, &mut buf, |b| {
            // A request this floor does not serve is answered 501.
            Some(upstream_head(b, &mut request).unwrap_or(Head::Complete(0, false)))
        });
        let (n, served) = tokio::time::timeout(Duration::from_secs(10), head_read)
            .await
            .ok()??;
        if !served {
            let _ = client
                .write_all(b"HTTP/1.1 501 Not Implemented\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
            return None;
        }
        buf.drain(..n);
        let pooled = POOL.with_borrow_mut(|p| p.pop());
        let mut up = match pooled {
            Some(u) => u,
            None => connect(upstream).await?,
        };
        let done = tokio::time::timeout(
            Duration::from_secs(30),
            exchange(&mut client, &mut up, &request, &mut head),
        )
        .await;
        match done {
            Ok(Some(())) => POOL.with_borrow_mut(|p| p.push(up)),
            _ => {
                let _ = client
                    .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                return None;
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(upstream)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: codec_floor LISTEN_ADDR UPSTREAM_ADDR");
        std::process::exit(2);
    };
    let (Ok(listen), Ok(upstream)) = (listen.parse::<SocketAddr>(), upstream.parse()) else {
        eprintln!("addresses are ip:port");
        std::process::exit(2);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listener = TcpListener::bind(listen)
            .await
            .unwrap_or_else(|e| panic!("bind {listen}: {e}"));
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::task::spawn_local(serve(stream, upstream));
        }
    });
}
