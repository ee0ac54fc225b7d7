//! Inputs the fuzz targets (fuzz/fuzz_targets/, docs/fuzzing.md) once
//! failed on, kept as plain tests so `cargo test` guards the fixes without
//! a nightly toolchain. Framing ones live in src/framing.rs's unit tests,
//! next to the private state they exercise.

use std::path::Path;

/// Every message of a refused config opens with `file:line:col: `.
fn assert_positioned(text: &str) -> Vec<String> {
    let err = figway::config::load_str(text, Path::new("f.toml")).expect_err("refused");
    for m in &err.messages {
        let rest = m.strip_prefix("f.toml:").unwrap_or_else(|| panic!("{m:?}"));
        let mut parts = rest.splitn(3, ':');
        let line: usize = parts.next().and_then(|s| s.parse().ok()).expect(m);
        let col: usize = parts.next().and_then(|s| s.parse().ok()).expect(m);
        assert!(line >= 1 && col >= 1, "{m:?}");
        assert!(line <= text.split('\n').count(), "{m:?}");
    }
    err.messages
}

/// config target: toml reports a dotted key 100 parts deep with no span, and
/// the message came out as `f.toml: syntax error: recursion limit`.
#[test]
fn a_too_deep_dotted_key_still_has_a_position() {
    let key = vec!["a"; 100].join(".");
    let text = format!("{key} = 1\n[listen]\naddress = \"127.0.0.1:1\"\n");
    let messages = assert_positioned(&text);
    assert!(
        messages.iter().any(|m| m.contains("recursion limit")),
        "{messages:?}"
    );
}
