//! A share's grant references in xenstore (`docs/share-protocol.md`):
//! `refs/J` nodes below the share's directory, each with up to
//! [`REFS_PER_NODE`] decimal references separated by spaces.

use gnttab::xs::{Fmt, Xs, parse_u64};

/// References per `refs/J` node.
pub const REFS_PER_NODE: usize = 256;

/// Writes `refs` below the share's directory `base`.
pub fn publish(xs: &mut Xs, base: &str, refs: &[u32]) -> Result<(), &'static str> {
    let mut path = Fmt::new();
    let mut val = Fmt::new();
    for (j, chunk) in refs.chunks(REFS_PER_NODE).enumerate() {
        path.push(base.as_bytes()).push(b"/refs/").num(j as u64);
        val.clear();
        for (x, r) in chunk.iter().enumerate() {
            if x > 0 {
                val.push(b" ");
            }
            val.num(u64::from(*r));
        }
        xs.write(path.as_str(), val.as_bytes())
            .map_err(|_| "xenstore write")?;
        path.clear();
    }
    Ok(())
}

/// Reads the references below the share's directory `base` into `refs`,
/// which must be exactly as many as the share's `count`.
pub fn read(xs: &mut Xs, base: &str, refs: &mut [u32]) -> Result<(), &'static str> {
    let mut path = Fmt::new();
    let mut val = [0u8; gnttab::xs::PAYLOAD_MAX];
    let mut got = 0;
    for j in 0..refs.len().div_ceil(REFS_PER_NODE) {
        path.clear()
            .push(base.as_bytes())
            .push(b"/refs/")
            .num(j as u64);
        let len = xs.read(path.as_str(), &mut val).map_err(|_| "read refs")?;
        for r in val[..len].split(|&b| b == b' ') {
            let r = parse_u64(r).ok_or("bad reference")?;
            *refs.get_mut(got).ok_or("too many references")? = r as u32;
            got += 1;
        }
    }
    if got != refs.len() {
        return Err("fewer references than count");
    }
    Ok(())
}
