//! A seeded fuzzer of the system call interface: random system calls, and
//! random ioctls, reads and writes of `/dev/xen/gntdev`, `/dev/xen/evtchn`
//! and `/dev/xen/xenstore`, with random and boundary arguments (null,
//! unmapped, kernel-half, non-canonical, misaligned and straddling
//! pointers; counts 0, 1, limits and past them, 2^32-1; random references,
//! domains, ports, flags and offsets), and random mmap, munmap, mprotect
//! and touches of what it mapped itself (mappings of up to 64 pages). Every call must return; the
//! kernel stays up, and the scenario (`scenario=fuzz`) checks after the
//! exit that free pages, grant references and hole frames are back.
//!
//! What it leaves alone, so that it runs to its end: `exit` and the
//! thread calls (a random entry would only kill the process), sleeps and
//! futex waits beyond a millisecond, reads of a device whose timeout it
//! has not just set, memory it did not map (its own text, data and stack),
//! writes to xenstore outside `data/fuzz`, and touches of device mappings
//! (a gntdev mapping of random references faults the process dead).
//!
//! Messages to xenstore through `/dev/xen/xenstore` are written only when
//! asked (`xenstore=1` on the kernel command line): with them, seed 1
//! wedged dom0's xenstored in the emulated host after 2722 calls (every
//! `xl` command and `xenstore-ls` in dom0 hung; our kernel waited for a
//! reply to a read of `no/such/node`). That is a finding to chase, not a
//! state to run the suite in.
//!
//! With a peer domain (`gnt-chaos` there shares, revokes and ends at
//! random), a quarter of the calls work on the peer's grants: maps of 1 to
//! 8 of its references (from the range its kernel hands out, consecutive
//! or not), unmaps, grant copies from and to them, and reads of a mapping
//! whose every grant a copy found live just before it was mapped. The peer
//! may revoke a grant in between: the read then kills the process
//! (SIGSEGV), which the scenario accepts and follows with the next process.
//!
//! Argument: the seed in bits 0-23, the peer's domain id in bits 24-39 and
//! bit 40 when there is a peer, the number of calls in bits 41-62, and bit
//! 63 for the xenstore messages. Prints the calls per second and a
//! histogram of the results (and what it did with the peer's grants).
#![no_std]
#![no_main]

use gnttab::Gnttab;
use urt::gntdev::{CopySideArg, GrantCopySegment};
use urt::{PAGE, errno, evtchn, gntdev, mman, nr, println, sysctl, xenstore};

use utest::rng::Rng;

urt::entry!(main);

