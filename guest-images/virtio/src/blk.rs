//! An interrupt-driven virtio block device (virtio 1.x, 5.2).
//!
//! virtio-drivers' `VirtIOBlk` waits for completions by spinning on the used
//! ring, which never ends on ftvm (a guest that makes no VM exits receives
//! no completion), and it has no non-blocking FLUSH or GET_ID, while its
//! queue is private. So this driver takes virtio-drivers' `MmioTransport`
//! (feature negotiation, queue registers) and `VirtQueue` (descriptors and
//! rings) and builds the block requests itself: each request is added,
//! notified, and waited for with `sti; hlt` until the used ring holds it.
//! One request is in flight at a time.

use core::ptr::NonNull;

use bitflags::bitflags;
use rt::virtio_mmio::Device;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::{DeviceStatus, DeviceType, Transport};

use crate::hal::IdentityHal;

pub const SECTOR_SIZE: usize = 512;
/// One sector's bytes; requests move whole sectors.
pub type Sector = [u8; SECTOR_SIZE];
/// Length of the identification string GET_ID returns.
pub const ID_LEN: usize = 20;

/// The block device's only queue.
const QUEUE: u16 = 0;
/// Descriptors in the queue; a request takes two or three.
const QUEUE_SIZE: usize = 16;

bitflags! {
    /// The feature bits this driver understands.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Features: u64 {
        const RO = 1 << 5;
        const FLUSH = 1 << 9;
        const VERSION_1 = 1 << 32;
    }
}

#[derive(Clone, Copy)]
enum RequestType {
    In = 0,
    Out = 1,
    Flush = 4,
    GetId = 8,
}

const STATUS_OK: u8 = 0;
const STATUS_IOERR: u8 = 1;
const STATUS_UNSUPP: u8 = 2;
/// Put in the status byte before a request; no device writes this value.
const STATUS_PENDING: u8 = 0xff;

/// Why a block device operation failed.
#[derive(Clone, Copy)]
pub enum BlockError {
    /// No modern virtio-mmio block device answers at the address.
    NotBlockDevice,
    /// The device did not accept our features (FEATURES_OK did not stick).
    FeaturesRejected,
    /// The configuration space is too small for a block device's.
    Config,
    /// Setting up or adding to the virtqueue failed.
    Queue(virtio_drivers::Error),
    /// The device completed the request with VIRTIO_BLK_S_IOERR.
    IoError,
    /// The device completed the request with VIRTIO_BLK_S_UNSUPP.
    Unsupported,
    /// The device completed the request without writing its status.
    NoStatus,
    /// The device completed the request with a status the spec lacks.
    BadStatus,
}

impl BlockError {
    /// A short description, for printing without `core::fmt`.
    pub fn name(self) -> &'static str {
        match self {
            Self::NotBlockDevice => "not a virtio block device",
            Self::FeaturesRejected => "features rejected",
            Self::Config => "config space too small",
            Self::Queue(virtio_drivers::Error::DmaError) => "out of memory",
            Self::Queue(virtio_drivers::Error::InvalidParam) => "queue too small",
            Self::Queue(virtio_drivers::Error::AlreadyUsed) => "queue already in use",
            Self::Queue(_) => "virtqueue error",
            Self::IoError => "io error",
            Self::Unsupported => "unsupported",
            Self::NoStatus => "no status",
            Self::BadStatus => "bad status",
        }
    }
}

/// A virtio block device, driven with interrupts.
pub struct BlockDevice {
    // Dropped first: resetting the device stops it using the queue's memory
    // before that is freed.
    transport: MmioTransport<'static>,
    queue: VirtQueue<IdentityHal, QUEUE_SIZE>,
    features: Features,
    capacity: u64,
}

