//! A client's request body, read from its connection (a [`Socket`]) as
//! the proxy polls it, with hyper 1.12's server rules: a length-framed
//! body is exactly that many bytes, a chunked one is read by
//! [`chunked::Decoder`]; the connection closing before the end is an
//! error; `100 Continue` is written when the body is first polled, only if
//! the answer's head has not gone yet. Dropped before its end, the body
//! is left to the connection loop to throw away; given up on by the
//! connection while it still lives (an h2c upload past its answer), it
//! ends in an error, never a clean end.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::chunked::{self, Step};
use super::request::Framing;
use super::socket::{Expect, ReadSide, Reading, Remaining, Socket, CONTINUE};

/// Why a client's request body could not be read to its end.
#[derive(Debug)]
pub enum BodyError {
    /// The connection ended before the body did.
    Incomplete,
    /// A chunked body broke its framing.
    Malformed(&'static str),
    Io(io::Error),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Incomplete => f.write_str("request body cut short"),
            BodyError::Malformed(why) => write!(f, "malformed chunked request body: {why}"),
            BodyError::Io(e) => write!(f, "reading the request body: {e}"),
        }
    }
}

impl std::error::Error for BodyError {}

/// A client's request body, read from its connection as it is polled.
#[derive(Debug)]
pub struct Body {
    socket: Arc<Socket>,
    /// Its request's number on the connection ([`ReadSide`]'s `request`).
    request: u64,
}

impl Body {
    /// Starts the body of the request just parsed; `None` when it has none.
    pub fn start(socket: &Arc<Socket>, framing: Framing, expect_continue: bool) -> Option<Body> {
        let mut side = socket.side();
        if framing == Framing::Empty {
            return None;
        }
        side.request += 1;
        side.body = match framing {
            Framing::Empty => return None,
            Framing::Length(n) => Reading::Length(n),
            Framing::Chunked => Reading::Chunked(Box::default()),
        };
        side.expect = if expect_continue {
            Expect::Owed(0)
        } else {
            Expect::None
        };
        Some(Body {
            socket: socket.clone(),
            request: side.request,
        })
    }

