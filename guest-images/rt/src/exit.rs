//! Ending the VM with an exit status.

use crate::{cpu, port};

/// The platform's exit port: writing byte v ends the VM with status v.
const EXIT_PORT: u16 = 0xf4;

/// Ends the VM with exit status `status`.
pub fn exit(status: u8) -> ! {
    port::outb(EXIT_PORT, status);
    // Without an exit device (another VMM), stop here.
    cpu::halt_forever()
}
