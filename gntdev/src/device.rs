//! The device ([`Gntdev`], one per kernel) and its per-open state
//! ([`GntdevFile`]).
//!
//! # Regions
//!
//! Every successful `ALLOC_GREF`, `GRANT_USER` or `MAP_GRANT_REF` takes a
//! run of the file's offset space (first fit, `extent`) and records a
//! region: a [`GrefRun`] (pages granted: ours, or the process's own,
//! `Origin`) or a [`GrantMap`] (foreign grants, not mapped yet). `mmap`
//! of a region's offset returns its managed device object (`pager`), made
//! on the first `mmap` and shared by the later ones while it lives. The
//! file keeps only a `Weak` to it: the object lives as long as the
//! process maps it, and its pager's `dtor` tears the mapping down
//! (notify, then ONE batched unmap) when the last mapping goes.
//! `DEALLOC_GREF`/`UNMAP_GRANT_REF` remove the record and free the offsets
//! at once; a region still mapped lives on in its pager.
//!
//! Allocated grants end when they are deallocated AND no longer mapped by
//! us (whichever comes last destroys them: notify, `end_access`); if the
//! peer still maps one, its end is deferred and the page kept on the
//! device's pending list until [`Gntdev::reap`] sees the peer let go.
//! A `GRANT_USER` run is never mapped through the device (the process
//! has the pages already), so `DEALLOC_GREF` destroys it; its pages go
//! back to the VM (unloaned or unwired) when their grants end.
//!
//! # Locking
//!
//! | state | protection |
//! |---|---|
//! | [`Gntdev`]'s services | constant |
//! | [`Gntdev`]'s pending list | (p) `pending` spin lock |
//! | [`Gntdev`]'s failed unmaps | (u) `failed_unmaps` spin lock (`unmap`) |
//! | [`Gntdev`]'s counters | (a) atomic |
//! | a file's regions, offsets, limit, use | (f) `GntdevFile::inner` |
//! | a region's object, notify, writability, dealloc/mapped state | (r) the region's `state` lock |
//! | a mapping's handles and hole | (m) its pager's `state` lock (`pager`) |
//!
//! Lock order: (f) before (r); (m) before (r); (r) and (m) before the
//! object lock, the grant table's, and (p); (u) is taken last, and never
//! held across a hypercall. A pager's `dtor` runs from the
//! object's drop and takes (m), (r) and (p), never (f); so no Arc of an
//! object is ever dropped with (r) or (m) held. (f) is never held across a
//! copy from or to user memory: the copy may fault, and a fault may wait
//! (for the map lock, a busy page) on a thread that waits for (f).
//! `GRANT_USER` lends or holds the process's pages ([`MapLookup::share`],
//! which faults like a copy) with no lock of ours held; its pages go back
//! through [`vm::loan::release_page`], whose zero-page lock comes after
//! all of ours.

use alloc::collections::BTreeMap;
use alloc::sync::{Arc, Weak};
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;
use vm::domain::VmDomain;
use vm::loan::{Sharing, release_page};
use vm::object::{ObjectType, VmObject};
use vm::page::{MemAttr, PageId};
use vm::pager::device::device_pager_allocate;
use vm::{Errno, PAGE_SHIFT, PAGE_SIZE, Prot, SUPERPAGE_PAGES};
use xen::abi::{DOMID_SELF, DomId, Port};
use xen::event_channel::EventOps;
use xen::grant::{EndAccess, GrantError, GrantOps, GrantRef, Reaped};

use crate::abi::*;
use crate::errno::{E2BIG, EACCES, ENOSPC, ENOSYS};
use crate::extent::Extents;
use crate::pager::{GrefPager, MapPager};
use crate::{GrantCopier, HoleSource, MapLookup, PageSource, PhysMemory, UserMemory};

/// What the device needs from the kernel and from Xen.
#[derive(Clone)]
pub struct Services {
    /// The VM domain whose objects and fictitious pages the mappings use.
    pub vm: Arc<VmDomain>,
    /// Our grant table.
    pub grants: Arc<dyn GrantOps + Send + Sync>,
    /// Event channels, for `UNMAP_NOTIFY_SEND_EVENT`.
    pub events: Arc<dyn EventOps + Send + Sync>,
    /// Pages to grant.
    pub pages: Arc<dyn PageSource>,
    /// Holes to map foreign grants in.
    pub holes: Arc<dyn HoleSource>,
    /// Guest-physical memory, for the notify byte and copy bounce pages.
    pub phys: Arc<dyn PhysMemory>,
    /// Grant copies into bounce pages, for `GRANT_COPY`.
    pub copier: Arc<dyn GrantCopier>,
    /// Grants (allocated plus mapped) all opens together may hold: beyond
    /// it `ALLOC_GREF` and `MAP_GRANT_REF` fail with `ENOSPC`, whatever
    /// each open's own limit. The kernel sizes its memory for the
    /// bookkeeping of this many (one per page of RAM), so that no process
    /// can exhaust it by opening the device many times.
    pub max_grants: u64,
    /// The domain the device runs in.
    pub domain: Arc<dyn DomainIdentity>,
}

