//! Test harness: two (or more) simulated domains, each running a gntdev
//! over `xen::sim` and a `vm` domain, and a fake process per open with a
//! user address space (holes: null page, unmapped gaps, kernel half) and
//! an address space of mappings: the real `vm::map::VmMap` over a
//! `vm::pmap::SoftPmap`, faulting through the real `vm::fault::vm_fault`.
//!
//! Each test crate uses part of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gntdev::abi::*;
use gntdev::{
    DomainIdentity, Errno, Gntdev, GntdevFile, GrantCopier, HoleSource, MapEntry, MapLookup,
    PageSource, PhysMemory, Services, UserMemory,
};
use vm::Prot;
use vm::domain::{PhysAccess, VmDomain};
use vm::fault::{FaultFlags, vm_fault};
use vm::loan::{Sharing, UserPages};
use vm::map::{EntryFlags, Inheritance, KernResult, VmMap};
use vm::object::VmObject;
use vm::page::{MemAttr, PageId, PageQueue, SpinWait};
use vm::pager::PagerResult;
use vm::phys::PhysAllocator;
use vm::pmap::{SoftPmap, SoftPte};
use xen::abi::grant_table::GNTTABOP_map_grant_ref;
use xen::abi::grant_table::GNTTABOP_unmap_grant_ref;
use xen::grant::{CopyOp, GrantError, GrantOps, Hole};
use xen::sim::{Sim, SimDomain};

pub const PAGE: u64 = 4096;
/// Read and write.
pub const RW: Prot = Prot::READ.union(Prot::WRITE);
/// The device-wide grant limit of a [`Side`] made by `Side::new`.
pub const MAX_GRANTS: u64 = 4 * 65536;
/// RAM pages of a [`Side`]'s `vm` allocator: the processes' anonymous
/// memory ([`Proc::anon`]).
pub const ANON_PAGES: u64 = 64;

fn xerr(e: xen::hypercall::XenErrno) -> Errno {
    Errno(e.0)
}

/// Guest-physical memory of a simulated domain.
pub struct SimPhys(pub SimDomain);

impl SimPhys {
    /// `EFAULT` once the domain was destroyed ([`Sim::destroy`]): its
    /// memory is gone, and the kernel code a test still runs for it (a
    /// dead domain's processes torn down) must not reach it.
    fn alive(&self) -> Result<(), Errno> {
        if self.0.sim().is_alive(self.0.id()) {
            Ok(())
        } else {
            Err(Errno::EFAULT)
        }
    }
}

impl PhysMemory for SimPhys {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.alive()?;
        self.0.read(gpa, buf).map_err(xerr)
    }
    fn write(&self, gpa: u64, bytes: &[u8]) -> Result<(), Errno> {
        self.alive()?;
        self.0.write(gpa, bytes).map_err(xerr)
    }
}

impl PhysAccess for SimPhys {
    fn zero_page(&self, pa: u64) {
        self.0.write(pa, &[0; PAGE as usize]).unwrap();
    }
    fn copy_page(&self, src: u64, dst: u64) {
        let mut b = [0; PAGE as usize];
        self.0.read(src, &mut b).unwrap();
        self.0.write(dst, &b).unwrap();
    }
}

/// A fixed pool of the domain's RAM pages, seen by its `vm` as one
/// fictitious range (the sim hands out RAM frames itself).
pub struct PagePool {
    vm: Arc<VmDomain>,
    free: Mutex<Vec<PageId>>,
}

impl PagePool {
    fn new(dom: &SimDomain, vm: &Arc<VmDomain>, npages: u32) -> Self {
        let base = dom.alloc_page();
        for i in 1..u64::from(npages) {
            assert_eq!(dom.alloc_page(), base + i, "sim RAM is handed out in order");
        }
        let range = vm
            .phys
            .register_fictitious(base * PAGE, npages, MemAttr::WriteBack)
            .unwrap();
        let free = (0..npages).rev().map(|i| range.first + i).collect();
        Self {
            vm: vm.clone(),
            free: Mutex::new(free),
        }
    }

    pub fn free_count(&self) -> usize {
        self.free.lock().unwrap().len()
    }
}

