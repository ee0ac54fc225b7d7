//! Fuzzes the smuggling guard's `figway::framing::Scanner`: a client's
//! bytes arrive in reads of any size, so the first conflicting request
//! (both `Content-Length` and `Transfer-Encoding`) it reports must be the
//! same whether the stream is fed whole, split at fuzzer-chosen points, or
//! byte by byte. The input's first byte says how many split points follow
//! (two bytes each), then two bytes of `max_head`, then the stream.
#![no_main]

use figway::framing::Scanner;
use libfuzzer_sys::fuzz_target;

/// The earliest conflicting head over a sequence of feeds.
fn first_conflict<'a>(max_head: usize, pieces: impl Iterator<Item = &'a [u8]>) -> Option<u64> {
    let mut s = Scanner::new(max_head);
    pieces.filter_map(|p| s.feed(p)).min()
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 8);
    if rest.len() < 2 * n + 2 {
        return;
    }
    let (cuts, rest) = rest.split_at(2 * n);
    let (head, stream) = rest.split_at(2);
    // 0 stands for the default 64 KiB, so most runs follow every head.
    let max_head = match u16::from_le_bytes([head[0], head[1]]) {
        0 => 1 << 16,
        m => usize::from(m),
    };
    let mut cuts: Vec<usize> = cuts
        .chunks(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (stream.len() + 1))
        .collect();
    cuts.sort_unstable();
    cuts.push(stream.len());

    let whole = first_conflict(max_head, std::iter::once(stream));
    let mut from = 0;
    let pieces = cuts.iter().map(|&to| {
        let piece = &stream[from..to];
        from = to;
        piece
    });
    let split = first_conflict(max_head, pieces);
    assert_eq!(split, whole, "split at {cuts:?} (max_head {max_head})");
    let bytewise = first_conflict(max_head, stream.chunks(1));
    assert_eq!(bytewise, whole, "byte by byte (max_head {max_head})");

    if whole.is_some() {
        // Only a head naming both headers can be reported.
        let lower = stream.to_ascii_lowercase();
        let has = |name: &[u8]| lower.windows(name.len()).any(|w| w == name);
        assert!(has(b"content-length") && has(b"transfer-encoding"));
    }
});
