//! The access log (SPEC §2 `[log] access_log`): one line per request on
//! stdout, diagnostics on stderr, so the access log can be shipped alone.
//!
//! Off the request path: a worker formats its line into a buffer of its
//! own thread (no allocation, no lock another worker takes), and a writer
//! thread swaps the buffers out and writes them in batches, every
//! [`FLUSH_EVERY`] or sooner when a buffer fills. It is bounded: a buffer
//! that reaches [`MAX_BUFFERED`] because the writer fell behind (a slow
//! disk, a stdout pipe nobody reads) drops further lines and counts them
//! (`figway_access_log_dropped_total`); a request never waits on the log.
//! The timestamp is rendered at most once per millisecond per thread.
//!
//! Lines are written only when `RUST_LOG` lets target `figway::access`
//! through at INFO (`figway::access=off` silences them).

use std::cell::RefCell;
use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::LogFormat;

/// How long a line may wait in a buffer when traffic is light.
pub const FLUSH_EVERY: Duration = Duration::from_millis(10);

/// Bytes a thread's buffer may hold before lines are dropped.
pub const MAX_BUFFERED: usize = 1 << 20;

/// A buffer this full wakes the writer before its tick.
const WAKE_AT: usize = 64 * 1024;

/// Lines dropped since the process started (all servers in it share
/// stdout, and so this count).
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// What one line says. Borrowed from the request's context: nothing is
/// copied to build it.
pub struct Line<'a> {
    pub format: LogFormat,
    /// When the request ended; the line shows when it started.
    pub end: SystemTime,
    pub request_id: &'a [u8],
    /// The client address as text.
    pub client: &'a [u8],
    pub method: &'a str,
    pub path: &'a str,
    pub host: Option<&'a str>,
    pub route: Option<&'a str>,
    pub upstream: Option<&'a str>,
    pub target: Option<&'a str>,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration: Duration,
    pub retries: u32,
    pub error: Option<&'static str>,
}

/// Whether access lines are written at all (config and `RUST_LOG`).
pub fn enabled(configured: bool) -> bool {
    configured && tracing::enabled!(target: "figway::access", tracing::Level::INFO)
}

/// Lines dropped so far because the writer fell behind.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Queues one line for the writer.
pub fn write(line: &Line<'_>) {
    let writer = writer();
    LOCAL.with(|local| {
        let buffer = local.get_or_init(|| writer.register());
        let mut buf = buffer.lock().unwrap_or_else(|e| e.into_inner());
        if buf.len() >= MAX_BUFFERED {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match line.format {
            LogFormat::Json => json(&mut buf, line),
            LogFormat::Pretty => pretty(&mut buf, line),
        }
        buf.push(b'\n');
        if buf.len() >= WAKE_AT && !writer.woken.swap(true, Ordering::Relaxed) {
            writer.thread.unpark();
        }
    });
}

/// Writes out every buffered line now; for the end of the process.
pub fn flush() {
    if let Some(w) = WRITER.get() {
        w.drain();
    }
}

// === impl Writer ===

struct Writer {
    /// One buffer per thread that has logged; the writer swaps them out.
    buffers: Mutex<Vec<Arc<Mutex<Vec<u8>>>>>,
    thread: Thread,
    /// Set by a worker that woke the writer early; cleared by the writer.
    woken: AtomicBool,
    /// The empty buffer the writer swaps in for a thread's lines; its lock
    /// serialises draining (the writer thread and [`flush`]), so lines keep
    /// their order per thread.
    draining: Mutex<Vec<u8>>,
}

static WRITER: OnceLock<Writer> = OnceLock::new();

thread_local! {
    static LOCAL: OnceLock<Arc<Mutex<Vec<u8>>>> = const { OnceLock::new() };
    /// The last rendered timestamp: (unix milliseconds, its text).
    static STAMP: RefCell<(u64, [u8; 24])> = const { RefCell::new((u64::MAX, [0; 24])) };
}

fn writer() -> &'static Writer {
    WRITER.get_or_init(|| {
        let handle = std::thread::Builder::new()
            .name("figway-access-log".into())
            .spawn(|| loop {
                std::thread::park_timeout(FLUSH_EVERY);
                if let Some(w) = WRITER.get() {
                    w.woken.store(false, Ordering::Relaxed);
                    w.drain();
                }
            });
        let thread = match handle {
            Ok(h) => h.thread().clone(),
            // No thread: lines wait for `flush`, and overflow is counted.
            Err(_) => std::thread::current(),
        };
        Writer {
            buffers: Mutex::new(Vec::new()),
            thread,
            woken: AtomicBool::new(false),
            draining: Mutex::new(Vec::with_capacity(WAKE_AT)),
        }
    })
}

