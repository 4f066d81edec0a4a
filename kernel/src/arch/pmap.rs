//! The machine-dependent half of the VM (FreeBSD's `pmap`): x86-64 4-level
//! page tables, one set per address space.
//!
//! # Layout
//!
//! | PML4 slots | addresses | what |
//! |---|---|---|
//! | 0 | `0 .. 0x80_0000_0000` | kernel: the boot identity map of 0-4 GiB (2 MiB pages), which is also the direct map of guest-physical memory; above it the kernel's own 4 KiB mappings ([`kernel_enter_run`]: guarded kernel stacks, `crate::kstack`); supervisor-only, shared by every address space |
//! | 1..=255 | [`USER_MIN`] `..` [`USER_END`] | user space, private to each address space |
//! | 256..=511 | upper half | unused |
//!
//! Every address space's PML4 copies slot 0 from the boot PML4, so the
//! kernel half is the same page-directory-pointer table everywhere and a
//! change to it (none happens after boot) would be seen by all. The last
//! page below the canonical hole is left out of user space, as in
//! FreeBSD, so no user instruction ends next to a non-canonical address.
//!
//! # Mapping lists
//!
//! Each managed page (`EnterFlags::MANAGED`: pages of objects the VM owns,
//! including managed device pages) has a list of the (pmap, va) pairs that
//! map it, in [`PV`], so [`remove_all`] can take every mapping of a page
//! away (`pmap_remove_all`). A 2 MiB mapping lists each of its 512 pages at
//! its own va; removing one of them demotes the 2 MiB entry to a page table
//! first (`pmap_demote_pde`).
//!
//! # 2 MiB entries
//!
//! A 2 MiB entry (a PDE with `PS`) is made in two ways: directly, by
//! `enter_large` (the fault handler's populate path, for an aligned,
//! physically contiguous run: FreeBSD's `pmap_enter` with `psind` 1), or
//! by promotion of a full page table (`promote`). Every walker takes it as
//! what it is: a range that covers it wholly acts on the PDE (and a wired
//! one unwires all 512 pages); a range that cuts it, an `enter` inside it
//! and [`remove_all`] of one of its pages demote it first to a page table
//! of 512 entries with the same bits. A demotion that finds no page for
//! the table drops the whole 2 MiB mapping instead, which faults bring
//! back. Counted: 2 MiB entries made and demoted ([`tlb_stats`]) and
//! those standing in each pmap ([`Pmap::large_entries`]).
//!
//! # PV
//!
//! Under PV (`super::pv`) the same code runs on tables Xen validates:
//! entries hold machine frames (`read` and `write` translate through
//! the p2m and m2p); every write is queued on the CPU and handed to Xen
//! with the operation's other writes in one `mmu_update` (the queue is
//! flushed when the operation's [`Shootdown`] finishes or goes; a read of
//! a slot with a queued write sees that value); a new table is made
//! read-only in the direct map before it is linked, and writable again
//! only once Xen no longer types it as a table; each address space has a
//! second L4 for user mode (Xen runs the PV kernel in ring 3 too) that
//! links the same user tables, both pinned, and [`Pmap::activate`] loads
//! them with `MMUEXT_NEW_BASEPTR` and `MMUEXT_NEW_USER_BASEPTR`; TLB
//! entries go by `mmuext_op`. Without Xen's superpage support there are
//! no 2 MiB entries: `enter_large` enters 512 pages and nothing is
//! promoted. A hole frame bound to a foreign grant (gntdev's mappings,
//! `super::pv_grant`) is mapped by Xen: its entries are made with one
//! `GNTTABOP_map_grant_ref` per operation or batch (after the
//! operation's `mmu_update`s, with the lock held outside a batch; the
//! entries Xen refuses leave the counts and fail the `enter` or the
//! batch) and removed with one `GNTTABOP_unmap_grant_ref` (before the
//! `mmu_update`s); they read as the hole frame with the software bit
//! `PTE_GRANT`, and never go through `mmu_update`. New rights for one
//! are an unmap and a map.
//!
//! # Locking
//!
//! | state | protection |
//! |---|---|
//! | a pmap's page tables and page-table page list | (l) its [`Pmap`] lock |
//! | [`PV`] | (v) its own lock |
//! | the kernel half's 4 KiB mappings | (k) [`KERNEL_MAPS`] |
//! | counters | (a) atomic |
//! | `PV_LOADED` (PV) | (c) each CPU's own slot |
//!
//! Order: pmap lock before [`PV`]; [`remove_all`] drains a page's list
//! under (v), drops it, then takes each pmap lock in turn.
//!
//! # TLB
//!
//! Loading CR3 flushes every non-global entry, so only the CPUs on which an
//! address space is loaded now can hold stale entries of it. Each pmap
//! keeps the set of CPUs that loaded it ([`Pmap::active`]: set by
//! `activate` before CR3 is loaded, cleared lazily by a CPU that gets a
//! shootdown for a pmap it no longer runs). A change of up to
//! [`INVLPG_MAX`] pages is invalidated page by page with `invlpg`, a larger
//! one with a reload of CR3, here and - with one IPI round per change
//! (one per `munmap`, `mprotect` or page removal, not per page: a
//! shootdown, through the hook `smp` installs, [`set_remote_call`]) - on
//! every other CPU of the set, before the change returns: only then may
//! the caller free the pages or unmap the grants. The set is read after
//! the tables were changed, and `activate` sets its bit before loading
//! CR3, so a CPU missing from it loads the new tables. Counted: pages
//! invalidated, full flushes, shootdown rounds, IPIs and remote pages.

use alloc::collections::BTreeMap;
use alloc::collections::btree_map::Entry;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::{Mutex, Once};
use vm::map::KernResult;
use vm::page::{MemAttr, PageId};
use vm::phys::FreePool;
use vm::pmap::{EnterFlags, Pmap as VmPmap};
use vm::{Errno, Prot};
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::PhysFrame;
use x86_64::{PhysAddr, VirtAddr};
use xen::abi::pv::{
    MMUEXT_INVLPG_LOCAL, MMUEXT_NEW_BASEPTR, MMUEXT_NEW_USER_BASEPTR, MMUEXT_PIN_L4_TABLE,
    MMUEXT_TLB_FLUSH_LOCAL, MMUEXT_UNPIN_TABLE,
};

use crate::mem;

/// Lowest user address (PML4 slot 1).
pub const USER_MIN: u64 = 0x0000_0080_0000_0000;
/// End of user space (exclusive): the last page below the canonical hole
/// is never mapped.
pub const USER_END: u64 = 0x0000_7fff_ffff_f000;
/// Page size.
pub const PAGE: u64 = 4096;
/// Size of a large (PDE) mapping, and its pages.
pub use vm::{SUPERPAGE_PAGES as LARGE_PAGES, SUPERPAGE_SIZE as LARGE};
/// Largest change invalidated page by page; above it the whole TLB goes.
pub const INVLPG_MAX: u64 = 32;

