//! Virtio devices on the virtio-mmio transport (version 2): finding them
//! from the command line, their registers, and acknowledging their
//! interrupts.
//!
//! The VMM announces each device with a word in Linux's form,
//! `virtio_mmio.device=<size>@<base>:<irq>`, e.g.
//! `virtio_mmio.device=4K@0xd0000000:5`.

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::{irq, pic};

/// Register offsets (virtio 1.x, 4.2.2 "MMIO Device Register Layout").
pub mod reg {
    pub const MAGIC: usize = 0x000;
    pub const VERSION: usize = 0x004;
    pub const DEVICE_ID: usize = 0x008;
    pub const DEVICE_FEATURES: usize = 0x010;
    pub const DEVICE_FEATURES_SEL: usize = 0x014;
    pub const DRIVER_FEATURES: usize = 0x020;
    pub const DRIVER_FEATURES_SEL: usize = 0x024;
    pub const QUEUE_SEL: usize = 0x030;
    pub const QUEUE_NUM_MAX: usize = 0x034;
    pub const QUEUE_NUM: usize = 0x038;
    pub const QUEUE_READY: usize = 0x044;
    pub const QUEUE_NOTIFY: usize = 0x050;
    pub const INTERRUPT_STATUS: usize = 0x060;
    pub const INTERRUPT_ACK: usize = 0x064;
    pub const STATUS: usize = 0x070;
    pub const QUEUE_DESC_LOW: usize = 0x080;
    pub const QUEUE_DESC_HIGH: usize = 0x084;
    pub const QUEUE_DRIVER_LOW: usize = 0x090;
    pub const QUEUE_DRIVER_HIGH: usize = 0x094;
    pub const QUEUE_DEVICE_LOW: usize = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: usize = 0x0a4;
    /// Start of the device-specific configuration space.
    pub const CONFIG: usize = 0x100;
}

/// "virt", little-endian.
const MAGIC_VALUE: u32 = 0x7472_6976;
/// The modern (virtio 1.x) transport.
const MODERN_VERSION: u32 = 2;
/// Device ID of a network device.
pub const DEVICE_ID_NET: u32 = 1;
/// Device ID of a block device.
pub const DEVICE_ID_BLOCK: u32 = 2;

/// Where the platform puts virtio-mmio devices (docs/DESIGN.md §5): above RAM
/// and inside the identity map, so their registers are never memory.
const WINDOW: core::ops::Range<u64> = 0xd000_0000..0x1_0000_0000;
/// Smallest region that holds the registers.
const MIN_SIZE: u64 = reg::CONFIG as u64;
const PAGE_SIZE: u64 = 4096;

const PREFIX: &[u8] = b"virtio_mmio.device=";

/// A virtio-mmio device the command line announced.
#[derive(Clone, Copy)]
pub struct Device {
    base: usize,
    size: usize,
    irq: u8,
}

impl Device {
    /// Address of the register block.
    pub fn base(&self) -> usize {
        self.base
    }

    /// Size of the register block with the configuration space.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Reads the 32-bit register at `offset` (below [`size`](Self::size)).
    pub fn read(&self, offset: usize) -> u32 {
        let address = self.register(offset);
        // SAFETY: `parse` only accepts register blocks in the MMIO window,
        // which holds no memory of this program, so the read has no effect
        // on it; `register` checked the bounds and alignment.
        unsafe { (address as *const u32).read_volatile() }
    }

    /// Writes the 32-bit register at `offset` (below [`size`](Self::size)).
    pub fn write(&self, offset: usize, value: u32) {
        let address = self.register(offset);
        // SAFETY: as for `read`: this is a device register, not memory.
        unsafe { (address as *mut u32).write_volatile(value) }
    }

    fn register(&self, offset: usize) -> usize {
        if offset >= self.size || !offset.is_multiple_of(4) {
            crate::fatal("guest: virtio-mmio register offset out of range");
        }
        self.base + offset
    }

    /// The device ID, if a modern virtio-mmio device answers at the base.
    pub fn device_id(&self) -> Option<u32> {
        let modern =
            self.read(reg::MAGIC) == MAGIC_VALUE && self.read(reg::VERSION) == MODERN_VERSION;
        modern.then(|| self.read(reg::DEVICE_ID))
    }

