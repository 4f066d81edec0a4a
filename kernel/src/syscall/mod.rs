//! System calls: the table, argument checks, and each call.
//!
//! ABI (`arch::syscall`): number in rax, arguments in rdi, rsi, rdx, r10,
//! r8, r9; the result in rax, `-errno` (Linux numbers) on failure. Every
//! user pointer goes through `usercopy`, so a bad one is `EFAULT`.
//!
//! | nr | call | arguments | result |
//! |---|---|---|---|
//! | 0 | exit | status | does not return |
//! | 1 | write | fd, buf, len | bytes written |
//! | 2 | read | fd, buf, len | bytes read |
//! | 3 | open | path (NUL-terminated), flags | fd |
//! | 4 | close | fd | 0 |
//! | 5 | ioctl | fd, cmd, arg | 0 |
//! | 6 | mmap | addr, len, prot, flags, fd, offset (u64) | address |
//! | 7 | munmap | addr, len | 0 |
//! | 8 | mprotect | addr, len, prot | 0 |
//! | 9 | getpid | | pid |
//! | 10 | sleep | nanoseconds | 0 |
//! | 11 | yield | | 0 |
//! | 12 | sysctl | key, new value (`u64::MAX`: none) | old value |
//! | 13 | clock | | Xen system time (ns, monotonic) |
//! | 14 | thread_create | entry, stack top, argument, exit word | thread id |
//! | 15 | thread_exit | | does not return |
//! | 16 | futex_wait | address, expected value, timeout (ns, 0: none) | 0 |
//! | 17 | futex_wake | address, most to wake | threads woken |
//!
//! Numbers, flags and `sysctl` keys come from the `uapi` crate, which the
//! user runtime builds from too (`sysctl` keys 6 to 18: gntdev, grant and
//! hole counters).

pub mod errno;

use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use uapi::ioc::{IOC_IN, IOC_OUT, iocparm_len};
use uapi::{fcntl, mman, nr, sysctl};
use vm::{Errno, Prot};

use crate::arch::trap::TrapFrame;
use crate::arch::{pmap, pv_grant};
use crate::dev::{self, File};
use crate::proc::{self, MAX_FILES, Process, vmspace};
use crate::{events, mem, sched, usercopy};

/// Largest chunk copied per step of `read`/`write`.
const CHUNK: usize = 512;
/// Longest path.
const PATH_MAX: usize = 256;

/// The system call entry's target: called by `arch::syscall`'s entry
/// path with interrupts masked, which it returns with masked again.
#[unsafe(no_mangle)]
extern "C" fn syscall_dispatch(frame: &mut TrapFrame) {
    crate::arch::interrupts::enable();
    dispatch(frame);
    crate::arch::interrupts::disable();
}

/// Runs the system call in `frame` and stores its result there.
fn dispatch(frame: &mut TrapFrame) {
    let p = proc::current().expect("system call from a process");
    let a = [
        frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8, frame.r9,
    ];
    let r = match frame.rax {
        nr::EXIT => {
            // `exit` does not return: what this frame owns must go first.
            drop(p);
            proc::exit(a[0] as i32)
        }
        nr::WRITE => write(&p, a[0], a[1], a[2]),
        nr::READ => read(&p, a[0], a[1], a[2]),
        nr::OPEN => open(&p, a[0], a[1]),
        nr::CLOSE => file(&p, a[0]).map(|_| {
            p.files.lock()[a[0] as usize] = None;
            0
        }),
        nr::IOCTL => ioctl(&p, a[0], a[1] as u32, a[2]),
        nr::MMAP => mmap(&p, a),
        nr::MUNMAP => p.with_vm(|vm| vm.unmap(a[0], a[1])).map(|()| 0),
        nr::MPROTECT => {
            prot(a[2]).and_then(|pr| p.with_vm(|vm| vm.protect(a[0], a[1], pr)).map(|()| 0))
        }
        nr::GETPID => Ok(u64::from(p.pid)),
        nr::SLEEP => {
            sched::sleep_until(events::now_ns().saturating_add(a[0]));
            Ok(0)
        }
        nr::YIELD => {
            sched::yield_now();
            Ok(0)
        }
        nr::SYSCTL => sysctl(&p, a[0], a[1]),
        nr::CLOCK => Ok(events::now_ns()),
        nr::THREAD_CREATE => proc::thread::create(&p, a[0], a[1], a[2], a[3]),
        nr::THREAD_EXIT => {
            drop(p);
            proc::thread::exit_current()
        }
        nr::FUTEX_WAIT => proc::futex::wait(&p, a[0], a[1], a[2]).map(|()| 0),
        nr::FUTEX_WAKE => proc::futex::wake(&p, a[0], a[1]),
        _ => Err(errno::ENOSYS),
    };
    drop(p);
    frame.rax = match r {
        Ok(v) => v,
        Err(e) => (-i64::from(e.0)) as u64,
    };
    proc::exit_if_killed();
    sched::return_to_user();
}

