//! The virtio-mmio transport, version 2 (virtio 1.2, 4.2.2): the register
//! block a driver programs, generic over the device behind it.

use std::collections::BTreeSet;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::warn;
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET, VIRTIO_F_VERSION_1,
};
use virtio_bindings::virtio_mmio::*;
use virtio_queue::{Queue, QueueState, QueueT};

use crate::effect::Effect;
use crate::memory::GuestRam;
use crate::state::{InvalidState, QueueStateDef, check};

const MAGIC: u32 = 0x7472_6976; // "virt"
const VERSION: u32 = 2;
/// "FTVM", read little-endian.
const VENDOR: u32 = 0x4d56_5446;

/// A device behind the transport: its identity, features, configuration
/// space and what it does when the driver notifies a queue.
pub trait VirtioDevice {
    /// The virtio device ID (virtio 1.2, 5).
    fn device_id(&self) -> u32;
    /// Feature bits offered, VIRTIO_F_VERSION_1 included.
    fn features(&self) -> u64;
    /// The largest size of each queue.
    fn queue_sizes(&self) -> &[u16];
    /// Reads the device's configuration space.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// The driver made buffers available on `queue`; returns whether any
    /// went to the used ring.
    fn process(
        &mut self,
        index: usize,
        queue: &mut Queue,
        memory: &GuestRam,
        effects: &mut Vec<Effect>,
    ) -> bool;
    /// The driver reset the device.
    fn reset(&mut self);

    /// What the device keeps beyond its configuration (requests in flight).
    type State: Serialize + DeserializeOwned;
    /// Its state, for a snapshot.
    fn state(&self) -> Self::State;
    /// Puts a device fresh from its configuration in `state`; its queues
    /// are already restored.
    fn restore(&mut self, state: &Self::State, queues: &[Queue]) -> Result<(), InvalidState>;
}

/// One queue's state, in virtio-queue's own type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct SavedQueue(#[serde(with = "QueueStateDef")] QueueState);

/// The state of a virtio-mmio transport and its device: each queue's
/// setup and ring positions, the feature negotiation, the status and
/// interrupt registers, the register selectors, and the device's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtioMmioState<S> {
    queues: Vec<SavedQueue>,
    queue_select: u32,
    device_features_select: u32,
    driver_features_select: u32,
    driver_features: u64,
    status: u32,
    interrupt_status: u32,
    device: S,
}

impl<S> VirtioMmioState<S> {
    /// The device's own part.
    pub fn device(&self) -> &S {
        &self.device
    }
}

/// The transport's state with its device.
#[derive(Debug)]
pub struct VirtioMmio<D> {
    device: D,
    memory: GuestRam,
    queues: Vec<Queue>,
    queue_select: u32,
    device_features_select: u32,
    driver_features_select: u32,
    driver_features: u64,
    status: u32,
    interrupt_status: u32,
    /// Registers already warned about, so a looping guest does not flood
    /// the log.
    warned: BTreeSet<u64>,
}

impl<D: VirtioDevice> VirtioMmio<D> {
    /// `device` behind a transport whose queues live in `memory`.
    pub fn new(device: D, memory: GuestRam) -> Self {
        let queues = device
            .queue_sizes()
            .iter()
            .map(|&size| Queue::new(size).expect("queue sizes are powers of two"))
            .collect();
        Self {
            device,
            memory,
            queues,
            queue_select: 0,
            device_features_select: 0,
            driver_features_select: 0,
            driver_features: 0,
            status: 0,
            interrupt_status: 0,
            warned: BTreeSet::new(),
        }
    }

    /// The device behind the transport.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device, without its transport.
    pub fn into_device(self) -> D {
        self.device
    }

    /// Its state and its device's, for a snapshot.
    pub fn state(&self) -> VirtioMmioState<D::State> {
        VirtioMmioState {
            queues: self.queues.iter().map(|q| SavedQueue(q.state())).collect(),
            queue_select: self.queue_select,
            device_features_select: self.device_features_select,
            driver_features_select: self.driver_features_select,
            driver_features: self.driver_features,
            status: self.status,
            interrupt_status: self.interrupt_status,
            device: self.device.state(),
        }
    }

