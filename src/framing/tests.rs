//! Unit tests of `framing`, in a file of their own so the module's
//! source reads as the code it is.

use super::*;

/// Feeds `stream` split at every position, and in one piece; all must
/// agree on the conflicting heads.
fn conflicts(stream: &[u8]) -> Vec<u64> {
    let whole = {
        let mut s = Scanner::new(1 << 16);
        s.feed(stream).into_iter().collect::<Vec<_>>()
    };
    for split in 1..stream.len() {
        let mut s = Scanner::new(1 << 16);
        let mut got: Vec<u64> = s.feed(&stream[..split]).into_iter().collect();
        got.extend(s.feed(&stream[split..]));
        assert_eq!(got, whole, "split at {split}");
    }
    let mut s = Scanner::new(1 << 16);
    let bytewise: Vec<u64> = stream.iter().filter_map(|b| s.feed(&[*b])).collect();
    assert_eq!(bytewise, whole, "byte by byte");
    whole
}

#[test]
fn plain_requests_never_conflict() {
    let s = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n";
    assert_eq!(conflicts(s), Vec::<u64>::new());
}

#[test]
fn both_headers_flag_their_request() {
    let s = b"GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(conflicts(s), vec![1]);
}

#[test]
fn chunked_bodies_are_followed() {
    // The body itself contains a request with both headers: not a head.
    let body = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut s = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    s.extend_from_slice(format!("{:x};ext=1\r\n", body.len()).as_bytes());
    s.extend_from_slice(body);
    s.extend_from_slice(b"\r\n0\r\nx-trailer: 1\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_eq!(conflicts(&s), vec![1]);
}

#[test]
fn fixed_bodies_are_skipped() {
    let body = b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut s = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    s.extend_from_slice(body);
    assert_eq!(conflicts(&s), Vec::<u64>::new());
}

/// Fuzz regression (fuzz/fuzz_targets/framing.rs): a head longer than
/// `max_head` was followed when it came in one read and dropped the
/// scanner when it came in pieces.
#[test]
fn a_head_past_the_limit_turns_it_off_however_it_arrives() {
    let head = b"POST / HTTP/1.1\r\nContent-Length: 8\r\nTransfer-Encoding: chunked\r\n\r\n";
    for max_head in [head.len() - 1, 33, 1] {
        let mut whole = Scanner::new(max_head);
        assert_eq!(whole.feed(head), None, "max_head {max_head}");
        let mut bytewise = Scanner::new(max_head);
        assert!(head.iter().all(|b| bytewise.feed(&[*b]).is_none()));
    }
    let mut fits = Scanner::new(head.len());
    assert_eq!(fits.feed(head), Some(0));
}

/// Found next to the fuzz target's split check: two conflicting heads
/// in one read reported the second, so the first, the one hyper serves
/// before it closes, went through; reads split between them reported
/// both.
#[test]
fn the_first_conflict_in_a_read_is_the_one_reported() {
    let one =
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let stream = [&one[..], &one[..]].concat();
    let mut s = Scanner::new(1 << 16);
    assert_eq!(s.feed(&stream), Some(0));
}

/// The same through [`Guarded`]: the two heads in two reads.
#[tokio::test]
async fn a_later_conflict_does_not_hide_the_first() {
    use tokio::io::AsyncReadExt;
    let one =
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let flags = ConnFlags::new();
    let mut io = Guarded::new((&one[..]).chain(&one[..]), flags.clone(), 1 << 16);
    let mut sink = Vec::new();
    io.read_to_end(&mut sink).await.unwrap();
    assert!(flags.next_request_conflicts(), "first request");
}

#[test]
fn a_length_that_is_not_a_number_still_conflicts() {
    for length in ["abc", "1, 2", "+5", "-1", ""] {
        let s = format!(
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: {length}\r\n\r\n0\r\n\r\n"
            );
        assert_eq!(conflicts(s.as_bytes()), vec![0], "{length:?}");
    }
}

#[test]
fn the_first_conflict_is_the_one_reported() {
    // The service asks after the guard has read both heads: the first,
    // which closes the connection, must not be overwritten.
    let one =
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(conflicts(&one.repeat(2)), vec![0]);
}

#[test]
fn differing_lengths_turn_it_off() {
    // hyper refuses such a head and closes: there is nothing to follow.
    let s = b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhelloPOST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(conflicts(s), Vec::<u64>::new());
}

#[test]
fn h2_preface_turns_it_off() {
    let s = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(conflicts(s), Vec::<u64>::new());
}
