//! Intel 8259A programmable interrupt controllers, wired as in a PC: a
//! master at 0x20/0x21 whose IR2 is the slave's INT output, a slave at
//! 0xa0/0xa1, and the EISA edge/level control registers (ELCR) at
//! 0x4d0/0x4d1.
//!
//! Edge-triggered inputs latch IRR on a rising edge and keep it latched when
//! the line drops again (as QEMU's i8259 does); level-triggered inputs
//! (ICW1.LTIM or the line's ELCR bit) make IRR follow the line.

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::state::{InvalidState, check};

const MASTER_CMD: u16 = 0x20;
const MASTER_DATA: u16 = 0x21;
const SLAVE_CMD: u16 = 0xa0;
const SLAVE_DATA: u16 = 0xa1;
const ELCR_MASTER: u16 = 0x4d0;
const ELCR_SLAVE: u16 = 0x4d1;

/// The master input that the slave's INT output drives.
const CASCADE_IRQ: u8 = 2;

/// ELCR bits that may be set: IRQ 0, 1, 2 (master) and 8, 13 (slave) are
/// always edge-triggered on a PC (QEMU's masks).
const ELCR_MASK_MASTER: u8 = 0xf8;
const ELCR_MASK_SLAVE: u8 = 0xde;

// Guest misuses logged once per chip (bits of `Pic::warned`).
const WARN_PORT: u8 = 1 << 0;
const WARN_ICW3: u8 = 1 << 1;
const WARN_ICW4: u8 = 1 << 2;

/// Where a chip is in its initialization sequence: which ICW the next
/// write to the data port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Init {
    Ready,
    Icw2,
    Icw3,
    Icw4,
}

/// One 8259A.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Pic {
    master: bool,
    /// Current level of each IR input.
    lines: u8,
    irr: u8,
    isr: u8,
    imr: u8,
    elcr: u8,
    elcr_mask: u8,
    /// The level with the highest priority; rotation moves it.
    priority_base: u8,
    vector_base: u8,
    init: Init,
    icw4_needed: bool,
    single: bool,
    /// ICW1.LTIM: every input is level-triggered.
    level_all: bool,
    auto_eoi: bool,
    rotate_on_auto_eoi: bool,
    special_fully_nested: bool,
    special_mask: bool,
    read_isr: bool,
    poll: bool,
    #[serde(skip)]
    warned: u8,
}

impl Pic {
    fn new(master: bool) -> Self {
        Pic {
            master,
            lines: 0,
            irr: 0,
            isr: 0,
            // The 8259A's power-on state is undefined; everything masked
            // keeps a guest that never programs the PIC from receiving
            // vectors 0..7, its exception vectors.
            imr: 0xff,
            elcr: 0,
            elcr_mask: if master {
                ELCR_MASK_MASTER
            } else {
                ELCR_MASK_SLAVE
            },
            priority_base: 0,
            vector_base: 0,
            init: Init::Ready,
            icw4_needed: false,
            single: false,
            level_all: false,
            auto_eoi: false,
            rotate_on_auto_eoi: false,
            special_fully_nested: false,
            special_mask: false,
            read_isr: false,
            poll: false,
            warned: 0,
        }
    }

    /// Refuses a chip state that no guest could have programmed.
    fn check(&self, master: bool) -> Result<(), InvalidState> {
        let expected = Pic::new(master);
        let level = self.level_mask();
        check(
            self.master == master && self.elcr_mask == expected.elcr_mask,
            "8259A",
            "a chip in the other chip's place",
        )?;
        check(
            self.elcr & !self.elcr_mask == 0,
            "8259A",
            "ELCR bits for edge-only lines",
        )?;
        check(
            self.vector_base & 7 == 0 && self.priority_base < 8,
            "8259A",
            "a vector base or priority out of range",
        )?;
        check(
            self.irr & level == self.lines & level,
            "8259A",
            "level-triggered requests that are not their lines",
        )
    }

