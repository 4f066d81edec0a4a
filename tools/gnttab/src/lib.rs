//! The user library of grant tables, after Xen's libxengnttab with its
//! FreeBSD backend (`tools/libs/gnttab/freebsd.c`): [`Gnttab`] over
//! `/dev/xen/gntdev`, with [`xs`] (xenstore over `/dev/xen/xenstore`) and
//! [`evtchn`] (event channels over `/dev/xen/evtchn`) for the programs
//! that run the share protocol.
//!
//! No heap: arrays the ioctls need are anonymous mappings ([`Buf`]).
#![no_std]

pub mod evtchn;
pub mod xs;

use urt::mman::{MAP_ANON, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE};
use urt::{PAGE, SysResult};

/// gntdev's ioctl structs and numbers, from the user ABI (`uapi::gntdev`).
pub use urt::gntdev as abi;

/// Anonymous memory holding `len` values of `T` (zeroed), unmapped on drop.
pub struct Buf<T: Copy> {
    addr: u64,
    len: usize,
    _t: core::marker::PhantomData<T>,
}

impl<T: Copy> Buf<T> {
    /// `len` zeroed values.
    pub fn new(len: usize) -> Result<Self, i32> {
        let bytes = (len.max(1) * core::mem::size_of::<T>()).next_multiple_of(PAGE);
        let addr = urt::mmap(
            0,
            bytes,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANON,
            0,
            0,
        )?;
        Ok(Self {
            addr,
            len,
            _t: core::marker::PhantomData,
        })
    }

    /// The values.
    pub fn values(&mut self) -> &mut [T] {
        // SAFETY: the mapping is ours, readable and writable, zeroed
        // (all-zero `T`s are what callers use `Buf` for: plain integers
        // and `repr(C)` structs of them), page-aligned and `len` long.
        unsafe { core::slice::from_raw_parts_mut(self.addr as *mut T, self.len) }
    }

    /// Its user address.
    pub fn addr(&self) -> u64 {
        self.addr
    }
}

impl<T: Copy> Drop for Buf<T> {
    fn drop(&mut self) {
        let bytes = (self.len.max(1) * core::mem::size_of::<T>()).next_multiple_of(PAGE);
        let _ = urt::munmap(self.addr, bytes);
    }
}

/// A notification for when a mapping or share goes: clear the byte at
/// `offset` in it, and/or signal local event channel `port`.
#[derive(Clone, Copy, Debug)]
pub struct Notify {
    /// Byte offset in the mapping of the byte to clear (`None`: none).
    pub offset: Option<u64>,
    /// Local port to signal (`None`: none).
    pub port: Option<u32>,
}

/// The `flags` of `ALLOC_GREF` and `GRANT_USER`.
fn alloc_flags(writable: bool) -> u16 {
    if writable {
        abi::GNTDEV_ALLOC_FLAG_WRITABLE
    } else {
        0
    }
}

fn ioctl<T>(fd: u64, cmd: u32, arg: &mut T) -> SysResult {
    urt::ioctl(fd, cmd, arg as *mut T as u64)
}

/// An open of `/dev/xen/gntdev` (`xengnttab_handle`, which also serves
/// as `xengntshr_handle`).
pub struct Gnttab {
    fd: u64,
}

impl Gnttab {
    /// Opens the device (`xengnttab_open`).
    pub fn open() -> Result<Self, i32> {
        Ok(Self {
            fd: urt::open(b"/dev/xen/gntdev\0", urt::fcntl::O_RDWR)?,
        })
    }

    /// The descriptor.
    pub fn fd(&self) -> u64 {
        self.fd
    }

    /// `SET_UNMAP_NOTIFY` for the region at file offset `index`.
    fn set_notify(&self, index: u64, n: Notify) -> SysResult {
        let mut a = abi::UnmapNotify {
            index: index + n.offset.unwrap_or(0),
            action: 0,
            event_channel_port: n.port.unwrap_or(0),
        };
        if n.offset.is_some() {
            a.action |= abi::UNMAP_NOTIFY_CLEAR_BYTE;
        }
        if n.port.is_some() {
            a.action |= abi::UNMAP_NOTIFY_SEND_EVENT;
        }
        ioctl(self.fd, abi::IOCTL_GNTDEV_SET_UNMAP_NOTIFY, &mut a)
    }

