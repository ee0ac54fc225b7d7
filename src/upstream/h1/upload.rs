//! A request body on its way upstream: framed (by its length, or in
//! chunks) and written as the client's body yields it. The request's task
//! drives it while it waits for the response head (`super::exchange`), and
//! the response body goes on driving it when the answer came first
//! (`super::body`), so an upstream that answers while it still reads the
//! request (full-duplex HTTP/1.1) gets the rest.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use http_body::Body as _;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

use super::head::Sending;
use crate::body::RequestBody;

pub(super) struct Upload {
    pub(super) body: Option<RequestBody>,
    pub(super) sending: Sending,
    /// Bytes framed and not yet written: a chunk's size line, its data,
    /// its CRLF.
    pub(super) queue: VecDeque<Bytes>,
    pub(super) sent: u64,
    pub(super) state: Up,
}

pub(super) enum Up {
    Sending,
    Done,
    /// The upstream stopped reading before the body was all sent.
    Abandoned,
}

pub(super) enum Failed {
    Client,
    Upstream,
}

impl Upload {
    pub(super) fn poll(
        &mut self,
        io: &mut TcpStream,
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
