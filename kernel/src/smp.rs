//! Bringing up the other vCPUs, and inter-processor interrupts over event
//! channels.
//!
//! Start (PVH, `shared/notes/smp.md` §1): the boot CPU counts the domain's
//! vCPUs with `VCPUOP_is_up` (`ENOENT` past the last), starts those that
//! xenstore's `cpu/N/availability` calls "online", and for each, while it
//! is down: registers its `vcpu_info`, binds its timer VIRQ and its two
//! IPI ports, makes its idle thread, and hands it a 64-bit
//! `vcpu_hvm_context` (`VCPUOP_initialise`, then `VCPUOP_up`) that enters
//! [`ap_main`] on the idle thread's stack with the boot CPU's control
//! registers and the kernel's page tables. Linux and FreeBSD start PVH
//! vCPUs with INIT-SIPI through the emulated local APIC instead; the
//! hypercall needs no real-mode trampoline below 1 MiB and no LAPIC.
//!
//! IPIs: each CPU has a reschedule port and a call port (`EVTCHNOP_bind_ipi`,
//! as Linux's RESCHEDULE and CALL_FUNCTION_SINGLE). [`call_on`] runs a
//! function on another CPU in its upcall and waits for it; a CPU that waits
//! for anything here serves its own call requests meanwhile, so two CPUs
//! calling each other with interrupts off cannot deadlock.
//!
//! # Locking
//!
//! | state | protection |
//! |---|---|
//! | a CPU's call request | (m) its `Mailbox::request` spin lock, interrupts off |
//! | who may post to a CPU | (p) its `Mailbox::sender` spin lock, taken with [`spin_serving`] |
//! | ports, counts, `ONLINE` | (a) atomic |
//!
//! Lock order: `sender` before `request`; `sender` locks of several CPUs
//! in increasing CPU order.

use alloc::vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::arch::interrupts;
use spin::Mutex;
use x86_64::registers::control::{Cr0, Cr3, Cr4};
use x86_64::registers::model_specific::Efer;
use xen::abi::Port;
use xen::abi::vcpu::{VCPU_HVM_MODE_64B, VcpuHvmContext, VcpuHvmX86_64};
use xen::hypercall::XenErrno;

use crate::arch::percpu::{self, MAX_CPUS};
use crate::arch::{gdt, syscall, trap};
use crate::events;

/// How long the boot CPU waits for a started vCPU to report in.
const START_TIMEOUT_NS: u64 = 5_000_000_000;

/// A function run on another CPU: `f(arg)`.
type Call = (fn(usize), usize);

/// One CPU's call requests.
struct Mailbox {
    /// (p) Held by the one CPU posting to this one.
    sender: Mutex<()>,
    /// (m) The posted call, until the target takes it.
    request: Mutex<Option<Call>>,
    /// (a) Calls posted.
    posted: AtomicU64,
    /// (a) Calls run.
    done: AtomicU64,
}

