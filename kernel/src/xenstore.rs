//! The kernel's xenstore connection: the client of `xen::xenstore` over
//! the store ring (`HVM_PARAM_STORE_PFN`/`_EVTCHN`), waiting on the store
//! event channel instead of spinning.
//!
//! Locking: `STORE` serialises requests; it is never taken from the upcall.

use alloc::string::String;

use spin::{Mutex, Once};
use xen::abi::Port;
use xen::abi::hvm::{PARAM_STORE_EVTCHN, PARAM_STORE_PFN};
use xen::abi::xs_wire::XenstoreDomainInterface;
use xen::hypercall::XenErrno;
use xen::xenstore::{TxId, WatchEvent, Xenstore, XsHooks};

use crate::events;

/// How long one wait for xenstored lasts before the client looks again.
const WAIT_SLICE_NS: u64 = 10_000_000;

/// Signal and wait through the store event channel.
pub struct Hooks {
    port: Port,
}

impl XsHooks for Hooks {
    fn notify(&mut self) {
        // A failed send shows up as a timeout of the waiting caller.
        let _ = xen::event_channel::send(self.port);
    }

    fn wait(&mut self) {
        events::wait(self.port, WAIT_SLICE_NS);
    }
}

static STORE: Once<Mutex<Xenstore<Hooks>>> = Once::new();

/// Connects to xenstore. Needs [`events::init`] first.
pub fn init() -> Result<(), XenErrno> {
    let pfn = xen::hvm::get_param(PARAM_STORE_PFN)?;
    let port = xen::hvm::get_param(PARAM_STORE_EVTCHN)? as Port;
    events::bind(port, events::mark);
    let page = (pfn << 12) as *mut XenstoreDomainInterface;
    // SAFETY: Xen names this frame as our xenstore ring; it lies below
    // 4 GiB in the boot identity map, and this is the only client.
    let xs = unsafe { Xenstore::new(page, Hooks { port }) };
    STORE.call_once(|| Mutex::new(xs));
    Ok(())
}

/// Runs `f` with the xenstore client.
pub fn with<R>(f: impl FnOnce(&mut Xenstore<Hooks>) -> R) -> R {
    f(&mut STORE.get().expect("xenstore::init ran").lock())
}

/// Reads `path` as UTF-8 text.
pub fn read_string(path: &str) -> Result<String, XenErrno> {
    let bytes = with(|xs| xs.read(TxId::NONE, path))?;
    String::from_utf8(bytes).map_err(|_| XenErrno::EINVAL)
}

/// Reads `path` as a decimal number.
pub fn read_u64(path: &str) -> Result<u64, XenErrno> {
    read_string(path)?
        .trim()
        .parse()
        .map_err(|_| XenErrno::EINVAL)
}

/// Waits until `path` (watched with `token`) reads as one of `wanted`,
/// for at most `timeout_ns`. Returns the value seen.
pub fn wait_for_value(path: &str, wanted: &[&str], timeout_ns: u64) -> Result<String, XenErrno> {
    let token = "wait";
    with(|xs| xs.watch(path, token))?;
    let deadline = events::now_ns().saturating_add(timeout_ns);
    let result = loop {
        // The watch fires once at registration, so a value already there
        // is seen without waiting.
        if let Ok(v) = read_string(path)
            && wanted.contains(&v.as_str())
        {
            break Ok(v);
        }
        if events::now_ns() >= deadline {
            break Err(XenErrno::ETIMEDOUT);
        }
        let ev: Result<Option<WatchEvent>, XenErrno> = with(|xs| xs.poll_watch());
        match ev {
            Ok(Some(_)) => continue,
            Ok(None) => with(|xs| xs.hooks().wait()),
            Err(e) => break Err(e),
        }
    };
    let _ = with(|xs| xs.unwatch(path, token));
    result
}
