//! Fuzzes the request side of figway's own HTTP/1.1 server codec:
//! `figway::codec::request::parse` over a client's stream of pipelined
//! requests, and `figway::codec::response::encode` answering each head it
//! accepts. A client's bytes arrive in reads of any size, so everything
//! the parser makes of them (each head's parts, framing, keep-alive,
//! expectation, upgrade and conflict mark, the bytes it took, and the
//! refusal) must be the same whether the stream is fed whole, split at
//! fuzzer-chosen points, or byte by byte; fed byte by byte, a head parses
//! on its last byte. Each answer head written must parse back with the
//! client's own response parser (`upstream::h1::head::parse_response`)
//! to the status and framing it was written with.
//!
//! The input's first byte says how many split points follow (two bytes
//! each), the next two give the head limit (64 bytes to 16 KiB), then
//! the split points, then the stream. Bodies framed by a length are
//! skipped, chunked ones decoded by `figway::codec::chunked` (their data
//! and trailers must agree too); a conflict or a refusal ends the stream.
//! The stream's first head is also scanned by
//! `figway::codec::scan::request`, whose verdict, request line and field
//! spans must be `httparse`'s (default config), whose rules it copies.
#![no_main]

use std::mem::MaybeUninit;

use bytes::BytesMut;
use figway::codec::chunked::{Decoder, Malformed, Step};
use figway::codec::request::{parse, Framing, Refusal};
use figway::codec::scan;
use figway::codec::response::{encode, Asked, BodyLength, Encoding};
use figway::upstream::h1::head::{parse_response, Form, Framing as Read};
use http::{HeaderMap, Method, StatusCode, Uri, Version};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
struct Parsed {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
    wants_upgrade: bool,
    conflict: bool,
    len: usize,
    /// A chunked body's data and trailers, once it ended.
    body: Option<(Vec<u8>, Option<HeaderMap>)>,
}

#[derive(Debug, PartialEq)]
enum Verdict {
    Incomplete,
    Refused(Refusal),
    BadBody(Malformed),
    /// A conflict: the stream is not followed further.
    Stopped,
}

fn run<'a>(
    stream: &[u8],
    pieces: impl Iterator<Item = &'a [u8]>,
    max: usize,
    bytewise: bool,
) -> (Vec<Parsed>, Verdict) {
    let mut buf = BytesMut::new();
    let mut heads = Vec::new();
    let mut verdict = Verdict::Incomplete;
    let (mut fed, mut taken) = (0, 0);
    // Body bytes still to skip.
    let mut skip: u64 = 0;
    // A chunked body being read, and its data so far.
    let mut chunked: Option<(Decoder, Vec<u8>)> = None;
    'feed: for piece in pieces {
        buf.extend_from_slice(piece);
        fed += piece.len();
        loop {
            if let Some((decoder, data)) = chunked.as_mut() {
                let before = buf.len();
                let step = decoder.decode(&mut buf);
                taken += before - buf.len();
                match step {
                    Err(why) => {
                        verdict = Verdict::BadBody(why);
                        break 'feed;
                    }
                    Ok(Step::More) => continue 'feed,
                    Ok(Step::Data(d)) => {
                        assert!(!d.is_empty(), "an empty data frame");
                        data.extend_from_slice(&d);
                        continue;
                    }
                    Ok(Step::End(trailers)) => {
                        let data = chunked.take().map(|(_, d)| d).unwrap_or_default();
                        if let Some(last) = heads.last_mut() {
                            let last: &mut Parsed = last;
                            last.body = Some((data, trailers));
                        }
                        assert_eq!(&buf[..], &stream[taken..fed], "after a chunked body");
                    }
                }
            }
            if skip > 0 {
                let n = skip.min(buf.len() as u64) as usize;
                let _ = buf.split_to(n);
                taken += n;
                skip -= n as u64;
                if skip > 0 {
                    continue 'feed;
                }
            }
            if buf.is_empty() {
                continue 'feed;
            }
            let before = buf.len();
            match parse(&mut buf, max) {
                Ok(None) => continue 'feed,
                Err(why) => {
                    verdict = Verdict::Refused(why);
                    break 'feed;
                }
                Ok(Some(head)) => {
                    let len = before - buf.len();
                    taken += len;
                    assert_eq!(&buf[..], &stream[taken..fed], "head of {len} bytes");
                    assert!(len <= max, "a head of {len} bytes past the limit {max}");
                    if bytewise {
                        assert!(buf.is_empty(), "a head parsed before its last byte");
                    }
                    let headers = &head.parts.headers;
                    if head.framing == Framing::Chunked {
                        assert!(!headers.contains_key(http::header::CONTENT_LENGTH));
                    }
                    if head.conflict {
                        assert!(!head.keep_alive && head.framing == Framing::Chunked);
                    }
                    answer(&head.parts.method, head.parts.version, head.keep_alive);
                    let stop = head.conflict;
                    if head.framing == Framing::Chunked && !stop {
                        chunked = Some((Decoder::default(), Vec::new()));
                    }
                    if let Framing::Length(n) = head.framing {
                        skip = n;
                    }
                    heads.push(Parsed {
                        method: head.parts.method,
                        uri: head.parts.uri,
                        version: head.parts.version,
                        headers: head.parts.headers,
                        framing: head.framing,
                        keep_alive: head.keep_alive,
                        expect_continue: head.expect_continue,
                        wants_upgrade: head.wants_upgrade,
                        conflict: head.conflict,
                        len,
                        body: None,
                    });
                    if stop {
                        verdict = Verdict::Stopped;
                        break 'feed;
                    }
                }
            }
        }
    }
    (heads, verdict)
}

