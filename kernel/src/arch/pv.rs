//! The 64-bit PV mechanics (`shared/notes/pv.md`): the ELF notes that
//! let `xl create` with `type="pv"` load the same image, the entry Xen
//! calls in long mode with `rsi` naming `start_info`, and what the kernel
//! needs before its common boot: the virtual IDT and the event, failsafe
//! and syscall callbacks ([`init_traps`]; the stubs are `trap`'s and
//! `syscall`'s), the start info checked and kept ([`StartOfDay`]), and
//! every page of RAM mapped at its own pseudo-physical address as under
//! PVH, by batched `mmu_update` ([`xen::pv::TableBuilder`]). Then, for the
//! rest of the kernel: the p2m and m2p ([`mfn`], [`pfn`]), the pmap's
//! per-CPU queue of page-table writes ([`queue_entry`], [`flush_entries`],
//! batches: [`set_deferring`]), table views ([`queue_table_view`],
//! [`set_data_view`]), the kernel's own mappings above the direct map,
//! and a secondary vCPU's first state ([`ap_context`]).
//!
//! # Events
//! Xen masks events when it enters a callback or a trap gate, and the
//! return path (`trap_return`) goes back through the `iret` hypercall,
//! which restores the mask from the frame's IF (set by Xen from the mask
//! at entry) as it returns: an event that comes between the unmask and
//! the return is delivered after it, on the returned-to frame, so no
//! critical-region fixup as in mini-os is needed (one hypercall per
//! return is the price).
//!
//! # Memory
//! Xen loads the image at its link address (the notes say virtual base
//! 0), so pseudo-physical and virtual addresses of the boot region agree,
//! and maps that region (image, ramdisk, p2m list, start info, xenstore
//! and console rings, boot page tables, stack, 512 KiB or more of
//! padding). The boot page tables stay the kernel's: the rest of RAM is
//! added to them with L1 tables taken from the frames right after the
//! boot region. All of that, from the image to the last table, is kept
//! from the VM ([`crate::boot_info::BootInfo::boot_region_end`]).
//! Tables made later, for the hole ([`map_frame`]) and the kernel stacks
//! ([`kernel_enter`]), are pages of the kernel heap, as under PVH.
//! 2 MiB pages are not available to a PV guest without superpage
//! support, so the direct map is of 4 KiB pages.
//!
//! # Locking
//!
//! | state | protection |
//! |---|---|
//! | `START`, `P2M`, `ROOT`, `TRAPS` | (i) set once on the boot CPU before anything reads them |
//! | the tables above the direct map, the Xen frames mapped there | (k) `KERNEL_MAPS`, taken with interrupts off (never from the upcall) |
//! | `QUEUES`, `DEFER` | (c) each CPU's own, used by the CPU itself under a pmap lock |

use core::arch::global_asm;

use spin::{Mutex, Once};
use xen::abi::pv::{
    CALLBACKF_MASK_EVENTS, CALLBACKTYPE_EVENT, CALLBACKTYPE_FAILSAFE, CALLBACKTYPE_SYSCALL,
    FLAT_KERNEL_CS, MACH2PHYS_NR_ENTRIES, MACH2PHYS_VIRT_START, SIF_MOD_START_PFN, START_MAGIC,
    StartInfo, TI_MASK_EVENTS, TrapInfo,
};
use xen::hypercall::XenErrno;
use xen::pv::{DATA_FLAGS, INVALID_MFN, MapError, PvMemory, TableBuilder};

use super::interrupts;

use super::pmap::PAGE;

