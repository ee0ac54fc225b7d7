//! Fuzzes figway's own HTTP/1.1 client's parsers over an upstream's
//! response stream: `figway::upstream::h1::head::parse_response` (interim
//! 1xx heads skipped, as the client does) and, after a chunked final head,
//! `figway::upstream::h1::body::Chunked` over the rest of the stream. An
//! upstream's bytes arrive in reads of any size, so everything they make
//! (each head's status, version, headers, framing, reusability and length,
//! the `Refused` verdict, the body's bytes, trailers and end or error) must
//! be the same whether the stream is fed whole, split at fuzzer-chosen
//! points, or byte by byte. Fed byte by byte, a head must parse on its last
//! byte, so the bytes a head takes are exactly its own. The input's first
//! byte says how many split points follow (two bytes each), the second
//! picks the request method (bit 0: HEAD, else GET), the `room` (bits
//! 1-4) and whether the fields come as lines (bit 5; `codec::lines`, and
//! then the stream read the other way must frame every head the same),
//! then the split points, then the stream. The stream's first head is
//! also scanned by `figway::codec::scan::response`, whose verdict, status
//! line and field spans must be `httparse`'s (default config), whose rules
//! it copies.
#![no_main]

use std::mem::MaybeUninit;

use bytes::BytesMut;
use figway::codec::scan;
use figway::upstream::h1::body::{Chunked, Step};
use figway::upstream::h1::head::{parse_response, Form, Framing, Refused};
use http::{HeaderMap, Method, StatusCode, Version};
use libfuzzer_sys::fuzz_target;

/// One parsed head, as far as the client uses it.
#[derive(Debug, PartialEq)]
struct Parsed {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    /// The fields as lines, and whether a length and a date are among them.
    lines: Option<(Vec<u8>, bool, bool)>,
    framing: Framing,
    reusable: bool,
    /// Bytes it took off the stream.
    len: usize,
}

#[derive(Debug, PartialEq)]
enum Verdict {
    /// The stream ended before a final head did.
    Incomplete,
    Refused(Refused),
    /// A final head (the last of `heads`).
    Final,
}

#[derive(Debug, PartialEq)]
enum BodyEnd {
    /// The stream ended before the body did.
    More,
    Err(&'static str),
    /// The last chunk and the trailers were read; `rest` bytes of the
    /// stream follow them.
    End {
        trailers: Option<HeaderMap>,
        rest: usize,
    },
}

/// What the client makes of a stream.
#[derive(Debug, PartialEq)]
struct Outcome {
    heads: Vec<Parsed>,
    verdict: Verdict,
    /// After a chunked final head: the decoded bytes and how it ended.
    body: Option<(Vec<u8>, BodyEnd)>,
}

fn is_interim(status: StatusCode) -> bool {
    status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS
}

/// Feeds `pieces` (which together are `stream`) as reads, the way
/// `upstream::h1::exchange` then `Body` consume them. `bytewise`: each
/// piece is one byte, so a head must end on the piece that completes it.
fn run<'a>(
    stream: &[u8],
    pieces: impl Iterator<Item = &'a [u8]>,
    method: &Method,
    form: Form,
    bytewise: bool,
) -> Outcome {
    let mut buf = BytesMut::new();
    // Bytes of the stream fed so far, and taken by heads so far.
    let mut fed = 0;
    let mut taken = 0;
    let mut heads = Vec::new();
    let mut verdict = Verdict::Incomplete;
    let mut decoder: Option<(Chunked, Vec<u8>)> = None;
    let mut body_end = BodyEnd::More;
    for piece in pieces {
        buf.extend_from_slice(piece);
        fed += piece.len();
        // The head, interim ones skipped.
        while verdict == Verdict::Incomplete && !buf.is_empty() {
            let before = buf.len();
            match parse_response(&mut buf, method, form) {
                Ok(None) => break,
                Err(why) => verdict = Verdict::Refused(why),
                Ok(Some(head)) => {
                    let len = before - buf.len();
                    taken += len;
                    // What is left is the stream past the head, untouched.
                    assert_eq!(&buf[..], &stream[taken..fed], "head of {len} bytes");
                    assert!(len > 0 && stream[taken - 1] == b'\n', "head of {len} bytes");
                    if bytewise {
                        assert!(buf.is_empty(), "a head parsed before its last byte");
                    }
                    let parts = head.parts;
                    if head.framing == Framing::Chunked {
                        assert!(!parts.headers.contains_key(http::header::CONTENT_LENGTH));
                    }
                    if head.framing == Framing::Close {
                        assert!(!head.reusable);
                    }
                    let last = !is_interim(parts.status);
                    if last {
                        verdict = Verdict::Final;
                        if head.framing == Framing::Chunked {
                            decoder = Some((Chunked::default(), Vec::new()));
                        }
                    }
                    heads.push(Parsed {
                        status: parts.status,
                        version: parts.version,
                        headers: parts.headers,
                        lines: head
                            .lines
                            .map(|l| (l.as_bytes().to_vec(), l.length, l.date)),
                        framing: head.framing,
                        reusable: head.reusable,
                        len,
                    });
                }
            }
        }
        if verdict != Verdict::Final {
            if verdict == Verdict::Incomplete {
                continue;
            }
            break;
        }
        // The chunked body.
        let Some((chunked, data)) = decoder.as_mut() else {
            break;
        };
        loop {
            match chunked.decode(&mut buf) {
                Ok(Step::Data(d)) => {
                    assert!(!d.is_empty(), "an empty data step");
                    data.extend_from_slice(&d);
                }
                Ok(Step::More) => break,
                Ok(Step::End(trailers)) => {
                    let rest = stream.len() - (fed - buf.len());
                    body_end = BodyEnd::End { trailers, rest };
                    break;
                }
                Err(why) => {
                    body_end = BodyEnd::Err(why);
                    break;
                }
            }
        }
        if body_end != BodyEnd::More {
            break;
        }
    }
    Outcome {
        heads,
        verdict,
        body: decoder.map(|(_, data)| (data, body_end)),
    }
}

