//! figway's own HTTP/1.1 client, for upstream connections
//! (docs/http1-codec.md). A connection is a struct ([`conn::Conn`]), not
//! a task: the request's task writes the request head (with a small body
//! held whole, in the same write), streams a larger body while watching
//! for the answer, parses the response head ([`head`]) and hands back a
//! [`Body`] that reads the rest from the connection as it is polled and
//! puts the connection back in its pool ([`super::pool`]) when it is done.
//! hyper's client ran a second task per connection, which each request and
//! answer crossed by channel; that was a third of figway's CPU per small
//! request (docs/benchmarks.md).
//!
//! Choices where RFC 9112 leaves room (README, "Errors figway answers
//! itself", has the user's side of them):
//! - an answer that arrives before the request body is sent whole ends
//!   the upload (as nginx does); that connection serves no other request;
//! - interim answers (1xx but 101) are skipped; 101 hands the connection
//!   to the tunnel with whatever was read past its head;
//! - a request body of unknown length goes chunked, whatever its method.

pub mod body;
pub mod conn;
pub mod head;

use std::collections::VecDeque;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use http::{Method, Request, StatusCode};
use http_body::Body as _;
use tokio::io::{AsyncWrite, AsyncWriteExt};

pub use body::{Body, BodyError};
use conn::Conn;
use head::{Head, Refused, Sending};

use crate::body::RequestBody;
use crate::upstream::target::Target;

/// A small body held whole goes out in the same write as its head.
const INLINE_BODY: usize = 16 * 1024;

/// Why an exchange failed.
// The big variant hands the unsent request back, once per failure (as
// `client::Failure` does).
#[allow(clippy::large_enum_variant)]
pub enum Error {
    /// The connection failed before the request head was whole: the
    /// upstream had no request to act on, and this one may go, whole, on
    /// another connection.
    Unsent(Request<RequestBody>),
    /// The connection failed after the request head, before a response
    /// head.
    Io(std::io::Error),
    /// The upstream closed before any response head.
    Closed,
    /// A response head figway will not relay (`head::Refused`).
    Refused(Refused),
    /// The client's body broke while it was being forwarded.
    ClientBody,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Unsent(_) => f.write_str("connection closed before the request was sent"),
            Error::Io(e) => write!(f, "{e}"),
            Error::Closed => f.write_str("closed before the response head"),
            Error::Refused(why) => write!(f, "{why}"),
            Error::ClientBody => f.write_str("the client's body broke"),
        }
    }
}

/// Sends `request` on `conn` and reads the response head; the body comes
/// with it, to be read by whoever polls it. `room`: headers the caller will add to the answer (`head::parse_response`).
#[allow(
    clippy::manual_async_fn,
    reason = "by-value arguments kept once: see proxy/mod.rs, Futures"
)]
pub fn send(
    mut conn: Conn,
    request: Request<RequestBody>,
    target: Arc<Target>,
    room: usize,
) -> impl std::future::Future<Output = Result<(http::response::Parts, Body), Error>> + Send {
    async move {
        let (mut parts, body) = request.into_parts();
        let has_body = !body.is_end_stream();
        let sending = head::request_framing(&mut parts.headers, has_body, body.size_hint().exact());
        conn.write.clear();
        head::encode_request(&parts.method, &parts.uri, &parts.headers, &mut conn.write);
        let inline = match (&body, sending) {
            (RequestBody::Replay(Some(b)), Sending::Length(_)) if b.len() <= INLINE_BODY => {
                conn.write.extend_from_slice(b);
                true
            }
            _ => !has_body,
        };
        // Until the head is whole the upstream has no request to act on.
        if conn.io.write_all(&conn.write).await.is_err() {
            return Err(Error::Unsent(Request::from_parts(parts, body)));
        }
        let mut upload = Upload {
            body: (!inline).then_some(body),
            sending,
            queue: VecDeque::new(),
            sent: 0,
            state: if inline { Up::Done } else { Up::Sending },
        };
        let method = parts.method;
        let head =
            std::future::poll_fn(|cx| exchange(&mut conn, &mut upload, &method, room, cx)).await?;
        // An answer before the whole request went out: the upstream will read
        // the rest as the next request, so there is none.
        let reusable = head.reusable && matches!(upload.state, Up::Done);
        if head.parts.status == StatusCode::SWITCHING_PROTOCOLS {
            return Ok((head.parts, Body::switched(conn, target)));
        }
        Ok((head.parts, Body::new(conn, head.framing, reusable, target)))
    }
}

