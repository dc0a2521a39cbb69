//! The nondeterministic inputs a guest observes, each applied at a
//! numbered exit.

/// Index of the time-stamp counter MSR, the one filtered MSR whose reads
/// return a value rather than a fault.
pub const MSR_TSC: u32 = 0x10;

/// One nondeterministic input, applied by the core at a numbered exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Wall-clock time at virtual time zero, in nanoseconds since the Unix
    /// epoch: the CMOS clock counts from it. Applied once, at boot.
    WallClock {
        /// Unix nanoseconds.
        unix_ns: u64,
    },
    /// A sample of virtual time in nanoseconds since boot. PIT counts, timer
    /// interrupts and CMOS values are computed from the latest sample.
    Time {
        /// Virtual nanoseconds since boot.
        ns: u64,
    },
    /// Bytes from outside accepted into the UART's receive FIFO.
    SerialIn(Vec<u8>),
    /// The value a filtered MSR read returned.
    MsrRead {
        /// The MSR.
        index: u32,
        /// Its value.
        value: u64,
    },
    /// A frame received on the network, copied into a receive buffer.
    NetRx(Vec<u8>),
    /// Disk request `request` completed with a virtio-blk status; a read
    /// carries the data read.
    DiskDone {
        /// The request's number.
        request: u64,
        /// Its virtio-blk status.
        status: u8,
        /// The data read (empty for other requests).
        data: Vec<u8>,
    },
}
