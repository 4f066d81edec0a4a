//! `/dev/physobj`: a fresh object of physically contiguous-capable pages
//! (the phys pager, whose populate maps 2 MiB runs with one entry).

use urt::PAGE;
use urt::mman::{MAP_SHARED, PROT_READ, PROT_WRITE};

/// A read-write shared mapping of a new `pages`-page object.
pub struct PhysObj {
    /// The descriptor of the object.
    pub fd: u64,
    /// Where it is mapped.
    pub addr: u64,
    pages: usize,
}

impl PhysObj {
    /// Opens `/dev/physobj`, sizes the object to `pages` pages
    /// (`PHYSOBJ_SET_SIZE`) and maps it whole.
    pub fn map(pages: usize) -> Result<Self, &'static str> {
        let fd =
            urt::open(b"/dev/physobj\0", urt::fcntl::O_RDWR).map_err(|_| "open /dev/physobj")?;
        let size = pages as u64;
        let addr = urt::ioctl(
            fd,
            urt::physobj::PHYSOBJ_SET_SIZE,
            &size as *const u64 as u64,
        )
        .and_then(|_| urt::mmap(0, pages * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
        match addr {
            Ok(addr) => Ok(Self { fd, addr, pages }),
            Err(_) => {
                let _ = urt::close(fd);
                Err("PHYSOBJ_SET_SIZE or mmap of /dev/physobj")
            }
        }
    }

    /// Unmaps and closes it.
    pub fn close(self) -> Result<(), &'static str> {
        urt::munmap(self.addr, self.pages * PAGE).map_err(|_| "munmap of /dev/physobj")?;
        urt::close(self.fd).map_err(|_| "close of /dev/physobj")?;
        Ok(())
    }
}
