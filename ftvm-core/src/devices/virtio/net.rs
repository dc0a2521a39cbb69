//! virtio-net (virtio 1.2, 5.1) without offloads: transmitted frames leave
//! as outputs at the exit that notified them, and received frames, which
//! are logged events, go into the driver's receive buffers at an exit.

use std::sync::atomic::Ordering;

use ft_logging::NetInfo;
use tracing::warn;
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ids::VIRTIO_ID_NET;
use virtio_bindings::virtio_net::VIRTIO_NET_F_MAC;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestMemory, Permissions};

use super::VirtioDevice;
use crate::effect::Effect;
use crate::memory::GuestRam;
use crate::state::InvalidState;

/// The receive queue's index.
pub const RX_QUEUE: usize = 0;
const TX_QUEUE: usize = 1;
const QUEUE_SIZE: u16 = 256;
/// virtio_net_hdr_v1: flags, gso_type, hdr_len, gso_size, csum_start,
/// csum_offset, num_buffers.
pub const HEADER_LEN: usize = 12;
/// The largest frame either way: Ethernet without FCS, and no offloads.
pub const MAX_FRAME: usize = 1514;

/// The virtio-net device: transmitted frames become effects, received ones fill posted buffers.
#[derive(Debug)]
pub struct Net {
    info: NetInfo,
}

impl Net {
    /// A network card with `info`'s MAC.
    pub fn new(info: NetInfo) -> Self {
        Self { info }
    }

    /// Receive buffers the driver has made available.
    pub fn rx_room(queue: &Queue, memory: &GuestRam) -> usize {
        if !queue.ready() {
            return 0;
        }
        queue
            .avail_idx(memory, Ordering::Acquire)
            .map_or(0, |idx| {
                (idx - std::num::Wrapping(queue.next_avail())).0 as usize
            })
            .min(usize::from(queue.size()))
    }

    /// Puts `frame` into the next receive buffer; returns whether one went
    /// to the used ring. A frame with no room is dropped, as on a wire.
    pub fn receive(queue: &mut Queue, memory: &GuestRam, frame: &[u8]) -> bool {
        let Some((head, descriptors)) = next_chain(queue, memory) else {
            warn!("virtio-net: a frame arrived with no receive buffer; dropped");
            return false;
        };
        let mut packet = vec![0u8; HEADER_LEN];
        // num_buffers: the frame is in one buffer.
        packet[10] = 1;
        packet.extend_from_slice(&frame[..frame.len().min(MAX_FRAME)]);
        let mut written = 0;
        for descriptor in descriptors.iter().filter(|d| d.is_write_only()) {
            let end = (written + descriptor.len() as usize).min(packet.len());
            if written == end || !in_ram(memory, descriptor) {
                break;
            }
            if memory
                .write_slice(&packet[written..end], descriptor.addr())
                .is_err()
            {
                break;
            }
            written = end;
        }
        if written < packet.len() {
            warn!(
                head,
                "virtio-net: a receive buffer too small or outside RAM; frame dropped"
            );
            written = 0;
        }
        queue.add_used(memory, head, written as u32).is_ok()
    }

    /// Takes every frame the driver offered for transmission.
    fn transmit(queue: &mut Queue, memory: &GuestRam, effects: &mut Vec<Effect>) -> bool {
        let mut used = false;
        while let Some((head, descriptors)) = next_chain(queue, memory) {
            let mut packet = Vec::new();
            let readable = descriptors.iter().filter(|d| !d.is_write_only());
            let mut valid = true;
            for descriptor in readable {
                let len = descriptor.len() as usize;
                if packet.len() + len > HEADER_LEN + MAX_FRAME || !in_ram(memory, descriptor) {
                    valid = false;
                    break;
                }
                let start = packet.len();
                packet.resize(start + len, 0);
                if memory
                    .read_slice(&mut packet[start..], descriptor.addr())
                    .is_err()
                {
                    valid = false;
                    break;
                }
            }
            if valid && packet.len() > HEADER_LEN {
                effects.push(Effect::Net(packet.split_off(HEADER_LEN)));
            } else {
                warn!(
                    head,
                    "virtio-net: a malformed or oversized transmit buffer; dropped"
                );
            }
            used |= queue.add_used(memory, head, 0).is_ok();
        }
        used
    }
}

