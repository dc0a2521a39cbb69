//! Bad kernels and bad flags: one line on stderr naming the problem, the
//! documented exit status, never a panic or a hang.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{run, scratch_dir};

const INVALID_KERNEL: i32 = 124;
const USAGE: i32 = 125;
const UNREADABLE_KERNEL: i32 = 126;
const KERNEL_NOT_FOUND: i32 = 127;

fn hello() -> Vec<u8> {
    vmm::images::builtin("hello").unwrap().elf.to_vec()
}

fn write(test: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch_dir(test).join("kernel");
    std::fs::write(&path, bytes).unwrap();
    path
}

fn boot(path: &Path) -> common::Finished {
    run(&["run", "--kernel", path.to_str().unwrap()])
}

fn u16_at(elf: &[u8], at: usize) -> usize {
    u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()) as usize
}

fn u64_at(elf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(elf[at..at + 8].try_into().unwrap())
}

/// Offsets of the program headers of type `p_type`.
fn phdrs(elf: &[u8], p_type: u32) -> Vec<usize> {
    let (phoff, phentsize, phnum) = (
        u64_at(elf, 0x20) as usize,
        u16_at(elf, 0x36),
        u16_at(elf, 0x38),
    );
    (0..phnum)
        .map(|i| phoff + i * phentsize)
        .filter(|&at| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) == p_type)
        .collect()
}

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;

/// File offset of the PVH note's header (namesz, descsz, type, "Xen\0", desc).
fn pvh_note(elf: &[u8]) -> usize {
    let at = u64_at(elf, phdrs(elf, PT_NOTE)[0] + 8) as usize;
    assert_eq!(
        &elf[at + 12..at + 15],
        b"Xen",
        "the hello image's note moved"
    );
    at
}

#[test]
fn a_missing_file_is_not_found() {
    let out = run(&["run", "--kernel", "/nonexistent/kernel"]);
    out.assert_refused(KERNEL_NOT_FOUND, "/nonexistent/kernel");
}

#[test]
fn a_directory_is_unreadable() {
    let dir = scratch_dir("dir-kernel");
    let out = run(&["run", "--kernel", dir.to_str().unwrap()]);
    out.assert_refused(UNREADABLE_KERNEL, "cannot read kernel");
}

/// Memory well below what reading the inputs of these tests whole would take.
const BOUNDED_KIB: u64 = 64 << 10;

/// Runs `ftvm run --kernel path` and checks it ended within a second in
/// bounded memory.
fn boot_promptly(path: &Path) -> common::Finished {
    let started = Instant::now();
    let out = boot(path);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}: {out:#?}",
        started.elapsed()
    );
    assert!(out.peak_kib < BOUNDED_KIB, "{} KiB: {out:#?}", out.peak_kib);
    out
}

#[test]
fn a_device_or_a_fifo_is_refused_without_reading_it() {
    boot_promptly(Path::new("/dev/zero")).assert_refused(UNREADABLE_KERNEL, "not a regular file");
    let fifo = scratch_dir("fifo-kernel").join("kernel");
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid path; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    boot_promptly(&fifo).assert_refused(UNREADABLE_KERNEL, "not a regular file");
}

/// A sparse file of `len` bytes starting with `head`.
fn sparse(test: &str, head: &[u8], len: u64) -> PathBuf {
    let path = write(test, head);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len)
        .unwrap();
    path
}

#[test]
fn a_huge_file_is_judged_by_its_header() {
    let zeros = sparse("sparse-kernel", b"", 2 << 30);
    boot_promptly(&zeros).assert_refused(INVALID_KERNEL, "not an ELF file");
    // A real kernel followed by 2 GB of nothing: only what its program
    // headers need is read, and it boots.
    let padded = sparse("padded-kernel", &hello(), 2 << 30);
    let out = boot_promptly(&padded);
    assert_eq!(out.code(), 0, "{out:#?}");
    assert!(out.stdout.contains("Hello"), "{out:#?}");
}

