//! The PVH and PV guest kernel.
//!
//! Boot order under PVH: the 32-bit stub (`arch::boot`) enters
//! [`kernel_main`] in long mode on the boot stack; we load our GDT and
//! IDT, find Xen through CPUID and install the hypercall page, find the
//! console ring, copy the start info. Under PV, Xen enters `arch::pv`'s
//! stub in long mode, which calls [`pv_main`]: the virtual IDT and the
//! event callbacks, the start info checked and all RAM mapped, the
//! console ring. Then, for both, take the kernel heap from RAM (nothing allocates before
//! that), hand the rest of RAM to the VM, print the banner, start
//! answering the toolstack (`control`), run the selected scenario and
//! power off.
#![no_std]
#![no_main]

extern crate alloc;

mod arch;
mod boot_info;
mod cmdline;
mod console;
mod control;
mod dev;
mod elf;
mod events;
mod grants;
mod heap;
mod kstack;
mod layout;
mod mem;
mod proc;
mod scenario;
mod sched;
mod shared_page;
mod sleepq;
mod smp;
mod suspend;
mod syscall;
mod trap;
mod usercopy;
mod xenstore;

use core::fmt;

use xen::abi::sched::ShutdownReason;
use xen::cpuid::XenLeaves;

/// Entered from `arch::boot` with the physical address of `hvm_start_info`.
#[unsafe(no_mangle)]
extern "C" fn kernel_main(start_info_paddr: u32) -> ! {
    arch::percpu::init(0);
    arch::gdt::init(0, arch::gdt::boot_ist_top());
    arch::trap::init();
    arch::syscall::init();
    let Some(leaves) = XenLeaves::find() else {
        // Without Xen there is no console and no way to stop: say so on
        // the debug port and halt.
        xen::console::debug_port_write(b"xenguest: not running on Xen\n");
        loop {
            x86_64::instructions::hlt();
        }
    };
    // SAFETY: the hypercall page is part of our image, identity-mapped, so
    // its virtual address is its physical address; nothing else runs yet.
    unsafe { xen::hypercall::install(&leaves, xen::hypercall::page_address() as u64) };
    if let Err(e) = console::init() {
        fatal(format_args!("no PV console: {e:?}"));
    }
    // SAFETY: `ebx` held this address at entry and nothing has been
    // allocated past our image since, so the start info is intact.
    let boot = match unsafe { boot_info::BootInfo::copy_from(u64::from(start_info_paddr)) } {
        Ok(b) => b,
        Err(e) => fatal(format_args!("bad start info: {e}")),
    };
    start(&boot, leaves.version())
}

/// Entered from `arch::pv` (the PV entry) with the virtual address of
/// `start_info`, on the boot stack, events masked. Xen filled the
/// hypercall page when it loaded the image.
#[unsafe(no_mangle)]
extern "C" fn pv_main(si: *const xen::abi::pv::StartInfo) -> ! {
    arch::percpu::init(0);
    if let Err(e) = arch::pv::init_traps() {
        xen::console::hypervisor_write(b"xenguest: PV trap table refused\n");
        fatal(format_args!("set_trap_table: Xen error {}", e.0));
    }
    // SAFETY: `rsi` held this address at entry, and nothing has written
    // past the image since.
    let start_of_day = match unsafe { arch::pv::start_of_day(si) } {
        Ok(s) => s,
        Err(e) => {
            // No console ring is known yet (or the start info is not to
            // be trusted): Xen's own console, then a crash.
            xen::console::hypervisor_write(b"xenguest: PV start of day failed: ");
            let mut buf = [0u8; 128];
            xen::console::hypervisor_write(fmt_into(&mut buf, format_args!("{e}\n")).as_bytes());
            xen::sched::shutdown(ShutdownReason::Crash)
        }
    };
    if let Err(e) = console::init() {
        fatal(format_args!("no PV console: {e:?}"));
    }
    // SAFETY: as above; the start info is in the boot region, kept.
    let cmdline = unsafe { arch::pv::cmdline(si) };
    let boot = boot_info::BootInfo::from_pv(
        start_of_day.nr_pages,
        &cmdline,
        start_of_day.module,
        start_of_day.boot_end,
    );
    start(&boot, xen::pv::version())
}

/// Formats `args` into `buf` (cut when full), for output before the heap.
fn fmt_into<'a>(buf: &'a mut [u8], args: fmt::Arguments<'_>) -> &'a str {
    struct Cursor<'b>(&'b mut [u8], usize);
    impl fmt::Write for Cursor<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let n = s.len().min(self.0.len() - self.1);
            self.0[self.1..self.1 + n].copy_from_slice(&s.as_bytes()[..n]);
            self.1 += n;
            Ok(())
        }
    }
    let mut c = Cursor(buf, 0);
    let _ = fmt::write(&mut c, args);
    let n = c.1;
    core::str::from_utf8(&c.0[..n]).unwrap_or("")
}

