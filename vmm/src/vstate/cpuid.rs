//! ftvm's fixed CPU model: the CPUID table a guest sees.
//!
//! The table is our model intersected with what the host's KVM supports, so
//! the same model on two hosts gives the same table wherever both support it.
//! Hidden: everything that lets a guest observe time or the host directly
//! (RDRAND, RDSEED, RDTSCP, RDPID, TSC-deadline, invariant TSC), the APIC and
//! x2APIC (there is no LAPIC), the KVM paravirtual leaves, PMU and topology
//! leaves, XSAVE/AVX/FMA and CMPXCHG16B (which KVM's emulator here cannot
//! run), and machine-check and MTRR machinery.

use ft_logging::CpuidLeaf;
use kvm_bindings::{CpuId, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, kvm_cpuid_entry2};

const fn bits(list: &[u32]) -> u32 {
    let mut mask = 0;
    let mut i = 0;
    while i < list.len() {
        mask |= 1 << list[i];
        i += 1;
    }
    mask
}

/// Leaf 1 ECX: SSE3, SSSE3, SSE4.1, SSE4.2, MOVBE, POPCNT.
const LEAF1_ECX: u32 = bits(&[0, 9, 19, 20, 22, 23]);
/// Leaf 1 EDX: FPU, VME, DE, PSE, TSC, MSR, PAE, CX8, SEP, PGE, CMOV, PAT,
/// PSE36, CLFSH, MMX, FXSR, SSE, SSE2.
const LEAF1_EDX: u32 = bits(&[
    0, 1, 2, 3, 4, 5, 6, 8, 11, 13, 15, 16, 17, 19, 23, 24, 25, 26,
]);
/// Leaf 7 EBX: FSGSBASE, BMI1, SMEP, BMI2, ERMS, ADX, SMAP, CLFLUSHOPT, CLWB.
const LEAF7_EBX: u32 = bits(&[0, 3, 7, 8, 9, 19, 20, 23, 24]);
/// Leaf 0x8000_0001 ECX: LAHF/SAHF, LZCNT, PREFETCHW.
const EXT1_ECX: u32 = bits(&[0, 5, 8]);
/// Leaf 0x8000_0001 EDX: SYSCALL, NX, 1 GiB pages, long mode.
const EXT1_EDX: u32 = bits(&[11, 20, 26, 29]);

const MAX_BASIC_LEAF: u32 = 7;
const MAX_EXTENDED_LEAF: u32 = 0x8000_0008;
const BRAND: &[u8; 48] =
    b"ftvm virtual CPU\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

/// A recorded CPUID table this host cannot present.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CpuidError {
    /// This host lacks bits of the recorded CPU model.
    #[error(
        "this host cannot present CPUID leaf {function:#x}.{index} {register} bits {bits:#010x} of the recorded CPU"
    )]
    Unsupported {
        /// The CPUID function (leaf).
        function: u32,
        /// Its index.
        index: u32,
        /// The register (eax, ebx, ecx, edx).
        register: &'static str,
        /// The bits missing.
        bits: u32,
    },
    /// The host has fewer physical address bits than the recorded CPU.
    #[error("the recorded CPU has {recorded} physical address bits; this host has {host}")]
    AddressBits {
        /// The recorded CPU's.
        recorded: u32,
        /// This host's.
        host: u32,
    },
    /// The table has more entries than KVM accepts.
    #[error("the recorded CPUID table has {0} entries, more than KVM accepts")]
    TooLarge(usize),
}

/// (leaf, register name, register index) of every feature register.
const FEATURE_REGISTERS: &[(u32, &str, usize)] = &[
    (1, "ecx", 2),
    (1, "edx", 3),
    (7, "ebx", 1),
    (7, "ecx", 2),
    (7, "edx", 3),
    (0x8000_0001, "ecx", 2),
    (0x8000_0001, "edx", 3),
];

fn registers(leaf: &CpuidLeaf) -> [u32; 4] {
    [leaf.eax, leaf.ebx, leaf.ecx, leaf.edx]
}