    /// Writes what is owed of `100 Continue` before the first read.
    fn poll_continue(&self, cx: &mut Context<'_>, side: &mut ReadSide) -> Poll<io::Result<()>> {
        while let Expect::Owed(at) = side.expect {
            let n = ready!(self
                .socket
                .poll_write(cx, &[io::IoSlice::new(&CONTINUE[at..])]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            side.expect = if at + n == CONTINUE.len() {
                Expect::None
            } else {
                Expect::Owed(at + n)
            };
        }
        Poll::Ready(Ok(()))
    }

    fn fail(side: &mut ReadSide, e: BodyError) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        side.ended(Reading::Failed);
        Poll::Ready(Some(Err(e)))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let mut guard = self.socket.side();
        let side = &mut *guard;
        if side.request != self.request {
            // Its request is over, and it had ended (else the connection
            // would have closed rather than read another).
            return Poll::Ready(None);
        }
        let polled = self.poll_body(cx, side);
        if polled.is_pending() {
            match &side.reader {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => side.reader = Some(cx.waker().clone()),
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        // A body the connection gave up on is not at its end: polled, it
        // says why.
        let side = self.socket.side();
        side.request != self.request || matches!(side.body, Reading::Idle)
    }

    fn size_hint(&self) -> SizeHint {
        let side = self.socket.side();
        if side.request != self.request {
            return SizeHint::with_exact(0);
        }
        match side.body {
            Reading::Length(n) => SizeHint::with_exact(n),
            Reading::Idle => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

impl Body {
    fn poll_body(
        &self,
        cx: &mut Context<'_>,
        side: &mut ReadSide,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match side.body {
            Reading::Length(_) | Reading::Chunked(_) => {}
            Reading::Failed => return Poll::Ready(Some(Err(BodyError::Incomplete))),
            Reading::Idle | Reading::Abandoned(_) => return Poll::Ready(None),
        }
        if let Err(e) = ready!(self.poll_continue(cx, side)) {
            return Body::fail(side, BodyError::Io(e));
        }
        loop {
            match &mut side.body {
                Reading::Length(left) if !side.buf.is_empty() => {
                    let n = (*left).min(side.buf.len() as u64);
                    *left -= n;
                    let data = side.buf.split_to(n as usize).freeze();
                    if *left == 0 {
                        side.ended(Reading::Idle);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Reading::Chunked(decoder) if !side.buf.is_empty() => {
                    match decoder.decode(&mut side.buf) {
                        Ok(Step::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                        Ok(Step::End(trailers)) => {
                            side.ended(Reading::Idle);
                            return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
                        }
                        Ok(Step::More) => {}
                        Err(chunked::Malformed(why)) => {
                            return Body::fail(side, BodyError::Malformed(why))
                        }
                    }
                }
                Reading::Length(_) | Reading::Chunked(_) => {}
                Reading::Failed => return Poll::Ready(Some(Err(BodyError::Incomplete))),
                Reading::Idle | Reading::Abandoned(_) => return Poll::Ready(None),
            }
            match ready!(self.socket.poll_fill(cx, &mut side.buf)) {
                Ok(0) => return Body::fail(side, BodyError::Incomplete),
                Ok(_) => {}
                Err(e) => return Body::fail(side, BodyError::Io(e)),
            }
        }
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        let mut side = self.socket.side();
        if side.request != self.request {
            return;
        }
        side.reader = None;
        let body = std::mem::replace(&mut side.body, Reading::Idle);
        let left = match body {
            Reading::Length(n) => Reading::Abandoned(Remaining::Length(n)),
            Reading::Chunked(d) => Reading::Abandoned(Remaining::Chunked(d)),
            other => other,
        };
        side.ended(left);
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use http_body_util::BodyExt;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::codec::socket::Unread;

    /// A socket for the server's side of a loopback connection, and the
    /// client's end.
    async fn pair() -> (Arc<Socket>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Socket::new(server), client)
    }

    #[tokio::test]
    async fn a_body_the_connection_gave_up_on_errs_and_is_not_at_its_end() {
        let (socket, mut client) = pair().await;
        let mut body = Body::start(&socket, Framing::Length(10), false).unwrap();
        client.write_all(b"abc").await.unwrap();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "abc");
        socket.side().give_up();
        assert!(!http_body::Body::is_end_stream(&body));
        assert!(matches!(
            body.frame().await,
            Some(Err(BodyError::Incomplete))
        ));
        // Nothing after it is read as the connection's.
        client
            .write_all(b"defghijGET / HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        assert!(matches!(socket.side().discard_unread(), Unread::Broken));
    }

    #[tokio::test]
    async fn a_dropped_body_is_thrown_away_up_to_its_end_and_no_further() {
        let (socket, mut client) = pair().await;
        let body = Body::start(&socket, Framing::Chunked, false).unwrap();
        drop(body);
        client
            .write_all(b"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let got = poll_fn(|cx| {
            let mut side = socket.side();
            loop {
                match side.discard_unread() {
                    Unread::More => {}
                    other => return Poll::Ready(other),
                }
                let side = &mut *side;
                match ready!(socket.poll_fill(cx, &mut side.buf)) {
                    Ok(n) if n > 0 => {}
                    _ => return Poll::Ready(Unread::Broken),
                }
            }
        })
        .await;
        assert_eq!(got, Unread::Nothing);
        assert_eq!(&socket.side().buf[..], b"GET / HTTP/1.1\r\n\r\n");
    }

    #[tokio::test]
    async fn continue_goes_before_the_first_read_and_not_after_the_answer() {
        let (socket, mut client) = pair().await;
        let mut body = Body::start(&socket, Framing::Length(2), true).unwrap();
        client.write_all(b"hi").await.unwrap();
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            "hi"
        );
        let mut got = [0u8; CONTINUE.len()];
        tokio::io::AsyncReadExt::read_exact(&mut client, &mut got)
            .await
            .unwrap();
        assert_eq!(&got[..], CONTINUE);

        // Answered before the body was polled: the body then reads, and no
        // 100 goes out behind the answer.
        let mut body = Body::start(&socket, Framing::Length(2), true).unwrap();
        assert_eq!(socket.side().answering(), b"", "nothing of it written");
        client.write_all(b"ok").await.unwrap();
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            "ok"
        );
        let mut any = [0u8; 1];
        assert!(
            client.try_read(&mut any).is_err(),
            "a 100 Continue after the answer began"
        );
    }

    #[tokio::test]
    async fn a_body_waiting_when_the_connection_gives_up_is_woken_with_an_error() {
        let (socket, _client) = pair().await;
        let mut body = Body::start(&socket, Framing::Length(10), false).unwrap();
        let waiting = tokio::spawn(async move { body.frame().await.map(|f| f.is_err()) });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        socket.side().give_up();
        let got = tokio::time::timeout(std::time::Duration::from_secs(2), waiting)
            .await
            .expect("the waiting body was never woken")
            .unwrap();
        assert_eq!(got, Some(true));
    }

    #[tokio::test]
    async fn a_body_that_outlives_its_request_leaves_the_next_one_alone() {
        let (socket, mut client) = pair().await;
        let mut first = Body::start(&socket, Framing::Length(2), false).unwrap();
        client.write_all(b"hiabc").await.unwrap();
        assert_eq!(
            first.frame().await.unwrap().unwrap().into_data().unwrap(),
            "hi"
        );
        // `first` is still held (as an h2 upstream's task can hold it) when
        // the next request's body starts.
        let mut second = Body::start(&socket, Framing::Length(3), false).unwrap();
        assert!(first.frame().await.is_none());
        assert!(http_body::Body::is_end_stream(&first));
        drop(first);
        assert!(!http_body::Body::is_end_stream(&second));
        assert_eq!(
            second.frame().await.unwrap().unwrap().into_data().unwrap(),
            "abc"
        );
    }
}