/// Devices it opens (NUL-terminated), and paths that do not exist.
const PATHS: [&[u8]; 8] = [
    b"/dev/xen/gntdev\0",
    b"/dev/xen/evtchn\0",
    b"/dev/xen/xenstore\0",
    b"/dev/null\0",
    b"/dev/zero\0",
    b"/dev/console\0",
    b"/dev/nothing\0",
    b"\0",
];
/// Which of [`PATHS`] need a read timeout before a read.
const BLOCKING: [bool; 8] = [false, true, true, false, false, false, false, false];
/// Boundary counts and lengths.
const COUNTS: [u64; 12] = [
    0,
    1,
    2,
    16,
    4096,
    65535,
    65536,
    65537,
    0x7fff_ffff,
    0xffff_ffff,
    0x1_0000_0000,
    u64::MAX,
];
/// Addresses that are never user memory of ours.
const BAD_ADDRS: [u64; 9] = [
    0,
    1,
    0x1000,
    0x10_0000,
    0x40_0000_0000,
    0x7000_0000_0000,
    0x7fff_ffff_f000,
    0x8000_0000_0000_0000,
    u64::MAX - 7,
];
/// Known ioctls, and numbers near them.
const IOCTLS: [u32; 15] = [
    gntdev::IOCTL_GNTDEV_SET_UNMAP_NOTIFY,
    gntdev::IOCTL_GNTDEV_ALLOC_GREF,
    gntdev::IOCTL_GNTDEV_DEALLOC_GREF,
    gntdev::IOCTL_GNTDEV_MAP_GRANT_REF,
    gntdev::IOCTL_GNTDEV_UNMAP_GRANT_REF,
    gntdev::IOCTL_GNTDEV_GET_OFFSET_FOR_VADDR,
    gntdev::IOCTL_GNTDEV_GRANT_COPY,
    gntdev::IOCTL_GNTDEV_SET_MAX_GRANTS,
    evtchn::IOCTL_EVTCHN_BIND_INTERDOMAIN,
    evtchn::IOCTL_EVTCHN_BIND_UNBOUND_PORT,
    evtchn::IOCTL_EVTCHN_UNBIND,
    evtchn::IOCTL_EVTCHN_NOTIFY,
    evtchn::IOCTL_EVTCHN_SET_READ_TIMEOUT,
    evtchn::IOCTL_EVTCHN_STATUS,
    xenstore::IOCTL_XENSTORE_SET_READ_TIMEOUT,
];
/// Paths of the xenstore messages it writes.
const XS_PATHS: [&[u8]; 7] = [
    b"data/fuzz\0",
    b"data/fuzz/a\0",
    b"data/fuzz/b/c\0",
    b"/local/domain/0\0",
    b"/\0",
    b"no/such/node\0",
    b"data/fuzz/\x01\xff",
];
/// Xenstore message types that change nodes: only under `data/fuzz`.
const XS_CHANGES: [u32; 4] = [11, 12, 13, 14];
/// Descriptors and mappings it keeps at most.
const MAX_FDS: usize = 12;
const MAX_MAPS: usize = 16;

/// The largest mapping it touches (64 pages).
const TOUCH_MAX: u64 = 64 * PAGE as u64;
/// Calls between progress lines.
const PROGRESS: u64 = 5000;
/// Bytes of the scratch area: argument structures, buffers and arrays.
const SCRATCH: usize = 4 * PAGE;

/// The peer's grant references come from `0..PEER_REFS`: its kernel
/// hands out the lowest free ones above the 8 reserved
/// (`xen/src/grant/refs.rs`), and `gnt-chaos` keeps at most 512 live.
const PEER_REFS: u64 = 640;
/// Mappings of the peer's grants it keeps at most, and grants in one.
const MAX_GRANT_MAPS: usize = 8;
const GRANTS_PER_MAP: usize = 8;

/// One mapping of the peer's grants.
#[derive(Clone, Copy)]
struct GrantMap {
    addr: u64,
    count: usize,
    /// Mapped read-only, and a copy from each of its grants worked just
    /// before: it may be read.
    readable: bool,
}

/// The peer domain and what it maps of it.
struct Peer {
    domid: u16,
    gnt: Gnttab,
    maps: [GrantMap; MAX_GRANT_MAPS],
    nmaps: usize,
    /// Maps made and refused, grant copies that worked and failed (by
    /// segment), reads of the peer's pages.
    mapped: u64,
    refused: u64,
    copied: u64,
    copy_failed: u64,
    reads: u64,
}

impl Peer {
    /// One random call on the peer's grants; returns its raw result.
    fn call(&mut self, rng: &mut Rng, scratch: u64) -> i64 {
        match rng.below(8) {
            0..=2 => self.map(rng, scratch),
            3 | 4 => self.unmap(rng),
            5 | 6 => {
                let mut refs = [0; GRANTS_PER_MAP];
                let n = 1 + rng.below(GRANTS_PER_MAP as u64) as usize;
                for r in refs[..n].iter_mut() {
                    *r = rng.below(PEER_REFS) as u32;
                }
                let to_peer = rng.chance(4);
                self.copy(&refs[..n], scratch, to_peer) as i64
            }
            _ => self.read(rng),
        }
    }

