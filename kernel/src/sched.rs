//! Threads and the scheduler, on every vCPU: per-CPU run queues with
//! stealing, a time slice for user threads, no preemption in the kernel.
//!
//! Every process thread has its own kernel stack, and kernel services may
//! run threads of their own ([`spawn_kernel`]); the boot thread (tid 0, on
//! the boot stack) runs the kernel's scenarios and waits for processes.
//! Each CPU has an idle thread, which runs when nothing else is ready and
//! idles the vCPU (`events::idle`: `sti; hlt`) until an event or the
//! earliest deadline.
//!
//! A thread runs until it blocks ([`block`]), yields or exits, or, in user
//! mode, until its time slice ([`SLICE_NS`]) ends: the CPU's one-shot
//! timer then interrupts it and the upcall's tail ([`preempt_point`])
//! switches to the next ready thread of the CPU. Kernel code is never
//! preempted: a slice that ends in a system call ends at its return.
//!
//! Run queues: each CPU takes from its own queue first, then steals the
//! oldest unpinned thread of the fullest other queue. A thread made ready
//! goes to an idle CPU if there is one (its last CPU first), which a
//! reschedule IPI wakes; else to the waker's queue.
//!
//! Switching: a thread that gives up its CPU marks itself `switching`
//! under the lock; `arch::context::switch` clears the mark once its
//! registers and stack pointer are saved, and no CPU picks a thread so
//! marked (it stays queued until the mark clears: Linux's `p->on_cpu`), so
//! the lock is never held across a context switch, no CPU waits for
//! another's switch, and a thread never runs on two CPUs.
//!
//! Lost wake-ups: [`wake`] of a thread that is not blocked (it is about to
//! block, on another CPU) leaves a token that its next [`block`] consumes
//! and returns at once, like `thread::park`; every waiter re-checks its
//! condition in a loop.
//!
//! # Locking
//!
//! | state | protection |
//! |---|---|
//! | `Sched` (threads' states, run queues, each CPU's current thread) | (s) `SCHED`, taken with interrupts off |
//! | `Context::rsp` | (w) written by its thread's CPU while switching away, read by the CPU that resumes it once `switching` is clear |
//! | `Context::switching` | (a) atomic: set under (s), cleared by the switch |
//! | `Context::stack`, `process`, `pinned` | (i) set at creation |
//! | `NEED_RESCHED`, counters | (a) atomic |
//!
//! Lock order: `SCHED` is a leaf, but for the process's `vm` lock taken by
//! `Owner::activate` after it is released; the upcall takes `SCHED` (the
//! reason it is taken with interrupts off).

use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::any::Any;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::arch::interrupts;
use spin::{Mutex, MutexGuard};
use vm::Errno;
use xen::abi::Port;

use crate::arch::percpu::{self, MAX_CPUS};
use crate::arch::{context, pmap, syscall};
use crate::events;
use crate::kstack::KernelStack;
use crate::syscall::errno;

/// A thread id.
pub type Tid = u32;

/// What the scheduler needs of the process whose threads it runs. The
/// process itself lives above the scheduler (`crate::proc`), which gets
/// its type back from [`current_owner`] by downcasting.
pub trait Owner: Any + Send + Sync {
    /// Makes its address space the running CPU's.
    fn activate(&self);
    /// Whether it is ending: its threads leave their waits and sleeps
    /// ([`block_step`], [`sleep_until`]).
    fn killed(&self) -> bool;
    /// Its process id, for reports.
    fn pid(&self) -> u32;
}

/// How long the idle loop sleeps when nothing has a deadline: it then
/// looks for events again (`events::idle` polls for a pending upcall
/// before it halts). A vector injection that never comes (seen under the
/// emulated host: a port pending, its selector set, the vCPU halted)
/// costs at most this much: at 1 s, `vchan-dom0-client`'s 4096 round
/// trips over a 1 KiB ring outran its 300 s budget.
const IDLE_SLICE_NS: u64 = 20_000_000;
/// A user thread's time slice.
pub const SLICE_NS: u64 = 10_000_000;

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
    /// What the thread waits for, in a word or two (for reports).
    pub what: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Running on a CPU.
    Running,
    /// On a run queue.
    Ready,
    Blocked(Wait),
    Dead,
    /// A CPU's idle thread, running or not: never on a queue.
    Idle,
}

