//! What a 64-bit PV guest asks of Xen that a PVH guest does not: checked
//! page-table writes (`mmu_update`, batched by [`MmuBatch`]), extended MMU
//! operations, the virtual IDT, callbacks and segment bases; and the boot
//! page-table builder [`TableBuilder`], which maps pseudo-physical frames
//! at their own addresses the way Xen accepts it.
//!
//! # Xen's rules for page tables (`shared/notes/pv.md`)
//! Entries hold machine frame numbers. A frame in use as a page table may
//! be mapped read-only only, anywhere; Xen refuses to link a frame as a
//! table while a writable mapping of it exists, and refuses a writable
//! mapping of a table. So a new table is filled while it is still an
//! ordinary page, its own mapping is made read-only, and only then is it
//! linked into its parent, all by `mmu_update`, whose requests Xen applies
//! in order. The builder works over [`PvMemory`] and [`MmuOps`], which the
//! kernel implements with the direct map and hypercalls and the host tests
//! with a simulated MMU that applies these rules (`tests/pv_tables.rs`).

use core::ops::Range;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::abi::pv::{
    CALLBACKOP_REGISTER, CallbackRegister, MMU_NORMAL_PT_UPDATE, MmuUpdate, MmuextOp, TrapInfo,
    XENVER_VERSION,
};
use crate::abi::{DOMID_SELF, op};
use crate::hypercall::{self, XenErrno};

/// Present.
pub const PTE_P: u64 = 1 << 0;
/// Writable.
pub const PTE_RW: u64 = 1 << 1;
/// User-accessible.
pub const PTE_U: u64 = 1 << 2;
/// Accessed.
pub const PTE_A: u64 = 1 << 5;
/// Dirty.
pub const PTE_D: u64 = 1 << 6;
/// No execute.
pub const PTE_NX: u64 = 1 << 63;
/// The machine frame number bits of an entry (bits 12-51).
pub const PTE_FRAME: u64 = 0x000f_ffff_ffff_f000;

/// Flags of an entry that links a lower-level table.
pub const TABLE_FLAGS: u64 = PTE_P | PTE_RW | PTE_U | PTE_A;
/// Flags of a writable leaf entry of the kernel's direct map.
pub const DATA_FLAGS: u64 = PTE_P | PTE_RW | PTE_U | PTE_A | PTE_D;
/// Flags of the direct map's read-only view of a page-table page.
pub const TABLE_VIEW_FLAGS: u64 = PTE_P | PTE_U | PTE_A;

/// Entries per table.
pub const ENTRIES: usize = 512;
/// Bytes a page.
const PAGE: u64 = crate::abi::PAGE_SIZE as u64;

/// A p2m entry that names no frame (a ballooned-out pfn).
pub const INVALID_MFN: u64 = !0;

/// (a) Page-table entries written through `mmu_update` since boot, and
/// the calls that wrote them.
static UPDATES: AtomicU64 = AtomicU64::new(0);
static UPDATE_CALLS: AtomicU64 = AtomicU64::new(0);

/// Entries written by `mmu_update` and calls made, since boot: their
/// ratio is the batching the bulk paths reach.
pub fn update_counts() -> (u64, u64) {
    (
        UPDATES.load(Ordering::Relaxed),
        UPDATE_CALLS.load(Ordering::Relaxed),
    )
}

/// Where checked page-table writes go: Xen, or a simulated MMU.
pub trait MmuOps {
    /// Applies `reqs` in order (`mmu_update`), all or an error.
    ///
    /// # Safety
    /// Every request must leave the address space sound for the caller:
    /// no Rust reference may lose its backing page or change its page.
    unsafe fn mmu_update(&mut self, reqs: &[MmuUpdate]) -> Result<(), XenErrno>;
}

/// Xen's own `mmu_update`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Xen;

impl MmuOps for Xen {
    unsafe fn mmu_update(&mut self, reqs: &[MmuUpdate]) -> Result<(), XenErrno> {
        // SAFETY: forwarded to the caller's contract.
        unsafe { mmu_update(reqs) }
    }
}

