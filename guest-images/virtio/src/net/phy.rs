//! The network device as smoltcp's `phy::Device`.
//!
//! A received frame's token owns its buffer and returns it to the spare
//! list; the transmit token borrows the transmit side. The two borrow
//! disjoint parts of [`NetDevice`], so smoltcp can hold both at once.

use alloc::vec::Vec;

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use virtio_drivers::transport::mmio::MmioTransport;

use super::{Buffer, Frame, MAX_FRAME, NetDevice, Transmitter};

impl phy::Device for NetDevice {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        // smoltcp may answer the frame (ARP, ACK): only take one when a
        // transmit buffer is free too.
        if !self.can_transmit() {
            return None;
        }
        self.rx.refill_if_low(&mut self.transport);
        let frame = self.rx.pop()?;
        let rx = RxToken {
            frame,
            spare: &mut self.rx.spare,
        };
        let tx = TxToken {
            tx: &mut self.tx,
            transport: &mut self.transport,
        };
        Some((rx, tx))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<TxToken<'_>> {
        let free = self.can_transmit();
        free.then_some(TxToken {
            tx: &mut self.tx,
            transport: &mut self.transport,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut capabilities = DeviceCapabilities::default();
        capabilities.medium = Medium::Ethernet;
        // For Ethernet, smoltcp counts the header in the MTU.
        capabilities.max_transmission_unit = MAX_FRAME;
        capabilities
    }
}

pub struct RxToken<'a> {
    frame: Frame,
    spare: &'a mut Vec<Buffer>,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let result = f(self.frame.bytes());
        self.spare.push(self.frame.buffer);
        result
    }
}

pub struct TxToken<'a> {
    tx: &'a mut Transmitter,
    transport: &'a mut MmioTransport<'static>,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        // `transmit` and `receive` hand out a token only with a free buffer.
        let Some(result) = self.tx.send(self.transport, len, f) else {
            rt::fatal("virtio-net: no transmit buffer for a token");
        };
        result
    }
}