    /// Maps grants `refs[i]` of domains `domids[i]` (one domain for all
    /// when `domids` has one entry) contiguously (`xengnttab_map_grant_refs`):
    /// `MAP_GRANT_REF`, `mmap(MAP_SHARED)` at its index, then the optional
    /// notify; on a failure after `MAP_GRANT_REF`, `munmap` and
    /// `UNMAP_GRANT_REF`. Returns the address.
    pub fn map_grant_refs(
        &self,
        domids: &[u32],
        refs: &[u32],
        writable: bool,
        notify: Option<Notify>,
    ) -> Result<u64, i32> {
        let count = refs.len();
        if domids.is_empty() || (domids.len() != 1 && domids.len() != count) {
            return Err(urt::errno::EINVAL);
        }
        let mut pairs = Buf::<abi::GrantRefArg>::new(count)?;
        for (i, p) in pairs.values().iter_mut().enumerate() {
            *p = abi::GrantRefArg {
                domid: domids[if domids.len() == 1 { 0 } else { i }],
                gref: refs[i],
            };
        }
        let mut m = abi::MapGrantRef {
            count: count as u32,
            pad0: 0,
            index: 0,
            refs: pairs.addr(),
        };
        ioctl(self.fd, abi::IOCTL_GNTDEV_MAP_GRANT_REF, &mut m)?;
        let prot = if writable {
            PROT_READ | PROT_WRITE
        } else {
            PROT_READ
        };
        let len = count * PAGE;
        let mut addr = None;
        let r = urt::mmap(0, len, prot, MAP_SHARED, self.fd, m.index).and_then(|a| {
            addr = Some(a);
            match notify {
                Some(n) => self.set_notify(m.index, n).map(|_| a),
                None => Ok(a),
            }
        });
        if r.is_err() {
            if let Some(a) = addr {
                let _ = urt::munmap(a, len);
            }
            let mut u = abi::UnmapGrantRef {
                index: m.index,
                count: count as u32,
            };
            let _ = ioctl(self.fd, abi::IOCTL_GNTDEV_UNMAP_GRANT_REF, &mut u);
        }
        r
    }

    /// Maps grants `refs` of domain `domid` (`xengnttab_map_domain_grant_refs`).
    pub fn map_domain_grant_refs(&self, domid: u32, refs: &[u32], writable: bool) -> SysResult {
        self.map_grant_refs(&[domid], refs, writable, None)
    }

    /// Unmaps `count` pages at `addr` mapped by this handle
    /// (`xengnttab_unmap`): `GET_OFFSET_FOR_VADDR` (the count must match),
    /// `munmap`, `UNMAP_GRANT_REF`.
    pub fn unmap(&self, addr: u64, count: usize) -> SysResult {
        let mut g = abi::GetOffsetForVaddr {
            vaddr: addr,
            ..Default::default()
        };
        ioctl(self.fd, abi::IOCTL_GNTDEV_GET_OFFSET_FOR_VADDR, &mut g)?;
        if g.count as usize != count {
            return Err(urt::errno::EINVAL);
        }
        urt::munmap(addr, count * PAGE)?;
        let mut u = abi::UnmapGrantRef {
            index: g.offset,
            count: g.count,
        };
        ioctl(self.fd, abi::IOCTL_GNTDEV_UNMAP_GRANT_REF, &mut u)
    }

    /// Copies `segs` with grant copies (`xengnttab_grant_copy`); each
    /// segment's `status` says how it went.
    pub fn grant_copy(&self, segs: &mut [abi::GrantCopySegment]) -> SysResult {
        let mut a = abi::GrantCopy {
            count: segs.len() as u32,
            segments: segs.as_mut_ptr() as u64,
        };
        ioctl(self.fd, abi::IOCTL_GNTDEV_GRANT_COPY, &mut a)
    }

