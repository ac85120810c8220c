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
}
