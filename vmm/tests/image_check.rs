//! The image check of docs/DESIGN.md §5: disassemble every built-in guest image
//! and fail on instructions that make a guest nondeterministic (RDTSC,
//! RDTSCP, RDRAND, RDSEED, RDPID) anywhere, and on SIMD instructions other
//! than plain moves, which KVM's emulator on our hosts cannot run, in any
//! function except the precompiled `core` formatting and string-search code
//! that guests link but never call.

use iced_x86::{Decoder, DecoderOptions, Formatter, Instruction, IntelFormatter, Mnemonic, OpKind};
use object::{Object, ObjectSection, ObjectSymbol, SectionKind};

/// The 32-bit PVH entry code, which runs before the switch to long mode.
const ENTRY_32: &str = "pvh_start32";

const NONDETERMINISTIC: &[Mnemonic] = &[
    Mnemonic::Rdtsc,
    Mnemonic::Rdtscp,
    Mnemonic::Rdrand,
    Mnemonic::Rdseed,
    Mnemonic::Rdpid,
];

/// SIMD moves the emulator runs.
const PLAIN_MOVES: &[Mnemonic] = &[
    Mnemonic::Movups,
    Mnemonic::Movaps,
    Mnemonic::Movupd,
    Mnemonic::Movapd,
    Mnemonic::Movdqu,
    Mnemonic::Movdqa,
];

/// Instructions without SIMD register operands that the emulator cannot run
/// either (docs/DESIGN.md §1).
const UNEMULATED: &[Mnemonic] = &[
    Mnemonic::Cmpxchg16b,
    Mnemonic::Xgetbv,
    Mnemonic::Fxsave,
    Mnemonic::Fxsave64,
    Mnemonic::Fxrstor,
    Mnemonic::Fxrstor64,
    Mnemonic::Xsave,
    Mnemonic::Xsave64,
    Mnemonic::Xrstor,
    Mnemonic::Xrstor64,
    Mnemonic::Ldmxcsr,
    Mnemonic::Stmxcsr,
];

/// Functions from the precompiled `core`, which docs/DESIGN.md §1 says contain
/// SIMD; guest code never calls them.
fn precompiled_core(function: &str) -> bool {
    // v0 names of methods: `<core::fmt::Formatter>::pad`, and trait
    // impls of core's formatting for primitives: `<u64 as
    // core::fmt::Display>::fmt`. A type with a path is compiled from source.
    let path = match function.strip_prefix('<') {
        Some(inner) => match inner.split_once(" as ") {
            Some((ty, _)) if ty.contains("::") => return false,
            Some((_, trait_path)) => trait_path,
            None => inner,
        },
        None => function,
    };
    path.starts_with("core::fmt::") || path.starts_with("core::str::")
}

fn uses_simd(instruction: &Instruction) -> bool {
    let simd_register = (0..instruction.op_count()).any(|i| {
        instruction.op_kind(i) == OpKind::Register && {
            let register = instruction.op_register(i);
            register.is_xmm() || register.is_ymm() || register.is_zmm() || register.is_mm()
        }
    });
    (simd_register && !PLAIN_MOVES.contains(&instruction.mnemonic()))
        || UNEMULATED.contains(&instruction.mnemonic())
}

/// Every problem found in one image, as "function: instruction" lines.
fn check(elf: &[u8]) -> Vec<String> {
    let file = object::File::parse(elf).expect("a built-in image parses as ELF");
    let mut problems = Vec::new();
    let mut formatter = IntelFormatter::new();
    for section in file.sections().filter(|s| s.kind() == SectionKind::Text) {
        let (start, data) = (section.address(), section.data().expect("section data"));
        let end = start + data.len() as u64;
        // Decode from each symbol to the next, so decoding resynchronises at
        // every function and each range is decoded in its own mode.
        let mut symbols: Vec<(u64, String)> = file
            .symbols()
            .filter(|s| (start..end).contains(&s.address()))
            .map(|s| {
                (
                    s.address(),
                    // `{:#}` leaves out the crate hashes of v0 names.
                    format!("{:#}", rustc_demangle::demangle(s.name().unwrap_or("?"))),
                )
            })
            .collect();
        symbols.sort();
        symbols.dedup_by_key(|(address, _)| *address);
        if symbols.first().is_none_or(|(address, _)| *address != start) {
            symbols.insert(0, (start, section.name().unwrap_or("?").to_owned()));
        }
        for (i, (address, name)) in symbols.iter().enumerate() {
            let stop = symbols.get(i + 1).map_or(end, |(next, _)| *next);
            let bytes = &data[(address - start) as usize..(stop - start) as usize];
            let bitness = if name == ENTRY_32 { 32 } else { 64 };
            let mut decoder = Decoder::with_ip(bitness, bytes, *address, DecoderOptions::NONE);
            for instruction in &mut decoder {
                let mnemonic = instruction.mnemonic();
                let forbidden = NONDETERMINISTIC.contains(&mnemonic)
                    || (uses_simd(&instruction) && !precompiled_core(name))
                    || instruction.is_invalid();
                if forbidden {
                    let mut text = String::new();
                    formatter.format(&instruction, &mut text);
                    problems.push(format!("{name} at {:#x}: {text}", instruction.ip()));
                }
            }
        }
    }
    problems
}

#[test]
fn every_guest_image_is_free_of_nondeterministic_and_simd_instructions() {
    assert!(!vmm::images::BUILTIN.is_empty());
    for image in vmm::images::BUILTIN {
        let problems = check(image.elf);
        assert!(
            problems.is_empty(),
            "image {}:\n{}",
            image.name,
            problems.join("\n")
        );
    }
}

#[test]
fn the_check_finds_what_it_looks_for() {
    // A copy of hello whose first instructions are replaced: the check
    // must name each one, so a passing check means something.
    let file = object::File::parse(vmm::images::builtin("hello").unwrap().elf).unwrap();
    let main = file
        .symbols()
        .find(|s| s.name() == Ok("rt_start"))
        .expect("hello has the runtime's rt_start");
    let text = file.section_by_name(".text").unwrap();
    let offset = text.file_range().unwrap().0 + main.address() - text.address();
    for (bytes, expect) in [
        (&[0x0f, 0x31][..], "rdtsc"),
        (&[0x0f, 0xc7, 0xf0][..], "rdrand"),
        (&[0x0f, 0x57, 0xc0][..], "xorps"),
        (&[0x66, 0x0f, 0xef, 0xc0][..], "pxor"),
    ] {
        let mut elf = vmm::images::builtin("hello").unwrap().elf.to_vec();
        elf[offset as usize..offset as usize + bytes.len()].copy_from_slice(bytes);
        // Keep the rest decodable: fill the next bytes with NOPs.
        elf[offset as usize + bytes.len()..offset as usize + 16].fill(0x90);
        let mut aligned = vec![0u64; elf.len().div_ceil(8)];
        // SAFETY: `aligned` has at least `elf.len()` bytes and u8 has no alignment.
        let view =
            unsafe { std::slice::from_raw_parts_mut(aligned.as_mut_ptr().cast::<u8>(), elf.len()) };
        view.copy_from_slice(&elf);
        let problems = check(view);
        assert!(
            problems.iter().any(|p| p.contains(expect)),
            "{expect} not found: {problems:?}"
        );
    }
}
