//! Validation of a PVH kernel before linux-loader touches it.
//!
//! linux-loader reads ELF64 only, lets the last PT_NOTE win and does not
//! check segments against RAM, so everything a guest's loader could trip on
//! is checked here first, with a message naming the problem.

use std::ops::Range;

use object::elf::{ELFCLASS32, ELFCLASS64, ELFDATA2LSB, EM_X86_64, ET_EXEC, PT_LOAD, PT_NOTE};
use object::read::elf::{FileHeader, ProgramHeader};
use object::{Endianness, elf::FileHeader64};

use ftvm_core::layout::{BOOT_AREA_END, LEGACY_HOLE_END, LEGACY_HOLE_START};

/// `XEN_ELFNOTE_PHYS32_ENTRY`: the 32-bit physical entry point of the PVH ABI.
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// Why a kernel file is not a PVH ELF64 image ftvm can load.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ElfError {
    /// The file is empty.
    #[error("the kernel file is empty")]
    Empty,
    /// It is not an ELF file.
    #[error("not an ELF file (no ELF magic)")]
    NotElf,
    /// It is a 32-bit ELF file.
    #[error("ELF32 kernels are not supported: ftvm boots ELF64 PVH kernels")]
    Elf32,
    /// Its ELF class is neither 32 nor 64 bits.
    #[error("unknown ELF class {0}")]
    BadClass(u8),
    /// It is big-endian.
    #[error("not a little-endian ELF file")]
    BigEndian,
    /// Its ELF header is truncated or malformed.
    #[error("truncated or malformed ELF header: {0}")]
    Header(object::read::Error),
    /// Its ELF identification is cut short.
    #[error("the ELF identification is cut short")]
    ShortIdent,
    /// It is for another machine than x86-64.
    #[error("not an x86-64 ELF file (machine {0})")]
    Machine(u16),
    /// It is not an executable.
    #[error("not an executable ELF file (type {0})")]
    NotExecutable(u16),
    /// Its program headers lie outside the file.
    #[error("program headers lie outside the file: {0}")]
    ProgramHeaders(object::read::Error),
    /// It has no loadable segment.
    #[error("no loadable segment")]
    NoSegments,
    /// A segment is larger in the file than in memory.
    #[error(
        "segment {index} has a file size ({filesz:#x}) larger than its memory size ({memsz:#x})"
    )]
    SegmentSizes {
        /// The segment's index.
        index: usize,
        /// Its size in the file.
        filesz: u64,
        /// Its size in memory.
        memsz: u64,
    },
    /// A segment's data lies outside the file.
    #[error("segment {index}'s data lies outside the file (truncated?)")]
    SegmentData {
        /// The segment's index.
        index: usize,
    },
    /// A segment lies outside the RAM a kernel may load into.
    #[error(
        "segment {index} at [{start:#x}, {end:#x}) does not fit in guest RAM (which ends at {ram_end:#x}; kernels load in [{BOOT_AREA_END:#x}, {LEGACY_HOLE_START:#x}) or from {LEGACY_HOLE_END:#x} up)"
    )]
    SegmentOutsideRam {
        /// The segment's index.
        index: usize,
        /// Its first address.
        start: u64,
        /// The address just past it.
        end: u64,
        /// The end of guest RAM.
        ram_end: u64,
    },
    /// A note segment is malformed.
    #[error("malformed PT_NOTE segment {index}: {reason}")]
    Note {
        /// The segment's index.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// It has no PVH entry note.
    #[error(
        "no PVH entry note (Xen XEN_ELFNOTE_PHYS32_ENTRY): ftvm boots kernels through the PVH ABI"
    )]
    NoPvhNote,
    /// Its PVH entry point lies outside every loaded segment.
    #[error("PVH entry point {0:#x} lies outside every loaded segment")]
    EntryOutside(u64),
}

/// A kernel that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvhKernel {
    /// The 32-bit physical entry point from the PVH note.
    pub entry: u32,
    /// Guest-physical ranges the loaded segments occupy.
    pub segments: Vec<Range<u64>>,
}

/// Checks that `image` is an ELF64 x86-64 executable with a PVH entry note
/// whose segments fit in `ram_end` bytes of RAM, clear of the boot area and
/// the legacy hole.
pub fn validate(image: &[u8], ram_end: u64) -> Result<PvhKernel, ElfError> {
    check_ident(image)?;
    let endian = Endianness::Little;
    let header = FileHeader64::<Endianness>::parse(image).map_err(ElfError::Header)?;
    if header.e_machine(endian) != EM_X86_64 {
        return Err(ElfError::Machine(header.e_machine(endian)));
    }
    if header.e_type(endian) != ET_EXEC {
        return Err(ElfError::NotExecutable(header.e_type(endian)));
    }
    let phdrs = header
        .program_headers(endian, image)
        .map_err(ElfError::ProgramHeaders)?;

    let mut segments = Vec::new();
    let mut entry = None;
    for (index, phdr) in phdrs.iter().enumerate() {
        match phdr.p_type(endian) {
            PT_LOAD => {
                if let Some(range) = check_load(index, phdr, endian, image, ram_end)? {
                    segments.push((range, phdr.p_filesz(endian)));
                }
            }
            PT_NOTE => {
                // Any note segment may carry the entry; the first one found wins.
                let found = pvh_entry(index, phdr, endian, image)?;
                entry = entry.or(found);
            }
            _ => {}
        }
    }
    if segments.is_empty() {
        return Err(ElfError::NoSegments);
    }
    let entry = entry.ok_or(ElfError::NoPvhNote)?;
    let inside = segments.iter().any(|(range, filesz)| {
        let entry = u64::from(entry);
        entry >= range.start && entry < range.start + filesz
    });
    if !inside {
        return Err(ElfError::EntryOutside(u64::from(entry)));
    }
    Ok(PvhKernel {
        entry,
        segments: segments.into_iter().map(|(range, _)| range).collect(),
    })
}

