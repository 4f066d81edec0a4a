//! Loom models of the page busy lock and `ref_count` protocols.
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