impl VirtioDevice for Net {
    fn device_id(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn features(&self) -> u64 {
        (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_NET_F_MAC)
    }

    fn queue_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    /// `mac` at offset 0; the rest reads as zeros.
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = usize::try_from(offset)
                .ok()
                .and_then(|offset| self.info.mac.get(offset + i))
                .copied()
                .unwrap_or(0);
        }
    }

    fn process(
        &mut self,
        index: usize,
        queue: &mut Queue,
        memory: &GuestRam,
        effects: &mut Vec<Effect>,
    ) -> bool {
        // New receive buffers wait for frames; they are the source's to fill.
        index == TX_QUEUE && Self::transmit(queue, memory, effects)
    }

    fn reset(&mut self) {}

    /// Received frames are events and transmitted ones outputs, both
    /// handled within their exit: the card keeps nothing of its own.
    type State = ();

    fn state(&self) {}

    fn restore(&mut self, _: &(), _: &[Queue]) -> Result<(), InvalidState> {
        Ok(())
    }
}

/// The next available chain and its descriptors; a head outside the queue
/// is skipped.
fn next_chain(queue: &mut Queue, memory: &GuestRam) -> Option<(u16, Vec<Descriptor>)> {
    loop {
        let chain = match queue.iter(memory) {
            Ok(mut chains) => chains.next()?,
            Err(error) => {
                warn!(%error, "virtio-net: the driver's available ring is invalid; ignored");
                return None;
            }
        };
        let head = chain.head_index();
        if head < queue.size() {
            return Some((head, chain.collect()));
        }
        warn!(head, "virtio-net: a buffer head outside the queue; ignored");
    }
}

fn in_ram(memory: &GuestRam, descriptor: &Descriptor) -> bool {
    memory.check_range(
        descriptor.addr(),
        descriptor.len() as usize,
        Permissions::ReadWrite,
    )
}

#[cfg(test)]
mod tests {
    use ft_logging::NetInfo;
    use virtio_bindings::virtio_mmio::*;
    use vm_memory::{Bytes, GuestAddress};