/// What the device needs to know of the domain it runs in; both change
/// when the domain is restored or migrated.
pub trait DomainIdentity: Send + Sync {
    /// Our domain id now, if known: `MAP_GRANT_REF` refuses our own
    /// grants (`EINVAL`), as it refuses `DOMID_SELF`.
    fn domid(&self) -> Option<DomId>;
    /// How many times the domain has moved. An unmap notify's port
    /// belongs to the generation it was set in: after a move that port is
    /// gone (its number may name another port now), so the notify's
    /// event is not sent and counts as a notify error.
    fn generation(&self) -> u64;
}

/// The device's counters ([`Gntdev::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GntdevStats {
    /// Mappings whose grants were mapped (one batched map each).
    pub mappings: u64,
    /// Grant-table hypercalls issued by those maps, `GNTST_eagain` retry
    /// rounds included.
    pub map_hypercalls: u64,
    /// Ops re-submitted after `GNTST_eagain` by those maps.
    pub eagain_retries: u64,
    /// Maps that failed (every op already mapped was unmapped again).
    pub map_failures: u64,
    /// Calls to a pager's populate (each is one fault of the process).
    pub populates: u64,
    /// Calls to a pager's single-page fault routine (normal faults).
    pub faults: u64,
    /// Unmap hypercalls (teardowns and rollbacks).
    pub unmap_hypercalls: u64,
    /// Unmap ops that failed (teardowns, rollbacks and retries); a
    /// mapping whose unmap failed keeps its hole and is retried by
    /// [`Gntdev::reap`].
    pub unmap_errors: u64,
    /// Unmap hypercalls [`Gntdev::reap`] issued to retry failed unmaps.
    pub unmap_retries: u64,
    /// Mappings whose unmap failed and waits for a retry.
    pub pending_unmaps: u64,
    /// Pages from the [`PageSource`] held now (granted or pending).
    pub live_pages: u64,
    /// Holes from the [`HoleSource`] held now.
    pub live_holes: u64,
    /// Frames of those holes.
    pub live_hole_frames: u64,
    /// Grants whose end waits for the peer to unmap.
    pub pending_grants: u64,
    /// Notify bytes cleared.
    pub bytes_cleared: u64,
    /// Notify events sent.
    pub events_sent: u64,
    /// Notify bytes that could not be written or events that could not
    /// be sent.
    pub notify_errors: u64,
}

/// Counters behind [`GntdevStats`], each (a) atomic.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub mappings: AtomicU64,
    pub map_hypercalls: AtomicU64,
    pub eagain_retries: AtomicU64,
    pub map_failures: AtomicU64,
    pub populates: AtomicU64,
    pub faults: AtomicU64,
    pub unmap_hypercalls: AtomicU64,
    pub unmap_errors: AtomicU64,
    pub unmap_retries: AtomicU64,
    pub live_pages: AtomicU64,
    pub live_holes: AtomicU64,
    pub live_hole_frames: AtomicU64,
    pub bytes_cleared: AtomicU64,
    pub events_sent: AtomicU64,
    pub notify_errors: AtomicU64,
}

/// Adds `n` to a counter.
pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Subtracts `n` from a counter.
pub(crate) fn sub(c: &AtomicU64, n: u64) {
    c.fetch_sub(n, Ordering::Relaxed);
}

/// An unmap notification (`SET_UNMAP_NOTIFY`); the last one set wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Notify {
    /// File offset of the byte to clear.
    pub index: u64,
    /// `UNMAP_NOTIFY_*` bits.
    pub action: u32,
    /// Local port to signal.
    pub port: Port,
    /// The domain's generation when it was set ([`DomainIdentity`]).
    pub generation: u64,
}

/// The grant device: services, the deferred grants of every open, and
/// counters. One per kernel, shared by its opens.
pub struct Gntdev {
    pub(crate) svc: Services,
    /// (p) grants whose end waits for the peer: reference -> page.
    pending: Mutex<BTreeMap<GrantRef, (PageId, Origin)>>,
    /// (u) mappings whose unmap failed, retried by [`Gntdev::reap`].
    pub(crate) failed_unmaps: Mutex<Vec<crate::unmap::FailedUnmap>>,
    /// (a) grants all opens hold, within `Services::max_grants`.
    held: Arc<AtomicU64>,
    pub(crate) counters: Counters,
}

impl core::fmt::Debug for Gntdev {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Gntdev")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Gntdev {
    /// The device over `svc`.
    pub fn new(svc: Services) -> Arc<Self> {
        Arc::new(Self {
            svc,
            pending: Mutex::new(BTreeMap::new()),
            failed_unmaps: Mutex::new(Vec::new()),
            held: Arc::new(AtomicU64::new(0)),
            counters: Counters::default(),
        })
    }

    /// A new open of the device (`gntdev_open`), with the default limit of
    /// [`DEFAULT_MAX_GRANTS`] grants.
    pub fn open(self: &Arc<Self>) -> GntdevFile {
        GntdevFile {
            dev: self.clone(),
            inner: Mutex::new(FileInner {
                extents: Extents::default(),
                grefs: BTreeMap::new(),
                maps: BTreeMap::new(),
                limit: DEFAULT_MAX_GRANTS,
                used: 0,
                held: self.held.clone(),
                max_held: self.svc.max_grants,
            }),
        }
    }

