//! An interrupt-driven virtio network device (virtio 1.x, 5.1) without
//! offloads, used through smoltcp (its `phy::Device` is in [`phy`]).
//!
//! virtio-drivers' `VirtIONet` waits by spinning, and its `VirtIONetRaw`
//! keeps both queues in one struct, so a received frame's token could not
//! hold the receive side while a transmit token holds the other. This driver
//! takes virtio-drivers' `MmioTransport` and `VirtQueue`, as [`crate::blk`]
//! does, with one queue per direction:
//!
//! - receiveq: [`RX_BUFFERS`] buffers, each for a header and a full frame,
//!   stay posted; a used one is handed out and posted again once returned.
//! - transmitq: a frame is copied into a buffer after its (zero) header and
//!   made available at once; the buffer returns when the device uses it.
//!
//! Nothing here waits: the caller polls smoltcp, and sleeps with `sti; hlt`
//! while [`NetDevice::has_events`] is false (the device's IRQ wakes it).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ptr::NonNull;

use bitflags::bitflags;
use rt::virtio_mmio::Device;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::{DeviceStatus, DeviceType, Transport};

use crate::hal::IdentityHal;

pub mod phy;

/// `struct virtio_net_hdr_v1`, which precedes every frame either way.
pub const HEADER_LEN: usize = 12;
/// The largest frame: Ethernet without FCS, no offloads.
pub const MAX_FRAME: usize = 1514;
/// A buffer of either queue: the header and a frame.
const BUFFER_LEN: usize = HEADER_LEN + MAX_FRAME;

const RECEIVE_QUEUE: u16 = 0;
const TRANSMIT_QUEUE: u16 = 1;
/// Descriptors per queue; every buffer takes one.
const QUEUE_SIZE: usize = 32;
/// Receive buffers kept posted, so a burst of frames finds room.
pub const RX_BUFFERS: usize = QUEUE_SIZE;
/// Posting is batched: buffers go back once this many are out, so the
/// device is notified (a VM exit) once per batch rather than per frame.
const RX_REFILL_BATCH: usize = 8;
/// Transmit buffers; the device uses them as soon as it is notified.
const TX_BUFFERS: usize = 16;

bitflags! {
    /// The feature bits this driver understands.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Features: u64 {
        const MAC = 1 << 5;
        const VERSION_1 = 1 << 32;
    }
}

/// Why setting up the network device failed.
#[derive(Clone, Copy)]
pub enum NetError {
    /// No modern virtio-mmio network device answers at the address.
    NotNetDevice,
    /// The device did not accept our features (FEATURES_OK did not stick).
    FeaturesRejected,
    /// The device has no MAC address (VIRTIO_NET_F_MAC) to use.
    NoMac,
    /// The configuration space is too small for the MAC address.
    Config,
    /// Setting up or adding to a virtqueue failed.
    Queue(virtio_drivers::Error),
}

impl NetError {
    /// A short description, for printing without `core::fmt`.
    pub fn name(self) -> &'static str {
        match self {
            Self::NotNetDevice => "not a virtio network device",
            Self::FeaturesRejected => "features rejected",
            Self::NoMac => "no MAC address",
            Self::Config => "config space too small",
            Self::Queue(virtio_drivers::Error::DmaError) => "out of memory",
            Self::Queue(virtio_drivers::Error::InvalidParam) => "queue too small",
            Self::Queue(virtio_drivers::Error::AlreadyUsed) => "queue already in use",
            Self::Queue(_) => "virtqueue error",
        }
    }
}

type Buffer = Box<[u8; BUFFER_LEN]>;

fn new_buffer() -> Buffer {
    Box::new([0; BUFFER_LEN])
}

/// A virtio network device, driven with interrupts.
pub struct NetDevice {
    // Dropped first: resetting the device stops it using the queues and
    // buffers before they are freed.
    transport: MmioTransport<'static>,
    rx: Receiver,
    tx: Transmitter,
    mac: [u8; 6],
}

