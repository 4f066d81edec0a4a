//! The guest-physical address space as the memory map describes it: RAM,
//! and a hole of unpopulated frames for Xen to fill (shared info, grant
//! table frames, foreign grant mappings).
//!
//! The hole is the gap between the end of RAM below 4 GiB and the first
//! region the memory map reserves above it (ACPI, Xen's special pages,
//! the local APIC), so it is inside the boot identity map and clashes with
//! nothing Xen or the platform placed. Frames of the hole are handed out
//! by a first-fit extent allocator and returned when no longer used.

use spin::{Mutex, Once};
use vm::extent::{ExtentAllocator, ExtentError};
use xen::abi::start_info::MEMMAP_TYPE_RAM;

use crate::boot_info::BootInfo;

/// Page size.
pub const PAGE_SIZE: u64 = 4096;
/// The hole never extends past this address: the local APIC, IOAPIC and
/// Xen's special pages live above it on PVH.
const HOLE_CEILING: u64 = 0xf000_0000;
/// End of the boot identity map.
const IDENTITY_END: u64 = 1 << 32;

/// A run of hole frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoleRun {
    /// First frame number.
    pub gfn: u64,
    /// Number of frames.
    pub frames: u64,
}

/// The hole allocator (locks: its own mutex; taken with interrupts on,
/// never from the upcall).
static HOLE: Once<Mutex<ExtentAllocator>> = Once::new();

/// Finds the hole in `boot`'s memory map.
pub fn init(boot: &BootInfo) -> HoleRun {
    let mut ram_end = 0;
    for e in boot.memmap() {
        let end = e.addr + e.size;
        if e.kind == MEMMAP_TYPE_RAM && end <= IDENTITY_END {
            ram_end = ram_end.max(end);
        }
    }
    // Start 2 to 4 MiB past RAM, 2 MiB aligned, so RAM growth near the end
    // never collides with a mapping.
    let start = (ram_end + (4 << 20) - 1) & !((2 << 20) - 1);
    let ceiling = boot
        .memmap()
        .iter()
        .map(|e| e.addr)
        .filter(|&a| a >= start)
        .fold(HOLE_CEILING, u64::min);
    let run = HoleRun {
        gfn: start / PAGE_SIZE,
        frames: ceiling.saturating_sub(start) / PAGE_SIZE,
    };
    HOLE.call_once(|| {
        Mutex::new(ExtentAllocator::new(run.gfn, run.frames).expect("hole within the u64 space"))
    });
    run
}

/// Takes `frames` contiguous hole frames.
pub fn alloc_hole(frames: u64) -> Result<HoleRun, ExtentError> {
    alloc_hole_aligned(frames, 1)
}

/// Takes `frames` contiguous hole frames from a frame number that is a
/// multiple of `align` (a power of two; 512 puts the run on a 2 MiB
/// boundary, for 2 MiB mappings of it).
pub fn alloc_hole_aligned(frames: u64, align: u64) -> Result<HoleRun, ExtentError> {
    let gfn = HOLE
        .get()
        .expect("layout::init ran")
        .lock()
        .alloc_aligned(frames, align)?;
    Ok(HoleRun { gfn, frames })
}

/// Returns frames taken with [`alloc_hole`]; Xen must no longer map
/// anything there.
pub fn free_hole(run: HoleRun) -> Result<(), ExtentError> {
    HOLE.get()
        .expect("layout::init ran")
        .lock()
        .free(run.gfn, run.frames)
}

/// Hole frames currently handed out.
pub fn hole_in_use() -> u64 {
    HOLE.get().map_or(0, |h| h.lock().allocated())
}