fn file(p: &Process, fd: u64) -> Result<Arc<File>, Errno> {
    p.files
        .lock()
        .get(fd as usize)
        .cloned()
        .flatten()
        .ok_or(errno::EBADF)
}

fn write(p: &Process, fd: u64, buf: u64, len: u64) -> Result<u64, Errno> {
    let f = file(p, fd)?;
    if u64::from(f.flags) & fcntl::O_ACCMODE == fcntl::O_RDONLY {
        return Err(errno::EBADF);
    }
    // Nothing to copy: the buffer is not looked at, as on Linux (an empty
    // Rust slice's pointer is dangling).
    if len == 0 {
        return Ok(0);
    }
    usercopy::check_range(buf, len)?;
    let mut chunk = [0u8; CHUNK];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(CHUNK as u64) as usize;
        usercopy::copyin(buf + done, &mut chunk[..n])?;
        let w = f.dev.write(&chunk[..n])?;
        done += w as u64;
        if w < n {
            break;
        }
    }
    Ok(done)
}

fn read(p: &Process, fd: u64, buf: u64, len: u64) -> Result<u64, Errno> {
    let f = file(p, fd)?;
    if u64::from(f.flags) & fcntl::O_ACCMODE == fcntl::O_WRONLY {
        return Err(errno::EBADF);
    }
    if len == 0 {
        return Ok(0);
    }
    usercopy::check_range(buf, len)?;
    let mut chunk = [0u8; CHUNK];
    let n = (len as usize).min(CHUNK);
    let got = f.dev.read(&mut chunk[..n])?;
    usercopy::copyout(&chunk[..got], buf)?;
    Ok(got as u64)
}

fn open(p: &Process, path: u64, flags: u64) -> Result<u64, Errno> {
    let mut buf = [0u8; PATH_MAX];
    let n = usercopy::copyinstr(path, &mut buf)?;
    let path = core::str::from_utf8(&buf[..n]).map_err(|_| Errno::ENOENT)?;
    let flags = u32::try_from(flags).map_err(|_| Errno::EINVAL)?;
    let f = Arc::new(dev::open(path, flags)?);
    let mut files = p.files.lock();
    let fd = match files.iter().position(Option::is_none) {
        Some(fd) => fd,
        None if files.len() < MAX_FILES => {
            files.push(None);
            files.len() - 1
        }
        None => return Err(errno::EMFILE),
    };
    files[fd] = Some(f);
    Ok(fd as u64)
}

fn ioctl(p: &Process, fd: u64, cmd: u32, arg: u64) -> Result<u64, Errno> {
    let f = file(p, fd)?;
    if f.dev.copies_ioctl_arg() {
        return f.dev.ioctl_user(cmd, arg).map(|()| 0);
    }
    let mut data = alloc::vec![0u8; iocparm_len(cmd)];
    if cmd & IOC_IN != 0 {
        usercopy::copyin(arg, &mut data)?;
    }
    f.dev.ioctl(cmd, &mut data)?;
    if cmd & IOC_OUT != 0 {
        usercopy::copyout(&data, arg)?;
    }
    Ok(0)
}

// The ABI's rights are `vm::Prot`'s bits.
const _: () = assert!(
    mman::PROT_READ == Prot::READ.bits() as u64
        && mman::PROT_WRITE == Prot::WRITE.bits() as u64
        && mman::PROT_EXEC == Prot::EXECUTE.bits() as u64
);

fn prot(bits: u64) -> Result<Prot, Errno> {
    u8::try_from(bits)
        .ok()
        .and_then(Prot::from_bits)
        .ok_or(Errno::EINVAL)
}

fn mmap(p: &Process, a: [u64; 6]) -> Result<u64, Errno> {
    let [addr, len, prot_bits, flags, fd, offset] = a;
    // A map entry is heap a process could otherwise grow without bound.
    if !crate::heap::has_room_for_user() {
        return Err(Errno::ENOMEM);
    }
    let prot = prot(prot_bits)?;
    let shared = match flags & (mman::MAP_SHARED | mman::MAP_PRIVATE) {
        mman::MAP_SHARED => true,
        mman::MAP_PRIVATE => false,
        _ => return Err(Errno::EINVAL),
    };
    if len == 0 || offset % pmap::PAGE != 0 {
        return Err(Errno::EINVAL);
    }
    let size = len
        .checked_next_multiple_of(pmap::PAGE)
        .ok_or(Errno::EINVAL)?;
    let (object, max_prot) = if flags & mman::MAP_ANON != 0 {
        // The first fault makes the default object (`vm_map_lookup`).
        (None, Prot::all())
    } else {
        let f = file(p, fd)?;
        let m = f.dev.mmap_single(offset, size, prot)?;
        let mut max = Prot::all();
        if shared {
            // The device's cap (FreeBSD's `maxprot` from `vm_mmap_cdev`):
            // a private mapping writes to its own copy.
            max &= m.max_prot;
            if u64::from(f.flags) & fcntl::O_ACCMODE == fcntl::O_RDONLY {
                max -= Prot::WRITE;
            }
        }
        (Some((m.object, m.pindex)), max)
    };
    let fixed = flags & mman::MAP_FIXED != 0;
    let m = vmspace::Mapping {
        prot,
        max_prot,
        object,
        private: !shared,
    };
    p.with_vm(|vm| vm.map(addr, len, fixed, m))
}

