//! The physical page allocator: a binary buddy system (FreeBSD `vm_phys.c`).
//!
//! # Design
//!
//! - Memory comes as segments from the boot memory map; each page of a
//!   segment has a [`VmPage`] in one array, indexed by [`PageId`].
//!   Fictitious pages (guest-physical holes that will hold foreign grant
//!   mappings) get page structures from a reserved tail of the same array:
//!   they are never on a free list.
//! - Free blocks of `2^order` pages (orders `0..VM_NFREEORDER`, 18 = 1 GiB)
//!   are aligned in physical address and never cross a segment. They sit on
//!   free lists per pool and order. As in FreeBSD there are two pools: the
//!   default pool and the direct pool, from which direct-mapped kernel
//!   objects and page tables are taken so that they cluster and leave large
//!   blocks for everyone else. An empty pool steals the largest block of the
//!   other pool.
//! - The free lists are intrusive doubly-linked lists of `u32` indices in a
//!   side array parallel to the page array (the `(f)` fields, the `plinks`
//!   of a FreeBSD `vm_page`), so unlinking a buddy while coalescing is O(1)
//!   and the alloc/free path never allocates.
//! - No page colouring.
//! - Per-CPU caches of free pages sit in front of the default pool's
//!   order-0 queue (FreeBSD r331863, the `vm_page` UMA cache of
//!   `vm_page_alloc`/`vm_page_free`): a single-page allocation or free of
//!   a default-pool page pops or pushes the running CPU's cache and takes
//!   no shared lock; an empty cache is filled with [`PCPU_BATCH`] pages,
//!   and a full one ([`PCPU_CACHE`] pages) drained of as many, under one
//!   take of the `free` lock. Direct-pool pages, larger orders and
//!   contiguous runs go to the buddy queues, which take back every cached
//!   page (the caches are drained) before they report failure, and before
//!   `alloc_contig`, `reserve_range` and `free_blocks` look at them. The
//!   running CPU's index comes from the kernel
//!   ([`PhysAllocator::with_cpu_caches`]); host tests run with one cache.
//! - Cached pages count as free ([`PhysAllocator::free_count`]).
//! - Contiguous reclaim ([`crate::reclaim`]) sweeps a request's range for
//!   a candidate run of free and movable pages under the `free` lock and
//!   takes the run's free pages off the free lists, so that neither other
//!   allocations nor the pages that replace the moved ones get them; it
//!   then gives the run back or takes it whole. The sweep starts at the
//!   reclaim cursor, past the last run reclaimed.
//!
//! # Locking
//!
//! | state | protection |
//! |---|---|
//! | free lists and links (f) | `free` spin lock |
//! | a CPU's page cache | (c) its own spin lock: taken by that CPU, and by whoever drains every cache |
//! | free page count, reclaim cursor | (a) atomic |
//! | registered fictitious ranges | `fict` spin lock |
//! | the page array | its own field protocols ([`crate::page`]) |
//!
//! Lock order: a cache's lock, then `free`. No two caches' locks are held
//! at once. Neither is held while the caller runs, so both are leaves for
//! the rest of the VM. The kernel never allocates pages in its event
//! upcall, so the caches need no interrupt masking (nor does `free`).

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;

use crate::page::{MemAttr, PageFlags, PageId, VmPage};
use crate::{Errno, PAGE_SHIFT, PAGE_SIZE};

/// Number of free-list orders (`VM_NFREEORDER`): blocks of 1 page to 1 GiB.
pub const VM_NFREEORDER: usize = 19;
/// The largest order.
pub const MAX_ORDER: u8 = (VM_NFREEORDER - 1) as u8;
/// Number of free pools.
pub const VM_NFREEPOOL: usize = 2;

/// A free pool (`VM_FREEPOOL_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FreePool {
    /// Everything else (`VM_FREEPOOL_DEFAULT`).
    Default = 0,
    /// Direct-mapped kernel objects and page tables (`VM_FREEPOOL_DIRECT`).
    Direct = 1,
}

/// Most pages a CPU's cache holds.
pub const PCPU_CACHE: usize = 64;
/// Pages moved between a CPU's cache and the buddy queues at a time.
pub const PCPU_BATCH: usize = 32;

/// One CPU's cache of free default-pool pages (c): a stack, hottest on top.
#[derive(Debug)]
struct PcpuCache {
    count: usize,
    ids: [PageId; PCPU_CACHE],
}

impl PcpuCache {
    const fn new() -> Self {
        Self {
            count: 0,
            ids: [0; PCPU_CACHE],
        }
    }
}

/// The CPU index of a host test: there is one cache.
fn cpu_zero() -> usize {
    0
}

const NIL: u32 = u32::MAX;
/// `Link::order` of a page that is not the head of a free block.
const NOT_FREE: u8 = u8::MAX;

/// Free-list linkage of one page (f).
#[derive(Clone, Copy, Debug)]
struct Link {
    next: u32,
    prev: u32,
    /// Order of the free block this page heads, or `NOT_FREE`.
    order: u8,
    /// Pool of the free block, or of the allocated block this page heads.
    pool: u8,
    /// Segment index.
    seg: u16,
}

#[derive(Clone, Copy, Debug)]
struct Seg {
    start_pfn: u64,
    end_pfn: u64,
    first: PageId,
}

impl Seg {
    fn id(&self, pfn: u64) -> usize {
        (u64::from(self.first) + (pfn - self.start_pfn)) as usize
    }
}

/// A registered range of fictitious pages (`vm_phys_fictitious_reg_range`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FictitiousRange {
    /// Physical address of the first page.
    pub start: u64,
    /// Number of pages.
    pub npages: u32,
    /// Page structure of the first page; the others follow.
    pub first: PageId,
}

impl FictitiousRange {
    fn end(&self) -> u64 {
        self.start + (u64::from(self.npages) << PAGE_SHIFT)
    }
}

/// The free lists, behind the `free` lock.
struct FreeQueues {
    links: Box<[Link]>,
    heads: [[u32; VM_NFREEORDER]; VM_NFREEPOOL],
    segs: Box<[Seg]>,
}

impl FreeQueues {
    #[inline]
    fn push(&mut self, id: u32, pool: u8, order: u8) {
        let head = self.heads[pool as usize][order as usize];
        let l = &mut self.links[id as usize];
        l.next = head;
        l.prev = NIL;
        l.order = order;
        l.pool = pool;
        if head != NIL {
            self.links[head as usize].prev = id;
        }
        self.heads[pool as usize][order as usize] = id;
    }

