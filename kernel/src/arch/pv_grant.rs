//! Foreign grants in a PV kernel's page tables.
//!
//! A PV guest may not map a frame it does not own with `mmu_update`, and a
//! grant mapping it makes lives in the page-table entry Xen wrote for it:
//! clearing that entry by `mmu_update`, or freeing its table, is an
//! "implicit unmap" for which Xen kills the domain. So under PV a foreign
//! grant is not mapped into a hole frame as under PVH. The hole frame is
//! only *bound* to the grant (domain, reference, read-only), with no
//! hypercall ([`bind`]); each page-table entry that maps the frame is made
//! by Xen with `GNTTABOP_map_grant_ref`
//! (`GNTMAP_host_map | GNTMAP_contains_pte | GNTMAP_application_map`, at
//! the entry's machine address) and removed with
//! `GNTTABOP_unmap_grant_ref` by the same address. The pmap queues those
//! ops per CPU and hands them to Xen in one call each per operation, as it
//! does its `mmu_update`s: all the entries of a populate in one map call,
//! all of a `munmap` in one unmap call. Linux's PV gntdev finds the entries
//! the same way (`apply_to_page_range`), but also maps each grant a second
//! time into the kernel.
//!
//! The kernel itself reaches a bound frame only now and then (an unmap
//! notify's byte, the copy of a private mapping's page): [`with_frame`]
//! maps the grant for that moment at the frame's own address in the
//! direct map and unmaps it again.
//!
//! Order within an operation: queued unmaps go to Xen first (a slot may
//! get a plain entry next), then the `mmu_update`s ([`super::pv`]'s
//! queue: new tables), then the maps, which the pmap hands over itself
//! ([`flush_maps`]) and whose refusals it takes back from its counts.
//!
//! # Locking
//!
//! | state | protection |
//! |---|---|
//! | [`BINDINGS`] | (b) its own lock |
//! | [`ENTRIES`] | (e) its own lock |
//! | each CPU's queues | (c) the CPU's own mutex; filled and drained by the CPU itself while it holds a pmap's lock or runs a pmap batch |
//! | [`FRAME_ACCESS`] | (f) one access at a time |
//! | counters | (a) atomic |
//!
//! Order: pmap lock, then (c), then (e); (b) and (f) alone.

use alloc::collections::BTreeMap;
use alloc::sync::Weak;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;
use vm::Errno;
use xen::abi::DomId;
use xen::abi::grant_table::{
    GNTMAP_application_map, GNTMAP_contains_pte, GNTMAP_host_map, GNTMAP_readonly, GNTST_okay,
    GnttabMapGrantRef, GnttabUnmapGrantRef, GrantHandle, GrantRef,
};

use super::pmap::{PAGE, Pmap};
use super::pv::mfn;

/// The grant a hole frame is bound to.
#[derive(Clone, Copy, Debug)]
struct Binding {
    dom: DomId,
    gref: GrantRef,
    readonly: bool,
}

/// (b) Hole pfn -> the grant bound to it.
static BINDINGS: Mutex<BTreeMap<u64, Binding>> = Mutex::new(BTreeMap::new());

/// A page-table entry that maps a grant, as the pmap sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantEntry {
    /// The bound hole frame's pseudo-physical address.
    pub pa: u64,
    /// Mapped writable.
    pub writable: bool,
    /// Holds a wiring of its page (the pmap's software bit, which an
    /// entry Xen writes cannot carry).
    pub wired: bool,
}

/// A standing grant entry: what the pmap sees, and the handle to unmap it.
#[derive(Clone, Copy, Debug)]
struct Standing {
    entry: GrantEntry,
    handle: GrantHandle,
}

/// (e) Direct-map address of a table slot -> the grant entry Xen made
/// there.
static ENTRIES: Mutex<BTreeMap<u64, Standing>> = Mutex::new(BTreeMap::new());

/// Entries standing or queued on some CPU; lets [`lookup`] skip the maps
/// while there is none.
static LIVE: AtomicU64 = AtomicU64::new(0);

