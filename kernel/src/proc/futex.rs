//! Futexes: waiting on a user word until another thread changes it and
//! wakes the word's waiters (Linux's `FUTEX_WAIT`/`FUTEX_WAKE`, private to
//! a process).
//!
//! A waiter queues itself before it reads the word, and a waker dequeues
//! before it wakes: a wake that comes between the waiter's read and its
//! block leaves a wake-up token (`sched::wake`), so none is lost.
//!
//! # Locking
//!
//! | state | protection |
//! |---|---|
//! | [`WAITERS`] | (f) its spin lock; never held across a fault or a block, never taken by the upcall |

use alloc::collections::{BTreeMap, VecDeque};
use core::sync::atomic::Ordering;

use spin::Mutex;
use vm::Errno;

use super::Process;
use crate::syscall::errno;
use crate::{events, sched, usercopy};

/// Waiters per (process, user address), oldest first.
static WAITERS: Mutex<BTreeMap<(usize, u64), VecDeque<sched::Tid>>> = Mutex::new(BTreeMap::new());

fn key(p: &Process, addr: u64) -> (usize, u64) {
    (p as *const Process as usize, addr)
}

/// Takes `tid` off `addr`'s queue; whether it was still on it.
fn dequeue(k: (usize, u64), tid: sched::Tid) -> bool {
    let mut w = WAITERS.lock();
    let Some(q) = w.get_mut(&k) else { return false };
    let was = q
        .iter()
        .position(|&t| t == tid)
        .map(|i| q.remove(i))
        .is_some();
    if q.is_empty() {
        w.remove(&k);
    }
    was
}

/// `futex_wait`: sleeps while the word at `addr` is `expected`.
pub fn wait(p: &Process, addr: u64, expected: u64, timeout_ns: u64) -> Result<(), Errno> {
    if !addr.is_multiple_of(4) {
        return Err(Errno::EINVAL);
    }
    let expected = u32::try_from(expected).map_err(|_| Errno::EINVAL)?;
    let me = sched::current();
    let k = key(p, addr);
    WAITERS.lock().entry(k).or_default().push_back(me);
    let mut word = [0u8; 4];
    if let Err(e) = usercopy::copyin(addr, &mut word) {
        dequeue(k, me);
        return Err(e);
    }
    if u32::from_ne_bytes(word) != expected {
        dequeue(k, me);
        return Err(Errno::EAGAIN);
    }
    let deadline = sched::deadline_after(timeout_ns);
    loop {
        if p.killed.load(Ordering::Acquire) {
            dequeue(k, me);
            return Err(errno::EINTR);
        }
        let queued = WAITERS.lock().get(&k).is_some_and(|q| q.contains(&me));
        if !queued {
            return Ok(());
        }
        if deadline.is_some_and(|d| events::now_ns() >= d) {
            return if dequeue(k, me) {
                Err(errno::ETIMEDOUT)
            } else {
                Ok(())
            };
        }
        sched::block(sched::Wait {
            port: None,
            deadline,
            what: "futex",
        });
    }
}

/// `futex_wake`: wakes up to `n` waiters of `addr`, oldest first.
pub fn wake(p: &Process, addr: u64, n: u64) -> Result<u64, Errno> {
    if !addr.is_multiple_of(4) {
        return Err(Errno::EINVAL);
    }
    let k = key(p, addr);
    let woken: alloc::vec::Vec<sched::Tid> = {
        let mut w = WAITERS.lock();
        let Some(q) = w.get_mut(&k) else { return Ok(0) };
        let take = q.len().min(usize::try_from(n).unwrap_or(usize::MAX));
        let v = q.drain(..take).collect();
        if q.is_empty() {
            w.remove(&k);
        }
        v
    };
    for &t in &woken {
        sched::wake(t);
    }
    Ok(woken.len() as u64)
}

/// Wakes every waiter of `p` (the process is ending).
pub fn wake_all(p: &Process) {
    let me = p as *const Process as usize;
    let woken: alloc::vec::Vec<sched::Tid> = {
        let mut w = WAITERS.lock();
        let keys: alloc::vec::Vec<_> = w.range((me, 0)..=(me, u64::MAX)).map(|(k, _)| *k).collect();
        keys.iter().filter_map(|k| w.remove(k)).flatten().collect()
    };
    for t in woken {
        sched::wake(t);
    }
}