impl NetDevice {
    /// Initialises the network device `device` (virtio 1.x, 3.1.1), posts
    /// its receive buffers and starts acknowledging its interrupts. Needs
    /// the heap ([`crate::heap::init`]).
    pub fn new(device: Device) -> Result<Self, NetError> {
        let header =
            NonNull::new(device.base() as *mut VirtIOHeader).ok_or(NetError::NotNetDevice)?;
        // SAFETY: `Device` only holds register blocks of the platform's
        // virtio-mmio window, which stay mapped for the VM's life; this
        // driver is their only user.
        let mut transport = unsafe { MmioTransport::new(header, device.size()) }
            .map_err(|_| NetError::NotNetDevice)?;
        if transport.device_type() != DeviceType::Network {
            return Err(NetError::NotNetDevice);
        }
        let features = transport.begin_init(Features::VERSION_1 | Features::MAC);
        if !transport.get_status().contains(DeviceStatus::FEATURES_OK) {
            return Err(NetError::FeaturesRejected);
        }
        if !features.contains(Features::MAC) {
            return Err(NetError::NoMac);
        }
        let mac = read_mac(&transport)?;
        let rx_queue =
            VirtQueue::new(&mut transport, RECEIVE_QUEUE, false, false).map_err(NetError::Queue)?;
        let tx_queue = VirtQueue::new(&mut transport, TRANSMIT_QUEUE, false, false)
            .map_err(NetError::Queue)?;
        let mut net = Self {
            transport,
            rx: Receiver {
                queue: rx_queue,
                posted: [const { None }; QUEUE_SIZE],
                posted_count: 0,
                spare: Vec::new(),
            },
            tx: Transmitter {
                queue: tx_queue,
                in_flight: [const { None }; QUEUE_SIZE],
                free: (0..TX_BUFFERS).map(|_| new_buffer()).collect(),
            },
            mac,
        };
        // Before DRIVER_OK, so the device has buffers as soon as it runs.
        net.rx.refill(&mut net.transport);
        device.enable_interrupt();
        net.transport.finish_init();
        Ok(net)
    }

    /// The device's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Whether the device has used a buffer since the last poll: a frame
    /// arrived or a transmission completed. Cheap (reads the used rings),
    /// for the check before `hlt`.
    pub fn has_events(&self) -> bool {
        self.rx.queue.can_pop() || self.tx.queue.can_pop()
    }

    /// Takes back the transmit buffers the device is done with.
    pub fn reclaim_transmitted(&mut self) {
        self.tx.reclaim();
    }

    /// Whether a transmit buffer is free, after taking back used ones.
    fn can_transmit(&mut self) -> bool {
        self.tx.reclaim();
        !self.tx.free.is_empty()
    }
}

/// Reads `mac[6]` at the start of the configuration space as two aligned
/// 32-bit words, the access every transport supports.
fn read_mac(transport: &MmioTransport<'static>) -> Result<[u8; 6], NetError> {
    let words = transport
        .read_consistent(|| {
            let low: u32 = transport.read_config_space(0)?;
            let high: u32 = transport.read_config_space(4)?;
            Ok((low, high))
        })
        .map_err(|_| NetError::Config)?;
    let [a, b, c, d] = words.0.to_le_bytes();
    let [e, f, _, _] = words.1.to_le_bytes();
    Ok([a, b, c, d, e, f])
}

/// A received frame, in the buffer the device wrote it to.
struct Frame {
    buffer: Buffer,
    len: usize,
}

impl Frame {
    /// The Ethernet frame, without the virtio header.
    fn bytes(&self) -> &[u8] {
        self.buffer
            .get(HEADER_LEN..HEADER_LEN + self.len)
            .unwrap_or_default()
    }
}

/// The receiveq and its buffers.
struct Receiver {
    queue: VirtQueue<IdentityHal, QUEUE_SIZE>,
    /// The buffers the device holds, by the token (head descriptor) `add`
    /// returned for them.
    posted: [Option<Buffer>; QUEUE_SIZE],
    /// How many of `posted` are `Some`.
    posted_count: usize,
    /// Buffers back from the stack, to post again.
    spare: Vec<Buffer>,
}

impl Receiver {
    /// Posts buffers again once a batch of them is out.
    fn refill_if_low(&mut self, transport: &mut MmioTransport<'static>) {
        if self.posted_count + RX_REFILL_BATCH <= RX_BUFFERS {
            self.refill(transport);
        }
    }