impl PageSource for PagePool {
    fn alloc_zeroed(&self) -> Result<PageId, Errno> {
        let id = self.free.lock().unwrap().pop().ok_or(Errno::ENOMEM)?;
        self.vm.zero_page(id);
        self.vm.wire(id);
        Ok(id)
    }
    fn free(&self, page: PageId) {
        assert!(
            self.vm.unwire(page, PageQueue::None),
            "freed page still referenced"
        );
        self.free.lock().unwrap().push(page);
    }
}

/// Holes from the sim, counted.
pub struct SimHoles {
    dom: SimDomain,
    pub live_frames: Mutex<u64>,
}

impl HoleSource for SimHoles {
    fn alloc(&self, frames: u64, align: u64) -> Result<Hole, Errno> {
        *self.live_frames.lock().unwrap() += frames;
        let room = self.dom.alloc_hole(frames + align - 1);
        let base = room.base_gfn().next_multiple_of(align);
        // SAFETY: `[base, base + frames)` lies inside `room`, which the
        // simulator handed out to us alone.
        Ok(unsafe { Hole::new(base, frames) })
    }
    fn free(&self, hole: Hole) {
        *self.live_frames.lock().unwrap() -= hole.frames();
    }
}

/// Grant copies on the simulator.
pub struct SimCopier(pub SimDomain);

impl GrantCopier for SimCopier {
    fn copy(&self, ops: &[CopyOp]) -> Vec<Result<(), GrantError>> {
        // SAFETY: the simulator's memory is atomics behind `Arc`s: Xen's
        // writes to a local destination alias no Rust reference.
        unsafe { self.0.grants().copy(ops) }
    }
}

/// One domain running our kernel's gntdev.
pub struct Side {
    pub dom: SimDomain,
    pub vm: Arc<VmDomain>,
    pub dev: Arc<Gntdev>,
    pub pool: Arc<PagePool>,
    pub holes: Arc<SimHoles>,
    pub pool_size: usize,
    /// The domain's generation ([`DomainIdentity`]); a test moves it.
    pub generation: Arc<AtomicU64>,
}

/// The simulated domain's identity: its id and a generation the test
/// moves.
struct SimIdentity {
    id: u16,
    generation: Arc<AtomicU64>,
}

impl DomainIdentity for SimIdentity {
    fn domid(&self) -> Option<u16> {
        Some(self.id)
    }
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

impl Side {
    /// A domain with a grant table of up to `frames` frames and a pool of
    /// `pages` pages.
    pub fn new(sim: &Sim, frames: u32, pages: u32) -> Self {
        Self::with_max_grants(sim, frames, pages, MAX_GRANTS)
    }

    /// As `new`, with a device-wide limit of `max_grants` grants.
    pub fn with_max_grants(sim: &Sim, frames: u32, pages: u32, max_grants: u64) -> Self {
        let dom = sim.create_domain_with(frames);
        let ram = dom.alloc_page();
        for i in 1..ANON_PAGES {
            assert_eq!(dom.alloc_page(), ram + i, "sim RAM is handed out in order");
        }
        let ram = [(ram * PAGE, (ram + ANON_PAGES) * PAGE)];
        let phys = PhysAllocator::new(&ram, pages + 70_000).unwrap();
        let vm = Arc::new(VmDomain::new(
            phys,
            Arc::new(SimPhys(dom.clone())),
            Arc::new(SpinWait),
        ));
        let pool = Arc::new(PagePool::new(&dom, &vm, pages));
        let generation = Arc::new(AtomicU64::new(0));
        let holes = Arc::new(SimHoles {
            dom: dom.clone(),
            live_frames: Mutex::new(0),
        });
        let dev = Gntdev::new(Services {
            vm: vm.clone(),
            grants: dom.grants_arc(),
            events: Arc::new(dom.clone()),
            pages: pool.clone(),
            holes: holes.clone(),
            phys: Arc::new(SimPhys(dom.clone())),
            copier: Arc::new(SimCopier(dom.clone())),
            max_grants,
            domain: Arc::new(SimIdentity {
                id: dom.id(),
                generation: generation.clone(),
            }),
        });
        Self {
            dom,
            vm,
            dev,
            pool,
            holes,
            pool_size: pages as usize,
            generation,
        }
    }

    pub fn id(&self) -> u16 {
        self.dom.id()
    }

    pub fn map_hypercalls(&self) -> u64 {
        self.dom.gnttab_hypercalls(GNTTABOP_map_grant_ref)
    }

