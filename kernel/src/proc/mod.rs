//! Processes: an address space, a descriptor table, threads.
//!
//! A process is created from an ELF program of the archive ([`programs`]),
//! runs in user mode until it exits or is killed, and is then torn down at
//! once (descriptors closed, address space freed); [`wait`] collects its
//! status. A user fault the VM cannot resolve kills the process with a
//! message, and the kernel goes on.
//!
//! Locking: `vm` guards the address-space pointer only (the map has its
//! own lock, see [`vmspace`]), `files` the descriptor table, `threads` the
//! list of live threads (taken before the scheduler's lock, never after);
//! `exit_status` and `status` are leaves; `PROCESSES` (the registry of
//! processes for shutdown and reports) is taken before `status` only. None
//! is held across a fault or a sleep, and none is taken by the upcall but
//! `killed` (atomic).

pub mod futex;
pub mod programs;
pub mod thread;
pub mod vmspace;

use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use spin::Mutex;
use vm::map::KernResult;
use vm::object::VmObject;
use vm::{Errno, Prot};

use crate::arch::pmap::{self, PAGE, USER_END};
use crate::arch::trap::{PF_INSN, PF_WRITE, TrapFrame};
use crate::dev::File;
use crate::elf;
use crate::sched::{self, Tid};
use vmspace::{Mapping, VmSpace};

/// User stack size.
const STACK_SIZE: u64 = 256 * 1024;
/// Most descriptors per process.
pub const MAX_FILES: usize = 64;

/// Exit status of a process killed by signal `sig` (as a shell shows it).
const fn killed(sig: i32) -> i32 {
    128 + sig
}
const SIGILL: i32 = 4;
const SIGKILL: i32 = 9;
/// Exit status of a process ended by [`kill`].
pub const KILLED_STATUS: i32 = killed(SIGKILL);
const SIGTRAP: i32 = 5;
const SIGBUS: i32 = 7;
const SIGFPE: i32 = 8;
const SIGSEGV: i32 = 11;

/// A process.
pub struct Process {
    /// Process id.
    pub pid: u32,
    /// Program name.
    pub name: String,
    /// The address space; `None` once torn down. The lock guards only
    /// the pointer: the map has its own lock, and no fault holds this one.
    pub vm: Mutex<Option<Arc<VmSpace>>>,
    /// Descriptors (the descriptor table lock).
    pub files: Mutex<Vec<Option<Arc<File>>>>,
    /// Page faults taken (user and copy routines).
    pub faults: AtomicU64,
    /// (a) Set by [`kill`]: its threads end at their next preemption
    /// point or return from a system call.
    killed: AtomicBool,
    /// Live threads, each with its exit word (0: none).
    threads: Mutex<Vec<(Tid, u64)>>,
    /// The status the process ends with: the first `exit`, fatal fault or
    /// kill of any of its threads.
    exit_status: Mutex<Option<i32>>,
    /// Exit status, once the last thread left and the process is torn
    /// down.
    status: Mutex<Option<i32>>,
    /// The thread that waits for it.
    parent: Tid,
}

static NEXT_PID: AtomicU32 = AtomicU32::new(1);
/// Every process started and not yet found torn down, for [`kill_all`]
/// and [`list`] (a leaf lock; dead entries are pruned at [`spawn`]).
static PROCESSES: Mutex<Vec<Weak<Process>>> = Mutex::new(Vec::new());

/// Why a program could not be started.
#[derive(Debug)]
pub enum SpawnError {
    /// No such program in the archive.
    NotFound,
    /// Not an executable we can run.
    BadExecutable(elf::ElfError),
    /// A segment outside user space or overlapping another.
    BadLayout,
    /// The VM failed.
    Vm(Errno),
}

impl core::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotFound => f.write_str("no such program in the archive"),
            Self::BadExecutable(e) => write!(f, "not an executable: {e:?}"),
            Self::BadLayout => f.write_str("a segment outside user space or overlapping another"),
            Self::Vm(e) => write!(f, "VM error {e:?}"),
        }
    }
}

impl From<Errno> for SpawnError {
    fn from(e: Errno) -> Self {
        Self::Vm(e)
    }
}

impl sched::Owner for Process {
    fn activate(&self) {
        match self.vm.lock().as_ref() {
            Some(vm) => vm.pmap.activate(),
            None => pmap::activate_kernel(),
        }
    }

    fn killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    fn pid(&self) -> u32 {
        self.pid
    }
}

impl Process {
    /// Runs `f` on the address space (`EFAULT` once torn down), without
    /// the process's `vm` lock held.
    pub fn with_vm<R>(&self, f: impl FnOnce(&VmSpace) -> Result<R, Errno>) -> Result<R, Errno> {
        let vm = self.vm.lock().clone().ok_or(Errno::EFAULT)?;
        f(&vm)
    }
}