global_asm!(
    // The PV notes (`xen/elfnote.h`), beside the PVH one in `boot`: each
    // is owner "Xen", a type, and a string or an 8-byte value.
    ".pushsection .note.Xen, \"a\", @note",
    ".balign 4",
    ".long 4, 2f - 1f, 6",
    ".asciz \"Xen\"",
    "1: .asciz \"xenguest\"",
    "2: .balign 4",
    ".long 4, 2f - 1f, 8",
    ".asciz \"Xen\"",
    "1: .asciz \"generic\"",
    "2: .balign 4",
    ".long 4, 2f - 1f, 5",
    ".asciz \"Xen\"",
    "1: .asciz \"xen-3.0\"",
    "2: .balign 4",
    ".long 4, 2f - 1f, 9",
    ".asciz \"Xen\"",
    "1: .asciz \"yes\"",
    "2: .balign 4",
    ".long 4, 2f - 1f, 10",
    ".asciz \"Xen\"",
    "1: .asciz \"!writable_page_tables\"",
    "2: .balign 4",
    ".long 4, 8, 3",
    ".asciz \"Xen\"",
    ".quad 0",
    ".long 4, 8, 4",
    ".asciz \"Xen\"",
    ".quad 0",
    ".long 4, 8, 1",
    ".asciz \"Xen\"",
    ".quad pv_start",
    ".long 4, 8, 2",
    ".asciz \"Xen\"",
    ".quad xen_hypercall_page",
    ".popsection",
    // Entered in 64-bit mode, ring 3, events masked, on Xen's boot stack
    // with `rsi` = the start info's virtual address.
    ".pushsection .text.boot_pv, \"ax\", @progbits",
    ".globl pv_start",
    "pv_start:",
    "cld",
    "lea rsp, [rip + boot_stack_top]",
    "mov byte ptr [rip + {pv}], 1",
    "mov rdi, rsi",
    "call pv_main",
    "ud2",
    ".popsection",
    pv = sym super::PV_MODE,
);

/// What the kernel keeps of `start_info`.
#[derive(Clone, Copy, Debug)]
pub struct StartOfDay {
    /// Pages of RAM.
    pub nr_pages: u64,
    /// Pfn of the xenstore ring (in the boot region).
    pub store_pfn: u64,
    /// Pfn of the console ring (in the boot region).
    pub console_pfn: u64,
    /// The module (xl's `ramdisk=`): pseudo-physical address and length.
    pub module: Option<(u64, u64)>,
    /// End of what the boot took (boot region, tables, pool): the VM
    /// starts above it.
    pub boot_end: u64,
}

static START: Once<StartOfDay> = Once::new();

/// The p2m list Xen built: `(address, entries)`.
static P2M: Once<(u64, u64)> = Once::new();

/// The root of the kernel's page tables (Xen's boot L4).
static ROOT: Once<u64> = Once::new();

/// The start info page's address (in the boot region, kept from the VM):
/// the toolstack rewrites the page when it restores the domain
/// (`super::pv_suspend`).
static START_INFO: Once<u64> = Once::new();

/// The start info, once [`start_of_day`] ran (PV only).
pub fn start_info() -> Option<&'static StartOfDay> {
    START.get()
}

/// The machine frame of `pfn`, or [`INVALID_MFN`].
pub fn mfn(pfn: u64) -> u64 {
    let &(at, len) = P2M.get().expect("pv::start_of_day ran");
    if pfn >= len {
        return INVALID_MFN;
    }
    // SAFETY: the p2m list is `len` words at `at`, in the boot region,
    // kept from the VM and never written by the kernel.
    unsafe { ((at as *const u64).add(pfn as usize)).read_volatile() }
}

/// The pfn of machine frame `mfn`, through Xen's read-only m2p table.
pub fn pfn(mfn: u64) -> u64 {
    if mfn >= MACH2PHYS_NR_ENTRIES {
        return INVALID_MFN;
    }
    // SAFETY: Xen maps the m2p table read-only at `MACH2PHYS_VIRT_START`
    // in every 64-bit PV guest, one word per machine frame.
    unsafe { ((MACH2PHYS_VIRT_START as *const u64).add(mfn as usize)).read_volatile() }
}

/// The p2m list Xen built (and the toolstack rewrites when it restores
/// the domain): `(address, entries)`, the address page-aligned.
pub fn p2m_list() -> (u64, u64) {
    *P2M.get().expect("pv::start_of_day ran")
}

/// The start info page's address.
pub fn start_info_address() -> u64 {
    *START_INFO.get().expect("pv::start_of_day ran")
}

/// The kernel's frames as the table builder sees them.
struct Frames;

impl PvMemory for Frames {
    fn mfn(&self, pfn: u64) -> u64 {
        mfn(pfn)
    }

    fn pfn(&self, mfn: u64) -> u64 {
        pfn(mfn)
    }