    #[inline]
    fn remove(&mut self, id: u32) {
        let l = self.links[id as usize];
        debug_assert_ne!(l.order, NOT_FREE);
        if l.prev == NIL {
            self.heads[l.pool as usize][l.order as usize] = l.next;
        } else {
            self.links[l.prev as usize].next = l.next;
        }
        if l.next != NIL {
            self.links[l.next as usize].prev = l.prev;
        }
        self.links[id as usize].order = NOT_FREE;
    }

    #[inline]
    fn take(&mut self, pool: usize, order: usize, want: u8, into_pool: u8) -> Option<u32> {
        let id = self.heads[pool][order];
        if id == NIL {
            return None;
        }
        self.remove(id);
        // Split: the upper halves go back to the requesting pool.
        let mut o = order as u8;
        while o > want {
            o -= 1;
            self.push(id + (1u32 << o), into_pool, o);
        }
        self.links[id as usize].pool = into_pool;
        Some(id)
    }

    #[inline]
    fn alloc(&mut self, pool: FreePool, order: u8) -> Option<u32> {
        let p = pool as usize;
        for o in order as usize..VM_NFREEORDER {
            if let Some(id) = self.take(p, o, order, pool as u8) {
                return Some(id);
            }
        }
        // The pool is empty: steal the largest block of another pool.
        for o in (order as usize..VM_NFREEORDER).rev() {
            for q in (0..VM_NFREEPOOL).filter(|&q| q != p) {
                if let Some(id) = self.take(q, o, order, pool as u8) {
                    return Some(id);
                }
            }
        }
        None
    }

    /// Free a block, merging it with its free buddies (`vm_phys_free_pages`).
    #[inline]
    fn free(&mut self, mut id: u32, mut order: u8, pool: u8) {
        let seg = self.segs[self.links[id as usize].seg as usize];
        let mut pfn = seg.start_pfn + u64::from(id - seg.first);
        while order < MAX_ORDER {
            let size = 1u64 << order;
            let bpfn = pfn ^ size;
            if bpfn < seg.start_pfn || bpfn + size > seg.end_pfn {
                break;
            }
            let bid = seg.id(bpfn) as u32;
            if self.links[bid as usize].order != order {
                break;
            }
            self.remove(bid);
            pfn &= !size;
            id = id.min(bid);
            order += 1;
        }
        self.push(id, pool, order);
    }

    /// Free `[start, end)` of segment `seg` as maximal aligned blocks.
    fn free_range(&mut self, seg: Seg, mut start: u64, end: u64, pool: u8) {
        while start < end {
            let order = block_order(start, end - start);
            self.free(seg.id(start) as u32, order, pool);
            start += 1 << order;
        }
    }

    /// The free block of segment `seg` that contains `pfn`.
    fn free_block_at(&self, seg: Seg, pfn: u64) -> Option<(u64, u8)> {
        for order in 0..=MAX_ORDER {
            let head = pfn & !((1u64 << order) - 1);
            if head < seg.start_pfn {
                break;
            }
            if self.links[seg.id(head)].order == order {
                return Some((head, order));
            }
        }
        None
    }

    /// Whether every page of `[start, end)` in `seg` is free.
    fn range_free(&self, seg: Seg, mut start: u64, end: u64) -> bool {
        while start < end {
            match self.free_block_at(seg, start) {
                Some((head, order)) => start = head + (1 << order),
                None => return false,
            }
        }
        true
    }

    /// Take the free pages `[start, end)` of `seg` off the free lists,
    /// giving back the parts of their blocks outside the range.
    fn carve(&mut self, seg: Seg, start: u64, end: u64) {
        let mut pfn = start;
        while pfn < end {
            let (head, order) = self
                .free_block_at(seg, pfn)
                .expect("carving a page that is not free");
            let pool = self.links[seg.id(head)].pool;
            let bend = head + (1 << order);
            self.remove(seg.id(head) as u32);
            self.free_range(seg, head, start.max(head), pool);
            self.free_range(seg, end.min(bend), bend, pool);
            pfn = bend;
        }
        self.links[seg.id(start)].pool = FreePool::Default as u8;
    }

    /// First run of `n` free pages in `seg` within `[lo, hi)` whose start is
    /// `align`-aligned and which does not cross a multiple of `bound` (0: none).
    fn find_run(&self, seg: Seg, lo: u64, hi: u64, n: u64, align: u64, bound: u64) -> Option<u64> {
        // Block boundaries: a segment start or a MAX_ORDER-aligned frame.
        let mut pfn = seg.start_pfn.max(lo & !((1u64 << MAX_ORDER) - 1));
        let mut run: Option<u64> = None;
        while pfn < hi {
            let order = self.links[seg.id(pfn)].order;
            if order == NOT_FREE {
                run = None;
                pfn += 1;
                continue;
            }
            let bend = pfn + (1u64 << order);
            let rs = *run.get_or_insert(pfn);
            let mut c = align_up(rs.max(lo), align);
            if bound != 0 && c / bound != (c + n - 1) / bound {
                c = align_up(align_up(c, bound), align);
            }
            if c + n <= bend.min(hi) {
                return Some(c);
            }
            pfn = bend;
        }
        None
    }

    /// The first page of `[start, end)` in `seg` that is neither free nor
    /// `movable`.
    fn first_unmovable(
        &self,
        seg: Seg,
        start: u64,
        end: u64,
        movable: &dyn Fn(PageId) -> bool,
    ) -> Option<u64> {
        let mut pfn = start;
        while pfn < end {
            if let Some((head, order)) = self.free_block_at(seg, pfn) {
                pfn = head + (1 << order);
            } else if movable(seg.id(pfn) as PageId) {
                pfn += 1;
            } else {
                return Some(pfn);
            }
        }
        None
    }

    /// Take the free pages of `[start, end)` in `seg` off the free lists;
    /// returns which pages were taken.
    fn take_free(&mut self, seg: Seg, start: u64, end: u64) -> Vec<bool> {
        let mut taken = vec![false; (end - start) as usize];
        let mut pfn = start;
        while pfn < end {
            let Some((head, order)) = self.free_block_at(seg, pfn) else {
                pfn += 1;
                continue;
            };
            let stop = end.min(head + (1 << order));
            self.carve(seg, pfn, stop);
            taken[(pfn - start) as usize..(stop - start) as usize].fill(true);
            pfn = stop;
        }
        taken
    }
}