    /// Maps 1 to 8 references (consecutive from a random one, some
    /// replaced by others) read-only or writable, after a copy from each;
    /// drops an old mapping first when it keeps the most.
    fn map(&mut self, rng: &mut Rng, scratch: u64) -> i64 {
        if self.nmaps == MAX_GRANT_MAPS {
            let _ = self.unmap(rng);
        }
        let n = 1 + rng.below(GRANTS_PER_MAP as u64) as usize;
        let base = rng.below(PEER_REFS) as u32;
        let mut refs = [0; GRANTS_PER_MAP];
        for (i, r) in refs[..n].iter_mut().enumerate() {
            *r = if rng.chance(4) {
                rng.below(PEER_REFS) as u32
            } else {
                base + i as u32
            };
        }
        let writable = rng.chance(3);
        let live = self.copy(&refs[..n], scratch, false) == n;
        match self
            .gnt
            .map_domain_grant_refs(u32::from(self.domid), &refs[..n], writable)
        {
            Ok(addr) => {
                self.mapped += 1;
                self.maps[self.nmaps] = GrantMap {
                    addr,
                    count: n,
                    readable: live && !writable,
                };
                self.nmaps += 1;
                0
            }
            Err(e) => {
                self.refused += 1;
                -i64::from(e)
            }
        }
    }

    /// Unmaps one of its mappings of the peer's grants.
    fn unmap(&mut self, rng: &mut Rng) -> i64 {
        if self.nmaps == 0 {
            return 0;
        }
        let i = rng.below(self.nmaps as u64) as usize;
        let m = self.maps[i];
        self.nmaps -= 1;
        self.maps[i] = self.maps[self.nmaps];
        match self.gnt.unmap(m.addr, m.count) {
            Ok(_) => 0,
            Err(e) => -i64::from(e),
        }
    }

    /// Copies 8 bytes from (or to) each of `refs` into (or from) the
    /// scratch area, one segment each; returns how many worked.
    fn copy(&mut self, refs: &[u32], scratch: u64, to_peer: bool) -> usize {
        let mut segs = [GrantCopySegment::default(); GRANTS_PER_MAP];
        for (i, (s, &gref)) in segs.iter_mut().zip(refs).enumerate() {
            let foreign = CopySideArg::Foreign {
                gref,
                offset: 0,
                domid: self.domid,
            }
            .encode();
            let local = CopySideArg::Virt(scratch + 8 * i as u64).encode();
            *s = if to_peer {
                GrantCopySegment {
                    source: local,
                    dest: foreign,
                    len: 8,
                    flags: gntdev::GNTCOPY_DEST_GREF,
                    status: 0,
                }
            } else {
                GrantCopySegment {
                    source: foreign,
                    dest: local,
                    len: 8,
                    flags: gntdev::GNTCOPY_SOURCE_GREF,
                    status: 0,
                }
            };
        }
        let segs = &mut segs[..refs.len()];
        let ok = match self.gnt.grant_copy(segs) {
            Ok(_) => segs.iter().filter(|s| s.status == 0).count(),
            Err(_) => 0,
        };
        self.copied += ok as u64;
        self.copy_failed += (refs.len() - ok) as u64;
        ok
    }

    /// Reads a word of a readable mapping of the peer's grants: the fault
    /// maps them all; one revoked since the copy kills the process.
    fn read(&mut self, rng: &mut Rng) -> i64 {
        let readable = self.maps[..self.nmaps]
            .iter()
            .filter(|m| m.readable)
            .count();
        if readable == 0 {
            return 0;
        }
        let k = rng.below(readable as u64) as usize;
        let Some(m) = self.maps[..self.nmaps].iter().filter(|m| m.readable).nth(k) else {
            return 0;
        };
        let words = (m.count * PAGE / 8) as u64;
        let at = (m.addr + rng.below(words) * 8) as *const u64;
        // SAFETY: a word of our own read-only mapping of the peer's
        // grants; a grant revoked since its copy makes the kernel kill the
        // process at the fault, never read something else.
        core::hint::black_box(unsafe { at.read_volatile() });
        self.reads += 1;
        0
    }
}

