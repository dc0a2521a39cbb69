//! The shared disk image backend and the go-live test-and-set flag (see docs/DESIGN.md §4).

#![warn(missing_docs)]

pub mod arbiter;
pub mod image;
mod lock;

pub use arbiter::{Arbiter, ArbiterError, FlagState, Outcome};
pub use image::{DiskImage, ImageError, ImageLock};