#[test]
fn an_empty_file_is_refused() {
    boot(&write("empty", b"")).assert_refused(INVALID_KERNEL, "empty");
}

#[test]
fn a_non_elf_file_is_refused() {
    boot(&write("text", b"#!/bin/sh\necho not a kernel\n"))
        .assert_refused(INVALID_KERNEL, "not an ELF file");
}

#[test]
fn an_elf32_file_is_refused() {
    let mut elf32 = vec![0u8; 52];
    elf32[..7].copy_from_slice(b"\x7fELF\x01\x01\x01");
    elf32[16] = 2; // ET_EXEC
    elf32[18] = 3; // EM_386
    boot(&write("elf32", &elf32)).assert_refused(INVALID_KERNEL, "ELF32");
}

#[test]
fn a_truncated_elf_is_refused() {
    let elf = hello();
    boot(&write("truncated-header", &elf[..40])).assert_refused(INVALID_KERNEL, "ELF header");
    // Cut inside the last loaded segment's bytes (debug information
    // follows the segments, so half the file may hold them all).
    let last = *phdrs(&elf, PT_LOAD)
        .iter()
        .max_by_key(|&&at| u64_at(&elf, at + 8) + u64_at(&elf, at + 32))
        .unwrap();
    let cut = (u64_at(&elf, last + 8) + u64_at(&elf, last + 32) / 2) as usize;
    boot(&write("truncated-data", &elf[..cut])).assert_refused(INVALID_KERNEL, "outside the file");
}

#[test]
fn an_elf_without_a_pvh_note_is_refused() {
    let mut elf = hello();
    let note = pvh_note(&elf);
    elf[note + 8..note + 12].copy_from_slice(&0x99u32.to_le_bytes());
    boot(&write("no-note", &elf)).assert_refused(INVALID_KERNEL, "no PVH entry note");
}

#[test]
fn a_segment_outside_ram_is_refused() {
    // The whole image cannot fit in 1 MiB of RAM: it loads above 1 MiB.
    let out = run(&["run", "--kernel", "hello", "--mem-mib", "1"]);
    out.assert_refused(INVALID_KERNEL, "does not fit in guest RAM");

    // A segment moved into the MMIO area.
    let mut elf = hello();
    let load = phdrs(&elf, PT_LOAD)[0];
    elf[load + 24..load + 32].copy_from_slice(&0xd000_0000u64.to_le_bytes());
    boot(&write("mmio-segment", &elf)).assert_refused(INVALID_KERNEL, "does not fit in guest RAM");

    // A segment far larger than RAM.
    let mut elf = hello();
    elf[load + 40..load + 48].copy_from_slice(&(1u64 << 40).to_le_bytes());
    boot(&write("huge-segment", &elf)).assert_refused(INVALID_KERNEL, "does not fit in guest RAM");
}

#[test]
fn an_entry_outside_every_segment_is_refused() {
    let mut elf = hello();
    let note = pvh_note(&elf);
    elf[note + 16..note + 20].copy_from_slice(&0x0300_0000u32.to_le_bytes());
    boot(&write("entry-outside", &elf))
        .assert_refused(INVALID_KERNEL, "outside every loaded segment");
}

#[test]
fn bad_flags_are_usage_errors() {
    run(&["run", "--kernel", "hello", "--mem-mib", "0"]).assert_refused(USAGE, "--mem-mib");
    run(&["run", "--kernel", "hello", "--mem-mib", "4096"]).assert_refused(USAGE, "--mem-mib");
    run(&["run", "--kernel", "hello", "--cmdline", "tab\there"]).assert_refused(USAGE, "printable");
    let out = run(&["run", "--kernel", "hello", "--no-such-flag"]);
    assert_eq!(out.code(), USAGE, "{out:#?}");
    let out = run(&["run"]);
    assert_eq!(out.code(), USAGE, "{out:#?}");
}
