//! The runtime of user programs for the xenguest kernel: the entry point
//! ([`entry!`]), the system calls (numbers, flags, `sysctl` keys, error
//! numbers and the devices' ioctls from the kernel's `uapi` crate,
//! re-exported here),
//! printing to the console, and a panic handler that prints and exits 101.
//!
//! Programs are static executables for `x86_64-unknown-none`, linked by
//! `user.ld` at the bottom of user space; `scripts/build` packs them into
//! `target/user/programs.tar`, the domain's `ramdisk=` module.
#![no_std]

use core::arch::asm;
use core::fmt;

pub use uapi::PAGE_SIZE as PAGE;
pub use uapi::{errno, evtchn, fcntl, gntdev, ioc, mman, nr, physobj, sysctl, xenstore};

/// A raw system call with up to six arguments: the kernel's result, a
/// negative errno on failure.
#[inline]
pub fn syscall(n: u64, a: [u64; 6]) -> i64 {
    let r: i64;
    // SAFETY: `syscall` enters the kernel, which checks every argument and
    // touches our memory only through its checked copy routines; it
    // clobbers rcx and r11, declared here.
    unsafe {
        asm!("syscall",
            inlateout("rax") n as i64 => r,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack));
    }
    r
}

/// A result: the value, or the errno (`uapi::errno`).
pub type SysResult = Result<u64, i32>;

fn check(r: i64) -> SysResult {
    if r < 0 {
        Err((-r) as i32)
    } else {
        Ok(r as u64)
    }
}

/// Ends the process with `status`.
pub fn exit(status: i32) -> ! {
    syscall(nr::EXIT, [status as u64, 0, 0, 0, 0, 0]);
    unreachable!("exit returned")
}

/// Writes `buf` to `fd`.
pub fn write(fd: u64, buf: &[u8]) -> SysResult {
    check(syscall(
        nr::WRITE,
        [fd, buf.as_ptr() as u64, buf.len() as u64, 0, 0, 0],
    ))
}

/// Reads into `buf` from `fd`.
pub fn read(fd: u64, buf: &mut [u8]) -> SysResult {
    check(syscall(
        nr::READ,
        [fd, buf.as_mut_ptr() as u64, buf.len() as u64, 0, 0, 0],
    ))
}

/// Opens `path`, which must end in a NUL byte.
pub fn open(path: &[u8], flags: u64) -> SysResult {
    check(syscall(nr::OPEN, [path.as_ptr() as u64, flags, 0, 0, 0, 0]))
}

/// Closes `fd`.
pub fn close(fd: u64) -> SysResult {
    check(syscall(nr::CLOSE, [fd, 0, 0, 0, 0, 0]))
}

/// Runs ioctl `cmd` on `fd` with argument address `arg`.
pub fn ioctl(fd: u64, cmd: u32, arg: u64) -> SysResult {
    check(syscall(nr::IOCTL, [fd, u64::from(cmd), arg, 0, 0, 0]))
}

/// Maps memory; returns its address.
pub fn mmap(addr: u64, len: usize, prot: u64, flags: u64, fd: u64, offset: u64) -> SysResult {
    check(syscall(
        nr::MMAP,
        [addr, len as u64, prot, flags, fd, offset],
    ))
}

/// Unmaps memory.
pub fn munmap(addr: u64, len: usize) -> SysResult {
    check(syscall(nr::MUNMAP, [addr, len as u64, 0, 0, 0, 0]))
}

/// Changes the rights of mapped memory.
pub fn mprotect(addr: u64, len: usize, prot: u64) -> SysResult {
    check(syscall(nr::MPROTECT, [addr, len as u64, prot, 0, 0, 0]))
}

/// The process id.
pub fn getpid() -> u64 {
    syscall(nr::GETPID, [0; 6]) as u64
}

/// Sleeps for `ns` nanoseconds.
pub fn sleep(ns: u64) -> SysResult {
    check(syscall(nr::SLEEP, [ns, 0, 0, 0, 0, 0]))
}

/// Xen system time in ns (monotonic).
pub fn clock_ns() -> u64 {
    // The call cannot fail.
    syscall(nr::CLOCK, [0; 6]) as u64
}

/// Lets other processes run.
pub fn yield_now() -> SysResult {
    check(syscall(nr::YIELD, [0; 6]))
}

/// Reads kernel value `key`, setting it to `new` unless `sysctl::READ_ONLY`.
pub fn sysctl(key: u64, new: u64) -> SysResult {
    check(syscall(nr::SYSCTL, [key, new, 0, 0, 0, 0]))
}

/// Standard output: the console, opened by [`entry!`] as descriptors 0-2.
pub struct Stdout;

impl fmt::Write for Stdout {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write(1, s.as_bytes()).map(drop).map_err(|_| fmt::Error)
    }
}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($a:tt)*) => {{
        let _ = core::fmt::Write::write_fmt(&mut $crate::Stdout, format_args!($($a)*));
    }};
}

