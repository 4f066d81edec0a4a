//! User threads: more threads of one process, sharing its address space
//! and descriptors (`thread_create`/`thread_exit`), and the end of a
//! thread, which for the last one is the end of the process.
//!
//! A thread may name an exit word: when it ends, the kernel stores 0 there
//! and wakes the word's futex waiters (Linux's `CLONE_CHILD_CLEARTID`), so
//! a join is a futex wait on it. `exit` from any thread, a fatal fault or
//! a kill ends every thread of the process: the others end at their next
//! preemption point or return from a system call (a futex wait returns for
//! it), and the last to leave tears the process down.

use core::sync::atomic::Ordering;

use vm::Errno;

use super::{Process, futex, teardown};
use crate::syscall::errno;
use crate::{sched, usercopy};

/// Most threads of one process.
pub const MAX_THREADS: usize = 64;

/// `thread_create`: a thread of `p` entering user mode at `entry(arg)` on
/// the stack ending at `stack_top`.
pub fn create(
    p: &alloc::sync::Arc<Process>,
    entry: u64,
    stack_top: u64,
    arg: u64,
    exit_word: u64,
) -> Result<u64, Errno> {
    usercopy::check_range(entry, 1)?;
    if !stack_top.is_multiple_of(16) {
        return Err(Errno::EINVAL);
    }
    usercopy::check_range(stack_top.checked_sub(16).ok_or(Errno::EFAULT)?, 16)?;
    if exit_word != 0 {
        if !exit_word.is_multiple_of(4) {
            return Err(Errno::EINVAL);
        }
        usercopy::check_range(exit_word, 4)?;
    }
    let mut threads = p.threads.lock();
    if p.killed.load(Ordering::Acquire) {
        return Err(errno::EINTR);
    }
    if threads.len() >= MAX_THREADS {
        return Err(Errno::EAGAIN);
    }
    // As if entered by a call: rsp + 8 is 16-byte aligned. The thread may
    // run at once on another CPU; it finds itself in the list, which it
    // cannot leave before we release it.
    let tid = sched::spawn_user(p.clone(), entry, stack_top - 8, arg);
    threads.push((tid, exit_word));
    Ok(u64::from(tid))
}

/// Ends the running thread of a process (`thread_exit`, or its part of
/// the process's end): clears and wakes its exit word, leaves the
/// process's list, and tears the process down if it was the last.
pub fn exit_current() -> ! {
    let p = super::current().expect("a process thread");
    let me = sched::current();
    let word = {
        let threads = p.threads.lock();
        threads.iter().find(|t| t.0 == me).map_or(0, |t| t.1)
    };
    if word != 0 {
        // The thread's own address space is still ours: a word it
        // unmapped is its loss, not ours.
        if usercopy::copyout(&0u32.to_ne_bytes(), word).is_ok() {
            let _ = futex::wake(&p, word, u64::MAX);
        }
    }
    // Off the process's page tables before leaving its list: the last
    // thread to leave frees them, maybe while this one is still on its
    // way out.
    crate::arch::pmap::activate_kernel();
    let last = {
        let mut threads = p.threads.lock();
        threads.retain(|t| t.0 != me);
        threads.is_empty()
    };
    if last {
        teardown(&p);
    }
    drop(p);
    sched::exit_current()
}

/// Wakes every thread of `p` but the running one, for them to see that
/// the process is ending.
pub fn wake_others(p: &Process) {
    let me = sched::current();
    for &(tid, _) in p.threads.lock().iter() {
        if tid != me {
            sched::wake(tid);
        }
    }
    futex::wake_all(p);
}
