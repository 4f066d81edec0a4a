//! Machine-independent virtual memory, after FreeBSD's `sys/vm`.
//!
//! The crate is portable and safe: it never touches memory itself. Page
//! contents are reached through [`domain::PhysAccess`] (the kernel implements
//! it with its direct map, host tests with a `Vec`), and sleeping on a busy
//! page goes through [`page::BusyWait`].
//!
//! | module | FreeBSD | what |
//! |---|---|---|
//! | [`phys`] | `vm_phys.c` | buddy allocator over the boot memory map, fictitious ranges |
//! | [`page`] | `vm_page.h` | `vm_page`: busy lock, `ref_count`, valid/dirty bits |
//! | [`object`] | `vm_object.c` | objects: page index, shadow chains, collapse |
//! | [`owner`] | (`vm_page.object`) | the object holding each page, for reclaim |
//! | [`pager`] | `*_pager.c` | default, phys, device and managed device pagers |
//! | [`grab`] | `vm_page.c` | `vm_page_grab`, `vm_page_grab_valid`, `vm_page_busy_acquire` |
//! | [`map`] | `vm_map.c` | address maps: entries, clipping, protection, lookup |
//! | [`fault`] | `vm_fault.c` | the fault handler: fast, populate and full paths, copy-on-write |
//! | [`pmap`] | `pmap.h` | the page-table interface, and a software pmap for tests |
//! | [`loan`] | (NetBSD `uvm_loan.c`) | page loaning: lend resident pages to the kernel, the zero page |
//! | [`hold`] | `vm_fault.c` | `vm_fault_quick_hold_pages`: wire a range's pages to share them |
//! | [`reclaim`] | `vm_page.c` | contiguous runs by moving the pages in the way (`vm_page_reclaim_contig`) |
//! | [`kern`] | `vm_kern.c` | contiguous kernel memory with a memory attribute |
//! | [`meter`] | `vm_meter.c` | VM counters |
//! | [`domain`] | `vm_domain` | the page array, allocator, counters and hooks together |
//! | [`extent`] | (`vmem`, simplified) | first-fit extent allocator over a `u64` range |
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod domain;
pub mod errno;
pub mod extent;
pub mod fault;
pub mod grab;
pub mod hold;
pub mod kern;
pub mod loan;
pub mod map;
pub mod meter;
pub mod object;
pub mod owner;
pub mod page;
pub mod pager;
pub mod phys;
pub mod pmap;
pub mod reclaim;
mod sync;
#[cfg(all(test, not(loom)))]
mod testutil;

pub use errno::Errno;

/// log2 of the page size.
pub const PAGE_SHIFT: u32 = 12;
/// The page size in bytes (4 KiB).
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// log2 of the superpage size: the span of one 2 MiB page-directory
/// entry (`PDRSHIFT`, FreeBSD's `pagesizes[1]`, `psind` 1).
pub const SUPERPAGE_SHIFT: u32 = 21;
/// The superpage size in bytes (2 MiB).
pub const SUPERPAGE_SIZE: u64 = 1 << SUPERPAGE_SHIFT;
/// Pages in a superpage (512, `NPTEPG`).
pub const SUPERPAGE_PAGES: u64 = SUPERPAGE_SIZE / PAGE_SIZE;

bitflags::bitflags! {
    /// Access rights (`vm_prot_t`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Prot: u8 {
        /// `VM_PROT_READ`.
        const READ = 1;
        /// `VM_PROT_WRITE`.
        const WRITE = 2;
        /// `VM_PROT_EXECUTE`.
        const EXECUTE = 4;
    }
}
