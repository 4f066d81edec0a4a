//! First-fit allocator of file offsets (FreeBSD gntdev's `get_file_offset`
//! / `put_file_offset`), private: `vm::extent::ExtentAllocator` has not
//! landed on this branch.
//!
//! The space is `[0, SPACE_END)` in bytes, in pages: the last page of the
//! 2^64-byte space is left out so that `offset + size` of any extent fits
//! in a `u64` (as `vm::object::offset_range_to_pages` requires).

use alloc::collections::BTreeMap;

use vm::{Errno, PAGE_SIZE};

use crate::errno::ENOSPC;

/// End of the offset space (exclusive).
const SPACE_END: u64 = u64::MAX - (PAGE_SIZE - 1);

/// Allocated extents, `start -> len` in bytes, never overlapping.
#[derive(Debug, Default)]
pub(crate) struct Extents {
    used: BTreeMap<u64, u64>,
}

impl Extents {
    /// The first free extent of `pages` pages. `EINVAL` for 0 pages,
    /// `ENOSPC` when no gap is large enough.
    pub fn alloc(&mut self, pages: u64) -> Result<u64, Errno> {
        if pages == 0 {
            return Err(Errno::EINVAL);
        }
        let len = pages.checked_mul(PAGE_SIZE).ok_or(ENOSPC)?;
        let mut at = 0u64;
        for (&start, &l) in &self.used {
            if start - at >= len {
                break;
            }
            at = start + l;
        }
        if SPACE_END - at < len {
            return Err(ENOSPC);
        }
        self.used.insert(at, len);
        Ok(at)
    }

    /// Frees the extent at `start` of `pages` pages, which must be one
    /// [`alloc`](Self::alloc) returned.
    pub fn free(&mut self, start: u64, pages: u64) {
        let len = self.used.remove(&start);
        debug_assert_eq!(
            len,
            Some(pages * PAGE_SIZE),
            "freeing an extent not allocated"
        );
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
