// Workloads shared by the criterion bench and the callgrind example: the
// same operations on our allocator and on `buddy_system_allocator`'s
// `LockedFrameAllocator` (a spin-locked `FrameAllocator`, frame numbers,
// power-of-two blocks, `alloc`/`alloc_aligned`/`dealloc`).

use buddy_system_allocator::LockedFrameAllocator;
use core::alloc::Layout;
use vm::PAGE_SIZE;
use vm::phys::{FreePool, PhysAllocator};

/// Pages of memory in every workload (64 MiB).
pub const NPAGES: u64 = 16 * 1024;

/// The allocator under test, behind one interface.
pub trait Frames {
    /// Allocate `2^order` pages; returns the first frame.
    fn alloc(&self, order: u8) -> Option<u64>;
    /// Free a block from `alloc`.
    fn free(&self, frame: u64, order: u8);
    /// Allocate `n` contiguous pages aligned to `align` pages.
    fn contig(&self, n: u64, align: u64) -> Option<u64>;
    /// Free a run from `contig`.
    fn free_contig(&self, frame: u64, n: u64, align: u64);
}

/// Ours: frame numbers are page ids (one segment at 0).
pub fn ours() -> PhysAllocator {
    PhysAllocator::new(&[(0, NPAGES * PAGE_SIZE)], 0).unwrap()
}

impl Frames for PhysAllocator {
    #[inline]
    fn alloc(&self, order: u8) -> Option<u64> {
        self.alloc_pages(FreePool::Default, order).map(u64::from)
    }
    #[inline]
    fn free(&self, frame: u64, order: u8) {
        self.free_pages(frame as u32, order)
    }
    fn contig(&self, n: u64, align: u64) -> Option<u64> {
        self.alloc_contig(n, 0, u64::MAX, align * PAGE_SIZE, 0)
            .map(u64::from)
    }
    fn free_contig(&self, frame: u64, n: u64, _align: u64) {
        PhysAllocator::free_contig(self, frame as u32, n)
    }
}

/// Ours without the per-CPU page cache: the direct pool's single pages
/// go to the buddy queues.
pub struct Buddy(pub PhysAllocator);

impl Frames for Buddy {
    #[inline]
    fn alloc(&self, order: u8) -> Option<u64> {
        self.0.alloc_pages(FreePool::Direct, order).map(u64::from)
    }
    #[inline]
    fn free(&self, frame: u64, order: u8) {
        self.0.free_pages(frame as u32, order)
    }
    fn contig(&self, n: u64, align: u64) -> Option<u64> {
        self.0.contig(n, align)
    }
    fn free_contig(&self, frame: u64, n: u64, align: u64) {
        Frames::free_contig(&self.0, frame, n, align)
    }
}

/// The peer.
pub fn peer() -> LockedFrameAllocator<32> {
    let a = LockedFrameAllocator::<32>::new();
    a.lock().add_frame(0, NPAGES as usize);
    a
}

impl Frames for LockedFrameAllocator<32> {
    #[inline]
    fn alloc(&self, order: u8) -> Option<u64> {
        self.lock().alloc(1 << order).map(|f| f as u64)
    }
    #[inline]
    fn free(&self, frame: u64, order: u8) {
        self.lock().dealloc(frame as usize, 1 << order)
    }
    fn contig(&self, n: u64, align: u64) -> Option<u64> {
        let l = Layout::from_size_align(n as usize, align as usize).unwrap();
        self.lock().alloc_aligned(l).map(|f| f as u64)
    }
    fn free_contig(&self, frame: u64, n: u64, align: u64) {
        let l = Layout::from_size_align(n as usize, align as usize).unwrap();
        self.lock().dealloc_aligned(frame as usize, l)
    }
}

/// A small deterministic generator (xorshift).
pub struct Rng(pub u64);

impl Rng {
    /// Next value below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One 4 KiB allocation and its free.
#[inline]
pub fn single<A: Frames>(a: &A) {
    let f = a.alloc(0).unwrap();
    a.free(std::hint::black_box(f), 0);
}

/// 64 allocations of orders 0..=4, freed in a scrambled order.
pub fn mixed<A: Frames>(a: &A, rng: &mut Rng) {
    let mut live = [(0u64, 0u8); 64];
    for slot in live.iter_mut() {
        let order = rng.below(5) as u8;
        *slot = (a.alloc(order).unwrap(), order);
    }
    for i in (1..live.len()).rev() {
        live.swap(i, rng.below(i as u64 + 1) as usize);
    }
    for (f, o) in live {
        a.free(f, o);
    }
}

/// Fragmenting churn: fill memory with single pages, free a random 60%,
/// then ask for 64 runs of 3..=48 pages aligned to 1..=8 pages. Returns how
/// many runs were granted; frees everything.
pub fn churn_contig<A: Frames>(a: &A, rng: &mut Rng) -> u32 {
    let mut pages: Vec<u64> = (0..NPAGES).map(|_| a.alloc(0).unwrap()).collect();
    let mut kept = Vec::with_capacity(pages.len());
    for f in pages.drain(..) {
        if rng.below(10) < 6 {
            a.free(f, 0)
        } else {
            kept.push(f)
        }
    }
    let mut runs = Vec::new();
    for _ in 0..64 {
        let n = 3 + rng.below(46);
        let align = 1 << rng.below(4);
        if let Some(f) = a.contig(n, align) {
            runs.push((f, n, align));
        }
    }
    let granted = runs.len() as u32;
    for (f, n, align) in runs {
        a.free_contig(f, n, align);
    }
    for f in kept {
        a.free(f, 0);
    }
    granted
}