    /// Posts buffers (spare ones first, then new ones) until
    /// [`RX_BUFFERS`] are posted, and notifies the device.
    fn refill(&mut self, transport: &mut MmioTransport<'static>) {
        let mut added = false;
        for _ in self.posted_count..RX_BUFFERS {
            let mut buffer = self.spare.pop().unwrap_or_else(new_buffer);
            // SAFETY: the buffer is heap memory that `posted` keeps, unread
            // and unmoved, until `pop` has `pop_used` take it back.
            let token = unsafe { self.queue.add(&[], &mut [&mut buffer[..]]) };
            let Some(slot) = token
                .ok()
                .and_then(|token| self.posted.get_mut(usize::from(token)))
            else {
                rt::fatal("virtio-net: cannot post a receive buffer");
            };
            *slot = Some(buffer);
            self.posted_count += 1;
            added = true;
        }
        if added && self.queue.should_notify() {
            transport.notify(RECEIVE_QUEUE);
        }
    }

    /// Takes the next frame the device wrote, skipping buffers it used
    /// without writing a whole header.
    fn pop(&mut self) -> Option<Frame> {
        loop {
            let token = self.queue.peek_used()?;
            let Some(mut buffer) = self
                .posted
                .get_mut(usize::from(token))
                .and_then(Option::take)
            else {
                rt::fatal("virtio-net: the device used a receive buffer we did not post");
            };
            self.posted_count -= 1;
            // SAFETY: the buffer `add` was given for `token`.
            let used = unsafe { self.queue.pop_used(token, &[], &mut [&mut buffer[..]]) };
            let written = used.map_or(0, |len| len as usize).min(BUFFER_LEN);
            match written.checked_sub(HEADER_LEN) {
                Some(len) if len > 0 => return Some(Frame { buffer, len }),
                _ => self.spare.push(buffer),
            }
        }
    }
}

/// The transmitq and its buffers.
struct Transmitter {
    queue: VirtQueue<IdentityHal, QUEUE_SIZE>,
    /// The buffers the device holds and their lengths, by token.
    in_flight: [Option<(Buffer, usize)>; QUEUE_SIZE],
    /// Buffers to send from.
    free: Vec<Buffer>,
}

impl Transmitter {
    fn reclaim(&mut self) {
        while let Some(token) = self.queue.peek_used() {
            let Some((buffer, len)) = self
                .in_flight
                .get_mut(usize::from(token))
                .and_then(Option::take)
            else {
                rt::fatal("virtio-net: the device used a transmit buffer we did not add");
            };
            let sent = buffer.get(..len).unwrap_or_default();
            // SAFETY: the buffer and length `add` was given for `token`.
            if unsafe { self.queue.pop_used(token, &[sent], &mut []) }.is_err() {
                rt::fatal("virtio-net: cannot take back a transmit buffer");
            }
            self.free.push(buffer);
        }
    }

    fn send<R>(
        &mut self,
        transport: &mut MmioTransport<'static>,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> Option<R> {
        if len > MAX_FRAME {
            rt::fatal("virtio-net: frame longer than the MTU");
        }
        let mut buffer = self.free.pop()?;
        let (header, frame) = buffer.split_at_mut(HEADER_LEN);
        // No offloads: flags, GSO type and the rest are zero.
        header.fill(0);
        let result = fill(frame.get_mut(..len).unwrap_or_default());
        let total = HEADER_LEN + len;
        // SAFETY: the buffer is heap memory that `in_flight` keeps, unwritten
        // and unmoved, until `reclaim` has `pop_used` take it back.
        let token = unsafe {
            self.queue
                .add(&[buffer.get(..total).unwrap_or_default()], &mut [])
        };
        let Some(slot) = token
            .ok()
            .and_then(|token| self.in_flight.get_mut(usize::from(token)))
        else {
            // More buffers than descriptors cannot be in flight.
            rt::fatal("virtio-net: cannot add a transmit buffer");
        };
        *slot = Some((buffer, total));
        if self.queue.should_notify() {
            transport.notify(TRANSMIT_QUEUE);
        }
        Some(result)
    }
}
