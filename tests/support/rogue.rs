//! Misbehaving upstreams for failure tests: a raw TCP server that reads one
//! whole request per connection (head, then a Content-Length or chunked
//! body), records it, and then resets, closes or goes silent.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

/// What a [`Rogue`] does once it has read a whole request.
#[derive(Clone, Copy, Debug)]
pub enum Misbehaviour {
    /// Resets the connection (RST, via a zero linger) without answering.
    Reset,
    /// Closes the connection (FIN) without answering.
    Close,
    /// Keeps the connection open and never answers.
    Silent,
}

/// A request a [`Rogue`] read completely: `METHOD path`, and the body.
#[derive(Debug, Clone)]
pub struct Read {
    pub line: String,
    pub body: Vec<u8>,
}

/// A raw TCP upstream that reads one whole request per connection (head,
/// then a Content-Length or chunked body) and then misbehaves; it records
/// every request it read in full.
pub struct Rogue {
    pub addr: SocketAddr,
    read: Arc<Mutex<Vec<Read>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Rogue {
    pub async fn start(how: Misbehaviour) -> Rogue {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let read = Arc::new(Mutex::new(Vec::new()));
        let log = read.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                let log = log.clone();
                conns.spawn(async move {
                    let Some(req) = read_request(&mut stream).await else {
                        return;
                    };
                    log.lock().unwrap().push(req);
                    match how {
                        Misbehaviour::Reset => {
                            let _ = stream.set_zero_linger();
                            drop(stream);
                        }
                        Misbehaviour::Close => drop(stream),
                        Misbehaviour::Silent => {
                            let mut sink = [0u8; 4096];
                            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                        }
                    }
                });
            }
        });
        Rogue { addr, read, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests read in full so far.
    pub fn count(&self) -> usize {
        self.read.lock().unwrap().len()
    }

    pub fn last(&self) -> Read {
        self.read
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("no request")
    }
}

impl Drop for Rogue {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts (and so
        // closes) the connections it still holds.
        self.task.abort();
    }
}

enum Framing {
    Empty,
    Length(usize),
    Chunked,
}

/// Reads one request: its head, then its whole body. `None` when the peer
/// closed (or sent garbage) before the request was complete.
async fn read_request(stream: &mut TcpStream) -> Option<Read> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let (head_len, line, framing) = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(len) = req.parse(&buf).ok()? {
            let line = format!("{} {}", req.method?, req.path?);
            let mut framing = Framing::Empty;
            for h in req.headers.iter() {
                let value = std::str::from_utf8(h.value).ok()?.trim();
                if h.name.eq_ignore_ascii_case("content-length") {
                    framing = Framing::Length(value.parse().ok()?);
                } else if h.name.eq_ignore_ascii_case("transfer-encoding")
                    && value.to_ascii_lowercase().contains("chunked")
                {
                    framing = Framing::Chunked;
                }
            }
            break (len, line, framing);
        }
    };
    let mut rest = buf.split_off(head_len);
    let body = loop {
        match framing {
            Framing::Empty => break Vec::new(),
            Framing::Length(n) if rest.len() >= n => {
                rest.truncate(n);
                break rest;
            }
            Framing::Chunked => {
                if let Some(body) = dechunk(&rest) {
                    break body;
                }
            }
            Framing::Length(_) => {}
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        rest.extend_from_slice(&chunk[..n]);
    };
    Some(Read { line, body })
}

/// The decoded body once `b` holds a complete chunked body, else `None`.
fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let crlf = |b: &[u8]| b.windows(2).position(|w| w == b"\r\n");
    let mut out = Vec::new();
    loop {
        let eol = crlf(b)?;
        let size = std::str::from_utf8(&b[..eol]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            // Trailer fields, then an empty line.
            loop {
                let eol = crlf(b)?;
                if eol == 0 {
                    return Some(out);
                }
                b = &b[eol + 2..];
            }
        }
        if b.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}
