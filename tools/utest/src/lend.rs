//! The loan pair (`loan-readonly`, `loan-zero`, `loan-owner-exits` in
//! `scripts/scenarios/gntdev.sh`): `gnt-lend` in domain A grants pages it
//! already has read-only to domain B (`GRANT_USER`, lent: no copy),
//! `gnt-borrow` in B maps them read-only and checks what it reads at each
//! step. The share is published as the gntdev variant of
//! `docs/share-protocol.md` publishes it (`count` and `refs/J`,
//! [`crate::refs`], below A's `data/xenguest/share`, then `state` =
//! `ready`); the steps after it
//! are states of A's `share/state` and B's `map/state`:
//!
//! | step | A's `share/state` | B's `map/state` |
//! |---|---|---|
//! | B maps and checks every word | `ready` | `verified` |
//! | [`Case::ReadOnly`]: A writes every page, B reads again | `written` | `kept` |
//! | [`Case::OwnerExits`]: A's process exits (its kernel writes the state), B reads again | `exited` | `kept` |
//! | B unmaps | | `unmapped` |
//!
//! A failed check, or any error of either side, is a state that starts
//! with `failed` ([`say_failed`]): the other side stops waiting then.

use gnttab::xs::{Absent, Fmt, Watch, Xs};

/// Pages lent: 4 MiB.
pub const PAGES: usize = 1024;
/// The pattern's seed.
const SEED: u32 = 0x1e4d_0000;
/// How long a side waits for the other's next step.
const TIMEOUT_NS: u64 = 120_000_000_000;

/// What the pair checks (the program's argument: `case << 32 | peer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// A written buffer: A's writes after the grant break the loans by
    /// copy; B keeps reading the old contents.
    ReadOnly,
    /// A buffer never touched: the one zero page backs every grant.
    Zero,
    /// A written buffer, and A's process exits while B maps it.
    OwnerExits,
}

impl Case {
    /// The case and the peer's domain id of a program's argument.
    pub fn from_arg(arg: u64) -> Option<(Self, u32)> {
        let case = match arg >> 32 {
            0 => Self::ReadOnly,
            1 => Self::Zero,
            2 => Self::OwnerExits,
            _ => return None,
        };
        Some((case, (arg & 0xffff) as u32))
    }

    /// The word `k` of page `i` as A wrote it before the grant.
    pub fn word(self, i: usize, k: usize) -> u32 {
        match self {
            Self::Zero => 0,
            _ => SEED.wrapping_add((i * 1024 + k) as u32),
        }
    }
}

/// The words of the `n` pages at `words` that differ from `want(i, k)`,
/// read with volatile reads (a peer's pages may change under us).
///
/// # Safety
///
/// `words` is the start of a readable mapping of `n` pages.
pub unsafe fn wrong_words(
    words: *const u32,
    n: usize,
    want: impl Fn(usize, usize) -> u32,
) -> usize {
    let mut bad = 0;
    for i in 0..n {
        for k in 0..1024 {
            // SAFETY: inside the readable mapping of `n` pages the
            // caller vouches for.
            if unsafe { words.add(i * 1024 + k).read_volatile() } != want(i, k) {
                bad += 1;
            }
        }
    }
    bad
}

/// `/local/domain/DOMID/data/xenguest/LEAF`.
pub fn node(domid: u32, leaf: &str) -> Fmt {
    let mut path = Fmt::new();
    path.push(b"/local/domain/")
        .num(u64::from(domid))
        .push(b"/data/xenguest/")
        .push(leaf.as_bytes());
    path
}

/// Writes `value` at `leaf` below our `data/xenguest`, `dir` (`share` or
/// `map`) made readable by `peer` first when `fresh` (the nodes below
/// inherit its permissions).
pub fn set(
    xs: &mut Xs,
    me: u32,
    peer: u32,
    dir: &str,
    fresh: bool,
    leaf: &str,
    value: &[u8],
) -> Result<(), &'static str> {
    let base = node(me, dir);
    if fresh {
        let _ = xs.rm(base.as_str());
        xs.write(base.as_str(), b"").map_err(|_| "xenstore write")?;
        xs.set_perms_owner_reader(base.as_str(), me, peer)
            .map_err(|_| "xenstore set_perms")?;
    }
    let mut path = Fmt::new();
    path.push(base.as_bytes()).push(b"/").push(leaf.as_bytes());
    xs.write(path.as_str(), value).map_err(|_| "xenstore write")
}

/// Waits until the peer's node `path` reads `want` (or a state that
/// starts with `failed`, which is an error).
pub fn wait(xs: &mut Xs, path: &str, want: &str) -> Result<(), &'static str> {
    let mut watch = Watch::new(path, "lend").map_err(|_| "xenstore watch")?;
    let mut value = [0u8; 128];
    let len = xs
        .wait_for(
            &mut watch,
            path,
            &[want.as_bytes()],
            b"failed",
            &mut value,
            TIMEOUT_NS,
            Absent::NotYet,
        )
        .map_err(|_| "the peer never came to its next step")?;
    if value[..len].starts_with(b"failed") {
        urt::println!(
            "lend: the peer says {}",
            core::str::from_utf8(&value[..len]).unwrap_or("failed")
        );
        return Err("the peer's check failed");
    }
    Ok(())
}

/// Tells the peer, as well as can be, that this side failed: our
/// `DIR/state` (`share` or `map`, made readable by the peer at the start)
/// = `failed: WHY`, so that the peer's [`wait`] ends now rather than at
/// its timeout.
pub fn say_failed(dir: &str, why: &str) {
    let Ok(mut xs) = Xs::open() else { return };
    let Ok(me) = xs.read_u64("domid") else { return };
    let mut path = node(me as u32, dir);
    path.push(b"/state");
    let mut value = Fmt::new();
    value.push(b"failed: ").push(why.as_bytes());
    let _ = xs.write(path.as_str(), value.as_bytes());
}
