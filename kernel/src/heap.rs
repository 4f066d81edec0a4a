//! The kernel heap: a run of RAM taken at boot, before the VM's allocator
//! sees memory, and sized from the domain's memory map (as FreeBSD's
//! `vm_page_startup` steals the page array from physical memory), managed
//! by `kheap`: size classes served from one-page slabs through per-CPU
//! caches, and runs of pages for larger blocks (the page array among
//! them).
//!
//! # Size
//!
//! [`HEAP_BASE`] + [`HEAP_PER_PAGE`] per page of RAM (under PV, plus
//! [`PV_GRANT_PER_PAGE`]). The base holds what
//! does not grow with the domain (kernel stacks, processes, devices,
//! xenstore and console buffers, the CPUs' caches). The per-page part
//! holds what does: for each page of RAM, its page structure and that of
//! the fictitious page `mem` keeps beside it (a domain may map as much
//! foreign memory as it has RAM), and the bookkeeping of one page mapped
//! through gntdev at the peak of a mapping (see [`HEAP_PER_PAGE`]).
//!
//! # CPUs
//!
//! Each CPU allocates from its own caches, named by `percpu::id()`: the
//! boot CPU sets its `gs` first thing in `kernel_main`, before
//! [`init`] (and nothing allocates before [`init`]), and each other CPU
//! first thing in `smp::ap_main`, so the index is always set.
//!
//! # Locking
//!
//! | state | protection |
//! |---|---|
//! | the heap | `kheap`'s locks (a CPU's cache, a class, the pages), taken with interrupts off |

use core::alloc::{GlobalAlloc, Layout};
use core::fmt;
use core::ops::Range;
use core::ptr::NonNull;

use crate::arch::interrupts::without_interrupts;
use kheap::{ClassStats, Heap};

use crate::arch::percpu::{self, MAX_CPUS};
use crate::boot_info::BootInfo;
use crate::layout::PAGE_SIZE;
use crate::mem;

/// Heap for what does not grow with the domain: ten times the most any
/// scenario used (about 200 KiB beside the page array), so that a 32 MiB
/// domain keeps at least the 4 MiB its heap had when it was a static of
/// the image.
const HEAP_BASE: u64 = 2 << 20;

/// Heap per page of RAM, in bytes: what a domain needs to map as many
/// pages as it has RAM, its own or foreign ones.
/// - 88: two page structures (`vm::page::VmPage`, 32 bytes, and its
///   free-list link, 12), the RAM page's and its fictitious twin's, in
///   the page arrays (runs of pages: rounded up by less than a page);
/// - about 140: one page mapped through gntdev, at the peak of a mapping
///   (measured with 65536 pages, on the sharer and on the mapper alike,
///   with the linked-list heap before this one): the pmap's mapping
///   list, the object's page index while it grows, gntdev's grant
///   records and, on the mapper, the batched map's request, op and
///   result arrays (freed before the pages are entered).
///
/// 228 bytes; the slab heap rounds small blocks up to their class (the
/// mapping lists' B-tree nodes, about 410 bytes, take 448: some 10%) and
/// keeps a side table of 0.7% of the heap, so about 250: rounded up to
/// 288 for the rest of the rounding and the slabs' partly used pages.
const HEAP_PER_PAGE: u64 = 288;

/// Heap per page of RAM beside [`HEAP_PER_PAGE`] under PV, where each
/// grant a process maps is an entry Xen writes in its page table
/// (`crate::arch::pv_grant`), with records of the kernel's own: the hole
/// frame's binding, the standing entry's record and handle, and at the
/// peak of a populate the queued op and the hypercall's op. Measured: a
/// PV mapper of 65536 grants peaked at 27129 KiB of heap, 11370 KiB
/// (178 bytes a page) above a PVH one (15759 KiB), which its 288 bytes
/// a page would not have held; rounded up as [`HEAP_PER_PAGE`] is.
const PV_GRANT_PER_PAGE: u64 = 224;

