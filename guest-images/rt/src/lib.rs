//! Runtime for ftvm's guest kernels.
//!
//! A kernel is a `#![no_std] #![no_main]` binary that names its main
//! function with [`entry!`]. The runtime boots it through the PVH entry
//! (boot.rs), initialises COM1, the IDT and the PIC (all IRQs masked), reads
//! the start info and calls main, whose return value is the VM's exit status.
//! [`virtio_mmio`] finds the virtio devices announced on the command line;
//! the `virtio` crate drives them.
//!
//! Exit statuses of the runtime itself: 101 for a panic or a fatal error,
//! 102 for a CPU exception.
//!
//! Guest code must not use `core::fmt` (no `format_args!`, `write!`, `{}`)
//! nor core's string searching: their precompiled code contains SIMD
//! instructions the host cannot emulate. Use [`print`] instead.
#![no_std]

mod boot;
pub mod cmdline;
pub mod cmos;
pub mod cpu;
mod exit;
mod idt;
pub mod irq;
mod mem;
mod panic;
pub mod pic;
pub mod pit;
pub mod port;
pub mod print;
mod ring;
pub mod serial;
mod start_info;
pub mod virtio_mmio;

pub use exit::exit;
pub use panic::fatal;
pub use start_info::BootInfo;

/// Declares the kernel's main function, `fn(&BootInfo) -> u8`; the VM ends
/// with the status it returns.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        fn __rt_guest_main(boot: &$crate::BootInfo) -> u8 {
            let main: fn(&$crate::BootInfo) -> u8 = $main;
            main(boot)
        }
    };
}

unsafe extern "Rust" {
    /// Defined by [`entry!`] in the kernel.
    fn __rt_guest_main(boot: &BootInfo) -> u8;
}

/// Called by boot.rs in 64-bit mode with the stack set and .bss zeroed.
#[unsafe(no_mangle)]
extern "C" fn rt_start(start_info: u64) -> ! {
    serial::init();
    idt::load();
    pic::init();
    // SAFETY: the PVH ABI puts the start info's address in EBX, which boot.rs
    // passes here, and the kernel never writes loader memory.
    let Some(boot) = (unsafe { BootInfo::read(start_info) }) else {
        fatal("guest: no valid hvm_start_info")
    };
    // SAFETY: `entry!` defines it with this signature.
    let status = unsafe { __rt_guest_main(&boot) };
    exit(status)
}
