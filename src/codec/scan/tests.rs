//! `scan::response` held to `httparse` (default config): the same verdict
//! on every head, every prefix of it, and thousands of mutations of both.

use std::mem::MaybeUninit;

use super::{response, Error, Status};

/// What a scanner made of `buf`: the verdict, and for a whole head its
/// status line, length and field spans.
type Verdict = Result<Option<(Status, usize, Vec<[usize; 4]>)>, Error>;

fn ours(buf: &[u8], max: usize) -> Verdict {
    let mut spans = Vec::new();
    Ok(response(buf, max, &mut spans)?.map(|(status, len)| (status, len, spans)))
}

fn theirs(buf: &[u8], max: usize) -> Verdict {
    let mut slots = vec![MaybeUninit::<httparse::Header<'_>>::uninit(); max];
    let mut r = httparse::Response::new(&mut []);
    let config = httparse::ParserConfig::default();
    let len = match config.parse_response_with_uninit_headers(&mut r, buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Error::TooMany),
        Err(_) => return Err(Error::Malformed),
    };
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| s.as_ptr() as usize - base;
    let reason = match r.reason {
        Some(text) if !text.is_empty() => (at(text.as_bytes()), at(text.as_bytes()) + text.len()),
        _ => (0, 0),
    };
    let spans = r
        .headers
        .iter()
        .map(|h| {
            let (n, v) = (at(h.name.as_bytes()), at(h.value));
            [n, n + h.name.len(), v, v + h.value.len()]
        })
        .collect();
    let status = Status {
        minor: r.version.unwrap_or(9),
        code: r.code.unwrap_or(0),
        reason,
    };
    Ok(Some((status, len, spans)))
}

/// Ours, with an empty reason's span written as httparse's is here.
fn ours_normalized(buf: &[u8], max: usize) -> Verdict {
    ours(buf, max).map(|v| {
        v.map(|(mut s, len, spans)| {
            if s.reason.0 == s.reason.1 {
                s.reason = (0, 0);
            }
            (s, len, spans)
        })
    })
}

fn agree(buf: &[u8], max: usize) {
    assert_eq!(
        ours_normalized(buf, max),
        theirs(buf, max),
        "{:?}",
        String::from_utf8_lossy(buf)
    );
}

const HEADS: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 02 Dec 2026 03:53:20 GMT\r\nContent-Type: text/plain\r\nContent-Length: 100\r\nConnection: keep-alive\r\n\r\nbody",
    b"HTTP/1.0 404 Not Found\nContent-Length: 0\n\n",
    b"\r\n\nHTTP/1.1 204\r\n\r\n",
    b"HTTP/1.1 200 \r\nx:\r\ny: \t \r\nz:\tv\t\r\n\r\n",
    b"HTTP/1.1 599 Reason with\ttab and \xe9 obs-text\r\nA: \xff\xfe value \x80\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nLong: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\nTabbed: a\tb\tc\td\te\tf\tg\th\ti\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nFolded: a\r\n b\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nSpace : a\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad\x7f: a\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nDel: a\x7fb\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nNul: a\x00b\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nCr: a\rb\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
    b"HTTP/1.1 200 OK\r\r\n\r\n",
    b"HTTP/2 200\r\n\r\n",
    b"HTTP/1.1  200 OK\r\n\r\n",
    b"HTTP/1.1 20 OK\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\n\r\n",
    b"HTTP/1.1 200OK\r\n\r\n",
    b"http/1.1 200 OK\r\n\r\n",
    b"\rHTTP/1.1 200 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n",
];

/// `agree` on every prefix of every head, at each header limit.
fn every_prefix(heads: &[&[u8]], maxes: &[usize], agree: fn(&[u8], usize)) {
    for head in heads {
        for end in 0..=head.len() {
            for &max in maxes {
                agree(&head[..end], max);
            }
        }
    }
}

/// `agree` on 20,000 mutations of the heads (one to three bytes from
/// `bytes` replaced, inserted or removed), whole and cut at a random
/// point, at a header limit from `maxes`.
fn mutations(heads: &[&[u8]], bytes: &[u8], seed: u64, maxes: &[usize], agree: fn(&[u8], usize)) {
    let mut rng = fastrand::Rng::with_seed(seed);
    for _ in 0..20_000 {
        let mut head = heads[rng.usize(..heads.len())].to_vec();
        for _ in 0..rng.usize(1..4) {
            let at = rng.usize(..head.len());
            let b = bytes[rng.usize(..bytes.len())];
            match rng.u8(..3) {
                0 => head[at] = b,
                1 => head.insert(at, b),
                _ => drop(head.remove(at)),
            }
            if head.is_empty() {
                break;
            }
        }
        let max = maxes[rng.usize(..maxes.len())];
        agree(&head, max);
        let cut = rng.usize(..=head.len());
        agree(&head[..cut], max);
    }
}

