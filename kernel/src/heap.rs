//! The kernel heap: a fixed region of the image, managed by a linked-list
//! allocator, for the kernel's small and long-lived allocations.

use core::ptr::addr_of_mut;

use linked_list_allocator::LockedHeap;

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

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Hands the heap region to the allocator. Called once, early in boot.
pub fn init() {
    // SAFETY: called once before any allocation; the region is a static
    // that nothing else names, so the allocator owns it from now on.
    unsafe { HEAP.lock().init(addr_of_mut!(HEAP_SPACE).cast(), HEAP_SIZE) };
}
