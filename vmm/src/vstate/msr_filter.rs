//! MSRs whose values depend on time or on the host: the filter sends every
//! guest access to them to user space as a counted exit (docs/DESIGN.md §3).

use kvm_ioctls::{MsrFilterDefaultAction, MsrFilterRange, MsrFilterRangeFlags, VmFd};

/// (first MSR, count) of each filtered range.
const FILTERED: &[(u32, u32)] = &[
    (0x10, 1),        // IA32_TIME_STAMP_COUNTER: a logged value
    (0x11, 2),        // KVM's original kvmclock MSRs
    (0x3b, 1),        // IA32_TSC_ADJUST
    (0xce, 1),        // MSR_PLATFORM_INFO
    (0xe7, 2),        // IA32_MPERF, IA32_APERF
    (0x10a, 1),       // IA32_ARCH_CAPABILITIES
    (0x6e0, 1),       // IA32_TSC_DEADLINE
    (0x4b56_4d00, 8), // KVM paravirtual MSRs
    (0xc000_0103, 1), // IA32_TSC_AUX
];

/// A bitmap of zeros: no MSR in a range is allowed in the kernel.
const DENY_ALL: [u8; 1] = [0];

pub fn install(vm: &VmFd) -> Result<(), kvm_ioctls::Error> {
    let ranges: Vec<_> = FILTERED
        .iter()
        .map(|&(base, msr_count)| MsrFilterRange {
            flags: MsrFilterRangeFlags::READ | MsrFilterRangeFlags::WRITE,
            base,
            msr_count,
            bitmap: &DENY_ALL,
        })
        .collect();
    vm.set_msr_filter(MsrFilterDefaultAction::ALLOW, &ranges)
}