#[test]
fn whole_heads_and_every_prefix_agree_with_httparse() {
    every_prefix(HEADS, &[100, 3, 0], agree);
}

#[test]
fn mutated_heads_agree_with_httparse() {
    mutations(
        HEADS,
        b"\r\n\t :\x00\x7f\x80\xffaZ0-1.HTTP/",
        0x5ca9,
        &[100, 4],
        agree,
    );
}

#[test]
fn a_value_ends_at_the_first_byte_it_may_not_hold_at_every_offset() {
    for at in 0..40 {
        for bad in [0u8, b'\r', b'\n', 0x1f, 0x7f] {
            let mut text = vec![b'a'; 40];
            text[at] = bad;
            // Tabs and bytes past ASCII around it change nothing.
            if at > 0 {
                text[at - 1] = b'\t';
            }
            if at + 1 < text.len() {
                text[at + 1] = 0xff;
            }
            assert_eq!(super::text_end(&text, 0), at, "{bad:#x} at {at}");
        }
    }
    assert_eq!(super::text_end(b"\t \x80\xff~abc", 0), 8);
}

/// What the request scanner made of `buf`: the verdict, and for a whole
/// head its method, target, version, length and field spans.
type RequestVerdict = Result<Option<(super::RequestLine, usize, Vec<[usize; 4]>)>, Error>;

fn our_request(buf: &[u8], max: usize) -> RequestVerdict {
    let mut spans = Vec::new();
    Ok(super::request(buf, max, &mut spans)?.map(|(line, len)| (line, len, spans)))
}

fn their_request(buf: &[u8], max: usize) -> RequestVerdict {
    let mut slots = vec![MaybeUninit::<httparse::Header<'_>>::uninit(); max];
    let mut r = httparse::Request::new(&mut []);
    let config = httparse::ParserConfig::default();
    let len = match config.parse_request_with_uninit_headers(&mut r, buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Error::TooMany),
        Err(_) => return Err(Error::Malformed),
    };
    let base = buf.as_ptr() as usize;
    let span = |s: &[u8]| {
        (
            s.as_ptr() as usize - base,
            s.as_ptr() as usize - base + s.len(),
        )
    };
    let spans = r
        .headers
        .iter()
        .map(|h| {
            let (n, v) = (span(h.name.as_bytes()), span(h.value));
            [n.0, n.1, v.0, v.1]
        })
        .collect();
    let (Some(method), Some(path), Some(minor)) = (r.method, r.path, r.version) else {
        panic!("a whole request without its line");
    };
    let line = super::RequestLine {
        method: span(method.as_bytes()),
        target: span(path.as_bytes()),
        minor,
    };
    Ok(Some((line, len, spans)))
}

fn request_agrees(buf: &[u8], max: usize) {
    assert_eq!(
        our_request(buf, max),
        their_request(buf, max),
        "{:?}",
        String::from_utf8_lossy(buf)
    );
}

const REQUESTS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
    b"POST /api/v1/orders?id=7&x=%20 HTTP/1.0\nContent-Length: 3\nX-A:\t b \n\nabc",
    b"\r\n\r\nPATCH /\xc3\xa9t\xc3\xa9 HTTP/1.1\r\nA: \xff\r\n\r\n",
    b"GET /\xff HTTP/1.1\r\n\r\n",
    b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\n\r\n",
    b"GET http://example.com/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p HTTP/1.1\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/120.0\r\nAccept: text/html,application/xhtml+xml;q=0.9,*/*;q=0.8\r\n\r\n",
    b"GET  / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1 \r\n\r\n",
    b"GET /a\x7fb HTTP/1.1\r\n\r\n",
    b"GET /a\tb HTTP/1.1\r\n\r\n",
    b"G(T / HTTP/1.1\r\n\r\n",
    b" GET / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/2.0\r\n\r\n",
    b"GET / HTTP/1.1\rX\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
    b"GET / HTTP/1.1\r\nA: 1\r\n B: 2\r\n\r\n",
];

#[test]
fn whole_requests_and_every_prefix_agree_with_httparse() {
    every_prefix(REQUESTS, &[100, 1, 0], request_agrees);
}

#[test]
fn mutated_requests_agree_with_httparse() {
    let bytes = b"\r\n\t :\x00\x7f\x80\xff\xc3\xa9aZ0-1./?HTTP";
    mutations(REQUESTS, bytes, 0x7e9, &[100, 2], request_agrees);
}