/// The global allocator: `kheap` on the running CPU's caches, with
/// interrupts off while its locks are held, so that an interrupt taken in
/// the middle of an allocation can never spin on a lock its own vCPU
/// holds.
struct KernelHeap(Heap<MAX_CPUS>);

// SAFETY: `kheap::Heap` hands out disjoint blocks of its region, each at
// least `layout.size()` bytes with `layout.align()`, and takes back only
// what it handed out (from any CPU); its locks serialise the shared state.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        without_interrupts(|| self.0.alloc(percpu::id(), layout))
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ptr.is_null() {
            return;
        }
        // SAFETY: the caller passes a block `alloc` returned for `layout`
        // (`GlobalAlloc::dealloc`'s contract).
        without_interrupts(|| unsafe { self.0.dealloc(percpu::id(), ptr, layout) })
    }
}

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(Heap::new());

/// The heap's size for the domain of `boot`: see the module's doc.
fn size_for(boot: &BootInfo) -> u64 {
    let pages = boot.ram_bytes() / PAGE_SIZE;
    let per_page = if crate::arch::is_pv() {
        HEAP_PER_PAGE + PV_GRANT_PER_PAGE
    } else {
        HEAP_PER_PAGE
    };
    (HEAP_BASE + pages * per_page).next_multiple_of(PAGE_SIZE)
}

/// Takes the heap's run from the RAM of `boot`'s memory map and hands it
/// to the allocator; returns it, for `mem` to leave out of the VM. Called
/// once, before anything allocates.
pub fn init(boot: &BootInfo) -> Range<u64> {
    let size = size_for(boot);
    let Some(run) = mem::steal(boot, size) else {
        crate::fatal(format_args!("no {size} bytes of RAM for the kernel heap"));
    };
    let Some(base) = NonNull::new(run.start as *mut u8) else {
        crate::fatal(format_args!("kernel heap at address 0"));
    };
    // SAFETY: `mem::steal` returns identity-mapped RAM that holds neither
    // the image nor a module, and `mem::init` leaves it out of the VM, so
    // the allocator alone owns it from now on; called once, on the boot
    // CPU, before any other runs.
    if let Err(e) = unsafe { HEAP.0.init(base, (run.end - run.start) as usize) } {
        crate::fatal(format_args!("kernel heap of {size} bytes: {e:?}"));
    }
    run
}

/// Heap kept for the kernel's own small allocations (stacks, buffers,
/// records): bookkeeping that user space can grow without bound (the
/// pmap's mapping lists, map entries) stops growing below it
/// ([`has_room_for_user`]), so that a process that maps without end is
/// refused (`mmap` fails with `ENOMEM`, or its fault kills it) before the
/// kernel runs out.
const RESERVE: usize = 512 * 1024;

/// Whether the heap has room beyond [`RESERVE`] for bookkeeping that a
/// process asks for (free pages, and free objects in slabs and in the
/// CPUs' caches).
pub fn has_room_for_user() -> bool {
    // Interrupts off: the count takes each CPU's cache lock, which an
    // allocation by an interrupt handler on this CPU would wait for.
    without_interrupts(|| HEAP.0.free() > RESERVE)
}

/// The heap's size and the most bytes it had in use (as `kheap` samples
/// it: blocks at their class's size, or their pages).
pub fn usage() -> (usize, usize) {
    (HEAP.0.size(), HEAP.0.peak())
}

/// Bytes of the heap handed out now (blocks at their class's size).
pub fn in_use() -> usize {
    // As in `has_room_for_user`.
    without_interrupts(|| HEAP.0.in_use())
}

/// The heap's size classes now, for a report: `size:in_use/cached/slabs`
/// for each class with slabs.
pub fn classes() -> Classes {
    Classes(without_interrupts(|| HEAP.0.class_stats()))
}

/// The counts of the heap's size classes ([`classes`]).
pub struct Classes([ClassStats; kheap::COUNT]);

impl fmt::Display for Classes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for s in self.0.iter().filter(|s| s.slabs > 0) {
            write!(f, "{sep}{}:{}/{}/{}", s.size, s.in_use, s.cached, s.slabs)?;
            sep = " ";
        }
        Ok(())
    }
}
