//! `Upgrade` requests over real sockets (SPEC §4, §6, §9): a WebSocket-style
//! echo behind figway, the 101 and the upgrade headers on both sides, the
//! tunnel surviving a reload, logged once when it ends with the bytes of
//! both directions, cut at `drain_timeout`; a refused upgrade passes
//! through as an ordinary answer.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::ws::{echo_upstream, read_head};
use support::{Figway, LoggingFigway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const UPGRADE_REQUEST: &[u8] = b"GET /ws HTTP/1.1\r\nHost: shop.test\r\nConnection: Upgrade\r\n\
Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
x-request-id: ws-1\r\n\r\n";

/// Opens the tunnel; returns the stream and the 101 head.
async fn open_tunnel(addr: SocketAddr) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(UPGRADE_REQUEST).await.unwrap();
    let head = tokio::time::timeout(Duration::from_secs(5), read_head(&mut s))
        .await
        .expect("no answer to the upgrade");
    (s, head)
}

async fn echo(s: &mut TcpStream, text: &[u8]) {
    s.write_all(text).await.unwrap();
    let mut got = vec![0u8; text.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got))
        .await
        .expect("no echo through the tunnel")
        .unwrap();
    assert_eq!(got, text);
}

fn routes(upstream: SocketAddr, route: &str) -> String {
    format!(
        "[upstreams.ws]\ntargets = [\"http://{upstream}\"]\n\
         [[routes]]\nname = \"{route}\"\nprefix = \"/\"\nto = \"ws\"\n"
    )
}

#[tokio::test]
async fn websocket_echo_passes_through_and_survives_a_reload() {
    let (up, heads) = echo_upstream(None).await;
    let f = Figway::start_file(&support::config(&routes(up, "ws"))).await;

    let (mut s, head) = open_tunnel(f.addr).await;
    let lower = head.to_ascii_lowercase();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(lower.contains("upgrade: websocket"), "{head}");
    assert!(lower.contains("connection: upgrade"), "{head}");
    assert!(lower.contains("x-request-id: ws-1"), "{head}");
    assert!(lower.contains("sec-websocket-accept:"), "{head}");
    let sent = heads.lock().unwrap()[0].to_ascii_lowercase();
    assert!(sent.contains("connection: upgrade"), "upstream saw: {sent}");
    assert!(sent.contains("upgrade: websocket"), "upstream saw: {sent}");
    assert!(sent.contains("sec-websocket-key:"), "upstream saw: {sent}");
    echo(&mut s, b"hello").await;

    // A reload that changes the route table leaves the tunnel alone.
    f.reload_ok(&support::config(&routes(up, "renamed"))).await;
    echo(&mut s, b"after the reload").await;

    // Other requests still go through pooled connections as before.
    let plain = support::get(f.addr, "/plain", &[]).await;
    assert_eq!(
        plain.status, 400,
        "the upstream's own answer to a non-upgrade"
    );
    assert_eq!(f.shared.tunnels.count(), 1);
    drop(s);
    let start = Instant::now();
    while f.shared.tunnels.count() != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "tunnel never closed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_refused_upgrade_is_an_ordinary_answer() {
    // The upstream answers 400 to anything that is not a websocket upgrade.
    let (up, _) = echo_upstream(None).await;
    let f = Figway::start(&support::config(&routes(up, "ws"))).await;
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: other\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    // The connection is still an HTTP connection.
    s.write_all(b"GET /again HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_millis(500), s.read_to_end(&mut rest)).await;
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        rest.contains("HTTP/1.1 400"),
        "second request not served: {rest}"
    );
    assert_eq!(f.shared.tunnels.count(), 0);
}

#[tokio::test]
async fn h2c_upgrade_is_not_passed_on() {
    let (up, heads) = echo_upstream(None).await;
    let f = Figway::start(&support::config(&routes(up, "ws"))).await;
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let sent = heads.lock().unwrap()[0].to_ascii_lowercase();
    assert!(
        !sent.contains("upgrade"),
        "the h2c upgrade reached the upstream: {sent}"
    );
}

fn logging_config(upstream: SocketAddr) -> String {
    format!(
        "[listen]\naddress = \"127.0.0.1:0\"\ndrain_timeout = \"300ms\"\n\
         [admin]\naddress = \"127.0.0.1:0\"\n[log]\naccess_log = true\n{}",
        routes(upstream, "ws")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_is_logged_once_when_it_ends_with_bytes_both_ways() {
    let (up, _) = echo_upstream(None).await;
    let f = tokio::task::block_in_place(|| LoggingFigway::spawn(&logging_config(up)));
    let (mut s, _) = open_tunnel(f.addr).await;
    echo(&mut s, b"12345").await;
    echo(&mut s, b"678").await;
    // Nothing is logged while the tunnel is open.
    let early = f.lines.recv_timeout(Duration::from_millis(300));
    assert!(early.is_err(), "logged before the tunnel ended: {early:?}");
    drop(s);
    let line = tokio::task::block_in_place(|| f.next_line());
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["request_id"], "ws-1", "{line}");
    assert_eq!(v["status"], 101, "{line}");
    assert_eq!(v["bytes_in"], 8, "{line}");
    assert_eq!(v["bytes_out"], 8, "{line}");
    assert!(v["error"].is_null(), "{line}");
    assert!(v["duration_ms"].as_f64().unwrap() >= 300.0, "{line}");
    let more = f.lines.recv_timeout(Duration::from_millis(300));
    assert!(more.is_err(), "logged twice: {more:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_waits_for_a_tunnel_then_cuts_it() {
    let (up, _) = echo_upstream(None).await;
    let mut f = tokio::task::block_in_place(|| LoggingFigway::spawn(&logging_config(up)));
    let (mut s, _) = open_tunnel(f.addr).await;
    echo(&mut s, b"hi").await;
    let start = Instant::now();
    f.sigterm();
    // Still carried during the drain.
    tokio::time::sleep(Duration::from_millis(100)).await;
    echo(&mut s, b"still").await;
    let status = tokio::task::block_in_place(|| f.wait_exit(Duration::from_secs(5)))
        .expect("figway did not exit after drain_timeout with a tunnel open");
    assert!(status.success(), "{status}");
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "cut before drain_timeout"
    );
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
    assert!(
        matches!(n, Ok(Ok(0)) | Ok(Err(_))),
        "tunnel not closed: {n:?}"
    );
    let lines = tokio::task::block_in_place(|| f.remaining_lines());
    let v: serde_json::Value = serde_json::from_str(
        lines
            .iter()
            .find(|l| l.contains("ws-1"))
            .unwrap_or_else(|| panic!("no line for the tunnel: {lines:?}")),
    )
    .unwrap();
    assert_eq!(v["status"], 101);
    assert_eq!(v["error"], "drain_timeout");
}