/// What a switch needs of a thread, outside the lock.
struct Context {
    /// (w) Saved stack pointer while not running.
    rsp: AtomicU64,
    /// (a) Set while the thread is switching away from its CPU.
    switching: AtomicBool,
    /// (i) Kernel stack, with a guard page (none for the boot thread).
    stack: Option<KernelStack>,
    /// (i) Its process, for a process thread.
    process: Option<Arc<dyn Owner>>,
    /// (i) The CPU it must run on, if any.
    pinned: Option<usize>,
}

impl Context {
    fn stack_top(&self) -> Option<u64> {
        self.stack.as_ref().map(KernelStack::top)
    }
}

/// A thread's scheduling state (s).
struct Thread {
    ctx: Arc<Context>,
    state: State,
    woke: Option<Wakeup>,
    /// A [`wake`] that found it not blocked.
    wake_token: bool,
    last_cpu: usize,
}

/// One CPU's part (s).
struct Cpu {
    online: bool,
    current: Tid,
    idle: Tid,
    ready: VecDeque<Tid>,
    /// When the running thread's slice ends.
    slice_end: u64,
}

struct Sched {
    threads: BTreeMap<Tid, Thread>,
    cpus: [Cpu; MAX_CPUS],
    next_tid: Tid,
}

static SCHED: Mutex<Sched> = Mutex::new(Sched {
    threads: BTreeMap::new(),
    cpus: [const {
        Cpu {
            online: false,
            current: 0,
            idle: 0,
            ready: VecDeque::new(),
            slice_end: 0,
        }
    }; MAX_CPUS],
    next_tid: 1,
});

/// (a) Set for a CPU that should reschedule at its next preemption point
/// (a reschedule IPI, or a ready thread waiting for its slice to end).
static NEED_RESCHED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// (a) Context switches made by each CPU.
static SWITCHES: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// (a) Preemptions of user threads at the end of their slice.
static PREEMPTIONS: AtomicU64 = AtomicU64::new(0);
/// (a) Threads taken from another CPU's queue.
static STEALS: AtomicU64 = AtomicU64::new(0);
/// (a) Threads alive (not yet reaped), for leak checks.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Takes `SCHED` with interrupts off; the guard's drop does not restore
/// them (the caller does, with the flag returned).
fn lock() -> (MutexGuard<'static, Sched>, bool) {
    let on = interrupts::are_enabled();
    interrupts::disable();
    (SCHED.lock(), on)
}

fn restore(on: bool) {
    if on {
        interrupts::enable();
    }
}

/// Runs `f` on the scheduler's state, `SCHED` held with interrupts off,
/// and restores the interrupt flag (for everything that does not switch).
fn with_sched<R>(f: impl FnOnce(&mut Sched) -> R) -> R {
    let (mut s, on) = lock();
    let r = f(&mut s);
    drop(s);
    restore(on);
    r
}

/// Registers the running boot thread as tid 0 and makes the boot CPU's
/// idle thread.
pub fn init() {
    with_sched(|s| {
        s.threads.insert(
            0,
            Thread {
                ctx: Arc::new(Context {
                    rsp: AtomicU64::new(0),
                    switching: AtomicBool::new(false),
                    stack: None,
                    process: None,
                    pinned: None,
                }),
                state: State::Running,
                woke: None,
                wake_token: false,
                last_cpu: 0,
            },
        );
        s.cpus[0].current = 0;
    });
    LIVE.fetch_add(1, Ordering::Relaxed);
    add_idle(0, false);
    with_sched(|s| s.cpus[0].online = true);
}