    /// Acknowledges this device's interrupts from now on: its IRQ handler
    /// reads InterruptStatus and writes it back to InterruptACK, which
    /// lowers the level-triggered line. Drivers then find their completed
    /// requests in their rings after waking from `hlt`.
    pub fn enable_interrupt(&self) {
        let Some(slot) = INTERRUPTING.get(usize::from(self.irq)) else {
            crate::fatal("guest: virtio-mmio IRQ out of range")
        };
        slot.store(self.base, Ordering::Release);
        irq::register(self.irq, on_interrupt);
    }
}

/// The register base of the device on each IRQ line, or 0.
static INTERRUPTING: [AtomicUsize; pic::IRQ_COUNT] =
    [const { AtomicUsize::new(0) }; pic::IRQ_COUNT];

/// Acknowledges every device with interrupts enabled (a handler is not told
/// its IRQ; reading the status of a device that did not interrupt is
/// harmless).
fn on_interrupt() {
    for slot in &INTERRUPTING {
        let base = slot.load(Ordering::Acquire);
        if base == 0 {
            continue;
        }
        // Only the register block matters here, not the size or IRQ.
        let device = Device {
            base,
            size: MIN_SIZE as usize,
            irq: 0,
        };
        let status = device.read(reg::INTERRUPT_STATUS);
        if status != 0 {
            device.write(reg::INTERRUPT_ACK, status);
        }
    }
}

/// The devices announced on `cmdline`, in order; malformed words and
/// regions outside the platform's MMIO window are skipped.
pub fn devices(cmdline: &[u8]) -> impl Iterator<Item = Device> + '_ {
    cmdline
        .split(|&byte| byte == b' ')
        .filter_map(|word| parse(word.strip_prefix(PREFIX)?))
}

/// The first announced device with device ID `id` (see [`DEVICE_ID_BLOCK`],
/// [`DEVICE_ID_NET`]).
pub fn find(cmdline: &[u8], id: u32) -> Option<Device> {
    devices(cmdline).find(|device| device.device_id() == Some(id))
}

/// Parses `<size>@<base>:<irq>`.
fn parse(spec: &[u8]) -> Option<Device> {
    let (size, rest) = split_at_byte(spec, b'@')?;
    let (base, irq) = split_at_byte(rest, b':')?;
    let size = parse_size(size)?;
    let base = parse_number(base)?;
    let irq = u8::try_from(crate::cmdline::parse_decimal(irq)?).ok()?;
    let end = base.checked_add(size)?;
    let fits = WINDOW.start <= base && end <= WINDOW.end;
    let sane = fits && size >= MIN_SIZE && base.is_multiple_of(PAGE_SIZE);
    if !sane || usize::from(irq) >= pic::IRQ_COUNT {
        return None;
    }
    Some(Device {
        base: usize::try_from(base).ok()?,
        size: usize::try_from(size).ok()?,
        irq,
    })
}

/// The parts of `bytes` before and after the first `separator`.
fn split_at_byte(bytes: &[u8], separator: u8) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|&byte| byte == separator)?;
    // `get` rather than indexing: no panic path, so no formatting code.
    let (before, after) = bytes.split_at_checked(at)?;
    Some((before, after.get(1..)?))
}

/// A number with an optional K, M or G suffix, as Linux's `memparse`.
fn parse_size(text: &[u8]) -> Option<u64> {
    let (digits, shift) = match text.split_last()? {
        (b'K' | b'k', digits) => (digits, 10),
        (b'M' | b'm', digits) => (digits, 20),
        (b'G' | b'g', digits) => (digits, 30),
        _ => (text, 0),
    };
    let value = parse_number(digits)?;
    value.checked_mul(1 << shift)
}

/// A decimal number, or a hexadecimal one after `0x`.
fn parse_number(text: &[u8]) -> Option<u64> {
    let Some(hex) = text.strip_prefix(b"0x") else {
        return crate::cmdline::parse_decimal(text);
    };
    if hex.is_empty() {
        return None;
    }
    hex.iter().try_fold(0u64, |value, &digit| {
        let nibble = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            b'A'..=b'F' => digit - b'A' + 10,
            _ => return None,
        };
        value.checked_mul(16)?.checked_add(u64::from(nibble))
    })
}