/// A checked request for a contiguous run, in frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContigRequest {
    npages: u64,
    lo: u64,
    hi: u64,
    align: u64,
    bound: u64,
}

impl ContigRequest {
    /// The frames of a request for `npages` pages in `[low, high)` (bytes),
    /// `alignment`-aligned, not crossing a multiple of `boundary` (0:
    /// none); `alignment` and `boundary` are powers of two. `None` if no
    /// run can satisfy it.
    pub fn new(npages: u64, low: u64, high: u64, alignment: u64, boundary: u64) -> Option<Self> {
        if npages == 0
            || !alignment.is_power_of_two()
            || (boundary != 0 && !boundary.is_power_of_two())
        {
            return None;
        }
        let bound = boundary >> PAGE_SHIFT;
        if boundary != 0 && (bound == 0 || npages > bound) {
            return None;
        }
        let (lo, hi) = (low.div_ceil(PAGE_SIZE), high / PAGE_SIZE);
        if hi.saturating_sub(lo) < npages {
            return None;
        }
        Some(Self {
            npages,
            lo,
            hi,
            align: (alignment >> PAGE_SHIFT).max(1),
            bound,
        })
    }

    /// Number of pages.
    pub fn npages(&self) -> u64 {
        self.npages
    }

    /// The lowest frame the run may use.
    pub fn lo(&self) -> u64 {
        self.lo
    }

    /// The frame after the highest the run may use.
    pub fn hi(&self) -> u64 {
        self.hi
    }

    /// The run starts at a multiple of this many frames (a power of two).
    pub fn align(&self) -> u64 {
        self.align
    }

    /// The run does not cross a multiple of this many frames (0: none).
    pub fn bound(&self) -> u64 {
        self.bound
    }

    /// The part of `seg` inside the request's range, if a run fits in it.
    fn within(&self, seg: Seg) -> Option<(u64, u64)> {
        let (slo, shi) = (seg.start_pfn.max(self.lo), seg.end_pfn.min(self.hi));
        (shi > slo && shi - slo >= self.npages).then_some((slo, shi))
    }

    /// The first frame at or after `pfn` where a run may start.
    fn first_start(&self, pfn: u64) -> u64 {
        let c = align_up(pfn, self.align);
        if self.bound != 0 && c / self.bound != (c + self.npages - 1) / self.bound {
            align_up(align_up(c, self.bound), self.align)
        } else {
            c
        }
    }
}

/// A run chosen for reclaim ([`PhysAllocator::take_candidate`]): its free
/// pages are off the free lists; the others still belong to their users.
#[derive(Debug)]
pub(crate) struct ContigCandidate {
    first: PageId,
    pfn: u64,
    /// Which pages the reclaimer owns: taken free, or moved away from.
    owned: Vec<bool>,
}

impl ContigCandidate {
    /// The first page.
    pub(crate) fn first(&self) -> PageId {
        self.first
    }

    /// The frame of the first page.
    pub(crate) fn pfn(&self) -> u64 {
        self.pfn
    }

    /// Number of pages.
    pub(crate) fn npages(&self) -> u64 {
        self.owned.len() as u64
    }

    /// Whether page `i` of the run is the reclaimer's.
    pub(crate) fn owns(&self, i: u64) -> bool {
        self.owned[i as usize]
    }

    /// Page `i` of the run is now the reclaimer's: its user let it go, and
    /// its reference count is 0 with no busy lock.
    pub(crate) fn adopt(&mut self, i: u64) {
        self.owned[i as usize] = true;
    }
}

/// The largest order of an aligned block at `pfn` of at most `len` pages.
#[inline]
fn block_order(pfn: u64, len: u64) -> u8 {
    let align = if pfn == 0 {
        u32::from(MAX_ORDER)
    } else {
        pfn.trailing_zeros()
    };
    let fit = 63 - len.leading_zeros();
    align.min(fit).min(u32::from(MAX_ORDER)) as u8
}

const fn align_up(x: u64, a: u64) -> u64 {
    (x + a - 1) & !(a - 1)
}

/// The physical memory allocator and the page array.
pub struct PhysAllocator {
    pages: Box<[VmPage]>,
    segs: Box<[Seg]>,
    /// First fictitious page structure.
    nphys: u32,
    free: Mutex<FreeQueues>,
    /// (c) One cache per CPU.
    caches: Box<[Mutex<PcpuCache>]>,
    /// The running CPU's index (any value: it is taken modulo the caches).
    current_cpu: fn() -> usize,
    free_count: AtomicU64,
    /// (a) Where the next reclaim sweep starts ([`PhysAllocator::reclaim_cursor`]).
    reclaim_cursor: AtomicU64,
    fict: Mutex<Vec<FictitiousRange>>,
}

impl core::fmt::Debug for PhysAllocator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PhysAllocator")
            .field("segs", &self.segs)
            .field("free_count", &self.free_count())
            .finish_non_exhaustive()
    }
}

