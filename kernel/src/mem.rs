//! Physical memory: the RAM of the memory map, less the kernel image, the
//! kernel heap ([`steal`]), the boot modules (xl's `ramdisk=`, see
//! [`crate::proc::programs`]) and the first megabyte, handed to the VM's
//! buddy allocator (`vm::phys::PhysAllocator`) inside the kernel's
//! `vm::domain::VmDomain`. Pages are reached through the boot identity map
//! (all RAM is below 4 GiB in the domains we run), which is also the
//! kernel's direct map.
//!
//! The page array also has a fictitious page for each page of RAM: the
//! frames of foreign grants that gntdev can map at one time. A domain may
//! thus map as much foreign memory as it has RAM, and the heap that holds
//! the array is sized to match (`crate::heap`).

use alloc::sync::Arc;
use core::ops::Range;

use spin::Once;
use vm::domain::{PageMappings, PhysAccess, VmDomain};
use vm::page::{BusyWait, PageId};
use vm::phys::{FreePool, PhysAllocator};
use xen::abi::start_info::{HvmModlistEntry, MEMMAP_TYPE_RAM};

use crate::arch::percpu::{self, MAX_CPUS};
use crate::boot_info::BootInfo;
use crate::layout::PAGE_SIZE;
use crate::shared_page::{SharedPage, WORDS};

unsafe extern "C" {
    static __image_start: u8;
    static __text_end: u8;
    static __image_end: u8;
}

/// RAM below this is left alone (real-mode leftovers, the zero page).
const LOW_RESERVED: u64 = 1 << 20;
/// Highest RAM address the identity map reaches.
const MAPPED_END: u64 = 1 << 32;
/// Most RAM segments kept from the memory map.
const MAX_SEGMENTS: usize = 16;

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
        let copy = |src: *const u8| {
            // SAFETY: as for `zero_page`; two distinct whole pages.
            unsafe { core::ptr::copy_nonoverlapping(src, dst as *mut u8, PAGE_SIZE as usize) };
        };
        // PV: the source of a private mapping's copy may be a hole frame
        // bound to a foreign grant, which no kernel mapping holds: that
        // grant is mapped for the copy.
        if crate::arch::pv_grant::access(src, |p| copy(p)).is_err() {
            // The peer took its grant back: the copy reads as zeros.
            self.zero_page(dst);
        }
    }
}

/// Every mapping of a page, in every address space: the pmap's mapping
/// lists span them all, so reclaim can move mapped pages.
struct AllMappings;

impl PageMappings for AllMappings {
    fn remove_all(&self, page: PageId) {
        crate::arch::pmap::remove_all(page);
    }
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

    /// Its words, through the identity map, for as long as the frame is
    /// borrowed. Volatile accessors, not a reference: a frame granted to
    /// a peer may be written by it at any time.
    pub fn words(&self) -> SharedPage<'_> {
        // SAFETY: the frame is RAM below 4 GiB (identity-mapped) and
        // page-aligned; it is freed only by `free_page`, which takes the
        // `Frame` this borrows.
        unsafe { SharedPage::new(self.gpa()) }
    }
}

/// The kernel image's pages, and under PV the boot region after it.
fn image(boot: &BootInfo) -> Range<u64> {
    // Linker-script symbols: only their addresses are used.
    let end = ((&raw const __image_end) as u64).max(boot.boot_region_end());
    (&raw const __image_start) as u64..end
}

/// The kernel's code: its text section's addresses.
pub fn text() -> Range<u64> {
    // Linker-script symbols: only their addresses are used.
    (&raw const __image_start) as u64..(&raw const __text_end) as u64
}

/// The pages of a boot module.
fn module_pages(m: &HvmModlistEntry) -> Range<u64> {
    m.paddr & !(PAGE_SIZE - 1)..(m.paddr + m.size).next_multiple_of(PAGE_SIZE)
}

