//! A counting global allocator for the compile-memory tests (`topology/tests/compile_memory.rs`
//! and `daemon/tests/bad_input.rs` include this file as a module): it forwards every call to
//! `System` unchanged and records the bytes allocated, so that a compile's peak is measured
//! deterministically — the same on every run and machine — and held to the documented bound.
//! The including test binary must `#![allow(unsafe_code)]`: a global allocator is an
//! `unsafe impl` by definition.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The bound under test: a compile allocates at most ten times its input…
pub const MEMORY_PER_INPUT_BYTE: usize = 10;
/// …plus 64 MiB (the per-file parse allowance and the per-location sets of the largest fleet).
pub const MEMORY_ALLOWANCE: usize = 64 << 20;

struct CountingAllocator;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = CURRENT.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments; the counters only
// observe the sizes.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract; forwarded unchanged.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            grew(layout.size());
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: `pointer` was allocated by `System` with `layout` (see `alloc`).
        unsafe { System.dealloc(pointer, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `realloc`'s contract; forwarded unchanged.
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Runs `work` and returns its result with the peak of bytes it allocated beyond what was
/// allocated when it started, and the bytes it left allocated (its result included; negative
/// when it freed more than it kept). Only meaningful while nothing else in the process
/// allocates.
pub fn measured<T>(work: impl FnOnce() -> T) -> (T, usize, isize) {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let result = work();
    let held = CURRENT.load(Ordering::Relaxed) as isize - base as isize;
    (
        result,
        PEAK.load(Ordering::Relaxed).saturating_sub(base),
        held,
    )
}
