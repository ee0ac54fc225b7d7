//! Unit tests of `access_log::format`, in a file of their own so the module's
//! source reads as the code it is.

use super::*;

fn line(format: LogFormat) -> Vec<u8> {
    let mut buf = Vec::new();
    let l = sample();
    match format {
        LogFormat::Json => json(&mut buf, &l),
        LogFormat::Pretty => pretty(&mut buf, &l),
    }
    buf
}

fn sample() -> Line<'static> {
    Line {
        format: LogFormat::Json,
        end: UNIX_EPOCH + Duration::from_micros(1_764_480_000_123_000 + 2_500_250),
        request_id: b"id-\"1\"",
        client: b"10.0.0.1",
        method: "GET",
        path: "/a\\b",
        host: Some(b"shop.test"),
        route: Some(Name {
            text: "api",
            json: "\"api\"",
        }),
        upstream: None,
        target: None,
        status: 200,
        bytes_in: 5,
        bytes_out: 7,
        duration: Duration::from_micros(2_500_250),
        retries: 1,
        error: None,
    }
}

#[test]
fn json_lines_parse_and_keep_their_fields() {
    let text = String::from_utf8(line(LogFormat::Json)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["ts"], "2025-11-30T05:20:00.123Z", "{text}");
    assert_eq!(v["request_id"], "id-\"1\"");
    assert_eq!(v["path"], "/a\\b");
    assert_eq!(v["duration_ms"], 2500.25);
    assert_eq!(v["upstream"], serde_json::Value::Null);
    assert_eq!(v.as_object().unwrap().len(), 15);
}

#[test]
fn the_word_scan_finds_every_byte_that_needs_escaping_at_every_offset() {
    for len in 0..20 {
        for at in 0..len {
            for b in (0u8..=255).filter(|b| needs_escape(*b) || *b >= 0x7f || *b == b'!') {
                let mut bytes = vec![b'a'; len];
                bytes[at] = b;
                assert_eq!(
                    super::any_needs_escape(&bytes, false),
                    needs_escape(b),
                    "byte {b:#x} at {at} of {len}"
                );
                assert_eq!(
                    super::any_needs_escape(&bytes, true),
                    needs_escape(b) || b >= 0x80,
                    "byte {b:#x} at {at} of {len}, non-ASCII flagged"
                );
            }
        }
        assert!(!super::any_needs_escape(&vec![b'~'; len], true));
    }
}

#[test]
fn names_are_rendered_once_as_json_strings() {
    let name = "a \"quoted\" \\ name\t";
    let json = json_string(name);
    let back: String = serde_json::from_str(&json).unwrap();
    assert_eq!(back, name);
    assert_eq!(&*json_string("api"), "\"api\"");
}

#[test]
fn a_host_is_escaped_when_it_must_be_and_null_when_not_text() {
    let host_of = |host: &[u8]| {
        let mut buf = Vec::new();
        json(
            &mut buf,
            &Line {
                host: Some(host),
                ..sample()
            },
        );
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        v["host"].clone()
    };
    assert_eq!(host_of(b"shop.test:8080"), "shop.test:8080");
    assert_eq!(host_of(b"a\"b\\c\td"), "a\"b\\c\td");
    // obs-text: a header value, but not text (`HeaderValue::to_str`).
    assert_eq!(host_of(b"caf\xc3\xa9.test"), serde_json::Value::Null);
    let mut buf = Vec::new();
    pretty(
        &mut buf,
        &Line {
            host: Some(b"caf\xc3\xa9.test"),
            ..sample()
        },
    );
    assert!(String::from_utf8(buf).unwrap().contains(" GET /a\\b -> "));
}

#[test]
fn the_stamp_is_the_start_floored_to_the_millisecond() {
    let stamp_of = |end: Duration, duration: Duration| {
        let mut buf = Vec::new();
        // Another thread's cache cannot interfere: STAMP is per thread.
        stamp(&mut buf, UNIX_EPOCH + end, duration);
        String::from_utf8(buf).unwrap()
    };
    // 1.0000005 s less 600 ns starts at 0.9999999 s.
    assert_eq!(
        stamp_of(
            Duration::from_nanos(1_000_000_500),
            Duration::from_nanos(600)
        ),
        "1970-01-01T00:00:00.999Z"
    );
    assert_eq!(
        stamp_of(
            Duration::from_nanos(1_000_000_500),
            Duration::from_nanos(500)
        ),
        "1970-01-01T00:00:01.000Z"
    );
    // A duration longer than the clock reads: the epoch, not a panic.
    assert_eq!(
        stamp_of(Duration::from_secs(1), Duration::from_secs(2)),
        "1970-01-01T00:00:00.000Z"
    );
}

#[test]
fn control_bytes_and_bad_utf8_are_escaped() {
    let mut buf = Vec::new();
    string(&mut buf, b"a\x01b\n\xff");
    let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
    assert_eq!(v, "a\u{1}b\n\u{fffd}");
}

#[test]
fn addresses_render_whole() {
    let mut out = [0; 46];
    for ip in [
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "::ffff:10.0.0.1",
        "10.0.0.1",
    ] {
        let addr: IpAddr = ip.parse().unwrap();
        assert_eq!(ip_text(addr, &mut out), ip.as_bytes());
    }
}

#[test]
fn pretty_lines_read_left_to_right() {
    let text = String::from_utf8(line(LogFormat::Pretty)).unwrap();
    assert!(
        text.starts_with(
            "2025-11-30T05:20:00.123Z 200 GET shop.test/a\\b -> api -/- retries=1 2500.250ms"
        ),
        "{text}"
    );
}