    /// Retries the unmaps that failed (`unmap`: with back-off, counted
    /// in [`GntdevStats::unmap_retries`]), then the deferred ends of
    /// access of the grant table: pages of gntdev's grants that completed
    /// go back to the [`PageSource`]; the grants that are not gntdev's are
    /// returned for their owners. The kernel calls it from its reaper
    /// thread.
    pub fn reap(&self) -> Vec<Reaped> {
        self.retry_unmaps();
        let mut others = Vec::new();
        for r in self.svc.grants.reap() {
            let page = self.pending.lock().remove(&r.gref);
            match page {
                Some((p, origin)) => self.release(p, origin),
                None => others.push(r),
            }
        }
        others
    }

    /// The counters.
    pub fn stats(&self) -> GntdevStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        GntdevStats {
            mappings: get(&c.mappings),
            map_hypercalls: get(&c.map_hypercalls),
            eagain_retries: get(&c.eagain_retries),
            map_failures: get(&c.map_failures),
            populates: get(&c.populates),
            faults: get(&c.faults),
            unmap_hypercalls: get(&c.unmap_hypercalls),
            unmap_errors: get(&c.unmap_errors),
            unmap_retries: get(&c.unmap_retries),
            pending_unmaps: self.pending_unmaps(),
            live_pages: get(&c.live_pages),
            live_holes: get(&c.live_holes),
            live_hole_frames: get(&c.live_hole_frames),
            pending_grants: self.pending.lock().len() as u64,
            bytes_cleared: get(&c.bytes_cleared),
            events_sent: get(&c.events_sent),
            notify_errors: get(&c.notify_errors),
        }
    }

    fn alloc_page(&self) -> Result<PageId, Errno> {
        let p = self.svc.pages.alloc_zeroed()?;
        add(&self.counters.live_pages, 1);
        Ok(p)
    }

    fn free_page(&self, page: PageId) {
        self.svc.pages.free(page);
        sub(&self.counters.live_pages, 1);
    }

    /// Gives back granted page `page` where it came from.
    fn release(&self, page: PageId, origin: Origin) {
        match origin {
            Origin::Allocated => self.free_page(page),
            Origin::User(sharing) => release_page(&self.svc.vm, page, sharing),
        }
    }

    /// The guest frame of page `page`.
    pub(crate) fn gfn(&self, page: PageId) -> u64 {
        self.svc.vm.page(page).phys_addr() >> PAGE_SHIFT
    }

    /// Grants `page`, from `origin`, to `domid`; on failure the page goes
    /// back where it came from.
    fn grant_page(
        &self,
        domid: DomId,
        page: PageId,
        readonly: bool,
        origin: Origin,
    ) -> Result<(PageId, GrantRef), Errno> {
        match self
            .svc
            .grants
            .grant_access(domid, self.gfn(page), readonly)
        {
            Ok(gref) => Ok((page, gref)),
            Err(e) => {
                self.release(page, origin);
                Err(grant_errno(e))
            }
        }
    }

    /// Ends our grant `gref` of `page`, from `origin`: the page is given
    /// back now, or kept on the pending list while the peer maps it.
    fn end_grant(&self, gref: GrantRef, page: PageId, origin: Origin) {
        match self.svc.grants.end_access(gref) {
            Ok(EndAccess::Deferred) => {
                self.pending.lock().insert(gref, (page, origin));
            }
            // `Err`: the reference is not live, so nothing grants the page.
            Ok(EndAccess::Ended) | Err(_) => self.release(page, origin),
        }
    }

    /// Runs notification `n`: clears its byte at guest-physical `byte_gpa`
    /// (when given), then signals its port. As FreeBSD's `notify()`.
    /// A failure is counted in [`GntdevStats::notify_errors`].
    pub(crate) fn fire(&self, n: &Notify, byte_gpa: Option<u64>) {
        let c = &self.counters;
        let count = |ok: bool, done: &AtomicU64| add(if ok { done } else { &c.notify_errors }, 1);
        if n.action & UNMAP_NOTIFY_CLEAR_BYTE != 0
            && let Some(gpa) = byte_gpa
        {
            count(self.svc.phys.write(gpa, &[0]).is_ok(), &c.bytes_cleared);
        }
        if n.action & UNMAP_NOTIFY_SEND_EVENT != 0 {
            let live = n.generation == self.svc.domain.generation();
            count(live && self.svc.events.send(n.port).is_ok(), &c.events_sent);
        }
    }

    /// Destroys allocated grants that are deallocated and unmapped:
    /// notify, then end each grant.
    pub(crate) fn destroy_grefs(&self, run: &GrefRun, notify: Option<Notify>) {
        if let Some(n) = notify {
            let page = run.page_of(n.index);
            self.fire(
                &n,
                page.map(|p| self.gfn(p) << PAGE_SHIFT | (n.index & (PAGE_SIZE - 1))),
            );
        }
        for &(page, gref) in &run.grants {
            self.end_grant(gref, page, run.origin);
        }
    }
}

/// Where the pages of a [`GrefRun`] come from, which says how they go back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Our [`PageSource`] (`ALLOC_GREF`).
    Allocated,
    /// The process's memory, lent or held as it says (`GRANT_USER`).
    User(Sharing),
}