    /// `device`, fresh from its configuration, behind a transport in
    /// `state`; refused when no driver could have reached it.
    pub fn from_state(
        mut device: D,
        memory: GuestRam,
        state: &VirtioMmioState<D::State>,
    ) -> Result<Self, InvalidState> {
        let sizes = device.queue_sizes();
        check(
            state.queues.len() == sizes.len(),
            "virtio-mmio",
            "another number of queues than the device has",
        )?;
        let mut queues = Vec::with_capacity(sizes.len());
        for (saved, &size) in state.queues.iter().zip(sizes) {
            check(
                saved.0.max_size == size,
                "virtio-mmio",
                "a queue of another size than the device's",
            )?;
            let queue = Queue::try_from(saved.0)
                .map_err(|error| InvalidState::new("virtio-mmio", format!("a queue: {error}")))?;
            check(
                !queue.ready() || queue.is_valid(&memory),
                "virtio-mmio",
                "a ready queue whose rings are outside RAM",
            )?;
            queues.push(queue);
        }
        device.restore(&state.device, &queues)?;
        Ok(Self {
            device,
            memory,
            queues,
            queue_select: state.queue_select,
            device_features_select: state.device_features_select,
            driver_features_select: state.driver_features_select,
            driver_features: state.driver_features,
            status: state.status,
            interrupt_status: state.interrupt_status,
            warned: BTreeSet::new(),
        })
    }

    /// Looks at the device's queues without changing them.
    pub fn inspect<T>(&self, look: impl FnOnce(&D, &[Queue], &GuestRam) -> T) -> T {
        look(&self.device, &self.queues, &self.memory)
    }

    /// The interrupt line: high while the driver has not acknowledged an
    /// interrupt.
    pub fn irq(&self) -> bool {
        self.interrupt_status != 0
    }

    /// Lets the device complete work outside a register access (a disk
    /// completion): `complete` returns whether buffers went to the used
    /// ring, which then raises the interrupt.
    pub fn complete(&mut self, complete: impl FnOnce(&mut D, &mut [Queue], &GuestRam) -> bool) {
        if complete(&mut self.device, &mut self.queues, &self.memory) {
            self.interrupt_status |= VIRTIO_MMIO_INT_VRING;
        }
    }

