//! The 8259A PIC pair: master at 0x20/0x21, slave at 0xa0/0xa1 on its IR2.

use crate::port::{inb, outb};

const MASTER_COMMAND: u16 = 0x20;
const MASTER_DATA: u16 = 0x21;
const SLAVE_COMMAND: u16 = 0xa0;
const SLAVE_DATA: u16 = 0xa1;

/// Vector of IRQ 0; IRQ n arrives on `VECTOR_BASE + n`, above the exceptions.
pub const VECTOR_BASE: u8 = 0x20;
/// Number of IRQ lines of the pair.
pub const IRQ_COUNT: usize = 16;
/// The master input the slave is wired to.
const CASCADE_IRQ: u8 = 2;

/// ICW1: initialise, edge triggered, cascaded, ICW4 follows.
const ICW1_INIT_WITH_ICW4: u8 = 0x11;
/// ICW4: 8086 mode, normal EOI.
const ICW4_8086: u8 = 0x01;
/// OCW2: non-specific end of interrupt.
const OCW2_EOI: u8 = 0x20;
/// OCW3: make command-port reads return the in-service register.
const OCW3_READ_ISR: u8 = 0x0b;

/// Initialises both chips from any state: IRQs on vectors 0x20-0x2f, all
/// lines masked except the cascade.
pub fn init() {
    outb(MASTER_COMMAND, ICW1_INIT_WITH_ICW4);
    outb(MASTER_DATA, VECTOR_BASE);
    outb(MASTER_DATA, 1 << CASCADE_IRQ);
    outb(MASTER_DATA, ICW4_8086);

    outb(SLAVE_COMMAND, ICW1_INIT_WITH_ICW4);
    outb(SLAVE_DATA, VECTOR_BASE + 8);
    outb(SLAVE_DATA, CASCADE_IRQ);
    outb(SLAVE_DATA, ICW4_8086);

    outb(MASTER_DATA, !(1 << CASCADE_IRQ));
    outb(SLAVE_DATA, 0xff);
}

/// Lets `irq` (0-15) through.
pub fn unmask(irq: u8) {
    let (port, line) = if irq < 8 {
        (MASTER_DATA, irq)
    } else {
        (SLAVE_DATA, irq - 8)
    };
    outb(port, inb(port) & !(1 << line));
}

/// Acknowledges `irq` so that its chip (and the master, for a slave IRQ)
/// delivers further interrupts.
pub fn end_of_interrupt(irq: u8) {
    if irq >= 8 {
        outb(SLAVE_COMMAND, OCW2_EOI);
    }
    outb(MASTER_COMMAND, OCW2_EOI);
}

/// Whether an interrupt on `irq` is spurious: IRQ 7 or 15 that the chip
/// signalled and then withdrew, so it is not in service and must not be
/// acknowledged. The master did take a spurious IRQ 15 on its cascade
/// input, so it gets its end of interrupt here.
pub fn is_spurious(irq: u8) -> bool {
    match irq {
        7 => !in_service(MASTER_COMMAND, 7),
        15 if !in_service(SLAVE_COMMAND, 7) => {
            outb(MASTER_COMMAND, OCW2_EOI);
            true
        }
        _ => false,
    }
}

fn in_service(command_port: u16, line: u8) -> bool {
    outb(command_port, OCW3_READ_ISR);
    inb(command_port) & (1 << line) != 0
}