impl Writer {
    fn register(&self) -> Arc<Mutex<Vec<u8>>> {
        let buffer = Arc::new(Mutex::new(Vec::with_capacity(4096)));
        self.buffers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(buffer.clone());
        buffer
    }

    /// Takes every thread's lines and writes them, one thread's at a time
    /// under stdout's lock held throughout, so a drain's lines never
    /// interleave with another writer's. Each thread's buffer is swapped
    /// with the writer's empty one under its lock (never I/O, never a copy:
    /// copying the lines out was ~250 instructions a request, on the core
    /// the workers share), and the thread keeps logging into the buffer it
    /// got, which keeps the capacity the writer's had.
    fn drain(&self) {
        let mut batch = self.draining.lock().unwrap_or_else(|e| e.into_inner());
        let buffers: Vec<_> = {
            let mut list = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
            // Threads that ended leave their buffer to us alone: its last
            // lines are written below, and then it is gone.
            let buffers = list.clone();
            list.retain(|b| Arc::strong_count(b) > 2);
            buffers
        };
        let mut stdout = None;
        for buffer in &buffers {
            {
                let mut lines = buffer.lock().unwrap_or_else(|e| e.into_inner());
                if lines.is_empty() {
                    continue;
                }
                std::mem::swap(&mut *lines, &mut *batch);
            }
            let out = stdout.get_or_insert_with(|| std::io::stdout().lock());
            let _ = out.write_all(&batch);
            batch.clear();
            // A burst's buffer is not kept at its peak size.
            if batch.capacity() > 4 * WAKE_AT {
                batch.shrink_to(WAKE_AT);
            }
        }
    }
}

// === formatting ===
//
// By hand, not with `write!`: `core::fmt` costs several times more per
// line than copying bytes and rendering integers with `itoa`, and this runs
// once per request.

fn json(buf: &mut Vec<u8>, l: &Line<'_>) {
    buf.extend_from_slice(b"{\"ts\":\"");
    stamp(buf, l.end, l.duration);
    buf.extend_from_slice(b"\",\"request_id\":");
    string(buf, l.request_id);
    buf.extend_from_slice(b",\"client\":\"");
    buf.extend_from_slice(l.client);
    buf.extend_from_slice(b"\",\"method\":");
    text(buf, l.method);
    buf.extend_from_slice(b",\"path\":");
    text(buf, l.path);
    for (key, value) in [
        (&b",\"host\":"[..], l.host),
        (b",\"route\":", l.route),
        (b",\"upstream\":", l.upstream),
        (b",\"target\":", l.target),
    ] {
        buf.extend_from_slice(key);
        match value {
            Some(v) => text(buf, v),
            None => buf.extend_from_slice(b"null"),
        }
    }
    buf.extend_from_slice(b",\"status\":");
    number(buf, l.status);
    buf.extend_from_slice(b",\"bytes_in\":");
    number(buf, l.bytes_in);
    buf.extend_from_slice(b",\"bytes_out\":");
    number(buf, l.bytes_out);
    buf.extend_from_slice(b",\"duration_ms\":");
    millis(buf, l.duration);
    buf.extend_from_slice(b",\"retries\":");
    number(buf, l.retries);
    buf.extend_from_slice(b",\"error\":");
    match l.error {
        Some(e) => text(buf, e),
        None => buf.extend_from_slice(b"null"),
    }
    buf.push(b'}');
}

fn pretty(buf: &mut Vec<u8>, l: &Line<'_>) {
    stamp(buf, l.end, l.duration);
    buf.push(b' ');
    number(buf, l.status);
    for part in [
        b" ",
        l.method.as_bytes(),
        b" ",
        l.host.unwrap_or("").as_bytes(),
        l.path.as_bytes(),
        b" -> ",
        l.route.unwrap_or("-").as_bytes(),
        b" ",
        l.upstream.unwrap_or("-").as_bytes(),
        b"/",
        l.target.unwrap_or("-").as_bytes(),
        b" ",
    ] {
        buf.extend_from_slice(part);
    }
    if l.retries > 0 {
        buf.extend_from_slice(b"retries=");
        number(buf, l.retries);
        buf.push(b' ');
    }
    millis(buf, l.duration);
    buf.extend_from_slice(b"ms in=");
    number(buf, l.bytes_in);
    buf.extend_from_slice(b" out=");
    number(buf, l.bytes_out);
    buf.extend_from_slice(b" client=");
    buf.extend_from_slice(l.client);
    buf.extend_from_slice(b" id=");
    buf.extend_from_slice(l.request_id);
    if let Some(e) = l.error {
        buf.extend_from_slice(b" error=");
        buf.extend_from_slice(e.as_bytes());
    }
}