static MAILBOX: [Mailbox; MAX_CPUS] = [const {
    Mailbox {
        sender: Mutex::new(()),
        request: Mutex::new(None),
        posted: AtomicU64::new(0),
        done: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// (a) Each CPU's reschedule and call ports (0: not bound).
static RESCHED_PORT: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
static CALL_PORT: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
/// (a) IPIs each CPU received (either port).
static IPIS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// (a) Set by a CPU once it runs its idle loop.
static ONLINE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// (a) vCPUs the domain has (`VCPUOP_is_up` probing).
static POSSIBLE: AtomicUsize = AtomicUsize::new(1);

/// Why a vCPU did not come up.
#[derive(Debug)]
pub enum StartError {
    /// A hypercall failed.
    Xen(&'static str, XenErrno),
    /// It never reported in.
    Timeout,
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Xen(what, e) => write!(f, "{what}: Xen error {}", e.0),
            Self::Timeout => f.write_str("did not report in"),
        }
    }
}

/// What a started vCPU runs, from the scheduler: the stack its idle
/// thread starts on, prepared by the boot CPU, and its idle loop.
#[derive(Clone, Copy)]
pub struct CpuStart {
    /// Prepares CPU `cpu`'s idle thread; returns the top of its stack.
    pub prepare: fn(usize) -> u64,
    /// Runs CPU `cpu`'s idle loop, on that stack.
    pub run: fn(usize) -> !,
}

/// The scheduler's entry points for started vCPUs, set by [`init`].
static CPU_START: spin::Once<CpuStart> = spin::Once::new();

/// Binds the boot CPU's IPIs, then starts every other online vCPU, each
/// into `start`'s idle loop. Returns how many CPUs run.
pub fn init(start: CpuStart) -> usize {
    ONLINE[0].store(true, Ordering::Release);
    CPU_START.call_once(|| start);
    crate::arch::pmap::set_remote_call(call_on);
    if let Err(e) = bind_ipis(0) {
        log::warn!("vCPU 0: no IPIs ({e}); staying on one CPU");
        return 1;
    }
    let mut possible = 1;
    while possible < MAX_CPUS && xen::vcpu::is_up(possible as u32).is_ok() {
        possible += 1;
    }
    POSSIBLE.store(possible, Ordering::Relaxed);
    for cpu in 1..possible {
        let path = alloc::format!("cpu/{cpu}/availability");
        match crate::xenstore::read_string(&path) {
            Ok(s) if s == "online" => {}
            _ => continue,
        }
        if let Err(e) = start_cpu(cpu, start) {
            log::warn!("vCPU {cpu} not started: {e}");
        }
    }
    online()
}

/// CPUs running now.
pub fn online() -> usize {
    ONLINE.iter().filter(|o| o.load(Ordering::Acquire)).count()
}

/// vCPUs the domain has.
pub fn possible() -> usize {
    POSSIBLE.load(Ordering::Relaxed)
}

/// Whether CPU `cpu` runs.
pub fn is_online(cpu: usize) -> bool {
    ONLINE.get(cpu).is_some_and(|o| o.load(Ordering::Acquire))
}

fn bind_ipis(cpu: usize) -> Result<(), StartError> {
    let r = xen::event_channel::bind_ipi(cpu as u32).map_err(|e| StartError::Xen("bind IPI", e))?;
    let c = xen::event_channel::bind_ipi(cpu as u32).map_err(|e| StartError::Xen("bind IPI", e))?;
    events::bind_on(r, on_reschedule, cpu);
    events::bind_on(c, on_call, cpu);
    RESCHED_PORT[cpu].store(r, Ordering::Release);
    CALL_PORT[cpu].store(c, Ordering::Release);
    Ok(())
}

/// Starts vCPU `cpu` and waits until it runs its idle loop.
fn start_cpu(cpu: usize, start: CpuStart) -> Result<(), StartError> {
    events::register_vcpu_info(cpu);
    events::bind_timer(cpu).map_err(|e| StartError::Xen("bind VIRQ_TIMER", e))?;
    bind_ipis(cpu)?;
    let stack_top = (start.prepare)(cpu);
    if crate::arch::is_pv() {
        let ctx = crate::arch::pv::ap_context(cpu, stack_top, ap_main as *const () as u64);
        // SAFETY: as below; the context names the kernel's page tables,
        // Xen's kernel selectors and the idle thread's stack.
        unsafe { xen::vcpu::initialise_pv(cpu as u32, &ctx) }
            .map_err(|e| StartError::Xen("VCPUOP_initialise", e))?;
        return wait_up(cpu);
    }
    let (cr3, _) = Cr3::read_raw();
    let regs = VcpuHvmX86_64 {
        // As if `ap_main(cpu)` had been called: the return slot below a
        // 16-byte boundary.
        rsp: stack_top - 8,
        rdi: cpu as u64,
        rip: ap_main as *const () as u64,
        // Interrupts off until the CPU has its IDT and `gs`.
        rflags: 0x2,
        cr0: Cr0::read_raw(),
        cr3: cr3.start_address().as_u64(),
        cr4: Cr4::read_raw(),
        efer: Efer::read_raw(),
        ..Default::default()
    };
    let ctx = VcpuHvmContext {
        mode: VCPU_HVM_MODE_64B,
        pad: 0,
        x86_64: regs,
        tail: [0; _],
    };
    // SAFETY: the vCPU starts in `ap_main` on the stack of its idle
    // thread, which nothing runs yet (it is pinned to this CPU and was
    // never queued), with the kernel's page tables and our control
    // registers: the state the boot CPU runs Rust code in.
    unsafe { xen::vcpu::initialise(cpu as u32, &ctx) }
        .map_err(|e| StartError::Xen("VCPUOP_initialise", e))?;
    wait_up(cpu)
}

/// Starts initialised vCPU `cpu` and waits until it runs its idle loop.
fn wait_up(cpu: usize) -> Result<(), StartError> {
    xen::vcpu::up(cpu as u32).map_err(|e| StartError::Xen("VCPUOP_up", e))?;
    let deadline = events::now_ns().saturating_add(START_TIMEOUT_NS);
    while !ONLINE[cpu].load(Ordering::Acquire) {
        if events::now_ns() >= deadline {
            return Err(StartError::Timeout);
        }
        core::hint::spin_loop();
    }
    Ok(())
}

/// Where a started vCPU begins, interrupts off, on its idle thread's
/// stack: its descriptor tables, `gs`, `syscall`, then the idle loop.
extern "C" fn ap_main(cpu: usize) -> ! {
    percpu::init(cpu);
    if crate::arch::is_pv() {
        // Xen's GDT and no TSS; the virtual IDT and the callbacks are
        // each vCPU's own.
        if let Err(e) = crate::arch::pv::init_traps() {
            panic!("vCPU {cpu}: PV traps refused: Xen error {}", e.0);
        }
    } else {
        let ist = vec![0u8; gdt::IST_STACK_SIZE].leak();
        gdt::init(cpu, ist.as_ptr() as u64 + gdt::IST_STACK_SIZE as u64);
        trap::load();
        syscall::init();
    }
    events::unmask_upcalls(cpu);
    ONLINE[cpu].store(true, Ordering::Release);
    log::debug!("vCPU {cpu} up");
    (CPU_START.get().expect("smp::init set it").run)(cpu)
}

/// Asks CPU `cpu` to look at its run queue.
pub fn send_reschedule(cpu: usize) {
    let port = RESCHED_PORT[cpu].load(Ordering::Acquire);
    if port != 0 && cpu != percpu::id() {
        let _ = xen::event_channel::send(port);
    }
}

fn on_reschedule(_port: Port, _ctx: usize) {
    IPIS[percpu::id()].fetch_add(1, Ordering::Relaxed);
}

fn on_call(_port: Port, _ctx: usize) {
    IPIS[percpu::id()].fetch_add(1, Ordering::Relaxed);
    serve();
}

/// Parking for a suspend ([`with_others_parked`]).
struct Parking {
    /// (a) The last parking asked for.
    asked: AtomicU64,
    /// (a) The last parking each CPU took part in.
    taken: [AtomicU64; MAX_CPUS],
    /// (a) CPUs parked for [`Self::asked`].
    parked: AtomicUsize,
    /// (a) The last parking released.
    released: AtomicU64,
    /// (a) Whether the released CPUs are in a new domain.
    new_domain: AtomicBool,
    /// (a) CPUs that went on after [`Self::released`].
    rejoined: AtomicUsize,
}

static PARKING: Parking = Parking {
    asked: AtomicU64::new(0),
    taken: [const { AtomicU64::new(0) }; MAX_CPUS],
    parked: AtomicUsize::new(0),
    released: AtomicU64::new(0),
    new_domain: AtomicBool::new(false),
    rejoined: AtomicUsize::new(0),
};

/// Runs `critical` on this CPU with interrupts off while every other
/// online CPU spins, interrupts off, in its call IPI (or wherever it
/// serves calls), as Linux's `stop_machine` and FreeBSD's `suspend_cpus`
/// park them for a suspend. A CPU may be parked while holding a lock it
/// took with interrupts on, so `critical` must take no such lock: no
/// allocation, no logging. When `critical` reports a new domain, each
/// parked CPU re-registers itself ([`events::rejoin`]) before it goes on,
/// after `critical` has bound its ports again ([`rebind`]). Returns
/// `critical`'s result once every CPU has gone on. Parking is not
/// reentrant: one caller at a time (the control thread).
pub fn with_others_parked<R>(critical: impl FnOnce() -> (R, bool)) -> R {
    let me = percpu::id();
    let others: alloc::vec::Vec<usize> =
        (0..MAX_CPUS).filter(|&c| c != me && is_online(c)).collect();
    let p = &PARKING;
    p.parked.store(0, Ordering::Release);
    p.rejoined.store(0, Ordering::Release);
    // This CPU takes no part in its own parking.
    let round = p.asked.load(Ordering::Acquire) + 1;
    p.taken[me].store(round, Ordering::Release);
    p.asked.store(round, Ordering::Release);
    for &c in &others {
        let _ = xen::event_channel::send(CALL_PORT[c].load(Ordering::Acquire));
    }
    spin_serving(|| p.parked.load(Ordering::Acquire) == others.len());
    interrupts::without_interrupts(|| {
        let (r, new_domain) = critical();
        p.new_domain.store(new_domain, Ordering::Release);
        p.released.store(round, Ordering::Release);
        while p.rejoined.load(Ordering::Acquire) < others.len() {
            core::hint::spin_loop();
        }
        // A call posted to us just before the suspend may have lost its
        // IPI with the old domain's ports: its sender waits for it. (The
        // parked CPUs serve theirs on their way out of `serve`.)
        serve();
        r
    })
}

/// Binds CPU `cpu`'s timer and IPIs again in a new domain, from the CPU
/// that runs [`with_others_parked`]'s critical part (binding for another
/// vCPU needs no help from it). Allocates nothing and logs nothing.
pub fn rebind(cpu: usize) -> Result<(), StartError> {
    if cpu != 0 {
        events::bind_timer(cpu).map_err(|e| StartError::Xen("bind VIRQ_TIMER", e))?;
    }
    bind_ipis(cpu)
}

/// Takes part in a parking if one was asked for since this CPU's last
/// one (see [`with_others_parked`]).
fn park_if_asked() {
    let p = &PARKING;
    let me = percpu::id();
    let round = p.asked.load(Ordering::Acquire);
    if round == p.taken[me].load(Ordering::Acquire) {
        return;
    }
    p.taken[me].store(round, Ordering::Release);
    interrupts::without_interrupts(|| {
        p.parked.fetch_add(1, Ordering::AcqRel);
        while p.released.load(Ordering::Acquire) < round {
            core::hint::spin_loop();
        }
        if p.new_domain.load(Ordering::Acquire) {
            events::rejoin(me);
        }
        p.rejoined.fetch_add(1, Ordering::AcqRel);
    });
}

/// Runs this CPU's posted call, if any.
fn serve() {
    park_if_asked();
    let m = &MAILBOX[percpu::id()];
    let call = interrupts::without_interrupts(|| m.request.lock().take());
    if let Some((f, arg)) = call {
        f(arg);
        m.done.fetch_add(1, Ordering::Release);
    }
}

/// Spins until `cond()`, serving this CPU's own call requests meanwhile.
pub fn spin_serving(mut cond: impl FnMut() -> bool) {
    while !cond() {
        serve();
        core::hint::spin_loop();
    }
}

/// Runs `f(arg)` on each CPU of `cpus` (a bit per CPU; the running CPU's
/// bit runs it here, interrupts off), and returns once all have run it.
/// Offline CPUs are skipped.
pub fn call_on(cpus: u64, f: fn(usize), arg: usize) {
    let me = percpu::id();
    let targets = (0..MAX_CPUS).filter(|&c| cpus & (1 << c) != 0 && c != me && is_online(c));
    let mut held = vec![];
    for c in targets {
        let m = &MAILBOX[c];
        let guard = loop {
            if let Some(g) = m.sender.try_lock() {
                break g;
            }
            serve();
            core::hint::spin_loop();
        };
        interrupts::without_interrupts(|| *m.request.lock() = Some((f, arg)));
        let want = m.posted.fetch_add(1, Ordering::AcqRel) + 1;
        let _ = xen::event_channel::send(CALL_PORT[c].load(Ordering::Acquire));
        held.push((c, want, guard));
    }
    if cpus & (1 << me) != 0 {
        interrupts::without_interrupts(|| f(arg));
    }
    for (c, want, guard) in held {
        spin_serving(|| MAILBOX[c].done.load(Ordering::Acquire) >= want);
        drop(guard);
    }
}

/// IPIs CPU `cpu` received.
pub fn ipis(cpu: usize) -> u64 {
    IPIS[cpu].load(Ordering::Relaxed)
}