    pub fn unmap_hypercalls(&self) -> u64 {
        self.dom.gnttab_hypercalls(GNTTABOP_unmap_grant_ref)
    }

    /// Everything back to baseline: pool pages, grant references, hole
    /// frames, foreign mappings, fictitious pages referenced.
    pub fn assert_baseline(&self) {
        self.dev.reap();
        assert_eq!(self.pool.free_count(), self.pool_size, "pages leaked");
        let st = self.dom.grants().stats();
        assert_eq!(
            (st.live_refs, st.pending_refs),
            (0, 0),
            "grant references leaked"
        );
        assert_eq!(
            *self.holes.live_frames.lock().unwrap(),
            0,
            "hole frames leaked"
        );
        assert_eq!(self.dom.mappings(), 0, "foreign mappings leaked");
        let s = self.dev.stats();
        assert_eq!(
            (
                s.live_pages,
                s.live_holes,
                s.live_hole_frames,
                s.pending_grants
            ),
            (0, 0, 0, 0)
        );
        assert_eq!(self.vm.counters.wired.get(), 0, "wired pages leaked");
        assert_eq!(self.vm.phys.free_count(), ANON_PAGES, "RAM pages leaked");
    }
}

/// User memory: mapped regions of bytes; everything else faults.
#[derive(Default)]
pub struct FakeUser {
    regions: Mutex<BTreeMap<u64, Vec<u8>>>,
    next: Mutex<u64>,
}

/// Where the kernel half starts.
pub const KERNEL_BASE: u64 = 0xffff_8000_0000_0000;

impl FakeUser {
    /// Maps `len` bytes of zeroes (with an unmapped guard gap after).
    pub fn alloc(&self, len: usize) -> u64 {
        let mut next = self.next.lock().unwrap();
        if *next == 0 {
            *next = 0x10_0000;
        }
        let at = *next;
        *next += (len as u64).div_ceil(PAGE) * PAGE + PAGE;
        self.regions.lock().unwrap().insert(at, vec![0; len]);
        at
    }

    fn region<R>(&self, addr: u64, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> Result<R, Errno> {
        let end = addr.checked_add(len as u64).ok_or(Errno::EFAULT)?;
        if addr == 0 || end > KERNEL_BASE {
            return Err(Errno::EFAULT);
        }
        let mut regions = self.regions.lock().unwrap();
        let (&start, bytes) = regions
            .range_mut(..=addr)
            .next_back()
            .ok_or(Errno::EFAULT)?;
        if end > start + bytes.len() as u64 {
            return Err(Errno::EFAULT);
        }
        let off = (addr - start) as usize;
        Ok(f(&mut bytes[off..off + len]))
    }

    /// Whether `len` bytes at `addr` are user memory (what `copy_in` and
    /// `copy_out` accept).
    pub fn is_mapped(&self, addr: u64, len: usize) -> bool {
        self.region(addr, len, |_| ()).is_ok()
    }

    pub fn put(&self, addr: u64, bytes: &[u8]) {
        self.copy_out(addr, bytes).unwrap();
    }

    pub fn get(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0; len];
        self.copy_in(addr, &mut b).unwrap();
        b
    }

    pub fn put_arg<T: IoctlArg>(&self, v: &T) -> u64 {
        let at = self.alloc(T::SIZE);
        let mut b = vec![0; T::SIZE];
        v.encode(&mut b);
        self.put(at, &b);
        at
    }

    pub fn get_arg<T: IoctlArg>(&self, at: u64) -> T {
        T::decode(&self.get(at, T::SIZE))
    }
}

impl UserMemory for FakeUser {
    fn copy_in(&self, uaddr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.region(uaddr, buf.len(), |m| buf.copy_from_slice(m))
    }
    fn copy_out(&self, uaddr: u64, buf: &[u8]) -> Result<(), Errno> {
        self.region(uaddr, buf.len(), |m| m.copy_from_slice(buf))
    }
}

/// A process: user memory, one open of gntdev, and an address space of
/// its gntdev mappings: a real [`VmMap`] over a [`SoftPmap`], whose faults
/// go through the real [`vm_fault`] (fast, populate and full paths), as
/// the kernel's `proc::vmspace` does.
pub struct Proc {
    pub user: FakeUser,
    pub file: Option<GntdevFile>,
    pub vm: Arc<VmDomain>,
    pub dom: SimDomain,
    map: VmMap,
    pub pmap: SoftPmap,
    /// Faults pass `NOPOPULATE` (the kernel's `vm.populate=0`).
    pub nopopulate: std::sync::atomic::AtomicBool,
}

impl MapLookup for Proc {
    fn lookup(&self, vaddr: u64) -> Option<MapEntry> {
        let e = self.entry_at(vaddr)?;
        Some(MapEntry {
            object: e.object?,
            offset: e.offset,
            size: e.end - e.start,
        })
    }