    fn read_entry(&self, pfn: u64, index: usize) -> u64 {
        // SAFETY: the builder asks only for tables it walks to, which the
        // direct map maps (read-only) at their own address.
        unsafe { ((pfn * PAGE) as *const u64).add(index).read_volatile() }
    }

    fn write_plain(&mut self, pfn: u64, index: usize, val: u64) {
        // SAFETY: the builder writes only frames it took for new tables,
        // mapped writable and used by nothing else.
        unsafe { ((pfn * PAGE) as *mut u64).add(index).write_volatile(val) }
    }
}

/// Why the PV start of day failed.
#[derive(Debug)]
pub enum StartError {
    /// `start_info.magic` is not a 64-bit PV one.
    BadMagic,
    /// Too little RAM for the boot region.
    TooSmall(u64),
    /// The p2m list is not where the kernel can keep it.
    P2m,
    /// Mapping RAM failed.
    Map(MapError),
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadMagic => write!(f, "start_info magic is not \"xen-3.0-x86_64\""),
            Self::TooSmall(p) => write!(f, "{p} pages of RAM do not hold the boot region"),
            Self::P2m => f.write_str("the p2m list lies outside the boot region"),
            Self::Map(e) => write!(f, "mapping RAM: {e:?}"),
        }
    }
}

/// Checks and keeps the start info at `si`, then maps all RAM at its own
/// address. Called once, on the boot CPU, first thing after the per-CPU
/// area and the traps.
///
/// # Safety
/// `si` must be the address Xen passed in `rsi`, before anything wrote to
/// the boot region past the image.
pub unsafe fn start_of_day(si: *const StartInfo) -> Result<StartOfDay, StartError> {
    let si_at = si;
    // SAFETY: the caller passes Xen's start info, mapped and intact.
    let si = unsafe { si.read() };
    if !si.magic.starts_with(START_MAGIC) {
        return Err(StartError::BadMagic);
    }
    let pt_end = si.pt_base / PAGE + si.nr_pt_frames;
    // The boot stack follows the tables; one frame of slack after it.
    let mut boot_end = pt_end + 2;
    if si.nr_p2m_frames != 0 {
        boot_end = boot_end.max(si.first_p2m_pfn + si.nr_p2m_frames);
    }
    let p2m_end = si.mfn_list + 8 * si.nr_pages;
    if si.mfn_list < PAGE || p2m_end > boot_end * PAGE && si.nr_p2m_frames == 0 {
        return Err(StartError::P2m);
    }
    if boot_end + si.nr_pages / 512 + 8 > si.nr_pages {
        return Err(StartError::TooSmall(si.nr_pages));
    }
    if si.mfn_list % PAGE != 0 {
        return Err(StartError::P2m);
    }
    P2M.call_once(|| (si.mfn_list, si.nr_pages));
    START_INFO.call_once(|| si_at as u64);
    let root = si.pt_base / PAGE;
    ROOT.call_once(|| root);
    let mut frames = Frames;
    let mut b = TableBuilder::new(&mut frames, xen::pv::Xen, root, boot_end..si.nr_pages);
    // SAFETY: RAM frames past what Xen mapped are ordinary and unused
    // (nothing but the boot region is in use yet); addresses below the
    // end of RAM are the direct map's.
    unsafe { b.map_identity(0..si.nr_pages) }.map_err(StartError::Map)?;
    let tables = b.unused().start;
    let module = (si.mod_len != 0).then(|| {
        let at = if si.flags & SIF_MOD_START_PFN != 0 {
            si.mod_start * PAGE
        } else {
            si.mod_start
        };
        (at, si.mod_len)
    });
    let start = StartOfDay {
        nr_pages: si.nr_pages,
        store_pfn: pfn(si.store_mfn),
        console_pfn: pfn(si.console_mfn),
        module,
        boot_end: tables * PAGE,
    };
    Ok(*START.call_once(|| start))
}

/// The command line of the start info at `si`.
///
/// # Safety
/// As for [`start_of_day`].
pub unsafe fn cmdline(si: *const StartInfo) -> [u8; xen::abi::pv::MAX_GUEST_CMDLINE] {
    // SAFETY: as the caller guarantees.
    unsafe { (*si).cmd_line }
}