/// Makes CPU `cpu`'s idle thread. The boot CPU's starts in
/// [`idle_main`] when first switched to; another CPU's runs from the
/// CPU's first instruction on ([`prepare_cpu`]), so its context is made
/// by its first switch away.
fn add_idle(cpu: usize, started: bool) -> (Tid, u64) {
    let mut top = 0;
    let tid = add_thread(None, Some(cpu), State::Idle, |t| {
        top = t;
        if started {
            0
        } else {
            // SAFETY: `add_thread` passes the top of a stack allocated
            // for this thread alone.
            unsafe { context::new_kernel_context(t, idle_main, cpu) }
        }
    });
    with_sched(|s| {
        s.cpus[cpu].idle = tid;
        if started {
            s.cpus[cpu].current = tid;
        }
    });
    (tid, top)
}

/// Prepares CPU `cpu`, not yet started, to run: its idle thread, whose
/// stack the CPU starts on (the top is returned) and which it enters with
/// [`run_idle`].
pub fn prepare_cpu(cpu: usize) -> u64 {
    add_idle(cpu, true).1
}

/// Called by a new CPU on its idle thread's stack, interrupts off, once
/// it can take events: it joins the scheduler as its idle thread.
pub fn run_idle(cpu: usize) -> ! {
    {
        let (mut s, _) = lock();
        s.cpus[cpu].online = true;
    }
    idle_main(cpu)
}

/// Whether [`init`] ran: there is a running thread that can yield.
pub fn started() -> bool {
    with_sched(|s| s.cpus[0].online)
}

/// The running thread.
pub fn current() -> Tid {
    with_sched(|s| s.cpus[percpu::id()].current)
}

/// The running thread, unless the scheduler's lock is held (for the
/// fatal path, which may have interrupted its holder).
pub fn try_current() -> Option<Tid> {
    SCHED.try_lock().map(|s| s.cpus[percpu::id()].current)
}

/// The running thread's process, if it is a process thread.
pub fn current_owner() -> Option<Arc<dyn Owner>> {
    with_sched(|s| s.threads[&s.cpus[percpu::id()].current].ctx.process.clone())
}

/// Makes a ready thread of `process` that enters user mode at `entry` with
/// stack pointer `sp` and `rdi` = `arg`.
pub fn spawn_user(process: Arc<dyn Owner>, entry: u64, sp: u64, arg: u64) -> Tid {
    let tid = add_thread(Some(process), None, State::Ready, |top| {
        // SAFETY: `add_thread` passes the top of a stack allocated for
        // this thread alone.
        unsafe { context::new_user_context(top, entry, sp, arg) }
    });
    make_ready(tid);
    tid
}

/// Makes a ready kernel thread that runs `entry(arg)` on its own stack, in
/// the kernel's address space (no process), on CPU `pinned` only if given.
pub fn spawn_kernel(entry: extern "C" fn(usize) -> !, arg: usize, pinned: Option<usize>) -> Tid {
    let tid = add_thread(None, pinned, State::Ready, |top| {
        // SAFETY: as in `spawn_user`.
        unsafe { context::new_kernel_context(top, entry, arg) }
    });
    make_ready(tid);
    tid
}

/// Adds a thread in `state` with a new kernel stack whose initial context
/// `context` builds from the stack's top; a ready thread is not queued
/// yet.
fn add_thread(
    process: Option<Arc<dyn Owner>>,
    pinned: Option<usize>,
    state: State,
    context: impl FnOnce(u64) -> u64,
) -> Tid {
    let ctx = Context {
        rsp: AtomicU64::new(0),
        switching: AtomicBool::new(false),
        stack: Some(KernelStack::new().expect("memory for a kernel stack")),
        process,
        pinned,
    };
    ctx.rsp.store(
        context(ctx.stack_top().expect("has a stack")),
        Ordering::Relaxed,
    );
    let tid = with_sched(|s| {
        let tid = s.next_tid;
        s.next_tid += 1;
        s.threads.insert(
            tid,
            Thread {
                ctx: Arc::new(ctx),
                state,
                woke: None,
                wake_token: false,
                last_cpu: pinned.unwrap_or(0),
            },
        );
        tid
    });
    LIVE.fetch_add(1, Ordering::Relaxed);
    tid
}

