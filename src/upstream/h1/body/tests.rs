//! Unit tests of `upstream::h1::body`, in a file of their own so the module's
//! source reads as the code it is.

use super::*;

fn all(input: &[u8]) -> Result<(Vec<u8>, Option<HeaderMap>, bool), &'static str> {
    // Fed a byte at a time: every split point must decode the same.
    let mut chunk = Chunk::Size;
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for b in input {
        buf.extend_from_slice(&[*b]);
        loop {
            match decode(&mut chunk, &mut buf)? {
                Step::Data(d) => out.extend_from_slice(&d),
                Step::End(t) => return Ok((out, t, buf.is_empty())),
                Step::More => break,
            }
        }
    }
    Err("never ended")
}

#[test]
fn chunks_with_extensions_and_trailers_decode_at_any_split() {
    let (data, trailers, rest_empty) =
        all(b"5;a=b\r\nhello\r\n6 ; x\r\n world\r\n0\r\nx-sum: 1 \r\n\r\n").unwrap();
    assert_eq!(data, b"hello world");
    assert_eq!(trailers.unwrap()["x-sum"], "1");
    assert!(rest_empty);
    let (data, trailers, _) = all(b"3\nabc\n0\n\n").unwrap();
    assert_eq!((data, trailers), (b"abc".to_vec(), None));
}

#[test]
fn bad_chunked_coding_is_refused() {
    assert!(all(b"x\r\n").is_err());
    assert!(all(b"5\r\nhelloX\r\n").is_err());
    assert!(all(b"10000000000000000\r\n").is_err());
    assert!(all(b"5 5\r\n").is_err());
    assert!(all(b"0\r\nno colon\r\n\r\n").is_err());
    let mut long = b"1;".to_vec();
    long.resize(MAX_CHUNK_LINE + 2, b'a');
    assert!(all(&long).is_err());
}

/// Found reviewing the client: each trailer line went into a
/// `HeaderMap`, which panics past 24,576 names, and only the bytes
/// were limited.
#[test]
fn more_trailer_lines_than_a_head_may_have_are_refused() {
    let mut input = b"0\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        input.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
    }
    input.extend_from_slice(b"\r\n");
    let mut buf = BytesMut::from(&input[..]);
    assert_eq!(
        Chunked::default().decode(&mut buf),
        Err("too many trailers")
    );
    let mut input = b"0\r\n".to_vec();
    for i in 0..MAX_HEADERS {
        input.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
    }
    input.extend_from_slice(b"\r\n");
    let mut buf = BytesMut::from(&input[..]);
    match Chunked::default().decode(&mut buf) {
        Ok(Step::End(Some(t))) => assert_eq!(t.len(), MAX_HEADERS),
        other => panic!("{other:?}"),
    }
}

/// Found by the `h1_response` fuzz target's author: a trailer line
/// ending exactly at the limit pushed the count past it, and the next
/// line's limit (`MAX_HEAD - seen`) underflowed: a panic in debug
/// builds, no limit at all in release ones.
#[test]
fn trailers_at_the_size_limit_are_refused_not_wrapped() {
    for terminator in [&b"\n"[..], b"\r\n"] {
        let mut input = b"0\r\nx: ".to_vec();
        let line_end = 3 + MAX_HEAD - terminator.len() + 1;
        input.resize(line_end, b'a');
        input.extend_from_slice(terminator);
        input.extend_from_slice(b"y: 1\r\n\r\n");
        let mut buf = BytesMut::from(&input[..]);
        let mut chunked = Chunked::default();
        let mut verdict = chunked.decode(&mut buf);
        while let Ok(Step::Data(_)) = verdict {
            verdict = chunked.decode(&mut buf);
        }
        assert_eq!(verdict, Err("trailers too large"));
    }
}