/// Checks that a host whose KVM supports `host` can present `recorded`:
/// every feature bit it offers, and its physical address size. Other
/// values (vendor, signature, brand) are free to set.
pub fn check_presentable(recorded: &[CpuidLeaf], host: &CpuId) -> Result<(), CpuidError> {
    let host = to_leaves(host);
    let find = |table: &[CpuidLeaf], function: u32| {
        table
            .iter()
            .find(|l| l.function == function && l.index == 0)
            .copied()
            .unwrap_or_default()
    };
    for leaf in recorded.iter().filter(|l| l.index == 0) {
        for &(function, register, i) in FEATURE_REGISTERS
            .iter()
            .filter(|(f, ..)| *f == leaf.function)
        {
            let missing = registers(leaf)[i] & !registers(&find(&host, function))[i];
            if missing != 0 {
                return Err(CpuidError::Unsupported {
                    function,
                    index: 0,
                    register,
                    bits: missing,
                });
            }
        }
    }
    let bits = |table: &[CpuidLeaf]| find(table, 0x8000_0008).eax & 0xff;
    if bits(recorded) > bits(&host) {
        return Err(CpuidError::AddressBits {
            recorded: bits(recorded),
            host: bits(&host),
        });
    }
    Ok(())
}

/// A KVM CPUID table as log records.
pub fn to_leaves(table: &CpuId) -> Vec<CpuidLeaf> {
    table
        .as_slice()
        .iter()
        .map(|e| CpuidLeaf {
            function: e.function,
            index: e.index,
            flags: e.flags,
            eax: e.eax,
            ebx: e.ebx,
            ecx: e.ecx,
            edx: e.edx,
        })
        .collect()
}

/// Log records as a KVM CPUID table.
pub fn from_leaves(leaves: &[CpuidLeaf]) -> Result<CpuId, CpuidError> {
    let entries: Vec<_> = leaves
        .iter()
        .map(|l| kvm_cpuid_entry2 {
            function: l.function,
            index: l.index,
            flags: l.flags,
            eax: l.eax,
            ebx: l.ebx,
            ecx: l.ecx,
            edx: l.edx,
            ..Default::default()
        })
        .collect();
    CpuId::from_entries(&entries).map_err(|_| CpuidError::TooLarge(entries.len()))
}

