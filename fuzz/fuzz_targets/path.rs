//! Fuzzes `figway::path::normalize` and checks what its doc promises of a
//! path it accepts: it starts with `/`, has no dot segments left, keeps
//! only upper-case escapes of reserved bytes, and normalising it again
//! changes nothing (the router and the rewrite both rely on that).
#![no_main]

use libfuzzer_sys::fuzz_target;

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    // Upper case only: a lower-case escape left in the output is a bug.
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(out) = figway::path::normalize(input) else {
        return;
    };
    assert!(out.starts_with('/'), "{input:?} -> {out:?}: not absolute");
    assert!(
        !out.split('/').any(|s| s == "." || s == ".."),
        "{input:?} -> {out:?}: dot segment left"
    );
    let bytes = out.as_bytes();
    for (i, _) in out.match_indices('%') {
        let hi = bytes.get(i + 1).copied().and_then(hex);
        let lo = bytes.get(i + 2).copied().and_then(hex);
        let (Some(hi), Some(lo)) = (hi, lo) else {
            panic!("{input:?} -> {out:?}: escape at {i} is not %XX upper case");
        };
        assert!(
            !is_unreserved(hi << 4 | lo),
            "{input:?} -> {out:?}: escape of an unreserved byte at {i}"
        );
    }
    match figway::path::normalize(&out) {
        Ok(again) => assert_eq!(again, out, "{input:?}: not idempotent"),
        Err(e) => panic!("{input:?} -> {out:?}: normalising again fails: {e:?}"),
    }
});
