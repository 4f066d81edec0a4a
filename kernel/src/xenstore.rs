//! The kernel's xenstore connection: the client of `xen::xenstore` over
//! the store ring (`HVM_PARAM_STORE_PFN`/`_EVTCHN`), waiting on the store
//! event channel instead of spinning.
//!
//! Watch events are routed by token: those of user opens of
//! `/dev/xen/xenstore` carry the prefix of a registered [`WatchSink`]
//! ([`sink_token`]) and go to it ([`dispatch_watches`]); the others are
//! the kernel's own, which re-read what they watch on any event.
//!
//! Locking: `STORE` serialises requests; `SINKS` (the registered sinks)
//! is taken after `STORE` is released, and a sink is called with neither
//! held. Neither is taken from the upcall.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Weak;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use spin::{Mutex, MutexGuard, Once};
use xen::abi::Port;
use xen::abi::hvm::{PARAM_STORE_EVTCHN, PARAM_STORE_PFN};
use xen::abi::xs_wire::XenstoreDomainInterface;
use xen::hypercall::XenErrno;
use xen::xenstore::{TxId, Xenstore, XsHooks};

use crate::events;

/// How long one wait for xenstored lasts before the client looks again.
const WAIT_SLICE_NS: u64 = 10_000_000;

/// Signal and wait through the store event channel ([`port`]).
pub struct Hooks;

impl XsHooks for Hooks {
    fn notify(&mut self) {
        // A failed send shows up as a timeout of the waiting caller.
        let _ = xen::event_channel::send(port());
    }

    fn wait(&mut self) {
        events::wait(port(), WAIT_SLICE_NS);
    }
}

static STORE: Once<Mutex<Xenstore<Hooks>>> = Once::new();
/// (a) The store event channel (0 before [`init`]); a new one after a
/// resume into a new domain ([`resume`]).
static PORT: AtomicU32 = AtomicU32::new(0);
/// Registered watch sinks by id.
static SINKS: Mutex<BTreeMap<u64, Weak<dyn WatchSink>>> = Mutex::new(BTreeMap::new());
/// The next sink id.
static NEXT_SINK: AtomicU64 = AtomicU64::new(1);
/// (a) Watch events of the kernel's own watches received so far, by
/// whichever thread dispatched them ([`kernel_watch_events`]).
static KERNEL_EVENTS: AtomicU64 = AtomicU64::new(0);

/// Receives the watch events of one user open.
pub trait WatchSink: Send + Sync {
    /// A watch of this sink fired for `path`; `token` is the token as the
    /// sink gave it (without the routing prefix).
    fn deliver(&self, path: &[u8], token: &[u8]);
}

/// Registers `sink`; returns its id for [`sink_token`] and
/// [`remove_sink`].
pub fn add_sink(sink: Weak<dyn WatchSink>) -> u64 {
    let id = NEXT_SINK.fetch_add(1, Ordering::Relaxed);
    SINKS.lock().insert(id, sink);
    id
}

/// Registered watch sinks (user opens of the xenstore device), for
/// baselines.
pub fn sinks() -> usize {
    SINKS.lock().len()
}

/// Forgets sink `id` (its watches must be gone first).
pub fn remove_sink(id: u64) {
    SINKS.lock().remove(&id);
}

/// The token xenstored sees for sink `id`'s token `token`.
pub fn sink_token(id: u64, token: &[u8]) -> Vec<u8> {
    let mut t = Vec::from(alloc::format!("u{id}/").as_bytes());
    t.extend_from_slice(token);
    t
}

/// Splits a routed token into the sink id and the sink's own token.
fn parse_sink_token(token: &str) -> Option<(u64, &str)> {
    let (id, rest) = token.strip_prefix('u')?.split_once('/')?;
    Some((id.parse().ok()?, rest))
}

/// Hands the watch events received so far to their sinks; returns how
/// many were not for a sink (the kernel's own).
pub fn dispatch_watches() -> Result<usize, XenErrno> {
    let mut others = 0;
    loop {
        let ev = with(|xs| xs.poll_watch())?;
        let Some(ev) = ev else { return Ok(others) };
        let target = parse_sink_token(&ev.token)
            .and_then(|(id, tok)| Some((SINKS.lock().get(&id)?.upgrade()?, tok)));
        match target {
            Some((sink, tok)) => sink.deliver(ev.path.as_bytes(), tok.as_bytes()),
            None => {
                KERNEL_EVENTS.fetch_add(1, Ordering::Relaxed);
                others += 1;
            }
        }
    }
}

/// How many events of the kernel's own watches any thread has dispatched
/// ([`dispatch_watches`]): a watcher whose event another thread took
/// still sees the count move, and re-reads what it watches.
pub fn kernel_watch_events() -> u64 {
    KERNEL_EVENTS.load(Ordering::Relaxed)
}

/// The store event channel; [`init`] must have run.
pub fn port() -> Port {
    PORT.load(Ordering::Acquire)
}

/// Connects to xenstore. Needs [`events::init`] first.
pub fn init() -> Result<(), XenErrno> {
    let (pfn, port) = match crate::arch::pv::start_info() {
        // PV: the ring is a page of the boot region, mapped at its pfn.
        Some(s) => (
            s.store_pfn,
            crate::arch::pv_suspend::start_info_now().store_evtchn,
        ),
        None => (
            xen::hvm::get_param(PARAM_STORE_PFN)?,
            xen::hvm::get_param(PARAM_STORE_EVTCHN)? as Port,
        ),
    };
    events::bind(port, events::mark);
    PORT.store(port, Ordering::Release);
    let page = (pfn << 12) as *mut XenstoreDomainInterface;
    // SAFETY: Xen names this frame as our xenstore ring; it lies below
    // 4 GiB in the boot identity map, and this is the only client.
    let xs = unsafe { Xenstore::new(page, Hooks) };
    STORE.call_once(|| Mutex::new(xs));
    Ok(())
}

/// Holds the xenstore client for a suspend: no request is in flight,
/// and none starts, while the guard lives.
pub fn hold() -> MutexGuard<'static, Xenstore<Hooks>> {
    STORE.get().expect("xenstore::init ran").lock()
}

/// After a resume into a new domain, with the client `held` since before
/// the suspend: binds the store's new event channel and starts over on
/// the ring (cleared under PVH; as saved under PV), registering every
/// watch again (the kernel's and those of user opens). Returns how many
/// watches were registered.
pub fn resume(held: &mut Xenstore<Hooks>) -> Result<usize, XenErrno> {
    let port = if crate::arch::is_pv() {
        crate::arch::pv_suspend::start_info_now().store_evtchn
    } else {
        xen::hvm::get_param(PARAM_STORE_EVTCHN)? as Port
    };
    events::bind(port, events::mark);
    PORT.store(port, Ordering::Release);
    held.reconnect()
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
        match dispatch_watches() {
            Ok(0) => with(|xs| xs.hooks().wait()),
            Ok(_) => continue,
            Err(e) => break Err(e),
        }
    };
    let _ = with(|xs| xs.unwatch(path, token));
    result
}
