//! Loom models of the page busy lock, `ref_count` and loan protocols.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p vm --release --test loom`.
//! Without `cfg(loom)` this file is empty.
#![cfg(loom)]

use loom::sync::atomic::{AtomicU32, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use vm::page::{BusyMode, BusyWait, VPB_UNBUSIED, VPRC_OBJREF, VmPage};

/// Explore every interleaving with at most `PREEMPTIONS` preemptions
/// (loom's recommended bound: the busy retry loops make the unbounded
/// state space explode, and known bugs show up within two or three).
fn model<F: Fn() + Sync + Send + 'static>(f: F) {
    const PREEMPTIONS: usize = 3;
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(PREEMPTIONS);
    b.check(f);
}

/// A wait queue as the kernel's sleep queues: the condition runs under the
/// queue lock, and the wait releases it atomically.
#[derive(Default)]
struct LoomWait(Mutex<()>, Condvar);

impl BusyWait for LoomWait {
    fn sleep_if(&self, _page: &VmPage, cond: &mut dyn FnMut() -> bool) {
        let g = self.0.lock().unwrap();
        if cond() {
            drop(self.1.wait(g).unwrap());
        }
    }

    fn wakeup(&self, _page: &VmPage) {
        let _g = self.0.lock().unwrap();
        self.1.notify_all();
    }
}

/// An exclusive waiter is always woken: a lost wake-up would leave it
/// asleep forever, which loom reports as a deadlock.
#[test]
fn xbusy_waiter_is_woken() {
    model(|| {
        let wq = Arc::new(LoomWait::default());
        let m = Arc::new(VmPage::new(0));
        assert!(m.try_xbusy());
        let t = {
            let (wq, m) = (wq.clone(), m.clone());
            thread::spawn(move || {
                m.busy_lock(BusyMode::Exclusive, &*wq);
                m.xunbusy(&*wq);
            })
        };
        m.xunbusy(&*wq);
        t.join().unwrap();
        assert_eq!(m.busy_word(), VPB_UNBUSIED);
    });
}

/// Two sharers and an exclusive waiter: exclusion holds, the last sharer
/// wakes the waiter.
#[test]
fn sharers_then_exclusive() {
    model(|| {
        let wq = Arc::new(LoomWait::default());
        let m = Arc::new(VmPage::new(0));
        let shared = Arc::new(AtomicU32::new(0));
        assert!(m.try_sbusy());
        shared.fetch_add(1, Ordering::SeqCst);
        let sharer = {
            let (wq, m, shared) = (wq.clone(), m.clone(), shared.clone());
            thread::spawn(move || {
                m.busy_lock(BusyMode::Shared, &*wq);
                shared.fetch_add(1, Ordering::SeqCst);
                shared.fetch_sub(1, Ordering::SeqCst);
                m.sunbusy(&*wq);
            })
        };
        let excl = {
            let (wq, m, shared) = (wq.clone(), m.clone(), shared.clone());
            thread::spawn(move || {
                m.busy_lock(BusyMode::Exclusive, &*wq);
                assert_eq!(
                    shared.load(Ordering::SeqCst),
                    0,
                    "sharer inside an exclusive section"
                );
                m.xunbusy(&*wq);
            })
        };
        shared.fetch_sub(1, Ordering::SeqCst);
        m.sunbusy(&*wq);
        sharer.join().unwrap();
        excl.join().unwrap();
        assert_eq!(m.busy_word(), VPB_UNBUSIED);
    });
}

/// Downgrade wakes a shared waiter, which then shares the page.
#[test]
fn downgrade_wakes_sharer() {
    model(|| {
        let wq = Arc::new(LoomWait::default());
        let m = Arc::new(VmPage::new(0));
        assert!(m.try_xbusy());
        let t = {
            let (wq, m) = (wq.clone(), m.clone());
            thread::spawn(move || {
                m.busy_lock(BusyMode::Shared, &*wq);
                m.sunbusy(&*wq);
            })
        };
        m.busy_downgrade(&*wq);
        m.sunbusy(&*wq);
        t.join().unwrap();
        assert_eq!(m.busy_word(), VPB_UNBUSIED);
    });
}