    use super::super::VirtioMmio;
    use super::super::test_driver::{Driver, RAM, WRITE};
    use super::{HEADER_LEN, MAX_FRAME, Net, RX_QUEUE};
    use crate::effect::Effect;
    use crate::memory::{PAGE_SIZE, take_vmm_dirty};
    use crate::state::through_bytes;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0xaa, 0xbb, 0xcc];
    const RX_RINGS: (u64, u64, u64) = (0x1000, 0x2000, 0x3000);
    const TX_RINGS: (u64, u64, u64) = (0x4000, 0x5000, 0x6000);
    const BUFFER: u64 = 0x10000;
    const TX: usize = 1;

    fn driver() -> Driver<Net> {
        Driver::new(Net::new(NetInfo { mac: MAC }), &[RX_RINGS, TX_RINGS])
    }

    fn rx_room(driver: &Driver<Net>) -> usize {
        driver
            .device
            .inspect(|_, queues, memory| Net::rx_room(&queues[RX_QUEUE], memory))
    }

    fn receive(driver: &mut Driver<Net>, frame: &[u8]) {
        driver
            .device
            .complete(|_, queues, memory| Net::receive(&mut queues[RX_QUEUE], memory, frame));
    }

    fn frames(effects: &[Effect]) -> Vec<Vec<u8>> {
        effects
            .iter()
            .filter_map(|effect| match effect {
                Effect::Net(frame) => Some(frame.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_card_offers_its_mac_and_no_offloads() {
        let mut driver = driver();
        assert_eq!(driver.read(VIRTIO_MMIO_DEVICE_ID), 1);
        assert_eq!(driver.read(VIRTIO_MMIO_DEVICE_FEATURES), 1 << 5, "MAC");
        let mut mac = [0u8; 6];
        driver.device.read(0x100, &mut mac);
        assert_eq!(mac, MAC);
    }

    #[test]
    fn a_transmitted_frame_leaves_without_its_header_and_the_buffer_returns() {
        let mut driver = driver();
        let mut packet = vec![0u8; HEADER_LEN];
        packet.extend_from_slice(b"an ethernet frame");
        driver
            .memory
            .write_slice(&packet, GuestAddress(BUFFER))
            .unwrap();
        // Header and frame in separate descriptors, as drivers may do.
        let effects = driver.offer(
            TX,
            &[
                (BUFFER, HEADER_LEN as u32, 0),
                (BUFFER + HEADER_LEN as u64, 17, 0),
            ],
            None,
        );
        assert_eq!(frames(&effects), vec![b"an ethernet frame".to_vec()]);
        assert_eq!(driver.used(TX), vec![(0, 0)]);
        assert!(driver.device.irq());
    }

    #[test]
    fn bad_transmit_buffers_are_dropped_and_the_card_goes_on() {
        let mut driver = driver();
        let oversized = (HEADER_LEN + MAX_FRAME + 1) as u32;
        let effects = driver.offer(TX, &[(BUFFER, oversized, 0)], None);
        assert!(frames(&effects).is_empty());
        let effects = driver.offer(TX, &[(RAM as u64 - 8, 64, 0)], None);
        assert!(frames(&effects).is_empty(), "beyond RAM");
        let effects = driver.offer(TX, &[(BUFFER, 4, 0)], None);
        assert!(frames(&effects).is_empty(), "shorter than the header");
        assert_eq!(driver.used(TX).len(), 3, "every buffer returned");
        let effects = driver.offer(TX, &[(BUFFER, 20, 0)], None);
        assert_eq!(frames(&effects).len(), 1);
    }

    #[test]
    fn a_received_frame_fills_the_next_buffer_with_a_header() {
        let mut driver = driver();
        assert_eq!(rx_room(&driver), 0);
        let size = (HEADER_LEN + MAX_FRAME) as u32;
        for i in 0..2 {
            driver.offer(RX_QUEUE, &[(BUFFER + i * 0x1000, size, WRITE)], None);
        }
        assert_eq!(rx_room(&driver), 2);
        receive(&mut driver, b"hello guest");
        assert_eq!(rx_room(&driver), 1);
        assert_eq!(driver.used(RX_QUEUE), vec![(0, (HEADER_LEN + 11) as u32)]);
        let mut got = vec![0u8; HEADER_LEN + 11];
        driver
            .memory
            .read_slice(&mut got, GuestAddress(BUFFER))
            .unwrap();
        assert_eq!(got[10], 1, "num_buffers");
        assert_eq!(&got[HEADER_LEN..], b"hello guest");
        assert!(driver.device.irq());
    }

    #[test]
    fn a_frame_without_room_is_dropped() {
        let mut driver = driver();
        receive(&mut driver, b"nobody listens");
        assert!(driver.used(RX_QUEUE).is_empty());
        // A buffer too small for the frame is returned empty.
        driver.offer(RX_QUEUE, &[(BUFFER, 8, WRITE)], None);
        receive(&mut driver, b"too long for eight bytes");
        assert_eq!(driver.used(RX_QUEUE), vec![(0, 0)]);
    }

    #[test]
    fn a_restored_card_receives_into_the_buffers_posted_before() {
        let mut driver = driver();
        let size = (HEADER_LEN + MAX_FRAME) as u32;
        for i in 0..3 {
            driver.offer(RX_QUEUE, &[(BUFFER + i * 0x1000, size, WRITE)], None);
        }
        receive(&mut driver, b"first");
        let state = through_bytes(&driver.device.state());
        driver.device = VirtioMmio::from_state(
            Net::new(NetInfo { mac: MAC }),
            driver.memory.clone(),
            &state,
        )
        .unwrap();
        assert_eq!(driver.device.state(), state);
        assert_eq!(rx_room(&driver), 2);
        take_vmm_dirty(&driver.memory);
        receive(&mut driver, b"second");
        assert_eq!(driver.used(RX_QUEUE)[1], (1, (HEADER_LEN + 6) as u32));
        // The frame's buffer and the used ring were the VMM's writes.
        let page = |addr: u64| 1u64 << (addr / PAGE_SIZE);
        assert_eq!(
            take_vmm_dirty(&driver.memory),
            vec![page(BUFFER + 0x1000) | page(RX_RINGS.2)]
        );
    }

    #[test]
    fn a_transmitted_buffer_returns_through_a_used_ring_the_vmm_reports() {
        let mut driver = driver();
        take_vmm_dirty(&driver.memory);
        let effects = driver.offer(TX, &[(BUFFER, 20, 0)], None);
        assert_eq!(frames(&effects).len(), 1);
        let dirty = take_vmm_dirty(&driver.memory);
        assert_ne!(dirty[0] & (1 << (TX_RINGS.2 / PAGE_SIZE)), 0, "used ring");
        assert_eq!(
            dirty[0] & (1 << (BUFFER / PAGE_SIZE)),
            0,
            "read, not written"
        );
    }
}
