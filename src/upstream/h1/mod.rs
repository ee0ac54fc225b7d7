//! figway's own HTTP/1.1 client, for upstream connections
//! (docs/http1-codec.md). A connection is a struct ([`conn::Conn`]), not
//! a task: the request's task writes the request head (with a small body
//! held whole, in the same write), streams a larger body while watching
//! for the answer, parses the response head ([`head`]) and hands back a
//! [`Body`] that reads the rest from the connection as it is polled and
//! puts the connection back in its pool ([`super::pool`]) when it is done.
//! hyper's client ran a second task per connection, which each request and
//! answer crossed by channel; replacing it took a fifth of figway's
//! instructions per small request off (docs/benchmarks.md).
//!
//! Choices where RFC 9112 leaves room (README, "Errors figway answers
//! itself", has the user's side of them):
//! - an answer that arrives before the request body is sent whole is
//!   relayed while the body goes on uploading (an upstream may answer and
//!   still read, full-duplex); the connection is pooled only if both end,
//!   and one whose upstream stopped reading serves no other request;
//! - interim answers (1xx but 101) are skipped; 101 hands the connection
//!   to the tunnel with whatever was read past its head;
//! - a request body of unknown length goes chunked, whatever its method,
//!   and the client's trailers end it without being sent (`upload`).

pub mod body;
pub mod conn;
pub mod head;
mod upload;

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::{Method, Request, StatusCode};
use http_body::Body as _;

use crate::codec::lines::HeadLines;
pub use body::{Body, BodyError};
use conn::Conn;
use head::{Form, Head, Refused, Sending};
use upload::{Failed, Up, Upload};

use super::head_timeout::HeadWithin;
use crate::body::RequestBody;
use crate::upstream::target::Target;

/// A small body held whole goes out in the same write as its head.
const INLINE_BODY: usize = 16 * 1024;

/// Why an exchange failed.
pub enum Error {
    /// The connection failed before the request head was whole: the
    /// upstream had no request to act on, and the request, still whole
    /// where the caller lent it from, may go on another connection.
    Unsent,
    /// The connection failed after the request head, before a response
    /// head.
    Io(std::io::Error),
    /// The upstream closed before any response head.
    Closed,
    /// A response head figway will not relay (`head::Refused`).
    Refused(Refused),
    /// The client's body broke while it was being forwarded.
    ClientBody,
    /// No response head within the limit (`head_timeout`). While the
    /// upload was unfinished, the client may as well be the slow one.
    Timeout { upload_unfinished: bool },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Unsent => f.write_str("connection closed before the request was sent"),
            Error::Io(e) => write!(f, "{e}"),
            Error::Closed => f.write_str("closed before the response head"),
            Error::Refused(why) => write!(f, "{why}"),
            Error::ClientBody => f.write_str("the client's body broke"),
            Error::Timeout { .. } => f.write_str("no response head in time"),
        }
    }
}

/// The answer's head (its fields in the map, or as lines when asked and
/// allowed: see `head::Form`), and its body.
pub type Answer = (http::response::Parts, Option<HeadLines>, Body);