/// Loads `exe`'s segments into `vm`: each into an anonymous object of its
/// own, filled now from the file, and entered in the page tables.
fn load(vm: &VmSpace, file: &[u8], exe: &elf::Executable) -> Result<(), SpawnError> {
    let d = crate::mem::domain();
    let mut ranges = Vec::with_capacity(exe.segments.len());
    for seg in &exe.segments {
        let start = seg.vaddr & !(PAGE - 1);
        let end = seg
            .vaddr
            .checked_add(seg.memsz)
            .and_then(|e| e.checked_next_multiple_of(PAGE))
            .ok_or(SpawnError::BadLayout)?;
        crate::usercopy::check_range(start, end - start).map_err(|_| SpawnError::BadLayout)?;
        let npages = (end - start) / PAGE;
        let obj = VmObject::allocate_default(d.clone(), npages);
        for i in 0..npages {
            let id = vm::grab::grab(&obj, i, vm::grab::GrabFlags::ZERO)?.expect("grab creates");
            let page_va = start + i * PAGE;
            let pa = d.page(id).phys_addr();
            // File bytes that land in this page.
            let lo = page_va.max(seg.vaddr);
            let hi = (page_va + PAGE).min(seg.vaddr + seg.filesz);
            if lo < hi {
                let src = &file[(seg.offset + lo - seg.vaddr) as usize..][..(hi - lo) as usize];
                // SAFETY: `pa` is a page we just allocated, identity-mapped,
                // and `lo - page_va + len <= PAGE`.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        src.as_ptr(),
                        (pa + lo - page_va) as *mut u8,
                        src.len(),
                    )
                };
            }
            d.page(id).xunbusy(d.wait());
        }
        let m = Mapping {
            prot: seg.prot,
            max_prot: Prot::all(),
            object: Some((obj, 0)),
            private: false,
        };
        vm.insert(start, end - start, m).map_err(|e| match e {
            KernResult::NoSpace => SpawnError::BadLayout,
            e => SpawnError::Vm(vmspace::errno(e)),
        })?;
        ranges.push((start, end));
    }
    // Every page is resident: one page-table batch for the image instead
    // of a fault each (under PV, an `mmu_update` each).
    vm.prefault(&ranges);
    Ok(())
}

/// Starts program `name` of the archive with `arg` in its first argument
/// register; the running thread is its parent.
pub fn spawn(name: &str, arg: u64) -> Result<Arc<Process>, SpawnError> {
    let file = programs::find(name).ok_or(SpawnError::NotFound)?;
    let exe = elf::parse(file).map_err(SpawnError::BadExecutable)?;
    let vm = VmSpace::new()?;
    load(&vm, file, &exe)?;
    let m = Mapping {
        prot: Prot::READ | Prot::WRITE,
        max_prot: Prot::all(),
        object: None,
        private: false,
    };
    vm.insert(USER_END - STACK_SIZE, STACK_SIZE, m)
        .map_err(|_| SpawnError::BadLayout)?;
    let p = Arc::new(Process {
        pid: NEXT_PID.fetch_add(1, Ordering::Relaxed),
        name: name.into(),
        vm: Mutex::new(Some(Arc::new(vm))),
        files: Mutex::new(Vec::new()),
        faults: AtomicU64::new(0),
        killed: AtomicBool::new(false),
        threads: Mutex::new(Vec::new()),
        exit_status: Mutex::new(None),
        status: Mutex::new(None),
        parent: sched::current(),
    });
    {
        let mut all = PROCESSES.lock();
        all.retain(|w| w.upgrade().is_some_and(|q| q.status.lock().is_none()));
        all.push(Arc::downgrade(&p));
    }
    // As if entered by a call: rsp + 8 is 16-byte aligned. The list is
    // held until the thread is on it: it cannot leave before.
    let mut threads = p.threads.lock();
    let tid = sched::spawn_user(p.clone(), exe.entry, USER_END - 8, arg);
    threads.push((tid, 0));
    drop(threads);
    Ok(p)
}

/// The processes not yet torn down.
fn running() -> Vec<Arc<Process>> {
    PROCESSES
        .lock()
        .iter()
        .filter_map(Weak::upgrade)
        .filter(|p| p.status.lock().is_none())
        .collect()
}

/// [`kill`]s every process not yet torn down; returns how many.
pub fn kill_all() -> usize {
    let all = running();
    for p in &all {
        kill(p);
    }
    all.len()
}

/// [`kill`]s every process not yet torn down that has a descriptor for
/// which `pred` holds; returns how many.
pub fn kill_holding(pred: impl Fn(&crate::dev::File) -> bool) -> usize {
    let hit: Vec<Arc<Process>> = running()
        .into_iter()
        .filter(|p| p.files.lock().iter().flatten().any(|f| pred(f)))
        .collect();
    for p in &hit {
        kill(p);
    }
    hit.len()
}

/// How many processes are not yet torn down.
pub fn live() -> usize {
    running().len()
}

/// One line about a running process, for reports.
pub struct ProcessInfo {
    /// Process id.
    pub pid: u32,
    /// Program name.
    pub name: String,
    /// Live threads.
    pub threads: usize,
    /// Page faults taken.
    pub faults: u64,
    /// Descriptors open.
    pub files: usize,
    /// Whether it is being killed.
    pub killed: bool,
}