    fn name(&self) -> &'static str {
        if self.master { "master" } else { "slave" }
    }

    fn warn_once(&mut self, bit: u8) -> bool {
        let first = self.warned & bit == 0;
        self.warned |= bit;
        first
    }

    fn level_mask(&self) -> u8 {
        if self.level_all { 0xff } else { self.elcr }
    }

    /// Level-triggered requests are the lines themselves, not latches.
    fn sync_level_irr(&mut self) {
        let level = self.level_mask();
        self.irr = (self.irr & !level) | (self.lines & level);
    }

    fn set_line(&mut self, irq: u8, level: bool) {
        let bit = 1 << irq;
        let rising = level && self.lines & bit == 0;
        if level {
            self.lines |= bit;
        } else {
            self.lines &= !bit;
        }
        if rising {
            self.irr |= bit;
        }
        self.sync_level_irr();
    }

    /// Priority rank of `irq`: 0 is the highest.
    fn rank(&self, irq: u8) -> u8 {
        irq.wrapping_sub(self.priority_base) & 7
    }

    /// The highest-priority level set in `mask`.
    fn highest(&self, mask: u8) -> Option<u8> {
        (0..8)
            .map(|rank| (rank + self.priority_base) & 7)
            .find(|irq| mask & (1 << irq) != 0)
    }

    /// The level this chip would interrupt the CPU for, if any.
    fn request(&self) -> Option<u8> {
        let requests = self.irr & !self.imr;
        if self.special_mask {
            // Datasheet: in special mask mode every unmasked level may
            // interrupt, lower ones too, except one already in service.
            return self.highest(requests & !self.isr);
        }
        let irq = self.highest(requests)?;
        let Some(in_service) = self.highest(self.isr) else {
            return Some(irq);
        };
        // In special fully nested mode the master lets a slave interrupt
        // while another of that slave's interrupts is in service.
        let cascade_again =
            self.master && self.special_fully_nested && irq == CASCADE_IRQ && in_service == irq;
        (self.rank(irq) < self.rank(in_service) || cascade_again).then_some(irq)
    }

    /// The INTA (or poll) cycle for level `irq`.
    fn intack(&mut self, irq: u8) {
        let bit = 1 << irq;
        if self.auto_eoi {
            if self.rotate_on_auto_eoi {
                self.priority_base = (irq + 1) & 7;
            }
        } else {
            self.isr |= bit;
        }
        self.irr &= !bit;
        // A level-triggered request stays while its line is high.
        self.sync_level_irr();
    }

    fn read(&mut self, data_port: bool) -> u8 {
        if self.poll {
            self.poll = false;
            return match self.request() {
                Some(irq) => {
                    self.intack(irq);
                    0x80 | irq
                }
                None => 0,
            };
        }
        match (data_port, self.read_isr) {
            (true, _) => self.imr,
            (false, true) => self.isr,
            (false, false) => self.irr,
        }
    }

    fn write_command(&mut self, value: u8) {
        if value & 0x10 != 0 {
            self.icw1(value);
        } else if value & 0x08 != 0 {
            self.ocw3(value);
        } else {
            self.ocw2(value);
        }
    }

    fn icw1(&mut self, value: u8) {
        // ICW1 resets the edge sense (IRR of edge inputs), the IMR, the
        // in-service state, priorities and special mask, and the read
        // select; ADI and the 8080 call address do not apply in x86 mode.
        self.irr = 0;
        self.isr = 0;
        self.imr = 0;
        self.priority_base = 0;
        self.special_mask = false;
        self.read_isr = false;
        self.poll = false;
        // Without IC4 every ICW4 function is zero.
        self.auto_eoi = false;
        self.special_fully_nested = false;
        self.rotate_on_auto_eoi = false;
        self.icw4_needed = value & 0x01 != 0;
        self.single = value & 0x02 != 0;
        self.level_all = value & 0x08 != 0;
        self.sync_level_irr();
        self.init = Init::Icw2;
    }

    fn ocw2(&mut self, value: u8) {
        let level = value & 7;
        match value >> 5 {
            // Clear / set rotate in automatic EOI mode.
            0b000 => self.rotate_on_auto_eoi = false,
            0b100 => self.rotate_on_auto_eoi = true,
            // Non-specific EOI, optionally rotating.
            cmd @ (0b001 | 0b101) => {
                // In special mask mode masked in-service levels are not
                // cleared by a non-specific EOI.
                let candidates = if self.special_mask {
                    self.isr & !self.imr
                } else {
                    self.isr
                };
                if let Some(irq) = self.highest(candidates) {
                    self.isr &= !(1 << irq);
                    if cmd == 0b101 {
                        self.priority_base = (irq + 1) & 7;
                    }
                }
            }
            // Specific EOI.
            0b011 => self.isr &= !(1 << level),
            // Rotate on specific EOI.
            0b111 => {
                self.isr &= !(1 << level);
                self.priority_base = (level + 1) & 7;
            }
            // Set priority: `level` becomes the lowest.
            0b110 => self.priority_base = (level + 1) & 7,
            // 0b010: no operation.
            _ => {}
        }
    }

    fn ocw3(&mut self, value: u8) {
        if value & 0x40 != 0 {
            self.special_mask = value & 0x20 != 0;
        }
        if value & 0x04 != 0 {
            self.poll = true;
        }
        if value & 0x02 != 0 {
            self.read_isr = value & 0x01 != 0;
        }
    }

    fn write_data(&mut self, value: u8) {
        match self.init {
            Init::Ready => self.imr = value,
            Init::Icw2 => {
                self.vector_base = value & 0xf8;
                self.init = match (self.single, self.icw4_needed) {
                    (false, _) => Init::Icw3,
                    (true, true) => Init::Icw4,
                    (true, false) => Init::Ready,
                };
            }
            Init::Icw3 => {
                // The PC wires the slave to master IR2; other values cannot
                // change that wiring.
                let expected = if self.master {
                    1 << CASCADE_IRQ
                } else {
                    CASCADE_IRQ
                };
                if value != expected && self.warn_once(WARN_ICW3) {
                    warn!(
                        pic = self.name(),
                        value, expected, "8259A: ICW3 does not match the PC cascade on IR2"
                    );
                }
                self.init = if self.icw4_needed {
                    Init::Icw4
                } else {
                    Init::Ready
                };
            }
            Init::Icw4 => {
                if value & 0x01 == 0 && self.warn_once(WARN_ICW4) {
                    warn!(
                        pic = self.name(),
                        value, "8259A: ICW4 selects 8080 mode; staying in x86 mode"
                    );
                }
                self.auto_eoi = value & 0x02 != 0;
                self.special_fully_nested = value & 0x10 != 0;
                self.init = Init::Ready;
            }
        }
    }

    fn write_elcr(&mut self, value: u8) {
        self.elcr = value & self.elcr_mask;
        self.sync_level_irr();
    }
}