/// The CPUID table of our model on a host whose KVM supports `host`.
pub fn cpu_model(host: &CpuId) -> Vec<CpuidLeaf> {
    let host = host.as_slice();
    let find = |function: u32| {
        host.iter()
            .find(|e| e.function == function && e.index == 0)
            .copied()
            .unwrap_or_default()
    };
    let entry = |function, index, flags, regs: [u32; 4]| kvm_cpuid_entry2 {
        function,
        index,
        flags,
        eax: regs[0],
        ebx: regs[1],
        ecx: regs[2],
        edx: regs[3],
        ..Default::default()
    };

    let (vendor, leaf1, leaf7) = (find(0), find(1), find(7));
    let (ext0, ext1, ext8) = (find(0x8000_0000), find(0x8000_0001), find(0x8000_0008));
    let mut table = vec![
        entry(
            0,
            0,
            0,
            [
                MAX_BASIC_LEAF.min(vendor.eax),
                vendor.ebx,
                vendor.ecx,
                vendor.edx,
            ],
        ),
        // One logical processor, APIC ID 0, 64-byte CLFLUSH lines.
        entry(
            1,
            0,
            0,
            [
                leaf1.eax,
                0x0800,
                leaf1.ecx & LEAF1_ECX,
                leaf1.edx & LEAF1_EDX,
            ],
        ),
    ];
    // Cache, monitor, thermal and power leaves: described as absent.
    for function in 2..=6 {
        let flags = if function == 4 {
            KVM_CPUID_FLAG_SIGNIFCANT_INDEX
        } else {
            0
        };
        table.push(entry(function, 0, flags, [0; 4]));
    }
    table.push(entry(
        7,
        0,
        KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
        [0, leaf7.ebx & LEAF7_EBX, 0, 0],
    ));
    if ext0.eax >= 0x8000_0001 {
        table.push(entry(
            0x8000_0000,
            0,
            0,
            [
                MAX_EXTENDED_LEAF.min(ext0.eax),
                ext0.ebx,
                ext0.ecx,
                ext0.edx,
            ],
        ));
        table.push(entry(
            0x8000_0001,
            0,
            0,
            [ext1.eax, 0, ext1.ecx & EXT1_ECX, ext1.edx & EXT1_EDX],
        ));
        for (i, chunk) in BRAND.chunks(16).enumerate() {
            let word = |j: usize| {
                u32::from_le_bytes(chunk[4 * j..4 * j + 4].try_into().unwrap_or_default())
            };
            table.push(entry(
                0x8000_0002 + i as u32,
                0,
                0,
                [word(0), word(1), word(2), word(3)],
            ));
        }
        for function in 0x8000_0005..=0x8000_0007 {
            table.push(entry(function, 0, 0, [0; 4]));
        }
        // Physical and linear address sizes must be the host's.
        table.push(entry(0x8000_0008, 0, 0, [ext8.eax & 0xffff, 0, 0, 0]));
    }
    // Leaves beyond what the host reports are dropped by the max-leaf values.
    table.retain(|e| {
        (e.function <= MAX_BASIC_LEAF.min(vendor.eax))
            || (e.function >= 0x8000_0000 && e.function <= MAX_EXTENDED_LEAF.min(ext0.eax))
    });
    to_leaves(
        &CpuId::from_entries(&table)
            .expect("the model has fewer entries than KVM_MAX_CPUID_ENTRIES"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> CpuId {
        let all = |function| kvm_cpuid_entry2 {
            function,
            eax: if function == 0 {
                0xd
            } else if function == 0x8000_0000 {
                0x8000_0008
            } else {
                0x3027
            },
            ebx: u32::MAX,
            ecx: u32::MAX,
            edx: u32::MAX,
            ..Default::default()
        };
        let leaves: Vec<_> = (0..=0xd)
            .chain(0x4000_0000..=0x4000_0001)
            .chain(0x8000_0000..=0x8000_0008)
            .map(all)
            .collect();
        CpuId::from_entries(&leaves).unwrap()
    }

    fn leaf(table: &[CpuidLeaf], function: u32) -> CpuidLeaf {
        *table.iter().find(|e| e.function == function).unwrap()
    }

    #[test]
    fn time_and_host_revealing_features_are_hidden() {
        let table = cpu_model(&host());
        let leaf1 = leaf(&table, 1);
        for (bit, name) in [
            (30, "RDRAND"),
            (24, "TSC-deadline"),
            (21, "x2APIC"),
            (26, "XSAVE"),
            (28, "AVX"),
            (13, "CX16"),
            (31, "hypervisor"),
        ] {
            assert_eq!(leaf1.ecx & (1 << bit), 0, "{name} must be hidden");
        }
        assert_eq!(leaf1.edx & (1 << 9), 0, "APIC must be hidden");
        assert_eq!(leaf(&table, 7).ebx & (1 << 18), 0, "RDSEED must be hidden");
        assert_eq!(leaf(&table, 7).ecx, 0, "RDPID must be hidden");
        assert_eq!(
            leaf(&table, 0x8000_0001).edx & (1 << 27),
            0,
            "RDTSCP must be hidden"
        );
        assert_eq!(
            leaf(&table, 0x8000_0007).edx,
            0,
            "invariant TSC must be hidden"
        );
        assert!(
            table
                .as_slice()
                .iter()
                .all(|e| !(0x4000_0000..0x5000_0000).contains(&e.function)),
            "no KVM leaves"
        );
        assert_eq!(leaf(&table, 0).eax, MAX_BASIC_LEAF);
    }

    #[test]
    fn features_the_host_lacks_are_not_offered() {
        let mut host = host();
        for e in host.as_mut_slice() {
            if e.function == 1 {
                e.ecx = 0;
            }
        }
        assert_eq!(leaf(&cpu_model(&host), 1).ecx, 0);
    }

    #[test]
    fn a_recorded_table_is_presentable_only_where_the_host_has_its_features() {
        let recorded = cpu_model(&host());
        assert_eq!(check_presentable(&recorded, &host()), Ok(()));
        let mut weaker = host();
        for e in weaker.as_mut_slice() {
            if e.function == 7 {
                e.ebx &= !(1 << 3);
            }
        }
        assert_eq!(
            check_presentable(&recorded, &weaker),
            Err(CpuidError::Unsupported {
                function: 7,
                index: 0,
                register: "ebx",
                bits: 1 << 3
            })
        );
        let mut fewer_bits = host();
        for e in fewer_bits.as_mut_slice() {
            if e.function == 0x8000_0008 {
                e.eax = 0x3024;
            }
        }
        assert!(matches!(
            check_presentable(&recorded, &fewer_bits),
            Err(CpuidError::AddressBits { .. })
        ));
        assert_eq!(from_leaves(&recorded).map(|t| to_leaves(&t)), Ok(recorded));
    }
}