fn check_ident(image: &[u8]) -> Result<(), ElfError> {
    if image.is_empty() {
        return Err(ElfError::Empty);
    }
    if !image.starts_with(b"\x7fELF") {
        return Err(ElfError::NotElf);
    }
    match image.get(4).copied() {
        Some(ELFCLASS64) => {}
        Some(ELFCLASS32) => return Err(ElfError::Elf32),
        Some(class) => return Err(ElfError::BadClass(class)),
        None => return Err(ElfError::ShortIdent),
    }
    match image.get(5).copied() {
        Some(ELFDATA2LSB) => Ok(()),
        Some(_) => Err(ElfError::BigEndian),
        None => Err(ElfError::ShortIdent),
    }
}

/// The guest-physical range of a loadable segment, or None when it is empty.
fn check_load(
    index: usize,
    phdr: &<FileHeader64<Endianness> as FileHeader>::ProgramHeader,
    endian: Endianness,
    image: &[u8],
    ram_end: u64,
) -> Result<Option<Range<u64>>, ElfError> {
    let (filesz, memsz) = (phdr.p_filesz(endian), phdr.p_memsz(endian));
    if memsz == 0 {
        return Ok(None);
    }
    if filesz > memsz {
        return Err(ElfError::SegmentSizes {
            index,
            filesz,
            memsz,
        });
    }
    let start = phdr.p_paddr(endian);
    let outside = ElfError::SegmentOutsideRam {
        index,
        start,
        end: start.saturating_add(memsz),
        ram_end,
    };
    let end = start.checked_add(memsz).ok_or(outside.clone())?;
    let in_low_ram = start >= BOOT_AREA_END && end <= LEGACY_HOLE_START.min(ram_end);
    let in_high_ram = start >= LEGACY_HOLE_END && end <= ram_end;
    if !in_low_ram && !in_high_ram {
        // Before the data: a kernel file is read only as far as RAM goes.
        return Err(outside);
    }
    let offset = phdr.p_offset(endian);
    let data_end = offset.checked_add(filesz);
    if data_end.is_none_or(|end| end > image.len() as u64) {
        return Err(ElfError::SegmentData { index });
    }
    Ok(Some(start..end))
}

/// Where the program headers end, from the ELF header at the start of
/// `head`; None when `head` does not start with an ELF64 header
/// ([`validate`] says why).
pub fn headers_end(head: &[u8]) -> Option<u64> {
    check_ident(head).ok()?;
    let header = FileHeader64::<Endianness>::parse(head).ok()?;
    let endian = Endianness::Little;
    let table = u64::from(header.e_phnum(endian)) * u64::from(header.e_phentsize(endian));
    header.e_phoff(endian).checked_add(table)
}

/// How much of a kernel file ftvm reads and keeps: the headers, the data
/// of the loadable and note segments (what validation and loading need),
/// and the section header table with the sections before it (symbols and
/// line tables: a trace carries the kernel for a debugger to load). None
/// when `prefix`, the start of the file through its program headers, is
/// not an ELF64 file ([`validate`] says why).
pub fn needed_len(prefix: &[u8]) -> Option<u64> {
    let endian = Endianness::Little;
    let header = FileHeader64::<Endianness>::parse(prefix).ok()?;
    let phdrs = header.program_headers(endian, prefix).ok()?;
    let sections = u64::from(header.e_shnum(endian)) * u64::from(header.e_shentsize(endian));
    let section_headers_end = header.e_shoff(endian).saturating_add(sections);
    phdrs
        .iter()
        .filter(|phdr| matches!(phdr.p_type(endian), PT_LOAD | PT_NOTE))
        .map(|phdr| phdr.p_offset(endian).saturating_add(phdr.p_filesz(endian)))
        .chain(headers_end(prefix))
        .chain([section_headers_end])
        .max()
}

/// The entry point from a PVH note in this note segment, if it has one.
fn pvh_entry(
    index: usize,
    phdr: &<FileHeader64<Endianness> as FileHeader>::ProgramHeader,
    endian: Endianness,
    image: &[u8],
) -> Result<Option<u32>, ElfError> {
    let malformed = |reason: &dyn std::fmt::Display| ElfError::Note {
        index,
        reason: reason.to_string(),
    };
    let mut notes = phdr
        .notes(endian, image)
        .map_err(|e| malformed(&e))?
        .ok_or_else(|| malformed(&"not a note segment"))?;
    while let Some(note) = notes.next().map_err(|e| malformed(&e))? {
        if note.name() != b"Xen" || note.n_type(endian) != XEN_ELFNOTE_PHYS32_ENTRY {
            continue;
        }
        // The ABI's entry is 32 bits; some kernels emit it as a 64-bit value.
        let desc = note.desc();
        let entry = match desc.len() {
            4 => u64::from(u32::from_le_bytes(desc.try_into().expect("4 bytes"))),
            8 => u64::from_le_bytes(desc.try_into().expect("8 bytes")),
            _ => return Err(malformed(&"the PVH entry is neither 4 nor 8 bytes")),
        };
        let entry = u32::try_from(entry).map_err(|_| malformed(&"the PVH entry is above 4 GiB"))?;
        return Ok(Some(entry));
    }
    Ok(None)
}