/// The port writes with which Linux's init_8259A sets the pair up: edge
/// mode, the master's IRQs at vectors 0x20-0x27, the slave's at 0x28-0x2f,
/// cascaded on IRQ 2, every line unmasked. Tests program the pair with it.
pub const LINUX_INIT: [(u16, u8); 8] = [
    (0x20, 0x11),
    (0x21, 0x20),
    (0x21, 0x04),
    (0x21, 0x01),
    (0xa0, 0x11),
    (0xa1, 0x28),
    (0xa1, 0x02),
    (0xa1, 0x01),
];

/// The PC's master/slave 8259A pair with the ELCR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DualPic {
    master: Pic,
    slave: Pic,
}

/// The state of the 8259A pair: every register, line level and mode of
/// both chips, the ELCR and where each chip is in its initialization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PicState {
    master: Pic,
    slave: Pic,
}

impl Default for DualPic {
    fn default() -> Self {
        Self::new()
    }
}

impl DualPic {
    /// Power-on state: both chips uninitialized with every line masked.
    pub fn new() -> Self {
        DualPic {
            master: Pic::new(true),
            slave: Pic::new(false),
        }
    }

    /// Its state, for a snapshot.
    pub fn state(&self) -> PicState {
        PicState {
            master: self.master.clone(),
            slave: self.slave.clone(),
        }
    }

    /// The pair in `state`, refused when no guest could have reached it.
    pub fn from_state(state: &PicState) -> Result<Self, InvalidState> {
        state.master.check(true)?;
        state.slave.check(false)?;
        let pic = DualPic {
            master: state.master.clone(),
            slave: state.slave.clone(),
        };
        let cascade = pic.master.lines & (1 << CASCADE_IRQ) != 0;
        check(
            cascade == pic.slave.request().is_some(),
            "8259A",
            "a cascade line that is not the slave's output",
        )?;
        Ok(pic)
    }