/// `scan::response` and httparse on one buffer: the same verdict, and for
/// a whole head the same length, status line and field spans.
fn scan_agrees(buf: &[u8]) {
    const MAX: usize = 100;
    let mut spans = Vec::new();
    let ours = scan::response(buf, MAX, &mut spans);
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX];
    let mut r = httparse::Response::new(&mut []);
    let theirs = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut r,
        buf,
        &mut slots,
    );
    let status = match (ours, theirs) {
        (Ok(None), Ok(httparse::Status::Partial)) => return,
        (Err(scan::Error::TooMany), Err(httparse::Error::TooManyHeaders)) => return,
        (Err(scan::Error::Malformed), Err(e)) if e != httparse::Error::TooManyHeaders => return,
        (Ok(Some((status, len))), Ok(httparse::Status::Complete(n))) => {
            assert_eq!(len, n, "length");
            status
        }
        (ours, theirs) => panic!("scan {ours:?}, httparse {theirs:?}"),
    };
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| s.as_ptr() as usize - base;
    assert_eq!(Some(status.minor), r.version, "version");
    assert_eq!(Some(status.code), r.code, "code");
    let reason = &buf[status.reason.0..status.reason.1];
    assert_eq!(Some(reason), r.reason.map(str::as_bytes), "reason");
    let expected: Vec<[usize; 4]> = r
        .headers
        .iter()
        .map(|h| {
            let (n, v) = (at(h.name.as_bytes()), at(h.value));
            [n, n + h.name.len(), v, v + h.value.len()]
        })
        .collect();
    assert_eq!(spans, expected, "field spans");
}

fuzz_target!(|data: &[u8]| {
    let [n, flags, rest @ ..] = data else {
        return;
    };
    let n = usize::from(n % 8);
    if rest.len() < 2 * n {
        return;
    }
    let (cuts, stream) = rest.split_at(2 * n);
    scan_agrees(stream);
    let method = if flags & 1 == 1 {
        Method::HEAD
    } else {
        Method::GET
    };
    let room = usize::from((flags >> 1) & 0xf);
    let form = Form {
        room,
        lines: flags & 0x20 != 0,
    };
    let mut cuts: Vec<usize> = cuts
        .chunks(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (stream.len() + 1))
        .collect();
    cuts.sort_unstable();
    cuts.push(stream.len());

    let whole = run(stream, std::iter::once(stream), &method, form, false);
    let mut from = 0;
    let pieces = cuts.iter().map(|&to| {
        let piece = &stream[from..to];
        from = to;
        piece
    });
    let split = run(stream, pieces, &method, form, false);
    assert_eq!(split, whole, "split at {cuts:?} ({method}, {form:?})");
    let bytewise = run(stream, stream.chunks(1), &method, form, true);
    assert_eq!(bytewise, whole, "byte by byte ({method}, {form:?})");
    // Lines or a map: the same heads, framed the same, the same verdict.
    let other = Form {
        lines: !form.lines,
        ..form
    };
    let framed = |o: &Outcome| -> Vec<_> {
        o.heads
            .iter()
            .map(|h| (h.status, h.version, h.framing, h.reusable, h.len))
            .collect()
    };
    let otherwise = run(stream, std::iter::once(stream), &method, other, false);
    assert_eq!(framed(&otherwise), framed(&whole), "{method}, {form:?}");
    assert_eq!(otherwise.verdict, whole.verdict, "{method}, {form:?}");
    assert_eq!(otherwise.body, whole.body, "{method}, {form:?}");
});