/// A gntdev, grant-table or hole counter (keys 6 to 18).
fn gntdev_stat(key: u64) -> u64 {
    dev::reap_gntdev();
    let g = dev::gntdev_stats();
    let (live, pending) = dev::grant_refs();
    // PV: the pmap's grant calls (`arch::pv_grant`).
    let pv = pv_grant::stats();
    match key {
        sysctl::GNTDEV_MAPPINGS => g.mappings,
        sysctl::GNTDEV_MAP_HYPERCALLS => g.map_hypercalls,
        sysctl::GNTDEV_POPULATES => g.populates,
        sysctl::GNTDEV_FAULTS => g.faults,
        sysctl::GNTDEV_UNMAP_HYPERCALLS => g.unmap_hypercalls,
        sysctl::GRANT_REFS => live + pending,
        sysctl::HOLE_FRAMES => crate::layout::hole_in_use(),
        sysctl::GNTDEV_PAGES => g.live_pages,
        sysctl::GNTDEV_PENDING => g.pending_grants,
        sysctl::GNTDEV_EVENTS_SENT => g.events_sent,
        sysctl::GNTDEV_BYTES_CLEARED => g.bytes_cleared,
        sysctl::GRANT_HYPERCALLS => {
            crate::grants::stats().hypercalls
                + pv.map_calls
                + pv.unmap_calls
                + 2 * pv.frame_accesses
        }
        _ => crate::grants::stats().copy_ops,
    }
}

fn sysctl(p: &Process, key: u64, new: u64) -> Result<u64, Errno> {
    let tlb = pmap::tlb_stats();
    let old = match key {
        sysctl::VM_POPULATE => u64::from(vmspace::POPULATE_ENABLED.load(Ordering::Relaxed)),
        sysctl::VM_FREE_PAGES => mem::free_pages(),
        sysctl::PROC_FAULTS => p.faults.load(Ordering::Relaxed),
        sysctl::TLB_INVLPG => tlb.invlpg,
        sysctl::TLB_FULL => tlb.full_flushes,
        sysctl::PMAP_LARGE => tlb.large_mappings,
        sysctl::TLB_SHOOTDOWNS => tlb.shootdowns,
        sysctl::TLB_SHOOTDOWN_IPIS => tlb.shootdown_ipis,
        sysctl::TLB_SHOOTDOWN_PAGES => tlb.shootdown_pages,
        sysctl::SMP_CPUS => crate::smp::online() as u64,
        sysctl::SCHED_PREEMPTIONS => sched::stats().preemptions,
        sysctl::SCHED_THREADS => sched::stats().live_threads,
        sysctl::PROC_LARGE_ENTRIES => p.with_vm(|vm| Ok(vm.pmap.large_entries()))?,
        sysctl::PMAP_DEMOTIONS => tlb.demotions,
        sysctl::DOMAIN_GENERATION => crate::events::generation(),
        sysctl::DOMID => crate::suspend::domid().map_or(u64::MAX, u64::from),
        sysctl::CLOCK_TSC_HZ => events::tsc_hz(),
        sysctl::GRANT_MAP_NS => crate::grants::hypercall_ns().0,
        sysctl::GRANT_UNMAP_NS => crate::grants::hypercall_ns().1,
        sysctl::PROC_LEAF_ENTRIES => p.with_vm(|vm| Ok(vm.pmap.leaf_entries()))?,
        sysctl::VM_RECLAIM_PAGES => mem::domain().counters.reclaim.pages_relocated.get(),
        sysctl::VM_RECLAIM_PASSES => mem::domain().counters.reclaim.passes.get(),
        sysctl::VM_LENT_PAGES => mem::domain().loans.counters.lent.get(),
        sysctl::VM_ZERO_PAGE_LOANS => u64::from(vm::loan::zero_page_loans(mem::domain())),
        sysctl::VM_LOANS_BROKEN => mem::domain().loans.counters.broken.get(),
        sysctl::PV_MMU_UPDATES => xen::pv::update_counts().0,
        sysctl::PV_MMU_CALLS => xen::pv::update_counts().1,
        sysctl::PV_GRANT_ENTRIES => pv_grant::stats().maps,
        sysctl::PV_GRANT_REFUSED => pv_grant::stats().map_failures,
        sysctl::PV_GRANT_KERNEL_ACCESSES => pv_grant::stats().frame_accesses,
        sysctl::GNTDEV_MAPPINGS..=sysctl::GRANT_COPY_OPS => gntdev_stat(key),
        _ => return Err(Errno::ENOENT),
    };
    if new != u64::MAX {
        match key {
            sysctl::VM_POPULATE => vmspace::POPULATE_ENABLED.store(new != 0, Ordering::Relaxed),
            _ => return Err(Errno::EPERM),
        }
    }
    Ok(old)
}