    /// Shares `refs.len()` new zeroed pages with `domid`
    /// (`xengntshr_share_pages`): `ALLOC_GREF` (the references land in
    /// `refs`), `mmap`, the optional notify, then `DEALLOC_GREF` at once
    /// (the pages live while mapped). Returns the address.
    pub fn share_pages(
        &self,
        domid: u16,
        refs: &mut [u32],
        writable: bool,
        notify: Option<Notify>,
    ) -> SysResult {
        let count = refs.len();
        let mut ids = Buf::<u32>::new(count)?;
        let mut a = abi::AllocGref {
            domid,
            flags: alloc_flags(writable),
            count: count as u32,
            index: 0,
            gref_ids: ids.addr(),
        };
        ioctl(self.fd, abi::IOCTL_GNTDEV_ALLOC_GREF, &mut a)?;
        let len = count * PAGE;
        let r = urt::mmap(0, len, PROT_READ | PROT_WRITE, MAP_SHARED, self.fd, a.index).and_then(
            |addr| match notify {
                Some(n) => self.set_notify(a.index, n).map(|_| addr).inspect_err(|_| {
                    let _ = urt::munmap(addr, len);
                }),
                None => Ok(addr),
            },
        );
        let _ = self.dealloc_grefs(a.index, count);
        refs.copy_from_slice(ids.values());
        r
    }

    /// Shares one page with a notify byte at `offset` and/or event `port`
    /// (`xengntshr_share_page_notify`); its reference lands in `gref`.
    pub fn share_page_notify(
        &self,
        domid: u16,
        writable: bool,
        notify: Notify,
        gref: &mut u32,
    ) -> SysResult {
        self.share_pages(domid, core::slice::from_mut(gref), writable, Some(notify))
    }

    /// Grants the `refs.len()` pages at `addr` (page-aligned), which the
    /// caller already has, to `domid` as they are, without a copy
    /// (`GRANT_USER`, ours: libxengnttab has no such call); the
    /// references land in `refs`. Read-only grants lend the pages: the
    /// caller's later writes go to a copy, and the peer keeps seeing the
    /// contents at grant time. Writable grants share them both ways.
    /// Returns the index that [`dealloc_grefs`](Self::dealloc_grefs)
    /// takes.
    pub fn grant_user(
        &self,
        domid: u16,
        addr: u64,
        refs: &mut [u32],
        writable: bool,
    ) -> Result<u64, i32> {
        let mut ids = Buf::<u32>::new(refs.len())?;
        let mut a = abi::GrantUser {
            domid,
            flags: alloc_flags(writable),
            count: refs.len() as u32,
            index: 0,
            gref_ids: ids.addr(),
            vaddr: addr,
        };
        ioctl(self.fd, abi::IOCTL_GNTDEV_GRANT_USER, &mut a)?;
        refs.copy_from_slice(ids.values());
        Ok(a.index)
    }

    /// Ends the `count` grants at `index` of an `ALLOC_GREF` or a
    /// [`grant_user`](Self::grant_user) (`DEALLOC_GREF`); pages the peer
    /// still maps stay until it unmaps them.
    pub fn dealloc_grefs(&self, index: u64, count: usize) -> SysResult {
        let mut d = abi::DeallocGref {
            index,
            count: count as u32,
        };
        ioctl(self.fd, abi::IOCTL_GNTDEV_DEALLOC_GREF, &mut d)
    }

    /// Ends a share of `count` pages at `addr` (`xengntshr_unshare`):
    /// just `munmap`.
    pub fn unshare(&self, addr: u64, count: usize) -> SysResult {
        urt::munmap(addr, count * PAGE)
    }
}

impl Drop for Gnttab {
    fn drop(&mut self) {
        let _ = urt::close(self.fd);
    }
}
