//! Returning memory to the kernel after a compile or a large sync.
//!
//! Compiling a large topology allocates several times the memory the compiled result keeps (the
//! TOML text, the raw model, temporary maps), and a peer's full-table send its queues and sort
//! buffers. glibc's allocator keeps those freed pages mapped, so without a trim the daemon's
//! resident memory stays at the compile's peak for its whole life. The engine trims after a
//! generation is applied, a peer task after a sync that wrote many prefixes. `malloc_trim(0)` hands the free pages back; it is cheap and safe to call at any time.
//! No crate wraps it (it is a single glibc call), hence the one `unsafe` block here.

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