    /// Drives master IR2 from the slave's INT output; call after anything
    /// that may change the slave's state.
    fn sync_cascade(&mut self) {
        let out = self.slave.request().is_some();
        self.master.set_line(CASCADE_IRQ, out);
    }

    /// Guest port read: 0x20/0xa0 IRR, ISR or a poll result; 0x21/0xa1
    /// IMR; 0x4d0/0x4d1 ELCR.
    pub fn read(&mut self, port: u16) -> u8 {
        let value = match port {
            MASTER_CMD | MASTER_DATA => self.master.read(port == MASTER_DATA),
            SLAVE_CMD | SLAVE_DATA => self.slave.read(port == SLAVE_DATA),
            ELCR_MASTER => self.master.elcr,
            ELCR_SLAVE => self.slave.elcr,
            _ => {
                if self.master.warn_once(WARN_PORT) {
                    warn!(port, "8259A: read of an unknown port");
                }
                0xff
            }
        };
        // A poll read acknowledges like INTA.
        self.sync_cascade();
        value
    }

    /// Guest port write: ICW1/OCW2/OCW3 to 0x20/0xa0, ICW2–4 or IMR to
    /// 0x21/0xa1, ELCR to 0x4d0/0x4d1.
    pub fn write(&mut self, port: u16, value: u8) {
        match port {
            MASTER_CMD => self.master.write_command(value),
            MASTER_DATA => self.master.write_data(value),
            SLAVE_CMD => self.slave.write_command(value),
            SLAVE_DATA => self.slave.write_data(value),
            ELCR_MASTER => self.master.write_elcr(value),
            ELCR_SLAVE => self.slave.write_elcr(value),
            _ => {
                if self.master.warn_once(WARN_PORT) {
                    warn!(port, value, "8259A: write to an unknown port");
                }
            }
        }
        self.sync_cascade();
    }

    /// Sets the level of input line `irq` (0..=15). Lines are levels; edge
    /// mode latches IRR on a rising edge. IRQ 2 is the slave's cascade
    /// output and cannot be driven from outside.
    pub fn set_irq(&mut self, irq: u8, level: bool) {
        match irq {
            CASCADE_IRQ => panic!("IRQ 2 is the cascade from the slave 8259A"),
            0..=7 => self.master.set_line(irq, level),
            8..=15 => {
                self.slave.set_line(irq - 8, level);
                self.sync_cascade();
            }
            _ => panic!("IRQ line {irq} does not exist on the 8259A pair"),
        }
    }

    /// The level of input line `irq` (0..=15).
    pub fn line(&self, irq: u8) -> bool {
        let (chip, line) = if irq < 8 {
            (&self.master, irq)
        } else {
            (&self.slave, irq - 8)
        };
        chip.lines & (1 << (line & 7)) != 0
    }

    /// Whether the master's INT output to the CPU is asserted.
    pub fn interrupt_pending(&self) -> bool {
        self.master.request().is_some()
    }

