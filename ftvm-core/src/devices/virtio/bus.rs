//! The virtio slots of the platform: which device sits where, and the
//! operations the core applies to them.

use ft_logging::{DiskInfo, NetInfo};
use serde::{Deserialize, Serialize};

use super::block::{Block, BlockState};
use super::net::{Net, RX_QUEUE};
use super::{IRQS, MMIO_SIZE, VirtioMmio, VirtioMmioState, mmio_base};
use crate::effect::Effect;
use crate::memory::GuestRam;
use crate::state::InvalidState;

#[derive(Debug)]
enum Slot {
    Block(VirtioMmio<Block>),
    Net(VirtioMmio<Net>),
}

impl Slot {
    fn irq(&self) -> bool {
        match self {
            Slot::Block(device) => device.irq(),
            Slot::Net(device) => device.irq(),
        }
    }
}

/// The state of one virtio slot: its transport and device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum SlotState {
    Block(VirtioMmioState<BlockState>),
    Net(VirtioMmioState<()>),
}

/// The state of every virtio device, in slot order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtioBusState {
    slots: Vec<SlotState>,
}

impl VirtioBusState {
    /// The numbers of the disk requests in flight.
    pub fn disk_requests_in_flight(&self) -> Vec<u64> {
        self.slots
            .iter()
            .flat_map(|slot| match slot {
                SlotState::Block(block) => block.device().requests_in_flight().collect(),
                SlotState::Net(_) => Vec::new(),
            })
            .collect()
    }
}

/// The virtio devices, in slot order: the disk first, then the network
/// card, each only when the VM has one.
#[derive(Debug, Default)]
pub struct VirtioBus {
    slots: Vec<Slot>,
}

impl VirtioBus {
    /// The virtio devices a VM has, their queues in `memory`.
    pub fn new(disk: Option<DiskInfo>, net: Option<NetInfo>, memory: &GuestRam) -> Self {
        let block = disk.map(|info| Slot::Block(VirtioMmio::new(Block::new(info), memory.clone())));
        let net = net.map(|info| Slot::Net(VirtioMmio::new(Net::new(info), memory.clone())));
        Self {
            slots: block.into_iter().chain(net).collect(),
        }
    }

    /// Its state, for a snapshot.
    pub fn state(&self) -> VirtioBusState {
        VirtioBusState {
            slots: self
                .slots
                .iter()
                .map(|slot| match slot {
                    Slot::Block(device) => SlotState::Block(device.state()),
                    Slot::Net(device) => SlotState::Net(device.state()),
                })
                .collect(),
        }
    }

    /// The devices of this configuration, in `state`.
    pub fn from_state(
        disk: Option<DiskInfo>,
        net: Option<NetInfo>,
        memory: &GuestRam,
        state: &VirtioBusState,
    ) -> Result<Self, InvalidState> {
        let fresh = Self::new(disk, net, memory);
        let other_devices =
            || InvalidState::new("virtio", "other devices than the VM's configuration");
        if fresh.slots.len() != state.slots.len() {
            return Err(other_devices());
        }
        let slots =
            fresh
                .slots
                .into_iter()
                .zip(&state.slots)
                .map(|(slot, saved)| match (slot, saved) {
                    (Slot::Block(fresh), SlotState::Block(saved)) => Ok(Slot::Block(
                        VirtioMmio::from_state(fresh.into_device(), memory.clone(), saved)?,
                    )),
                    (Slot::Net(fresh), SlotState::Net(saved)) => Ok(Slot::Net(
                        VirtioMmio::from_state(fresh.into_device(), memory.clone(), saved)?,
                    )),
                    _ => Err(other_devices()),
                })
                .collect::<Result<_, _>>()?;
        Ok(Self { slots })
    }

    /// How many slots a VM with these devices uses.
    pub fn slot_count(disk: Option<DiskInfo>, net: Option<NetInfo>) -> usize {
        usize::from(disk.is_some()) + usize::from(net.is_some())
    }

    /// The slot whose registers hold `addr`, and the offset there.
    fn at(&mut self, addr: u64) -> Option<(&mut Slot, u64)> {
        let offset = addr.checked_sub(mmio_base(0))?;
        let slot = self.slots.get_mut((offset / MMIO_SIZE) as usize)?;
        Some((slot, offset % MMIO_SIZE))
    }

    /// A register read; false when no device is at `addr`.
    pub fn read(&mut self, addr: u64, data: &mut [u8]) -> bool {
        match self.at(addr) {
            Some((Slot::Block(device), offset)) => device.read(offset, data),
            Some((Slot::Net(device), offset)) => device.read(offset, data),
            None => return false,
        }
        true
    }

    /// A register write; false when no device is at `addr`.
    pub fn write(&mut self, addr: u64, data: &[u8], effects: &mut Vec<Effect>) -> bool {
        match self.at(addr) {
            Some((Slot::Block(device), offset)) => device.write(offset, data, effects),
            Some((Slot::Net(device), offset)) => device.write(offset, data, effects),
            None => return false,
        }
        true
    }

    /// Each slot's IRQ and its line's level.
    pub fn irq_levels(&self) -> impl Iterator<Item = (u8, bool)> + '_ {
        IRQS.iter()
            .zip(&self.slots)
            .map(|(&irq, slot)| (irq, slot.irq()))
    }

    fn block(&mut self) -> Option<&mut VirtioMmio<Block>> {
        self.slots.iter_mut().find_map(|slot| match slot {
            Slot::Block(device) => Some(device),
            Slot::Net(_) => None,
        })
    }

    fn net(&mut self) -> Option<&mut VirtioMmio<Net>> {
        self.slots.iter_mut().find_map(|slot| match slot {
            Slot::Net(device) => Some(device),
            Slot::Block(_) => None,
        })
    }

    /// The disk completed request `request`.
    pub fn complete_disk(&mut self, request: u64, status: u8, data: &[u8]) {
        if let Some(block) = self.block() {
            block.complete(|device, queues, memory| {
                device.complete(&mut queues[0], memory, request, status, data)
            });
        }
    }

    /// A frame arrived for the network card.
    pub fn receive_frame(&mut self, frame: &[u8]) {
        if let Some(net) = self.net() {
            net.complete(|_, queues, memory| Net::receive(&mut queues[RX_QUEUE], memory, frame));
        }
    }

    /// Receive buffers the network card has for frames.
    pub fn net_rx_room(&self) -> usize {
        self.slots
            .iter()
            .map(|slot| match slot {
                Slot::Net(net) => {
                    net.inspect(|_, queues, memory| Net::rx_room(&queues[RX_QUEUE], memory))
                }
                Slot::Block(_) => 0,
            })
            .sum()
    }

    /// Whether disk requests wait for the host.
    pub fn io_pending(&self) -> bool {
        self.slots.iter().any(|slot| match slot {
            Slot::Block(block) => block.device().has_pending(),
            Slot::Net(_) => false,
        })
    }
}