    fn share(&self, vaddr: u64, len: u64, sharing: Sharing) -> Result<UserPages, Errno> {
        vm::loan::share(&self.map, &self.pmap, vaddr, len, sharing)
    }
}

/// Where the test processes' mappings start.
const MMAP_BASE: u64 = 0x7000_0000_0000;

/// What a failed fault is to the tests: `Error` is SIGSEGV (a protection
/// or pager failure), `Again` a shortage the kernel waits out.
fn fault_error(k: KernResult) -> PagerResult {
    match k {
        KernResult::ResourceShortage => PagerResult::Again,
        KernResult::ProtectionFailure | KernResult::Failure => PagerResult::Error,
        _ => PagerResult::Bad,
    }
}

impl Proc {
    pub fn new(side: &Side) -> Self {
        Self {
            user: FakeUser::default(),
            file: Some(side.dev.open()),
            vm: side.vm.clone(),
            dom: side.dom.clone(),
            map: VmMap::new(side.vm.clone(), PAGE, KERNEL_BASE),
            pmap: SoftPmap::new(side.vm.clone()),
            nopopulate: false.into(),
        }
    }

    pub fn file(&self) -> &GntdevFile {
        self.file.as_ref().unwrap()
    }

    fn entry_at(&self, va: u64) -> Option<vm::map::MapEntry> {
        self.map
            .entries()
            .into_iter()
            .find(|e| e.start <= va && va < e.end)
    }

    /// The raw ioctl.
    pub fn ioctl(&self, cmd: u32, arg: u64) -> Result<(), Errno> {
        self.file().ioctl(&self.user, self, cmd, arg)
    }

    /// An ioctl on struct `v` placed in user memory; returns it as the
    /// kernel left it.
    pub fn ioctl_arg<T: IoctlArg>(&self, cmd: u32, v: &T) -> Result<T, Errno> {
        let at = self.user.put_arg(v);
        self.ioctl(cmd, at)?;
        Ok(self.user.get_arg(at))
    }

    /// `ALLOC_GREF` of `count` pages for `domid`; returns (index, refs).
    pub fn alloc_gref(
        &self,
        domid: u16,
        count: u32,
        writable: bool,
    ) -> Result<(u64, Vec<u32>), Errno> {
        let ids = self.user.alloc(count as usize * 4);
        let a = AllocGref {
            domid,
            flags: alloc_flags(writable),
            count,
            index: 0,
            gref_ids: ids,
        };
        let a = self.ioctl_arg(IOCTL_GNTDEV_ALLOC_GREF, &a)?;
        Ok((a.index, self.refs_at(ids, count)))
    }

    /// `GRANT_USER` of the `count` pages at `vaddr` for `domid`; returns
    /// (index, refs).
    pub fn grant_user(
        &self,
        domid: u16,
        vaddr: u64,
        count: u32,
        writable: bool,
    ) -> Result<(u64, Vec<u32>), Errno> {
        let ids = self.user.alloc(count.max(1) as usize * 4);
        let a = GrantUser {
            domid,
            flags: alloc_flags(writable),
            count,
            index: 0,
            gref_ids: ids,
            vaddr,
        };
        let a = self.ioctl_arg(IOCTL_GNTDEV_GRANT_USER, &a)?;
        Ok((a.index, self.refs_at(ids, count)))
    }

    /// The `count` references the device wrote at `ids`.
    fn refs_at(&self, ids: u64, count: u32) -> Vec<u32> {
        self.user
            .get(ids, count as usize * 4)
            .chunks(4)
            .map(|c| u32::from_ne_bytes(c.try_into().unwrap()))
            .collect()
    }

    pub fn dealloc_gref(&self, index: u64, count: u32) -> Result<(), Errno> {
        self.ioctl_arg(IOCTL_GNTDEV_DEALLOC_GREF, &DeallocGref { index, count })
            .map(drop)
    }