/// Hypercall `op` over the array `items` for our own domain (the form of
/// `mmu_update` and `mmuext_op`); returns its result and how many items
/// Xen applied.
///
/// # Safety
/// `items` must be what `op` takes, and each must leave the address space
/// sound for the caller.
unsafe fn batch_call<T>(op: u32, items: &[T]) -> (i64, u32) {
    let mut done: u32 = 0;
    // SAFETY: `items` is readable for its length and `done` writable for
    // the call; the caller vouches for the items.
    let r = unsafe {
        hypercall::raw(
            op,
            items.as_ptr() as u64,
            items.len() as u64,
            &raw mut done as u64,
            u64::from(DOMID_SELF),
            0,
        )
    };
    (r, done)
}

/// `mmu_update` on our own page tables: applies `reqs` in order.
///
/// # Safety
/// As [`MmuOps::mmu_update`].
pub unsafe fn mmu_update(reqs: &[MmuUpdate]) -> Result<(), XenErrno> {
    if reqs.is_empty() {
        return Ok(());
    }
    // SAFETY: the caller vouches for what the entries map.
    let (r, done) = unsafe { batch_call(op::MMU_UPDATE, reqs) };
    UPDATE_CALLS.fetch_add(1, Ordering::Relaxed);
    UPDATES.fetch_add(u64::from(done), Ordering::Relaxed);
    XenErrno::check(r)?;
    if done as usize != reqs.len() {
        return Err(XenErrno::EINVAL);
    }
    Ok(())
}

/// Extended MMU operations (`mmuext_op`), in order.
///
/// # Safety
/// The operations must leave the address space sound for the caller (a
/// new base pointer maps the kernel as the old one did).
pub unsafe fn mmuext_op(ops: &[MmuextOp]) -> Result<(), XenErrno> {
    // SAFETY: the caller vouches for the operations.
    let (r, _) = unsafe { batch_call(op::MMUEXT_OP, ops) };
    XenErrno::check(r).map(|_| ())
}

/// Sets the entry that maps `va` in the current page tables to `pte`
/// (`update_va_mapping`); `flags` says which TLB entries to flush.
///
/// # Safety
/// As [`MmuOps::mmu_update`], for the page at `va`.
pub unsafe fn update_va_mapping(va: u64, pte: u64, flags: u64) -> Result<(), XenErrno> {
    // SAFETY: plain values; the caller vouches for what `va` maps.
    let r = unsafe { hypercall::raw(op::UPDATE_VA_MAPPING, va, pte, flags, 0, 0) };
    UPDATE_CALLS.fetch_add(1, Ordering::Relaxed);
    UPDATES.fetch_add(1, Ordering::Relaxed);
    XenErrno::check(r).map(|_| ())
}

/// Installs the virtual IDT (`set_trap_table`); `table` ends with an
/// all-zero entry.
///
/// # Safety
/// Every address in `table` must be an entry stub that handles Xen's PV
/// exception frame.
pub unsafe fn set_trap_table(table: &[TrapInfo]) -> Result<(), XenErrno> {
    // SAFETY: `table` is readable and zero-terminated (caller).
    let r = unsafe { hypercall::raw(op::SET_TRAP_TABLE, table.as_ptr() as u64, 0, 0, 0, 0) };
    XenErrno::check(r).map(|_| ())
}

/// Registers callback `kind` (`CALLBACKTYPE_*`) at `address`.
///
/// # Safety
/// `address` must be an entry stub for Xen's frame of that callback.
pub unsafe fn register_callback(kind: u16, flags: u16, address: u64) -> Result<(), XenErrno> {
    let mut arg = CallbackRegister {
        kind,
        flags,
        pad: 0,
        address,
    };
    // SAFETY: `arg` is a valid `callback_register` for the call.
    let r = unsafe { hypercall::op_arg(op::CALLBACK_OP, CALLBACKOP_REGISTER, &raw mut arg) };
    XenErrno::check(r).map(|_| ())
}

