//! The deterministic core's state as data.
//!
//! Every device model has a state type of its own, next to it, in the way
//! of vm-superio's `SerialState`: `Device::state()` gives it out, and
//! `Device::from_state(&state)` builds the device back, after checking that
//! the state is one the device could have reached, so a damaged or hostile
//! state is refused with [`InvalidState`] instead of panicking later.
//! [`Platform`](crate::platform::Platform) gathers the devices'
//! ([`PlatformState`](crate::platform::PlatformState)) and
//! [`ExitHandler`](crate::exit_handler::ExitHandler) the core's
//! ([`CoreState`](crate::exit_handler::CoreState)): exit count, exit
//! signature, console digest, the platform. A state is taken at an exit
//! boundary, after an exit is finished and before the guest runs again.
//!
//! The states serialize with serde; the `vm-state` crate encodes them, with
//! the vCPU and guest memory. What they leave out, on purpose: the
//! warn-once sets (they only keep logs quiet; a restored VM may warn once
//! more) and per-exit scratch buffers (empty between exits).

use serde::{Deserialize, Serialize};
use virtio_queue::QueueState;

/// A device state that no device could have reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {device} state: {problem}")]
pub struct InvalidState {
    /// The device.
    pub device: &'static str,
    /// What is wrong with its state.
    pub problem: String,
}

impl InvalidState {
    /// `device`'s state is refused for `problem`.
    pub fn new(device: &'static str, problem: impl Into<String>) -> Self {
        Self {
            device,
            problem: problem.into(),
        }
    }
}

/// Refuses the state of `device` unless `ok`.
pub(crate) fn check(ok: bool, device: &'static str, problem: &str) -> Result<(), InvalidState> {
    if ok {
        Ok(())
    } else {
        Err(InvalidState::new(device, problem))
    }
}

/// virtio-queue's own state type, which has no serde support of its own.
#[derive(Serialize, Deserialize)]
#[serde(remote = "QueueState")]
pub(crate) struct QueueStateDef {
    pub max_size: u16,
    pub next_avail: u16,
    pub next_used: u16,
    pub event_idx_enabled: bool,
    pub size: u16,
    pub ready: bool,
    pub desc_table: u64,
    pub avail_ring: u64,
    pub used_ring: u64,
}

/// Serializes and deserializes a state, as a transfer does.
#[cfg(test)]
pub(crate) fn through_bytes<S: Serialize + serde::de::DeserializeOwned>(state: &S) -> S {
    let bytes = postcard::to_allocvec(state).expect("a state serializes");
    postcard::from_bytes(&bytes).expect("a serialized state deserializes")
}
