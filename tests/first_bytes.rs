//! How a plain client connection's first bytes choose its HTTP server
//! (`server::connection`): bytes that cannot begin the h2 preface go to
//! hyper's HTTP/1 connection directly, the rest (the whole preface, or a
//! piece of it, or of a method that shares its first letters) to the auto
//! builder, which reads on until it knows. Each case over real loopback,
//! with the first bytes arriving alone in their own packet.

mod support;
use support::*;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Long enough that the first bytes are read, and peeked at, alone.
const GAP: Duration = Duration::from_millis(50);

fn one_route(url: &str) -> String {
    config(&format!(
        "[upstreams.m]\ntargets = [\"{url}\"]\n[[routes]]\nprefix = \"/\"\nto = \"m\"\n"
    ))
}

/// Sends `first`, waits [`GAP`], sends `rest`, and reads one answer.
async fn in_two_packets(f: &Figway, first: &[u8], rest: &[u8]) -> String {
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(first).await.unwrap();
    tokio::time::sleep(GAP).await;
    s.write_all(rest).await.unwrap();
    let mut out = vec![0u8; 4096];
    let mut got = 0;
    while !String::from_utf8_lossy(&out[..got]).ends_with("hello") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut out[got..]))
            .await
            .expect("no answer within 5 s")
            .unwrap();
        assert!(
            n > 0,
            "closed after {:?}",
            String::from_utf8_lossy(&out[..got])
        );
        got += n;
    }
    String::from_utf8_lossy(&out[..got]).into_owned()
}

#[tokio::test]
async fn an_http1_request_whose_first_byte_comes_alone_is_served() {
    let b = Backend::with(|_| async { http::Response::new(full("hello")) }).await;
    let f = Figway::start(&one_route(&b.url())).await;
    // `G` cannot begin the preface: straight to HTTP/1, the rest of the
    // head read by hyper as it comes.
    let a = in_two_packets(&f, b"G", b"ET /g HTTP/1.1\r\nhost: test.local\r\n\r\n").await;
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    assert_eq!(b.last().uri.path(), "/g");
}

#[tokio::test]
async fn a_post_whose_first_byte_could_begin_the_h2_preface_is_served_as_http1() {
    let b = Backend::with(|_| async { http::Response::new(full("hello")) }).await;
    let f = Figway::start(&one_route(&b.url())).await;
    // `P` could be `PRI * HTTP/2.0`: the auto builder decides once it has
    // read more, and the request is HTTP/1 with its body intact.
    let a = in_two_packets(
        &f,
        b"P",
        b"OST /p HTTP/1.1\r\nhost: test.local\r\ncontent-length: 2\r\n\r\nhi",
    )
    .await;
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    let seen = b.last();
    assert_eq!(seen.method, http::Method::POST);
    assert_eq!(&seen.body[..], b"hi");
}

/// A stream whose first write sends only `first` bytes, and whose next
/// write waits [`GAP`]: an h2c client whose preface is split across
/// packets.
struct SplitFirstWrite {
    io: TcpStream,
    first: usize,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
    state: u8,
}

impl AsyncRead for SplitFirstWrite {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for SplitFirstWrite {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match this.state {
            0 => {
                let n = buf.len().min(this.first);
                let written = std::task::ready!(Pin::new(&mut this.io).poll_write(cx, &buf[..n]))?;
                this.state = 1;
                this.pause = Some(Box::pin(tokio::time::sleep(GAP)));
                Poll::Ready(Ok(written))
            }
            1 => {
                if let Some(p) = this.pause.as_mut() {
                    std::task::ready!(p.as_mut().poll(cx));
                }
                this.state = 2;
                Pin::new(&mut this.io).poll_write(cx, buf)
            }
            _ => Pin::new(&mut this.io).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn an_h2c_preface_split_across_packets_is_served_as_h2() {
    let b = Backend::with(|_| async { http::Response::new(full("hello")) }).await;
    let f = Figway::start(&one_route(&b.url())).await;
    for first in [1, 5, 16] {
        let io = TcpStream::connect(f.addr).await.unwrap();
        io.set_nodelay(true).unwrap();
        let io = SplitFirstWrite {
            io,
            first,
            pause: None,
            state: 0,
        };
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = Request::get("http://test.local/h2").body(full("")).unwrap();
        let res = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
            .await
            .unwrap_or_else(|_| panic!("no h2 answer with {first} preface bytes first"))
            .unwrap();
        assert_eq!(res.status(), 200, "{first} preface bytes first");
        assert_eq!(res.version(), http::Version::HTTP_2);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello");
    }
    assert_eq!(b.seen().len(), 3);
}