/// One mapping of its own.
#[derive(Clone, Copy)]
struct Map {
    addr: u64,
    len: u64,
    /// Anonymous or `/dev/zero`, with its rights known: it may be touched.
    touch: Option<u64>,
}

struct Fuzz {
    rng: Rng,
    /// Open descriptors and the index of their path in [`PATHS`].
    fds: [(u64, usize); MAX_FDS],
    nfds: usize,
    maps: [Map; MAX_MAPS],
    nmaps: usize,
    /// The scratch area (mapped once, never handed to munmap or mprotect).
    scratch: u64,
    /// Results: index 0 successes, `e` errno `e` (the last one: others).
    hist: [u64; 64],
    /// Whether to write xenstore messages (else random bytes only).
    xs_messages: bool,
    /// The peer domain, if any.
    peer: Option<Peer>,
}

impl Fuzz {
    /// A random pointer: into the scratch area (aligned or not, or
    /// straddling its end), into a mapping of ours, or never ours.
    fn ptr(&mut self) -> u64 {
        match self.rng.below(8) {
            0..=2 => self.scratch + self.rng.below(64) * 8,
            3 => self.scratch + self.rng.below(SCRATCH as u64),
            4 => self.scratch + SCRATCH as u64 - self.rng.below(16),
            5 if self.nmaps > 0 => {
                let m = self.maps[self.rng.below(self.nmaps as u64) as usize];
                m.addr + self.rng.below(m.len + 8)
            }
            _ => self.rng.pick(&BAD_ADDRS),
        }
    }

    /// A random count or length.
    fn count(&mut self) -> u64 {
        if self.rng.chance(2) {
            self.rng.pick(&COUNTS)
        } else {
            self.rng.below(4 * PAGE as u64)
        }
    }

    /// A random descriptor: one of ours, or not.
    fn fd(&mut self) -> u64 {
        if self.nfds > 0 && !self.rng.chance(8) {
            self.fds[self.rng.below(self.nfds as u64) as usize].0
        } else {
            self.rng.pick(&[0, 1, 2, 63, 64, 1000, u64::MAX])
        }
    }

    /// Fills the scratch area's first `words` words with argument values:
    /// counts, small numbers, domains, ports, references, pointers.
    fn fill(&mut self, words: usize) {
        for i in 0..words {
            let v = match self.rng.below(6) {
                0 => self.count(),
                1 => self.rng.below(16),
                2 => self.rng.pick(&[0, 1, 0x7ff0, 0x7ff2, 0xffff, 0x1_0000]),
                3 => self.ptr(),
                4 => u64::from(self.rng.bits() as u32),
                _ => self.rng.bits(),
            };
            // SAFETY: inside the scratch area, mapped read-write for the
            // whole run.
            unsafe { ((self.scratch + i as u64 * 8) as *mut u64).write_volatile(v) };
        }
    }

    fn record(&mut self, r: i64) {
        let slot = if r >= 0 {
            0
        } else {
            (-r).min(self.hist.len() as i64 - 1) as usize
        };
        self.hist[slot] += 1;
    }