impl PhysAllocator {
    /// Build the page array and free lists for `segments` (physical
    /// `(start, end)` ranges from the boot memory map, rounded inwards to
    /// pages), with room for `fictitious_capacity` fictitious pages.
    /// Every page starts free, in the default pool.
    pub fn new(segments: &[(u64, u64)], fictitious_capacity: u32) -> Result<Self, Errno> {
        let mut ranges: Vec<(u64, u64)> = segments
            .iter()
            .map(|&(s, e)| (s.div_ceil(PAGE_SIZE), e / PAGE_SIZE))
            .filter(|&(s, e)| s < e)
            .collect();
        ranges.sort_unstable();
        if ranges.windows(2).any(|w| w[0].1 > w[1].0) {
            return Err(Errno::EINVAL);
        }
        // Touching segments become one: buddies never cross a segment
        // boundary, so two halves of a memory map entry would otherwise
        // never coalesce into the blocks that span them.
        ranges.dedup_by(|next, prev| {
            let touching = prev.1 == next.0;
            if touching {
                prev.1 = next.1;
            }
            touching
        });
        if ranges.len() > usize::from(u16::MAX) {
            return Err(Errno::EINVAL);
        }
        let total: u64 =
            ranges.iter().map(|&(s, e)| e - s).sum::<u64>() + u64::from(fictitious_capacity);
        if total >= u64::from(NIL) {
            return Err(Errno::ENOMEM);
        }
        let mut segs = Vec::with_capacity(ranges.len());
        let mut pages = Vec::with_capacity(total as usize);
        let mut links = Vec::with_capacity(total as usize);
        for (i, &(s, e)) in ranges.iter().enumerate() {
            segs.push(Seg {
                start_pfn: s,
                end_pfn: e,
                first: pages.len() as u32,
            });
            for pfn in s..e {
                pages.push(VmPage::new(pfn << PAGE_SHIFT));
                links.push(Link {
                    next: NIL,
                    prev: NIL,
                    order: NOT_FREE,
                    pool: 0,
                    seg: i as u16,
                });
            }
        }
        let nphys = pages.len() as u32;
        for _ in 0..fictitious_capacity {
            let m = VmPage::new(0);
            m.set_flags(PageFlags::FICTITIOUS);
            pages.push(m);
            links.push(Link {
                next: NIL,
                prev: NIL,
                order: NOT_FREE,
                pool: 0,
                seg: u16::MAX,
            });
        }
        let segs: Box<[Seg]> = segs.into();
        let mut q = FreeQueues {
            links: links.into(),
            heads: [[NIL; VM_NFREEORDER]; VM_NFREEPOOL],
            segs: segs.clone(),
        };
        for &seg in segs.iter() {
            let mut pfn = seg.start_pfn;
            while pfn < seg.end_pfn {
                let order = block_order(pfn, seg.end_pfn - pfn);
                q.push(seg.id(pfn) as u32, FreePool::Default as u8, order);
                pfn += 1 << order;
            }
        }
        Ok(Self {
            pages: pages.into(),
            segs,
            nphys,
            free: Mutex::new(q),
            caches: Box::new([Mutex::new(PcpuCache::new())]),
            current_cpu: cpu_zero,
            free_count: AtomicU64::new(u64::from(nphys)),
            reclaim_cursor: AtomicU64::new(0),
            fict: Mutex::new(Vec::new()),
        })
    }

    /// The page structure `id`.
    #[inline]
    pub fn page(&self, id: PageId) -> &VmPage {
        &self.pages[id as usize]
    }

    /// The id of a page of this array.
    pub fn page_id(&self, m: &VmPage) -> PageId {
        self.page_at(m as *const VmPage as usize)
            .expect("page not in this array")
    }

    /// The id of the page structure at address `addr`, if one of this
    /// array's is there (a sleep queue's key back to its page, for
    /// reports).
    pub fn page_at(&self, addr: usize) -> Option<PageId> {
        let size = core::mem::size_of::<VmPage>();
        let off = addr.wrapping_sub(self.pages.as_ptr() as usize);
        (off.is_multiple_of(size) && off / size < self.pages.len()).then(|| (off / size) as PageId)
    }

    /// Number of real (non-fictitious) pages.
    pub fn page_count(&self) -> u32 {
        self.nphys
    }

    /// Number of free pages (`vm_free_count`).
    pub fn free_count(&self) -> u64 {
        self.free_count.load(Ordering::Relaxed)
    }

    /// Give the allocator `ncpus` page caches (at least one), and the
    /// function that names the running CPU (`0..ncpus`). Called once, before
    /// the allocator is shared.
    pub fn with_cpu_caches(mut self, ncpus: usize, current_cpu: fn() -> usize) -> Self {
        self.caches = (0..ncpus.max(1))
            .map(|_| Mutex::new(PcpuCache::new()))
            .collect();
        self.current_cpu = current_cpu;
        self
    }

    #[inline]
    fn sub_free(&self, n: u64) {
        self.free_count.fetch_sub(n, Ordering::Relaxed);
    }

    #[inline]
    fn add_free(&self, n: u64) {
        self.free_count.fetch_add(n, Ordering::Relaxed);
    }

    #[inline]
    fn my_cache(&self) -> &Mutex<PcpuCache> {
        &self.caches[(self.current_cpu)() % self.caches.len()]
    }

    /// Move every cached page back to the buddy queues (`uma_reclaim` of
    /// the page caches), so that they coalesce. Returns how many moved.
    pub fn drain_caches(&self) -> usize {
        let mut moved = 0;
        for cache in self.caches.iter() {
            let mut c = cache.lock();
            if c.count == 0 {
                continue;
            }
            let mut q = self.free.lock();
            for &id in &c.ids[..c.count] {
                q.free(id, 0, FreePool::Default as u8);
            }
            moved += c.count;
            c.count = 0;
        }
        moved
    }

    /// Allocate a block of `2^order` pages from `pool` (`vm_phys_alloc_pages`).
    /// The pages are unbusied, unreferenced and invalid.
    #[inline]
    pub fn alloc_pages(&self, pool: FreePool, order: u8) -> Option<PageId> {
        debug_assert!(order <= MAX_ORDER);
        let id = if order == 0 && pool == FreePool::Default {
            self.cache_alloc()?
        } else {
            let id = self.buddy_alloc(pool, order).or_else(|| {
                if self.drain_caches() == 0 {
                    return None;
                }
                self.buddy_alloc(pool, order)
            })?;
            self.sub_free(1 << order);
            id
        };
        for m in &self.pages[id as usize..(id as usize + (1 << order))] {
            m.reset_for_alloc(pool as u8);
        }
        Some(id)
    }

    #[inline]
    fn buddy_alloc(&self, pool: FreePool, order: u8) -> Option<PageId> {
        self.free.lock().alloc(pool, order)
    }

    /// Pop a page off the running CPU's cache, filling it from the buddy
    /// queues when empty, and, when they are empty too, after draining
    /// every other cache.
    #[inline]
    fn cache_alloc(&self) -> Option<PageId> {
        for retry in [false, true] {
            let mut c = self.my_cache().lock();
            if c.count == 0 {
                let mut q = self.free.lock();
                while c.count < PCPU_BATCH {
                    let Some(id) = q.alloc(FreePool::Default, 0) else {
                        break;
                    };
                    let n = c.count;
                    c.ids[n] = id;
                    c.count += 1;
                }
            }
            if c.count > 0 {
                c.count -= 1;
                let id = c.ids[c.count];
                drop(c);
                self.sub_free(1);
                return Some(id);
            }
            drop(c);
            if retry || self.drain_caches() == 0 {
                break;
            }
        }
        None
    }