/// Sets a segment base (`set_segment_base`, `SEGBASE_*`).
pub fn set_segment_base(which: u32, base: u64) -> Result<(), XenErrno> {
    // SAFETY: plain values; a base is only an address, checked by Xen.
    let r = unsafe { hypercall::raw(op::SET_SEGMENT_BASE, u64::from(which), base, 0, 0, 0) };
    XenErrno::check(r).map(|_| ())
}

/// Names the kernel stack Xen switches to on an entry from guest user
/// mode (`stack_switch`).
pub fn stack_switch(ss: u64, sp: u64) -> Result<(), XenErrno> {
    // SAFETY: plain values; Xen uses them only at the next entry.
    let r = unsafe { hypercall::raw(op::STACK_SWITCH, ss, sp, 0, 0, 0) };
    XenErrno::check(r).map(|_| ())
}

/// Xen's version as (major, minor) (`XENVER_version`).
pub fn version() -> (u16, u16) {
    // SAFETY: XENVER_version takes no buffer.
    let r = unsafe { hypercall::raw(op::XEN_VERSION, XENVER_VERSION, 0, 0, 0, 0) };
    ((r >> 16) as u16, r as u16)
}

/// Page-table writes a [`MmuBatch`] gathers before it makes a call.
pub const BATCH: usize = 128;

/// Up to [`BATCH`] page-table writes gathered for one `mmu_update`.
pub struct MmuBatch<M: MmuOps> {
    mmu: M,
    reqs: [MmuUpdate; BATCH],
    len: usize,
}

impl<M: MmuOps> MmuBatch<M> {
    /// An empty batch over `mmu`.
    pub fn new(mmu: M) -> Self {
        Self {
            mmu,
            reqs: [MmuUpdate::default(); BATCH],
            len: 0,
        }
    }

    /// Queues `*entry_ma = val`, flushing first when full.
    ///
    /// # Safety
    /// As [`MmuOps::mmu_update`] for the write, whenever it is flushed.
    pub unsafe fn push(&mut self, entry_ma: u64, val: u64) -> Result<(), XenErrno> {
        if self.len == BATCH {
            // SAFETY: the caller vouched for every queued write.
            unsafe { self.flush() }?;
        }
        self.reqs[self.len] = MmuUpdate {
            ptr: entry_ma | MMU_NORMAL_PT_UPDATE,
            val,
        };
        self.len += 1;
        Ok(())
    }

    /// Writes what is queued.
    ///
    /// # Safety
    /// As [`MmuOps::mmu_update`] for each queued write.
    pub unsafe fn flush(&mut self) -> Result<(), XenErrno> {
        let n = core::mem::take(&mut self.len);
        // SAFETY: the callers of `push` vouched for each write.
        unsafe { self.mmu.mmu_update(&self.reqs[..n]) }
    }

    /// Whether writes are queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The MMU the batch writes to.
    pub fn mmu(&self) -> &M {
        &self.mmu
    }
}

/// The guest's frames as the builder sees them: the p2m and m2p tables,
/// and page contents through the direct map.
pub trait PvMemory {
    /// The machine frame of `pfn`, or [`INVALID_MFN`].
    fn mfn(&self, pfn: u64) -> u64;
    /// The pfn of machine frame `mfn` (the m2p table).
    fn pfn(&self, mfn: u64) -> u64;
    /// Entry `index` of the table in frame `pfn` (mapped, read-only).
    fn read_entry(&self, pfn: u64, index: usize) -> u64;
    /// Writes entry `index` of frame `pfn`, an ordinary page mapped
    /// writable that is not (yet) a table.
    fn write_plain(&mut self, pfn: u64, index: usize, val: u64);
}

/// Why the builder stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// No mapped, writable frame left for a new table.
    NoTableFrame,
    /// A table or page frame has no machine frame in the p2m.
    NoMachineFrame(u64),
    /// The frame given for a new table is not mapped writable.
    TableFrameNotMapped(u64),
    /// Xen refused a batch.
    Xen(XenErrno),
}

impl From<XenErrno> for MapError {
    fn from(e: XenErrno) -> Self {
        Self::Xen(e)
    }
}

/// Index of `va` in its level-`level` table (1 = L1 .. 4 = L4).
pub fn index(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * (level - 1))) & 511) as usize
}