/// The RAM entries of `boot`'s memory map that the VM may use: above
/// [`LOW_RESERVED`], below [`MAPPED_END`], whole pages.
fn usable_ram(boot: &BootInfo) -> impl Iterator<Item = Range<u64>> + '_ {
    boot.memmap()
        .iter()
        .filter(|e| e.kind == MEMMAP_TYPE_RAM)
        .map(|e| {
            let start = e.addr.max(LOW_RESERVED).next_multiple_of(PAGE_SIZE);
            let end = (e.addr + e.size).min(MAPPED_END) & !(PAGE_SIZE - 1);
            start..end
        })
        .filter(|r| r.start < r.end)
}

/// The highest run of `bytes` (a multiple of the page size) of usable RAM
/// that holds neither the image nor a module, for memory needed before
/// the allocator exists (as FreeBSD's `vm_page_startup` takes the page
/// array from the end of a `phys_avail` segment); [`init`] must be told
/// to leave it out.
pub fn steal(boot: &BootInfo, bytes: u64) -> Option<Range<u64>> {
    // The lowest start of what overlaps run `r`.
    let busy = |r: &Range<u64>| {
        core::iter::once(image(boot))
            .chain(boot.modules().iter().map(module_pages))
            .filter(|b| b.start < r.end && r.start < b.end)
            .map(|b| b.start)
            .min()
    };
    let mut best: Option<Range<u64>> = None;
    for ram in usable_ram(boot) {
        let mut end = ram.end;
        while end >= ram.start + bytes {
            let run = end - bytes..end;
            match busy(&run) {
                // Below everything in the way: anything between is too
                // short, as the run spans it.
                Some(b) => end = b,
                None => {
                    if best.as_ref().is_none_or(|r| r.start < run.start) {
                        best = Some(run);
                    }
                    break;
                }
            }
        }
    }
    best
}

/// Builds the allocator from the RAM segments of `boot`'s memory map,
/// less the image and `heap` (from [`steal`]), with a fictitious page for
/// each page of RAM; waits for busy pages go to `wait`.
pub fn init(boot: &BootInfo, heap: Range<u64>, wait: Arc<dyn BusyWait>) {
    let mut segs = [(0u64, 0u64); MAX_SEGMENTS];
    let mut n = 0;
    let mut cuts = [image(boot), heap];
    cuts.sort_unstable_by_key(|c| c.start);
    for ram in usable_ram(boot) {
        // Cut the image and the heap out: what lies around them stays.
        let mut from = ram.start;
        for cut in cuts.iter().chain([&(ram.end..u64::MAX)]) {
            let to = cut.start.max(from).min(ram.end);
            if from < to && n < MAX_SEGMENTS {
                segs[n] = (from, to);
                n += 1;
            }
            from = from.max(cut.end);
        }
    }
    let fictitious = u32::try_from(boot.ram_bytes() / PAGE_SIZE).unwrap_or(u32::MAX);
    // A page cache per possible CPU, found through `gs` (set up before this
    // runs on the boot CPU, and first thing on the others).
    let phys = PhysAllocator::new(&segs[..n], fictitious)
        .expect("memory map segments are sane")
        .with_cpu_caches(MAX_CPUS, percpu::id);
    // The modules stay where Xen put them, for the kernel's life.
    let kept = image(boot);
    for m in boot.modules() {
        let pages = module_pages(m);
        if kept.start <= pages.start && pages.end <= kept.end {
            continue;
        }
        if phys.reserve_range(pages.start, pages.end).is_err() {
            log::warn!("module at {:#x} not in allocatable RAM", m.paddr);
        }
    }
    DOMAIN.call_once(|| Arc::new(VmDomain::new(phys, Arc::new(DirectMap), wait)));
    domain().set_mappings(Arc::new(AllMappings));
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
    let words = f.words();
    for k in 0..WORDS {
        words.write(k, 0);
    }
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