    /// A guest read of the register at `offset`.
    pub fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= u64::from(VIRTIO_MMIO_CONFIG) {
            self.device
                .read_config(offset - u64::from(VIRTIO_MMIO_CONFIG), data);
            return;
        }
        let Some(value) = (data.len() == 4 && offset.is_multiple_of(4))
            .then(|| self.register(offset as u32))
            .flatten()
        else {
            self.warn_once(offset, "read of");
            data.fill(0);
            return;
        };
        data.copy_from_slice(&value.to_le_bytes());
    }

    fn register(&self, offset: u32) -> Option<u32> {
        let queue = self.queues.get(self.queue_select as usize);
        Some(match offset {
            VIRTIO_MMIO_MAGIC_VALUE => MAGIC,
            VIRTIO_MMIO_VERSION => VERSION,
            VIRTIO_MMIO_DEVICE_ID => self.device.device_id(),
            VIRTIO_MMIO_VENDOR_ID => VENDOR,
            VIRTIO_MMIO_DEVICE_FEATURES => match self.device_features_select {
                0 => self.device.features() as u32,
                1 => (self.device.features() >> 32) as u32,
                _ => 0,
            },
            VIRTIO_MMIO_QUEUE_NUM_MAX => queue.map_or(0, |q| u32::from(q.max_size())),
            VIRTIO_MMIO_QUEUE_READY => queue.map_or(0, |q| u32::from(q.ready())),
            VIRTIO_MMIO_INTERRUPT_STATUS => self.interrupt_status,
            VIRTIO_MMIO_STATUS => self.status,
            // The configuration space never changes under the driver.
            VIRTIO_MMIO_CONFIG_GENERATION => 0,
            // No shared memory regions: length all ones.
            VIRTIO_MMIO_SHM_LEN_LOW
            | VIRTIO_MMIO_SHM_LEN_HIGH
            | VIRTIO_MMIO_SHM_BASE_LOW
            | VIRTIO_MMIO_SHM_BASE_HIGH => u32::MAX,
            _ => return None,
        })
    }

    /// A guest write of the register at `offset`; effects go to `effects`.
    pub fn write(&mut self, offset: u64, data: &[u8], effects: &mut Vec<Effect>) {
        if offset >= u64::from(VIRTIO_MMIO_CONFIG) {
            // Block and net configuration is read-only for the driver.
            self.warn_once(offset, "write to the configuration space at");
            return;
        }
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            self.warn_once(offset, "narrow write to");
            return;
        };
        if !offset.is_multiple_of(4) {
            self.warn_once(offset, "unaligned write to");
            return;
        }
        let value = u32::from_le_bytes(bytes);
        let index = self.queue_select as usize;
        match offset as u32 {
            VIRTIO_MMIO_DEVICE_FEATURES_SEL => self.device_features_select = value,
            VIRTIO_MMIO_DRIVER_FEATURES_SEL => self.driver_features_select = value,
            VIRTIO_MMIO_DRIVER_FEATURES => self.set_driver_features(value),
            VIRTIO_MMIO_QUEUE_SEL => self.queue_select = value,
            VIRTIO_MMIO_QUEUE_NOTIFY => self.notify(value as usize, effects),
            VIRTIO_MMIO_INTERRUPT_ACK => self.interrupt_status &= !value,
            VIRTIO_MMIO_STATUS => self.set_status(value),
            VIRTIO_MMIO_SHM_SEL => {}
            register @ (VIRTIO_MMIO_QUEUE_NUM
            | VIRTIO_MMIO_QUEUE_READY
            | VIRTIO_MMIO_QUEUE_DESC_LOW
            | VIRTIO_MMIO_QUEUE_DESC_HIGH
            | VIRTIO_MMIO_QUEUE_AVAIL_LOW
            | VIRTIO_MMIO_QUEUE_AVAIL_HIGH
            | VIRTIO_MMIO_QUEUE_USED_LOW
            | VIRTIO_MMIO_QUEUE_USED_HIGH) => self.write_queue(index, register, value),
            _ => self.warn_once(offset, "write to"),
        }
    }

    fn set_driver_features(&mut self, value: u32) {
        // Features are fixed once the driver set FEATURES_OK.
        if self.status & VIRTIO_CONFIG_S_FEATURES_OK != 0 {
            return;
        }
        match self.driver_features_select {
            0 => self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(value),
            1 => {
                self.driver_features =
                    (self.driver_features & 0xffff_ffff) | (u64::from(value) << 32)
            }
            _ => {}
        }
    }

    fn set_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        let mut value = value;
        // FEATURES_OK sticks only for a subset of the offered features
        // that includes VERSION_1: a legacy driver is refused.
        let newly_ok = value & VIRTIO_CONFIG_S_FEATURES_OK != 0
            && self.status & VIRTIO_CONFIG_S_FEATURES_OK == 0;
        let acceptable = self.driver_features & !self.device.features() == 0
            && self.driver_features & (1 << VIRTIO_F_VERSION_1) != 0;
        if newly_ok && !acceptable {
            value &= !VIRTIO_CONFIG_S_FEATURES_OK;
        }
        // The driver may not clear NEEDS_RESET but by resetting.
        self.status = value | (self.status & VIRTIO_CONFIG_S_NEEDS_RESET);
    }

    fn reset(&mut self) {
        self.queues.iter_mut().for_each(QueueT::reset);
        self.device.reset();
        self.queue_select = 0;
        self.device_features_select = 0;
        self.driver_features_select = 0;
        self.driver_features = 0;
        self.status = 0;
        self.interrupt_status = 0;
    }

    fn write_queue(&mut self, index: usize, register: u32, value: u32) {
        let Some(queue) = self.queues.get_mut(index) else {
            self.warn_once(u64::from(register), "write for a missing queue to");
            return;
        };
        // A live queue's setup is fixed (virtio 1.2, 4.2.2.3).
        if queue.ready() && register != VIRTIO_MMIO_QUEUE_READY {
            self.warn_once(u64::from(register), "write while its queue is ready to");
            return;
        }
        match register {
            VIRTIO_MMIO_QUEUE_NUM => queue.set_size(value as u16),
            VIRTIO_MMIO_QUEUE_READY => {
                queue.set_ready(value == 1);
                // Rings outside RAM: the queue stays off. (`is_valid` looks
                // at a ready queue only.)
                if queue.ready() && !queue.is_valid(&self.memory) {
                    queue.set_ready(false);
                    self.warn_once(u64::from(register), "invalid queue setup before");
                }
            }
            VIRTIO_MMIO_QUEUE_DESC_LOW => queue.set_desc_table_address(Some(value), None),
            VIRTIO_MMIO_QUEUE_DESC_HIGH => queue.set_desc_table_address(None, Some(value)),
            VIRTIO_MMIO_QUEUE_AVAIL_LOW => queue.set_avail_ring_address(Some(value), None),
            VIRTIO_MMIO_QUEUE_AVAIL_HIGH => queue.set_avail_ring_address(None, Some(value)),
            VIRTIO_MMIO_QUEUE_USED_LOW => queue.set_used_ring_address(Some(value), None),
            VIRTIO_MMIO_QUEUE_USED_HIGH => queue.set_used_ring_address(None, Some(value)),
            _ => unreachable!("write_queue is called for queue registers only"),
        }
    }

    fn notify(&mut self, index: usize, effects: &mut Vec<Effect>) {
        let Some(queue) = self.queues.get_mut(index) else {
            self.warn_once(
                u64::from(VIRTIO_MMIO_QUEUE_NOTIFY),
                "notify of a missing queue at",
            );
            return;
        };
        if !queue.ready() {
            return;
        }
        if self.device.process(index, queue, &self.memory, effects) {
            self.interrupt_status |= VIRTIO_MMIO_INT_VRING;
        }
    }

    fn warn_once(&mut self, offset: u64, what: &str) {
        if self.warned.insert(offset) {
            warn!(
                device = self.device.device_id(),
                offset = format_args!("{offset:#x}"),
                "guest {what} a virtio-mmio register: ignored"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use ft_logging::NetInfo;

    use super::super::net::Net;
    use super::super::test_driver::{Driver, RAM};
    use super::*;
    use crate::state::through_bytes;

    fn state() -> VirtioMmioState<()> {
        let driver = Driver::new(
            Net::new(NetInfo { mac: [2; 6] }),
            &[(0x1000, 0x2000, 0x3000), (0x4000, 0x5000, 0x6000)],
        );
        through_bytes(&driver.device.state())
    }

    fn restore(state: &VirtioMmioState<()>) -> Result<VirtioMmio<Net>, InvalidState> {
        let memory = GuestRam::from_ranges(&[(vm_memory::GuestAddress(0), RAM)]).unwrap();
        VirtioMmio::from_state(Net::new(NetInfo { mac: [2; 6] }), memory, state)
    }

    #[test]
    fn a_transport_state_no_driver_reaches_is_refused() {
        let good = state();
        restore(&good).unwrap();
        let mut missing = good.clone();
        missing.queues.pop();
        let mut max_size = good.clone();
        max_size.queues[0].0.max_size = 512;
        let mut size = good.clone();
        size.queues[1].0.size = 3;
        let mut outside = good.clone();
        outside.queues[0].0.used_ring = RAM as u64;
        let mut unaligned = good.clone();
        unaligned.queues[0].0.desc_table = 0x1008;
        for (state, what) in [
            (missing, "number of queues"),
            (max_size, "another size"),
            (size, "a queue"),
            (outside, "outside RAM"),
            (unaligned, "a queue"),
        ] {
            let error = restore(&state).unwrap_err();
            assert!(error.to_string().contains(what), "{error}");
        }
    }
}