/// Queues ready thread `tid` ([`Sched::enqueue`]).
fn make_ready(tid: Tid) {
    with_sched(|s| s.enqueue(tid));
}

/// Sleeps the running thread until `deadline` (Xen system time, ns),
/// letting the other threads run meanwhile; a process thread wakes early
/// when its process is killed.
pub fn sleep_until(deadline: u64) {
    while events::now_ns() < deadline && !current_killed() {
        block(Wait {
            port: None,
            deadline: Some(deadline),
            what: "sleep",
        });
    }
}

/// Whether the running thread's process is ending ([`Owner::killed`]).
pub fn current_killed() -> bool {
    current_owner().is_some_and(|p| p.killed())
}

/// The deadline `timeout_ns` from now, or none for 0 (a device's read
/// timeout), for [`block_step`].
pub fn deadline_after(timeout_ns: u64) -> Option<u64> {
    (timeout_ns != 0).then(|| events::now_ns().saturating_add(timeout_ns))
}

/// One step of a wait that re-checks its condition after each return:
/// blocks the running thread on `port` for at most `slice_ns`, never past
/// `deadline` (Xen system time, ns; `None`: no bound). Without blocking,
/// `ETIMEDOUT` once `deadline` has passed, and `EINTR` once the running
/// thread's process is killed (it leaves at once, not at its timeout).
pub fn block_step(
    port: Option<Port>,
    deadline: Option<u64>,
    slice_ns: u64,
) -> Result<Wakeup, Errno> {
    if current_killed() {
        return Err(errno::EINTR);
    }
    let now = events::now_ns();
    if deadline.is_some_and(|d| now >= d) {
        return Err(errno::ETIMEDOUT);
    }
    let slice = now.saturating_add(slice_ns);
    Ok(block(Wait {
        port,
        deadline: Some(deadline.map_or(slice, |d| d.min(slice))),
        what: "event",
    }))
}

/// Blocks the running thread until `wait` is satisfied or [`wake`] (or a
/// wake-up token left before; see the module's doc).
pub fn block(wait: Wait) -> Wakeup {
    let (mut s, on) = lock();
    let cpu = percpu::id();
    let cur = s.cpus[cpu].current;
    let t = s.threads.get_mut(&cur).expect("current thread exists");
    if core::mem::take(&mut t.wake_token) {
        drop(s);
        restore(on);
        return Wakeup::Woken;
    }
    t.state = State::Blocked(wait);
    t.woke = None;
    let mut s = switch_away(s, cpu, false);
    let cur = s.cpus[percpu::id()].current;
    let why = s
        .threads
        .get_mut(&cur)
        .and_then(|t| t.woke.take())
        .unwrap_or(Wakeup::Woken);
    drop(s);
    restore(on);
    why
}

/// Makes blocked thread `tid` ready; a thread that is not blocked gets a
/// token that its next [`block`] consumes.
pub fn wake(tid: Tid) {
    with_sched(|s| {
        if let Some(t) = s.threads.get_mut(&tid) {
            match t.state {
                State::Blocked(_) => {
                    t.state = State::Ready;
                    t.woke = Some(Wakeup::Woken);
                    s.enqueue(tid);
                }
                State::Dead => {}
                _ => t.wake_token = true,
            }
        }
    });
}

/// Lets the other ready threads of this CPU run first.
pub fn yield_now() {
    let (s, on) = lock();
    let cpu = percpu::id();
    drop(switch_away(s, cpu, true));
    restore(on);
}

/// Ends the running thread. Its stack is freed once it has switched away
/// ([`reap`]).
pub fn exit_current() -> ! {
    let (mut s, _) = lock();
    let cpu = percpu::id();
    let cur = s.cpus[cpu].current;
    assert_ne!(cur, 0, "the boot thread cannot exit");
    s.threads
        .get_mut(&cur)
        .expect("current thread exists")
        .state = State::Dead;
    drop(switch_away(s, cpu, false));
    unreachable!("a dead thread was resumed");
}