    /// The CPU's INTA cycle: returns the vector to deliver and updates
    /// ISR/IRR (slave through IR2 cascade; spurious IRQ7/IRQ15 vector when
    /// the request vanished).
    pub fn acknowledge(&mut self) -> u8 {
        let Some(irq) = self.master.request() else {
            // Spurious: IR7's vector, nothing goes in service.
            return self.master.vector_base | 7;
        };
        let vector = if irq == CASCADE_IRQ && !self.master.single {
            match self.slave.request() {
                Some(slave_irq) => {
                    self.slave.intack(slave_irq);
                    self.slave.vector_base | slave_irq
                }
                // The master still puts IR2 in service, so the guest's
                // spurious IRQ15 handler must EOI the master.
                None => self.slave.vector_base | 7,
            }
        } else {
            self.master.vector_base | irq
        };
        self.master.intack(irq);
        self.sync_cascade();
        vector
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init(pic: &mut DualPic) {
        for (port, value) in LINUX_INIT {
            pic.write(port, value);
        }
    }

    fn initialized() -> DualPic {
        let mut pic = DualPic::new();
        init(&mut pic);
        pic
    }

    fn eoi(pic: &mut DualPic, port: u16) {
        pic.write(port, 0x20);
    }

    #[test]
    fn power_on_masks_everything() {
        let mut pic = DualPic::new();
        assert_eq!(pic.read(0x21), 0xff);
        assert_eq!(pic.read(0xa1), 0xff);
        pic.set_irq(0, true);
        assert!(!pic.interrupt_pending());
        // ICW1 clears the IMR and the edge latches: the line is already
        // high, so it needs a new edge.
        init(&mut pic);
        assert_eq!(pic.read(0x21), 0);
        assert!(!pic.interrupt_pending());
        pic.set_irq(0, false);
        pic.set_irq(0, true);
        assert_eq!(pic.acknowledge(), 0x20);
    }

    #[test]
    fn lower_number_has_priority() {
        let mut pic = initialized();
        pic.set_irq(4, true);
        pic.set_irq(1, true);
        assert!(pic.interrupt_pending());
        assert_eq!(pic.acknowledge(), 0x21);
        // IRQ4 waits: IRQ1 in service blocks lower priorities.
        assert!(!pic.interrupt_pending());
        eoi(&mut pic, 0x20);
        assert!(pic.interrupt_pending());
        assert_eq!(pic.acknowledge(), 0x24);
    }

    #[test]
    fn higher_priority_nests_over_lower_in_service() {
        let mut pic = initialized();
        pic.set_irq(4, true);
        assert_eq!(pic.acknowledge(), 0x24);
        pic.set_irq(1, true);
        assert!(pic.interrupt_pending());
        assert_eq!(pic.acknowledge(), 0x21);
        pic.write(0x20, 0x0b);
        assert_eq!(pic.read(0x20), 0b0001_0010);
    }

    #[test]
    fn non_specific_eoi_clears_highest_and_specific_clears_named() {
        let mut pic = initialized();
        pic.set_irq(4, true);
        assert_eq!(pic.acknowledge(), 0x24);
        pic.set_irq(1, true);
        assert_eq!(pic.acknowledge(), 0x21);
        pic.write(0x20, 0x0b); // read ISR
        assert_eq!(pic.read(0x20), 0x12);
        // A specific EOI for IRQ4 leaves IRQ1 in service.
        pic.write(0x20, 0x60 | 4);
        assert_eq!(pic.read(0x20), 0x02);
        pic.set_irq(4, false);
        pic.set_irq(4, true);
        assert!(!pic.interrupt_pending());
        // Non-specific EOI clears IRQ1, the highest in service.
        eoi(&mut pic, 0x20);
        assert_eq!(pic.read(0x20), 0x00);
        assert_eq!(pic.acknowledge(), 0x24);
    }

    #[test]
    fn level_in_service_blocks_itself_until_eoi() {
        let mut pic = initialized();
        pic.set_irq(4, true);
        assert_eq!(pic.acknowledge(), 0x24);
        pic.set_irq(4, false);
        pic.set_irq(4, true);
        assert!(!pic.interrupt_pending());
        eoi(&mut pic, 0x20);
        assert_eq!(pic.acknowledge(), 0x24);
    }

    #[test]
    fn masked_line_waits_in_irr() {
        let mut pic = initialized();
        pic.write(0x21, 1 << 3);
        pic.set_irq(3, true);
        assert!(!pic.interrupt_pending());
        assert_eq!(pic.read(0x20), 0x08); // IRR
        pic.write(0x21, 0);
        assert!(pic.interrupt_pending());
        assert_eq!(pic.acknowledge(), 0x23);
    }

    #[test]
    fn slave_cascades_through_ir2() {
        let mut pic = initialized();
        pic.set_irq(12, true);
        assert!(pic.interrupt_pending());
        assert_eq!(pic.acknowledge(), 0x28 + 4);
        pic.write(0x20, 0x0b);
        pic.write(0xa0, 0x0b);
        assert_eq!(pic.read(0x20), 1 << 2);
        assert_eq!(pic.read(0xa0), 1 << 4);
        // Masking IR2 on the master hides every slave line.
        eoi(&mut pic, 0xa0);
        eoi(&mut pic, 0x20);
        pic.write(0x21, 1 << 2);
        pic.set_irq(9, true);
        assert!(!pic.interrupt_pending());
        pic.write(0x21, 0);
        assert_eq!(pic.acknowledge(), 0x29);
    }

    #[test]
    fn spurious_vectors() {
        let mut pic = initialized();
        assert!(!pic.interrupt_pending());
        assert_eq!(pic.acknowledge(), 0x27);
        pic.write(0x20, 0x0b);
        assert_eq!(pic.read(0x20), 0, "a spurious IRQ7 is not put in service");

        // A level-triggered slave line that drops before INTA: the master
        // still holds its IR2 edge, the slave has nothing, so IRQ15.
        pic.write(0x4d1, 1 << 2); // IRQ 10 level-triggered
        pic.set_irq(10, true);
        pic.set_irq(10, false);
        assert!(pic.interrupt_pending());
        assert_eq!(pic.acknowledge(), 0x2f);
        pic.write(0xa0, 0x0b);
        assert_eq!(pic.read(0xa0), 0);
        assert_eq!(pic.read(0x20), 1 << 2, "master IR2 in service");
    }

    #[test]
    fn edge_request_stays_latched_after_the_line_drops() {
        let mut pic = initialized();
        pic.set_irq(5, true);
        pic.set_irq(5, false);
        assert_eq!(pic.read(0x20), 1 << 5);
        assert_eq!(pic.acknowledge(), 0x25);
        eoi(&mut pic, 0x20);
        // A line held high gives no second interrupt without a new edge.
        pic.set_irq(5, true);
        assert_eq!(pic.acknowledge(), 0x25);
        eoi(&mut pic, 0x20);
        pic.set_irq(5, true);
        assert!(!pic.interrupt_pending());
    }

    #[test]
    fn level_mode_follows_the_line() {
        let mut pic = initialized();
        pic.write(0x4d0, 0xff);
        assert_eq!(pic.read(0x4d0), 0xf8, "IRQ0-2 cannot be level");
        pic.set_irq(5, true);
        assert_eq!(pic.acknowledge(), 0x25);
        eoi(&mut pic, 0x20);
        // Still high: interrupts again after EOI, without a new edge.
        assert!(pic.interrupt_pending());
        assert_eq!(pic.acknowledge(), 0x25);
        pic.set_irq(5, false);
        eoi(&mut pic, 0x20);
        assert!(!pic.interrupt_pending());
        assert_eq!(pic.read(0x20), 0);

        // The same on the slave, through the cascade.
        pic.write(0x4d1, 1 << 3);
        pic.set_irq(11, true);
        assert_eq!(pic.acknowledge(), 0x2b);
        eoi(&mut pic, 0xa0);
        eoi(&mut pic, 0x20);
        assert_eq!(pic.acknowledge(), 0x2b);

        // ICW1.LTIM makes every line level-triggered, IRQ0 too.
        let mut pic = DualPic::new();
        for (port, value) in [(0x20, 0x19), (0x21, 0x08), (0x21, 0x04), (0x21, 0x01)] {
            pic.write(port, value);
        }
        pic.set_irq(0, true);
        assert!(pic.interrupt_pending());
        pic.set_irq(0, false);
        assert!(!pic.interrupt_pending());
    }

    #[test]
    fn poll_mode() {
        let mut pic = initialized();
        pic.set_irq(6, true);
        pic.write(0x20, 0x0c);
        assert_eq!(pic.read(0x20), 0x80 | 6);
        // The poll acknowledged it: in service, no longer requested.
        assert!(!pic.interrupt_pending());
        pic.write(0x20, 0x0b);
        assert_eq!(pic.read(0x20), 1 << 6);
        // Poll with nothing pending; the next read is a normal one again.
        pic.write(0x20, 0x0c);
        assert_eq!(pic.read(0x20), 0);
        assert_eq!(pic.read(0x20), 1 << 6);
    }

    #[test]
    fn read_irr_and_isr_select() {
        let mut pic = initialized();
        pic.set_irq(3, true);
        pic.set_irq(7, true);
        assert_eq!(pic.read(0x20), 0x88, "IRR is selected after init");
        assert_eq!(pic.acknowledge(), 0x23);
        assert_eq!(pic.read(0x20), 0x80);
        pic.write(0x20, 0x0b);
        assert_eq!(pic.read(0x20), 0x08);
        // OCW3 without RR keeps the selection.
        pic.write(0x20, 0x08);
        assert_eq!(pic.read(0x20), 0x08);
        pic.write(0x20, 0x0a);
        assert_eq!(pic.read(0x20), 0x80);
        assert_eq!(pic.read(0x21), 0x00);
    }

    #[test]
    fn auto_eoi_with_rotation() {
        let mut pic = DualPic::new();
        for (port, value) in [(0x20, 0x11), (0x21, 0x08), (0x21, 0x04), (0x21, 0x03)] {
            pic.write(port, value);
        }
        pic.write(0x20, 0x80); // rotate in AEOI mode
        pic.set_irq(3, true);
        assert_eq!(pic.acknowledge(), 0x0b);
        pic.write(0x20, 0x0b);
        assert_eq!(pic.read(0x20), 0, "AEOI leaves nothing in service");
        // The level just served becomes the lowest: IRQ7 beats IRQ3.
        pic.set_irq(3, false);
        pic.set_irq(3, true);
        pic.set_irq(7, true);
        assert_eq!(pic.acknowledge(), 0x0f);
        assert_eq!(pic.acknowledge(), 0x0b);
        // IRQ3 is now the lowest priority: order 4..7, 0..3.
        pic.set_irq(1, true);
        pic.set_irq(4, true);
        assert_eq!(pic.acknowledge(), 0x0c);
        // Now 5..7, 0..4: IRQ6 beats the waiting IRQ1.
        pic.set_irq(6, true);
        assert_eq!(pic.acknowledge(), 0x0e);
        assert_eq!(pic.acknowledge(), 0x09);
        // Clearing the rotation keeps the order (2..7, 0, 1 after IRQ1) but
        // stops rotating: after IRQ7, IRQ3 still beats IRQ0.
        pic.write(0x20, 0x00);
        pic.set_irq(7, true);
        assert_eq!(pic.acknowledge(), 0x0f);
        pic.set_irq(0, true);
        pic.set_irq(3, false);
        pic.set_irq(3, true);
        assert_eq!(pic.acknowledge(), 0x0b);
        assert_eq!(pic.acknowledge(), 0x08);
    }

    #[test]
    fn rotate_on_eoi_and_set_priority() {
        let mut pic = initialized();
        pic.set_irq(1, true);
        assert_eq!(pic.acknowledge(), 0x21);
        pic.write(0x20, 0xa0); // rotate on non-specific EOI: IRQ1 lowest
        pic.write(0x20, 0x0b);
        assert_eq!(pic.read(0x20), 0, "the EOI part cleared IRQ1");
        // Order 2..7, 0, 1: IRQ3 beats IRQ0.
        pic.set_irq(0, true);
        pic.set_irq(3, true);
        assert_eq!(pic.acknowledge(), 0x23);
        // Rotate on specific EOI: IRQ3 lowest, order 4..7, 0..3.
        pic.write(0x20, 0xe3);
        pic.set_irq(5, true);
        assert_eq!(pic.acknowledge(), 0x25);
        eoi(&mut pic, 0x20);
        assert_eq!(pic.acknowledge(), 0x20);
        eoi(&mut pic, 0x20);
        // Set priority: IRQ6 lowest, order 7, 0..6.
        pic.write(0x20, 0xc6);
        pic.set_irq(6, true);
        pic.set_irq(7, true);
        pic.set_irq(4, false);
        pic.set_irq(4, true);
        assert_eq!(pic.acknowledge(), 0x27);
        eoi(&mut pic, 0x20);
        assert_eq!(pic.acknowledge(), 0x24);
        eoi(&mut pic, 0x20);
        assert_eq!(pic.acknowledge(), 0x26);
    }

    #[test]
    fn special_mask_mode_enables_lower_levels() {
        let mut pic = initialized();
        pic.set_irq(3, true);
        assert_eq!(pic.acknowledge(), 0x23);
        pic.set_irq(5, true);
        assert!(!pic.interrupt_pending());
        // The handler masks its own level and enters special mask mode.
        pic.write(0x21, 1 << 3);
        pic.write(0x20, 0x68);
        assert!(pic.interrupt_pending());
        assert_eq!(pic.acknowledge(), 0x25);
        // IRQ5 (unmasked, in service) does not interrupt itself.
        pic.set_irq(5, false);
        pic.set_irq(5, true);
        assert!(!pic.interrupt_pending());
        // A non-specific EOI skips the masked IRQ3 and clears IRQ5.
        eoi(&mut pic, 0x20);
        pic.write(0x20, 0x0b);
        assert_eq!(pic.read(0x20), 1 << 3);
        assert_eq!(pic.acknowledge(), 0x25);
        pic.write(0x20, 0x60 | 5);
        // Leaving special mask mode restores nesting.
        pic.write(0x20, 0x48);
        pic.write(0x21, 0);
        pic.set_irq(6, true);
        assert!(!pic.interrupt_pending());
    }

    #[test]
    fn slave_interrupt_reasserts_after_slave_eoi() {
        let mut pic = initialized();
        pic.set_irq(9, true);
        pic.set_irq(11, true);
        assert_eq!(pic.acknowledge(), 0x29);
        eoi(&mut pic, 0xa0);
        eoi(&mut pic, 0x20);
        assert!(pic.interrupt_pending());
        assert_eq!(pic.acknowledge(), 0x2b);
    }
}

#[cfg(test)]
mod state_tests {
    use super::*;
    use crate::state::through_bytes;