    /// Allocate one page from `pool`.
    #[inline]
    pub fn alloc_page(&self, pool: FreePool) -> Option<PageId> {
        self.alloc_pages(pool, 0)
    }

    /// Free a block from [`PhysAllocator::alloc_pages`] (`vm_phys_free_pages`).
    #[inline]
    pub fn free_pages(&self, id: PageId, order: u8) {
        self.check_freeable(id, 1 << order);
        let pool = self.pages[id as usize].pool();
        if order == 0 && pool == FreePool::Default as u8 {
            self.cache_free(id);
        } else {
            self.free.lock().free(id, order, pool);
        }
        self.add_free(1 << order);
    }

    /// Push a page on the running CPU's cache, draining its
    /// [`PCPU_BATCH`] coldest pages to the buddy queues when it is full.
    #[inline]
    fn cache_free(&self, id: PageId) {
        let mut c = self.my_cache().lock();
        if c.count == PCPU_CACHE {
            let mut q = self.free.lock();
            for &old in &c.ids[..PCPU_BATCH] {
                q.free(old, 0, FreePool::Default as u8);
            }
            drop(q);
            c.ids.copy_within(PCPU_BATCH.., 0);
            c.count -= PCPU_BATCH;
        }
        let n = c.count;
        c.ids[n] = id;
        c.count += 1;
    }

    /// Free one page.
    #[inline]
    pub fn free_page(&self, id: PageId) {
        self.free_pages(id, 0);
    }

    fn check_freeable(&self, id: PageId, n: u64) {
        assert!(
            u64::from(id) + n <= u64::from(self.nphys),
            "freeing a fictitious or unknown page"
        );
        if cfg!(debug_assertions) {
            for m in &self.pages[id as usize..(id as usize + n as usize)] {
                debug_assert_eq!(m.ref_count(), 0, "freeing a referenced page");
                debug_assert!(!m.is_busied(), "freeing a busy page");
            }
        }
    }

    /// Allocate `npages` physically contiguous pages within `[low, high)`,
    /// starting at a multiple of `alignment` and not crossing a multiple of
    /// `boundary` (0: no boundary), as `vm_phys_alloc_contig`. `alignment`
    /// and `boundary` are byte counts and powers of two. Returns the first
    /// page; the others follow it in the array. Only free pages are
    /// used: [`crate::reclaim::alloc_contig`] also moves pages away.
    pub fn alloc_contig(
        &self,
        npages: u64,
        low: u64,
        high: u64,
        alignment: u64,
        boundary: u64,
    ) -> Option<PageId> {
        self.alloc_contig_req(&ContigRequest::new(npages, low, high, alignment, boundary)?)
    }

    /// [`PhysAllocator::alloc_contig`] of a checked request.
    pub fn alloc_contig_req(&self, req: &ContigRequest) -> Option<PageId> {
        self.drain_caches();
        let mut q = self.free.lock();
        for &seg in self.segs.iter() {
            let Some((slo, shi)) = req.within(seg) else {
                continue;
            };
            if let Some(start) = q.find_run(seg, slo, shi, req.npages, req.align, req.bound) {
                q.carve(seg, start, start + req.npages);
                self.sub_free(req.npages);
                drop(q);
                return Some(self.hand_out(seg.id(start), req.npages));
            }
        }
        None
    }

    /// Reset `npages` pages from `id` for their new user.
    fn hand_out(&self, id: usize, npages: u64) -> PageId {
        for m in &self.pages[id..id + npages as usize] {
            m.reset_for_alloc(FreePool::Default as u8);
        }
        id as PageId
    }

    /// Where the next reclaim sweep starts (a frame number): past the
    /// last run reclaim allocated, so that repeated requests do not sweep
    /// again the frames before it (FreeBSD's contigmalloc fix).
    pub fn reclaim_cursor(&self) -> u64 {
        self.reclaim_cursor.load(Ordering::Relaxed)
    }

    /// Move the reclaim cursor to frame `pfn`.
    pub(crate) fn set_reclaim_cursor(&self, pfn: u64) {
        self.reclaim_cursor.store(pfn, Ordering::Relaxed);
    }

    /// Find the first run of `req` starting at a frame in `[from, limit)`
    /// whose every page is free or passes `movable` (a lock-free check of
    /// the page's state: it runs under the `free` lock), and take its free
    /// pages off the free lists (`vm_phys_scan_contig`, with the run's free
    /// pages set aside so that no one else, nor the pages that replace the
    /// moved ones, gets them). Give the run back with
    /// [`PhysAllocator::release_candidate`] or take it with
    /// [`PhysAllocator::finish_candidate`].
    pub(crate) fn take_candidate(
        &self,
        req: &ContigRequest,
        from: u64,
        limit: u64,
        movable: &dyn Fn(PageId) -> bool,
    ) -> Option<ContigCandidate> {
        self.drain_caches();
        let mut q = self.free.lock();
        for &seg in self.segs.iter() {
            let Some((slo, shi)) = req.within(seg) else {
                continue;
            };
            let mut c = req.first_start(slo.max(from));
            while c < limit && c + req.npages <= shi {
                match q.first_unmovable(seg, c, c + req.npages, movable) {
                    Some(bad) => c = req.first_start(bad + 1),
                    None => {
                        let taken = q.take_free(seg, c, c + req.npages);
                        self.sub_free(taken.iter().filter(|&&t| t).count() as u64);
                        return Some(ContigCandidate {
                            first: seg.id(c) as PageId,
                            pfn: c,
                            owned: taken,
                        });
                    }
                }
            }
        }
        None
    }

    /// Give back the pages of a candidate that the caller owns: those
    /// taken free, and those whose users it moved away.
    pub(crate) fn release_candidate(&self, cand: ContigCandidate) {
        let first = cand.first as usize;
        let mut q = self.free.lock();
        let seg = q.segs[q.links[first].seg as usize];
        let mut i = 0;
        while i < cand.owned.len() {
            if !cand.owned[i] {
                i += 1;
                continue;
            }
            let j = (i..cand.owned.len())
                .find(|&j| !cand.owned[j])
                .unwrap_or(cand.owned.len());
            self.check_freeable(cand.first + i as PageId, (j - i) as u64);
            q.free_range(
                seg,
                cand.pfn + i as u64,
                cand.pfn + j as u64,
                FreePool::Default as u8,
            );
            self.add_free((j - i) as u64);
            i = j;
        }
    }

