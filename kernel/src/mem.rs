//! Physical memory: the RAM of the memory map, less the kernel image, the
//! boot modules (xl's `ramdisk=`, see [`crate::proc::programs`]) and the
//! first megabyte, handed to the VM's buddy allocator
//! (`vm::phys::PhysAllocator`) inside the kernel's `vm::domain::VmDomain`.
//! Pages are reached through the boot identity map (all RAM is below 4 GiB
//! in the domains we run), which is also the kernel's direct map.

use alloc::sync::Arc;

use spin::Once;
use vm::domain::{PhysAccess, VmDomain};
use vm::page::{BusyWait, PageId, VmPage};
use vm::phys::{FreePool, PhysAllocator};
use xen::abi::start_info::MEMMAP_TYPE_RAM;

use crate::boot_info::BootInfo;
use crate::layout::PAGE_SIZE;

unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// RAM below this is left alone (real-mode leftovers, the zero page).
const LOW_RESERVED: u64 = 1 << 20;
/// Highest RAM address the identity map reaches.
const MAPPED_END: u64 = 1 << 32;
/// Most RAM segments kept from the memory map.
const MAX_SEGMENTS: usize = 16;
/// Fictitious pages the page array has room for: the frames of foreign
/// grants mapped through gntdev at one time (16 MiB; the page array lives
/// in the fixed kernel heap until the VM provides kernel memory).
const FICTITIOUS_PAGES: u32 = 4096;

static DOMAIN: Once<Arc<VmDomain>> = Once::new();

/// Page contents through the identity map.
struct DirectMap;

impl PhysAccess for DirectMap {
    fn zero_page(&self, pa: u64) {
        // SAFETY: the VM passes the address of a page of RAM below 4 GiB
        // (identity-mapped) that it owns while it asks for this.
        unsafe { core::ptr::write_bytes(pa as *mut u8, 0, PAGE_SIZE as usize) };
    }

    fn copy_page(&self, src: u64, dst: u64) {
        // SAFETY: as for `zero_page`; two distinct whole pages.
        unsafe {
            core::ptr::copy_nonoverlapping(src as *const u8, dst as *mut u8, PAGE_SIZE as usize)
        };
    }
}

/// Waiting for a busy page (`vm_page_sleep_if_busy`) on one vCPU without
/// kernel preemption: the holder can only be a thread that is not
/// running (it blocked, or yielded, while holding the busy lock), so
/// spinning (`vm::page::SpinWait`) would never let it run to release the
/// page. The waiter yields instead, once the scheduler runs; before that
/// there is one thread and nothing can hold a page busy across a switch.
/// The VM retries after every return, so no queue is needed, and
/// `wakeup` has nothing to do.
struct YieldWait;

impl BusyWait for YieldWait {
    fn sleep_if(&self, _page: &VmPage, cond: &mut dyn FnMut() -> bool) {
        if !cond() {
            return;
        }
        if crate::sched::started() {
            crate::sched::yield_now();
        } else {
            core::hint::spin_loop();
        }
    }

    fn wakeup(&self, _page: &VmPage) {}
}

/// A page of RAM owned by its holder until [`free_page`].
#[derive(Debug)]
pub struct Frame(PageId);

impl Frame {
    /// Its guest-physical address.
    pub fn gpa(&self) -> u64 {
        phys().page(self.0).phys_addr()
    }

    /// Its guest frame number.
    pub fn gfn(&self) -> u64 {
        self.gpa() / PAGE_SIZE
    }

    /// Its 1024 words, through the identity map.
    pub fn words(&self) -> &'static mut [u32; 1024] {
        // SAFETY: the frame is RAM below 4 GiB (identity-mapped), owned by
        // this `Frame` alone until freed, and page-aligned.
        unsafe { &mut *(self.gpa() as *mut [u32; 1024]) }
    }
}

/// Builds the allocator from the RAM segments of `boot`'s memory map.
pub fn init(boot: &BootInfo) {
    // Linker-script symbols: only their addresses are used.
    let (img_start, img_end) = (
        (&raw const __image_start) as u64,
        (&raw const __image_end) as u64,
    );
    let mut segs = [(0u64, 0u64); MAX_SEGMENTS];
    let mut n = 0;
    for e in boot.memmap().iter().filter(|e| e.kind == MEMMAP_TYPE_RAM) {
        let (start, end) = (e.addr.max(LOW_RESERVED), (e.addr + e.size).min(MAPPED_END));
        // Cut the image out of the segment: what lies on either side stays.
        for (s, t) in [(start, end.min(img_start)), (start.max(img_end), end)] {
            if s < t && n < MAX_SEGMENTS {
                segs[n] = (s, t);
                n += 1;
            }
        }
    }
    let phys =
        PhysAllocator::new(&segs[..n], FICTITIOUS_PAGES).expect("memory map segments are sane");
    // The modules stay where Xen put them, for the kernel's life.
    for m in boot.modules() {
        let start = m.paddr & !(PAGE_SIZE - 1);
        let end = (m.paddr + m.size).next_multiple_of(PAGE_SIZE);
        if phys.reserve_range(start, end).is_err() {
            log::warn!("module at {:#x} not in allocatable RAM", m.paddr);
        }
    }
    DOMAIN.call_once(|| {
        Arc::new(VmDomain::new(
            phys,
            Arc::new(DirectMap),
            Arc::new(YieldWait),
        ))
    });
}

/// The VM domain (page array, allocator, counters); [`init`] must have run.
pub fn domain() -> &'static Arc<VmDomain> {
    DOMAIN.get().expect("mem::init ran")
}

/// The allocator; [`init`] must have run.
pub fn phys() -> &'static PhysAllocator {
    &domain().phys
}

/// A zeroed page, or `None` when memory is exhausted.
pub fn alloc_page() -> Option<Frame> {
    let f = Frame(phys().alloc_page(FreePool::Default)?);
    f.words().fill(0);
    Some(f)
}

/// Returns a page to the allocator.
pub fn free_page(frame: Frame) {
    phys().free_page(frame.0);
}

/// Free pages now.
pub fn free_pages() -> u64 {
    phys().free_count()
}
