//! The access log (SPEC §2 `[log] access_log`): one line per request on
//! stdout, diagnostics on stderr, so the access log can be shipped alone.
//!
//! Off the request path: a worker formats its line into a buffer of its
//! own thread (no allocation, no lock another worker takes), and a writer
//! thread swaps the buffers out and writes them in batches, every
//! [`FLUSH_EVERY`] or sooner when a buffer fills, and not at all while no
//! lines come (an idle proxy has no thread waking it). It is bounded: a
//! buffer that reaches [`MAX_BUFFERED`] because the writer fell behind (a
//! slow disk, a stdout pipe nobody reads) drops further lines and counts
//! them (`figway_access_log_dropped_total`); a request never waits on the
//! log.
//! How a line reads (JSON or pretty, escaping, the timestamp) is
//! [`format`]'s; this module is how lines get out.
//!
//! Lines are written only when `RUST_LOG` lets target `figway::access`
//! through at INFO (`figway::access=off` silences them).
//!
//! The writer thread keeps out of the worker's way: it leaves for a
//! descriptor table of its own holding stdin, stdout and stderr alone, and
//! takes no signal (`sys::leave_file_table`). So it writes to stdout as it
//! was when the writer started: an application embedding figway that
//! later puts another file on descriptor 1 (`dup2`) does not move the
//! access log with it.

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
        // `idle` is read under the buffer's lock: see `Writer::idle`.
        let wake = if writer.idle.load(Ordering::Relaxed) {
            writer.idle.swap(false, Ordering::Relaxed)
        } else {
            buf.len() >= WAKE_AT && !writer.woken.swap(true, Ordering::Relaxed)
        };
        drop(buf);
        if wake {
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
    /// The writer found nothing to write and sleeps until a line comes: an
    /// idle proxy's writer does not tick. Set by the writer before it looks
    /// at the buffers a last time, read (and cleared, by the one that wakes
    /// the writer) by a worker under its buffer's lock after queueing a
    /// line; the locks order the two, so either the writer finds the line
    /// or the worker finds the writer asleep.
    idle: AtomicBool,
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
            .spawn(|| {
                // Needs stdout alone: out of the worker's descriptor table,
                // so that the worker has it to itself (`sys`).
                crate::sys::leave_file_table();
                // `writer()` returns once the thread is spawned; the first
                // line is queued right after.
                let w = loop {
                    if let Some(w) = WRITER.get() {
                        break w;
                    }
                    std::thread::park_timeout(FLUSH_EVERY);
                };
                w.run()
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
            idle: AtomicBool::new(false),
            draining: Mutex::new(Vec::with_capacity(WAKE_AT)),
        }
    })
}

impl Writer {
    /// The writer thread: every [`FLUSH_EVERY`] (sooner when a worker's
    /// buffer fills) it writes what the workers queued; after a tick with
    /// nothing to write it sleeps until the next line, then gives that
    /// line's burst a tick to gather before writing it.
    fn run(&self) -> ! {
        loop {
            std::thread::park_timeout(FLUSH_EVERY);
            self.woken.store(false, Ordering::Relaxed);
            if self.drain() {
                continue;
            }
            self.idle.store(true, Ordering::Relaxed);
            if self.any_queued() {
                self.idle.store(false, Ordering::Relaxed);
                continue;
            }
            // The worker that queues the next line clears `idle` and
            // unparks; a spurious wake-up finds `idle` still set.
            while self.idle.load(Ordering::Relaxed) {
                std::thread::park();
            }
        }
    }

    /// Whether any thread's buffer holds a line, each read under its lock.
    fn any_queued(&self) -> bool {
        let buffers = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        buffers
            .iter()
            .any(|b| !b.lock().unwrap_or_else(|e| e.into_inner()).is_empty())
    }

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
    /// got, which keeps the capacity the writer's had. Returns whether it
    /// wrote anything.
    fn drain(&self) -> bool {
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
        let mut wrote = false;
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
            wrote = true;
            batch.clear();
            // A burst's buffer is not kept at its peak size.
            if batch.capacity() > 4 * WAKE_AT {
                batch.shrink_to(WAKE_AT);
            }
        }
        wrote
    }
}