const PTE_P: u64 = 1;
const PTE_W: u64 = 1 << 1;
const PTE_U: u64 = 1 << 2;
const PTE_PWT: u64 = 1 << 3;
const PTE_PCD: u64 = 1 << 4;
/// Accessed and dirty, set by the CPU.
const PTE_AD: u64 = (1 << 5) | (1 << 6);
const PTE_PS: u64 = 1 << 7;
/// Software bit (available to the OS): the mapping holds one wiring of
/// its page (`PG_W`).
const PTE_WIRED: u64 = 1 << 9;
/// Software bit of the values the pmap reads and writes (never in a
/// table): PV, a grant entry, which Xen writes and removes
/// (`super::pv_grant`) and `mmu_update` must never touch.
const PTE_GRANT: u64 = 1 << 10;
const PTE_NX: u64 = 1 << 63;
const PTE_ADDR: u64 = 0x000f_ffff_ffff_f000;
const PDE_LARGE_ADDR: u64 = 0x000f_ffff_ffe0_0000;

/// TLB shootdown statistics.
#[derive(Clone, Copy, Debug, Default)]
pub struct TlbStats {
    /// Pages invalidated one by one with `invlpg`.
    pub invlpg: u64,
    /// Full flushes (CR3 reloads).
    pub full_flushes: u64,
    /// 2 MiB mappings made.
    pub large_mappings: u64,
    /// 2 MiB mappings split into page tables.
    pub demotions: u64,
    /// Changes that other CPUs had to flush (one IPI round each).
    pub shootdowns: u64,
    /// Shootdown IPIs sent.
    pub shootdown_ipis: u64,
    /// Pages invalidated on other CPUs (a full flush counts as none).
    pub shootdown_pages: u64,
}

static INVLPG: AtomicU64 = AtomicU64::new(0);
static SHOOTDOWNS: AtomicU64 = AtomicU64::new(0);
static SHOOTDOWN_IPIS: AtomicU64 = AtomicU64::new(0);
static SHOOTDOWN_PAGES: AtomicU64 = AtomicU64::new(0);

/// Runs `f(arg)` on every CPU of a mask (a bit per CPU) and returns once
/// all have: `smp::call_on`, installed at boot.
pub type RemoteCall = fn(u64, fn(usize), usize);
static REMOTE_CALL: Once<RemoteCall> = Once::new();

/// Installs the IPI primitive shootdowns use (before a second CPU runs).
pub fn set_remote_call(call: RemoteCall) {
    REMOTE_CALL.call_once(|| call);
}
static FULL_FLUSHES: AtomicU64 = AtomicU64::new(0);
static LARGE_MAPPINGS: AtomicU64 = AtomicU64::new(0);
static DEMOTIONS: AtomicU64 = AtomicU64::new(0);

/// The counters so far.
pub fn tlb_stats() -> TlbStats {
    TlbStats {
        invlpg: INVLPG.load(Ordering::Relaxed),
        full_flushes: FULL_FLUSHES.load(Ordering::Relaxed),
        large_mappings: LARGE_MAPPINGS.load(Ordering::Relaxed),
        demotions: DEMOTIONS.load(Ordering::Relaxed),
        shootdowns: SHOOTDOWNS.load(Ordering::Relaxed),
        shootdown_ipis: SHOOTDOWN_IPIS.load(Ordering::Relaxed),
        shootdown_pages: SHOOTDOWN_PAGES.load(Ordering::Relaxed),
    }
}

/// The boot PML4's physical address and its slot 0 (the kernel half).
static KERNEL: Once<(u64, u64)> = Once::new();

/// One mapping of a managed page.
struct PvEntry {
    pmap: Weak<Pmap>,
    va: u64,
}

/// A page's mapping list. Most pages have one mapping: it is kept in the
/// map's node itself, with no heap block of its own; a second mapping
/// moves the list to a vector.
enum PvList {
    One(PvEntry),
    Many(Vec<PvEntry>),
}

impl PvList {
    fn push(&mut self, e: PvEntry) {
        match self {
            Self::Many(v) => v.push(e),
            Self::One(_) => {
                if let Self::One(first) =
                    core::mem::replace(self, Self::Many(Vec::with_capacity(2)))
                    && let Self::Many(v) = self
                {
                    v.push(first);
                    v.push(e);
                }
            }
        }
    }

