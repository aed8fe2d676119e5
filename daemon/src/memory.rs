//! Returning memory to the kernel after a compile or a large sync.
//!
//! Compiling a large topology allocates several times the memory the compiled result keeps (the
//! TOML text, the raw model, temporary maps), and a peer's full-table send its queues and sort
//! buffers. glibc's allocator keeps those freed pages mapped, so without a trim the daemon's
//! resident memory stays at the compile's peak for its whole life. The engine trims after a
//! generation is applied, a peer task after a sync that wrote many prefixes.
//!
//! glibc also raises its threshold for serving an allocation with its own mapping each time
//! such a mapping is freed (up to 32 MiB): after a compile's large temporary buffers, later
//! ones of that size come from the heap and leave holes a trim cannot return (smaller than a
//! page, or between live allocations). The daemon fixes the threshold at glibc's initial
//! 128 KiB ([`configure_allocator`]): at a million routes and one peer, 12 MB less resident
//! after start-up, for a few more `mmap` calls per compile.
//!
//! `malloc_trim(0)` hands the free pages back; it is cheap and safe to call at any time, and
//! requests that come while one is waiting to run are merged into it. No crate wraps these
//! (single glibc calls), hence the `unsafe` blocks here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Allocations of this size and larger get a mapping of their own, returned whole when freed.
const MMAP_THRESHOLD_BYTES: i32 = 128 * 1024;

/// Fixes glibc's mapping threshold (see the module comment); call once, first thing in `main`
/// (glibc only; a no-op elsewhere). A threshold an operator set takes precedence
/// (`GLIBC_TUNABLES=glibc.malloc.mmap_threshold=N` or `MALLOC_MMAP_THRESHOLD_=N`).
pub fn configure_allocator() {
    let operator_set = std::env::var("GLIBC_TUNABLES")
        .is_ok_and(|tunables| tunables.contains("mmap_threshold"))
        || std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if !operator_set {
        #[allow(unsafe_code)]
        // SAFETY: mallopt only changes an allocator setting; it is thread-safe in glibc and
        // touches no memory the program owns.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        }
    }
}

/// Releases free heap pages to the kernel (glibc only; a no-op elsewhere).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim takes a padding size and only returns free pages of the heap to the
    // kernel; it touches no memory the program owns and is thread-safe in glibc.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A trim is waiting to run.
static TRIM_PENDING: AtomicBool = AtomicBool::new(false);

/// Releases free heap pages after `delay`, off the runtime's worker threads (a trim holds the
/// allocator's locks, which other threads then wait for). A request made while another is
/// waiting is merged into it. Call from within a tokio runtime.
pub fn release_free_memory_after(delay: Duration) {
    if TRIM_PENDING.swap(true, Ordering::AcqRel) {
        return;
    }
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        TRIM_PENDING.store(false, Ordering::Release);
        let _ = tokio::task::spawn_blocking(release_free_memory).await;
    });
}