    /// One random call; returns its raw result.
    fn call(&mut self) -> i64 {
        if let Some(p) = self.peer.as_mut()
            && self.rng.chance(4)
        {
            return p.call(&mut self.rng, self.scratch);
        }
        match self.rng.below(20) {
            0 => {
                let i = self.rng.below(PATHS.len() as u64) as usize;
                let path = if self.rng.chance(6) {
                    self.ptr()
                } else {
                    PATHS[i].as_ptr() as u64
                };
                let flags = self.rng.pick(&[0, 1, 2, 3, 0x40, u64::MAX]);
                let r = urt::syscall(nr::OPEN, [path, flags, 0, 0, 0, 0]);
                if r >= 0 {
                    if self.nfds < MAX_FDS && path == PATHS[i].as_ptr() as u64 {
                        self.fds[self.nfds] = (r as u64, i);
                        self.nfds += 1;
                    } else {
                        let _ = urt::close(r as u64);
                    }
                }
                r
            }
            1 if self.nfds > 0 => {
                let i = self.rng.below(self.nfds as u64) as usize;
                let r = urt::syscall(nr::CLOSE, [self.fds[i].0, 0, 0, 0, 0, 0]);
                self.nfds -= 1;
                self.fds[i] = self.fds[self.nfds];
                r
            }
            2..=6 => {
                let fd = self.fd();
                let cmd = if self.rng.chance(8) {
                    self.rng.bits() as u32
                } else {
                    self.rng.pick(&IOCTLS)
                };
                self.fill(16);
                let arg = self.ptr();
                urt::syscall(nr::IOCTL, [fd, u64::from(cmd), arg, 0, 0, 0])
            }
            7 | 8 => self.read(),
            9 | 10 => self.write(),
            11 | 12 => self.mmap(),
            13 => self.munmap(),
            14 => self.mprotect(),
            15 | 16 => {
                if self.touch() {
                    0
                } else {
                    -i64::from(errno::EIO)
                }
            }
            17 => {
                let key = self.rng.pick(&[
                    sysctl::VM_FREE_PAGES,
                    sysctl::GRANT_REFS,
                    sysctl::HOLE_FRAMES,
                    sysctl::GNTDEV_PENDING,
                    99,
                    u64::MAX,
                ]);
                urt::syscall(nr::SYSCTL, [key, sysctl::READ_ONLY, 0, 0, 0, 0])
            }
            18 => {
                let ns = self.rng.below(1_000_000);
                let n = self
                    .rng
                    .pick(&[nr::GETPID, nr::CLOCK, nr::YIELD, nr::SLEEP]);
                urt::syscall(n, [ns, 0, 0, 0, 0, 0])
            }
            _ => {
                // Unknown numbers, and futex wakes of random words.
                let n = self.rng.pick(&[nr::FUTEX_WAKE, 18, 200, u64::MAX]);
                let a = [self.ptr(), self.count(), 0, 0, 0, 0];
                urt::syscall(n, a)
            }
        }
    }

    /// A read: a blocking device's timeout is set to 1 ms first.
    fn read(&mut self) -> i64 {
        if self.nfds == 0 {
            return urt::syscall(nr::READ, [self.fd(), self.ptr(), self.count(), 0, 0, 0]);
        }
        let (fd, path) = self.fds[self.rng.below(self.nfds as u64) as usize];
        if BLOCKING[path] {
            let cmd = if path == 1 {
                evtchn::IOCTL_EVTCHN_SET_READ_TIMEOUT
            } else {
                xenstore::IOCTL_XENSTORE_SET_READ_TIMEOUT
            };
            let ms: u64 = 1_000_000;
            let _ = urt::ioctl(fd, cmd, &ms as *const u64 as u64);
        }
        let (buf, len) = if self.rng.chance(2) {
            (self.scratch, self.rng.below(SCRATCH as u64))
        } else {
            (self.ptr(), self.count())
        };
        urt::syscall(nr::READ, [fd, buf, len, 0, 0, 0])
    }

