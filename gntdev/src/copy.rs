//! `IOCTL_GNTDEV_GRANT_COPY` with Linux gntdev's semantics: segments by
//! pointer, each copying between a foreign grant and a user buffer (or
//! two grants; user-to-user is `EINVAL`), a grant side never crossing its
//! page (`EINVAL`), each segment's `GNTST_*` written back to its `status`
//! (the ioctl itself succeeds), a zero-length segment accepted with
//! nothing copied and neither side checked, and batches of 64 ops per copy hypercall
//! (Linux's `GNTDEV_COPY_BATCH` is 16: a quarter of the hypercalls for a
//! long copy, for 256 KiB of bounce pages while the ioctl runs; fewer
//! when memory is short).
//!
//! User buffers go through bounce pages of our own ([`PageSource`]): the
//! crate never pins user memory. A batch is validated and its sources
//! read in before anything is copied, so a bad segment or user pointer
//! fails the ioctl before its batch runs (earlier batches stay done, as
//! on Linux).

use alloc::vec;
use alloc::vec::Vec;

use vm::page::PageId;
use vm::{Errno, PAGE_SHIFT, PAGE_SIZE};
use xen::abi::grant_table::{GNTCOPY_dest_gref, GNTCOPY_source_gref, GNTST_okay};
use xen::grant::{CopyOp, CopySide};

use crate::UserMemory;
use crate::abi::{CopySideArg, GrantCopy, GrantCopySegment, IoctlArg};
use crate::device::Gntdev;

/// Ops per copy hypercall.
const BATCH: usize = 64;

/// A user side of a segment to copy back after the batch.
struct CopyBack {
    /// Segment number.
    seg: usize,
    /// User address to copy the bounce page's first `len` bytes to.
    virt: Option<u64>,
    len: usize,
}

/// Runs `GRANT_COPY` `a` for the caller whose memory is `user`.
pub(crate) fn grant_copy(dev: &Gntdev, user: &dyn UserMemory, a: &GrantCopy) -> Result<(), Errno> {
    let total = a.count as usize;
    let mut bounce: Vec<PageId> = Vec::new();
    let res = (|| {
        // As many bounce pages as a batch wants, or as memory allows: a
        // short allocation makes smaller batches, not a failure.
        for _ in 0..total.min(BATCH) {
            match dev.svc.pages.alloc_zeroed() {
                Ok(p) => bounce.push(p),
                Err(e) if bounce.is_empty() => return Err(e),
                Err(_) => break,
            }
        }
        for start in (0..total).step_by(bounce.len().max(1)) {
            let n = (total - start).min(bounce.len());
            batch(dev, user, a.segments, start, n, &bounce)?;
        }
        Ok(())
    })();
    for p in bounce {
        dev.svc.pages.free(p);
    }
    res
}

/// The user address of segment `i`'s field at `field`.
fn seg_addr(segments: u64, i: usize, field: usize) -> Result<u64, Errno> {
    (i as u64)
        .checked_mul(GrantCopySegment::SIZE as u64)
        .and_then(|o| segments.checked_add(o + field as u64))
        .ok_or(Errno::EFAULT)
}

/// Segments `start..start + n`, with bounce page `k` for the `k`-th.
fn batch(
    dev: &Gntdev,
    user: &dyn UserMemory,
    segments: u64,
    start: usize,
    n: usize,
    bounce: &[PageId],
) -> Result<(), Errno> {
    let mut raw = vec![0u8; n * GrantCopySegment::SIZE];
    user.copy_in(seg_addr(segments, start, 0)?, &mut raw)?;
    let mut ops = Vec::with_capacity(n);
    let mut back = Vec::with_capacity(n);
    let mut empty = Vec::new();
    for (k, chunk) in raw.chunks_exact(GrantCopySegment::SIZE).enumerate() {
        let s = GrantCopySegment::decode(chunk);
        if s.flags & !(GNTCOPY_source_gref | GNTCOPY_dest_gref) != 0
            || s.flags == 0
            || u64::from(s.len) > PAGE_SIZE
        {
            return Err(Errno::EINVAL);
        }
        if s.len == 0 {
            // Nothing to copy: no op, and neither side is looked at (a
            // null buffer or a junk reference is fine), as on Linux.
            empty.push(start + k);
            continue;
        }
        let gfn = dev.gfn(bounce[k]);
        let len = usize::from(s.len);
        let side = |raw: u64, is_gref: bool| -> Result<CopySide, Errno> {
            Ok(match CopySideArg::decode(raw, is_gref) {
                CopySideArg::Foreign {
                    gref,
                    offset,
                    domid,
                } => {
                    if usize::from(offset) + len > PAGE_SIZE as usize {
                        return Err(Errno::EINVAL);
                    }
                    CopySide::Grant {
                        dom: domid,
                        gref,
                        offset,
                    }
                }
                CopySideArg::Virt(_) => CopySide::Local { gfn, offset: 0 },
            })
        };
        let src = side(s.source, s.flags & GNTCOPY_source_gref != 0)?;
        let dst = side(s.dest, s.flags & GNTCOPY_dest_gref != 0)?;
        if let CopySide::Local { .. } = src {
            let mut buf = vec![0u8; len];
            user.copy_in(s.source, &mut buf)?;
            dev.svc.phys.write(gfn << PAGE_SHIFT, &buf)?;
        }
        let virt = matches!(dst, CopySide::Local { .. }).then_some(s.dest);
        back.push(CopyBack {
            seg: start + k,
            virt,
            len,
        });
        ops.push(CopyOp {
            src,
            dst,
            len: s.len,
        });
    }
    let results = if ops.is_empty() {
        Vec::new()
    } else {
        dev.svc.copier.copy(&ops)
    };
    let at = core::mem::offset_of!(GrantCopySegment, status);
    for seg in empty {
        user.copy_out(seg_addr(segments, seg, at)?, &GNTST_okay.to_ne_bytes())?;
    }
    for (b, r) in back.iter().zip(&results) {
        let status = match r {
            Ok(()) => GNTST_okay,
            Err(e) => e.status(),
        };
        if let (Ok(()), Some(virt)) = (r, b.virt) {
            let mut buf = vec![0u8; b.len];
            dev.svc
                .phys
                .read(dev.gfn(bounce[b.seg - start]) << PAGE_SHIFT, &mut buf)?;
            user.copy_out(virt, &buf)?;
        }
        user.copy_out(seg_addr(segments, b.seg, at)?, &status.to_ne_bytes())?;
    }
    Ok(())
}
