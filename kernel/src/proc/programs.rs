//! The user programs: a ustar archive passed as the domain's boot module
//! (xl's `ramdisk=`, `target/user/programs.tar` built by `scripts/build`),
//! read in place. `mem` keeps the module's pages out of the allocator.

use spin::Once;

use crate::boot_info::BootInfo;

static ARCHIVE: Once<&'static [u8]> = Once::new();

/// Remembers the first boot module as the program archive.
pub fn init(boot: &BootInfo) {
    if let Some(m) = boot.modules().first() {
        // SAFETY: Xen loaded the module at this identity-mapped RAM, which
        // `mem::init` reserved, so nothing else writes it for the kernel's
        // life.
        let bytes = unsafe { core::slice::from_raw_parts(m.paddr as *const u8, m.size as usize) };
        ARCHIVE.call_once(|| bytes);
    }
}

fn octal(field: &[u8]) -> Option<usize> {
    let s = core::str::from_utf8(field).ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
    usize::from_str_radix(s, 8).ok()
}

/// The file `name` of the archive (`./` prefixes ignored).
pub fn find(name: &str) -> Option<&'static [u8]> {
    let mut a: &'static [u8] = ARCHIVE.get()?;
    while a.len() >= 512 && a[0] != 0 {
        let (hdr, rest) = a.split_at(512);
        let nlen = hdr[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let fname = core::str::from_utf8(&hdr[..nlen]).ok()?;
        let size = octal(&hdr[124..136])?;
        let data = rest.get(..size)?;
        if fname.trim_start_matches("./") == name && (hdr[156] == b'0' || hdr[156] == 0) {
            return Some(data);
        }
        a = rest.get(size.next_multiple_of(512)..)?;
    }
    None
}