/// The boot common to PVH and PV, from the boot information on; `version`
/// is Xen's (major, minor).
fn start(boot: &boot_info::BootInfo, (major, minor): (u16, u16)) -> ! {
    let opts = cmdline::Options::parse(boot.cmdline());
    console::init_log(opts.log_level);
    events::set_idle_poll(opts.get("idle") == Some("poll"));
    let heap = heap::init(boot);
    log::debug!(
        "kernel heap: {} KiB at {:#x}",
        (heap.end - heap.start) / 1024,
        heap.start
    );
    // Busy-page waits sleep on the scheduler's sleep queues.
    mem::init(boot, heap, alloc::sync::Arc::new(sleepq::PageWait));
    arch::pmap::init();
    sched::init();
    proc::programs::init(boot);
    let hole = layout::init(boot);
    log::debug!("hole: {} frames at gfn {:#x}", hole.frames, hole.gfn);
    if let Err(e) = events::init() {
        fatal(format_args!("event channels: {e}"));
    }
    if let Some(port) = console::port() {
        events::bind(port, events::mark);
    }
    if let Err(e) = xenstore::init() {
        fatal(format_args!("xenstore: {e:?}"));
    }
    if let Err(e) = grants::init() {
        fatal(format_args!("grant table: {e}"));
    }
    let cpus = smp::init(smp::CpuStart {
        prepare: sched::prepare_cpu,
        run: sched::run_idle,
    });
    suspend::refresh_domid();
    let domid = suspend::domid();
    kprintln!(
        "xenguest: domain {} ({}) on Xen {major}.{minor}, {cpus} of {} vCPUs up, {} KiB RAM in {} memory map entries, cmdline \"{}\"",
        DomainId(domid),
        arch::mode_name(),
        smp::possible(),
        boot.ram_bytes() / 1024,
        boot.memmap().len(),
        boot.cmdline(),
    );
    // The same numbers for the scripts (`counter` in scripts/lib/xl.sh).
    kprintln!(
        "COUNTERS banner domid={} ram_kib={} pv={}",
        DomainId(domid),
        boot.ram_bytes() / 1024,
        u8::from(arch::is_pv())
    );
    for e in boot.memmap() {
        log::debug!(
            "memmap {:#012x}-{:#012x} type {}",
            e.addr,
            e.addr + e.size,
            e.kind
        );
    }
    for m in boot.modules() {
        log::debug!("module at {:#x}, {} bytes", m.paddr, m.size);
    }
    control::init();
    let outcome = scenario::run(opts.scenario.unwrap_or(scenario::DEFAULT), boot, &opts);
    let ev = events::stats();
    let sc = sched::stats();
    log::info!(
        "scheduler: {} context switches, {} preemptions, {} steals on {} vCPUs",
        sc.switches,
        sc.preemptions,
        sc.steals,
        smp::online()
    );
    let (heap_size, heap_peak) = heap::usage();
    log::info!(
        "powering off: {} upcalls ({} delivered masked, put off; {} run by a poll before a halt), {} events dispatched, {} spurious; {} hypercalls; kernel heap peak {} of {} KiB",
        ev.upcalls,
        arch::trap::masked_upcalls(),
        events::polled(),
        ev.dispatched,
        ev.spurious,
        xen::hypercall::counts().iter().sum::<u64>(),
        heap_peak / 1024,
        heap_size / 1024
    );
    suspend::settle();
    console::flush();
    // A shutdown the toolstack asked for ends the domain its way, whatever
    // the scenario made of its processes being killed.
    xen::sched::shutdown(match (control::requested(), outcome) {
        (Some(reason), _) => reason,
        (None, Ok(())) => ShutdownReason::Poweroff,
        (None, Err(_)) => ShutdownReason::Crash,
    })
}

/// Formats a domain id that CPUID may not report.
struct DomainId(Option<u16>);

impl fmt::Display for DomainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(id) => write!(f, "{id}"),
            None => f.write_str("(unknown)"),
        }
    }
}

/// Prints `msg` and a RESULT line for the running scenario, then crashes
/// the domain (`SCHEDOP_shutdown`, reason crash).
pub fn fatal(msg: fmt::Arguments<'_>) -> ! {
    let name = scenario::CURRENT.get().copied().unwrap_or("boot");
    console::print_fatal(format_args!("FATAL: {msg}\nRESULT {name} CRASH\n"));
    console::flush();
    xen::sched::shutdown(ShutdownReason::Crash)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    fatal(format_args!("kernel panic: {info}"))
}