/// Makes sure an L1 table covers `va`, making the tables missing on the
/// way from pages of the kernel heap (never freed: they serve every later
/// mapping of their range; the heap keeps no data inside its blocks, so
/// a block may become a read-only table); returns the L1's pfn.
fn ensure_l1(va: u64) -> Result<u64, MapError> {
    let root = *ROOT.get().expect("pv::start_of_day ran");
    let layout = core::alloc::Layout::from_size_align(PAGE as usize, PAGE as usize)
        .map_err(|_| MapError::NoTableFrame)?;
    loop {
        let mut frames = Frames;
        // Without a table frame first: most calls find the L1 there.
        let mut b = TableBuilder::new(&mut frames, xen::pv::Xen, root, 0..0);
        match b.ensure_l1(va) {
            Err(MapError::NoTableFrame) => {}
            r => return r,
        }
        // SAFETY: the layout has a nonzero size.
        let page = unsafe { alloc::alloc::alloc_zeroed(layout) };
        if page.is_null() {
            return Err(MapError::NoTableFrame);
        }
        let pfn = page as u64 / PAGE;
        let mut b = TableBuilder::new(&mut frames, xen::pv::Xen, root, pfn..pfn + 1);
        match b.ensure_l1(va) {
            // One level made (and kept); the next round makes the next.
            Err(MapError::NoTableFrame) => {}
            r => {
                if b.unused().start == pfn {
                    // SAFETY: allocated above with `layout`, unused.
                    unsafe { alloc::alloc::dealloc(page, layout) };
                }
                return r;
            }
        }
    }
}

/// Sets the L1 entries of `pages` pages from `va` to `pte(i)` (making L1
/// tables as needed), in one `mmu_update`, without a TLB flush.
///
/// # Safety
/// The addresses must be kernel addresses above the direct map that
/// nothing else uses, and each `pte` must map a frame the kernel may map
/// that way.
unsafe fn set_entries(va: u64, pages: u64, pte: impl Fn(u64) -> u64) -> Result<(), MapError> {
    interrupts::without_interrupts(|| {
        let _k = KERNEL_MAPS.lock();
        let mut batch = xen::pv::MmuBatch::new(xen::pv::Xen);
        for i in 0..pages {
            let at = va + i * PAGE;
            let l1 = ensure_l1(at)?;
            let slot = (mfn(l1) << 12) + 8 * xen::pv::index(at, 1) as u64;
            // SAFETY: the caller vouches for the addresses and frames.
            unsafe { batch.push(slot, pte(i)) }.map_err(MapError::Xen)?;
        }
        // SAFETY: as above.
        unsafe { batch.flush() }.map_err(MapError::Xen)
    })
}

/// Makes sure an L1 table covers kernel address `va` (above RAM in the
/// direct map), for an entry Xen itself writes there (a grant map).
pub fn ensure_table(va: u64) -> Result<(), MapError> {
    interrupts::without_interrupts(|| {
        let _k = KERNEL_MAPS.lock();
        ensure_l1(va).map(|_| ())
    })
}

/// (k) Serialises changes to the kernel's own tables above the direct
/// map, and holds the Xen frames mapped there.
static KERNEL_MAPS: Mutex<XenFrames> = Mutex::new(XenFrames {
    at: [(0, 0); XEN_FRAMES],
    len: 0,
});

/// Most Xen frames [`map_frame`] maps: the shared info page and every
/// grant-table frame.
const XEN_FRAMES: usize = 1 + crate::grants::TABLE_FRAMES as usize;

/// The frames of Xen's own that the kernel maps ([`map_frame`]): their
/// entries are not the domain's RAM, so a save refuses tables that hold
/// them ([`unmap_xen_frames`]). Fixed room: the list changes with the
/// other vCPUs parked, where nothing may allocate.
struct XenFrames {
    /// `(address, machine frame)` of each.
    at: [(u64, u64); XEN_FRAMES],
    len: usize,
}

