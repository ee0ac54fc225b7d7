//! Streaming and the access log, measured on the real `figway` binary
//! (SPEC §2 `[log]`, §4 "bodies stream"): a 50 MiB upload and a 50 MiB
//! download pass through while figway's own peak resident memory stays far
//! below the body size, and with `access_log = true` every request writes
//! exactly one JSON line with the contracted keys and values to stdout.

mod support;
use support::*;

use std::collections::BTreeSet;
use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

const BODY: u64 = 50 << 20;
/// Peak RSS limit for figway while 50 MiB pass through it.
const RSS_LIMIT_KIB: u64 = 25 << 10;

fn route_to(url: &str) -> String {
    config(&format!(
        "[upstreams.m]\ntargets = [\"{url}\"]\n[[routes]]\nname = \"all\"\nprefix = \"/\"\nto = \"m\"\n"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_of_50_mib_streams_through() {
    let b = Backend::start("sink").await;
    let f = FigwayProcess::spawn(&route_to(&b.url()));
    let before = f.peak_rss_kib();
    let req = Request::post("/upload")
        .header("host", "test.local")
        .body(Generated::new(BODY, 64 << 10).boxed())
        .unwrap();
    let a = send(f.addr, req).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.text(), "sink");
    let seen = b.last();
    assert_eq!(seen.body_len, BODY);
    let peak = f.peak_rss_kib();
    println!(
        "upload 50 MiB: figway peak RSS {peak} KiB ({:.1} MiB; {before} KiB before the upload)",
        peak as f64 / 1024.0
    );
    assert!(
        peak < RSS_LIMIT_KIB,
        "figway peak RSS {peak} KiB while streaming a 50 MiB upload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_of_50_mib_streams_through() {
    let b = Backend::with(|_| async {
        Response::builder()
            .header("content-type", "application/octet-stream")
            .body(Generated::new(BODY, 64 << 10).boxed())
            .unwrap()
    })
    .await;
    let f = FigwayProcess::spawn(&route_to(&b.url()));
    let before = f.peak_rss_kib();

    let stream = TcpStream::connect(f.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let res = sender
        .send_request(
            Request::get("/download")
                .header("host", "test.local")
                .body(full(""))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()
            .get("content-length")
            .map(|v| v.to_str().unwrap()),
        Some(BODY.to_string().as_str())
    );
    // Count frames as they arrive; never hold the body.
    let mut body = res.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("download body broke off");
        if let Some(d) = frame.data_ref() {
            assert!(d.iter().all(|b| *b == b'x'), "corrupted download data");
            received += d.len() as u64;
        }
    }
    assert_eq!(received, BODY);
    let peak = f.peak_rss_kib();
    println!(
        "download 50 MiB: figway peak RSS {peak} KiB ({:.1} MiB; {before} KiB before the download)",
        peak as f64 / 1024.0
    );
    assert!(
        peak < RSS_LIMIT_KIB,
        "figway peak RSS {peak} KiB while streaming a 50 MiB download"
    );
}

// === access log ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_lines_have_the_contracted_fields() {
    let b = Backend::start("mono").await;
    let toml = format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n[log]\naccess_log = true\n\
         [upstreams.m]\ntargets = [\"{}\"]\n[[routes]]\nname = \"api\"\nprefix = \"/api\"\nto = \"m\"\n",
        b.url()
    );
    let f = LoggingFigway::spawn(&toml);

    let ok = send(
        f.addr,
        Request::post("/api/items?x=1")
            .header("host", "shop.test")
            .header("x-request-id", "log-ok-1")
            .body(full("hello"))
            .unwrap(),
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.text(), "mono");
    let missing = get(f.addr, "/nowhere", &[("x-request-id", "log-404-1")]).await;
    assert_eq!(missing.status, 404);

    let mut by_id = std::collections::HashMap::new();
    for _ in 0..2 {
        let line = f.next_line();
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("access-log line is not JSON ({e}): {line}"));
        let id = v["request_id"].as_str().unwrap_or_default().to_string();
        by_id.insert(id, (line, v));
    }
    // Nothing else is logged per request on stdout.
    if let Ok(extra) = f.lines.recv_timeout(Duration::from_millis(300)) {
        panic!("unexpected extra stdout line: {extra}");
    }

    let expected_keys: BTreeSet<&str> = [
        "ts",
        "request_id",
        "client",
        "method",
        "path",
        "host",
        "route",
        "upstream",
        "target",
        "status",
        "bytes_in",
        "bytes_out",
        "duration_ms",
        "retries",
        "error",
    ]
    .into_iter()
    .collect();
    for (line, v) in by_id.values() {
        let keys: BTreeSet<&str> = v
            .as_object()
            .unwrap_or_else(|| panic!("not a JSON object: {line}"))
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, expected_keys, "keys of {line}");
        let ts = v["ts"].as_str().unwrap_or_else(|| panic!("ts: {line}"));
        assert!(
            ts.len() >= 20 && ts.as_bytes()[4] == b'-' && ts.as_bytes()[10] == b'T',
            "ts not RFC 3339: {ts}"
        );
        // The request's start on the wall clock (figway derives it from
        // tokio's clock and a reading of the wall clock a second old at most).
        let logged = figway::timefmt::parse_rfc3339(ts).unwrap_or_else(|e| panic!("{e}"));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        assert!(
            (0..60_000).contains(&(now - logged)),
            "ts {ts} is {} ms from now",
            now - logged
        );
        assert!(v["status"].is_u64(), "status not an integer: {line}");
        assert!(v["duration_ms"].is_number(), "duration_ms: {line}");
        assert!(v["duration_ms"].as_f64().unwrap() >= 0.0);
        assert_eq!(v["client"], "127.0.0.1", "{line}");
        assert_eq!(v["retries"], 0, "{line}");
    }

    let (line, v) = by_id
        .get("log-ok-1")
        .unwrap_or_else(|| panic!("no line for log-ok-1: {:?}", by_id.keys()));
    assert_eq!(v["method"], "POST", "{line}");
    assert_eq!(v["path"], "/api/items", "{line}");
    assert_eq!(v["host"], "shop.test", "{line}");
    assert_eq!(v["route"], "api", "{line}");
    assert_eq!(v["upstream"], "m", "{line}");
    assert_eq!(v["target"], b.addr.to_string(), "{line}");
    assert_eq!(v["status"], 200, "{line}");
    assert_eq!(v["bytes_in"], 5, "{line}");
    assert_eq!(v["bytes_out"], 4, "{line}");
    assert!(v["error"].is_null(), "{line}");

    let (line, v) = by_id
        .get("log-404-1")
        .unwrap_or_else(|| panic!("no line for log-404-1: {:?}", by_id.keys()));
    assert_eq!(v["method"], "GET", "{line}");
    assert_eq!(v["path"], "/nowhere", "{line}");
    assert_eq!(v["host"], "test.local", "{line}");
    assert!(v["route"].is_null(), "{line}");
    assert!(v["upstream"].is_null(), "{line}");
    assert!(v["target"].is_null(), "{line}");
    assert_eq!(v["status"], 404, "{line}");
    assert_eq!(v["bytes_in"], 0, "{line}");
    assert_eq!(v["bytes_out"], missing.body.len() as u64, "{line}");
    assert_eq!(v["error"], "no_route", "{line}");
}

/// Route and upstream names are free text, their JSON rendered when the
/// config is compiled; a request id is the client's bytes. Both come out as
/// the JSON strings they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_escapes_names_and_ids_that_need_it() {
    let b = Backend::start("mono").await;
    let toml = format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n[log]\naccess_log = true\n\
         [upstreams.\"m \\\"1\\\"\"]\ntargets = [\"{}\"]\n[[routes]]\nname = \"say \\\"hi\\\" \\\\ now\"\n\
         prefix = \"/\"\nto = \"m \\\"1\\\"\"\n",
        b.url()
    );
    let f = LoggingFigway::spawn(&toml);
    let ok = get(f.addr, "/x", &[("x-request-id", "id \"q\" \\ 1")]).await;
    assert_eq!(ok.status, 200);
    let line = f.next_line();
    let v: serde_json::Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("access-log line is not JSON ({e}): {line}"));
    assert_eq!(v["route"], "say \"hi\" \\ now", "{line}");
    assert_eq!(v["upstream"], "m \"1\"", "{line}");
    assert_eq!(v["request_id"], "id \"q\" \\ 1", "{line}");
    assert_eq!(v["method"], "GET", "{line}");
    assert_eq!(v["target"], b.addr.to_string(), "{line}");
}