/// Our grants of one `ALLOC_GREF` or `GRANT_USER`.
pub(crate) struct GrefRun {
    /// File offset (constant).
    pub index: u64,
    /// Where the pages come from (constant).
    pub origin: Origin,
    /// `(page, reference)` of each page, in order (constant).
    pub grants: Vec<(PageId, GrantRef)>,
    /// (r) object, notify, lifetime.
    pub state: Mutex<GrefState>,
}

/// The mutable state of a [`GrefRun`].
pub(crate) struct GrefState {
    /// The mmap object while it lives.
    pub object: Weak<VmObject>,
    /// Objects alive (one more at each `mmap` that makes one, one less
    /// in its pager's `dtor`: an old object may still be dying when a new
    /// one is made).
    pub objects: u32,
    /// `DEALLOC_GREF` (or close) happened.
    pub deallocated: bool,
    /// The notification to run on destruction.
    pub notify: Option<Notify>,
}

impl GrefRun {
    /// The page holding file offset `index`, if in this run.
    fn page_of(&self, index: u64) -> Option<PageId> {
        let i = index.checked_sub(self.index)? >> PAGE_SHIFT;
        self.grants.get(usize::try_from(i).ok()?).map(|g| g.0)
    }

    /// Pages in the run.
    pub fn count(&self) -> u64 {
        self.grants.len() as u64
    }

    /// Marks the run unmapped (its object died); returns the notify to run
    /// if the grants must be destroyed now.
    pub fn unmapped(&self) -> Option<Option<Notify>> {
        let mut st = self.state.lock();
        st.objects -= 1;
        (st.deallocated && st.objects == 0).then(|| st.notify.take())
    }

    /// Marks the run deallocated; returns the notify to run if the grants
    /// must be destroyed now.
    fn deallocated(&self) -> Option<Option<Notify>> {
        let mut st = self.state.lock();
        st.deallocated = true;
        (st.objects == 0).then(|| st.notify.take())
    }
}

/// Foreign grants of one `MAP_GRANT_REF`. It lives while the file records
/// it or a mapping object of it lives; when it goes, a notify no
/// teardown ran (it was never mmapped, or set after the last munmap) has
/// its event sent, as Linux's `gntdev_put_map` does.
pub(crate) struct GrantMap {
    /// The device, for that last notify (constant).
    dev: Arc<Gntdev>,
    /// File offset (constant).
    pub index: u64,
    /// `(domain, reference)` of each grant (constant).
    pub refs: Vec<(DomId, GrantRef)>,
    /// (r) object, notify, writability.
    pub state: Mutex<MapState>,
}

/// The mutable state of a [`GrantMap`].
pub(crate) struct MapState {
    /// The mmap object while it lives.
    pub object: Weak<VmObject>,
    /// Whether the last object made maps the grants writable (true until
    /// the first `mmap`, as Linux's `map->flags`).
    pub writable: bool,
    /// The notification to run when the mapping is torn down.
    pub notify: Option<Notify>,
}

impl Drop for GrantMap {
    fn drop(&mut self) {
        if let Some(n) = self.state.get_mut().notify.take() {
            // Nothing is mapped: no byte to clear.
            self.dev.fire(&n, None);
        }
    }
}

impl GrantMap {
    /// Grants in the map.
    pub fn count(&self) -> u64 {
        self.refs.len() as u64
    }
}

/// Per-open state behind (f).
struct FileInner {
    extents: Extents,
    grefs: BTreeMap<u64, Arc<GrefRun>>,
    maps: BTreeMap<u64, Arc<GrantMap>>,
    /// Grants (allocated plus mapped) this open may hold.
    limit: u32,
    /// Grants it holds.
    used: u64,
    /// The device's count of grants all opens hold (`Gntdev::held`).
    held: Arc<AtomicU64>,
    /// Its bound (`Services::max_grants`).
    max_held: u64,
}

