//! Kernel console: the `log` backend and the crash path's output.
//!
//! Until [`init`] finds the PV console ring (HVM params 17/18, or the PV
//! start info), output goes
//! to Xen's debug port 0xE9; afterwards to the ring, which xenconsoled logs
//! and `xl console` shows. Fatal messages go to both, so a crash dump is in
//! the guest's console log and in Xen's own log.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU32, Ordering};

use log::{LevelFilter, Log, Metadata, Record};
use spin::Mutex;
use xen::abi::console::XenconsInterface;
use xen::abi::hvm::{PARAM_CONSOLE_EVTCHN, PARAM_CONSOLE_PFN};
use xen::console::{ConsoleRing, debug_port_write};

/// The console ring, once found. The lock serialises writers so lines from
/// different contexts do not interleave.
static RING: Mutex<Option<ConsoleRing>> = Mutex::new(None);

/// (a) The console's event channel, once found (0 before).
static PORT: AtomicU32 = AtomicU32::new(0);

/// Scheduler yields to wait for xenconsoled to drain the ring at shutdown.
const FLUSH_YIELDS: u32 = 200_000;

/// Finds the PV console ring. Its page lies inside the boot identity map.
pub fn init() -> Result<(), xen::hypercall::XenErrno> {
    let (pfn, port) = match crate::arch::pv::start_info() {
        // PV: the ring is a page of the boot region, mapped at its pfn;
        // the port is the start info's (new after a move).
        Some(s) => (
            s.console_pfn,
            u64::from(crate::arch::pv_suspend::start_info_now().console_evtchn),
        ),
        None => (
            xen::hvm::get_param(PARAM_CONSOLE_PFN)?,
            xen::hvm::get_param(PARAM_CONSOLE_EVTCHN)?,
        ),
    };
    let ring = (pfn << 12) as *mut XenconsInterface;
    // SAFETY: Xen names this frame as our console page; it is below 4 GiB
    // and so identity-mapped writable by the boot page tables, and this is
    // the only producer we create.
    let ring = unsafe { ConsoleRing::new(ring, port as u32) };
    *RING.lock() = Some(ring);
    PORT.store(port as u32, Ordering::Release);
    Ok(())
}

/// After a resume into a new domain: the console page is the same frame
/// (cleared under PVH; under PV as saved, its indices going on), and the
/// port is new. Takes the ring on and returns the new port (for the
/// caller to bind).
pub fn resume() -> Result<u32, xen::hypercall::XenErrno> {
    init()?;
    Ok(PORT.load(Ordering::Acquire))
}

/// Writes to Xen's own console without the ring: port 0xE9 under PVH;
/// under PV, where the kernel runs in ring 3 and an `out` would fault
/// (a fatal message's `out` faulted, and its report faulted again,
/// until the kernel stack overflowed with nothing printed), the
/// `console_io` hypercall, which a release Xen ignores for a domU.
fn early_write(bytes: &[u8]) {
    if crate::arch::is_pv() {
        xen::console::hypervisor_write(bytes);
    } else {
        debug_port_write(bytes);
    }
}

struct RingWriter<'a>(&'a mut Option<ConsoleRing>);

impl Write for RingWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        match self.0 {
            Some(ring) => ring.write(s.as_bytes()),
            None => early_write(s.as_bytes()),
        }
        Ok(())
    }
}

/// The console ring's event channel (xenconsoled signals it when it has
/// consumed output or produced input).
pub fn port() -> Option<u32> {
    Some(PORT.load(Ordering::Acquire)).filter(|&p| p != 0)
}

/// Gathers formatted fragments so a line reaches the ring (and signals
/// xenconsoled) once, not once per fragment: xenconsoled rate-limits
/// domains that signal too often.
struct LineBuffer<'a, 'b> {
    out: &'a mut RingWriter<'b>,
    buf: [u8; 256],
    len: usize,
}

impl LineBuffer<'_, '_> {
    fn flush(&mut self) {
        if self.len > 0 {
            // The buffer only ever holds whole UTF-8 fragments.
            let text = core::str::from_utf8(&self.buf[..self.len]).unwrap_or("");
            let _ = self.out.write_str(text);
            self.len = 0;
        }
    }
}

impl Write for LineBuffer<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.len + s.len() > self.buf.len() {
            self.flush();
        }
        if s.len() > self.buf.len() {
            return self.out.write_str(s);
        }
        self.buf[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
        self.len += s.len();
        Ok(())
    }
}

/// Writes formatted text to the console.
pub fn print(args: fmt::Arguments<'_>) {
    let mut ring = RING.lock();
    let mut out = RingWriter(&mut ring);
    let mut line = LineBuffer {
        out: &mut out,
        buf: [0; 256],
        len: 0,
    };
    let _ = line.write_fmt(args);
    line.flush();
}

/// Writes a fatal message to both the ring and Xen's console (port 0xE9
/// or, under PV, `console_io`: [`early_write`]), even if the
/// ring's lock is held by the code that crashed, then waits for the ring
/// to drain so the message reaches the log before the domain goes away.
pub fn print_fatal(args: fmt::Arguments<'_>) {
    struct Port;
    impl Write for Port {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            early_write(s.as_bytes());
            Ok(())
        }
    }
    let _ = Port.write_fmt(args);
    if RING.is_locked() {
        // SAFETY: we are on the way to shutting the domain down from the
        // only vCPU; whoever held the lock will never run again, and a
        // torn line is better than a lost crash dump.
        unsafe { RING.force_unlock() };
    }
    print(args);
}

/// Waits (bounded) until xenconsoled has read everything written.
pub fn flush() {
    if let Some(ring) = RING.lock().as_mut() {
        ring.flush(FLUSH_YIELDS);
    }
}

/// Prints to the console, like `print!`.
#[macro_export]
macro_rules! kprint {
    ($($arg:tt)*) => { $crate::console::print(format_args!($($arg)*)) };
}

/// Prints a line to the console, like `println!`.
#[macro_export]
macro_rules! kprintln {
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}

struct Logger;

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            print(format_args!("[{:5}] {}\n", record.level(), record.args()));
        }
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// Installs the `log` backend at `level`.
pub fn init_log(level: LevelFilter) {
    // Only fails when called twice, which boot never does.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