/// The kernel's sleep queue (`kernel/src/sleepq.rs`) in the model's
/// terms: the condition runs and the waiter queues itself under the queue
/// lock; it then parks until a waker has dequeued it, and the waker
/// unparks outside the lock. Parking has the scheduler's wake-up token
/// semantics (an unpark before the park is kept).
#[derive(Default)]
struct ParkWait(Mutex<Vec<thread::Thread>>);

impl ParkWait {
    fn queued(&self, me: &thread::Thread) -> bool {
        self.0.lock().unwrap().iter().any(|t| t.id() == me.id())
    }
}

impl BusyWait for ParkWait {
    fn sleep_if(&self, _page: &VmPage, cond: &mut dyn FnMut() -> bool) {
        let me = thread::current();
        {
            let mut q = self.0.lock().unwrap();
            if !cond() {
                return;
            }
            q.push(me.clone());
        }
        while self.queued(&me) {
            thread::park();
        }
    }

    fn wakeup(&self, _page: &VmPage) {
        let woken: Vec<thread::Thread> = self.0.lock().unwrap().drain(..).collect();
        for t in woken {
            t.unpark();
        }
    }
}

/// With the sleep queue's dequeue-then-unpark protocol, an exclusive
/// waiter and a shared one both get the page after its holder lets go.
#[test]
fn sleep_queue_wakes_every_waiter() {
    model(|| {
        let wq = Arc::new(ParkWait::default());
        let m = Arc::new(VmPage::new(0));
        assert!(m.try_xbusy());
        let waiters: Vec<_> = [BusyMode::Exclusive, BusyMode::Shared]
            .into_iter()
            .map(|mode| {
                let (wq, m) = (wq.clone(), m.clone());
                thread::spawn(move || {
                    m.busy_lock(mode, &*wq);
                    m.unbusy(mode, &*wq);
                })
            })
            .collect();
        m.xunbusy(&*wq);
        for t in waiters {
            t.join().unwrap();
        }
        assert_eq!(m.busy_word(), VPB_UNBUSIED);
    });
}

/// `wire_mapped` never succeeds while the page is blocked, and blocking
/// never succeeds while it is wired.
#[test]
fn wire_mapped_against_blocked() {
    model(|| {
        let m = Arc::new(VmPage::new(0));
        m.set_objref();
        let mapper = {
            let m = m.clone();
            // The test stands in for the object: it holds the page's OBJREF.
            thread::spawn(move || {
                if m.wire_mapped().is_some() {
                    assert!(!m.unwire_noq(), "the object still holds a reference");
                }
            })
        };
        // pmap_remove_all-like: block, check no wiring slipped in, unblock.
        if m.try_block() {
            assert_eq!(m.wire_count(), 0, "wired while blocked");
            m.unblock();
        }
        mapper.join().unwrap();
        assert_eq!(m.ref_count(), VPRC_OBJREF);
    });
}