/// The processes not yet torn down, by pid.
pub fn list() -> Vec<ProcessInfo> {
    let mut v: Vec<ProcessInfo> = running()
        .iter()
        .map(|p| ProcessInfo {
            pid: p.pid,
            name: p.name.clone(),
            threads: p.threads.lock().len(),
            faults: p.faults.load(Ordering::Relaxed),
            files: p.files.lock().iter().flatten().count(),
            killed: p.killed.load(Ordering::Acquire),
        })
        .collect();
    v.sort_by_key(|i| i.pid);
    v
}

/// Ends `p` (status [`KILLED_STATUS`]) at its next preemption point or
/// return from a system call; a thread blocked in the kernel ends when its
/// wait does.
pub fn kill(p: &Process) {
    p.exit_status.lock().get_or_insert(KILLED_STATUS);
    p.killed.store(true, Ordering::Release);
    for &(tid, _) in p.threads.lock().iter() {
        sched::wake(tid);
    }
    futex::wake_all(p);
}

/// The running thread's process, if it is a process thread.
pub fn current() -> Option<Arc<Process>> {
    let owner: Arc<dyn core::any::Any + Send + Sync> = sched::current_owner()?;
    owner.downcast().ok()
}

/// On the way back to user mode (a system call's return, a trap's or an
/// upcall's from user mode): a thread of an ending process ends here,
/// with interrupts on.
pub fn exit_if_killed() {
    // Killed, or another of its threads exited or faulted.
    if sched::current_killed() {
        crate::arch::interrupts::enable();
        exit(KILLED_STATUS);
    }
}

/// Waits until `p` has exited; returns its status.
pub fn wait(p: &Process) -> i32 {
    loop {
        if let Some(s) = *p.status.lock() {
            sched::reap();
            return s;
        }
        sched::block(sched::Wait {
            what: "process exit",
            ..Default::default()
        });
    }
}

/// Ends the running process with `status` (unless it already ends with
/// another): every thread ends (the others at their next preemption point
/// or system call return), and the last one tears the process down.
/// It does not return, so its callers' frames are never unwound: they
/// must own nothing when they call it (a reference to the process held
/// there kept every process's record, name and thread list for good: 272
/// bytes of heap per process, seen as the soak's mappers and sharers
/// growing by that much each round).
pub fn exit(status: i32) -> ! {
    let p = current().expect("a process thread");
    p.exit_status.lock().get_or_insert(status);
    p.killed.store(true, Ordering::Release);
    thread::wake_others(&p);
    drop(p);
    thread::exit_current()
}

/// The end of a process, by its last thread: frees its address space,
/// closes its descriptors and wakes its parent.
fn teardown(p: &Process) {
    // The address space goes before the descriptors (as Linux's `exit_mm`
    // before `exit_files`): a mapping's teardown may still use an open
    // device, e.g. gntdev's unmap notify signals a port of
    // `/dev/xen/evtchn`. Off its page tables before they go.
    pmap::activate_kernel();
    let vm = p.vm.lock().take();
    if let Some(vm) = vm {
        vm.clear();
    }
    let files = core::mem::take(&mut *p.files.lock());
    drop(files);
    let status = p.exit_status.lock().unwrap_or(0);
    *p.status.lock() = Some(status);
    sched::wake(p.parent);
}

/// Resolves a fault of the running process at user address `va`
/// through the VM ([`VmSpace::fault`]).
pub fn resolve_fault(va: u64, access: Prot) -> Result<(), KernResult> {
    let p = current().ok_or(KernResult::InvalidAddress)?;
    p.faults.fetch_add(1, Ordering::Relaxed);
    let vm = p.vm.lock().clone().ok_or(KernResult::InvalidAddress)?;
    drop(p);
    vm.fault(va, access)
}

/// An exception in user mode: a page fault the VM resolves returns to the
/// program; anything else kills it.
pub fn user_trap(frame: &mut TrapFrame, cr2: u64) {
    let sig = match frame.vector {
        14 => {
            let access = if frame.error & PF_WRITE != 0 {
                Prot::WRITE
            } else if frame.error & PF_INSN != 0 {
                Prot::EXECUTE
            } else {
                Prot::READ
            };
            match resolve_fault(cr2, access) {
                Ok(()) => return,
                // Beyond what the object backs (`KernResult`'s docs).
                Err(KernResult::OutOfBounds) => SIGBUS,
                Err(_) => SIGSEGV,
            }
        }
        0 | 16 | 19 => SIGFPE,
        3 => SIGTRAP,
        6 => SIGILL,
        13 => SIGSEGV,
        _ => SIGBUS,
    };
    if let Some(p) = current() {
        crate::kprintln!(
            "process {} ({}) killed: {} at rip {:#x}, address {cr2:#x}, error {:#x}",
            p.pid,
            p.name,
            crate::arch::trap::vector_name(frame.vector),
            frame.rip,
            frame.error
        );
    }
    // Nothing of this frame may own memory here: `exit` does not return,
    // so what it owned would never be freed.
    exit(killed(sig))
}