/// Frees the stacks of dead threads that have switched away.
pub fn reap() {
    // The stacks are freed after the lock is dropped.
    let dead: Vec<Thread> = with_sched(|s| {
        let ids: Vec<Tid> = s
            .threads
            .iter()
            .filter(|(_, t)| t.state == State::Dead && !t.ctx.switching.load(Ordering::Acquire))
            .map(|(&tid, _)| tid)
            .collect();
        ids.iter().filter_map(|t| s.threads.remove(t)).collect()
    });
    LIVE.fetch_sub(dead.len(), Ordering::Relaxed);
    drop(dead);
}

/// The upcall's tail, interrupts off: a user thread whose slice has ended,
/// or whose CPU was asked to reschedule, gives the CPU to the next ready
/// thread (`user`: the upcall interrupted user mode). In kernel mode only
/// the request is kept, for the next return to user mode.
pub fn preempt_point(user: bool) {
    let cpu = percpu::id();
    let now = events::now_ns();
    let (mut s, on) = lock();
    s.poll(now);
    let c = &s.cpus[cpu];
    let expired = now >= c.slice_end;
    if c.current == c.idle {
        // The idle loop looks for work itself when the upcall returns.
        drop(s);
        restore(on);
        return;
    }
    let waiting = !s.cpus[cpu].ready.is_empty();
    if !(expired || NEED_RESCHED[cpu].load(Ordering::Relaxed)) {
        drop(s);
        restore(on);
        return;
    }
    if !user {
        NEED_RESCHED[cpu].store(true, Ordering::Relaxed);
        drop(s);
        restore(on);
        return;
    }
    NEED_RESCHED[cpu].store(false, Ordering::Relaxed);
    if !waiting && !s.can_steal(cpu) {
        // Nobody else wants the CPU: a new slice.
        s.cpus[cpu].slice_end = now.saturating_add(SLICE_NS);
        drop(s);
        events::set_timer(now.saturating_add(SLICE_NS));
        restore(on);
        return;
    }
    PREEMPTIONS.fetch_add(1, Ordering::Relaxed);
    drop(switch_away(s, cpu, true));
    restore(on);
}

/// At a return to user mode from a system call: the preemption that a
/// tick during the call asked for.
pub fn return_to_user() {
    if NEED_RESCHED[percpu::id()].load(Ordering::Relaxed) {
        interrupts::without_interrupts(|| preempt_point(true));
    }
}

/// The idle thread of CPU `cpu`.
extern "C" fn idle_main(cpu: usize) -> ! {
    loop {
        let now = events::now_ns();
        let (mut s, _) = lock();
        s.poll(now);
        if !s.cpus[cpu].ready.is_empty() || s.can_steal(cpu) {
            let s = switch_away(s, cpu, false);
            drop(s);
            continue;
        }
        let deadline = s
            .earliest_deadline()
            .unwrap_or_else(|| now.saturating_add(IDLE_SLICE_NS));
        let ports = s.ports();
        drop(s);
        events::idle(deadline, &|| {
            NEED_RESCHED[cpu].swap(false, Ordering::Relaxed)
                || ports.iter().any(|&p| events::pending(p))
        });
        NEED_RESCHED[cpu].store(false, Ordering::Relaxed);
    }
}

/// Asks CPU `cpu` to look at its run queue (a reschedule IPI, if it has
/// been set up: see `crate::smp`).
fn kick(cpu: usize) {
    NEED_RESCHED[cpu].store(true, Ordering::Relaxed);
    crate::smp::send_reschedule(cpu);
}

impl Sched {
    /// Queues ready thread `tid`: on its pinned CPU; else on an idle CPU
    /// (its last one first); else on this CPU's queue. A CPU other than
    /// this one is kicked.
    fn enqueue(&mut self, tid: Tid) {
        let me = percpu::id();
        let t = &self.threads[&tid];
        let target = match t.ctx.pinned {
            Some(c) => c,
            None => {
                let idle = |c: usize| {
                    let cpu = &self.cpus[c];
                    cpu.online && cpu.ready.is_empty() && cpu.current == cpu.idle
                };
                if idle(t.last_cpu) {
                    t.last_cpu
                } else {
                    (0..MAX_CPUS).find(|&c| idle(c)).unwrap_or(me)
                }
            }
        };
        self.cpus[target].ready.push_back(tid);
        if target != me {
            kick(target);
        }
    }