    /// `MAP_GRANT_REF` of `refs` of `domid`; returns the index.
    pub fn map_grant_ref(&self, domid: u16, refs: &[u32]) -> Result<u64, Errno> {
        let arr = self.user.alloc(refs.len() * 8);
        let mut raw = Vec::new();
        for &r in refs {
            raw.extend_from_slice(&u32::from(domid).to_ne_bytes());
            raw.extend_from_slice(&r.to_ne_bytes());
        }
        self.user.put(arr, &raw);
        let a = MapGrantRef {
            count: refs.len() as u32,
            pad0: 0,
            index: 0,
            refs: arr,
        };
        Ok(self.ioctl_arg(IOCTL_GNTDEV_MAP_GRANT_REF, &a)?.index)
    }

    pub fn unmap_grant_ref(&self, index: u64, count: u32) -> Result<(), Errno> {
        self.ioctl_arg(
            IOCTL_GNTDEV_UNMAP_GRANT_REF,
            &UnmapGrantRef { index, count },
        )
        .map(drop)
    }

    pub fn set_notify(&self, index: u64, action: u32, port: u32) -> Result<(), Errno> {
        let a = UnmapNotify {
            index,
            action,
            event_channel_port: port,
        };
        self.ioctl_arg(IOCTL_GNTDEV_SET_UNMAP_NOTIFY, &a).map(drop)
    }

    pub fn get_offset(&self, vaddr: u64) -> Result<(u64, u32), Errno> {
        let a = self.ioctl_arg(
            IOCTL_GNTDEV_GET_OFFSET_FOR_VADDR,
            &GetOffsetForVaddr {
                vaddr,
                ..Default::default()
            },
        )?;
        Ok((a.offset, a.count))
    }

    /// `mmap(len, prot, MAP_SHARED, fd, offset)` as the kernel's system
    /// call does it: the device's object, entered with `prot` and at most
    /// the maximum protection the device reports, at the address the
    /// map's placement policy picks ([`VmMap::find_space_for`]: 2 MiB
    /// aligned for a populate object of 2 MiB or more). Returns the
    /// address.
    pub fn mmap(&self, offset: u64, len: u64, prot: Prot) -> Result<u64, Errno> {
        self.mmap_where(None, offset, len, prot)
    }

    /// [`mmap`](Self::mmap) at the free address `at` (`MAP_FIXED` into a
    /// hole of the address space).
    pub fn mmap_at(&self, at: u64, offset: u64, len: u64, prot: Prot) -> Result<u64, Errno> {
        self.mmap_where(Some(at), offset, len, prot)
    }

    fn mmap_where(&self, at: Option<u64>, offset: u64, len: u64, prot: Prot) -> Result<u64, Errno> {
        let m = self.file().mmap(offset, len, prot)?;
        let size = len.div_ceil(PAGE) * PAGE;
        let errno = |k: KernResult| k.to_errno().unwrap_err();
        let at = match at {
            Some(at) => at,
            None => self
                .map
                .find_space_for(Some(&m.object), size, MMAP_BASE)
                .map_err(errno)?,
        };
        self.map
            .insert(vm::map::MapEntry {
                start: at,
                end: at + size,
                object: Some(m.object),
                offset,
                protection: prot,
                max_protection: m.max_prot,
                inheritance: Inheritance::default(),
                flags: EntryFlags::empty(),
            })
            .map_err(errno)?;
        Ok(at)
    }

    /// Anonymous memory of `npages` (`mmap(MAP_ANON)`), untouched;
    /// returns its address.
    pub fn anon(&self, npages: u64) -> u64 {
        let size = npages * PAGE;
        let at = self.map.find_space(size, 0, MMAP_BASE).unwrap();
        self.map
            .insert(vm::map::MapEntry {
                start: at,
                end: at + size,
                object: None,
                offset: 0,
                protection: RW,
                max_protection: Prot::all(),
                inheritance: Inheritance::default(),
                flags: EntryFlags::empty(),
            })
            .unwrap();
        at
    }

    /// `mprotect(vaddr, len, prot)`.
    pub fn mprotect(&self, vaddr: u64, len: u64, prot: Prot) -> Result<(), Errno> {
        self.map
            .protect(&self.pmap, vaddr, vaddr + len, prot, false)
            .map_err(|k| k.to_errno().unwrap_err())
    }

