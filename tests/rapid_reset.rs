//! HTTP/2 rapid reset (CVE-2023-44487, SPEC §4): a client that opens streams
//! and cancels each at once (HEADERS then RST_STREAM, in a tight loop) is
//! cut off with GOAWAY `ENHANCE_YOUR_CALM`, again on every connection it
//! comes back with, within a bounded number of streams; a well-behaved h2
//! client on a connection of its own keeps getting every answer during the
//! attack and after it. Over h2c (prior knowledge) on loopback, against a
//! slow upstream so that the cancelled streams were still waiting.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{Backend, Figway};
use tokio::net::TcpStream;

/// How long the attacker keeps coming back.
const ATTACK: Duration = Duration::from_millis(1500);

/// Streams an attacker connection may open before the test calls figway
/// unprotected. The guard trips once more than 20 cancelled streams wait to
/// be accepted at once, so this leaves a wide margin for how the client's
/// writes happen to be batched, and is still far below what an unguarded
/// server takes (it never stops the loop).
const MAX_STREAMS: usize = 20_000;

/// How one attacker connection ended.
#[derive(Debug)]
struct Attack {
    /// Streams opened (and cancelled) before figway stopped taking them.
    streams: usize,
    /// The connection's end as the client saw it; None if it was never cut.
    ended: Option<h2::Error>,
    took: Duration,
}

/// One attacker connection: HEADERS + RST_STREAM(CANCEL) per stream, as
/// fast as the client lets it, until figway refuses or `MAX_STREAMS`.
async fn attack(addr: SocketAddr) -> Attack {
    let start = Instant::now();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
    let conn = tokio::spawn(conn);
    let mut streams = 0;
    while streams < MAX_STREAMS && !conn.is_finished() {
        let ready = tokio::time::timeout(Duration::from_secs(5), client.ready()).await;
        client = match ready {
            Ok(Ok(c)) => c,
            // Refused: figway's GOAWAY (the reason is read from the
            // connection below).
            Ok(Err(_)) => break,
            Err(_) => panic!("attacker stalled after {streams} streams, neither served nor cut"),
        };
        let req = Request::get(format!("http://shop.test/attack/{streams}"))
            .body(())
            .unwrap();
        let Ok((response, mut stream)) = client.send_request(req, true) else {
            break;
        };
        stream.send_reset(h2::Reason::CANCEL);
        drop(response);
        streams += 1;
    }
    let ended = if streams >= MAX_STREAMS && !conn.is_finished() {
        conn.abort();
        None
    } else {
        match tokio::time::timeout(Duration::from_secs(5), conn).await {
            Ok(Ok(Err(e))) => Some(e),
            Ok(Ok(Ok(()))) => panic!("attacker connection closed cleanly after {streams} streams"),
            Ok(Err(join)) => panic!("attacker connection task failed: {join}"),
            Err(_) => panic!("requests refused but the connection stayed open"),
        }
    };
    Attack {
        streams,
        ended,
        took: start.elapsed(),
    }
}

/// A well-behaved h2 client: one connection, requests one after another on
/// `lanes` concurrent streams until `stop`; counts answers (200 with the
/// upstream's body) and failures of any kind.
fn good_client(
    sender: hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    lanes: usize,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..lanes)
        .map(|lane| {
            let mut sender = sender.clone();
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let req = Request::get(format!("http://shop.test/good/{lane}/{i}"))
                        .body(Empty::new())
                        .unwrap();
                    let answered = match sender.send_request(req).await {
                        Ok(res) if res.status() == 200 => match res.into_body().collect().await {
                            Ok(b) => b.to_bytes() == "app",
                            Err(_) => false,
                        },
                        _ => false,
                    };
                    let counter = if answered { &ok } else { &failed };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_clients_get_goaway_and_others_are_unaffected() {
    // Slow, so that a cancelled stream figway did take up was still waiting
    // on its upstream: the work a rapid reset makes a server start and drop.
    let b = Backend::with(|_| async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        http::Response::new(support::full("app"))
    })
    .await;
    let f = Figway::start(&support::config(&format!(
        "[upstreams.app]\ntargets = [\"{}\"]\n[[routes]]\nprefix = \"/\"\nto = \"app\"\n",
        b.url()
    )))
    .await;

    let tcp = TcpStream::connect(f.addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let good_conn = tokio::spawn(conn);
    let (stop, ok, failed) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let lanes = good_client(sender.clone(), 4, stop.clone(), ok.clone(), failed.clone());
    // The good client is under way before the attack begins.
    let start = Instant::now();
    while ok.load(Ordering::Relaxed) < 4 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the good client got no answer"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // The attacker comes back on a new connection each time it is cut off.
    let ok_before = ok.load(Ordering::Relaxed);
    let attack_start = Instant::now();
    let mut attacks = Vec::new();
    while attack_start.elapsed() < ATTACK {
        let a = attack(f.addr).await;
        let cut = a.ended.is_some();
        attacks.push(a);
        assert!(
            cut,
            "figway took {MAX_STREAMS} rapidly reset streams on one connection without \
             cutting it off: {:?}",
            attacks.last()
        );
    }
    let ok_during = ok.load(Ordering::Relaxed) - ok_before;
    let failed_during = failed.load(Ordering::Relaxed);

    // And after it: the same connection, still serving.
    let ok_after_attack = ok.load(Ordering::Relaxed);
    let start = Instant::now();
    while ok.load(Ordering::Relaxed) < ok_after_attack + 20 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the good client stalled after the attack"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for l in lanes {
        l.await.unwrap();
    }
    assert!(
        !good_conn.is_finished(),
        "the good client's connection ended"
    );

    let streams: Vec<usize> = attacks.iter().map(|a| a.streams).collect();
    let calm = attacks
        .iter()
        .filter(|a| {
            a.ended.as_ref().is_some_and(|e| {
                e.is_go_away() && e.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM)
            })
        })
        .count();
    eprintln!(
        "attacker connections: {}; streams until cut off: min {} max {} (each: {streams:?}); \
         slowest cut-off {:?}; ENHANCE_YOUR_CALM on {calm}; upstream saw {} requests; \
         good client: {ok_during} answers during the attack, {} in all, {} failed",
        attacks.len(),
        streams.iter().min().unwrap(),
        streams.iter().max().unwrap(),
        attacks.iter().map(|a| a.took).max().unwrap(),
        b.count(),
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    // figway's GOAWAY says why; a client still writing when the socket
    // closes may see the broken pipe before it reads the GOAWAY, which is
    // cut off all the same.
    for a in &attacks {
        let e = a.ended.as_ref().unwrap();
        let broken = e.get_io().is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            )
        });
        assert!(
            broken || (e.is_go_away() && e.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM)),
            "attacker cut off, but not by GOAWAY ENHANCE_YOUR_CALM: {e:?} after {} streams",
            a.streams
        );
    }
    assert!(
        calm > 0,
        "no attacker connection was told ENHANCE_YOUR_CALM"
    );
    assert!(
        attacks.len() >= 2,
        "the attacker never came back: {attacks:?}"
    );
    assert!(
        ok_during > 0,
        "the good client got nothing during the attack"
    );
    assert_eq!(failed_during, 0, "good requests failed during the attack");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "good requests failed");
}