impl FileInner {
    /// Takes `count` grants' worth of offsets, within this open's limit
    /// and the device's.
    fn reserve(&mut self, count: u32) -> Result<u64, Errno> {
        if count == 0 {
            return Err(Errno::EINVAL);
        }
        let n = u64::from(count);
        if self.used + n > u64::from(self.limit) {
            return Err(ENOSPC);
        }
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| {
                (h + n <= self.max_held).then_some(h + n)
            })
            .map_err(|_| ENOSPC)?;
        match self.extents.alloc(n) {
            Ok(index) => {
                self.used += n;
                Ok(index)
            }
            Err(e) => {
                self.held.fetch_sub(n, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    fn unreserve(&mut self, index: u64, count: u64) {
        self.extents.free(index, count);
        self.used -= count;
        self.held.fetch_sub(count, Ordering::Relaxed);
    }
}

impl Drop for FileInner {
    /// The close of the open: what it still holds leaves the device's count.
    fn drop(&mut self) {
        self.held.fetch_sub(self.used, Ordering::Relaxed);
    }
}

/// The maximum protection of a mapping of foreign grants mapped writable
/// or (`GNTMAP_readonly`) not.
fn map_max_prot(writable: bool) -> Prot {
    if writable {
        Prot::all()
    } else {
        Prot::all() - Prot::WRITE
    }
}

/// What [`GntdevFile::mmap`] returns.
#[derive(Debug)]
pub struct DeviceMapping {
    /// The region's object.
    pub object: Arc<VmObject>,
    /// The most a mapping of it may allow (FreeBSD's `maxprot` of
    /// `vm_mmap_cdev`): the caller caps the map entry's maximum with it.
    pub max_prot: Prot,
}

/// Checks that `count` pages from `index` do not wrap the offset space.
fn check_range(index: u64, count: u32) -> Result<(), Errno> {
    u64::from(count)
        .checked_mul(PAGE_SIZE)
        .and_then(|len| index.checked_add(len))
        .map(drop)
        .ok_or(Errno::EINVAL)
}

/// A grant error as the errno user space sees.
pub(crate) fn grant_errno(e: GrantError) -> Errno {
    Errno(e.errno().0)
}

/// One open of `/dev/xen/gntdev`. Dropping it is `close`: records go,
/// allocated grants not mapped are destroyed, mappings still in the
/// process live until their `munmap`.
pub struct GntdevFile {
    dev: Arc<Gntdev>,
    /// (f) regions, offsets, limit.
    inner: Mutex<FileInner>,
}

impl core::fmt::Debug for GntdevFile {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GntdevFile").finish_non_exhaustive()
    }
}

fn copy_in_arg<T: IoctlArg>(user: &dyn UserMemory, arg: u64) -> Result<T, Errno> {
    let mut buf = [0u8; 32];
    user.copy_in(arg, &mut buf[..T::SIZE])?;
    Ok(T::decode(&buf[..T::SIZE]))
}

fn copy_out_arg<T: IoctlArg>(user: &dyn UserMemory, arg: u64, v: &T) -> Result<(), Errno> {
    let mut buf = [0u8; 32];
    // Keep user space's padding bytes as they were.
    user.copy_in(arg, &mut buf[..T::SIZE])?;
    v.encode(&mut buf[..T::SIZE]);
    user.copy_out(arg, &buf[..T::SIZE])
}

impl GntdevFile {
    /// The device this file is an open of.
    pub fn device(&self) -> &Arc<Gntdev> {
        &self.dev
    }

    /// The ioctl `cmd` with argument pointer `arg` (`gntdev_ioctl`): the
    /// struct is copied in and out through `user` as the number's
    /// direction bits say (what FreeBSD's `sys_ioctl` does before and
    /// after a driver), arrays through `user` by the driver; `maps` is the
    /// caller's address space. `ENOSYS` for an unknown command.
    pub fn ioctl(
        &self,
        user: &dyn UserMemory,
        maps: &dyn MapLookup,
        cmd: u32,
        arg: u64,
    ) -> Result<(), Errno> {
        match cmd {
            IOCTL_GNTDEV_SET_UNMAP_NOTIFY => self.set_unmap_notify(&copy_in_arg(user, arg)?),
            IOCTL_GNTDEV_ALLOC_GREF => {
                let mut a: AllocGref = copy_in_arg(user, arg)?;
                self.alloc_gref(user, &mut a)?;
                copy_out_arg(user, arg, &a).inspect_err(|_| {
                    let _ = self.dealloc_gref(&DeallocGref {
                        index: a.index,
                        count: a.count,
                    });
                })
            }
            IOCTL_GNTDEV_DEALLOC_GREF => self.dealloc_gref(&copy_in_arg(user, arg)?),
            IOCTL_GNTDEV_GRANT_USER => {
                let mut a: GrantUser = copy_in_arg(user, arg)?;
                self.grant_user(user, maps, &mut a)?;
                copy_out_arg(user, arg, &a).inspect_err(|_| {
                    let _ = self.dealloc_gref(&DeallocGref {
                        index: a.index,
                        count: a.count,
                    });
                })
            }
            IOCTL_GNTDEV_MAP_GRANT_REF => {
                let mut a: MapGrantRef = copy_in_arg(user, arg)?;
                self.map_grant_ref(user, &mut a)?;
                copy_out_arg(user, arg, &a).inspect_err(|_| {
                    let _ = self.unmap_grant_ref(&UnmapGrantRef {
                        index: a.index,
                        count: a.count,
                    });
                })
            }
            IOCTL_GNTDEV_UNMAP_GRANT_REF => self.unmap_grant_ref(&copy_in_arg(user, arg)?),
            IOCTL_GNTDEV_GET_OFFSET_FOR_VADDR => {
                let mut a: GetOffsetForVaddr = copy_in_arg(user, arg)?;
                self.get_offset_for_vaddr(maps, &mut a)?;
                copy_out_arg(user, arg, &a)
            }
            IOCTL_GNTDEV_GRANT_COPY => {
                let a: GrantCopy = copy_in_arg(user, arg)?;
                crate::copy::grant_copy(&self.dev, user, &a)
            }
            IOCTL_GNTDEV_SET_MAX_GRANTS => {
                let a: SetMaxGrants = copy_in_arg(user, arg)?;
                if a.count > DEFAULT_MAX_GRANTS {
                    return Err(E2BIG);
                }
                self.inner.lock().limit = a.count;
                Ok(())
            }
            _ => Err(ENOSYS),
        }
    }

    /// `ALLOC_GREF`: `count` zeroed pages granted to `domid`, ids copied
    /// out to `gref_ids`; everything undone on any failure.
    fn alloc_gref(&self, user: &dyn UserMemory, a: &mut AllocGref) -> Result<(), Errno> {
        if a.flags & !GNTDEV_ALLOC_FLAG_WRITABLE != 0 {
            return Err(Errno::EINVAL);
        }
        let readonly = a.flags & GNTDEV_ALLOC_FLAG_WRITABLE == 0;
        // The index is reserved, then the lock dropped: the copy-out may
        // fault, and a fault may wait for the map lock, which a `munmap`
        // tearing down a mapping of this file holds while it takes this
        // lock.
        let index = self.inner.lock().reserve(a.count)?;
        let mut grants: Vec<(PageId, GrantRef)> = Vec::with_capacity(a.count as usize);
        let mut res = Ok(());
        for _ in 0..a.count {
            let grant = self.dev.alloc_page().and_then(|page| {
                self.dev
                    .grant_page(a.domid, page, readonly, Origin::Allocated)
            });
            match grant {
                Ok(g) => grants.push(g),
                Err(e) => {
                    res = Err(e);
                    break;
                }
            }
        }
        a.index = index;
        let reserved = (index, u64::from(a.count));
        self.record_run(user, a.gref_ids, reserved, grants, Origin::Allocated, res)
    }

    /// The end of `ALLOC_GREF` and `GRANT_USER`, whose grants `grants` of
    /// pages from `origin` fill the offsets `(index, count)` they
    /// reserved, so far with result `res`: copy the references out to
    /// `gref_ids` and record the run; on any failure end the grants and
    /// free the offsets.
    fn record_run(
        &self,
        user: &dyn UserMemory,
        gref_ids: u64,
        (index, count): (u64, u64),
        grants: Vec<(PageId, GrantRef)>,
        origin: Origin,
        mut res: Result<(), Errno>,
    ) -> Result<(), Errno> {
        if res.is_ok() {
            let mut ids = vec![0u8; grants.len() * 4];
            for (chunk, &(_, gref)) in ids.chunks_exact_mut(4).zip(&grants) {
                chunk.copy_from_slice(&gref.to_ne_bytes());
            }
            res = user.copy_out(gref_ids, &ids);
        }
        let mut inner = self.inner.lock();
        if let Err(e) = res {
            for &(page, gref) in &grants {
                self.dev.end_grant(gref, page, origin);
            }
            inner.unreserve(index, count);
            return Err(e);
        }
        inner.grefs.insert(
            index,
            Arc::new(GrefRun {
                index,
                origin,
                grants,
                state: Mutex::new(GrefState {
                    object: Weak::new(),
                    objects: 0,
                    deallocated: false,
                    notify: None,
                }),
            }),
        );
        Ok(())
    }

    /// `GRANT_USER`: the caller's `count` pages at `vaddr`, as they are,
    /// granted to `domid` (read-only ones lent, writable ones held:
    /// [`Sharing`]), ids copied out to `gref_ids`; everything undone on
    /// any failure. `EINVAL` for memory that is not the process's
    /// anonymous memory (device memory, gntdev mappings, holes), `EFAULT`
    /// for a range partly unmapped.
    fn grant_user(
        &self,
        user: &dyn UserMemory,
        maps: &dyn MapLookup,
        a: &mut GrantUser,
    ) -> Result<(), Errno> {
        if a.flags & !GNTDEV_ALLOC_FLAG_WRITABLE != 0 {
            return Err(Errno::EINVAL);
        }
        let readonly = a.flags & GNTDEV_ALLOC_FLAG_WRITABLE == 0;
        let sharing = if readonly {
            Sharing::Loan
        } else {
            Sharing::Hold
        };
        let index = self.inner.lock().reserve(a.count)?;
        let pages = maps.share(a.vaddr, u64::from(a.count) * PAGE_SIZE, sharing);
        let pages = match pages {
            Ok(p) => p.into_pages(),
            Err(e) => {
                self.inner.lock().unreserve(index, u64::from(a.count));
                return Err(e);
            }
        };
        let origin = Origin::User(sharing);
        let mut grants: Vec<(PageId, GrantRef)> = Vec::with_capacity(pages.len());
        let mut res = Ok(());
        for page in pages {
            if res.is_err() {
                self.dev.release(page, origin);
                continue;
            }
            match self.dev.grant_page(a.domid, page, readonly, origin) {
                Ok(g) => grants.push(g),
                Err(e) => res = Err(e),
            }
        }
        a.index = index;
        let reserved = (index, u64::from(a.count));
        self.record_run(user, a.gref_ids, reserved, grants, origin, res)
    }

    /// `DEALLOC_GREF`: forget the run at `index` of exactly `count` pages;
    /// its grants end now if not mapped, else when the mapping goes.
    fn dealloc_gref(&self, a: &DeallocGref) -> Result<(), Errno> {
        check_range(a.index, a.count)?;
        let run = {
            let mut inner = self.inner.lock();
            match inner.grefs.get(&a.index) {
                Some(r) if r.count() == u64::from(a.count) => {}
                _ => return Err(Errno::EINVAL),
            }
            let run = inner.grefs.remove(&a.index).expect("checked");
            inner.unreserve(a.index, run.count());
            run
        };
        if let Some(notify) = run.deallocated() {
            self.dev.destroy_grefs(&run, notify);
        }
        Ok(())
    }

    /// `MAP_GRANT_REF`: copy in and record the references; no hypercall.
    fn map_grant_ref(&self, user: &dyn UserMemory, a: &mut MapGrantRef) -> Result<(), Errno> {
        // Reserved, then copied in without the lock (see `alloc_gref`).
        let index = self.inner.lock().reserve(a.count)?;
        let mut raw = vec![0u8; a.count as usize * GrantRefArg::SIZE];
        let own = self.dev.svc.domain.domid();
        let refs: Result<Vec<(DomId, GrantRef)>, Errno> =
            user.copy_in(a.refs, &mut raw).and_then(|()| {
                raw.chunks_exact(GrantRefArg::SIZE)
                    .map(|c| {
                        let r = GrantRefArg::decode(c);
                        let dom = DomId::try_from(r.domid).map_err(|_| Errno::EINVAL)?;
                        // Our own grants: measured on Xen 4.17, a PVH
                        // domain's map and unmap of its own grant leaves
                        // the granted RAM page unpopulated in its physical
                        // map (Xen keeps one GFN per frame): the VM would
                        // hand out pages that read all-ones.
                        if dom == DOMID_SELF || Some(dom) == own {
                            return Err(Errno::EINVAL);
                        }
                        Ok((dom, r.gref))
                    })
                    .collect()
            });
        let mut inner = self.inner.lock();
        let refs = match refs {
            Ok(r) => r,
            Err(e) => {
                inner.unreserve(index, u64::from(a.count));
                return Err(e);
            }
        };
        inner.maps.insert(
            index,
            Arc::new(GrantMap {
                dev: self.dev.clone(),
                index,
                refs,
                state: Mutex::new(MapState {
                    object: Weak::new(),
                    writable: true,
                    notify: None,
                }),
            }),
        );
        a.index = index;
        Ok(())
    }

    /// `UNMAP_GRANT_REF`: forget the map at `index` of exactly `count`
    /// grants. A mapping still in the process stays until its `munmap`.
    fn unmap_grant_ref(&self, a: &UnmapGrantRef) -> Result<(), Errno> {
        check_range(a.index, a.count)?;
        let mut inner = self.inner.lock();
        match inner.maps.get(&a.index) {
            Some(m) if m.count() == u64::from(a.count) => {}
            _ => return Err(Errno::EINVAL),
        }
        inner.maps.remove(&a.index);
        inner.unreserve(a.index, u64::from(a.count));
        Ok(())
    }

    /// `GET_OFFSET_FOR_VADDR`: the offset and count of the map whose
    /// mapping contains `vaddr`; the entry must map all of it.
    fn get_offset_for_vaddr(
        &self,
        maps: &dyn MapLookup,
        a: &mut GetOffsetForVaddr,
    ) -> Result<(), Errno> {
        let entry = maps.lookup(a.vaddr).ok_or(Errno::EINVAL)?;
        let inner = self.inner.lock();
        let map = inner
            .maps
            .values()
            .find(|m| core::ptr::eq(m.state.lock().object.as_ptr(), Arc::as_ptr(&entry.object)))
            .ok_or(Errno::EINVAL)?;
        if entry.offset != map.index || entry.size != map.count() * PAGE_SIZE {
            return Err(Errno::EINVAL);
        }
        a.offset = map.index;
        a.count = map.count() as u32;
        drop(inner);
        // `entry` holds an object reference: dropped with no lock held.
        drop(entry);
        Ok(())
    }

    /// `SET_UNMAP_NOTIFY` on the region holding offset `index`.
    fn set_unmap_notify(&self, a: &UnmapNotify) -> Result<(), Errno> {
        if a.action & !(UNMAP_NOTIFY_CLEAR_BYTE | UNMAP_NOTIFY_SEND_EVENT) != 0 {
            return Err(Errno::EINVAL);
        }
        let n = Notify {
            index: a.index,
            action: a.action,
            port: a.event_channel_port,
            generation: self.dev.svc.domain.generation(),
        };
        let inner = self.inner.lock();
        let within = |start: u64, count: u64| a.index - start < count * PAGE_SIZE;
        if let Some((&start, run)) = inner.grefs.range(..=a.index).next_back()
            && within(start, run.count())
        {
            // A lent page (maybe the shared zero page) is never written.
            if a.action & UNMAP_NOTIFY_CLEAR_BYTE != 0 && run.origin == Origin::User(Sharing::Loan)
            {
                return Err(Errno::EINVAL);
            }
            run.state.lock().notify = Some(n);
            return Ok(());
        }
        if let Some((&start, map)) = inner.maps.range(..=a.index).next_back()
            && within(start, map.count())
        {
            let mut st = map.state.lock();
            if a.action & UNMAP_NOTIFY_CLEAR_BYTE != 0 && !st.writable {
                return Err(Errno::EINVAL);
            }
            st.notify = Some(n);
            return Ok(());
        }
        Err(Errno::EINVAL)
    }

    /// The `mmap` of `size` bytes at file offset `offset` with protection
    /// `prot` (`d_mmap_single`): the region's managed device object, new
    /// or the one its other mappings share, and the most the mapping may
    /// ever allow. `offset` must be a region's start and `size` at most
    /// the region. A map region is mapped read-only unless `prot` has
    /// `WRITE`, and its maximum protection then lacks `WRITE` (the caller
    /// caps the map entry's with it, so `mprotect` cannot make it
    /// writable); a writable `mmap` of a region whose live object is
    /// read-only fails with `EACCES`, as does a read-only one of a region
    /// whose `CLEAR_BYTE` notify would have to write into it. `munmap` is
    /// dropping the returned object.
    pub fn mmap(&self, offset: u64, size: u64, prot: Prot) -> Result<DeviceMapping, Errno> {
        if !offset.is_multiple_of(PAGE_SIZE) || size == 0 {
            return Err(Errno::EINVAL);
        }
        let pages = size.div_ceil(PAGE_SIZE);
        let inner = self.inner.lock();
        if let Some(run) = inner.grefs.get(&offset) {
            // The process has a `GRANT_USER` run's pages mapped already.
            if pages > run.count() || run.origin != Origin::Allocated {
                return Err(Errno::EINVAL);
            }
            let mut st = run.state.lock();
            let object = match st.object.upgrade() {
                Some(o) => o,
                None => {
                    let ops = Arc::new(GrefPager::new(self.dev.clone(), run.clone()));
                    let o = self.allocate(ops, run.count(), offset)?;
                    st.object = Arc::downgrade(&o);
                    st.objects += 1;
                    o
                }
            };
            // Our own pages: always ours to write.
            return Ok(DeviceMapping {
                object,
                max_prot: Prot::all(),
            });
        }
        let map = inner.maps.get(&offset).ok_or(Errno::EINVAL)?;
        if pages > map.count() {
            return Err(Errno::EINVAL);
        }
        let mut st = map.state.lock();
        let writable = prot.contains(Prot::WRITE);
        if let Some(o) = st.object.upgrade() {
            if writable && !st.writable {
                // Dropped after the locks: it may be the last reference.
                drop(st);
                drop(inner);
                drop(o);
                return Err(EACCES);
            }
            let max_prot = map_max_prot(st.writable);
            return Ok(DeviceMapping {
                object: o,
                max_prot,
            });
        }
        if !writable
            && st
                .notify
                .is_some_and(|n| n.action & UNMAP_NOTIFY_CLEAR_BYTE != 0)
        {
            return Err(EACCES);
        }
        let n = map.count();
        // A mapping of a superpage or more starts its hole on a superpage
        // boundary, so that populate's run is physically aligned too and
        // the fault handler enters superpage entries for it.
        let align = if n >= SUPERPAGE_PAGES {
            SUPERPAGE_PAGES
        } else {
            1
        };
        let hole = self.dev.svc.holes.alloc(n, align)?;
        let frames = u32::try_from(n).map_err(|_| Errno::ENOMEM);
        let range = frames.and_then(|f| {
            let gpa = hole.gpa(0).ok_or(Errno::ENOMEM)?;
            self.dev
                .svc
                .vm
                .phys
                .register_fictitious(gpa, f, MemAttr::WriteBack)
        });
        let range = match range {
            Ok(r) => r,
            Err(e) => {
                self.dev.svc.holes.free(hole);
                return Err(e);
            }
        };
        add(&self.dev.counters.live_holes, 1);
        add(&self.dev.counters.live_hole_frames, n);
        let ops = Arc::new(MapPager::new(
            self.dev.clone(),
            map.clone(),
            hole,
            range,
            !writable,
        ));
        let o = self
            .allocate(ops.clone(), n, offset)
            .inspect_err(|_| ops.teardown())?;
        st.object = Arc::downgrade(&o);
        st.writable = writable;
        Ok(DeviceMapping {
            object: o,
            max_prot: map_max_prot(writable),
        })
    }

    /// A managed device object of `count` pages at `offset` served by `ops`.
    fn allocate(
        &self,
        ops: Arc<dyn vm::pager::device::DeviceOps>,
        count: u64,
        offset: u64,
    ) -> Result<Arc<VmObject>, Errno> {
        device_pager_allocate(
            self.dev.svc.vm.clone(),
            ObjectType::MgtDevice,
            ops,
            count * PAGE_SIZE,
            Prot::all(),
            offset,
        )
    }

    /// Foreign grant mappings (`MAP_GRANT_REF` records) this open holds:
    /// what cannot survive a move of the domain.
    pub fn foreign_maps(&self) -> usize {
        self.inner.lock().maps.len()
    }

    /// Grants allocated plus mapped that this open holds.
    pub fn grants_held(&self) -> u64 {
        self.inner.lock().used
    }
}

impl Drop for GntdevFile {
    /// `close` (and process exit, after the address space went): every
    /// record goes as with `DEALLOC_GREF`/`UNMAP_GRANT_REF`.
    fn drop(&mut self) {
        let inner = self.inner.get_mut();
        inner.maps.clear();
        for (_, run) in core::mem::take(&mut inner.grefs) {
            if let Some(notify) = run.deallocated() {
                self.dev.destroy_grefs(&run, notify);
            }
        }
    }
}
