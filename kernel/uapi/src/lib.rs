//! The kernel's user ABI, the one definition both sides build from (as
//! FreeBSD's `sys/sys/*.h` or Linux's `include/uapi`): system call numbers,
//! `mmap` and `open` flags, `sysctl` keys, error numbers, the page size,
//! and every device's ioctl numbers and structs. The kernel's `syscall`
//! module implements them (its documentation has the table of calls) and
//! its devices (`dev`, the `gntdev` crate) decode them; `tools/urt` and
//! `tools/gnttab` use them in user programs. `tests/abi_layout.rs` pins
//! the structs to the C headers.
//!
//! | module | what |
//! |---|---|
//! | [`ioc`] | ioctl numbering (FreeBSD's `ioccom.h`) |
//! | [`gntdev`] | `/dev/xen/gntdev` (FreeBSD's `sys/xen/gntdev.h`, plus `GRANT_COPY`, `SET_MAX_GRANTS`) |
//! | [`evtchn`] | `/dev/xen/evtchn` (FreeBSD's `sys/xen/evtchn.h`) |
//! | [`xenstore`] | `/dev/xen/xenstore` |
//! | [`physobj`] | `/dev/physobj` |
//! | [`errno`] | error numbers (Linux's) |
#![no_std]

pub mod errno;
pub mod evtchn;
pub mod gntdev;
pub mod ioc;
pub mod physobj;
pub mod xenstore;

/// The page size of the user ABI (`mmap` offsets and lengths, grants).
pub const PAGE_SIZE: usize = 4096;

/// System call numbers: number in rax, arguments in rdi, rsi, rdx, r10,
/// r8, r9; the result in rax, `-errno` on failure.
pub mod nr {
    /// `exit(status)`.
    pub const EXIT: u64 = 0;
    /// `write(fd, buf, len)`.
    pub const WRITE: u64 = 1;
    /// `read(fd, buf, len)`.
    pub const READ: u64 = 2;
    /// `open(path, flags)`.
    pub const OPEN: u64 = 3;
    /// `close(fd)`.
    pub const CLOSE: u64 = 4;
    /// `ioctl(fd, cmd, arg)`.
    pub const IOCTL: u64 = 5;
    /// `mmap(addr, len, prot, flags, fd, offset)`.
    pub const MMAP: u64 = 6;
    /// `munmap(addr, len)`.
    pub const MUNMAP: u64 = 7;
    /// `mprotect(addr, len, prot)`.
    pub const MPROTECT: u64 = 8;
    /// `getpid()`.
    pub const GETPID: u64 = 9;
    /// `sleep(ns)`.
    pub const SLEEP: u64 = 10;
    /// `yield()`.
    pub const YIELD: u64 = 11;
    /// `sysctl(key, new)`.
    pub const SYSCTL: u64 = 12;
    /// `clock()`: Xen system time in ns (monotonic, since the host booted).
    pub const CLOCK: u64 = 13;
    /// `thread_create(entry, stack_top, arg, exit_word)`: a new thread of
    /// the process at `entry(arg)` on `stack_top` (16-aligned); when it
    /// ends, the kernel stores 0 at `exit_word` (if not 0) and wakes its
    /// futex waiters. Returns the thread id.
    pub const THREAD_CREATE: u64 = 14;
    /// `thread_exit()`: ends the calling thread; the last one ends the
    /// process with status 0.
    pub const THREAD_EXIT: u64 = 15;
    /// `futex_wait(addr, expected, timeout_ns)`: sleeps while the `u32` at
    /// `addr` holds `expected`, until a `futex_wake` (0), the timeout
    /// (`ETIMEDOUT`; 0: none); `EAGAIN` if it does not hold.
    pub const FUTEX_WAIT: u64 = 16;
    /// `futex_wake(addr, n)`: wakes up to `n` waiters of `addr`; returns
    /// how many.
    pub const FUTEX_WAKE: u64 = 17;
}