/// A map op waiting for its CPU's [`flush_maps`] (keyed by its slot).
struct PendingMap {
    entry: GrantEntry,
    binding: Binding,
    va: u64,
    pmap: Weak<Pmap>,
}

/// (c) One CPU's queued grant ops, by slot: a populate or `munmap` of
/// 65536 pages queues that many, and each of its reads looks here.
struct Queue {
    unmaps: BTreeMap<u64, GrantHandle>,
    maps: BTreeMap<u64, PendingMap>,
}

static QUEUES: [Mutex<Queue>; super::percpu::MAX_CPUS] = [const {
    Mutex::new(Queue {
        unmaps: BTreeMap::new(),
        maps: BTreeMap::new(),
    })
}; super::percpu::MAX_CPUS];

/// (f) Serialises [`with_frame`].
static FRAME_ACCESS: Mutex<()> = Mutex::new(());

static MAP_CALLS: AtomicU64 = AtomicU64::new(0);
static UNMAP_CALLS: AtomicU64 = AtomicU64::new(0);
static MAPS: AtomicU64 = AtomicU64::new(0);
static MAP_FAILURES: AtomicU64 = AtomicU64::new(0);
static FRAME_ACCESSES: AtomicU64 = AtomicU64::new(0);

/// Counters since boot.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// `GNTTABOP_map_grant_ref` calls that made page-table entries.
    pub map_calls: u64,
    /// `GNTTABOP_unmap_grant_ref` calls that removed them.
    pub unmap_calls: u64,
    /// Entries made.
    pub maps: u64,
    /// Entries Xen refused to make.
    pub map_failures: u64,
    /// [`with_frame`] calls (each one map and one unmap hypercall).
    pub frame_accesses: u64,
}

/// The counters so far.
pub fn stats() -> Stats {
    Stats {
        map_calls: MAP_CALLS.load(Ordering::Relaxed),
        unmap_calls: UNMAP_CALLS.load(Ordering::Relaxed),
        maps: MAPS.load(Ordering::Relaxed),
        map_failures: MAP_FAILURES.load(Ordering::Relaxed),
        frame_accesses: FRAME_ACCESSES.load(Ordering::Relaxed),
    }
}

/// Binds hole frame `pfn` to grant `gref` of domain `dom`: page-table
/// entries that map the frame from now on map the grant.
pub fn bind(pfn: u64, dom: DomId, gref: GrantRef, readonly: bool) {
    BINDINGS.lock().insert(
        pfn,
        Binding {
            dom,
            gref,
            readonly,
        },
    );
}

/// Ends [`bind`]: no page-table entry maps the frame any more (the
/// mappings of the frame went before its object did).
pub fn unbind(pfn: u64) {
    BINDINGS.lock().remove(&pfn);
}

fn binding(pa: u64) -> Option<Binding> {
    BINDINGS.lock().get(&(pa / PAGE)).copied()
}

/// Whether the frame at `pa` is bound to a grant, and whether read-only.
pub fn bound(pa: u64) -> Option<bool> {
    binding(pa).map(|b| b.readonly)
}

/// The machine address of the table slot at direct-map address `slot`.
fn slot_ma(slot: u64) -> u64 {
    (mfn(slot / PAGE) << 12) | (slot % PAGE)
}

/// The grant entry at `slot` as this CPU's operation sees it: `Some(None)`
/// when its unmap is queued (the slot reads empty), `Some(Some(e))` when
/// a grant entry stands there or its map is queued, `None` when the slot
/// holds no grant.
pub fn lookup(slot: u64) -> Option<Option<GrantEntry>> {
    if LIVE.load(Ordering::Relaxed) == 0 {
        return None;
    }
    {
        let q = QUEUES[super::percpu::id()].lock();
        if let Some(m) = q.maps.get(&slot) {
            return Some(Some(m.entry));
        }
        if q.unmaps.contains_key(&slot) {
            return Some(None);
        }
    }
    Some(Some(ENTRIES.lock().get(&slot)?.entry))
}

