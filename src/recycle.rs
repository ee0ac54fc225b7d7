//! A box for a future, whose allocation the thread keeps for the next one
//! of the same layout. `proxy::handle` boxes every request's phases (~1.4
//! KiB) so that an idle connection does not carry their room; glibc's
//! malloc serves blocks that size from its bins rather than its per-thread
//! cache (which stops at 1 KiB), and an allocation and a free cost every
//! small request ~500 instructions (benches/instructions.sh). Here a block
//! freed on a thread waits in that thread's short list and the next
//! request takes it back: two slice operations.
//!
//! The list holds at most `KEPT` (64) blocks per thread (what a burst of
//! concurrent requests left behind beyond that is freed), so the memory it
//! keeps is bounded and returns nothing to the allocator only while in use.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::cell::RefCell;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};

/// Blocks kept per thread.
const KEPT: usize = 64;

/// Free blocks and their layouts; the blocks are freed with the thread.
struct Free(Vec<(Layout, NonNull<u8>)>);

impl Drop for Free {
    fn drop(&mut self) {
        for (layout, block) in self.0.drain(..) {
            // SAFETY: each block was allocated with its layout and is unused.
            unsafe { dealloc(block.as_ptr(), layout) };
        }
    }
}

thread_local! {
    static FREE: RefCell<Free> = const { RefCell::new(Free(Vec::new())) };
}

/// A block for `layout` (not zero-sized): a kept one, or a new one.
fn take(layout: Layout) -> NonNull<u8> {
    let kept = FREE
        .try_with(|free| {
            let mut free = free.borrow_mut();
            let at = free.0.iter().rposition(|(l, _)| *l == layout)?;
            Some(free.0.swap_remove(at).1)
        })
        .ok()
        .flatten();
    if let Some(block) = kept {
        return block;
    }
    // SAFETY: `layout` is not zero-sized (checked by `Recycled::new`).
    let block = unsafe { alloc(layout) };
    NonNull::new(block).unwrap_or_else(|| handle_alloc_error(layout))
}

/// Keeps `block` for the thread's next request, or frees it.
///
/// # Safety
/// `block` was allocated with `layout` and nothing uses it any more.
unsafe fn give(layout: Layout, block: NonNull<u8>) {
    let kept = FREE.try_with(|free| {
        let mut free = free.borrow_mut();
        if free.0.len() < KEPT {
            free.0.push((layout, block));
            true
        } else {
            false
        }
    });
    if kept != Ok(true) {
        // SAFETY: as the caller promises.
        unsafe { dealloc(block.as_ptr(), layout) };
    }
}

/// A pinned, heap-held `T` whose allocation goes back to the thread's
/// list when it is dropped. Like `Pin<Box<T>>`, it never moves `T`.
pub struct Recycled<T> {
    value: NonNull<T>,
    /// Owns a `T`, as `Box<T>` does (for the drop check and auto traits).
    _owns: PhantomData<T>,
}

// SAFETY: `Recycled<T>` owns its `T` as a `Box<T>` would.
unsafe impl<T: Send> Send for Recycled<T> {}
// SAFETY: as above; shared access only reaches `&T`.
unsafe impl<T: Sync> Sync for Recycled<T> {}
// The `T` is behind a pointer and never moved out: moving the handle does
// not move it.
impl<T> Unpin for Recycled<T> {}

impl<T> Recycled<T> {
    /// The value `make` returns, in a block.
    ///
    /// A closure rather than the value: made after the block is in hand,
    /// the value is written straight into it. Passed by value, a future is
    /// built on the stack and then copied in whole (its largest state's
    /// size, ~1.4 KiB for `proxy::handle`'s, though only its captures are
    /// set: ~240 instructions a request). A `make` that panics leaves its
    /// block to the allocator's keeping, never to be used again.
    pub fn new(make: impl FnOnce() -> T) -> Recycled<T> {
        let layout = Layout::new::<T>();
        if layout.size() == 0 {
            // A zero-sized `T` needs no memory at all.
            let value_ptr = NonNull::<T>::dangling();
            // SAFETY: writing a zero-sized value to a dangling, aligned
            // pointer is allowed.
            unsafe { value_ptr.as_ptr().write(make()) };
            return Recycled {
                value: value_ptr,
                _owns: PhantomData,
            };
        }
        let block = take(layout).cast::<T>();
        // SAFETY: the block is fresh or unused, sized and aligned for `T`.
        unsafe { block.as_ptr().write(make()) };
        Recycled {
            value: block,
            _owns: PhantomData,
        }
    }
}

impl<T> Drop for Recycled<T> {
    fn drop(&mut self) {
        let layout = Layout::new::<T>();
        // SAFETY: the value is initialized and owned by this handle; it is
        // dropped in place (it may be pinned), once.
        unsafe { std::ptr::drop_in_place(self.value.as_ptr()) };
        if layout.size() != 0 {
            // SAFETY: allocated by `take` with this layout; the value in it
            // was just dropped.
            unsafe { give(layout, self.value.cast()) };
        }
    }
}

impl<T: Future> Future for Recycled<T> {
    type Output = T::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T::Output> {
        // SAFETY: the `T` is never moved while this handle lives (it is
        // only dropped in place), so pinning it is sound.
        let value = unsafe { Pin::new_unchecked(&mut *self.value.as_ptr()) };
        value.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;

    #[test]
    fn a_freed_block_is_taken_back_by_the_next_value_of_its_layout() {
        let first = Recycled::new(|| async { [7u8; 3000] });
        let at = first.value.as_ptr() as usize;
        drop(first);
        let second = Recycled::new(|| async { [8u8; 3000] });
        assert_eq!(
            second.value.as_ptr() as usize,
            at,
            "the block was not reused"
        );
        // Another layout does not get it.
        let other = Recycled::new(|| [0u64; 500]);
        assert_ne!(other.value.as_ptr() as usize, at);
    }

    #[test]
    fn the_value_is_dropped_once_and_polls_to_its_output() {
        let counted = Rc::new(());
        let held = counted.clone();
        let future = Recycled::new(move || async move {
            let _held = held;
            41 + 1
        });
        assert_eq!(Rc::strong_count(&counted), 2);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut future = future;
        assert_eq!(Pin::new(&mut future).poll(&mut cx), Poll::Ready(42));
        drop(future);
        assert_eq!(Rc::strong_count(&counted), 1);
        // Unpolled, it is dropped all the same.
        let held = counted.clone();
        drop(Recycled::new(move || async move { drop(held) }));
        assert_eq!(Rc::strong_count(&counted), 1);
    }

    #[test]
    fn no_more_than_kept_blocks_stay_with_the_thread() {
        let many: Vec<_> = (0..KEPT + 10)
            .map(|i| Recycled::new(move || [i; 300]))
            .collect();
        drop(many);
        let kept = FREE.with_borrow(|free| {
            free.0
                .iter()
                .filter(|(l, _)| *l == Layout::new::<[usize; 300]>())
                .count()
        });
        assert_eq!(kept, KEPT);
    }
}