/// Drives the upload and the wait for the response head together, so that
/// an upstream answering early (or with `100 Continue`) is heard.
fn exchange(
    conn: &mut Conn,
    upload: &mut Upload,
    method: &Method,
    room: usize,
    cx: &mut Context<'_>,
) -> Poll<Result<Head, Error>> {
    if let Up::Sending = upload.state {
        match upload.poll(&mut conn.io, cx) {
            Poll::Ready(Ok(())) => upload.state = Up::Done,
            Poll::Ready(Err(Failed::Client)) => return Poll::Ready(Err(Error::ClientBody)),
            // The upstream stopped reading: its answer may say why.
            Poll::Ready(Err(Failed::Upstream)) => upload.state = Up::Abandoned,
            Poll::Pending => (),
        }
    }
    loop {
        if !conn.read.is_empty() {
            match head::parse_response(&mut conn.read, method, room) {
                Ok(Some(head)) if is_interim(head.parts.status) => continue,
                Ok(Some(head)) => return Poll::Ready(Ok(head)),
                Ok(None) => (),
                Err(why) => return Poll::Ready(Err(Error::Refused(why))),
            }
        }
        match ready!(conn.poll_fill(cx)) {
            Ok(0) => return Poll::Ready(Err(Error::Closed)),
            Ok(_) => (),
            Err(e) => return Poll::Ready(Err(Error::Io(e))),
        }
    }
}

fn is_interim(status: StatusCode) -> bool {
    status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS
}

struct Upload {
    body: Option<RequestBody>,
    sending: Sending,
    /// Bytes framed and not yet written: a chunk's size line, its data,
    /// its CRLF.
    queue: VecDeque<Bytes>,
    sent: u64,
    state: Up,
}

enum Up {
    Sending,
    Done,
    /// The upstream stopped reading before the body was all sent.
    Abandoned,
}

enum Failed {
    Client,
    Upstream,
}

impl Upload {
    fn poll(
        &mut self,
        io: &mut tokio::net::TcpStream,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Failed>> {
        loop {
            while !self.queue.is_empty() {
                let mut slices = [IoSlice::new(&[]); 3];
                for (slot, b) in slices.iter_mut().zip(&self.queue) {
                    *slot = IoSlice::new(b);
                }
                let n = match ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices)) {
                    Ok(0) | Err(_) => return Poll::Ready(Err(Failed::Upstream)),
                    Ok(n) => n,
                };
                let mut n = n;
                while n > 0 {
                    let Some(front) = self.queue.front_mut() else {
                        break;
                    };
                    let step = n.min(front.len());
                    front.advance(step);
                    n -= step;
                    if front.is_empty() {
                        self.queue.pop_front();
                    }
                }
            }
            let Some(body) = self.body.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            match ready!(Pin::new(body).poll_frame(cx)) {
                None => {
                    self.body = None;
                    match self.sending {
                        Sending::Chunked => self.queue.push_back(Bytes::from_static(b"0\r\n\r\n")),
                        Sending::Length(n) if n != self.sent => {
                            return Poll::Ready(Err(Failed::Client))
                        }
                        _ => (),
                    }
                }
                Some(Err(_)) => return Poll::Ready(Err(Failed::Client)),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if data.is_empty() => (),
                    Ok(data) => {
                        self.sent += data.len() as u64;
                        match self.sending {
                            Sending::Length(n) if self.sent > n => {
                                return Poll::Ready(Err(Failed::Client))
                            }
                            Sending::Chunked => {
                                let size = format!("{:x}\r\n", data.len());
                                self.queue.push_back(Bytes::from(size));
                                self.queue.push_back(data);
                                self.queue.push_back(Bytes::from_static(b"\r\n"));
                            }
                            Sending::Length(_) => self.queue.push_back(data),
                            // Never: a body with frames is framed.
                            Sending::Nothing => (),
                        }
                    }
                    // Trailers end the body and are not passed on (as hyper's
                    // client did not, the `Trailer` header being hop-by-hop):
                    // they would carry past every rule figway applies to the
                    // head (X-Forwarded-*, the shadow marker, a route's
                    // removals) to an upstream that may merge them into it.
                    Err(_) => {
                        self.body = None;
                        if let Sending::Chunked = self.sending {
                            self.queue.push_back(Bytes::from_static(b"0\r\n\r\n"));
                        }
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// A connection whose peer reset it, as a pooled one the upstream
    /// dropped while it idled.
    async fn reset_connection() -> (Conn, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let client = TcpStream::connect(&addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        // Closed with a zero linger: an RST, so the next write fails.
        server.set_zero_linger().unwrap();
        drop(server);
        tokio::time::sleep(Duration::from_millis(50)).await;
        (Conn::new(client), addr)
    }

    fn post() -> Request<RequestBody> {
        let body = RequestBody::Replay(Some(Bytes::from_static(b"hello")));
        let mut request = Request::new(body);
        *request.method_mut() = Method::POST;
        *request.uri_mut() = http::Uri::from_static("/x");
        request
    }

    #[tokio::test]
    async fn a_connection_that_fails_the_first_write_gives_the_request_back() {
        let (conn, addr) = reset_connection().await;
        let target = Arc::new(Target::new("u", &addr));
        match send(conn, post(), target, 0).await {
            Err(Error::Unsent(request)) => {
                assert_eq!(request.uri(), "/x");
                assert!(
                    matches!(request.body(), RequestBody::Replay(Some(b)) if b == "hello"),
                    "the body did not come back whole"
                );
            }
            Err(e) => panic!("not handed back: {e}"),
            Ok(_) => panic!("an answer on a reset connection"),
        }
    }
}
