//! ftvm's deterministic core: the PC platform's device models, the exit
//! handler that runs at every counted exit, and the platform's memory map.
//!
//! Nothing here touches KVM, a clock, a thread or the host's files: the
//! core sees exits as [`exit_handler::Access`] values and inputs through an
//! [`ft_logging::EventSource`], so it is tested on synthetic exits.

#![warn(missing_docs)]

pub mod devices;
pub mod effect;
pub mod exit_handler;
pub mod layout;
pub mod memory;
pub mod platform;
pub mod state;