/// Builds and extends page tables whose top is the L4 in frame
/// `root_pfn`, taking frames for new tables from `tables` (frames the
/// direct map already maps writable, in increasing order).
pub struct TableBuilder<'a, P: PvMemory, M: MmuOps> {
    mem: &'a mut P,
    batch: MmuBatch<M>,
    root_pfn: u64,
    tables: Range<u64>,
    /// Tables made so far.
    made: u64,
}

impl<'a, P: PvMemory, M: MmuOps> TableBuilder<'a, P, M> {
    /// A builder over the tables rooted at `root_pfn`.
    pub fn new(mem: &'a mut P, mmu: M, root_pfn: u64, tables: Range<u64>) -> Self {
        Self {
            mem,
            batch: MmuBatch::new(mmu),
            root_pfn,
            tables,
            made: 0,
        }
    }

    /// The frames not yet taken for tables: the first is where the next
    /// table would go.
    pub fn unused(&self) -> Range<u64> {
        self.tables.clone()
    }

    /// Tables made so far.
    pub fn tables_made(&self) -> u64 {
        self.made
    }

    /// The pfn of the table that entry `e` links.
    fn linked(&self, e: u64) -> u64 {
        self.mem.pfn((e & PTE_FRAME) >> 12)
    }

    /// The machine frame of `pfn`.
    fn mfn(&self, pfn: u64) -> Result<u64, MapError> {
        match self.mem.mfn(pfn) {
            INVALID_MFN => Err(MapError::NoMachineFrame(pfn)),
            m => Ok(m),
        }
    }

    /// The pfn of the level-`level` table on the way to `va`, if linked
    /// (level 4 is the root).
    fn table(&self, va: u64, level: u32) -> Option<u64> {
        let mut t = self.root_pfn;
        for l in (level + 1..=4).rev() {
            let e = self.mem.read_entry(t, index(va, l));
            if e & PTE_P == 0 {
                return None;
            }
            t = self.linked(e);
        }
        Some(t)
    }

    /// The machine address of the L1 entry that maps `va`, once its L1 is
    /// linked (flushing queued links if that is what it waits for).
    fn l1_entry(&mut self, va: u64) -> Result<Option<u64>, MapError> {
        if self.table(va, 1).is_none() && !self.batch.is_empty() {
            // SAFETY: each queued write was vouched for when queued.
            unsafe { self.batch.flush() }?;
        }
        match self.table(va, 1) {
            Some(l1) => Ok(Some((self.mfn(l1)? << 12) + 8 * index(va, 1) as u64)),
            None => Ok(None),
        }
    }

    /// Makes a new table, filled with `entries`, linked as entry
    /// `index(va, level + 1)` of `parent`; returns its pfn. Its links are
    /// queued; a caller that walks through it must flush first.
    fn make_table(
        &mut self,
        parent: u64,
        va: u64,
        level: u32,
        entries: &[u64; ENTRIES],
    ) -> Result<u64, MapError> {
        let t = self.tables.start;
        if t >= self.tables.end {
            return Err(MapError::NoTableFrame);
        }
        let mfn = self.mfn(t)?;
        let view = self
            .l1_entry(t * PAGE)?
            .ok_or(MapError::TableFrameNotMapped(t))?;
        let l1 = self
            .table(t * PAGE, 1)
            .ok_or(MapError::TableFrameNotMapped(t))?;
        if self.mem.read_entry(l1, index(t * PAGE, 1)) & (PTE_P | PTE_RW) != PTE_P | PTE_RW {
            return Err(MapError::TableFrameNotMapped(t));
        }
        for (i, &e) in entries.iter().enumerate() {
            self.mem.write_plain(t, i, e);
        }
        self.tables.start += 1;
        self.made += 1;
        let parent_entry = (self.mfn(parent)? << 12) + 8 * index(va, level + 1) as u64;
        // SAFETY: the frame is ours, taken for tables and used by nothing
        // else: its view becomes read-only, then it joins the tables,
        // mapping only what `entries` says the caller wants mapped.
        unsafe {
            self.batch
                .push(view, (mfn << 12) | TABLE_VIEW_FLAGS)
                .map_err(MapError::Xen)?;
            self.batch
                .push(parent_entry, (mfn << 12) | TABLE_FLAGS)
                .map_err(MapError::Xen)?;
        }
        Ok(t)
    }