/// Three references (the object's and two wirings) dropped concurrently:
/// exactly one thread sees the last and frees the page.
#[test]
fn last_unwire_frees_once() {
    model(|| {
        let m = Arc::new(VmPage::new(0));
        let freed = Arc::new(AtomicU32::new(0));
        m.set_objref();
        m.wire();
        m.wire();
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (m, freed) = (m.clone(), freed.clone());
                thread::spawn(move || {
                    if m.unwire_noq() {
                        freed.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        if m.drop_objref() {
            freed.fetch_add(1, Ordering::Relaxed);
        }
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(freed.load(Ordering::Relaxed), 1);
        assert_eq!(m.ref_count(), 0);
    });
}

/// A page of an object: it holds the page's `OBJREF`.
fn object_page() -> Arc<VmPage> {
    let m = Arc::new(VmPage::new(0));
    m.set_objref();
    m
}

/// `pmap_extract_and_hold`: under the pmap lock, where `mapped` says
/// whether the page's mapping is there, wire the page through it.
fn hold(m: &VmPage, mapped: &Mutex<bool>) -> bool {
    let pmap = mapped.lock().unwrap();
    *pmap && m.wire_mapped().is_some()
}

/// The first loan of a page as `vm::loan` makes it: under the exclusive
/// busy lock, block the page, remove its mappings, count the loan,
/// unblock. Returns whether the page was lent (the block can fail).
fn lend(m: &VmPage, wq: &LoomWait, remove_mappings: impl FnOnce()) -> bool {
    m.busy_lock(BusyMode::Exclusive, wq);
    let lent = m.try_block();
    if lent {
        remove_mappings();
        assert!(m.loan(), "the loan wiring is the first");
        m.unblock();
    }
    m.xunbusy(wq);
    lent
}

/// The first loan of a page against a thread
/// holding the page through its writable mapping (`pmap_extract_and_hold`,
/// under the pmap lock): it either holds it before the block, which then
/// fails, or finds no writable mapping; no write lands in a lent page.
#[test]
fn loan_against_writable_hold() {
    model(|| {
        let wq = Arc::new(LoomWait::default());
        let m = object_page();
        // The pmap: whether the owner's writable mapping is there.
        let writable = Arc::new(Mutex::new(true));
        let contents = Arc::new(AtomicU32::new(0));
        let writer = {
            let (m, writable, contents) = (m.clone(), writable.clone(), contents.clone());
            thread::spawn(move || {
                if hold(&m, &writable) {
                    contents.store(1, Ordering::Relaxed);
                    assert!(!m.unwire_noq(), "the object still holds it");
                }
            })
        };
        let mut at_loan = 0;
        let lent = lend(&m, &wq, || {
            *writable.lock().unwrap() = false;
            at_loan = contents.load(Ordering::Relaxed);
        });
        writer.join().unwrap();
        if lent {
            assert_eq!(
                contents.load(Ordering::Relaxed),
                at_loan,
                "written while lent"
            );
            assert_eq!(m.wire_count(), 1);
        }
    });
}

/// Contiguous reclaim moves only pages it can block under the exclusive
/// busy lock; a loan takes the same lock to wire the page, so a loaned
/// page is never moved.
#[test]
fn reclaim_never_moves_a_loaned_page() {
    model(|| {
        let wq = Arc::new(LoomWait::default());
        let m = object_page();
        let reclaim = {
            let (wq, m) = (wq.clone(), m.clone());
            thread::spawn(move || {
                m.busy_lock(BusyMode::Exclusive, &*wq);
                if m.try_block() {
                    assert!(!m.is_loaned(), "moving a loaned page");
                    m.unblock();
                }
                m.xunbusy(&*wq);
            })
        };
        lend(&m, &wq, || {});
        reclaim.join().unwrap();
        assert!(m.is_loaned(), "nothing else wires the page");
        assert!(!m.try_block(), "a loaned page stays unblockable");
    });
}

/// The borrower's unloan, the owner's munmap (mapping removed under the
/// pmap lock, then the object's reference dropped, as a break of the loan
/// drops it too) and a hold through the read-only mapping, all at once:
/// the page is freed exactly once, by whoever lets go last.
#[test]
fn unloan_against_owner_free_and_hold() {
    model(|| {
        let m = object_page();
        let freed = Arc::new(AtomicU32::new(0));
        let mapped = Arc::new(Mutex::new(true));
        m.loan();
        let borrower = {
            let (m, freed) = (m.clone(), freed.clone());
            thread::spawn(move || {
                if m.unloan() && m.unwire_noq() {
                    freed.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let holder = {
            let (m, freed, mapped) = (m.clone(), freed.clone(), mapped.clone());
            thread::spawn(move || {
                if hold(&m, &mapped) && m.unwire_noq() {
                    freed.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        *mapped.lock().unwrap() = false;
        if m.drop_objref() {
            freed.fetch_add(1, Ordering::Relaxed);
        }
        borrower.join().unwrap();
        holder.join().unwrap();
        assert_eq!(freed.load(Ordering::Relaxed), 1);
        assert_eq!((m.ref_count(), m.loan_count()), (0, 0));
    });
}
