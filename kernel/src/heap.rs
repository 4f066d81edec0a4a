//! The kernel heap: a fixed region of the image, managed by a linked-list
//! allocator, for the kernel's small and long-lived allocations.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::addr_of_mut;

use linked_list_allocator::LockedHeap;
use x86_64::instructions::interrupts::without_interrupts;

/// Size of the heap region.
const HEAP_SIZE: usize = 4 * 1024 * 1024;

#[repr(align(4096))]
#[expect(
    dead_code,
    reason = "only the allocator uses the bytes, through a raw pointer"
)]
struct HeapSpace([u8; HEAP_SIZE]);

/// The heap's memory; only the allocator touches it, after [`init`].
static mut HEAP_SPACE: HeapSpace = HeapSpace([0; HEAP_SIZE]);

/// The global allocator: the linked-list heap, with interrupts off while
/// its spin lock is held, so that an interrupt taken in the middle of an
/// allocation can never spin on the lock its own vCPU holds.
struct KernelHeap(LockedHeap);

// SAFETY: forwards to `LockedHeap`, a correct `GlobalAlloc`; disabling
// interrupts around each call changes nothing about the memory returned.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        without_interrupts(|| unsafe { self.0.alloc(layout) })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc` is passed on unchanged.
        without_interrupts(|| unsafe { self.0.dealloc(ptr, layout) })
    }
}

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(LockedHeap::empty());

/// Hands the heap region to the allocator. Called once, early in boot.
pub fn init() {
    // SAFETY: called once before any allocation; the region is a static
    // that nothing else names, so the allocator owns it from now on.
    unsafe {
        HEAP.0
            .lock()
            .init(addr_of_mut!(HEAP_SPACE).cast(), HEAP_SIZE)
    };
}