    /// Allocate a candidate whose every page the caller owns; returns its
    /// first page.
    pub(crate) fn finish_candidate(&self, cand: ContigCandidate) -> PageId {
        assert!(
            cand.owned.iter().all(|&o| o),
            "finishing a candidate with pages still in use"
        );
        self.check_freeable(cand.first, cand.owned.len() as u64);
        self.hand_out(cand.first as usize, cand.owned.len() as u64)
    }

    /// Free `npages` contiguous pages starting at `id` (`vm_phys_free_contig`).
    pub fn free_contig(&self, id: PageId, npages: u64) {
        self.check_freeable(id, npages);
        let mut q = self.free.lock();
        let seg = q.segs[q.links[id as usize].seg as usize];
        let start = seg.start_pfn + u64::from(id - seg.first);
        assert!(
            start + npages <= seg.end_pfn,
            "contiguous run crosses a segment"
        );
        q.free_range(seg, start, start + npages, FreePool::Default as u8);
        self.add_free(npages);
    }

    /// Take the free pages of `[start, end)` out of circulation (a hole:
    /// firmware tables, the kernel image). Pages outside every segment are
    /// ignored. Fails with `EBUSY`, reserving nothing, if a page is not free.
    pub fn reserve_range(&self, start: u64, end: u64) -> Result<(), Errno> {
        let (lo, hi) = (start / PAGE_SIZE, end.div_ceil(PAGE_SIZE));
        self.drain_caches();
        let mut q = self.free.lock();
        let parts: Vec<(Seg, u64, u64)> = self
            .segs
            .iter()
            .map(|&s| (s, s.start_pfn.max(lo), s.end_pfn.min(hi)))
            .filter(|&(_, a, b)| a < b)
            .collect();
        if !parts.iter().all(|&(s, a, b)| q.range_free(s, a, b)) {
            return Err(Errno::EBUSY);
        }
        for (s, a, b) in parts {
            q.carve(s, a, b);
            self.sub_free(b - a);
        }
        Ok(())
    }

    /// The page for physical address `pa`, real or registered fictitious
    /// (`PHYS_TO_VM_PAGE`).
    pub fn phys_to_page(&self, pa: u64) -> Option<PageId> {
        let pfn = pa >> PAGE_SHIFT;
        let i = self.segs.partition_point(|s| s.end_pfn <= pfn);
        if let Some(s) = self.segs.get(i).filter(|s| s.start_pfn <= pfn) {
            return Some(s.id(pfn) as PageId);
        }
        let fict = self.fict.lock();
        fict.iter()
            .find(|r| r.start <= pa && pa < r.end())
            .map(|r| r.first + ((pa - r.start) >> PAGE_SHIFT) as u32)
    }

    /// Register `npages` fictitious pages for the guest-physical hole at
    /// `start` (`vm_phys_fictitious_reg_range`): they can then be inserted
    /// in device objects. The hole must not overlap RAM (`EINVAL`) nor
    /// another range (`EEXIST`); `ENOMEM` when the reserved page structures
    /// run out.
    pub fn register_fictitious(
        &self,
        start: u64,
        npages: u32,
        memattr: MemAttr,
    ) -> Result<FictitiousRange, Errno> {
        let len = u64::from(npages) << PAGE_SHIFT;
        let end = start.checked_add(len).ok_or(Errno::ERANGE)?;
        if npages == 0 || !start.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        let (spfn, epfn) = (start >> PAGE_SHIFT, end >> PAGE_SHIFT);
        if self
            .segs
            .iter()
            .any(|s| s.start_pfn < epfn && spfn < s.end_pfn)
        {
            return Err(Errno::EINVAL);
        }
        let mut fict = self.fict.lock();
        if fict.iter().any(|r| r.start < end && start < r.end()) {
            return Err(Errno::EEXIST);
        }
        // First fit in the fictitious tail; `fict` is sorted by `first`.
        let mut slot = self.nphys;
        let mut at = fict.len();
        for (i, r) in fict.iter().enumerate() {
            if r.first - slot >= npages {
                at = i;
                break;
            }
            slot = r.first + r.npages;
        }
        if at == fict.len() && (self.pages.len() as u32 - slot) < npages {
            return Err(Errno::ENOMEM);
        }
        for i in 0..npages {
            let m = self.page(slot + i);
            debug_assert!(m.is_fictitious() && m.ref_count() == 0);
            m.set_phys_addr(start + (u64::from(i) << PAGE_SHIFT));
            m.set_memattr(memattr);
            m.set_pindex(0);
        }
        let r = FictitiousRange {
            start,
            npages,
            first: slot,
        };
        fict.insert(at, r);
        Ok(r)
    }

    /// Unregister a fictitious range (`vm_phys_fictitious_unreg_range`).
    /// `EBUSY` if one of its pages is still referenced or busy; `ENOENT` if
    /// it is not registered.
    pub fn unregister_fictitious(&self, range: FictitiousRange) -> Result<(), Errno> {
        let mut fict = self.fict.lock();
        let i = fict.iter().position(|r| *r == range).ok_or(Errno::ENOENT)?;
        let busy = (0..range.npages).any(|k| {
            let m = self.page(range.first + k);
            m.ref_count() != 0 || m.is_busied()
        });
        if busy {
            return Err(Errno::EBUSY);
        }
        fict.remove(i);
        Ok(())
    }

