//! Reading static ELF executables (`ET_EXEC`, x86-64, little-endian): the
//! entry point and the loadable segments, each checked against the file.

use alloc::vec::Vec;

use vm::Prot;

/// A `PT_LOAD` segment.
#[derive(Clone, Copy, Debug)]
pub struct Segment {
    /// Where it is mapped.
    pub vaddr: u64,
    /// Bytes in memory (the rest past `filesz` is zero).
    pub memsz: u64,
    /// Offset of its bytes in the file.
    pub offset: u64,
    /// Bytes in the file.
    pub filesz: u64,
    /// Access rights.
    pub prot: Prot,
}

/// A parsed executable.
#[derive(Debug)]
pub struct Executable {
    /// Entry point.
    pub entry: u64,
    /// Loadable segments.
    pub segments: Vec<Segment>,
}

/// Why a file is not an executable we can run.
#[derive(Clone, Copy, Debug)]
pub enum ElfError {
    /// Not a 64-bit little-endian x86-64 `ET_EXEC` file.
    NotExecutable,
    /// A header or segment lies outside the file, or a segment's sizes
    /// disagree.
    Truncated,
}

const PT_LOAD: u32 = 1;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;

fn u16_at(b: &[u8], off: usize) -> Result<u16, ElfError> {
    let s = b.get(off..off + 2).ok_or(ElfError::Truncated)?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, ElfError> {
    let s = b.get(off..off + 4).ok_or(ElfError::Truncated)?;
    Ok(u32::from_le_bytes(s.try_into().expect("4 bytes")))
}

fn u64_at(b: &[u8], off: usize) -> Result<u64, ElfError> {
    let s = b.get(off..off + 8).ok_or(ElfError::Truncated)?;
    Ok(u64::from_le_bytes(s.try_into().expect("8 bytes")))
}

/// Parses `file`.
pub fn parse(file: &[u8]) -> Result<Executable, ElfError> {
    let ident = file.get(..16).ok_or(ElfError::Truncated)?;
    // Magic, ELFCLASS64, ELFDATA2LSB; ET_EXEC; EM_X86_64.
    if ident[..4] != *b"\x7fELF" || ident[4] != 2 || ident[5] != 1 {
        return Err(ElfError::NotExecutable);
    }
    if u16_at(file, 16)? != 2 || u16_at(file, 18)? != 62 {
        return Err(ElfError::NotExecutable);
    }
    let entry = u64_at(file, 24)?;
    let phoff = u64_at(file, 32)? as usize;
    let phentsize = usize::from(u16_at(file, 54)?);
    let phnum = usize::from(u16_at(file, 56)?);
    if phentsize < 56 {
        return Err(ElfError::Truncated);
    }
    let mut segments = Vec::new();
    for i in 0..phnum {
        let ph = phoff
            .checked_add(i * phentsize)
            .ok_or(ElfError::Truncated)?;
        if u32_at(file, ph)? != PT_LOAD {
            continue;
        }
        let flags = u32_at(file, ph + 4)?;
        let seg = Segment {
            offset: u64_at(file, ph + 8)?,
            vaddr: u64_at(file, ph + 16)?,
            filesz: u64_at(file, ph + 32)?,
            memsz: u64_at(file, ph + 40)?,
            prot: [
                (PF_R, Prot::READ),
                (PF_W, Prot::WRITE),
                (PF_X, Prot::EXECUTE),
            ]
            .iter()
            .filter(|(f, _)| flags & f != 0)
            .fold(Prot::empty(), |p, &(_, q)| p | q),
        };
        let file_end = seg.offset.checked_add(seg.filesz);
        if seg.filesz > seg.memsz || file_end.is_none_or(|e| e > file.len() as u64) {
            return Err(ElfError::Truncated);
        }
        segments.push(seg);
    }
    Ok(Executable { entry, segments })
}
