//! A first-fit extent allocator over a `u64` range.
//!
//! Hands out `[start, start + len)` runs of a numbered space - guest-physical
//! frames of a hole, gntdev's per-open index space - and takes them back,
//! merging neighbours. Free extents live in a map ordered by start, so
//! allocation is first-fit in address order and free is O(log n). Sizes and
//! positions are checked: a request that would wrap or leave the space is
//! refused rather than truncated.

use alloc::collections::BTreeMap;

/// Why an extent operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtentError {
    /// A zero length, or a range that wraps around `u64`.
    Invalid,
    /// No free run is long enough (`ENOSPC`).
    NoSpace,
    /// The range is not wholly allocated (a double free or a stray range).
    NotAllocated,
}

/// First-fit allocator of runs inside `[base, base + size)`.
#[derive(Clone, Debug)]
pub struct ExtentAllocator {
    base: u64,
    end: u64,
    /// Free runs: start -> length, never adjacent (merged on free).
    free: BTreeMap<u64, u64>,
    allocated: u64,
}

impl ExtentAllocator {
    /// All of `[base, base + size)` free; `size` may reach the top of the
    /// `u64` space but not wrap.
    pub fn new(base: u64, size: u64) -> Result<Self, ExtentError> {
        let end = base.checked_add(size).ok_or(ExtentError::Invalid)?;
        let mut free = BTreeMap::new();
        if size > 0 {
            free.insert(base, size);
        }
        Ok(Self {
            base,
            end,
            free,
            allocated: 0,
        })
    }

    /// The first free run of `len` units.
    pub fn alloc(&mut self, len: u64) -> Result<u64, ExtentError> {
        self.alloc_aligned(len, 1)
    }

    /// The first free run of `len` units that starts at a multiple of
    /// `align` (a power of two); what the alignment skips of a free run
    /// stays free.
    pub fn alloc_aligned(&mut self, len: u64, align: u64) -> Result<u64, ExtentError> {
        if len == 0 || !align.is_power_of_two() {
            return Err(ExtentError::Invalid);
        }
        let (start, run, at) = self
            .free
            .iter()
            .find_map(|(&start, &run)| {
                let at = start.checked_next_multiple_of(align)?;
                let end = at.checked_add(len)?;
                (end <= start + run).then_some((start, run, at))
            })
            .ok_or(ExtentError::NoSpace)?;
        self.free.remove(&start);
        if at > start {
            self.free.insert(start, at - start);
        }
        if start + run > at + len {
            self.free.insert(at + len, start + run - (at + len));
        }
        self.allocated += len;
        Ok(at)
    }

    /// Returns `[start, start + len)`, which must be wholly allocated.
    pub fn free(&mut self, start: u64, len: u64) -> Result<(), ExtentError> {
        let end = start.checked_add(len).ok_or(ExtentError::Invalid)?;
        if len == 0 || start < self.base || end > self.end {
            return Err(ExtentError::Invalid);
        }
        // No free run may overlap the range.
        let before = self.free.range(..end).next_back();
        if let Some((&s, &l)) = before
            && s + l > start
        {
            return Err(ExtentError::NotAllocated);
        }
        let (mut new_start, mut new_len) = (start, len);
        if let Some((&s, &l)) = before
            && s + l == start
        {
            self.free.remove(&s);
            new_start = s;
            new_len += l;
        }
        if let Some(l) = self.free.remove(&end) {
            new_len += l;
        }
        self.free.insert(new_start, new_len);
        self.allocated -= len;
        Ok(())
    }

    /// Units currently allocated.
    pub fn allocated(&self) -> u64 {
        self.allocated
    }

    /// Number of separate free runs (1 when nothing is allocated).
    pub fn free_runs(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn first_fit_and_merge() {
        let mut a = ExtentAllocator::new(100, 10).unwrap();
        assert_eq!(a.alloc(3), Ok(100));
        assert_eq!(a.alloc(3), Ok(103));
        assert_eq!(a.alloc(5), Err(ExtentError::NoSpace));
        assert_eq!(a.alloc(4), Ok(106));
        a.free(100, 3).unwrap();
        a.free(106, 4).unwrap();
        assert_eq!(a.free_runs(), 2);
        assert_eq!(a.alloc(2), Ok(100), "first fit reuses the lowest run");
        a.free(100, 2).unwrap();
        a.free(103, 3).unwrap();
        assert_eq!((a.allocated(), a.free_runs()), (0, 1));
    }

    #[test]
    fn aligned_runs_leave_the_skipped_part_free() {
        let mut a = ExtentAllocator::new(100, 2000).unwrap();
        assert_eq!(a.alloc(3), Ok(100));
        assert_eq!(a.alloc_aligned(512, 512), Ok(512));
        assert_eq!(a.free_runs(), 2, "103..512 and 1024..2100");
        assert_eq!(a.alloc(409), Ok(103), "the skipped part is used");
        assert_eq!(a.alloc_aligned(1100, 512), Err(ExtentError::NoSpace));
        assert_eq!(a.alloc_aligned(1, 3), Err(ExtentError::Invalid));
        a.free(512, 512).unwrap();
        a.free(100, 3).unwrap();
        a.free(103, 409).unwrap();
        assert_eq!((a.allocated(), a.free_runs()), (0, 1));
    }

    #[test]
    fn rejects_bad_ranges() {
        assert_eq!(
            ExtentAllocator::new(u64::MAX, 2).unwrap_err(),
            ExtentError::Invalid
        );
        let mut a = ExtentAllocator::new(0, u64::MAX).unwrap();
        assert_eq!(a.alloc(0), Err(ExtentError::Invalid));
        assert_eq!(a.free(u64::MAX - 1, 5), Err(ExtentError::Invalid));
        let s = a.alloc(8).unwrap();
        assert_eq!(a.free(s + 8, 1), Err(ExtentError::NotAllocated));
        a.free(s, 8).unwrap();
        assert_eq!(a.free(s, 8), Err(ExtentError::NotAllocated), "double free");
    }

    proptest! {
        #[test]
        fn live_runs_never_overlap_and_all_coalesce(ops in prop::collection::vec((1u64..20, any::<bool>()), 1..200)) {
            let mut a = ExtentAllocator::new(1000, 500).unwrap();
            let mut live: alloc::vec::Vec<(u64, u64)> = alloc::vec::Vec::new();
            for (len, free_one) in ops {
                // Every third run aligned to the power of two at or above it.
                let align = if len % 3 == 0 { len.next_power_of_two() } else { 1 };
                if free_one && !live.is_empty() {
                    let (s, l) = live.swap_remove(len as usize % live.len());
                    a.free(s, l).unwrap();
                } else if let Ok(s) = a.alloc_aligned(len, align) {
                    prop_assert!(s >= 1000 && s + len <= 1500);
                    prop_assert_eq!(s % align, 0);
                    for &(t, m) in &live {
                        prop_assert!(s + len <= t || t + m <= s, "overlap");
                    }
                    live.push((s, len));
                }
                prop_assert_eq!(a.allocated(), live.iter().map(|r| r.1).sum::<u64>());
            }
            for (s, l) in live {
                a.free(s, l).unwrap();
            }
            prop_assert_eq!(a.free_runs(), 1);
        }
    }
}
