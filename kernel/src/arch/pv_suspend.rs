//! A PV domain's part in `xl save`, `xl restore` and `xl save -c`: what
//! the toolstack's PV save and restore (libxc's `xg_sr_save_x86_pv.c`,
//! `xg_sr_restore_x86_pv.c`) need of the guest beyond what a PVH guest
//! does (`crate::suspend` runs the steps; Linux's `xen_pv_pre_suspend`
//! and `xen_pv_post_suspend` are the same idea).
//!
//! - **The p2m tree.** The toolstack finds the p2m list through the
//!   shared info page (`arch.pfn_to_mfn_frame_list_list`, `arch.max_pfn`)
//!   when the save starts, before it asks the domain to suspend, so the
//!   tree is published at boot and again after each move, when every
//!   machine frame has changed ([`publish_p2m`]). Restoring, the
//!   toolstack writes the new machine frames into the list itself.
//! - **Page tables of RAM only.** The toolstack saves each page table
//!   with its entries' machine frames made pfns and refuses an entry
//!   that maps no frame of the domain's RAM: the Xen frames the kernel
//!   maps (shared info, grant table; `super::pv::map_frame`) go before
//!   the suspend ([`prepare`]) and come back after it.
//! - **The start info.** The toolstack finds it through vCPU 0's `rdx` at
//!   the suspend hypercall (its machine frame, [`prepare`]'s result) and
//!   wants its xenstore and console ring frames as pfns; restoring, it
//!   writes the new domain's ring frames, ports and shared info address
//!   there ([`start_info_now`]).
//!
//! # Locking
//! `TREE` (i) is set once at boot; the tree's pages and the start info
//! are written at boot and, after that, only by vCPU 0 with the other
//! vCPUs parked (`smp::with_others_parked`).

use core::ptr::addr_of_mut;
use core::sync::atomic::Ordering;

use spin::Once;
use xen::abi::pv::StartInfo;
use xen::abi::shared_info::ArchSharedInfo;
use xen::hypercall::XenErrno;

use super::pmap::PAGE;
use super::pv;

/// (i) The p2m tree's pages, one run from the kernel heap: the frame
/// list list's page, then the frame list's pages (as many as the list's
/// length needs).
static TREE: Once<u64> = Once::new();

impl core::fmt::Display for P2mError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooLarge(n) => write!(f, "a p2m list of {n} entries needs a larger tree"),
            Self::NoMemory => f.write_str("no memory for the p2m tree"),
        }
    }
}

/// Machine frames one page of the tree holds.
const PER_PAGE: u64 = PAGE / 8;

/// Why the p2m tree could not be published.
#[derive(Debug)]
pub enum P2mError {
    /// The list needs more than one frame list list page.
    TooLarge(u64),
    /// No memory for the tree's pages.
    NoMemory,
}

/// Writes the p2m tree of the current machine frames (the frame list:
/// the list's pages; the frame list list: the frame list's pages) and
/// publishes it, with the list's length, in the shared info's `arch`.
/// The first call (at boot) takes the tree's pages from the kernel heap;
/// later ones (after a move, the other vCPUs parked) allocate nothing.
pub fn publish_p2m(arch: &ArchSharedInfo) -> Result<(), P2mError> {
    let (list, entries) = pv::p2m_list();
    let leaves = entries.div_ceil(PER_PAGE);
    let mids = leaves.div_ceil(PER_PAGE);
    if mids > PER_PAGE {
        return Err(P2mError::TooLarge(entries));
    }
    let &top = TREE.try_call_once(|| {
        let layout =
            core::alloc::Layout::from_size_align(((1 + mids) * PAGE) as usize, PAGE as usize)
                .map_err(|_| P2mError::NoMemory)?;
        // SAFETY: the layout has a nonzero size.
        let at = unsafe { alloc::alloc::alloc_zeroed(layout) };
        if at.is_null() {
            return Err(P2mError::NoMemory);
        }
        Ok(at as u64)
    })?;
    let mid = top + PAGE;
    for k in 0..leaves {
        // SAFETY: the frame list's `mids` pages follow the top page
        // in the run `TREE` took for good; `k < leaves <= mids * 512`.
        unsafe {
            (mid as *mut u64)
                .add(k as usize)
                .write_volatile(pv::mfn(list / PAGE + k))
        };
    }
    for j in 0..mids {
        // SAFETY: the top page is the run's first; `j < mids <= 512`.
        unsafe {
            (top as *mut u64)
                .add(j as usize)
                .write_volatile(pv::mfn(mid / PAGE + j))
        };
    }
    arch.max_pfn.store(entries, Ordering::Release);
    arch.pfn_to_mfn_frame_list_list
        .store(pv::mfn(top / PAGE), Ordering::Release);
    Ok(())
}

/// The start info page.
fn start_info() -> *mut StartInfo {
    pv::start_info_address() as *mut StartInfo
}

/// Rewrites the start info's ring frames with `f` (machine frame to pfn,
/// or back).
fn convert_rings(f: fn(u64) -> u64) {
    let si = start_info();
    // SAFETY: the start info page lies in the boot region, kept from the
    // VM and mapped writable; only vCPU 0 touches it, with the others
    // parked (or at boot).
    unsafe {
        for field in [
            addr_of_mut!((*si).store_mfn),
            addr_of_mut!((*si).console_mfn),
        ] {
            field.write_volatile(f(field.read_volatile()));
        }
    }
}

/// Before the suspend hypercall, on vCPU 0 with the others parked and
/// nothing reading the shared info or the grant table: the start info's
/// ring frames made pfns and the Xen frames unmapped. Returns the start
/// info's machine frame, for the hypercall's `rdx`. On an error nothing
/// is changed.
pub fn prepare() -> Result<u64, XenErrno> {
    pv::unmap_xen_frames().inspect_err(|_| {
        let _ = pv::remap_xen_frames();
    })?;
    convert_rings(pv::pfn);
    Ok(pv::mfn(pv::start_info_address() / PAGE))
}

/// After a suspend that was cancelled or refused (the same domain runs
/// on): undoes [`prepare`].
pub fn resume_same() -> Result<(), XenErrno> {
    convert_rings(pv::mfn);
    pv::remap_xen_frames()
}

/// What the start info says now: after a move, the new domain's.
#[derive(Clone, Copy, Debug)]
pub struct StartInfoNow {
    /// Machine frame of the shared info page.
    pub shared_info_mfn: u64,
    /// Port of the xenstore ring.
    pub store_evtchn: u32,
    /// Port of the console ring.
    pub console_evtchn: u32,
}

/// Reads the start info page as the toolstack left it.
pub fn start_info_now() -> StartInfoNow {
    let si = start_info();
    // SAFETY: as in `convert_rings`; the fields are read one by one,
    // volatile, as the toolstack writes the page.
    unsafe {
        StartInfoNow {
            shared_info_mfn: addr_of_mut!((*si).shared_info).read_volatile() / PAGE,
            store_evtchn: addr_of_mut!((*si).store_evtchn).read_volatile(),
            console_evtchn: addr_of_mut!((*si).console_evtchn).read_volatile(),
        }
    }
}
