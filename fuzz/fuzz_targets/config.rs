//! Fuzzes the config loader (`figway::config::load_str`) with arbitrary
//! text: it must never panic, and when it refuses a file every message must
//! open with `file:line:col` pointing inside the text, since operators jump
//! to that position in their editor.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

const NAME: &str = "fuzz.toml";

/// Checks that `message` opens with `NAME:line:col: ` inside `text`
/// (col may be one past the line's last character: an error at its end).
fn check_position(text: &str, message: &str) {
    let rest = message
        .strip_prefix(NAME)
        .and_then(|r| r.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no file name: {message:?}"));
    let mut parts = rest.splitn(3, ':');
    let number = |p: Option<&str>| -> usize {
        p.and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no line:col: {message:?}"))
    };
    let line = number(parts.next());
    let col = number(parts.next());
    assert!(
        parts.next().is_some_and(|r| r.starts_with(' ')),
        "no ': ' after line:col: {message:?}"
    );
    // line_col counts '\n' only, so lines are what split('\n') yields.
    let Some(text_line) = text.split('\n').nth(line.wrapping_sub(1)) else {
        panic!(
            "line {line} outside a text of {} lines: {message:?}",
            text.split('\n').count()
        );
    };
    let width = text_line.chars().count();
    assert!(
        (1..=width + 1).contains(&col),
        "col {col} outside line {line} of {width} characters: {message:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match figway::config::load_str(text, Path::new(NAME)) {
        Ok(loaded) => {
            // A valid config names a listener and at least one upstream.
            assert!(!loaded.config.upstreams.is_empty());
        }
        Err(e) => {
            assert!(!e.messages.is_empty(), "refused with no message");
            for m in &e.messages {
                check_position(text, m);
            }
        }
    }
});
