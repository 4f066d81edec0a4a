//! Sleep queues: threads waiting for a condition named by an address, until
//! another thread changes it and wakes that address (FreeBSD's
//! `subr_sleepqueue.c`: `sleepq_lock`, `sleepq_add`, `sleepq_wait`,
//! `sleepq_broadcast`). The VM's busy-page waits sleep here
//! ([`PageWait`]).
//!
//! A waiter runs its condition and queues itself under its bucket's lock,
//! then blocks until a waker has taken it off the queue; the waker changes
//! the condition first and takes the same lock to dequeue, so it either
//! finds the waiter queued or the waiter sees the change. A wake that comes
//! between the waiter's unlock and its block leaves a wake-up token
//! (`sched::wake`), so none is lost; a stale token only makes a later
//! `sched::block` return early, and every caller of it re-checks.
//!
//! # Locking
//!
//! | state | protection |
//! |---|---|
//! | a bucket's waiters | (q) its spin lock: never held across a block, never taken by the upcall |
//!
//! Lock order: a bucket's lock, then the heap's (a queue may grow). The
//! scheduler's lock is taken only after the bucket's is released.

use alloc::vec::Vec;

use spin::Mutex;
use vm::page::{BusyWait, VmPage};

use crate::sched::{self, Tid};

/// Buckets of the hash (a power of two).
const NBUCKETS: usize = 64;

/// (q) Waiters as `(address, thread)`, per bucket.
static BUCKETS: [Mutex<Vec<(usize, Tid)>>; NBUCKETS] = [const { Mutex::new(Vec::new()) }; NBUCKETS];

fn bucket(key: usize) -> &'static Mutex<Vec<(usize, Tid)>> {
    // Drop the low bits that are the same for every object of a kind.
    let h = (key >> 5) ^ (key >> 11);
    &BUCKETS[h % NBUCKETS]
}

/// Sleeps the running thread on `key` if `cond()`, which runs under the
/// bucket's lock, returns true; returns once a [`wakeup`] of `key` has
/// taken it off the queue. Returns whether it slept.
pub fn sleep_if(key: usize, cond: &mut dyn FnMut() -> bool) -> bool {
    let me = sched::current();
    let b = bucket(key);
    {
        let mut q = b.lock();
        if !cond() {
            return false;
        }
        q.push((key, me));
    }
    while b.lock().contains(&(key, me)) {
        sched::block(sched::Wait {
            what: "sleep queue",
            ..Default::default()
        });
    }
    true
}

/// Wakes every thread sleeping on `key`; returns how many.
pub fn wakeup(key: usize) -> usize {
    let mut woken = [0 as Tid; 16];
    let mut total = 0;
    loop {
        // Dequeue a batch under the lock and wake it after: the
        // scheduler's lock is never taken inside a bucket's.
        let mut n = 0;
        {
            let mut q = bucket(key).lock();
            q.retain(|&(k, t)| {
                if k != key || n == woken.len() {
                    return true;
                }
                woken[n] = t;
                n += 1;
                false
            });
        }
        for &t in &woken[..n] {
            sched::wake(t);
        }
        total += n;
        if n < woken.len() {
            return total;
        }
    }
}

/// The threads sleeping now, as `(key, thread)` (for the sysrq report).
pub fn sleepers() -> Vec<(usize, Tid)> {
    BUCKETS.iter().flat_map(|b| b.lock().clone()).collect()
}

/// Waiting for a busy page (`vm_page_sleep_if_busy`): on the page's sleep
/// queue once the scheduler runs, keyed by the page structure's address;
/// before that there is one thread, nothing can hold a page busy across a
/// switch, and a wait only spins.
pub struct PageWait;

impl BusyWait for PageWait {
    fn sleep_if(&self, page: &VmPage, cond: &mut dyn FnMut() -> bool) {
        if sched::started() {
            sleep_if(page as *const VmPage as usize, cond);
        } else if cond() {
            core::hint::spin_loop();
        }
    }

    fn wakeup(&self, page: &VmPage) {
        if sched::started() {
            wakeup(page as *const VmPage as usize);
        }
    }

    /// A populate in progress has no page to sleep on yet: let the
    /// populating thread run.
    fn pause(&self) {
        if sched::started() {
            sched::yield_now();
        } else {
            core::hint::spin_loop();
        }
    }
}