/// Sends `request` on `conn` and reads the response head within `limit`
/// (the upstream's `request_timeout`: `head_timeout`); the body comes with
/// it, to be read by whoever polls it, and the head's fields as `form`
/// asks (`head::parse_response`); `added`: fields written after the
/// request's own (`head::Added`).
///
/// The request is lent, not given: it stays where the caller holds it
/// until its head is out, so a connection that fails before leaves it
/// whole there (`Error::Unsent`) and this future holds a reference, not
/// the request (it is moved, within every future awaiting it, on every
/// request: proxy/mod.rs, Futures). Once the head is out, its body goes
/// to the upload and what is left of it is a husk, never sent again.
/// The head is encoded before the future is made.
pub fn send<'a>(
    mut conn: Box<Conn>,
    request: &'a mut Request<RequestBody>,
    target: Arc<Target>,
    form: Form,
    limit: Duration,
    added: head::Added<'_>,
) -> impl std::future::Future<Output = Result<Answer, Error>> + Send + 'a {
    let body = request.body();
    let progress = body.upload().cloned();
    let (mut timer, due) = conn.head_timer(limit);
    let has_body = !body.is_end_stream();
    let exact = body.size_hint().exact();
    let sending = head::request_framing(request.headers_mut(), has_body, exact);
    conn.write.clear();
    head::encode_request(
        request.method(),
        request.uri(),
        request.headers(),
        added,
        &mut conn.write,
    );
    let inline = match (request.body(), sending) {
        (RequestBody::Replay(Some(b)), Sending::Length(_)) if b.len() <= INLINE_BODY => {
            conn.write.extend_from_slice(b);
            true
        }
        _ => !has_body,
    };
    async move {
        let timed_out = |progress: Option<&Arc<crate::body::Upload>>| Error::Timeout {
            upload_unfinished: progress.is_some_and(|u| !u.is_done()),
        };
        let written = HeadWithin::new(
            limit,
            progress.as_deref(),
            (timer.as_mut(), due),
            conn.write_all(&conn.write),
        )
        .await;
        match written {
            Ok(Ok(())) => (),
            // Until the head is whole the upstream has no request to act on.
            Ok(Err(_)) => return Err(Error::Unsent),
            Err(()) => return Err(timed_out(progress.as_ref())),
        }
        // The head is out: its map goes back to the thread for the next
        // head parsed.
        crate::codec::give_back(std::mem::take(request.headers_mut()));
        let body = std::mem::replace(request.body_mut(), RequestBody::Empty);
        let mut upload = Upload {
            body: (!inline).then_some(body),
            sending,
            queue: VecDeque::new(),
            sent: 0,
            state: if inline { Up::Done } else { Up::Sending },
        };
        let method = std::mem::take(request.method_mut());
        let head = HeadWithin::new(
            limit,
            progress.as_deref(),
            (timer.as_mut(), due),
            std::future::poll_fn(|cx| exchange(&mut conn, &mut upload, &method, form, cx)),
        )
        .await
        .map_err(|()| timed_out(progress.as_ref()))??;
        conn.keep_timer(timer);
        if head.parts.status == StatusCode::SWITCHING_PROTOCOLS {
            return Ok((head.parts, None, Body::switched(conn, target)));
        }
        // An answer before the whole request went out: the body goes on
        // sending it (boxed: this is the rare case, and the body is moved
        // about whole), and the connection is pooled only if both end.
        let (reusable, upload) = match upload.state {
            Up::Done => (head.reusable, None),
            Up::Sending => (head.reusable, Some(Box::new(upload))),
            Up::Abandoned => (false, None),
        };
        Ok((
            head.parts,
            head.lines,
            Body::new(conn, head.framing, reusable, target, upload),
        ))
    }
}

/// Drives the upload and the wait for the response head together, so that
/// an upstream answering early (or with `100 Continue`) is heard.
fn exchange(
    conn: &mut Conn,
    upload: &mut Upload,
    method: &Method,
    form: Form,
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
            match head::parse_response(&mut conn.read, method, form) {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// A connection whose peer reset it, as a pooled one the upstream
    /// dropped while it idled.
    async fn reset_connection() -> (Box<Conn>, String) {
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

    /// `send` with the request lent from `request`, to the target at `addr`.
    fn lend<'a>(
        conn: Box<Conn>,
        request: &'a mut Request<RequestBody>,
        addr: &str,
    ) -> impl std::future::Future<Output = Result<Answer, Error>> + Send + 'a {
        let target = Arc::new(Target::new("u", addr));
        let form = Form {
            room: 0,
            lines: false,
        };
        send(conn, request, target, form, Duration::from_secs(5), &[])
    }

    /// The exchange's future is in every request's state, five levels
    /// of futures deep (proxy/mod.rs, Futures): it holds the lent
    /// request by reference, not the request (~260 bytes) itself.
    #[tokio::test]
    async fn the_exchange_future_holds_the_request_by_reference() {
        let (conn, addr) = reset_connection().await;
        let mut request = post();
        let exchange = lend(conn, &mut request, &addr);
        let bytes = std::mem::size_of_val(&exchange);
        assert!(bytes <= 400, "h1::send's future is {bytes} bytes");
    }

    #[tokio::test]
    async fn a_connection_that_fails_the_first_write_leaves_the_request_whole() {
        let (conn, addr) = reset_connection().await;
        let mut request = post();
        match lend(conn, &mut request, &addr).await {
            Err(Error::Unsent) => {
                assert_eq!(request.method(), Method::POST);
                assert_eq!(request.uri(), "/x");
                assert!(
                    matches!(request.body(), RequestBody::Replay(Some(b)) if b == "hello"),
                    "the body did not stay whole"
                );
            }
            Err(e) => panic!("not left unsent: {e}"),
            Ok(_) => panic!("an answer on a reset connection"),
        }
    }
}