/// Maps machine frame `mfn` writable at `va`, an address of the hole
/// (above RAM), and records it as Xen's ([`unmap_xen_frames`]). Mapping
/// the same address again replaces the frame. Makes no table (and so
/// allocates nothing) when one covers `va` already.
///
/// # Safety
/// `va` must be unused by anything else, or mapped by an earlier call
/// and unmapped since, and the frame one the kernel may map (Xen's
/// shared info, a grant-table frame).
pub unsafe fn map_frame(va: u64, mfn: u64) -> Result<(), MapError> {
    // SAFETY: forwarded to the caller's contract; the address was unused
    // (or unmapped, with the TLBs flushed), so no TLB holds it.
    unsafe { set_entries(va, 1, |_| (mfn << 12) | DATA_FLAGS) }?;
    interrupts::without_interrupts(|| {
        let mut k = KERNEL_MAPS.lock();
        let len = k.len;
        match k.at[..len].iter_mut().find(|(a, _)| *a == va) {
            Some(slot) => slot.1 = mfn,
            None if len < XEN_FRAMES => {
                k.at[len] = (va, mfn);
                k.len += 1;
            }
            None => return Err(MapError::NoTableFrame),
        }
        Ok(())
    })
}

/// Removes every mapping of a Xen frame ([`map_frame`]) in one batch and
/// flushes every TLB: before a suspend, as the toolstack saves only
/// tables whose entries map the domain's own RAM. Run with the other
/// vCPUs parked and nothing reading those pages until
/// [`remap_xen_frames`] or new [`map_frame`]s.
pub fn unmap_xen_frames() -> Result<(), XenErrno> {
    set_xen_frames(false)
}

/// Maps every Xen frame [`unmap_xen_frames`] removed again, at its
/// address: after a cancelled suspend, where the frames are the same.
pub fn remap_xen_frames() -> Result<(), XenErrno> {
    set_xen_frames(true)
}

/// [`unmap_xen_frames`] (`present` false) or [`remap_xen_frames`].
fn set_xen_frames(present: bool) -> Result<(), XenErrno> {
    interrupts::without_interrupts(|| {
        let k = KERNEL_MAPS.lock();
        let root = *ROOT.get().expect("pv::start_of_day ran");
        let mut frames = Frames;
        let mut b = TableBuilder::new(&mut frames, xen::pv::Xen, root, 0..0);
        let mut batch = xen::pv::MmuBatch::new(xen::pv::Xen);
        for &(va, mfn) in &k.at[..k.len] {
            let Ok(Some(slot)) = b.entry_address(va) else {
                continue;
            };
            let val = if present { (mfn << 12) | DATA_FLAGS } else { 0 };
            // SAFETY: the entry maps (or mapped) a Xen frame at an address
            // of the hole that only `map_frame`'s callers use, and they
            // do not while the caller holds the other vCPUs.
            unsafe { batch.push(slot, val) }?;
        }
        // SAFETY: as above; then no TLB keeps an entry that went.
        unsafe { batch.flush() }?;
        flush_all_tlbs()
    })
}

/// Flushes every vCPU's TLB (`MMUEXT_TLB_FLUSH_ALL`).
fn flush_all_tlbs() -> Result<(), XenErrno> {
    // SAFETY: a flush changes no mapping.
    unsafe {
        xen::pv::mmuext_op(&[xen::abi::pv::MmuextOp {
            cmd: xen::abi::pv::MMUEXT_TLB_FLUSH_ALL,
            ..Default::default()
        }])
    }
}

/// Maps `pages` RAM pages from `pa` writable at `va`, kernel addresses
/// above the direct map (a kernel stack's slot), in one `mmu_update`:
/// `pmap::kernel_enter_run` under PV.
pub fn kernel_enter(va: u64, pa: u64, pages: u64) -> Result<(), MapError> {
    if let Some(p) = (0..pages).find(|i| mfn(pa / PAGE + i) == INVALID_MFN) {
        return Err(MapError::NoMachineFrame(pa / PAGE + p));
    }
    // SAFETY: the slot's addresses are the caller's alone, the pages
    // blocks of the kernel heap the caller owns.
    unsafe {
        set_entries(va, pages, |i| {
            (mfn(pa / PAGE + i) << 12) | DATA_FLAGS | xen::pv::PTE_NX
        })
    }
}

