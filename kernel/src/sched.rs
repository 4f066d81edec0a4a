//! Threads and the scheduler: one vCPU, no preemption in the kernel.
//!
//! Every process has one thread with its own kernel stack, and kernel
//! services may run threads of their own ([`spawn_kernel`]); the boot thread
//! (tid 0, on the boot stack) runs the kernel's scenarios and waits for
//! processes. A thread runs until it blocks ([`block`]), yields or exits;
//! [`schedule`] then picks the next ready thread in FIFO order. With none
//! ready, the thread that called it idles in `events::idle` (`sti; hlt`)
//! until an event channel it or another blocked thread waits on fires or
//! the earliest deadline passes.
//!
//! Locking: `SCHED` is never taken by the upcall, and is released before
//! each context switch.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use alloc::vec::Vec;

use spin::Mutex;
use xen::abi::Port;

use crate::arch::{context, pmap, syscall};
use crate::events;
use crate::kstack::KernelStack;
use crate::proc::Process;

/// A thread id.
pub type Tid = u32;

/// How long the idle loop sleeps when nothing has a deadline.
const IDLE_SLICE_NS: u64 = 1_000_000_000;

/// Why a blocked thread woke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wakeup {
    /// The event channel it waited on fired (and was taken).
    Event,
    /// Its deadline passed.
    Timeout,
    /// Another thread woke it ([`wake`]).
    Woken,
}

/// What a blocked thread waits for; any of them wakes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wait {
    /// An event channel.
    pub port: Option<Port>,
    /// A deadline in Xen system time (ns).
    pub deadline: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Running,
    Ready,
    Blocked(Wait),
    Dead,
}

struct Thread {
    /// Saved stack pointer while not running.
    rsp: u64,
    /// Kernel stack, with a guard page (none for the boot thread).
    stack: Option<KernelStack>,
    state: State,
    woke: Option<Wakeup>,
    process: Option<Arc<Process>>,
}

impl Thread {
    fn stack_top(&self) -> Option<u64> {
        self.stack.as_ref().map(KernelStack::top)
    }
}

struct Sched {
    threads: BTreeMap<Tid, Box<Thread>>,
    ready: VecDeque<Tid>,
    current: Tid,
    next_tid: Tid,
}

static SCHED: Mutex<Sched> = Mutex::new(Sched {
    threads: BTreeMap::new(),
    ready: VecDeque::new(),
    current: 0,
    next_tid: 1,
});

/// Registers the running boot thread as tid 0.
pub fn init() {
    SCHED.lock().threads.insert(
        0,
        Box::new(Thread {
            rsp: 0,
            stack: None,
            state: State::Running,
            woke: None,
            process: None,
        }),
    );
}

/// Whether [`init`] ran: there is a running thread that can yield.
pub fn started() -> bool {
    let s = SCHED.lock();
    s.threads.contains_key(&s.current)
}

/// The running thread.
pub fn current() -> Tid {
    SCHED.lock().current
}

/// The running thread, unless the scheduler's lock is held (for the
/// fatal path, which may have interrupted its holder).
pub fn try_current() -> Option<Tid> {
    SCHED.try_lock().map(|s| s.current)
}

/// The running thread's process, if it is a process thread.
pub fn current_process() -> Option<Arc<Process>> {
    let s = SCHED.lock();
    s.threads[&s.current].process.clone()
}

/// Makes a ready thread of `process` that enters user mode at `entry` with
/// stack pointer `sp` and `rdi` = `arg`.
pub fn spawn_user(process: Arc<Process>, entry: u64, sp: u64, arg: u64) -> Tid {
    // SAFETY: `add_thread` passes the top of a stack allocated for this
    // thread alone.
    add_thread(Some(process), |top| unsafe {
        context::new_user_context(top, entry, sp, arg)
    })
}

/// Makes a ready kernel thread that runs `entry` on its own stack, in the
/// kernel's address space (no process).
pub fn spawn_kernel(entry: extern "C" fn() -> !) -> Tid {
    // SAFETY: as in `spawn_user`.
    add_thread(None, |top| unsafe {
        context::new_kernel_context(top, entry)
    })
}

/// Adds a ready thread with a new kernel stack whose initial context
/// `context` builds from the stack's top.
fn add_thread(process: Option<Arc<Process>>, context: impl FnOnce(u64) -> u64) -> Tid {
    let mut t = Box::new(Thread {
        rsp: 0,
        stack: Some(KernelStack::new().expect("memory for a kernel stack")),
        state: State::Ready,
        woke: None,
        process,
    });
    t.rsp = context(t.stack_top().expect("has a stack"));
    let mut s = SCHED.lock();
    let tid = s.next_tid;
    s.next_tid += 1;
    s.threads.insert(tid, t);
    s.ready.push_back(tid);
    tid
}

/// Sleeps the running thread until `deadline` (Xen system time, ns),
/// letting the other threads run meanwhile.
pub fn sleep_until(deadline: u64) {
    while events::now_ns() < deadline {
        block(Wait {
            port: None,
            deadline: Some(deadline),
        });
    }
}

/// The deadline `timeout_ns` from now, or none for 0 (a device's read
/// timeout), for [`block_step`].
pub fn deadline_after(timeout_ns: u64) -> Option<u64> {
    (timeout_ns != 0).then(|| events::now_ns().saturating_add(timeout_ns))
}