    /// The pfn of the level-`level` table for `va` (2 or 3), made empty
    /// if missing and flushed so that walks see it.
    fn ensure_upper(&mut self, va: u64, level: u32) -> Result<u64, MapError> {
        if let Some(t) = self.table(va, level) {
            return Ok(t);
        }
        let parent = self.ensure_upper_or_root(va, level + 1)?;
        let t = self.make_table(parent, va, level, &[0; ENTRIES])?;
        // SAFETY: the queued writes were vouched for when queued.
        unsafe { self.batch.flush() }?;
        Ok(t)
    }

    fn ensure_upper_or_root(&mut self, va: u64, level: u32) -> Result<u64, MapError> {
        if level == 4 {
            Ok(self.root_pfn)
        } else {
            self.ensure_upper(va, level)
        }
    }

    /// Maps every frame of `pfns` writable at its own address (`pfn *
    /// 4096`), leaving entries already present alone (the boot region,
    /// tables' read-only views); pfns without a machine frame stay
    /// unmapped.
    ///
    /// # Safety
    /// No frame of `pfns` may be a page table or a grant mapping of the
    /// caller's, and the addresses must be unused.
    pub unsafe fn map_identity(&mut self, pfns: Range<u64>) -> Result<(), MapError> {
        let mut pfn = pfns.start;
        while pfn < pfns.end {
            let va = pfn * PAGE;
            let chunk_end = ((pfn / ENTRIES as u64) + 1) * ENTRIES as u64;
            let end = chunk_end.min(pfns.end);
            let l2 = self.ensure_upper(va, 2)?;
            let e = self.mem.read_entry(l2, index(va, 2));
            if e & PTE_P == 0 {
                // A new L1, filled while it is still an ordinary page.
                let mut entries = [0; ENTRIES];
                for p in pfn..end {
                    entries[index(p * PAGE, 1)] = match self.mem.mfn(p) {
                        INVALID_MFN => 0,
                        m => (m << 12) | DATA_FLAGS,
                    };
                }
                self.make_table(l2, va, 1, &entries)?;
            } else {
                let l1 = self.linked(e);
                let l1_ma = self.mfn(l1)? << 12;
                for p in pfn..end {
                    let i = index(p * PAGE, 1);
                    if self.mem.read_entry(l1, i) & PTE_P != 0 {
                        continue;
                    }
                    let m = self.mem.mfn(p);
                    if m == INVALID_MFN {
                        continue;
                    }
                    // SAFETY: an empty entry of a linked L1 gets a frame
                    // the caller says is ordinary and unused.
                    unsafe {
                        self.batch
                            .push(l1_ma + 8 * i as u64, (m << 12) | DATA_FLAGS)
                    }?;
                }
            }
            pfn = end;
        }
        // SAFETY: every queued write was vouched for above.
        unsafe { self.batch.flush() }?;
        Ok(())
    }

    /// Makes sure an L1 table covers `va` (an empty one if none did), so
    /// that single entries there can be set later; returns its pfn.
    pub fn ensure_l1(&mut self, va: u64) -> Result<u64, MapError> {
        if let Some(t) = self.table(va, 1) {
            return Ok(t);
        }
        let l2 = self.ensure_upper(va, 2)?;
        let t = self.make_table(l2, va, 1, &[0; ENTRIES])?;
        // SAFETY: the queued writes were vouched for when queued.
        unsafe { self.batch.flush() }?;
        Ok(t)
    }

    /// The machine address of the L1 entry for `va`, if an L1 covers it.
    pub fn entry_address(&mut self, va: u64) -> Result<Option<u64>, MapError> {
        self.l1_entry(va)
    }

    /// The MMU the builder writes to.
    pub fn mmu(&self) -> &M {
        self.batch.mmu()
    }
}
