//! Unit tests of `codec`, in a file of their own so the module's
//! source reads as the code it is.

use super::*;

#[test]
fn lengths_are_read_as_hyper_reads_them() {
    assert_eq!(content_length(b"0"), Some(0));
    assert_eq!(content_length(b"0012"), Some(12));
    assert_eq!(content_length(b"18446744073709551615"), Some(u64::MAX));
    for bad in [
        &b""[..],
        b"+5",
        b"-5",
        b"1, 2",
        b"5 5",
        b"0x5",
        b"18446744073709551616",
    ] {
        assert_eq!(
            content_length(bad),
            None,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn tokens_and_codings() {
    assert!(has_token(b"Keep-Alive, CLOSE", b"close"));
    assert!(!has_token(b"closed", b"close"));
    assert!(last_coding_is_chunked(b"gzip, Chunked "));
    assert!(!last_coding_is_chunked(b"chunked, gzip"));
    assert!(!last_coding_is_chunked(b""));
    // Not text: no tokens, as hyper reads it.
    assert!(!has_token(b"keep-alive, \x80", b"keep-alive"));
    assert!(!last_coding_is_chunked(b"\x80, chunked"));
}

#[test]
fn tokens_are_lowercased_as_make_ascii_lowercase_does() {
    let tchars =
        b"!#$%&'*+-.^_`|~0123456789AZaz@[\\]{}\x7f\xc3GHIJKLMNOPQRSTUVWXYghijklmnopqrstuvwxy";
    for len in 0..=tchars.len() {
        for start in 0..tchars.len() - len {
            let mut ours = tchars[start..start + len].to_vec();
            let mut std = ours.clone();
            lowercase(&mut ours);
            std.make_ascii_lowercase();
            assert_eq!(ours, std, "{:?}", String::from_utf8_lossy(&std));
        }
    }
    for byte in 0..=255u8 {
        let mut ours = [byte; 9];
        lowercase(&mut ours);
        assert_eq!(ours, [byte.to_ascii_lowercase(); 9], "{byte:#x}");
    }
}

#[test]
fn the_common_names_table_is_sorted_by_length_as_name_reads_it() {
    for (lower, name) in &COMMON_NAMES {
        assert_eq!(*lower, name.as_str().as_bytes());
        assert!(
            common_names(lower.len()).iter().any(|(l, _)| l == lower),
            "{name} is not among the names of its length"
        );
    }
}

#[test]
fn field_names_are_read_as_http_reads_them() {
    let names = [
        "host",
        "Date",
        "ETAG",
        "vary",
        "Server",
        "accept",
        "Cookie",
        "origin",
        "Expires",
        "upgrade",
        "Referer",
        "Connection",
        "user-agent",
        "Set-Cookie",
        "Keep-Alive",
        "Content-Type",
        "Last-Modified",
        "cache-control",
        "Accept-Ranges",
        "AUTHORIZATION",
        "Content-Length",
        "Accept-Encoding",
        "accept-language",
        "Content-Encoding",
        "Transfer-Encoding",
        // Near misses of the names matched as they come: one byte
        // off at the start, in the middle, at the end.
        "gost",
        "dat3",
        "Conte_t-Length",
        "content-lengtH",
        "content-lengthx",
        "Transfer-Encodinf",
        "x-request-id",
        "X-Forwarded-For",
        "a",
        "abc",
        "x_y",
    ];
    for text in names {
        let ours = name(text.as_bytes()).unwrap();
        let http = HeaderName::from_bytes(text.as_bytes()).unwrap();
        assert_eq!(ours, http, "{text}");
        assert_eq!(ours.as_str(), text.to_ascii_lowercase(), "{text}");
    }
    for bad in [&b""[..], b"bad name", b"bad:", b"\x80host"] {
        assert!(name(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
}