    /// A write: random bytes, or to xenstore a message (random type,
    /// transaction and payload; changes only under `data/fuzz`). Never to
    /// the console (descriptors 0-2 and its opens): the log stays
    /// readable.
    fn write(&mut self) -> i64 {
        let fd = self.fd();
        let console = fd <= 2
            || self.fds[..self.nfds]
                .iter()
                .any(|&(f, p)| f == fd && p == 5);
        if console {
            return urt::syscall(nr::WRITE, [fd, self.scratch, 0, 0, 0, 0]);
        }
        let is_xs = self.fds[..self.nfds]
            .iter()
            .any(|&(f, p)| f == fd && p == 2);
        if is_xs && !self.xs_messages {
            return 0;
        }
        if is_xs && !self.rng.chance(4) {
            let path = self.rng.pick(&XS_PATHS);
            let mut ty = self.rng.below(24) as u32;
            if XS_CHANGES.contains(&ty) && !path.starts_with(b"data/fuzz") {
                ty = 2;
            }
            let len = path.len() + self.rng.below(3) as usize;
            let hdr = [
                ty,
                self.rng.below(1000) as u32,
                self.rng.below(4) as u32,
                len as u32,
            ];
            // SAFETY: the header, the path and a little more fit in the
            // scratch area, mapped read-write for the whole run.
            unsafe {
                let p = self.scratch as *mut u8;
                for (i, w) in hdr.iter().enumerate() {
                    (p.add(i * 4) as *mut u32).write_unaligned(*w);
                }
                for (i, b) in path.iter().enumerate() {
                    p.add(16 + i).write_volatile(*b);
                }
            }
            return urt::syscall(nr::WRITE, [fd, self.scratch, 16 + len as u64, 0, 0, 0]);
        }
        self.fill(64);
        let (buf, len) = if self.rng.chance(2) {
            (self.scratch, self.rng.below(512))
        } else {
            (self.ptr(), self.count())
        };
        urt::syscall(nr::WRITE, [fd, buf, len, 0, 0, 0])
    }

    /// An mmap: anonymous or of a descriptor, with random rights, flags,
    /// offset and length; `MAP_FIXED` only over a mapping of ours or at an
    /// address that is never ours.
    fn mmap(&mut self) -> i64 {
        let prot = self.rng.below(8);
        let mut flags = self.rng.pick(&[
            mman::MAP_PRIVATE | mman::MAP_ANON,
            mman::MAP_SHARED | mman::MAP_ANON,
            mman::MAP_SHARED,
            mman::MAP_PRIVATE,
            0,
            0xff,
        ]);
        let len = if self.rng.chance(3) {
            self.count()
        } else {
            (1 + self.rng.below(16)) * PAGE as u64
        };
        let anon = flags & mman::MAP_ANON != 0;
        let fd = if anon { u64::MAX } else { self.fd() };
        let offset = self.rng.pick(&[0, PAGE as u64, 0x1000_0000, 1, !0xfff]);
        let mut len = len;
        let mut addr = 0;
        if flags & mman::MAP_FIXED != 0 || self.rng.chance(4) {
            flags |= mman::MAP_FIXED;
            if self.nmaps > 0 && self.rng.chance(2) {
                // Over one of ours, and no further.
                let m = self.maps[self.rng.below(self.nmaps as u64) as usize];
                addr = m.addr;
                len = len.min(m.len);
            } else {
                addr = self.rng.pick(&BAD_ADDRS);
            }
        }
        let r = urt::syscall(nr::MMAP, [addr, len, prot, flags, fd, offset]);
        let fixed = flags & mman::MAP_FIXED != 0;
        if fixed && r < 0 {
            // A refused MAP_FIXED may have removed what was there first.
            self.forget(
                addr,
                len.saturating_add(PAGE as u64 - 1) & !(PAGE as u64 - 1),
                None,
            );
        }
        if r >= 0 {
            let zero = !anon
                && self.fds[..self.nfds]
                    .iter()
                    .any(|&(f, p)| f == fd && p == 4);
            // Large ones are left untouched: sparse touches of them would
            // take page-table pages without bound, and a fault the kernel
            // has no memory for kills the process (it does not wait).
            let small = len <= TOUCH_MAX;
            let touch = ((anon || zero) && small).then_some(prot);
            let m = Map {
                addr: r as u64,
                len: len.next_multiple_of(PAGE as u64),
                touch,
            };
            // A MAP_FIXED mapping replaced what it overlapped: the rest of
            // those goes too, and the new one is tracked alone.
            self.forget(m.addr, m.len, Some(m));
            if self.nmaps < MAX_MAPS {
                self.maps[self.nmaps] = m;
                self.nmaps += 1;
            } else {
                let _ = urt::munmap(m.addr, m.len as usize);
            }
        }
        r
    }