    /// Removes `pmap`'s mapping at `va`, if listed; returns whether the
    /// list is empty now.
    fn remove(&mut self, pmap: &Weak<Pmap>, va: u64) -> bool {
        let is = |e: &PvEntry| e.va == va && Weak::ptr_eq(&e.pmap, pmap);
        match self {
            Self::One(e) => is(e),
            Self::Many(v) => {
                if let Some(i) = v.iter().position(is) {
                    v.swap_remove(i);
                }
                v.is_empty()
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::One(_) => 1,
            Self::Many(v) => v.len(),
        }
    }
}

/// (k) serialises changes to the kernel half's own 4 KiB mappings
/// ([`kernel_enter_run`], [`kernel_remove`]); the boot identity map never
/// changes.
static KERNEL_MAPS: Mutex<()> = Mutex::new(());

/// Maps `pages` kernel virtual pages from `va` (above the identity map,
/// in PML4 slot 0, so every address space sees them) to the
/// identity-mapped RAM pages from `pa`, read-write, supervisor-only, not
/// executable, with 4 KiB entries (PV: one `mmu_update` for the run).
/// Page tables missing on the way are made and kept. For mappings the
/// kernel makes for itself, e.g. guarded kernel stacks (`crate::kstack`).
pub fn kernel_enter_run(va: u64, pa: u64, pages: u64) -> Result<(), Errno> {
    if super::is_pv() {
        return super::pv::kernel_enter(va, pa, pages).map_err(|_| Errno::ENOMEM);
    }
    for i in 0..pages {
        kernel_enter_page(va + i * PAGE, pa + i * PAGE)?;
    }
    Ok(())
}

/// One page of [`kernel_enter_run`] under PVH.
fn kernel_enter_page(va: u64, pa: u64) -> Result<(), Errno> {
    debug_assert!(
        va.is_multiple_of(PAGE) && pa.is_multiple_of(PAGE) && (1 << 32..USER_MIN).contains(&va)
    );
    let _k = KERNEL_MAPS.lock();
    let mut table = KERNEL.get().expect("pmap::init ran").0;
    for level in (1..4).rev() {
        let slot = entry(table, index(va, level));
        if read(slot) & PTE_P == 0 {
            write(slot, kernel_table()? | PTE_P | PTE_W);
        }
        debug_assert_eq!(read(slot) & PTE_PS, 0, "a large page in the way");
        table = read(slot) & PTE_ADDR;
    }
    write(entry(table, index(va, 0)), pa | PTE_P | PTE_W | PTE_NX);
    Ok(())
}

/// A zeroed page-table page for the kernel's own mappings, from the
/// kernel heap (identity-mapped: its address is its physical address), so
/// that free page counts do not see it. Never freed: it serves every
/// later mapping of its range.
fn kernel_table() -> Result<u64, Errno> {
    let layout = core::alloc::Layout::from_size_align(PAGE as usize, PAGE as usize)
        .map_err(|_| Errno::EINVAL)?;
    // SAFETY: the layout has a nonzero size.
    let t = unsafe { alloc::alloc::alloc_zeroed(layout) };
    if t.is_null() {
        return Err(Errno::ENOMEM);
    }
    Ok(t as u64)
}

/// Removes the `pages` mappings [`kernel_enter_run`] made from `va` on and
/// invalidates them on every CPU.
pub fn kernel_remove(va: u64, pages: u64) {
    if super::is_pv() {
        return super::pv::kernel_remove(va, pages);
    }
    let k = KERNEL_MAPS.lock();
    for i in 0..pages {
        let va = va + i * PAGE;
        let mut table = KERNEL.get().expect("pmap::init ran").0;
        let mut present = true;
        for level in (1..4).rev() {
            let e = read(entry(table, index(va, level)));
            if e & PTE_P == 0 {
                present = false;
                break;
            }
            table = e & PTE_ADDR;
        }
        if present {
            write(entry(table, index(va, 0)), 0);
            x86_64::instructions::tlb::flush(VirtAddr::new(va));
        }
    }
    drop(k);
    // Every CPU may hold the old entries (the kernel half is in every
    // address space): one shootdown round for the run, before the pages
    // may be reused.
    if let Some(call) = REMOTE_CALL.get() {
        let all = !(1u64 << super::percpu::id());
        let range = (va, pages);
        SHOOTDOWNS.fetch_add(1, Ordering::Relaxed);
        call(
            all,
            flush_kernel_range,
            &range as *const (u64, u64) as usize,
        );
    }
}

/// Invalidates, on this CPU, the kernel range at `arg` (a `(va, pages)`).
fn flush_kernel_range(arg: usize) {
    // SAFETY: `arg` is the address of a `(u64, u64)` that `kernel_remove`
    // keeps alive until every target has returned from here.
    let (va, pages) = unsafe { *(arg as *const (u64, u64)) };
    for i in 0..pages {
        x86_64::instructions::tlb::flush(VirtAddr::new(va + i * PAGE));
    }
}

/// Mapping lists of managed pages (v).
static PV: Mutex<BTreeMap<PageId, PvList>> = Mutex::new(BTreeMap::new());

/// Records the boot page tables as the kernel half. Called once at boot.
pub fn init() {
    if super::is_pv() {
        let pml4 = super::pv::root_pfn() * PAGE;
        // SAFETY: the boot L4 is mapped (read-only) at its own address and
        // never freed; slot 0, the kernel half, is kept raw (a machine
        // frame) for new L4s, which are written plainly before they
        // become tables.
        let slot0 = unsafe { *(pml4 as *const u64) };
        KERNEL.call_once(|| (pml4, slot0));
        return;
    }
    let (frame, _) = Cr3::read();
    let pml4 = frame.start_address().as_u64();
    // SAFETY: CR3 names the boot PML4, identity-mapped and never freed.
    let slot0 = unsafe { *(pml4 as *const u64) };
    KERNEL.call_once(|| (pml4, slot0));
}

/// Switches to the kernel's own page tables (no user space).
pub fn activate_kernel() {
    load_tables(KERNEL.get().expect("pmap::init ran").0, 0);
}

/// (c) Per CPU, under PV: the kernel L4 it loaded last (Xen keeps CR3).
static PV_LOADED: [AtomicU64; super::percpu::MAX_CPUS] =
    [const { AtomicU64::new(0) }; super::percpu::MAX_CPUS];

/// The page tables this CPU runs on (its top table's address).
fn loaded_root() -> u64 {
    if super::is_pv() {
        PV_LOADED[super::percpu::id()].load(Ordering::Relaxed)
    } else {
        Cr3::read().0.start_address().as_u64()
    }
}

/// Loads the tables at `pa` (PV: with `user` as the user-mode L4, 0 for
/// none).
fn load_tables(pa: u64, user: u64) {
    if !super::is_pv() {
        load_cr3(pa);
        return;
    }
    let cpu = super::percpu::id();
    if PV_LOADED[cpu].load(Ordering::Relaxed) == pa {
        return;
    }
    super::pv::flush_entries();
    let mfn = |a: u64| if a == 0 { 0 } else { super::pv::mfn(a / PAGE) };
    let ops = [
        super::pv::ext(MMUEXT_NEW_BASEPTR, mfn(pa)),
        super::pv::ext(MMUEXT_NEW_USER_BASEPTR, mfn(user)),
    ];
    // SAFETY: both are pinned L4s whose slot 0 is the kernel half (or the
    // user one is none), so the running code stays mapped.
    unsafe { super::pv::mmuext(&ops) };
    PV_LOADED[cpu].store(pa, Ordering::Relaxed);
}

fn load_cr3(pa: u64) {
    if Cr3::read().0.start_address().as_u64() != pa {
        // SAFETY: `pa` is a PML4 whose slot 0 is the kernel half, so the
        // code and data running now stay mapped at the same addresses.
        unsafe {
            Cr3::write(
                PhysFrame::from_start_address_unchecked(PhysAddr::new(pa)),
                Cr3Flags::empty(),
            )
        };
    }
}

/// The table entry at `index` of the table at physical address `table`.
fn entry(table: u64, index: u64) -> *mut u64 {
    (table + index * 8) as *mut u64
}

/// The entry at `p`, its frame pseudo-physical (PV tables hold machine
/// frames; a grant entry reads as its bound hole frame, with
/// [`PTE_GRANT`]).
fn read(p: *mut u64) -> u64 {
    if super::is_pv() {
        match super::pv_grant::lookup(p as u64) {
            Some(Some(g)) => return grant_bits(g),
            // Its unmap is queued, maybe a plain entry after it.
            Some(None) => {
                return super::pv::queued_entry(p as u64).map_or(0, super::pv::entry_to_pseudo);
            }
            None => {}
        }
        // A write still queued is the entry's value.
        let raw = super::pv::queued_entry(p as u64).unwrap_or_else(|| {
            // SAFETY: as below.
            unsafe { p.read_volatile() }
        });
        return super::pv::entry_to_pseudo(raw);
    }
    // SAFETY: `p` points into a page-table page of a live pmap, whose
    // memory is identity-mapped RAM; the caller holds that pmap's lock.
    unsafe { p.read_volatile() }
}

/// PV: the grant entry a value with [`PTE_GRANT`] asks for (writable
/// only if the grant is).
fn grant_entry(v: u64) -> super::pv_grant::GrantEntry {
    let pa = v & PTE_ADDR;
    super::pv_grant::GrantEntry {
        pa,
        writable: v & PTE_W != 0 && super::pv_grant::bound(pa) == Some(false),
        wired: v & PTE_WIRED != 0,
    }
}

/// PV: whether value `v` ([`PTE_GRANT`]) maps what grant entry `old` does,
/// with the same rights: then only the wired bit may change.
fn same_grant(v: u64, old: super::pv_grant::GrantEntry) -> bool {
    let new = grant_entry(v);
    new.pa == old.pa && new.writable == old.writable
}

/// PV: queues a grant entry for value `v` ([`PTE_GRANT`]) at the empty
/// slot `p` of `pmap`, for user address `va`; Xen makes it when the
/// operation's maps are handed over ([`Pmap::settle`]).
fn write_grant(p: *mut u64, v: u64, va: u64, pmap: &Weak<Pmap>) -> Result<(), KernResult> {
    super::pv_grant::queue_map(p as u64, grant_entry(v), va, pmap.clone())
        .map_err(|_| KernResult::Failure)
}

/// The value a grant entry reads as.
fn grant_bits(g: super::pv_grant::GrantEntry) -> u64 {
    let mut v = g.pa | PTE_P | PTE_U | PTE_NX | PTE_AD | PTE_GRANT;
    if g.writable {
        v |= PTE_W;
    }
    if g.wired {
        v |= PTE_WIRED;
    }
    v
}

/// Sets the entry at `p` to `v` (a pseudo-physical frame): a store, or
/// under PV a write queued for one `mmu_update` per operation (the tables
/// are read-only to us), which [`Shootdown`] flushes before it
/// invalidates and when it goes. A grant entry (PV, [`PTE_GRANT`]) is
/// only ever removed here (`v` 0), by an unmap queued in its stead; the
/// pmap makes one with [`write_grant`].
fn write(p: *mut u64, v: u64) {
    if super::is_pv() {
        if let Some(Some(old)) = super::pv_grant::lookup(p as u64) {
            if v & PTE_GRANT != 0 && same_grant(v, old) {
                super::pv_grant::set_wired(p as u64, v & PTE_WIRED != 0);
                return;
            }
            debug_assert_eq!(v, 0, "a grant entry changed in place");
            super::pv_grant::queue_unmap(p as u64);
            return;
        }
        // SAFETY: as for `read`; Xen checks the entry when it is flushed.
        unsafe { super::pv::queue_entry(p as u64, v) };
        return;
    }
    // SAFETY: as for `read`.
    unsafe { p.write_volatile(v) }
}

fn index(va: u64, level: u32) -> u64 {
    (va >> (12 + 9 * level)) & 511
}

fn leaf_bits(prot: Prot, uncached: bool) -> u64 {
    let mut bits = PTE_P | PTE_U;
    if prot.contains(Prot::WRITE) {
        bits |= PTE_W;
    }
    if !prot.contains(Prot::EXECUTE) {
        bits |= PTE_NX;
    }
    if uncached {
        bits |= PTE_PCD | PTE_PWT;
    }
    bits
}

/// The bits of a leaf entry that `enter` or `enter_large` makes for
/// `page` (the first of the run) with `prot` and `flags`: the cache mode
/// is the page's memory attribute. A new entry in a mapping list is heap
/// a process can grow without bound (the same pages mapped again and
/// again): a managed mapping is refused once the heap is down to its
/// reserve.
fn enter_bits(page: PageId, prot: Prot, flags: EnterFlags) -> Result<u64, KernResult> {
    if flags.contains(EnterFlags::MANAGED) && !crate::heap::has_room_for_user() {
        return Err(KernResult::ResourceShortage);
    }
    let uncached = mem::domain().page(page).memattr() != MemAttr::WriteBack;
    let mut bits = leaf_bits(prot, uncached);
    if flags.contains(EnterFlags::WIRED) {
        bits |= PTE_WIRED;
    }
    Ok(bits)
}

/// Whether two values of a leaf entry translate alike: they differ at
/// most in the software wired bit, which the CPU ignores, so changing one
/// into the other needs no invalidation (`pmap_unwire` flushes nothing).
fn same_for_tlb(a: u64, b: u64) -> bool {
    a & !PTE_WIRED == b & !PTE_WIRED
}

/// A page table reached by a walk: the slot of a 4 KiB entry, or of a
/// 2 MiB entry in the page directory.
enum Slot {
    Small(*mut u64),
    Large(*mut u64),
}

/// Page tables of one address space (`struct pmap`).
pub struct Pmap {
    /// (i) The PML4's physical address, fixed for the pmap's life.
    root: u64,
    /// (i) PV: the user-mode L4 (user slots only), 0 under PVH.
    user_root: u64,
    /// (a) CPUs that may hold TLB entries of this address space.
    active: AtomicU64,
    inner: Mutex<PmapInner>, // (l)
    /// Ourselves, for the mapping lists.
    this: Weak<Pmap>,
}

struct PmapInner {
    /// Physical address of the PML4.
    pml4: u64,
    /// PV: the user-mode L4, which links the same user tables; 0 under
    /// PVH.
    user_pml4: u64,
    /// Every page-table page, the PML4 first; freed with the pmap.
    tables: Vec<PageId>,
    /// Pages mapped (4 KiB units).
    resident: u64,
    /// 2 MiB entries standing.
    large: u64,
}

/// Invalidations collected during one operation.
struct Shootdown<'a> {
    pmap: &'a Pmap,
    pages: Vec<u64>,
    overflow: bool,
}

