//! Interrupt flag control and idling.
//!
//! The asm here is not `nomem`: it must be a compiler barrier, since
//! interrupt handlers change memory at these points.

use core::arch::asm;

/// Lets the CPU take interrupts (`sti`).
#[inline]
pub fn enable_interrupts() {
    // SAFETY: handlers are installed by rt_start before any code can unmask
    // an interrupt source, and they preserve every register they touch.
    unsafe { asm!("sti", options(nostack)) }
}

/// Holds off interrupts (`cli`).
#[inline]
pub fn disable_interrupts() {
    // SAFETY: clearing IF only delays interrupt delivery.
    unsafe { asm!("cli", options(nostack)) }
}

/// Sleeps until `ready` returns true, then returns with interrupts enabled.
///
/// `ready` is evaluated with interrupts off, so an interrupt cannot slip in
/// between the check and the halt: `sti` takes effect only after the next
/// instruction, so a pending interrupt wakes the `hlt` instead of being lost.
/// The guest halts rather than spinning, since a guest that makes no exits
/// receives no events.
pub fn wait_until(mut ready: impl FnMut() -> bool) {
    loop {
        disable_interrupts();
        if ready() {
            enable_interrupts();
            return;
        }
        // SAFETY: sleeps until the next interrupt, which returns here.
        unsafe { asm!("sti", "hlt", options(nostack)) }
    }
}

/// The time-stamp counter read through its MSR (0x10): on ftvm, virtual
/// nanoseconds since boot. Unlike `rdtsc`, which the host cannot trap and
/// guests must not use, `rdmsr` of it is a VM exit whose value the VMM
/// logs, so a replay or a backup reads the same. Each read costs an exit.
pub fn virtual_ns() -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: reading MSR 0x10 (IA32_TIME_STAMP_COUNTER) has no side
    // effect; the CPU model offers it (CPUID.1:EDX.TSC).
    unsafe {
        asm!("rdmsr", in("ecx") 0x10u32, out("eax") low, out("edx") high,
            options(nostack, preserves_flags))
    }
    u64::from(high) << 32 | u64::from(low)
}

/// Stops the CPU for good: `hlt` with interrupts off ends the VM on ftvm.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: halting with interrupts off only stops this CPU.
        unsafe { asm!("cli", "hlt", options(nostack)) }
    }
}
