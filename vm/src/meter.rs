//! VM counters (FreeBSD `vm_meter.c`, `struct vmmeter`).
//!
//! Each counter is one relaxed atomic. They are only ever changed through
//! [`Counter::add`] and [`Counter::sub`], so they can become per-CPU
//! `counter(9)`-style shards summed on read without touching callers.

use core::sync::atomic::{AtomicU64, Ordering};

/// A statistics counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Add `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Subtract `n`.
    #[inline]
    pub fn sub(&self, n: u64) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }

    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The VM counters of a domain. The free page count lives in the allocator
/// ([`crate::phys::PhysAllocator::free_count`]).
#[derive(Debug, Default)]
pub struct VmCounters {
    /// Wired pages (`v_wire_count`).
    pub wired: Counter,
    /// Page faults (`v_vm_faults`), counted by the fault handler.
    pub faults: Counter,
    /// Pages zero-filled on demand (`v_zfod`).
    pub zfod: Counter,
    /// Pages brought in by pagers (`v_pagein`).
    pub pagein: Counter,
    /// Pages supplied by populate (`v_populate`, our name).
    pub populated: Counter,
    /// Pages of contiguous kernel memory (`kmem` with a memory attribute).
    pub kmem: Counter,
    /// Contiguous reclaim ([`crate::reclaim`]).
    pub reclaim: ReclaimCounters,
}

/// Counters of contiguous reclaim ([`crate::reclaim`]).
#[derive(Debug, Default)]
pub struct ReclaimCounters {
    /// Reclaim passes: sweeps of a request's range for candidate runs.
    pub passes: Counter,
    /// Candidate runs abandoned because a page could not be moved.
    pub candidates_failed: Counter,
    /// Runs allocated by relocating their pages.
    pub runs: Counter,
    /// Pages relocated (copied to a page outside the run).
    pub pages_relocated: Counter,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_and_sub() {
        let c = VmCounters::default();
        c.wired.add(3);
        c.wired.sub(1);
        assert_eq!(c.wired.get(), 2);
        assert_eq!(c.faults.get(), 0);
    }
}