    /// Drops every mapping of ours that overlaps `[addr, addr + len)` and
    /// unmaps it, but for the part that `kept`, a new mapping there, now
    /// holds.
    fn forget(&mut self, addr: u64, len: u64, kept: Option<Map>) {
        let end = addr.saturating_add(len);
        let mut i = 0;
        while i < self.nmaps {
            let m = self.maps[i];
            if m.addr < end && addr < m.addr + m.len {
                match kept {
                    Some(k) => {
                        if m.addr < k.addr {
                            let _ = urt::munmap(m.addr, (k.addr - m.addr) as usize);
                        }
                        if k.addr + k.len < m.addr + m.len {
                            let _ = urt::munmap(
                                k.addr + k.len,
                                (m.addr + m.len - k.addr - k.len) as usize,
                            );
                        }
                    }
                    None => {
                        let _ = urt::munmap(m.addr, m.len as usize);
                    }
                }
                self.nmaps -= 1;
                self.maps[i] = self.maps[self.nmaps];
            } else {
                i += 1;
            }
        }
    }

    fn munmap(&mut self) -> i64 {
        if self.nmaps == 0 || self.rng.chance(4) {
            let (addr, len) = (self.rng.pick(&BAD_ADDRS), self.count());
            let r = urt::syscall(nr::MUNMAP, [addr, len, 0, 0, 0, 0]);
            // A MAP_FIXED mapping of ours may sit at such an address.
            if r >= 0 {
                self.forget(addr, len, None);
            }
            return r;
        }
        let i = self.rng.below(self.nmaps as u64) as usize;
        let m = self.maps[i];
        // Whole, or a part: then it is no longer one mapping of ours.
        let (off, len) = if self.rng.chance(2) {
            (0, m.len)
        } else {
            let off = self.rng.below(m.len / PAGE as u64) * PAGE as u64;
            (off, self.rng.below(m.len - off + 1))
        };
        let r = urt::syscall(nr::MUNMAP, [m.addr + off, len, 0, 0, 0, 0]);
        self.forget(m.addr, m.len, None);
        r
    }

    fn mprotect(&mut self) -> i64 {
        let prot = self.rng.below(8);
        if self.nmaps == 0 || self.rng.chance(4) {
            let (addr, len) = (self.rng.pick(&BAD_ADDRS), self.count());
            let r = urt::syscall(nr::MPROTECT, [addr, len, prot, 0, 0, 0]);
            // A MAP_FIXED mapping of ours may sit at such an address: its
            // rights are no longer known.
            let end = addr.saturating_add(len);
            for m in self.maps[..self.nmaps].iter_mut() {
                if m.addr < end && addr < m.addr + m.len {
                    m.touch = None;
                }
            }
            return r;
        }
        let i = self.rng.below(self.nmaps as u64) as usize;
        let m = self.maps[i];
        let r = urt::syscall(nr::MPROTECT, [m.addr, m.len, prot, 0, 0, 0]);
        if r >= 0 && m.touch.is_some() {
            self.maps[i].touch = Some(prot);
        } else if r < 0 {
            // A refused change may still have changed a part.
            self.maps[i].touch = None;
        }
        r
    }