/// A remote CPU's part of a shootdown, on the sender's stack until every
/// target ran it.
struct FlushRequest<'a> {
    root: u64,
    active: &'a AtomicU64,
    /// `None`: a full flush.
    pages: Option<&'a [u64]>,
}

/// Invalidates `pages` on this CPU (`None`: its whole TLB, by a reload of
/// CR3).
fn invalidate(pages: Option<&[u64]>) {
    if super::is_pv() {
        // `invlpg` and CR3 are Xen's: one `mmuext_op` call for the lot.
        let ops: Vec<_> = match pages {
            Some(pages) => pages
                .iter()
                .map(|&va| super::pv::ext(MMUEXT_INVLPG_LOCAL, va))
                .collect(),
            None => alloc::vec![super::pv::ext(MMUEXT_TLB_FLUSH_LOCAL, 0)],
        };
        // SAFETY: flushes only.
        unsafe { super::pv::mmuext(&ops) };
        return;
    }
    match pages {
        Some(pages) => {
            for &va in pages {
                x86_64::instructions::tlb::flush(VirtAddr::new(va));
            }
        }
        None => {
            let (frame, flags) = Cr3::read();
            // SAFETY: reloading the current CR3 value only flushes the TLB.
            unsafe { Cr3::write(frame, flags) };
        }
    }
}

