//! Returning memory to the kernel after a compile or a large sync, and mapping in at once the
//! pages of a large buffer about to be filled ([`prefault_spare_capacity`]).
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

/// Below this many bytes of spare capacity, [`prefault_spare_capacity`] does nothing: the
/// faults it saves are not worth a system call.
const PREFAULT_MIN_BYTES: usize = 1 << 20;

/// Maps in, in one system call, the pages of `buffer`'s spare capacity that the caller is
/// about to fill (Linux 5.14's `MADV_POPULATE_WRITE`; older kernels refuse it and nothing
/// changes). A large buffer is a fresh mapping of untouched pages (see the module comment),
/// and filling it page by page takes one fault per page: reading back a delta's 27 MB of
/// running texts spent about as much time in faults as in copying. Populated at once, that
/// read took about 3 ms less a push (README, "Three smaller steps on the same path"). Only
/// for a buffer about to be filled whole: populated pages are resident.
pub fn prefault_spare_capacity<T>(buffer: &mut Vec<T>) {
    let spare = buffer.spare_capacity_mut();
    let bytes = std::mem::size_of_val(spare);
    if bytes < PREFAULT_MIN_BYTES {
        return;
    }
    // Refused by kernels before 5.14 and where the memory cannot be populated: the pages are
    // then faulted in as they are written, as without the call.
    let _ = populate_for_writing(spare.as_mut_ptr() as usize, bytes);
}

/// Populates for writing the whole pages inside `size` bytes at address `start`, which must
/// be memory this process owns (`Ok` when there are none).
fn populate_for_writing(start: usize, size: usize) -> std::io::Result<()> {
    let Some((first, length)) = whole_pages(start, size, page_bytes()) else {
        return Ok(());
    };
    #[cfg(target_os = "linux")]
    {
        #[allow(unsafe_code)]
        // SAFETY: `first..first + length` lies inside the caller's memory (`whole_pages`).
        // `MADV_POPULATE_WRITE` takes the page faults a write would take, without writing:
        // pages not mapped yet are mapped (anonymous ones zeroed, as a first write would find
        // them), pages shared copy-on-write are copied, and every byte keeps its value.
        let result = unsafe {
            libc::madvise(
                first as *mut libc::c_void,
                length,
                libc::MADV_POPULATE_WRITE,
            )
        };
        if result != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (first, length);
    Ok(())
}

/// The size of a memory page (4 KiB unless the kernel says otherwise: 16 or 64 KiB on some
/// arm64 kernels).
fn page_bytes() -> usize {
    #[cfg(unix)]
    {
        #[allow(unsafe_code)]
        // SAFETY: sysconf only reads a system setting.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if let Ok(size) = usize::try_from(size)
            && size.is_power_of_two()
        {
            return size;
        }
    }
    4096
}

/// The whole pages of `page` bytes inside `size` bytes at address `start`: their first address
/// and their length, or None when there is none.
fn whole_pages(start: usize, size: usize, page: usize) -> Option<(usize, usize)> {
    let end = start.checked_add(size)?;
    let first = start.checked_next_multiple_of(page)?;
    let last = end - end % page;
    (last > first).then(|| (first, last - first))
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The populated range is made of whole pages inside the spare capacity, and leaves no
        /// whole page of it out.
        #[test]
        fn the_populated_range_is_the_whole_pages_inside(
            start in 0usize..(1 << 40),
            size in 0usize..(64 << 20),
            page in prop_oneof![Just(4096usize), Just(16384), Just(65536)],
        ) {
            match whole_pages(start, size, page) {
                Some((first, length)) => {
                    prop_assert_eq!(first % page, 0);
                    prop_assert_eq!(length % page, 0);
                    prop_assert!(length > 0);
                    prop_assert!(first >= start && first + length <= start + size);
                    prop_assert!(first - start < page);
                    prop_assert!(start + size - (first + length) < page);
                }
                None => prop_assert!(size < 2 * page),
            }
        }
    }

    #[test]
    fn no_range_at_the_end_of_the_address_space() {
        assert_eq!(whole_pages(usize::MAX - 10, 100, 4096), None);
    }

    #[test]
    fn the_page_size_is_the_kernels() {
        let page = page_bytes();
        assert!(page.is_power_of_two() && page >= 4096, "{page}");
    }

    /// The call takes effect on this kernel (5.14 or later; CI's is) and changes no byte, of
    /// memory written before it or not.
    #[test]
    fn populating_changes_no_byte() {
        let mut buffer: Vec<u8> = (0..(8 << 20))
            .map(|index: u32| (index % 251) as u8)
            .collect();
        let (start, size) = (buffer.as_mut_ptr() as usize, buffer.len());
        populate_for_writing(start, size).expect("MADV_POPULATE_WRITE on written memory");
        assert!(
            buffer
                .iter()
                .enumerate()
                .all(|(index, byte)| *byte == (index % 251) as u8)
        );

        let mut fresh: Vec<u8> = Vec::with_capacity(8 << 20);
        let spare = fresh.spare_capacity_mut();
        populate_for_writing(spare.as_mut_ptr() as usize, std::mem::size_of_val(spare))
            .expect("MADV_POPULATE_WRITE on fresh memory");
        fresh.resize(8 << 20, 9);
        assert!(fresh.iter().all(|byte| *byte == 9));
    }

    /// Populating changes neither the buffer's contents nor its length, for buffers with and
    /// without contents, small and large, of bytes and of wider items.
    #[test]
    fn a_prefaulted_buffer_keeps_its_contents() {
        let mut bytes: Vec<u8> = Vec::with_capacity(8 << 20);
        bytes.extend((0..5000_u32).map(|index| (index % 251) as u8));
        prefault_spare_capacity(&mut bytes);
        assert_eq!(bytes.len(), 5000);
        assert!(
            bytes
                .iter()
                .enumerate()
                .all(|(index, byte)| *byte == (index % 251) as u8)
        );
        bytes.resize(8 << 20, 7);
        assert!(bytes[5000..].iter().all(|byte| *byte == 7));

        let mut wide: Vec<(u64, u32)> = Vec::with_capacity(300_000);
        prefault_spare_capacity(&mut wide);
        wide.extend((0..300_000_u64).map(|index| (index, index as u32)));
        assert!(
            wide.iter()
                .enumerate()
                .all(|(index, item)| item.0 == index as u64)
        );

        let mut small: Vec<u8> = vec![1, 2, 3];
        prefault_spare_capacity(&mut small);
        assert_eq!(small, [1, 2, 3]);
    }
}