    /// Free blocks as `(physical address, order)`, sorted by address
    /// (like FreeBSD's `vm.phys_free` sysctl, for diagnostics and tests),
    /// after draining the per-CPU caches.
    pub fn free_blocks(&self) -> Vec<(u64, u8)> {
        self.drain_caches();
        let q = self.free.lock();
        let mut v = Vec::new();
        for pool in q.heads.iter() {
            for &head in pool.iter() {
                let mut id = head;
                while id != NIL {
                    let l = q.links[id as usize];
                    v.push((self.page(id).phys_addr(), l.order));
                    id = l.next;
                }
            }
        }
        v.sort_unstable();
        v
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const MB: u64 = 1 << 20;

    #[test]
    fn page_at_finds_only_page_structures() {
        let p = PhysAllocator::new(&[(0, 16 * PAGE_SIZE)], 0).unwrap();
        for id in [0, 7, 15] {
            let addr = p.page(id) as *const VmPage as usize;
            assert_eq!(p.page_at(addr), Some(id));
            assert_eq!(p.page_id(p.page(id)), id);
            assert_eq!(p.page_at(addr + 1), None, "inside a structure");
        }
        let last = p.page(15) as *const VmPage as usize;
        assert_eq!(p.page_at(last + core::mem::size_of::<VmPage>()), None);
        assert_eq!(p.page_at(0), None);
    }

    #[test]
    fn initial_blocks_are_maximal_and_aligned() {
        let p = PhysAllocator::new(&[(0x1000, 0x9000), (2 * MB + 100, 3 * MB)], 0).unwrap();
        assert_eq!(p.page_count(), 8 + 255);
        assert_eq!(p.free_count(), 8 + 255);
        let b = p.free_blocks();
        assert_eq!(
            &b[..4],
            &[(0x1000, 0), (0x2000, 1), (0x4000, 2), (0x8000, 0)]
        );
        for &(pa, o) in &b {
            assert_eq!(pa % (PAGE_SIZE << o), 0);
        }
    }

    #[test]
    fn orders_up_to_one_gib() {
        let p = PhysAllocator::new(&[(0, 1 << 30)], 0).unwrap();
        assert_eq!(p.free_blocks(), [(0, 18)]);
        let a = p.alloc_page(FreePool::Default).unwrap();
        assert_eq!(p.free_blocks().len(), 18);
        p.free_page(a);
        assert_eq!(p.free_blocks(), [(0, 18)]);
        assert_eq!(p.alloc_pages(FreePool::Default, MAX_ORDER), Some(0));
        assert_eq!(p.alloc_page(FreePool::Default), None);
    }

    #[test]
    fn pools_cluster_and_steal() {
        let p = PhysAllocator::new(&[(0, 4 * MB)], 0).unwrap();
        let d1 = p.alloc_page(FreePool::Direct).unwrap();
        let a = p.alloc_page(FreePool::Default).unwrap();
        let d2 = p.alloc_page(FreePool::Direct).unwrap();
        // Direct pages come from one stolen block, away from default ones.
        assert_eq!(d2, d1 + 1);
        assert!(a.abs_diff(d1) >= 256);
        for id in [d1, a, d2] {
            p.free_page(id);
        }
        assert_eq!(p.free_blocks(), [(0, 10)]);
        assert_eq!(p.free_count(), 1024);
    }

    #[test]
    fn alloc_until_empty_then_free_all() {
        let p = PhysAllocator::new(&[(0, 64 * PAGE_SIZE), (MB, MB + 3 * PAGE_SIZE)], 0).unwrap();
        let before = p.free_blocks();
        let mut got = BTreeSet::new();
        while let Some(id) = p.alloc_page(FreePool::Default) {
            assert!(got.insert(id));
        }
        assert_eq!(got.len(), 67);
        assert_eq!(p.free_count(), 0);
        for id in got {
            p.free_page(id);
        }
        assert_eq!(p.free_blocks(), before);
    }

    #[test]
    fn contig_honours_constraints() {
        let p = PhysAllocator::new(&[(0, 8 * MB)], 0).unwrap();
        // Fragment: hold every other page of the first MiB.
        let held: Vec<_> = (0..256)
            .map(|_| p.alloc_page(FreePool::Default).unwrap())
            .collect();
        for (i, &id) in held.iter().enumerate() {
            if i % 2 == 0 {
                p.free_page(id);
            }
        }
        let id = p.alloc_contig(3, 0, 8 * MB, 16 * PAGE_SIZE, 0).unwrap();
        let pa = p.page(id).phys_addr();
        assert_eq!(pa % (16 * PAGE_SIZE), 0);
        assert!(pa >= MB || (pa / PAGE_SIZE).is_multiple_of(2));
        let id2 = p
            .alloc_contig(4, 2 * MB, 3 * MB, PAGE_SIZE, 8 * PAGE_SIZE)
            .unwrap();
        let pa2 = p.page(id2).phys_addr();
        assert!(pa2 >= 2 * MB && pa2 + 4 * PAGE_SIZE <= 3 * MB);
        assert_eq!(
            pa2 / (8 * PAGE_SIZE),
            (pa2 + 3 * PAGE_SIZE) / (8 * PAGE_SIZE)
        );
        assert_eq!(p.alloc_contig(9, 0, 8 * MB, PAGE_SIZE, 8 * PAGE_SIZE), None);
        assert_eq!(p.alloc_contig(2048, 0, 8 * MB, PAGE_SIZE, 0), None);
        p.free_contig(id, 3);
        p.free_contig(id2, 4);
        for (i, &id) in held.iter().enumerate() {
            if i % 2 == 1 {
                p.free_page(id);
            }
        }
        assert_eq!(p.free_blocks(), [(0, 11)]);
    }

    #[test]
    fn reserve_makes_holes() {
        let p = PhysAllocator::new(&[(0, MB)], 0).unwrap();
        p.reserve_range(0x3000, 0x5000).unwrap();
        assert_eq!(p.free_count(), 254);
        assert!(
            !p.free_blocks()
                .iter()
                .any(|&(pa, o)| pa < 0x5000 && pa + (PAGE_SIZE << o) > 0x3000)
        );
        assert_eq!(p.reserve_range(0x4000, 0x6000), Err(Errno::EBUSY));
        assert_eq!(p.free_count(), 254);
        p.reserve_range(2 * MB, 3 * MB).unwrap();
        p.free_contig(3, 2);
        assert_eq!(p.free_blocks(), [(0, 8)]);
    }

    std::thread_local! {
        static CPU: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
    }

    fn test_cpu() -> usize {
        CPU.with(|c| c.get())
    }

    #[test]
    fn single_pages_go_through_the_cpu_cache() {
        let p = PhysAllocator::new(&[(0, MB)], 0)
            .unwrap()
            .with_cpu_caches(2, test_cpu);
        let a = p.alloc_page(FreePool::Default).unwrap();
        // The cache was filled with a batch: the buddy queues lost that many.
        let buddy: u64 = {
            let q = p.free.lock();
            q.heads[0]
                .iter()
                .enumerate()
                .map(|(o, &h)| if h == NIL { 0 } else { 1u64 << o })
                .sum()
        };
        assert_eq!(buddy, 256 - PCPU_BATCH as u64);
        assert_eq!(p.free_count(), 255);
        p.free_page(a);
        assert_eq!(p.free_count(), 256);
        // Last in, first out: the hot page comes back.
        assert_eq!(p.alloc_page(FreePool::Default), Some(a));
        p.free_page(a);
        // A direct page bypasses the cache and a free sends it back there.
        let d = p.alloc_page(FreePool::Direct).unwrap();
        assert_eq!(p.page(d).pool(), FreePool::Direct as u8);
        p.free_page(d);
        assert_eq!(p.free_blocks(), [(0, 8)]);
        assert_eq!(p.drain_caches(), 0);
    }

    #[test]
    fn a_full_cache_spills_a_batch() {
        let p = PhysAllocator::new(&[(0, MB)], 0).unwrap();
        let held: Vec<_> = (0..PCPU_CACHE + 1)
            .map(|_| p.alloc_page(FreePool::Default).unwrap())
            .collect();
        p.drain_caches();
        for &id in &held {
            p.free_page(id);
        }
        assert_eq!(p.my_cache().lock().count, PCPU_CACHE + 1 - PCPU_BATCH);
        assert_eq!(p.free_count(), 256);
        assert_eq!(p.drain_caches(), PCPU_CACHE + 1 - PCPU_BATCH);
        assert_eq!(p.free_blocks(), [(0, 8)]);
    }

    #[test]
    fn pages_cached_by_one_cpu_serve_another_when_memory_runs_out() {
        let p = PhysAllocator::new(&[(0, 64 * PAGE_SIZE), (MB, MB + 3 * PAGE_SIZE)], 0)
            .unwrap()
            .with_cpu_caches(2, test_cpu);
        let all: Vec<_> = core::iter::from_fn(|| p.alloc_page(FreePool::Default)).collect();
        assert_eq!(all.len(), 67);
        for &id in &all {
            p.free_page(id);
        }
        assert!(p.my_cache().lock().count > 0);
        // CPU 1 gets every page, CPU 0's cached ones included.
        let other = std::thread::spawn(move || {
            CPU.with(|c| c.set(1));
            let n = core::iter::from_fn(|| p.alloc_page(FreePool::Default)).count();
            (n, p)
        });
        let (n, p) = other.join().unwrap();
        assert_eq!(n, 67);
        assert_eq!(p.free_count(), 0);
        // And an order-1 request finds nothing, even after a drain.
        assert_eq!(p.alloc_pages(FreePool::Default, 1), None);
    }

    #[test]
    fn threads_on_their_own_caches_and_cross_frees_conserve_pages() {
        use std::sync::Arc;
        let p = Arc::new(
            PhysAllocator::new(&[(0, 16 * MB)], 0)
                .unwrap()
                .with_cpu_caches(4, test_cpu),
        );
        // Bounded, so that pages wait for the main thread's frees in a
        // few batches at most.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<PageId>>(4);
        let workers: Vec<_> = (0..4)
            .map(|cpu| {
                let p = p.clone();
                let tx = tx.clone();
                std::thread::spawn(move || {
                    CPU.with(|c| c.set(cpu));
                    let mut seen = BTreeSet::new();
                    for round in 0..200 {
                        let got: Vec<_> = (0..(round % 97) + 1)
                            .map(|_| p.alloc_page(FreePool::Default).unwrap())
                            .collect();
                        for &id in &got {
                            assert!(p.page(id).ref_count() == 0);
                            seen.insert(id);
                        }
                        if round % 3 == 0 {
                            // Freed by the main thread, on its own cache.
                            tx.send(got).unwrap();
                        } else {
                            got.into_iter().for_each(|id| p.free_page(id));
                        }
                    }
                    seen.len()
                })
            })
            .collect();
        drop(tx);
        for batch in rx {
            batch.into_iter().for_each(|id| p.free_page(id));
        }
        for w in workers {
            assert!(w.join().unwrap() > 0);
        }
        assert_eq!(p.free_count(), 4096);
        assert_eq!(p.free_blocks(), [(0, 12)]);
    }

    #[test]
    fn fictitious_ranges() {
        let p = PhysAllocator::new(&[(0, MB)], 8).unwrap();
        assert_eq!(
            p.register_fictitious(0x8000, 1, MemAttr::WriteBack),
            Err(Errno::EINVAL)
        );
        let r = p
            .register_fictitious(0x1_0000_0000, 4, MemAttr::WriteBack)
            .unwrap();
        assert_eq!(
            p.register_fictitious(0x1_0000_3000, 1, MemAttr::WriteBack),
            Err(Errno::EEXIST)
        );
        let r2 = p
            .register_fictitious(0x2_0000_0000, 4, MemAttr::WriteCombining)
            .unwrap();
        assert_eq!(
            p.register_fictitious(0x3_0000_0000, 1, MemAttr::WriteBack),
            Err(Errno::ENOMEM)
        );
        let id = p.phys_to_page(0x1_0000_2000).unwrap();
        assert_eq!(id, r.first + 2);
        assert!(p.page(id).is_fictitious());
        assert_eq!(p.page(id).phys_addr(), 0x1_0000_2000);
        assert_eq!(p.page(r2.first).memattr(), MemAttr::WriteCombining);
        assert_eq!(p.phys_to_page(0x5000), Some(5));
        assert_eq!(p.page_id(p.page(7)), 7);
        assert_eq!(p.free_count(), 256, "fictitious pages are never free");
        assert!(p.page(id).try_xbusy());
        assert_eq!(p.unregister_fictitious(r), Err(Errno::EBUSY));
        p.page(id).xunbusy(&crate::page::SpinWait);
        p.unregister_fictitious(r).unwrap();
        assert_eq!(p.unregister_fictitious(r), Err(Errno::ENOENT));
        assert_eq!(p.phys_to_page(0x1_0000_2000), None);
        // The freed slots are reused.
        let r3 = p
            .register_fictitious(0x3_0000_0000, 4, MemAttr::WriteBack)
            .unwrap();
        assert_eq!(r3.first, r.first);
    }
}