/// Removes `pages` mappings made by [`kernel_enter`] from `va` on, in one
/// batch, and flushes them from every vCPU's TLB: `pmap::kernel_remove`
/// under PV.
pub fn kernel_remove(va: u64, pages: u64) {
    interrupts::without_interrupts(|| {
        let _k = KERNEL_MAPS.lock();
        let mut batch = xen::pv::MmuBatch::new(xen::pv::Xen);
        let root = *ROOT.get().expect("pv::start_of_day ran");
        let mut frames = Frames;
        let mut b = TableBuilder::new(&mut frames, xen::pv::Xen, root, 0..0);
        for i in 0..pages {
            if let Ok(Some(at)) = b.entry_address(va + i * PAGE) {
                // SAFETY: the caller's mappings, which it no longer uses.
                if let Err(e) = unsafe { batch.push(at, 0) } {
                    panic!("kernel_remove: Xen error {}", e.0);
                }
            }
        }
        // SAFETY: the entries go, then every TLB forgets them.
        let r = unsafe { batch.flush() }.and_then(|()| flush_all_tlbs());
        if let Err(e) = r {
            panic!("kernel_remove: Xen error {}", e.0);
        }
    });
}

unsafe extern "C" {
    static pv_trap_stubs: [u64; 32];
    fn pv_event_stub();
    fn pv_failsafe_stub();
    fn pv_syscall_entry();
}

/// The virtual IDT: exceptions that a kernel can take, each through a
/// PV stub (which drops the `rcx`, `r11` Xen pushes) into the same
/// handlers as PVH, with events masked on entry as an interrupt gate
/// would. `int3` and `into` may come from user mode.
static TRAPS: Once<[TrapInfo; 22]> = Once::new();

/// Installs the virtual IDT and the event and failsafe callbacks.
pub fn init_traps() -> Result<(), XenErrno> {
    const VECTORS: [u8; 19] = [
        0, 1, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 16, 17, 19, 20, 21, 9,
    ];
    let table = TRAPS.call_once(|| {
        let mut t = [TrapInfo::default(); 22];
        // SAFETY: the constant table assembled in `arch::trap`.
        let stubs = unsafe { pv_trap_stubs };
        for (slot, &v) in t.iter_mut().zip(VECTORS.iter()) {
            let dpl = if v == 3 || v == 4 { 3 } else { 0 };
            *slot = TrapInfo {
                vector: v,
                flags: dpl | TI_MASK_EVENTS,
                cs: FLAT_KERNEL_CS,
                address: stubs[v as usize],
            };
        }
        t
    });
    // SAFETY: every address is a PV stub of `arch::trap`, which takes
    // Xen's exception frame; the table ends with zero entries.
    unsafe { xen::pv::set_trap_table(table) }?;
    // SAFETY: the stubs take Xen's event and failsafe frames.
    unsafe {
        xen::pv::register_callback(
            CALLBACKTYPE_EVENT,
            CALLBACKF_MASK_EVENTS,
            pv_event_stub as *const () as u64,
        )?;
        xen::pv::register_callback(
            CALLBACKTYPE_FAILSAFE,
            CALLBACKF_MASK_EVENTS,
            pv_failsafe_stub as *const () as u64,
        )?;
        xen::pv::register_callback(
            CALLBACKTYPE_SYSCALL,
            CALLBACKF_MASK_EVENTS,
            pv_syscall_entry as *const () as u64,
        )
    }
}