    /// Moves blocked threads whose event or deadline came to a run queue.
    fn poll(&mut self, now: u64) {
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
        for tid in woken {
            self.enqueue(tid);
        }
    }

    /// Whether another CPU's queue holds a thread this CPU may take.
    fn can_steal(&self, cpu: usize) -> bool {
        self.cpus
            .iter()
            .enumerate()
            .any(|(c, q)| c != cpu && q.ready.iter().any(|t| self.stealable(*t)))
    }

    fn stealable(&self, tid: Tid) -> bool {
        self.threads[&tid].ctx.pinned.is_none() && self.resumable(tid)
    }

    /// Whether ready thread `tid` can be resumed now: it has finished
    /// switching away from the CPU it last ran on. A thread still
    /// switching stays queued: two CPUs that each picked the other's
    /// outgoing thread and waited for it would wait forever.
    fn resumable(&self, tid: Tid) -> bool {
        !self.threads[&tid].ctx.switching.load(Ordering::Acquire)
    }

    /// The next thread for CPU `cpu`: the first resumable one of its own
    /// queue, else the first stealable one of the fullest other queue.
    fn pick(&mut self, cpu: usize) -> Option<Tid> {
        if let Some(i) = self.cpus[cpu].ready.iter().position(|&t| self.resumable(t)) {
            return self.cpus[cpu].ready.remove(i);
        }
        let victim = (0..MAX_CPUS)
            .filter(|&c| c != cpu)
            .filter(|&c| self.cpus[c].ready.iter().any(|&t| self.stealable(t)))
            .max_by_key(|&c| self.cpus[c].ready.len())?;
        let i = self.cpus[victim]
            .ready
            .iter()
            .position(|&t| self.stealable(t))?;
        STEALS.fetch_add(1, Ordering::Relaxed);
        self.cpus[victim].ready.remove(i)
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

/// Gives CPU `cpu` to its next thread. The caller holds the lock with
/// interrupts off and has set the running thread's state (blocked, dead,
/// or idle for the idle thread), or asks for it to be `requeue`d at the
/// end of this CPU's queue once the next thread is picked (a yield or a
/// preemption: it runs on if nothing else is ready). Returns, with the
/// lock taken again and interrupts still off, once the running thread is
/// resumed (on whatever CPU: read `percpu::id()` again).
fn switch_away(
    mut s: MutexGuard<'static, Sched>,
    cpu: usize,
    requeue: bool,
) -> MutexGuard<'static, Sched> {
    let now = events::now_ns();
    s.poll(now);
    let cur = s.cpus[cpu].current;
    let idle = s.cpus[cpu].idle;
    let next = match s.pick(cpu) {
        Some(t) => t,
        None if requeue => cur,
        None => idle,
    };
    if next == cur {
        // Runs on, with a new slice.
        if cur != idle {
            s.threads.get_mut(&cur).expect("current exists").state = State::Running;
        }
        s.cpus[cpu].slice_end = now.saturating_add(SLICE_NS);
        let process = s.threads[&cur].ctx.process.is_some();
        drop(s);
        if process {
            events::set_timer(now.saturating_add(SLICE_NS));
        }
        return SCHED.lock();
    }
    if requeue {
        s.threads.get_mut(&cur).expect("current exists").state = State::Ready;
        s.cpus[cpu].ready.push_back(cur);
    }
    let old = s.threads[&cur].ctx.clone();
    old.switching.store(true, Ordering::Relaxed);
    let t = s.threads.get_mut(&next).expect("next exists");
    if next != idle {
        t.state = State::Running;
        t.last_cpu = cpu;
    }
    let new = t.ctx.clone();
    let c = &mut s.cpus[cpu];
    c.current = next;
    c.slice_end = now.saturating_add(SLICE_NS);
    drop(s);
    SWITCHES[cpu].fetch_add(1, Ordering::Relaxed);
    match &new.process {
        Some(p) => {
            p.activate();
            // The slice's end interrupts a user thread that does not block.
            events::set_timer(now.saturating_add(SLICE_NS));
        }
        None => pmap::activate_kernel(),
    }
    if let Some(top) = new.stack_top() {
        syscall::set_kernel_stack(top);
    }
    debug_assert!(
        !new.switching.load(Ordering::Acquire),
        "picked a thread still switching away"
    );
    let load = new.rsp.load(Ordering::Acquire);
    drop(new);
    let save = old.rsp.as_ptr();
    let flag = old.switching.as_ptr().cast::<u8>();
    // No reference is held across the switch: a dead thread never comes
    // back to drop it. Its `Thread` record keeps the context alive.
    drop(old);
    // SAFETY: `save` and `flag` point into the old thread's context, kept
    // alive by its `Thread` record until it is reaped, which waits for
    // `switching` to clear; `load` was saved by `switch` (the thread has
    // finished switching away: we waited for its flag) or built by
    // `new_user_context`/`new_kernel_context` on a stack that is still
    // allocated; the thread is `Running` on this CPU alone.
    unsafe { context::switch(save, load, flag) };
    SCHED.lock()
}

/// One thread as a report shows it (`control`'s sysrq report).
pub struct ThreadInfo {
    /// Thread id.
    pub tid: Tid,
    /// Its process's id; `None` for a kernel thread.
    pub pid: Option<u32>,
    /// Running, ready, blocked, dead or idle.
    pub state: &'static str,
    /// What a blocked thread waits for.
    pub wait: Option<Wait>,
    /// The CPU it last ran on.
    pub cpu: usize,
    /// For a thread switched away, the return addresses on its kernel
    /// stack, most recent first ([`KernelStack::return_addresses`]).
    pub stack: Vec<u64>,
}

/// Return addresses shown per thread in a report.
const REPORT_FRAMES: usize = 12;

/// Every thread, by id.
pub fn threads() -> Vec<ThreadInfo> {
    with_sched(|s| {
        s.threads
            .iter()
            .map(|(&tid, t)| {
                let (state, wait) = match t.state {
                    State::Running => ("running", None),
                    State::Ready => ("ready", None),
                    State::Blocked(w) => ("blocked", Some(w)),
                    State::Dead => ("dead", None),
                    State::Idle => ("idle", None),
                };
                let switched_away = matches!(t.state, State::Ready | State::Blocked(_))
                    && !t.ctx.switching.load(Ordering::Acquire);
                let stack = match &t.ctx.stack {
                    Some(k) if switched_away => k.return_addresses(
                        t.ctx.rsp.load(Ordering::Acquire),
                        &crate::mem::text(),
                        REPORT_FRAMES,
                    ),
                    _ => Vec::new(),
                };
                ThreadInfo {
                    tid,
                    pid: t.ctx.process.as_ref().map(|p| p.pid()),
                    state,
                    wait,
                    cpu: t.last_cpu,
                    stack,
                }
            })
            .collect()
    })
}

/// Scheduler counts for `sysctl` and the SMP checks.
#[derive(Clone, Copy, Debug, Default)]
pub struct SchedStats {
    /// Context switches, all CPUs.
    pub switches: u64,
    /// User threads preempted at the end of their slice.
    pub preemptions: u64,
    /// Threads taken from another CPU's queue.
    pub steals: u64,
    /// Threads not yet reaped.
    pub live_threads: u64,
}

/// The counts so far.
pub fn stats() -> SchedStats {
    SchedStats {
        switches: SWITCHES.iter().map(|s| s.load(Ordering::Relaxed)).sum(),
        preemptions: PREEMPTIONS.load(Ordering::Relaxed),
        steals: STEALS.load(Ordering::Relaxed),
        live_threads: LIVE.load(Ordering::Relaxed) as u64,
    }
}

/// Context switches made by CPU `cpu`.
pub fn cpu_switches(cpu: usize) -> u64 {
    SWITCHES[cpu].load(Ordering::Relaxed)
}