/// Writes an answer to the request and reads it back as a client would.
fn answer(method: &Method, version: Version, keep_alive: bool) {
    for (status, body) in [
        (200, BodyLength::Known(5)),
        (200, BodyLength::Unknown),
        (404, BodyLength::None),
        (304, BodyLength::None),
    ] {
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        let asked = Asked {
            method,
            version,
            keep_alive,
        };
        let mut out = Vec::new();
        let Ok(encoded) = encode(
            &mut parts,
            body,
            asked,
            || *b"Thu, 01 Jan 1970 00:00:00 GMT",
            &mut out,
        ) else {
            panic!("a plain {status} could not be written");
        };
        let mut read = BytesMut::from(&out[..]);
        let head = match parse_response(
            &mut read,
            method,
            Form {
                room: 0,
                lines: false,
            },
        ) {
            Ok(Some(head)) => head,
            other => panic!(
                "the answer head does not parse back: {other:?}: {:?}",
                String::from_utf8_lossy(&out)
            ),
        };
        assert!(read.is_empty(), "bytes past the answer head");
        assert_eq!(head.parts.status.as_u16(), status);
        let framing = match encoded.encoding {
            Encoding::Length(0) => [Read::Empty, Read::Length(0)].to_vec(),
            Encoding::Length(n) => [Read::Length(n), Read::Empty].to_vec(),
            Encoding::Chunked => [Read::Chunked, Read::Empty].to_vec(),
            Encoding::CloseDelimited => [Read::Close, Read::Empty].to_vec(),
        };
        // A 2xx to CONNECT has no framing: the tunnel follows its head.
        let tunnel = method == Method::CONNECT && (200..300).contains(&status);
        assert!(
            framing.contains(&head.framing) || tunnel,
            "{:?} read back as {:?}",
            encoded.encoding,
            head.framing
        );
    }
}

/// `scan::request` and httparse on one buffer: the same verdict, and for
/// a whole head the same length, request line and field spans.
fn scan_agrees(buf: &[u8]) {
    const MAX: usize = 100;
    let mut spans = Vec::new();
    let ours = scan::request(buf, MAX, &mut spans);
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX];
    let mut r = httparse::Request::new(&mut []);
    let theirs =
        httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut r, buf, &mut slots);
    let line = match (ours, theirs) {
        (Ok(None), Ok(httparse::Status::Partial)) => return,
        (Err(scan::Error::TooMany), Err(httparse::Error::TooManyHeaders)) => return,
        (Err(scan::Error::Malformed), Err(e)) if e != httparse::Error::TooManyHeaders => return,
        (Ok(Some((line, len))), Ok(httparse::Status::Complete(n))) => {
            assert_eq!(len, n, "length");
            line
        }
        (ours, theirs) => panic!("scan {ours:?}, httparse {theirs:?}"),
    };
    let base = buf.as_ptr() as usize;
    let span = |s: &[u8]| {
        let at = s.as_ptr() as usize - base;
        (at, at + s.len())
    };
    assert_eq!(Some(line.minor), r.version, "version");
    assert_eq!(Some(line.method), r.method.map(|m| span(m.as_bytes())), "method");
    assert_eq!(Some(line.target), r.path.map(|p| span(p.as_bytes())), "target");
    let expected: Vec<[usize; 4]> = r
        .headers
        .iter()
        .map(|h| {
            let (n, v) = (span(h.name.as_bytes()), span(h.value));
            [n.0, n.1, v.0, v.1]
        })
        .collect();
    assert_eq!(spans, expected, "field spans");
}

fuzz_target!(|data: &[u8]| {
    let Some((&splits, rest)) = data.split_first() else {
        return;
    };
    if rest.len() < 2 {
        return;
    }
    let max = 64 + (usize::from(u16::from_le_bytes([rest[0], rest[1]])) % (16 * 1024 - 64));
    let rest = &rest[2..];
    let splits = usize::from(splits % 8);
    if rest.len() < splits * 2 {
        return;
    }
    let (points, stream) = rest.split_at(splits * 2);
    scan_agrees(stream);
    let whole = run(stream, std::iter::once(stream), max, false);
    let mut cuts: Vec<usize> = points
        .chunks(2)
        .map(|p| usize::from(u16::from_le_bytes([p[0], p[1]])) % (stream.len() + 1))
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut pieces = Vec::new();
    let mut at = 0;
    for cut in cuts {
        pieces.push(&stream[at..cut]);
        at = cut;
    }
    pieces.push(&stream[at..]);
    assert_eq!(run(stream, pieces.into_iter(), max, false), whole, "split");
    assert_eq!(
        run(stream, stream.chunks(1), max, true),
        whole,
        "byte by byte"
    );
});
