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
//! How a line reads (JSON or pretty, escaping, the timestamp) is
//! [`format`]'s; this module is how lines get out.
//!
//! Lines are written only when `RUST_LOG` lets target `figway::access`
//! through at INFO (`figway::access=off` silences them).

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use crate::config::LogFormat;

mod format;

pub use format::{ip_text, json_string, Line, Name};

/// How long a line may wait in a buffer when traffic is light.
pub const FLUSH_EVERY: Duration = Duration::from_millis(10);

/// Bytes a thread's buffer may hold before lines are dropped.
pub const MAX_BUFFERED: usize = 1 << 20;

/// A buffer this full wakes the writer before its tick.
const WAKE_AT: usize = 64 * 1024;

/// Lines dropped since the process started (all servers in it share
/// stdout, and so this count).
static DROPPED: AtomicU64 = AtomicU64::new(0);

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
            LogFormat::Json => format::json(&mut buf, line),
            LogFormat::Pretty => format::pretty(&mut buf, line),
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