    /// Reads or writes a word of a mapping of ours that its rights allow;
    /// `false` if a word written does not read back.
    fn touch(&mut self) -> bool {
        if self.nmaps == 0 {
            return true;
        }
        let m = self.maps[self.rng.below(self.nmaps as u64) as usize];
        let Some(prot) = m.touch else { return true };
        let at = (m.addr + self.rng.below(m.len / 8) * 8) as *mut u64;
        if prot & mman::PROT_WRITE != 0 && prot & mman::PROT_READ != 0 {
            // SAFETY: a word of our own read-write mapping.
            unsafe {
                at.write_volatile(at as u64);
                at.read_volatile() == at as u64
            }
        } else {
            if prot & mman::PROT_READ != 0 {
                // SAFETY: a word of our own readable mapping.
                core::hint::black_box(unsafe { at.read_volatile() });
            }
            true
        }
    }
}

fn main(arg: u64) -> i32 {
    let seed = arg & 0xff_ffff;
    let calls = ((arg >> 41) & 0x3f_ffff).max(1);
    let xs_messages = arg >> 63 != 0;
    let peer = if arg & 1 << 40 != 0 {
        let Ok(gnt) = Gnttab::open() else {
            println!("fuzz: cannot open /dev/xen/gntdev");
            return 1;
        };
        Some(Peer {
            domid: (arg >> 24) as u16,
            gnt,
            maps: [GrantMap {
                addr: 0,
                count: 0,
                readable: false,
            }; MAX_GRANT_MAPS],
            nmaps: 0,
            mapped: 0,
            refused: 0,
            copied: 0,
            copy_failed: 0,
            reads: 0,
        })
    } else {
        None
    };
    let Ok(scratch) = urt::mmap(
        0,
        SCRATCH,
        mman::PROT_READ | mman::PROT_WRITE,
        mman::MAP_PRIVATE | mman::MAP_ANON,
        u64::MAX,
        0,
    ) else {
        println!("fuzz: no scratch memory");
        return 1;
    };
    let mut f = Fuzz {
        rng: Rng::new(seed),
        fds: [(0, 0); MAX_FDS],
        nfds: 0,
        maps: [Map {
            addr: 0,
            len: 0,
            touch: None,
        }; MAX_MAPS],
        nmaps: 0,
        scratch,
        hist: [0; 64],
        xs_messages,
        peer,
    };
    // (Two lines: an empty argument would end the line early, a write of
    // 0 bytes being a short write to `urt`'s stdout.)
    if xs_messages {
        println!("fuzz: seed {seed}, {calls} calls, with xenstore messages");
    } else if let Some(p) = &f.peer {
        println!(
            "fuzz: seed {seed}, {calls} calls, with domain {}'s grants",
            p.domid
        );
    } else {
        println!("fuzz: seed {seed}, {calls} calls");
    }
    let t0 = urt::clock_ns();
    for i in 0..calls {
        if i % PROGRESS == 0 {
            println!("fuzz: {i} calls made");
        }
        let r = f.call();
        if r == -i64::from(errno::EIO) {
            println!("fuzz: FAIL call {i}: a word written to our own memory did not read back");
            return 1;
        }
        f.record(r);
    }
    let ns = (urt::clock_ns() - t0).max(1);
    for i in 0..f.nfds {
        let _ = urt::close(f.fds[i].0);
    }
    f.forget(0, u64::MAX, None);
    println!(
        "fuzz: {calls} calls in {} ms, {} calls/s",
        ns / 1_000_000,
        u128::from(calls) * 1_000_000_000 / u128::from(ns)
    );
    urt::print!("fuzz: results: ok {}", f.hist[0]);
    let other = f.hist.len() - 1;
    for (e, &n) in f.hist.iter().enumerate().skip(1) {
        if n != 0 && e < other {
            urt::print!(", errno {e} {n}");
        }
    }
    println!(", errno other {}", f.hist[other]);
    if let Some(p) = &f.peer {
        println!(
            "fuzz: peer: {} map(s) made, {} refused; {} grant copies worked, {} failed; {} read(s) of its pages",
            p.mapped, p.refused, p.copied, p.copy_failed, p.reads
        );
    }
    0
}
