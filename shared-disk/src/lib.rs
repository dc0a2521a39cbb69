//! The shared disk image backend and the go-live test-and-set flag (see DESIGN.md §4).

pub mod arbiter;

pub use arbiter::{Arbiter, ArbiterError, FlagState, Outcome};