/// The first state of secondary vCPU `cpu` (`VCPUOP_initialise`): guest
/// kernel mode at `entry(cpu)` on the stack ending at `stack_top`, on the
/// kernel's page tables, events masked (the vCPU installs its traps and
/// callbacks, then unmasks).
pub fn ap_context(cpu: usize, stack_top: u64, entry: u64) -> xen::abi::pv::VcpuGuestContext {
    use xen::abi::pv::{
        CpuUserRegs, FLAT_KERNEL_SS, VGCF_FAILSAFE_DISABLES_EVENTS, VGCF_IN_KERNEL,
        VGCF_SYSCALL_DISABLES_EVENTS, VcpuGuestContext,
    };
    let mut ctrlreg = [0; 8];
    ctrlreg[3] = mfn(root_pfn()) << 12;
    VcpuGuestContext {
        fpu_ctxt: [0; 512],
        flags: VGCF_IN_KERNEL | VGCF_FAILSAFE_DISABLES_EVENTS | VGCF_SYSCALL_DISABLES_EVENTS,
        user_regs: CpuUserRegs {
            // As if `entry(cpu)` had been called: the return slot below a
            // 16-byte boundary.
            rsp: stack_top - 8,
            rdi: cpu as u64,
            rip: entry,
            cs: FLAT_KERNEL_CS,
            ss: FLAT_KERNEL_SS,
            rflags: 0x2,
            saved_upcall_mask: 1,
            ..Default::default()
        },
        trap_ctxt: [TrapInfo::default(); 256],
        ldt_base: 0,
        ldt_ents: 0,
        gdt_frames: [0; 16],
        gdt_ents: 0,
        kernel_ss: u64::from(FLAT_KERNEL_SS),
        kernel_sp: stack_top,
        ctrlreg,
        debugreg: [0; 8],
        event_callback_eip: pv_event_stub as *const () as u64,
        failsafe_callback_eip: pv_failsafe_stub as *const () as u64,
        syscall_callback_eip: pv_syscall_entry as *const () as u64,
        vm_assist: 0,
        fs_base: 0,
        gs_base_kernel: 0,
        gs_base_user: 0,
    }
}

/// The pfn of the boot L4, the kernel's page tables.
pub fn root_pfn() -> u64 {
    *ROOT.get().expect("pv::start_of_day ran")
}

/// Most page-table writes a CPU's pmap queue holds: a 1024-page
/// populate goes to Xen in two calls.
const QUEUE: usize = 512;

/// Page-table writes of one CPU's pmap operation, queued for one
/// `mmu_update` ([`queue_entry`], [`flush_entries`]).
struct Queue {
    reqs: [xen::abi::pv::MmuUpdate; QUEUE],
    len: usize,
}

/// (c) Each CPU's queue: filled and flushed by the CPU itself while it
/// holds a pmap's lock (the kernel is not preempted there); the mutex
/// only makes the sharing sound.
static QUEUES: [Mutex<Queue>; super::percpu::MAX_CPUS] = [const {
    Mutex::new(Queue {
        reqs: [xen::abi::pv::MmuUpdate { ptr: 0, val: 0 }; QUEUE],
        len: 0,
    })
}; super::percpu::MAX_CPUS];

/// Applies the writes of `q` (one `mmu_update`).
fn flush_queue(q: &mut Queue) {
    let n = core::mem::take(&mut q.len);
    // SAFETY: each write was vouched for when it was queued.
    if let Err(e) = unsafe { xen::pv::mmu_update(&q.reqs[..n]) } {
        panic!(
            "mmu_update of {n} entries (first {:#x} = {:#x}): Xen error {}",
            q.reqs[0].ptr, q.reqs[0].val, e.0
        );
    }
}

/// Queues setting the table entry at direct-map address `slot` to `val`
/// (its frame, if present, pseudo-physical): written by the next
/// [`flush_entries`] on this CPU, or when the queue is full.
///
/// # Safety
/// `slot` must be an entry of a page table of the kernel's, and `val`
/// must leave the address space sound for the kernel once written.
pub unsafe fn queue_entry(slot: u64, val: u64) {
    let ptr = (mfn(slot / PAGE) << 12) | (slot % PAGE);
    let val = if val & xen::pv::PTE_P != 0 {
        let f = (val & xen::pv::PTE_FRAME) >> 12;
        (val & !xen::pv::PTE_FRAME) | (mfn(f) << 12)
    } else {
        val
    };
    push(ptr, val);
}

/// Appends the raw write `ptr` (a machine address) = `val` to this CPU's
/// queue, flushing it first if full.
fn push(ptr: u64, val: u64) {
    let mut q = QUEUES[super::percpu::id()].lock();
    if q.len == QUEUE {
        drop(q);
        flush_entries();
        q = QUEUES[super::percpu::id()].lock();
    }
    let n = q.len;
    q.reqs[n] = xen::abi::pv::MmuUpdate { ptr, val };
    q.len += 1;
}

