//! Prints a greeting and the command line, then exits with status `exit=N`
//! (default 0).
#![no_std]
#![no_main]

use rt::BootInfo;
use rt::print::{print, print_bytes};

rt::entry!(main);

fn main(boot: &BootInfo) -> u8 {
    print("Hello from the ftvm guest!\n");
    print("cmdline: ");
    print_bytes(boot.cmdline);
    print("\n");
    let status = boot.number("exit", 0);
    u8::try_from(status).unwrap_or_else(|_| rt::fatal("hello: exit must be at most 255"))
}
