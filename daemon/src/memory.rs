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
//! after start-up, for a few more `mmap` calls per compile. `malloc_trim(0)` hands the free pages back; it is cheap and safe to call at any time.
//! No crate wraps it (it is a single glibc call), hence the one `unsafe` block here.

/// Allocations of this size and larger get a mapping of their own, returned whole when freed.
const MMAP_THRESHOLD_BYTES: i32 = 128 * 1024;

/// Fixes glibc's mapping threshold (see the module comment); call once, first thing in `main`
/// (glibc only; a no-op elsewhere). `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=N` set by an
/// operator takes precedence.
pub fn configure_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if !std::env::var("GLIBC_TUNABLES").is_ok_and(|tunables| tunables.contains("mmap_threshold")) {
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
