//! Zeroed buffers in their own anonymous mapping. A page the program never
//! writes costs no resident memory there, whereas a buffer from the heap
//! may reuse pages start-up already wrote (and `calloc` clears them,
//! touching every page). The output buffer is sized for bursts an idle
//! MCU never sends.

use std::num::NonZeroUsize;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};

pub struct ZeroedPages {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned by this value alone, like a Box<[u8]>.
unsafe impl Send for ZeroedPages {}
unsafe impl Sync for ZeroedPages {}

impl ZeroedPages {
    /// `len` zero bytes (`len` > 0). Panics only if the kernel refuses an
    /// anonymous mapping at start-up, as an allocation failure would.
    pub fn new(len: usize) -> ZeroedPages {
        let size = NonZeroUsize::new(len).expect("a buffer of at least one byte");
        // SAFETY: a fresh private anonymous mapping aliases nothing.
        let p = unsafe {
            mmap_anonymous(
                None,
                size,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
            )
        }
        .unwrap_or_else(|e| panic!("cannot map {len} bytes: {e}"));
        ZeroedPages { ptr: p.cast(), len }
    }
}

impl Deref for ZeroedPages {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `len` bytes mapped readable, zero-filled by the kernel,
        // for as long as self lives.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for ZeroedPages {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for ZeroedPages {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
    }
}

/// Unmaps, in this process, the clean pages of its file mappings: the text
/// and read-only data of the program and its libraries that start-up
/// faulted in (the loader's work, the data dictionary's JSON and
/// compression, argument parsing), with the kernel's fault-around taking
/// 64 KB about each of those faults. The page cache keeps them: what the
/// MCU runs from here on faults back in (a minor fault, no I/O), so what
/// stays resident is what it uses. Mappings holding a private copy of any
/// page (`Private_Dirty` or `Anonymous` in smaps, as a relocated RELRO
/// segment has) are left alone: dropping them would lose the changes.
/// Returns the bytes of the mappings released. Call it while no other
/// thread maps or unmaps memory (a range read here must still be that
/// file's when it is dropped). Not for a process that locked its memory
/// (-r): `mlockall` keeps every page resident by design, and the kernel
/// refuses to drop locked pages.
// A symbol of its own: benches/symbol_order.py finds the end of start-up
// by its return.
#[inline(never)]
pub fn release_clean_file_pages() -> usize {
    use std::io::BufRead;
    let Ok(f) = std::fs::File::open("/proc/self/smaps") else {
        return 0;
    };
    let mut released = 0;
    // The mapping being read: its range, and whether it may be dropped.
    let mut cur: Option<(usize, usize)> = None;
    let mut drop_cur = |cur: &mut Option<(usize, usize)>| {
        if let Some((a, b)) = cur.take() {
            // SAFETY: a range the kernel listed as this process's mapping
            // of a file, private and never written (no private page), so
            // its content comes back unchanged from the file on the next
            // access.
            if unsafe { libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_DONTNEED) } == 0 {
                released += b - a;
            }
        }
    };
    let mut line = String::new();
    let mut r = std::io::BufReader::new(f);
    while matches!(r.read_line(&mut line), Ok(n) if n > 0) {
        let mut w = line.split_ascii_whitespace();
        let first = w.next().unwrap_or("");
        if !first.ends_with(':') {
            drop_cur(&mut cur);
            cur = read_only_file_range(&line);
        } else if matches!(first, "Private_Dirty:" | "Anonymous:" | "Locked:")
            && w.next() != Some("0")
        {
            cur = None;
        }
        line.clear();
    }
    drop_cur(&mut cur);
    released
}

/// The address range of a mapping's smaps (or maps) header line (range,
/// perms, offset, device, inode, path) when it maps a file private and
/// read-only; None for any other mapping.
fn read_only_file_range(header: &str) -> Option<(usize, usize)> {
    let mut w = header.split_ascii_whitespace();
    let (a, b) = w.next()?.split_once('-')?;
    let perms = w.next()?;
    let path = w.nth(3)?;
    if !path.starts_with('/') || !(perms == "r-xp" || perms == "r--p") {
        return None;
    }
    Some((
        usize::from_str_radix(a, 16).ok()?,
        usize::from_str_radix(b, 16).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::ZeroedPages;

    #[test]
    fn zeroed_and_writable() {
        let mut b = ZeroedPages::new(3 * 4096 + 5);
        assert!(b.iter().all(|&x| x == 0));
        b[3 * 4096 + 4] = 7;
        assert_eq!(b.len(), 3 * 4096 + 5);
        assert_eq!(b[3 * 4096 + 4], 7);
    }

    #[test]
    fn clean_file_pages_come_back_unchanged() {
        // This test's own text and read-only data are among the pages
        // released: the code runs on, and a constant reads the same.
        static TABLE: [u32; 4] = [7, 11, 13, 17];
        let before: u32 = TABLE.iter().sum();
        let resident = clean_file_rss_kb();
        assert!(super::release_clean_file_pages() > 0);
        assert_eq!(TABLE.iter().sum::<u32>(), before);
        assert_eq!(std::hint::black_box(TABLE)[3], 17);
        // Only what ran or was read since is back (the test binary's
        // start-up, std's and libc's among what is not).
        let after = clean_file_rss_kb();
        assert!(
            after < resident,
            "{after} KB resident, {resident} KB before"
        );
    }

    /// Resident KB of the process's read-only private file mappings.
    fn clean_file_rss_kb() -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut counted = false;
        let mut kb = 0;
        for l in smaps.lines() {
            let mut w = l.split_whitespace();
            let first = w.next().unwrap_or("");
            if !first.ends_with(':') {
                counted = super::read_only_file_range(l).is_some();
            } else if counted && first == "Rss:" {
                kb += w.next().unwrap().parse::<u64>().unwrap();
            }
        }
        kb
    }
}
