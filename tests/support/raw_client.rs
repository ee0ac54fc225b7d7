//! A raw HTTP/1.1 client: requests written as bytes, answers parsed with
//! httparse, so that a test sees the status line's version and the body's
//! framing exactly as figway sent them (a hyper client would hide both).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long the client waits for figway's next bytes before it fails.
const WAIT: Duration = Duration::from_secs(5);

/// One response as read off the wire.
pub struct RawAnswer {
    /// The minor version of the status line: 1 for `HTTP/1.1`.
    pub version: u8,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// No Content-Length and not chunked: the body ran to the connection's end.
    pub close_delimited: bool,
    /// The head as received, for failure messages.
    pub head: String,
}

impl RawAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether a Connection header names `close`.
    pub fn says_close(&self) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("connection"))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("close"))
    }
}

/// An HTTP/1.1 client connection that writes requests as raw bytes and
/// parses answers with httparse, so the status line's version and the
/// body's framing are seen exactly as sent.
pub struct RawClient {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        RawClient {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
            eof: false,
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|e| format!("writing the request failed: {e}"))
    }

    /// Reads more bytes into the buffer; false at the connection's end.
    async fn fill(&mut self) -> Result<bool, String> {
        if self.eof {
            return Ok(false);
        }
        let mut chunk = [0u8; 16 << 10];
        match tokio::time::timeout(WAIT, self.stream.read(&mut chunk)).await {
            Err(_) => Err(format!("no bytes from figway within {WAIT:?}")),
            Ok(Err(e)) => Err(format!("reading failed: {e}")),
            Ok(Ok(0)) => {
                self.eof = true;
                Ok(false)
            }
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
        }
    }

    /// Reads one whole response (head and body, by its framing).
    pub async fn answer(&mut self) -> Result<RawAnswer, String> {
        let mut answer = self.head().await?;
        let chunked = answer
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let length = answer.header("content-length").map(|v| v.trim().parse());
        if chunked {
            answer.body = self.chunked().await?;
        } else if let Some(length) = length {
            let length: usize = length.map_err(|e| format!("bad content-length ({e})"))?;
            while self.buf.len() < length {
                if !self.fill().await? {
                    return Err(format!(
                        "connection closed after {} of {length} body bytes",
                        self.buf.len()
                    ));
                }
            }
            answer.body = self.buf.drain(..length).collect();
        } else {
            answer.close_delimited = true;
            while self.fill().await? {}
            answer.body = std::mem::take(&mut self.buf);
        }
        Ok(answer)
    }

    /// Reads one response head only: the answer to a `HEAD`, or a 204 or
    /// 304, which have no body whatever their headers say.
    pub async fn head(&mut self) -> Result<RawAnswer, String> {
        let (len, version, status, headers) = loop {
            let mut slots = [httparse::EMPTY_HEADER; 64];
            let mut res = httparse::Response::new(&mut slots);
            match res.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let headers = res
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect::<Vec<_>>();
                    break (len, res.version.unwrap(), res.code.unwrap(), headers);
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => {
                    return Err(format!(
                        "unparsable response ({e}): {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ))
                }
            }
            if !self.fill().await? {
                return Err(format!(
                    "connection closed before a whole response head; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                ));
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..len]).into_owned();
        self.buf.drain(..len);
        Ok(RawAnswer {
            version,
            status,
            headers,
            body: Vec::new(),
            close_delimited: false,
            head,
        })
    }

    /// Whether figway closed the connection: true once a read finds its
    /// end, false when bytes are left over or it stays open for `wait`.
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut chunk = [0u8; 1024];
        match tokio::time::timeout(wait, self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                false
            }
            Err(_) => false,
        }
    }

    /// Bytes received past the last answer read.
    pub fn leftover(&self) -> &[u8] {
        &self.buf
    }

    /// Decodes a chunked body (RFC 9112 §7.1), trailers skipped.
    async fn chunked(&mut self) -> Result<Vec<u8>, String> {
        let mut body = Vec::new();
        loop {
            let line = self.line().await?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|e| format!("bad chunk size {line:?} ({e})"))?;
            if size == 0 {
                while !self.line().await?.is_empty() {}
                return Ok(body);
            }
            while self.buf.len() < size + 2 {
                if !self.fill().await? {
                    return Err("connection closed inside a chunk".into());
                }
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }

    /// One CRLF-terminated line, without its CRLF.
    async fn line(&mut self) -> Result<String, String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            if !self.fill().await? {
                return Err("connection closed inside chunked framing".into());
            }
        }
    }
}