    /// `munmap` of the whole mapping that starts at `vaddr`.
    pub fn munmap(&self, vaddr: u64) {
        let e = self.entry_at(vaddr).expect("mapped");
        assert_eq!(e.start, vaddr, "munmap of a mapping's start");
        self.munmap_range(e.start, e.end - e.start);
    }

    /// `munmap(vaddr, len)`: any part of any mapping.
    pub fn munmap_range(&self, vaddr: u64, len: u64) {
        self.map.remove(&self.pmap, vaddr, vaddr + len).unwrap();
    }

    /// Drops every mapping (process exit), then the file (close).
    pub fn exit(mut self) {
        self.map.remove(&self.pmap, PAGE, KERNEL_BASE).unwrap();
        self.file = None;
    }

    /// The page at `vaddr` as an access of that kind finds it: the CPU
    /// uses a translation with the rights it needs, else takes a fault
    /// ([`vm_fault`], with populate unless `nopopulate`).
    pub fn touch(&self, vaddr: u64, write: bool) -> Result<PageId, PagerResult> {
        let va = vaddr & !(PAGE - 1);
        let need = if write { Prot::WRITE } else { Prot::READ };
        if let Some(pte) = self.pmap.pte(va)
            && pte.prot.contains(need)
        {
            return Ok(pte.page);
        }
        let flags = if self.nopopulate.load(std::sync::atomic::Ordering::Relaxed) {
            FaultFlags::NOPOPULATE
        } else {
            FaultFlags::empty()
        };
        vm_fault(&self.map, &self.pmap, va, need, flags).map_err(fault_error)?;
        let pte = self.pmap.pte(va).expect("the fault entered the page");
        assert!(pte.prot.contains(need), "entered with the access's rights");
        Ok(pte.page)
    }

    /// The translation of `vaddr`, if the CPU has one.
    pub fn pte(&self, vaddr: u64) -> Option<SoftPte> {
        self.pmap.pte(vaddr & !(PAGE - 1))
    }

    /// Reads through the mapping (faulting as needed).
    pub fn read(&self, vaddr: u64, buf: &mut [u8]) -> Result<(), PagerResult> {
        let id = self.touch(vaddr, false)?;
        let gpa = self.vm.page(id).phys_addr() + vaddr % PAGE;
        self.dom.read(gpa, buf).map_err(|_| PagerResult::Error)
    }

    /// Writes through the mapping (faulting as needed).
    pub fn write(&self, vaddr: u64, bytes: &[u8]) -> Result<(), PagerResult> {
        let id = self.touch(vaddr, true)?;
        let gpa = self.vm.page(id).phys_addr() + vaddr % PAGE;
        self.dom.write(gpa, bytes).map_err(|_| PagerResult::Error)
    }

    pub fn object_of(&self, vaddr: u64) -> Arc<VmObject> {
        self.lookup(vaddr).unwrap().object
    }
}

/// A with `n` pages granted to B, B with it mapped (not faulted yet).
pub struct Pair {
    pub a: Side,
    pub b: Side,
    pub pa: Proc,
    pub pb: Proc,
    pub ia: u64,
    pub refs: Vec<u32>,
}

pub fn pair(n: u32, writable: bool) -> Pair {
    let sim = Sim::new();
    let a = Side::new(&sim, 4, n + 16);
    let b = Side::new(&sim, 4, 16);
    let (pa, pb) = (Proc::new(&a), Proc::new(&b));
    let (ia, refs) = pa.alloc_gref(b.id(), n, writable).unwrap();
    Pair {
        a,
        b,
        pa,
        pb,
        ia,
        refs,
    }
}

impl Pair {
    pub fn finish(self) {
        let Pair { a, b, pa, pb, .. } = self;
        pb.exit();
        pa.exit();
        a.assert_baseline();
        b.assert_baseline();
    }
}

/// The `flags` of `ALLOC_GREF` and `GRANT_USER`.
fn alloc_flags(writable: bool) -> u16 {
    if writable {
        GNTDEV_ALLOC_FLAG_WRITABLE
    } else {
        0
    }
}

/// Word `k` of page `i` of the share protocol.
pub fn word(seed: u32, i: usize, k: usize) -> u32 {
    seed.wrapping_add((i * 1024 + k) as u32)
}
