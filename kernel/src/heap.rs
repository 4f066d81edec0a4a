//! The kernel heap: a run of RAM taken at boot, before the VM's allocator
//! sees memory, and sized from the domain's memory map (as FreeBSD's
//! `vm_page_startup` steals the page array from physical memory), managed
//! by a linked-list allocator.
//!
//! # Size
//!
//! [`HEAP_BASE`] + [`HEAP_PER_PAGE`] per page of RAM. The base holds what
//! does not grow with the domain (kernel stacks, processes, devices,
//! xenstore and console buffers). The per-page part holds what does:
//! for each page of RAM, its page structure and that of the fictitious
//! page `mem` keeps beside it (a domain may map as much foreign memory as
//! it has RAM), and the bookkeeping of one page mapped through gntdev at
//! the peak of a mapping (see [`HEAP_PER_PAGE`]).
//!
//! # Locking
//!
//! | state | protection |
//! |---|---|
//! | the hole list and the bytes in use | (h) the heap's spin lock, taken with interrupts off |
//! | the peak of the bytes in use | (a) atomic, written under (h) |

use core::alloc::{GlobalAlloc, Layout};
use core::ops::Range;
use core::ptr::{NonNull, null_mut};
use core::sync::atomic::{AtomicUsize, Ordering};

use linked_list_allocator::Heap;
use spin::Mutex;
use x86_64::instructions::interrupts::without_interrupts;

use crate::boot_info::BootInfo;
use crate::layout::PAGE_SIZE;
use crate::mem;

/// Heap for what does not grow with the domain: ten times the most any
/// scenario used (about 200 KiB beside the page array), so that a 32 MiB
/// domain keeps the 4 MiB its heap had when it was a static of the image.
const HEAP_BASE: u64 = 2 << 20;

/// Heap per page of RAM, in bytes: what a domain needs to map as many
/// pages as it has RAM, its own or foreign ones.
/// - 88: two page structures (`vm::page::VmPage`, 32 bytes, and its
///   free-list link, 12), the RAM page's and its fictitious twin's;
/// - about 140: one page mapped through gntdev, at the peak of a mapping
///   (measured with 65536 pages, on the sharer and on the mapper alike):
///   the pmap's mapping list, the object's page index while it grows,
///   gntdev's grant records and, on the mapper, the batched map's
///   request, op and result arrays (freed before the pages are entered).
///
/// 228 bytes, rounded up for the allocator's rounding and fragmentation.
const HEAP_PER_PAGE: u64 = 256;

/// The global allocator: the linked-list heap, with interrupts off while
/// its spin lock is held, so that an interrupt taken in the middle of an
/// allocation can never spin on the lock its own vCPU holds.
struct KernelHeap {
    /// (h) the allocator.
    heap: Mutex<Heap>,
    /// (a) the most bytes in use so far.
    peak: AtomicUsize,
}

// SAFETY: `Heap` hands out disjoint blocks of its region, each at least
// `layout.size()` bytes with `layout.align()`, and takes back only what
// it handed out; the lock serialises every change of its hole list.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        without_interrupts(|| {
            let mut h = self.heap.lock();
            match h.allocate_first_fit(layout) {
                Ok(p) => {
                    self.peak.fetch_max(h.used(), Ordering::Relaxed);
                    p.as_ptr()
                }
                Err(()) => null_mut(),
            }
        })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(p) = NonNull::new(ptr) else {
            return;
        };
        // SAFETY: the caller passes a block `alloc` returned for `layout`
        // (`GlobalAlloc::dealloc`'s contract).
        without_interrupts(|| unsafe { self.heap.lock().deallocate(p, layout) })
    }
}

#[global_allocator]
static HEAP: KernelHeap = KernelHeap {
    heap: Mutex::new(Heap::empty()),
    peak: AtomicUsize::new(0),
};

/// The heap's size for the domain of `boot`: see the module's doc.
fn size_for(boot: &BootInfo) -> u64 {
    let pages = boot.ram_bytes() / PAGE_SIZE;
    (HEAP_BASE + pages * HEAP_PER_PAGE).next_multiple_of(PAGE_SIZE)
}

/// Takes the heap's run from the RAM of `boot`'s memory map and hands it
/// to the allocator; returns it, for `mem` to leave out of the VM. Called
/// once, before anything allocates.
pub fn init(boot: &BootInfo) -> Range<u64> {
    let size = size_for(boot);
    let Some(run) = mem::steal(boot, size) else {
        crate::fatal(format_args!("no {size} bytes of RAM for the kernel heap"));
    };
    // SAFETY: `mem::steal` returns identity-mapped RAM that holds neither
    // the image nor a module, and `mem::init` leaves it out of the VM, so
    // the allocator alone owns it from now on; called once.
    unsafe {
        HEAP.heap
            .lock()
            .init(run.start as *mut u8, (run.end - run.start) as usize)
    };
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
/// process asks for.
pub fn has_room_for_user() -> bool {
    without_interrupts(|| HEAP.heap.lock().free()) > RESERVE
}

/// The heap's size and the most bytes it ever had in use.
pub fn usage() -> (usize, usize) {
    let size = without_interrupts(|| HEAP.heap.lock().size());
    (size, HEAP.peak.load(Ordering::Relaxed))
}
