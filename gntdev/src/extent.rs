//! File offsets of one open (FreeBSD gntdev's `get_file_offset` /
//! `put_file_offset`): page runs of `vm::extent::ExtentAllocator`, in bytes.
//!
//! The space is `[0, SPACE_END)` in bytes: the last page of the 2^64-byte
//! space is left out so that `offset + size` of any extent fits in a `u64`
//! (as `vm::object::offset_range_to_pages` requires).

use vm::extent::{ExtentAllocator, ExtentError};
use vm::{Errno, PAGE_SIZE};

use crate::errno::ENOSPC;

/// End of the offset space (exclusive).
const SPACE_END: u64 = u64::MAX - (PAGE_SIZE - 1);

/// Allocated extents of one open, in pages of the offset space.
#[derive(Debug)]
pub(crate) struct Extents {
    pages: ExtentAllocator,
}

impl Default for Extents {
    fn default() -> Self {
        let pages = ExtentAllocator::new(0, SPACE_END / PAGE_SIZE);
        Self {
            pages: pages.expect("the offset space fits in u64"),
        }
    }
}

impl Extents {
    /// The first free extent of `pages` pages, as a byte offset. `EINVAL`
    /// for 0 pages, `ENOSPC` when no gap is large enough.
    pub fn alloc(&mut self, pages: u64) -> Result<u64, Errno> {
        match self.pages.alloc(pages) {
            Ok(first) => Ok(first * PAGE_SIZE),
            Err(ExtentError::NoSpace) => Err(ENOSPC),
            Err(ExtentError::Invalid | ExtentError::NotAllocated) => Err(Errno::EINVAL),
        }
    }

    /// Frees the extent at byte offset `start` of `pages` pages, which must
    /// be one [`alloc`](Self::alloc) returned.
    pub fn free(&mut self, start: u64, pages: u64) {
        let freed = self.pages.free(start / PAGE_SIZE, pages);
        debug_assert_eq!(freed, Ok(()), "freeing an extent not allocated");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_fit_reuses_gaps() {
        let mut e = Extents::default();
        assert_eq!(e.alloc(0), Err(Errno::EINVAL));
        assert_eq!(e.alloc(2), Ok(0));
        assert_eq!(e.alloc(1), Ok(0x2000));
        assert_eq!(e.alloc(3), Ok(0x3000));
        e.free(0, 2);
        assert_eq!(e.alloc(3), Ok(0x6000), "the gap of 2 is too small");
        assert_eq!(e.alloc(1), Ok(0));
        assert_eq!(e.alloc(1), Ok(0x1000));
        assert_eq!(e.alloc(1), Ok(0x9000));
    }

    #[test]
    fn space_is_finite() {
        let mut e = Extents::default();
        let all = SPACE_END / PAGE_SIZE;
        assert_eq!(e.alloc(all + 1), Err(ENOSPC));
        assert_eq!(e.alloc(all), Ok(0));
        assert_eq!(e.alloc(1), Err(ENOSPC));
        assert_eq!(e.alloc(u64::MAX), Err(ENOSPC), "byte length overflows");
    }
}