/// One step of a wait that re-checks its condition after each return:
/// blocks the running thread on `port` for at most `slice_ns`, never past
/// `deadline` (Xen system time, ns; `None`: no bound). `None`, without
/// blocking, once `deadline` has passed.
pub fn block_step(port: Option<Port>, deadline: Option<u64>, slice_ns: u64) -> Option<Wakeup> {
    let now = events::now_ns();
    if deadline.is_some_and(|d| now >= d) {
        return None;
    }
    let slice = now.saturating_add(slice_ns);
    Some(block(Wait {
        port,
        deadline: Some(deadline.map_or(slice, |d| d.min(slice))),
    }))
}

/// Blocks the running thread until `wait` is satisfied or [`wake`].
pub fn block(wait: Wait) -> Wakeup {
    {
        let mut s = SCHED.lock();
        let cur = s.current;
        let t = s.threads.get_mut(&cur).expect("current thread exists");
        t.state = State::Blocked(wait);
        t.woke = None;
    }
    schedule();
    let mut s = SCHED.lock();
    let cur = s.current;
    s.threads
        .get_mut(&cur)
        .and_then(|t| t.woke.take())
        .unwrap_or(Wakeup::Woken)
}

/// Makes blocked thread `tid` ready.
pub fn wake(tid: Tid) {
    let mut s = SCHED.lock();
    if let Some(t) = s.threads.get_mut(&tid)
        && matches!(t.state, State::Blocked(_))
    {
        t.state = State::Ready;
        t.woke = Some(Wakeup::Woken);
        s.ready.push_back(tid);
    }
}

/// Lets the other ready threads run first.
pub fn yield_now() {
    {
        let mut s = SCHED.lock();
        let cur = s.current;
        s.threads
            .get_mut(&cur)
            .expect("current thread exists")
            .state = State::Ready;
        s.ready.push_back(cur);
    }
    schedule();
}

/// Ends the running thread. Its stack is freed once another thread runs.
pub fn exit_current() -> ! {
    {
        let mut s = SCHED.lock();
        let cur = s.current;
        assert_ne!(cur, 0, "the boot thread cannot exit");
        s.threads
            .get_mut(&cur)
            .expect("current thread exists")
            .state = State::Dead;
    }
    schedule();
    unreachable!("a dead thread was resumed");
}

/// Frees the stacks of dead threads.
pub fn reap() {
    let dead: Vec<Box<Thread>> = {
        let mut s = SCHED.lock();
        let cur = s.current;
        let ids: Vec<Tid> = s
            .threads
            .iter()
            .filter(|&(&t, th)| t != cur && th.state == State::Dead)
            .map(|(&t, _)| t)
            .collect();
        ids.iter().filter_map(|t| s.threads.remove(t)).collect()
    };
    drop(dead);
}

impl Sched {
    /// Moves blocked threads whose event or deadline came to the ready queue.
    fn poll(&mut self) {
        let now = events::now_ns();
        let mut woken = Vec::new();
        for (&tid, t) in self.threads.iter_mut() {
            let State::Blocked(w) = t.state else { continue };
            let why = if w.port.is_some_and(events::take) {
                Wakeup::Event
            } else if w.deadline.is_some_and(|d| now >= d) {
                Wakeup::Timeout
            } else {
                continue;
            };
            t.state = State::Ready;
            t.woke = Some(why);
            woken.push(tid);
        }
        self.ready.extend(woken);
    }

    fn earliest_deadline(&self) -> Option<u64> {
        self.threads
            .values()
            .filter_map(|t| match t.state {
                State::Blocked(w) => w.deadline,
                _ => None,
            })
            .min()
    }

    fn ports(&self) -> Vec<Port> {
        self.threads
            .values()
            .filter_map(|t| match t.state {
                State::Blocked(w) => w.port,
                _ => None,
            })
            .collect()
    }
}

/// Switches to the next ready thread, idling until there is one. The
/// caller has set the running thread's state (ready, blocked or dead).
fn schedule() {
    loop {
        let mut s = SCHED.lock();
        s.poll();
        if let Some(next) = s.ready.pop_front() {
            let cur = s.current;
            s.threads.get_mut(&next).expect("ready thread exists").state = State::Running;
            if next == cur {
                return;
            }
            let save: *mut u64 = &mut s.threads.get_mut(&cur).expect("current exists").rsp;
            let t = &s.threads[&next];
            let load = t.rsp;
            match &t.process {
                Some(p) => p.activate(),
                None => pmap::activate_kernel(),
            }
            if let Some(top) = t.stack_top() {
                syscall::set_kernel_stack(top);
            }
            s.current = next;
            drop(s);
            // SAFETY: `save` points into the current thread's boxed record,
            // which stays allocated until the thread is dead and another
            // runs; `load` was saved by `switch` or built by
            // `new_user_context` or `new_kernel_context` on a stack that
            // is still allocated.
            unsafe { context::switch(save, load) };
            return;
        }
        let deadline = s
            .earliest_deadline()
            .unwrap_or_else(|| events::now_ns() + IDLE_SLICE_NS);
        let ports = s.ports();
        drop(s);
        events::idle(deadline, &|| ports.iter().any(|&p| events::pending(p)));
    }
}