/// Queues making `entry` at `slot` (an empty L1 slot of `pmap`'s, for
/// user address `va`) for this CPU's next [`flush_maps`]. `Err` if the
/// frame is not bound (any more).
pub fn queue_map(slot: u64, entry: GrantEntry, va: u64, pmap: Weak<Pmap>) -> Result<(), Errno> {
    let binding = binding(entry.pa).ok_or(Errno::EFAULT)?;
    let entry = GrantEntry {
        writable: entry.writable && !binding.readonly,
        ..entry
    };
    let old = QUEUES[super::percpu::id()].lock().maps.insert(
        slot,
        PendingMap {
            entry,
            binding,
            va,
            pmap,
        },
    );
    debug_assert!(old.is_none(), "two maps queued for one slot");
    if old.is_none() {
        LIVE.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Queues removing the grant entry at `slot`, standing or queued.
pub fn queue_unmap(slot: u64) {
    let mut q = QUEUES[super::percpu::id()].lock();
    if q.maps.remove(&slot).is_some() {
        // Never handed to Xen: dropped.
        LIVE.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    let handle = ENTRIES.lock().get(&slot).map(|s| s.handle);
    match handle {
        Some(h) => {
            q.unmaps.insert(slot, h);
        }
        None => panic!("pv_grant: unmap of slot {slot:#x}, which holds no grant"),
    }
}

/// Sets the wired attribute of the grant entry at `slot` (only the
/// pmap's record has it).
pub fn set_wired(slot: u64, wired: bool) {
    let mut q = QUEUES[super::percpu::id()].lock();
    if let Some(m) = q.maps.get_mut(&slot) {
        m.entry.wired = wired;
        return;
    }
    drop(q);
    if let Some(s) = ENTRIES.lock().get_mut(&slot) {
        s.entry.wired = wired;
    }
}

/// Hands this CPU's queued unmaps to Xen (one call). Before the
/// `mmu_update`s of the same operation (`super::pv::flush_entries`).
pub fn flush_unmaps() {
    let unmaps = core::mem::take(&mut QUEUES[super::percpu::id()].lock().unmaps);
    if unmaps.is_empty() {
        return;
    }
    let mut ops: Vec<GnttabUnmapGrantRef> = unmaps
        .iter()
        .map(|(&slot, &handle)| GnttabUnmapGrantRef {
            host_addr: slot_ma(slot),
            dev_bus_addr: 0,
            handle,
            status: 0,
        })
        .collect();
    UNMAP_CALLS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: each op removes an entry Xen made for us at that slot, which
    // the pmap no longer uses (its mapping is being removed, and the TLB
    // is invalidated after this call).
    let r = unsafe { xen::gnttab::unmap_grant_ref(&mut ops) };
    if let Some(op) = ops.iter().find(|o| r.is_err() || o.status != GNTST_okay) {
        panic!(
            "pv_grant: unmap of {} grant entries failed (slot {:#x}: {:?}, status {})",
            ops.len(),
            op.host_addr,
            r.err().map(|e| e.0),
            op.status
        );
    }
    let mut e = ENTRIES.lock();
    for slot in unmaps.keys() {
        e.remove(slot);
    }
    LIVE.fetch_sub(unmaps.len() as u64, Ordering::Relaxed);
}

/// An entry Xen refused to make: not in the tables, to be taken out of
/// its pmap's counts and mapping lists.
pub struct Refused {
    /// The pmap it was queued for.
    pub pmap: Weak<Pmap>,
    /// Its user address.
    pub va: u64,
    /// The frame it was to map.
    pub pa: u64,
}

/// Hands this CPU's queued maps to Xen (one call) after its unmaps and
/// `mmu_update`s; returns the entries Xen refused (a bad reference, a
/// peer gone).
pub fn flush_maps() -> Vec<Refused> {
    super::pv::flush_entries();
    let maps = core::mem::take(&mut QUEUES[super::percpu::id()].lock().maps);
    if maps.is_empty() {
        return Vec::new();
    }
    let mut ops: Vec<GnttabMapGrantRef> = maps
        .iter()
        .map(|(&slot, m)| GnttabMapGrantRef {
            host_addr: slot_ma(slot),
            flags: GNTMAP_host_map
                | GNTMAP_contains_pte
                | GNTMAP_application_map
                | if m.entry.writable { 0 } else { GNTMAP_readonly },
            ref_: m.binding.gref,
            dom: m.binding.dom,
            ..Default::default()
        })
        .collect();
    MAP_CALLS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: each slot is an empty entry of a user L1 table of ours
    // (queued so by the pmap under its lock), where Xen puts the grant.
    let r = unsafe { xen::gnttab::map_grant_ref(&mut ops) };
    let mut refused = Vec::new();
    let mut e = ENTRIES.lock();
    for ((slot, m), op) in maps.into_iter().zip(&ops) {
        if r.is_ok() && op.status == GNTST_okay {
            e.insert(
                slot,
                Standing {
                    entry: m.entry,
                    handle: op.handle,
                },
            );
            MAPS.fetch_add(1, Ordering::Relaxed);
        } else {
            LIVE.fetch_sub(1, Ordering::Relaxed);
            MAP_FAILURES.fetch_add(1, Ordering::Relaxed);
            if refused.is_empty() {
                log::warn!(
                    "pv_grant: Xen refused to map grant {} of domain {} at {:#x}: status {}",
                    m.binding.gref,
                    m.binding.dom,
                    m.va,
                    if r.is_ok() { op.status } else { -1 }
                );
            }
            refused.push(Refused {
                pmap: m.pmap,
                va: m.va,
                pa: m.entry.pa,
            });
        }
    }
    refused
}

/// Runs `f` on `pa` as a kernel address: the direct map's, or for a
/// frame bound to a grant (PV), that grant mapped for the moment
/// ([`with_frame`]), with `pa`'s offset in its page kept.
pub fn access<R>(pa: u64, f: impl FnOnce(*mut u8) -> R) -> Result<R, Errno> {
    if super::is_pv() && bound(pa).is_some() {
        let off = (pa % PAGE) as usize;
        return with_frame(pa, |page| f(page.wrapping_add(off)));
    }
    Ok(f(pa as *mut u8))
}

/// Runs `f` on the bound frame at `pa` (the page's address), mapped for
/// that moment at its own address in the direct map (read-only if the
/// grant is). `EFAULT` if the frame is not bound or Xen refuses the map.
pub fn with_frame<R>(pa: u64, f: impl FnOnce(*mut u8) -> R) -> Result<R, Errno> {
    let pa = pa & !(PAGE - 1);
    let b = binding(pa).ok_or(Errno::EFAULT)?;
    let _f = FRAME_ACCESS.lock();
    super::pv::ensure_table(pa).map_err(|_| Errno::ENOMEM)?;
    let mut op = [GnttabMapGrantRef {
        host_addr: pa,
        flags: GNTMAP_host_map | if b.readonly { GNTMAP_readonly } else { 0 },
        ref_: b.gref,
        dom: b.dom,
        ..Default::default()
    }];
    FRAME_ACCESSES.fetch_add(1, Ordering::Relaxed);
    // SAFETY: `pa`, a hole frame's address in the direct map, is mapped by
    // nothing else (hole frames bound to grants have no kernel mapping,
    // and (f) keeps other accesses out).
    let r = unsafe { xen::gnttab::map_grant_ref(&mut op) };
    if r.is_err() || op[0].status != GNTST_okay {
        return Err(Errno::EFAULT);
    }
    let out = f(pa as *mut u8);
    let mut un = [GnttabUnmapGrantRef {
        host_addr: pa,
        dev_bus_addr: 0,
        handle: op[0].handle,
        status: 0,
    }];
    // SAFETY: `f` is done with the mapping made above.
    let r = unsafe { xen::gnttab::unmap_grant_ref(&mut un) };
    if r.is_err() || un[0].status != GNTST_okay {
        panic!(
            "pv_grant: unmap of the kernel's access to {pa:#x} failed: status {}",
            un[0].status
        );
    }
    // This CPU alone used the address; Xen flushes on unmap, and so do we.
    // SAFETY: a flush only.
    unsafe { super::pv::mmuext(&[super::pv::ext(xen::abi::pv::MMUEXT_INVLPG_LOCAL, pa)]) };
    Ok(out)
}
