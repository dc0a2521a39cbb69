//! A hand-built split virtqueue (virtio 1.x, 2.7) and one request's
//! buffers, in one static page the device reads and writes.

use core::cell::UnsafeCell;

/// Descriptors, and slots of each ring.
pub const QUEUE_SIZE: usize = 8;
pub const SECTOR_SIZE: usize = 512;

/// Descriptor flags.
pub const NEXT: u16 = 1;
pub const WRITE: u16 = 2;

/// Offsets of the rings from the descriptor table, here and wherever the
/// rings are placed: descriptors need 16-byte, the available ring 2-byte
/// and the used ring 4-byte alignment.
pub const AVAIL_OFFSET: u64 = 0x100;
pub const USED_OFFSET: u64 = 0x200;

/// A value the device may read or write at any VM exit: accessed only with
/// single volatile reads and writes, never through references.
#[repr(transparent)]
pub struct Volatile<T>(UnsafeCell<T>);

// SAFETY: the kernel is single-threaded and its interrupt handlers do not
// touch these cells; the device's accesses are what the volatile accesses
// are for.
unsafe impl<T: Copy> Sync for Volatile<T> {}

impl<T: Copy> Volatile<T> {
    const fn new(value: T) -> Self {
        Self(UnsafeCell::new(value))
    }

    pub fn get(&self) -> T {
        // SAFETY: the cell is valid and aligned, and no reference to its
        // contents exists (see the type's doc).
        unsafe { self.0.get().read_volatile() }
    }

    pub fn set(&self, value: T) {
        // SAFETY: as for `get`.
        unsafe { self.0.get().write_volatile(value) }
    }

    /// Guest-physical address (the identity map makes it the virtual one).
    pub fn addr(&self) -> u64 {
        self.0.get() as u64
    }
}

#[derive(Clone, Copy)]
#[repr(C)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
    pub flags: u16,
    pub next: u16,
}

impl Desc {
    pub const EMPTY: Desc = Desc {
        addr: 0,
        len: 0,
        flags: 0,
        next: 0,
    };
}

#[repr(C)]
pub struct Avail {
    pub flags: Volatile<u16>,
    pub idx: Volatile<u16>,
    pub ring: [Volatile<u16>; QUEUE_SIZE],
}

#[derive(Clone, Copy)]
#[repr(C)]
pub struct UsedElem {
    pub id: u32,
    pub len: u32,
}

#[repr(C)]
pub struct Used {
    pub flags: Volatile<u16>,
    pub idx: Volatile<u16>,
    pub ring: [Volatile<UsedElem>; QUEUE_SIZE],
}

/// The rings at their offsets, then one block request's buffers.
#[repr(C, align(4096))]
pub struct Shared {
    pub desc: [Volatile<Desc>; QUEUE_SIZE],
    _pad_desc: [u8; AVAIL_OFFSET as usize - 16 * QUEUE_SIZE],
    pub avail: Avail,
    _pad_avail: [u8; (USED_OFFSET - AVAIL_OFFSET) as usize - 4 - 2 * QUEUE_SIZE],
    pub used: Used,
    pub header: Volatile<[u8; 16]>,
    pub status: Volatile<u8>,
    pub data: Volatile<[u8; SECTOR_SIZE]>,
}

pub static SHARED: Shared = Shared {
    desc: [const { Volatile::new(Desc::EMPTY) }; QUEUE_SIZE],
    _pad_desc: [0; AVAIL_OFFSET as usize - 16 * QUEUE_SIZE],
    avail: Avail {
        flags: Volatile::new(0),
        idx: Volatile::new(0),
        ring: [const { Volatile::new(0) }; QUEUE_SIZE],
    },
    _pad_avail: [0; (USED_OFFSET - AVAIL_OFFSET) as usize - 4 - 2 * QUEUE_SIZE],
    used: Used {
        flags: Volatile::new(0),
        idx: Volatile::new(0),
        ring: [const { Volatile::new(UsedElem { id: 0, len: 0 }) }; QUEUE_SIZE],
    },
    header: Volatile::new([0; 16]),
    status: Volatile::new(0),
    data: Volatile::new([0; SECTOR_SIZE]),
};

// The layout the device is told about.
const _: () = {
    assert!(core::mem::offset_of!(Shared, avail) == AVAIL_OFFSET as usize);
    assert!(core::mem::offset_of!(Shared, used) == USED_OFFSET as usize);
};

impl Shared {
    /// Clears the rings, as for a new queue.
    pub fn clear_rings(&self) {
        for desc in &self.desc {
            desc.set(Desc::EMPTY);
        }
        self.avail.flags.set(0);
        self.avail.idx.set(0);
        for slot in &self.avail.ring {
            slot.set(0);
        }
        self.used.flags.set(0);
        self.used.idx.set(0);
        for slot in &self.used.ring {
            slot.set(UsedElem { id: 0, len: 0 });
        }
    }

    /// Address of the descriptor table, with the rings at their offsets.
    pub fn rings_addr(&self) -> u64 {
        self.desc[0].addr()
    }
}