    /// Both PICs see the same guest from here on, and agree.
    fn run_alike(a: &mut DualPic, b: &mut DualPic) {
        for step in 0..40u8 {
            match step % 5 {
                0 => assert_eq!(a.acknowledge(), b.acknowledge()),
                1 => {
                    a.write(0x20, 0x20);
                    b.write(0x20, 0x20);
                }
                2 => assert_eq!(a.read(0x20), b.read(0x20)),
                3 => {
                    let (irq, level) = ([1, 3, 9, 12][usize::from(step) % 4], step % 3 != 0);
                    a.set_irq(irq, level);
                    b.set_irq(irq, level);
                }
                _ => assert_eq!(a.interrupt_pending(), b.interrupt_pending()),
            }
            assert_eq!(a.state(), b.state());
        }
    }

    /// Mid-operation: requests pending, one in service on each chip, a
    /// level-triggered line, rotation, ISR selected for reading.
    fn busy() -> DualPic {
        let mut pic = DualPic::new();
        for (port, value) in LINUX_INIT.into_iter().chain([(0x4d1, 0x02)]) {
            pic.write(port, value);
        }
        pic.set_irq(9, true);
        pic.set_irq(4, true);
        pic.set_irq(1, true);
        assert_eq!(pic.acknowledge(), 0x21);
        pic.write(0x20, 0xc1); // IRQ 1 lowest: the cascade may nest over it
        pic.write(0x20, 0x0b); // read ISR
        assert!(pic.interrupt_pending());
        pic
    }

    #[test]
    fn a_restored_pic_pair_goes_on_as_the_original() {
        let mut original = busy();
        let state = through_bytes(&original.state());
        let mut restored = DualPic::from_state(&state).unwrap();
        assert_eq!(restored, original);
        run_alike(&mut original, &mut restored);
    }

    #[test]
    fn a_pic_state_no_guest_reaches_is_refused() {
        let good = busy().state();
        let mut swapped = good.clone();
        std::mem::swap(&mut swapped.master, &mut swapped.slave);
        let mut vector = good.clone();
        vector.master.vector_base = 0x21;
        let mut elcr = good.clone();
        elcr.master.elcr = 0x01;
        let mut level = good.clone();
        level.slave.irr &= !0x02;
        let mut cascade = good.clone();
        cascade.master.lines &= !(1 << CASCADE_IRQ);
        for (state, what) in [
            (swapped, "chip in the other"),
            (vector, "vector base"),
            (elcr, "edge-only"),
            (level, "level-triggered"),
            (cascade, "cascade"),
        ] {
            let error = DualPic::from_state(&state).unwrap_err();
            assert!(error.to_string().contains(what), "{error}");
        }
    }
}
