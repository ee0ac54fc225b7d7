//! Giving freed memory back to the operating system after a crowd of
//! connections has left.
//!
//! Each client connection holds some 10 KiB of buffers. glibc's allocator
//! keeps memory freed in the middle of its heaps (and in the per-thread
//! arenas) mapped, so after 10,000 idle connections close, the process would
//! stay ~100 MiB larger for good. `malloc_trim(0)` returns those free pages;
//! the server calls [`release_free_memory`] when the number of open
//! connections has fallen well below its recent peak (see `server/mod.rs`),
//! never on the request path. Other allocators return memory on their own,
//! so elsewhere this does nothing.

/// Returns free heap pages to the OS; a few milliseconds on a large heap.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::os::raw::c_int;
        }
        // SAFETY: malloc_trim takes no pointers and only walks glibc's own
        // heaps under their locks; any thread may call it at any time.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Whether a fall from `peak` to `now` open connections is worth a trim:
/// at least 1,024 connections gone and at most half the peak left.
pub fn worth_trimming(peak: usize, now: usize) -> bool {
    peak.saturating_sub(now) >= 1024 && now <= peak / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_large_fall_is_worth_a_trim() {
        assert!(worth_trimming(10_000, 0));
        assert!(worth_trimming(3_000, 1_000));
        assert!(!worth_trimming(1_000, 0));
        assert!(!worth_trimming(10_000, 6_000));
        release_free_memory();
    }
}