/// Prints a line to the console.
#[macro_export]
macro_rules! println {
    ($($a:tt)*) => {{
        $crate::print!("{}\n", format_args!($($a)*));
    }};
}

/// Opens the console as descriptors 0, 1 and 2; [`entry!`] calls it.
pub fn init_stdio() {
    for _ in 0..3 {
        if open(b"/dev/console\0", fcntl::O_RDWR).is_err() {
            exit(127);
        }
    }
}

/// Defines `_start`, which opens the console and exits with what
/// `main(arg: u64) -> i32` returns (`arg` is the kernel's first argument).
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        extern "C" fn _start(arg: u64) -> ! {
            $crate::init_stdio();
            $crate::exit($main(arg))
        }

        #[panic_handler]
        fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
            $crate::println!("panic: {}", info);
            $crate::exit(101)
        }
    };
}

/// Fails the program with a message unless `cond`.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($a:tt)*) => {
        if !$cond {
            $crate::println!("FAIL {}: {}", stringify!($cond), format_args!($($a)*));
            return 1;
        }
    };
}

/// A thread of this process, made by [`Thread::spawn`].
pub struct Thread {
    stack: u64,
}

/// Stack size of a [`Thread`].
pub const THREAD_STACK: usize = 64 * 1024;

/// Where a new thread starts: `block` holds the function and its
/// argument, at the top of the thread's stack.
extern "C" fn thread_start(block: u64) -> ! {
    // SAFETY: `Thread::spawn` wrote a `fn(u64)` and its argument at
    // `block`, on this thread's stack, which nothing else writes.
    let (f, arg) = unsafe { *(block as *const (fn(u64), u64)) };
    f(arg);
    thread_exit()
}

impl Thread {
    /// Runs `f(arg)` in a new thread with a stack of its own.
    pub fn spawn(f: fn(u64), arg: u64) -> Result<Self, i32> {
        let stack = mmap(
            0,
            THREAD_STACK,
            mman::PROT_READ | mman::PROT_WRITE,
            mman::MAP_PRIVATE | mman::MAP_ANON,
            u64::MAX,
            0,
        )?;
        let top = stack + THREAD_STACK as u64;
        let block = top - 16;
        // SAFETY: both words are inside the mapping just made, which no
        // thread uses yet; the exit word (1: running) is its first word.
        unsafe {
            *(block as *mut (fn(u64), u64)) = (f, arg);
            (*(stack as *const core::sync::atomic::AtomicU32))
                .store(1, core::sync::atomic::Ordering::Release);
        }
        match thread_create(thread_start as *const () as u64, block, block, stack) {
            Ok(_) => Ok(Self { stack }),
            Err(e) => {
                let _ = munmap(stack, THREAD_STACK);
                Err(e)
            }
        }
    }

    fn exit_word(&self) -> &core::sync::atomic::AtomicU32 {
        // SAFETY: the first word of the stack mapping, which lives until
        // `join` unmaps it; the kernel writes it only through its checked
        // copy path.
        unsafe { &*(self.stack as *const core::sync::atomic::AtomicU32) }
    }

    /// Waits until the thread has ended, then frees its stack.
    pub fn join(self) {
        loop {
            let v = self.exit_word().load(core::sync::atomic::Ordering::Acquire);
            if v == 0 {
                break;
            }
            let _ = futex_wait(self.exit_word(), v, 0);
        }
        let _ = munmap(self.stack, THREAD_STACK);
    }
}

/// A thread at `entry(arg)` on the stack ending at `stack_top`; the kernel
/// clears the `u32` at `exit_word` (if not 0) and wakes it when the thread
/// ends. Returns the thread id.
pub fn thread_create(entry: u64, stack_top: u64, arg: u64, exit_word: u64) -> SysResult {
    check(syscall(
        nr::THREAD_CREATE,
        [entry, stack_top, arg, exit_word, 0, 0],
    ))
}

/// Ends the calling thread (the process, if it is the last).
pub fn thread_exit() -> ! {
    syscall(nr::THREAD_EXIT, [0; 6]);
    unreachable!("thread_exit returned")
}

/// Sleeps while `word` holds `expected`, until woken or `timeout_ns` (0:
/// none) passes.
pub fn futex_wait(
    word: &core::sync::atomic::AtomicU32,
    expected: u32,
    timeout_ns: u64,
) -> SysResult {
    futex_wait_at(word.as_ptr() as u64, expected, timeout_ns)
}

/// [`futex_wait`] on a raw address (for tests of bad addresses).
pub fn futex_wait_at(addr: u64, expected: u32, timeout_ns: u64) -> SysResult {
    check(syscall(
        nr::FUTEX_WAIT,
        [addr, u64::from(expected), timeout_ns, 0, 0, 0],
    ))
}

/// Wakes up to `n` waiters of `word`; returns how many.
pub fn futex_wake(word: &core::sync::atomic::AtomicU32, n: u64) -> SysResult {
    check(syscall(
        nr::FUTEX_WAKE,
        [word.as_ptr() as u64, n, 0, 0, 0, 0],
    ))
}