/// Flushes this CPU's TLB for the request at `arg` (a `FlushRequest`),
/// or leaves the pmap's set if this CPU no longer runs it.
fn flush_here(arg: usize) {
    // SAFETY: `arg` is the address of a `FlushRequest` that its sender
    // keeps alive until every target has returned from here.
    let req = unsafe { &*(arg as *const FlushRequest<'_>) };
    if loaded_root() != req.root {
        req.active
            .fetch_and(!(1 << super::percpu::id()), Ordering::SeqCst);
        return;
    }
    invalidate(req.pages);
}

impl Drop for Shootdown<'_> {
    /// PV: every operation ends with its queued writes written, whatever
    /// path it leaves by, but within a batch ([`Pmap::batch`]).
    fn drop(&mut self) {
        if super::is_pv() && !super::pv::deferring() {
            super::pv::flush_entries();
        }
    }
}

impl<'a> Shootdown<'a> {
    fn new(pmap: &'a Pmap) -> Self {
        Self {
            pmap,
            pages: Vec::new(),
            overflow: false,
        }
    }

    fn add(&mut self, va: u64, npages: u64) {
        if self.overflow {
            return;
        }
        if self.pages.len() as u64 + npages > INVLPG_MAX {
            self.overflow = true;
            self.pages.clear();
        } else {
            self.pages.extend((0..npages).map(|i| va + i * PAGE));
        }
    }

    fn finish(self) {
        if !self.overflow && self.pages.is_empty() {
            // Nothing to invalidate: a batch's writes may wait for its end.
            if super::is_pv() && !super::pv::deferring() {
                super::pv::flush_entries();
            }
            return;
        }
        if super::is_pv() {
            super::pv::flush_entries();
        }
        let me = super::percpu::id();
        if loaded_root() == self.pmap.root {
            invalidate((!self.overflow).then_some(&self.pages[..]));
            if self.overflow {
                FULL_FLUSHES.fetch_add(1, Ordering::Relaxed);
            } else {
                INVLPG.fetch_add(self.pages.len() as u64, Ordering::Relaxed);
            }
        }
        // Read after the tables changed: see the module's doc.
        let remote = self.pmap.active.load(Ordering::SeqCst) & !(1 << me);
        if remote == 0 {
            return;
        }
        let Some(call) = REMOTE_CALL.get() else {
            return;
        };
        let req = FlushRequest {
            root: self.pmap.root,
            active: &self.pmap.active,
            pages: (!self.overflow).then_some(&self.pages[..]),
        };
        SHOOTDOWNS.fetch_add(1, Ordering::Relaxed);
        SHOOTDOWN_IPIS.fetch_add(u64::from(remote.count_ones()), Ordering::Relaxed);
        SHOOTDOWN_PAGES.fetch_add(
            self.pages.len() as u64 * u64::from(remote.count_ones()),
            Ordering::Relaxed,
        );
        call(remote, flush_here, &req as *const FlushRequest<'_> as usize);
    }
}

impl Pmap {
    /// A new address space: the kernel half and an empty user half
    /// (`pmap_pinit`). `ENOMEM` when no page is free for the PML4.
    pub fn new() -> Result<Arc<Self>, Errno> {
        let (_, slot0) = *KERNEL.get().expect("pmap::init ran");
        let (tables, pml4, user_pml4) = if super::is_pv() {
            new_pv_roots(slot0)?
        } else {
            let (id, pml4) = alloc_table()?;
            write(entry(pml4, 0), slot0);
            (alloc::vec![id], pml4, 0)
        };
        Ok(Arc::new_cyclic(|this| Self {
            root: pml4,
            user_root: user_pml4,
            active: AtomicU64::new(0),
            inner: Mutex::new(PmapInner {
                pml4,
                user_pml4,
                tables,
                resident: 0,
                large: 0,
            }),
            this: this.clone(),
        }))
    }

    /// Makes this the address space of the CPU (`pmap_activate`). Takes
    /// no lock: a CPU may call it with interrupts off while another holds
    /// this pmap's lock and waits for its shootdown.
    pub fn activate(&self) {
        self.active
            .fetch_or(1 << super::percpu::id(), Ordering::SeqCst);
        load_tables(self.root, self.user_root);
    }

    /// Pages mapped now, in 4 KiB units.
    pub fn resident(&self) -> u64 {
        self.inner.lock().resident
    }

    /// 2 MiB entries standing now.
    pub fn large_entries(&self) -> u64 {
        self.inner.lock().large
    }

    /// Leaf entries standing now: 4 KiB entries plus 2 MiB entries.
    pub fn leaf_entries(&self) -> u64 {
        let g = self.inner.lock();
        g.resident - g.large * (LARGE_PAGES - 1)
    }

    /// Runs `f(entry, va, large)` on every present leaf of `[sva, eva)`
    /// (`large`: a 2 MiB entry, at its aligned `va`); `Some(v)` replaces
    /// it with `v`, `None` removes it; only changes the CPU sees are
    /// invalidated. Large entries not wholly inside the range are demoted
    /// first.
    fn for_each_mapping(
        &self,
        sva: u64,
        eva: u64,
        mut f: impl FnMut(u64, u64, bool) -> Option<u64>,
    ) {
        let mut g = self.inner.lock();
        let mut sd = Shootdown::new(self);
        let mut va = sva.max(USER_MIN) & !(PAGE - 1);
        let eva = eva.min(USER_END);
        while va < eva {
            // Skip unmapped tables quickly.
            if read(entry(g.pml4, index(va, 3))) & PTE_P == 0 {
                va = (va | ((1 << 39) - 1)) + 1;
                continue;
            }
            let Some(pd) = g.table_at(va, 2, false).ok().flatten() else {
                va = (va | ((1 << 30) - 1)) + 1;
                continue;
            };
            let pde_slot = entry(pd, index(va, 1));
            let pde = read(pde_slot);
            if pde & PTE_P == 0 {
                va = (va | (LARGE - 1)) + 1;
                continue;
            }
            if pde & PTE_PS != 0 {
                let base = va & !(LARGE - 1);
                if va == base && base + LARGE <= eva {
                    let pa = pde & PDE_LARGE_ADDR;
                    match f(pde, base, true) {
                        Some(v) if same_for_tlb(v, pde) => write(pde_slot, v),
                        Some(v) => {
                            write(pde_slot, v);
                            sd.add(base, LARGE_PAGES);
                        }
                        None => {
                            write(pde_slot, 0);
                            g.resident -= LARGE_PAGES;
                            g.large -= 1;
                            for i in 0..LARGE_PAGES {
                                pv_remove(pa + i * PAGE, &self.this, base + i * PAGE);
                            }
                            sd.add(base, LARGE_PAGES);
                        }
                    }
                    va = base + LARGE;
                    continue;
                }
                if g.demote(pde_slot, &mut sd).is_err() {
                    // No page for the table: drop the whole 2 MiB instead,
                    // which a fault can bring back page by page.
                    write(pde_slot, 0);
                    g.resident -= LARGE_PAGES;
                    g.large -= 1;
                    let pa = pde & PDE_LARGE_ADDR;
                    for i in 0..LARGE_PAGES {
                        pv_remove(pa + i * PAGE, &self.this, base + i * PAGE);
                    }
                    sd.add(base, LARGE_PAGES);
                    va = base + LARGE;
                    continue;
                }
            }
            let pt = read(pde_slot) & PTE_ADDR;
            let slot = entry(pt, index(va, 0));
            let pte = read(slot);
            if pte & PTE_P != 0 {
                match f(pte, va, false) {
                    Some(v) if same_for_tlb(v, pte) => write(slot, v),
                    Some(v) if pte & PTE_GRANT != 0 && !same_grant(v, grant_entry(pte)) => {
                        // Xen's entry: new rights by an unmap and a map.
                        write(slot, 0);
                        if write_grant(slot, v, va, &self.this).is_err() {
                            g.forget(&self.this, pte & PTE_ADDR, va);
                        }
                        sd.add(va, 1);
                    }
                    Some(v) => {
                        write(slot, v);
                        sd.add(va, 1);
                    }
                    None => {
                        write(slot, 0);
                        g.resident -= 1;
                        pv_remove(pte & PTE_ADDR, &self.this, va);
                        sd.add(va, 1);
                    }
                }
            }
            va += PAGE;
        }
        sd.finish();
        self.settle(&mut g);
    }

    /// PV: unless a batch runs ([`VmPmap::batch`] does it at its end),
    /// hands this CPU's queued grant maps to Xen and takes those it
    /// refused out of this pmap's counts and mapping lists (the refused
    /// entries stay empty); returns whether it refused any. Called with
    /// the lock held, after the operation's other changes: no other CPU
    /// sees the slots meanwhile.
    fn settle(&self, g: &mut PmapInner) -> bool {
        if !super::is_pv() || super::pv::deferring() {
            return false;
        }
        let refused = super::pv_grant::flush_maps();
        for r in &refused {
            debug_assert!(Weak::ptr_eq(&r.pmap, &self.this));
            g.forget(&self.this, r.pa, r.va);
        }
        !refused.is_empty()
    }
}

impl VmPmap for Pmap {
    /// `pmap_enter`: replaces any mapping of `va`; a wired mapping stays
    /// wired (and must map the same page). The cache mode is the page's
    /// memory attribute. Promotes the page table to a 2 MiB entry when
    /// this completes an aligned, physically contiguous run of 512 pages
    /// with the same rights (`pmap_promote_pde`).
    fn enter(
        &self,
        va: u64,
        page: PageId,
        pa: u64,
        prot: Prot,
        flags: EnterFlags,
    ) -> Result<(), KernResult> {
        debug_assert!((USER_MIN..USER_END).contains(&va) && va.is_multiple_of(PAGE));
        let mut bits = enter_bits(page, prot, flags)?;
        // PV: a hole frame bound to a grant is mapped by Xen.
        let grant = super::is_pv() && super::pv_grant::bound(pa).is_some();
        if grant {
            bits |= PTE_GRANT;
        }
        let mut g = self.inner.lock();
        let mut sd = Shootdown::new(self);
        let slot = match g
            .walk(va, true, &mut sd)
            .map_err(|_| KernResult::ResourceShortage)?
        {
            Some(Slot::Small(p)) => p,
            _ => unreachable!("a creating walk ends at a page table"),
        };
        let old = read(slot);
        if old & PTE_P != 0 {
            if old & PTE_ADDR == pa {
                // Same page: only the rights change; a wiring stays.
                let new = pa | bits | (old & PTE_WIRED);
                if grant && !same_grant(new, grant_entry(old)) {
                    write(slot, 0);
                    if write_grant(slot, new, va, &self.this).is_err() {
                        g.forget(&self.this, pa, va);
                    }
                } else {
                    write(slot, new);
                }
                sd.add(va, 1);
                let dead = g.promote(va, &mut sd);
                sd.finish();
                let refused = self.settle(&mut g);
                drop(g);
                free_table(dead);
                return if refused {
                    Err(KernResult::Failure)
                } else {
                    Ok(())
                };
            }
            debug_assert!(old & PTE_WIRED == 0, "replacing a wired mapping");
            write(slot, 0);
            g.resident -= 1;
            pv_remove(old & PTE_ADDR, &self.this, va);
            sd.add(va, 1);
        }
        if grant {
            write_grant(slot, pa | bits, va, &self.this)?;
        } else {
            write(slot, pa | bits);
        }
        g.resident += 1;
        if flags.contains(EnterFlags::MANAGED) {
            pv_insert(page, &self.this, va);
        }
        let dead = g.promote(va, &mut sd);
        sd.finish();
        let refused = self.settle(&mut g);
        drop(g);
        free_table(dead);
        if refused {
            return Err(KernResult::Failure);
        }
        Ok(())
    }

    /// `pmap_enter` with `psind` 1: one 2 MiB entry for 512 contiguous
    /// pages. What the range held goes first: a 2 MiB entry, or a page
    /// table whose entries are removed and which is freed after the
    /// shootdown (no CPU may walk it any more by then).
    fn enter_large(
        &self,
        va: u64,
        pages: &[PageId],
        pa: u64,
        prot: Prot,
        flags: EnterFlags,
    ) -> Result<(), KernResult> {
        debug_assert!(
            (USER_MIN..USER_END).contains(&va)
                && va.is_multiple_of(LARGE)
                && pa.is_multiple_of(LARGE)
                && pages.len() as u64 == LARGE_PAGES
        );
        if super::is_pv() {
            // No 2 MiB entries without Xen's superpage support: the run
            // goes in as 512 entries.
            for (i, &id) in (0..).zip(pages) {
                self.enter(va + i * PAGE, id, pa + i * PAGE, prot, flags)?;
            }
            return Ok(());
        }
        let d = mem::domain();
        let bits = enter_bits(pages[0], prot, flags)? | PTE_PS;
        let mut g = self.inner.lock();
        let mut sd = Shootdown::new(self);
        let pd = g
            .table_at(va, 2, true)
            .map_err(|_| KernResult::ResourceShortage)?
            .ok_or(KernResult::ResourceShortage)?;
        let slot = entry(pd, index(va, 1));
        let old = read(slot);
        let mut dead_table = None;
        if old & PTE_P != 0 {
            if old & PTE_PS != 0 {
                debug_assert!(old & PTE_WIRED == 0, "replacing a wired mapping");
                let opa = old & PDE_LARGE_ADDR;
                for i in 0..LARGE_PAGES {
                    pv_remove(opa + i * PAGE, &self.this, va + i * PAGE);
                }
                g.resident -= LARGE_PAGES;
                g.large -= 1;
            } else {
                let pt = old & PTE_ADDR;
                for i in 0..LARGE_PAGES {
                    let pte = read(entry(pt, i));
                    if pte & PTE_P != 0 {
                        debug_assert!(pte & PTE_WIRED == 0, "replacing a wired mapping");
                        pv_remove(pte & PTE_ADDR, &self.this, va + i * PAGE);
                        g.resident -= 1;
                    }
                }
                let id = d.phys.phys_to_page(pt).expect("page tables are RAM");
                g.tables.retain(|&t| t != id);
                dead_table = Some(id);
            }
            // The TLB and paging-structure caches may hold the old entries.
            sd.overflow = true;
        }
        write(slot, pa | bits);
        g.resident += LARGE_PAGES;
        g.large += 1;
        if flags.contains(EnterFlags::MANAGED) {
            for (i, &id) in (0..).zip(pages) {
                pv_insert(id, &self.this, va + i * PAGE);
            }
        }
        LARGE_MAPPINGS.fetch_add(1, Ordering::Relaxed);
        sd.finish();
        drop(g);
        free_table(dead_table);
        Ok(())
    }

    fn remove(&self, start: u64, end: u64) {
        self.for_each_mapping(start, end, |_, _, _| None);
    }

    fn protect(&self, start: u64, end: u64, prot: Prot) {
        if !prot.contains(Prot::READ) {
            self.remove(start, end);
            return;
        }
        self.for_each_mapping(start, end, |pte, _, _| {
            let mut v = pte;
            if !prot.contains(Prot::WRITE) {
                v &= !PTE_W;
            }
            if !prot.contains(Prot::EXECUTE) {
                v |= PTE_NX;
            }
            Some(v)
        });
    }

    /// `pmap_extract`, with the offset of `va` in its page kept in the
    /// physical address.
    fn extract(&self, va: u64) -> Option<(u64, Prot)> {
        let mut g = self.inner.lock();
        let mut sd = Shootdown::new(self);
        let (pte, pa) = match g.walk(va, false, &mut sd).ok()?? {
            Slot::Small(p) => {
                let pte = Some(read(p)).filter(|v| v & PTE_P != 0)?;
                (pte, (pte & PTE_ADDR) | (va % PAGE))
            }
            Slot::Large(p) => (read(p), (read(p) & PDE_LARGE_ADDR) | (va % LARGE)),
        };
        let mut prot = Prot::READ;
        if pte & PTE_W != 0 {
            prot |= Prot::WRITE;
        }
        if pte & PTE_NX == 0 {
            prot |= Prot::EXECUTE;
        }
        Some((pa, prot))
    }

    fn remove_all(&self, page: PageId) {
        remove_all(page);
    }

    /// Under PV the batch's leaf writes go to Xen together, in calls of
    /// up to 512 entries (`arch::pv`'s queue), when `f` returns.
    fn batch(&self, f: &mut dyn FnMut()) -> Result<(), KernResult> {
        if !super::is_pv() {
            f();
            return Ok(());
        }
        super::pv::set_deferring(true);
        f();
        super::pv::set_deferring(false);
        // The grant entries of the batch, in one map call: those refused
        // come out of their pmaps' counts (this pmap's: the batch held no
        // lock of it).
        let refused = super::pv_grant::flush_maps();
        for r in &refused {
            if let Some(p) = r.pmap.upgrade() {
                p.inner.lock().forget(&r.pmap, r.pa, r.va);
            }
        }
        if refused.is_empty() {
            Ok(())
        } else {
            Err(KernResult::Failure)
        }
    }

    fn extract_and_hold(&self, va: u64, prot: Prot) -> Option<PageId> {
        let mut g = self.inner.lock();
        let mut sd = Shootdown::new(self);
        let (pte, base) = match g.walk(va, false, &mut sd).ok()?? {
            Slot::Small(p) => (read(p), read(p) & PTE_ADDR),
            Slot::Large(p) => (
                read(p),
                (read(p) & PDE_LARGE_ADDR) + ((va % LARGE) & !(PAGE - 1)),
            ),
        };
        if pte & PTE_P == 0 || (prot.contains(Prot::WRITE) && pte & PTE_W == 0) {
            return None;
        }
        let d = mem::domain();
        let id = d.phys.phys_to_page(base)?;
        if d.page(id).wire_mapped()? {
            d.counters.wired.add(1);
        }
        Some(id)
    }

    /// `pmap_unwire`. A wired 2 MiB entry (only `enter_large` makes one:
    /// a wired page table is not promoted) holds a wiring of each of its
    /// 512 pages.
    fn unwire(&self, start: u64, end: u64, unwired: &mut dyn FnMut(PageId)) {
        let phys = mem::phys();
        self.for_each_mapping(start, end, |pte, _, large| {
            if pte & PTE_WIRED != 0 {
                let (pa, n) = if large {
                    (pte & PDE_LARGE_ADDR, LARGE_PAGES)
                } else {
                    (pte & PTE_ADDR, 1)
                };
                for i in 0..n {
                    if let Some(id) = phys.phys_to_page(pa + i * PAGE) {
                        unwired(id);
                    }
                }
            }
            Some(pte & !PTE_WIRED)
        });
    }
}

impl PmapInner {
    /// Takes a mapping of `pa` at `va` that the tables do not hold (a
    /// grant entry Xen refused or was never asked for) out of this
    /// pmap's count and `pmap`'s mapping lists.
    fn forget(&mut self, pmap: &Weak<Pmap>, pa: u64, va: u64) {
        self.resident -= 1;
        pv_remove(pa, pmap, va);
    }

    /// Replaces the page table covering `va` with one 2 MiB entry when its
    /// 512 entries map an aligned, physically contiguous run with the same
    /// bits, none wired (`pmap_promote_pde`); returns the table, which
    /// the caller frees after the shootdown ([`free_table`]). The mapping
    /// lists stay as they are: they list each 4 KiB page of a large entry
    /// at its own address already.
    fn promote(&mut self, va: u64, sd: &mut Shootdown) -> Option<PageId> {
        if super::is_pv() {
            return None;
        }
        let Ok(Some(pd)) = self.table_at(va, 2, false) else {
            return None;
        };
        let pde_slot = entry(pd, index(va, 1));
        let pt = read(pde_slot) & PTE_ADDR;
        let first = read(entry(pt, 0));
        let pa = first & PTE_ADDR;
        let bits = first & !PTE_ADDR & !PTE_AD;
        let same = |i: u64| {
            let e = read(entry(pt, i));
            e & PTE_ADDR == pa + i * PAGE && e & !PTE_ADDR & !PTE_AD == bits
        };
        // The last entry first: a run filled in order is rejected at once
        // until it is complete.
        if first & PTE_P == 0
            || bits & PTE_WIRED != 0
            || !pa.is_multiple_of(LARGE)
            || !same(LARGE_PAGES - 1)
            || !(1..LARGE_PAGES - 1).all(same)
        {
            return None;
        }
        let ad = (0..LARGE_PAGES).fold(0, |acc, i| acc | (read(entry(pt, i)) & PTE_AD));
        write(pde_slot, pa | bits | ad | PTE_PS);
        let id = mem::phys().phys_to_page(pt).expect("page tables are RAM");
        self.tables.retain(|&t| t != id);
        // The TLB and paging-structure caches may hold the old table.
        sd.overflow = true;
        self.large += 1;
        LARGE_MAPPINGS.fetch_add(1, Ordering::Relaxed);
        Some(id)
    }
    /// The table of `level` (3 = PDPT, 2 = PD, 1 = PT) covering `va`,
    /// creating missing ones if `create`. `None` when missing, or when a
    /// large entry stands in the way.
    fn table_at(&mut self, va: u64, level: u32, create: bool) -> Result<Option<u64>, Errno> {
        self.table_at_for(va, level, create, true)
    }

    /// [`table_at`](Self::table_at); `ran`: whether a thread may run in
    /// this address space (a CPU loaded it), so another CPU may walk it
    /// meanwhile.
    fn table_at_for(
        &mut self,
        va: u64,
        level: u32,
        create: bool,
        ran: bool,
    ) -> Result<Option<u64>, Errno> {
        let mut table = self.pml4;
        for l in (level..4).rev() {
            let slot = entry(table, index(va, l));
            let e = read(slot);
            if e & PTE_P == 0 {
                if !create {
                    return Ok(None);
                }
                let (id, pa) = alloc_table()?;
                self.tables.push(id);
                write(slot, pa | PTE_P | PTE_W | PTE_U);
                if l == 3 && self.user_pml4 != 0 {
                    // PV: user mode runs on its own L4, with the same
                    // user tables.
                    write(
                        entry(self.user_pml4, index(va, 3)),
                        pa | PTE_P | PTE_W | PTE_U,
                    );
                }
                if super::is_pv() && super::pv::deferring() && ran {
                    // Within a batch (which holds the lock only entry by
                    // entry) a link is written at once: another CPU's walk
                    // must find the table rather than make a second one.
                    // Else the operation's end writes it, lock held; and
                    // an address space no CPU loaded yet (exec's
                    // prefault) has no other walker that makes tables.
                    super::pv::flush_entries();
                }
            } else if e & PTE_PS != 0 {
                return Ok(None);
            }
            table = read(slot) & PTE_ADDR;
        }
        Ok(Some(table))
    }

    /// The leaf slot for `va`: a page-table entry, or a large entry (which
    /// a creating walk demotes).
    fn walk(&mut self, va: u64, create: bool, sd: &mut Shootdown) -> Result<Option<Slot>, Errno> {
        let ran = sd.pmap.active.load(Ordering::SeqCst) != 0;
        let Some(pd) = self.table_at_for(va, 2, create, ran)? else {
            return Ok(None);
        };
        let pde_slot = entry(pd, index(va, 1));
        let pde = read(pde_slot);
        if pde & PTE_P != 0 && pde & PTE_PS != 0 {
            if !create {
                return Ok(Some(Slot::Large(pde_slot)));
            }
            self.demote(pde_slot, sd)?;
        }
        let Some(pt) = self.table_at_for(va, 1, create, ran)? else {
            return Ok(None);
        };
        Ok(Some(Slot::Small(entry(pt, index(va, 0)))))
    }

    /// Splits the large entry at `pde_slot` into a page table of 512
    /// entries with the same rights (`pmap_demote_pde`).
    fn demote(&mut self, pde_slot: *mut u64, sd: &mut Shootdown) -> Result<(), Errno> {
        let pde = read(pde_slot);
        let (id, pt) = alloc_table()?;
        self.tables.push(id);
        let bits = pde & !PDE_LARGE_ADDR & !PTE_PS;
        let pa = pde & PDE_LARGE_ADDR;
        for i in 0..LARGE_PAGES {
            write(entry(pt, i), (pa + i * PAGE) | bits);
        }
        write(pde_slot, pt | PTE_P | PTE_W | PTE_U);
        self.large -= 1;
        // The old large TLB entry must go; any va inside it names it.
        sd.overflow = true;
        DEMOTIONS.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for Pmap {
    /// Removes any user mapping left and frees the page tables
    /// (`pmap_remove` of the user range, then `pmap_release`). The pmap
    /// must not be active.
    fn drop(&mut self) {
        if self.inner.get_mut().resident != 0 {
            self.remove(USER_MIN, USER_END);
        }
        let phys = &mem::domain().phys;
        if super::is_pv() {
            // Unpinned and loaded nowhere, the L4s stop being tables, and
            // with them every table below; each may then be written again.
            let ops = [
                super::pv::ext(MMUEXT_UNPIN_TABLE, super::pv::mfn(self.root / PAGE)),
                super::pv::ext(MMUEXT_UNPIN_TABLE, super::pv::mfn(self.user_root / PAGE)),
            ];
            // SAFETY: this pmap is loaded on no CPU (the caller's
            // contract), so its tables are in no use.
            unsafe { super::pv::mmuext(&ops) };
        }
        for id in self.inner.get_mut().tables.drain(..) {
            if super::is_pv()
                && let Err(e) = super::pv::set_data_view(phys.page(id).phys_addr())
            {
                // Still a table to Xen: kept rather than reused.
                log::warn!("page table page kept: Xen error {}", e.0);
                continue;
            }
            phys.free_page(id);
        }
    }
}

/// Frees a page table that a 2 MiB entry replaced, if any: only once the
/// shootdown of the change has returned, as until then another CPU's
/// paging-structure caches may still walk it.
fn free_table(table: Option<PageId>) {
    if let Some(id) = table {
        mem::phys().free_page(id);
    }
}

/// A zeroed page-table page from the direct pool (PV: its direct-map
/// view made read-only, as Xen wants of a table).
fn alloc_table() -> Result<(PageId, u64), Errno> {
    let (id, pa) = alloc_zeroed_page()?;
    // PV: read-only in the same `mmu_update` as its link, queued next.
    if super::is_pv() && super::pv::queue_table_view(pa).is_err() {
        mem::phys().free_page(id);
        return Err(Errno::ENOMEM);
    }
    Ok((id, pa))
}

/// A zeroed page from the direct pool.
fn alloc_zeroed_page() -> Result<(PageId, u64), Errno> {
    let d = mem::domain();
    let id = d.phys.alloc_page(FreePool::Direct).ok_or(Errno::ENOMEM)?;
    let pa = d.page(id).phys_addr();
    d.mem().zero_page(pa);
    Ok((id, pa))
}

/// PV: a process's two L4s, pinned: the kernel's (the kernel half in
/// slot 0, `slot0` raw as the boot L4 holds it, and the user slots) and
/// user mode's (the user slots only). Returns the table list, the
/// kernel's L4 and the user's.
fn new_pv_roots(slot0: u64) -> Result<(Vec<PageId>, u64, u64), Errno> {
    let (id, pml4) = alloc_zeroed_page()?;
    let (uid, upml4) = match alloc_zeroed_page() {
        Ok(p) => p,
        Err(e) => {
            mem::phys().free_page(id);
            return Err(e);
        }
    };
    // SAFETY: a fresh page, not yet a table: written plainly.
    unsafe { (pml4 as *mut u64).write_volatile(slot0) };
    // Both views read-only in one `mmu_update`, then both pinned.
    let viewed = super::pv::queue_table_view(pml4).and(super::pv::queue_table_view(upml4));
    super::pv::flush_entries();
    let viewed = viewed.map_err(|_| xen::hypercall::XenErrno::ENOMEM);
    let pinned = viewed.and_then(|()| {
        let ops = [
            super::pv::ext(MMUEXT_PIN_L4_TABLE, super::pv::mfn(pml4 / PAGE)),
            super::pv::ext(MMUEXT_PIN_L4_TABLE, super::pv::mfn(upml4 / PAGE)),
        ];
        // SAFETY: two L4s with the kernel half or nothing: pinning
        // only has Xen validate them.
        unsafe { xen::pv::mmuext_op(&ops) }
    });
    if let Err(e) = pinned {
        log::warn!("PV L4 not pinned: Xen error {}", e.0);
        for pa in [pml4, upml4] {
            if super::pv::set_data_view(pa).is_ok() {
                mem::phys().free_page(mem::phys().phys_to_page(pa).expect("RAM"));
            }
        }
        return Err(Errno::ENOMEM);
    }
    Ok((alloc::vec![id, uid], pml4, upml4))
}

fn pv_insert(page: PageId, pmap: &Weak<Pmap>, va: u64) {
    let e = PvEntry {
        pmap: pmap.clone(),
        va,
    };
    match PV.lock().entry(page) {
        Entry::Vacant(v) => {
            v.insert(PvList::One(e));
        }
        Entry::Occupied(mut o) => o.get_mut().push(e),
    }
}

fn pv_remove(pa: u64, pmap: &Weak<Pmap>, va: u64) {
    let Some(id) = mem::phys().phys_to_page(pa) else {
        return;
    };
    let mut pv = PV.lock();
    if pv.get_mut(&id).is_some_and(|list| list.remove(pmap, va)) {
        pv.remove(&id);
    }
}

/// Number of mappings of managed page `page`.
pub fn mapping_count(page: PageId) -> usize {
    PV.lock().get(&page).map_or(0, PvList::len)
}

/// Removes every mapping of managed page `page`, in every address space
/// (`pmap_remove_all`).
pub fn remove_all(page: PageId) {
    let (one, many) = match PV.lock().remove(&page) {
        Some(PvList::One(e)) => (Some(e), Vec::new()),
        Some(PvList::Many(v)) => (None, v),
        None => (None, Vec::new()),
    };
    let pa = mem::domain().page(page).phys_addr();
    for e in one.into_iter().chain(many) {
        let Some(pmap) = e.pmap.upgrade() else {
            continue;
        };
        // A 2 MiB entry holding the page is cut by the one-page range:
        // demoted first (or dropped whole if no table page is free).
        pmap.for_each_mapping(e.va, e.va + PAGE, |pte, _, large| {
            debug_assert!(!large, "a one-page range never covers a 2 MiB entry");
            (pte & PTE_ADDR != pa).then_some(pte)
        });
    }
}