/// `mmap` and `mprotect` rights and `mmap` flags (Linux values).
pub mod mman {
    /// No access.
    pub const PROT_NONE: u64 = 0;
    /// Readable.
    pub const PROT_READ: u64 = 1;
    /// Writable.
    pub const PROT_WRITE: u64 = 2;
    /// Executable.
    pub const PROT_EXEC: u64 = 4;
    /// Changes are shared.
    pub const MAP_SHARED: u64 = 0x01;
    /// Changes are private (copy-on-write).
    pub const MAP_PRIVATE: u64 = 0x02;
    /// Exactly at `addr`.
    pub const MAP_FIXED: u64 = 0x10;
    /// Anonymous memory, no descriptor.
    pub const MAP_ANON: u64 = 0x20;
}

/// `open` flags (Linux values).
pub mod fcntl {
    /// Open for reading only.
    pub const O_RDONLY: u64 = 0;
    /// Open for writing only.
    pub const O_WRONLY: u64 = 1;
    /// Open for reading and writing.
    pub const O_RDWR: u64 = 2;
    /// Mask of the access mode.
    pub const O_ACCMODE: u64 = 3;
}

/// `sysctl` keys: `sysctl(key, new)` returns the old value and sets `new`
/// unless it is [`READ_ONLY`](sysctl::READ_ONLY); only `VM_POPULATE` can
/// be set.
pub mod sysctl {
    /// Whether faults use populate (read-write, 0 or 1).
    pub const VM_POPULATE: u64 = 0;
    /// Free pages.
    pub const VM_FREE_PAGES: u64 = 1;
    /// Page faults of the calling process.
    pub const PROC_FAULTS: u64 = 2;
    /// Pages invalidated with `invlpg`.
    pub const TLB_INVLPG: u64 = 3;
    /// Full TLB flushes.
    pub const TLB_FULL: u64 = 4;
    /// 2 MiB mappings made.
    pub const PMAP_LARGE: u64 = 5;
    /// gntdev: mappings whose grants were mapped.
    pub const GNTDEV_MAPPINGS: u64 = 6;
    /// gntdev: map hypercalls (retry rounds included).
    pub const GNTDEV_MAP_HYPERCALLS: u64 = 7;
    /// gntdev: pager populates (one per fault that maps a region).
    pub const GNTDEV_POPULATES: u64 = 8;
    /// gntdev: single-page pager faults.
    pub const GNTDEV_FAULTS: u64 = 9;
    /// gntdev: unmap hypercalls.
    pub const GNTDEV_UNMAP_HYPERCALLS: u64 = 10;
    /// Live grant references of the table (ours, granted or pending).
    pub const GRANT_REFS: u64 = 11;
    /// Hole frames handed out (grant table, shared info, mappings).
    pub const HOLE_FRAMES: u64 = 12;
    /// gntdev: pages held (granted or pending).
    pub const GNTDEV_PAGES: u64 = 13;
    /// gntdev: grants whose end waits for the peer.
    pub const GNTDEV_PENDING: u64 = 14;
    /// gntdev: unmap-notify events sent.
    pub const GNTDEV_EVENTS_SENT: u64 = 15;
    /// gntdev: unmap-notify bytes cleared.
    pub const GNTDEV_BYTES_CLEARED: u64 = 16;
    /// Grant-table hypercalls of the kernel (all kinds, retries included).
    pub const GRANT_HYPERCALLS: u64 = 17;
    /// Grant copy ops submitted (first attempts).
    pub const GRANT_COPY_OPS: u64 = 18;
    /// Changes of mappings that other CPUs had to flush (shootdown rounds).
    pub const TLB_SHOOTDOWNS: u64 = 19;
    /// Shootdown IPIs sent.
    pub const TLB_SHOOTDOWN_IPIS: u64 = 20;
    /// Pages invalidated on other CPUs by shootdowns.
    pub const TLB_SHOOTDOWN_PAGES: u64 = 21;
    /// vCPUs running.
    pub const SMP_CPUS: u64 = 22;
    /// User threads preempted at the end of their time slice.
    pub const SCHED_PREEMPTIONS: u64 = 23;
    /// Threads alive in the kernel (kernel, idle and user).
    pub const SCHED_THREADS: u64 = 24;
    /// 2 MiB entries standing in the calling process's page tables.
    pub const PROC_LARGE_ENTRIES: u64 = 25;
    /// 2 MiB mappings split into page tables (demotions).
    pub const PMAP_DEMOTIONS: u64 = 26;
    /// How many times the domain resumed into a new domain (`xl restore`,
    /// `xl migrate`): when it moves, event channels bound before fail
    /// with `ENOTCONN` and xenstore nodes the program wrote are gone, so
    /// a program that shares with a peer publishes again.
    pub const DOMAIN_GENERATION: u64 = 27;
    /// Our domain id now (it changes with a restore or a migration).
    pub const DOMID: u64 = 28;
    /// The TSC frequency, Hz, of the pvclock's scale (the clock behind
    /// `clock()`).
    pub const CLOCK_TSC_HZ: u64 = 29;
    /// Nanoseconds spent inside `GNTTABOP_map_grant_ref` hypercalls since
    /// boot (the part of a mapping's cost that is Xen's).
    pub const GRANT_MAP_NS: u64 = 30;
    /// Nanoseconds spent inside `GNTTABOP_unmap_grant_ref` hypercalls since
    /// boot.
    pub const GRANT_UNMAP_NS: u64 = 31;
    /// Leaf entries standing in the calling process's page tables: 4 KiB
    /// entries plus 2 MiB entries (each counted once).
    pub const PROC_LEAF_ENTRIES: u64 = 32;
    /// Pages contiguous reclaim moved out of the way since boot (to make
    /// a contiguous run: `vm/src/reclaim.rs`).
    pub const VM_RECLAIM_PAGES: u64 = 33;
    /// Contiguous reclaim's passes since boot (sweeps for a candidate run).
    pub const VM_RECLAIM_PASSES: u64 = 34;
    /// Pages lent now (`vm/src/loan.rs`): each page once, however many
    /// loans it has, so any number of loans of never-touched memory count
    /// the one zero page.
    pub const VM_LENT_PAGES: u64 = 35;
    /// Loans of the zero page now: the grants of never-touched memory
    /// that the one zero page backs.
    pub const VM_ZERO_PAGE_LOANS: u64 = 36;
    /// Loans broken by an owner's write since boot: the copies made.
    pub const VM_LOANS_BROKEN: u64 = 37;
    /// PV: page-table entries written through Xen (`mmu_update`,
    /// `update_va_mapping`) since boot; 0 under PVH.
    pub const PV_MMU_UPDATES: u64 = 40;
    /// PV: the hypercalls that wrote them; 0 under PVH.
    pub const PV_MMU_CALLS: u64 = 41;
    /// PV: page-table entries Xen made for foreign grants (a PV kernel
    /// maps a grant straight into each entry that maps it) since boot;
    /// 0 under PVH. Their map and unmap calls count in
    /// `GNTDEV_MAP_HYPERCALLS` and `GNTDEV_UNMAP_HYPERCALLS`.
    pub const PV_GRANT_ENTRIES: u64 = 42;
    /// PV: grant entries Xen refused to make (a bad reference: the fault
    /// fails) since boot.
    pub const PV_GRANT_REFUSED: u64 = 43;
    /// PV: times the kernel itself mapped a foreign grant for a moment
    /// (an unmap notify's byte, a private mapping's copy): one map and
    /// one unmap hypercall each, counted in `GRANT_HYPERCALLS` only.
    pub const PV_GRANT_KERNEL_ACCESSES: u64 = 44;
    /// The `new` value that leaves the key unchanged.
    pub const READ_ONLY: u64 = u64::MAX;
}