/// Queues making the direct map's view of the fresh page at `pa`
/// read-only, as the page becomes a page table: it goes to Xen in the
/// same `mmu_update` as the write that links the table, which comes after
/// it (Xen applies a call's entries in order, and on the page's change
/// of type flushes the TLBs that may still hold it writable), rather than
/// in an `update_va_mapping` of its own.
pub fn queue_table_view(pa: u64) -> Result<(), MapError> {
    let root = *ROOT.get().expect("pv::start_of_day ran");
    let mut frames = Frames;
    let mut b = TableBuilder::new(&mut frames, xen::pv::Xen, root, 0..0);
    let at = b.entry_address(pa)?.ok_or(MapError::NoTableFrame)?;
    push(at, (mfn(pa / PAGE) << 12) | xen::pv::TABLE_VIEW_FLAGS);
    Ok(())
}

/// The value last queued for the entry at direct-map address `slot`, raw
/// (a machine frame), if a write to it is queued on this CPU.
pub fn queued_entry(slot: u64) -> Option<u64> {
    let q = QUEUES[super::percpu::id()].lock();
    if q.len == 0 {
        return None;
    }
    let ptr = (mfn(slot / PAGE) << 12) | (slot % PAGE);
    q.reqs[..q.len]
        .iter()
        .rev()
        .find(|r| r.ptr == ptr)
        .map(|r| r.val)
}

/// (c) Per CPU: a pmap batch runs (`Pmap::batch`), whose leaf writes
/// stay queued until it ends.
static DEFER: [core::sync::atomic::AtomicBool; super::percpu::MAX_CPUS] =
    [const { core::sync::atomic::AtomicBool::new(false) }; super::percpu::MAX_CPUS];

/// Starts (`true`) or ends a pmap batch on this CPU; the end writes what
/// it queued.
pub fn set_deferring(on: bool) {
    DEFER[super::percpu::id()].store(on, core::sync::atomic::Ordering::Relaxed);
    if !on {
        flush_entries();
    }
}

/// Whether a pmap batch runs on this CPU.
pub fn deferring() -> bool {
    DEFER[super::percpu::id()].load(core::sync::atomic::Ordering::Relaxed)
}

/// Writes every entry queued on this CPU, after the grant entries queued
/// for removal went (`super::pv_grant`: a slot may get a plain entry
/// next).
pub fn flush_entries() {
    super::pv_grant::flush_unmaps();
    let mut q = QUEUES[super::percpu::id()].lock();
    if q.len != 0 {
        flush_queue(&mut q);
    }
}

/// The value of a table entry read raw, with its frame made
/// pseudo-physical.
pub fn entry_to_pseudo(raw: u64) -> u64 {
    if raw & xen::pv::PTE_P == 0 {
        return raw;
    }
    let f = pfn((raw & xen::pv::PTE_FRAME) >> 12);
    (raw & !xen::pv::PTE_FRAME) | (f << 12)
}

/// Makes the direct map's view of the page at `pa` writable again, once
/// Xen no longer types it as a table (a page becomes a table read-only:
/// [`queue_table_view`]).
pub fn set_data_view(pa: u64) -> Result<(), XenErrno> {
    // SAFETY: the direct map's entry of a page the caller owns; only its
    // rights change.
    unsafe {
        xen::pv::update_va_mapping(
            pa,
            (mfn(pa / PAGE) << 12) | DATA_FLAGS,
            xen::abi::pv::UVMF_INVLPG,
        )
    }
}

/// Runs extended MMU operations, panicking on a refusal (a kernel bug).
///
/// # Safety
/// As [`xen::pv::mmuext_op`].
pub unsafe fn mmuext(ops: &[xen::abi::pv::MmuextOp]) {
    // SAFETY: forwarded to the caller's contract.
    if let Err(e) = unsafe { xen::pv::mmuext_op(ops) } {
        panic!(
            "mmuext_op {:?}: Xen error {}",
            ops.first().map(|o| o.cmd),
            e.0
        );
    }
}

/// An `mmuext_op` on machine frame `mfn` (or linear address).
pub fn ext(cmd: u32, arg1: u64) -> xen::abi::pv::MmuextOp {
    xen::abi::pv::MmuextOp {
        cmd,
        pad: 0,
        arg1,
        arg2: 0,
    }
}
