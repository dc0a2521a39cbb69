//! Fatal errors: panics and [`fatal`] print a line and end the VM.
//!
//! Nothing here formats: `core::fmt` contains SIMD instructions that the
//! host cannot emulate. A panic message is printed only when it is a plain
//! string literal.

use core::panic::PanicInfo;

use crate::exit;
use crate::print::{print, print_dec, start_line};

/// Exit status of a guest that panicked or hit a fatal error.
const FAILURE_EXIT_STATUS: u8 = 101;

/// Prints `message` (ending the line) and ends the VM with status 101.
pub fn fatal(message: &str) -> ! {
    print(message);
    print("\n");
    exit(FAILURE_EXIT_STATUS)
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    start_line();
    print("guest panic");
    if let Some(location) = info.location() {
        print(" at ");
        print(location.file());
        print(":");
        print_dec(u64::from(location.line()));
    }
    if let Some(message) = info.message().as_str() {
        print(": ");
        print(message);
    }
    fatal("")
}

/// Unwinding is off (panic = "abort"), but the precompiled `core` still
/// names the personality routine.
#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}