impl BlockDevice {
    /// Initialises the block device `device` (virtio 1.x, 3.1.1) and starts
    /// acknowledging its interrupts. Needs the heap ([`crate::heap::init`]).
    pub fn new(device: Device) -> Result<Self, BlockError> {
        let header =
            NonNull::new(device.base() as *mut VirtIOHeader).ok_or(BlockError::NotBlockDevice)?;
        // SAFETY: `Device` only holds register blocks of the platform's
        // virtio-mmio window, which stay mapped for the VM's life; this
        // driver is their only user.
        let mut transport = unsafe { MmioTransport::new(header, device.size()) }
            .map_err(|_| BlockError::NotBlockDevice)?;
        if transport.device_type() != DeviceType::Block {
            return Err(BlockError::NotBlockDevice);
        }
        let features = transport.begin_init(Features::VERSION_1 | Features::FLUSH | Features::RO);
        if !transport.get_status().contains(DeviceStatus::FEATURES_OK) {
            return Err(BlockError::FeaturesRejected);
        }
        let capacity = transport
            .read_consistent(|| {
                let low: u32 = transport.read_config_space(0)?;
                let high: u32 = transport.read_config_space(4)?;
                Ok(u64::from(high) << 32 | u64::from(low))
            })
            .map_err(|_| BlockError::Config)?;
        let queue =
            VirtQueue::new(&mut transport, QUEUE, false, false).map_err(BlockError::Queue)?;
        device.enable_interrupt();
        transport.finish_init();
        Ok(Self {
            transport,
            queue,
            features,
            capacity,
        })
    }

    /// Size of the device in sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Whether the device is read-only (VIRTIO_BLK_F_RO).
    pub fn read_only(&self) -> bool {
        self.features.contains(Features::RO)
    }

    /// Reads `sectors.len()` sectors from sector `sector` on.
    pub fn read(&mut self, sector: u64, sectors: &mut [Sector]) -> Result<(), BlockError> {
        if sectors.is_empty() {
            return Ok(());
        }
        let header = header(RequestType::In, sector);
        let mut status = [STATUS_PENDING];
        self.submit(&[&header], &mut [sectors.as_flattened_mut(), &mut status])?;
        check(status[0])
    }

    /// Writes `sectors` from sector `sector` on.
    pub fn write(&mut self, sector: u64, sectors: &[Sector]) -> Result<(), BlockError> {
        if sectors.is_empty() {
            return Ok(());
        }
        let header = header(RequestType::Out, sector);
        let mut status = [STATUS_PENDING];
        self.submit(&[&header, sectors.as_flattened()], &mut [&mut status])?;
        check(status[0])
    }

    /// Makes the completed writes durable. Without VIRTIO_BLK_F_FLUSH the
    /// device has no write cache, so there is nothing to do.
    pub fn flush(&mut self) -> Result<(), BlockError> {
        if !self.features.contains(Features::FLUSH) {
            return Ok(());
        }
        let header = header(RequestType::Flush, 0);
        let mut status = [STATUS_PENDING];
        self.submit(&[&header], &mut [&mut status])?;
        check(status[0])
    }

    /// The device's identification string (GET_ID), NUL-padded.
    pub fn id(&mut self) -> Result<[u8; ID_LEN], BlockError> {
        let header = header(RequestType::GetId, 0);
        let mut id = [0; ID_LEN];
        let mut status = [STATUS_PENDING];
        self.submit(&[&header], &mut [&mut id, &mut status])?;
        check(status[0]).map(|()| id)
    }

    /// Adds a request, notifies the device and sleeps until it is used.
    fn submit<'a>(
        &mut self,
        inputs: &'a [&'a [u8]],
        outputs: &'a mut [&'a mut [u8]],
    ) -> Result<(), BlockError> {
        // SAFETY: the buffers stay borrowed, and untouched, until `pop_used`
        // below takes them back; nothing returns in between.
        let token = unsafe { self.queue.add(inputs, outputs) }.map_err(BlockError::Queue)?;
        if self.queue.should_notify() {
            self.transport.notify(QUEUE);
        }
        let queue = &self.queue;
        rt::cpu::wait_until(|| queue.can_pop());
        // SAFETY: the buffers `add` was given for `token`.
        let popped = unsafe { self.queue.pop_used(token, inputs, outputs) };
        if popped.is_err() {
            // The device used another chain than the only one in flight:
            // ours stays in its hands, and it may still write our buffers.
            rt::fatal("virtio-blk: the device used a descriptor chain we did not submit");
        }
        Ok(())
    }
}

/// `struct virtio_blk_req`'s header: type (u32), reserved (u32), sector
/// (u64), little-endian; as a u128, the type and sector are its two halves.
fn header(kind: RequestType, sector: u64) -> [u8; 16] {
    (kind as u128 | u128::from(sector) << 64).to_le_bytes()
}

fn check(status: u8) -> Result<(), BlockError> {
    match status {
        STATUS_OK => Ok(()),
        STATUS_IOERR => Err(BlockError::IoError),
        STATUS_UNSUPP => Err(BlockError::Unsupported),
        STATUS_PENDING => Err(BlockError::NoStatus),
        _ => Err(BlockError::BadStatus),
    }
}