fn number(buf: &mut Vec<u8>, n: impl itoa::Integer) {
    buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Milliseconds with three decimals (microsecond precision).
fn millis(buf: &mut Vec<u8>, d: Duration) {
    let micros = d.as_micros();
    number(buf, micros / 1000);
    let frac = (micros % 1000) as u16;
    buf.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

/// Renders an address for a line; the connection's own peer is rendered
/// once per connection instead (`ConnCtx::forwarded_for`).
pub fn ip_text(ip: IpAddr, out: &mut [u8; 46]) -> &[u8] {
    let mut cursor = std::io::Cursor::new(&mut out[..]);
    // 46 bytes hold the longest IPv6 text (45), so this cannot fail.
    let _ = write!(cursor, "{ip}");
    let len = cursor.position() as usize;
    &out[..len]
}

/// A JSON string: quoted, with `"`, `\` and control bytes escaped, and any
/// byte that is not UTF-8 replaced (header values may carry obs-text).
fn string(buf: &mut Vec<u8>, value: &[u8]) {
    match std::str::from_utf8(value) {
        Ok(t) => text(buf, t),
        Err(_) => text(buf, &String::from_utf8_lossy(value)),
    }
}

fn text(buf: &mut Vec<u8>, t: &str) {
    buf.push(b'"');
    escape(buf, t);
    buf.push(b'"');
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Whether any byte of `bytes` needs escaping, eight at a time: every
/// line carries eight or so strings, and a byte-at-a-time scan of them was
/// the largest part of a line's cost.
fn any_needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // The high bit of each byte of the result is set where `word`'s byte
    // is below `n` (n <= 0x80; a byte >= 0x80 never sets it because of
    // the `!word`), the classic "has less than" bit trick.
    fn below(word: u64, n: u8) -> u64 {
        word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS
    }
    fn equal(word: u64, b: u8) -> u64 {
        below(word ^ (ONES * u64::from(b)), 1)
    }
    let flagged = |word: [u8; 8]| {
        let word = u64::from_ne_bytes(word);
        below(word, 0x20) | equal(word, b'"') | equal(word, b'\\') != 0
    };
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if flagged(word) {
            return true;
        }
    }
    // The tail as one more word, padded with a byte that needs nothing.
    let tail = chunks.remainder();
    let mut word = [b'a'; 8];
    word[..tail.len()].copy_from_slice(tail);
    flagged(word)
}

fn escape(buf: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    // Nearly every value is plain: one pass to see it, one copy.
    if !any_needs_escape(bytes) {
        buf.extend_from_slice(bytes);
        return;
    }
    let mut start = 0;
    for (i, b) in bytes.iter().copied().enumerate() {
        if !needs_escape(b) {
            continue;
        }
        buf.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                buf.extend_from_slice(b"\\u00");
                buf.push(HEX[usize::from(b >> 4)]);
                buf.push(HEX[usize::from(b & 15)]);
            }
        }
        start = i + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
}

/// The request's start as RFC 3339 with milliseconds, rendered once per
/// millisecond per thread.
fn stamp(buf: &mut Vec<u8>, end: SystemTime, duration: Duration) {
    let start = end.checked_sub(duration).unwrap_or(end);
    let ms = start
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    STAMP.with_borrow_mut(|(last, text)| {
        if *last != ms {
            crate::timefmt::rfc3339_millis_into(start, text);
            *last = ms;
        }
        buf.extend_from_slice(&text[..]);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(format: LogFormat) -> Vec<u8> {
        let mut buf = Vec::new();
        let l = Line {
            format,
            end: UNIX_EPOCH + Duration::from_micros(1_764_480_000_123_000 + 2_500_250),
            request_id: b"id-\"1\"",
            client: b"10.0.0.1",
            method: "GET",
            path: "/a\\b",
            host: Some("shop.test"),
            route: Some("api"),
            upstream: None,
            target: None,
            status: 200,
            bytes_in: 5,
            bytes_out: 7,
            duration: Duration::from_micros(2_500_250),
            retries: 1,
            error: None,
        };
        match format {
            LogFormat::Json => json(&mut buf, &l),
            LogFormat::Pretty => pretty(&mut buf, &l),
        }
        buf
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
                        super::any_needs_escape(&bytes),
                        needs_escape(b),
                        "byte {b:#x} at {at} of {len}"
                    );
                }
            }
            assert!(!super::any_needs_escape(&vec![b'~'; len]));
        }
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
}
